"""attrib enroll"""

from __future__ import annotations

import click

from ..gallery import THUMBS_PER_SOURCE
from ..pipeline import embed_items, expand_paths, load_many, view_embeddings
from ..sources import FAMILIES
from ..views import VIEWS
from .common import echo_json, gallery_option, json_option, open_gallery, parse_meta, plugin_manager, progressbar


@click.command()
@click.option("--generator", "-s", "source", required=True, help="Source name to enroll into (created if new).")
@click.option("--family", type=click.Choice(FAMILIES), help="Source family (kept if the source exists; under --parent: the parent's).")
@click.option("--parent", help="Parent source (created with `attrib sources add`, or enrolled): the source joins its tree.")
@click.option("--meta", multiple=True, callback=parse_meta, metavar="KEY=VALUE", help="Free metadata, repeatable.")
@click.option("--encoder", help="Encoder for a NEW gallery: a registered name or a trained encoder folder.")
@click.option("--batch-size", default=32, show_default=True, help="Images per encoder batch.")
@gallery_option
@json_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.pass_context
def enroll(ctx, source, family, parent, meta, encoder, batch_size, json_, paths):
    """Enroll sample images of one generator (files and folders, recursive).

    A handful of samples is enough (5 is the design point). Images already in the gallery
    (same sha256) are skipped as duplicates; unreadable files are reported and skipped. The
    enrollment is atomic: if it fails or is interrupted, the gallery stays as it was.

    Each sample is also embedded after a JPEG re-save (q75): JPEG queries are then compared with
    like (README, "Views"). Enrollment embeds each image twice.

    \b
    Examples:
      attrib enroll --generator midjourney6 --family diffusion samples/
      attrib enroll --generator deliberate2 --parent sd15 samples/
    """
    from ..encoders import get_encoder
    from ..sources import check_name

    check_name(source)
    files = expand_paths(paths)
    if not files:
        raise click.ClickException(f"no image files found in {', '.join(paths)}")
    enc = get_encoder(encoder, pm=plugin_manager(ctx)) if encoder else None
    gallery = open_gallery(ctx, create=True, encoder=enc)
    if parent is not None:  # a wrong parent is refused before anything is embedded
        gallery.check_enroll_parent(source, parent, family)
    with progressbar(len(files), f"embedding {source}") as bar:
        items, emb = embed_items(
            gallery.encoder, load_many(files), batch_size=batch_size, progress=bar.update, thumbnails=THUMBS_PER_SOURCE, views=VIEWS
        )
    good = [it for it in items if it.error is None]
    failed = [{"path": it.path, "error": it.error} for it in items if it.error is not None]
    if not good:
        msg = f"no image could be read ({len(failed)} failed): nothing enrolled"
        if json_:
            echo_json({"source": source, "enrolled": 0, "duplicate": 0, "failed": len(failed), "failures": failed, "duplicates": []})
        else:
            for f in failed:
                click.echo(f"  failed: {f['error']}", err=True)
        raise click.ClickException(msg)
    records = [it.record for it in good]
    result = gallery.enroll(source, emb, records, family=family, metadata=meta, parent=parent, views=view_embeddings(good))
    result.failed = failed
    if json_:
        echo_json(result.to_dict())
        return
    click.echo(
        f"Enrolled {result.enrolled} image(s) into '{source}' ({len(result.duplicates)} duplicate(s) skipped, {len(failed)} failed)."
    )
    for d in result.duplicates:
        click.echo(f"  duplicate: {d['path']} (already in '{d['source']}')")
    for f in failed:
        click.echo(f"  failed: {f['error']}")
