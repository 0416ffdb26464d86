"""Learned fingerprint encoders: a backbone plus a projection head, trained with metric learning.

A trained encoder is a folder::

    config.json          backbone, head, input policy, calibration prior, training summary, metrics
    model.safetensors    weights of backbone + head

Its id derives from both (:meth:`Encoder.id`), so a gallery refuses embeddings of any other
encoder. Backbones (``--backbone``):

* ``fpcnn`` (optionally ``fpcnn:wide``): the small fingerprint CNN below: a fixed high-pass
  residual, full-resolution convolutions before any downsampling (fingerprints live in the highest
  frequencies), then strided stages, mean + standard-deviation pooling;
* ``timm:NAME``: any timm model (``timm:resnet18``, ``timm:tf_efficientnet_lite0``), with
  ``weights=FILE`` for pretrained weights from a local file;
* ``open_clip:NAME``: the image tower of an open_clip model, weights from a local file;
* ``residual-wccn``: a linear metric on the training-free residual features: within-class
  covariance normalisation (WCCN), ``(f - mean) @ W^-1/2`` with ``W`` the covariance of features
  of one source around that source's mean, fitted in closed form on the training sources (and
  optionally fine-tuned). Directions in which images of one generator vary (content, JPEG,
  rescaling) are shrunk; directions that separate generators are kept. Cheap, and it transfers
  to architectures it never saw;
* ``residual-mlp``: a small MLP on the residual features (LayerNorm + head).

Nothing is ever downloaded: pretrained weights come from a file (or an existing hub cache when
the caller passes one). Input policy: images are never resized; they are cut into ``tile x tile``
crops (a centred grid, at most ``max_tiles`` of them), each crop is embedded, and the normalised
mean of the crop embeddings is the image's embedding.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EncoderError
from ..imageio import reflect_pad
from .base import tile_slices
from .weights import CONFIG_NAME, WEIGHTS_NAME, FolderEncoder, load_pretrained, load_state_file, read_numpy_weights, sha256_file  # noqa: F401  (public here too)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _torch():
    import torch

    return torch


# ----------------------------------------------------------------------------------- networks


def build_fpcnn(variant: str = ""):
    """The small fingerprint CNN (~60k parameters, ~20 MFLOP per 64x64 tile): a fixed high-pass
    residual beside the raw image, a 5x5 first layer that sees both phases of any period-2
    pattern, then three strided stages, mean + standard-deviation pooling. ``wide`` doubles
    the channels."""
    torch = _torch()
    nn = torch.nn

    class HighPass(nn.Module):
        """Fixed residual ``x - binomial3x3(x)`` per channel, beside the raw image (scaled down)."""

        def __init__(self):
            super().__init__()
            k = torch.tensor([1.0, 2.0, 1.0])
            k = (k[:, None] * k[None, :]) / 16.0
            self.register_buffer("blur", k.expand(3, 1, 3, 3).clone())

        def forward(self, x):
            blurred = nn.functional.conv2d(nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), self.blur, groups=3)
            return torch.cat([(x - blurred) * 8.0, x * 0.5], dim=1)

    def block(cin, cout, k, stride):
        return nn.Sequential(
            nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        )

    w = 32 if variant == "wide" else 16

    class FPCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.hp = HighPass()
            self.features = nn.Sequential(
                block(6, w, 5, 2),
                block(w, 2 * w, 3, 2),
                block(2 * w, 2 * w, 3, 1),
                block(2 * w, 4 * w, 3, 2),
                block(4 * w, 4 * w, 3, 1),
            )
            self.num_features = 8 * w  # mean and std pooling

        def forward(self, x):
            f = self.features(self.hp(x))
            return torch.cat([f.mean(dim=(2, 3)), f.std(dim=(2, 3))], dim=1)

    return FPCNN()


def build_backbone(spec: str, weights: str | Path | None = None, residual: dict[str, Any] | None = None):
    """Backbone from a spec string -> (module, feature_dim, input normalisation dict).

    ``residual``: options of the residual features (``residual-*`` backbones only)."""
    kind, _, name = spec.partition(":")
    if kind in ("residual-mlp", "residual-wccn"):  # learned metric on the training-free residual features
        from .residual import ResidualSpectrumEncoder

        torch = _torch()
        dim = ResidualSpectrumEncoder(**(residual or {})).dim
        module = torch.nn.LayerNorm(dim) if kind == "residual-mlp" else torch.nn.Linear(dim, dim)
        return module, dim, {"mean": (0.0,), "std": (1.0,)}
    if kind == "fpcnn":
        net = build_fpcnn(name)
        if weights:
            load_pretrained(net, Path(weights))
        return net, net.num_features, {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    if kind == "timm":
        import timm

        try:
            net = timm.create_model(name, pretrained=False, num_classes=0)
        except RuntimeError as exc:
            raise EncoderError(f"timm has no model {name!r} ({exc})") from None
        if weights:
            load_pretrained(net, Path(weights))
        cfg = getattr(net, "pretrained_cfg", {}) or {}
        norm = {"mean": tuple(cfg.get("mean", IMAGENET_MEAN)), "std": tuple(cfg.get("std", IMAGENET_STD))}
        return net, net.num_features, norm
    if kind == "open_clip":
        import open_clip

        try:
            model = open_clip.create_model(name, pretrained=None)
        except RuntimeError as exc:
            raise EncoderError(f"open_clip has no model {name!r} ({exc})") from None
        visual = model.visual
        if weights:
            state = load_state_file(Path(weights))
            if any(k.startswith("visual.") for k in state):
                state = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
            missing, unexpected = visual.load_state_dict(state, strict=False)
            if len(missing) > 0.5 * len(visual.state_dict()):
                raise EncoderError(f"{weights}: does not fit open_clip {name} (missing {len(missing)} tensors)")
        mean = getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
        std = getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
        return visual, int(visual.output_dim), {"mean": tuple(mean), "std": tuple(std), "image_size": _clip_size(visual)}
    raise EncoderError(f"unknown backbone {spec!r}: use fpcnn, timm:NAME, open_clip:NAME, residual-wccn or residual-mlp")


def _clip_size(visual) -> int | None:
    size = getattr(visual, "image_size", None)
    if isinstance(size, (tuple, list)):
        size = size[0]
    return int(size) if size else None


def build_net(config: dict[str, Any], weights: str | Path | None = None):
    """Backbone + projection head -> a module mapping (N, 3, T, T) in [0, 1] to unit embeddings."""
    torch = _torch()
    nn = torch.nn
    backbone, feat_dim, norm = build_backbone(config["backbone"], weights, config["input"].get("residual"))
    dim = int(config["dim"])
    linear = config["backbone"] == "residual-wccn"  # the whitening is the whole map: no head
    if linear and dim != feat_dim:
        raise EncoderError(f"residual-wccn: dim must equal the feature dimension {feat_dim}, got {dim}")

    class EmbeddingNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone
            hidden = config.get("head_hidden", 256)
            self.head = (
                nn.Identity() if linear else nn.Sequential(nn.Linear(feat_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))
            )
            shape = (1, 3, 1, 1) if len(norm["mean"]) == 3 else (1, 1)
            self.register_buffer("mean", torch.tensor(norm["mean"]).view(*shape))
            self.register_buffer("std", torch.tensor(norm["std"]).view(*shape))

        def forward(self, x):
            f = self.backbone((x - self.mean) / self.std)
            if f.ndim > 2:
                f = f.flatten(1)
            return nn.functional.normalize(self.head(f), dim=1)

    net = EmbeddingNet()
    return net, norm


# ---------------------------------------------------------------------------------- tiling


def grid_tiles(image: np.ndarray, tile: int, max_tiles: int) -> np.ndarray:
    """A centred grid of non-overlapping ``tile`` crops (evenly subsampled to ``max_tiles``);
    images smaller than a tile are reflect-padded. -> (N, tile, tile, 3) uint8."""
    h, w = image.shape[:2]
    if h < tile or w < tile:
        image = reflect_pad(image, max(0, tile - h), max(0, tile - w))
        h, w = image.shape[:2]
    ny, nx = h // tile, w // tile
    oy, ox = (h - ny * tile) // 2, (w - nx * tile) // 2
    crops = image[oy : oy + ny * tile, ox : ox + nx * tile].reshape(ny, tile, nx, tile, 3).transpose(0, 2, 1, 3, 4)
    crops = crops.reshape(ny * nx, tile, tile, 3)
    if len(crops) > max_tiles:
        keep = np.linspace(0, len(crops) - 1, max_tiles).round().astype(int)
        crops = crops[keep]
    return crops


# ---------------------------------------------------------------------------------- encoder


class _FolderEncoder(FolderEncoder):
    """A trained folder of this module: tiles for image backbones, residual features for the
    ``residual-*`` ones."""

    def __init__(self, config: dict[str, Any], weights_sha256: str, folder: Path | None = None):
        super().__init__(config, weights_sha256, folder)
        self.tile = int(config["input"]["tile"])
        self.max_tiles = int(config["input"]["max_tiles"])
        self.features = None
        if config["backbone"].startswith("residual-"):
            from .residual import ResidualSpectrumEncoder

            self.features = ResidualSpectrumEncoder(**config["input"].get("residual", {}))


class LinearFeatureEncoder(_FolderEncoder):
    """A ``residual-wccn`` folder at inference: residual features times the fitted matrix, in numpy.
    The same numbers as the torch module that trained it, without importing torch (a CLI call
    starts faster) and with no framework overhead per image."""

    def __init__(self, config: dict[str, Any], weights: dict[str, np.ndarray], weights_sha256: str, folder: Path | None = None):
        super().__init__(config, weights_sha256, folder)
        W, b = weights["backbone.weight"], weights["backbone.bias"]
        if W.shape != (self.dim, self.features.dim) or b.shape != (self.dim,):
            raise EncoderError(f"{folder}: weights of shape {W.shape} do not fit residual features of dimension {self.features.dim}")
        self.W = np.ascontiguousarray(W.T, dtype=np.float32)
        self.b = b.astype(np.float32)

    def embed_features(self, feats: np.ndarray) -> np.ndarray:
        """(N, F) residual features -> (N, dim) unit vectors."""
        from .base import l2_normalize

        return l2_normalize(np.asarray(feats, np.float32) @ self.W + self.b)

    def _embed_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.embed_features(self.features.features_batch(images))


class LearnedEncoder(_FolderEncoder):
    """A trained backbone + head (torch), loaded from a folder (see module docstring)."""

    def __init__(self, net, config: dict[str, Any], weights_sha256: str, folder: Path | None = None, device: str | None = None):
        from .device import torch_device

        super().__init__(config, weights_sha256, folder)
        self.device = torch_device(device)
        self.net = net.to(self.device).eval()

    def embed_tiles(self, tiles: np.ndarray) -> np.ndarray:
        """(N, T, T, 3) uint8 -> (N, dim) unit vectors; on a GPU in micro-batches under bfloat16
        autocast (:mod:`attrib.encoders.device`)."""
        from .device import autocast, micro_batch

        torch = _torch()
        step = 256 if self.device == "cpu" else micro_batch()
        out = []
        with torch.inference_mode(), autocast(self.device):
            for i in range(0, len(tiles), step):
                x = torch.from_numpy(np.ascontiguousarray(tiles[i : i + step])).to(self.device)
                x = x.permute(0, 3, 1, 2).float().div_(255.0)
                out.append(self.net(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def embed_features(self, feats: np.ndarray) -> np.ndarray:
        """(N, F) residual features -> (N, dim) unit vectors (``residual-*`` backbones)."""
        torch = _torch()
        with torch.inference_mode():
            return self.net(torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).to(self.device)).float().cpu().numpy()

    def _embed_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if self.features is not None:
            return self.embed_features(self.features.features_batch(images))
        tiles = [grid_tiles(img, self.tile, self.max_tiles) for img in images]
        emb = self.embed_tiles(np.concatenate(tiles))
        return np.stack([emb[s].mean(axis=0) for s in tile_slices([len(t) for t in tiles])])


def save_encoder(folder: str | Path, net, config: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` + ``config.json`` into ``folder`` (atomically per file)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tmp = folder / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(folder / WEIGHTS_NAME)
    tmp = folder / (CONFIG_NAME + ".tmp")
    tmp.write_text(json.dumps(config, indent=2, default=str))
    tmp.replace(folder / CONFIG_NAME)
    return folder


def load_encoder(folder: str | Path, device: str | None = None) -> _FolderEncoder:
    """Load a trained encoder folder (config.json + model.safetensors). ``residual-wccn``
    folders load as a :class:`LinearFeatureEncoder` (numpy) unless a device is asked for."""

    folder = Path(folder)
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not cfg_path.exists() or not w_path.exists():
        raise EncoderError(f"{folder}: not an encoder folder (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        config = json.loads(cfg_path.read_text())
        for key in ("backbone", "dim", "input"):
            config[key]
    except (ValueError, KeyError) as exc:
        raise EncoderError(f"{cfg_path}: invalid encoder config ({exc})") from None
    if config["backbone"] == "fused":  # residual + texture branches, numpy and a small torch CNN
        from .fused import load_fused

        return load_fused(config, w_path, folder)
    if config["backbone"] == "residual-texture-wccn":  # both feature sets under one metric
        from .joint import load_joint

        return load_joint(config, w_path, folder)
    if config["backbone"] == "residual-wccn" and device in (None, "cpu"):
        weights = read_numpy_weights(w_path, required=("backbone.weight", "backbone.bias"))
        return LinearFeatureEncoder(config, weights, sha256_file(w_path), folder=folder)
    from safetensors.torch import load_file

    net, _ = build_net(config)
    try:
        state = load_file(str(w_path))
        net.load_state_dict(state)
    except Exception as exc:
        raise EncoderError(f"{w_path}: weights do not load ({str(exc).splitlines()[0]})") from None
    return LearnedEncoder(net, config, sha256_file(w_path), folder=folder, device=device)
