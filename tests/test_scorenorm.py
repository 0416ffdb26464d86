"""Cohort score normalisation (t-norm): the statistics, where the gallery applies them, and what they are for."""

import numpy as np
import pytest

from attrib import openset
from attrib.encoders.base import Encoder, l2_normalize
from attrib.errors import EncoderError
from attrib.gallery import Gallery
from attrib.gallery.memory import MemoryGallery
from attrib.scorenorm import ScoreNorm


def _unit(rng, n, dim=24, centre=None, spread=1.0):
    x = rng.normal(size=(n, dim)) * spread
    return l2_normalize(x if centre is None else centre + x)


def test_full_rank_statistics_are_the_cohort_scores_mean_and_deviation():
    rng = np.random.default_rng(0)
    cohort = _unit(rng, 40, 16)
    norm = ScoreNorm.from_cohort(cohort, rank=16)
    queries = _unit(rng, 5, 16)
    offset, spread = norm.stats(queries)
    assert offset.shape == spread.shape == (5, 1)  # one column per cohort
    offset, spread = offset[:, 0], spread[:, 0]
    scores = queries @ cohort.T
    assert offset == pytest.approx(scores.mean(axis=1), abs=1e-5)
    assert spread == pytest.approx(scores.std(axis=1), abs=1e-5)
    raw = rng.uniform(-1, 1, size=(5, 3))
    z = (raw - scores.mean(axis=1)[:, None]) / scores.std(axis=1)[:, None]
    assert norm.normalise(raw, queries) == pytest.approx(np.tanh(z / norm.scale), abs=1e-5)


def test_low_rank_keeps_order_per_query_and_round_trips_through_weights():
    rng = np.random.default_rng(1)
    norm = ScoreNorm.from_cohort(_unit(rng, 200, 64), rank=4)
    queries = _unit(rng, 6, 64)
    raw = rng.uniform(-1, 1, size=(6, 9))
    out = norm.normalise(raw, queries)
    assert (np.argsort(out, axis=1) == np.argsort(raw, axis=1)).all()
    assert np.abs(out).max() < 1
    again = ScoreNorm.from_weights(norm.weights(), norm.config())
    assert again.normalise(raw, queries) == pytest.approx(out, abs=1e-6)
    assert ScoreNorm.from_weights({"other": np.zeros(1)}, None) is None
    partial = {k: v for k, v in norm.weights().items() if not k.endswith("rest")}
    with pytest.raises(EncoderError, match="lack score_norm.rest"):
        ScoreNorm.from_weights(partial, None)


def test_several_cohorts_keep_each_querys_least_z_score_and_round_trip():
    rng = np.random.default_rng(3)
    a, b = _unit(rng, 120, 32), _unit(rng, 80, 32, rng.normal(size=32) * 3)
    both = ScoreNorm.from_cohorts({"real": a, "zoo": b}, rank=4)
    one_a, one_b = ScoreNorm.from_cohort(a, rank=4), ScoreNorm.from_cohort(b, rank=4)
    queries = _unit(rng, 7, 32)
    raw = rng.uniform(-1, 1, size=(7, 5))
    out = both.normalise(raw, queries)
    assert out == pytest.approx(np.minimum(one_a.normalise(raw, queries), one_b.normalise(raw, queries)), abs=1e-6)
    assert (np.argsort(out, axis=1, kind="stable") == np.argsort(raw, axis=1, kind="stable")).all()  # closed-set answer unchanged
    assert both.normalise(raw, queries, both.stats(queries)) == pytest.approx(out, abs=1e-7)
    weights, config = both.weights(), both.config()
    assert weights["score_norm.mean"].shape == (2, 32) and config["cohorts"] == ["real", "zoo"]
    again = ScoreNorm.from_weights(weights, config)
    assert again.names == ["real", "zoo"] and again.normalise(raw, queries) == pytest.approx(out, abs=1e-6)
    # one cohort keeps the unstacked layout fp-joint2 shipped with
    assert one_a.weights()["score_norm.mean"].shape == (32,) and "cohorts" not in one_a.config()
    broken = dict(weights, **{"score_norm.rest": np.ones(3, np.float32)})
    with pytest.raises(EncoderError, match="not as many"):
        ScoreNorm.from_weights(broken, config)


