"""Files in, embeddings out: decode and embed many images, one bad file never stopping the rest.

Per-stage wall time (decode, encode, search) is accumulated in a :class:`StageTimer` so the CLI,
the eval and the benchmarks all report the same numbers.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .encoders import Encoder
from .errors import ImageError
from .gallery import SampleRecord
from .imageio import LoadedImage, load_image, thumbnail
from .views import view_images


class StageTimer:
    """Accumulates seconds per named stage."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    @contextmanager
    def stage(self, name: str, n: int = 1):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0
            self.counts[name] += n

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {
            k: {"seconds": round(v, 4), "items": self.counts[k], "per_s": round(self.counts[k] / v, 2) if v > 0 else None}
            for k, v in self.seconds.items()
        }


@dataclass
class Item:
    """One input: its label, the decoded image (None when it failed), the error line otherwise."""

    path: str
    image: LoadedImage | None = None
    error: str | None = None
    views: dict[str, np.ndarray] | None = None  # its embeddings in the gallery's views (enrollment)
    # its embedding in its own view (:attr:`view`) where the encoder has a fit for that view (a view
    # head); None: its plain embedding is the one it is scored with (:func:`query_embeddings`)
    own: np.ndarray | None = None

    @property
    def view(self) -> str | None:
        """The view this image is scored in as a query (:mod:`attrib.views`)."""
        return self.image.view if self.image is not None else None

    @property
    def stands_in(self) -> str | None:
        """The view this image already stands in as a sample, as it is (:func:`attrib.views.stands_in`)."""
        return self.image.stands_in if self.image is not None else None

    @property
    def record(self) -> SampleRecord:
        img = self.image
        return SampleRecord(img.sha256, img.width, img.height, img.format, self.path, img.thumbnail)

    def make_thumbnail(self) -> None:
        """Keep a small JPEG of the image (for enrollment: the gallery shows a few per source)."""
        if self.image is not None and self.image.pixels is not None and self.image.thumbnail is None:
            self.image.thumbnail = thumbnail(self.image.pixels)


def _load(path: str | os.PathLike) -> Item:
    try:
        return Item(str(path), load_image(path))
    except ImageError as exc:
        return Item(str(path), error=str(exc))


#: images decoded ahead of the one being consumed, per decoding thread
LOOKAHEAD_PER_WORKER = 4


def load_many(paths: Iterable[str | os.PathLike], workers: int | None = None, lookahead: int | None = None) -> Iterator[Item]:
    """Decode paths in order, in a small thread pool (Pillow releases the GIL while decoding), so
    decoding overlaps with whatever the consumer does (encoding). At most ``lookahead`` images
    (default ``LOOKAHEAD_PER_WORKER`` per thread) are decoded ahead: memory stays bounded on
    folders of big images (a 4096 px image is 48 MB of pixels)."""
    workers = workers or min(4, os.cpu_count() or 1)
    paths = list(paths)
    if workers <= 1 or len(paths) <= 1:
        yield from map(_load, paths)
        return
    lookahead = max(1, lookahead or LOOKAHEAD_PER_WORKER * workers)
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        upcoming = iter(paths)
        for path in itertools.islice(upcoming, lookahead):
            pending.append(pool.submit(_load, path))
        while pending:
            item = pending.popleft().result()
            nxt = next(upcoming, None)
            if nxt is not None:
                pending.append(pool.submit(_load, nxt))
            yield item


#: pixels above which a batch goes to the encoder before it has ``batch_size`` images: big images
#: are encoded a few at a time, so decoding the next ones (:func:`load_many`'s threads) overlaps
#: with encoding these instead of waiting for 32 of them (a 4096 px image is 16.8 Mpx: batches of 2)
BATCH_PIXELS = 32_000_000


