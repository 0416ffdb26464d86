"""attrib eval"""

from __future__ import annotations

import json
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from .common import echo_json, far_option, json_option, plugin_manager, progressbar


def _shots(ctx, param, value):
    try:
        shots = sorted({int(v) for v in value.split(",") if v.strip()})
    except ValueError:
        raise click.BadParameter("comma-separated whole numbers, e.g. 1,5,10") from None
    if not shots or min(shots) < 1:
        raise click.BadParameter("shots must be >= 1")
    return shots


def _post(ctx, param, value):
    if not value:
        return ()
    from ..degrade import parse_post
    from ..errors import AttribError

    try:
        return parse_post(value)
    except AttribError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("eval")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--encoder",
    help="Encoder to evaluate (registered name or trained encoder folder; default: the default encoder, see `attrib encoders list`).",
)
@click.option("--shots", default="1,5,10", show_default=True, callback=_shots, help="K values for K-shot enrollment.")
@click.option(
    "--unknown", multiple=True, help="Source folder held out as unknown (repeatable). Default: a seeded random --unknown-fraction."
)
@click.option(
    "--unknown-fraction",
    default=0.3,
    show_default=True,
    type=click.FloatRange(0, 0.9),
    help="Share of the source folders held out as unknown when no --unknown is given.",
)
@click.option("--trials", default=3, show_default=True, type=click.IntRange(1, 100), help="Repetitions with different enrollment samples.")
@click.option("--queries", default=50, show_default=True, help="Max query images per source and trial.")
@far_option("FAR the thresholds are set for (default 0.01).")
@click.option("--seed", default=0, show_default=True, help="Seed of the unknown split and the enrollment draws (same seed, same figures).")
@click.option("--per-source", is_flag=True, help="Also print per-source accuracy and EER.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the JSON report here.")
@click.option(
    "--reject",
    multiple=True,
    help="Source folder queried only to be rejected, counted apart (e.g. real photos; repeatable): 'rejects attributed'.",
)
@click.option(
    "--reference",
    multiple=True,
    help="Source folder enrolled whole in every trial and never queried (e.g. a camera class built from many photos; "
    "repeatable): a --reject image named after it is not counted attributed; 'rejects->ref', 'known->ref', 'unknown->ref' say "
    "how often each kind of query was named after one.",
)
@click.option(
    "--post",
    multiple=True,
    metavar="STEP",
    callback=_post,
    help="Also query the images post-processed, enrolled clean (repeatable or comma-separated: jpeg75, resize0.5, blur1.0): the robustness figures.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a self-contained HTML report (plots embedded, opens offline) here.",
)
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False, path_type=Path), help="Write the report's plots as PNG files here.")
@click.option(
    "--report-shots", type=click.IntRange(1), help="K the report's detailed sections show (default: 5 when run, else the largest)."
)
@click.option(
    "--tree",
    metavar="zoo|FILE",
    help="The sources' lineage, for accuracy per level (family / line / leaf): 'zoo' (a zoo's families and architectures) "
    "or a TSV file (name, parent, family).",
)
@json_option
@click.pass_context
def eval_command(ctx, data_dir, encoder, shots, unknown, unknown_fraction, trials, queries, far, seed, per_source, out, json_, **extra):
    """Measure attribution on DATA_DIR (one folder per source).

    Standard protocol: K-shot enrollment of known sources (K from --shots), held-out queries of
    known sources, and sources never enrolled as unknowns. Prints closed-set top-1 accuracy,
    open-set AUROC (known vs unknown), OSCR, verification EER, and what the calibrated thresholds
    did (open-set accuracy, TAR, observed FAR); per source with --per-source. --report writes an
    HTML page with plots (K-shot curves, ROC/DET, confusion matrix, per-source table, score
    histograms, robustness with --post). --tree adds accuracy per level of the sources' tree
    (family, line, leaf) and how often a query wrong at the leaf is right at its parent.
    """
    from ..encoders import get_encoder
    from ..evaluate import embed_dataset, embed_post, post_view, run_protocol, split_sources
    from ..pipeline import StageTimer

    reject, post, reference = list(extra["reject"]), list(extra["post"]), list(extra["reference"])
    want_details = bool(extra["report_path"] or extra["plots_dir"])
    if extra["report_shots"] and extra["report_shots"] not in shots:
        raise click.BadParameter(f"{extra['report_shots']} is not one of --shots", param_hint="--report-shots")
    enc = get_encoder(encoder, pm=plugin_manager(ctx))
    timer = StageTimer()
    n_files = sum(1 for p in data_dir.rglob("*") if p.is_file())
    with progressbar(n_files, "embedding") as bar:
        ds = embed_dataset(enc, data_dir, timer=timer, progress=bar.update)
    for option, given in (("--reject", reject), ("--reference", reference)):
        missing = sorted(set(given) - set(ds.sources()))
        if missing:
            raise click.BadParameter(f"not a source folder of the data: {', '.join(missing)}", param_hint=option)
    both = sorted(set(reject) & set(reference))
    if both:
        raise click.BadParameter(f"{', '.join(both)} is given as both --reject and --reference", param_hint="--reference")
    known, unk = split_sources([s for s in ds.sources() if s not in reject + reference], unknown, unknown_fraction, seed)
    tree = _tree(data_dir, extra["tree"], ds.sources())
    args = dict(shots=shots, trials=trials, max_queries=queries, far=far, seed=seed, rejects=reject, tree=tree, references=reference)
    details = [] if want_details else None
    with progressbar(len(shots) * trials, "trials") as bar:
        res = run_protocol(ds, enc, known, unk, progress=lambda: bar.update(1), details=details, **args)
    robust = None
    if post:
        with progressbar(len(ds.names), "post-processing") as bar:
            post_emb = embed_post(enc, ds, post, progress=bar.update)
        post_details = [] if want_details else None
        post_views = [post_view(post)] * len(ds.names)
        res_post = run_protocol(ds, enc, known, unk, query_embeddings=post_emb, query_views=post_views, details=post_details, **args)
        robust = (res_post, post_details)
    res["encoder"] = enc.id
    res["data"] = str(data_dir)
    res["images"] = len(ds.names)
    res["timing"] = timer.to_dict()
    if post:
        res["post"] = {"steps": post, "shots": robust[0]["shots"]}
    if want_details:
        meta = {"trials": trials, "queries": queries, "far": far, "seed": seed, "rejects": reject, "references": reference}
        meta |= {"post": post, "images": len(ds.names)}
        written = _write_report(res, details, meta, robust, data_dir, extra)
        if not json_:
            click.echo("wrote " + ", ".join(map(str, written)), err=True)
    if out:
        out.write_text(json.dumps(res, indent=2))
    if json_:
        echo_json(res)
    else:
        _print_text(res, per_source)


