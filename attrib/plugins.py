"""The plugin manager. Built-in pieces in :mod:`attrib.default_plugins` are registered exactly like
outside plugins, which come from the ``attrib`` entry-point group.

``ATTRIB_LOAD_PLUGINS`` (comma-separated distribution names, empty for none) limits which
installed plugins load. A fresh manager is built per CLI invocation or app; nothing is global
at import time.
"""
from __future__ import annotations

import importlib
import os
from typing import Any

import pluggy

from . import hookspecs

DEFAULT_PLUGINS = ("attrib.default_plugins.encoders",)

_cached: pluggy.PluginManager | None = None


def make_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("attrib")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if load_entry_points:
        wanted = os.environ.get("ATTRIB_LOAD_PLUGINS")
        if wanted is None:
            pm.load_setuptools_entrypoints("attrib")
        else:
            from importlib.metadata import entry_points

            names = {n.strip() for n in wanted.split(",") if n.strip()}
            for ep in entry_points(group="attrib"):
                if ep.dist is not None and ep.dist.name in names and not pm.has_plugin(ep.name):
                    pm.register(ep.load(), name=ep.name)
    return pm


def get_plugin_manager() -> pluggy.PluginManager:
    """A process-wide manager for library callers that don't pass their own."""
    global _cached
    if _cached is None:
        _cached = make_plugin_manager()
    return _cached


def collect_encoders(pm: pluggy.PluginManager) -> dict[str, dict[str, Any]]:
    registry: dict[str, dict[str, Any]] = {}

    for impl in pm.hook.register_encoders.get_hookimpls():
        plugin_name = impl.plugin_name

        def register(name, factory, description="", _plugin=plugin_name):
            registry[name] = {"factory": factory, "description": description, "plugin": _plugin}

        impl.function(register=register)
    return registry
