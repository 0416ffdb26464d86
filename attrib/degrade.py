"""What sharing does to an image: JPEG, rescaling, blur, noise. One implementation for two users.

* The zoo's **post-processing** (``attrib zoo build --post jpeg75,resize0.5``): named, fixed
  steps applied to every image of a build (:func:`parse_post`, :func:`post_process`,
  :func:`encode_image`).
* Training's **augmentation** (:func:`degrade`): the same operations with random parameters,
  each with its probability, so an encoder learns what fingerprints must survive.

It lives outside :mod:`attrib.zoo` because neither user is about generators: training and the
benches degrade any image, and the CLI validates ``--post`` without importing torch (this module
needs only numpy and Pillow).

A step is a small frozen object (:class:`Resize`, :class:`Blur`, :class:`Jpeg`, :class:`Noise`);
:func:`apply_steps` runs a chain of them on a Pillow image and keeps the JPEG file bytes when
the last step was JPEG (so a zoo writes the compressed file itself, not a re-encoding).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
from PIL import Image, ImageFilter

from .errors import AttribError


@dataclass(frozen=True)
class Resize:
    """Scale both sides by ``factor`` (rounded, at least ``min_side``) with a Pillow filter."""

    factor: float
    method: int = Image.BICUBIC
    min_side: int = 1


@dataclass(frozen=True)
class Blur:
    """Gaussian blur, ``sigma`` in pixels."""

    sigma: float


@dataclass(frozen=True)
class Jpeg:
    """A JPEG round trip at ``quality``."""

    quality: int


@dataclass(frozen=True)
class Noise:
    """Additive Gaussian noise of standard deviation ``sigma`` (in 0..255 units); needs an rng."""

    sigma: float


Step = Union[Resize, Blur, Jpeg, Noise]


def apply_steps(img: Image.Image, steps: Sequence[Step], rng: np.random.Generator | None = None) -> tuple[Image.Image, bytes | None]:
    """Apply ``steps`` in order to an RGB image; also returns the JPEG file bytes when the last
    step was :class:`Jpeg` (else ``None``). :class:`Noise` draws from ``rng``."""
    jpeg = None
    for step in steps:
        if isinstance(step, Jpeg):
            buffer = io.BytesIO()
            img.save(buffer, format="JPEG", quality=step.quality)
            jpeg = buffer.getvalue()
            img = Image.open(io.BytesIO(jpeg)).convert("RGB")
            continue
        if isinstance(step, Resize):
            size = (max(step.min_side, round(img.width * step.factor)), max(step.min_side, round(img.height * step.factor)))
            img = img.resize(size, step.method)
        elif isinstance(step, Blur):
            img = img.filter(ImageFilter.GaussianBlur(step.sigma))
        elif isinstance(step, Noise):
            if rng is None:
                raise ValueError("a Noise step needs an rng")
            pixels = np.asarray(img)
            img = Image.fromarray(np.clip(pixels + rng.normal(0, step.sigma, pixels.shape), 0, 255).astype(np.uint8))
        else:
            raise TypeError(f"not a degradation step: {step!r}")
        jpeg = None
    return img, jpeg


# ---------------------------------------------------------------------- named steps (the zoo)

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


def post_steps(post: str | Sequence[str]) -> list[Step]:
    """The :class:`Step` objects of named post-processing steps (validated by :func:`parse_post`)."""
    out: list[Step] = []
    for name in parse_post(post):
        match = _POST_PATTERN.match(name)
        if match.group(1):
            out.append(Jpeg(int(match.group(2))))
        elif match.group(3):
            out.append(Resize(float(match.group(4)), Image.BILINEAR if match.group(5) == "bilinear" else Image.BICUBIC))
        else:
            out.append(Blur(float(match.group(7))))
    return out


def post_process(pixels: np.ndarray, post: str | Sequence[str]) -> np.ndarray:
    """``pixels`` (H x W x 3 uint8) after the post-processing ``post`` (see :func:`parse_post`)."""
    return np.asarray(apply_steps(Image.fromarray(pixels), post_steps(post))[0])


def encode_image(pixels: np.ndarray, post: str | Sequence[str] = ()) -> tuple[bytes, str]:
    """File bytes and suffix for ``pixels`` after ``post``: ``.jpg`` when the last step is JPEG
    (the compressed file itself, not a re-encoding), else lossless ``.png``."""
    img, jpeg = apply_steps(Image.fromarray(pixels), post_steps(post))
    if jpeg is not None:
        return jpeg, ".jpg"
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue(), ".png"


# ------------------------------------------------------------------- random steps (training)

#: Rescaling filters :func:`random_steps` draws from.
RESIZE_METHODS = (Image.BILINEAR, Image.BICUBIC, Image.LANCZOS)


def random_steps(p: dict[str, Any], rng: np.random.Generator) -> list[Step]:
    """Draw a degradation: rescale, blur, JPEG, noise, in that order, each with its probability
    ``p["p_resize"]`` ... and its parameter range ``p["resize"]`` ... (see
    ``attrib.train.TrainConfig.augment``). Rescaled sides stay at least 16 pixels.

    The draws come in a fixed order (probability, then parameters, step by step), so a seeded
    rng gives the same degradations run after run."""
    steps: list[Step] = []
    if rng.random() < p["p_resize"]:
        factor = rng.uniform(*p["resize"])
        steps.append(Resize(factor, RESIZE_METHODS[rng.integers(3)], min_side=16))
    if rng.random() < p["p_blur"]:
        steps.append(Blur(rng.uniform(*p["blur"])))
    if rng.random() < p["p_jpeg"]:
        steps.append(Jpeg(int(rng.integers(p["jpeg_q"][0], p["jpeg_q"][1] + 1))))
    if rng.random() < p["p_noise"]:
        steps.append(Noise(rng.uniform(*p["noise"])))
    return steps


def degrade(img: np.ndarray, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Random rescale / blur / JPEG / noise of a whole image (H x W x 3 uint8), each with its
    probability (:func:`random_steps`); the noise is drawn from ``rng`` after the parameters."""
    steps = random_steps(p, rng)
    if not steps:
        return img
    return np.asarray(apply_steps(Image.fromarray(img), steps, rng)[0])
