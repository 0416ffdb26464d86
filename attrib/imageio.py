"""Safe image loading.

Every image becomes an ``H x W x 3`` ``uint8`` RGB array, at its native resolution: fingerprints
live in the highest frequencies, so nothing here resizes. Encoders crop or tile; an image smaller
than a crop is enlarged by mirroring (:func:`reflect_pad`), never by resampling.

Handled: EXIF orientation, palette / grayscale / CMYK / 16-bit / float modes, alpha (composited
on white, as a viewer shows it), animated files (first frame). Refused, with one line saying why:
files that are not images, truncated or corrupt data, and images over a pixel bound (decompression
bombs). Errors are :class:`attrib.errors.ImageError`.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError
from .views import jpeg_quality, stands_in, view_of

#: Default bound on width x height. 1e8 pixels is a 10k x 10k image (300 MB as RGB).
DEFAULT_MAX_PIXELS = 100_000_000
#: Files larger than this are refused before decoding.
DEFAULT_MAX_BYTES = 200 * 1024 * 1024
#: File suffixes collected when a folder is given.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif", ".avif", ".heic"}

#: thumbnails (:func:`thumbnail`): at most this many pixels a side, JPEG at this quality: 1-6 KB
THUMB_SIDE = 96
THUMB_QUALITY = 80

ImageInput = Union[str, os.PathLike, bytes, np.ndarray, Image.Image]


def max_pixels() -> int:
    """The pixel bound in force (``ATTRIB_MAX_PIXELS`` overrides the default)."""
    value = os.environ.get("ATTRIB_MAX_PIXELS")
    return int(value) if value else DEFAULT_MAX_PIXELS


@dataclass
class LoadedImage:
    """A decoded image plus what a gallery records about the file it came from."""

    pixels: np.ndarray | None  # H x W x 3 uint8 (released after embedding on big runs)
    sha256: str
    format: str | None
    origin: str | None = None
    width: int = 0
    height: int = 0
    thumbnail: bytes | None = None  # made on request (enrollment): :func:`thumbnail`
    jpeg_quality: int | None = None  # a JPEG file's estimated quality (:func:`attrib.views.jpeg_quality`)

    @property
    def view(self) -> str | None:
        """The view this image is scored in as a query (:func:`attrib.views.view_of`)."""
        return view_of(self.jpeg_quality)

    @property
    def stands_in(self) -> str | None:
        """The view this image already stands in as a sample, as it is (:func:`attrib.views.stands_in`)."""
        return stands_in(self.jpeg_quality)

    def __post_init__(self):
        if self.pixels is not None:
            self.height, self.width = (int(v) for v in self.pixels.shape[:2])


def thumbnail(pixels: np.ndarray, side: int = THUMB_SIDE) -> bytes:
    """A small JPEG of ``pixels`` (H x W x 3 uint8) for people to look at: at most ``side`` pixels
    a side, aspect kept, :data:`THUMB_QUALITY`; 1-6 KB at the default size. Never fed to an encoder."""
    img = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "RGB")
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=THUMB_QUALITY, optimize=True)
    return buf.getvalue()


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "I;16N"):
        arr = np.asarray(img).astype(np.float64)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img).astype(np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scale = 255.0 if hi <= 1.0 and lo >= 0.0 else 1.0
        arr = np.clip(np.nan_to_num(arr) * scale + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return np.asarray(img)


def _open(data: bytes, name: str) -> tuple[np.ndarray, str | None, int | None]:
    limit = max_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format
            quality = jpeg_quality(img)
            width, height = img.size
            if width * height > limit:
                raise ImageError(f"{name}: {width}x{height} is over the {limit:,}-pixel bound (ATTRIB_MAX_PIXELS raises it)")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # in place: no copy of an image without an orientation tag
            pixels = _to_rgb(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: image is too large (decompression bomb bound)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"{name}: corrupt or truncated image ({reason})") from None
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to decode this image") from None
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ImageError(f"{name}: unsupported image layout {pixels.shape}")
    return np.ascontiguousarray(pixels, dtype=np.uint8), fmt, quality


def load_image(source: ImageInput, name: str | None = None) -> LoadedImage:
    """Decode ``source`` (a path, raw bytes, a PIL image or an array) into a :class:`LoadedImage`."""
    if isinstance(source, np.ndarray):
        arr = source
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
            raise ImageError(f"{name or 'array'}: expected an H x W x 3 uint8 array, got {arr.shape} {arr.dtype}")
        arr = np.ascontiguousarray(arr[..., :3])
        return LoadedImage(arr, hashlib.sha256(arr.tobytes()).hexdigest(), None, name)
    if isinstance(source, Image.Image):
        buf = io.BytesIO()
        source.save(buf, format="PNG")
        source = buf.getvalue()
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "<bytes>"
        origin = name
    else:
        path = Path(source)
        label = name or str(path)
        origin = str(path)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ImageError(f"{label}: no such file") from None
        except OSError as exc:
            raise ImageError(f"{label}: cannot read ({exc.strerror or exc})") from None
        if path.is_dir():
            raise ImageError(f"{label}: is a folder, not an image")
        if size > DEFAULT_MAX_BYTES:
            raise ImageError(f"{label}: file is {size / 2**20:.0f} MiB, over the {DEFAULT_MAX_BYTES // 2**20} MiB bound")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageError(f"{label}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise ImageError(f"{label}: empty file")
    pixels, fmt, quality = _open(data, label)
    return LoadedImage(pixels, hashlib.sha256(data).hexdigest(), fmt, origin, jpeg_quality=quality)


def reflect_pad(image: np.ndarray, pad_h: int, pad_w: int) -> np.ndarray:
    """``image`` (H x W x C) grown by ``pad_h`` rows at the bottom and ``pad_w`` columns at the
    right, mirrored from its own pixels (no resampling, so the fingerprint's pixel grid is kept).

    Pads of any size: numpy's reflect pads at most ``size - 1`` per call, so it is repeated. An
    image one pixel high or wide has nothing to mirror; it is edge-padded instead.
    """
    if min(image.shape[:2]) <= 1:
        return np.pad(image, ((0, max(0, pad_h)), (0, max(0, pad_w)), (0, 0)), mode="edge")
    while pad_h > 0 or pad_w > 0:
        ph, pw = min(max(0, pad_h), image.shape[0] - 1), min(max(0, pad_w), image.shape[1] - 1)
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect")
        pad_h, pad_w = pad_h - ph, pad_w - pw
    return image


def iter_image_paths(paths: Iterable[str | os.PathLike], recursive: bool = True) -> Iterator[Path]:
    """Expand files and folders into image file paths, sorted, folders recursively.

    Files named explicitly are always yielded (so a bad one is reported); inside folders only files
    with an image suffix are collected and hidden files are skipped.
    """
    for p in paths:
        path = Path(p)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            for child in sorted(path.glob(pattern)):
                if (
                    child.is_file()
                    and child.suffix.lower() in IMAGE_SUFFIXES
                    and not any(part.startswith(".") for part in child.relative_to(path).parts)
                ):
                    yield child
        else:
            yield path
