"""The plugin manager: pluggy only. Built-in pieces in :mod:`attrib.default_plugins` are
registered exactly like outside plugins, which come from the ``attrib`` entry-point group.

``ATTRIB_LOAD_PLUGINS`` chooses which installed plugins load: unset loads all of them, an empty
value loads none (only the built-ins), otherwise a comma-separated list of distribution names
(``attrib-c2pa``) or entry-point names. A fresh manager is built per CLI invocation or app;
nothing is global at import time.

This module knows nothing of encoders or detectors: each domain module (:mod:`attrib.encoders`,
:mod:`attrib.detectors`) collects its own registrations by calling its hook through
:func:`collect` on the manager it is given. Dependencies run one way: domain modules import
this module, never the reverse.

A plugin that cannot be imported, whose hook raises, or whose registration is refused (a name
already taken, an object that is not what the hook expects) never stops attrib: the failure is
kept in :attr:`AttribPluginManager.load_errors` (``attrib plugins`` shows it) and, for
detectors, in every detection result.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "attrib"
DEFAULT_PLUGINS = ("attrib.default_plugins.encoders", "attrib.default_plugins.detectors", "attrib.default_plugins.verdict")

_cached: AttribPluginManager | None = None


class AttribPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers where each plugin came from and what failed."""

    def __init__(self):
        super().__init__("attrib")
        #: plugin name -> {"distribution", "version"} for plugins loaded from entry points
        self.distributions: dict[str, dict[str, str]] = {}
        #: ``{"name", "distribution", "version", "hook", "error"}`` per failure (load or hook call)
        self.load_errors: list[dict[str, Any]] = []

    def record_error(self, name: str, error: BaseException | str, hook: str | None = None) -> dict[str, Any]:
        dist = self.distributions.get(name, {})
        message = error if isinstance(error, str) else _one_line(error)
        entry = {"name": name, "distribution": dist.get("distribution"), "version": dist.get("version"), "hook": hook, "error": message}
        if entry not in self.load_errors:  # hooks are called again and again; report each failure once
            self.load_errors.append(entry)
        return entry


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wanted_plugins() -> set[str] | None:
    """The names ``ATTRIB_LOAD_PLUGINS`` asks for (normalised), or None when it is unset (all)."""
    value = os.environ.get("ATTRIB_LOAD_PLUGINS")
    if value is None:
        return None
    return {_normalise(n.strip()) for n in value.split(",") if n.strip()}


def make_plugin_manager(load_entry_points: bool = True) -> AttribPluginManager:
    """A fresh manager: the built-ins, then the installed plugins ``ATTRIB_LOAD_PLUGINS`` allows."""
    pm = AttribPluginManager()
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if load_entry_points:
        _load_entry_points(pm, wanted_plugins())
    return pm


def _load_entry_points(pm: AttribPluginManager, wanted: set[str] | None) -> None:
    found: set[str] = set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist_name = ep.dist.name if ep.dist is not None else None
        keys = {_normalise(ep.name)} | ({_normalise(dist_name)} if dist_name else set())
        if wanted is not None and not keys & wanted:
            continue
        found |= keys
        if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
            continue
        pm.distributions[ep.name] = {"distribution": dist_name, "version": ep.dist.version if ep.dist is not None else None}
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a broken plugin is reported, never fatal
            pm.record_error(ep.name, exc, hook="load")
    for missing in sorted((wanted or set()) - found):
        pm.record_error(missing, "not installed (named in ATTRIB_LOAD_PLUGINS)", hook="load")


def get_plugin_manager() -> AttribPluginManager:
    """A process-wide manager for library callers that don't pass their own."""
    global _cached
    if _cached is None:
        _cached = make_plugin_manager()
    return _cached


def report_error(pm: pluggy.PluginManager, name: str, error: BaseException | str, hook: str | None = None) -> dict[str, Any]:
    """Record a plugin's failure on ``pm`` (kept once; ``attrib plugins`` shows it) and return it."""
    if isinstance(pm, AttribPluginManager):
        return pm.record_error(name, error, hook=hook)
    return {"name": name, "hook": hook, "error": error if isinstance(error, str) else _one_line(error)}


