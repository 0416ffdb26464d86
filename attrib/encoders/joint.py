"""The joint fingerprint: residual and texture features whitened together, on zoo and real sources.

:mod:`attrib.encoders.fused` keeps two branches, each with its own metric, mixed by a fixed
weight; its texture branch, fitted on real generators only, costs the zoo's held-out
architectures 10 points. Here the two feature sets are concatenated, ``[residual; texture]``
(1953 + 304), and ONE within-class covariance normalisation (WCCN, :mod:`attrib.encoders.wccn`) is
fitted over the zoo's generators (each image and degraded copies) and real generators with camera
photos (central crops, re-saved as JPEG, resized, and tiles of the whole image) together. The
metric then weighs each direction of either feature set by how stable it is within a source, in
both worlds: residual directions where zoo generators differ, texture directions where real ones
do, and JPEG-fragile directions down. Like ``fp-fuse2`` it reads 5 tiles of 256 px over the image
(:func:`attrib.encoders.fused.tiles_of`) and averages their unit embeddings.

Weights (``model.safetensors``): ``wccn.mean``, ``wccn.projection`` (float16, as ``fp-wccn2``'s)
and the texture backbone's first blocks (``texture.backbone.*``); nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EncoderError
from .base import Encoder, l2_normalize
from .fused import TEXTURE_ARCH, TEXTURE_TAPS, TILE, TextureStats, tiles_of
from .weights import CONFIG_NAME, WEIGHTS_NAME, sha256_file

BACKBONE = "residual-texture-wccn"


class JointEncoder(Encoder):
    """A ``residual-texture-wccn`` encoder folder (see the module docstring)."""

    def __init__(self, config: dict[str, Any], weights: dict[str, np.ndarray], weights_sha256: str, folder: Path | None = None):
        from .residual import ResidualSpectrumEncoder

        self.config_ = config
        self.name = config.get("name", "joint")
        self.dim = int(config["dim"])
        self.batch_size = int(config["input"].get("batch_size", 16))
        self._weights_sha = weights_sha256
        self.folder = folder
        self.spec = str(Path(folder).resolve()) if folder else None
        inp = config["input"]
        self.residual = ResidualSpectrumEncoder(**inp.get("residual", {}))
        try:
            self.mean = np.asarray(weights["wccn.mean"], dtype=np.float32)
            self.P = np.ascontiguousarray(weights["wccn.projection"], dtype=np.float32)
        except KeyError as exc:
            raise EncoderError(f"{folder}: joint encoder weights lack {exc}") from None
        backbone = {k.removeprefix("texture.backbone."): v for k, v in weights.items() if k.startswith("texture.backbone.")}
        self.texture = TextureStats(backbone)
        self.tiles = int(inp.get("tiles", 5))
        if self.P.shape[0] != self.residual.dim + self.texture.dim or self.P.shape[1] != self.dim:
            raise EncoderError(
                f"{folder}: a {self.P.shape} projection does not fit {self.residual.dim} + {self.texture.dim} features into {self.dim}"
            )

    def config(self) -> dict[str, Any]:
        return {k: self.config_[k] for k in ("backbone", "dim", "input") if k in self.config_}

    def weights_hash(self) -> str:
        return self._weights_sha

    @property
    def calibration(self) -> dict[str, Any] | None:
        return self.config_.get("calibration")

    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Raw ``[residual; texture]`` features of images (or tiles) -> (N, R + T)."""
        return np.concatenate([self.residual.features_batch(images), self.texture.features_batch(images)], axis=1)

    def project(self, features: np.ndarray) -> np.ndarray:
        """Raw features -> unit embeddings (one per row: one per tile)."""
        return l2_normalize((np.asarray(features, np.float32) - self.mean) @ self.P)

    def _embed_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        per_image = [tiles_of(img, TILE, self.tiles) for img in images]
        emb = self.project(self.features([t for tiles in per_image for t in tiles]))  # one product for the batch
        out, start = [], 0
        for tiles in per_image:
            out.append(emb[start : start + len(tiles)].mean(axis=0))
            start += len(tiles)
        return np.stack(out)


def save_joint(
    folder: str | Path,
    name: str,
    residual_options: dict[str, Any],
    texture_state: dict[str, np.ndarray],
    fit: tuple[np.ndarray, np.ndarray],
    tiles: int = 5,
    calibration: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a ``residual-texture-wccn`` folder from a WCCN ``(mean, P)`` over ``[residual;
    texture]`` features; returns the folder."""
    from safetensors.numpy import save_file

    mean, P = fit
    weights = {"wccn.mean": np.asarray(mean, np.float32), "wccn.projection": np.ascontiguousarray(P, np.float16)}
    weights.update({f"texture.backbone.{k}": np.ascontiguousarray(v, np.float32) for k, v in texture_state.items()})
    config = {
        "name": name,
        "backbone": BACKBONE,
        "dim": int(P.shape[1]),
        "input": {
            "residual": dict(residual_options),
            "texture_arch": TEXTURE_ARCH,
            "texture_taps": list(TEXTURE_TAPS),
            "tiles": int(tiles),
            "batch_size": 16,
        },
    }
    if calibration:
        config["calibration"] = calibration
    config.update(extra or {})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(folder / WEIGHTS_NAME))
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return folder


def load_joint(config: dict[str, Any], weights_path: Path, folder: Path) -> JointEncoder:
    """A ``residual-texture-wccn`` folder's encoder (called by :func:`attrib.encoders.learned.load_encoder`)."""
    from safetensors.numpy import load_file

    try:
        weights = load_file(str(weights_path))
    except Exception as exc:
        raise EncoderError(f"{weights_path}: weights do not load ({(str(exc).splitlines() or [type(exc).__name__])[0]})") from None
    return JointEncoder(config, weights, sha256_file(weights_path), folder=folder)
