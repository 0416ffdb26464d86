"""A gallery held in memory, enrolled from arrays: what evaluation needs, without a database.

:meth:`MemoryGallery.enroll` follows the gallery's own rules (duplicates skipped by sha256, the
first sample of an image wins; prototypes per source; impostor pool, impostor and genuine models)
through the same functions (:mod:`attrib.openset`, :mod:`attrib.gallery.prototypes`), so a
K-shot trial gives the figures an on-disk gallery enrolled with the same samples would give.
tests/test_evaluate.py holds the two side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import openset
from ..index import VectorIndex
from ..scorenorm import ScoreNorm
from ..sources import check_name
from . import lineage, prototypes


class MemoryGallery:
    """Enrolled sources, their prototypes in a FAISS index, and their calibration."""

    def __init__(
        self,
        sources: list[str],
        index: VectorIndex | None,
        calibration: openset.Calibration,
        far: float = openset.DEFAULT_FAR,
        norm: ScoreNorm | None = None,
        tree: lineage.Tree | None = None,
        vectors: dict[str, np.ndarray] | None = None,
    ):
        self.sources = sources
        self.index = index
        self.calibration = calibration
        self.far = far
        self.norm = norm
        self.tree = tree
        self.vectors = vectors or {}

    @classmethod
    def enroll(
        cls,
        batches: Sequence[tuple[str, np.ndarray, Sequence[str]]],
        prior: dict[str, Any] | None,
        tree: lineage.Tree | None = None,
        node_score: str = lineage.NODE_SCORE,
        norm: ScoreNorm | None = None,
    ) -> MemoryGallery:
        """Enroll ``(source, embeddings, sha256s)`` batches, in order; ``prior`` is the encoder's
        ``calibration``, ``norm`` its score normalisation (:mod:`attrib.scorenorm`) if it has one. ``tree`` (its sources: the enrolled ones and their ancestors, which may
        have no samples) makes it a tree gallery, its inner nodes scored by ``node_score``."""
        seen: set[str] = set()
        members: dict[str, list[int]] = {}  # rows of ``flat`` per source, in enrollment order
        flat: list[np.ndarray] = []
        shas: list[str] = []
        owners: list[str] = []
        dim = 0
        for source, emb, batch_shas in batches:
            check_name(source)
            members.setdefault(source, [])
            emb = np.asarray(emb, dtype=np.float32)
            dim = emb.shape[1] if emb.ndim == 2 else dim
            for vec, sha in zip(emb, batch_shas):
                if sha not in seen:  # a duplicate image stays with the source that had it first
                    seen.add(sha)
                    members[source].append(len(flat))
                    flat.append(vec)
                    shas.append(sha)
                    owners.append(source)
        samples = np.array(flat, dtype=np.float32).reshape(len(flat), dim)
        names, protos = [], []
        for s in sorted(s for s in members if members[s]):  # ordered by source, as the store is
            centres, _ = prototypes.prototypes_of(samples[members[s]])
            protos.append(centres.astype(np.float32))
            names += [s] * len(centres)
        vectors = np.concatenate(protos) if protos else np.zeros((0, dim), np.float32)
        pick = openset.impostor_pool(shas)
        impostor = openset.impostor_models(samples[pick], [owners[i] for i in pick], vectors, names, norm)
        observed = {s: (impostor[s], openset.genuine_model(samples[members[s]], norm)) for s in impostor}
        index = VectorIndex.build(vectors, names) if len(vectors) else None
        node_vecs = None
        if tree is not None and tree.active:
            pool = (samples[pick], [owners[i] for i in pick])

            def samples_of(sources):
                return samples[lineage.sample_rows(shas, [i for s in sources for i in members.get(s, [])])]

            node_vecs = lineage.node_vectors(tree, tree.inner_keys(), vectors, names, samples_of, node_score)
            observed.update(lineage.node_models(tree, node_vecs, *pool, samples_of, norm))
        return cls(sorted(members), index, openset.Calibration(observed, prior), tree=tree, vectors=node_vecs, norm=norm)

    def source_names(self) -> list[str]:
        return list(self.sources)

    def source_scores(self, embeddings: np.ndarray, top_k: int) -> list[list[tuple[str, float]]]:
        return prototypes.source_scores(self.index, embeddings, top_k, self.norm)

    def thresholds(self, far: float | None = None, sources=None) -> dict[str, float]:
        return self.calibration.thresholds(self.far if far is None else far, sources)

    def identify(self, embeddings: np.ndarray, top_k: int = 5, far: float | None = None) -> list[openset.Decision]:
        far = self.far if far is None else far
        if self.tree is not None and self.tree.active:
            return lineage.identify(self.index, self.calibration, embeddings, top_k, far, self.tree, self.vectors, self.norm)
        decisions = prototypes.identify(self.index, self.calibration, embeddings, top_k, far, self.norm)
        lineage.flat_lineage(decisions, self.tree)
        return decisions
