"""What plugins bring to the service: the detector list, detector runs, the plugin listing.

Detectors come from the ``register_detectors`` hook (:func:`attrib.detectors.available_detectors`)
and run through :class:`attrib.detectors.DetectorRunner`: each under its time bound, a detector
that raises or hangs reported in its evidence entry, never failing the request. Each detector
thread of the service keeps its own runner per set of names (runners are not shared between
threads), so a detector that keeps timing out is skipped from then on rather than piling up
threads. Detectors see the uploaded bytes (for metadata, manifests, watermarks) and the decoded
pixels, never a path on the server.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from .. import plugins
from ..detectors import DetectorImage, DetectorRunner, available_detectors, collect_detectors
from ..encoders import collect_encoders
from ..verdict import collect_rules
from .errors import ServiceError, one_line


class Detectors:
    """The detectors available to this service, and runners over chosen sets of them."""

    def __init__(self, pm, timeout: float | None = None):
        self.registry: dict[str, dict[str, Any]]
        self.failures: list[dict[str, Any]]
        self.registry, self.failures = available_detectors(pm)
        self.timeout = timeout
        self._local = threading.local()

    def __bool__(self) -> bool:
        return bool(self.registry)

    def names(self) -> list[str]:
        return list(self.registry)

    def listing(self) -> list[dict[str, Any]]:
        return [
            {"name": name, "description": info.get("description") or "", "plugin": info.get("plugin")}
            for name, info in self.registry.items()
        ]

    def choose(self, spec: str | None) -> list[str]:
        """Detector names from a request's ``detectors`` field: ``none``, ``all`` or a comma list."""
        spec = (spec or "none").strip()
        if spec.lower() in ("", "none"):
            return []
        if spec.lower() == "all":
            return list(self.registry)
        names = [n.strip() for n in spec.split(",") if n.strip()]
        unknown = [n for n in names if n not in self.registry]
        if unknown:
            known = ", ".join(self.registry) or "none are installed"
            raise ServiceError(422, f"unknown detector(s) {', '.join(unknown)} (available: {known})")
        return list(dict.fromkeys(names))

    def _runner(self, names: tuple[str, ...]):
        runners = getattr(self._local, "runners", None)
        if runners is None:
            runners = self._local.runners = {}
        runner = runners.get(names)
        if runner is None:
            runner = DetectorRunner([self.registry[n]["detector"] for n in names], self.timeout, self.failures)
            runners[names] = runner
        return runner

    def run(self, names: Sequence[str], pixels, data: bytes, format: str | None) -> list[dict[str, Any]]:
        """Evidence of each named detector about one uploaded image (blocking; call in a thread)."""
        image = DetectorImage(pixels=pixels, data=data, path=None, format=format)  # no path: nothing read from disk
        try:
            return [ev.to_dict() for ev in self._runner(tuple(names)).run(image)]
        except Exception as exc:  # the runner itself failed: say so where the evidence would be
            return [
                {
                    "detector": n,
                    "verdict": "undetermined",
                    "score": None,
                    "source_hint": None,
                    "details": {},
                    "error": one_line(f"{type(exc).__name__}: {exc}"),
                }
                for n in names
            ]


def list_plugins(pm, include_builtin: bool = False) -> list[dict[str, Any]]:
    """As ``attrib plugins --json``: the registration hooks are called first (the encoder registry
    is cached per manager; errors are recorded once), so a hook that raises or a refused
    registration is listed as that plugin's error whatever start-up happened to collect."""
    collect_encoders(pm)
    collect_detectors(pm)
    collect_rules(pm)
    return plugins.list_plugins(pm, include_builtin=include_builtin)
