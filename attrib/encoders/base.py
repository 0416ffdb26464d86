"""The encoder interface: image -> L2-normalised fingerprint embedding.

An encoder has a stable :attr:`Encoder.id` (name + config + weights hash). A gallery is bound to one
encoder id, so embeddings of different encoders never mix.

Subclasses implement :meth:`Encoder._embed_batch`; the base class owns :meth:`Encoder.embed`
(input checks, batching, normalisation, dtype).

An encoder may also have its own fit for a view of :mod:`attrib.views` (:attr:`Encoder.view_heads`:
a :class:`ViewHead` per view, and :meth:`Encoder._embed_view_batch`): the view's prototypes and the
queries scored in it are then embedded, normalised and calibrated with that fit, not the plain one.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from ..errors import EncoderError
from ..views import by_view


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32)


def tile_slices(counts: Sequence[int]) -> list[slice]:
    """Consecutive slices of ``counts`` rows each: where each image's tiles sit once every tile of
    a batch was embedded in one pass."""
    ends = np.cumsum(counts)
    return [slice(int(e - n), int(e)) for n, e in zip(counts, ends)]


def load_builtin_calibration(encoder_id: str) -> dict[str, Any] | None:
    """Calibration prior shipped in ``attrib/data/calibration.json`` for a built-in encoder id."""
    try:
        text = resources.files("attrib").joinpath("data/calibration.json").read_text()
    except (FileNotFoundError, OSError):
        return None
    return json.loads(text).get(encoder_id)


@dataclass(frozen=True)
class ViewHead:
    """An encoder's own scoring of one view (:mod:`attrib.views`), beside its embedding of it
    (:meth:`Encoder._embed_view_batch`): its score normalisation (None: raw cosines) and its
    calibration prior (as :attr:`Encoder.calibration`), both measured in that view."""

    score_norm: Any = None
    calibration: dict[str, Any] | None = None


class Encoder(ABC):
    """Base class of every encoder, built-in or plugin-provided."""

    #: registry name, e.g. ``"residual"``
    name: str = "encoder"
    #: embedding dimension
    dim: int = 0
    #: images per forward pass when embedding many images
    batch_size: int = 32
    #: how to make this encoder again: what :func:`attrib.encoders.get_encoder` takes, a
    #: registered name (set by ``get_encoder`` when it made the encoder from one) or the path of a
    #: trained encoder folder. A gallery stores it to reopen its encoder; None (an encoder built
    #: directly) means :attr:`name`.
    spec: str | None = None
    #: how scores against a source are normalised (:class:`attrib.scorenorm.ScoreNorm`), or None for
    #: raw cosines; part of the encoder (its weights), so part of its id
    score_norm = None
    #: views this encoder has a fit of its own for (:class:`ViewHead`); a view not here is embedded
    #: and scored as the plain one (its images embedded by :meth:`_embed_batch`)
    view_heads: dict[str, ViewHead] = {}

    def config(self) -> dict[str, Any]:
        """JSON-serialisable description of everything that changes the embedding."""
        return {}

    def weights_hash(self) -> str:
        """sha256 of the weights ('' for encoders without weights)."""
        return ""

    @property
    def id(self) -> str:
        payload = json.dumps({"name": self.name, "dim": self.dim, "config": self.config()}, sort_keys=True)
        digest = hashlib.sha256((payload + self.weights_hash()).encode()).hexdigest()[:12]
        return f"{self.name}-{digest}"

    @property
    def calibration(self) -> dict[str, Any] | None:
        """Score statistics measured on sources this encoder never saw (see :mod:`attrib.openset`).

        ``{"impostor": {"mu", "sigma", "n"}, "genuine": {...}, "pair_impostor": {...}}`` or None.
        Galleries start their thresholds from it until they have impostor evidence of their own.
        """
        return None

    @abstractmethod
    def _embed_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embed a batch of H x W x 3 uint8 arrays (sizes may differ) -> (N, dim) float array."""

    def _embed_view_batch(self, images: Sequence[np.ndarray], view: str) -> np.ndarray:
        """Embed a batch in ``view``, one of :attr:`view_heads` (an encoder with heads implements it)."""
        raise EncoderError(f"encoder {self.name} has a {view!r} view head but cannot embed in it")

    def _embed_batch_in(self, images: Sequence[np.ndarray], views: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """A batch's plain embeddings and each image's in its own view (its plain one where the view
        has no head). An encoder that can share work between the two overrides this."""
        plain = np.asarray(self._embed_batch(images), dtype=np.float32)

        def in_view(view, rows):
            return self._embed_view_batch([images[i] for i in rows], view) if self.has_head(view) else plain[rows]

        return plain, np.stack(by_view(views, len(images), in_view)).astype(np.float32)

    def has_head(self, view: str | None) -> bool:
        """Whether ``view`` is embedded and scored with a fit of its own (:attr:`view_heads`)."""
        return view is not None and view in self.view_heads

    def embed(self, images: Iterable[np.ndarray], view: str | None = None) -> np.ndarray:
        """Embed images -> ``(N, dim)`` float32, each row L2-normalised; in ``view``
        (:mod:`attrib.views`) with its own fit where the encoder has one (:attr:`view_heads`)."""
        if not self.has_head(view):
            return self._batched(images, lambda start, batch: (self._embed_batch(batch),))[0]
        return self._batched(images, lambda start, batch: (self._embed_view_batch(batch, view),))[0]

    def embed_in(self, images: Iterable[np.ndarray], views: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """Images' plain embeddings and each one's in its own view (``views``, one per image; None:
        the plain one), as :meth:`embed` gives them; the two are equal where the view has no head."""
        images = list(images)
        if len(views) != len(images):
            raise EncoderError(f"{len(views)} views for {len(images)} images")
        if not any(self.has_head(v) for v in views):
            plain = self.embed(images)
            return plain, plain
        plain, own = self._batched(images, lambda start, batch: self._embed_batch_in(batch, views[start : start + len(batch)]))
        return plain, own

    def _batched(self, images: Iterable[np.ndarray], embed_batch) -> tuple[np.ndarray, ...]:
        """Checked, batched, L2-normalised outputs of ``embed_batch(start, batch)`` (a tuple of
        arrays per batch, ``start`` its first image's position)."""
        images = list(images)
        for i, img in enumerate(images):
            if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise EncoderError(f"image {i}: expected H x W x 3 uint8, got {getattr(img, 'shape', type(img))}")
        if not images:
            return (np.zeros((0, self.dim), dtype=np.float32),) * 2
        out: list[list[np.ndarray]] = []
        for start in range(0, len(images), self.batch_size):
            parts = embed_batch(start, images[start : start + self.batch_size])
            out = out or [[] for _ in parts]
            for k, vec in enumerate(parts):
                vec = np.asarray(vec, dtype=np.float32)
                if vec.ndim != 2 or vec.shape[1] != self.dim:
                    raise EncoderError(f"encoder {self.name} returned shape {vec.shape}, expected (N, {self.dim})")
                out[k].append(vec)
        embs = tuple(l2_normalize(np.concatenate(parts, axis=0)) for parts in out)
        if not all(np.all(np.isfinite(e)) for e in embs):
            raise EncoderError(f"encoder {self.name} produced non-finite embeddings")
        return embs

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "id": self.id, "dim": self.dim, "config": self.config()}
        if self.view_heads:
            out["view_heads"] = sorted(self.view_heads)
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"
