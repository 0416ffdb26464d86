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
