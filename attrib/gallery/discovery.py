"""Discovery: clusters of rejected queries that may be sources nobody enrolled yet."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..encoders import l2_normalize


def clusters(emb: np.ndarray, threshold: float, min_size: int) -> list[list[int]]:
    """Connected components of the graph linking two rows whose similarity clears ``threshold``
    (FAISS range search, union-find), with at least ``min_size`` members, largest first."""
    import faiss

    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    lims, _, ids = index.range_search(emb, threshold)
    parent = list(range(len(emb)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(emb)):
        for j in ids[lims[i] : lims[i + 1]]:
            a, b = root(i), root(int(j))
            if a != b:
                parent[a] = b
    groups: dict[int, list[int]] = {}
    for i in range(len(emb)):
        groups.setdefault(root(i), []).append(i)
    return [m for m in sorted(groups.values(), key=len, reverse=True) if len(m) >= min_size]


def propose(
    emb: np.ndarray,
    origins: Sequence[str | None],
    threshold: float,
    min_size: int,
    nearest: Callable[[np.ndarray], list[tuple[str, float]]],
) -> list[dict[str, Any]]:
    """Proposals from :func:`clusters`: each lists its members' origins, its cohesion (mean
    similarity to the centre) and the enrolled source ``nearest`` finds for its centre."""
    if len(emb) < min_size:
        return []
    proposals = []
    for members in clusters(emb, threshold, min_size):
        centre = l2_normalize(emb[members].mean(axis=0, keepdims=True))
        near = nearest(centre)
        proposals.append(
            {
                "size": len(members),
                "cohesion": round(float((emb[members] @ centre[0]).mean()), 4),
                "nearest_source": near[0][0] if near else None,
                "nearest_score": round(near[0][1], 4) if near else None,
                "members": [origins[i] for i in members],
            }
        )
    return proposals
