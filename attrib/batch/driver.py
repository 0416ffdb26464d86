"""The driver of ``attrib batch``: skip what is done, run the rest on Ray Data, write as it comes.

Ray Data does the scheduling: the images still to do become a dataset of ``(path, uri)`` rows,
``map_batches`` runs :class:`attrib.batch.worker.Identifier` on a pool of Ray actors (one per
worker, each with its own encoder), and the driver streams the answers back
(``iter_batches``) into the output, a whole part at a time. Locally (no ``--address``) Ray
starts in this process's machine and stops at the end; with ``--address`` the job runs on that
cluster. The gallery snapshot is put in Ray's object store once; workers never see the gallery.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..errors import AttribError
from ..gallery.snapshot import GallerySnapshot
from .output import OutputMismatch
from .worker import BatchOptions, Identifier

#: at most this many blocks in the input dataset (a block is the unit Ray hands a worker)
MAX_BLOCKS = 10_000


@dataclass
class Tally:
    """Counts of one run, updated batch by batch (what progress lines and the summary show)."""

    todo: int = 0
    images: int = 0
    errors: int = 0
    sources: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)

    first: float | None = None  # when the first answers came back (Ray and the workers started)
    first_images: int = 0

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        if self.first is None:
            self.first, self.first_images = time.perf_counter(), len(rows)
        for r in rows:
            self.images += 1
            if r.get("error") is not None:
                self.errors += 1
            else:
                self.sources[r.get("source") or "unknown"] += 1

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def startup(self) -> float | None:
        return None if self.first is None else self.first - self.started

    @property
    def steady_rate(self) -> float | None:
        """images/s once the first answers came back (start-up of Ray and the workers left out)."""
        if self.first is None or self.images <= self.first_images:
            return None
        return (self.images - self.first_images) / max(time.perf_counter() - self.first, 1e-9)


def check_existing(existing: Sequence[dict[str, Any]], snapshot: GallerySnapshot, label: str) -> None:
    """Refuse to resume an output written against another gallery generation or encoder."""
    generations = {r["gallery_generation"] for r in existing}
    encoders = {r["encoder_id"] for r in existing}
    if generations - {snapshot.generation} or encoders - {snapshot.encoder_id}:
        raise OutputMismatch(
            f"{label} holds answers from gallery generation {sorted(generations)} (encoder {', '.join(sorted(encoders))}); "
            f"the gallery is now at generation {snapshot.generation}: resuming would mix them (use a new --out)"
        )


def run_batch(
    labels: Sequence[str],
    uris: Sequence[str],
    snapshot: GallerySnapshot,
    options: BatchOptions,
    output,
    *,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    batch_size: int = 32,
    flush_rows: int = 2000,
    flush_seconds: float = 30.0,
    on_progress: Callable[[Tally], None] | None = None,
) -> dict[str, Any]:
    """Identify the images of ``labels``/``uris`` not yet in ``output``; returns the summary."""
    existing = output.existing()
    check_existing(existing, snapshot, output.label)
    done = {r["path"] for r in existing}
    todo = [(label, uri) for label, uri in zip(labels, uris) if label not in done]
    tally = Tally(todo=len(todo))
    used_workers = 0
    if todo:
        with ray_session(address) as ray:
            used_workers = _worker_count(ray, address, workers, cpus_per_worker, math.ceil(len(todo) / batch_size))
            ds = _dataset(ray, todo, snapshot, options, used_workers, cpus_per_worker, gpus_per_worker, batch_size)
            try:
                _drain(ds, output, tally, flush_rows, flush_seconds, on_progress)
            except ray.exceptions.RayError as exc:  # a worker that could not start (its encoder, its plugins)
                raise AttribError(f"the Ray job failed: {_cause(exc)}") from None
    return summary(tally, existing, snapshot, output, len(labels) - len(todo), used_workers, address)


def _worker_count(ray, address, workers, cpus_per_worker, batches) -> int:
    if workers is None:
        cpus = ray.cluster_resources().get("CPU", 1) if address else (os.cpu_count() or 1)
        workers = max(1, int(cpus // max(cpus_per_worker, 1e-9)))
    return max(1, min(workers, batches))


def _dataset(ray, todo, snapshot, options, workers, cpus_per_worker, gpus_per_worker, batch_size):
    import pyarrow as pa

    rows_per_block = max(batch_size, math.ceil(len(todo) / MAX_BLOCKS))
    blocks = [
        pa.table({"path": [t[0] for t in todo[i : i + rows_per_block]], "uri": [t[1] for t in todo[i : i + rows_per_block]]})
        for i in range(0, len(todo), rows_per_block)
    ]
    ds = ray.data.from_arrow(blocks)
    return ds.map_batches(
        Identifier,
        # the snapshot goes into the object store once; the ref travels inside a list, so Ray hands
        # it to each actor as a ref (fetched there) rather than as a constructor argument it must keep
        fn_constructor_kwargs={"snapshot": [ray.put(snapshot)], "options": options},
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus_per_worker,
        num_gpus=gpus_per_worker or None,
    )


def _drain(ds, output, tally: Tally, flush_rows: int, flush_seconds: float, on_progress) -> None:
    """Stream the answers into ``output``: a part every ``flush_rows`` rows or ``flush_seconds``;
    what has arrived is written even when the run is interrupted."""
    import pyarrow as pa

    from .rows import table_to_rows

    pending: list = []
    last = time.monotonic()

    def flush():
        nonlocal last
        if pending:
            output.write(pa.concat_tables(pending))
            pending.clear()
        last = time.monotonic()

    try:
        for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            if not table.num_rows:
                continue
            pending.append(table)
            tally.add(list(table_to_rows(table.select(["path", "source", "error"]))))
            if sum(t.num_rows for t in pending) >= flush_rows or time.monotonic() - last >= flush_seconds:
                flush()
            if on_progress:
                on_progress(tally)
    finally:
        flush()
        output.close()


def _cause(exc: BaseException) -> str:
    """The last line of the innermost error Ray wrapped (its traceback stays in Ray's logs)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


@contextmanager
def ray_session(address: str | None):
    """Ray, connected to ``address`` (``auto``, ``ray://host:10001``) or started locally; a Ray
    this call started is stopped when it ends. An already initialised Ray is used as it is."""
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # attrib reports progress itself, on stderr
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled": we know
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "configure_logging": True}
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(include_dashboard=False, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise AttribError(f"cannot start Ray{' at ' + address if address else ''}: {str(exc).splitlines()[0]}") from None
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def summary(tally: Tally, existing, snapshot: GallerySnapshot, output, skipped: int, workers: int, address: str | None) -> dict:
    total = Tally()
    total.add(existing)
    return {
        "out": output.label,
        "format": output.format,
        "images": tally.images,
        "errors": tally.errors,
        "skipped": skipped,
        "seconds": round(tally.seconds, 3),
        "images_per_s": round(tally.rate, 2),
        "startup_s": None if tally.startup is None else round(tally.startup, 2),
        "steady_images_per_s": None if tally.steady_rate is None else round(tally.steady_rate, 2),
        "sources": dict(tally.sources.most_common()),
        "total": {
            "images": total.images + tally.images,
            "errors": total.errors + tally.errors,
            "sources": dict((total.sources + tally.sources).most_common()),
        },
        "gallery": snapshot.describe(),
        "workers": workers,
        "address": address or "local",
    }
