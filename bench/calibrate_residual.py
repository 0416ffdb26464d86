"""Measure the training-free encoder's calibration prior and write it to attrib/data/calibration.json.

    python bench/calibrate_residual.py DATA_DIR [--shots 5]

A learned encoder measures its prior on held-out sources during training; the training-free
encoder has no training, so its prior is measured here on a folder-per-source set (the zoo's
training split, never its test splits): impostor scores (other sources' images vs a source's
K-shot prototype), genuine scores (a source's other images vs its prototype) and pair-impostor
scores (images of different sources against each other). Galleries pool it with their own
impostor evidence (see attrib.openset).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from attrib.encoders import get_encoder
from attrib.evaluate import embed_dataset
from attrib.openset import measure_prior

DATA_FILE = Path(__file__).resolve().parents[1] / "attrib" / "data" / "calibration.json"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--encoder", default="residual")
    ap.add_argument("--shots", type=int, default=5)
    args = ap.parse_args()
    enc = get_encoder(args.encoder)
    ds = embed_dataset(enc, args.data)
    cal = measure_prior(ds.embeddings, ds.names, args.shots, np.random.default_rng(0), pairs=2000)
    cal["data"] = str(args.data)
    table = json.loads(DATA_FILE.read_text()) if DATA_FILE.exists() else {}
    table[enc.id] = cal
    DATA_FILE.write_text(json.dumps(table, indent=2) + "\n")
    print(json.dumps({enc.id: cal}, indent=2))


if __name__ == "__main__":
    main()
