"""Search-stage latency on a large gallery: 10,000 sources / 1,000,000 samples.

    python bench/scale.py [--sources 10000] [--per-source 100] [--dim 483] [--queries 1000]

Builds a real gallery (SQLite + FAISS, through ``Gallery.enroll_many``) of synthetic clustered
embeddings (each source a random direction plus noise, as fingerprints are), then times the
search stage of identify (FAISS prototype search + per-source aggregation + open-set decision)
per image, batched and one at a time. Embedding cost is excluded on purpose: it is the same per
image whatever the gallery size (see bench/speed.py).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from attrib.encoders import Encoder
from attrib.gallery import Gallery, SampleRecord


class FixedDim(Encoder):
    """Stands in for the real encoder's identity: only its dimension matters here."""

    name = "bench-fixed"

    def __init__(self, dim):
        self.dim = dim

    def config(self):
        return {"dim": self.dim}

    def _embed_batch(self, images):  # pragma: no cover - never called
        raise NotImplementedError


def clustered(rng, centre, n, noise):
    x = centre[None, :] + noise * rng.standard_normal((n, len(centre))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=10_000)
    ap.add_argument("--per-source", type=int, default=100)
    ap.add_argument("--dim", type=int, default=483)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--gallery", type=Path, help="keep the gallery here (default: a temp dir)")
    ap.add_argument("--reuse", action="store_true", help="time an existing --gallery instead of building it")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    noise = 0.6 / np.sqrt(args.dim) * 4
    with tempfile.TemporaryDirectory() as tmp:
        path = args.gallery or Path(tmp) / "g"
        g = Gallery(path, encoder=FixedDim(args.dim))
        centres = rng.standard_normal((args.sources, args.dim)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        t0 = time.perf_counter()
        chunk = 1000
        built = args.reuse and g.stats()["sources"] > 0
        for c0 in range(0, 0 if built else args.sources, chunk):
            batch = []
            for s in range(c0, min(c0 + chunk, args.sources)):
                emb = clustered(rng, centres[s], args.per_source, noise)
                recs = [SampleRecord(f"{s:06d}-{i:04d}") for i in range(args.per_source)]
                batch.append((f"gen{s:06d}", emb, recs, None, None))
            g.enroll_many(batch)
            print(f"  enrolled {min(c0 + chunk, args.sources)} sources ({time.perf_counter() - t0:.0f} s)", flush=True)
        build_s = None if built else time.perf_counter() - t0
        stats = g.stats()
        t0 = time.perf_counter()
        index = g.prototype_index()
        index_s = time.perf_counter() - t0
        if built:  # the centres are not stored: use each source's first prototype as its centre
            protos, labels = g.prototypes()
            first = {name: i for i, name in reversed(list(enumerate(labels)))}
            centres = np.stack([protos[first[f"gen{s:06d}"]] for s in range(args.sources)])
        truth = rng.integers(0, args.sources, args.queries)
        queries = np.concatenate([clustered(rng, centres[s], 1, noise) for s in truth])
        g.identify(queries[:10])  # warm
        t0 = time.perf_counter()
        decisions = g.identify(queries, top_k=5)
        batched_ms = (time.perf_counter() - t0) / args.queries * 1000
        t0 = time.perf_counter()
        for q in queries[:200]:
            g.identify(q[None], top_k=5)
        single_ms = (time.perf_counter() - t0) / 200 * 1000
        recall = float(np.mean([d.candidates[0]["source"] == f"gen{s:06d}" for d, s in zip(decisions, truth)]))
        res = {
            "sources": stats["sources"],
            "samples": stats["samples"],
            "prototypes": stats["prototypes"],
            "index_kind": index.kind,
            "dim": args.dim,
            "build_seconds": build_s and round(build_s, 1),
            "index_build_seconds": round(index_s, 2),
            "search_ms_per_image_batched": round(batched_ms, 3),
            "search_ms_per_image_single": round(single_ms, 3),
            "top1_recall_vs_truth": round(recall, 4),
        }
        print(json.dumps(res, indent=2))
        if args.json:
            args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
