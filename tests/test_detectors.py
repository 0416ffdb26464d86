"""The detector contract, the runner (errors, malformed evidence, time bounds), the built-in
detectors and the `detect` / `identify` output."""

import json
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from attrib import hookimpl
from attrib.cli import build_cli
from attrib.default_plugins.detectors import NPRDetector, SpectralDetector
from attrib.detectors import (
    MAX_TIMEOUTS,
    VERDICTS,
    Detector,
    DetectorImage,
    DetectorRunner,
    Evidence,
    detect,
    detector_timeout,
    make_runner,
    normalise,
    summarise,
)
from attrib.errors import AttribError, ImageError
from attrib.plugins import make_plugin_manager

from .conftest import png_bytes, synthetic, write_png

KEYS = {"detector", "verdict", "score", "source_hint", "details", "error"}


def photo_crop(size=256):
    """A crop of a real photo shipped with scikit-image (no download)."""
    from attrib.zoo import real_photos

    photos = dict(real_photos())
    pixels = photos.get("skimage.astronaut", next(iter(photos.values())))
    return np.ascontiguousarray(pixels[100 : 100 + size, 100 : 100 + size])


def upsampled(pixels, factor=2, method=Image.NEAREST):
    h, w = pixels.shape[:2]
    small = Image.fromarray(pixels).resize((w // factor, h // factor), Image.BICUBIC)
    return np.asarray(small.resize((w, h), method))


def checkerboard(pixels, amplitude=3.0):
    """Adds the fixed period-2 pattern a transposed convolution leaves."""
    yy, xx = np.mgrid[: pixels.shape[0], : pixels.shape[1]]
    pattern = amplitude * (((yy + xx) % 2) * 2 - 1)
    return np.clip(pixels + pattern[..., None], 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ test detectors and plugins


class Fixed(Detector):
    def __init__(self, name, result):
        self.name, self.description, self.result = name, "fixed", result

    def detect(self, image):
        return self.result


class Boom(Detector):
    name = "boom"

    def detect(self, image):
        raise RuntimeError("kaput\nsecond line")


class Sleepy(Detector):
    def __init__(self, seconds, name="sleepy"):
        self.name, self.seconds = name, seconds
        self.calls = 0
        self.release = threading.Event()

    def detect(self, image):
        self.calls += 1
        self.release.wait(self.seconds)
        return self.evidence("synthetic", 1.0)


class DetectorPlugin:
    def __init__(self, *detectors):
        self.detectors = detectors

    @hookimpl
    def register_detectors(self, register):
        for d in self.detectors:
            register(d)


def cli_with(*detectors):
    pm = make_plugin_manager()
    pm.register(DetectorPlugin(*detectors), name="test-detectors")
    return build_cli(pm)


def invoke(cli, *args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


# -------------------------------------------------------------------------------- contract


def test_builtin_detectors_registered_and_contract():
    registry = make_runner().names
    assert registry[:2] == ["spectral", "npr"]
    for ev in detect(synthetic(0, 0, 96)):
        d = ev.to_dict()
        assert set(d) == KEYS
        assert d["verdict"] in VERDICTS and d["error"] is None
        assert 0.0 <= d["score"] <= 1.0
        json.dumps(d)  # JSON-serialisable


def test_detect_accepts_paths_bytes_arrays_and_pil(tmp_path):
    pixels = synthetic(1, 0, 64)
    path = write_png(tmp_path / "a.png", pixels)
    outputs = [
        detect(path, ["spectral"]),
        detect(png_bytes(pixels), ["spectral"]),
        detect(pixels, ["spectral"]),
        detect(Image.fromarray(pixels), ["spectral"]),
    ]
    scores = {round(out[0].score, 6) for out in outputs}
    assert len(scores) == 1


def test_detector_image_is_lazy_and_read_only(tmp_path):
    pixels = synthetic(2, 0, 48)
    path = write_png(tmp_path / "b.png", pixels)
    img = DetectorImage(pixels=pixels, path=path)
    assert img._data is None  # nothing read until a detector asks
    assert img.data == path.read_bytes()
    assert img.format == "PNG" and img.mime_type == "image/png"
    assert (img.width, img.height) == (48, 48)
    with pytest.raises(ValueError):
        img.pixels[0, 0, 0] = 1
    assert pixels.flags.writeable  # the caller's array is untouched
    assert np.array_equal(DetectorImage(path=path).pixels, pixels)  # decoded from the file on demand
    from_bytes = DetectorImage(data=png_bytes(pixels))
    assert np.array_equal(from_bytes.pixels, pixels)
    with pytest.raises(ImageError, match="no file bytes"):
        DetectorImage(pixels=pixels).open()
    with pytest.raises(ImageError):
        DetectorImage.from_source(b"not an image")
    with pytest.raises(ValueError):
        DetectorImage()


@pytest.mark.parametrize(
    "result, message",
    [
        ({"verdict": "maybe"}, "verdict 'maybe'"),
        ({"verdict": "synthetic", "score": 1.5}, "outside [0, 1]"),
        ({"verdict": "synthetic", "score": float("nan")}, "outside [0, 1]"),
        ({"verdict": "real", "score": "high"}, "str score"),
        ({"verdict": "real", "details": [1, 2]}, "details of type list"),
        ({"verdict": "real", "details": {"x": object()}}, "not JSON-serialisable"),
        ({"verdict": "real", "colour": "red"}, "unknown evidence fields"),
        (42, "returned int"),
        (None, "returned NoneType"),
    ],
)
def test_malformed_evidence_becomes_an_error(result, message):
    ev = normalise("x", result)
    assert ev.error and message in ev.error
    assert ev.verdict == "undetermined" and ev.score is None


def test_normalise_accepts_dicts_numpy_and_forces_the_name():
    ev = normalise(
        "mine", {"detector": "other", "verdict": "synthetic", "score": np.float32(0.25), "details": {"a": np.arange(3), "b": np.int64(2)}}
    )
    assert ev.detector == "mine" and ev.score == 0.25 and ev.details == {"a": [0, 1, 2], "b": 2}
    ev = normalise("mine", Evidence("x", "synthetic", 0.9, error="partial failure\nmore"))
    assert ev.error == "partial failure" and ev.verdict == "undetermined" and ev.score is None


# ---------------------------------------------------------------------------------- runner


def test_raising_detector_is_reported_and_others_still_run():
    ok = Fixed("ok", {"verdict": "real", "score": 0.1})
    out = DetectorRunner([Boom(), ok], timeout=5).run(synthetic(0, 1, 48))
    assert [e.detector for e in out] == ["boom", "ok"]
    assert out[0].error == "RuntimeError: kaput" and out[0].score is None
    assert out[1].error is None and out[1].verdict == "real"


def test_hanging_detector_is_bounded_then_skipped():
    sleepy = Sleepy(30)
    ok = Fixed("ok", {"verdict": "real", "score": 0.1})
    runner = DetectorRunner([sleepy, ok], timeout=0.2)
    img = synthetic(0, 2, 48)
    t0 = time.monotonic()
    first = runner.run(img)
    assert time.monotonic() - t0 < 2
    assert first[0].error == "timed out after 0.2 s" and first[1].error is None
    second = runner.run(img)  # still hung: not started again
    assert "still busy" in second[0].error and sleepy.calls == 1
    sleepy.release.set()  # it finishes late; the next image may try again
    time.sleep(0.1)
    assert runner.run(img)[0].error is None
    sleepy.release.clear()
    for _ in range(MAX_TIMEOUTS):
        runner.run(img)
        sleepy.release.set()
        time.sleep(0.1)
        sleepy.release.clear()
    last = runner.run(img)
    assert last[0].error.startswith(f"skipped: timed out on {MAX_TIMEOUTS}") and last[1].error is None


def test_detector_own_timeout_and_env_bound(monkeypatch):
    quick = Sleepy(5, name="quick")
    quick.timeout = 0.05  # its own bound beats the default ...
    monkeypatch.setenv("ATTRIB_DETECTOR_TIMEOUT", "30")
    out = DetectorRunner([quick]).run(synthetic(0, 3, 48))
    assert out[0].error == "timed out after 0.05 s"
    slow = Sleepy(5, name="slow")
    slow.timeout = 60  # ... but not a bound the caller sets explicitly
    out = DetectorRunner([slow], timeout=0.1).run(synthetic(0, 3, 48))
    assert out[0].error == "timed out after 0.1 s"
    quick.release.set()
    slow.release.set()
    monkeypatch.setenv("ATTRIB_DETECTOR_TIMEOUT", "2.5")
    assert detector_timeout() == 2.5 and DetectorRunner([]).timeout == 2.5
    monkeypatch.setenv("ATTRIB_DETECTOR_TIMEOUT", "soon")
    with pytest.raises(AttribError, match="ATTRIB_DETECTOR_TIMEOUT"):
        detector_timeout()
    with pytest.raises(AttribError, match="> 0"):
        DetectorRunner([], timeout=0)


def test_make_runner_names_and_unknown():
    assert make_runner(names=["npr"]).names == ["npr"]
    with pytest.raises(AttribError, match="unknown detector 'nope'.*spectral"):
        make_runner(names=["nope"])


def test_summarise():
    line = summarise(
        [Evidence("a", "synthetic", 0.93, "sdxl"), Evidence.failure("b", "timed out after 1 s"), Evidence.failure("c", "boom")]
    )
    assert line == "a synthetic 0.93 (sdxl) · b timeout · c error"
    assert summarise([]) == "none"


# ------------------------------------------------------------------------ built-in detectors


def test_npr_flags_interpolation_and_spectral_flags_a_checkerboard():
    photo = photo_crop()
    npr, spectral = NPRDetector(), SpectralDetector()
    base_npr = npr.detect(DetectorImage(photo)).score
    for method in (Image.NEAREST, Image.BILINEAR, Image.BICUBIC):
        ev = npr.detect(DetectorImage(upsampled(photo, 2, method)))
        assert ev.verdict == "synthetic" and ev.score > base_npr + 0.3
        assert ev.details["period"] == 2
    base = spectral.detect(DetectorImage(photo))
    ev = spectral.detect(DetectorImage(checkerboard(photo)))
    assert base.verdict != "synthetic"
    assert ev.verdict == "synthetic" and ev.score > base.score + 0.3 and ev.details["period"] == 2
    assert ev.details["peaks"][0]["frequency"] == ["4/8", "4/8"]


def test_builtin_detectors_on_zoo_images(tmp_path):
    """Real zoo images score lower, on average, than images of a transposed-conv generator."""
    from attrib.zoo import REAL, generate, generator_spec

    real = generate(REAL, 6, 64, seed=3)
    fake = generate(generator_spec("tconv-k4", 0), 6, 64, seed=3)
    for det in (SpectralDetector(), NPRDetector()):
        r = np.mean([det.detect(DetectorImage(p)).score for p in real])
        f = np.mean([det.detect(DetectorImage(p)).score for p in fake])
        assert f > r, det.name


def test_small_and_large_images_are_bounded():
    tiny = SpectralDetector().detect(DetectorImage(synthetic(0, 0, 16)))
    assert tiny.verdict == "undetermined" and tiny.score is None and "32 pixels" in tiny.details["reason"]
    flat = NPRDetector().detect(DetectorImage(np.full((64, 64, 3), 9, np.uint8)))
    assert flat.verdict == "undetermined" and flat.score is None and "flat" in flat.details["reason"]
    odd = NPRDetector().detect(DetectorImage(synthetic(0, 0, 64)[:37, :61]))
    assert odd.error is None and 0 <= odd.score <= 1
    big = np.random.default_rng(0).integers(0, 256, (2000, 3000, 3), dtype=np.uint8)
    t0 = time.monotonic()
    for det in (SpectralDetector(), NPRDetector()):
        ev = det.detect(DetectorImage(big))
        assert ev.details["tiles"] == 16
    assert time.monotonic() - t0 < 5


# ------------------------------------------------------------------------------------ CLI


def test_detect_json_contract(tmp_path):
    good = write_png(tmp_path / "good.png", checkerboard(photo_crop(128)))
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    r = invoke(build_cli(), "detect", "--json", good, bad)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert [row["path"] for row in rows] == [str(good), str(bad)]
    assert set(rows[0]) == {"path", "error", "detectors"} and rows[0]["error"] is None
    assert [d["detector"] for d in rows[0]["detectors"]] == ["spectral", "npr"]
    assert all(set(d) == KEYS for d in rows[0]["detectors"])
    assert rows[1]["detectors"] == [] and "not an image" in rows[1]["error"]


def test_detect_table_filter_stdin_and_exit_codes(tmp_path):
    cli = build_cli()
    good = write_png(tmp_path / "x" / "good.png", synthetic(0, 0, 64))
    r = invoke(cli, "detect", "-d", "npr", tmp_path / "x")
    assert r.exit_code == 0 and "npr" in r.output and "spectral" not in r.output
    r = invoke(cli, "detect", "--json", "-", input=good.read_bytes())
    assert json.loads(r.output)["path"] == "-"
    r = invoke(cli, "detect", "-d", "nope", good)
    assert r.exit_code == 2 and "unknown detector 'nope'" in r.output
    bad = tmp_path / "bad.png"
    bad.write_bytes(png_bytes(synthetic(0, 0))[:60])
    r = invoke(cli, "detect", bad)
    assert r.exit_code == 1 and "no image could be read" in r.output and "Traceback" not in r.output
    r = invoke(cli, "detect", "--detector-timeout", "0", good)
    assert r.exit_code == 2
    r = invoke(cli, "detect", tmp_path / "missing.png")
    assert r.exit_code == 2


def test_detect_reports_broken_and_slow_plugin_detectors(tmp_path):
    good = write_png(tmp_path / "good.png", synthetic(0, 0, 64))
    sleepy = Sleepy(30)
    cli = cli_with(Boom(), sleepy)
    t0 = time.monotonic()
    r = invoke(cli, "detect", "--json", "--detector-timeout", "0.3", good, good)
    assert r.exit_code == 0, r.output
    assert time.monotonic() - t0 < 5
    rows = [json.loads(line) for line in r.output.splitlines()]
    by_name = {d["detector"]: d for d in rows[0]["detectors"]}
    assert by_name["boom"]["error"] == "RuntimeError: kaput"
    assert by_name["sleepy"]["error"] == "timed out after 0.3 s"
    assert by_name["spectral"]["error"] is None
    assert "still busy" in {d["detector"]: d for d in rows[1]["detectors"]}["sleepy"]["error"]
    sleepy.release.set()
    r = invoke(cli, "detect", good)
    assert "boom" in r.output and "error: RuntimeError: kaput" in r.output


def test_detect_many_files_keeps_order(tmp_path):
    folder = tmp_path / "many"
    for i in range(35):  # more than one decoding chunk
        write_png(folder / f"{i:03d}.png", synthetic(i % 4, i, 40))
    r = invoke(build_cli(), "detect", "--json", "-d", "npr", folder)
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert [row["path"] for row in rows] == [str(folder / f"{i:03d}.png") for i in range(35)]
    assert all(row["detectors"][0]["error"] is None for row in rows)


def test_detectors_list(tmp_path):
    r = invoke(build_cli(), "detectors", "list", "--json")
    rows = json.loads(r.output)
    assert [row["name"] for row in rows][:2] == ["spectral", "npr"]
    assert rows[0]["plugin"] == "attrib.default_plugins.detectors"
    r = invoke(build_cli(), "detectors", "list")
    assert "spectral" in r.output and "npr" in r.output


@pytest.fixture
def gallery(tmp_path, source_dirs):
    g = tmp_path / "gal"
    cli = build_cli()
    for name in ("src0", "src1"):
        files = sorted(source_dirs[name].iterdir())[:4]
        r = invoke(cli, "--gallery", g, "enroll", "--generator", name, *files)
        assert r.exit_code == 0, r.output
    return g


def test_identify_carries_detector_evidence(gallery, source_dirs, tmp_path):
    q = sorted(source_dirs["src1"].iterdir())[6]
    bad = tmp_path / "bad.png"
    bad.write_text("no")
    r = invoke(build_cli(), "-g", gallery, "identify", "--json", q, bad)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert [d["detector"] for d in rows[0]["detectors"]] == ["spectral", "npr"]
    assert rows[1]["detectors"] == [] and rows[1]["error"]
    r = invoke(build_cli(), "-g", gallery, "identify", "--json", "--no-detectors", q)
    assert json.loads(r.output)["detectors"] == []
    r = invoke(build_cli(), "-g", gallery, "identify", "-d", "npr", q)
    assert "detectors: npr " in r.output and "spectral" not in r.output


def test_identify_stays_fast_with_a_hanging_detector(gallery, source_dirs):
    queries = sorted(source_dirs["src0"].iterdir())[4:8]
    sleepy = Sleepy(60)
    t0 = time.monotonic()
    r = invoke(cli_with(sleepy), "-g", gallery, "identify", "--json", "--detector-timeout", "0.3", *queries)
    assert r.exit_code == 0, r.output
    assert time.monotonic() - t0 < 10  # one time-out, then skipped while it hangs
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert all(row["source"] == "src0" or row["candidates"][0]["source"] == "src0" for row in rows)
    errors = [{d["detector"]: d for d in row["detectors"]}["sleepy"]["error"] for row in rows]
    assert errors[0] == "timed out after 0.3 s" and all("still busy" in e for e in errors[1:])
    sleepy.release.set()
