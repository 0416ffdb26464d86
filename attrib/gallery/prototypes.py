"""Prototypes and search: the centres a source is matched against, and identify over them.

A source's samples are summarised by one or a few prototypes (:func:`prototypes_of`); queries are
searched against every prototype in a FAISS index (:class:`attrib.index.VectorIndex`) and each
source keeps its best prototype's score (:func:`source_scores`); the open-set decision then holds
the best source to its calibrated threshold (:func:`identify`). Plain functions over arrays and
an index: the gallery and evaluation run the same search.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import openset
from ..encoders import l2_normalize
from ..index import VectorIndex
from ..scorenorm import ScoreNorm

#: a source with at least this many samples may get more than one prototype
MULTI_PROTO_MIN = 20
MAX_PROTOTYPES = 4


def prototypes_of(emb: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Centres of a source's samples: the mean direction, or spherical k-means centres when the
    source has enough samples to be multi-modal (one centre per ~``MULTI_PROTO_MIN / 2`` samples)."""
    n = len(emb)
    k = min(MAX_PROTOTYPES, n // (MULTI_PROTO_MIN // 2)) if n >= MULTI_PROTO_MIN else 1
    if k <= 1:
        return l2_normalize(emb.mean(axis=0, keepdims=True)), np.array([n])
    import faiss

    km = faiss.Kmeans(emb.shape[1], k, niter=25, seed=seed, spherical=True, verbose=False, min_points_per_centroid=1)
    km.train(np.ascontiguousarray(emb, dtype=np.float32))
    _, assign = km.index.search(np.ascontiguousarray(emb, dtype=np.float32), 1)
    assign = assign[:, 0]
    centres, members = [], []
    for c in range(k):
        sel = emb[assign == c]
        if len(sel):
            centres.append(sel.mean(axis=0))
            members.append(len(sel))
    return l2_normalize(np.stack(centres)), np.array(members)


def in_view(vectors: np.ndarray, names: Sequence[str], view_vectors: np.ndarray, view_names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """A view's prototypes (:mod:`attrib.views`), ordered by source: each source's prototypes in the
    view (``view_vectors`` / ``view_names``), and for a source with none there (enrolled before
    views, or by a caller that gave none) its plain ones (``vectors`` / ``names``)."""
    have = set(view_names)
    keep = [i for i, n in enumerate(names) if n not in have]
    rows = [(n, v) for n, v in zip(view_names, view_vectors)] + [(names[i], vectors[i]) for i in keep]
    rows.sort(key=lambda r: r[0])  # stable: each source's prototypes keep their order
    dim = vectors.shape[1] if np.ndim(vectors) == 2 else 0
    if not rows:
        return np.zeros((0, dim), np.float32), []
    return np.stack([np.asarray(v, np.float32) for _, v in rows]), [n for n, _ in rows]


def source_scores(
    index: VectorIndex | None, embeddings: np.ndarray, top_k: int, norm: ScoreNorm | None = None
) -> list[list[tuple[str, float]]]:
    """Per query, ``(source, score)`` best first: each source scored by its best prototype
    (``top_k`` sources, or all found when 0); scores normalised by the encoder's ``norm``
    (:mod:`attrib.scorenorm`) when it has one, which keeps each query's order."""
    if index is None:
        return [[] for _ in range(len(embeddings))]
    k = min(len(index), max(top_k, 1) * MAX_PROTOTYPES + 1)
    scores, ids = index.search(embeddings, k)
    if norm is not None:
        scores = norm.normalise(scores, embeddings)
    out = []
    for srow, irow in zip(scores, ids):
        best: dict[str, float] = {}
        for s, i in zip(srow, irow):
            if i < 0:
                continue
            name = index.labels[i]
            if name not in best:  # results come best first: first hit per source is its max
                best[name] = float(s)
        out.append(list(best.items())[:top_k] if top_k else list(best.items()))
    return out


def identify(
    index: VectorIndex | None,
    calibration: openset.Calibration,
    embeddings: np.ndarray,
    top_k: int,
    far: float,
    norm: ScoreNorm | None = None,
) -> list[openset.Decision]:
    """Open-set identification of each embedding: a source, or unknown (source None). Thresholds
    are read only for the sources that came out best."""
    embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
    cands = source_scores(index, embeddings, max(top_k, 2), norm)
    thresholds = calibration.thresholds(far, sources=[c[0][0] for c in cands if c])
    decisions = []
    for c in cands:
        d = openset.decide(c, thresholds, far)
        d.candidates = d.candidates[:top_k]
        decisions.append(d)
    return decisions
