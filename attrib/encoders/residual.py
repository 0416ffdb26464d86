"""The training-free fingerprint encoder: statistics of the noise residual.

Generators leave traces in the highest frequencies. Upsampling layers (transposed convolutions,
nearest / bilinear interpolation, pixel shuffle, patch decoders) imprint *periodic* structure, and
the last layers fix how smooth the residual is and how the colour channels correlate. This
encoder measures exactly that, needs no weights, works on any image size (nothing is resized)
and is deterministic. From the residual ``r = x - blur3x3(x)`` of each RGB channel, normalised
by its own standard deviation:

* **periodic mean**: the residual averaged over pixels with the same position modulo ``period``
  (content averages out, a generator's fixed periodic bias stays), as DFT magnitudes, which do
  not depend on where the image was cropped;
* **periodic energy**: the same for the residual's energy (periodic modulation of noise);
* **autocorrelation** of the residual at small lags, and the correlation between channels at
  lags 0 and 1 (smoothness of the upsampler, colour pipeline);
* **coarse spectrum**: the tile-averaged log power spectrum of the residual, pooled over blocks of
  frequency bins (the shape of the spectrum without the per-bin noise).

Two optional groups (off in ``residual``; on in the learned ``fp-wccn2``) describe how a
generator's last layers mix one set of feature maps into R, G and B:

* **coherence** (``coherence=1``): the cross-spectra of the channel pairs, real and imaginary
  parts, pooled like the spectrum and normalised by the pooled powers (how strongly, and with
  what sub-pixel shift, the channels' residuals move together at each frequency);
* **predictor** (``predictor=1``): least-squares coefficients that predict each channel's
  residual from its 3x3 neighbourhood in all three channels (26 per channel), over the central
  128 px square and separately for each of the four pixel positions modulo 2 (the interpolation
  weights of an upsampler, as camera forensics reads a demosaicing pattern).

Each group is centred and scaled to unit norm (so no group dominates), concatenated and
L2-normalised: cosine similarity compares fingerprints.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.fft as sfft

from .base import Encoder

_VERSION = 2


def residual(img: np.ndarray) -> np.ndarray:
    """High-pass noise residual of a C x H x W float image: ``x - binomial3x3(x)`` per channel
    (edges replicated). Plain numpy, which releases the GIL: the encoder runs one thread per core
    (scipy.ndimage is 2x faster on one thread but holds the GIL, and loses on two)."""
    p = np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="edge")
    v = p[:, :-2] + 2.0 * p[:, 1:-1] + p[:, 2:]  # vertical [1 2 1]
    b = (v[:, :, :-2] + 2.0 * v[:, :, 1:-1] + v[:, :, 2:]) * np.float32(1 / 16)  # horizontal [1 2 1]
    return img - b


def tiles(x: np.ndarray, tile: int, max_tiles: int) -> np.ndarray:
    """Non-overlapping ``tile x tile`` tiles of a C x H x W array (at least one tile on each side;
    :meth:`ResidualSpectrumEncoder.features` pads thumbnails) -> (N, C, tile, tile)."""
    c, h, w = x.shape
    ny, nx = h // tile, w // tile
    oy, ox = (h - ny * tile) // 2, (w - nx * tile) // 2
    grid = x[:, oy : oy + ny * tile, ox : ox + nx * tile].reshape(c, ny, tile, nx, tile)
    grid = grid.transpose(1, 3, 0, 2, 4).reshape(ny * nx, c, tile, tile)
    if len(grid) > max_tiles:
        keep = np.linspace(0, len(grid) - 1, max_tiles).round().astype(int)
        grid = grid[keep]
    return grid


def _phase_pattern(x: np.ndarray, period: int) -> np.ndarray:
    """Mean of a C x H x W array over pixels with equal (y mod p, x mod p) -> (C, p, p)."""
    c, h, w = x.shape
    ny, nx = h // period, w // period
    # two single-axis sums: 12x faster than one mean over two strided axes
    rows = x[:, : ny * period, : nx * period].reshape(c, ny, period, nx * period).sum(axis=1)
    return rows.reshape(c, period, nx, period).sum(axis=2) / (ny * nx)


def unit_group(v: np.ndarray) -> np.ndarray:
    """A feature group flattened, centred and scaled to unit norm (float64): no group dominates."""
    v = v.reshape(-1).astype(np.float64)
    v = v - v.mean()
    return v / (np.linalg.norm(v) + 1e-9)


_PAIRS = ((0, 1), (1, 2), (0, 2))  # the channel pairs RG, GB, RB


def _pool_bins(a: np.ndarray, q: int) -> np.ndarray:
    """Mean over q x q blocks of frequency bins: (..., T, T/2+1) -> (..., T/q, T/2/q), the
    Nyquist column left out."""
    T = a.shape[-2]
    return a[..., : T // 2].reshape(*a.shape[:-2], T // q, q, T // 2 // q, q).mean(axis=(-3, -1))


def _coherence(cross: np.ndarray, pooled_power: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled, normalised cross-spectra of the channel pairs :data:`_PAIRS` from their tile-mean
    cross-spectra (3, T, T/2+1) and the channels' pooled power (3, T/q, T/2/q) -> (real parts,
    imaginary parts), each (3, T/q, T/2/q): 1 and 0 where two channels are equal, a phase where
    one is shifted."""
    c = _pool_bins(cross, q)
    n = np.sqrt(np.stack([pooled_power[a] * pooled_power[b] for a, b in _PAIRS])) + 1e-9
    return c.real / n, c.imag / n


