"""The torch residual features (the GPU path) equal numpy's to 1e-4, on CPU torch, on zoo images
and odd sizes (thumbnails, non-multiples of the tile, big images cropped), with and without the
optional groups; and the encoder routes to them when a device is set."""

import numpy as np
import pytest

from attrib.encoders.residual import ResidualSpectrumEncoder
from attrib.encoders.residual_torch import features_torch

from .conftest import synthetic


@pytest.fixture(scope="module")
def images():
    from attrib import zoo

    zoo_images = list(zoo.generate(zoo.default_zoo(2)[1], 3, size=128)) + list(zoo.generate(zoo.REAL, 2, size=128))
    rng = np.random.default_rng(0)
    odd = [synthetic(1, 0, 64)[:37, :61], synthetic(2, 1, 20), rng.integers(0, 256, (700, 530, 3), dtype=np.uint8), synthetic(3, 2, 96)]
    return zoo_images + odd + [zoo_images[0]]  # one size twice: a micro-batch of two


def _grey(image):
    return np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])


@pytest.mark.parametrize("options", [{}, {"tile": 64, "coherence": 1, "predictor": 1}])
def test_torch_features_match_numpy(images, options):
    enc = ResidualSpectrumEncoder(**options)
    want = np.stack([enc.features(im) for im in images])
    got = features_torch(enc, images, "cpu", micro_batch=2)
    assert got.shape == want.shape == (len(images), enc.dim)
    # a grey image's channels are equal: the coherence group (cross-spectra of channel pairs,
    # centred and scaled to unit norm) is rounding noise blown up in numpy, exactly 0 in torch
    names = list(enc.groups)
    ends = np.cumsum([enc.groups[n] for n in names])
    start = dict(zip(names, ends - [enc.groups[n] for n in names]))
    mask = np.ones_like(want, bool)
    if "coherence" in start:
        grey = [i for i, im in enumerate(images) if _grey(im)]
        assert grey  # the zoo's real photos include grey ones: the case is exercised
        mask[np.ix_(grey, np.arange(start["coherence"], start["coherence"] + enc.groups["coherence"]))] = False
        assert np.all(got[grey, start["coherence"] : start["coherence"] + enc.groups["coherence"]] == 0)
    assert np.abs(got - want)[mask].max() < 1e-4


def test_encoder_routes_to_torch_on_a_gpu(images, monkeypatch):
    """With a GPU (stood in for: the device chooser says cuda, the torch features run on CPU
    torch) the encoder's features come from torch; without one, from numpy, torch untouched."""
    import attrib.encoders.device as device_mod
    import attrib.encoders.residual_torch as rt

    enc = ResidualSpectrumEncoder(tile=64, coherence=1, predictor=1)
    colour = [im for im in images if not _grey(im)][:4]
    numpy_emb = enc.embed(colour)
    calls = []
    real = rt.features_torch
    monkeypatch.setattr(rt, "features_torch", lambda e, ims, device: calls.append(device) or real(e, ims, "cpu"))
    monkeypatch.setattr(device_mod, "torch_device", lambda requested=None: requested or "cuda")
    assert np.allclose(enc.embed(colour), numpy_emb, atol=1e-5) and calls == ["cuda"]
    enc.device = "cpu"  # asked for the CPU: numpy
    assert np.array_equal(enc.embed(colour), numpy_emb) and calls == ["cuda"]


def test_device_choice(monkeypatch):
    from attrib.encoders.device import autocast, micro_batch, torch_device

    monkeypatch.setenv("ATTRIB_DEVICE", "cuda:1")
    assert torch_device() == "cuda:1" and torch_device("cpu") == "cpu"
    monkeypatch.delenv("ATTRIB_DEVICE")
    assert torch_device() == "cpu"  # no GPU on this machine
    assert type(autocast("cpu")).__name__ == "nullcontext"
    monkeypatch.setenv("ATTRIB_MICRO_BATCH", "8")
    assert micro_batch() == 8
