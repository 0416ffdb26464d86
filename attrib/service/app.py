"""The ASGI app: the CLI's operations over HTTP, answering the CLI's ``--json`` shapes.

Every handler does the same steps as its CLI command, on the service's machinery: uploads are
checked and decoded (:mod:`.intake`), embedded through the shared micro-batcher
(:mod:`.batching`), and answered from the gallery on a reader thread or changed on the writer
thread (:mod:`.store`). The event loop itself only parses HTTP and moves bytes.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Any, Optional, Sequence

import numpy as np
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import AttribError, EncoderMismatch, UnknownSource
from ..gallery import Gallery
from ..sources import NAME_RE, check_name
from ..pipeline import Item
from ..plugins import make_plugin_manager
from . import extensions, schemas
from .batching import EncoderProcesses, EncoderThreads, EncoderUnavailable, MicroBatcher, QueueFull
from .config import ConfigError, ServiceConfig
from .errors import ServiceError, error_body, one_line
from .intake import (
    INLINE_DECODE_PIXELS,
    INLINE_PROBE_BYTES,
    PixelBudget,
    Upload,
    check_pixels,
    check_types,
    decode,
    decode_all,
    label,
)
from .metrics import Metrics
from .middleware import AUTH_KEY, KeyRing, ServiceMiddleware
from .store import EmptyGallery, GalleryStore, IdentifyBatcher

log = logging.getLogger("attrib.service")

NAME_PATTERN = NAME_RE.pattern
FAR_MIN, FAR_MAX = 1e-6, 0.5

_E = {"model": schemas.Error}
READ_ERRORS = {404: _E, 422: _E, 503: _E}
UPLOAD_ERRORS = {400: _E, 409: _E, 413: _E, 415: _E, 422: _E, 503: _E}
WRITE_ERRORS = {400: _E, 401: _E, 403: _E, 404: _E, 409: _E, 413: _E, 415: _E, 422: _E, 503: _E}


class ServiceState:
    """What the handlers share; built at start-up (lifespan), torn down at shutdown."""

    def __init__(self, config: ServiceConfig, pm):
        self.config = config
        self.pm = pm
        self.keys = KeyRing(config.api_keys)
        self.metrics = Metrics()
        self.budget = PixelBudget(config.pixel_budget, config.admission_timeout)
        self.routes: Sequence = ()
        self.encoder = None
        self.store: GalleryStore | None = None
        self.searches: IdentifyBatcher | None = None
        self.batcher: MicroBatcher | None = None
        self.encoder_runner = None
        self.decode_pool: ThreadPoolExecutor | None = None
        self.detectors: extensions.Detectors | None = None
        self.detect_pool: ThreadPoolExecutor | None = None
        self.started_at = time.time()

    def start(self) -> None:
        """Open (or create) the gallery and the encoder; blocking, runs once before serving."""
        cfg = self.config
        gallery = Gallery(cfg.gallery, encoder=cfg.encoder, create=True, pm=self.pm)
        try:
            self.encoder = gallery.encoder
            stats = gallery.stats()
            spec = gallery.setting("encoder_spec")
        finally:
            gallery.close()
        self.encoder.embed([np.zeros((64, 64, 3), np.uint8)])  # load lazily-loaded parts now, fail early
        self.detectors = extensions.Detectors(self.pm, cfg.detector_timeout)
        try:
            self.detectors.choose(cfg.default_detectors)  # a bad --detectors fails at start-up
        except ServiceError as exc:
            raise ConfigError(f"--detectors: {exc.message}") from None
        self.encoder_runner = self._encoder_runner(spec)
        self.store = GalleryStore(cfg.gallery, self.encoder, pm=self.pm, read_threads=cfg.read_threads)
        self.searches = IdentifyBatcher(self.store)
        self.decode_pool = ThreadPoolExecutor(cfg.decode_threads, thread_name_prefix="attrib-decode")
        self.batcher = MicroBatcher(
            self.encoder_runner,
            batch_size=cfg.batch_size,
            bulk_batch_size=cfg.bulk_batch_size,
            max_queued=cfg.max_queued_images,
            on_batch=self.metrics.observe_batch,
        )
        self.detect_pool = ThreadPoolExecutor(cfg.decode_threads, thread_name_prefix="attrib-detect")
        m = self.metrics
        m.gauge("attrib_encoder_queue_images", "Images waiting for the encoder.", lambda: self.batcher.queued)
        m.gauge("attrib_encoder_busy", "Encoder calls running now.", lambda: self.batcher.busy)
        m.gauge("attrib_decoded_pixels_held", "Decoded pixels held by requests now.", lambda: self.budget.used)
        m.gauge("attrib_uptime_seconds", "Seconds since this worker started.", lambda: time.time() - self.started_at)
        log.info(
            "serving",
            extra={"fields": {"encoder": self.encoder.id, "sources": stats["sources"], "samples": stats["samples"],
                              "generation": stats["generation"], "settings": cfg.describe(),
                              "encoder_runs_in": f"{self.encoder_runner.n} {self.encoder_runner.kind}",
                              "detectors": self.detectors.names()}},
        )

    def _encoder_runner(self, spec: str | None):
        """Encoder processes when asked for and the encoder can be rebuilt from its spec in a fresh
        process (plugins loaded as here); else threads of this process."""
        cfg = self.config
        workers = int(os.environ.get("ATTRIB_SERVICE_WORKERS", "1") or 1)
        n = cfg.encoder_processes(workers)
        if n > 0 and spec:
            threads = max(1, (os.cpu_count() or 1) // max(1, workers * n))
            runner = EncoderProcesses(spec, self.encoder.id, n, threads)
            try:
                vectors, _ = runner.executor.submit(runner.fn, [np.zeros((64, 64, 3), np.uint8)]).result(timeout=300)
                if isinstance(vectors[0], Exception):
                    raise vectors[0]
                return runner
            except Exception as exc:
                runner.shutdown()
                log.warning(
                    "encoder processes unavailable; running the encoder in threads",
                    extra={"fields": {"encoder": self.encoder.id, "error": one_line(f"{type(exc).__name__}: {exc}")}},
                )
        if "torch" in sys.modules:  # share the cores between worker processes rather than oversubscribe
            sys.modules["torch"].set_num_threads(max(1, (os.cpu_count() or 1) // max(workers, 1)))
        return EncoderThreads(self.encoder, cfg.encode_threads)

    def stop(self) -> None:
        if self.store is not None:
            self.store.close()
        for pool in (self.decode_pool, self.detect_pool):
            if pool is not None:
                pool.shutdown(wait=True)


def preflight(config: ServiceConfig, pm=None) -> dict[str, Any]:
    """What start-up would refuse, checked before a server starts: the gallery opens (or is created)
    with its encoder, the default detectors exist. Raises AttribError (ConfigError among them)."""
    pm = pm or make_plugin_manager()
    gallery = Gallery(config.gallery, encoder=config.encoder, create=True, pm=pm)
    try:
        stats = _gallery_info(gallery)
    finally:
        gallery.close()
    try:
        extensions.Detectors(pm, config.detector_timeout).choose(config.default_detectors)
    except ServiceError as exc:
        raise ConfigError(f"--detectors: {exc.message}") from None
    return stats


def create_app(config: ServiceConfig, pm=None) -> FastAPI:
    """The app for ``config`` (with API keys already loaded: :meth:`ServiceConfig.load_keys`)."""
    state = ServiceState(config, pm or make_plugin_manager())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.get_running_loop().run_in_executor(None, state.start)
        await state.batcher.start()
        try:
            yield
        finally:  # uvicorn has let in-flight requests finish before this runs
            await state.batcher.stop()
            await asyncio.get_running_loop().run_in_executor(None, state.stop)
            log.info("stopped", extra={"fields": {"requests": sum(state.metrics.requests.values())}})

    app = FastAPI(
        title="attrib",
        version=__version__,
        summary="Which generator made this image? Open-set attribution and fingerprint verification.",
        description=(
            "The `attrib` CLI over HTTP. Images are uploaded as `multipart/form-data` file fields named "
            "`image` (repeatable); answers have the shapes of the CLI's `--json` output. Reads are open; "
            "enroll and remove need an API key (`Authorization: Bearer KEY`). Errors are "
            '`{"error": "one line", "status", "code", "request_id"}`.'
        ),
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.attrib = state
    _install_error_handlers(app)
    _install_routes(app, state)
    app.add_middleware(ServiceMiddleware, state=state)
    state.routes = app.routes
    return app


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` and ``attrib serve --workers N`` (settings from the environment)."""
    return create_app(ServiceConfig.from_env())


