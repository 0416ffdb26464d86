"""Open-set calibration maths (attrib.openset), called directly on arrays: no gallery, no database."""

import numpy as np
import pytest

from attrib.openset import (
    Calibration,
    ScoreModel,
    decide,
    fisher_z,
    genuine_model,
    impostor_models,
    impostor_pool,
    leave_one_out_scores,
    measure_prior,
    pair_models,
    pool,
)


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_score_model_pooling():
    prior = ScoreModel(0.2, 0.1, 30)
    obs = ScoreModel.from_scores(np.array([0.5, 0.6, 0.55]))
    pooled = pool(prior, obs)
    assert prior.mu < pooled.mu < obs.mu
    assert pooled.threshold(0.01) > pooled.threshold(0.1)
    assert pool(None, None).threshold(0.01) > 0.5
    assert ScoreModel(0, 1, 1).tail(ScoreModel(0, 1, 1).threshold(0.05)) == pytest.approx(0.05)


def test_thresholds_stay_in_cosine_range():
    wide = ScoreModel.from_scores(np.array([0.2, 0.5, 0.9, 0.95, 0.3]))
    assert -1 < wide.threshold(1e-6) < 1
    assert wide.tail(wide.threshold(0.01)) == pytest.approx(0.01, rel=1e-6)


def test_leave_one_out_scores():
    rng = np.random.default_rng(0)
    emb = unit(rng.normal(size=(15, 8)) + np.eye(8)[0] * 5)
    assert len(leave_one_out_scores(emb[:1])) == 0 and genuine_model(emb[:1]) is None
    scores = leave_one_out_scores(emb)
    others = unit(np.stack([np.delete(emb, i, axis=0).sum(axis=0) for i in range(len(emb))]))
    assert scores == pytest.approx((emb * others).sum(axis=1), abs=1e-6)
    assert scores.mean() > 0.5
    assert genuine_model(emb) == ScoreModel.from_scores(scores)


def test_measure_prior_near_impostor_is_the_closest_source():
    rng = np.random.default_rng(0)
    centre = {s: rng.normal(size=16) for s in ("a", "b", "far1", "far2")}
    centre["b"] = centre["a"] + 0.3 * rng.normal(size=16)  # b is a close relative of a
    emb, names = [], []
    for s, c in centre.items():
        x = c + 0.5 * rng.normal(size=(20, 16))
        emb.append(x / np.linalg.norm(x, axis=1, keepdims=True))
        names += [s] * 20
    prior = measure_prior(np.concatenate(emb).astype(np.float32), names, 5, rng)
    near, imp = ScoreModel.from_dict(prior["near_impostor"]), ScoreModel.from_dict(prior["impostor"])
    assert near.n == 4 * 20  # one closest source per source
    assert near.mu > imp.mu + 0.1  # relatives score far above the average stranger
    assert near.threshold(0.01) > imp.threshold(0.01)


def test_impostor_models_match_a_direct_computation():
    """Each source's impostors are the pool samples of other sources scored against its best
    prototype, modelled in Fisher-z space; the blocked, summed computation gives the same model."""
    rng = np.random.default_rng(1)
    pool_emb = unit(rng.normal(size=(40, 6)))
    pool_src = [f"s{i % 3}" for i in range(40)]
    protos = unit(rng.normal(size=(5, 6)))
    proto_src = ["s0", "s0", "s1", "s2", "s2"]  # grouped by source, sources sorted
    models = impostor_models(pool_emb, pool_src, protos, proto_src)
    assert sorted(models) == ["s0", "s1", "s2"]
    for name in models:
        mine = [i for i, s in enumerate(proto_src) if s == name]
        others = [i for i, s in enumerate(pool_src) if s != name]
        direct = ScoreModel.from_scores((pool_emb[others] @ protos[mine].T).max(axis=1))
        assert models[name].n == direct.n == len(others)
        assert models[name].mu == pytest.approx(direct.mu, abs=1e-6)
        assert models[name].sigma == pytest.approx(direct.sigma, abs=1e-5)
    # a source alone in the pool has no impostor evidence
    assert impostor_models(pool_emb[:1], ["s0"], protos[:1], ["s0"]) == {"s0": None}


def test_pair_models_and_impostor_pool():
    emb = unit(np.eye(4)[[0, 0, 1, 1]] + 0.01)
    imp, gen = pair_models(emb, ["a", "a", "b", "b"])
    assert gen.mu > imp.mu and imp.n == 8 and gen.n == 4
    assert pair_models(emb[:1], ["a"]) == (None, None)
    assert impostor_pool(["c", "a", "d", "b"], limit=2).tolist() == [1, 3]  # first by sha256


def test_calibration_pools_with_the_prior_and_floors_at_the_near_impostor():
    observed = {"a": (ScoreModel(0.1, 0.05, 20), ScoreModel(1.0, 0.2, 5)), "b": (None, None)}
    prior = {"impostor": {"mu": 0.3, "sigma": 0.1, "n": 100}}
    cal = Calibration(observed, prior)
    far = 0.01
    thr = cal.thresholds(far)
    assert thr["a"] == pytest.approx(pool(ScoreModel(0.3, 0.1, 100), ScoreModel(0.1, 0.05, 20)).threshold(far))
    assert thr["b"] == pytest.approx(ScoreModel(0.3, 0.1, 100).threshold(far))  # prior alone
    assert cal.thresholds(far, sources=["new"]) == {"new": thr["b"]}  # not calibrated yet: prior alone
    assert cal.genuine("a").mu == 1.0 and cal.genuine("b") is None and cal.genuine("new") is None
    assert cal.near_floor(far) == -1.0
    near = {"mu": float(fisher_z(0.9)), "sigma": 0.01, "n": 50}
    floored = Calibration(observed, {**prior, "near_impostor": near})
    assert all(t == pytest.approx(ScoreModel.from_dict(near).threshold(far)) for t in floored.thresholds(far).values())
    # without prior or evidence, the conservative default
    assert Calibration({"a": (None, None)}, None).thresholds(far)["a"] == pytest.approx(pool(None, None).threshold(far))


def test_decide_reports_score_threshold_and_margin():
    d = decide([("a", 0.8), ("b", 0.5)], {"a": 0.7}, 0.01)
    assert (d.source, d.threshold, d.margin) == ("a", 0.7, pytest.approx(0.3))
    assert decide([("a", 0.6)], {"a": 0.7}, 0.01).source is None
    assert decide([], {}, 0.01).candidates == []
