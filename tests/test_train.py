"""Encoder training's parts: the shared degradations, loss/miner names, batch sources, one model
step, checkpoints. (End-to-end runs and the encoders they write: test_learned.py.)"""

import io

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageFilter

from attrib import degrade as dg
from attrib import train as T
from attrib.cli import build_cli
from attrib.errors import AttribError

from .conftest import synthetic, write_png

ALL = {
    "p_jpeg": 1,
    "jpeg_q": [60, 98],
    "p_resize": 1,
    "resize": [0.5, 1.5],
    "p_blur": 1,
    "blur": [0.2, 1.2],
    "p_noise": 1,
    "noise": [0.5, 3.0],
}


def _reference_degrade(img, p, rng):
    """What training's augmentation did before the zoo and training shared one implementation
    (issue 14): draws and operations in this order. Kept to pin the behaviour."""
    pil = None
    if rng.random() < p["p_resize"]:
        f = rng.uniform(*p["resize"])
        pil = Image.fromarray(img)
        size = (max(16, round(pil.width * f)), max(16, round(pil.height * f)))
        pil = pil.resize(size, [Image.BILINEAR, Image.BICUBIC, Image.LANCZOS][rng.integers(3)])
    if rng.random() < p["p_blur"]:
        pil = (pil or Image.fromarray(img)).filter(ImageFilter.GaussianBlur(rng.uniform(*p["blur"])))
    if pil is not None:
        img = np.asarray(pil)
    if rng.random() < p["p_jpeg"]:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=int(rng.integers(p["jpeg_q"][0], p["jpeg_q"][1] + 1)))
        img = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    if rng.random() < p["p_noise"]:
        img = np.clip(img + rng.normal(0, rng.uniform(*p["noise"]), img.shape), 0, 255).astype(np.uint8)
    return img


@pytest.mark.parametrize("params", [T.TrainConfig(data="", out="").augment, ALL], ids=["default", "all"])
def test_degrade_gives_what_it_always_gave(params):
    images = [synthetic(s, i, 24 + 8 * i) for s in range(3) for i in range(4)]
    images.append(synthetic(0, 0, 64)[5:45, 3:60])  # a crop: not contiguous, as Augmenter passes
    ours, theirs = np.random.default_rng(7), np.random.default_rng(7)
    for img in images * 3:
        np.testing.assert_array_equal(dg.degrade(img, params, ours), _reference_degrade(img, params, theirs))
    assert ours.random() == theirs.random()  # the same number of draws


def test_zoo_post_processing_and_training_degrade_share_the_steps():
    img = synthetic(2, 1, 64)
    only_jpeg = {**ALL, "p_resize": 0, "p_blur": 0, "p_noise": 0, "jpeg_q": [75, 75]}
    np.testing.assert_array_equal(dg.degrade(img, only_jpeg, np.random.default_rng(0)), dg.post_process(img, "jpeg75"))
    only_blur = {**ALL, "p_resize": 0, "p_jpeg": 0, "p_noise": 0, "blur": [1.0, 1.0]}
    np.testing.assert_array_equal(dg.degrade(img, only_blur, np.random.default_rng(0)), dg.post_process(img, "blur1.0"))
    # named steps are the Step objects; the file of a chain ending in JPEG is that JPEG
    assert dg.post_steps("resize0.5:bilinear,blur1.0,jpeg80") == [dg.Resize(0.5, Image.BILINEAR), dg.Blur(1.0), dg.Jpeg(80)]
    data, suffix = dg.encode_image(img, "resize0.5,jpeg80")
    assert suffix == ".jpg"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), dg.post_process(img, "resize0.5,jpeg80"))
    with pytest.raises(ValueError, match="rng"):
        dg.apply_steps(Image.fromarray(img), [dg.Noise(1.0)])


def test_loss_and_miner_names_are_one_list():
    train_cmd = build_cli().commands["train"]
    choices = {p.name: tuple(p.type.choices) for p in train_cmd.params if p.name in ("loss", "miner")}
    assert choices == {"loss": T.LOSSES, "miner": T.MINERS}
    assert T.TrainConfig.loss in T.LOSSES and T.TrainConfig.miner in T.MINERS
    assert all(p.help for p in train_cmd.params if p.param_type_name == "option")
    # an unknown name is refused before any data is read
    for field, value in (("loss", "triplet"), ("miner", "hard")):
        cfg = T.TrainConfig(data="/nonexistent", out="/nonexistent/out", **{field: value})
        with pytest.raises(AttribError, match=f"unknown {field} '{value}'"):
            T.train(cfg, progress=False)


@pytest.fixture(scope="module")
def four_sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("four")
    for s in range(8):
        for i in range(6):
            write_png(root / f"g{s}-s0" / f"{i:03d}.png", synthetic(s, i, 48))
    return root


def _data(root, **kw):
    cfg = T.TrainConfig(data=str(root), out="unused", val_sources=["g4-s0", "g5-s0", "g6-s0", "g7-s0"], per_class=3, batch_classes=3, **kw)
    return cfg, T.TrainingData.load(cfg, lambda m: None)


