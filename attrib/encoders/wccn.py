"""Within-class covariance normalisation (WCCN): the closed-form linear metric of the
``residual-wccn`` encoders and of the fused encoder's texture branch.

Plain numpy on a ``{source: features}`` bank, so fitting an encoder (:mod:`attrib.train`) and
measuring one (``bench/real_folds.py``, per fold) share one implementation.
"""

from __future__ import annotations

import numpy as np


def fit_wccn(bank: dict[str, np.ndarray], reg: float) -> tuple[np.ndarray, np.ndarray]:
    """Within-class covariance normalisation from ``{source: (n, F) features}`` ->
    ``(mean, P)``, with embeddings ``(f - mean) @ P``.

    ``W`` is the covariance of each feature around its own source's mean (pooled over sources);
    ``P = V diag(1 / sqrt(lambda + reg * mean(lambda)))`` from ``W = V diag(lambda) V^T``. The
    ridge keeps directions with almost no within-source variation (where a few training sources
    would otherwise dictate the metric) from dominating."""
    rows = [np.asarray(v, np.float64) for v in bank.values()]
    X = np.concatenate(rows)
    mean = X.mean(axis=0)
    W = np.zeros((X.shape[1], X.shape[1]))
    for r in rows:
        Z = r - r.mean(axis=0)
        W += Z.T @ Z
    W /= len(X)
    lam, V = np.linalg.eigh(W)
    lam = np.clip(lam, 0, None)
    P = V / np.sqrt(lam + reg * lam.mean() + 1e-12)
    return mean.astype(np.float32), P.astype(np.float32)
