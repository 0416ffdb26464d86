"""Encoders: the registry and the built-in ones.

``get_encoder(spec)`` takes a registered name (``"residual"``, or any name a plugin registers
through the ``register_encoders`` hook) or the path of a trained encoder folder.

The registry of a plugin manager is built once (calling every ``register_encoders`` hook, which
reads the shipped encoders' config.json) and kept beside that manager: a fresh manager gets a
fresh registry, and registering or removing a plugin on a manager rebuilds its registry.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import pluggy

from .. import plugins
from ..errors import EncoderError
from .base import Encoder, l2_normalize, load_builtin_calibration

DEFAULT_ENCODER = "fp-joint4"  # shipped in attrib/data/encoders: fp-joint3's recipe + the forensic self-description; beats it on real generators and the zoo (README)

__all__ = ["Encoder", "l2_normalize", "get_encoder", "list_encoders", "DEFAULT_ENCODER", "load_builtin_calibration"]

HOOK = "register_encoders"

#: plugin manager -> (the register_encoders implementations it was built from, registry, failures)
_registries: weakref.WeakKeyDictionary[pluggy.PluginManager, tuple[tuple, dict, list]] = weakref.WeakKeyDictionary()
_lock = threading.RLock()


def _check_registration(name, factory, description="") -> tuple[str, dict[str, Any]]:
    if not isinstance(name, str) or not name.strip():
        raise plugins.Refused(f"encoder name {name!r}: an encoder needs a non-empty string name")
    if not callable(factory):
        raise plugins.Refused(f"encoder {name!r}: the factory {factory!r} is not callable")
    return name, {"factory": factory, "description": description}


def collect_encoders(pm: pluggy.PluginManager | None = None) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """``({name: {"factory", "description", "plugin"}}, failures)`` from every
    ``register_encoders`` hook of ``pm`` (else the library's shared manager), built once per
    manager. A failure is a hook that raised, a registration that is not a name and a factory,
    or a name already taken (the first registration wins: built-ins come first)."""
    pm = pm or plugins.get_plugin_manager()
    impls = tuple((impl.plugin_name, impl.plugin) for impl in getattr(pm.hook, HOOK).get_hookimpls())
    with _lock:
        cached = _registries.get(pm)
        if cached is None or cached[0] != impls:
            registry, failures = plugins.collect(pm, HOOK, "encoder", _check_registration)
            cached = _registries[pm] = (impls, registry, failures)
    return {name: dict(info) for name, info in cached[1].items()}, list(cached[2])


def list_encoders(pm: pluggy.PluginManager | None = None) -> dict[str, dict[str, Any]]:
    """Registered encoders: ``{name: {"factory", "description", "plugin"}}``."""
    return collect_encoders(pm)[0]


def get_encoder(spec: str | None = None, pm: pluggy.PluginManager | None = None, **kwargs) -> Encoder:
    """Create an encoder from a registered name or a trained encoder folder.

    The encoder's :attr:`Encoder.spec` is the registered name it was made from (a gallery reopens
    it by that name), or the folder's resolved path."""
    from pathlib import Path

    spec = spec or DEFAULT_ENCODER
    registry = list_encoders(pm)
    if spec in registry:
        encoder = registry[spec]["factory"](**kwargs)
        encoder.spec = spec
        return encoder
    path = Path(spec)
    if path.exists():
        from .learned import load_encoder  # trained encoders: safetensors + config.json

        return load_encoder(path)
    names = ", ".join(sorted(registry)) or "none"
    raise EncoderError(f"unknown encoder {spec!r}: not a registered name ({names}) nor an encoder folder")
