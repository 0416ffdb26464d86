"""Throughput of ``attrib batch`` on local Ray (1 and 2 workers) beside ``attrib identify``, same images.

    python bench/batch.py [--n 400] [--size 256] [--encoder fp-joint1] [--json bench/results/batch.json]

Writes N PNGs (zoo content tiled up, as bench/speed.py does), enrolls a gallery of 8 sources, then
runs, each as its own process (what a user runs, start-up included): ``attrib identify --json``,
``attrib batch --workers 1`` and ``attrib batch --workers 2`` (local Ray started by the command),
and reports images/s from each command's wall time and the ratio of each batch run to identify.
Batch also reports its own images/s (from Ray's start to the last row written). Detectors run, as
they do by default in both. One run each: the machine's load average is recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import make_images  # noqa: E402

from attrib.encoders import get_encoder  # noqa: E402
from attrib.gallery import Gallery  # noqa: E402
from attrib.pipeline import embed_items, load_many  # noqa: E402


def attrib_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "attrib", *map(str, args)]


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, done.stdout


def run(n: int, size: int, encoder: str, workers: list[int]) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")])}
    out: dict = {"n": n, "size": size, "cpus": os.cpu_count(), "load_before": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        enc = get_encoder(encoder)
        out["encoder"] = enc.id
        gallery = Gallery(tmp / "g", encoder=enc)
        items, emb = embed_items(enc, load_many(make_images(tmp / "enroll", 40, 256, seed=1)))
        for k in range(8):
            gallery.enroll(f"gen{k}", emb[k * 5 : k * 5 + 5], [it.record for it in items[k * 5 : k * 5 + 5]])
        gallery.close()
        make_images(tmp / "q", n, size, seed=2)
        wall, text = timed(attrib_cmd("-g", tmp / "g", "identify", "--json", tmp / "q"), env)
        assert len(text.splitlines()) == n
        out["identify"] = {"seconds": round(wall, 2), "images_per_s": round(n / wall, 2)}
        for w in workers:
            wall, text = timed(
                attrib_cmd("-g", tmp / "g", "batch", tmp / "q", "--out", tmp / f"out{w}.parquet", "--workers", w, "--json"), env
            )
            summary = json.loads(text)
            assert summary["images"] == n and summary["errors"] == 0
            out[f"batch_{w}_workers"] = {
                "seconds": round(wall, 2),
                "images_per_s": round(n / wall, 2),
                "ratio_to_identify": round(out["identify"]["seconds"] / wall, 3),
                "batch_reported_images_per_s": summary["images_per_s"],
                "batch_startup_s": summary["startup_s"],
                "batch_steady_images_per_s": summary["steady_images_per_s"],
            }
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--encoder", default="fp-joint1")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    res = run(args.n, args.size, args.encoder, args.workers)
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
