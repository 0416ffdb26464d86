"""attrib train"""

from __future__ import annotations

from pathlib import Path

import click

from ..train import LOSSES, MINERS, TrainConfig
from .common import echo_json, json_option

# Choices and defaults come from attrib.train (numpy and Pillow only at import; torch is imported
# when training starts), so the CLI and the library cannot disagree.
D = TrainConfig


def _residual_options(options) -> dict[str, int]:
    """``--residual-option KEY=INT`` values -> the residual encoder's keyword arguments, checked
    by building one (a bad key or value is a usage error)."""
    residual = {}
    for opt in options:
        key, sep, value = opt.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            raise click.BadParameter(f"{opt!r}: expected KEY=INT, e.g. tile=64", param_hint="--residual-option")
        residual[key.strip()] = int(value)
    if residual:
        from ..encoders.residual import ResidualSpectrumEncoder

        try:
            ResidualSpectrumEncoder(**residual)
        except (TypeError, ValueError) as exc:
            raise click.BadParameter(str(exc), param_hint="--residual-option") from None
    return residual


@click.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Encoder folder to write (config.json + model.safetensors).",
)
@click.option(
    "--backbone",
    default=D.backbone,
    show_default=True,
    help="fpcnn[:wide], timm:NAME (e.g. timm:resnet18), open_clip:NAME (e.g. open_clip:ViT-B-32), residual-wccn (linear metric on the residual features, fitted in closed form) or residual-mlp.",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Pretrained backbone weights from a local file (.pth / .safetensors). Never downloaded.",
)
@click.option(
    "--loss",
    default=D.loss,
    show_default=True,
    type=click.Choice(LOSSES),
    help="Metric-learning loss (pytorch-metric-learning); arcface-style and proxy losses learn a proxy per source.",
)
@click.option("--miner", default=D.miner, show_default=True, type=click.Choice(MINERS), help="Pair miner for supcon / multi-similarity.")
@click.option("--dim", default=D.dim, show_default=True, help="Embedding dimension.")
@click.option("--tile", default=D.tile, show_default=True, help="Crop size (images are cropped, never resized).")
@click.option("--max-tiles", default=D.max_tiles, show_default=True, help="Crops averaged per image at inference.")
@click.option(
    "--steps",
    type=int,
    help="Optimisation steps [default: 2000; 0 for residual-wccn, whose closed-form fit needs none: more steps fine-tune it].",
)
@click.option("--batch-classes", default=D.batch_classes, show_default=True, help="Sources per batch.")
@click.option("--per-class", default=D.per_class, show_default=True, help="Images per source per batch.")
@click.option("--lr", default=D.lr, show_default=True, help="Peak learning rate of the one-cycle schedule (a loss with proxies gets 10x).")
@click.option(
    "--residual-option",
    "residual_options",
    multiple=True,
    metavar="KEY=INT",
    help="residual-* backbones: an option of the residual features, e.g. tile=64, coherence=1, predictor=1 (the optional channel-mixing groups fp-wccn2 uses; repeatable).",
)
@click.option(
    "--wccn-reg",
    default=D.wccn_reg,
    show_default=True,
    help="residual-wccn: ridge on the within-class eigenvalues, as a fraction of their mean.",
)
@click.option(
    "--val-arch",
    "val_archs",
    multiple=True,
    help="Hold out every source of this architecture (repeatable; needs zoo.json or NAME-sN folders).",
)
@click.option(
    "--exclude-arch",
    "exclude_archs",
    multiple=True,
    help="Leave every source of this architecture out of training AND validation (kept for testing).",
)
@click.option("--val-source", "val_sources", multiple=True, help="Hold out this source (repeatable).")
@click.option(
    "--val-every",
    default=D.val_every,
    show_default=True,
    help="Validate on the held-out sources (and checkpoint) every this many steps, and at the end.",
)
@click.option("--device", default=D.device, show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--threads", type=int, help="CPU threads for torch.")
@click.option("--seed", default=D.seed, show_default=True, help="Seed of the split, the batches, the augmentation and the initial weights.")
@click.option("--no-resume", is_flag=True, help="Start over even if OUT has a checkpoint.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or log on stderr.")
@json_option
def train(
    data,
    out,
    backbone,
    weights,
    loss,
    miner,
    dim,
    tile,
    max_tiles,
    steps,
    batch_classes,
    per_class,
    lr,
    residual_options,
    wccn_reg,
    val_archs,
    exclude_archs,
    val_sources,
    val_every,
    device,
    threads,
    seed,
    no_resume,
    quiet,
    json_,
):
    """Train a fingerprint encoder on DATA (one folder per source) with metric learning.

    Sources held out of training (--val-arch / --val-source, else a seeded 15%) measure
    few-shot attribution of generators the encoder never saw; they pick the checkpoint and
    calibrate the encoder's threshold prior. Interrupted runs resume from OUT/checkpoint.pt.

    \b
    Example:
      attrib zoo build zoo200 --generators 200
      attrib train zoo200 --backbone residual-wccn --out encoders/fp-wccn --val-arch vae
      attrib train zoo200 --backbone timm:resnet18 --out encoders/fp-r18 --val-arch bicubic
      attrib --gallery g enroll --encoder encoders/fp-r18 --generator sdxl samples/
    """
    from ..train import train as run_train

    residual = _residual_options(residual_options)
    if steps is None:
        steps = 0 if backbone == "residual-wccn" else D.steps
    cfg = TrainConfig(
        data=str(data),
        out=str(out),
        backbone=backbone,
        weights=str(weights) if weights else None,
        dim=dim,
        loss=loss,
        miner=miner,
        tile=tile,
        max_tiles=max_tiles,
        steps=steps,
        batch_classes=batch_classes,
        per_class=per_class,
        lr=lr,
        val_archs=list(val_archs),
        exclude_archs=list(exclude_archs),
        val_sources=list(val_sources),
        val_every=val_every,
        seed=seed,
        device=device,
        threads=threads,
        residual=residual,
        wccn_reg=wccn_reg,
    )
    log = (lambda m: None) if quiet or json_ else (lambda m: click.echo(m, err=True))
    folder = run_train(cfg, progress=not quiet and not json_, log=log, resume=not no_resume)
    import json

    conf = json.loads((folder / "config.json").read_text())
    if json_:
        echo_json({"out": str(folder), "metrics": conf["metrics"], "seconds": conf["training"]["seconds"]})
    else:
        m = conf["metrics"]
        click.echo(f"Wrote {folder}: held-out {m['shots']}-shot accuracy {m['accuracy']:.3f}, AUROC {m['auroc']:.3f}, EER {m['eer']:.3f}")
