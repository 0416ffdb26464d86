"""Encoders: the registry and the built-in ones.

``get_encoder(spec)`` takes a registered name (``"residual"``, or any name a plugin registers
through the ``register_encoders`` hook) or the path of a trained encoder folder.
"""
from __future__ import annotations

import json
from importlib import resources
from typing import Any

from .base import Encoder, l2_normalize

DEFAULT_ENCODER = "fp-wccn2"  # shipped in attrib/data/encoders; beats "residual" and "fp-wccn" on held-out architectures (README)

__all__ = ["Encoder", "l2_normalize", "get_encoder", "list_encoders", "DEFAULT_ENCODER", "load_builtin_calibration"]


def load_builtin_calibration(encoder_id: str) -> dict[str, Any] | None:
    """Calibration prior shipped in ``attrib/data/calibration.json`` for a built-in encoder id."""
    try:
        text = resources.files("attrib").joinpath("data/calibration.json").read_text()
    except (FileNotFoundError, OSError):
        return None
    return json.loads(text).get(encoder_id)


def list_encoders(pm=None) -> dict[str, dict[str, Any]]:
    """Registered encoders: ``{name: {"factory", "description", "plugin"}}``."""
    from ..plugins import get_plugin_manager, collect_encoders

    return collect_encoders(pm or get_plugin_manager())


def get_encoder(spec: str | None = None, pm=None, **kwargs) -> Encoder:
    """Create an encoder from a registered name or a trained encoder folder."""
    from pathlib import Path

    from ..errors import EncoderError

    spec = spec or DEFAULT_ENCODER
    registry = list_encoders(pm)
    if spec in registry:
        return registry[spec]["factory"](**kwargs)
    path = Path(spec)
    if path.exists():
        from .learned import load_encoder  # trained encoders: safetensors + config.json

        return load_encoder(path)
    names = ", ".join(sorted(registry)) or "none"
    raise EncoderError(f"unknown encoder {spec!r}: not a registered name ({names}) nor an encoder folder")
