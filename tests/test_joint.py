"""The joint encoder (one WCCN over residual + texture features), built from weights the tests make."""

import json

import numpy as np
import pytest

from attrib.encoders import get_encoder
from attrib.encoders.fused import TextureStats, texture_backbone_from_file, tiles_of
from attrib.encoders.joint import JointEncoder, save_joint
from attrib.encoders.wccn import fit_wccn
from attrib.errors import EncoderError

from .conftest import synthetic
from .test_fused import checkpoint  # noqa: F401  (the module-scoped fixture)
from .test_views import jpeg_bytes


@pytest.fixture(scope="module")
def joint_folder(checkpoint, tmp_path_factory):  # noqa: F811
    state = texture_backbone_from_file(checkpoint[0])
    residual = get_encoder("fp-wccn2").features
    texture = TextureStats(state)
    bank = {}
    for s in range(5):
        imgs = [synthetic(s, i, 64) for i in range(8)]
        bank[f"s{s}"] = np.concatenate([residual.features_batch(imgs), texture.features_batch(imgs)], axis=1)
    folder = tmp_path_factory.mktemp("enc") / "joint-test"
    save_joint(folder, "joint-test", {"tile": 64, "coherence": 1, "predictor": 1}, state, fit_wccn(bank, 0.01), tiles=5)
    return folder


def test_joint_projects_both_feature_sets_with_one_metric(joint_folder):
    enc = get_encoder(str(joint_folder))
    assert isinstance(enc, JointEncoder) and enc.dim == enc.residual.dim + enc.texture.dim == 2257
    config = json.loads((joint_folder / "config.json").read_text())
    assert config["backbone"] == "residual-texture-wccn" and config["input"]["tiles"] == 5
    img = synthetic(1, 3, 120)
    feats = np.concatenate([enc.residual.features_batch([img]), enc.texture.features_batch([img])], axis=1)
    want = (feats - enc.mean) @ enc.P
    assert enc.embed([img])[0] == pytest.approx(want[0] / np.linalg.norm(want), abs=1e-5)


def test_joint_averages_tiles_and_embeds_odd_sizes(joint_folder):
    enc = get_encoder(str(joint_folder))
    big = np.concatenate([synthetic(0, 0, 300), synthetic(2, 1, 300)], axis=1)
    tiles = enc.project(enc.features(tiles_of(big)))
    want = tiles.mean(axis=0)
    emb = enc.embed([big, np.full((1, 1, 3), 9, np.uint8), synthetic(3, 0, 20)])
    assert emb[0] == pytest.approx(want / np.linalg.norm(want), abs=1e-5)
    assert emb.shape == (3, enc.dim) and np.isfinite(emb).all()


def test_joint_separates_sources_it_was_fitted_on(joint_folder):
    enc = get_encoder(str(joint_folder))
    a = enc.embed([synthetic(0, i, 64) for i in range(10, 14)])
    b = enc.embed([synthetic(1, i, 64) for i in range(10, 14)])
    within = float(np.mean(a @ a.T)), float(np.mean(b @ b.T))
    across = float(np.mean(a @ b.T))
    assert min(within) > across + 0.1


