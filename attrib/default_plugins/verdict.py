"""Built-in verdict rules (C2PA, watermark, metadata, fingerprint, detector scores), registered
through the ``register_verdict_rules`` hook exactly like a plugin's; :mod:`attrib.verdict`
documents what each needs and how their findings are reconciled."""

from ..hookspecs import hookimpl
from ..verdict import builtin_rules


@hookimpl
def register_verdict_rules(register):
    for rule in builtin_rules():
        register(rule)
