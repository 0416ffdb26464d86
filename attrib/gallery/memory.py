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
from ..views import by_view
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
        view_indexes: dict[str, VectorIndex | None] | None = None,
        view_calibrations: dict[str, openset.Calibration] | None = None,
        view_norms: dict[str, ScoreNorm | None] | None = None,
    ):
        self.sources = sources
        self.view_norms = view_norms or {}  # per view with a score normalisation of its own (an encoder's view head)
        self.index = index
        self.view_indexes = view_indexes or {}  # per view (:mod:`attrib.views`): its prototypes' index
        self.view_calibrations = view_calibrations or {}  # per view: its measured models and the prior
        self.calibration = calibration
        self.far = far
        self.norm = norm
        self.tree = tree
        self.vectors = vectors or {}

    @classmethod
    def enroll(
        cls,
        batches: Sequence[tuple],
        prior: dict[str, Any] | None,
        tree: lineage.Tree | None = None,
        node_score: str = lineage.NODE_SCORE,
        norm: ScoreNorm | None = None,
        heads: dict[str, Any] | None = None,
    ) -> MemoryGallery:
        """Enroll ``(source, embeddings, sha256s[, {view: embeddings}])`` batches, in order (each
        view's rows aligned with ``embeddings``: :mod:`attrib.views`); ``prior`` is the encoder's
        ``calibration``, ``norm`` its score normalisation (:mod:`attrib.scorenorm`) if it has one,
        ``heads`` its ``view_heads`` (a view with one is normalised and calibrated with its own).
        ``tree`` (its sources: the enrolled ones and their ancestors, which may
        have no samples) makes it a tree gallery, its inner nodes scored by ``node_score``."""
        heads = heads or {}
        seen: set[str] = set()
        members: dict[str, list[int]] = {}  # rows of ``flat`` per source, in enrollment order
        flat: list[np.ndarray] = []
        shas: list[str] = []
        owners: list[str] = []
        view_rows: dict[str, dict[int, np.ndarray]] = {}  # per view: row of ``flat`` -> its view embedding
        dim = 0
        for source, emb, batch_shas, *rest in batches:
            check_name(source)
            members.setdefault(source, [])
            emb = np.asarray(emb, dtype=np.float32)
            dim = emb.shape[1] if emb.ndim == 2 else dim
            views = rest[0] if rest and rest[0] else {}
            for i, (vec, sha) in enumerate(zip(emb, batch_shas)):
                if sha not in seen:  # a duplicate image stays with the source that had it first
                    seen.add(sha)
                    for view, vemb in views.items():
                        view_rows.setdefault(view, {})[len(flat)] = np.asarray(vemb[i], np.float32)
                    members[source].append(len(flat))
                    flat.append(vec)
                    shas.append(sha)
                    owners.append(source)
        samples = np.array(flat, dtype=np.float32).reshape(len(flat), dim)
        pick = openset.impostor_pool(shas)
        vectors, names, observed = cls._measure(samples, members, owners, pick, norm)
        index = VectorIndex.build(vectors, names) if len(vectors) else None
        view_indexes, view_observed = {}, {}
        view_norms = {view: head.score_norm for view, head in heads.items()}
        for view, rows in view_rows.items():  # a sample without this view stands in it as it is
            in_view = np.stack([rows.get(i, samples[i]) for i in range(len(samples))]) if len(samples) else samples
            view_vectors, view_names, view_observed[view] = cls._measure(in_view, members, owners, pick, view_norms.get(view, norm))
            view_indexes[view] = VectorIndex.build(view_vectors, view_names) if len(view_vectors) else None
        node_vecs = None
        if tree is not None and tree.active:
            pool = (samples[pick], [owners[i] for i in pick])

            def samples_of(sources):
                return samples[lineage.sample_rows(shas, [i for s in sources for i in members.get(s, [])])]

            node_vecs = lineage.node_vectors(tree, tree.inner_keys(), vectors, names, samples_of, node_score)
            observed.update(lineage.node_models(tree, node_vecs, *pool, samples_of, norm))
        calibration = openset.Calibration(observed, prior)
        nodes = {k: v for k, v in observed.items() if k not in members}  # inner nodes and families: the plain view's
        view_calibrations = {
            view: openset.Calibration(obs | nodes, heads[view].calibration if view in heads else prior)
            for view, obs in view_observed.items()
        }
        return cls(
            sorted(members),
            index,
            calibration,
            tree=tree,
            vectors=node_vecs,
            norm=norm,
            view_indexes=view_indexes,
            view_calibrations=view_calibrations,
            view_norms={v: n for v, n in view_norms.items() if v in view_indexes},
        )

    @staticmethod
    def _measure(samples: np.ndarray, members: dict[str, list[int]], owners: list[str], pick: np.ndarray, norm) -> tuple:
        """Prototypes (vectors and their sources, ordered by source, as the store orders them) and
        measured (impostor, genuine) models of one view, from every sample's embedding in it (rows
        of ``samples``; the plain view: the samples as they are); ``pick``: the impostor pool's rows."""
        names, protos = [], []
        for s in sorted(s for s in members if members[s]):
            centres, _ = prototypes.prototypes_of(samples[members[s]])
            protos.append(centres.astype(np.float32))
            names += [s] * len(centres)
        vectors = np.concatenate(protos) if protos else np.zeros((0, samples.shape[1]), np.float32)
        impostor = openset.impostor_models(samples[pick], [owners[i] for i in pick], vectors, names, norm)
        observed = {s: (impostor[s], openset.genuine_model(samples[members[s]], norm)) for s in impostor}
        return vectors, names, observed

    def calibration_of(self, view: str | None) -> openset.Calibration:
        """The calibration thresholds of ``view`` are read from (None, or a view not enrolled: the plain one)."""
        return self.view_calibrations.get(view, self.calibration) if view is not None else self.calibration

    def norm_of(self, view: str | None) -> ScoreNorm | None:
        """The score normalisation of ``view`` (its own where the encoder has a head for it)."""
        return self.view_norms.get(view, self.norm) if view is not None else self.norm

    def index_of(self, view: str | None) -> VectorIndex | None:
        """The prototypes' index of ``view`` (None, or a view not enrolled: the plain one)."""
        return self.view_indexes.get(view, self.index) if view is not None else self.index

    def source_names(self) -> list[str]:
        return list(self.sources)

    def source_scores(self, embeddings: np.ndarray, top_k: int, views=None) -> list[list[tuple[str, float]]]:
        embeddings = np.atleast_2d(embeddings)
        return by_view(
            views, len(embeddings), lambda v, rows: prototypes.source_scores(self.index_of(v), embeddings[rows], top_k, self.norm_of(v))
        )

    def thresholds(self, far: float | None = None, sources=None) -> dict[str, float]:
        return self.calibration.thresholds(self.far if far is None else far, sources)

    def identify(self, embeddings: np.ndarray, top_k: int = 5, far: float | None = None, views=None) -> list[openset.Decision]:
        """Open-set identification of each embedding, each scored in its view (``views``: one per
        embedding, None for the plain view; :mod:`attrib.views`)."""
        far = self.far if far is None else far
        embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))

        def answer(view, rows):
            index, calibration = self.index_of(view), self.calibration_of(view)
            norm = self.norm_of(view)
            if self.tree is not None and self.tree.active:
                return lineage.identify(index, calibration, embeddings[rows], top_k, far, self.tree, self.vectors, norm)
            decisions = prototypes.identify(index, calibration, embeddings[rows], top_k, far, norm)
            lineage.flat_lineage(decisions, self.tree)
            return decisions

        return by_view(views, len(embeddings), answer)
