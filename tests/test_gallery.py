import sqlite3
import threading

import numpy as np
import pytest

from attrib.encoders import get_encoder
from attrib.errors import EncoderMismatch, GalleryError, UnknownSource
from attrib.gallery import Gallery, SampleRecord, leave_one_out_scores, prototypes_of
from attrib.openset import ScoreModel, pool

from .conftest import synthetic


@pytest.fixture(scope="module")
def embedded():
    enc = get_encoder("residual")
    imgs = {s: [synthetic(s, i) for i in range(8)] for s in range(4)}
    return enc, {s: enc.embed(v) for s, v in imgs.items()}


def recs(s, n, offset=0):
    return [SampleRecord(f"sha-{s}-{i + offset}", 64, 64, "PNG", f"src{s}/{i}.png") for i in range(n)]


def test_enroll_identify_verify(tmp_path, embedded):
    enc, emb = embedded
    g = Gallery(tmp_path / "g", encoder=enc)
    for s in range(3):
        g.enroll(f"src{s}", emb[s][:5], recs(s, 5), family="gan")
    assert g.source_names() == ["src0", "src1", "src2"]
    decisions = g.identify(np.concatenate([emb[s][5:] for s in range(3)]), top_k=3)
    truth = [f"src{s}" for s in range(3) for _ in range(3)]
    assert [d.candidates[0]["source"] for d in decisions] == truth
    for d in decisions:
        assert d.margin == pytest.approx(d.candidates[0]["score"] - d.candidates[1]["score"], abs=1e-6)
        assert len(d.candidates) == 3
    # verification: genuine scores beat impostor scores
    gen = g.verify(emb[0][5:], "src0")
    imp = g.verify(emb[1][5:], "src0")
    assert min(r["score"] for r in gen) > max(r["score"] for r in imp)
    assert all(r["far"] == g.far for r in gen)


def test_duplicates_skipped_by_sha(tmp_path, embedded):
    enc, emb = embedded
    g = Gallery(tmp_path / "g", encoder=enc)
    g.enroll("a", emb[0][:3], recs(0, 3))
    r = g.enroll("b", emb[0][:3], recs(0, 3))
    assert r.enrolled == 0 and len(r.duplicates) == 3 and r.duplicates[0]["source"] == "a"
    assert g.stats()["samples"] == 3


def test_crash_half_way_leaves_gallery_unchanged(tmp_path, embedded, monkeypatch):
    enc, emb = embedded
    g = Gallery(tmp_path / "g", encoder=enc)
    g.enroll("a", emb[0][:3], recs(0, 3))
    before = (g.stats(), g.sources())

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(g, "_recalibrate", boom)
    with pytest.raises(KeyboardInterrupt):
        g.enroll("b", emb[1][:3], recs(1, 3))
    monkeypatch.undo()
    g2 = Gallery(tmp_path / "g", create=False)
    assert (g2.stats(), g2.sources()) == before


def test_encoder_mismatch_refused(tmp_path, embedded):
    enc, emb = embedded
    Gallery(tmp_path / "g", encoder=enc).enroll("a", emb[0][:2], recs(0, 2))
    other = get_encoder("residual", tile=16)
    with pytest.raises(EncoderMismatch, match="bound to encoder"):
        Gallery(tmp_path / "g", encoder=other)


def test_missing_gallery_and_source(tmp_path, embedded):
    with pytest.raises(GalleryError, match="no gallery"):
        Gallery(tmp_path / "nope", create=False)
    enc, emb = embedded
    g = Gallery(tmp_path / "g", encoder=enc)
    with pytest.raises(UnknownSource):
        g.verify(emb[0][:1], "ghost")
    with pytest.raises(GalleryError, match="invalid source name"):
        g.enroll("../etc", emb[0][:1], recs(0, 1))


def test_not_a_database(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "gallery.db").write_bytes(b"garbage" * 100)
    with pytest.raises(GalleryError, match="not a readable gallery"):
        Gallery(tmp_path / "g")


