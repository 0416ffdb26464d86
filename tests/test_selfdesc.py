"""The forensic self-description (attrib.encoders.selfdesc) and the joint encoder that carries it."""

import json

import numpy as np
import pytest
from PIL import Image

from attrib.encoders import get_encoder
from attrib.encoders.selfdesc import SelfDescription, neighbourhood_moments, solve_predictors
from attrib.errors import EncoderError

from .conftest import synthetic
from .test_fused import checkpoint  # noqa: F401  (the module-scoped fixture)


def _noise(seed: int, size: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(3, size, size)).astype(np.float32)


def test_predictor_recovers_a_known_relation_between_channels():
    """Channel 1 = 0.7 x channel 0 one pixel to the left (+ a little noise): its predictor puts
    0.7 on that neighbour and explains most of its variance (so does channel 0's, from channel 1
    one pixel to the right); channel 2, independent, stays unexplained."""
    r = _noise(0, 96)
    r[1] = 0.7 * np.roll(r[0], 1, axis=1) + 0.1 * r[1]
    weights, errors = solve_predictors(neighbourhood_moments(r, 5, parity=False), 5)
    assert weights.shape == (1, 3, 74) and errors.shape == (1, 3)
    # channel-major, row-major 5x5 windows: channel 0, centre row, one column left = index 11
    w1 = weights[0, 1]
    assert w1[11] == pytest.approx(0.7, abs=0.03)
    assert np.abs(np.delete(w1, 11)).max() < 0.1  # every other neighbour near 0
    assert errors[0, 1] < 0.05 and errors[0, 0] < 0.05 and errors[0, 2] > 0.9


def test_parity_sets_see_an_upsampler_that_a_plain_image_lacks():
    """Nearest-neighbour upsampling by 2 makes odd and even pixels predict differently; noise at
    full resolution does not."""
    small = (np.random.default_rng(1).uniform(0, 255, (64, 64, 3))).astype(np.uint8)
    upsampled = np.asarray(Image.fromarray(small).resize((128, 128), Image.NEAREST))
    plain = np.random.default_rng(2).uniform(0, 255, (128, 128, 3)).astype(np.uint8)

    def spread(img):
        x = img.transpose(2, 0, 1).astype(np.float32) / 255
        from attrib.encoders.residual import residual

        w, _ = solve_predictors(neighbourhood_moments(residual(x), 3, parity=True), 3)
        return float(np.abs(w[:4] - w[4]).mean())  # each parity's weights against their mean's

    assert spread(upsampled) > 5 * spread(plain)


def test_features_shape_options_and_odd_inputs():
    sd = SelfDescription()
    assert sd.config() == {"k": 5, "scales": [1, 2, 4], "max_side": 256} and sd.dim == 1575
    img = synthetic(0, 0, 300)
    f = sd.features(img)
    assert f.shape == (sd.dim,) and f.dtype == np.float32 and np.isfinite(f).all()
    assert np.array_equal(f, sd.features(img))  # deterministic
    # only the central max_side square is read
    assert np.array_equal(sd.features(img[22:278, 22:278]), f)
    batch = sd.features_batch([img, synthetic(1, 0, 64)])
    assert batch.shape == (2, sd.dim) and np.array_equal(batch[0], f)
    assert sd.features_batch([]).shape == (0, sd.dim)
    for odd in ((1, 1, 3), (3, 2, 3), (40, 3, 3), (500, 30, 3)):
        assert np.isfinite(sd.features(np.random.default_rng(0).integers(0, 255, odd, dtype=np.uint8))).all()
    assert np.isfinite(sd.features(np.full((64, 64, 3), 128, np.uint8))).all()
    small = SelfDescription(k=3, scales=[1])
    assert small.dim == 5 * 3 * 26 + 15 and small.features(img).shape == (small.dim,)
    for bad in ({"k": 4}, {"k": 1}, {"scales": []}, {"scales": [3]}):
        with pytest.raises(ValueError):
            SelfDescription(**bad)


def test_descriptions_separate_upsamplers():
    """Two 'generators' (the same content family, nearest vs bilinear upsampling by 2): each
    image's description is closer to its own generator's than to the other's."""
    sd = SelfDescription()

    def make(kind, seed):
        small = synthetic(seed % 4, seed, 128)
        return np.asarray(Image.fromarray(small).resize((256, 256), kind))

    a = sd.features_batch([make(Image.NEAREST, s) for s in range(6)])
    b = sd.features_batch([make(Image.BILINEAR, s) for s in range(6)])
    a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    within = min(float(np.mean(a @ a.T)), float(np.mean(b @ b.T)))
    assert within > float(np.mean(a @ b.T)) + 0.2


