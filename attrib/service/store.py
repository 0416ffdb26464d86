"""Gallery access for the service: one SQLite connection per thread, reads on a snapshot.

* **Reads** run in a small thread pool; each thread opens its own :class:`~attrib.gallery.Gallery`
  (its own connection and FAISS index copy) on first use. Every read runs inside one read
  transaction, so it sees one committed generation of the gallery from start to end: an
  enrollment that commits meanwhile is seen whole by the next read, never half (prototypes of
  the new generation with thresholds of the old one, say).
* **Writes** run on one thread with its own connection. SQLite's ``BEGIN IMMEDIATE`` (in
  :meth:`Gallery._write`) serialises them with writers in other processes (``attrib enroll``,
  other workers), and WAL mode keeps readers going while a write is under way.

The encoder is created once and shared: galleries opened here are handed the instance.
"""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

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
