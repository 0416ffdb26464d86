"""The generators' networks: one shared encoder, an architecture-specific decoder per kind."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AttribError
from .specs import ARCHS, MIXED_UPSAMPLERS, GeneratorSpec


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
        self.net = nn.Sequential(_group_norm(cin), nn.SiLU(), _conv(cin, cout, 3), _group_norm(cout), nn.SiLU(), _conv(cout, cout, 3))
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
        self.mapping = nn.Sequential(nn.Linear(spec.latent_channels, style_dim), _activation(spec.act), nn.Linear(style_dim, style_dim))
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
            _conv(spec.latent_channels, width, k),
            _activation(spec.act),
            _conv(width, width, 3),
            _activation(spec.act),
            _conv(width, 3 * factor**2, 3),
            nn.PixelShuffle(factor),
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
        self.denoisers = nn.ModuleList(nn.Sequential(_conv(3 + c, c, k), _activation(spec.act), _conv(c, 3, k)) for _ in range(self.steps))

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
