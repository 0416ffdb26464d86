"""Plugin hooks. A plugin is a module or package registered under the ``attrib`` entry-point group
that implements some of these functions, decorated with ``@attrib.hookimpl``."""
from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("attrib")
hookimpl = HookimplMarker("attrib")


@hookspec
def register_encoders(register):
    """Register encoders: call ``register(name, factory, description="")``.

    ``factory(**kwargs)`` returns an :class:`attrib.encoders.Encoder`. Built-in encoders are
    registered through this hook too."""


@hookspec
def register_commands(cli):
    """Add extra commands to the ``attrib`` click group ``cli``."""
