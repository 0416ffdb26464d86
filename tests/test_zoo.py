"""The generator zoo: offline photos, architectures, determinism, build layout, post-processing, CLI.

conftest.py points ATTRIB_CACHE at one folder per session, so generators trained here are reused.
"""

import io
import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from attrib import zoo
from attrib.cli.zoo_cmd import zoo as zoo_cli
from attrib.errors import AttribError
from attrib.sources import FAMILIES

#: A few steps are enough where only determinism or plumbing is tested.
QUICK = zoo.GeneratorTrainConfig(steps=3, batch_size=2, crop=32)


def test_real_photos_load_offline():
    photos = zoo.real_photos()
    names = [name for name, _ in photos]
    assert len(photos) >= 15
    assert len(set(names)) == len(names)
    assert {"skimage.astronaut", "sklearn.china", "matplotlib.grace_hopper"} <= set(names)
    for _, pixels in photos:
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
        assert min(pixels.shape[:2]) >= 128


def test_default_zoo_200_is_diverse_and_stable():
    specs = zoo.default_zoo(200)
    names = [spec.name for spec in specs]
    assert len(set(names)) == 200
    assert {spec.arch for spec in specs} == set(zoo.ARCHS)
    assert {name.rsplit("-s", 1)[0] for name in names} == set(zoo.GENERATOR_KINDS)
    assert {spec.family for spec in specs} <= set(FAMILIES) - {"real"}
    assert len({tuple(spec.hyperparameters().values()) for spec in specs}) > 50
    assert zoo.default_zoo(200) == specs
    assert zoo.default_zoo(7) == specs[:7]
    assert zoo.generator_spec("tconv-k3", 4) == next(s for s in specs if s.name == "tconv-k3-s4")


def test_unknown_kind_is_refused():
    with pytest.raises(AttribError, match="unknown generator kind"):
        zoo.generator_spec("gan9000", 0)


@pytest.mark.parametrize("kind", list(zoo.GENERATOR_KINDS))
def test_every_architecture_is_fully_convolutional(kind):
    spec = zoo.generator_spec(kind, 0)
    model = zoo.ZooGenerator(spec, latent_noise=0.1).eval()
    with torch.no_grad():
        for size in (64, 128):
            out = model(torch.zeros(1, 3, size, size))
            assert out.shape == (1, 3, size, size)


def _generate_twice(spec, n, size, seed, tmp_path, monkeypatch):
    """Generate with a fresh cache, then again after retraining from scratch in another cache."""
    out = []
    for cache in ("a", "b"):
        monkeypatch.setenv("ATTRIB_CACHE", str(tmp_path / cache))
        out.append(zoo.generate(spec, n, size=size, seed=seed, train=QUICK))
    assert out[0].shape == (n, size, size, 3) and out[0].dtype == np.uint8
    np.testing.assert_array_equal(out[0], out[1])
    return out[0]


def test_generation_is_deterministic(tmp_path, monkeypatch):
    spec = zoo.generator_spec("stylegan", 0)  # noise injection; n_up=3, so 44 pixels need padding
    first = _generate_twice(spec, 3, 44, 5, tmp_path, monkeypatch)
    # a cached generator generates what the freshly trained one did
    shutil.rmtree(tmp_path / "b" / "zoo" / "images")
    np.testing.assert_array_equal(zoo.generate(spec, 3, size=44, seed=5, train=QUICK), first)
    # image i depends on i, not on how many were asked for; other seeds give other content
    np.testing.assert_array_equal(zoo.generate(spec, 2, size=44, seed=5, train=QUICK), first[:2])
    assert not np.array_equal(zoo.generate(spec, 3, size=44, seed=6, train=QUICK), first)


