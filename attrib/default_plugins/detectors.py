"""Built-in detectors: traces that upsampling leaves in an image, measured without any weights.

Generators upsample a small latent to full resolution (transposed convolutions, nearest /
bilinear / bicubic interpolation, pixel shuffle, patch decoders). Every such layer repeats the
same operation on a fixed grid, so the image's fine structure becomes *periodic* with the
upsampling factor (2, 4, 8): the periodicity shows as isolated peaks in a spectrum at multiples
of 1/8 cycle per pixel, where a camera photo's spectrum is smooth.

* ``spectral``: peaks of the power spectrum of the noise residual (the image minus a 3x3
  binomial blur): a periodic pattern *added* to the image (checkerboards, grid offsets).
* ``npr``: neighbouring-pixel relationships: how strongly each pixel differs from its right and
  lower neighbour, and whether that strength is periodic (peaks of the spectrum of ``|dx|`` and
  ``|dy|``). Interpolated pixels are tied to their neighbours in a fixed pattern (the NPR
  observation of Tan et al., CVPR 2024), even when no pattern is added.

The two are complementary: plain interpolation adds no pattern (its signal spectrum has
replicas, not peaks), so ``spectral`` misses it while ``npr`` sees it at once; a learned layer's
fixed checkerboard shows in both. Both test each candidate frequency against the median power of
a ring of frequencies around it (the local background), so image content sets its own noise
level. Large images are cut into 128 x 128 tiles (at most :data:`MAX_TILES`, spread over the
image) whose spectra are averaged: nothing is resized, and the cost is bounded whatever the size.

The statistic is, for ``spectral``, the sum over candidate frequencies of the log
peak-to-background ratio above a floor (an added pattern has many harmonics) and, for ``npr``,
the strongest log ratio (one clean peak is enough). Its mapping to a score in [0, 1] was fitted on
zoo images of build seed 1 from the seed-0 and seed-1 generators (a development set): the score
is 0.5 at the real photos' 95th percentile there. Measured on other images with
``bench/detectors.py`` (docs/plugins.md has the table): real-vs-generated AUROC 0.99 (``spectral``)
and 0.95-0.97 (``npr``) on a 67-generator zoo, 0.97 / 0.92 after JPEG q90. JPEG's 8 x 8 blocks are
periodic too: recompressed camera photos can score high; ``details`` lists the peaks and the
period they imply.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..detectors import Detector, DetectorImage, Evidence
from ..hookspecs import hookimpl

TILE = 128
MAX_TILES = 16
MIN_SIDE = 32
#: candidate frequencies: multiples of 1 / PERIOD cycles per pixel on both axes
PERIOD = 8
#: log peak-to-background ratios below this count as noise
FLOOR = 1.5
#: maps with less variance than this (grey levels squared) carry nothing to test
FLAT = 0.01
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@lru_cache(maxsize=16)
def _geometry(n: int, m: int, ring: int):
    """Candidate bin indices (K,) and ring bin indices (K, R) for an n x m spectrum."""
    cands = [(ky, kx) for ky in range(PERIOD) for kx in range(PERIOD) if (ky, kx) != (0, 0)]
    offsets = [(dy, dx) for dy in range(-ring, ring + 1) for dx in range(-ring, ring + 1) if max(abs(dy), abs(dx)) == ring]
    cy = np.array([ky * n // PERIOD for ky, _ in cands])
    cx = np.array([kx * m // PERIOD for _, kx in cands])
    oy = np.array([o[0] for o in offsets])
    ox = np.array([o[1] for o in offsets])
    centre = cy * m + cx
    ring_idx = ((cy[:, None] + oy[None, :]) % n) * m + (cx[:, None] + ox[None, :]) % m
    return cands, centre, ring_idx


def _patches(pixels: np.ndarray) -> tuple[list[np.ndarray], int | None]:
    """Patches of ``TILE + 2`` pixels a side (a one-pixel margin for the filters) on a grid
    centred on the image, at most MAX_TILES spread evenly over it; an image smaller than a tile
    is one patch. Returns (patches, tile side or None for the whole-image case)."""
    h, w = pixels.shape[:2]
    side = TILE + 2
    if min(h, w) < side:
        return [pixels], None
    ny, nx = (h - 2) // TILE, (w - 2) // TILE
    oy, ox = (h - 2 - ny * TILE) // 2, (w - 2 - nx * TILE) // 2
    cells = [(i, j) for i in range(ny) for j in range(nx)]
    if len(cells) > MAX_TILES:
        cells = [cells[k] for k in np.linspace(0, len(cells) - 1, MAX_TILES).round().astype(int)]
    return [pixels[oy + i * TILE : oy + i * TILE + side, ox + j * TILE : ox + j * TILE + side] for i, j in cells], TILE


def _crop(a: np.ndarray, tile: int | None) -> np.ndarray:
    if tile is None:
        return a[: a.shape[0] // PERIOD * PERIOD, : a.shape[1] // PERIOD * PERIOD]
    return a[1 : 1 + tile, 1 : 1 + tile]


def periodic_peaks(tiles: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Log peak-to-background ratio of the tiles' mean power spectrum at each candidate
    frequency. ``tiles``: (K, n, m). Returns (ratios (K,), candidate (ky, kx) index pairs)."""
    tiles = tiles - tiles.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(tiles)) ** 2).mean(axis=0).ravel()
    n, m = tiles.shape[1:]
    ring = max(2, round(7 * min(n, m) / TILE))
    cands, centre, ring_idx = _geometry(n, m, ring)
    background = np.median(power[ring_idx], axis=1)
    return np.log((power[centre] + 1e-9) / (background + 1e-9)), cands


