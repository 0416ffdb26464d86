"""Images from a trained generator (or photo crops for ``real``), cached beside it."""

from __future__ import annotations

import io

import numpy as np
import torch

from ..errors import AttribError
from ..paths import cache_dir
from .keys import atomic_write, derive_seed, digest
from .photos import random_crop
from .specs import GeneratorSpec
from .training import GeneratorTrainConfig, generator_key, load_generator, to_tensor, to_uint8, torch_state


def real_images(spec: GeneratorSpec, n: int, size: int, seed: int) -> np.ndarray:
    return np.stack([random_crop(np.random.default_rng(derive_seed("content", seed, spec.name, i)), size) for i in range(n)])


def generate(
    spec: GeneratorSpec, n: int, size: int = 128, seed: int = 0, train: GeneratorTrainConfig = GeneratorTrainConfig()
) -> np.ndarray:
    """``n`` images (``n x size x size x 3`` uint8) from ``spec``; :data:`REAL` gives photo crops.

    Image ``i`` depends only on ``(spec, train, seed, i, size)``, so asking for more images keeps
    the first ones. Generated images are cached beside the generator.
    """
    if n < 1 or size < 8:
        raise AttribError(f"need at least one image of at least 8 pixels, got {n} of {size}")
    if spec.arch == "real":
        return real_images(spec, n, size, seed)
    path = cache_dir() / "zoo" / "images" / f"{spec.name}-{digest(generator_key(spec, train), n, size, seed)[:16]}.npy"
    if path.exists():
        return np.load(path)
    model = load_generator(spec, train)
    # The network needs a multiple of 2**n_up: generate slightly larger, keep the top-left corner.
    padded = -(-size // 2**spec.n_up) * 2**spec.n_up
    crops = real_images(spec, n, padded, seed)
    images = []
    for i, crop in enumerate(crops):
        with torch_state(derive_seed("noise", seed, spec.name, i), train.threads), torch.no_grad():
            images.append(to_uint8(model(to_tensor(crop[None])))[0, :size, :size])
    out = np.stack(images)
    buffer = io.BytesIO()
    np.save(buffer, out)
    atomic_write(path, buffer.getvalue())
    return out