_CENTRES = [c * 9 + 4 for c in range(3)]


def _solve_predictors(G: np.ndarray) -> np.ndarray:
    """Least-squares weights predicting each channel's centre pixel from the 26 other entries of
    27 x 27 second-moment matrices ``G`` (..., 27, 27) (3 channels x 3x3 neighbourhood), lightly
    ridged -> (..., 78). From one inverse ``Q`` per matrix: the weights on the others of target
    ``t`` are ``-Q[others, t] / Q[t, t]``, the same as solving the 26 x 26 system."""
    # the floor keeps a flat crop (a residual of zeros: G = 0) invertible; its weights are then 0
    ridge = 1e-4 * np.trace(G, axis1=-2, axis2=-1)[..., None, None] / 27 + 1e-30
    Q = np.linalg.inv(G + ridge * np.eye(27))
    out = [-np.delete(Q[..., :, t], t, axis=-1) / Q[..., t, t, None] for t in _CENTRES]
    return np.concatenate(out, axis=-1)


def _predictor(r: np.ndarray, max_side: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Linear-prediction weights of a 3 x H x W residual (its central ``max_side`` square: 4,096
    pixels per position modulo 2 fix 27 x 27 moments well, and the products are this group's whole
    cost) -> (over the whole square (3, 26), for each position modulo 2 (4, 3, 26)). Row ``c`` predicts channel ``c``'s centre pixel from the 3x3 neighbourhoods of
    all channels, channel-major and row-major, the centre itself left out."""
    _, h, w = r.shape
    oy, ox = max(0, (h - max_side) // 2) // 2 * 2, max(0, (w - max_side) // 2) // 2 * 2
    h, w = min(h, max_side) // 2, min(w, max_side) // 2  # positions of one parity per axis
    p = np.pad(r[:, oy : oy + 2 * h, ox : ox + 2 * w], ((0, 0), (1, 1), (1, 1)), mode="reflect")
    # (3, 2h, 2w, 3, 3) view of every pixel's 3x3 neighbourhood; one gather per position mod 2
    # (a loop over the 27 offsets held the GIL long enough to slow the threaded encoder)
    windows = np.lib.stride_tricks.sliding_window_view(p, (3, 3), axis=(1, 2))
    moments = []
    for py in range(2):
        for px in range(2):
            m = windows[:, py::2, px::2].transpose(0, 3, 4, 1, 2).reshape(27, -1)  # channel, row, column
            moments.append((m @ m.T).astype(np.float64) / m.shape[1])
    moments.append(sum(moments) / 4)
    w = _solve_predictors(np.stack(moments)).reshape(5, 3, 26)
    return w[4], w[:4]


class ResidualSpectrumEncoder(Encoder):
    """Training-free residual fingerprint (see module docstring)."""

    name = "residual"

    def __init__(
        self,
        period: int = 8,
        max_lag: int = 4,
        tile: int = 32,
        pool: int = 4,
        max_side: int = 512,
        max_tiles: int = 256,
        coherence: int = 0,
        predictor: int = 0,
    ):
        if tile % pool or tile < 8:
            raise ValueError("tile must be >= 8 and a multiple of pool")
        if coherence not in (0, 1) or predictor not in (0, 1):
            raise ValueError("coherence and predictor are 0 (off) or 1 (on)")
        self.period, self.max_lag, self.tile, self.pool, self.max_side, self.max_tiles = period, max_lag, tile, pool, max_side, max_tiles
        self.coherence, self.predictor = coherence, predictor
        self.lags = [(dy, dx) for dy in range(0, max_lag + 1) for dx in range(-max_lag, max_lag + 1) if (dy, dx) > (0, 0)]
        n_dft = period * (period // 2 + 1) - 1
        spec_bins = (tile // pool) * (tile // 2 // pool + 1)
        self.groups = {
            "periodic_mean": 3 * n_dft,
            "periodic_energy": 3 * n_dft,
            "autocorr": 3 * len(self.lags),
            "cross": 3 * 3,
            "spectrum": 3 * spec_bins,
        }
        if coherence:
            self.groups["coherence"] = 2 * 3 * (tile // pool) * (tile // 2 // pool)
        if predictor:
            self.groups["predictor"] = 5 * 3 * 26
        self.dim = sum(self.groups.values())
        self._calibration: dict[str, Any] | None = None
        #: where the features are computed: None picks the GPU when there is one (numpy otherwise)
        self.device: str | None = None

    def config(self) -> dict[str, Any]:
        config = {
            "version": _VERSION,
            "period": self.period,
            "max_lag": self.max_lag,
            "tile": self.tile,
            "pool": self.pool,
            "max_side": self.max_side,
            "max_tiles": self.max_tiles,
        }
        # the optional groups enter the config (and so the id) only when on: ids made before they
        # existed stay valid
        config.update({k: v for k, v in (("coherence", self.coherence), ("predictor", self.predictor)) if v})
        return config

    @property
    def calibration(self) -> dict[str, Any] | None:
        from .base import load_builtin_calibration

        if self._calibration is None:
            self._calibration = load_builtin_calibration(self.id) or {}
        return self._calibration or None

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The pixels the features read: the central ``max_side`` square, thumbnails mirrored up
        to one tile."""
        h, w = image.shape[:2]
        if max(h, w) > self.max_side:  # centre crop: fingerprints are local, big images need no more
            oy, ox = max(0, (h - self.max_side) // 2), max(0, (w - self.max_side) // 2)
            image = image[oy : oy + self.max_side, ox : ox + self.max_side]
        h, w = image.shape[:2]
        if h < self.tile or w < self.tile:  # thumbnails: mirror up to one tile (a 1-px side repeats)
            pad = ((0, max(0, self.tile - h)), (0, max(0, self.tile - w)), (0, 0))
            image = np.pad(image, pad, mode="reflect" if min(h, w) > 1 else "edge")
        return image

    def features(self, image: np.ndarray) -> np.ndarray:
        """The fingerprint of one image, before the final L2 normalisation."""
        image = self.prepare(image)
        # channel-first float32: reductions over contiguous axes, single-precision FFTs (scipy's
        # batched 2-D FFT is ~10x faster than numpy's here)
        x = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) * np.float32(1 / 255)
        r = residual(x)
        # predictor weights keep the channels' relative scale: computed before normalising
        pred = [unit_group(w) for w in _predictor(r)] if self.predictor else []
        r /= r.reshape(3, -1).std(axis=1)[:, None, None] + np.float32(1e-6)
        p = self.period
        mean_pat = np.abs(sfft.rfft2(_phase_pattern(r, p))).reshape(3, -1)[:, 1:]
        energy = r * r
        energy_pat = np.abs(sfft.rfft2(_phase_pattern(energy, p) / (energy.reshape(3, -1).mean(axis=1)[:, None, None] + 1e-9))).reshape(
            3, -1
        )[:, 1:]
        t = tiles(r, self.tile, self.max_tiles)
        f = sfft.rfft2(t, axes=(-2, -1))
        power = (f.real**2 + f.imag**2).mean(axis=0)  # (3, T, T/2+1)
        T, q = self.tile, self.pool
        # autocorrelation (per channel) and cross-correlation (channel pairs) from the spectra
        acf = sfft.irfft2(power, s=(T, T), axes=(-2, -1))
        ac = np.stack([acf[:, dy % T, dx % T] for dy, dx in self.lags], axis=1) / (acf[:, :1, 0] + 1e-9)
        xspec = np.stack([(f[:, a] * np.conj(f[:, b])).mean(axis=0) for a, b in _PAIRS])  # (3, T, T/2+1)
        cross = []
        for (a, b), ccf in zip(_PAIRS, sfft.irfft2(xspec, s=(T, T), axes=(-2, -1))):
            norm = np.sqrt(acf[a, 0, 0] * acf[b, 0, 0]) + 1e-9
            cross += [ccf[0, 0] / norm, ccf[1, 0] / norm, ccf[0, 1] / norm]
        pooled = _pool_bins(power, q)
        nyq = power[:, :, -1].reshape(3, T // q, q).mean(axis=2)
        spectrum = np.log(np.concatenate([pooled, nyq[..., None]], axis=2) + 1e-6)
        groups = [unit_group(mean_pat), unit_group(energy_pat), unit_group(ac), unit_group(np.array(cross)), unit_group(spectrum)]
        if self.coherence:
            groups += [unit_group(c) for c in _coherence(xspec, pooled, q)]
        groups += pred
        return np.concatenate(groups).astype(np.float32)

    def features_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """:meth:`features` of many images -> (N, dim), one thread per core; on a GPU, the same
        features in torch (:mod:`attrib.encoders.residual_torch`), images of one size together."""
        from .device import torch_device

        device = torch_device(self.device)
        if device != "cpu" and len(images):
            from .residual_torch import features_torch

            return features_torch(self, images, device)
        return map_images(self.features, images)

    def _embed_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.features_batch(images)


def map_images(features, images: Sequence[np.ndarray]) -> np.ndarray:
    """``features`` of each image -> (N, dim), one thread per core (at most 8).

    numpy and scipy release the GIL inside FFTs and array arithmetic. The parallelism is ours:
    BLAS threads inside the workers (small matrix products) would oversubscribe the cores, and
    OpenBLAS's spinning threads then run up to 40x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        if len(images) > 1 and _WORKERS > 1:
            return np.stack(list(_pool().map(features, images)))
        return np.stack([features(img) for img in images])


_WORKERS = min(8, os.cpu_count() or 1)
_POOL = None


def _pool():
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(_WORKERS, thread_name_prefix="attrib-residual")
    return _POOL
