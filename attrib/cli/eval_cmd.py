"""attrib eval"""

from __future__ import annotations

import json
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
@json_option
@click.pass_context
def eval_command(ctx, data_dir, encoder, shots, unknown, unknown_fraction, trials, queries, far, seed, per_source, out, json_):
    """Measure attribution on DATA_DIR (one folder per source).

    Standard protocol: K-shot enrollment of known sources (K from --shots), held-out queries of
    known sources, and sources never enrolled as unknowns. Prints closed-set top-1 accuracy,
    open-set AUROC (known vs unknown), OSCR, verification EER, and what the calibrated thresholds
    did (open-set accuracy, TAR, observed FAR); per source with --per-source.
    """
    from ..encoders import get_encoder
    from ..evaluate import embed_dataset, format_report, run_protocol, split_sources
    from ..pipeline import StageTimer

    enc = get_encoder(encoder, pm=plugin_manager(ctx))
    timer = StageTimer()
    n_files = sum(1 for p in data_dir.rglob("*") if p.is_file())
    with progressbar(n_files, "embedding") as bar:
        ds = embed_dataset(enc, data_dir, timer=timer, progress=bar.update)
    known, unk = split_sources(ds.sources(), unknown, unknown_fraction, seed)
    with progressbar(len(shots) * trials, "trials") as bar:
        res = run_protocol(
            ds, enc, known, unk, shots=shots, trials=trials, max_queries=queries, far=far, seed=seed, progress=lambda: bar.update(1)
        )
    res["encoder"] = enc.id
    res["data"] = str(data_dir)
    res["images"] = len(ds.names)
    res["timing"] = timer.to_dict()
    if out:
        out.write_text(json.dumps(res, indent=2))
    if json_:
        echo_json(res)
        return
    click.echo(f"encoder {enc.id} on {data_dir} ({len(ds.names)} images)")
    click.echo(format_report(res))
    if per_source:
        for k, s in res["shots"].items():
            click.echo(f"\n{k}-shot per source:")
            for name, v in s["per_source"].items():
                click.echo(f"  {name:<28} top-1 {v['accuracy']:.3f}  EER {v['eer']:.3f}")
