"""Detectors: evidence about an image, beside the attribution.

A detector looks at one image on its own terms (the residual spectrum, pixel relationships,
metadata, a C2PA manifest, an invisible watermark) and returns :class:`Evidence`::

    {"detector": "spectral", "verdict": "synthetic", "score": 0.93,
     "source_hint": null, "details": {...}, "error": null}

* ``verdict``: ``"synthetic"``, ``"real"`` or ``"undetermined"`` (no evidence either way, or an error).
* ``score``: in [0, 1], how strongly the evidence points to a generated image (1) rather than a
  real one (0); ``null`` when the detector has nothing to score (no manifest found, an error).
* ``source_hint``: a generator name when the evidence names one (a C2PA claim, a checkpoint name
  in the metadata, a known watermark), else ``null``.
* ``details``: JSON-serialisable, detector-specific.
* ``error``: ``null``, or one line saying why this detector gave no answer. A detector that raises,
  returns something malformed or runs past its time bound is reported here; it never breaks the
  request or the other detectors.

Detectors are registered through the ``register_detectors`` hook (built-ins in
:mod:`attrib.default_plugins.detectors`). :class:`DetectorRunner` runs them, each in its own
daemon thread under a time bound (``ATTRIB_DETECTOR_TIMEOUT`` seconds, default 10). A detector that
timed out and is still busy is skipped for the next images rather than piling up threads; after
:data:`MAX_TIMEOUTS` time-outs it is skipped for the rest of the run.

Library use::

    from attrib.detectors import detect
    for ev in detect("img.png"):
        print(ev.detector, ev.verdict, ev.score)
"""

from __future__ import annotations

import io
import json
import math
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pluggy

from . import plugins
from .errors import AttribError, ImageError

VERDICTS = ("synthetic", "real", "undetermined")
#: Seconds a detector may take on one image (``ATTRIB_DETECTOR_TIMEOUT`` overrides it).
DEFAULT_TIMEOUT = 10.0
#: After this many time-outs a detector is skipped for the rest of a run.
MAX_TIMEOUTS = 2

_MIME = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    "AVIF": "image/avif",
    "HEIF": "image/heif",
    "MPO": "image/jpeg",
}


def detector_timeout() -> float:
    """The time bound in force: ``ATTRIB_DETECTOR_TIMEOUT`` seconds, else :data:`DEFAULT_TIMEOUT`."""
    value = os.environ.get("ATTRIB_DETECTOR_TIMEOUT")
    if not value:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        raise AttribError(f"ATTRIB_DETECTOR_TIMEOUT must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise AttribError(f"ATTRIB_DETECTOR_TIMEOUT must be > 0, got {value!r}")
    return seconds


@dataclass
class Evidence:
    """What one detector says about one image (see the module docstring for each field)."""

    detector: str
    verdict: str = "undetermined"
    score: float | None = None
    source_hint: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "verdict": self.verdict,
            "score": self.score,
            "source_hint": self.source_hint,
            "details": self.details,
            "error": self.error,
        }

    @classmethod
    def failure(cls, detector: str, error: str, **details) -> Evidence:
        return cls(detector, "undetermined", None, None, details, error)


