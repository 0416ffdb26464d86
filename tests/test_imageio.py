import io

import numpy as np
import pytest
from PIL import Image

from attrib.errors import ImageError
from attrib.imageio import iter_image_paths, load_image, reflect_pad

from .conftest import png_bytes, synthetic


def test_png_roundtrip_native_size(tmp_path):
    arr = synthetic(0, 0, 97)
    p = tmp_path / "a.png"
    Image.fromarray(arr).save(p)
    img = load_image(p)
    assert img.pixels.shape == (97, 97, 3) and img.pixels.dtype == np.uint8
    assert np.array_equal(img.pixels, arr)
    assert img.format == "PNG" and len(img.sha256) == 64


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "RGBA", "LA", "I;16", "I", "F", "1"])
def test_odd_modes_become_rgb(mode):
    base = Image.fromarray(synthetic(1, 0, 32))
    if mode in ("I;16", "I", "F"):
        img = Image.fromarray(
            (np.asarray(base.convert("L")).astype(np.uint16) * 257).astype(
                np.uint16 if mode == "I;16" else np.int32 if mode == "I" else np.float32
            )
        )
    else:
        img = base.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="TIFF" if mode in ("I;16", "I", "F", "CMYK") else "PNG")
    out = load_image(buf.getvalue())
    assert out.pixels.shape == (32, 32, 3)


def test_alpha_composited_on_white():
    rgba = np.zeros((8, 8, 4), np.uint8)
    out = load_image(_png(rgba))
    assert (out.pixels == 255).all()


def _png(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_exif_orientation_applied():
    arr = synthetic(2, 0, 16)[:, :10]  # 16 high, 10 wide
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    out = load_image(buf.getvalue())
    assert out.pixels.shape[:2] == (10, 16)


def test_animated_gif_first_frame():
    frames = [Image.fromarray(synthetic(i, 0, 16)).convert("P") for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    assert load_image(buf.getvalue()).pixels.shape == (16, 16, 3)


def test_corrupt_and_truncated_and_non_image(tmp_path):
    data = png_bytes(synthetic(0, 1, 64))
    with pytest.raises(ImageError, match="truncated|corrupt"):
        load_image(data[: len(data) // 2], name="half.png")
    with pytest.raises(ImageError, match="not an image"):
        load_image(b"hello, I am text", name="t.txt")
    with pytest.raises(ImageError, match="empty"):
        load_image(b"", name="e.png")
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_pixel_bound(monkeypatch):
    monkeypatch.setenv("ATTRIB_MAX_PIXELS", "1000")
    with pytest.raises(ImageError, match="pixel bound"):
        load_image(png_bytes(synthetic(0, 0, 64)), name="big.png")


def test_message_is_one_line():
    with pytest.raises(ImageError) as info:
        load_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, name="x.png")
    assert "\n" not in str(info.value)


def test_iter_image_paths(tmp_path):
    for name in ["a.png", "b.JPG", "sub/c.webp", ".hidden/d.png", "notes.txt"]:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_paths([tmp_path])]
    assert found == ["a.png", "b.JPG", "sub/c.webp"]
    assert list(iter_image_paths([tmp_path / "notes.txt"])) == [tmp_path / "notes.txt"]


def test_reflect_pad_mirrors_any_amount():
    img = np.arange(3 * 2 * 3, dtype=np.uint8).reshape(3, 2, 3)
    out = reflect_pad(img, 10, 7)  # more than numpy's one-call reflect allows
    assert out.shape == (13, 9, 3)
    assert np.array_equal(out[:3, :2], img)  # the image itself is untouched, top left
    assert np.array_equal(out[3, :2], img[1]) and np.array_equal(out[:3, 2], img[:, 0])  # mirrored
    assert np.array_equal(reflect_pad(img, 0, 0), img)
    line = np.full((1, 4, 3), 9, np.uint8)  # nothing to mirror: edge-padded, no endless loop
    assert np.array_equal(reflect_pad(line, 3, 2), np.full((4, 6, 3), 9, np.uint8))


def test_load_many_keeps_order_and_decodes_a_bounded_number_ahead(tmp_path, monkeypatch):
    """Decoding runs ahead of the consumer in threads, in input order, never more than
    ``lookahead`` images ahead (a folder of 4096 px images must not be decoded into memory at once)."""
    import threading

    from attrib import pipeline

    paths = []
    for i in range(12):
        p = tmp_path / f"{i:02d}.png"
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(p)
        paths.append(p)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    paths.insert(5, tmp_path / "bad.png")
    started, lock = [], threading.Lock()
    real = pipeline._load

    def load(path):
        with lock:
            started.append(path)
        return real(path)

    monkeypatch.setattr(pipeline, "_load", load)
    consumed = 0
    for item, path in zip(pipeline.load_many(paths, workers=2, lookahead=3), paths):
        consumed += 1
        assert item.path == str(path)
        assert len(started) <= consumed + 3  # the ones consumed, and at most 3 ahead
        if path.name == "bad.png":
            assert item.error and item.image is None
        else:
            assert item.image.pixels[0, 0, 0] == int(path.stem)
    assert consumed == len(paths) == len(started)


def test_embed_items_sends_big_images_in_small_batches(tmp_path):
    """Batches close at ``batch_size`` images or ``batch_pixels`` pixels, whichever comes first, so
    decoding big images overlaps with encoding instead of waiting for a full batch."""
    from attrib.encoders import get_encoder
    from attrib.pipeline import embed_items, load_many

    enc = get_encoder("residual")
    sizes = []
    real = enc.embed
    enc.embed = lambda images: sizes.append(len(images)) or real(images)
    paths = []
    for i, side in enumerate([64] * 5 + [200] * 3 + [64] * 2):
        p = tmp_path / f"{i:02d}.png"
        Image.fromarray(np.full((side, side, 3), 7 * i, np.uint8)).save(p)
        paths.append(p)
    items, emb = embed_items(enc, load_many(paths), batch_size=4, batch_pixels=40_000)
    assert sizes == [4, 2, 1, 1, 2] and len(emb) == len(items) == 10  # 4 small; small + big; big (40,000 px); big; the last two
