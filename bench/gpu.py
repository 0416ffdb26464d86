"""GPU figures in one script: identify images/s and FAISS search, GPU beside CPU.

    python bench/gpu.py [--out $OUT/gpu.json] [--sizes 256 1024] [--n 64] [--timm tf_efficientnet_lite0]
                        [--samples 1000000] [--sources 10000] [--dim 256] [--queries 1000]
    python bench/gpu.py --quick            # small sizes: checks the script end to end on a CPU

1. **identify images/s** at each ``--sizes`` (PNG files, zoo content tiled up, as bench/speed.py),
   end to end (decode, encode, search, open-set decision) for the default encoder (``fp-joint4``:
   torch residual features and self-descriptions + texture CNN under bf16 autocast on a GPU) and a timm backbone as a
   learned encoder (random weights: speed only; 256 px tiles, up to 5 per image), on the GPU and
   on the CPU.
2. **FAISS** at ``--samples`` sample vectors of ``--sources`` sources: exact (flat) k-NN over all
   samples, GPU vs CPU; and identify's own search over the prototypes (4 per source: IVF on the
   GPU vs HNSW on the CPU, recall@1 against exact), build and search times.

Without a GPU (no CUDA for torch, or faiss without GPU support) the GPU parts are skipped with a
notice in the JSON (``skipped``) and the CPU parts still run, so the script is tested here
(tests/test_bench_gpu.py runs ``--quick``). JSON goes to ``--out``, else ``$OUT/gpu.json`` when
``$OUT`` is set, else bench/results/gpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import make_images  # noqa: E402

from attrib.encoders import DEFAULT_ENCODER  # noqa: E402


def devices() -> dict:
    import faiss
    import torch

    from attrib.index import gpu_available

    info = {
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "faiss": faiss.__version__,
        "faiss_gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0,
        "faiss_gpu_index": gpu_available(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    return info


def timm_encoder(name: str, device: str):
    from attrib.encoders.learned import LearnedEncoder, build_net

    config = {"name": f"bench-timm-{name}", "backbone": f"timm:{name}", "dim": 128, "input": {"tile": 256, "max_tiles": 5}}
    net, _ = build_net(config)
    return LearnedEncoder(net, config, "random-weights", device=device)


def make_encoder(kind: str, device: str, timm_name: str):
    os.environ["ATTRIB_DEVICE"] = device  # the encoders pick their device when built
    from attrib.encoders import get_encoder

    return timm_encoder(timm_name, device) if kind == "timm" else get_encoder(kind)


def identify_speed(enc, folders: dict[int, list[Path]], enroll: list[Path]) -> dict:
    from attrib.gallery import MemoryGallery
    from attrib.pipeline import StageTimer, embed_items, load_many

    items, emb = embed_items(enc, load_many(enroll))
    gallery = MemoryGallery.enroll(
        [(f"gen{k}", emb[k * 5 : k * 5 + 5], [it.record.sha256 for it in items[k * 5 : k * 5 + 5]]) for k in range(8)], None
    )
    out = {}
    for size, paths in folders.items():
        embed_items(enc, load_many(paths[:2]))  # warm-up: CUDA kernels, cuDNN autotuning
        timer = StageTimer()
        t0 = time.perf_counter()
        _, emb = embed_items(enc, load_many(paths), timer=timer)
        with timer.stage("search", len(emb)):
            gallery.identify(emb, top_k=5)
        wall = time.perf_counter() - t0
        out[str(size)] = {"images_per_s": round(len(paths) / wall, 2), "stages": timer.to_dict()}
    return out


def clustered(n: int, sources: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((sources, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    owner = np.arange(n) % sources
    x = centres[owner] + (2.4 / np.sqrt(dim)) * rng.standard_normal((n, dim)).astype(np.float32)  # bench/scale.py's noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, owner


def faiss_speed(samples: int, sources: int, dim: int, queries: int, gpu: bool) -> dict:
    import faiss

    from attrib.index import VectorIndex

    x, owner = clustered(samples, sources, dim)
    q = x[np.random.default_rng(1).choice(samples, queries, replace=False)] + 0.01
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    out: dict = {"samples": samples, "sources": sources, "dim": dim, "queries": queries}

    def timed_search(index, k=10):
        index.search(q[:8], k)  # warm-up
        t0 = time.perf_counter()
        _, ids = index.search(q, k)
        return time.perf_counter() - t0, ids

    flat = faiss.IndexFlatIP(dim)
    flat.add(x)
    cpu_s, exact = timed_search(flat)
    out["flat_samples_cpu"] = {"search_s": round(cpu_s, 4), "ms_per_query": round(1000 * cpu_s / queries, 4)}
    if gpu:
        from attrib.index import place

        gpu_flat, _ = place(flat, "flat", True)
        gpu_s, ids = timed_search(gpu_flat)
        out["flat_samples_gpu"] = {
            "search_s": round(gpu_s, 4),
            "ms_per_query": round(1000 * gpu_s / queries, 4),
            "speedup": round(cpu_s / gpu_s, 2),
            "same_top1": float((ids[:, 0] == exact[:, 0]).mean()),
        }
    # identify's search: prototypes (up to 4 per source), as the gallery builds them
    protos, labels = _prototypes(x, owner, sources)
    exact_p = protos @ q.T
    truth = exact_p.argmax(axis=0)
    for name, use_gpu in (("prototypes_cpu", False), ("prototypes_gpu", True)):
        if use_gpu and not gpu:
            continue
        t0 = time.perf_counter()
        index = VectorIndex.build(protos, labels, use_gpu=use_gpu)
        build = time.perf_counter() - t0
        s, ids = timed_search(index, 5)
        out[name] = {
            "kind": index.kind,
            "vectors": len(protos),
            "build_s": round(build, 3),
            "ms_per_query": round(1000 * s / queries, 4),
            "recall_at_1": float((ids[:, 0] == truth).mean()),
        }
    return out


def _prototypes(x: np.ndarray, owner: np.ndarray, sources: int) -> tuple[np.ndarray, list[str]]:
    """4 prototypes per source: means of 4 slices of its samples (the gallery's k-means stand-in)."""
    protos, labels = [], []
    for s in range(sources):
        members = x[owner == s]
        for part in np.array_split(members, min(4, len(members))):
            v = part.mean(axis=0)
            protos.append(v / np.linalg.norm(v))
            labels.append(f"s{s}")
    return np.asarray(protos, np.float32), labels


def run(args) -> dict:
    info = devices()
    out: dict = {"devices": info, "args": {k: v for k, v in vars(args).items() if k != "out"}, "skipped": []}
    gpu_torch, gpu_faiss = info["cuda"], info["faiss_gpu_index"]
    if not gpu_torch:
        out["skipped"].append("identify on GPU: torch sees no CUDA device")
    if not gpu_faiss:
        out["skipped"].append("FAISS on GPU: faiss has no GPU support or sees no GPU (pip install 'attrib[gpu]', README)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        enroll = make_images(tmp / "enroll", 40, 256, seed=1)
        folders = {size: make_images(tmp / f"q{size}", args.n, size, seed=2) for size in args.sizes}
        for kind in (args.encoder, "timm"):
            for device in (["cuda"] if gpu_torch else []) + ["cpu"]:
                enc = make_encoder(kind, device, args.timm)
                key = f"identify_{'timm-' + args.timm if kind == 'timm' else kind}_{device}"
                out[key] = {"encoder": enc.id, **identify_speed(enc, folders, enroll)}
                print(key, json.dumps(out[key]), flush=True)
    os.environ.pop("ATTRIB_DEVICE", None)
    out["faiss"] = faiss_speed(args.samples, args.sources, args.dim, args.queries, gpu_faiss)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--n", type=int, default=64, help="images per size")
    ap.add_argument("--encoder", default=DEFAULT_ENCODER, help=f"default: {DEFAULT_ENCODER}, the default encoder")
    ap.add_argument("--timm", default="tf_efficientnet_lite0", help="timm backbone timed as a learned encoder")
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--sources", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="small sizes (a CPU check that the script runs)")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.n, args.samples, args.sources, args.queries = [64], 2, 6_000, 100, 20
    if args.out is None:
        args.out = Path(os.environ["OUT"]) / "gpu.json" if os.environ.get("OUT") else Path(__file__).parent / "results" / "gpu.json"
    res = run(args)
    text = json.dumps(res, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
