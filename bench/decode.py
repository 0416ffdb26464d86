"""Decoding options for big images, measured (issue 13, part 3): what the decode stage costs per
image and what each option saves.

    python bench/decode.py [--size 4096] [--n 4] [--reps 3] [--json bench/results/decode.json]

* ``current``: attrib's decode (:func:`attrib.imageio.load_image`: read, sha256, Pillow decode,
  orientation in place, one copy into numpy).
* ``exif_copy``: the same with the orientation step as it was before (``exif_transpose`` returns
  a full copy of every image without an orientation tag).
* ``png_rows``: Pillow decoding a PNG only down to the last row ``fp-joint1`` reads (its 5 tiles
  end at 78% of the height): what "decode only the region the encoder reads" can save on PNG,
  whose rows must be inflated in order (it cannot skip the top or the sides). Not used by attrib
  (it needs Pillow internals); measured to decide.
* ``jpeg_full`` / ``jpeg_draft``: a JPEG of the same pixels decoded whole and with Pillow's
  ``draft`` (DCT-domain downscaling by 2). ``draft`` changes the pixels (a half-size image): a
  fingerprint encoder must not read it, so attrib does not use it; measured for the record.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import make_images  # noqa: E402

from attrib.imageio import load_image  # noqa: E402


def best_ms(fn, paths, reps):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for p in paths:
            fn(p)
        best = min(best, (time.perf_counter() - t0) / len(paths))
    return round(1000 * best, 2)


def exif_copy(path):
    img = Image.open(io.BytesIO(Path(path).read_bytes()))
    img.load()
    return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


def png_rows(path, fraction=0.78):
    img = Image.open(path)
    w, h = img.size
    rows = int(np.ceil(h * fraction))
    decoder, _, offset, args = img.tile[0][:4]
    img.tile = (
        [type(img.tile[0])(decoder, (0, 0, w, rows), offset, args)]
        if hasattr(img.tile[0], "_fields")
        else [(decoder, (0, 0, w, rows), offset, args)]
    )
    img._size = (w, rows)
    img.load()
    return np.asarray(img)


def jpeg(path, draft):
    img = Image.open(path)
    if draft:
        img.draft("RGB", (img.width // 2, img.height // 2))
    img.load()
    return np.asarray(img)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), args.n, args.size, seed=2)
        jpegs = []
        for p in paths:
            q = p.with_suffix(".jpg")
            Image.open(p).save(q, quality=90)
            jpegs.append(q)
        assert np.array_equal(png_rows(paths[0]), load_image(paths[0]).pixels[: int(np.ceil(args.size * 0.78))])
        res = {
            "size": args.size,
            "ms_per_image": {
                "current": best_ms(load_image, paths, args.reps),
                "exif_copy": best_ms(exif_copy, paths, args.reps),
                "png_rows_78pct": best_ms(png_rows, paths, args.reps),
                "jpeg_full": best_ms(lambda p: jpeg(p, False), jpegs, args.reps),
                "jpeg_draft_half": best_ms(lambda p: jpeg(p, True), jpegs, args.reps),
            },
        }
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
