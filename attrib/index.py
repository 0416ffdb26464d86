"""FAISS indexes over the gallery's vectors. They are caches: SQLite is the truth, and an index is
rebuilt from it whenever the gallery's generation counter moved on.

Inner product on L2-normalised vectors = cosine similarity. Flat (exact) below
``HNSW_THRESHOLD`` vectors, HNSW above; on the GPU when faiss-gpu and a GPU are present.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

#: vectors above which an approximate (HNSW) index replaces the exact flat one
HNSW_THRESHOLD = 20_000
HNSW_M = 32
HNSW_EF_SEARCH = 128


def _faiss():
    import faiss

    return faiss


def gpu_available() -> bool:
    faiss = _faiss()
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class VectorIndex:
    """A FAISS index plus the label of each row."""

    def __init__(self, index, labels: list[str], kind: str):
        self.index = index
        self.labels = labels
        self.kind = kind

    @classmethod
    def build(cls, vectors: np.ndarray, labels: list[str], use_gpu: bool | None = None) -> VectorIndex:
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = vectors.shape[1]
        if len(vectors) > HNSW_THRESHOLD:
            index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
            kind = "hnsw"
        else:
            index = faiss.IndexFlatIP(dim)
            kind = "flat"
        index.add(vectors)
        if kind == "hnsw":
            index.hnsw.efSearch = HNSW_EF_SEARCH
        if (gpu_available() if use_gpu is None else use_gpu) and kind == "flat":
            index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
            kind = "flat-gpu"
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
        index = faiss.index_gpu_to_cpu(self.index) if self.kind == "flat-gpu" else self.index
        header = json.dumps({**meta, "labels": self.labels, "kind": self.kind}).encode()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(len(header).to_bytes(8, "little"))
            fh.write(header)
            fh.write(faiss.serialize_index(index).tobytes())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, expect: dict) -> VectorIndex | None:
        """Load a cached index if its metadata matches ``expect`` (generation, encoder id), else None."""
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
        if meta.get("kind") == "hnsw":
            index.hnsw.efSearch = HNSW_EF_SEARCH
        return cls(index, meta["labels"], meta.get("kind", "flat").replace("-gpu", ""))
