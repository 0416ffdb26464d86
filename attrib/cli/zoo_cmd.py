"""``attrib zoo``: make and list offline test data (see :mod:`attrib.zoo`).

``attrib.zoo`` imports torch, so it is imported inside the commands, not when the CLI starts;
``--post`` is checked with :mod:`attrib.degrade`, which needs no torch.
"""

from __future__ import annotations

import json

import click

from ..errors import AttribError


def _check_post(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    from ..degrade import parse_post

    try:
        return parse_post(value)
    except AttribError as exc:
        raise click.BadParameter(str(exc)) from None


def _check_kinds(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...] | None:
    from ..zoo import GENERATOR_KINDS

    kinds = tuple(kind.strip() for item in value for kind in item.split(",") if kind.strip())
    for kind in kinds:
        if kind not in GENERATOR_KINDS:
            raise click.BadParameter(f"unknown generator kind {kind!r}; known: {', '.join(GENERATOR_KINDS)}")
    if len(set(kinds)) != len(kinds):
        raise click.BadParameter("a kind is given twice")
    return kinds or None


_kind_option = click.option(
    "--kind",
    "kinds",
    multiple=True,
    callback=_check_kinds,
    metavar="KIND",
    help="Cycle over these kinds only, in this order (repeatable or comma-separated) [default: every kind; "
    "see `zoo list`]. Pins a zoo's composition: kinds added later change the default list.",
)


@click.group(name="zoo")
def zoo():
    """Make test data offline: images from a zoo of small generators.

    Each generator is a small autoencoder with its own decoder architecture (transposed conv,
    nearest / bilinear / bicubic upsampling, pixel shuffle, SD-VAE-like, StyleGAN-like,
    ViT-like patch decoder, stages mixing upsamplers, pix2pix-like U-Net, StyleGAN2-like FIR
    upsampling, x4 pixel shuffle, VQGAN-like, diffusion-like denoising), briefly trained on
    real photos that installed packages ship. Its upsampling leaves a fingerprint, as in real
    generators. `zoo list` shows one generator of each kind. Nothing is downloaded;
    trained generators are cached in $ATTRIB_CACHE (else $ATTRIB_HOME/cache, else
    ~/.cache/attrib).
    """


@zoo.command(name="build")
@click.argument("directory", type=click.Path(file_okay=False, writable=True))
@click.option(
    "-n",
    "--generators",
    default=12,
    show_default=True,
    type=click.IntRange(min=0),
    help="How many generators; the list cycles over every architecture (see `zoo list`).",
)
@click.option("--images", default=40, show_default=True, type=click.IntRange(min=1), help="Images per source.")
@click.option(
    "--size", default=128, show_default=True, type=click.IntRange(min=16, max=1024), help="Image side in pixels, before post-processing."
)
@click.option(
    "--post",
    multiple=True,
    callback=_check_post,
    metavar="STEP",
    help="Post-processing applied to every image, in order (repeatable or comma-separated): "
    "jpeg75 (JPEG quality 75; saved as .jpg), resize0.5 or resize0.5:bilinear, blur1.0 "
    "(Gaussian sigma).",
)
@click.option("--no-real", is_flag=True, help="Leave out the 'real' source (crops of the photos themselves).")
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seed of the image content (which photo crops); generators are fixed by their names.",
)
@click.option(
    "-j", "--workers", type=click.IntRange(min=1), help="Generators trained at once, one process each [default: usable cores, at most 4]."
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    help="Training steps per generator [default: 250, every shipped zoo's]; part of each generator's cache key "
    "(other steps, other generators of the same names).",
)
@_kind_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def build(
    directory: str,
    generators: int,
    images: int,
    size: int,
    post: tuple[str, ...],
    no_real: bool,
    seed: int,
    workers: int | None,
    steps: int | None,
    kinds: tuple[str, ...] | None,
    quiet: bool,
):
    """Write DIRECTORY/<source>/00000.png ... and DIRECTORY/zoo.json.

    A folder per source (each generator, plus 'real'), and a manifest with every source's
    architecture, family and hyperparameters. Training takes a few seconds per generator the
    first time; rebuilding reuses the cache. Progress goes to stderr, the summary to stdout.
    """
    from ..zoo import GeneratorTrainConfig, build_zoo, default_zoo

    try:
        manifest = build_zoo(
            directory,
            default_zoo(generators, kinds),
            images_per_source=images,
            size=size,
            post=post,
            include_real=not no_real,
            seed=seed,
            progress=not quiet,
            train=GeneratorTrainConfig() if steps is None else GeneratorTrainConfig(steps=steps),
            workers=workers,
        )
    except AttribError as exc:
        raise click.ClickException(str(exc)) from None
    for source in manifest["sources"]:
        click.echo(f"{source['name']}\t{source['family']}\t{source['images']} images")
    click.echo(f"wrote {len(manifest['sources'])} sources to {directory} (manifest: zoo.json)")


@zoo.command(name="list")
@click.option(
    "-n",
    "--generators",
    type=click.IntRange(min=0),
    help="How many generators to list (the same list `zoo build -n` uses) [default: one of each kind].",
)
@_kind_option
@click.option("--json", "json_", is_flag=True, help="Output a JSON array of specs.")
def list_(generators: int | None, kinds: tuple[str, ...] | None, json_: bool):
    """List the generators `zoo build` makes: name, family, architecture, hyperparameters.

    Names are KIND-sSEED. Without -n, one generator of each kind, in the order `zoo build`
    cycles over them.
    """
    from ..zoo import GENERATOR_KINDS, default_zoo

    specs = default_zoo(len(kinds or GENERATOR_KINDS) if generators is None else generators, kinds)
    if json_:
        click.echo(json.dumps([spec.to_dict() for spec in specs], indent=2))
        return
    for spec in specs:
        params = " ".join(
            f"{key}={','.join(value) if isinstance(value, tuple) else value}" for key, value in spec.hyperparameters().items()
        )
        click.echo(f"{spec.name}\t{spec.family}\t{spec.arch}\t{params}")
