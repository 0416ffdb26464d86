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

Everything here is plain functions over arrays (and :class:`Calibration`, the models of one
gallery): the gallery stores what they compute, and evaluation calls them on arrays without a
database, so the two cannot disagree about the maths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from .encoders.base import l2_normalize
from .scorenorm import ScoreNorm, normalise

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
#: impostor samples drawn (stably) from the whole gallery for calibration
IMPOSTOR_POOL = 4000

_N = NormalDist()


@dataclass
class ScoreModel:
    """A Gaussian model of Fisher-z scores (``atanh(cosine)``): mean, standard deviation, and how
    many scores it rests on."""

    mu: float
    sigma: float
    n: float

    @classmethod
    def from_scores(cls, scores: np.ndarray) -> ScoreModel | None:
        scores = fisher_z(scores)
        if scores.size == 0:
            return None
        sigma = float(scores.std(ddof=1)) if scores.size > 1 else 0.0
        return cls(float(scores.mean()), max(sigma, MIN_SIGMA), float(scores.size))

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ScoreModel | None:
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
    #: the decided node's path from its family: ``[family, root, ..., source]``; [] when unknown
    #: (see :mod:`attrib.gallery.lineage`)
    lineage: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "score": round(self.score, 6),
            "threshold": round(self.threshold, 6),
            "margin": round(self.margin, 6),
            "candidates": [{"source": c["source"], "score": round(c["score"], 6)} for c in self.candidates],
            "lineage": list(self.lineage),
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


def measure_prior(
    emb: np.ndarray, names, shots: int, rng: np.random.Generator, pairs: int = 1500, norm: ScoreNorm | None = None
) -> dict[str, Any]:
    """An encoder's calibration prior, measured on sources outside any gallery.

    impostor: other sources' embeddings scored against a source's K-shot prototype; genuine: the
    source's remaining embeddings against it; near_impostor: the embeddings of the closest other
    source only (highest mean score) against it; pair_impostor: embeddings of different sources
    against each other (at most ``pairs`` of them, drawn with ``rng``). With the encoder's score
    normalisation ``norm`` (:mod:`attrib.scorenorm`), the source scores are normalised as a
    gallery's are; pair scores stay raw cosines."""
    arr = np.asarray(names)
    labels, inv = np.unique(arr, return_inverse=True)
    counts = np.bincount(inv, minlength=len(labels))
    imp, gen, near = [], [], []
    stats = norm.stats(emb) if norm is not None else None  # every source scores the same rows
    for i in range(len(labels)):
        idx = np.flatnonzero(inv == i)
        proto = emb[idx[:shots]].mean(axis=0)
        proto = proto / (np.linalg.norm(proto) + 1e-12)
        scores = normalise(norm, emb @ proto, emb, stats)
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


# -- a gallery's calibration, from its embeddings ---------------------------------------------
def leave_one_out_scores(emb: np.ndarray, norm: ScoreNorm | None = None) -> np.ndarray:
    """Each sample scored against the mean direction of the source's other samples (normalised by
    ``norm`` when the encoder has one)."""
    if len(emb) < 2:
        return np.zeros(0, dtype=np.float32)
    total = emb.sum(axis=0, keepdims=True)
    others = l2_normalize(total - emb)
    return normalise(norm, (emb * others).sum(axis=1), emb)


def genuine_model(emb: np.ndarray, norm: ScoreNorm | None = None) -> ScoreModel | None:
    """A source's genuine model: its samples scored leave-one-out (None below two samples)."""
    return ScoreModel.from_scores(leave_one_out_scores(emb, norm))


def impostor_pool(shas: Sequence[str], limit: int | None = None) -> np.ndarray:
    """Indices of the impostor pool among samples with these sha256s: the first ``limit`` (default
    :data:`IMPOSTOR_POOL`) by sha256, a stable pseudo-random subset. The gallery's store draws the
    same subset in SQL (``order by sha256 limit``)."""
    limit = IMPOSTOR_POOL if limit is None else limit
    return np.array(sorted(range(len(shas)), key=lambda i: shas[i])[:limit], dtype=np.int64)


