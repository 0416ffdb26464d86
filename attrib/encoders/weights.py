"""Encoder folders' files: their names, their hash, and pretrained weights read from a local file.

Shared by the learned encoders (:mod:`attrib.encoders.learned`) and the fused one
(:mod:`attrib.encoders.fused`), which must not import each other.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import EncoderError
from .base import Encoder

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def load_state_file(path: Path) -> dict:
    """A state dict from a local checkpoint file (torch or safetensors; nested under a
    ``state_dict`` / ``model`` key is fine)."""
    import torch

    path = Path(path)
    if not path.exists():
        raise EncoderError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file: one line, no traceback
        raise EncoderError(f"cannot read weights {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise EncoderError(f"{path}: not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_pretrained(model, path: Path, by_order: bool | None = None) -> dict[str, int]:
    """Load weights from a local file into ``model``.

    Keys are matched by name; when names do not match but every tensor shape lines up in order
    (the EfficientNet-Lite0 file that loads into timm's ``tf_efficientnet_lite0``), by parameter
    order. Returns ``{"loaded": n, "total": m}``; raises if almost nothing fits.
    """
    state = load_state_file(path)
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if by_order or (by_order is None and len(matched) < 0.5 * len(own)):
        # counters such as BatchNorm's num_batches_tracked are not parameters: align float tensors only
        own_items = [(k, v) for k, v in own.items() if v.is_floating_point()]
        src_items = [(k, v) for k, v in state.items() if hasattr(v, "is_floating_point") and v.is_floating_point()]
        # classifier heads may be absent on either side: align the common prefix
        n = 0
        mapped = {}
        for (k_own, v_own), (_, v_src) in zip(own_items, src_items):
            if tuple(v_own.shape) != tuple(v_src.shape):
                break
            mapped[k_own] = v_src
            n += 1
        if n > len(matched):
            matched = mapped
    n_float = sum(1 for v in own.values() if v.is_floating_point())
    if len(matched) < 0.5 * n_float:
        raise EncoderError(f"{path}: only {len(matched)} of {n_float} tensors fit this backbone (wrong file for this model?)")
    model.load_state_dict(matched, strict=False)
    return {"loaded": len(matched), "total": n_float}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_numpy_weights(path: Path, required: tuple[str, ...] = ()) -> dict:
    """An encoder folder's ``model.safetensors`` as numpy arrays; a file that does not load, or
    lacks one of ``required``, is one :class:`EncoderError` line."""
    from safetensors.numpy import load_file

    try:
        weights = load_file(str(path))
    except Exception as exc:
        raise EncoderError(f"{path}: weights do not load ({(str(exc).splitlines() or [type(exc).__name__])[0]})") from None
    missing = [k for k in required if k not in weights]
    if missing:
        raise EncoderError(f"{path}: weights do not load ({missing[0]!r})")
    return weights


def weights_from(config: dict[str, Any]) -> list[str]:
    """The sibling folders an encoder folder's ``config.json`` takes weights from (``weights_from``:
    one name or a list of them), in the order they are read."""
    bases = config.get("weights_from") or []
    return [bases] if isinstance(bases, str) else list(bases)


def folder_weights(config: dict[str, Any], path: Path, folder: Path, required: tuple[str, ...] = ()) -> tuple[dict, str]:
    """An encoder folder's numpy weights and their hash. A folder whose ``config.json`` names
    ``weights_from`` (a sibling folder, relative to this one, or a list of them) holds only what it
    adds: the siblings' ``model.safetensors`` are read first, in order, this folder's on top, and the
    hash covers every file (``fp-joint2`` is ``fp-joint1``'s 13 MB of weights plus 150 kB of score
    normalisation)."""
    bases = weights_from(config)
    if not bases:
        return read_numpy_weights(path, required), sha256_file(path)
    weights: dict = {}
    digests = []
    for base in bases:  # in order, each on top of the last
        base_path = (Path(folder) / base / WEIGHTS_NAME).resolve()
        if not base_path.is_file():
            raise EncoderError(f"{folder}: weights_from {base!r} has no {WEIGHTS_NAME}")
        weights |= read_numpy_weights(base_path)
        digests.append(sha256_file(base_path))
    weights |= read_numpy_weights(path)
    missing = [k for k in required if k not in weights]
    if missing:
        raise EncoderError(f"{path}: weights do not load ({missing[0]!r})")
    digest = hashlib.sha256("".join(digests + [sha256_file(path)]).encode()).hexdigest()
    return weights, digest


def write_numpy_folder(folder: str | Path, config: dict, weights: dict) -> Path:
    """Write an encoder folder from numpy weights: ``model.safetensors`` + ``config.json``."""
    import json

    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(folder / WEIGHTS_NAME))
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return folder


class FolderEncoder(Encoder):
    """What every encoder loaded from a folder shares: name, config and weights hash (the id),
    the calibration prior in its config, and the folder as its spec."""

    def __init__(
        self, config: dict[str, Any], weights_sha256: str, folder: Path | None = None, default_name: str = "learned", batch_size: int = 32
    ):
        self.config_ = config
        self.name = config.get("name", default_name)
        self.dim = int(config["dim"])
        self.batch_size = int(config["input"].get("batch_size", batch_size))
        self._weights_sha = weights_sha256
        self.folder = folder
        self.spec = str(Path(folder).resolve()) if folder else None

    def config(self) -> dict[str, Any]:
        return {k: self.config_[k] for k in ("backbone", "dim", "head_hidden", "input", "score_norm") if k in self.config_}

    def weights_hash(self) -> str:
        return self._weights_sha

    @property
    def calibration(self) -> dict[str, Any] | None:
        return self.config_.get("calibration")
