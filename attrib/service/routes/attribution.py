"""Tag ``attribution``: identify (which source made each image, or unknown) and verify (1:1).

The answers are built by :mod:`attrib.report`, the same functions ``attrib identify --json`` and
``attrib verify --json`` print from; only the way there differs (uploads, shared encoder batches,
searches batched across requests, the gallery on reader and writer threads)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from fastapi import APIRouter, Request

from ... import report
from ...pipeline import query_embeddings
from ...verdict import camera_sources, default_judge
from .. import schemas
from ..errors import ServiceError
from ..intake import Admitted, embed, none_readable, read_form
from ..state import ServiceState
from ..store import EmptyGallery
from .common import ERROR, UPLOAD_ERRORS, State, answer, require_key

router = APIRouter(tags=["attribution"])


@router.post(
    "/v1/identify",
    response_model=list[schemas.IdentifyRow],
    responses=UPLOAD_ERRORS | {401: ERROR, 403: ERROR},
    openapi_extra={"requestBody": schemas.multipart_request(schemas.IdentifyForm)},
)
async def identify(request: Request, state: State):
    """Which enrolled generator made each image, or unknown (one object per image, as
    `attrib identify --json`). Concurrent requests share encoder batches."""
    uploads, form = await read_form(request, schemas.IdentifyForm, state.config.max_images)
    if form.keep_unknown:
        require_key(request, state, "keep_unknown")
    done = await identify_uploads(state, uploads, form)
    return answer(report.identify_rows(done.items, done.decisions, done.evidence, done.judge))


@dataclass
class Identified:
    """What :func:`identify_uploads` found: every item, the embeddings of the readable ones (in
    order), their decisions, each item's detector evidence (``{id(item): [...]}``) and the
    verdict's judge (the service's rules, told which sources are camera classes)."""

    items: list
    embeddings: np.ndarray
    decisions: list
    evidence: dict
    judge: object = None


async def identify_uploads(state: ServiceState, uploads: list, form: schemas.IdentifyForm) -> Identified:
    """Decode, embed (shared batches) and decide ``uploads``, with the chosen detectors running
    beside the encoder; keeps the rejected ones when ``form.keep_unknown`` (the caller checked
    the key). The API's identify and the web page's both answer from this."""
    names = state.detectors.choose(form.detectors if form.detectors is not None else state.config.default_detectors)
    async with Admitted(state, uploads, "identify") as items:
        detecting = _DetectorRuns(state, names, items, uploads)
        try:
            good, emb = await embed(state, items)
        except BaseException:
            detecting.cancel()
            raise
        found = await detecting.evidence()
    if not good:
        raise none_readable(items)
    try:
        decisions = await state.searches.identify(query_embeddings(good, emb), form.top_k, form.far, [it.view for it in good])
    except EmptyGallery as exc:
        raise ServiceError(409, str(exc)) from None
    if form.keep_unknown:
        records = [it.record for it in good]
        await state.store.write(lambda g: g.keep_rejected(emb, records, decisions))
    state.metrics.count_images("identify", "unknown", sum(1 for d in decisions if d.source is None))
    cameras = await state.store.read(camera_sources) if any(d.source is not None for d in decisions) else ()
    return Identified(items, emb, decisions, found, (state.judge or default_judge()).with_camera_sources(cameras))


class _DetectorRuns:
    """The chosen detectors looking at the readable uploads (bytes and decoded pixels) in the
    detector threads, started at once so that they run while the encoder works."""

    def __init__(self, state: ServiceState, names: list[str], items: list, uploads: list):
        self.readable = [(it, up) for it, up in zip(items, uploads) if it.error is None] if names else []
        loop = asyncio.get_running_loop()
        self.runs = (
            asyncio.gather(
                *(
                    loop.run_in_executor(state.detect_pool, state.detectors.run, names, it.image.pixels, up.data, it.image.format)
                    for it, up in self.readable
                )
            )
            if names
            else None
        )

    def cancel(self) -> None:
        if self.runs is not None:
            self.runs.cancel()

    async def evidence(self) -> dict[int, list]:
        """``{id(item): its detectors' evidence}``; empty when no detector was chosen."""
        if self.runs is None:
            return {}
        return {id(it): ev for (it, _), ev in zip(self.readable, await self.runs)}


@router.post(
    "/v1/verify",
    response_model=list[schemas.VerifyRow] | schemas.VerifyPair,
    responses=UPLOAD_ERRORS | {404: ERROR},
    openapi_extra={"requestBody": schemas.multipart_request(schemas.VerifyForm)},
)
async def verify(request: Request, state: State):
    """1:1 verification at a calibrated false-accept rate: was each image made by `generator`
    (a list, as `attrib verify --generator --json`)? Without `generator`: were the two images
    made by the same source (one object, as `attrib verify --json A B`)?"""
    uploads, form = await read_form(request, schemas.VerifyForm, state.config.max_images)
    source, far = form.generator, form.far
    if source is None:
        return answer(await _verify_pair(state, uploads, far))
    await state.store.read(lambda g: g.require_node(source))  # 404 before any decoding
    async with Admitted(state, uploads, "verify") as items:
        good, emb = await embed(state, items)
    if not good:
        raise none_readable(items)
    views = [it.view for it in good]
    queries = query_embeddings(good, emb)
    results = await state.store.read(lambda g: g.verify(queries, source, far, views=views))
    return answer(report.verify_rows(items, results, source, far))


async def _verify_pair(state: ServiceState, uploads, far: float | None) -> dict:
    if len(uploads) != 2:
        raise ServiceError(422, f"pair mode takes exactly two images, got {len(uploads)} (or pass generator)")
    async with Admitted(state, uploads, "verify") as items:
        bad = [it for it in items if it.error]
        if bad:
            raise ServiceError(422, bad[0].error)
        good, emb = await embed(state, items)
        if len(good) != 2:
            raise ServiceError(422, next(it.error for it in items if it.error))
    result = await state.store.read(lambda g: g.verify_pair(emb[0], emb[1], far))
    return report.verify_pair_answer(items[0].path, items[1].path, result)