def test_batch_sources_are_chosen_by_backbone(four_sources):
    cfg, data = _data(four_sources, tile=16)
    assert sorted(data.images) == ["g0-s0", "g1-s0", "g2-s0", "g3-s0"] and len(data.val_images) == 4
    tiles = T.batch_source(cfg, data, np.random.default_rng(0), progress=False)
    assert type(tiles) is T.ImageTiles and not tiles.closed_form
    x, y = tiles.sample("cpu")
    assert x.shape == (9, 3, 16, 16) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y.tolist()[::3] == y.tolist()[1::3] == y.tolist()[2::3] and len(set(y.tolist())) == 3

    res = {"tile": 16, "pool": 4}
    cfg, data = _data(four_sources, backbone="residual-mlp", residual=res, feature_variants=1, dim=8)
    rows = T.batch_source(cfg, data, np.random.default_rng(0), progress=False)
    assert type(rows) is T.FeatureRows and rows.dim == 8 and rows.input["policy"] == "residual-features"
    assert all(len(b) == 12 for b in rows.bank.values())  # 6 images and one degraded copy of each
    x, y = rows.sample("cpu")
    assert x.shape == (9, rows.feature_dim) and len(y) == 9

    cfg, data = _data(four_sources, backbone="residual-wccn", residual=res, feature_variants=0)
    wccn = T.batch_source(cfg, data, np.random.default_rng(0), progress=False)
    assert type(wccn) is T.WCCNFeatures and wccn.closed_form and wccn.dim == wccn.feature_dim


def test_default_loss_learns_to_separate_training_sources(four_sources):
    """A few dozen steps of the default loss (sub-centre ArcFace) on residual features: the loss
    of a fixed batch falls, and its sources separate better than they did at the start."""
    cfg, data = _data(
        four_sources, backbone="residual-mlp", residual={"tile": 16, "pool": 4}, feature_variants=0, dim=16, head_hidden=32, lr=3e-3
    )
    assert cfg.loss == "subcenter-arcface"
    torch.manual_seed(0)
    rows = T.batch_source(cfg, data, np.random.default_rng(0), progress=False)
    conf = {"name": "t", "backbone": cfg.backbone, "dim": rows.dim, "head_hidden": cfg.head_hidden, "input": rows.input}
    model = T.Model.build(cfg, conf, rows, "cpu", lambda m: None)
    x = torch.cat([rows.bank[n] for n in rows.names])
    y = torch.tensor([i for i, n in enumerate(rows.names) for _ in range(len(rows.bank[n]))])

    def measure():
        model.net.eval()
        with torch.no_grad():
            emb = torch.nn.functional.normalize(model.net(x), dim=1)
            loss = model.loss_fn(emb, y).item()
        sims = emb @ emb.T
        same = y[:, None] == y[None, :]
        return loss, (sims[same].mean() - sims[~same].mean()).item()

    loss0, gap0 = measure()
    for _ in range(40):
        model.step(*rows.sample("cpu"), amp=False)
    loss1, gap1 = measure()
    assert loss1 < 0.8 * loss0
    assert gap1 > gap0 and gap1 > 0.2


def test_checkpoints_resume_restores_state(four_sources, tmp_path):
    cfg, data = _data(four_sources, tile=16, dim=8, head_hidden=16, val_shots=2)
    rng = np.random.default_rng(0)
    tiles = T.batch_source(cfg, data, rng, progress=False)
    conf = {"name": "t", "backbone": "fpcnn", "dim": 8, "head_hidden": 16, "input": tiles.input}
    model = T.Model.build(cfg, conf, tiles, "cpu", lambda m: None)
    probe = lambda: T._probe(model.net, conf, "cpu", tiles)  # noqa: E731
    ckpt = T.Checkpoints(tmp_path, cfg, model, rng, probe, lambda m: None)
    assert ckpt.resume("cpu") == 0  # nothing to resume
    model.step(*tiles.sample("cpu"), amp=False)
    ckpt(1, 0.5)
    assert (tmp_path / "best.pt").exists() and ckpt.history[0]["step"] == 1 and ckpt.history[0]["loss"] == 0.5
    state, after = rng.bit_generator.state, {k: v.clone() for k, v in model.net.state_dict().items()}

    rng2 = np.random.default_rng(99)
    model2 = T.Model.build(cfg, conf, tiles, "cpu", lambda m: None)
    messages = []
    again = T.Checkpoints(tmp_path, cfg, model2, rng2, probe, messages.append)
    assert again.resume("cpu") == 1 and messages == ["resumed from step 1"]
    assert rng2.bit_generator.state == state and again.history == ckpt.history and again.best["step"] == 1
    assert all(torch.equal(model2.net.state_dict()[k], v) for k, v in after.items())


def test_every_option_of_train_zoo_and_recipe_commands_has_help():
    cli = build_cli()
    commands = [cli.commands["train"], *cli.commands["zoo"].commands.values(), *cli.commands["recipe"].commands.values()]
    for command in commands:
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"{command.name} {param.opts} has no help"
    zoo_build = cli.commands["zoo"].commands["build"]
    assert "-k" not in [o for p in zoo_build.params for o in p.opts]  # -k is identify's --top-k
    r = CliRunner().invoke(cli, ["zoo", "build", "x", "-k", "3"])
    assert r.exit_code == 2
