"""attrib sources list|show|remove|path"""

from __future__ import annotations

import click

from .common import echo_json, far_option, fmt, gallery_option, gallery_path, json_option, open_gallery


@click.group()
def sources():
    """Enrolled sources (generators) of the gallery."""


@sources.command("list")
@gallery_option
@json_option
@click.pass_context
def list_(ctx, json_):
    """List sources with family, sample count and threshold."""
    rows = open_gallery(ctx).sources()
    if json_:
        echo_json(rows)
        return
    if not rows:
        click.echo("No sources enrolled.")
        return
    click.echo(f"{'name':<24} {'family':<14} {'samples':>7} {'protos':>6} {'thresh':>7} {'exp.TAR':>7}")
    for r in rows:
        click.echo(
            f"{r['name']:<24} {r['family']:<14} {r['samples']:>7} {r['prototypes']:>6} {fmt(r['threshold']):>7} {fmt(r['expected_tar'], 2):>7}"
        )


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
    if info["metadata"]:
        click.echo(f"{'metadata':>13}: {info['metadata']}")
    for s in info["sample_list"]:
        click.echo(f"  {s['sha256'][:12]}  {s['width']}x{s['height']} {s['format'] or '-':<5} {s['origin']}")


@sources.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@gallery_option
@click.pass_context
def remove(ctx, name, yes):
    """Remove a source and all its samples."""
    gallery = open_gallery(ctx)
    gallery.require_source(name)
    if not yes:
        click.confirm(f"Remove source '{name}' and its samples from {gallery.path}?", abort=True)
    n = gallery.remove_source(name)
    click.echo(f"Removed '{name}' ({n} samples).")


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
