"""attrib recipe build|show"""

from __future__ import annotations

from pathlib import Path

import click

from .common import echo_json, gallery_option, gallery_path, json_option, plugin_manager


@click.group()
def recipe():
    """Declarative gallery recipes (see galleries/README.md)."""


@recipe.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@gallery_option
@json_option
@click.pass_context
def build(ctx, file, json_):
    """Build the gallery a recipe FILE declares (into --gallery)."""
    from ..recipes import Recipe, build_recipe

    rec = Recipe.load(file)
    target = gallery_path(ctx)

    def report(name, n):
        if not json_:
            click.echo(f"  enrolled {n:>3} image(s) into {name}", err=True)

    gallery, results = build_recipe(rec, target, pm=plugin_manager(ctx), progress=report)
    if json_:
        echo_json({"recipe": rec.name, "gallery": str(target), "sources": [r.to_dict() for r in results]})
    else:
        click.echo(f"Built recipe '{rec.name}' into {target}: {len(results)} sources, {sum(r.enrolled for r in results)} samples.")


@recipe.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def show(file, json_):
    """Show what a recipe would enroll, without building the zoo."""
    from ..encoders import DEFAULT_ENCODER
    from ..recipes import Recipe

    rec = Recipe.load(file)
    info = {
        "name": rec.name,
        "description": rec.description,
        "encoder": rec.encoder or DEFAULT_ENCODER,
        "zoo": rec.zoo,
        "shots": rec.shots,
        "unknown": rec.unknown,
        "sources": rec.sources,
    }
    if json_:
        echo_json(info)
    else:
        for k, v in info.items():
            click.echo(f"{k:>12}: {v}")
