"""Views (attrib.views): each sample enrolled also re-saved as JPEG, each query scored in the view
of its own file, the same in the on-disk gallery, its snapshot, the CLI and the service."""

import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from attrib import views
from attrib.cli import build_cli
from attrib.encoders import get_encoder
from attrib.errors import GalleryError
from attrib.gallery import Gallery, SampleRecord
from attrib.gallery.snapshot import GallerySnapshot
from attrib.imageio import load_image

from .conftest import PATTERN_ENCODER, synthetic, write_png


def jpeg_bytes(arr, quality, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("quality", [10, 35, 50, 75, 90, 95, 100])
def test_jpeg_quality_is_read_from_the_quantisation_tables(quality):
    data = jpeg_bytes(synthetic(1, 0), quality)
    with Image.open(io.BytesIO(data)) as img:
        assert views.jpeg_quality(img) == quality
    assert load_image(data).jpeg_quality == quality
    # every JPEG query is scored in the jpeg view; only a sample at <= 90 stands there as it is
    assert load_image(data).view == "jpeg"
    assert load_image(data).stands_in == ("jpeg" if quality <= 90 else None)


def test_lossless_files_and_arrays_are_in_the_plain_view(tmp_path):
    arr = synthetic(2, 1)
    png = write_png(tmp_path / "a.png", arr)
    assert load_image(png).jpeg_quality is None and load_image(png).view is None
    assert load_image(arr).view is None
    assert views.view_of(None) is None and views.view_of(95) == views.view_of(100) == views.view_of(10) == "jpeg"
    assert views.stands_in(None) is None and views.stands_in(91) is None and views.stands_in(90) == "jpeg"
    assert load_image(png).stands_in is None
    # a JPEG with non-IJG tables (subsampling off, another encoder's tables) still gets an estimate
    data = jpeg_bytes(arr, 80, subsampling=0, qtables="web_low")
    assert load_image(data).jpeg_quality is not None


def test_resave_is_a_jpeg_round_trip_and_by_view_keeps_order():
    arr = synthetic(3, 2)
    out = views.resave(arr)
    assert out.shape == arr.shape and out.dtype == np.uint8 and not np.array_equal(out, arr)
    assert np.array_equal(out, views.resave(arr))  # deterministic
    assert np.array_equal(views.view_images([arr], "jpeg")[0], out)
    with pytest.raises(ValueError, match="unknown view"):
        views.view_images([arr], "webp")
    got = views.by_view(["jpeg", None, "jpeg", None], 4, lambda v, rows: [(v, int(r)) for r in rows])
    assert got == [("jpeg", 0), (None, 1), ("jpeg", 2), (None, 3)]
    assert views.by_view(None, 2, lambda v, rows: [v] * len(rows)) == [None, None]
    with pytest.raises(ValueError):
        views.by_view(["jpeg"], 2, lambda v, rows: list(rows))


def same(a, b):
    """Decisions alike: the same sources in the same order, scores to 1e-5 (a rotation rounds)."""
    a, b = [d.to_dict() for d in a], [d.to_dict() for d in b]
    assert [(d["source"], [c["source"] for c in d["candidates"]]) for d in a] == [
        (d["source"], [c["source"] for c in d["candidates"]]) for d in b
    ]
    assert [c["score"] for d in a for c in d["candidates"]] == pytest.approx([c["score"] for d in b for c in d["candidates"]], abs=1e-5)
    return True


def _rotated(emb, seed=5):
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(emb.shape[1],) * 2))
    return (emb @ rotation).astype(np.float32)


@pytest.fixture(scope="module")
def embedded():
    enc = get_encoder("residual")
    return enc, {s: enc.embed([synthetic(s, i) for i in range(8)]) for s in range(3)}


def recs(s, n):
    return [SampleRecord(f"sha-{s}-{i}", 64, 64, "PNG", f"src{s}/{i}.png") for i in range(n)]


