"""Micro-batching: concurrent requests share encoder calls, and the event loop never runs the model.

Each image waits in one of two queues: *interactive* (identify, verify) or *bulk* (enroll). One
collector task hands batches to the encoder as soon as an encoder slot is free: interactive
images first, up to ``batch_size`` of them; bulk images only when no interactive one waits, and
at most ``bulk_batch_size`` at a time, so an identify that arrives during a large enrollment
waits for one small batch at most. There is no fixed delay: under light load a batch holds one
image and starts at once; under heavy load images pile up while the encoder is busy and the next
batch takes them all. Each encoder process (or thread) gets up to ``depth`` batches at a time (one
running, the next already queued), so it never idles while the server answers the batch it just
finished; at most one of those is a bulk batch.

The encoder runs either in **processes** (:class:`EncoderProcesses`, the default for ``attrib
serve``: each loads the gallery's encoder by its spec, so the model never competes with the
event loop for the GIL) or in **threads** of the server process (:class:`EncoderThreads`: for
encoders that exist only in-process, and tests). A crashed encoder process is replaced and its
batch answered 503.

If an encoder call fails, its images are retried one by one, so one image the encoder cannot
take fails alone and never the requests it was batched with.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np


class QueueFull(Exception):
    """More images are waiting for the encoder than the service accepts."""


class EncoderUnavailable(Exception):
    """The encoder process died during a batch (it is being replaced)."""


def embed_isolated(encoder, images: list[np.ndarray], views: Sequence[str | None] | None = None) -> tuple[list, float]:
    """Embed ``images``, each also in its view (``views``; :meth:`attrib.encoders.base.Encoder.embed_in`);
    if the batch fails, each image alone, so only the bad one fails. Returns (per image its (plain,
    own-view) embeddings or the exception, seconds). ``encoder`` None: this process's."""
    enc = encoder if encoder is not None else _process_encoder
    views = list(views) if views is not None else [None] * len(images)
    t0 = time.perf_counter()
    try:
        out: list = list(zip(*_embed_in(enc, images, views)))
    except Exception:
        out = []
        for img, view in zip(images, views):
            try:
                plain, own = _embed_in(enc, [img], [view])
                out.append((plain[0], own[0]))
            except Exception as exc:
                out.append(exc)
    return out, time.perf_counter() - t0