# -- errors ------------------------------------------------------------------------------------
def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    if status == 413:  # the rest of an oversized body is not worth reading: close the connection
        headers = {**(headers or {}), "Connection": "close"}
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


def _validation_message(errors) -> str:
    parts = []
    for err in list(errors)[:3]:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path", "header")]
        where = ".".join(loc) or "request"
        msg = err.get("msg", "invalid")
        if err.get("type") == "missing":
            msg = "is required" + (" (upload images as multipart file fields named 'image')" if where == "image" else "")
            parts.append(f"{where} {msg}")
        else:
            parts.append(f"{where}: {msg}")
    return "; ".join(parts) or "invalid request"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError):
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return _error(422, _validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path} (see /openapi.json)"
        elif exc.status_code == 400:
            message = f"malformed request body ({message.rstrip('.')}): send multipart/form-data"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return _error(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(AttribError)
    async def attrib_error(request: Request, exc: AttribError):
        if isinstance(exc, UnknownSource):
            status = 404
        elif isinstance(exc, EncoderMismatch):
            status = 409
        else:  # GalleryError (bad name, family), ImageError, EncoderError
            status = 422
        return _error(status, str(exc))


# -- shared steps ------------------------------------------------------------------------------
def _clean(value):
    """NaN/inf -> None (JSON has no NaN), recursively; numpy scalars -> Python."""
    if isinstance(value, float) or isinstance(value, np.floating):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _json(content: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(_clean(content), status_code=status)


async def _read_form(request: Request, model: type[BaseModel], max_images: int) -> tuple[list[Upload], BaseModel]:
    """The ``image`` uploads (read into memory) and the other fields of an upload form, checked
    against ``model`` (which also writes the endpoint's OpenAPI request body): 422 for anything else."""
    form = await request.form(max_files=max(1000, max_images + 1), max_fields=100)
    try:
        images, values, unknown = [], {}, []
        lists = schemas.list_fields(model)
        for key, value in form.multi_items():
            is_file = not isinstance(value, str)
            if key == "image":
                if not is_file:
                    raise ServiceError(422, "image: send image files (multipart file fields with a filename), not text")
                images.append(value)
            elif key in model.model_fields:
                if is_file:
                    raise ServiceError(422, f"{key}: a text field, not a file")
                if key in lists:
                    values.setdefault(key, []).append(value)
                else:
                    values[key] = value
            else:
                unknown.append(key)
        if unknown:
            allowed = ", ".join(["image", *model.model_fields])
            raise ServiceError(422, f"unknown field(s) {', '.join(sorted(set(unknown)))} (this endpoint takes: {allowed})")
        try:
            fields = model.model_validate(values)
        except ValidationError as exc:
            raise ServiceError(422, _validation_message(exc.errors())) from None
        if not images:
            raise ServiceError(422, "image is required (upload images as multipart file fields named 'image')")
        if len(images) > max_images:
            raise ServiceError(413, f"{len(images)} images is over the bound of {max_images} per request")
        uploads = [Upload(label(f.filename, i), await f.read(), f.content_type) for i, f in enumerate(images)]
    finally:
        await form.close()  # spooled upload files go now, not when the garbage collector gets to them
    return uploads, fields


class Admitted:
    """Images of one request, decoded within the bounds; its pixel budget is held until exit."""

    def __init__(self, state: ServiceState, uploads: list[Upload], operation: str):
        self.state, self.uploads, self.operation = state, uploads, operation
        self.items: list[Item] = []
        self.held = 0

    async def __aenter__(self) -> list[Item]:
        cfg, st, uploads = self.state.config, self.state, self.uploads
        check_types(uploads)
        loop = asyncio.get_running_loop()
        if sum(len(u.data) for u in uploads) <= INLINE_PROBE_BYTES:
            total = check_pixels(uploads, cfg.max_pixels, cfg.max_request_pixels)
        else:
            total = await loop.run_in_executor(st.decode_pool, check_pixels, uploads, cfg.max_pixels, cfg.max_request_pixels)
        held = st.budget.try_acquire(total) if total <= INLINE_DECODE_PIXELS else None
        if held is not None:  # small: decoding here costs less than handing it to a thread
            self.held = held
            self.items = [decode(u) for u in uploads]
        else:
            self.held = await st.budget.acquire(total)
            try:
                self.items = await decode_all(uploads, st.decode_pool)
            except BaseException:
                self._release()
                raise
        bad = sum(it.error is not None for it in self.items)
        st.metrics.count_images(self.operation, "unreadable", bad)
        return self.items

    def _release(self) -> None:
        held, self.held = self.held, 0
        self.state.budget.release(held)

    async def __aexit__(self, *exc) -> None:
        for it in self.items:
            if it.image is not None:
                it.image.pixels = None
        self._release()


async def _embed(state: ServiceState, items: list[Item], bulk: bool = False) -> tuple[list[Item], np.ndarray]:
    """Embed the readable items; an image the encoder refuses gets an error line. Returns
    (items embedded, their embeddings)."""
    good = [it for it in items if it.error is None]
    try:
        results = await state.batcher.embed([it.image.pixels for it in good], bulk=bulk)
    except (QueueFull, EncoderUnavailable) as exc:
        raise ServiceError(503, str(exc), {"Retry-After": "1"}) from None
    done, vectors = [], []
    for it, res in zip(good, results):
        if isinstance(res, BaseException):
            it.error = one_line(f"{it.path}: the encoder could not take this image ({type(res).__name__}: {res})")
        else:
            done.append(it)
            vectors.append(res)
    op = "enroll" if bulk else "query"
    state.metrics.count_images(op, "embedded", len(done))
    dim = state.encoder.dim
    return done, (np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32))


def _none_readable(items: list[Item]) -> ServiceError:
    first = next((it.error for it in items if it.error), "no image")
    more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
    return ServiceError(422, f"no image could be read: {first}{more}")


def _require_key(request: Request, state: ServiceState, what: str) -> None:
    if not state.keys:
        raise ServiceError(403, f"{what} is a write, and writes are disabled on this server (no API key configured)")
    if not request.scope.get(AUTH_KEY):
        raise ServiceError(401, f"{what} is a write: it needs an API key (Authorization: Bearer KEY)",
                           {"WWW-Authenticate": 'Bearer realm="attrib"'})


def _check_source(g: Gallery, name: str) -> None:
    g.require_source(name)


def _gallery_info(g: Gallery) -> dict[str, Any]:
    stats = g.stats()
    stats.pop("path", None)  # the server's file system is nobody's business
    return stats


# -- routes ------------------------------------------------------------------------------------
FarQuery = Annotated[
    Optional[float],
    Query(ge=FAR_MIN, le=FAR_MAX, description="False-accept rate the thresholds are shown for (default: the gallery's)."),
]
SourceName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=128, description="Source name.")]