def _world(seed=2, dim=24):
    """Two enrolled sources, genuine queries of each, and 'generic' images: queries near the
    cohort's centre, which score fairly high against every source without belonging to any."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=dim) * 2.2
    cohort = _unit(rng, 300, dim, centre)
    dirs = {s: rng.normal(size=dim) * 2.0 for s in ("a", "b")}
    samples = {s: _unit(rng, 8, dim, centre + d, 0.7) for s, d in dirs.items()}
    genuine = {s: _unit(rng, 30, dim, centre + d, 0.7) for s, d in dirs.items()}
    generic = _unit(rng, 60, dim, centre * 1.6, 0.6)
    return cohort, samples, genuine, generic


def test_normalised_gallery_scores_are_the_normalised_raw_scores():
    cohort, samples, genuine, _ = _world()
    norm = ScoreNorm.from_cohort(cohort, rank=4)
    batches = [(s, e, [f"{s}{i}" for i in range(len(e))]) for s, e in samples.items()]
    raw_g = MemoryGallery.enroll(batches, None)
    norm_g = MemoryGallery.enroll(batches, None, norm=norm)
    q = genuine["a"][:5]
    raw = raw_g.source_scores(q, top_k=2)
    normed = norm_g.source_scores(q, top_k=2)
    for r, n, query in zip(raw, normed, q):
        assert [s for s, _ in r] == [s for s, _ in n]  # same ranking
        want = norm.normalise(np.array([[v for _, v in r]]), query[None])[0]
        assert [v for _, v in n] == pytest.approx(want, abs=1e-5)
    # the calibration models are measured on normalised scores too
    pool = np.concatenate(list(samples.values()))
    owners = [s for s, e in samples.items() for _ in e]
    protos = np.stack([l2_normalize(e.mean(axis=0)) for e in samples.values()])
    imp = openset.impostor_models(pool, owners, protos, ["a", "b"], norm)["a"]
    want = openset.ScoreModel.from_scores(norm.normalise((samples["b"] @ protos[0])[:, None], samples["b"])[:, 0])
    assert (imp.mu, imp.sigma) == pytest.approx((want.mu, want.sigma), abs=1e-5)


def _rates(gallery, genuine, generic):
    known = np.concatenate(list(genuine.values()))
    truth = [s for s, e in genuine.items() for _ in e]
    right = np.mean([d.source == t for d, t in zip(gallery.identify(known, top_k=1), truth)])
    taken = np.mean([d.source is not None for d in gallery.identify(generic, top_k=1)])
    return right, taken


def test_normalisation_rejects_generic_images_that_raw_cosines_accept():
    """What t-norm is for: a query that scores high against everything is held to its own
    cohort scores, so it is no longer taken for a source, while genuine queries still are."""
    cohort, samples, genuine, generic = _world()
    norm = ScoreNorm.from_cohort(cohort, rank=4)
    batches = [(s, e, [f"{s}{i}" for i in range(len(e))]) for s, e in samples.items()]
    prior_raw = openset.measure_prior(
        np.concatenate(list(genuine.values())), [s for s, e in genuine.items() for _ in e], 5, np.random.default_rng(0)
    )
    right_raw, taken_raw = _rates(MemoryGallery.enroll(batches, prior_raw), genuine, generic)
    prior = openset.measure_prior(
        np.concatenate(list(genuine.values())), [s for s, e in genuine.items() for _ in e], 5, np.random.default_rng(0), norm=norm
    )
    right, taken = _rates(MemoryGallery.enroll(batches, prior, norm=norm), genuine, generic)
    assert taken_raw > 0.3 and taken < taken_raw / 3
    assert right > 0.8 * right_raw


class _NormEncoder(Encoder):
    """An encoder the test hands embeddings for directly; it carries a score normalisation."""

    name, dim = "norm-test", 24

    def __init__(self, norm):
        self.score_norm = norm

    def _embed_batch(self, images):
        raise NotImplementedError


def test_on_disk_gallery_and_memory_gallery_agree_with_normalisation(tmp_path):
    from attrib.gallery.store import SampleRecord

    cohort, samples, genuine, _ = _world()
    norm = ScoreNorm.from_cohort(cohort, rank=4)
    g = Gallery(tmp_path / "g", encoder=_NormEncoder(norm))
    for s, e in samples.items():
        g.enroll(s, e, [SampleRecord(sha256=f"{s}{i}", origin=f"{s}{i}.png") for i in range(len(e))])
    mem = MemoryGallery.enroll([(s, e, [f"{s}{i}" for i in range(len(e))]) for s, e in samples.items()], None, norm=norm)
    q = np.concatenate([genuine["a"][:3], genuine["b"][:3]])
    assert [[(s, round(v, 5)) for s, v in c] for c in g.source_scores(q, 2)] == [
        [(s, round(v, 5)) for s, v in c] for c in mem.source_scores(q, 2)
    ]
    assert g.thresholds(0.01) == pytest.approx(mem.thresholds(0.01), abs=1e-5)
    v = g.verify(q[:1], "a")[0]
    assert v["score"] == pytest.approx(mem.source_scores(q[:1], 2)[0][0][1], abs=1e-5)


def test_tree_gallery_normalises_inner_nodes_the_same_on_disk_and_in_memory(tmp_path):
    """Lineage's inner nodes are scored and calibrated through the same normalisation."""
    from attrib.gallery.lineage import Tree
    from attrib.gallery.store import SampleRecord

    cohort, samples, genuine, generic = _world()
    norm = ScoreNorm.from_cohort(cohort, rank=4)
    g = Gallery(tmp_path / "g", encoder=_NormEncoder(norm))
    g.add_node("line", family="diffusion")
    for s, e in samples.items():
        g.enroll(s, e, [SampleRecord(sha256=f"{s}{i}") for i in range(len(e))], parent="line")
    tree = Tree({"line": None, "a": "line", "b": "line"}, {"line": "diffusion", "a": "diffusion", "b": "diffusion"})
    batches = [(s, e, [f"{s}{i}" for i in range(len(e))]) for s, e in samples.items()]
    mem = MemoryGallery.enroll(batches, None, tree=tree, norm=norm)
    q = np.concatenate([genuine["a"][:4], generic[:4]])
    disk, memory = g.identify(q, top_k=2), mem.identify(q, top_k=2)
    assert [(d.source, d.lineage) for d in disk] == [(d.source, d.lineage) for d in memory]
    assert [d.score for d in disk] == pytest.approx([d.score for d in memory], abs=1e-5)
    assert np.abs([d.score for d in disk]).max() < 1  # normalised scores, inner nodes included
    v = g.verify(q[:1], "line")[0]
    assert -1 < v["score"] < 1 and v["threshold"] == pytest.approx(g.thresholds(sources=["line"])["line"], abs=1e-5)


