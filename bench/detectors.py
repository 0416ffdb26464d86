"""Detectors on the zoo: real-vs-generated AUROC per detector, and images/s.

    python bench/detectors.py --zoo /work/zoo/z200                  # a zoo built by `attrib zoo build`
    python bench/detectors.py --generators 40 [--images 40] [--size 128] [--post jpeg90]
    python bench/detectors.py --zoo DIR --detectors spectral,npr,metadata --json out.json

Labels: the zoo's ``real`` folder (crops of real photos) is 0, every generator folder is 1. Each
detector's ``score`` is the ranking statistic (an image it cannot score ranks as 0.5). Reported
per detector:

* ``auroc``: real vs all generated images; ``auroc_held_out``: real vs the generators of seed 2 and
  up only. The built-in detectors' score mappings were fitted on images of the seed-0 and seed-1
  generators (build seed 1, :mod:`attrib.default_plugins.detectors`); AUROC does not depend on
  that mapping, but this split keeps the check honest.
* ``tpr`` / ``fpr``: the share of generated / real images whose verdict is ``synthetic``.
* ``per_arch``: AUROC of real vs each decoder architecture.
* ``images_per_s``: ``detect`` calls per second on decoded pixels (decoding excluded), one thread.

``--generators N`` builds the zoo into a temporary folder from the zoo cache (``ATTRIB_CACHE``;
generators already trained there are reused, others are trained: seconds each on a CPU).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from attrib.detectors import DetectorImage, available_detectors
from attrib.imageio import iter_image_paths, load_image
from attrib.metrics import auroc
from attrib.plugins import make_plugin_manager

_SEED = re.compile(r"-s(\d+)$")


def zoo_sources(root: Path) -> list[tuple[str, str, list[Path]]]:
    """(name, arch, image paths) per source of a built zoo; without zoo.json, every sub-folder."""
    manifest = root / "zoo.json"
    if manifest.exists():
        entries = [(s["name"], s["arch"]) for s in json.loads(manifest.read_text())["sources"]]
    else:
        print(f"warning: {manifest} not found (a build in progress?): using every folder with images", file=sys.stderr)
        entries = [(p.name, "real" if p.name == "real" else _SEED.sub("", p.name)) for p in sorted(root.iterdir()) if p.is_dir()]
    out = []
    for name, arch in entries:
        files = sorted(iter_image_paths([root / name], recursive=False))
        if files:
            out.append((name, arch, files))
    return out


def build(n: int, images: int, size: int, post: list[str]) -> Path:
    from attrib.zoo import build_zoo, default_zoo

    out = Path(tempfile.mkdtemp(prefix="attrib-bench-zoo-"))
    build_zoo(out, default_zoo(n), images_per_source=images, size=size, post=post, progress=sys.stderr.isatty())
    return out


def speed_by_size(detectors: dict, sizes: list[int], repeats: int = 5) -> dict:
    """Detector calls per second on a real photo tiled (mirrored) up to ``side x side``."""
    from attrib.zoo import real_photos

    photos = dict(real_photos())
    photo = photos["skimage.astronaut"] if "skimage.astronaut" in photos else next(iter(photos.values()))
    out = {}
    for side in sizes:
        reps = -(-side // min(photo.shape[:2]))
        big = np.pad(photo, ((0, photo.shape[0] * (reps - 1)), (0, photo.shape[1] * (reps - 1)), (0, 0)), mode="symmetric")
        image = DetectorImage(pixels=np.ascontiguousarray(big[:side, :side]))
        for name, det in detectors.items():
            det.detect(image)  # warm-up (imports, caches)
            t0 = time.perf_counter()
            for _ in range(repeats):
                det.detect(image)
            out.setdefault(name, {})[f"{side}px"] = round(repeats / (time.perf_counter() - t0), 1)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", type=Path, help="a built zoo folder (real/ + one folder per generator)")
    ap.add_argument("--generators", type=int, default=20, help="without --zoo: build this many generators")
    ap.add_argument("--images", type=int, default=40, help="without --zoo: images per source")
    ap.add_argument("--size", type=int, default=128, help="without --zoo: image side")
    ap.add_argument("--post", action="append", default=[], help="without --zoo: post-processing, e.g. jpeg90")
    ap.add_argument("--detectors", default="spectral,npr", help="comma-separated detector names")
    ap.add_argument("--max-per-source", type=int, default=0, help="use at most this many images of each source")
    ap.add_argument(
        "--extra-real",
        type=int,
        default=0,
        help="add this many more real crops (zoo.generate(REAL, ..., seed=2): other crops of the same photos) "
        "as negatives, for a tighter AUROC than the zoo's own real/ folder gives",
    )
    ap.add_argument("--speed-sizes", default="512,2048", help="also time each detector on photo images of these sides")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    root = args.zoo or build(args.generators, args.images, args.size, args.post)
    registry, failures = available_detectors(make_plugin_manager())
    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    missing = [n for n in names if n not in registry]
    if missing:
        ap.error(f"unknown detector(s) {missing}; registered: {', '.join(registry)}")
    detectors = {n: registry[n]["detector"] for n in names}

    sources = zoo_sources(root)
    if not any(name == "real" for name, _, _ in sources):
        ap.error(f"{root} has no real/ folder")
    scores: dict[str, list[float]] = defaultdict(list)
    synthetic: dict[str, list[bool]] = defaultdict(list)
    seconds: dict[str, float] = defaultdict(float)
    meta: list[tuple[str, str, int]] = []  # (source, arch, seed) per image
    errors: dict[str, int] = defaultdict(int)
    n_images = 0
    t_start = time.perf_counter()
    scratch = [root] if args.zoo is None else []
    if args.extra_real:  # post-processed like the zoo's own images, so only the source differs
        from attrib.zoo import REAL, encode_image, generate

        manifest = root / "zoo.json"
        settings = json.loads(manifest.read_text())["settings"] if manifest.exists() else {}
        size = settings.get("size") or load_image(sources[0][2][0]).width
        post = settings.get("post", args.post if args.zoo is None else [])
        scratch.append(Path(tempfile.mkdtemp(prefix="attrib-bench-real-")))
        paths = []
        for i, pixels in enumerate(generate(REAL, args.extra_real, size, seed=2)):
            data, suffix = encode_image(pixels, post)
            paths.append(scratch[-1] / f"{i:05d}{suffix}")
            paths[-1].write_bytes(data)
        sources.append(("real-extra", "real", paths))
    for name, arch, files in sources:
        if args.max_per_source:
            files = files[: args.max_per_source]
        match = _SEED.search(name)
        seed = int(match.group(1)) if match else -1
        for path in files:
            loaded = load_image(path)
            image = DetectorImage(pixels=loaded.pixels, path=path, format=loaded.format)
            for det_name, det in detectors.items():
                t0 = time.perf_counter()
                try:
                    ev = det.detect(image)
                except Exception:  # noqa: BLE001 - counted, ranked as undecided
                    ev, errors[det_name] = None, errors[det_name] + 1
                seconds[det_name] += time.perf_counter() - t0
                score = getattr(ev, "score", None)
                scores[det_name].append(0.5 if score is None else float(score))
                synthetic[det_name].append(getattr(ev, "verdict", None) == "synthetic")
            meta.append((name, arch, seed))
            n_images += 1

    labels = np.array([0 if arch == "real" else 1 for _, arch, _ in meta])
    archs = np.array([arch for _, arch, _ in meta])
    seeds = np.array([seed for _, _, seed in meta])
    results = {
        "zoo": str(root),
        "images": n_images,
        "real_images": int((labels == 0).sum()),
        "generators": len({name for name, arch, _ in meta if arch != "real"}),
        "wall_s": round(time.perf_counter() - t_start, 1),
        "detectors": {},
    }
    for det_name in names:
        s = np.array(scores[det_name])
        syn = np.array(synthetic[det_name])
        real, gen = s[labels == 0], s[labels == 1]
        held = s[(labels == 1) & (seeds >= 2)]
        results["detectors"][det_name] = {
            "auroc": round(auroc(gen, real), 4),
            "auroc_held_out": round(auroc(held, real), 4) if len(held) else None,
            "tpr": round(float(syn[labels == 1].mean()), 4),
            "fpr": round(float(syn[labels == 0].mean()), 4),
            "per_arch": {a: round(auroc(s[archs == a], real), 4) for a in sorted(set(archs) - {"real"})},
            "images_per_s": round(n_images / seconds[det_name], 1) if seconds[det_name] else None,
            "errors": errors[det_name],
        }
    results["images_per_s_by_size"] = speed_by_size(detectors, [int(v) for v in args.speed_sizes.split(",") if v.strip()])
    for folder in scratch:
        shutil.rmtree(folder, ignore_errors=True)
    if args.zoo is None:
        results["zoo"] = f"default_zoo({args.generators}), {args.images} images/source, {args.size}px, post {args.post or 'none'}"
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()
