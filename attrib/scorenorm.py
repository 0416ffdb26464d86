"""Score normalisation: a query's similarity to a source, measured against a cohort of other sources.

A raw cosine does not mean the same for every query: some images (flat, heavily textured,
re-compressed) score high against every prototype, others low against all of them, so one
threshold per source accepts the first kind too easily and rejects the second. Test
normalisation ("t-norm", from speaker verification) asks instead how far a query's score stands
above its scores against a **cohort**: many generators' images and camera photos that an encoder
saw when it was fitted, none of them a gallery's sources. With the cohort's mean embedding ``c``
and covariance ``S``, a query ``q`` scores ``q . c`` on average against the cohort, with standard
deviation ``sqrt(q' S q)``, and its normalised score against a prototype ``p`` is::

    z = (q . p - q . c) / sqrt(q' S q)

For one query this is an increasing affine map of its scores, so its ranking of sources (the
closed-set answer) is unchanged; what changes is which queries clear a threshold: the open set.
On the real folds (``bench/real_folds.py``, 5-shot) it lifts ``fp-joint1``'s open-set AUROC by
0.04 +/- 0.03 on whole images and on 256 px crops at the same top-1 (``fp-joint2``). The cohort
must resemble what is queried: ``fp-joint2``'s holds real generators only, and on synthetic zoo
generators its thresholds are too lax (README, "Real generators").

``S`` is kept as its ``rank`` leading eigenvectors plus one variance for every other direction,
so a 2257-dimensional encoder ships a few hundred kilobytes, not the cohort and not a 2257 x 2257
matrix (the low-rank model also separates better than the full covariance on those folds).

Scores reported and calibrated are ``tanh(z / scale)``: they stay in (-1, 1) like cosines, and
the open-set score models (Gaussians of ``atanh(score)``, :mod:`attrib.openset`) then model ``z``
itself. Normalisation applies wherever a query meets a source (identify, verify against a source,
the impostor and genuine models, the encoder's prior); two images compared with each other
(``verify a.png b.png``, discovery) keep their raw cosine.

Several cohorts (``fp-joint3``, ``fp-joint4``): one cohort describes one world. A cohort of real generators'
images says little about a query from a synthetic generator far from all of them: its scores
against that cohort barely vary, so a prototype near it stands many deviations above, and so do
its siblings' (``fp-joint2``, whose cohort is real generators only, accepts a third of ``attrib
demo``'s never-enrolled generators). With a second cohort of such generators, a query is
normalised against each and keeps the **least** of its z-scores: it must stand out from every
world the encoder knows. For one query this is still an increasing map of its raw scores, so the
closed-set answer is unchanged. ``fp-joint3`` (cohorts: real images as 256 px crops, zoo images):
on the real folds the zoo cohort moves no figure by more than 0.001; on ``attrib demo``'s
protocol it takes never-enrolled generators accepted from 0.36 to 0.00 and AUROC from 0.91 to
0.97 (``bench/demo_check.py``). Its scale is 20, not 5: zoo-like queries stand 30-60 deviations
above their cohort means, which ``tanh(z / 5)`` pins at the open-set models' clip (ties).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import EncoderError

#: z is divided by this before ``tanh``: a query 5 cohort deviations above its cohort mean scores 0.76
SCALE = 5.0
#: leading eigenvectors of the cohort covariance that are kept
RANK = 16
#: weight-file keys (under a prefix)
KEYS = ("mean", "basis", "variances", "rest")


class Cohort:
    """The statistics of one cohort: mean embedding, low-rank covariance (``basis``, ``variances``)
    and one variance (``rest``) for every direction outside the basis."""

    def __init__(self, mean: np.ndarray, basis: np.ndarray, variances: np.ndarray, rest: float):
        self.mean = np.asarray(mean, np.float32)
        self.basis = np.ascontiguousarray(basis, np.float32)  # (dim, rank), orthonormal columns
        self.variances = np.asarray(variances, np.float32)  # (rank,)
        self.rest = float(rest)
        if self.basis.shape != (len(self.mean), len(self.variances)):
            raise EncoderError(f"score normalisation: a {self.basis.shape} basis does not fit a {len(self.mean)}-d mean")

    @classmethod
    def from_embeddings(cls, emb: np.ndarray, rank: int = RANK) -> Cohort:
        """Statistics of cohort embeddings (rows, unit length)."""
        emb = np.asarray(emb, np.float64)
        if len(emb) < 2:
            raise ValueError("a cohort needs at least two embeddings")
        mean = emb.mean(axis=0)
        u, sv, _ = np.linalg.svd((emb - mean).T, full_matrices=False)
        eig = sv**2 / len(emb)
        rank = min(rank, len(eig))
        rest = float(eig[rank:].sum() / max(emb.shape[1] - rank, 1))
        return cls(mean, u[:, :rank], eig[:rank], rest)

    def stats(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per query: its mean score against the cohort and the standard deviation of those scores."""
        q = np.atleast_2d(np.asarray(queries, np.float32))
        proj = q @ self.basis
        inside = (proj**2).sum(axis=1)
        var = (proj**2 * self.variances).sum(axis=1) + self.rest * np.maximum((q**2).sum(axis=1) - inside, 0.0)
        return q @ self.mean, np.sqrt(np.maximum(var, 1e-12))