def test_joint_folder_with_wrong_weights_fails_in_one_line(joint_folder, tmp_path):
    from safetensors.numpy import save_file

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((joint_folder / "config.json").read_text())
    save_file({"wccn.mean": np.zeros(10, np.float32), "wccn.projection": np.eye(10, dtype=np.float32)}, str(bad / "model.safetensors"))
    with pytest.raises(EncoderError, match="not fit"):
        get_encoder(str(bad))
    (bad / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(EncoderError, match="weights do not load"):
        get_encoder(str(bad))


def test_joint_folder_with_score_norm_and_one_that_borrows_its_weights(joint_folder, tmp_path):
    """A folder may carry a cohort score normalisation; a sibling may take the base weights from
    another folder (``weights_from``) and add only its own: same embeddings, its own id."""
    import shutil

    from safetensors.numpy import save_file

    from attrib.scorenorm import ScoreNorm

    base = get_encoder(str(joint_folder))
    assert base.score_norm is None
    cohort = base.embed([synthetic(s, i, 64) for s in range(5) for i in range(20, 24)])
    norm = ScoreNorm.from_cohort(cohort, rank=4)
    folder = tmp_path / "joint-norm"
    folder.mkdir()
    config = json.loads((joint_folder / "config.json").read_text())
    shutil.copytree(joint_folder, tmp_path / "base")
    config.update(name="joint-norm", weights_from="../base", score_norm=norm.config())
    (folder / "config.json").write_text(json.dumps(config))
    save_file(norm.weights(), str(folder / "model.safetensors"))
    enc = get_encoder(str(folder))
    img = synthetic(2, 30, 96)
    assert enc.embed([img]) == pytest.approx(base.embed([img]), abs=1e-6)
    assert enc.score_norm is not None and enc.id != base.id
    q = enc.embed([img])
    assert enc.score_norm.normalise(q @ cohort[:3].T, q) == pytest.approx(norm.normalise(q @ cohort[:3].T, q), abs=1e-6)
    # two cohorts (fp-joint3's layout): stacked arrays, their names in config.json
    other = base.embed([synthetic(s, i, 64) for s in range(5, 9) for i in range(20, 24)])
    two = ScoreNorm.from_cohorts({"real": cohort, "zoo": other}, rank=4)
    config.update(score_norm=two.config())
    (folder / "config.json").write_text(json.dumps(config))
    save_file(two.weights(), str(folder / "model.safetensors"))
    enc2 = get_encoder(str(folder))
    assert enc2.score_norm.names == ["real", "zoo"] and enc2.id not in (enc.id, base.id)
    assert enc2.score_norm.normalise(q @ cohort[:3].T, q) == pytest.approx(two.normalise(q @ cohort[:3].T, q), abs=1e-6)
    config["weights_from"] = "../nowhere"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(EncoderError, match="weights_from '../nowhere' has no model.safetensors"):
        get_encoder(str(folder))


def test_a_flips_folder_reads_a_one_tile_image_with_its_flipped_copies(joint_folder, tmp_path):
    """``input.flips`` (fp-joint6): an image of one tile (a 256 px crop, anything smaller) is read
    as itself and its flipped copies, their unit embeddings averaged; an image of several tiles is
    read as before. Another reading is another encoder id; a bad letter fails in one line."""
    import shutil

    from attrib.encoders.fused import FLIPS

    base = get_encoder(str(joint_folder))
    folder = tmp_path / "joint-flips"
    shutil.copytree(joint_folder, folder)
    config = json.loads((joint_folder / "config.json").read_text())
    config["input"]["flips"] = "hvt"
    (folder / "config.json").write_text(json.dumps(config))
    enc = get_encoder(str(folder))
    assert enc.flips == "hvt" and enc.id != base.id
    crop = synthetic(2, 5, 200)
    reads = [crop] + [np.ascontiguousarray(FLIPS[f](crop)) for f in "hvt"]
    assert reads[3].shape == (200, 200, 3) and np.array_equal(reads[3][:, :, 0], crop[:, :, 0].T)
    want = base.project(base.features(reads)).mean(axis=0)
    got = enc.embed([crop])[0]
    assert got == pytest.approx(want / np.linalg.norm(want), abs=1e-5)
    assert not np.allclose(got, base.embed([crop])[0], atol=1e-3)  # the flips do change the reading
    big = np.concatenate([synthetic(0, 0, 300), synthetic(2, 1, 300)], axis=1)  # several tiles: unchanged
    assert enc.embed([big, crop]) == pytest.approx(np.stack([base.embed([big])[0], got]), abs=1e-5)
    plain, own = enc.embed_in([crop, big], [None, "jpeg"])
    assert plain == pytest.approx(own, abs=1e-6) and plain[0] == pytest.approx(got, abs=1e-5)
    config["input"]["flips"] = "hx"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(EncoderError, match="flips are letters of hvt"):
        get_encoder(str(folder))


@pytest.fixture(scope="module")
def view_folder(joint_folder, checkpoint, tmp_path_factory):  # noqa: F811
    """The joint test folder plus a fit of its own for the jpeg view (fp-joint5's layout): a WCCN
    fitted on the same sources re-saved as JPEG, a cohort normalisation and a prior of its own."""
    from attrib.scorenorm import ScoreNorm
    from attrib.views import resave

    state = texture_backbone_from_file(checkpoint[0])
    base = get_encoder(str(joint_folder))
    bank = {f"s{s}": base.features([resave(synthetic(s, i, 64)) for i in range(8)]) for s in range(5)}
    fit = fit_wccn(bank, 0.01)
    cohort = (base.features([resave(synthetic(s, i, 64)) for s in range(5) for i in range(20, 24)]) - fit[0]) @ fit[1]
    norm = ScoreNorm.from_cohort(cohort / np.linalg.norm(cohort, axis=1, keepdims=True), rank=4)
    prior = {"impostor": {"mu": 0.3, "sigma": 0.1, "n": 50}, "genuine": {"mu": 0.8, "sigma": 0.1, "n": 20}}
    plain = json.loads((joint_folder / "config.json").read_text())
    folder = tmp_path_factory.mktemp("enc") / "joint-views"
    save_joint(
        folder,
        "joint-views",
        plain["input"]["residual"],
        state,
        (base.mean, base.P),
        tiles=5,
        views={"jpeg": {"fit": fit, "score_norm": norm, "calibration": prior}},
    )
    return folder


def spy_identify(monkeypatch) -> list:
    """What every Gallery.identify call is asked: (embeddings, views) per call, in a list."""
    from attrib.gallery import Gallery

    asked = []
    real_identify = Gallery.identify

    def spy(self, embeddings, top_k=5, far=None, views=None):
        asked.append((np.array(embeddings), views))
        return real_identify(self, embeddings, top_k, far, views)

    monkeypatch.setattr(Gallery, "identify", spy)
    return asked


def test_a_view_head_embeds_and_scores_its_view_with_its_own_fit(joint_folder, view_folder):
    """A folder with a jpeg view head: plain embeddings as the folder without it; in the view, the
    same features through the view's WCCN; embed_in gives both from one read; the head carries its
    normalisation and prior; the id is its own."""
    from attrib.views import norm_in, prior_in

    base, enc = get_encoder(str(joint_folder)), get_encoder(str(view_folder))
    assert set(enc.view_heads) == {"jpeg"} and not base.view_heads and enc.id != base.id
    assert enc.describe()["view_heads"] == ["jpeg"] and "view_heads" not in base.describe()
    imgs = [synthetic(1, 3, 120), synthetic(2, 4, 300)]
    assert enc.embed(imgs) == pytest.approx(base.embed(imgs), abs=1e-5)
    mean, P = enc.view_fits["jpeg"]
    feats = enc.features(tiles_of(imgs[0]))
    want = (feats - mean) @ P
    want = (want / np.linalg.norm(want, axis=1, keepdims=True)).mean(axis=0)
    in_view = enc.embed(imgs, "jpeg")
    assert in_view[0] == pytest.approx(want / np.linalg.norm(want), abs=1e-4)
    assert not np.allclose(in_view, enc.embed(imgs), atol=1e-3)
    plain, own = enc.embed_in(imgs + [imgs[0]], ["jpeg", None, None])
    assert plain == pytest.approx(enc.embed(imgs + [imgs[0]]), abs=1e-5)
    assert own[0] == pytest.approx(in_view[0], abs=1e-5) and own[1:] == pytest.approx(plain[1:], abs=1e-6)
    p2, o2 = base.embed_in(imgs, ["jpeg", "jpeg"])  # no head: the view is the plain one
    assert np.array_equal(p2, o2)
    assert norm_in(enc, "jpeg") is enc.view_heads["jpeg"].score_norm and norm_in(enc, None) is enc.score_norm is None
    assert prior_in(enc, "jpeg")["impostor"]["mu"] == 0.3 and prior_in(enc, None) == enc.calibration
    assert prior_in(base, "jpeg") == base.calibration


def test_a_view_head_that_does_not_fit_fails_in_one_line(view_folder, tmp_path):
    import shutil

    from safetensors.numpy import load_file, save_file

    bad = tmp_path / "bad"
    shutil.copytree(view_folder, bad)
    config = json.loads((view_folder / "config.json").read_text())
    config["views"] = {"png": config["views"]["jpeg"]}
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(EncoderError, match="unknown view 'png'"):
        get_encoder(str(bad))
    (bad / "config.json").write_text((view_folder / "config.json").read_text())
    weights = load_file(str(view_folder / "model.safetensors"))
    weights["views.jpeg.wccn.projection"] = weights["views.jpeg.wccn.projection"][:10]
    save_file(weights, str(bad / "model.safetensors"))
    with pytest.raises(EncoderError, match="jpeg' view's projection"):
        get_encoder(str(bad))
    del weights["views.jpeg.wccn.projection"]
    save_file(weights, str(bad / "model.safetensors"))
    with pytest.raises(EncoderError, match="lack"):
        get_encoder(str(bad))


def test_a_folder_may_borrow_weights_from_several_siblings(view_folder, tmp_path):
    """``weights_from`` as a list: each sibling's weights read in order, this folder's on top (how
    fp-joint5 takes fp-joint1's backbone and fp-joint4's WCCN and adds its view fit)."""
    import shutil

    from safetensors.numpy import load_file, save_file

    enc = get_encoder(str(view_folder))
    weights = load_file(str(view_folder / "model.safetensors"))
    for name, keep in (
        ("a", lambda k: k.startswith("texture.")),
        ("b", lambda k: k.startswith("wccn.")),
        ("c", lambda k: k.startswith("views.")),
    ):
        (tmp_path / name).mkdir()
        save_file({k: v for k, v in weights.items() if keep(k)}, str(tmp_path / name / "model.safetensors"))
    shutil.copy(view_folder / "config.json", tmp_path / "c" / "config.json")
    config = json.loads((view_folder / "config.json").read_text()) | {"weights_from": ["../a", "../b"]}
    (tmp_path / "c" / "config.json").write_text(json.dumps(config))
    split = get_encoder(str(tmp_path / "c"))
    img = synthetic(3, 1, 90)
    assert split.embed([img], "jpeg") == pytest.approx(enc.embed([img], "jpeg"), abs=1e-6)
    assert split.id != enc.id


def test_enroll_and_identify_use_the_view_head(view_folder, tmp_path, monkeypatch):
    """With an encoder that has a jpeg view head, as a user runs it: `attrib enroll` stores each
    sample's jpeg view through the head (a PNG re-saved, a q80 JPEG as it is), the view's models are
    measured with the head's normalisation and pooled with its prior, and `attrib identify` scores a
    JPEG query by its embedding through the head, a PNG query by its plain one; eval does the same."""
    from click.testing import CliRunner

    from attrib.cli import build_cli
    from attrib.evaluate import embed_dataset
    from attrib.gallery import Gallery
    from attrib.gallery.snapshot import GallerySnapshot
    from attrib.imageio import load_image
    from attrib.views import resave

    from .conftest import write_png

    enc = get_encoder(str(view_folder))
    data = tmp_path / "data"
    for s in range(3):
        for i in range(5):
            write_png(data / f"src{s}" / f"{i}.png", synthetic(s, i, 96))
    (data / "src0" / "9.jpg").write_bytes(jpeg_bytes(synthetic(0, 9, 96), 80))
    runner, cli, gal = CliRunner(), build_cli(), tmp_path / "gal"
    for s in range(3):
        files = sorted(map(str, (data / f"src{s}").iterdir()))
        r = runner.invoke(cli, ["--gallery", str(gal), "enroll", "--generator", f"src{s}", "--encoder", str(view_folder), *files])
        assert r.exit_code == 0, r.output
    g = Gallery(gal, create=False)
    stored = g.store.view_embeddings("src0", "jpeg")
    png, jpg = load_image(data / "src0" / "0.png").pixels, load_image(data / "src0" / "9.jpg").pixels
    assert any(np.allclose(row, enc.embed([resave(png)], "jpeg")[0], atol=1e-4) for row in stored)
    assert any(np.allclose(row, enc.embed([jpg], "jpeg")[0], atol=1e-4) for row in stored)
    assert g.calibration("jpeg").prior["impostor"]["mu"] == 0.3 and g.calibration().prior == (enc.calibration or {})
    snap = GallerySnapshot.from_gallery(g).gallery()  # what `attrib batch` answers from
    assert snap.norm_of("jpeg") is g.encoder.view_heads["jpeg"].score_norm and snap.norm_of(None) is None
    assert snap.calibration_of("jpeg").thresholds(0.01) == pytest.approx(g.thresholds(view="jpeg"))
    q = tmp_path / "q"
    q.mkdir()
    (q / "a.jpg").write_bytes(jpeg_bytes(synthetic(1, 7, 96), 75))
    write_png(q / "b.png", synthetic(2, 7, 96))
    asked = spy_identify(monkeypatch)
    r = runner.invoke(cli, ["--gallery", str(gal), "identify", "--json", "--no-detectors", str(q / "a.jpg"), str(q / "b.png")])
    assert r.exit_code == 0, r.output
    ((emb, views),) = asked
    assert views == ["jpeg", None]
    assert emb[0] == pytest.approx(enc.embed([load_image(q / "a.jpg").pixels], "jpeg")[0], abs=1e-4)
    assert emb[1] == pytest.approx(enc.embed([load_image(q / "b.png").pixels])[0], abs=1e-4)
    r = runner.invoke(cli, ["--gallery", str(gal), "verify", "--generator", "src1", "--json", str(q / "a.jpg")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["threshold"] == pytest.approx(g.thresholds(sources=["src1"], view="jpeg")["src1"], abs=1e-5)
    ds = embed_dataset(enc, data)
    row = [p.rsplit("/", 1)[-1] for p in ds.paths].index("9.jpg")
    assert ds.queries[row] == pytest.approx(enc.embed([jpg], "jpeg")[0], abs=1e-4)
    assert ds.embeddings[row] == pytest.approx(enc.embed([jpg])[0], abs=1e-4)


def test_the_service_embeds_and_scores_in_the_view_head(view_folder, tmp_path, monkeypatch):
    """The HTTP API as the CLI: a sample that is a q80 JPEG stands in the jpeg view through the
    head, and a JPEG upload is scored by its embedding through the head."""
    from fastapi.testclient import TestClient

    from attrib.gallery import Gallery

    from .test_service import AUTH, files_for, make_app

    enc = get_encoder(str(view_folder))
    path = tmp_path / "gal"
    Gallery(path, encoder=enc).close()
    asked = spy_identify(monkeypatch)
    sample, upload = synthetic(1, 2, 96), synthetic(1, 8, 96)
    with TestClient(make_app(path)) as client:
        for s in range(2):
            files = [(f"{i}.jpg", jpeg_bytes(synthetic(s, i, 96), 80), "image/jpeg") for i in range(4)]
            r = client.post(f"/v1/sources/src{s}/samples", files=files_for(*files), headers=AUTH)
            assert r.status_code == 200, r.text
        r = client.post("/v1/identify", files=files_for(("a.jpg", jpeg_bytes(upload, 75), "image/jpeg")))
        assert r.status_code == 200, r.text
    g = Gallery(path, create=False)
    from attrib.imageio import load_image

    want = enc.embed([load_image(jpeg_bytes(sample, 80)).pixels], "jpeg")[0]
    assert any(np.allclose(row, want, atol=1e-4) for row in g.store.view_embeddings("src1", "jpeg"))
    ((emb, views),) = asked
    assert views == ["jpeg"] and emb[0] == pytest.approx(enc.embed([load_image(jpeg_bytes(upload, 75)).pixels], "jpeg")[0], abs=1e-4)


def test_shipped_fp_joint6_is_fp_joint4_reading_one_tile_images_with_flips():
    """fp-joint6 ships fp-joint4's fit (weights_from) with its own cohorts: a larger image embeds
    exactly as fp-joint4 embeds it, a crop as the mean of fp-joint4's projections of it and its
    flipped copies."""
    from attrib.encoders.fused import FLIPS

    j4, j6 = get_encoder("fp-joint4"), get_encoder("fp-joint6")
    assert j6.flips == "hvt" and not j4.flips and j6.id != j4.id
    assert np.array_equal(j6.P, j4.P) and np.array_equal(j6.mean, j4.mean)
    assert j6.score_norm is not None and j6.score_norm.names == j4.score_norm.names
    big = np.concatenate([synthetic(0, 0, 300), synthetic(2, 1, 300)], axis=1)
    assert j6.embed([big]) == pytest.approx(j4.embed([big]), abs=1e-5)
    crop = synthetic(1, 4, 256)
    want = j4.project(j4.features([crop] + [np.ascontiguousarray(FLIPS[f](crop)) for f in "hvt"])).mean(axis=0)
    assert j6.embed([crop])[0] == pytest.approx(want / np.linalg.norm(want), abs=1e-5)