def test_index_cache_rebuilt_when_stale(tmp_path, embedded):
    enc, emb = embedded
    g = Gallery(tmp_path / "g", encoder=enc)
    g.enroll("a", emb[0][:3], recs(0, 3))
    g.identify(emb[0][3:4])
    assert (tmp_path / "g" / "index" / "prototypes.faiss").exists()
    reader = Gallery(tmp_path / "g", create=False)
    assert reader.identify(emb[1][:1])[0].candidates[0]["source"] == "a"
    g.enroll("b", emb[1][:3], recs(1, 3))  # another writer moves the gallery on
    assert reader.identify(emb[1][5:6])[0].candidates[0]["source"] == "b"


def test_remove_source(tmp_path, embedded):
    enc, emb = embedded
    g = Gallery(tmp_path / "g", encoder=enc)
    g.enroll("a", emb[0][:3], recs(0, 3))
    g.enroll("b", emb[1][:3], recs(1, 3))
    assert g.remove_source("a") == 3
    assert g.source_names() == ["b"]
    assert g.identify(emb[0][:1])[0].candidates[0]["source"] == "b"


def test_concurrent_writers(tmp_path, embedded):
    enc, emb = embedded
    Gallery(tmp_path / "g", encoder=enc).close()
    errors = []

    def writer(s):
        try:
            g = Gallery(tmp_path / "g", encoder=enc)
            for k in range(4):
                g.enroll(f"src{s}", emb[s][2 * k : 2 * k + 2], recs(s, 2, offset=2 * k))
            g.close()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    g = Gallery(tmp_path / "g", create=False)
    assert g.stats()["samples"] == 32
    assert {s["name"]: s["samples"] for s in g.sources()} == {f"src{s}": 8 for s in range(4)}
    assert sqlite3.connect(g.db_path).execute("pragma integrity_check").fetchone()[0] == "ok"


def test_multi_prototypes_and_loo():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(15, 8)) + np.eye(8)[0] * 5
    b = rng.normal(size=(15, 8)) + np.eye(8)[1] * 5
    emb = np.concatenate([a, b]).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    centres, members = prototypes_of(emb)
    assert len(centres) >= 2 and members.sum() == 30
    assert len(leave_one_out_scores(emb[:1])) == 0
    assert leave_one_out_scores(emb[:15]).mean() > 0.5


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


@pytest.mark.parametrize("name", ["residual", "fp-wccn2"])
@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 7, 3), (3, 300, 3)])
def test_residual_encoder_handles_tiny_images(shape, name):
    enc = get_encoder(name)
    emb = enc.embed([np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)])
    assert np.isfinite(emb).all()


def test_measure_prior_near_impostor_is_the_closest_source():
    from attrib.openset import measure_prior

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


def test_near_impostor_prior_floors_every_threshold(tmp_path, embedded):
    enc, emb = embedded

    plain = Gallery(tmp_path / "a", encoder=enc)
    for s in range(3):
        plain.enroll(f"src{s}", emb[s][:5], recs(s, 5))
    highest = max(plain.thresholds(0.01).values())
    # a near-impostor model (Fisher-z space) whose 1% point lies just above every plain threshold
    near = {"mu": float(np.arctanh(min(highest + 0.03, 0.99))) - 2.3263 * 0.02, "sigma": 0.02, "n": 500.0}

    class WithPrior(type(enc)):  # the same encoder, with a prior that knows about close relatives
        calibration = {"impostor": {"mu": 0.0, "sigma": 0.1, "n": 500.0}, "near_impostor": near}

    floored = Gallery(tmp_path / "b", encoder=WithPrior())
    for s in range(3):
        floored.enroll(f"src{s}", emb[s][:5], recs(s, 5))
    floor = ScoreModel.from_dict(near).threshold(0.01)
    assert floor > highest
    thr = floored.thresholds(0.01)
    assert all(t >= floor - 1e-9 for t in thr.values())
    # the sources list (threshold and expected TAR at it) and identify all use the same thresholds
    listed = {r["name"]: r for r in floored.sources(0.01)}
    assert {k: r["threshold"] for k, r in listed.items()} == pytest.approx(thr, abs=1e-5)
    cal = floored.calibration()
    for name, r in listed.items():
        assert r["expected_tar"] == pytest.approx(cal.genuine(name).tail(thr[name]), abs=1e-4)
    d = floored.identify(emb[0][5:6])[0]
    assert d.threshold == pytest.approx(thr[d.candidates[0]["source"]], abs=1e-6)


