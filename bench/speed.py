"""End-to-end speed of identify and enroll, per stage, on this machine.

    python bench/speed.py [--encoder residual] [--n 64] [--json out.json]

Writes PNGs of 256x256 and 1024x1024 (zoo-generated content tiled up, so decoding costs what a
real PNG costs), enrolls a gallery, then identifies them in batches through the same code path
as ``attrib identify``: decode (Pillow, thread pool), encode, search (FAISS). Reports images/s
end to end and the share of each stage; the target is decode + search < 20% of encoder time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from attrib.encoders import get_encoder
from attrib.gallery import Gallery
from attrib.pipeline import StageTimer, embed_items, load_many


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    from attrib.zoo import default_zoo, generate

    spec = default_zoo(1)[0]
    tiles_ = generate(spec, 8, 128, seed)
    rng = np.random.default_rng(seed)
    paths = []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        reps = -(-size // 128)
        grid = np.concatenate([np.concatenate([tiles_[rng.integers(8)] for _ in range(reps)], 1) for _ in range(reps)], 0)
        p = folder / f"{size}-{i:04d}.png"
        Image.fromarray(grid[:size, :size]).save(p)
        paths.append(p)
    return paths


def run(encoder_name: str, n: int) -> dict:
    enc = get_encoder(encoder_name)
    out = {"encoder": enc.id}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        g = Gallery(tmp / "g", encoder=enc)
        enroll_paths = make_images(tmp / "enroll", 40, 256, seed=1)
        t0 = time.perf_counter()
        items, emb = embed_items(enc, load_many(enroll_paths))
        for k in range(8):
            g.enroll(f"gen{k}", emb[k * 5 : k * 5 + 5], [it.record for it in items[k * 5 : k * 5 + 5]])
        out["enroll_images_per_s"] = round(40 / (time.perf_counter() - t0), 2)
        g.identify(emb[:1])  # build the index once, as a long-running reader would have it
        for size in (256, 1024):
            paths = make_images(tmp / f"q{size}", n, size, seed=2)
            timer = StageTimer()
            t0 = time.perf_counter()
            items, emb = embed_items(enc, load_many(paths), timer=timer)
            with timer.stage("search", len(emb)):
                g.identify(emb, top_k=5)
            wall = time.perf_counter() - t0
            stages = timer.to_dict()
            enc_s = stages["encode"]["seconds"]
            overhead = (stages["decode"]["seconds"] + stages["search"]["seconds"]) / enc_s
            out[f"identify_{size}"] = {
                "images_per_s": round(n / wall, 2),
                "stages": stages,
                "decode_plus_search_over_encode": round(overhead, 3),
            }
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="residual")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    res = run(args.encoder, args.n)
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
