"""Uploaded images in, decoded images out: the bounds a request must stay within.

Checked before anything is decoded, from the bytes and the image headers alone:
the number of images (413), each part's declared type (415 unless ``image/*``,
``application/octet-stream`` or none), each image's width x height (413) and their sum over the
request (413). Then each image is decoded by :func:`attrib.imageio.load_image`, in the decoder
threads (small requests, which decode in well under a millisecond, on the event loop itself); one
that cannot be read becomes a per-image ``error`` line, as in the CLI's output.

:func:`read_form` takes a request's uploads and fields apart, :class:`Admitted` holds its decoded
images within the pixel budget, and :func:`embed` hands them to the shared micro-batcher.

Nothing here touches the server's file system: an upload's file name is only a label, echoed
back as ``path`` (with control characters removed) and stored as a sample's origin.
"""

from __future__ import annotations

import asyncio
import io
import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from fastapi import Request
from PIL import Image
from pydantic import BaseModel, ValidationError

from ..errors import ImageError
from ..imageio import load_image
from ..pipeline import Item
from ..views import view_images
from . import schemas
from .batching import EncoderUnavailable, QueueFull
from .errors import ServiceError, one_line, validation_message

if TYPE_CHECKING:
    from .state import ServiceState

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ACCEPTED_TYPES = ("image/", "application/octet-stream")
#: uploads of at most this many bytes in all have their headers read on the event loop (fast)
INLINE_PROBE_BYTES = 512 * 1024
#: requests of at most this many pixels in all are decoded on the event loop: well under a
#: millisecond, cheaper than a trip to a thread; larger ones go to the decoder threads
INLINE_DECODE_PIXELS = 256 * 256


@dataclass
class Upload:
    name: str
    data: bytes
    content_type: str | None = None


def label(filename: str | None, index: int) -> str:
    """The name an upload is known by in answers: its file name, made printable, or ``image<i>``."""
    name = _CONTROL.sub("?", filename or "").strip()
    return name[:255] if name else f"image{index}"


def check_types(uploads: Sequence[Upload]) -> None:
    for u in uploads:
        ctype = (u.content_type or "").split(";")[0].strip().lower()
        if ctype and not ctype.startswith(ACCEPTED_TYPES):
            raise ServiceError(415, f"{u.name}: declared as {ctype}; send image bytes (image/* or application/octet-stream)")


