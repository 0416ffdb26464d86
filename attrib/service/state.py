"""What the handlers share: settings, keys, metrics, the encoder and its runners, the gallery
store, the detectors. One :class:`ServiceState` per app, built at start-up (the lifespan) and
handed to the handlers by dependency (:func:`attrib.service.routes.common.get_state`)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..gallery import Gallery
from ..plugins import make_plugin_manager
from ..verdict import make_judge
from . import extensions
from .batching import EncoderProcesses, EncoderThreads, MicroBatcher
from .config import ConfigError, ServiceConfig
from .errors import ServiceError, one_line
from .intake import PixelBudget
from .metrics import Metrics
from .middleware import KeyRing
from .store import GalleryStore, IdentifyBatcher

log = logging.getLogger("attrib.service")


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
        self.judge = None  # the verdict's rules (attrib.verdict.Judge), collected at start-up
        self.detect_pool: ThreadPoolExecutor | None = None
        self.started_at = time.time()
        self.web_map = None  # the web page's gallery map, refitted per generation (routes.web)

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
        self.detectors = _detectors(self.pm, cfg)  # a bad --detectors fails at start-up
        self.judge = make_judge(self.pm)
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
        self._gauges()
        log.info(
            "serving",
            extra={
                "fields": {
                    "encoder": self.encoder.id,
                    "sources": stats["sources"],
                    "samples": stats["samples"],
                    "generation": stats["generation"],
                    "settings": cfg.describe(),
                    "encoder_runs_in": f"{self.encoder_runner.n} {self.encoder_runner.kind}",
                    "detectors": self.detectors.names(),
                }
            },
        )

    def _gauges(self) -> None:
        m = self.metrics
        m.gauge("attrib_encoder_queue_images", "Images waiting for the encoder.", lambda: self.batcher.queued)
        m.gauge("attrib_encoder_busy", "Encoder calls running now.", lambda: self.batcher.busy)
        m.gauge("attrib_decoded_pixels_held", "Decoded pixels held by requests now.", lambda: self.budget.used)
        m.gauge("attrib_uptime_seconds", "Seconds since this worker started.", lambda: time.time() - self.started_at)

    def _encoder_runner(self, spec: str | None):
        """Encoder processes when asked for and the encoder can be rebuilt from its spec in a fresh
        process (plugins loaded as here); else threads of this process."""
        cfg = self.config
        workers = max(1, cfg.workers)
        n = cfg.encoder_processes()
        if n > 0 and spec:
            threads = max(1, (os.cpu_count() or 1) // (workers * n))
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
            sys.modules["torch"].set_num_threads(max(1, (os.cpu_count() or 1) // workers))
        return EncoderThreads(self.encoder, cfg.encode_threads)

    def stop(self) -> None:
        if self.store is not None:
            self.store.close()
        for pool in (self.decode_pool, self.detect_pool):
            if pool is not None:
                pool.shutdown(wait=True)


def _detectors(pm, config: ServiceConfig) -> extensions.Detectors:
    """The detectors, with the configured default set checked (a bad one is a ConfigError)."""
    detectors = extensions.Detectors(pm, config.detector_timeout)
    try:
        detectors.choose(config.default_detectors)
    except ServiceError as exc:
        raise ConfigError(f"--detectors: {exc.message}") from None
    return detectors


def gallery_info(g: Gallery) -> dict[str, Any]:
    """The gallery's counts and encoder, as /v1/health shows them."""
    stats = g.stats()
    stats.pop("path", None)  # the server's file system is nobody's business
    return stats


def preflight(config: ServiceConfig, pm=None) -> dict[str, Any]:
    """What start-up would refuse, checked before a server starts: the gallery opens (or is created)
    with its encoder, the default detectors exist. Raises AttribError (ConfigError among them)."""
    pm = pm or make_plugin_manager()
    gallery = Gallery(config.gallery, encoder=config.encoder, create=True, pm=pm)
    try:
        stats = gallery_info(gallery)
    finally:
        gallery.close()
    _detectors(pm, config)
    return stats
