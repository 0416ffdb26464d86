"""Settings of ``attrib serve``: where the gallery is, who may write, and the bounds on input."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import AttribError

#: environment variable holding API keys (comma-separated); ``--api-key-file`` is the other way
API_KEY_ENV = "ATTRIB_API_KEY"
#: environment variable through which ``attrib serve --workers N`` hands settings to its workers
CONFIG_ENV = "ATTRIB_SERVICE_CONFIG"
#: shortest API key accepted (a key is a bearer secret: guessable keys are refused at start-up)
MIN_KEY_LENGTH = 16


class ConfigError(AttribError):
    """The service cannot start with these settings."""


@dataclass
class ServiceConfig:
    """Everything the app needs. Bounds are per request unless said otherwise."""

    gallery: Path
    #: encoder of a *new* gallery (ignored when the gallery exists: it is bound to its encoder)
    encoder: str | None = None
    #: file with one API key per line (``#`` comments); read by each worker, never logged
    api_key_file: Path | None = None
    #: request body bound in bytes (413 past it)
    max_body_bytes: int = 64 * 2**20
    #: images in one request (413 past it)
    max_images: int = 512
    #: width x height of one image (413 past it)
    max_pixels: int = 40_000_000
    #: width x height summed over one request's images (413 past it)
    max_request_pixels: int = 400_000_000
    #: decoded pixels held by all requests together; past it requests wait (then 503)
    pixel_budget: int = 800_000_000
    #: images waiting for the encoder; past it requests are refused (503)
    max_queued_images: int = 4096
    #: images per encoder call for identify / verify (concurrent requests share a call)
    batch_size: int = 32
    #: images per encoder call for enrollment (kept small so identify never waits long)
    bulk_batch_size: int = 8
    #: worker processes of the server (``attrib serve --workers``); each has its own encoder
    #: processes and threads, so the cores are shared out by this count
    workers: int = 1
    #: encoder processes (each loads the encoder; the model then never holds the server's GIL);
    #: None: one per core (at most 4) shared by the workers; 0 runs the encoder in
    #: ``encode_threads`` threads of the server process instead
    encode_processes: int | None = None
    #: encoder threads when ``encode_processes`` is 0
    encode_threads: int = 1
    #: image decoding threads
    decode_threads: int = 2
    #: gallery read threads (each holds its own SQLite connection)
    read_threads: int = 2
    #: seconds a request may wait for the pixel budget before 503
    admission_timeout: float = 30.0
    #: detectors run on identify when the request does not say: ``"all"`` (as the CLI), ``"none"``
    #: or names separated by commas
    default_detectors: str = "all"
    #: seconds each detector may take on one image (None: ``$ATTRIB_DETECTOR_TIMEOUT``, else 10)
    detector_timeout: float | None = None

    # ``api_keys`` is deliberately not a dataclass field: it never travels through the
    # environment or into a repr / log line.
    _keys: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self):
        self.gallery = Path(self.gallery)
        if self.api_key_file is not None:
            self.api_key_file = Path(self.api_key_file)
        for name in (
            "max_body_bytes",
            "max_images",
            "max_pixels",
            "max_request_pixels",
            "pixel_budget",
            "max_queued_images",
            "batch_size",
            "bulk_batch_size",
            "encode_threads",
            "decode_threads",
            "read_threads",
            "workers",
        ):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.encode_processes is not None and int(self.encode_processes) < 0:
            raise ConfigError("encode_processes must be 0 (threads) or more")
        self.max_request_pixels = max(self.max_request_pixels, self.max_pixels)
        self.pixel_budget = max(self.pixel_budget, self.max_request_pixels)

    # -- keys -----------------------------------------------------------------------------------
    @property
    def api_keys(self) -> tuple[str, ...]:
        return self._keys

    def load_keys(self) -> ServiceConfig:
        """Read keys from ``api_key_file`` and ``$ATTRIB_API_KEY`` (both may be used)."""
        keys: list[str] = []
        if self.api_key_file is not None:
            try:
                text = self.api_key_file.read_text()
            except OSError as exc:
                raise ConfigError(f"cannot read the API key file {self.api_key_file}: {exc.strerror or exc}") from None
            keys += [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
            if not keys:
                raise ConfigError(f"the API key file {self.api_key_file} holds no key")
        env = os.environ.get(API_KEY_ENV, "")
        keys += [k.strip() for k in env.split(",") if k.strip()]
        short = [k for k in keys if len(k) < MIN_KEY_LENGTH]
        if short:
            raise ConfigError(f"API keys must be at least {MIN_KEY_LENGTH} characters ({len(short)} key(s) are shorter)")
        self._keys = tuple(dict.fromkeys(keys))
        return self

    # -- hand-over to worker processes -----------------------------------------------------------
    def to_env(self) -> str:
        data = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        data["gallery"] = str(self.gallery)
        data["api_key_file"] = str(self.api_key_file) if self.api_key_file else None
        return json.dumps(data)

    @classmethod
    def from_env(cls) -> ServiceConfig:
        raw = os.environ.get(CONFIG_ENV)
        if not raw:
            from ..paths import default_gallery

            return cls(gallery=default_gallery()).load_keys()
        return cls(**json.loads(raw)).load_keys()

    def encoder_processes(self) -> int:
        """Encoder processes per worker: as set, else the cores (at most 4) shared by the workers."""
        if self.encode_processes is not None:
            return int(self.encode_processes)
        return max(1, min(4, os.cpu_count() or 1) // max(1, self.workers))

    def describe(self) -> dict:
        """Settings for logs and /v1/health: no keys, no key file path."""
        out = {k: v for k, v in asdict(self).items() if not k.startswith("_") and k not in ("api_key_file", "gallery")}
        out["writes_enabled"] = bool(self._keys)
        return out
