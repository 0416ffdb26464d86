"""Options measured around fp-joint1/fp-joint2 on the real folds, and not adopted (issue 11).

    python bench/real_options.py --zoo ZOO [--seeds 1] [--out bench/results/real_options.json]

Same folds, features and protocol as ``real_folds.py`` (run it first: its feature caches), 5-shot,
FAR 0.01, mean over folds:

* ``jpeg_matched``: JPEG q75 queries against shots that were re-saved as JPEG q75 too (what a
  gallery storing JPEG copies of its samples could do for JPEG queries), fp-joint1;
* ``cohort_crop`` / ``cohort_mixed`` / ``cohort_zoo`` / ``cohort_crop_zoo``: fp-joint2 with its
  cohort made of 256 px crops, of crops and whole images, of whole images and as many zoo
  images, or of crops and as many zoo images, against the
  shipped recipe (whole images of real generators) on whole images and on crops;
* ``near_floor``: fp-joint2 with the near-impostor floor kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import real_folds as rf

from attrib.encoders import get_encoder
from attrib.encoders.base import l2_normalize
from attrib.scorenorm import ScoreNorm

KEYS = ("accuracy", "tar", "auroc", "observed_far", "attributed")


def cohort(feats, fit, idx, kind: str, zoo: dict) -> ScoreNorm:
    """fp-joint2's cohort of ``kind`` ("whole": as shipped, :func:`real_folds.cohort_norm`)."""
    if kind == "whole":
        return rf.cohort_norm(feats, fit, idx)
    m, P = fit
    whole = rf.joint_embed(feats, m, P, "asis", idx[feats["ok_asis"][idx]])
    crops = rf.joint_embed(feats, m, P, "crop256", idx[feats["ok_crop256"][idx]])
    if kind == "crop":
        return ScoreNorm.from_cohort(crops)
    if kind == "mixed":
        return ScoreNorm.from_cohort(np.concatenate([whole, crops]))
    if kind in ("zoo", "crop_zoo"):
        base = crops if kind == "crop_zoo" else whole
        return ScoreNorm.from_cohort(np.concatenate([base, l2_normalize((rf.zoo_sample(zoo, len(whole)) - m) @ P)]))
    raise ValueError(f"cohort {kind!r}")


def use_cohort(fold, kind: str, zoo: dict, floor: bool) -> None:
    """fp-joint2 of ``fold`` with the cohort ``kind``: its normalisation and its prior (cross-fitted
    by the fold as real_folds.py does, each half with its own cohort of that kind)."""
    fold.make_norm["fp-joint2"] = lambda feats, fit, idx: cohort(feats, fit, idx, kind, zoo)
    fit_idx = np.concatenate([np.flatnonzero(np.isin(fold.labels, fold.fd["fit"])), fold.fd["real_fit"]])
    fold.norms["fp-joint2"] = fold.make_norm["fp-joint2"](fold.feats, fold.tex_fit["fp-joint2"], fit_idx)
    fold.priors["fp-joint2"] = fold._cross_prior("fp-joint2", 5)
    if not floor:
        fold.priors["fp-joint2"].pop("near_impostor")


def run_matched(fold, keep) -> dict:
    """fp-joint1, JPEG queries against JPEG'd shots: run_fold with the crops' features swapped."""
    f = fold.feats
    saved = {k: f[k] for k in ("res_crop256", "tex_crop256")}
    f["res_crop256"], f["tex_crop256"] = f["res_jpeg75"], f["tex_jpeg75"]
    try:
        return rf.run_fold(fold, "fp-joint1", "jpeg75", keep, (5,), 3)
    finally:
        f.update(saved)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devset", type=Path, default=rf.default_devset())
    ap.add_argument("--zoo", type=Path, required=True)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=Path("bench/out/real_features_v2.npz"))
    ap.add_argument("--out", type=Path, default=Path("bench/results/real_options.json"))
    args = ap.parse_args(argv)
    rows = rf.read_manifest(args.devset)
    labels = np.array([r["label"] for r in rows])
    fp = get_encoder("fp-wccn2")
    feats = dict(np.load(args.cache))
    zoo = dict(np.load(args.cache.with_name(f"zoo_features_{args.zoo.name}.npz")))
    meta = rf.meta_features(rows)
    runs: dict[str, list] = {}
    for seed in range(args.seeds):
        keep = rf.pick_one_per_prompt(rows, seed)
        for fd in rf.make_folds(labels, 3, seed):
            fold = rf.Fold(fd, feats, labels, meta, fp, zoo=zoo, encoders=("fp-joint1", "fp-joint2"))
            runs.setdefault("fp-joint1/jpeg75", []).append(rf.run_fold(fold, "fp-joint1", "jpeg75", keep, (5,), 3))
            runs.setdefault("jpeg_matched/jpeg75", []).append(run_matched(fold, keep))
            for kind, floor in (("whole", False), ("crop", False), ("mixed", False), ("zoo", False), ("crop_zoo", False), ("whole", True)):
                name = "fp-joint2" if (kind, floor) == ("whole", False) else ("near_floor" if floor else f"cohort_{kind}")
                use_cohort(fold, kind, zoo, floor)
                for v in ("asis", "crop256"):
                    runs.setdefault(f"{name}/{v}", []).append(rf.run_fold(fold, "fp-joint2", v, keep, (5,), 3))
            print(f"seed {seed} fold {fd['fold']}", file=sys.stderr)
    result = {k: {m: rf.summarise(r)["5"][m] for m in KEYS} for k, r in runs.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"seeds": args.seeds, "shots": 5, "far": 0.01, "results": result}, indent=1) + "\n")
    for k, r in result.items():
        print(f"{k:24}", " ".join(f"{m}={r[m]['mean']:.3f}" for m in KEYS))
    return result


if __name__ == "__main__":
    main()
