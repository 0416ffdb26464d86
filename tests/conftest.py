import io

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def user_dir(tmp_path_factory, monkeypatch):
    """Every test gets its own ATTRIB_HOME; the zoo cache is shared per session (it is deterministic)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("ATTRIB_HOME", str(home))
    monkeypatch.delenv("ATTRIB_GALLERY", raising=False)
    monkeypatch.setenv("ATTRIB_CACHE", str(_shared_cache(tmp_path_factory)))
    monkeypatch.setenv("ATTRIB_LOAD_PLUGINS", "")
    return home


#: The encoder of galleries whose tests read what the fingerprint says about :func:`synthetic`
#: stripe patterns (CLI, service, verdict, discovery and page plumbing). The default (fp-joint4)
#: normalises scores against cohorts of real and zoo images; these patterns are unlike both, and at
#: FAR 0.01 it names about 80% of their own queries where fp-joint1's raw cosines name all (README,
#: "Real generators"). What the default says about generator-like images: test_zoo, test_selfdesc.
PATTERN_ENCODER = "fp-joint1"

_CACHE = {}


def _shared_cache(factory):
    if "dir" not in _CACHE:
        _CACHE["dir"] = factory.mktemp("cache")
    return _CACHE["dir"]


def synthetic(source: int, index: int, size: int = 64) -> np.ndarray:
    """A noisy image carrying a periodic pattern whose period/orientation depends on ``source``:
    a cheap stand-in for a generator fingerprint (tests that need real zoo data use the zoo)."""
    rng = np.random.default_rng([source, index])
    base = rng.normal(128, 30, (size, size, 3))
    base = (base + np.roll(base, 1, 0) + np.roll(base, 1, 1)) / 3  # some spatial correlation
    yy, xx = np.mgrid[:size, :size]
    period = [2, 3, 4, 5, 6, 8][source % 6]
    pattern = np.cos(2 * np.pi * (xx if source % 2 else yy) / period) + 0.5 * np.cos(2 * np.pi * (xx + yy) / (period + 1 + source // 6))
    img = base + 12 * pattern[..., None] * np.array([1.0, 0.6 + 0.1 * (source % 4), 0.3])
    return np.clip(img, 0, 255).astype(np.uint8)


def write_png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def source_dirs(tmp_path):
    """Folders src0..src3 with 8 synthetic images each."""
    dirs = {}
    for s in range(4):
        d = tmp_path / "data" / f"src{s}"
        for i in range(8):
            write_png(d / f"{i:03d}.png", synthetic(s, i))
        dirs[f"src{s}"] = d
    return dirs


def png_bytes(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
