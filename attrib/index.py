"""FAISS indexes over the gallery's vectors. They are caches: SQLite is the truth, and an index is
rebuilt from it whenever the gallery's generation counter moved on.

Inner product on L2-normalised vectors = cosine similarity. Flat (exact) below
``HNSW_THRESHOLD`` vectors; above it, HNSW on the CPU, or IVF on the GPU (FAISS has no GPU HNSW,
and an inverted-file index is what its GPU code is built for). The GPU is used when faiss-gpu is
installed and reports a GPU (``pip install 'attrib[gpu]'``, README): flat and IVF indexes are
placed on it, HNSW never; ``ATTRIB_FAISS_GPU=0`` keeps every index on the CPU. Without a GPU
nothing changes: the CPU path is the one every test runs.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

#: vectors above which an approximate index (HNSW on CPU, IVF on GPU) replaces the exact flat one
HNSW_THRESHOLD = 20_000
HNSW_M = 32
HNSW_EF_SEARCH = 128
#: IVF (GPU): inverted lists per sqrt(vectors), lists probed per query, training sample per list
IVF_LISTS_PER_SQRT = 1
IVF_NPROBE = 32
IVF_TRAIN_PER_LIST = 64
#: index kinds FAISS can place on a GPU (HNSW has no GPU implementation)
GPU_KINDS = ("flat", "ivf")

_GPU_RESOURCES: list = []  # one StandardGpuResources per process, alive as long as the indexes on it


def _faiss():
    import faiss

    return faiss


def gpu_available() -> bool:
    """A GPU that FAISS can use (faiss-gpu installed, a device visible, not switched off)."""
    if os.environ.get("ATTRIB_FAISS_GPU", "").strip() == "0":
        return False
    faiss = _faiss()
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _to_gpu(index):
    faiss = _faiss()
    if not _GPU_RESOURCES:
        _GPU_RESOURCES.append(faiss.StandardGpuResources())
    return faiss.index_cpu_to_gpu(_GPU_RESOURCES[0], 0, index)


def _to_cpu(index):
    return _faiss().index_gpu_to_cpu(index)


def place(index, kind: str, use_gpu: bool):
    """``(index, kind)`` on the GPU when asked and the kind can go there (flat, IVF), else as given."""
    if use_gpu and kind in GPU_KINDS:
        return _to_gpu(index), f"{kind}-gpu"
    return index, kind


def _ivf(vectors: np.ndarray, use_gpu: bool):
    """``(index, kind)``: an IVF-Flat index (inner product), its coarse quantizer trained on a
    sample of ``vectors`` on the CPU, then placed (GPU when ``use_gpu``) and filled there."""
    faiss = _faiss()
    n, dim = vectors.shape
    lists = max(1, min(int(IVF_LISTS_PER_SQRT * np.sqrt(n)), n // IVF_TRAIN_PER_LIST))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
    sample = vectors
    if n > lists * IVF_TRAIN_PER_LIST:
        sample = vectors[np.sort(np.random.default_rng(0).choice(n, lists * IVF_TRAIN_PER_LIST, replace=False))]
    index.train(np.ascontiguousarray(sample))
    index.nprobe = min(IVF_NPROBE, lists)
    index, kind = place(index, "ivf", use_gpu)
    index.add(vectors)
    return index, kind


class VectorIndex:
    """A FAISS index plus the label of each row."""

    def __init__(self, index, labels: list[str], kind: str):
        self.index = index
        self.labels = labels
        self.kind = kind

    @classmethod
    def build(cls, vectors: np.ndarray, labels: list[str], use_gpu: bool | None = None) -> VectorIndex:
        """Flat below ``HNSW_THRESHOLD`` vectors; above, HNSW on the CPU or IVF on the GPU.
        ``use_gpu`` None: :func:`gpu_available`."""
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = vectors.shape[1]
        use_gpu = gpu_available() if use_gpu is None else use_gpu
        if len(vectors) > HNSW_THRESHOLD and use_gpu:
            index, kind = _ivf(vectors, use_gpu)
            return cls(index, labels, kind)
        if len(vectors) > HNSW_THRESHOLD:
            index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
            index.add(vectors)
            index.hnsw.efSearch = HNSW_EF_SEARCH
            kind = "hnsw"
        else:
            index = faiss.IndexFlatIP(dim)
            index.add(vectors)
            kind = "flat"
        index, kind = place(index, kind, use_gpu)
        return cls(index, labels, kind)

    def __len__(self) -> int:
        return len(self.labels)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = max(1, min(k, len(self.labels)))
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, ids

    def save(self, path: Path, meta: dict) -> None:
        """Write index and metadata as one file, atomically: readers see the old one or the new one."""
        faiss = _faiss()
        path.parent.mkdir(parents=True, exist_ok=True)
        index = _to_cpu(self.index) if self.kind.endswith("-gpu") else self.index
        header = json.dumps({**meta, "labels": self.labels, "kind": self.kind.removesuffix("-gpu")}).encode()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(len(header).to_bytes(8, "little"))
            fh.write(header)
            fh.write(faiss.serialize_index(index).tobytes())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, expect: dict, use_gpu: bool | None = None) -> VectorIndex | None:
        """Load a cached index if its metadata matches ``expect`` (generation, encoder id), else
        None; placed on the GPU as :meth:`build` would place it."""
        try:
            data = path.read_bytes()
            size = int.from_bytes(data[:8], "little")
            meta = json.loads(data[8 : 8 + size])
            if any(meta.get(k) != v for k, v in expect.items()):
                return None
            index = _faiss().deserialize_index(np.frombuffer(data[8 + size :], dtype=np.uint8))
        except (OSError, ValueError, RuntimeError, KeyError):
            return None
        if index.ntotal != len(meta["labels"]):
            return None
        kind = meta.get("kind", "flat").removesuffix("-gpu")
        if kind == "hnsw":
            index.hnsw.efSearch = HNSW_EF_SEARCH
        elif kind == "ivf":
            index.nprobe = min(IVF_NPROBE, index.nlist)
        index, kind = place(index, kind, gpu_available() if use_gpu is None else use_gpu)
        return cls(index, meta["labels"], kind)