class DetectorImage:
    """What a detector looks at: the decoded pixels (``H x W x 3`` uint8, read-only, native
    resolution) and the file's bytes, where metadata, manifests and watermarks live.

    Either may be given; the other is derived lazily (pixels decoded from the bytes with
    :func:`attrib.load_image`, bytes read from ``path``). ``data`` is None for images that never
    were a file (arrays).
    """

    def __init__(
        self,
        pixels: np.ndarray | None = None,
        data: bytes | None = None,
        path: str | os.PathLike | None = None,
        format: str | None = None,
    ):
        if pixels is None and data is None and path is None:
            raise ValueError("DetectorImage needs pixels, data or a path")
        self._pixels = _read_only(pixels) if pixels is not None else None
        self._data = data
        self.path = None if path is None else str(path)
        self._format = format
        self._lock = threading.RLock()

    @classmethod
    def from_source(cls, source, name: str | None = None) -> DetectorImage:
        """A :class:`DetectorImage` from a path, bytes, an array, a PIL image, a
        :class:`attrib.imageio.LoadedImage` or a DetectorImage. Raises ImageError for bad input."""
        from PIL import Image

        from .imageio import LoadedImage, load_image

        if isinstance(source, DetectorImage):
            return source
        if isinstance(source, LoadedImage):
            return cls(pixels=source.pixels, path=source.origin, format=source.format)
        if isinstance(source, np.ndarray):
            return cls(pixels=load_image(source, name=name).pixels, path=name)
        if isinstance(source, Image.Image):
            buf = io.BytesIO()
            source.save(buf, format="PNG", pnginfo=_png_info(source))
            source = buf.getvalue()
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            loaded = load_image(data, name=name or "<bytes>")
            return cls(pixels=loaded.pixels, data=data, path=name, format=loaded.format)
        loaded = load_image(source, name=name)
        return cls(pixels=loaded.pixels, path=str(source), format=loaded.format)

    @property
    def pixels(self) -> np.ndarray:
        if self._pixels is None:
            with self._lock:
                if self._pixels is None:
                    from .imageio import load_image

                    data = self.data
                    if data is None:
                        raise ImageError(f"{self.name}: no pixels and no file to decode")
                    loaded = load_image(data, name=self.name)
                    self._format = self._format or loaded.format
                    self._pixels = _read_only(loaded.pixels)
        return self._pixels

    @property
    def data(self) -> bytes | None:
        """The file's bytes (None for an in-memory array)."""
        if self._data is None and self.path is not None and self.path != "-":
            with self._lock:
                if self._data is None:
                    from .imageio import DEFAULT_MAX_BYTES

                    path = Path(self.path)
                    try:
                        if path.stat().st_size > DEFAULT_MAX_BYTES:
                            raise ImageError(f"{self.name}: file is over the {DEFAULT_MAX_BYTES // 2**20} MiB bound")
                        self._data = path.read_bytes()
                    except OSError as exc:
                        raise ImageError(f"{self.name}: cannot read ({exc.strerror or exc})") from None
        return self._data

    @property
    def name(self) -> str:
        return self.path or "<image>"

    @property
    def format(self) -> str | None:
        """Pillow's format name (``"PNG"``, ``"JPEG"``, ...) of the file, when there is one."""
        if self._format is None and self.data is not None:
            try:
                with self.open() as img:
                    self._format = img.format
            except ImageError:
                pass
        return self._format

    @property
    def mime_type(self) -> str | None:
        return _MIME.get(self.format or "")

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    def open(self):
        """A fresh Pillow image over the file's bytes, not yet decoded: for metadata (``.info``,
        ``.text``, ``.getexif()``). Raises ImageError when there are no bytes."""
        from PIL import Image, UnidentifiedImageError

        data = self.data
        if data is None:
            raise ImageError(f"{self.name}: no file bytes (an in-memory image carries no metadata)")
        try:
            return Image.open(io.BytesIO(data))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{self.name}: not an image file Pillow can read ({exc})") from None


def _read_only(pixels: np.ndarray) -> np.ndarray:
    view = pixels.view()
    view.flags.writeable = False
    return view


