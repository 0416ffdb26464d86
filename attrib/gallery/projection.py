"""A 2-D map of a gallery for people to look at: PCA of its prototypes and samples.

The two principal axes of the prototypes and (a bounded share of) the samples, fitted on one
gallery generation; a query's embedding is placed on the same axes with :meth:`GalleryMap.place`.
A picture, not a measurement: two sources that overlap here may still be far apart in the
dimensions the map leaves out (the explained variance says how much it keeps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .store import Store, from_blobs

#: samples drawn per source (the first enrolled), and in all: the map stays light to draw
MAP_SAMPLES_PER_SOURCE = 25
MAP_SAMPLES = 4000


@dataclass
class GalleryMap:
    generation: int
    mean: np.ndarray  # (D,)
    axes: np.ndarray  # (2, D), unit rows
    explained: list[float]  # share of the variance along each axis
    sources: list[dict[str, Any]]  # [{name, family, prototypes: [[x, y]], samples: [[x, y]]}]

    def place(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, D) embeddings -> (N, 2) map coordinates."""
        emb = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        return (emb - self.mean) @ self.axes.T

    def to_dict(self) -> dict[str, Any]:
        return {"generation": self.generation, "explained": self.explained, "sources": self.sources}


def _axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float]]:
    mean = points.mean(axis=0)
    centred = points - mean
    dim = points.shape[1]
    axes = np.zeros((2, dim), np.float32)
    explained = [0.0, 0.0]
    if len(points) > 1:
        _, s, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
        total = float((s**2).sum())
        k = min(2, len(vt))
        for i in range(k):
            v = vt[i]
            v = v if v[np.argmax(np.abs(v))] >= 0 else -v  # one sign, whatever the SVD chose
            axes[i] = v
            explained[i] = round(float(s[i] ** 2 / total), 4) if total > 0 else 0.0
    return mean.astype(np.float32), axes, explained


def gallery_map(store: Store) -> GalleryMap:
    """The map of the gallery behind ``store``, as it is now (call inside one read snapshot)."""
    generation = store.generation
    families = {r["name"]: r["family"] for r in store.source_rows()}
    if not families:
        return GalleryMap(generation, np.zeros(0, np.float32), np.zeros((2, 0), np.float32), [0.0, 0.0], [])
    protos, proto_src = store.prototypes()
    rows = store.db.execute(
        "select source, embedding from (select source, embedding, id, row_number() over (partition by source order by id) as rn "
        "from samples) where rn <= ? order by source, id limit ?",
        [MAP_SAMPLES_PER_SOURCE, MAP_SAMPLES],
    ).fetchall()
    samples = from_blobs([r[1] for r in rows], store.dim)
    mean, axes, explained = _axes(np.concatenate([protos, samples]))
    xy_p = (protos - mean) @ axes.T
    xy_s = (samples - mean) @ axes.T
    out = {name: {"name": name, "family": fam, "prototypes": [], "samples": []} for name, fam in families.items()}
    for (x, y), src in zip(xy_p, proto_src):
        out[src]["prototypes"].append([round(float(x), 5), round(float(y), 5)])
    for (x, y), (src, _) in zip(xy_s, rows):
        out[src]["samples"].append([round(float(x), 5), round(float(y), 5)])
    return GalleryMap(generation, mean, axes, explained, list(out.values()))
