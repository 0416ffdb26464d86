"""attrib-watermark on images the tests mark themselves with invisible-watermark."""

import json
from importlib.metadata import PackageNotFoundError, version

import attrib_watermark
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from attrib.cli import build_cli
from attrib.detectors import DetectorImage, DetectorRunner
from attrib.plugins import make_plugin_manager


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRIB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ATTRIB_LOAD_PLUGINS", "")  # tests register the module themselves
    monkeypatch.delenv("ATTRIB_WATERMARK_PAYLOADS", raising=False)


def photo(size=320):
    from attrib.zoo import real_photos

    pixels = dict(real_photos())["skimage.astronaut"]
    return np.ascontiguousarray(pixels[:size, :size])


def mark(rgb, bits, order="bgr"):
    """Embed ``bits`` the way a pipeline does: BGR (SD scripts) or RGB handed to OpenCV (diffusers)."""
    from imwatermark import WatermarkEncoder

    enc = WatermarkEncoder()
    enc.set_watermark("bits", list(bits))
    if order == "bgr":
        return np.ascontiguousarray(enc.encode(np.ascontiguousarray(rgb[..., ::-1]), "dwtDct")[..., ::-1])
    return np.ascontiguousarray(enc.encode(np.ascontiguousarray(rgb), "dwtDct"))


def save(path, pixels, **kw):
    Image.fromarray(pixels).save(path, **kw)
    return path


def cli():
    pm = make_plugin_manager()
    pm.register(attrib_watermark, name="watermark")
    return build_cli(pm)


@pytest.mark.parametrize("payload", attrib_watermark.KNOWN, ids=lambda p: p["name"])
@pytest.mark.parametrize("order", ["bgr", "rgb"])
def test_known_payloads_are_found(tmp_path, payload, order):
    path = save(tmp_path / "marked.png", mark(photo(), payload["bits"], order))
    ev = attrib_watermark.WatermarkDetector().detect(DetectorImage(path=path))
    assert ev.verdict == "synthetic" and ev.score >= 0.9
    assert ev.source_hint == payload["source_hint"]
    assert ev.details["payload"] == payload["name"] and ev.details["channel_order"] == order


def test_unmarked_image_is_undetermined():
    ev = attrib_watermark.WatermarkDetector().detect(DetectorImage(photo()))
    assert ev.verdict == "undetermined" and ev.score is None and ev.source_hint is None
    assert len(ev.details["candidates"]) == 2 * len(attrib_watermark.KNOWN)
    assert all(c["bit_accuracy"] < 0.9 for c in ev.details["candidates"])


def test_small_image_is_undetermined():
    ev = attrib_watermark.WatermarkDetector().detect(DetectorImage(photo(128)))
    assert ev.verdict == "undetermined" and "256x256" in ev.details["reason"]


def test_custom_payloads_from_a_file(tmp_path, monkeypatch):
    spec = tmp_path / "payloads.json"
    spec.write_text(json.dumps([{"name": "acme", "source_hint": "acme-diffusion", "text": "ACME"}]))
    monkeypatch.setenv("ATTRIB_WATERMARK_PAYLOADS", str(spec))
    bits = [int(b) for b in np.unpackbits(np.frombuffer(b"ACME", np.uint8))]
    ev = attrib_watermark.WatermarkDetector().detect(DetectorImage(mark(photo(), bits)))
    assert ev.source_hint == "acme-diffusion"
    spec.write_text("{not json")
    out = DetectorRunner([attrib_watermark.WatermarkDetector()], timeout=60).run(photo())
    assert "ATTRIB_WATERMARK_PAYLOADS" in out[0].error  # a bad file is this detector's error, one line


def test_jpeg_recompression_is_reported_not_hidden(tmp_path):
    sdxl = attrib_watermark.KNOWN[0]
    path = save(tmp_path / "marked.jpg", mark(photo(), sdxl["bits"]), quality=75)
    ev = attrib_watermark.WatermarkDetector().detect(DetectorImage(path=path))
    best = max(c["bit_accuracy"] for c in ev.details["candidates"])
    assert ev.verdict in ("synthetic", "undetermined") and 0 <= best <= 1  # fragile scheme: reported as read


def test_detect_cli_demo(tmp_path):
    marked = save(tmp_path / "sdxl.png", mark(photo(), attrib_watermark.KNOWN[0]["bits"]))
    plain = save(tmp_path / "plain.png", photo())
    r = CliRunner().invoke(cli(), ["detect", "--json", "-d", "watermark", str(marked), str(plain)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert rows[0]["detectors"][0]["source_hint"] == "stable-diffusion-xl"
    assert rows[1]["detectors"][0]["verdict"] == "undetermined"
    print(r.output)


def test_installed_entry_point_is_listed(monkeypatch):
    try:
        installed = version("attrib-watermark")
    except PackageNotFoundError:
        pytest.skip("attrib-watermark is not pip-installed here")
    monkeypatch.setenv("ATTRIB_LOAD_PLUGINS", "attrib-watermark")
    r = CliRunner().invoke(build_cli(), ["plugins", "--json"], catch_exceptions=False)
    [row] = [p for p in json.loads(r.output) if p["distribution"] == "attrib-watermark"]
    assert row["version"] == installed and row["hooks"] == ["register_detectors"]
    assert row["registers"] == {"detectors": ["watermark"]} and row["error"] is None
