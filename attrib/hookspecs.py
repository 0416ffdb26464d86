"""Plugin hooks. A plugin is a module or package registered under the ``attrib`` entry-point group
that implements some of these functions, decorated with ``@attrib.hookimpl``::

    # pyproject.toml of the plugin package
    [project.entry-points.attrib]
    my_plugin = "attrib_my_plugin"

Built-in pieces (:mod:`attrib.default_plugins`) are registered through the same hooks. Every hook
is called on a fresh plugin manager per CLI invocation or app; a hook that raises is reported
(``attrib plugins``, detector results), it never stops attrib. docs/plugins.md is the tutorial.
"""

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("attrib")
hookimpl = HookimplMarker("attrib")


@hookspec
def register_encoders(register):
    """Register encoders: call ``register(name, factory, description="")``.

    ``factory(**kwargs)`` returns an :class:`attrib.encoders.Encoder`. Built-in encoders are
    registered through this hook too. Encoder names are unique across plugins: the first
    registration of a name wins (built-ins come first), a later one is refused and reported.
    The hook is called once per plugin manager (the registry is cached beside it)."""


@hookspec
def register_detectors(register):
    """Register detectors: call ``register(detector)`` once per detector.

    ``detector`` is an :class:`attrib.detectors.Detector` (a ``name``, a ``description`` and a
    ``detect(image)`` method returning :class:`attrib.detectors.Evidence`). Keep construction
    cheap; import heavy libraries inside ``detect``. Detector names are unique across plugins:
    the first registration of a name wins (built-ins come first), a later one is refused and
    reported."""


@hookspec
def register_commands(cli):
    """Add extra commands to the ``attrib`` click group ``cli``."""


@hookspec
def register_verdict_rules(register):
    """Register rules of the verdict (:mod:`attrib.verdict`): call ``register(rule)`` once per rule.

    ``rule`` has a ``name`` (unique across plugins: the first registration wins, built-ins come
    first), a ``priority`` (a number; lower runs first; the built-ins use 100, 200, 300, 400, 500)
    and an ``evaluate(facts)`` method returning :class:`attrib.verdict.Finding` objects (one, a
    list, or None). A rule that raises is reported in the verdict's ``errors``, never fatal."""