def embed_items(
    encoder: Encoder,
    items: Iterable[Item],
    batch_size: int = 32,
    timer: StageTimer | None = None,
    progress=None,
    thumbnails: int = 0,
    batch_pixels: int = BATCH_PIXELS,
    views: Sequence[str] = (),
) -> tuple[list[Item], np.ndarray]:
    """Decode (if not yet) and embed items in batches of ``batch_size`` images or ``batch_pixels``
    pixels; returns (all items, embeddings of the good ones).

    ``progress`` is called with the number of items finished after each batch. The first
    ``thumbnails`` readable items keep a thumbnail (enrollment: the gallery stores a few).
    ``views`` (enrollment: :data:`attrib.views.VIEWS`): each good item is also embedded in those
    views, into ``item.views`` (:func:`view_embeddings` gathers them), timed as ``views``. The
    embeddings returned are the plain ones; an item scored in a view the encoder has a fit of its own
    for also keeps its embedding there (``item.own``; :func:`query_embeddings` gathers what to score).
    """
    timer = timer or StageTimer()
    all_items: list[Item] = []
    good: list[Item] = []
    vectors: list[np.ndarray] = []
    batch: list[Item] = []

    def flush():
        if batch:
            with timer.stage("encode", len(batch)):
                plain, own = encoder.embed_in([it.image.pixels for it in batch], [it.view for it in batch])
                vectors.append(plain)
            for it, vec in zip(batch, own):
                it.own = vec if encoder.has_head(it.view) else None
            embed_views(encoder, batch, views, vectors[-1], timer)
            for it in batch[: max(0, thumbnails - len(good))]:
                it.make_thumbnail()
            good.extend(batch)
            if progress:
                progress(len(batch))
            for it in batch:  # pixels are not needed any more: keep memory flat on big runs
                it.image.pixels = None
            batch.clear()

    iterator = iter(items)
    pixels = 0
    while True:
        with timer.stage("decode"):
            item = next(iterator, None)
        if item is None:
            break
        all_items.append(item)
        if item.error is not None:
            timer.counts["decode"] -= 1
            if progress:
                progress(1)
            continue
        batch.append(item)
        pixels += item.image.width * item.image.height
        if len(batch) >= batch_size or pixels >= batch_pixels:
            flush()
            pixels = 0
    flush()
    emb = np.concatenate(vectors) if vectors else np.zeros((0, encoder.dim), np.float32)
    return all_items, emb


def embed_views(encoder: Encoder, items: Sequence[Item], views: Sequence[str], plain: np.ndarray, timer: StageTimer | None = None) -> None:
    """Embed decoded ``items`` in each of ``views`` (:mod:`attrib.views`) into ``item.views``; an
    item whose file already stands in a view (:func:`attrib.views.stands_in`: a JPEG at quality
    <= 90 for ``jpeg``) is there as it is: its plain embedding (``plain``, rows aligned with
    ``items``), or its own in the view (``item.own``) where the encoder has a fit for the view."""
    timer = timer or StageTimer()
    for view in views:
        redo = [i for i, it in enumerate(items) if it.stands_in != view]
        with timer.stage("views", len(redo)):
            emb = encoder.embed(view_images([items[i].image.pixels for i in redo], view), view) if redo else plain[:0]
        vectors = np.array(plain, dtype=np.float32, copy=True)
        for i, it in enumerate(items):
            if it.stands_in == view and it.own is not None:
                vectors[i] = it.own
        vectors[redo] = emb
        for it, vec in zip(items, vectors):
            it.views = (it.views or {}) | {view: vec}


def query_embeddings(items: Sequence[Item], plain: np.ndarray) -> np.ndarray:
    """What good ``items`` are scored with as queries, each in its view: its own embedding there
    (``item.own``) where it has one, else its plain one (``plain``, rows aligned with ``items``)."""
    if not any(it.own is not None for it in items):
        return plain
    return np.stack([plain[i] if it.own is None else it.own for i, it in enumerate(items)]).astype(np.float32)


def view_embeddings(items: Sequence[Item]) -> dict[str, np.ndarray] | None:
    """``{view: embeddings}`` of good ``items`` (rows in their order) embedded with ``views``; None
    when none was."""
    names = [set(it.views or ()) for it in items]
    common = set.intersection(*names) if names else set()
    return {v: np.stack([it.views[v] for it in items]) for v in sorted(common)} or None


def detector_tap(runner, found: dict):
    """An ``on_item`` callback that runs ``runner``'s detectors on each readable item into
    ``found[id(item)]`` (as :func:`attrib.report.identify_rows` wants them), while its pixels
    are still there."""
    from .detectors import DetectorImage

    def tap(item: Item) -> None:
        if item.error is None:
            image = DetectorImage(pixels=item.image.pixels, path=item.path, format=item.image.format)
            found[id(item)] = [ev.to_dict() for ev in runner.run(image)]

    return tap


def expand_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    from .imageio import iter_image_paths

    return list(iter_image_paths(paths))
