"""The encoder interface: image -> L2-normalised fingerprint embedding.

An encoder has a stable :attr:`Encoder.id` (name + config + weights hash). A gallery is bound to one
encoder id, so embeddings of different encoders never mix.

Subclasses implement :meth:`Encoder._embed_batch`; the base class owns :meth:`Encoder.embed`
(input checks, batching, normalisation, dtype).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any

import numpy as np

from ..errors import EncoderError


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

    def embed(self, images: Iterable[np.ndarray]) -> np.ndarray:
        """Embed images -> ``(N, dim)`` float32, each row L2-normalised."""
        images = list(images)
        for i, img in enumerate(images):
            if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise EncoderError(f"image {i}: expected H x W x 3 uint8, got {getattr(img, 'shape', type(img))}")
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for start in range(0, len(images), self.batch_size):
            vec = np.asarray(self._embed_batch(images[start : start + self.batch_size]), dtype=np.float32)
            if vec.ndim != 2 or vec.shape[1] != self.dim:
                raise EncoderError(f"encoder {self.name} returned shape {vec.shape}, expected (N, {self.dim})")
            out.append(vec)
        emb = l2_normalize(np.concatenate(out, axis=0))
        if not np.all(np.isfinite(emb)):
            raise EncoderError(f"encoder {self.name} produced non-finite embeddings")
        return emb

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "dim": self.dim, "config": self.config()}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"
