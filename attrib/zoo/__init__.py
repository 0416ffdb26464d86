"""The generator zoo: deterministic test data for attribution, made offline.

Attribution needs images from many different generators. Downloading real generators is not an
option (no network at run time or in tests), so the zoo *makes* small ones:

* **Real photos** come from files that installed packages ship (scikit-image, scikit-learn,
  matplotlib); see :func:`real_photos`. Nothing is ever fetched.
* **Generators** are small, fully convolutional autoencoders. Every one has the same kind of
  encoder (strided convs down to a latent at 1/4 or 1/8 resolution) and an architecture-specific
  decoder whose upsampling leaves the fingerprint, as in real generators: transposed convs
  (checkerboards), nearest / bilinear / bicubic upsampling, pixel shuffle, a Stable-Diffusion-VAE
  -like decoder, a StyleGAN-like decoder (modulated convs, noise injection), a ViT-like patch
  decoder (a hard block grid), decoders whose stages mix upsamplers (chosen by the seed), a
  pix2pix-like U-Net (skip connections from the encoder), StyleGAN2-like anti-aliased upsampling
  (transposed conv + [1,3,3,1] FIR low-pass, summed skip RGB outputs), an ESPCN-like x4 pixel
  shuffle (period-4 trace), a VQGAN-like decoder (vector-quantised latent, attention, ResBlocks)
  and a diffusion-like decoder (an upsampler, noise, then residual denoising blocks at full
  resolution). Widths, kernels, activations, latent size, number of upsampling stages and output
  activation vary with the seed. A frozen :class:`GeneratorSpec` fully determines a generator;
  :func:`default_zoo` lists any number of them, cycling over all architectures (or the kinds
  given).
* **Training** is brief: a couple of hundred L1 steps reconstructing random crops of the real
  photos, so outputs look like (soft) photos while carrying the decoder's fingerprint. It is
  seeded, takes a few seconds per generator on one CPU core, and is cached under
  :func:`attrib.paths.cache_dir` (``$ATTRIB_CACHE``).
* **Generation** encodes a random crop of a real photo, adds a little latent noise and decodes.
  Crops (with random horizontal flips) come from one seeded content pool shared by every source,
  so image content never reveals the source. Image ``i`` of a source depends only on the source,
  the build seed, ``i`` and the size.
* **The ``real`` source** (:data:`REAL`) is crops of the photos themselves.
* **Post-processing** (``jpeg75``, ``resize0.5``, ``blur1.0``, chained in order) mimics what
  sharing does to images; see :func:`parse_post` (implemented in :mod:`attrib.degrade`, which
  training's augmentation shares).

:func:`build_zoo` writes one folder per source plus a ``zoo.json`` manifest::

    out_dir/zoo.json
    out_dir/real/00000.png
    out_dir/tconv-k4-s0/00000.png     # .jpg when the last post-processing step is JPEG

Results are bit-identical across runs on one machine and torch build; other CPUs or torch
versions may differ in the last bits of trained weights (float summation order).
    out_dir/tconv-k4-s0/00000.png     # .jpg when the last post-processing step is JPEG

Results are bit-identical across runs on one machine and torch build; other CPUs or torch
versions may differ in the last bits of trained weights (float summation order).

The package follows those steps: :mod:`.photos`, :mod:`.specs`, :mod:`.networks` (the decoders),
:mod:`.training`, :mod:`.generation`, :mod:`.build`; :mod:`.keys` holds :data:`ZOO_VERSION` and
the cache keys and seeds derived from it. The names below are the public API.
"""

from __future__ import annotations

from ..degrade import encode_image, parse_post, post_process
from .build import build_zoo
from .generation import generate
from .keys import ZOO_VERSION
from .networks import ZooGenerator
from .photos import real_photos
from .specs import (
    ACTIVATIONS,
    ARCHS,
    GENERATOR_KINDS,
    MIXED_UPSAMPLERS,
    OUTPUT_ACTIVATIONS,
    REAL,
    GeneratorSpec,
    default_zoo,
    generator_spec,
)
from .training import GeneratorTrainConfig, default_workers, load_generator

__all__ = [
    "ACTIVATIONS",
    "ARCHS",
    "GENERATOR_KINDS",
    "MIXED_UPSAMPLERS",
    "OUTPUT_ACTIVATIONS",
    "REAL",
    "ZOO_VERSION",
    "GeneratorSpec",
    "GeneratorTrainConfig",
    "ZooGenerator",
    "build_zoo",
    "default_workers",
    "default_zoo",
    "encode_image",
    "generate",
    "generator_spec",
    "load_generator",
    "parse_post",
    "post_process",
    "real_photos",
]