def test_gallery_scores_each_query_in_its_view(tmp_path, embedded):
    """The jpeg view holds "re-compressed" embeddings (a rotation of the plain ones): queries in it
    are named as clean queries are in the plain view; the same queries in the plain view are not."""
    enc, emb = embedded
    g = Gallery(tmp_path / "g", encoder=enc)
    for s in range(3):
        g.enroll(f"src{s}", emb[s][:5], recs(s, 5), views={"jpeg": _rotated(emb[s][:5])})
    assert g.store.views() == ["jpeg"] and g.store.count("sample_views") == 15
    queries = np.concatenate([emb[s][5:] for s in range(3)])
    moved = _rotated(queries)
    truth = [f"src{s}" for s in range(3) for _ in range(3)]
    clean = g.identify(queries, top_k=3)
    assert [d.source for d in clean] == truth
    assert same(g.identify(moved, top_k=3, views=["jpeg"] * 9), clean)
    assert [d.source for d in g.identify(moved, top_k=3)] != truth  # in the plain view they are lost
    got, want = g.verify(moved, "src1", views=["jpeg"] * 9), g.verify(queries, "src1")
    assert [v["accepted"] for v in got] == [v["accepted"] for v in want]
    assert [v["score"] for v in got] == pytest.approx([v["score"] for v in want], abs=1e-5)
    # mixed: each query in its own view, answers in the order asked
    mixed = np.where((np.arange(9) % 2 == 0)[:, None], queries, moved)
    mixed_views = [None if i % 2 == 0 else "jpeg" for i in range(9)]
    assert same(g.identify(mixed, top_k=3, views=mixed_views), clean)
    # the snapshot (batch runs) answers as the gallery
    snap = GallerySnapshot.from_gallery(g).gallery()
    assert same(snap.identify(mixed, top_k=3, views=mixed_views), clean)
    # the index of each view is cached on disk beside the plain one
    assert (tmp_path / "g" / "index" / "prototypes-jpeg.faiss").exists()


def test_sources_without_views_answer_in_the_view_by_their_plain_prototypes(tmp_path, embedded):
    enc, emb = embedded
    g = Gallery(tmp_path / "g", encoder=enc)
    g.enroll("src0", emb[0][:5], recs(0, 5))  # enrolled as before views (or by a caller without them)
    g.enroll("src1", emb[1][:5], recs(1, 5), views={"jpeg": emb[1][:5]})
    plain = g.prototype_index(None)
    in_view = g.prototype_index("jpeg")
    assert sorted(set(in_view.labels)) == ["src0", "src1"] and len(in_view) == len(plain)
    q = emb[0][5:]
    assert [d.to_dict() for d in g.identify(q, views=["jpeg"] * 3)] == [d.to_dict() for d in g.identify(q)]
    # removing a source removes its views; a bad view or a view of the wrong size is refused whole
    g.remove_source("src1")
    assert g.store.count("sample_views") == 0 and g.store.count("view_prototypes") == 0
    with pytest.raises(GalleryError, match="unknown view"):
        g.enroll("src2", emb[2][:2], recs(2, 2), views={"webp": emb[2][:2]})
    with pytest.raises(ValueError, match="one record per embedding"):
        g.enroll("src2", emb[2][:2], recs(2, 2), views={"jpeg": emb[2][:1]})
    assert not g.has_source("src2")


def test_cli_enrolls_views_and_routes_jpeg_queries(tmp_path, monkeypatch):
    """`attrib enroll` stores each sample's jpeg view; `attrib identify` scores a q75 JPEG query in
    it, a q97 JPEG too (every JPEG is), and a PNG query in the plain view (what the gallery was
    asked is checked, not the names)."""
    data = tmp_path / "data"
    for s in range(2):
        for i in range(6):
            write_png(data / f"src{s}" / f"{i}.png", synthetic(s, i))
    q = tmp_path / "q"
    q.mkdir()
    (q / "a.jpg").write_bytes(jpeg_bytes(synthetic(0, 9), 75))
    (q / "b.jpg").write_bytes(jpeg_bytes(synthetic(1, 9), 97))
    write_png(q / "c.png", synthetic(1, 8))
    runner, cli, gal = CliRunner(), build_cli(), tmp_path / "gal"
    for s in range(2):
        files = sorted((data / f"src{s}").iterdir())
        r = runner.invoke(cli, ["--gallery", str(gal), "enroll", "--generator", f"src{s}", "--encoder", PATTERN_ENCODER, *map(str, files)])
        assert r.exit_code == 0, r.output
    g = Gallery(gal, create=False)
    assert g.store.count("sample_views") == g.stats()["samples"] == 12
    # the stored view embedding is the encoder's embedding of the re-saved sample
    first = sorted((data / "src0").iterdir())[0]
    expect = g.encoder.embed([views.resave(load_image(first).pixels)])[0]
    assert np.allclose(g.store.view_embeddings("src0", "jpeg")[0], expect, atol=1e-5)
    asked = []
    real_identify = Gallery.identify

    def spy(self, embeddings, top_k=5, far=None, views=None):
        asked.append(views)
        return real_identify(self, embeddings, top_k, far, views)

    monkeypatch.setattr(Gallery, "identify", spy)
    r = runner.invoke(
        cli, ["--gallery", str(gal), "identify", "--json", "--no-detectors", str(q / "a.jpg"), str(q / "b.jpg"), str(q / "c.png")]
    )
    assert r.exit_code == 0, r.output
    assert asked == [["jpeg", "jpeg", None]]
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert [row["source"] for row in rows][0] == "src0"
    assert [row["view"] for row in rows] == ["jpeg", "jpeg", None]  # the answer says which view it was scored in


