"""Writing a zoo: a folder per source plus the ``zoo.json`` manifest."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from ..degrade import encode_image, parse_post
from ..errors import AttribError
from .generation import generate
from .keys import ZOO_VERSION
from .photos import content_pool
from .specs import REAL, GeneratorSpec
from .training import GeneratorTrainConfig, default_workers, generator_path, train_all

_IMAGE_NAME = re.compile(r"^\d{5}\.(png|jpg)$")


def _clear_previous_build(out_dir: Path) -> None:
    """Remove the image files of a previous build, so a rebuild leaves no stale images.
    Only folders the old manifest lists, and only files named like zoo images, are touched."""
    manifest = out_dir / "zoo.json"
    if not manifest.exists():
        if out_dir.exists() and any(out_dir.iterdir()):
            raise AttribError(f"{out_dir} is not empty and holds no zoo.json; choose an empty or new folder")
        return
    try:
        sources = json.loads(manifest.read_text())["sources"]
    except (ValueError, KeyError, TypeError):
        raise AttribError(f"{manifest} is not a zoo manifest; choose an empty or new folder") from None
    for source in sources:
        folder = out_dir / str(source.get("name", ""))
        if folder.parent != out_dir or not folder.is_dir():
            continue
        for file in folder.iterdir():
            if _IMAGE_NAME.match(file.name):
                file.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()


def _manifest_entry(spec: GeneratorSpec, images: int, suffix: str) -> dict:
    """A source's line in zoo.json: what it is (name, arch, family, seed, hyperparameters) and its files."""
    return {
        "name": spec.name,
        "arch": spec.arch,
        "family": spec.family,
        "seed": spec.seed,
        "hyperparameters": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.hyperparameters().items()},
        "images": images,
        "suffix": suffix,
    }


def build_zoo(
    out_dir: str | os.PathLike,
    specs: Sequence[GeneratorSpec],
    images_per_source: int = 40,
    size: int = 128,
    post: Sequence[str] = (),
    include_real: bool = True,
    seed: int = 0,
    progress: bool = True,
    train: GeneratorTrainConfig = GeneratorTrainConfig(),
    workers: int | None = None,
) -> dict:
    """Write ``out_dir/<source>/<00000>.png|.jpg`` for every spec (plus :data:`REAL`) and
    ``out_dir/zoo.json``; returns the manifest.

    Generators not in the cache are trained first, ``workers`` at a time (default
    :func:`default_workers`). Rebuilding reuses cached generators and images, and replaces the
    images of a previous build in the same folder. Progress goes to stderr.
    """
    steps = parse_post(post)
    if images_per_source < 1:
        raise AttribError(f"images per source must be >= 1, got {images_per_source}")
    content_pool(size)  # refuse a size larger than the photos before training anything
    sources = ([REAL] if include_real else []) + list(specs)
    if not sources:
        raise AttribError("nothing to build: no generators and no real source")
    names = [spec.name for spec in sources]
    if len(set(names)) != len(names):
        raise AttribError(f"source names must be unique: {sorted({n for n in names if names.count(n) > 1})}")
    out = Path(out_dir)
    _clear_previous_build(out)
    out.mkdir(parents=True, exist_ok=True)
    untrained = [spec for spec in specs if not generator_path(spec, train).exists()]
    if untrained:
        train_all(untrained, train, default_workers() if workers is None else workers, progress)
    entries = []
    bar = tqdm(sources, desc="writing", unit="source", disable=not progress)
    for spec in bar:
        bar.set_postfix_str(spec.name)
        folder = out / spec.name
        folder.mkdir(exist_ok=True)
        suffix = ".png"
        for i, pixels in enumerate(generate(spec, images_per_source, size, seed, train)):
            data, suffix = encode_image(pixels, steps)
            (folder / f"{i:05d}{suffix}").write_bytes(data)
        entries.append(_manifest_entry(spec, images_per_source, suffix))
    manifest = {
        "zoo_version": ZOO_VERSION,
        "settings": {
            "images_per_source": images_per_source,
            "size": size,
            "post": list(steps),
            "include_real": include_real,
            "seed": seed,
            "train": asdict(train),
        },
        "sources": entries,
    }
    (out / "zoo.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
