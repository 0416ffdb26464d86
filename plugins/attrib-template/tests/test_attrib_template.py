"""Tests for the template plugin: the detector's evidence, the command, the entry point."""

import json
from importlib.metadata import PackageNotFoundError, version

import attrib_template
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from attrib.cli import build_cli
from attrib.detectors import DetectorImage
from attrib.plugins import make_plugin_manager


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRIB_HOME", str(tmp_path / "home"))  # never touch the user's attrib dir
    monkeypatch.setenv("ATTRIB_LOAD_PLUGINS", "")  # only what the test registers


def cli():
    """An attrib CLI with this plugin registered in-process (installed or not)."""
    pm = make_plugin_manager()
    pm.register(attrib_template, name="template")
    return build_cli(pm)


def test_detector_evidence():
    ev = attrib_template.SizeDetector().detect(DetectorImage(np.zeros((128, 192, 3), np.uint8)))
    assert ev.verdict == "undetermined" and ev.score == 0.6
    assert ev.details == {"width": 192, "height": 128, "multiple_of_64": True, "summary": "192x128, multiples of 64"}
    ev = attrib_template.SizeDetector().detect(DetectorImage(np.zeros((100, 64, 3), np.uint8)))
    assert ev.score == 0.4 and ev.details["multiple_of_64"] is False


def test_detect_command(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
    r = CliRunner().invoke(cli(), ["detect", "--json", "-d", "template-size", str(path)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    [ev] = json.loads(r.output)["detectors"]
    assert ev["detector"] == "template-size" and ev["details"]["multiple_of_64"] is True
    print(r.output)


def test_hello_command():
    r = CliRunner().invoke(cli(), ["template-hello"], catch_exceptions=False)
    assert r.exit_code == 0 and "template-size" in r.output and "spectral" in r.output


def test_installed_entry_point_is_listed(monkeypatch):
    try:
        installed = version("attrib-template")
    except PackageNotFoundError:
        pytest.skip("attrib-template is not pip-installed here")
    monkeypatch.setenv("ATTRIB_LOAD_PLUGINS", "attrib-template")
    r = CliRunner().invoke(build_cli(), ["plugins", "--json"], catch_exceptions=False)
    [row] = [p for p in json.loads(r.output) if p["distribution"] == "attrib-template"]
    assert row["version"] == installed and row["hooks"] == ["register_commands", "register_detectors"]
    assert row["registers"] == {"commands": ["template-hello"], "detectors": ["template-size"]}
