import json
import sqlite3
import threading

import numpy as np
import pytest

from attrib.encoders import get_encoder
from attrib.errors import EncoderMismatch, GalleryError, UnknownSource
from attrib.gallery import Gallery, SampleRecord, prototypes_of
from attrib.openset import ScoreModel

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


def test_multi_prototypes():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(15, 8)) + np.eye(8)[0] * 5
    b = rng.normal(size=(15, 8)) + np.eye(8)[1] * 5
    emb = np.concatenate([a, b]).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    centres, members = prototypes_of(emb)
    assert len(centres) >= 2 and members.sum() == 30
    assert len(prototypes_of(emb[:5])[0]) == 1


def _older_gallery(path, enc, emb):
    """A gallery as the first schema left it: only m001 applied, rows written by hand."""
    import sqlite_utils

    from attrib.gallery import schema, to_blob

    path.mkdir()
    db = sqlite_utils.Database(path / "gallery.db")
    schema.migrations.apply(db, stop_before=schema.STEPS[1])
    settings = {"encoder_id": enc.id, "encoder_spec": enc.name, "dim": enc.dim, "far": 0.01, "generation": 1}
    db["settings"].insert_all([{"key": k, "value": json.dumps(v)} for k, v in settings.items()])
    db["sources"].insert({"name": "a", "family": "gan", "metadata": "{}", "created_at": "t", "updated_at": "t"})
    db["samples"].insert_all(
        [
            {
                "source": "a",
                "sha256": f"sha{i}",
                "embedding": to_blob(e),
                "width": 64,
                "height": 64,
                "format": "PNG",
                "origin": f"{i}.png",
                "added_at": "t",
            }
            for i, e in enumerate(emb)
        ]
    )
    db["prototypes"].insert({"source": "a", "idx": 0, "embedding": to_blob(prototypes_of(emb)[0][0]), "members": len(emb)})
    db.close()


def test_older_schema_is_upgraded_with_its_data(tmp_path, embedded):
    from attrib.gallery import SCHEMA_VERSION, schema

    enc, emb = embedded
    _older_gallery(tmp_path / "g", enc, emb[0][:4])
    g = Gallery(tmp_path / "g", create=False)
    assert g.schema_version == SCHEMA_VERSION == len(schema.STEPS) and SCHEMA_VERSION > 1
    assert [s["name"] for s in g.sources()] == ["a"] and g.stats()["samples"] == 4
    assert np.array_equal(g.store.source_embeddings("a"), emb[0][:4])
    assert g.identify(emb[0][4:5])[0].candidates[0]["source"] == "a"
    # the step it lacked is usable: rejected queries can be kept
    d = g.identify(emb[1][:1], far=1e-9)
    assert g.keep_rejected(emb[1][:1], recs(1, 1), d) == 1 and g.stats()["rejected"] == 1


def test_gallery_of_a_newer_attrib_is_refused_untouched(tmp_path, embedded):
    enc, emb = embedded
    g = Gallery(tmp_path / "g", encoder=enc)
    g.enroll("a", emb[0][:3], recs(0, 3))
    g.close()
    db = sqlite3.connect(tmp_path / "g" / "gallery.db")
    with db:
        db.execute("insert into _sqlite_migrations (migration_set, name, applied_at) values ('attrib.gallery', 'm999_future', 'later')")
    db.close()
    db_file = tmp_path / "g" / "gallery.db"
    before = (db_file.read_bytes(), list(sqlite3.connect(db_file).iterdump()))
    with pytest.raises(GalleryError, match=r"written by a newer attrib \(schema steps \['m999_future'\]\); upgrade attrib") as exc:
        Gallery(tmp_path / "g", create=False)
    assert "\n" not in str(exc.value)
    assert (db_file.read_bytes(), list(sqlite3.connect(db_file).iterdump())) == before
