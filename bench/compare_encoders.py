"""Encoders side by side on generators held out of training (issue 3's figures).

    python bench/compare_encoders.py --test unseen-archs=DIR_A --test unseen-seeds=DIR_B \\
        --encoder residual --encoder encoders/fp-mlp --encoder encoders/fp-cnn [--post jpeg75 --post resize0.5]

For every encoder and test folder (one folder per source, none of them seen in training):
1/5/10-shot closed-set accuracy, open-set AUROC, OSCR and verification EER by the standard
protocol (``attrib.evaluate``: 30% of sources never enrolled, 3 trials), plus 5-shot accuracy
after each --post degradation (applied to every image, enrolled and queried, as sharing does).
Also encoder images/s on this CPU. Writes JSON and a K-shot plot with --out; with --merge, the
encoders already in OUT/compare.json that are not rerun keep their rows (from their own run: the
accuracy figures are deterministic, the images/s column is only comparable within one run).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from attrib.encoders import get_encoder
from attrib.evaluate import Dataset, embed_dataset, run_protocol, split_sources
from attrib.imageio import load_image


def degrade_dataset(enc, ds_paths, names, post):
    from attrib.zoo import post_process

    imgs = [post_process(load_image(p).pixels, post) for p in ds_paths]
    emb = enc.embed(imgs)
    return Dataset(list(names), list(ds_paths), [f"{post}-{i}" for i in range(len(imgs))], emb)


def speed(enc, n=64, size=256):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]
    enc.embed(imgs[:4])
    t0 = time.perf_counter()
    enc.embed(imgs)
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test", action="append", required=True, help="LABEL=DIR")
    ap.add_argument("--encoder", action="append", required=True)
    ap.add_argument("--post", action="append", default=[])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--merge", action="store_true", help="keep the other encoders' rows of OUT/compare.json")
    args = ap.parse_args()
    results = {}
    if args.merge and args.out and (args.out / "compare.json").exists():
        results = json.loads((args.out / "compare.json").read_text())
    for spec in args.encoder:
        enc = get_encoder(spec)
        r = {"id": enc.id, "images_per_s_256px": round(speed(enc), 1), "tests": {}}
        for test in args.test:
            label, _, folder = test.partition("=")
            ds = embed_dataset(enc, folder)
            known, unknown = split_sources(ds.sources(), None, 0.3, seed=0)
            res = run_protocol(ds, enc, known, unknown, shots=(1, 5, 10), trials=args.trials, max_queries=30)
            entry = {k: {m: v[m] for m in ("accuracy", "auroc", "oscr", "eer", "tar", "observed_far")} for k, v in res["shots"].items()}
            entry["known"], entry["unknown"] = known, unknown
            for post in args.post:
                dd = degrade_dataset(enc, ds.paths, ds.names, post)
                pr = run_protocol(dd, enc, known, unknown, shots=(5,), trials=args.trials, max_queries=30)
                entry[f"5shot_accuracy_{post}"] = pr["shots"]["5"]["accuracy"]
                entry[f"5shot_auroc_{post}"] = pr["shots"]["5"]["auroc"]
            r["tests"][label] = entry
            print(
                f"{spec:<28} {label:<14} "
                + "  ".join(
                    f"{k}-shot acc {entry[k]['accuracy']:.3f} AUROC {entry[k]['auroc']:.3f} EER {entry[k]['eer']:.3f}"
                    for k in ("1", "5", "10")
                )
                + "".join(f"  5-shot acc {p} {entry[f'5shot_accuracy_{p}']:.3f}" for p in args.post),
                flush=True,
            )
        results[spec] = r
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "compare.json").write_text(json.dumps(results, indent=2))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        tests = [t.partition("=")[0] for t in args.test]
        fig, axes = plt.subplots(1, len(tests), figsize=(5 * len(tests), 4), squeeze=False)
        for ax, label in zip(axes[0], tests):
            for spec, r in results.items():
                ks = [1, 5, 10]
                ax.plot(ks, [r["tests"][label][str(k)]["accuracy"] for k in ks], marker="o", label=Path(spec).name)
            ax.set_title(f"{label}: K-shot top-1")
            ax.set_xlabel("K (enrolled samples per source)")
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        fig.savefig(args.out / "kshot.png", dpi=100)
        print(f"wrote {args.out}/compare.json and kshot.png")


if __name__ == "__main__":
    main()
