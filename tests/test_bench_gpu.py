"""bench/gpu.py runs on a machine without a GPU: the GPU parts are skipped with a notice, the CPU
parts measured, the JSON written where asked (a GPU machine runs the same script at full size)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from attrib.encoders import DEFAULT_ENCODER

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_bench_runs_on_cpu_with_notices(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "OUT": str(tmp_path)}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--quick"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads((tmp_path / "gpu.json").read_text())  # $OUT/gpu.json when no --out
    assert not res["devices"]["cuda"] and len(res["skipped"]) == 2
    assert res[f"identify_{DEFAULT_ENCODER}_cpu"]["64"]["images_per_s"] > 0
    assert res["identify_timm-tf_efficientnet_lite0_cpu"]["64"]["images_per_s"] > 0
    assert f"identify_{DEFAULT_ENCODER}_cuda" not in res and "flat_samples_gpu" not in res["faiss"]
    assert res["faiss"]["prototypes_cpu"]["recall_at_1"] == 1.0 and res["faiss"]["flat_samples_cpu"]["ms_per_query"] > 0
