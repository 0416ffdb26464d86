"""attrib plugins"""

from __future__ import annotations

import click

from .common import echo_json, json_option, plugin_manager


@click.command()
@click.option("--all", "all_", is_flag=True, help="Include attrib's built-in plugins.")
@json_option
@click.pass_context
def plugins(ctx, all_, json_):
    """List installed plugins: distribution, version, hooks and what they register.

    Plugins are Python packages with an entry point in the ``attrib`` group. ATTRIB_LOAD_PLUGINS
    (comma-separated distribution names; empty for none) chooses which of them load. A plugin
    that failed to load, whose hook raised or whose registration was refused (a name already
    taken) is listed with its error.

    With --json: a list of {name, distribution, version, builtin, hooks, registers, error}.
    """
    from ..detectors import collect_detectors
    from ..encoders import collect_encoders
    from ..plugins import list_plugins
    from ..verdict import collect_rules

    pm = plugin_manager(ctx)
    # call the registration hooks first, so a hook that raises or a refused registration (a name
    # already taken) is listed as that plugin's error
    collect_encoders(pm)
    collect_detectors(pm)
    collect_rules(pm)
    rows = list_plugins(pm, include_builtin=all_)
    if json_:
        echo_json(rows)
        return
    if not rows:
        click.echo("No plugins installed (attrib plugins --all shows the built-in ones).")
        return
    for r in rows:
        origin = "built-in" if r["builtin"] else f"{r['distribution'] or '?'} {r['version'] or ''}".strip()
        click.echo(f"{r['name']}  [{origin}]")
        if r["hooks"]:
            click.echo(f"  hooks: {', '.join(r['hooks'])}")
        for kind, names in sorted(r["registers"].items()):
            if names:
                click.echo(f"  {kind}: {', '.join(names)}")
        if r["error"]:
            click.echo(f"  error: {r['error']}")