def call_each(pm: pluggy.PluginManager, hook_name: str, make_kwargs: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """Call every implementation of ``hook_name`` on its own, in registration order (built-ins
    first), so one that raises does not stop the others; ``make_kwargs(plugin_name)`` builds its
    arguments. Returns the failures."""
    failures = []
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        try:
            impl.function(**make_kwargs(impl.plugin_name))
        except Exception as exc:
            failures.append(report_error(pm, impl.plugin_name, exc, hook_name))
    return failures


class Refused(ValueError):
    """Raised by a ``check`` given to :func:`collect`: this registration is refused (and reported)."""


def collect(
    pm: pluggy.PluginManager, hook_name: str, kind: str, check: Callable[..., tuple[str, dict[str, Any]]]
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Call the ``register_*`` hook ``hook_name`` of every plugin with a ``register`` callback and
    gather ``({name: {**info, "plugin"}}, failures)``.

    ``check(*args, **kwargs)`` turns what a plugin passed to ``register`` into ``(name, info)``,
    or raises :class:`Refused` saying why it cannot be registered. Name clashes follow one rule
    for every kind (``kind``: "encoder", "detector"): the first registration wins (built-ins are
    registered first) and each later one is refused. A refusal or a hook that raises is
    recorded on ``pm`` (``attrib plugins`` shows it) and returned; it never stops the others.
    """
    registry: dict[str, dict[str, Any]] = {}
    refused: list[dict[str, Any]] = []

    def make_kwargs(plugin_name):
        def register(*args, **kwargs):
            try:
                name, info = check(*args, **kwargs)
                if name in registry:
                    raise Refused(f"{kind} name {name!r} is already registered by {registry[name]['plugin']}")
            except Refused as exc:
                refused.append(report_error(pm, plugin_name, str(exc), hook_name))
                return
            registry[name] = {**info, "plugin": plugin_name}

        return {"register": register}

    failures = call_each(pm, hook_name, make_kwargs)
    return registry, failures + refused


def register_commands(pm: pluggy.PluginManager, cli) -> list[dict[str, Any]]:
    """Let every plugin add commands to ``cli``; a plugin that raises is skipped (and returned)."""
    return call_each(pm, "register_commands", lambda _: {"cli": cli})


def _probe_kwargs(argnames: tuple[str, ...], names: list[str]) -> dict[str, Any] | None:
    """Arguments for calling a hook alone to see what it registers (into ``names``), or None for a
    hook whose arguments are not a ``register`` callback or a click group ``cli``."""
    import click

    if argnames == ("register",):
        # register(name, ...) for encoders, register(obj) with obj.name for detectors
        return {"register": lambda first, *a, **k: names.append(first if isinstance(first, str) else getattr(first, "name", repr(first)))}
    if argnames == ("cli",):
        return {"cli": click.Group("probe")}
    return None


def _registrations(pm: pluggy.PluginManager, plugin: object) -> dict[str, list[str]]:
    """What ``plugin`` registers through each ``register_*`` hook (by calling its hooks alone)."""
    out: dict[str, list[str]] = {}
    for caller in pm.get_hookcallers(plugin) or []:
        argnames = tuple(caller.spec.argnames) if caller.spec else ()
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            names: list[str] = []
            kwargs = _probe_kwargs(argnames, names)
            if kwargs is None:
                continue
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception:
                continue  # reported when the hook is called for real
            if "cli" in kwargs:
                names = sorted(kwargs["cli"].commands)
            out[caller.name.replace("register_", "")] = names
    return out


def list_plugins(pm: pluggy.PluginManager, include_builtin: bool = False) -> list[dict[str, Any]]:
    """One dict per plugin: ``name``, ``distribution``, ``version``, ``hooks``, ``registers``
    (``{"detectors": [...], "encoders": [...], "verdict_rules": [...], "commands": [...]}``) and ``error`` (None, or why it
    failed to load or why one of its hooks raised). Built-ins only with ``include_builtin``."""
    dists = getattr(pm, "distributions", {})
    errors = getattr(pm, "load_errors", [])
    rows = []
    for name, plugin in pm.list_name_plugin():
        builtin = name in DEFAULT_PLUGINS
        if builtin and not include_builtin:
            continue
        dist = dists.get(name, {})
        plugin_errors = [e for e in errors if e["name"] == name]
        rows.append(
            {
                "name": name,
                "distribution": dist.get("distribution") or ("attrib" if builtin else None),
                "version": dist.get("version") or (_attrib_version() if builtin else None),
                "builtin": builtin,
                "hooks": sorted(c.name for c in pm.get_hookcallers(plugin) or []),
                "registers": _registrations(pm, plugin),
                "error": "; ".join(f"{e['hook']}: {e['error']}" for e in plugin_errors) or None,
            }
        )
    registered = {r["name"] for r in rows}
    for e in errors:  # plugins that never got registered (import failed, not installed)
        if e["name"] not in registered and e["hook"] == "load":
            rows.append(
                {
                    "name": e["name"],
                    "distribution": e.get("distribution"),
                    "version": e.get("version"),
                    "builtin": False,
                    "hooks": [],
                    "registers": {},
                    "error": f"load: {e['error']}",
                }
            )
    return sorted(rows, key=lambda r: (not r["builtin"], r["name"]))


def _attrib_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("attrib")
    except PackageNotFoundError:
        return None
