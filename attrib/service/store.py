"""Gallery access for the service: one SQLite connection per thread, reads on a snapshot.

* **Reads** run in a small thread pool; each thread opens its own :class:`~attrib.gallery.Gallery`
  (its own connection and FAISS index copy) on first use. Every read runs inside one read
  transaction, so it sees one committed generation of the gallery from start to end: an
  enrollment that commits meanwhile is seen whole by the next read, never half (prototypes of
  the new generation with thresholds of the old one, say).
* The FAISS prototype index is a per-connection cache rebuilt when the generation moves on; its
  rebuild (which also rewrites the cache file) happens under a lock, one reader thread at a time.
* **Writes** run on one thread with its own connection. SQLite's ``BEGIN IMMEDIATE`` (in
  :meth:`attrib.gallery.store.Store.transaction`) serialises them with writers in other processes (``attrib enroll``,
  other workers), and WAL mode keeps readers going while a write is under way.

The encoder is created once and shared: galleries opened here are handed the instance.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

from ..gallery import Gallery

T = TypeVar("T")


@contextmanager
def snapshot(gallery: Gallery) -> Iterator[Gallery]:
    """Run reads of ``gallery`` on one consistent snapshot (a deferred read transaction)."""
    conn = gallery.db.conn
    if conn.in_transaction:
        yield gallery
        return
    conn.execute("BEGIN")
    try:
        yield gallery
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")  # nothing was written: ending the read is all this does


class GalleryStore:
    def __init__(self, path, encoder, pm=None, read_threads: int = 2):
        self.path = path
        self.encoder = encoder
        self.pm = pm
        self._local = threading.local()
        self._opened: list[Gallery] = []
        self._lock = threading.Lock()
        self._index_lock = threading.Lock()
        self._readers = ThreadPoolExecutor(read_threads, thread_name_prefix="attrib-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="attrib-write")

    def _gallery(self) -> Gallery:
        g = getattr(self._local, "gallery", None)
        if g is None:
            g = Gallery(self.path, encoder=self.encoder, create=False, pm=self.pm)
            self._local.gallery = g
            with self._lock:
                self._opened.append(g)
        return g

    def _read_call(self, fn: Callable[..., T], args) -> T:
        g = self._gallery()
        with snapshot(g):
            with self._index_lock:  # one thread at a time rebuilds and saves the FAISS cache file
                g.prototype_index()
            return fn(g, *args)

    def _write_call(self, fn: Callable[..., T], args) -> T:
        return fn(self._gallery(), *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(gallery, *args)`` on a reader thread, inside one snapshot."""
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._read_call, fn, args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(gallery, *args)`` on the writer thread (one write at a time in this process)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, self._write_call, fn, args)

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._lock:
            for g in self._opened:
                try:
                    g.close()
                except Exception:
                    pass
            self._opened.clear()


class IdentifyBatcher:
    """Identify searches of concurrent requests share one gallery read.

    Requests whose embeddings come back together (one encoder batch) ask within the same turn of
    the event loop; their searches then go to a reader thread together: one trip, one snapshot and
    one FAISS call per ``(top_k, far)`` group instead of one of each per request.
    """

    def __init__(self, store: GalleryStore):
        self.store = store
        self._pending: list[tuple[np.ndarray, int, float | None, list | None, asyncio.Future]] = []
        self._scheduled = False

    async def identify(self, embeddings: np.ndarray, top_k: int, far: float | None, views: list | None = None) -> list:
        """Decisions for ``embeddings``, each scored in its view (``views``: :mod:`attrib.views`)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((embeddings, top_k, far, views, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)  # after the other requests woken in this turn have asked
        return await fut

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        batch = [b for b in batch if not b[-1].done()]
        if not batch:
            return
        task = asyncio.ensure_future(self.store.read(search_groups, [b[:-1] for b in batch]))

        def done(t: asyncio.Future) -> None:
            try:
                results = t.result()
            except BaseException as exc:  # the read itself failed: every request hears it
                results = [exc] * len(batch)
            for (*_, fut), res in zip(batch, results):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

        task.add_done_callback(done)


def _views(request: tuple) -> list:
    """A search request's views, one per embedding (None: the plain view)."""
    views = request[3] if len(request) > 3 else None
    return list(views) if views is not None else [None] * len(request[0])


class EmptyGallery(Exception):
    """Identify on a gallery without sources."""


def search_groups(g: Gallery, requests: list[tuple]) -> list:
    """Decisions for each ``(embeddings, top_k, far[, views])`` request, searched per (top_k, far)
    group, each query in its view."""
    if g.db.execute("select 1 from sources limit 1").fetchone() is None:
        return [EmptyGallery("the gallery has no sources: enroll some first")] * len(requests)
    out: list = [None] * len(requests)
    groups: dict[tuple, list[int]] = {}
    for i, (_, top_k, far, *_) in enumerate(requests):
        groups.setdefault((top_k, far), []).append(i)
    for (top_k, far), members in groups.items():
        emb = np.concatenate([requests[i][0] for i in members])
        views = [v for i in members for v in _views(requests[i])]
        decisions = g.identify(emb, top_k=top_k, far=far, views=views)
        start = 0
        for i in members:
            n = len(requests[i][0])
            out[i] = decisions[start : start + n]
            start += n
    return out
