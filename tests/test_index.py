"""FAISS index placement: flat below the threshold, HNSW above on the CPU (unchanged), and on a
GPU (faiss-gpu reporting one) flat and IVF placed on it, HNSW never. No GPU here: the GPU
detection and the two copy functions are replaced by stand-ins that record what was placed, so
the choice of kind and placement runs for real, and the IVF index searches for real (on CPU)."""

import numpy as np
import pytest

from attrib import index as index_mod
from attrib.index import VectorIndex, gpu_available, place


def clustered(n, dim=32, centres=50, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, dim))
    x = c[rng.integers(centres, size=n)] + 0.3 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def fake_gpu(monkeypatch):
    """A 'GPU' that holds indexes where they are and records each placement."""
    moved = {"to": [], "back": []}
    monkeypatch.setattr(index_mod, "gpu_available", lambda: True)
    monkeypatch.setattr(index_mod, "_to_gpu", lambda ix: moved["to"].append(type(ix).__name__) or ix)
    monkeypatch.setattr(index_mod, "_to_cpu", lambda ix: moved["back"].append(type(ix).__name__) or ix)
    return moved


def test_cpu_path_flat_then_hnsw(monkeypatch):
    assert not gpu_available()  # faiss-cpu: the path every other test runs
    x = clustered(300)
    flat = VectorIndex.build(x, [str(i) for i in range(300)])
    assert flat.kind == "flat" and type(flat.index).__name__ == "IndexFlatIP"
    scores, ids = flat.search(x[:5], 3)
    assert list(ids[:, 0]) == [0, 1, 2, 3, 4] and np.allclose(scores[:, 0], 1, atol=1e-5)
    monkeypatch.setattr(index_mod, "HNSW_THRESHOLD", 100)
    hnsw = VectorIndex.build(x, [str(i) for i in range(300)])
    assert hnsw.kind == "hnsw" and hnsw.index.hnsw.efSearch == index_mod.HNSW_EF_SEARCH
    monkeypatch.setenv("ATTRIB_FAISS_GPU", "0")
    assert not gpu_available()


def test_gpu_placement_flat_and_ivf_never_hnsw(fake_gpu, monkeypatch, tmp_path):
    x = clustered(3000)
    labels = [str(i) for i in range(len(x))]
    flat = VectorIndex.build(x, labels)
    assert flat.kind == "flat-gpu" and fake_gpu["to"] == ["IndexFlatIP"]
    monkeypatch.setattr(index_mod, "HNSW_THRESHOLD", 1000)
    ivf = VectorIndex.build(x, labels)
    assert ivf.kind == "ivf-gpu" and fake_gpu["to"][-1] == "IndexIVFFlat" and ivf.index.ntotal == len(x)
    exact = flat.search(x[:200] + 0.01, 5)[1][:, 0]
    assert (ivf.search(x[:200] + 0.01, 5)[1][:, 0] == exact).mean() >= 0.95  # IVF finds what flat finds
    assert place("an hnsw index", "hnsw", use_gpu=True) == ("an hnsw index", "hnsw")
    cpu_hnsw = VectorIndex.build(x, labels, use_gpu=False)  # told to stay on the CPU: HNSW as before
    assert cpu_hnsw.kind == "hnsw" and fake_gpu["to"].count("IndexHNSWFlat") == 0
    # the cache is written from the CPU copy, without the placement, and placed again on load
    ivf.save(tmp_path / "ivf.faiss", {"generation": 1})
    assert fake_gpu["back"] == ["IndexIVFFlat"]
    again = VectorIndex.load(tmp_path / "ivf.faiss", {"generation": 1})
    assert again.kind == "ivf-gpu" and again.index.nprobe == ivf.index.nprobe
    assert VectorIndex.load(tmp_path / "ivf.faiss", {"generation": 1}, use_gpu=False).kind == "ivf"
    cpu_hnsw.save(tmp_path / "hnsw.faiss", {"generation": 1})
    assert VectorIndex.load(tmp_path / "hnsw.faiss", {"generation": 1}).kind == "hnsw"
