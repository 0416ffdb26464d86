"""Brief, seeded, cached training of zoo generators (in worker processes when there are many)."""

from __future__ import annotations

import contextlib
import io
import itertools
import multiprocessing
import os
import pickle
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..paths import cache_dir
from .keys import ZOO_VERSION, atomic_write, derive_seed, digest
from .networks import ZooGenerator
from .photos import load_photos, random_crop
from .specs import GeneratorSpec


@dataclass(frozen=True)
class GeneratorTrainConfig:
    """How zoo generators are trained (part of every cache key)."""

    steps: int = 250
    batch_size: int = 8
    crop: int = 32  # training crop side; a multiple of 8 so every latent size divides it
    lr: float = 1e-3
    latent_noise: float = 0.1  # latent noise, relative to the latent's spatial std (train and generate)
    threads: int = 1  # torch CPU threads; fixed so results do not depend on the machine's core count


@contextlib.contextmanager
def torch_state(seed: int, threads: int) -> Iterator[None]:
    """Seed torch's global RNG and set its thread count, restoring both afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(previous)


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """``N x H x W x 3`` uint8 -> ``N x 3 x H x W`` float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 127.5 - 1


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def generator_key(spec: GeneratorSpec, train: GeneratorTrainConfig) -> str:
    photos = [(name, pixels.shape) for name, pixels in load_photos()]
    return digest(ZOO_VERSION, spec.to_dict(), asdict(train), photos)[:16]


def _train(spec: GeneratorSpec, train: GeneratorTrainConfig) -> ZooGenerator:
    with torch_state(derive_seed("train", spec.to_dict(), asdict(train)), train.threads):
        # channels_last: oneDNN convolutions run about a quarter faster on CPU in that layout
        model = ZooGenerator(spec, train.latent_noise).to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=train.lr, betas=(0.9, 0.99))
        rng = np.random.default_rng(derive_seed("train-crops", spec.to_dict(), asdict(train)))
        for _ in range(train.steps):
            crops = np.stack([random_crop(rng, train.crop) for _ in range(train.batch_size)])
            batch = to_tensor(crops).contiguous(memory_format=torch.channels_last)
            loss = F.l1_loss(model(batch), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    # back to the layout a model loaded from the cache has, so both generate identical pixels
    return model.to(memory_format=torch.contiguous_format).eval()


def generator_path(spec: GeneratorSpec, train: GeneratorTrainConfig) -> Path:
    return cache_dir() / "zoo" / "generators" / f"{spec.name}-{generator_key(spec, train)}.pt"


def load_generator(spec: GeneratorSpec, train: GeneratorTrainConfig = GeneratorTrainConfig()) -> ZooGenerator:
    """The trained generator for ``spec``: from the cache, or trained (a few seconds) and cached."""
    path = generator_path(spec, train)
    if path.exists():
        model = ZooGenerator(spec, train.latent_noise)
        try:
            model.load_state_dict(torch.load(path, weights_only=True))
            return model.eval()
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError):
            pass  # a damaged cache entry: train again and replace it
    model = _train(spec, train)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    atomic_write(path, buffer.getvalue())
    return model


def _train_into_cache(spec: GeneratorSpec, train: GeneratorTrainConfig) -> str:
    load_generator(spec, train)
    return spec.name


def train_all(specs: Sequence[GeneratorSpec], train: GeneratorTrainConfig, workers: int, progress: bool) -> None:
    """Train and cache ``specs``, in up to ``workers`` processes (each on ``train.threads``
    threads, so results do not depend on ``workers``). A process spends seconds importing torch,
    about as long as one training, so each is given at least three generators."""
    workers = min(workers, len(specs) // 3)
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=len(specs), desc="training", unit="generator", disable=not progress))
        if workers > 1:
            # spawn, not fork: forking a process that has started torch's thread pools can deadlock
            context = multiprocessing.get_context("spawn")
            pool = stack.enter_context(ProcessPoolExecutor(min(workers, len(specs)), mp_context=context))
            names = pool.map(_train_into_cache, specs, itertools.repeat(train))
        else:
            names = map(_train_into_cache, specs, itertools.repeat(train))
        for name in names:
            bar.set_postfix_str(name)
            bar.update()


def default_workers() -> int:
    """Training processes :func:`build_zoo` uses by default: the usable cores, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))
