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

A folder whose ``input`` names ``selfdesc`` (``fp-joint4``) appends a third feature set before the
WCCN: each tile's forensic self-description (:mod:`attrib.encoders.selfdesc`, the coefficients of
the linear model that predicts its residual from its neighbours), times ``selfdesc.weight``.

A folder whose ``config.json`` names ``views`` (``fp-joint5``) holds a fit of its own for each of
them (:mod:`attrib.views`, :class:`~attrib.encoders.base.ViewHead`): a WCCN fitted on the same
sources as that view sees them (for ``jpeg``: crops and tiles re-saved as JPEG), its cohort score
normalisation and its calibration prior. The view's samples and the queries scored in it are
projected with it; the features are the same, so an image is read once for both.

A folder whose ``input`` names ``flips`` (``fp-joint6``: ``"hvt"``) reads an image that is one tile
(a 256 px crop, anything up to 256 px) as that tile and its flipped copies (left-right, up-down,
transposed: :data:`attrib.encoders.fused.FLIPS`) and averages their unit embeddings as it averages a
larger image's tiles; an image of several tiles is read as before. Its cohort was read the same way.

Weights (``model.safetensors``): ``wccn.mean``, ``wccn.projection`` (float16, as ``fp-wccn2``'s)
and the texture backbone's first blocks (``texture.backbone.*``); nothing is downloaded. An
encoder fitted with a cohort (``fp-joint2``) also holds its score normalisation
(``score_norm.*``, :mod:`attrib.scorenorm`; ``score_norm`` in ``config.json``); a view's fit is
under ``views.VIEW.`` (``views.jpeg.wccn.mean``, ``views.jpeg.score_norm.*``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EncoderError
from ..scorenorm import ScoreNorm
from ..views import VIEWS, by_view
from .base import ViewHead, l2_normalize, tile_slices
from .fused import TEXTURE_ARCH, TEXTURE_TAPS, TILE, TextureStats, check_flips, tiles_of, with_flips
from .selfdesc import SelfDescription
from .weights import FolderEncoder, folder_weights, write_numpy_folder

BACKBONE = "residual-texture-wccn"


class JointEncoder(FolderEncoder):
    """A ``residual-texture-wccn`` encoder folder (see the module docstring)."""

    def __init__(self, config: dict[str, Any], weights: dict[str, np.ndarray], weights_sha256: str, folder: Path | None = None):
        from .residual import ResidualSpectrumEncoder

        super().__init__(config, weights_sha256, folder, default_name="joint", batch_size=16)
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
        try:
            self.flips = check_flips(str(inp.get("flips", "")))
        except ValueError as exc:
            raise EncoderError(f"{folder}: {exc}") from None
        self.score_norm = ScoreNorm.from_weights(weights, config.get("score_norm"))
        self.selfdesc, self.selfdesc_weight = None, 1.0
        if "selfdesc" in inp:
            options = dict(inp["selfdesc"])
            self.selfdesc_weight = float(options.pop("weight", 1.0))
            try:
                self.selfdesc = SelfDescription(**options)
            except (TypeError, ValueError) as exc:
                raise EncoderError(f"{folder}: selfdesc options do not load ({exc})") from None
        parts = [self.residual.dim, self.texture.dim] + ([self.selfdesc.dim] if self.selfdesc else [])
        if self.P.shape[0] != sum(parts) or self.P.shape[1] != self.dim:
            raise EncoderError(f"{folder}: a {self.P.shape} projection does not fit {' + '.join(map(str, parts))} features into {self.dim}")
        self.view_fits: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # per view with a head: (mean, projection)
        heads = {}
        for view, spec in (config.get("views") or {}).items():
            if view not in VIEWS:
                raise EncoderError(f"{folder}: unknown view {view!r} in config.json: one of {', '.join(VIEWS)}")
            pre = f"views.{view}."
            try:
                fit = (
                    np.asarray(weights[pre + "wccn.mean"], np.float32),
                    np.ascontiguousarray(weights[pre + "wccn.projection"], np.float32),
                )
            except KeyError as exc:
                raise EncoderError(f"{folder}: the {view!r} view's weights lack {exc}") from None
            if fit[0].shape != self.mean.shape or fit[1].shape != self.P.shape:
                raise EncoderError(f"{folder}: the {view!r} view's projection is {fit[1].shape}, the plain one {self.P.shape}")
            self.view_fits[view] = fit
            heads[view] = ViewHead(
                ScoreNorm.from_weights(weights, spec.get("score_norm"), prefix=pre + "score_norm."), spec.get("calibration")
            )
        self.view_heads = heads

    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Raw ``[residual; texture]`` features of images (or tiles), and the weighted
        self-description where the folder has one -> (N, R + T [+ S])."""
        parts = [self.residual.features_batch(images), self.texture.features_batch(images)]
        if self.selfdesc is not None:
            parts.append(np.float32(self.selfdesc_weight) * self.selfdesc.features_batch(images))
        return np.concatenate(parts, axis=1)

    def project(self, features: np.ndarray, view: str | None = None) -> np.ndarray:
        """Raw features -> unit embeddings (one per row: one per tile), with ``view``'s fit where
        the folder has one (:attr:`view_heads`), else the plain one."""
        mean, P = self.view_fits.get(view, (self.mean, self.P)) if view is not None else (self.mean, self.P)
        return l2_normalize((np.asarray(features, np.float32) - mean) @ P)

    def _tile_features(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[slice]]:
        """Every tile's raw features (one pass for the batch) and each image's rows among them (an
        image of one tile: that tile and its :attr:`flips` copies)."""
        per_image = [with_flips(tiles_of(img, TILE, self.tiles), self.flips) for img in images]
        return self.features([t for tiles in per_image for t in tiles]), tile_slices([len(t) for t in per_image])

    def _embed_tiles(self, feats: np.ndarray, slices: Sequence[slice], view: str | None = None) -> np.ndarray:
        """Each image's embedding (``slices``: its rows of ``feats``): the mean of its tiles' unit
        embeddings with ``view``'s fit (:meth:`project`)."""
        emb = self.project(feats, view)
        return np.stack([emb[s].mean(axis=0) for s in slices])

    def _embed_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self._embed_tiles(*self._tile_features(images))

    def _embed_view_batch(self, images: Sequence[np.ndarray], view: str) -> np.ndarray:
        return self._embed_tiles(*self._tile_features(images), view)

    def _embed_batch_in(self, images: Sequence[np.ndarray], views: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
        feats, slices = self._tile_features(images)  # read once, projected with each fit
        plain = self._embed_tiles(feats, slices)

        def in_view(view, rows):
            if not self.has_head(view):
                return plain[rows]
            tiles = np.concatenate([np.arange(slices[i].start, slices[i].stop) for i in rows])
            return self._embed_tiles(feats[tiles], tile_slices([slices[i].stop - slices[i].start for i in rows]), view)

        return plain, np.stack(by_view(views, len(images), in_view))


def save_joint(
    folder: str | Path,
    name: str,
    residual_options: dict[str, Any],
    texture_state: dict[str, np.ndarray],
    fit: tuple[np.ndarray, np.ndarray],
    tiles: int = 5,
    calibration: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    score_norm: ScoreNorm | None = None,
    selfdesc: dict[str, Any] | None = None,
    views: dict[str, dict[str, Any]] | None = None,
    flips: str = "",
) -> Path:
    """Write a ``residual-texture-wccn`` folder from a WCCN ``(mean, P)`` over ``[residual;
    texture]`` features (``[residual; texture; weight * self-description]`` with ``selfdesc``, the
    :class:`~attrib.encoders.selfdesc.SelfDescription` options and ``weight``), with its cohort
    score normalisation if given; ``views``: per view, its own ``fit`` (a WCCN ``(mean, P)`` of
    the same shape), ``score_norm`` and ``calibration``; ``flips``: the flipped copies a one-tile
    image is read as besides itself (:data:`attrib.encoders.fused.FLIPS`; the module docstring);
    returns the folder."""
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
    if selfdesc is not None:
        config["input"]["selfdesc"] = dict(selfdesc)
    if flips:
        config["input"]["flips"] = check_flips(flips)
    if score_norm is not None:
        weights.update(score_norm.weights())
        config["score_norm"] = score_norm.config()
    if calibration:
        config["calibration"] = calibration
    for view, head in (views or {}).items():
        pre = f"views.{view}."
        vmean, vP = head["fit"]
        weights.update({pre + "wccn.mean": np.asarray(vmean, np.float32), pre + "wccn.projection": np.ascontiguousarray(vP, np.float16)})
        spec: dict[str, Any] = {}
        if head.get("score_norm") is not None:
            weights.update(head["score_norm"].weights(pre + "score_norm."))
            spec["score_norm"] = head["score_norm"].config()
        if head.get("calibration"):
            spec["calibration"] = head["calibration"]
        config.setdefault("views", {})[view] = spec
    config.update(extra or {})
    return write_numpy_folder(folder, config, weights)


def load_joint(config: dict[str, Any], weights_path: Path, folder: Path) -> JointEncoder:
    """A ``residual-texture-wccn`` folder's encoder (called by :func:`attrib.encoders.learned.load_encoder`)."""
    weights, digest = folder_weights(config, weights_path, folder)
    return JointEncoder(config, weights, digest, folder=folder)