def test_residual_optional_groups_leave_the_residual_id_alone_and_read_colour_mixing():
    """coherence / predictor are off in `residual` (its id, and the galleries made with it, stay
    valid) and measure what they claim on residuals with a known relation between channels."""
    from attrib.encoders.residual import _PAIRS, ResidualSpectrumEncoder, _coherence, _pool_bins, _predictor

    plain = ResidualSpectrumEncoder()
    assert "coherence" not in plain.config() and "predictor" not in plain.config()
    assert plain.id == get_encoder("residual").id
    rich = ResidualSpectrumEncoder(tile=64, coherence=1, predictor=1)
    assert rich.config()["coherence"] == 1 and rich.id != ResidualSpectrumEncoder(tile=64).id
    img = np.random.default_rng(1).integers(0, 255, (130, 150, 3), dtype=np.uint8)
    feats = rich.features(img)
    assert feats.shape == (rich.dim,) and rich.dim == sum(rich.groups.values()) and np.isfinite(feats).all()
    with pytest.raises(ValueError):
        ResidualSpectrumEncoder(coherence=2)
    # flat images (a residual of zeros), and a flat centre in a textured image, stay finite
    flat_centre = img.copy()
    flat_centre[1:-1, 1:-1] = 128
    for flat in (np.full((64, 64, 3), 200, np.uint8), flat_centre, np.dstack([img[..., :2], np.zeros((130, 150), np.uint8)])):
        assert np.isfinite(rich.features(flat)).all()

    rng = np.random.default_rng(0)
    red = rng.normal(size=(64, 64)).astype(np.float32)
    # green = red shifted one pixel to the right; blue independent
    r = np.stack([red, np.roll(red, 1, axis=1), rng.normal(size=(64, 64)).astype(np.float32)])
    whole, by_phase = _predictor(r)
    others = [i for i in range(27) if i != 13]  # green's centre is entry 13 (channel 1, row 1, col 1)
    left_of_red = others.index(0 * 9 + 1 * 3 + 0)  # red, middle row, left column
    assert whole[1, left_of_red] == pytest.approx(1, abs=0.02)
    assert np.abs(np.delete(whole[1], left_of_red)).max() < 0.05
    assert np.abs(whole[2]).max() < 0.2  # blue is unpredictable (red and green are collinear: some slack)
    assert by_phase.shape == (4, 3, 26) and np.allclose(by_phase[:, 1, left_of_red], 1, atol=0.05)

    t = r[None]  # one 64 x 64 tile

    def coherence(f):  # tile FFTs -> what the encoder hands _coherence
        cross = np.stack([(f[:, a] * np.conj(f[:, b])).mean(axis=0) for a, b in _PAIRS])
        return _coherence(cross, _pool_bins((np.abs(f) ** 2).mean(axis=0), 4), 4)

    f = np.fft.rfft2(t, axes=(-2, -1))
    same = np.stack([red, red, red])[None]
    fs = np.fft.rfft2(same, axes=(-2, -1))
    re, im = coherence(fs)
    assert np.allclose(re, 1, atol=1e-6) and np.allclose(im, 0, atol=1e-6)
    re, im = coherence(f)
    assert np.abs(im[0]).max() > 0.3  # a shift shows up as a phase between red and green
    assert np.abs(re[1]).max() < 0.5 and np.abs(im[1]).max() < 0.5  # green and blue: unrelated
