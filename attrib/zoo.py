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
  sharing does to images; see :func:`parse_post`.

:func:`build_zoo` writes one folder per source plus a ``zoo.json`` manifest::

    out_dir/zoo.json
    out_dir/real/00000.png
    out_dir/tconv-k4-s0/00000.png     # .jpg when the last post-processing step is JPEG

Results are bit-identical across runs on one machine and torch build; other CPUs or torch
versions may differ in the last bits of trained weights (float summation order).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import io
import itertools
import json
import multiprocessing
import os
import pickle
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from torch import nn
from tqdm.auto import tqdm

from .errors import AttribError
from .paths import cache_dir

#: Bumped whenever a change alters generated pixels; part of every cache key and of the manifest.
ZOO_VERSION = "2"


ACTIVATIONS = ("relu", "leaky", "gelu", "silu")
OUTPUT_ACTIVATIONS = ("tanh", "sigmoid", "clamp")

#: Decoder architecture -> the family it imitates.
ARCHS = {
    "tconv": "gan",  # DCGAN / pix2pix: ConvTranspose2d stride 2
    "nearest": "gan",  # ProGAN-like: nearest upsample + conv
    "bilinear": "other",
    "bicubic": "other",
    "pixelshuffle": "other",  # super-resolution style: conv + PixelShuffle
    "vae": "diffusion",  # SD-VAE-like: GroupNorm + SiLU ResBlocks, nearest upsample + conv
    "stylegan": "gan",  # modulated convs, noise injection, bilinear upsample
    "transformer": "autoregressive",  # ViT / VQ patch decoder: linear to patch pixels
    "mixed": "other",  # each stage its own upsampler (seed-drawn): nearest/bilinear/bicubic/tconv/pixelshuffle
    "unet": "gan",  # pix2pix / CycleGAN U-Net: tconv stages, skip connections from the encoder
    "fir": "gan",  # StyleGAN2: tconv 3x3 stride 2 + [1,3,3,1] FIR blur, skip-summed RGB outputs
    "shuffle": "other",  # ESPCN / SR models: convs at low resolution, then PixelShuffle(4)
    "vqgan": "autoregressive",  # VQGAN / DALL-E tokenizer: quantised latent, attention, ResBlocks, nearest up
    "denoise": "diffusion",  # upsampler, then noise and residual denoising blocks at full resolution
}

#: The upsamplers a ``mixed`` decoder's stages are drawn from.
MIXED_UPSAMPLERS = ("nearest", "bilinear", "bicubic", "tconv", "pixelshuffle")

#: Hyperparameter choices; a generator's values are drawn from them with its seed.
_CHOICES: dict[str, tuple] = {
    "width": (32, 48),
    "latent_channels": (8, 12, 16),
    "n_up": (2, 3),
    "kernel": (3, 5),
    "act": ACTIVATIONS,
    "out_act": OUTPUT_ACTIVATIONS,
}

#: The kinds :func:`default_zoo` cycles over: name prefix -> (arch, choices that differ from _CHOICES).
GENERATOR_KINDS: dict[str, tuple[str, dict[str, tuple]]] = {
    "tconv-k4": ("tconv", {"kernel": (4,)}),
    "tconv-k3": ("tconv", {"kernel": (3,)}),  # stride 2 with an odd kernel: checkerboard-prone
    "nearest": ("nearest", {}),
    "bilinear": ("bilinear", {}),
    "bicubic": ("bicubic", {}),
    "pixelshuffle": ("pixelshuffle", {}),
    "vae": ("vae", {"act": ("silu",), "kernel": (3,), "width": (32,)}),  # narrow: three convs per stage
    "stylegan": ("stylegan", {}),
    "transformer-p4": ("transformer", {"n_up": (2,), "kernel": (1,)}),
    "transformer-p8": ("transformer", {"n_up": (3,), "kernel": (1,)}),
    # Added after ZOO_VERSION 2: appended, so the kinds above keep their place in default_zoo.
    "mixed": ("mixed", {"kernel": (1, 3, 5)}),  # kernel: the final RGB conv's; stages drawn from MIXED_UPSAMPLERS
    "unet": ("unet", {"kernel": (4,)}),
    "fir": ("fir", {"kernel": (3,)}),
    "shuffle-x4": ("shuffle", {"n_up": (2,)}),
    "vqgan": ("vqgan", {"act": ("silu",), "kernel": (3,), "width": (32,)}),
    "denoise": ("denoise", {"kernel": (3,)}),
}

_IMAGE_NAME = re.compile(r"^\d{5}\.(png|jpg)$")


# --------------------------------------------------------------------------------------- cache


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _seed(*parts) -> int:
    """A 63-bit seed derived from ``parts`` (stable across runs and machines)."""
    return int(_digest(*parts)[:15], 16)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------- real photos

