"""Cache keys and derived seeds: what decides whether a generator or an image is reused."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

#: Bumped whenever a change alters generated pixels; part of every cache key and of the manifest.
ZOO_VERSION = "2"


def digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def derive_seed(*parts) -> int:
    """A 63-bit seed derived from ``parts`` (stable across runs and machines)."""
    return int(digest(*parts)[:15], 16)


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