@pytest.fixture(scope="module")
def selfdesc_folder(checkpoint, tmp_path_factory):  # noqa: F811
    """A joint folder with the self-description (small options), fitted on synthetic sources with
    the texture weights test_fused makes."""
    from attrib.encoders.fused import TextureStats, texture_backbone_from_file
    from attrib.encoders.joint import save_joint
    from attrib.encoders.wccn import fit_wccn

    state = texture_backbone_from_file(checkpoint[0])
    residual, texture, sd = get_encoder("fp-wccn2").features, TextureStats(state), SelfDescription(k=3, scales=[1, 2])
    bank = {}
    for s in range(5):
        imgs = [synthetic(s, i, 64) for i in range(8)]
        bank[f"s{s}"] = np.concatenate([residual.features_batch(imgs), texture.features_batch(imgs), 2.0 * sd.features_batch(imgs)], 1)
    folder = tmp_path_factory.mktemp("enc") / "joint-sd"
    options = {"tile": 64, "coherence": 1, "predictor": 1}
    save_joint(folder, "joint-sd", options, state, fit_wccn(bank, 0.01), tiles=5, selfdesc=sd.config() | {"weight": 2.0})
    return folder


def test_joint_folder_with_selfdesc_embeds_all_three_feature_sets(selfdesc_folder):
    enc = get_encoder(str(selfdesc_folder))
    assert enc.selfdesc is not None and enc.selfdesc_weight == 2.0
    assert enc.P.shape[0] == enc.residual.dim + enc.texture.dim + enc.selfdesc.dim
    config = json.loads((selfdesc_folder / "config.json").read_text())
    assert config["input"]["selfdesc"] == {"k": 3, "scales": [1, 2], "max_side": 256, "weight": 2.0}
    img = synthetic(1, 3, 120)
    feats = np.concatenate(
        [enc.residual.features_batch([img]), enc.texture.features_batch([img]), 2.0 * enc.selfdesc.features_batch([img])], 1
    )
    want = (feats - enc.mean) @ enc.P
    assert enc.embed([img])[0] == pytest.approx(want[0] / np.linalg.norm(want), abs=1e-5)
    a = enc.embed([synthetic(0, i, 64) for i in range(10, 14)])
    b = enc.embed([synthetic(1, i, 64) for i in range(10, 14)])
    assert min(float(np.mean(a @ a.T)), float(np.mean(b @ b.T))) > float(np.mean(a @ b.T)) + 0.1


def test_joint_folder_with_bad_selfdesc_options_fails_in_one_line(selfdesc_folder, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(selfdesc_folder, bad)
    config = json.loads((bad / "config.json").read_text())
    config["input"]["selfdesc"]["k"] = 4
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(EncoderError, match="selfdesc options do not load"):
        get_encoder(str(bad))
    config["input"]["selfdesc"]["k"] = 5  # loads, but the projection was fitted on k = 3
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(EncoderError, match="does not fit .* features"):
        get_encoder(str(bad))


def test_torch_descriptions_match_numpy_and_the_encoder_routes_to_them(monkeypatch):
    """The torch path (a GPU's; here CPU torch) equals numpy's to 5e-4 (float32 moments summed in
    another order, through 75 x 75 inverses) on zoo-like and odd-sized
    images (a micro-batch of two same-size images included); thumbnails, whose mirrored pixels
    make the moments nearly singular, agree to a cosine of 0.9999. With a device chosen, the
    batch goes to torch."""
    import attrib.encoders.device as device_mod
    from attrib import zoo
    from attrib.encoders import selfdesc

    sd = SelfDescription()
    rng = np.random.default_rng(0)
    images = list(zoo.generate(zoo.default_zoo(2)[1], 2, size=128)) + [
        synthetic(1, 0, 300),
        rng.integers(0, 256, (300, 200, 3), dtype=np.uint8),
        rng.integers(0, 256, (300, 200, 3), dtype=np.uint8),
        np.full((64, 64, 3), 128, np.uint8),
    ]
    want = np.stack([sd.features(im) for im in images])
    got = selfdesc.features_torch(sd, images, "cpu", micro_batch=2)
    assert got.shape == want.shape and np.abs(got - want).max() < 5e-4
    tiny = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((3, 2, 3), (40, 7, 3))]
    a, b = np.stack([sd.features(im) for im in tiny]), selfdesc.features_torch(sd, tiny, "cpu")
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert np.isfinite(b).all() and cos.min() > 0.9999

    calls = []
    real = selfdesc.features_torch
    monkeypatch.setattr(selfdesc, "features_torch", lambda d, ims, device: calls.append(device) or real(d, ims, "cpu"))
    monkeypatch.setattr(device_mod, "torch_device", lambda requested=None: requested or "cuda")
    assert np.abs(sd.features_batch(images[:3]) - want[:3]).max() < 5e-4 and calls == ["cuda"]
    sd.device = "cpu"  # asked for the CPU: numpy, torch untouched
    assert np.array_equal(sd.features_batch(images[:3]), want[:3]) and calls == ["cuda"]