class ScoreNorm:
    """An encoder's score normalisation: one or several cohorts and the output scale."""

    def __init__(self, cohorts: Sequence[Cohort], scale: float = SCALE, names: Sequence[str] | None = None):
        self.cohorts = list(cohorts)
        if not self.cohorts:
            raise EncoderError("score normalisation needs at least one cohort")
        if len({len(c.mean) for c in self.cohorts}) != 1 or len({len(c.variances) for c in self.cohorts}) != 1:
            raise EncoderError("score normalisation: cohorts of different dimensions or ranks")
        self.scale = float(scale)
        self.names = list(names) if names is not None else [f"cohort{i}" for i in range(len(self.cohorts))]
        if len(self.names) != len(self.cohorts):
            raise EncoderError(f"score normalisation: {len(self.names)} names for {len(self.cohorts)} cohorts")

    @classmethod
    def from_cohort(cls, emb: np.ndarray, rank: int = RANK, scale: float = SCALE) -> ScoreNorm:
        """One cohort's embeddings (rows, unit length)."""
        return cls([Cohort.from_embeddings(emb, rank)], scale)

    @classmethod
    def from_cohorts(cls, cohorts: dict[str, np.ndarray], rank: int = RANK, scale: float = SCALE) -> ScoreNorm:
        """``{name: embeddings}`` of several cohorts: a query keeps its least z-score among them."""
        return cls([Cohort.from_embeddings(e, rank) for e in cohorts.values()], scale, names=list(cohorts))

    def stats(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per query and cohort: the mean of its scores against the cohort and their standard
        deviation, each ``(queries, cohorts)``."""
        per = [c.stats(queries) for c in self.cohorts]
        return np.stack([o for o, _ in per], axis=1), np.stack([s for _, s in per], axis=1)

    def normalise(self, scores: np.ndarray, queries: np.ndarray, stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Raw cosines (one row per query, any number of columns) -> ``tanh(min_c z_c / scale)``;
        ``stats``: the queries' :meth:`stats` when the caller has them already (scoring them again
        and again)."""
        offset, spread = self.stats(queries) if stats is None else stats
        scores = np.asarray(scores, np.float64)
        shape = (-1,) + (1,) * (scores.ndim - 1)
        z = np.min([(scores - offset[:, c].reshape(shape)) / spread[:, c].reshape(shape) for c in range(offset.shape[1])], axis=0)
        return np.tanh(z / self.scale).astype(np.float32)

    def weights(self, prefix: str = "score_norm.") -> dict[str, np.ndarray]:
        """Arrays to store in an encoder's weight file: one cohort's as they are (the layout
        ``fp-joint2`` shipped with), several stacked along a first axis."""
        cs = self.cohorts
        arrays = {
            "mean": np.stack([c.mean for c in cs]),
            "basis": np.stack([c.basis for c in cs]),
            "variances": np.stack([c.variances for c in cs]),
            "rest": np.array([c.rest for c in cs], np.float32),
        }
        if len(cs) == 1:
            arrays = {k: v if k == "rest" else v[0] for k, v in arrays.items()}
        return {f"{prefix}{k}": v for k, v in arrays.items()}

    def config(self) -> dict[str, Any]:
        out = {"kind": "t-norm", "rank": int(len(self.cohorts[0].variances)), "scale": self.scale}
        if len(self.cohorts) > 1:
            out["cohorts"] = self.names
        return out

    @classmethod
    def from_weights(cls, weights: dict[str, np.ndarray], config: dict[str, Any] | None, prefix: str = "score_norm.") -> ScoreNorm | None:
        """The normalisation stored in an encoder's weights (None when it has none)."""
        present = [k for k in KEYS if f"{prefix}{k}" in weights]
        if not present:
            return None
        if len(present) != len(KEYS):
            missing = sorted(set(KEYS) - set(present))
            raise EncoderError(f"score normalisation weights lack {prefix}{missing[0]}")
        config = config or {}
        w = {k: np.asarray(weights[f"{prefix}{k}"]) for k in KEYS}
        if w["mean"].ndim == 1:  # one cohort, unstacked
            w = {k: v.reshape(-1) if k == "rest" else v[None] for k, v in w.items()}
        n = len(w["mean"])
        if not len(w["basis"]) == len(w["variances"]) == len(w["rest"]) == n:
            raise EncoderError(f"score normalisation weights: {n} cohort means but not as many bases, variances and rests")
        cohorts = [Cohort(w["mean"][i], w["basis"][i], w["variances"][i], float(w["rest"][i])) for i in range(n)]
        return cls(cohorts, float(config.get("scale", SCALE)), names=config.get("cohorts"))


def normalise(norm: ScoreNorm | None, scores: np.ndarray, queries: np.ndarray, stats=None) -> np.ndarray:
    """``norm.normalise`` or, with no normalisation, the raw scores."""
    return np.asarray(scores) if norm is None else norm.normalise(scores, queries, stats)