def impostor_models(
    pool: np.ndarray, pool_sources: Sequence[str], protos: np.ndarray, proto_sources: Sequence[str], norm: ScoreNorm | None = None
) -> dict[str, ScoreModel | None]:
    """Per source (those with prototypes, ``proto_sources`` grouped by source in sorted order):
    the impostor model of the pool samples of *other* sources scored against its best prototype
    (None when the pool holds no other source's sample), normalised by ``norm`` when the encoder
    has one.

    Computed in blocks of sources and summed in Fisher-z space without materialising per-source
    score lists, so a 10,000-source gallery recalibrates in one pass over the pool."""
    names, starts = np.unique(np.array(proto_sources, dtype=object), return_index=True)
    names = names.tolist()
    best = np.empty((len(pool), len(names)), dtype=np.float32)
    bounds = list(starts) + [len(proto_sources)]
    step = 4096
    for c0 in range(0, len(names), step):
        c1 = min(c0 + step, len(names))
        if len(pool):
            block = pool @ protos[bounds[c0] : bounds[c1]].T
            best[:, c0:c1] = np.maximum.reduceat(block, np.array(bounds[c0:c1]) - bounds[c0], axis=1)
    if norm is not None and len(pool):
        best = norm.normalise(best, pool)
    best = fisher_z(best)  # score models live in Fisher-z space
    own = np.array(pool_sources, dtype=object)[:, None] == np.array(names, dtype=object)[None, :]
    other = (~own).astype(np.float64)
    n = other.sum(axis=0)
    sums = (best * other).sum(axis=0)
    sq = ((best.astype(np.float64) ** 2) * other).sum(axis=0)
    out: dict[str, ScoreModel | None] = {}
    for j, name in enumerate(names):
        out[name] = None
        if n[j] > 0:
            mu = sums[j] / n[j]
            var = max(sq[j] / n[j] - mu * mu, 0.0) * (n[j] / (n[j] - 1) if n[j] > 1 else 1.0)
            out[name] = ScoreModel(float(mu), max(float(np.sqrt(var)), MIN_SIGMA), float(n[j]))
    return out


def pair_models(pool: np.ndarray, pool_sources: Sequence[str]) -> tuple[ScoreModel | None, ScoreModel | None]:
    """Sample-vs-sample scores within the pool: (pair-impostor, pair-genuine) models, for 1:1
    verification of two images against each other."""
    if len(pool) < 2:
        return None, None
    src = np.array(pool_sources, dtype=object)
    sim = pool @ pool.T
    same = src[:, None] == src[None, :]
    off = ~np.eye(len(pool), dtype=bool)
    return ScoreModel.from_scores(sim[~same]), ScoreModel.from_scores(sim[same & off])


class Calibration:
    """A gallery's score models pooled with its encoder's prior: what thresholds are read from.

    ``observed`` holds per source the (impostor, genuine) models measured in the gallery (either
    may be None); ``prior`` is the encoder's ``calibration`` dict. The gallery builds one from
    its stored models, evaluation from models it has just measured."""

    def __init__(self, observed: dict[str, tuple[ScoreModel | None, ScoreModel | None]], prior: dict[str, Any] | None):
        self.prior = prior or {}
        impostor = self.prior_model("impostor")
        self.models = {name: (pool(impostor, imp), gen) for name, (imp, gen) in observed.items()}

    def prior_model(self, key: str) -> ScoreModel | None:
        """One of the encoder's prior models (impostor, near_impostor, pair_impostor, genuine)."""
        return ScoreModel.from_dict(self.prior.get(key))

    def near_floor(self, far: float) -> float:
        """The lowest threshold at ``far`` the encoder's near-impostor prior allows; -1 when the
        encoder has none."""
        near = self.prior_model("near_impostor")
        return near.threshold(far) if near is not None else -1.0

    def thresholds(self, far: float, sources=None) -> dict[str, float]:
        """Thresholds at ``far`` of ``sources`` (default: every calibrated one; a 10,000-source
        gallery asks for few). A source not yet calibrated is held to the encoder's prior alone."""
        floor = self.near_floor(far)
        fallback = None
        out = {}
        for name in self.models.keys() if sources is None else set(sources):
            if name in self.models:
                out[name] = max(self.models[name][0].threshold(far), floor)
            else:
                fallback = fallback or pool(self.prior_model("impostor"), None)
                out[name] = max(fallback.threshold(far), floor)
        return out

    def genuine(self, name: str) -> ScoreModel | None:
        return self.models[name][1] if name in self.models else None

    def pair_threshold(self, far: float, observed: ScoreModel | None) -> float:
        """Threshold at ``far`` for two images compared with each other."""
        return pool(self.prior_model("pair_impostor"), observed).threshold(far)