def _residual(x: np.ndarray) -> np.ndarray:
    p = np.pad(x, 1, mode="edge")
    v = p[:-2] + 2.0 * p[1:-1] + p[2:]
    return x - (v[:, :-2] + 2.0 * v[:, 1:-1] + v[:, 2:]) / 16.0


def _luma(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32) @ _LUMA


def _period(cands, ratios, strong: float = 3.0) -> int | None:
    """The period the strong peaks imply: PERIOD / gcd of their frequency indices."""
    ks = [k for (ky, kx), r in zip(cands, ratios) if r >= strong for k in (ky, kx) if k]
    if not ks:
        return None
    g = 0
    for k in ks:
        g = math.gcd(g, k)
    return PERIOD // g


class PeriodicityDetector(Detector):
    """Shared machinery: maps -> candidate peaks -> statistic -> calibrated score."""

    #: "sum": the sum over candidates of log ratios above FLOOR (many peaks add up: additive
    #: patterns); "max": the strongest log ratio (one clear peak is enough: interpolation)
    reduce: str = "sum"
    #: score = logistic((f(statistic) - centre) / width), f = log1p for "sum", identity for "max";
    #: fitted on the development zoo
    centre: float = 0.0
    width: float = 1.0
    #: verdict bands on the score
    synthetic_at: float = 0.5
    real_below: float = 0.15

    def maps(self, x: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def statistic(self, pixels: np.ndarray) -> tuple[float | None, dict]:
        """(statistic, details); the statistic is None when the image is too flat to test."""
        patches, tile = _patches(pixels)
        per_map = zip(*(self.maps(_luma(p)) for p in patches))
        stat, ratios, energy = 0.0, None, 0.0
        for maps in per_map:
            tiles = np.stack([_crop(a, tile) for a in maps])
            energy = max(energy, float(tiles.var()))
            r, cands = periodic_peaks(tiles)
            stat += float(np.clip(r - FLOOR, 0, None).sum())
            ratios = r if ratios is None else np.maximum(ratios, r)
        if self.reduce == "max":
            stat = float(ratios.max())
        order = np.argsort(-ratios)[:5]
        peaks = [
            {"frequency": [f"{cands[i][0]}/{PERIOD}", f"{cands[i][1]}/{PERIOD}"], "log_ratio": round(float(ratios[i]), 2)}
            for i in order
            if ratios[i] >= FLOOR
        ]
        period = _period(cands, ratios)
        count = int((ratios >= FLOOR).sum())
        summary = (
            f"{count} periodic peak{'s' if count != 1 else ''}" + (f", period {period}" if period else "") if count else "no periodic peaks"
        )
        details = {"statistic": round(stat, 3), "period": period, "peaks": peaks, "tiles": len(patches), "summary": summary}
        if energy < FLAT:
            return None, {"reason": "no fine structure to test (a flat or very smooth image)", "tiles": len(patches)}
        return stat, details

    def score_of(self, stat: float) -> float:
        z = ((math.log1p(stat) if self.reduce == "sum" else stat) - self.centre) / self.width
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def detect(self, image: DetectorImage) -> Evidence:
        pixels = image.pixels
        h, w = pixels.shape[:2]
        if min(h, w) < MIN_SIDE:
            return self.evidence(reason=f"image is {w}x{h}: at least {MIN_SIDE} pixels a side are needed")
        stat, details = self.statistic(pixels)
        if stat is None:
            return self.evidence(**details)
        score = round(self.score_of(stat), 4)
        verdict = "synthetic" if score >= self.synthetic_at else "real" if score < self.real_below else "undetermined"
        return self.evidence(verdict, score, None, **details)


class SpectralDetector(PeriodicityDetector):
    name = "spectral"
    description = "periodic peaks in the noise residual's spectrum, left by upsampling layers"
    # fitted on the development zoo (build seed 1): the centre is the real photos' 95th percentile
    centre, width = 2.2, 0.6

    def maps(self, x):
        return [_residual(x)]


class NPRDetector(PeriodicityDetector):
    name = "npr"
    description = "neighbouring-pixel relationships: periodic strength of pixel-to-neighbour differences"
    reduce = "max"
    centre, width = 4.8, 1.05

    def maps(self, x):
        return [np.abs(np.diff(x, axis=1))[:-1], np.abs(np.diff(x, axis=0))[:, :-1]]


@hookimpl
def register_detectors(register):
    register(SpectralDetector())
    register(NPRDetector())