# Photo files inside the wheels of scikit-image, scikit-learn and matplotlib: (package, path in it).
# Read as files, so nothing can trigger a download (skimage.data fetches some images with pooch)
# and the packages are not even imported. Synthetic images (colour wheel, logo, chessboards) are
# left out.
_PHOTO_FILES = {
    "skimage.astronaut": ("skimage", "data/astronaut.png"),
    "skimage.chelsea": ("skimage", "data/chelsea.png"),
    "skimage.coffee": ("skimage", "data/coffee.png"),
    "skimage.rocket": ("skimage", "data/rocket.jpg"),
    "skimage.hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "skimage.immunohistochemistry": ("skimage", "data/ihc.png"),
    "skimage.motorcycle": ("skimage", "data/motorcycle_left.png"),
    "skimage.retina": ("skimage", "data/retina.jpg"),
    "skimage.camera": ("skimage", "data/camera.png"),
    "skimage.moon": ("skimage", "data/moon.png"),
    "skimage.brick": ("skimage", "data/brick.png"),
    "skimage.grass": ("skimage", "data/grass.png"),
    "skimage.gravel": ("skimage", "data/gravel.png"),
    "skimage.coins": ("skimage", "data/coins.png"),
    "skimage.clock": ("skimage", "data/clock_motion.png"),
    "skimage.cell": ("skimage", "data/cell.png"),
    "skimage.page": ("skimage", "data/page.png"),
    "skimage.text": ("skimage", "data/text.png"),
    "sklearn.china": ("sklearn", "datasets/images/china.jpg"),
    "sklearn.flower": ("sklearn", "datasets/images/flower.jpg"),
    "matplotlib.grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}


def _photo_path(package: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / relative


@functools.lru_cache(maxsize=1)
def _load_photos() -> tuple[tuple[str, np.ndarray], ...]:
    photos = []
    for name, (package, relative) in _PHOTO_FILES.items():
        path = _photo_path(package, relative)
        if path is None or not path.is_file():
            continue  # package missing, or this version ships no such photo
        try:
            with Image.open(path) as img:
                pixels = np.asarray(img.convert("RGB"))
        except OSError:
            continue  # unreadable file
        pixels.setflags(write=False)
        photos.append((name, pixels))
    if not photos:
        raise AttribError("no real photos found: scikit-image, scikit-learn or matplotlib must be installed")
    return tuple(photos)


def real_photos() -> list[tuple[str, np.ndarray]]:
    """``(name, H x W x 3 uint8)`` photos shipped inside installed packages (read-only arrays).

    Grayscale photos are repeated to three channels. About 20 photos with a full install.
    """
    return list(_load_photos())


@functools.lru_cache(maxsize=8)
def _content_pool(min_side: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The photos at least ``min_side`` on each side (never upscaled: 'real' stays real) and
    their sampling probabilities: colour photos count twice, so about 2/3 of crops are in colour."""
    images = [pixels for _, pixels in _load_photos() if min(pixels.shape[:2]) >= min_side]
    if not images:
        largest = max(min(pixels.shape[:2]) for _, pixels in _load_photos())
        raise AttribError(f"image size {min_side} is larger than every real photo (at most {largest} pixels)")
    weights = np.array([1.0 if (p[..., :1] == p).all() else 2.0 for p in images])
    return tuple(images), weights / weights.sum()


def _random_crop(rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``size`` x ``size`` crop of a random photo, flipped left-right half the time."""
    images, probs = _content_pool(size)
    pixels = images[rng.choice(len(images), p=probs)]
    h, w = pixels.shape[:2]
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    crop = pixels[y : y + size, x : x + size]
    return crop[:, ::-1] if rng.random() < 0.5 else crop


# ------------------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class GeneratorSpec:
    """Everything that determines a zoo generator (with :class:`TrainConfig`)."""

    name: str  # e.g. "tconv-k4-s3"; the folder name in a built zoo
    arch: str  # decoder architecture, a key of ARCHS (or "real")
    family: str  # one of attrib.sources.FAMILIES
    seed: int
    width: int = 32  # decoder channels at latent resolution, halved at each upsampling stage
    latent_channels: int = 8
    n_up: int = 2  # upsampling stages: the latent is at 1 / 2**n_up resolution
    kernel: int = 3  # conv kernel (tconv, unet: transposed-conv kernel; transformer: 1, per-token linear; mixed: the RGB conv's)
    act: str = "relu"  # one of ACTIVATIONS
    out_act: str = "tanh"  # one of OUTPUT_ACTIVATIONS
    upsamplers: tuple[str, ...] = ()  # mixed: one of MIXED_UPSAMPLERS per stage; empty for other archs

    def __post_init__(self):
        object.__setattr__(self, "upsamplers", tuple(self.upsamplers))  # hashable, whatever it was given as

    def to_dict(self) -> dict:
        """The fields, leaving out an empty ``upsamplers``: that field came after ZOO_VERSION 2,
        and this dict goes into cache keys and training seeds, which must not change for the
        generators that have none."""
        fields = asdict(self)
        if not fields["upsamplers"]:
            del fields["upsamplers"]
        return fields

    def hyperparameters(self) -> dict:
        """The fields beyond name / arch / family / seed."""
        return {k: v for k, v in self.to_dict().items() if k not in ("name", "arch", "family", "seed")}


#: The real-photo source: crops of :func:`real_photos`, untouched.
REAL = GeneratorSpec(name="real", arch="real", family="real", seed=0)


def generator_spec(kind: str, seed: int) -> GeneratorSpec:
    """The spec named ``f"{kind}-s{seed}"``; hyperparameters are drawn from ``(kind, seed)``.

    ``kind`` is a key of :data:`GENERATOR_KINDS`, e.g. ``"tconv-k3"`` or ``"vae"``. A ``mixed``
    generator also draws one upsampler per stage from :data:`MIXED_UPSAMPLERS`, at least two
    different ones.
    """
    if kind not in GENERATOR_KINDS:
        raise AttribError(f"unknown generator kind {kind!r}; known: {', '.join(GENERATOR_KINDS)}")
    arch, overrides = GENERATOR_KINDS[kind]
    rng = np.random.default_rng(_seed("spec", kind, seed))
    params = {}
    for field, choices in _CHOICES.items():
        choices = overrides.get(field, choices)
        params[field] = choices[rng.integers(len(choices))]
    if arch == "mixed":  # drawn after the shared fields, so those stay as the other kinds draw them
        stages: tuple[str, ...] = ()
        while len(set(stages)) < 2:
            stages = tuple(MIXED_UPSAMPLERS[i] for i in rng.integers(len(MIXED_UPSAMPLERS), size=params["n_up"]))
        params["upsamplers"] = stages
    return GeneratorSpec(name=f"{kind}-s{seed}", arch=arch, family=ARCHS[arch], seed=seed, **params)


def default_zoo(n: int, kinds: Sequence[str] | None = None) -> list[GeneratorSpec]:
    """``n`` generator specs, cycling over ``kinds`` (default: every kind of
    :data:`GENERATOR_KINDS`, in order): seed 0 of each kind, then seed 1, ...

    New kinds are appended to :data:`GENERATOR_KINDS`, so ``default_zoo(n)`` changes when one
    is added; pass ``kinds`` to pin a zoo's composition.
    """
    if n < 0:
        raise AttribError(f"the number of generators must be >= 0, got {n}")
    kinds = list(GENERATOR_KINDS) if kinds is None else list(kinds)
    unknown = [kind for kind in kinds if kind not in GENERATOR_KINDS]
    if unknown:
        raise AttribError(f"unknown generator kind(s) {', '.join(map(repr, unknown))}; known: {', '.join(GENERATOR_KINDS)}")
    if len(set(kinds)) != len(kinds):
        raise AttribError(f"generator kinds must be unique, got {', '.join(kinds)}")
    if n and not kinds:
        raise AttribError("no generator kinds to cycle over")
    return [generator_spec(kinds[i % len(kinds)], i // len(kinds)) for i in range(n)]


# ----------------------------------------------------------------------------------- networks


def _activation(name: str) -> nn.Module:
    if name == "leaky":
        return nn.LeakyReLU(0.2)
    return {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}[name]()


def _widths(spec: GeneratorSpec) -> list[int]:
    """Channels from latent resolution (index 0) to full resolution (index n_up), multiples of 8."""
    return [max(8, (spec.width >> i) // 8 * 8) for i in range(spec.n_up + 1)]


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


@functools.lru_cache(maxsize=64)
def _interpolation_matrix(n: int, mode: str) -> torch.Tensor:
    """The ``2n x n`` matrix of x2 upsampling along one axis, taken from ``F.interpolate`` itself."""
    return F.interpolate(torch.eye(n)[None, None], size=(2 * n, n), mode=mode, align_corners=False)[0, 0]


class _Upsample2x(nn.Module):
    """x2 upsampling. Bilinear and bicubic are separable, so they run as two matrix products:
    the same result as ``F.interpolate`` (to float rounding), many times faster to train on CPU."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        h, w = x.shape[-2:]
        return _interpolation_matrix(h, self.mode) @ x @ _interpolation_matrix(w, self.mode).T


class _Encoder(nn.Module):
    """Shared by every architecture: strided 4x4 convs down to the latent."""

    def __init__(self, spec: GeneratorSpec):
        super().__init__()
        widths = _widths(spec)[::-1]
        layers: list[nn.Module] = [_conv(3, widths[0], 3), _activation(spec.act)]
        for cin, cout in zip(widths, widths[1:]):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), _activation(spec.act)]
        layers.append(nn.Conv2d(widths[-1], spec.latent_channels, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The latent, and the activations at 1/2**(n_up-1) ... 1/2 resolution (coarsest first):
        the skip connections of a U-Net. The net is conv, act, (strided conv, act) x n_up, conv."""
        skips = []
        last = len(self.net) - 4  # the activation at 1/2**(n_up-1) resolution
        for i, layer in enumerate(self.net):
            x = layer(x)
            if i >= 3 and i % 2 == 1 and i <= last:
                skips.append(x)
        return x, skips[::-1]


class _UpsampleDecoder(nn.Module):
    """tconv / nearest / bilinear / bicubic / pixelshuffle: stem conv, n_up upsampling stages,
    RGB head. A tconv decoder's last transposed conv writes RGB directly, as in DCGAN."""

    def __init__(self, spec: GeneratorSpec):
        super().__init__()
        widths, k = _widths(spec), spec.kernel
        if spec.arch == "tconv":
            widths[-1] = 3
        layers: list[nn.Module] = [_conv(spec.latent_channels, widths[0], 3), _activation(spec.act)]
        for i, (cin, cout) in enumerate(zip(widths, widths[1:])):
            if spec.arch == "tconv":
                layers.append(nn.ConvTranspose2d(cin, cout, k, stride=2, padding=1, output_padding=k % 2))
            elif spec.arch == "pixelshuffle":
                layers += [_conv(cin, cout * 4, k), nn.PixelShuffle(2)]
            else:
                layers += [_Upsample2x(spec.arch), _conv(cin, cout, k)]
            if not (spec.arch == "tconv" and i == spec.n_up - 1):
                layers.append(_activation(spec.act))
        if spec.arch != "tconv":
            layers.append(_conv(widths[-1], 3, k))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def _group_norm(c: int) -> nn.GroupNorm:
    """Groups of 8 channels. (One channel per group would erase each channel's mean, and with it
    the colour cast, StyleGAN's instance-norm "droplet" problem.)"""
    return nn.GroupNorm(c // 8, c)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.net = nn.Sequential(
            _group_norm(cin), nn.SiLU(), _conv(cin, cout, 3), _group_norm(cout), nn.SiLU(), _conv(cout, cout, 3)
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.net(x)


class _VAEDecoder(nn.Module):
    """Stable-Diffusion-VAE-like: ResBlocks, nearest upsample + conv, GroupNorm/SiLU/conv out."""

    def __init__(self, spec: GeneratorSpec):
        super().__init__()
        widths = _widths(spec)
        layers: list[nn.Module] = [_conv(spec.latent_channels, widths[0], 3), _ResBlock(widths[0], widths[0])]
        for cin, cout in zip(widths, widths[1:]):
            layers += [_Upsample2x("nearest"), _conv(cin, cout, 3), _ResBlock(cout, cout)]
        layers += [_group_norm(widths[-1]), nn.SiLU(), _conv(widths[-1], 3, 3)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class _ModulatedConv(nn.Module):
    """StyleGAN2 modulated conv: the input is scaled per sample by a style, and the output
    demodulated (normalised as if the style had scaled the weight), optionally."""

    def __init__(self, cin: int, cout: int, k: int, style_dim: int, demodulate: bool = True):
        super().__init__()
        self.conv = _conv(cin, cout, k)
        self.affine = nn.Linear(style_dim, cin)
        nn.init.ones_(self.affine.bias)
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        scale = self.affine(style)  # batch x cin
        out = F.conv2d(x * scale[:, :, None, None], self.conv.weight, padding=self.conv.padding)
        if self.demodulate:  # 1 / |weight * scale| per sample and output channel
            norm = torch.rsqrt(scale.pow(2) @ self.conv.weight.pow(2).sum(dim=(2, 3)).T + 1e-8)
            out = out * norm[:, :, None, None]
        return out + self.conv.bias[None, :, None, None]


class _StyleGANDecoder(nn.Module):
    """StyleGAN-like: a style from the pooled latent modulates every conv; per-pixel noise is
    injected after each conv; bilinear upsampling between stages."""

    def __init__(self, spec: GeneratorSpec):
        super().__init__()
        widths, k = _widths(spec), spec.kernel
        style_dim = widths[0]
        self.mapping = nn.Sequential(
            nn.Linear(spec.latent_channels, style_dim), _activation(spec.act), nn.Linear(style_dim, style_dim)
        )
        self.stem = _conv(spec.latent_channels, widths[0], 3)
        self.convs = nn.ModuleList(_ModulatedConv(cin, cout, k, style_dim) for cin, cout in zip(widths, widths[1:]))
        self.noise_strength = nn.ParameterList(nn.Parameter(torch.full((1, c, 1, 1), 0.05)) for c in widths[1:])
        self.act = _activation(spec.act)
        self.upsample = _Upsample2x("bilinear")
        self.to_rgb = _ModulatedConv(widths[-1], 3, 1, style_dim, demodulate=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        style = self.mapping(z.mean(dim=(2, 3)))
        x = self.act(self.stem(z))
        for conv, strength in zip(self.convs, self.noise_strength):
            x = conv(self.upsample(x), style)
            x = self.act(x + strength * torch.randn_like(x[:, :1]))
        return self.to_rgb(x, style)


class _TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, act: str):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), _activation(act), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class _TransformerDecoder(nn.Module):
    """ViT / VQ-style patch decoder: latent positions are tokens (convolutional position
    encoding, two attention blocks), each token is linearly mapped to a patch of pixels."""

    def __init__(self, spec: GeneratorSpec):
        super().__init__()
        dim, self.patch = spec.width, 2**spec.n_up
        self.embed = nn.Conv2d(spec.latent_channels, dim, 1)
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.blocks = nn.Sequential(*(_TransformerBlock(dim, dim // 16, spec.act) for _ in range(2)))
        self.norm = nn.LayerNorm(dim)
        self.to_patch = nn.Linear(dim, 3 * self.patch**2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.embed(z)
        x = x + self.pos(x)
        b, d, h, w = x.shape
        tokens = self.blocks(x.flatten(2).transpose(1, 2))
        patches = self.to_patch(self.norm(tokens)).transpose(1, 2).reshape(b, -1, h, w)
        return F.pixel_shuffle(patches, self.patch)


class _MixedDecoder(nn.Module):
    """Stem conv, then one stage per entry of ``spec.upsamplers`` (nearest / bilinear / bicubic
    upsample + 3x3 conv, 4x4 stride-2 transposed conv, or 3x3 conv + PixelShuffle(2)), then an
    RGB conv of ``spec.kernel`` (1: the last stage's trace reaches the pixels unfiltered)."""

    def __init__(self, spec: GeneratorSpec):
        super().__init__()
        widths = _widths(spec)
        if len(spec.upsamplers) != spec.n_up or not set(spec.upsamplers) <= set(MIXED_UPSAMPLERS):
            raise AttribError(f"{spec.name}: a mixed decoder needs {spec.n_up} upsamplers from {', '.join(MIXED_UPSAMPLERS)}")
        layers: list[nn.Module] = [_conv(spec.latent_channels, widths[0], 3), _activation(spec.act)]
        for (cin, cout), mode in zip(zip(widths, widths[1:]), spec.upsamplers):
            if mode == "tconv":
                layers.append(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1))
            elif mode == "pixelshuffle":
                layers += [_conv(cin, cout * 4, 3), nn.PixelShuffle(2)]
            else:
                layers += [_Upsample2x(mode), _conv(cin, cout, 3)]
            layers.append(_activation(spec.act))
        layers.append(_conv(widths[-1], 3, spec.kernel))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class _UNetDecoder(nn.Module):
    """pix2pix-like U-Net decoder: 4x4 stride-2 transposed convs; after each but the last, the
    encoder's activation at that resolution is concatenated (skip connection). The last one
    writes RGB directly, as pix2pix's outermost layer does."""

    def __init__(self, spec: GeneratorSpec):
        super().__init__()
        widths, k = _widths(spec), spec.kernel
        self.stem = nn.Sequential(_conv(spec.latent_channels, widths[0], 3), _activation(spec.act))
        self.ups = nn.ModuleList()
        for i, (cin, cout) in enumerate(zip(widths, widths[1:])):
            cin = cin if i == 0 else 2 * cin  # the previous stage's output and its skip
            cout = 3 if i == spec.n_up - 1 else cout
            self.ups.append(nn.ConvTranspose2d(cin, cout, k, stride=2, padding=1, output_padding=k % 2))
        self.act = _activation(spec.act)

    def forward(self, z: torch.Tensor, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.stem(z)
        for up, skip in zip(self.ups, skips):
            x = torch.cat([self.act(up(x)), skip], dim=1)
        return self.ups[-1](x)


@functools.lru_cache(maxsize=64)
def _fir_matrix(n: int, up: bool) -> torch.Tensor:
    """StyleGAN2's resampling filter [1, 3, 3, 1] along one axis, as a matrix. ``up``: the
    ``2n x n`` matrix of ``upfirdn2d(up=2)`` (zero insertion, the filter with gain 2 per axis,
    padding (2, 1)); else the ``n-1 x n`` blur that follows a stride-2 transposed conv (padding
    (1, 1): ``2h+1`` rows become ``2h``). As matrix products, like :class:`_Upsample2x`: much
    faster on CPU than depthwise convs."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8
    if up:
        matrix = torch.zeros(2 * n, n)
        for i in range(2 * n):
            for j in range(4):  # out[i] = sum_j 2 taps[j] z[i + j - 2], z[2m] = x[m], z[odd] = 0
                if (i + j - 2) % 2 == 0 and 0 <= (i + j - 2) // 2 < n:
                    matrix[i, (i + j - 2) // 2] += 2 * taps[j]
        return matrix
    matrix = torch.zeros(n - 1, n)
    for i in range(n - 1):
        for j in range(4):  # out[i] = sum_j taps[j] x[i + j - 1]
            if 0 <= i + j - 1 < n:
                matrix[i, i + j - 1] += taps[j]
    return matrix


def _fir(x: torch.Tensor, up: bool) -> torch.Tensor:
    h, w = x.shape[-2:]
    return _fir_matrix(h, up) @ x @ _fir_matrix(w, up).T


class _FIRDecoder(nn.Module):
    """StyleGAN2-like anti-aliased upsampling ("skip" generator): each stage is a 3x3 stride-2
    transposed conv followed by the [1,3,3,1] FIR low-pass, then a conv; every resolution has a
    1x1 toRGB whose output is added to the FIR-upsampled RGB of the resolution below."""

    def __init__(self, spec: GeneratorSpec):
        super().__init__()
        widths, k = _widths(spec), spec.kernel
        self.stem = nn.Sequential(_conv(spec.latent_channels, widths[0], 3), _activation(spec.act))
        self.ups = nn.ModuleList(nn.ConvTranspose2d(cin, cout, 3, stride=2) for cin, cout in zip(widths, widths[1:]))
        self.convs = nn.ModuleList(_conv(c, c, k) for c in widths[1:])
        self.to_rgb = nn.ModuleList(nn.Conv2d(c, 3, 1) for c in widths)
        self.act = _activation(spec.act)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.stem(z)
        rgb = self.to_rgb[0](x)
        for up, conv, to_rgb in zip(self.ups, self.convs, self.to_rgb[1:]):
            x = self.act(_fir(up(x), up=False))  # 2h+1 -> 2h: the blur of StyleGAN2's up-conv
            x = self.act(conv(x))
            rgb = _fir(rgb, up=True) + to_rgb(x)
        return rgb


class _ShuffleDecoder(nn.Module):
    """ESPCN-like sub-pixel decoder: convs at latent resolution, then one conv to 48 channels and
    PixelShuffle(4): a period-4 trace, as in super-resolution models."""

    def __init__(self, spec: GeneratorSpec):
        super().__init__()
        width, k, factor = spec.width, spec.kernel, 2**spec.n_up
        self.net = nn.Sequential(
            _conv(spec.latent_channels, width, k), _activation(spec.act),
            _conv(width, width, 3), _activation(spec.act),
            _conv(width, 3 * factor**2, 3), nn.PixelShuffle(factor),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class _AttentionBlock(nn.Module):
    """VQGAN's single-head spatial self-attention (GroupNorm, 1x1 q/k/v, residual)."""

    def __init__(self, c: int):
        super().__init__()
        self.norm, self.qkv, self.proj = _group_norm(c), nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(2, 3).unbind(1)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class _VQGANDecoder(nn.Module):
    """VQGAN / DALL-E-tokenizer-like: the latent is replaced by its nearest codebook entry
    (cosine similarity, as in ViT-VQGAN), then conv, ResBlock, attention, and per stage
    nearest upsample + conv + ResBlock, GroupNorm/SiLU/conv out.

    ``codes + (z - z.detach())``: the value is the code, the gradient reaches both the codebook
    and (straight-through) the encoder, so plain reconstruction training learns both."""

    codebook_size = 256

    def __init__(self, spec: GeneratorSpec):
        super().__init__()
        widths = _widths(spec)
        self.codebook = nn.Parameter(torch.randn(self.codebook_size, spec.latent_channels))
        layers: list[nn.Module] = [
            _conv(spec.latent_channels, widths[0], 3),
            _ResBlock(widths[0], widths[0]),
            _AttentionBlock(widths[0]),
        ]
        for cin, cout in zip(widths, widths[1:]):
            layers += [_Upsample2x("nearest"), _conv(cin, cout, 3), _ResBlock(cout, cout)]
        layers += [_group_norm(widths[-1]), nn.SiLU(), _conv(widths[-1], 3, 3)]
        self.net = nn.Sequential(*layers)

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The quantised latent and the code index of every latent position."""
        z = F.normalize(z, dim=1)
        codebook = F.normalize(self.codebook, dim=1)
        index = torch.einsum("bchw,nc->bnhw", z, codebook).argmax(dim=1)
        codes = codebook[index].permute(0, 3, 1, 2)
        return codes + (z - z.detach()), index

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.quantize(z)[0])


class _DenoiseDecoder(nn.Module):
    """Diffusion-like: an upsampler (bilinear upsample + conv stages) gives a first RGB estimate
    and features; per-pixel noise is added, then residual denoising blocks at full resolution,
    each seeing the estimate and the features, subtract their noise prediction (a few unrolled
    steps of a pixel-space / super-resolution diffusion sampler)."""

    steps = 2

    def __init__(self, spec: GeneratorSpec):
        super().__init__()
        widths, k = _widths(spec), spec.kernel
        layers: list[nn.Module] = [_conv(spec.latent_channels, widths[0], 3), _activation(spec.act)]
        for cin, cout in zip(widths, widths[1:]):
            layers += [_Upsample2x("bilinear"), _conv(cin, cout, 3), _activation(spec.act)]
        self.upsampler = nn.Sequential(*layers)
        self.to_rgb = _conv(widths[-1], 3, 3)
        self.noise_strength = nn.Parameter(torch.full((1, 1, 1, 1), 0.1))
        c = widths[-1]
        self.denoisers = nn.ModuleList(
            nn.Sequential(_conv(3 + c, c, k), _activation(spec.act), _conv(c, 3, k)) for _ in range(self.steps)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        features = self.upsampler(z)
        x = self.to_rgb(features)
        x = x + self.noise_strength * torch.randn_like(x[:, :1])
        for denoiser in self.denoisers:
            x = x - denoiser(torch.cat([x, features], dim=1))
        return x


_DECODERS = {
    "vae": _VAEDecoder,
    "stylegan": _StyleGANDecoder,
    "transformer": _TransformerDecoder,
    **{arch: _UpsampleDecoder for arch in ("tconv", "nearest", "bilinear", "bicubic", "pixelshuffle")},
    "mixed": _MixedDecoder,
    "unet": _UNetDecoder,
    "fir": _FIRDecoder,
    "shuffle": _ShuffleDecoder,
    "vqgan": _VQGANDecoder,
    "denoise": _DenoiseDecoder,
}


class ZooGenerator(nn.Module):
    """encoder -> latent (+ noise) -> architecture-specific decoder -> output activation.

    Pixels are in [-1, 1]; ``clamp`` outputs are clamped only when converted to uint8, so
    training sees their gradient.
    """

    def __init__(self, spec: GeneratorSpec, latent_noise: float):
        super().__init__()
        if spec.arch not in _DECODERS:
            raise AttribError(f"{spec.name}: unknown architecture {spec.arch!r}; known: {', '.join(ARCHS)}")
        self.spec, self.latent_noise = spec, latent_noise
        self.encoder = _Encoder(spec)
        self.decoder = _DECODERS[spec.arch](spec)
        # He initialisation: with PyTorch's default the signal shrinks layer by layer and about
        # half the generators sit on a grey, blurry plateau for the whole (brief) training.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, a=0.2, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.arch == "unet":  # skip connections: the encoder's activations bypass the latent
            z, skips = self.encoder.features(x)
        else:
            z, skips = self.encoder(x), None
        z = z + self.latent_noise * z.std(dim=(2, 3), keepdim=True) * torch.randn_like(z)
        out = self.decoder(z) if skips is None else self.decoder(z, skips)
        if self.spec.out_act == "tanh":
            return torch.tanh(out)
        if self.spec.out_act == "sigmoid":
            return 2 * torch.sigmoid(out) - 1
        return out


# ----------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainConfig:
    """How zoo generators are trained (part of every cache key)."""

    steps: int = 250
    batch_size: int = 8
    crop: int = 32  # training crop side; a multiple of 8 so every latent size divides it
    lr: float = 1e-3
    latent_noise: float = 0.1  # latent noise, relative to the latent's spatial std (train and generate)
    threads: int = 1  # torch CPU threads; fixed so results do not depend on the machine's core count


@contextlib.contextmanager
def _torch_state(seed: int, threads: int) -> Iterator[None]:
    """Seed torch's global RNG and set its thread count, restoring both afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(previous)


def _to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """``N x H x W x 3`` uint8 -> ``N x 3 x H x W`` float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 127.5 - 1


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _generator_key(spec: GeneratorSpec, train: TrainConfig) -> str:
    photos = [(name, pixels.shape) for name, pixels in _load_photos()]
    return _digest(ZOO_VERSION, spec.to_dict(), asdict(train), photos)[:16]


def _train(spec: GeneratorSpec, train: TrainConfig) -> ZooGenerator:
    with _torch_state(_seed("train", spec.to_dict(), asdict(train)), train.threads):
        # channels_last: oneDNN convolutions run about a quarter faster on CPU in that layout
        model = ZooGenerator(spec, train.latent_noise).to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=train.lr, betas=(0.9, 0.99))
        rng = np.random.default_rng(_seed("train-crops", spec.to_dict(), asdict(train)))
        for _ in range(train.steps):
            crops = np.stack([_random_crop(rng, train.crop) for _ in range(train.batch_size)])
            batch = _to_tensor(crops).contiguous(memory_format=torch.channels_last)
            loss = F.l1_loss(model(batch), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    # back to the layout a model loaded from the cache has, so both generate identical pixels
    return model.to(memory_format=torch.contiguous_format).eval()


def _generator_path(spec: GeneratorSpec, train: TrainConfig) -> Path:
    return cache_dir() / "zoo" / "generators" / f"{spec.name}-{_generator_key(spec, train)}.pt"


def load_generator(spec: GeneratorSpec, train: TrainConfig = TrainConfig()) -> ZooGenerator:
    """The trained generator for ``spec``: from the cache, or trained (a few seconds) and cached."""
    path = _generator_path(spec, train)
    if path.exists():
        model = ZooGenerator(spec, train.latent_noise)
        try:
            model.load_state_dict(torch.load(path, weights_only=True))
            return model.eval()
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError):
            pass  # a damaged cache entry: train again and replace it
    model = _train(spec, train)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    _atomic_write(path, buffer.getvalue())
    return model


def _train_into_cache(spec: GeneratorSpec, train: TrainConfig) -> str:
    load_generator(spec, train)
    return spec.name


def _train_all(specs: Sequence[GeneratorSpec], train: TrainConfig, workers: int, progress: bool) -> None:
    """Train and cache ``specs``, in up to ``workers`` processes (each on ``train.threads``
    threads, so results do not depend on ``workers``). A process spends seconds importing torch,
    about as long as one training, so each is given at least three generators."""
    workers = min(workers, len(specs) // 3)
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=len(specs), desc="training", unit="generator", disable=not progress))
        if workers > 1:
            # spawn, not fork: forking a process that has started torch's thread pools can deadlock
            context = multiprocessing.get_context("spawn")
            pool = stack.enter_context(ProcessPoolExecutor(min(workers, len(specs)), mp_context=context))
            names = pool.map(_train_into_cache, specs, itertools.repeat(train))
        else:
            names = map(_train_into_cache, specs, itertools.repeat(train))
        for name in names:
            bar.set_postfix_str(name)
            bar.update()


def default_workers() -> int:
    """Training processes :func:`build_zoo` uses by default: the usable cores, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


# --------------------------------------------------------------------------------- generation


def _real_images(spec: GeneratorSpec, n: int, size: int, seed: int) -> np.ndarray:
    return np.stack([_random_crop(np.random.default_rng(_seed("content", seed, spec.name, i)), size) for i in range(n)])


def generate(
    spec: GeneratorSpec, n: int, size: int = 128, seed: int = 0, train: TrainConfig = TrainConfig()
) -> np.ndarray:
    """``n`` images (``n x size x size x 3`` uint8) from ``spec``; :data:`REAL` gives photo crops.

    Image ``i`` depends only on ``(spec, train, seed, i, size)``, so asking for more images keeps
    the first ones. Generated images are cached beside the generator.
    """
    if n < 1 or size < 8:
        raise AttribError(f"need at least one image of at least 8 pixels, got {n} of {size}")
    if spec.arch == "real":
        return _real_images(spec, n, size, seed)
    path = cache_dir() / "zoo" / "images" / f"{spec.name}-{_digest(_generator_key(spec, train), n, size, seed)[:16]}.npy"
    if path.exists():
        return np.load(path)
    model = load_generator(spec, train)
    # The network needs a multiple of 2**n_up: generate slightly larger, keep the top-left corner.
    padded = -(-size // 2**spec.n_up) * 2**spec.n_up
    crops = _real_images(spec, n, padded, seed)
    images = []
    for i, crop in enumerate(crops):
        with _torch_state(_seed("noise", seed, spec.name, i), train.threads), torch.no_grad():
            images.append(_to_uint8(model(_to_tensor(crop[None])))[0, :size, :size])
    out = np.stack(images)
    buffer = io.BytesIO()
    np.save(buffer, out)
    _atomic_write(path, buffer.getvalue())
    return out


# ---------------------------------------------------------------------------- post-processing

_POST_PATTERN = re.compile(r"^(jpeg)(\d+)$|^(resize)(\d*\.?\d+)(?::(bicubic|bilinear))?$|^(blur)(\d*\.?\d+)$")


def parse_post(post: str | Sequence[str]) -> tuple[str, ...]:
    """Validate post-processing steps; returns them one per item, in order.

    Steps (comma-separated in one string, or one per item):
    ``jpegQ`` (JPEG at quality Q, 1..95), ``resizeF`` or ``resizeF:bilinear`` (scale by F with
    Pillow bicubic / bilinear), ``blurS`` (Gaussian blur, sigma S pixels).
    """
    items = [post] if isinstance(post, str) else list(post)
    steps = tuple(step.strip().lower() for item in items for step in item.split(",") if step.strip())
    for step in steps:
        match = _POST_PATTERN.match(step)
        if not match:
            raise AttribError(f"bad post-processing step {step!r}: use jpeg75, resize0.5, resize0.5:bilinear or blur1.0")
        if match.group(1) and not 1 <= int(match.group(2)) <= 95:
            raise AttribError(f"bad post-processing step {step!r}: JPEG quality must be 1..95")
        if match.group(3) and not 0 < float(match.group(4)) <= 8:
            raise AttribError(f"bad post-processing step {step!r}: resize factor must be in (0, 8]")
    return steps


def _apply_post(pixels: np.ndarray, steps: Sequence[str]) -> tuple[Image.Image, bytes | None]:
    """Apply ``steps``; also returns the JPEG file bytes when the last step was JPEG."""
    img, jpeg = Image.fromarray(pixels), None
    for step in parse_post(steps):
        match = _POST_PATTERN.match(step)
        if match.group(1):
            buffer = io.BytesIO()
            img.save(buffer, format="JPEG", quality=int(match.group(2)))
            jpeg = buffer.getvalue()
            img = Image.open(io.BytesIO(jpeg)).convert("RGB")
            continue
        if match.group(3):
            factor = float(match.group(4))
            method = Image.BILINEAR if match.group(5) == "bilinear" else Image.BICUBIC
            img = img.resize((max(1, round(img.width * factor)), max(1, round(img.height * factor))), method)
        else:
            img = img.filter(ImageFilter.GaussianBlur(float(match.group(7))))
        jpeg = None
    return img, jpeg


def post_process(pixels: np.ndarray, post: str | Sequence[str]) -> np.ndarray:
    """``pixels`` (H x W x 3 uint8) after the post-processing ``post`` (see :func:`parse_post`)."""
    return np.asarray(_apply_post(pixels, post)[0])


def encode_image(pixels: np.ndarray, post: str | Sequence[str] = ()) -> tuple[bytes, str]:
    """File bytes and suffix for ``pixels`` after ``post``: ``.jpg`` when the last step is JPEG
    (the compressed file itself, not a re-encoding), else lossless ``.png``."""
    img, jpeg = _apply_post(pixels, post)
    if jpeg is not None:
        return jpeg, ".jpg"
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue(), ".png"


# ------------------------------------------------------------------------------------ building


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


def build_zoo(
    out_dir: str | os.PathLike,
    specs: Sequence[GeneratorSpec],
    images_per_source: int = 40,
    size: int = 128,
    post: Sequence[str] = (),
    include_real: bool = True,
    seed: int = 0,
    progress: bool = True,
    train: TrainConfig = TrainConfig(),
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
    _content_pool(size)  # refuse a size larger than the photos before training anything
    sources = ([REAL] if include_real else []) + list(specs)
    if not sources:
        raise AttribError("nothing to build: no generators and no real source")
    names = [spec.name for spec in sources]
    if len(set(names)) != len(names):
        raise AttribError(f"source names must be unique: {sorted({n for n in names if names.count(n) > 1})}")
    out = Path(out_dir)
    _clear_previous_build(out)
    out.mkdir(parents=True, exist_ok=True)
    untrained = [spec for spec in specs if not _generator_path(spec, train).exists()]
    if untrained:
        _train_all(untrained, train, default_workers() if workers is None else workers, progress)
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
        entries.append(
            {
                "name": spec.name,
                "arch": spec.arch,
                "family": spec.family,
                "seed": spec.seed,
                "hyperparameters": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.hyperparameters().items()},
                "images": images_per_source,
                "suffix": suffix,
            }
        )
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
