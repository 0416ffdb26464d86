"""Real photos from files that installed packages ship, and the seeded content pool of crops."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import AttribError

# Photo files inside the wheels of scikit-image, scikit-learn and matplotlib: (package, path in it).
# Read as files, so nothing can trigger a download (skimage.data fetches some images with pooch)
# and the packages are not even imported. Synthetic images (colour wheel, logo, chessboards) are
# left out.
_PHOTO_FILES = {
    "skimage.astronaut": ("skimage", "data/astronaut.png"),
    "skimage.chelsea": ("skimage", "data/chelsea.png"),
    "skimage.coffee": ("skimage", "data/coffee.png"),
    "skimage.rocket": ("skimage", "data/rocket.jpg"),
    "skimage.hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "skimage.immunohistochemistry": ("skimage", "data/ihc.png"),
    "skimage.motorcycle": ("skimage", "data/motorcycle_left.png"),
    "skimage.retina": ("skimage", "data/retina.jpg"),
    "skimage.camera": ("skimage", "data/camera.png"),
    "skimage.moon": ("skimage", "data/moon.png"),
    "skimage.brick": ("skimage", "data/brick.png"),
    "skimage.grass": ("skimage", "data/grass.png"),
    "skimage.gravel": ("skimage", "data/gravel.png"),
    "skimage.coins": ("skimage", "data/coins.png"),
    "skimage.clock": ("skimage", "data/clock_motion.png"),
    "skimage.cell": ("skimage", "data/cell.png"),
    "skimage.page": ("skimage", "data/page.png"),
    "skimage.text": ("skimage", "data/text.png"),
    "sklearn.china": ("sklearn", "datasets/images/china.jpg"),
    "sklearn.flower": ("sklearn", "datasets/images/flower.jpg"),
    "matplotlib.grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}


def _photo_path(package: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / relative


@functools.lru_cache(maxsize=1)
def load_photos() -> tuple[tuple[str, np.ndarray], ...]:
    photos = []
    for name, (package, relative) in _PHOTO_FILES.items():
        path = _photo_path(package, relative)
        if path is None or not path.is_file():
            continue  # package missing, or this version ships no such photo
        try:
            with Image.open(path) as img:
                pixels = np.asarray(img.convert("RGB"))
        except OSError:
            continue  # unreadable file
        pixels.setflags(write=False)
        photos.append((name, pixels))
    if not photos:
        raise AttribError("no real photos found: scikit-image, scikit-learn or matplotlib must be installed")
    return tuple(photos)


def real_photos() -> list[tuple[str, np.ndarray]]:
    """``(name, H x W x 3 uint8)`` photos shipped inside installed packages (read-only arrays).

    Grayscale photos are repeated to three channels. About 20 photos with a full install.
    """
    return list(load_photos())


@functools.lru_cache(maxsize=8)
def content_pool(min_side: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The photos at least ``min_side`` on each side (never upscaled: 'real' stays real) and
    their sampling probabilities: colour photos count twice, so about 2/3 of crops are in colour."""
    images = [pixels for _, pixels in load_photos() if min(pixels.shape[:2]) >= min_side]
    if not images:
        largest = max(min(pixels.shape[:2]) for _, pixels in load_photos())
        raise AttribError(f"image size {min_side} is larger than every real photo (at most {largest} pixels)")
    weights = np.array([1.0 if (p[..., :1] == p).all() else 2.0 for p in images])
    return tuple(images), weights / weights.sum()


def random_crop(rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``size`` x ``size`` crop of a random photo, flipped left-right half the time."""
    images, probs = content_pool(size)
    pixels = images[rng.choice(len(images), p=probs)]
    h, w = pixels.shape[:2]
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    crop = pixels[y : y + size, x : x + size]
    return crop[:, ::-1] if rng.random() < 0.5 else crop
