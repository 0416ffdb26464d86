"""attrib encoders"""

from __future__ import annotations

import click

from .common import echo_json, json_option, plugin_manager


@click.group()
def encoders():
    """Encoders that turn images into fingerprints."""


@encoders.command("list")
@json_option
@click.pass_context
def list_(ctx, json_):
    """List registered encoders (built-in and from plugins)."""
    from ..encoders import DEFAULT_ENCODER, collect_encoders

    registry, failures = collect_encoders(plugin_manager(ctx))
    rows = [
        {"name": name, "description": info["description"], "plugin": info["plugin"], "default": name == DEFAULT_ENCODER}
        for name, info in sorted(registry.items())
    ]
    if json_:
        echo_json(rows)
    else:
        for r in rows:
            star = "*" if r["default"] else " "
            click.echo(f"{star} {r['name']:<16} {r['description']}  [{r['plugin']}]")
    for f in failures:
        click.echo(f"warning: plugin {f['name']}: {f.get('hook') or 'load'} failed: {f['error']}", err=True)