def test_batch_snapshot_carries_the_normalisation_and_the_tree(tmp_path):
    """attrib batch's workers answer from a snapshot: with an encoder that normalises scores and a
    gallery with a tree, its answers are the gallery's."""
    import pickle

    from attrib.gallery.snapshot import GallerySnapshot
    from attrib.gallery.store import SampleRecord

    cohort, samples, genuine, generic = _world()
    # two cohorts, as the default encoder (fp-joint4, like fp-joint3) has: the snapshot carries both
    norm = ScoreNorm.from_cohorts({"real": cohort, "other": _unit(np.random.default_rng(9), 80, 24)}, rank=4)
    g = Gallery(tmp_path / "g", encoder=_NormEncoder(norm))
    g.add_node("line", family="diffusion")
    for s, e in samples.items():
        g.enroll(s, e, [SampleRecord(sha256=f"{s}{i}") for i in range(len(e))], parent="line")
    snap = pickle.loads(pickle.dumps(GallerySnapshot.from_gallery(g)))
    q = np.concatenate([genuine["a"][:4], genuine["b"][:2], generic[:4]])
    for far in (None, 0.2):
        assert [d.to_dict() for d in snap.gallery().identify(q, top_k=2, far=far)] == [d.to_dict() for d in g.identify(q, top_k=2, far=far)]
