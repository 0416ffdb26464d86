"""Evaluation (attrib.evaluate) runs on arrays; these tests hold it to what an on-disk gallery,
enrolled with the same samples, would answer, so the two paths cannot drift apart."""

import numpy as np
import pytest

from attrib import evaluate, openset
from attrib.encoders import Encoder
from attrib.evaluate import Dataset, run_protocol
from attrib.gallery import Gallery, MemoryGallery, SampleRecord


class WithPrior(Encoder):
    """Stands in for an encoder with a calibration prior (near-impostor floor included)."""

    name = "test-prior"
    dim = 12

    @property
    def calibration(self):
        return {"impostor": {"mu": 0.05, "sigma": 0.15, "n": 200.0}, "near_impostor": {"mu": 0.5, "sigma": 0.1, "n": 100.0}}

    def config(self):
        return {"dim": self.dim}

    def _embed_batch(self, images):  # pragma: no cover - never called
        raise NotImplementedError


def dataset(n_src=6, per=30, dim=12):
    """Two-mode clusters per source (so 20+ shots get several prototypes), a few images in two
    folders (same sha256: the gallery keeps the first), float64 as callers may pass."""
    rng = np.random.default_rng(3)
    emb, names, shas = [], [], []
    for s in range(n_src):
        c1, c2 = rng.normal(size=dim), rng.normal(size=dim)
        x = np.concatenate([c1 + 0.8 * rng.normal(size=(per // 2, dim)), c2 + 0.8 * rng.normal(size=(per - per // 2, dim))])
        emb.append(x / np.linalg.norm(x, axis=1, keepdims=True))
        names += [f"s{s}"] * per
        shas += [f"{rng.integers(1 << 60):016x}" for _ in range(per)]
    for i in range(0, per, 3):
        shas[per + i] = shas[i]
    return Dataset(names, [f"p{i}" for i in range(len(names))], shas, np.concatenate(emb))


def on_disk(tmp_path):
    """evaluate._enroll_trial as it used to be: a real Gallery per trial, one enroll per source."""
    counter = iter(range(1000))

    def enroll(ds, encoder, enroll_idx, views=None):
        g = Gallery(tmp_path / f"trial{next(counter)}", encoder=encoder)
        for s, ids in enroll_idx.items():
            in_views = {v: e[ids] for v, e in views.items()} if views else None
            g.enroll(s, ds.embeddings[ids], [SampleRecord(ds.shas[i], origin=ds.paths[i]) for i in ids], views=in_views)
        return g

    return enroll


@pytest.mark.parametrize("pool_size", [openset.IMPOSTOR_POOL, 25])
def test_run_protocol_gives_the_figures_of_a_real_gallery(tmp_path, monkeypatch, pool_size):
    monkeypatch.setattr(openset, "IMPOSTOR_POOL", pool_size)  # 25: the pool draws a subset
    ds, enc = dataset(), WithPrior()
    args = dict(shots=(1, 5, 22), trials=2, max_queries=6, seed=1)
    in_memory = run_protocol(ds, enc, ["s0", "s1", "s2", "s3"], ["s4", "s5"], **args)
    monkeypatch.setattr(evaluate, "_enroll_trial", on_disk(tmp_path))
    assert run_protocol(ds, enc, ["s0", "s1", "s2", "s3"], ["s4", "s5"], **args) == in_memory
    assert in_memory["shots"]["22"]["auroc"] is not None


def test_views_score_each_query_in_its_own_view_as_a_real_gallery_does(tmp_path, monkeypatch):
    """Queries "re-compressed" (a fixed rotation of every embedding) score against prototypes of
    the enrolled samples rotated the same way when they come in the jpeg view: every score is then
    the clean one, and so is every figure; in the plain view attribution falls. The in-memory
    trials answer as on-disk galleries enrolled with the same views."""
    ds, enc = dataset(), WithPrior()
    known, unknown = ["s0", "s1", "s2", "s3"], ["s4", "s5"]
    args = dict(shots=(3, 22), trials=2, max_queries=6, seed=4)
    rotation, _ = np.linalg.qr(np.random.default_rng(9).normal(size=(ds.embeddings.shape[1],) * 2))
    moved = ds.embeddings @ rotation
    clean = run_protocol(ds, enc, known, unknown, **args)
    plain = run_protocol(ds, enc, known, unknown, query_embeddings=moved, **args)["shots"]["3"]
    views = dict(enroll_views={"jpeg": moved}, query_views=["jpeg"] * len(ds.names))
    matched = run_protocol(ds, enc, known, unknown, query_embeddings=moved, **args, **views)
    assert plain["accuracy"] < clean["shots"]["3"]["accuracy"] - 0.2
    for k in ("accuracy", "auroc", "tar"):  # the same cosines: the same figures
        assert matched["shots"]["3"][k] == pytest.approx(clean["shots"]["3"][k], abs=1e-3)
    # mixed views: clean queries in the plain view, moved ones in the jpeg view
    mixed_q = np.where((np.arange(len(ds.names)) % 2 == 0)[:, None], ds.embeddings, moved)
    mixed = dict(enroll_views={"jpeg": moved}, query_views=[None if i % 2 == 0 else "jpeg" for i in range(len(ds.names))])
    in_memory = run_protocol(ds, enc, known, unknown, query_embeddings=mixed_q, rejects=["s5"], **args, **mixed)
    assert in_memory["shots"]["3"]["accuracy"] == pytest.approx(clean["shots"]["3"]["accuracy"], abs=1e-3)
    # the view's own calibration: shots noisier in the view than as they are
    noisy = moved + 0.3 * np.random.default_rng(1).normal(size=moved.shape)
    mixed["enroll_views"] = {"jpeg": noisy / np.linalg.norm(noisy, axis=1, keepdims=True)}
    in_memory = run_protocol(ds, enc, known, unknown, query_embeddings=mixed_q, rejects=["s5"], **args, **mixed)
    monkeypatch.setattr(evaluate, "_enroll_trial", on_disk(tmp_path))
    assert run_protocol(ds, enc, known, unknown, query_embeddings=mixed_q, rejects=["s5"], **args, **mixed) == in_memory
    with pytest.raises(Exception, match="query views"):
        run_protocol(ds, enc, known, unknown, query_views=["jpeg"], **args)


def test_memory_gallery_answers_as_a_gallery(tmp_path):
    ds, enc = dataset(), WithPrior()
    names = np.array(ds.names)
    batches = [
        (s, ds.embeddings[np.flatnonzero(names == s)[:22]], [ds.shas[i] for i in np.flatnonzero(names == s)[:22]])
        for s in ("s1", "s0", "s2")
    ]
    mem = MemoryGallery.enroll(batches, enc.calibration)
    g = Gallery(tmp_path / "g", encoder=enc)
    for s, emb, shas in batches:
        g.enroll(s, emb, [SampleRecord(h) for h in shas])
    assert mem.source_names() == g.source_names()
    assert g.stats()["samples"] < 3 * 22  # duplicates were skipped on both sides
    assert mem.thresholds(0.05) == g.thresholds(0.05)
    queries = ds.embeddings[names == "s3"][:5].tolist() + ds.embeddings[names == "s0"][25:].tolist()
    assert mem.source_scores(np.array(queries), 0) == g.source_scores(np.array(queries), 0)
    assert [d.to_dict() for d in mem.identify(np.array(queries), top_k=3)] == [d.to_dict() for d in g.identify(np.array(queries), top_k=3)]


def test_queries_can_be_embedded_apart_from_enrollment_and_rejects_counted_apart():
    ds, enc = dataset(), WithPrior()
    known, unknown = ["s0", "s1", "s2"], ["s3", "s4"]
    args = dict(shots=(5,), trials=2, max_queries=6, seed=2)
    base = run_protocol(ds, enc, known, unknown, **args)
    assert run_protocol(ds, enc, known, unknown, query_embeddings=ds.embeddings.copy(), **args) == base
    # queries replaced by noise: attribution falls to chance, enrollment untouched
    noise = np.random.default_rng(0).normal(size=ds.embeddings.shape)
    noisy = run_protocol(ds, enc, known, unknown, query_embeddings=noise / np.linalg.norm(noise, axis=1, keepdims=True), **args)
    assert noisy["shots"]["5"]["accuracy"] < base["shots"]["5"]["accuracy"] - 0.3
    # "s5" queried only to be rejected: its images are copies of s0's, so the gallery accepts most
    names = ["s5" if n == "s5" else n for n in ds.names]
    emb = ds.embeddings.copy()
    emb[np.array(names) == "s5"] = ds.embeddings[np.array(names) == "s0"]
    copied = Dataset(names, ds.paths, ds.shas, emb)
    res = run_protocol(copied, enc, known, unknown, rejects=["s5"], **args)["shots"]["5"]
    far = run_protocol(ds, enc, known, unknown, rejects=["s5"], **args)["shots"]["5"]
    assert res["attributed"] > far["attributed"] + 0.3 and far["attributed"] < 0.2
    assert far["accuracy"] == base["shots"]["5"]["accuracy"]
    with pytest.raises(Exception, match="query_embeddings"):
        run_protocol(ds, enc, known, unknown, query_embeddings=ds.embeddings[:5], **args)


def test_a_reference_source_is_enrolled_whole_and_never_queried():
    """``references`` (a camera class beside K-shot generators): enrolled in every trial with all of
    its images, never queried; rejects like it are named after it instead of counted attributed."""
    ds, enc = dataset(), WithPrior()
    names = np.array(ds.names, dtype=object)
    s5 = np.flatnonzero(names == "s5")
    names[s5[::2]] = "camera"  # half of s5's images build the reference, the rest are queried as rejects
    ref = Dataset(list(names), ds.paths, ds.shas, ds.embeddings)
    known, unknown = ["s0", "s1", "s2"], ["s3"]
    args = dict(shots=(5,), trials=2, max_queries=6, seed=2, rejects=["s5"])
    details = []
    res = run_protocol(ref, enc, known, unknown, references=["camera"], details=details, **args)["shots"]["5"]
    plain = run_protocol(ref, enc, known, unknown, **args)["shots"]["5"]
    assert all(d.enrolled["camera"] == len(s5[::2]) and d.enrolled["s0"] == 5 for d in details)
    assert all("camera" not in d.known.truth + d.unknown.truth for d in details)
    assert res["named_reference"] > 0.3 > res["attributed"] and res["attributed"] <= plain["attributed"]
    assert res["known_named_reference"] < 0.2 and res["unknown_named_reference"] < 0.2
    assert "camera" not in res["per_source"] and "named_reference" not in plain
