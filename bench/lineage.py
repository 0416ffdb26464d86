"""Lineage: accuracy per level of a tree of sources (family / line / leaf), zoo and real generators.

What issue 15 asks of a tree gallery: when the leaf is not sure, is its parent (the model line) or
its family right? And how should an inner node score a query: ``max`` (its subtree's best
prototype) or ``pooled`` (prototypes of all its subtree's samples)? Both are measured here, with
the K-shot protocol of ``attrib eval`` (:func:`attrib.evaluate.run_protocol` with a ``tree``: the
flat figures, and the same enrollment held as a tree gallery for the per-level ones).

* **zoo** (``--zoo``, a zoo of 6 seeds per architecture, e.g. ``/work/zoo/z6``; ``--zoo-lines``
  architectures, ``--zoo-images`` images per source): family -> line (architecture: the name
  without ``-sN``) -> seed. Known: seeds 0-3 of every line but two;
  never enrolled: seeds 4-5 of those lines (their line is enrolled: the right answer is the line)
  and every seed of the two held-out lines (nothing of their line is enrolled: the right answer
  is the family at most). ``real`` is a known root.
* **devset** (``--devset``, ``../shared/devset``): the MANIFEST's family and label, with model lines
  grouped by name (:data:`DEVSET_LINES`: sd1, sdxl, flux, infinity, midjourney, kandinsky,
  hidream, omnigen, dalle, stylegan). Known: labels with >= 6 images (K shots + queries); never
  enrolled: the smaller labels (many have an enrolled line: flux1-schnell, sd15-finetune,
  infinity-8b ...). Whole files as they are; camera photos left out.

Caveat: the default encoder (fp-joint1) was fitted on the zoo's seeds and on the whole devset (its
WCCN; see README "Measured"), so these figures are in-sample for the encoder's fit and on the
optimistic side; what they compare (levels, max vs pooled, leaf vs fallback) is on equal terms.

Usage (embedding is nearly all of it: 182 s for the zoo's 588 files and 784 s for the devset's 324
on 2 cores shared with another job; cached in ``bench/out/``, a rerun takes 15 s)::

    python bench/lineage.py --zoo /work/zoo/z6 --zoo-lines 8 --devset ../shared/devset --out bench/results/lineage.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from attrib.encoders import get_encoder
from attrib.evaluate import Dataset, format_levels, load_tree, run_protocol
from attrib.gallery.lineage import NODE_SCORES, Tree
from attrib.pipeline import embed_items, load_many

DEVSET_LINES = {
    "sd1": ["sd1.x", "sd15-controlnet", "sd15-finetune", "ic-light-fc-sd15", "sd1.4-dreambooth"],
    "sdxl": ["sdxl-1.0", "sdxl-finetune", "sdxl-turbo"],
    "flux": ["flux1-dev", "flux1-kontext-dev", "flux1-krea-dev", "flux1-schnell", "flux2-dev", "flux-pro"],
    "infinity": ["infinity-2b", "infinity-8b", "infinity-20b"],
    "midjourney": ["midjourney-v5.2", "midjourney-v5plus"],
    "kandinsky": ["kandinsky-3", "kandinsky-5"],
    "hidream": ["hidream-i1", "hidream-o1"],
    "omnigen": ["omnigen-v1", "omnigen2"],
    "dalle": ["dalle2", "dalle3"],
    "stylegan": ["stylegan-xl", "stylegan1-ffhq", "stylegan2-community", "stylegan2-ffhq", "stylegan2-lsun"],
}
ZOO_HELD_OUT_LINES = ("pixelshuffle", "vqgan")


def cached_dataset(enc, files: dict[str, list[Path]], cache: Path) -> Dataset:
    """Embeddings of ``{source: files}`` (unreadable files left out), cached by encoder id and files."""
    names = [s for s, fs in files.items() for _ in fs]
    paths = [str(f) for fs in files.values() for f in fs]
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        if str(z["encoder"]) == enc.id and z["all_paths"].tolist() == paths:
            return Dataset(z["names"].tolist(), z["paths"].tolist(), z["shas"].tolist(), z["embeddings"])
    t0 = time.time()
    items, emb = embed_items(enc, load_many(paths))
    keep = [i for i, it in enumerate(items) if it.error is None]
    ds = Dataset([names[i] for i in keep], [paths[i] for i in keep], [items[i].record.sha256 for i in keep], emb)
    print(f"embedded {len(ds.names)} images in {time.time() - t0:.0f} s", file=sys.stderr)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, encoder=enc.id, all_paths=paths, names=ds.names, paths=ds.paths, shas=ds.shas, embeddings=ds.embeddings)
    return ds


def zoo_files(zoo: Path, lines: int, per_source: int) -> dict[str, list[Path]]:
    """The first ``lines`` architectures (by name; the held-out ones always in) and ``real``."""
    folders = sorted(p for p in zoo.iterdir() if p.is_dir())
    all_lines = sorted({p.name.rpartition("-s")[0] for p in folders} - {""})
    keep = set(ZOO_HELD_OUT_LINES) | set([x for x in all_lines if x not in ZOO_HELD_OUT_LINES][: max(lines - len(ZOO_HELD_OUT_LINES), 0)])
    return {p.name: sorted(p.glob("*.png"))[:per_source] for p in folders if p.name == "real" or p.name.rpartition("-s")[0] in keep}


def devset_files(devset: Path) -> dict[str, list[Path]]:
    """Generated images by label (camera photos left out)."""
    with open(devset / "MANIFEST.tsv", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["label"] != "real"]
    out: dict[str, list[Path]] = {}
    for r in rows:
        out.setdefault(r["label"], []).append(devset / r["file"])
    return out


def devset_tree(devset: Path) -> Tree:
    with open(devset / "MANIFEST.tsv", newline="") as f:
        families = {r["label"]: r["family"] for r in csv.DictReader(f, delimiter="\t")}
    parents: dict[str, str | None] = {label: None for label in families}
    for line, labels in DEVSET_LINES.items():
        parents[line] = None
        families[line] = families[labels[0]]
        for label in labels:
            parents[label] = line
    return Tree(parents, families)


def run(ds: Dataset, enc, tree: Tree, known, unknown, shots, trials, queries) -> dict:
    out = {"known": list(known), "unknown": list(unknown), "node_score": {}}
    for mode in NODE_SCORES:
        t0 = time.time()
        res = run_protocol(ds, enc, known, unknown, shots=shots, trials=trials, max_queries=queries, tree=tree, node_score=mode)
        out["node_score"][mode] = {
            k: {"flat": {m: v for m, v in s.items() if m not in ("per_source", "levels")}, "levels": s["levels"]}
            for k, s in res["shots"].items()
        }
        print(f"-- node score {mode} ({time.time() - t0:.0f} s)\n{format_levels(res)}", file=sys.stderr)
    return out


def zoo_split(ds: Dataset) -> tuple[list[str], list[str]]:
    known, unknown = [], []
    for s in ds.sources():
        line, _, seed = s.rpartition("-s")
        if line in ZOO_HELD_OUT_LINES or (line and seed in ("4", "5")):
            unknown.append(s)
        else:
            known.append(s)
    return known, unknown


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", type=Path, help="A zoo with 6 seeds per architecture (attrib zoo build).")
    ap.add_argument("--devset", type=Path, help="../shared/devset (MANIFEST.tsv, images/<label>/).")
    ap.add_argument("--shots", default="5")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--queries", type=int, default=15)
    ap.add_argument("--zoo-lines", type=int, default=10, help="Zoo architectures measured (the held-out ones among them).")
    ap.add_argument("--zoo-images", type=int, default=12, help="Images per zoo source (K shots + queries).")
    ap.add_argument("--out", type=Path, default=Path("bench/results/lineage.json"))
    args = ap.parse_args(argv)
    enc = get_encoder(None)
    shots = [int(k) for k in args.shots.split(",")]
    results = {"encoder": enc.id, "shots": shots, "trials": args.trials, "queries": args.queries, "command": " ".join(sys.argv)}
    if args.zoo:
        ds = cached_dataset(enc, zoo_files(args.zoo, args.zoo_lines, args.zoo_images), Path("bench/out/lineage_zoo.npz"))
        known, unknown = zoo_split(ds)
        results["zoo"] = run(ds, enc, load_tree(args.zoo, "zoo", ds.sources()), known, unknown, shots, args.trials, args.queries)
        results["zoo"]["images"] = len(ds.names)
    if args.devset:
        ds = cached_dataset(enc, devset_files(args.devset), Path("bench/out/lineage_devset.npz"))
        counts = {s: ds.names.count(s) for s in ds.sources()}
        known = sorted(s for s, n in counts.items() if n > max(shots))
        unknown = sorted(s for s, n in counts.items() if n <= max(shots))
        results["devset"] = run(ds, enc, devset_tree(args.devset), known, unknown, shots, args.trials, args.queries)
        results["devset"]["images"] = len(ds.names)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
