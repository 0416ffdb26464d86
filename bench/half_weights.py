"""Copy a trained encoder folder with its float32 weights stored as float16 (half the bytes).

    python bench/half_weights.py SRC_FOLDER DST_FOLDER

For shipping a large linear encoder in the package (``fp-wccn2``: 15 MB -> 7.6 MB). The loaders
compute in float32 either way; this prints the largest change of a cosine score between the two
folders on zoo images, so the rounding is checked, not assumed.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from attrib import zoo
from attrib.encoders.learned import CONFIG_NAME, WEIGHTS_NAME, load_encoder


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    args = ap.parse_args()
    weights = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in load_file(str(args.src / WEIGHTS_NAME)).items()}
    args.dst.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(args.dst / WEIGHTS_NAME))
    shutil.copyfile(args.src / CONFIG_NAME, args.dst / CONFIG_NAME)
    full, half = load_encoder(args.src), load_encoder(args.dst)
    imgs = [img for spec in zoo.default_zoo(4) for img in zoo.generate(spec, 4, size=128)]
    a, b = full.embed(imgs), half.embed(imgs)
    print(
        f"{args.dst}: {(args.dst / WEIGHTS_NAME).stat().st_size / 1e6:.1f} MB; "
        f"largest cosine change over {len(imgs)}^2 pairs: {np.abs(a @ a.T - b @ b.T).max():.2e}"
    )


if __name__ == "__main__":
    main()
