"""The residual features of :mod:`attrib.encoders.residual` in torch, for a GPU.

The same computation as :meth:`ResidualSpectrumEncoder.features` (numpy), step for step, on a
batch of images of one size at a time (micro-batches, :func:`attrib.encoders.device.micro_batch`): images are cropped
and padded as numpy does (:meth:`ResidualSpectrumEncoder.prepare`), grouped by shape, moved to
the device as uint8 and computed in float32 (the predictor's small systems in float64, as numpy
solves them). No autocast here: FFTs and the least-squares solve need float32 or better.
tests/test_residual_torch.py holds it to numpy to 1e-4 on CPU torch; on a GPU, the encoder
routes its features here (:func:`attrib.encoders.device.torch_device`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_PAIRS = ((0, 1), (1, 2), (0, 2))
_CENTRES = [c * 9 + 4 for c in range(3)]


def features_torch(encoder, images: Sequence[np.ndarray], device: str = "cpu", micro_batch: int | None = None) -> np.ndarray:
    """``encoder.features`` of every image -> (N, dim) float32, computed with torch on ``device``."""
    import torch

    from .device import micro_batch as default_micro_batch
    from .device import same_size_batches

    micro_batch = micro_batch or default_micro_batch()
    prepared = [encoder.prepare(img) for img in images]
    out = np.zeros((len(images), encoder.dim), np.float32)
    with torch.inference_mode():
        for idx in same_size_batches(prepared, micro_batch):
            x = torch.from_numpy(np.stack([prepared[i] for i in idx])).to(device)
            out[idx] = _features(encoder, x).cpu().numpy()
    return out


def residual(x):
    """``x - binomial3x3(x)`` per channel of (B, 3, H, W), edges replicated."""
    import torch.nn.functional as F

    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    v = p[:, :, :-2] + 2.0 * p[:, :, 1:-1] + p[:, :, 2:]
    b = (v[:, :, :, :-2] + 2.0 * v[:, :, :, 1:-1] + v[:, :, :, 2:]) * (1 / 16)
    return x - b


def _phase_pattern(x, period: int):
    b, c, h, w = x.shape
    ny, nx = h // period, w // period
    return x[:, :, : ny * period, : nx * period].reshape(b, c, ny, period, nx, period).sum(dim=(2, 4)) / (ny * nx)


def _unit(v):
    """Each row flattened, centred and scaled to unit norm (float64, as numpy's ``unit_group``)."""
    v = v.reshape(v.shape[0], -1).double()
    v = v - v.mean(dim=1, keepdim=True)
    return v / (v.norm(dim=1, keepdim=True) + 1e-9)


def _tiles(r, tile: int, max_tiles: int):
    """(B, 3, H, W) -> (B, N, 3, tile, tile): the tiles numpy's ``tiles`` takes, in its order."""
    b, c, h, w = r.shape
    ny, nx = h // tile, w // tile
    oy, ox = (h - ny * tile) // 2, (w - nx * tile) // 2
    grid = r[:, :, oy : oy + ny * tile, ox : ox + nx * tile].reshape(b, c, ny, tile, nx, tile)
    grid = grid.permute(0, 2, 4, 1, 3, 5).reshape(b, ny * nx, c, tile, tile)
    if ny * nx > max_tiles:
        keep = np.linspace(0, ny * nx - 1, max_tiles).round().astype(int)
        grid = grid[:, keep]
    return grid


def _pool_bins(a, q: int):
    T = a.shape[-2]
    return a[..., : T // 2].reshape(*a.shape[:-2], T // q, q, T // 2 // q, q).mean(dim=(-3, -1))


def _predictor(r, max_side: int = 128):
    """Linear-prediction weights of (B, 3, H, W) residuals -> (B, 3*26) whole square, (B, 4*3*26)
    per position modulo 2 (numpy's ``_predictor``)."""
    import torch
    import torch.nn.functional as F

    bsz, _, h, w = r.shape
    oy, ox = max(0, (h - max_side) // 2) // 2 * 2, max(0, (w - max_side) // 2) // 2 * 2
    h, w = min(h, max_side) // 2, min(w, max_side) // 2
    p = F.pad(r[:, :, oy : oy + 2 * h, ox : ox + 2 * w], (1, 1, 1, 1), mode="reflect")
    windows = F.unfold(p, kernel_size=3).reshape(bsz, 27, 2 * h, 2 * w)  # channel, row, column
    moments = []
    for py in range(2):
        for px in range(2):
            m = windows[:, :, py::2, px::2].reshape(bsz, 27, -1)
            moments.append((m @ m.transpose(1, 2)).double() / m.shape[-1])
    moments.append(sum(moments) / 4)
    G = torch.stack(moments, dim=1)  # (B, 5, 27, 27)
    ridge = 1e-4 * G.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None] / 27 + 1e-30
    Q = torch.linalg.inv(G + ridge * torch.eye(27, dtype=G.dtype, device=G.device))
    keep = [[j for j in range(27) if j != t] for t in _CENTRES]
    out = [-Q[..., keep[k], t] / Q[..., t, t, None] for k, t in enumerate(_CENTRES)]
    weights = torch.cat(out, dim=-1).reshape(bsz, 5, 3, 26)
    return weights[:, 4], weights[:, :4]


def _cross_spectrum(fa, fb):
    """``fa * conj(fb)`` written out in real arithmetic, one operation per kernel, so that for
    two equal channels (a grey image) its imaginary part is exactly 0 and the coherence group is
    0 where it carries nothing. (numpy's complex product leaves rounding noise there, which the
    group's unit scaling blows up: on grey images that group is noise in the numpy encoder, the
    one place the two differ; tests/test_residual_torch.py.)"""
    import torch

    real = fa.real * fb.real + fa.imag * fb.imag
    imag = fa.imag * fb.real - fa.real * fb.imag
    return torch.complex(real, imag)


def _features(enc, x_uint8):
    """numpy's ``features`` on a (B, H, W, 3) uint8 batch of one size -> (B, dim)."""
    import torch

    x = x_uint8.permute(0, 3, 1, 2).float() * (1 / 255)
    r = residual(x)
    pred = [_unit(w) for w in _predictor(r)] if enc.predictor else []
    bsz = r.shape[0]
    r = r / (r.reshape(bsz, 3, -1).std(dim=2, unbiased=False)[:, :, None, None] + 1e-6)
    p = enc.period
    mean_pat = torch.fft.rfft2(_phase_pattern(r, p)).abs().reshape(bsz, 3, -1)[:, :, 1:]
    energy = r * r
    scale = energy.reshape(bsz, 3, -1).mean(dim=2)[:, :, None, None] + 1e-9
    energy_pat = torch.fft.rfft2(_phase_pattern(energy, p) / scale).abs().reshape(bsz, 3, -1)[:, :, 1:]
    f = torch.fft.rfft2(_tiles(r, enc.tile, enc.max_tiles))  # (B, N, 3, T, T/2+1)
    power = (f.real**2 + f.imag**2).mean(dim=1)  # (B, 3, T, T/2+1)
    T, q = enc.tile, enc.pool
    acf = torch.fft.irfft2(power, s=(T, T))
    ac = torch.stack([acf[:, :, dy % T, dx % T] for dy, dx in enc.lags], dim=2) / (acf[:, :, :1, 0] + 1e-9)
    xspec = torch.stack([_cross_spectrum(f[:, :, a], f[:, :, b]).mean(dim=1) for a, b in _PAIRS], dim=1)
    ccf = torch.fft.irfft2(xspec, s=(T, T))
    cross = []
    for k, (a, b) in enumerate(_PAIRS):
        norm = torch.sqrt(acf[:, a, 0, 0] * acf[:, b, 0, 0]) + 1e-9
        cross += [ccf[:, k, 0, 0] / norm, ccf[:, k, 1, 0] / norm, ccf[:, k, 0, 1] / norm]
    pooled = _pool_bins(power, q)
    nyq = power[:, :, :, -1].reshape(bsz, 3, T // q, q).mean(dim=3)
    spectrum = torch.log(torch.cat([pooled, nyq[..., None]], dim=3) + 1e-6)
    groups = [_unit(mean_pat), _unit(energy_pat), _unit(ac), _unit(torch.stack(cross, dim=1)), _unit(spectrum)]
    if enc.coherence:
        c = _pool_bins(xspec, q)
        n = torch.sqrt(torch.stack([pooled[:, a] * pooled[:, b] for a, b in _PAIRS], dim=1)) + 1e-9
        groups += [_unit(c.real / n), _unit(c.imag / n)]
    groups += pred
    return torch.cat(groups, dim=1).float()