def _png_info(img):
    """Keep a PIL image's PNG text chunks when it is re-encoded as PNG bytes."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (getattr(img, "text", None) or {}).items():
        info.add_text(key, value)
    return info


class Detector:
    """Base class of detectors, built-in or from plugins.

    Subclasses set :attr:`name` and :attr:`description` and implement :meth:`detect`. The runner
    owns the rest: the time bound, catching errors, checking what comes back.
    """

    #: unique registry name, e.g. ``"spectral"`` or ``"c2pa"``
    name: str = ""
    #: one line for ``attrib detectors list``
    description: str = ""
    #: seconds this detector may take on one image; None: the runner's bound
    timeout: float | None = None

    def detect(self, image: DetectorImage) -> Evidence | dict[str, Any]:
        """Look at ``image`` and return :class:`Evidence` (or a dict with its fields)."""
        raise NotImplementedError

    def evidence(self, verdict: str = "undetermined", score: float | None = None, source_hint: str | None = None, **details) -> Evidence:
        """Shorthand for ``Evidence(self.name, verdict, score, source_hint, details)``."""
        return Evidence(self.name, verdict, score, source_hint, details)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def check_detector(obj) -> str | None:
    """Why ``obj`` cannot be registered as a detector, or None when it can."""
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name.strip():
        return f"{obj!r} has no name: a detector needs a non-empty string `name`"
    if not callable(getattr(obj, "detect", None)):
        return f"detector {name!r} has no detect(image) method"
    return None


def _json_safe(value):
    """``value`` with numpy scalars / arrays and paths turned into plain JSON types.

    Not :func:`attrib.report.jsonable`, on purpose: a detector's ``details`` may hold numpy arrays
    and non-string keys (tuples), which this accepts and ``jsonable`` does not, while a numpy NaN
    or inf passes through here and fails the detector as not JSON-serialisable, where ``jsonable``
    would write null. One sanitiser for both would change what detectors report."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def normalise(name: str, result) -> Evidence:
    """Check what a detector returned; anything malformed becomes an error :class:`Evidence`."""
    if isinstance(result, Evidence):
        ev = Evidence(name, result.verdict, result.score, result.source_hint, result.details, result.error)
    elif isinstance(result, dict):
        unknown = set(result) - {"detector", "verdict", "score", "source_hint", "details", "error"}
        if unknown:
            return Evidence.failure(name, f"returned unknown evidence fields {sorted(unknown)}")
        ev = Evidence(
            name,
            result.get("verdict", "undetermined"),
            result.get("score"),
            result.get("source_hint"),
            result.get("details") or {},
            result.get("error"),
        )
    else:
        return Evidence.failure(name, f"returned {type(result).__name__}, not Evidence")
    if ev.verdict not in VERDICTS:
        return Evidence.failure(name, f"returned verdict {ev.verdict!r}; expected one of {', '.join(VERDICTS)}")
    if ev.score is not None:
        if isinstance(ev.score, bool) or not isinstance(ev.score, (int, float, np.integer, np.floating)):
            return Evidence.failure(name, f"returned a {type(ev.score).__name__} score; expected a number in [0, 1] or None")
        score = float(ev.score)
        if not (0.0 <= score <= 1.0):  # also catches NaN
            return Evidence.failure(name, f"returned score {score!r} outside [0, 1]")
        ev.score = score
    if ev.source_hint is not None and not isinstance(ev.source_hint, str):
        ev.source_hint = str(ev.source_hint)
    if not isinstance(ev.details, dict):
        return Evidence.failure(name, f"returned details of type {type(ev.details).__name__}; expected a dict")
    try:
        ev.details = json.loads(json.dumps(_json_safe(ev.details), allow_nan=False))
    except (TypeError, ValueError) as exc:
        return Evidence.failure(name, f"returned details that are not JSON-serialisable ({exc})")
    if ev.error is not None:
        ev.error = str(ev.error).strip().splitlines()[0] if str(ev.error).strip() else "error"
        ev.verdict, ev.score = "undetermined", None
    return ev


def _error_line(exc: BaseException) -> str:
    if isinstance(exc, AttribError):
        text = str(exc)
    else:
        lines = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text[:500]


class _Call:
    """One detector on one image, in a daemon thread (a hung detector never blocks exit)."""

    def __init__(self, detector, image: DetectorImage):
        self.detector = detector
        self.result: Any = None
        self.exc: BaseException | None = None
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._run, args=(image,), name=f"attrib-detector-{detector.name}", daemon=True)
        self.thread.start()

    def _run(self, image):
        try:
            self.result = self.detector.detect(image)
        except BaseException as exc:  # noqa: BLE001 - reported as evidence, whatever it is
            self.exc = exc


