"""attrib identify / attrib verify"""

from __future__ import annotations

import click

from .. import report
from ..pipeline import detector_tap, embed_items, expand_paths, load_many, query_embeddings
from .common import echo_jsonl, far_option, fmt, gallery_option, json_option, open_gallery, plugin_manager, progressbar
from .detect_cmd import detector_options, make_runner


def _embed_paths(gallery, paths, batch_size, timer=None, on_item=None):
    files = expand_paths(paths)
    if not files:
        raise click.ClickException(f"no image files found in {', '.join(paths)}")
    items = load_many(files)
    if on_item is not None:  # e.g. detectors: they see each image before its pixels are released
        items = (on_item(it) or it for it in items)
    with progressbar(len(files), "embedding") as bar:
        return embed_items(gallery.encoder, items, batch_size=batch_size, timer=timer, progress=bar.update)


_far_option = far_option("False-accept rate the thresholds are set for (default: the gallery's, 0.01).")


@click.command()
@click.option("--top-k", "-k", default=5, show_default=True, type=click.IntRange(1, 100), help="Candidates listed per image.")
@_far_option
@click.option("--keep-unknown", is_flag=True, help="Keep rejected queries in the gallery, to propose new sources later.")
@click.option("--batch-size", default=32, show_default=True, help="Images per encoder batch.")
@click.option("--no-detectors", is_flag=True, help="Skip the detectors (attribution only).")
@detector_options
@gallery_option
@json_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.pass_context
def identify(ctx, top_k, far, keep_unknown, batch_size, no_detectors, detector_names, detector_timeout, json_, paths):
    """Which enrolled generator made each image, or "unknown".

    The best-matching source is accepted only if its score clears that source's calibrated
    threshold (set for the false-accept rate --far); otherwise the answer is unknown. Each
    answer reports the score, the threshold and the margin to the runner-up. A JPEG file at
    any quality is compared with the sources' samples re-saved as JPEG (README, "Views").

    With --json, one JSON object per image (JSON Lines): path, source (null when unknown),
    score, threshold, margin, candidates [{source, score}], error, detectors: each
    detector's evidence {detector, verdict, score, source_hint, details, error} (see
    `attrib detect`; --no-detectors skips them), and verdict: the decision and the evidence
    reconciled by ordered rules {label: ai-generated | camera | undetermined, source, basis,
    conflicts, errors} (see README, "The verdict").
    """
    gallery = open_gallery(ctx)
    if not gallery.source_names():
        raise click.ClickException(f"gallery {gallery.path} has no sources: enroll some first")
    found = {}
    tap = None if no_detectors else detector_tap(make_runner(ctx, detector_names, detector_timeout), found)
    items, emb = _embed_paths(gallery, paths, batch_size, on_item=tap)
    good = [it for it in items if it.error is None]
    decisions = gallery.identify(query_embeddings(good, emb), top_k=top_k, far=far, views=[it.view for it in good]) if len(emb) else []
    if keep_unknown and len(emb):  # the same decisions: what is kept depends on the best candidate only
        gallery.keep_rejected(emb, [it.record for it in good], decisions)
    rows = report.identify_rows(items, decisions, found, _judge(ctx, gallery))
    if json_:
        for r in rows:
            echo_jsonl(r)
    else:
        _print_table(rows)
    if not good:
        raise click.ClickException("no image could be read")


def _judge(ctx, gallery):
    """The verdict's rules (built-in and plugins'), told which sources are camera classes."""
    from ..verdict import camera_sources, make_judge

    return make_judge(plugin_manager(ctx)).with_camera_sources(camera_sources(gallery))


def _print_table(rows):
    width = max(len(r["path"]) for r in rows)
    width = min(max(width, 4), 60)
    click.echo(f"{'image':<{width}}  {'decision':<20} {'score':>6} {'thresh':>6} {'margin':>6}  runner-up")
    for r in rows:
        path = r["path"] if len(r["path"]) <= width else "..." + r["path"][-(width - 3) :]
        if r["error"]:
            click.echo(f"{path:<{width}}  error: {r['error']}")
            continue
        decision = r["source"] or "unknown"
        if r["source"] is None and r["candidates"]:
            decision = f"unknown (~{r['candidates'][0]['source']})"
        runner = r["candidates"][1] if len(r["candidates"]) > 1 else None
        runner_s = f"{runner['source']} {runner['score']:.3f}" if runner else "-"
        click.echo(f"{path:<{width}}  {decision[:20]:<20} {fmt(r['score']):>6} {fmt(r['threshold']):>6} {fmt(r['margin']):>6}  {runner_s}")
        lineage = r.get("lineage") or []
        if len(lineage) > 2 or (r["source"] and r["candidates"] and r["source"] != r["candidates"][0]["source"]):
            note = "" if r["source"] == r["candidates"][0]["source"] else f" (best leaf {r['candidates'][0]['source']} not sure)"
            click.echo(f"{'':<{width}}  lineage: {' > '.join(lineage)}{note}")
        if r.get("detectors"):
            from ..detectors import summarise

            click.echo(f"{'':<{width}}  detectors: {summarise(r['detectors'])}")
        if r.get("verdict"):
            from ..verdict import summarise as summarise_verdict

            click.echo(f"{'':<{width}}  verdict: {summarise_verdict(r['verdict'])}")


@click.command()
@click.option("--generator", "-s", "source", help="Enrolled source to verify against. Without it, give exactly two images (pair mode).")
@_far_option
@click.option("--batch-size", default=32, show_default=True, help="Images per encoder batch.")
@gallery_option
@json_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.pass_context
def verify(ctx, source, far, batch_size, json_, paths):
    """1:1 verification: was this image made by --generator? Or: were two images made by the same source?

    The decision is taken at a calibrated threshold for the stated false-accept rate (--far).
    With --json: path, source, score, threshold, accepted, far, error (one object per image;
    generator repeats source, as earlier releases named it); pair mode prints one object with
    paths a and b.
    """
    gallery = open_gallery(ctx)
    if source is None:
        if len(paths) != 2:
            raise click.UsageError("pair mode takes exactly two images (or pass --generator NAME)")
        items, emb = _embed_paths(gallery, paths, batch_size)
        bad = [it for it in items if it.error]
        if bad:
            raise click.ClickException(bad[0].error)
        res = report.verify_pair_answer(items[0].path, items[1].path, gallery.verify_pair(emb[0], emb[1], far))
        if json_:
            echo_jsonl(res)
        else:
            verdict = "same source" if res["accepted"] else "different sources"
            click.echo(f"{verdict}: score {res['score']:.3f}, threshold {res['threshold']:.3f} (FAR {res['far']})")
        return
    gallery.require_node(source)
    items, emb = _embed_paths(gallery, paths, batch_size)
    good = [it for it in items if it.error is None]
    held = gallery.verify(query_embeddings(good, emb), source, far, views=[it.view for it in good]) if len(emb) else []
    rows = report.verify_rows(items, held, source, far)
    for r in rows:
        if json_:
            echo_jsonl(r)
        elif r["error"]:
            click.echo(f"{r['path']}: error: {r['error']}")
        else:
            word = "ACCEPT" if r["accepted"] else "reject"
            click.echo(f"{r['path']}: {word} {source} (score {r['score']:.3f}, threshold {r['threshold']:.3f} at FAR {r['far']})")
    if all(r["error"] for r in rows):
        raise click.ClickException("no image could be read")
