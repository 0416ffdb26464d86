"""Open-set calibration: how a similarity score becomes *accept* or *unknown*.

Scores are cosine similarities between an embedding and a source's prototypes (the best one).
Score models are Gaussians in Fisher-z space (``atanh(score)``), where bounded, skewed cosine
distributions are close to normal; thresholds are mapped back with ``tanh`` so they stay in
[-1, 1]. For every source the gallery keeps a Gaussian model of **impostor** scores (samples of *other*
sources scored against this source's prototypes) and of **genuine** scores (each enrolled sample
scored leave-one-out against a prototype built from the source's other samples).

Few-shot galleries hold too few impostors to read a 1% false-accept point off them directly, so
the impostor model is a pooled estimate: the encoder's **prior** (impostor statistics it measured
on sources it never saw, shipped with the encoder) counts as ``PRIOR_WEIGHT`` pseudo-observations
and the gallery's own impostor scores are added to it. A source's threshold at false-accept rate
``far`` is then ``mu + z(1 - far) * sigma`` of its pooled impostor model. With no prior and no
impostor evidence (a gallery with one source), a conservative default is used and flagged.

A gallery's own impostors are its *other enrolled* sources, which are often unrelated to each
other, while the unknowns that matter most are close relatives of an enrolled generator (a
fine-tune, a new version, another seed of the same architecture), which score far higher. So
when the encoder's prior carries a **near-impostor** model (scores of the *most similar* other
source against a source's prototype, measured on sources the encoder never saw), a source's
threshold is never below that model's threshold at the same FAR: the stated FAR then holds for
a close relative of an enrolled source, not only for a stranger.

Every decision reports its score, the threshold it was held against, and the margin to the
runner-up; the genuine model gives the expected true-accept rate at that threshold.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

#: pseudo-observations the encoder prior counts for when pooled with a gallery's own scores
PRIOR_WEIGHT = 30.0
#: smallest standard deviation a score model may have (guards against 2-sample estimates)
MIN_SIGMA = 0.01
#: impostor model used when neither a prior nor impostors exist (cosine of unrelated vectors ~ 0)
FALLBACK_IMPOSTOR = {"mu": 0.0, "sigma": 0.25, "n": 0.0}
#: cosines are clipped to +-Z_CLIP before atanh
Z_CLIP = 0.9999
#: false-accept rate used by identify and verify unless told otherwise
DEFAULT_FAR = 0.01

_N = NormalDist()


@dataclass
class ScoreModel:
    """A Gaussian model of Fisher-z scores (``atanh(cosine)``): mean, standard deviation, and how
    many scores it rests on."""

    mu: float
    sigma: float
    n: float

    @classmethod
    def from_scores(cls, scores: np.ndarray) -> "ScoreModel | None":
        scores = fisher_z(scores)
        if scores.size == 0:
            return None
        sigma = float(scores.std(ddof=1)) if scores.size > 1 else 0.0
        return cls(float(scores.mean()), max(sigma, MIN_SIGMA), float(scores.size))

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ScoreModel | None":
        if not d:
            return None
        return cls(float(d["mu"]), max(float(d["sigma"]), MIN_SIGMA), float(d.get("n", 0.0)))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def threshold(self, far: float) -> float:
        """Cosine score above which a fraction ``far`` of these scores lies."""
        far = min(max(far, 1e-9), 1 - 1e-9)
        return math.tanh(self.mu + _N.inv_cdf(1.0 - far) * self.sigma)

    def tail(self, threshold: float) -> float:
        """Fraction of these scores at or above the cosine ``threshold``."""
        return 1.0 - _N.cdf((float(fisher_z(threshold)) - self.mu) / self.sigma)


def fisher_z(scores) -> np.ndarray:
    """``atanh`` of cosine scores, clipped away from +-1."""
    return np.arctanh(np.clip(np.asarray(scores, dtype=np.float64), -Z_CLIP, Z_CLIP))


def pool(prior: ScoreModel | None, observed: ScoreModel | None, prior_weight: float = PRIOR_WEIGHT) -> ScoreModel:
    """Pool a prior model (worth ``prior_weight`` observations) with observed scores."""
    if prior is None and observed is None:
        return ScoreModel(**FALLBACK_IMPOSTOR)
    if observed is None:
        return prior
    if prior is None:
        return observed
    w0, w1 = prior_weight, observed.n
    mu = (w0 * prior.mu + w1 * observed.mu) / (w0 + w1)
    var = (w0 * (prior.sigma**2 + (prior.mu - mu) ** 2) + w1 * (observed.sigma**2 + (observed.mu - mu) ** 2)) / (w0 + w1)
    return ScoreModel(mu, max(math.sqrt(var), MIN_SIGMA), w0 + w1)


@dataclass
class Decision:
    """One open-set decision about one image."""

    source: str | None  # None = unknown
    score: float  # similarity to the best source
    threshold: float  # the best source's threshold at the FAR in force
    margin: float  # best score minus the runner-up's (score itself when there is no runner-up)
    candidates: list[dict[str, Any]]  # [{"source", "score"}], best first
    far: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "score": round(self.score, 6),
            "threshold": round(self.threshold, 6),
            "margin": round(self.margin, 6),
            "candidates": [{"source": c["source"], "score": round(c["score"], 6)} for c in self.candidates],
        }


def decide(candidates: list[tuple[str, float]], thresholds: dict[str, float], far: float) -> Decision:
    """Accept the best candidate if it clears its own threshold, else unknown."""
    if not candidates:
        return Decision(None, float("nan"), float("nan"), float("nan"), [], far)
    best, score = candidates[0]
    runner = candidates[1][1] if len(candidates) > 1 else None
    margin = score - runner if runner is not None else score
    threshold = thresholds[best]
    return Decision(
        best if score >= threshold else None,
        float(score),
        float(threshold),
        float(margin),
        [{"source": s, "score": float(v)} for s, v in candidates],
        far,
    )


def measure_prior(emb: np.ndarray, names, shots: int, rng: np.random.Generator, pairs: int = 1500) -> dict[str, Any]:
    """An encoder's calibration prior, measured on sources outside any gallery.

    impostor: other sources' embeddings scored against a source's K-shot prototype; genuine: the
    source's remaining embeddings against it; near_impostor: the embeddings of the closest other
    source only (highest mean score) against it; pair_impostor: embeddings of different sources
    against each other (at most ``pairs`` of them, drawn with ``rng``)."""
    arr = np.asarray(names)
    labels, inv = np.unique(arr, return_inverse=True)
    counts = np.bincount(inv, minlength=len(labels))
    imp, gen, near = [], [], []
    for i in range(len(labels)):
        idx = np.flatnonzero(inv == i)
        proto = emb[idx[:shots]].mean(axis=0)
        proto = proto / (np.linalg.norm(proto) + 1e-12)
        scores = emb @ proto
        imp.append(scores[inv != i])
        gen.append(scores[idx[shots:]])
        if len(labels) > 1:  # the closest other source: the one whose images score highest on average
            means = np.bincount(inv, weights=scores, minlength=len(labels)) / counts
            means[i] = -np.inf
            near.append(scores[inv == means.argmax()])
    idx = rng.permutation(len(emb))[:pairs]
    sim = emb[idx] @ emb[idx].T
    diff = arr[idx][:, None] != arr[idx][None, :]
    return {
        "impostor": ScoreModel.from_scores(np.concatenate(imp)).to_dict(),
        "genuine": ScoreModel.from_scores(np.concatenate(gen)).to_dict(),
        "pair_impostor": ScoreModel.from_scores(sim[diff]).to_dict(),
        "near_impostor": ScoreModel.from_scores(np.concatenate(near)).to_dict() if near else None,
        "shots": shots,
        "sources": int(len(labels)),
    }
