"""Where torch computes: the GPU when there is one, with bfloat16 autocast and micro-batches.

``ATTRIB_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``) overrides the choice; ``ATTRIB_AUTOCAST=0``
keeps float32 on the GPU. On a machine without an NVIDIA driver nothing here imports torch, so
the numpy encoders (``residual``, ``fp-wccn2``) stay torch-free on CPUs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from contextlib import nullcontext


def _driver_present() -> bool:
    return os.path.exists("/proc/driver/nvidia/version") or "torch" in sys.modules


def torch_device(requested: str | None = None) -> str:
    """``requested``, else ``$ATTRIB_DEVICE``, else ``cuda`` when torch sees a GPU, else ``cpu``."""
    chosen = requested or os.environ.get("ATTRIB_DEVICE", "").strip()
    if chosen:
        return chosen
    if not _driver_present():
        return "cpu"
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def autocast(device: str):
    """bfloat16 autocast on a CUDA device (unless ``ATTRIB_AUTOCAST=0``); nothing on a CPU."""
    if not str(device).startswith("cuda") or os.environ.get("ATTRIB_AUTOCAST", "").strip() == "0":
        return nullcontext()
    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16)


def micro_batch() -> int:
    """Images (or tiles) per forward pass on a GPU (``$ATTRIB_MICRO_BATCH``, default 64)."""
    return max(1, int(os.environ.get("ATTRIB_MICRO_BATCH", "64")))


def same_size_batches(images: Sequence, size: int) -> list[list[int]]:
    """Indices of ``images`` grouped by shape, in runs of at most ``size`` (a GPU's micro-batches)."""
    groups: dict[tuple, list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(img.shape, []).append(i)
    return [members[s : s + size] for members in groups.values() for s in range(0, len(members), size)]
