"""Learned encoders: backbones, local pretrained weights, training, artifacts, galleries."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from attrib.cli import build_cli
from attrib.encoders import get_encoder
from attrib.encoders.learned import build_backbone, build_net, grid_tiles, load_encoder, load_pretrained
from attrib.errors import EncoderError, EncoderMismatch
from attrib.gallery import Gallery

from .conftest import synthetic, write_png


@pytest.fixture(scope="module")
def six_sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("six")
    for s in range(6):
        for i in range(8):
            write_png(root / f"gen{s}-s0" / f"{i:03d}.png", synthetic(s, i, 48))
    return root


def small_config(data, out, steps: int):
    """A few fpcnn steps on ``six_sources``, validated on four of them (the trained fixture, and
    its resumed continuation)."""
    from attrib.train import TrainConfig

    return TrainConfig(
        data=str(data),
        out=str(out),
        tile=32,
        max_tiles=4,
        steps=steps,
        val_every=3,
        batch_classes=2,
        per_class=2,
        val_sources=["gen2-s0", "gen3-s0", "gen4-s0", "gen5-s0"],
        dim=16,
        head_hidden=32,
        val_shots=2,
    )


@pytest.fixture(scope="module")
def trained(six_sources, tmp_path_factory):
    from attrib.train import train

    out = tmp_path_factory.mktemp("enc") / "fp-test"
    cfg = small_config(six_sources, out, steps=6)
    train(cfg, progress=False)
    return out


def test_training_writes_artifacts(trained):
    conf = json.loads((trained / "config.json").read_text())
    assert (trained / "model.safetensors").exists()
    assert conf["backbone"] == "fpcnn" and conf["dim"] == 16
    assert conf["input"]["tile"] == 32
    assert set(conf["calibration"]) >= {"impostor", "genuine", "pair_impostor"}
    assert conf["training"]["val_sources"] == ["gen2-s0", "gen3-s0", "gen4-s0", "gen5-s0"]
    assert conf["training"]["train_sources"] == 2
    assert len(conf["training"]["history"]) == 2
    for key in ("accuracy", "auroc", "eer"):
        assert 0 <= conf["metrics"][key] <= 1


def test_encoder_loads_with_stable_id(trained):
    a, b = load_encoder(trained), get_encoder(str(trained))
    assert a.id == b.id and a.id.startswith("fp-test-")
    img = synthetic(0, 0, 80)
    ea, eb = a.embed([img]), b.embed([img])
    assert ea.shape == (1, 16) and np.allclose(ea, eb, atol=1e-6)
    assert np.isclose(np.linalg.norm(ea), 1.0, atol=1e-5)
    assert a.calibration["impostor"]["sigma"] > 0


def test_resume_continues_from_checkpoint(six_sources, trained, tmp_path):
    import shutil

    from attrib.train import train

    out = tmp_path / "resumed"
    shutil.copytree(trained, out)
    cfg = small_config(six_sources, out, steps=9)
    messages = []
    train(cfg, progress=False, log=messages.append)
    assert any("resumed from step 6" in m for m in messages)
    assert json.loads((out / "config.json").read_text())["training"]["history"][-1]["step"] == 9


def test_gallery_with_learned_encoder_refuses_mixing(trained, tmp_path, six_sources):
    runner = CliRunner()
    cli = build_cli()
    g = tmp_path / "g"
    files = sorted((six_sources / "gen0-s0").iterdir())[:3]
    r = runner.invoke(cli, ["-g", str(g), "enroll", "--encoder", str(trained), "--generator", "a", *map(str, files)])
    assert r.exit_code == 0, r.output
    assert Gallery(g, create=False).encoder.id == load_encoder(trained).id
    r = runner.invoke(cli, ["-g", str(g), "identify", "--json", str(files[0])])
    assert r.exit_code == 0 and json.loads(r.output)["candidates"][0]["source"] == "a"
    r = runner.invoke(cli, ["-g", str(g), "enroll", "--encoder", "residual", "--generator", "b", str(files[1])])
    assert r.exit_code == 1 and "bound to encoder" in r.output and "Traceback" not in r.output
    with pytest.raises(EncoderMismatch):
        Gallery(g, encoder=get_encoder("residual"))


def test_corrupt_weights_one_line_error(trained, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(trained, bad)
    (bad / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(EncoderError) as info:
        load_encoder(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(EncoderError, match="not an encoder folder"):
        load_encoder(tmp_path)


def test_cli_train_command(six_sources, tmp_path):
    r = CliRunner().invoke(
        build_cli(),
        [
            "train",
            str(six_sources),
            "--out",
            str(tmp_path / "e"),
            "--steps",
            "2",
            "--val-every",
            "2",
            "--tile",
            "32",
            "--batch-classes",
            "2",
            "--per-class",
            "2",
            "--dim",
            "8",
            "--val-source",
            "gen2-s0",
            "--val-source",
            "gen3-s0",
            "--val-source",
            "gen4-s0",
            "--val-source",
            "gen5-s0",
            "--loss",
            "supcon",
            "--miner",
            "multi-similarity",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["metrics"]["shots"] == 5


@pytest.mark.parametrize("loss", ["subcenter-arcface", "arcface", "supcon", "proxy-anchor", "multi-similarity"])
def test_losses_by_name_pull_sources_apart(loss):
    """Every loss the CLI offers, optimised on free embeddings of 3 sources (random at the start):
    it falls, sources pull apart and nearest neighbours mostly share their source (chance 1/3).
    (Sub-centre ArcFace may keep a source in more than one cluster, so not all of them.)"""
    from attrib.train import LOSSES, make_loss, make_miner

    assert loss in LOSSES
    torch.manual_seed(0)
    fn = make_loss(loss, 3, 8)
    miner = make_miner("multi-similarity") if loss in ("supcon", "multi-similarity") else None
    emb = torch.nn.Parameter(torch.randn(12, 8))
    y = torch.tensor([0, 1, 2] * 4)
    opt = torch.optim.Adam([emb, *fn.parameters()], lr=0.05)

    def value():
        e = torch.nn.functional.normalize(emb, dim=1)
        return fn(e, y, miner(e, y)) if miner is not None else fn(e, y)

    start = value().item()
    for _ in range(150):
        opt.zero_grad()
        value().backward()
        opt.step()
    e = torch.nn.functional.normalize(emb.detach(), dim=1)
    sims = e @ e.T
    same = (y[:, None] == y[None, :]) & ~torch.eye(12, dtype=torch.bool)
    gap = sims[same].mean() - sims[y[:, None] != y[None, :]].mean()
    sims.fill_diagonal_(-2)
    assert value().item() < 0.7 * start
    assert gap > 0.3 and (y[sims.argmax(1)] == y).float().mean() >= 0.75


def test_saved_encoder_is_the_best_checkpoint(trained):
    """The written encoder embeds exactly as the net of best.pt does, and its metrics are those
    of the best validation in the history."""
    from safetensors.torch import load_file

    from attrib.encoders.learned import LearnedEncoder

    conf = json.loads((trained / "config.json").read_text())
    net, _ = build_net(conf)
    net.load_state_dict(torch.load(trained / "best.pt"))
    saved = load_file(str(trained / "model.safetensors"))
    assert saved.keys() == net.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in net.state_dict().items())
    imgs = [synthetic(s, 20, 64) for s in range(6)]
    direct = LearnedEncoder(net.eval(), conf, weights_sha256="x", device="cpu").embed(imgs)
    np.testing.assert_array_equal(load_encoder(trained).embed(imgs), direct)
    best = next(h for h in conf["training"]["history"] if h["step"] == conf["training"]["best_step"])
    assert {k: conf["metrics"][k] for k in ("accuracy", "auroc", "eer", "oscr")} == {
        k: best[k] for k in ("accuracy", "auroc", "eer", "oscr")
    }
    assert all(h["loss"] is not None and np.isfinite(h["loss"]) for h in conf["training"]["history"])


def test_timm_weights_from_local_file_by_name_and_by_order(tmp_path):
    from safetensors.torch import save_file

    net, dim, _ = build_backbone("timm:test_resnet")
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in net.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    fresh, _, _ = build_backbone("timm:test_resnet", weights=tmp_path / "w.safetensors")
    first = next(iter(state))
    assert torch.equal(fresh.state_dict()[first], state[first])
    # a file with other key names but the same tensors in the same order (EfficientNet-Lite0 style)
    renamed = {f"layer{i:03d}": v for i, v in enumerate(state.values())}
    torch.save(renamed, tmp_path / "renamed.pth")
    other, _, _ = build_backbone("timm:test_resnet", weights=tmp_path / "renamed.pth")
    assert torch.equal(other.state_dict()[first], state[first])
    # a file for another model is refused in one line
    vit, _, _ = build_backbone("timm:test_vit")
    save_file(vit.state_dict(), str(tmp_path / "vit.safetensors"))
    with pytest.raises(EncoderError, match="fit this backbone"):
        load_pretrained(net, tmp_path / "vit.safetensors")
    with pytest.raises(EncoderError, match="does not exist"):
        build_backbone("timm:test_resnet", weights=tmp_path / "missing.pth")


def test_open_clip_tower_from_local_file(tmp_path):
    import open_clip

    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    (cfg_dir / "tiny-clip-test.json").write_text(
        json.dumps(
            {
                "embed_dim": 16,
                "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
                "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1, "layers": 1},
            }
        )
    )
    open_clip.add_model_config(cfg_dir)
    model = open_clip.create_model("tiny-clip-test", pretrained=None)
    torch.save(model.state_dict(), tmp_path / "clip.pt")
    visual, dim, norm = build_backbone("open_clip:tiny-clip-test", weights=tmp_path / "clip.pt")
    assert dim == 16 and norm["image_size"] == 32
    key = next(iter(visual.state_dict()))
    assert torch.equal(visual.state_dict()[key], model.visual.state_dict()[key])
    net, _ = build_net({"backbone": "open_clip:tiny-clip-test", "dim": 8, "input": {"tile": 32, "max_tiles": 2}})
    out = net(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 8)


def test_grid_tiles_crop_never_resize():
    img = synthetic(1, 1, 100)
    tiles = grid_tiles(img, 32, 16)
    assert tiles.shape == (9, 32, 32, 3)
    assert np.array_equal(tiles[0], img[2:34, 2:34])  # centred grid: (100 - 96) / 2 = 2
    assert grid_tiles(img[:10, :20], 32, 4).shape == (1, 32, 32, 3)  # small: padded, not scaled
    assert len(grid_tiles(synthetic(0, 0, 256), 32, 8)) == 8


def test_shipped_encoders_are_registered_by_name():
    from attrib.default_plugins.encoders import _shipped
    from attrib.encoders import list_encoders

    registry = list_encoders()
    for name, _ in _shipped():
        assert name in registry
        enc = get_encoder(name)
        assert enc.spec == name and enc.dim > 0
        emb = enc.embed([synthetic(0, 0, 64)])
        assert emb.shape == (1, enc.dim)


def test_fit_wccn_whitens_within_source_scatter():
    from attrib.train import fit_wccn

    rng = np.random.default_rng(0)
    # 5 sources in 6-d; all of them vary a lot along axis 0 (nuisance), little elsewhere
    scale = np.array([10.0, 1.0, 1.0, 0.5, 0.5, 0.5])
    bank = {f"s{i}": rng.normal(rng.normal(0, 3, 6), 1, (200, 6)) * scale for i in range(5)}
    mean, P = fit_wccn(bank, reg=0.0)
    z = {k: (v - mean) @ P for k, v in bank.items()}
    within = sum(((v - v.mean(0)).T @ (v - v.mean(0))) for v in z.values()) / sum(len(v) for v in z.values())
    assert np.allclose(within, np.eye(6), atol=1e-3)
    # the nuisance axis no longer dominates: the raw spread along it was 10x the others'
    raw = np.concatenate(list(bank.values())).std(axis=0)
    white = np.concatenate(list(z.values())).std(axis=0)
    assert raw[0] > 5 * raw[1] and white.max() < 3 * white.min() + 1
    _, P_reg = fit_wccn(bank, reg=1.0)  # the ridge shrinks the smallest directions' gain
    assert np.linalg.norm(P_reg, axis=0).max() < np.linalg.norm(P, axis=0).max()


@pytest.mark.parametrize("options", [{"tile": 16, "pool": 4}, {"tile": 16, "pool": 4, "coherence": 1, "predictor": 1}])
def test_residual_wccn_trains_in_closed_form_and_loads(six_sources, tmp_path, options):
    r = CliRunner().invoke(
        build_cli(),
        [
            "train",
            str(six_sources),
            "--out",
            str(tmp_path / "w"),
            "--backbone",
            "residual-wccn",
            *[a for k, v in options.items() for a in ("--residual-option", f"{k}={v}")],
            "--val-source",
            "gen2-s0",
            "--val-source",
            "gen3-s0",
            "--val-source",
            "gen4-s0",
            "--val-source",
            "gen5-s0",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    conf = json.loads((tmp_path / "w" / "config.json").read_text())
    assert conf["training"]["config"]["steps"] == 0 and conf["training"]["best_step"] == 0
    assert conf["input"]["residual"] == options
    from attrib.encoders.residual import ResidualSpectrumEncoder

    enc = get_encoder(str(tmp_path / "w"))
    feat = ResidualSpectrumEncoder(**options)
    assert enc.dim == feat.dim
    imgs = [synthetic(s, i, 64) for s in range(6) for i in range(8, 11)]
    emb = enc.embed(imgs)
    assert emb.shape == (18, enc.dim) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    # the embedding is the whitening of the residual features, nothing else
    # (inference runs in numpy; the torch module it was trained as gives the same numbers)
    from attrib.encoders.learned import LinearFeatureEncoder

    assert isinstance(enc, LinearFeatureEncoder)
    from safetensors.torch import load_file

    net, _ = build_net(conf)
    net.load_state_dict(load_file(str(tmp_path / "w" / "model.safetensors")))
    f = np.stack([feat.features(im) for im in imgs[:2]])  # before the final normalisation
    expect = net(torch.from_numpy(f)).detach().numpy()
    assert np.allclose(emb[:2], expect, atol=1e-4)
    # images of unseen sources (chance 1/6; fitted on 2 sources only): nearest neighbours mostly agree
    sims = emb @ emb.T
    np.fill_diagonal(sims, -1)
    labels = np.repeat(np.arange(6), 3)
    assert (labels[sims.argmax(1)] == labels).mean() >= 0.6


def test_train_cli_rejects_bad_residual_option(six_sources, tmp_path):
    runner = CliRunner()
    for opt in ("tile", "tile=x", "nope=3", "coherence=2"):
        r = runner.invoke(
            build_cli(), ["train", str(six_sources), "--out", str(tmp_path / "x"), "--backbone", "residual-wccn", "--residual-option", opt]
        )
        assert r.exit_code == 2 and "--residual-option" in r.output


def test_shipped_wccn_folder_with_bad_weights_fails_in_one_line(tmp_path):
    import shutil

    from safetensors.numpy import save_file

    from attrib.default_plugins.encoders import _shipped

    folder = dict(_shipped())["fp-wccn"]
    bad = tmp_path / "bad"
    shutil.copytree(str(folder), bad)
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(EncoderError) as info:
        load_encoder(bad)
    assert "\n" not in str(info.value) and "weights do not load" in str(info.value)
    save_file({"backbone.weight": np.zeros((4, 4), np.float32), "backbone.bias": np.zeros(4, np.float32)}, str(bad / "model.safetensors"))
    with pytest.raises(EncoderError, match="do not fit residual features"):
        load_encoder(bad)
    # the CLI says it in one line and exits 1
    img = tmp_path / "x.png"
    from .conftest import write_png

    write_png(img, synthetic(0, 0, 64))
    r = CliRunner().invoke(build_cli(), ["-g", str(tmp_path / "g"), "enroll", "--encoder", str(bad), "--generator", "a", str(img)])
    assert r.exit_code == 1 and "do not fit residual features" in r.output and "Traceback" not in r.output
