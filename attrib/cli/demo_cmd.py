"""attrib demo: the main job on the embedded default, end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from .common import echo_json, json_option, plugin_manager


@click.command()
@click.option(
    "--gallery",
    "-g",
    "target",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to build the demo gallery (default: $ATTRIB_HOME/galleries/demo). Rebuilt each run.",
)
@click.option("--trials", default=3, show_default=True, type=click.IntRange(1, 20), help="Trials of the eval protocol.")
@json_option
@click.pass_context
def demo(ctx, target, trials, json_):
    """Build the generator zoo, enroll 5 shots per known generator into a fresh gallery,
    identify held-out images of known and never-enrolled generators, and print the eval figures.

    Everything is made locally (no downloads): the zoo trains small generators of different
    architectures on photos that installed packages ship. The first run takes a few minutes;
    later runs reuse the cache.
    """
    from ..evaluate import embed_dataset, format_report
    from ..gallery import DB_NAME, Gallery
    from ..paths import user_dir
    from ..pipeline import expand_paths
    from ..recipes import Recipe, build_recipe

    rec = Recipe.builtin("demo")
    root = ctx.find_root().obj or {}
    target = target or (Path(root["gallery"]) if root.get("gallery") else user_dir() / "galleries" / "demo")
    if (target / DB_NAME).exists():
        old = Gallery(target, create=False, pm=plugin_manager(ctx))
        recipe_name = old.recipe
        old.close()
        if recipe_name != "demo":
            raise click.ClickException(f"{target} holds a gallery that is not the demo's: refusing to overwrite it")
        shutil.rmtree(target)
    elif target.exists() and any(target.iterdir()):
        raise click.ClickException(f"{target} is not empty and not a demo gallery: refusing to overwrite it")
    say = (lambda *a, **k: None) if json_ else click.echo
    say("Building the generator zoo (cached after the first run)...", err=True)
    data = rec.zoo_dir()
    say(f"Enrolling {rec.shots} shots per known source into {target}", err=True)
    gallery, results = build_recipe(rec, target, pm=plugin_manager(ctx))
    known = [r.source for r in results]
    unknown = rec.unknown
    # held-out queries: images never enrolled, 4 per known source and 4 per unknown source
    queries = []
    for name in known + unknown:
        files = [f for f in expand_paths([data / name])]
        queries += [(name, f) for f in files[rec.shots : rec.shots + 4]]
    ds = embed_dataset(gallery.encoder, data)  # every image once: the queries and the eval protocol
    row_of = {p: i for i, p in enumerate(ds.paths)}
    decisions = gallery.identify(ds.embeddings[[row_of[str(f)] for _, f in queries]], top_k=3)
    rows = []
    for (truth, path), d in zip(queries, decisions):
        expected = truth if truth in known else None
        rows.append({"path": str(path), "truth": truth, "known": truth in known, **d.to_dict(), "correct": d.source == expected})
    res = demo_eval(ds, gallery.encoder, known, unknown, trials)
    if json_:
        echo_json({"gallery": str(target), "data": str(data), "encoder": gallery.encoder.id, "decisions": rows, "eval": res})
        return
    click.echo(f"\nGallery {target}: {len(known)} known sources, encoder {gallery.encoder.id}")
    click.echo(f"Held-out queries ({len(rows)}): truth -> decision (score / threshold)")
    for r in rows:
        mark = "ok " if r["correct"] else "XX "
        truth = r["truth"] + ("" if r["known"] else " [never enrolled]")
        click.echo(f"  {mark}{truth:<30} -> {(r['source'] or 'unknown'):<16} {r['score']:.3f} / {r['threshold']:.3f}")
    kq = [r for r in rows if r["known"]]
    uq = [r for r in rows if not r["known"]]
    click.echo(
        f"Known attributed correctly: {sum(r['correct'] for r in kq)}/{len(kq)}; "
        f"unknown rejected: {sum(r['correct'] for r in uq)}/{len(uq)}"
    )
    click.echo(f"\nEval protocol ({trials} trials, K-shot enrollment; zoo data in {data}):")
    click.echo(format_report(res))
    click.echo(f"\nTry: attrib --gallery {target} identify {data / unknown[0]}/00010.png {data / known[0]}/00010.png")


def demo_eval(ds, encoder, known, unknown, trials: int = 3) -> dict:
    """The demo's eval protocol on embedded zoo data ``ds``: 1/5/10 shots, 25 queries per source
    (also ``bench/demo_check.py``'s, which runs it with any encoder)."""
    from ..evaluate import run_protocol

    return run_protocol(ds, encoder, known, unknown, shots=(1, 5, 10), trials=trials, max_queries=25)
