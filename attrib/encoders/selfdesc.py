"""Forensic self-description: how each image predicts its own noise residual.

A generator's last layers (an autoencoder's decoder, upsamplers, the convolutions that mix
feature maps into R, G and B) fix how each pixel's high-frequency residual depends on its
neighbours'. Camera pipelines fix it too (demosaicing, sharpening). Following Nguyen, Azizpour
and Stamm ("Forensic Self-Descriptions Are All You Need for Zero-Shot Detection, Open-Set Source
Attribution, and Clustering of AI-generated Images", CVPR 2025), an image is described by the
parameters of a model fitted to *that image alone*: here the least-squares linear predictor of
each channel's residual pixel from its ``k x k`` neighbourhood in all three channels (the
centre itself left out), at several scales. Nothing is learned across images, so the
description needs no training data and transfers to generators nobody has seen; the metric on
top (the joint WCCN, :mod:`attrib.encoders.joint`) learns which coefficients are stable within
a source.

Per scale ``s`` (the image averaged over ``s x s`` blocks, then ``x - binomial3x3(x)`` per
channel, :func:`attrib.encoders.residual.residual`):

* the predictor's weights, ``3 x (3k^2 - 1)``; at scale 1 also for each of the four pixel
  positions modulo 2 separately (an upsampler by 2 interpolates odd and even pixels differently);
* the log of each predictor's normalised error (how much of the residual the neighbours
  explain).

Each set is centred and scaled to unit norm. With ``k = 5`` and scales ``1, 2, 4`` that is 1575
numbers per image, about 26 ms for a 256 px tile on one core (the moments are float32 products,
the small systems float64). On a GPU (:func:`attrib.encoders.device.torch_device`) the same steps
run in torch, same-size images batched (:func:`features_torch`).

On the devset's generator-disjoint folds (9 folds, 5-shot), appending these to ``fp-joint1``'s
features (one WCCN over all three: ``fp-joint4``) took 256 px crop top-1 from 0.76 to 0.80 and
AUROC from 0.83 to 0.87, against ``fp-joint3`` on the same folds; queries re-saved as JPEG lose
a little more than without them (``bench/real_folds.py``, README "Real generators").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .residual import map_images, residual, unit_group

#: the default description: 5x5 neighbourhoods, scales 1, 2 and 4, read from at most 256 px
DEFAULT = {"k": 5, "scales": [1, 2, 4], "max_side": 256}


def _pool(x: np.ndarray, s: int) -> np.ndarray:
    """Mean over ``s x s`` blocks of a C x H x W array (the remainder rows and columns dropped)."""
    if s == 1:
        return x
    c, h, w = x.shape
    h, w = h // s * s, w // s * s
    return x[:, :h, :w].reshape(c, h // s, s, w // s, s).mean(axis=(2, 4))


def neighbourhood_moments(r: np.ndarray, k: int, parity: bool) -> np.ndarray:
    """Second moments of every pixel's ``k x k x 3`` neighbourhood of a 3 x H x W residual ->
    (sets, 3k^2, 3k^2) float64: one set over all pixels, or (``parity``) one per position modulo 2
    and then their mean. Rows and columns are channel-major, then row-major within the window."""
    h = k // 2
    p = np.pad(r, ((0, 0), (h, h), (h, h)), mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(p, (k, k), axis=(1, 2))  # (3, H, W, k, k)
    d = 3 * k * k
    views = [windows[:, py::2, px::2] for py in range(2) for px in range(2)] if parity else [windows]
    out = []
    for v in views:
        m = np.ascontiguousarray(v.transpose(0, 3, 4, 1, 2)).reshape(d, -1)
        out.append((m @ m.T).astype(np.float64) / max(1, m.shape[1]))
    if parity:
        out.append(sum(out) / len(out))
    return np.stack(out)


def solve_predictors(G: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares predictors of each channel's centre pixel from the other ``3k^2 - 1``
    entries, from second moments ``G`` (..., d, d), lightly ridged -> (weights (..., 3, d - 1),
    normalised errors (..., 3)). From one inverse ``Q`` per matrix: the weights of target ``t``
    are ``-Q[others, t] / Q[t, t]`` and its residual variance over its own is ``1 / (Q[t, t] G[t, t])``."""
    d = 3 * k * k
    # the floor keeps a flat image (a residual of zeros: G = 0) invertible; its weights are then 0
    ridge = 1e-4 * np.trace(G, axis1=-2, axis2=-1)[..., None, None] / d + 1e-30
    Q = np.linalg.inv(G + ridge * np.eye(d))
    centres = [c * k * k + k * k // 2 for c in range(3)]
    weights = np.stack([-np.delete(Q[..., :, t], t, axis=-1) / Q[..., t, t, None] for t in centres], axis=-2)
    errors = np.stack([1.0 / (Q[..., t, t] * G[..., t, t] + 1e-30) for t in centres], axis=-1)
    return weights, errors


def describe(G: np.ndarray, k: int) -> list[np.ndarray]:
    """One scale's sets from its second moments ``G`` (sets, d, d): each set's predictor weights,
    then the log normalised errors of all, each centred and scaled to unit norm."""
    weights, errors = solve_predictors(G, k)
    return [unit_group(w) for w in weights] + [unit_group(np.log(errors + 1e-6))]


class SelfDescription:
    """Per-image linear self-description of the residual (see the module docstring)."""

    def __init__(self, k: int = 5, scales: Sequence[int] = (1, 2, 4), max_side: int = 256):
        if k < 3 or k % 2 == 0:
            raise ValueError(f"k must be odd and >= 3, not {k}")
        if not scales or any(s not in (1, 2, 4, 8) for s in scales):
            raise ValueError(f"scales are among 1, 2, 4, 8, not {list(scales)}")
        self.k, self.scales, self.max_side = int(k), [int(s) for s in scales], int(max_side)
        per_set = 3 * (3 * k * k - 1)
        self.dim = sum((5 if s == 1 else 1) * per_set + (15 if s == 1 else 3) for s in self.scales)
        #: where the descriptions are computed: None picks the GPU when there is one (numpy otherwise)
        self.device: str | None = None

    def config(self) -> dict[str, Any]:
        return {"k": self.k, "scales": list(self.scales), "max_side": self.max_side}

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The pixels described: the central ``max_side`` square of an H x W x 3 uint8 image,
        thumbnails mirrored up to ``k`` pixels at the coarsest scale."""
        h, w = image.shape[:2]
        oy, ox = max(0, (h - self.max_side) // 2), max(0, (w - self.max_side) // 2)
        image = image[oy : oy + self.max_side, ox : ox + self.max_side]
        side = self.k * max(self.scales)
        if min(image.shape[:2]) < side:
            pad = ((0, max(0, side - image.shape[0])), (0, max(0, side - image.shape[1])), (0, 0))
            image = np.pad(image, pad, mode="symmetric")
        return image

    def features(self, image: np.ndarray) -> np.ndarray:
        """The description of one H x W x 3 uint8 image (its central ``max_side`` square) -> (dim,)."""
        x = np.ascontiguousarray(self.prepare(image).transpose(2, 0, 1), dtype=np.float32)
        x *= np.float32(1 / 255)
        out = []
        for s in self.scales:
            out += describe(neighbourhood_moments(residual(_pool(x, s)), self.k, parity=s == 1), self.k)
        return np.concatenate(out).astype(np.float32)

    def features_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """:meth:`features` of many images -> (N, dim): one thread per core, or on a GPU the same
        computation in torch (:func:`features_torch`), images of one size together."""
        from .device import torch_device

        if not len(images):
            return np.zeros((0, self.dim), np.float32)
        device = torch_device(self.device)
        if device != "cpu":
            return features_torch(self, images, device)
        return map_images(self.features, images)


def features_torch(desc: SelfDescription, images: Sequence[np.ndarray], device: str = "cpu", micro_batch: int | None = None) -> np.ndarray:
    """:meth:`SelfDescription.features` of every image with torch on ``device`` -> (N, dim) float32:
    the neighbourhood moments (the whole cost) in float32 on the device, a micro-batch of
    same-size images at a time; the small systems then as numpy solves them (:func:`describe`).
    tests/test_selfdesc.py holds it to numpy on CPU torch."""
    import torch
    import torch.nn.functional as F

    from .device import micro_batch as default_micro_batch
    from .device import same_size_batches
    from .residual_torch import residual as residual_torch

    k, h = desc.k, desc.k // 2
    d = 3 * k * k
    prepared = [desc.prepare(img) for img in images]
    out = np.zeros((len(images), desc.dim), np.float32)
    with torch.inference_mode():
        for idx in same_size_batches(prepared, micro_batch or default_micro_batch()):
            x = torch.from_numpy(np.stack([prepared[i] for i in idx])).to(device).permute(0, 3, 1, 2).float() * (1 / 255)
            moments = []  # per scale: (B, sets, d, d)
            for s in desc.scales:
                xs = F.avg_pool2d(x, s) if s > 1 else x
                r = residual_torch(xs)
                b, _, hh, ww = r.shape
                win = F.unfold(F.pad(r, (h, h, h, h), mode="reflect"), k).reshape(b, d, hh, ww)  # channel, row, column
                views = [win[:, :, py::2, px::2] for py in range(2) for px in range(2)] if s == 1 else [win]
                G = [(m.reshape(b, d, -1) @ m.reshape(b, d, -1).transpose(1, 2)).double() / max(1, m[0, 0].numel()) for m in views]
                if s == 1:
                    G.append(sum(G) / len(G))
                moments.append(torch.stack(G, dim=1).cpu().numpy())
            for j, i in enumerate(idx):
                out[i] = np.concatenate([g for G in moments for g in describe(G[j], k)])
    return out
