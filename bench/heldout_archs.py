"""Leave-one-architecture-out: does the residual-wccn recipe transfer to architectures it never saw?

    python bench/heldout_archs.py ZOO [--residual-option tile=64] [--out bench/results/heldout_archs.json]

ZOO is a built zoo (``attrib zoo build``, with zoo.json). For every decoder architecture A in it,
a WCCN metric is fitted (exactly as ``attrib train --backbone residual-wccn`` does: each image
plus ``--variants`` degraded copies) on the sources of every OTHER architecture (and ``real``),
then A's sources (all seeds: telling seeds of one unseen architecture apart is the hard case)
are evaluated by the standard protocol (``attrib.evaluate``: 30% never enrolled, 3 trials,
1/5/10-shot), beside the training-free ``residual`` encoder on the same images. Features are
computed once; each fold costs one eigendecomposition.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from attrib.encoders.fused import fuse
from attrib.encoders.learned import LearnedEncoder, build_net
from attrib.encoders.residual import ResidualSpectrumEncoder
from attrib.evaluate import Dataset, run_protocol, split_sources
from attrib.train import TrainConfig, feature_bank, fit_wccn, load_images, read_sources, set_wccn


def protocol(enc, feats: dict[str, np.ndarray], embed, shots, trials):
    names = [s for s, f in feats.items() for _ in range(len(f))]
    emb = np.concatenate([embed(f) for f in feats.values()])
    ds = Dataset(names, [f"{n}/{i}" for i, n in enumerate(names)], [f"h{i}" for i in range(len(names))], emb)
    known, unknown = split_sources(ds.sources(), None, 0.3, seed=0)
    res = run_protocol(ds, enc, known, unknown, shots=shots, trials=trials, max_queries=30)
    return {k: {m: round(v[m], 4) for m in ("accuracy", "auroc", "oscr", "eer")} for k, v in res["shots"].items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("zoo", type=Path)
    ap.add_argument("--residual-option", action="append", default=[], metavar="KEY=INT")
    ap.add_argument("--variants", type=int, default=TrainConfig.feature_variants)
    ap.add_argument(
        "--reg", type=float, action="append", help=f"WCCN ridge (repeatable: one fit per value) [default: {TrainConfig.wccn_reg}]"
    )
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument(
        "--fused",
        type=Path,
        help="a fused encoder folder: also evaluate each fold's residual WCCN fused with that folder's texture branch (its alpha)",
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    regs = args.reg or [TrainConfig.wccn_reg]
    opts = {k: int(v) for k, _, v in (o.partition("=") for o in args.residual_option)}
    fe = ResidualSpectrumEncoder(**opts)
    sources = read_sources(args.zoo)
    rng = np.random.default_rng(0)
    t0 = time.time()
    imgs = {s: load_images(v["files"]) for s, v in sources.items()}
    bank = feature_bank(fe, imgs, args.variants, TrainConfig(data="", out="").augment, rng)
    plain = {s: b[:: 1 + args.variants] for s, b in bank.items()}  # the undegraded rows
    print(f"features of {len(bank)} sources in {time.time() - t0:.0f} s", flush=True)
    archs = sorted({v["arch"] for v in sources.values()} - {"real"})
    config = {
        "name": "wccn-fold",
        "backbone": "residual-wccn",
        "dim": fe.dim,
        "input": {"tile": 0, "max_tiles": 0, "policy": "residual-features", "residual": opts},
    }
    shots = (1, 5, 10)
    results = {"residual_options": opts, "variants": args.variants, "regs": regs, "folds": {}}
    methods = ["residual"] + [f"residual-wccn reg={r}" for r in regs]
    texture = None
    if args.fused:
        from attrib.encoders.learned import load_encoder

        fz = load_encoder(args.fused)
        texture = {s: fz.texture.features_batch(imgs[s]) for s in sources}  # the undegraded images, as ``plain``
        methods += [f"fused reg={r}" for r in regs]
    for arch in archs:
        test = {s: plain[s] for s in sources if sources[s]["arch"] == arch}
        train = {s: bank[s] for s in sources if sources[s]["arch"] != arch}
        fold = {
            "test_sources": len(test),
            "train_sources": len(train),
            "residual": protocol(fe, test, lambda f: f / np.linalg.norm(f, axis=1, keepdims=True), shots, args.trials),
        }
        for reg, method in zip(regs, methods[1:]):
            net, _ = build_net(config)
            set_wccn(net, *fit_wccn(train, reg))
            enc = LearnedEncoder(net.eval(), config, weights_sha256=f"fold-{arch}-{reg}", device="cpu")
            fold[method] = protocol(enc, test, enc.embed_features, shots, args.trials)
            if texture is not None:  # the texture branch was never fitted on the zoo: every architecture is unseen by it
                both = {s: np.concatenate([f, texture[s]], axis=1) for s, f in test.items()}
                n = fe.dim

                def embed(f, enc=enc, n=n):
                    return fuse(enc.embed_features(f[:, :n]), (f[:, n:] - fz.tex_mean) @ fz.tex_P, fz.alpha)

                fold[f"fused reg={reg}"] = protocol(SimpleNamespace(calibration=None), both, embed, shots, args.trials)
        results["folds"][arch] = fold
        print(
            f"held out {arch:<13} ({len(test)} sources), 5-shot acc / AUROC / EER: "
            + ";  ".join(f"{m} {fold[m]['5']['accuracy']:.3f} / {fold[m]['5']['auroc']:.3f} / {fold[m]['5']['eer']:.3f}" for m in methods),
            flush=True,
        )
    for name in methods:
        results[f"mean_{name}"] = {
            k: {
                m: round(float(np.mean([f[name][k][m] for f in results["folds"].values()])), 4)
                for m in ("accuracy", "auroc", "oscr", "eer")
            }
            for k in map(str, shots)
        }
    for name in methods:
        m = results[f"mean_{name}"]
        print(
            f"mean over {len(archs)} held-out architectures, {name:<24}: "
            + "  ".join(f"{k}-shot acc {m[k]['accuracy']:.3f} AUROC {m[k]['auroc']:.3f} EER {m[k]['eer']:.3f}" for k in map(str, shots))
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
