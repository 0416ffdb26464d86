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
    from ..encoders import DEFAULT_ENCODER, list_encoders

    rows = [
        {"name": name, "description": info["description"], "plugin": info["plugin"], "default": name == DEFAULT_ENCODER}
        for name, info in sorted(list_encoders(plugin_manager(ctx)).items())
    ]
    if json_:
        echo_json(rows)
        return
    for r in rows:
        star = "*" if r["default"] else " "
        click.echo(f"{star} {r['name']:<16} {r['description']}  [{r['plugin']}]")