def _spectral_fingerprint(image):
    """Log power spectrum of the high-pass residual, relative to its mean (content-normalised)."""
    gray = image.astype(np.float64).mean(axis=2)
    blurred = sum(np.roll(gray, (dy, dx), axis=(0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
    spectrum = np.log(np.abs(np.fft.fft2(gray - blurred)) ** 2 + 1e-3)
    return (spectrum - spectrum.mean()).ravel()


def test_sources_differ_in_their_spectral_fingerprint():
    """The reason the zoo exists: images of one source resemble each other more than others'."""
    sources = [zoo.REAL] + zoo.default_zoo(3)  # trained as the zoo trains them; later tests reuse them
    features = np.stack([[_spectral_fingerprint(img) for img in zoo.generate(s, 16, size=128)] for s in sources])
    centroids = features[:, :8].mean(axis=1)  # 8 images make each centroid, the other 8 are attributed
    queries = features[:, 8:]
    distances = ((queries[:, :, None] - centroids[None, None]) ** 2).sum(axis=-1)
    accuracy = (distances.argmin(axis=-1) == np.arange(len(sources))[:, None]).mean()
    assert accuracy >= 0.75  # chance is 0.25


def test_shipped_default_encoder_attributes_zoo_generators():
    """Regression guard for the shipped default (fp-joint4: joint WCCN over residual, texture and
    self-description features, two-cohort score normalisation) and the zoo
    encoder it grew from (fp-wccn2): 5-shot nearest-centroid attribution of zoo generators. (Seeds 0-5 of these kinds
    were in their fits: the held-out figures are bench/heldout_archs.py's and real_folds.py's.)
    `real` photos share no fingerprint, only JPEG traces the encoders learned to discount, so they
    are held to a lower bar."""
    from attrib.encoders import DEFAULT_ENCODER, get_encoder

    assert DEFAULT_ENCODER == "fp-joint4"
    sources = [zoo.REAL] + zoo.default_zoo(3)
    images = [list(zoo.generate(s, 16, size=128)) for s in sources]
    for name in (DEFAULT_ENCODER, "fp-wccn2"):
        enc = get_encoder(name)
        emb = np.stack([enc.embed(imgs) for imgs in images])
        centroids = emb[:, :5].mean(axis=1)
        predicted = (emb[:, 5:] @ centroids.T).argmax(axis=-1)
        correct = predicted == np.arange(len(sources))[:, None]
        assert correct[1:].mean() >= 0.95, name  # the generators
        assert correct.mean() >= 0.85, name
        if name == DEFAULT_ENCODER:  # its calibrated, normalised decisions on these zoo generators
            from attrib.gallery.memory import MemoryGallery

            names = [s.name for s in sources]
            batches = [(n, e[:5], [f"{n}{i}" for i in range(5)]) for n, e in zip(names[1:], emb[1:])]
            g = MemoryGallery.enroll(batches, enc.calibration, norm=enc.score_norm)
            decided = g.identify(emb[1:, 5:].reshape(-1, emb.shape[-1]), top_k=1)
            truth = [n for n in names[1:] for _ in range(emb.shape[1] - 5)]
            # far below the open-set models' clip (0.9999): no ties among zoo-like sources (tanh(z / 5) gave 0.9987 here)
            assert max(d.score for d in decided) < 0.95
            assert np.mean([d.source == t for d, t in zip(decided, truth)]) >= 0.8


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_build_layout_manifest_and_cache_reuse(tmp_path, monkeypatch):
    specs = zoo.default_zoo(3)
    manifest = zoo.build_zoo(tmp_path / "z", specs, images_per_source=4, size=64, progress=False)
    names = ["real"] + [spec.name for spec in specs]
    assert [source["name"] for source in manifest["sources"]] == names
    on_disk = json.loads((tmp_path / "z" / "zoo.json").read_text())
    assert on_disk == manifest
    assert on_disk["zoo_version"] == zoo.ZOO_VERSION
    assert on_disk["settings"]["size"] == 64
    tconv = on_disk["sources"][1]
    assert (tconv["arch"], tconv["family"], tconv["hyperparameters"]["kernel"]) == ("tconv", "gan", 4)
    assert on_disk["sources"][0]["family"] == "real"
    for name in names:
        assert _files(tmp_path / "z" / name) == [f"{i:05d}.png" for i in range(4)]
        with Image.open(tmp_path / "z" / name / "00000.png") as img:
            assert img.size == (64, 64) and img.mode == "RGB"
    before = {p: p.read_bytes() for p in (tmp_path / "z").rglob("*.png")}

    # A rebuild trains nothing and writes the same bytes; fewer images leave no stale files.
    monkeypatch.setattr(zoo.training, "_train", lambda *a: pytest.fail("a cached generator was retrained"))
    zoo.build_zoo(tmp_path / "z", specs, images_per_source=4, size=64, progress=False)
    assert {p: p.read_bytes() for p in (tmp_path / "z").rglob("*.png")} == before
    zoo.build_zoo(tmp_path / "z", specs[:1], images_per_source=2, size=64, include_real=False, progress=False)
    assert _files(tmp_path / "z") == sorted([specs[0].name, "zoo.json"])
    assert _files(tmp_path / "z" / specs[0].name) == ["00000.png", "00001.png"]


@pytest.mark.slow  # worker processes take seconds to import torch
def test_parallel_training_gives_the_same_zoo(tmp_path, monkeypatch):
    kinds = ("tconv-k3", "pixelshuffle", "stylegan", "vae", "transformer-p4", "transformer-p8")
    specs = [zoo.generator_spec(kind, 7) for kind in kinds]
    trees = []
    for workers in (2, 1):
        monkeypatch.setenv("ATTRIB_CACHE", str(tmp_path / f"cache{workers}"))
        out = tmp_path / f"zoo{workers}"
        zoo.build_zoo(out, specs, images_per_source=2, size=32, progress=False, train=QUICK, workers=workers)
        trees.append({p.relative_to(out): p.read_bytes() for p in out.rglob("*.png")})
    assert len(trees[0]) == 14 and trees[0] == trees[1]


def test_build_refuses_a_folder_that_is_not_a_zoo(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(AttribError, match="not empty"):
        zoo.build_zoo(tmp_path, [], images_per_source=1, size=32, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_post_processing_changes_bytes_and_format():
    pixels = zoo.generate(zoo.REAL, 1, size=64)[0]
    png, suffix = zoo.encode_image(pixels)
    assert suffix == ".png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), pixels)

    jpeg, suffix = zoo.encode_image(pixels, ["jpeg75"])
    assert suffix == ".jpg" and jpeg[:2] == b"\xff\xd8"
    decoded = np.asarray(Image.open(io.BytesIO(jpeg)))
    assert decoded.shape == pixels.shape and not np.array_equal(decoded, pixels)
    np.testing.assert_array_equal(zoo.post_process(pixels, "jpeg75"), decoded)

    assert zoo.post_process(pixels, "resize0.5").shape == (32, 32, 3)
    assert not np.array_equal(zoo.post_process(pixels, "resize0.5"), zoo.post_process(pixels, "resize0.5:bilinear"))
    assert not np.array_equal(zoo.post_process(pixels, "blur1.0"), pixels)
    # JPEG then resize: the compression is baked in, the file is lossless
    data, suffix = zoo.encode_image(pixels, "jpeg50,resize2")
    assert suffix == ".png" and Image.open(io.BytesIO(data)).size == (128, 128)


@pytest.mark.parametrize("bad", ["jpeg", "jpeg0", "jpeg101", "resize0", "resize2:nearest", "blur", "sharpen1"])
def test_bad_post_processing_is_refused(bad):
    with pytest.raises(AttribError, match="bad post-processing step"):
        zoo.parse_post([bad])


def test_cli_build(tmp_path):
    out = tmp_path / "zoo"
    result = CliRunner().invoke(zoo_cli, ["build", str(out), "-n", "2", "--images", "3", "--size", "64", "--post", "jpeg75", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "wrote 3 sources" in result.output
    manifest = json.loads((out / "zoo.json").read_text())
    assert manifest["settings"]["post"] == ["jpeg75"]
    for source in manifest["sources"]:
        assert source["suffix"] == ".jpg"
        assert _files(out / source["name"]) == ["00000.jpg", "00001.jpg", "00002.jpg"]


def test_cli_build_trains_for_the_steps_asked(tmp_path):
    """--steps is the generators' training length: recorded in the manifest, and other steps are
    other generators (same names, other weights, other images); the help states the default."""
    runner = CliRunner()
    args = ["-n", "1", "--images", "2", "--size", "32", "--no-real", "--quiet"]
    assert runner.invoke(zoo_cli, ["build", str(tmp_path / "a"), *args]).exit_code == 0
    result = runner.invoke(zoo_cli, ["build", str(tmp_path / "b"), "--steps", "3", *args])
    assert result.exit_code == 0, result.output
    a, b = (json.loads((tmp_path / d / "zoo.json").read_text()) for d in "ab")
    assert a["settings"]["train"]["steps"] == zoo.GeneratorTrainConfig().steps and b["settings"]["train"]["steps"] == 3
    name = a["sources"][0]["name"]
    assert name == b["sources"][0]["name"]
    assert (tmp_path / "a" / name / "00000.png").read_bytes() != (tmp_path / "b" / name / "00000.png").read_bytes()
    assert f"default: {zoo.GeneratorTrainConfig().steps}," in runner.invoke(zoo_cli, ["build", "--help"]).output
    assert runner.invoke(zoo_cli, ["build", str(tmp_path / "c"), "--steps", "0", *args]).exit_code == 2


def test_cli_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(zoo_cli, ["build", str(tmp_path / "z"), "--post", "jpeg999"])
    assert result.exit_code == 2 and "JPEG quality" in result.output
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("")
    result = runner.invoke(zoo_cli, ["build", str(tmp_path / "other"), "-n", "1", "--images", "1", "--quiet"])
    assert result.exit_code == 1 and "not empty" in result.output


def test_cli_list():
    runner = CliRunner()
    result = runner.invoke(zoo_cli, ["list", "-n", "200", "--json"])
    assert result.exit_code == 0
    listed = json.loads(result.output)
    assert [item["name"] for item in listed] == [spec.name for spec in zoo.default_zoo(200)]
    result = runner.invoke(zoo_cli, ["list"])  # one generator of each kind
    assert result.exit_code == 0
    assert [line.split("\t")[0] for line in result.output.splitlines()] == [f"{kind}-s0" for kind in zoo.GENERATOR_KINDS]
    assert result.output.startswith("tconv-k4-s0\tgan\ttconv\t")
    assert "mixed-s0\tother\tmixed\t" in result.output and "upsamplers=" in result.output
    result = runner.invoke(zoo_cli, ["list", "-n", "4", "--kind", "fir,unet"])
    assert result.exit_code == 0
    assert [line.split("\t")[0] for line in result.output.splitlines()] == ["fir-s0", "unet-s0", "fir-s1", "unet-s1"]
    result = runner.invoke(zoo_cli, ["list", "--kind", "gan9000"])
    assert result.exit_code == 2 and "unknown generator kind" in result.output


# ----------------------------------------------------------------- kinds added after version 2

ORIGINAL_KINDS = (
    "tconv-k4",
    "tconv-k3",
    "nearest",
    "bilinear",
    "bicubic",
    "pixelshuffle",
    "vae",
    "stylegan",
    "transformer-p4",
    "transformer-p8",
)
NEW_KINDS = ("mixed", "unet", "fir", "shuffle-x4", "vqgan", "denoise")


def test_new_kinds_are_appended_and_leave_older_generators_alone():
    assert tuple(zoo.GENERATOR_KINDS) == ORIGINAL_KINDS + NEW_KINDS
    assert zoo.default_zoo(10) == [zoo.generator_spec(kind, 0) for kind in ORIGINAL_KINDS]
    assert zoo.default_zoo(20, ORIGINAL_KINDS)[10:] == [zoo.generator_spec(kind, 1) for kind in ORIGINAL_KINDS]
    # cache keys and training seeds hash to_dict(): for older kinds it has exactly the fields of version 2
    spec = zoo.generator_spec("tconv-k4", 0)
    assert spec.to_dict() == {
        "name": "tconv-k4-s0",
        "arch": "tconv",
        "family": "gan",
        "seed": 0,
        "width": 48,
        "latent_channels": 8,
        "n_up": 3,
        "kernel": 4,
        "act": "gelu",
        "out_act": "clamp",
    }
    for spec in zoo.default_zoo(200):
        assert ("upsamplers" in spec.to_dict()) == (spec.arch == "mixed")
    for kind in NEW_KINDS:
        assert zoo.ARCHS[zoo.GENERATOR_KINDS[kind][0]] in set(FAMILIES) - {"real"}
    with pytest.raises(AttribError, match="unknown generator kind"):
        zoo.default_zoo(3, ["fir", "gan9000"])


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_new_kinds_train_and_generate_deterministically(kind, tmp_path, monkeypatch):
    first = _generate_twice(zoo.generator_spec(kind, 1), 2, 40, 3, tmp_path, monkeypatch)
    assert first.std() > 1  # not a flat image


def _period(decoder, spec, size=32):
    """The smallest period (1, 2, 4 or 8 pixels, both axes) of the decoder's response to a
    constant latent, away from the borders: the upsampling trace with no content on top."""
    with torch.no_grad():
        out = decoder(torch.ones(1, spec.latent_channels, size, size))[0]
    side = out.shape[-1]
    out = out[:, side // 4 : 3 * side // 4, side // 4 : 3 * side // 4]
    for p in (1, 2, 4, 8):
        if torch.allclose(out[:, p:], out[:, :-p], atol=1e-4) and torch.allclose(out[:, :, p:], out[:, :, :-p], atol=1e-4):
            return p
    return None


def _decoder(spec):
    torch.manual_seed(0)
    return zoo.ZooGenerator(spec, latent_noise=0.1).decoder.eval()


def test_mixed_seeds_pick_different_upsamplers():
    specs = [zoo.generator_spec("mixed", seed) for seed in range(12)]
    assert len({spec.upsamplers for spec in specs}) >= 9
    assert set().union(*(spec.upsamplers for spec in specs)) == set(zoo.MIXED_UPSAMPLERS)
    assert len({spec.kernel for spec in specs}) == 3  # the final conv's kernel: 1, 3 or 5
    periods = set()
    for spec in specs:
        assert len(spec.upsamplers) == spec.n_up and len(set(spec.upsamplers)) >= 2
        decoder = _decoder(spec)
        modules = [type(m) for m in decoder.modules()]
        assert modules.count(torch.nn.ConvTranspose2d) == spec.upsamplers.count("tconv")
        assert modules.count(torch.nn.PixelShuffle) == spec.upsamplers.count("pixelshuffle")
        # tconv and pixel shuffle make a period-2 pattern, every later x2 stage doubles it
        first = next((i for i, up in enumerate(spec.upsamplers) if up in ("tconv", "pixelshuffle")), spec.n_up)
        expected = 2 ** (spec.n_up - first)
        assert _period(decoder, spec, size=16) == expected, spec
        periods.add(expected)
    assert len(periods) >= 3


def test_new_traces_differ_from_the_old_ones():
    # every stride-2 transposed conv doubles the period of the pattern; StyleGAN2's [1,3,3,1]
    # low-pass after each one removes it (its response at the Nyquist frequency is 0)
    tconv, fir = zoo.generator_spec("tconv-k3", 0), zoo.generator_spec("fir", 0)
    assert _period(_decoder(tconv), tconv) == 2**tconv.n_up
    assert _period(_decoder(fir), fir) == 1
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in _decoder(fir).modules()) == fir.n_up
    # one PixelShuffle(4) on latent-resolution features: a period-4 trace in a single step
    shuffle = zoo.generator_spec("shuffle-x4", 0)
    assert [m.upscale_factor for m in _decoder(shuffle).modules() if isinstance(m, torch.nn.PixelShuffle)] == [4]
    assert _period(_decoder(shuffle), shuffle) == 4
    # interpolating decoders keep a constant latent constant
    for kind in ("vqgan", "nearest"):
        spec = zoo.generator_spec(kind, 0)
        assert _period(_decoder(spec), spec) == 1


def test_unet_decodes_the_encoder_skips():
    spec = zoo.generator_spec("unet", 0)
    model = zoo.ZooGenerator(spec, latent_noise=0.0).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        z, skips = model.encoder.features(x)
        torch.testing.assert_close(z, model.encoder(x))
        assert [s.shape[-1] for s in skips] == [64 >> i for i in range(spec.n_up - 1, 0, -1)]
        out = model.decoder(z, skips)
        assert out.shape == (1, 3, 64, 64)
        assert not torch.allclose(out, model.decoder(z, [torch.zeros_like(s) for s in skips]))


def test_vqgan_decodes_codebook_entries_only():
    spec = zoo.generator_spec("vqgan", 0)
    decoder = _decoder(spec)
    z = torch.randn(2, spec.latent_channels, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        quantised, index = decoder.quantize(z)
        codebook = torch.nn.functional.normalize(decoder.codebook, dim=1)
        torch.testing.assert_close(quantised, codebook[index].permute(0, 3, 1, 2))
        assert len(index.unique()) > 10
        out = decoder(z)
        assert torch.equal(decoder(2 * z), out)  # a code is chosen by direction (cosine similarity)
        assert torch.equal(decoder(z + 1e-5 * torch.randn_like(z)), out)  # piecewise constant in z


def test_denoise_refines_a_noisy_estimate():
    spec = zoo.generator_spec("denoise", 0)
    decoder = _decoder(spec)
    z = torch.randn(1, spec.latent_channels, 8, 8)
    with torch.no_grad():
        torch.manual_seed(1)
        first = decoder(z)
        torch.manual_seed(1)
        torch.testing.assert_close(decoder(z), first)  # seeded: the same noise
        assert not torch.allclose(decoder(z), first)  # per-pixel noise: another draw differs
        decoder.noise_strength.zero_()
        torch.testing.assert_close(decoder(z), decoder(z))