def _embed_in(enc, images: list[np.ndarray], views: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """``enc.embed_in`` where a view has a head; else its plain embeddings, twice (any object with
    ``embed`` serves)."""
    if any(getattr(enc, "has_head", lambda v: False)(v) for v in views):
        return enc.embed_in(images, views)
    plain = enc.embed(images)
    return plain, plain


# -- encoder processes -----------------------------------------------------------------------------
_process_encoder = None


def _init_process(spec: str, expected_id: str, threads: int) -> None:
    """Initializer of an encoder process: the gallery's encoder, built from its spec."""
    global _process_encoder
    from ..encoders import get_encoder
    from ..errors import EncoderMismatch
    from ..plugins import make_plugin_manager

    enc = get_encoder(spec, pm=make_plugin_manager())
    if enc.id != expected_id:
        raise EncoderMismatch(f"encoder {spec!r} is {enc.id} in a subprocess, but the gallery is bound to {expected_id}")
    try:
        import sys

        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(max(1, threads))
    except Exception:
        pass
    _process_encoder = enc


class EncoderThreads:
    """The encoder in ``n`` threads of this process."""

    kind = "threads"

    def __init__(self, encoder, n: int = 1):
        self.n = n
        self.fn = partial(embed_isolated, encoder)
        self._pool = ThreadPoolExecutor(n, thread_name_prefix="attrib-encode")

    @property
    def executor(self) -> Executor:
        return self._pool

    def restart(self) -> None:  # threads do not break
        pass

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


class EncoderProcesses:
    """The encoder in ``n`` spawned processes, each built from the gallery's encoder spec."""

    kind = "processes"

    def __init__(self, spec: str, encoder_id: str, n: int = 1, threads_per_process: int | None = None):
        self.n = n
        self.fn = partial(embed_isolated, None)
        self._args = (spec, encoder_id, threads_per_process or max(1, (os.cpu_count() or 1) // max(n, 1)))
        self._pool = self._make()

    def _make(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.n, mp_context=multiprocessing.get_context("spawn"), initializer=_init_process, initargs=self._args)

    @property
    def executor(self) -> Executor:
        return self._pool

    def restart(self) -> None:
        old, self._pool = self._pool, self._make()
        old.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


# -- the batcher -------------------------------------------------------------------------------------
@dataclass
class _Job:
    image: np.ndarray
    future: asyncio.Future
    view: str | None = None  # the view it is also embedded in (attrib.views; an encoder's view head)


class MicroBatcher:
    def __init__(
        self,
        encoder_runner,
        batch_size: int = 32,
        bulk_batch_size: int = 8,
        max_queued: int = 4096,
        on_batch: Callable[[int, float, bool], None] | None = None,
        depth: int = 2,
    ):
        self.runner = encoder_runner  # EncoderThreads or EncoderProcesses
        self.depth = depth
        self._bulk_running = 0
        self.batch_size = batch_size
        self.bulk_batch_size = bulk_batch_size
        self.max_queued = max_queued
        self._on_batch = on_batch
        self._interactive: deque[_Job] = deque()
        self._bulk: deque[_Job] = deque()
        self._wake: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._task: asyncio.Task | None = None
        self._running: set[asyncio.Future] = set()

    @property
    def queued(self) -> int:
        return len(self._interactive) + len(self._bulk)

    @property
    def busy(self) -> int:
        return len(self._running)

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self.runner.n * self.depth)
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="attrib-batcher")

    async def stop(self) -> None:
        """Finish the batches already running, fail what still waits, free the encoder."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._running:
            await asyncio.wait(list(self._running))
        for q in (self._interactive, self._bulk):
            while q:
                job = q.popleft()
                if not job.future.done():
                    job.future.set_exception(EncoderUnavailable("the service is shutting down"))
        await asyncio.get_running_loop().run_in_executor(None, self.runner.shutdown)

    async def embed(
        self, images: Sequence[np.ndarray], bulk: bool = False, views: Sequence[str | None] | None = None
    ) -> list[tuple[np.ndarray, np.ndarray] | Exception]:
        """Per image in order: its plain embedding and its embedding in its view (``views``, one per
        image, default none: the two are the same; :meth:`attrib.encoders.base.Encoder.embed_in`),
        or, for an image the encoder refused, the exception."""
        if not images:
            return []
        if self._task is None or self._task.done():
            raise EncoderUnavailable("the encoder is not running")
        if self.queued + len(images) > self.max_queued:
            raise QueueFull(f"{self.queued} images are waiting for the encoder; try again shortly")
        loop = asyncio.get_running_loop()
        jobs = [_Job(img, loop.create_future(), view) for img, view in zip(images, views or [None] * len(images))]
        (self._bulk if bulk else self._interactive).extend(jobs)
        self._wake.set()
        try:
            results = await asyncio.gather(*(j.future for j in jobs), return_exceptions=True)
        finally:
            for j in jobs:  # a cancelled request leaves no work behind
                j.future.cancel()
        unavailable = next((r for r in results if isinstance(r, EncoderUnavailable)), None)
        if unavailable is not None:
            raise unavailable
        return list(results)

    def _take(self) -> tuple[list[_Job], bool]:
        for queue, limit, bulk in ((self._interactive, self.batch_size, False), (self._bulk, self.bulk_batch_size, True)):
            if bulk and self._bulk_running:  # one bulk batch at a time: the other slots stay for identify
                break
            batch: list[_Job] = []
            while queue and len(batch) < limit:
                job = queue.popleft()
                if not job.future.done():  # skip images of requests that went away
                    batch.append(job)
            if batch:
                return batch, bulk
        return [], False

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._interactive and (not self._bulk or self._bulk_running):
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._slots.acquire()
            batch, bulk = self._take()
            if not batch:
                self._slots.release()
                continue
            self._bulk_running += bulk
            executor = self.runner.executor
            try:
                fut = loop.run_in_executor(executor, self.runner.fn, [j.image for j in batch], [j.view for j in batch])
            except (BrokenExecutor, RuntimeError) as exc:  # broken or shut down before submit
                fut = loop.create_future()
                fut.set_exception(exc)
            self._running.add(fut)
            fut.add_done_callback(lambda f, batch=batch, bulk=bulk, ex=executor: self._finish(f, batch, bulk, ex))

    def _finish(self, fut: asyncio.Future, batch: list[_Job], bulk: bool, executor) -> None:
        self._running.discard(fut)
        self._slots.release()
        self._bulk_running -= bulk
        if self._bulk:
            self._wake.set()  # a bulk batch may go now
        try:
            results, seconds = fut.result()
        except BaseException as exc:
            if isinstance(exc, BrokenExecutor) and executor is self.runner.executor:
                self.runner.restart()  # a crashed encoder process: start a fresh one
            err = EncoderUnavailable(f"the encoder failed ({type(exc).__name__}); try again")
            results, seconds = [err] * len(batch), 0.0
        for job, res in zip(batch, results):
            if job.future.done():
                continue
            if isinstance(res, BaseException):
                job.future.set_exception(res)
            else:
                job.future.set_result(res)
        if self._on_batch is not None:
            self._on_batch(len(batch), seconds, bulk)