def _install_routes(app: FastAPI, state: ServiceState) -> None:  # noqa: C901 - one place for the API
    @app.get("/v1/health", response_model=schemas.Health, tags=["service"], responses={503: _E})
    async def health():
        """Liveness and what is being served: encoder, gallery generation, counts."""
        info = await state.store.read(_gallery_info)
        return _json({"status": "ok", "version": __version__, "gallery": info, "writes_enabled": bool(state.keys)})

    @app.get("/v1/sources", response_model=list[schemas.Source], tags=["sources"], responses=READ_ERRORS)
    async def list_sources(far: FarQuery = None):
        """Enrolled sources with family, sample count and threshold (as `attrib sources list --json`)."""
        return _json(await state.store.read(lambda g: g.sources(far)))

    @app.get("/v1/sources/{name}", response_model=schemas.SourceDetail, tags=["sources"], responses=READ_ERRORS)
    async def show_source(name: SourceName, far: FarQuery = None):
        """One source: metadata, calibration and its samples (as `attrib sources show --json`)."""
        return _json(await state.store.read(lambda g: g.source(name, far)))

    @app.delete("/v1/sources/{name}", response_model=schemas.Removed, tags=["sources"], responses=WRITE_ERRORS)
    async def remove_source(name: SourceName):
        """Remove a source and all its samples (needs an API key)."""
        n = await state.store.write(lambda g: g.remove_source(name))
        return _json({"source": name, "removed_samples": n})

    @app.post(
        "/v1/sources/{name}/samples",
        response_model=schemas.EnrollResult,
        tags=["sources"],
        responses=WRITE_ERRORS,
        openapi_extra={"requestBody": schemas.multipart_request(schemas.EnrollForm)},
    )
    async def enroll(request: Request, name: SourceName):
        """Enroll sample images into a source, created if new (as `attrib enroll --json`; needs an API key).

        One transaction: readers see all of it or none of it. Images already in the gallery (same
        sha256) are reported as duplicates; unreadable ones as failures."""
        image, form = await _read_form(request, schemas.EnrollForm, state.config.max_images)
        family, meta = form.family, form.meta
        check_name(name)
        metadata = {}
        for m in meta:
            if "=" not in m:
                raise ServiceError(422, f"meta: {m!r} is not KEY=VALUE")
            k, _, v = m.partition("=")
            metadata[k.strip()] = v
        async with Admitted(state, image, "enroll") as items:
            good, emb = await _embed(state, items, bulk=True)
            failed = [{"path": it.path, "error": it.error} for it in items if it.error is not None]
            if not good:
                raise ServiceError(422, f"no image could be read ({len(failed)} failed): nothing enrolled; first: {failed[0]['error']}")
            records = [it.record for it in good]
        result = await state.store.write(lambda g: g.enroll(name, emb, records, family=family, metadata=metadata))
        result.failed = failed
        state.metrics.count_images("enroll", "enrolled", result.enrolled)
        return _json(result.to_dict())

    @app.post(
        "/v1/identify",
        response_model=list[schemas.IdentifyRow],
        tags=["attribution"],
        responses=UPLOAD_ERRORS | {401: _E, 403: _E},
        openapi_extra={"requestBody": schemas.multipart_request(schemas.IdentifyForm)},
    )
    async def identify(request: Request):
        """Which enrolled generator made each image, or unknown (one object per image, as
        `attrib identify --json`). Concurrent requests share encoder batches."""
        image, form = await _read_form(request, schemas.IdentifyForm, state.config.max_images)
        top_k, far, keep_unknown, detectors = form.top_k, form.far, form.keep_unknown, form.detectors
        if keep_unknown:
            _require_key(request, state, "keep_unknown")
        names = state.detectors.choose(detectors if detectors is not None else state.config.default_detectors)
        admitted = Admitted(state, image, "identify")
        async with admitted as items:
            evidence_task = None
            if names:  # detectors look at the same uploads while the encoder works
                loop = asyncio.get_running_loop()
                readable = [(it, up) for it, up in zip(items, admitted.uploads) if it.error is None]
                evidence_task = asyncio.gather(
                    *(loop.run_in_executor(state.detect_pool, state.detectors.run, names, it.image.pixels, up.data, it.image.format)
                      for it, up in readable)
                )
            try:
                good, emb = await _embed(state, items)
            except BaseException:
                if evidence_task is not None:
                    evidence_task.cancel()
                raise
            evidence = {}
            if evidence_task is not None:
                evidence = {id(it): ev for (it, _), ev in zip(readable, await evidence_task)}
        if not good:
            raise _none_readable(items)

        try:
            decisions = await state.searches.identify(emb, top_k, far)
        except EmptyGallery as exc:
            raise ServiceError(409, str(exc)) from None
        if keep_unknown:
            records = [it.record for it in good]
            await state.store.write(lambda g: g.keep_rejected(emb, records, decisions))
        by_item = {id(it): d for it, d in zip(good, decisions)}
        rows = []
        for it in items:
            d = by_item.get(id(it))
            if d is None:
                row = {"path": it.path, "source": None, "score": None, "threshold": None, "margin": None, "candidates": [], "error": it.error}
            else:
                row = {"path": it.path, **d.to_dict(), "error": None}
            row["detectors"] = evidence.get(id(it), [])  # as the CLI: always there, [] when none ran
            rows.append(row)
        state.metrics.count_images("identify", "unknown", sum(1 for d in decisions if d.source is None))
        return _json(rows)

    @app.post(
        "/v1/verify",
        response_model=list[schemas.VerifyRow] | schemas.VerifyPair,
        tags=["attribution"],
        responses=UPLOAD_ERRORS | {404: _E},
        openapi_extra={"requestBody": schemas.multipart_request(schemas.VerifyForm)},
    )
    async def verify(request: Request):
        """1:1 verification at a calibrated false-accept rate: was each image made by `generator`
        (a list, as `attrib verify --generator --json`)? Without `generator`: were the two images
        made by the same source (one object, as `attrib verify --json A B`)?"""
        image, form = await _read_form(request, schemas.VerifyForm, state.config.max_images)
        generator, far = form.generator, form.far
        if generator is None:
            if len(image) != 2:
                raise ServiceError(422, f"pair mode takes exactly two images, got {len(image)} (or pass generator)")
            async with Admitted(state, image, "verify") as items:
                bad = [it for it in items if it.error]
                if bad:
                    raise ServiceError(422, bad[0].error)
                good, emb = await _embed(state, items)
                if len(good) != 2:
                    raise ServiceError(422, next(it.error for it in items if it.error))
            res = await state.store.read(lambda g: g.verify_pair(emb[0], emb[1], far))
            return _json({"a": items[0].path, "b": items[1].path, **res})
        await state.store.read(_check_source, generator)  # 404 before any decoding
        async with Admitted(state, image, "verify") as items:
            good, emb = await _embed(state, items)
        if not good:
            raise _none_readable(items)
        results = await state.store.read(lambda g: g.verify(emb, generator, far))
        by_item = {id(it): r for it, r in zip(good, results)}
        rows = []
        for it in items:
            r = by_item.get(id(it))
            if r is None:
                rows.append({"path": it.path, "generator": generator, "score": None, "threshold": None, "accepted": None, "far": far, "error": it.error})
            else:
                rows.append({"path": it.path, **r, "error": None})
        return _json(rows)

    @app.get("/v1/detectors", response_model=list[schemas.Detector], tags=["plugins"])
    async def list_detectors():
        """Detectors installed (built-in and from plugins), for identify's `detectors` field."""
        return _json(state.detectors.listing())

    @app.get("/v1/plugins", response_model=list[schemas.Plugin], tags=["plugins"], responses={422: _E})
    async def list_plugins(
        all: Annotated[bool, Query(description="Include the built-in plugins.")] = False,  # noqa: A002 - the CLI's --all
    ):
        """Installed plugins, their hooks and what they register (as `attrib plugins --json`)."""
        return _json(extensions.list_plugins(state.pm, include_builtin=all))

    @app.get("/metrics", response_class=PlainTextResponse, tags=["service"])
    async def metrics():
        """Prometheus text format: requests, latency, images, encoder batches, queue depth (this worker)."""
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
