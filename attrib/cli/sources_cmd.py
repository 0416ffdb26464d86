"""attrib sources list|show|add|move|remove|path|propose"""

from __future__ import annotations

import click

from ..sources import FAMILIES
from .common import echo_json, far_option, fmt, gallery_option, gallery_path, json_option, open_gallery, parse_meta


@click.group()
def sources():
    """Enrolled sources (generators) of the gallery."""


@sources.command("list")
@gallery_option
@json_option
@click.pass_context
def list_(ctx, json_):
    """List sources with family, sample count and threshold."""
    gallery = open_gallery(ctx)
    rows = gallery.sources()
    if json_:
        echo_json(rows)
        return
    if not rows:
        click.echo("No sources enrolled.")
        return
    tree = gallery.tree()
    if tree.active:  # a tree: each source under its parent, indented; families as headings
        _print_tree(rows, tree, gallery)
        return
    click.echo(f"{'name':<24} {'family':<14} {'samples':>7} {'protos':>6} {'thresh':>7} {'exp.TAR':>7}")
    for r in rows:
        click.echo(
            f"{r['name']:<24} {r['family']:<14} {r['samples']:>7} {r['prototypes']:>6} {fmt(r['threshold']):>7} {fmt(r['expected_tar'], 2):>7}"
        )


def _print_tree(rows, tree, gallery) -> None:
    from ..gallery.lineage import family_key

    by_name = {r["name"]: r for r in rows}
    fam_thr = gallery.thresholds(sources=[family_key(f) for f in {tree.family_of(n) for n in by_name}])
    click.echo(f"{'name':<30} {'samples':>7} {'protos':>6} {'thresh':>7} {'exp.TAR':>7}")
    family = None
    for name in tree.ordered():
        r = by_name[name]
        if tree.family_of(name) != family:
            family = tree.family_of(name)
            click.echo(f"{family + ' (family)':<30} {'':>7} {'':>6} {fmt(fam_thr.get(family_key(family))):>7}")
        label = "  " * (tree.depth(name) + 1) + name
        click.echo(f"{label:<30} {r['samples']:>7} {r['prototypes']:>6} {fmt(r['threshold']):>7} {fmt(r['expected_tar'], 2):>7}")


@sources.command()
@click.argument("name")
@gallery_option
@json_option
@click.pass_context
def show(ctx, name, json_):
    """Show one source: metadata, calibration and its samples."""
    info = open_gallery(ctx).source(name)
    if json_:
        echo_json(info)
        return
    for key in ("name", "family", "samples", "prototypes", "threshold", "far", "expected_tar", "created_at", "updated_at"):
        click.echo(f"{key:>13}: {info[key]}")
    if info["parent"] or info["children"]:
        click.echo(f"{'lineage':>13}: {' > '.join(info['lineage'])}")
    if info["children"]:
        click.echo(f"{'children':>13}: {', '.join(info['children'])}")
    if info["metadata"]:
        click.echo(f"{'metadata':>13}: {info['metadata']}")
    for s in info["sample_list"]:
        click.echo(f"  {s['sha256'][:12]}  {s['width']}x{s['height']} {s['format'] or '-':<5} {s['origin']}")


@sources.command()
@click.argument("name")
@click.option("--family", type=click.Choice(FAMILIES), help="Family of a root node (under --parent: the parent's).")
@click.option("--parent", help="Parent source (a model line, a release); default: a root of its family.")
@click.option("--meta", multiple=True, callback=parse_meta, metavar="KEY=VALUE", help="Free metadata, repeatable.")
@gallery_option
@json_option
@click.pass_context
def add(ctx, name, family, parent, meta, json_):
    """Add an inner node: a source with no samples of its own (a family's model line, a release).

    Its prototypes are its descendants': enroll them with `attrib enroll --generator NAME
    --parent THIS`. identify answers it when its subtree's images are sure to be its own but not
    which of its children made them.

    \b
    Example:
      attrib sources add sd15 --family diffusion
      attrib enroll --generator deliberate2 --parent sd15 samples/
    """
    gallery = open_gallery(ctx, create=True)
    gallery.add_node(name, family=family, parent=parent, metadata=meta)
    info = next(r for r in gallery.sources() if r["name"] == name)
    if json_:
        echo_json(info)
        return
    click.echo(f"Added '{name}': {' > '.join(info['lineage'])}.")


@sources.command()
@click.argument("name")
@click.option("--parent", help="New parent source.")
@click.option("--root", is_flag=True, help="Make NAME a root (no parent), keeping its family.")
@gallery_option
@json_option
@click.pass_context
def move(ctx, name, parent, root, json_):
    """Re-parent a source, with everything under it (its subtree takes the new tree's family).

    Cycles are refused; thresholds are recalibrated in the same transaction."""
    if bool(parent) == bool(root):
        raise click.UsageError("give exactly one of --parent NAME or --root")
    res = open_gallery(ctx).move_source(name, None if root else parent)
    if json_:
        echo_json(res)
        return
    click.echo(f"Moved '{name}': {' > '.join(res['lineage'])}.")


@sources.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--reparent", "children", flag_value="reparent", help="A source with children: hang them under its parent.")
@click.option("--recursive", "children", flag_value="cascade", help="A source with children: remove them (and their samples) too.")
@gallery_option
@click.pass_context
def remove(ctx, name, yes, children):
    """Remove a source and all its samples.

    A source with children is refused unless told what becomes of them: --reparent or --recursive."""
    gallery = open_gallery(ctx)
    gallery.require_source(name)
    tree = gallery.tree()
    if tree.children.get(name) and children is None:
        gallery.remove_source(name)  # refused with the one-line error that says what to pass
    doomed = tree.subtree(name) if children == "cascade" else [name]
    if not yes:
        what = f"'{name}' and its samples" if len(doomed) == 1 else f"'{name}', {len(doomed) - 1} source(s) under it and their samples"
        click.confirm(f"Remove {what} from {gallery.path}?", abort=True)
    n = gallery.remove_source(name, children=children or "refuse")
    click.echo(f"Removed {', '.join(repr(d) for d in doomed)} ({n} samples).")


@sources.command()
@gallery_option
@click.pass_context
def path(ctx):
    """Print the gallery folder in use."""
    click.echo(str(gallery_path(ctx)))


@sources.command()
@click.option("--min-size", default=3, show_default=True, type=click.IntRange(2, 10_000), help="Smallest cluster worth proposing.")
@far_option("FAR of the pair test that links two images (default: the gallery's).")
@gallery_option
@json_option
@click.pass_context
def propose(ctx, min_size, far, json_):
    """Propose new sources from unknowns kept by `identify --keep-unknown`.

    Rejected images that pass the pair-verification test with each other are grouped; groups of
    at least --min-size images are listed, largest first, with the nearest enrolled source.
    Enroll a group you recognise with `attrib enroll --generator NAME FILES...`.
    """
    proposals = open_gallery(ctx).propose_sources(min_size=min_size, far=far)
    if json_:
        echo_json(proposals)
        return
    if not proposals:
        click.echo("No cluster of kept unknowns is large enough to propose.")
        return
    for n, p in enumerate(proposals, 1):
        click.echo(
            f"proposal {n}: {p['size']} images, cohesion {p['cohesion']:.3f}, nearest enrolled {p['nearest_source']} ({fmt(p['nearest_score'])})"
        )
        for m in p["members"][:10]:
            click.echo(f"  {m}")
        if p["size"] > 10:
            click.echo(f"  ... and {p['size'] - 10} more")
