"""Attribution metrics: closed-set accuracy, open-set AUROC, OSCR, verification EER."""

from __future__ import annotations

import numpy as np


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count half."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not len(pos) or not len(neg):
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    # average ranks for ties
    i = 0
    r = np.arange(1, len(allv) + 1, dtype=float)
    while i < len(sorted_v):
        j = i
        while j + 1 < len(sorted_v) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        r[i : j + 1] = (i + j + 2) / 2.0
        i = j + 1
    ranks[order] = r
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def eer(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Equal error rate: where the false-accept rate equals the false-reject rate."""
    genuine, impostor = np.asarray(genuine, float), np.asarray(impostor, float)
    if not len(genuine) or not len(impostor):
        return float("nan")
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    g = np.sort(genuine)
    im = np.sort(impostor)
    frr = np.searchsorted(g, thresholds, side="left") / len(g)  # genuine below threshold
    far = 1.0 - np.searchsorted(im, thresholds, side="left") / len(im)  # impostors at/above
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2.0)


def oscr(known_scores: np.ndarray, known_correct: np.ndarray, unknown_scores: np.ndarray) -> float:
    """Open-set classification rate (Dhamija et al. 2018): area under the curve of correct
    classification rate of knowns vs false-positive rate of unknowns, as the threshold sweeps."""
    ks, kc, us = np.asarray(known_scores, float), np.asarray(known_correct, bool), np.asarray(unknown_scores, float)
    if not len(ks) or not len(us):
        return float("nan")
    thresholds = np.unique(np.concatenate([ks, us, [np.inf]]))[::-1]
    ccr = np.array([(kc & (ks >= t)).sum() / len(ks) for t in thresholds])
    fpr = np.array([(us >= t).sum() / len(us) for t in thresholds])
    ccr = np.concatenate([ccr, [kc.mean()]])
    fpr = np.concatenate([fpr, [1.0]])
    return float(np.trapezoid(ccr, fpr) if hasattr(np, "trapezoid") else np.trapz(ccr, fpr))