def _tree(data_dir, spec, sources):
    if not spec:
        return None
    from ..errors import AttribError
    from ..evaluate import load_tree

    try:
        return load_tree(data_dir, spec, sources)
    except AttribError as exc:
        raise click.BadParameter(str(exc), param_hint="--tree") from None


def _print_text(res, per_source: bool) -> None:
    from ..evaluate import format_report

    click.echo(f"encoder {res['encoder']} on {res['data']} ({res['images']} images)")
    click.echo(format_report(res))
    if "post" in res:
        click.echo(f"\nqueries post-processed ({'+'.join(res['post']['steps'])}), enrolled clean:")
        click.echo(format_report({**res, "shots": res["post"]["shots"]}).split("\n\n", 1)[1])
    if per_source:
        for k, s in res["shots"].items():
            click.echo(f"\n{k}-shot per source:")
            for name, v in s["per_source"].items():
                click.echo(f"  {name:<28} top-1 {v['accuracy']:.3f}  EER {v['eer']:.3f}")


def _write_report(res, details, meta, robust, data_dir, extra) -> list[Path]:
    """Build the HTML report and/or the PNGs (attrib.evalreport), write them; returns the files."""
    from .. import __version__
    from ..evalreport import Robustness, build_report, load_families

    meta = {
        **meta,
        "encoder": res["encoder"],
        "data": str(data_dir.resolve()),
        "version": __version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["attrib"] + sys.argv[1:]),
        "far": meta["far"] if meta["far"] is not None else f"{details[0].far:g} (default)",
    }
    post = None if robust is None else Robustness(meta["post"], robust[0], robust[1])
    report = build_report(res, details, meta, load_families(data_dir), post, extra["report_shots"])
    return report.write(extra["report_path"], extra["plots_dir"])