class DetectorRunner:
    """Runs detectors on images: concurrently per image, each under its time bound.

    ``failures`` (plugins whose ``register_detectors`` raised) are reported as error evidence in
    every result, so a broken plugin is visible where its detectors would have been.
    """

    def __init__(self, detectors: Sequence[Detector], timeout: float | None = None, failures: Iterable[dict] = ()):
        self.detectors = list(detectors)
        #: an explicit ``timeout`` bounds every detector; the default (ATTRIB_DETECTOR_TIMEOUT, else
        #: 10 s) gives way to a detector's own ``timeout`` attribute
        self.explicit = timeout is not None
        self.timeout = float(timeout) if timeout is not None else detector_timeout()
        if not self.timeout > 0:
            raise AttribError(f"detector time bound must be > 0 seconds, got {timeout}")
        self.failures = [Evidence.failure(f"{f['name']}", f"{f.get('hook') or 'plugin'} failed: {f['error']}") for f in failures]
        self._timeouts: dict[str, int] = defaultdict(int)
        self._busy: dict[str, _Call] = {}

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.detectors]

    def _bound(self, detector) -> float:
        own = getattr(detector, "timeout", None)
        if self.explicit or not (isinstance(own, (int, float)) and own > 0):
            return self.timeout
        return float(own)

    def _skip_reason(self, detector) -> str | None:
        name = detector.name
        if self._timeouts[name] >= MAX_TIMEOUTS:
            return f"skipped: timed out on {self._timeouts[name]} earlier images (bound {self._bound(detector):g} s)"
        busy = self._busy.get(name)
        if busy is not None:
            if busy.thread.is_alive():
                return f"skipped: still busy with an earlier image after timing out (bound {self._bound(detector):g} s)"
            del self._busy[name]
        return None

    def run(self, image) -> list[Evidence]:
        """Every detector's evidence about ``image`` (a path, bytes, array, PIL image,
        LoadedImage or DetectorImage), in registration order. Raises ImageError only when
        ``image`` itself cannot be read."""
        image = DetectorImage.from_source(image)
        results: list[Evidence | None] = [None] * len(self.detectors)
        calls: list[tuple[int, _Call]] = []
        for i, det in enumerate(self.detectors):
            reason = self._skip_reason(det)
            if reason:
                results[i] = Evidence.failure(det.name, reason)
            else:
                calls.append((i, _Call(det, image)))
        for i, call in calls:
            det = call.detector
            bound = self._bound(det)
            call.thread.join(max(0.0, call.started + bound - time.monotonic()))
            if call.thread.is_alive():
                self._timeouts[det.name] += 1
                self._busy[det.name] = call
                results[i] = Evidence.failure(det.name, f"timed out after {bound:g} s")
            elif call.exc is not None:
                results[i] = Evidence.failure(det.name, _error_line(call.exc))
            else:
                results[i] = normalise(det.name, call.result)
        return [*self.failures, *results]


def _check_registration(detector) -> tuple[str, dict[str, Any]]:
    problem = check_detector(detector)
    if problem is not None:
        raise plugins.Refused(problem)
    return detector.name, {"detector": detector, "description": detector.description}


def collect_detectors(pm: pluggy.PluginManager) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """``({name: {"detector", "description", "plugin"}}, failures)`` from every
    ``register_detectors`` hook of ``pm``. A failure is a hook that raised, an object that is not
    a detector or a name already taken (the first registration wins: built-ins come first)."""
    return plugins.collect(pm, "register_detectors", "detector", _check_registration)


def available_detectors(pm: pluggy.PluginManager | None = None) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """``({name: {"detector", "description", "plugin"}}, failures)`` of the registered detectors
    (on ``pm``, else the library's shared manager)."""
    return collect_detectors(pm or plugins.get_plugin_manager())


def make_runner(pm: pluggy.PluginManager | None = None, names: Sequence[str] | None = None, timeout: float | None = None) -> DetectorRunner:
    """A :class:`DetectorRunner` over the registered detectors, or only ``names`` (in that order).
    Raises AttribError for a name that is not registered."""
    registry, failures = available_detectors(pm)
    if not names:
        return DetectorRunner([info["detector"] for info in registry.values()], timeout, failures)
    missing = [n for n in names if n not in registry]
    if missing:
        known = ", ".join(registry) or "none"
        broken = "".join(f"; plugin {f['name']} failed: {f['error']}" for f in failures)
        raise AttribError(f"unknown detector {missing[0]!r} (registered: {known}{broken})")
    return DetectorRunner([registry[n]["detector"] for n in dict.fromkeys(names)], timeout)


def detect(
    source, names: Sequence[str] | None = None, pm: pluggy.PluginManager | None = None, timeout: float | None = None
) -> list[Evidence]:
    """Run the registered detectors (or ``names``) on one image; see :class:`DetectorRunner`."""
    return make_runner(pm, names, timeout).run(source)


def summarise(evidence: Sequence[Evidence | dict]) -> str:
    """A compact one-line summary: ``spectral synthetic 0.93 · npr real 0.12 · c2pa error``."""
    parts = []
    for ev in evidence:
        ev = ev.to_dict() if isinstance(ev, Evidence) else ev
        if ev["error"]:
            word = "timeout" if "timed out" in ev["error"] else "error"
            parts.append(f"{ev['detector']} {word}")
            continue
        text = f"{ev['detector']} {ev['verdict']}"
        if ev["score"] is not None:
            text += f" {ev['score']:.2f}"
        if ev["source_hint"]:
            text += f" ({ev['source_hint']})"
        parts.append(text)
    return " · ".join(parts) if parts else "none"
