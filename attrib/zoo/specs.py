"""Generator specs: the architectures, the kinds :func:`default_zoo` cycles over, seeded hyperparameters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import AttribError
from .keys import derive_seed

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


@dataclass(frozen=True)
class GeneratorSpec:
    """Everything that determines a zoo generator (with :class:`GeneratorTrainConfig`)."""

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
    rng = np.random.default_rng(derive_seed("spec", kind, seed))
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