def probe(data: bytes) -> int | None:
    """width x height from the image header (nothing decoded), or None when unreadable here
    (the decoder then says why); raises 413 for Pillow's decompression-bomb bound."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
    except Image.DecompressionBombError:
        raise ServiceError(413, "image is too large (decompression bomb bound)") from None
    except Exception:
        return None
    return int(w) * int(h)


def check_pixels(uploads: Sequence[Upload], max_pixels: int, max_request_pixels: int) -> int:
    """Pixels the request will decode (413 past a bound), from the image headers alone."""
    total = 0
    for u in uploads:
        try:
            n = probe(u.data)
        except ServiceError as exc:
            raise ServiceError(413, f"{u.name}: {exc.message}") from None
        if n is None:
            continue
        if n > max_pixels:
            raise ServiceError(413, f"{u.name}: {n:,} pixels is over the {max_pixels:,}-pixel bound per image")
        total += n
    if total > max_request_pixels:
        raise ServiceError(413, f"{total:,} pixels in this request is over the {max_request_pixels:,}-pixel bound per request")
    return total


def decode(upload: Upload) -> Item:
    """One upload -> :class:`attrib.pipeline.Item` (decoded image, or the one-line error)."""
    if not upload.data:
        return Item(upload.name, error=f"{upload.name}: empty file")
    try:
        return Item(upload.name, load_image(upload.data, name=upload.name))
    except ImageError as exc:
        return Item(upload.name, error=str(exc))


async def decode_all(uploads: Sequence[Upload], pool) -> list[Item]:
    loop = asyncio.get_running_loop()
    if len(uploads) == 1:
        return [await loop.run_in_executor(pool, decode, uploads[0])]
    return list(await asyncio.gather(*(loop.run_in_executor(pool, decode, u) for u in uploads)))


class PixelBudget:
    """Decoded pixels held by all requests together stay under ``capacity``; a request waits for
    its share (at most ``timeout`` seconds, then 503). Bounds the memory decoded images take.

    :meth:`try_acquire` may be called from any thread (the decoders take their share without a
    trip through the event loop when it is free); :meth:`acquire` and :meth:`release` run on the loop.
    """

    def __init__(self, capacity: int, timeout: float):
        self.capacity = capacity
        self.timeout = timeout
        self.used = 0
        self._lock = threading.Lock()
        self._freed: asyncio.Event | None = None

    def _clip(self, n: int) -> int:
        return min(max(int(n), 0), self.capacity)

    def try_acquire(self, n: int) -> int | None:
        """Take ``n`` now and return it, or None when that would go over the capacity."""
        n = self._clip(n)
        with self._lock:
            if self.used + n > self.capacity:
                return None
            self.used += n
            return n

    async def acquire(self, n: int) -> int:
        n = self._clip(n)
        if self._freed is None:
            self._freed = asyncio.Event()
        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            got = self.try_acquire(n)
            if got is not None:
                return got
            left = deadline - asyncio.get_running_loop().time()
            self._freed.clear()
            try:
                if left <= 0:
                    raise asyncio.TimeoutError
                await asyncio.wait_for(self._freed.wait(), left)
            except asyncio.TimeoutError:
                raise ServiceError(503, "the server is busy decoding other images; try again shortly", {"Retry-After": "1"}) from None

    def release(self, n: int) -> None:
        if n:
            with self._lock:
                self.used -= n
            if self._freed is not None:
                self._freed.set()


# -- a request's uploads ---------------------------------------------------------------------------
def _split_form(form, model: type[BaseModel]) -> tuple[list, dict]:
    """The ``image`` file parts and the other values of a parsed form (lists for repeated fields)."""
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
    return images, values


async def read_form(request: Request, model: type[BaseModel], max_images: int) -> tuple[list[Upload], BaseModel]:
    """The ``image`` uploads (read into memory) and the other fields of an upload form, checked
    against ``model`` (which also writes the endpoint's OpenAPI request body): 422 for anything else."""
    form = await request.form(max_files=max(1000, max_images + 1), max_fields=100)
    try:
        images, values = _split_form(form, model)
        try:
            fields = model.model_validate(values)
        except ValidationError as exc:
            raise ServiceError(422, validation_message(exc.errors())) from None
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


async def embed(state: ServiceState, items: list[Item], bulk: bool = False, views: Sequence[str] = ()) -> tuple[list[Item], np.ndarray]:
    """Embed the readable items through the shared micro-batcher; an image the encoder refuses
    gets an error line. Returns (items embedded, their plain embeddings); an item scored in a view
    the encoder has a head for keeps its embedding there (``item.own``:
    :func:`attrib.pipeline.query_embeddings`). ``views`` (enrollment): each is also embedded in those
    views, into ``item.views`` (:func:`attrib.pipeline.view_embeddings`)."""
    good = [it for it in items if it.error is None]

    def part(res, k):  # the plain (0) or own-view (1) embedding of a result, or its exception
        return res if isinstance(res, BaseException) else res[k]

    try:
        results = await state.batcher.embed([it.image.pixels for it in good], bulk=bulk, views=[it.view for it in good])
        in_views = {}
        for view in views:  # an image that already stands in the view (views.stands_in) is there as it is
            redo = [i for i, it in enumerate(good) if it.stands_in != view]
            pixels = [good[i].image.pixels for i in redo]
            images = await asyncio.get_running_loop().run_in_executor(state.decode_pool, view_images, pixels, view)
            done_view = dict(zip(redo, (part(r, 1) for r in await state.batcher.embed(images, bulk=bulk, views=[view] * len(images)))))
            in_views[view] = [done_view.get(i, part(results[i], 1)) for i in range(len(good))]
    except (QueueFull, EncoderUnavailable) as exc:
        raise ServiceError(503, str(exc), {"Retry-After": "1"}) from None
    done, vectors = [], []
    for i, (it, res) in enumerate(zip(good, results)):
        refused = next((r for r in [res, *(v[i] for v in in_views.values())] if isinstance(r, BaseException)), None)
        if refused is not None:
            it.error = one_line(f"{it.path}: the encoder could not take this image ({type(refused).__name__}: {refused})")
        else:
            it.views = {view: v[i] for view, v in in_views.items()} or None
            it.own = res[1] if state.encoder.has_head(it.view) else None
            done.append(it)
            vectors.append(res[0])
    state.metrics.count_images("enroll" if bulk else "query", "embedded", len(done))
    dim = state.encoder.dim
    return done, (np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32))


def none_readable(items: list[Item]) -> ServiceError:
    """The 422 for a request none of whose images could be read."""
    first = next((it.error for it in items if it.error), "no image")
    more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
    return ServiceError(422, f"no image could be read: {first}{more}")
