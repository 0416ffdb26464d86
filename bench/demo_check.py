"""`attrib demo`'s protocol with any encoder: the synthetic world, beside the real folds.

The demo enrolls zoo generators 5-shot and holds out their seed-1 siblings (same architecture,
other weights) as unknowns. An encoder tuned on real generators must not forget that world: a
cohort of real generators alone let ``fp-joint2`` accept a third of those siblings. This runs the
demo's eval protocol (the same zoo build, sources, shots and trials) with each encoder's own
calibration and score normalisation, without building a gallery::

    python bench/demo_check.py [--encoder fp-joint1 --encoder fp-joint3] [--out bench/results/demo_check.json]

Figures per K: closed-set top-1, known accepted and right (TAR), AUROC, unknowns accepted
(observed FAR at the encoder's default FAR).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from attrib.cli.demo_cmd import demo_eval
from attrib.encoders import DEFAULT_ENCODER, get_encoder
from attrib.evaluate import embed_dataset
from attrib.recipes import Recipe

KEYS = ("accuracy", "tar", "auroc", "observed_far")


def check(encoder: str, trials: int = 3) -> dict:
    rec = Recipe.builtin("demo")
    enc = get_encoder(encoder)
    ds = embed_dataset(enc, rec.zoo_dir())
    known = [s for s in ds.sources() if s not in rec.unknown]
    res = demo_eval(ds, enc, known, list(rec.unknown), trials)
    return {"encoder": enc.id, "shots": {k: {m: round(float(v[m]), 4) for m in KEYS} for k, v in res["shots"].items()}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder", action="append", help=f"encoder name or folder (default: {DEFAULT_ENCODER})")
    ap.add_argument("--trials", type=int, default=3, help="K-shot draws (the demo's default: 3)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    out = {}
    for name in args.encoder or [DEFAULT_ENCODER]:
        out[name] = check(name, args.trials)
        for k, v in out[name]["shots"].items():
            print(f"{name:12} K={k:>2} " + " ".join(f"{m}={v[m]:.3f}" for m in KEYS), file=sys.stderr)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
