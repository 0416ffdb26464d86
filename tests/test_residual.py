"""The training-free residual encoders (attrib.encoders.residual)."""

import numpy as np
import pytest

from attrib.encoders import get_encoder


@pytest.mark.parametrize("name", ["residual", "fp-wccn2"])
@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 7, 3), (3, 300, 3)])
def test_residual_encoder_handles_tiny_images(shape, name):
    """Images smaller than a tile are embedded, not refused (Encoder.embed itself guarantees a
    finite, normalised row: a 1 x 1 image, which has no residual, gives the zero vector)."""
    enc = get_encoder(name)
    emb = enc.embed([np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)])
    assert emb.shape == (1, enc.dim) and emb.dtype == np.float32


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