def test_eval_embeds_views_and_routes_queries_as_the_product(tmp_path):
    from attrib.evaluate import embed_dataset, post_view

    for s in range(2):
        for i in range(3):
            write_png(tmp_path / "data" / f"src{s}" / f"{i}.png", synthetic(s, i))
    (tmp_path / "data" / "src1" / "9.jpg").write_bytes(jpeg_bytes(synthetic(1, 9), 60))
    enc = get_encoder("residual")
    ds = embed_dataset(enc, tmp_path / "data")
    assert ds.views["jpeg"].shape == ds.embeddings.shape
    assert dict(zip([p.rsplit("/", 1)[-1] for p in ds.paths], ds.query_views))["9.jpg"] == "jpeg"
    assert sum(v is None for v in ds.query_views) == 6
    assert embed_dataset(enc, tmp_path / "data", views=()).views is None
    assert post_view("jpeg75") == "jpeg" and post_view("resize0.5,jpeg50") == "jpeg"
    assert post_view("jpeg75,resize0.5") is None and post_view("jpeg95") == "jpeg" and post_view("blur1.0") is None


def test_each_view_has_its_own_calibration(tmp_path, embedded):
    """Shots noisier in the jpeg view than as they are: their genuine scores there are lower, so
    the view's thresholds are its own, stored beside the plain ones, and the snapshot has them."""
    enc, emb = embedded
    rng = np.random.default_rng(2)
    g = Gallery(tmp_path / "g", encoder=enc)
    for s in range(3):
        noisy = emb[s][:6] + 0.08 * rng.normal(size=emb[s][:6].shape)
        g.enroll(f"src{s}", emb[s][:6], recs(s, 6), views={"jpeg": noisy / np.linalg.norm(noisy, axis=1, keepdims=True)})
    assert g.store.count("view_calibration") == 3
    plain, in_view = g.calibration().thresholds(0.01), g.calibration("jpeg").thresholds(0.01)
    assert set(plain) == set(in_view) and plain != in_view
    assert GallerySnapshot.from_gallery(g).gallery().calibration_of("jpeg").thresholds(0.01) == pytest.approx(in_view)
    q = emb[1][6:]
    d = g.identify(q, views=["jpeg"] * len(q))[0]
    assert d.threshold == pytest.approx(in_view[d.candidates[0]["source"]], abs=1e-5)
    assert g.verify(q, "src1", views=["jpeg"] * len(q))[0]["threshold"] == pytest.approx(in_view["src1"], abs=1e-5)


def test_a_jpeg_sample_stands_in_the_jpeg_view_as_it_is(tmp_path):
    """A sample that is already a JPEG at quality <= 90 is not re-saved for the jpeg view (its
    plain embedding is its view embedding); a PNG or a JPEG at 95 is."""
    from attrib.pipeline import embed_items, load_many, view_embeddings

    files = [tmp_path / "a.jpg", tmp_path / "b.jpg", write_png(tmp_path / "c.png", synthetic(2, 0))]
    files[0].write_bytes(jpeg_bytes(synthetic(0, 0), 80))
    files[1].write_bytes(jpeg_bytes(synthetic(1, 0), 95))
    enc = get_encoder("residual")
    items, emb = embed_items(enc, load_many(files), views=views.VIEWS)
    in_view = view_embeddings(items)["jpeg"]
    assert np.array_equal(in_view[0], emb[0])
    assert not np.allclose(in_view[1], emb[1]) and not np.allclose(in_view[2], emb[2])
