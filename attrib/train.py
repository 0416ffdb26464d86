"""Metric-learning training of fingerprint encoders (``attrib train``).

Data: a folder per source (``attrib zoo build`` writes one, with ``zoo.json`` naming each
source's architecture). Some sources are held out of training entirely (``val_archs`` whole
architectures, ``val_sources`` by name, else a seeded fraction): they validate few-shot
attribution of generators the encoder never saw, pick the checkpoint, and calibrate the
threshold prior that galleries built with the encoder start from.

Batches are source-balanced (``batch_classes`` sources x ``per_class`` images), each image a
random ``tile x tile`` crop at native resolution (never a resize of the whole image), augmented
with what fingerprints must survive: JPEG, rescaling, blur, noise. Losses from
pytorch-metric-learning, chosen by name: ``subcenter-arcface``, ``arcface``, ``supcon``,
``proxy-anchor``, ``multi-similarity`` (``miner`` adds a MultiSimilarity miner to pair losses).
Mixed precision and the GPU are used when present; checkpoints are resumable; seeds fix runs.

``residual-*`` backbones learn on the training-free residual features, computed once per image
(plus ``feature_variants`` degraded copies, so the metric learns what JPEG and rescaling do).
``residual-wccn`` is fitted in closed form (within-class covariance normalisation, see
:func:`fit_wccn`) and validated as step 0; ``steps > 0`` fine-tunes it with the loss.
"""

from __future__ import annotations

import functools
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .degrade import degrade
from .encoders.wccn import fit_wccn
from .errors import AttribError
from .imageio import reflect_pad


@dataclass
class TrainConfig:
    data: str
    out: str
    backbone: str = "fpcnn"
    weights: str | None = None
    dim: int = 128
    head_hidden: int = 256
    loss: str = "subcenter-arcface"
    miner: str = "none"
    tile: int = 64
    max_tiles: int = 8
    steps: int = 2000
    batch_classes: int = 32
    per_class: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val_archs: list[str] = field(default_factory=list)
    exclude_archs: list[str] = field(default_factory=list)
    val_sources: list[str] = field(default_factory=list)
    val_fraction: float = 0.15
    val_every: int = 250
    val_shots: int = 5
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    threads: int | None = None
    feature_variants: int = 4  # residual-*: degraded copies of each image in the feature bank
    residual: dict[str, Any] = field(default_factory=dict)  # residual-*: options of the residual features
    wccn_reg: float = 0.03  # residual-wccn: added to the within-class eigenvalues, times their mean
    augment: dict[str, Any] = field(
        default_factory=lambda: {
            "p_jpeg": 0.4,
            "jpeg_q": [60, 98],
            "p_resize": 0.3,
            "resize": [0.5, 1.5],
            "p_blur": 0.2,
            "blur": [0.2, 1.2],
            "p_noise": 0.2,
            "noise": [0.5, 3.0],
        }
    )


# ---------------------------------------------------------------------------------- data


def read_sources(data: Path) -> dict[str, dict[str, Any]]:
    """``{source: {"arch", "family", "files"}}`` from a folder per source (and zoo.json if any)."""
    from .imageio import iter_image_paths

    data = Path(data)
    if not data.is_dir():
        raise AttribError(f"{data}: not a folder")
    manifest = {}
    if (data / "zoo.json").exists():
        manifest = {e["name"]: e for e in json.loads((data / "zoo.json").read_text())["sources"]}
    out = {}
    for folder in sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = list(iter_image_paths([folder]))
        if not files:
            continue
        entry = manifest.get(folder.name, {})
        arch = entry.get("arch") or folder.name.rsplit("-s", 1)[0]
        out[folder.name] = {"arch": arch, "family": entry.get("family", "other"), "files": files}
    if len(out) < 4:
        raise AttribError(f"{data}: need at least 4 source folders with images, found {len(out)}")
    return out


def split_train_val(sources: dict[str, dict], cfg: TrainConfig) -> tuple[list[str], list[str]]:
    names = sorted(n for n in sources if sources[n]["arch"] not in set(cfg.exclude_archs))
    val = {n for n in names if sources[n]["arch"] in set(cfg.val_archs) or n in set(cfg.val_sources)}
    if not val:
        rng = random.Random(cfg.seed)
        pool = [n for n in names if n != "real"]
        val = set(rng.sample(pool, max(4, int(round(len(pool) * cfg.val_fraction)))))
    train = [n for n in names if n not in val]
    if len(train) < 2 or len(val) < 4:
        raise AttribError(f"need >= 2 training and >= 4 validation sources (have {len(train)} / {len(val)})")
    return train, sorted(val)


def load_images(files) -> list[np.ndarray]:
    from .imageio import load_image

    out = []
    for f in files:
        try:
            out.append(load_image(f).pixels)
        except AttribError:
            continue
    return out


class Augmenter:
    """Random crop + the degradations fingerprints must survive. Works on uint8 H x W x 3."""

    def __init__(self, tile: int, params: dict[str, Any], rng: np.random.Generator):
        self.tile, self.p, self.rng = tile, params, rng

    def crop(self, img: np.ndarray, size: int) -> np.ndarray:
        h, w = img.shape[:2]
        if h < size or w < size:
            img = reflect_pad(img, max(0, size - h), max(0, size - w))
            h, w = img.shape[:2]
        y, x = self.rng.integers(0, h - size + 1), self.rng.integers(0, w - size + 1)
        return img[y : y + size, x : x + size]

    def __call__(self, img: np.ndarray) -> np.ndarray:
        # degrade a crop with margin (so JPEG blocks and rescaling do not align with the tile)
        work = self.crop(img, min(max(img.shape[:2]), 2 * self.tile + 16))
        return self.crop(degrade(work, self.p, self.rng), self.tile)


# ---------------------------------------------------------------------------------- losses


#: Losses by name: ``(pytorch_metric_learning.losses, number of classes, embedding dim) -> loss``.
#: The CLI offers these names; pair losses (supcon, multi-similarity) can take a miner.
_LOSSES: dict[str, Callable[[Any, int, int], Any]] = {
    "subcenter-arcface": lambda L, n, d: L.SubCenterArcFaceLoss(num_classes=n, embedding_size=d, sub_centers=3),
    "arcface": lambda L, n, d: L.ArcFaceLoss(num_classes=n, embedding_size=d),
    "supcon": lambda L, n, d: L.SupConLoss(temperature=0.1),
    "proxy-anchor": lambda L, n, d: L.ProxyAnchorLoss(num_classes=n, embedding_size=d),
    "multi-similarity": lambda L, n, d: L.MultiSimilarityLoss(),
}
#: Miners by name: ``pytorch_metric_learning.miners -> miner`` (``none``: no miner).
_MINERS: dict[str, Callable[[Any], Any]] = {
    "none": lambda M: None,
    "multi-similarity": lambda M: M.MultiSimilarityMiner(epsilon=0.1),
}
LOSSES = tuple(_LOSSES)
MINERS = tuple(_MINERS)


def check_choices(loss: str, miner: str) -> None:
    """Refuse an unknown loss or miner name before any data is read."""
    if loss not in _LOSSES:
        raise AttribError(f"unknown loss {loss!r}: one of {', '.join(LOSSES)}")
    if miner not in _MINERS:
        raise AttribError(f"unknown miner {miner!r}: one of {', '.join(MINERS)}")


def make_loss(name: str, num_classes: int, dim: int):
    from pytorch_metric_learning import losses

    check_choices(name, "none")
    return _LOSSES[name](losses, num_classes, dim)


def make_miner(name: str):
    from pytorch_metric_learning import miners

    check_choices(LOSSES[0], name)
    return _MINERS[name](miners)


def set_wccn(net, mean: np.ndarray, P: np.ndarray) -> None:
    """Load a :func:`fit_wccn` result into a ``residual-wccn`` net (its backbone is the linear map)."""
    import torch

    with torch.no_grad():
        net.backbone.weight.copy_(torch.from_numpy(np.ascontiguousarray(P.T, dtype=np.float32)))
        net.backbone.bias.copy_(torch.from_numpy((-mean @ P).astype(np.float32)))


def feature_bank(
    fe,
    images: dict[str, list[np.ndarray]],
    variants: int,
    augment: dict[str, Any],
    rng: np.random.Generator,
    update: Callable[[int], Any] | None = None,
) -> dict[str, np.ndarray]:
    """Residual features per source: each image, then ``variants`` degraded copies of it
    (:func:`degrade`) -> ``{source: (n * (1 + variants), F) float32}``."""
    out = {}
    for name, imgs in images.items():
        batch = []
        for img in imgs:
            batch.append(img)
            batch += [degrade(img, augment, rng) for _ in range(variants)]
        out[name] = fe.features_batch(batch).astype(np.float32) if batch else np.zeros((0, fe.dim), np.float32)
        if update:
            update(len(batch))
    return out


# ---------------------------------------------------------------------------------- validation


def validate(encoder, embedded: dict[str, np.ndarray], shots: int, seed: int) -> dict[str, Any]:
    """K-shot attribution and open-set AUROC on held-out sources (``{source: embeddings}``);
    half of them play unknown. Also measures the score statistics that become the encoder's
    calibration prior."""
    from .evaluate import Dataset, run_protocol
    from .openset import measure_prior

    names = [s for s, e in embedded.items() for _ in range(len(e))]
    emb = np.concatenate(list(embedded.values()))
    ds = Dataset(names, [f"{n}/{i}" for i, n in enumerate(names)], [f"val-{i}" for i in range(len(names))], emb)
    srcs = sorted(embedded)
    rng = np.random.default_rng(seed)
    order = rng.permutation(srcs).tolist()
    unknown = sorted(order[: len(order) // 2])
    known = sorted(order[len(order) // 2 :])
    res = run_protocol(ds, encoder, known, unknown, shots=(shots,), trials=2, max_queries=30, seed=seed)
    summary = res["shots"][str(shots)]
    calibration = measure_prior(emb, names, shots, rng)
    return {
        "accuracy": summary["accuracy"],
        "auroc": summary["auroc"],
        "eer": summary["eer"],
        "oscr": summary["oscr"],
        "score": (summary["accuracy"] or 0) + (summary["auroc"] or 0),
        "calibration": calibration,
    }


# ---------------------------------------------------------------------------------- batch sources


@dataclass
class TrainingData:
    """The images of a run: training sources (those with a readable image) and held-out ones."""

    sources: dict[str, dict[str, Any]]  # read_sources()
    images: dict[str, list[np.ndarray]]  # training sources; their sorted order gives the class labels
    val_names: list[str]
    val_images: dict[str, list[np.ndarray]]

    @classmethod
    def load(cls, cfg: TrainConfig, say: Callable[[str], None]) -> TrainingData:
        sources = read_sources(Path(cfg.data))
        train_names, val_names = split_train_val(sources, cfg)
        say(f"{len(train_names)} training sources, {len(val_names)} validation sources (never trained on)")
        images = {s: load_images(sources[s]["files"]) for s in train_names}
        images = {s: v for s, v in images.items() if v}
        val_images = {s: load_images(sources[s]["files"]) for s in val_names}
        return cls(sources, images, val_names, val_images)


class ImageTiles:
    """Batches for image backbones: ``batch_classes`` random training sources x ``per_class``
    random images, each a random ``tile`` crop, degraded (:class:`Augmenter`). Validation embeds
    the held-out images whole, as the finished encoder will."""

    closed_form = False  # trained by the loss only

    def __init__(self, cfg: TrainConfig, data: TrainingData, rng: np.random.Generator):
        self.rng, self.per_class, self.batch_classes = rng, cfg.per_class, cfg.batch_classes
        self.images, self.val_images = data.images, data.val_images
        self.names = sorted(data.images)
        self.augment = Augmenter(cfg.tile, cfg.augment, rng)
        self.dim = cfg.dim
        self.input: dict[str, Any] = {"tile": cfg.tile, "max_tiles": cfg.max_tiles, "policy": "grid-crops-mean", "batch_size": 32}

    def fit(self, net, say: Callable[[str], None]) -> None:
        """Set ``net`` before any optimisation step (nothing to do: it starts as built)."""

    def sample(self, device: str):
        """One source-balanced batch ``(x, labels)``; labels index the sorted training sources."""
        import torch

        chosen = self.rng.choice(len(self.names), size=min(self.batch_classes, len(self.names)), replace=False)
        x = self._inputs([self.names[c] for c in chosen], device)
        return x, torch.tensor([int(c) for c in chosen for _ in range(self.per_class)], device=device)

    def _inputs(self, names: list[str], device: str):
        import torch

        tiles = []
        for name in names:
            imgs = self.images[name]
            tiles += [self.augment(imgs[j]) for j in self.rng.integers(0, len(imgs), self.per_class)]
        return torch.from_numpy(np.stack(tiles)).to(device).permute(0, 3, 1, 2).float().div_(255.0)

    def embed_validation(self, encoder) -> dict[str, np.ndarray]:
        return {k: encoder.embed(imgs) for k, imgs in self.val_images.items()}


class FeatureRows(ImageTiles):
    """Batches for ``residual-*`` backbones: rows of a bank of residual features, computed once
    per image plus ``feature_variants`` degraded copies (:func:`feature_bank`) before training,
    so each step costs a matrix product instead of a feature extraction."""

    def __init__(self, cfg: TrainConfig, data: TrainingData, rng: np.random.Generator, progress: bool):
        import torch
        from tqdm.auto import tqdm

        from .encoders.residual import ResidualSpectrumEncoder

        super().__init__(cfg, data, rng)
        fe = ResidualSpectrumEncoder(**cfg.residual)
        total = sum(len(v) for v in data.images.values()) * (1 + cfg.feature_variants)
        with tqdm(total=total, desc="features", disable=not progress, unit="img") as bar:
            self.feats = feature_bank(fe, data.images, cfg.feature_variants, cfg.augment, rng, bar.update)
        self.bank = {k: torch.from_numpy(v) for k, v in self.feats.items()}
        self.val_feats = feature_bank(fe, data.val_images, 0, cfg.augment, rng)
        self.feature_dim = fe.dim
        self.input = {"tile": 0, "max_tiles": 0, "policy": "residual-features", "residual": dict(cfg.residual), "batch_size": 32}

    def _inputs(self, names: list[str], device: str):
        import torch

        rows = [self.bank[n][torch.from_numpy(self.rng.integers(0, len(self.bank[n]), self.per_class))] for n in names]
        return torch.cat(rows).to(device)

    def embed_validation(self, encoder) -> dict[str, np.ndarray]:
        return {k: encoder.embed_features(f) for k, f in self.val_feats.items()}


class WCCNFeatures(FeatureRows):
    """``residual-wccn``: the feature bank, and a linear map fitted to it in closed form
    (:func:`fit_wccn`) before any step; the embedding has the features' dimension."""

    closed_form = True  # validated as step 0; further steps only fine-tune it

    def __init__(self, cfg: TrainConfig, data: TrainingData, rng: np.random.Generator, progress: bool):
        super().__init__(cfg, data, rng, progress)
        self.dim, self.reg = self.feature_dim, cfg.wccn_reg

    def fit(self, net, say: Callable[[str], None]) -> None:
        set_wccn(net, *fit_wccn(self.feats, self.reg))
        say(f"fitted WCCN on {sum(len(v) for v in self.bank.values())} feature rows of {len(self.bank)} sources")


def batch_source(cfg: TrainConfig, data: TrainingData, rng: np.random.Generator, progress: bool) -> ImageTiles:
    """The batch source of ``cfg.backbone``, chosen once: image tiles, or a residual feature bank."""
    if cfg.backbone == "residual-wccn":
        return WCCNFeatures(cfg, data, rng, progress)
    if cfg.backbone.startswith("residual-"):
        return FeatureRows(cfg, data, rng, progress)
    return ImageTiles(cfg, data, rng)


# ---------------------------------------------------------------------------------- training


@dataclass
class Model:
    """What optimisation changes and a checkpoint saves: the net, the loss (proxy losses have
    weights), the optimiser; plus the miner and the peak learning rate of each parameter group."""

    net: Any
    loss_fn: Any
    miner: Any
    opt: Any
    max_lr: list[float]

    @classmethod
    def build(cls, cfg: TrainConfig, enc_config: dict[str, Any], batches: ImageTiles, device: str, say: Callable[[str], None]) -> Model:
        import torch

        from .encoders.learned import build_net

        net, _ = build_net(enc_config, cfg.weights)
        batches.fit(net, say)
        net = net.to(device)
        loss_fn = make_loss(cfg.loss, len(batches.names), enc_config["dim"]).to(device)
        params = [{"params": net.parameters(), "lr": cfg.lr}]
        if list(loss_fn.parameters()):
            params.append({"params": loss_fn.parameters(), "lr": cfg.lr * 10})  # proxies move faster
        max_lr = [g["lr"] for g in params]
        opt = torch.optim.AdamW(params, weight_decay=cfg.weight_decay)
        return cls(net, loss_fn, make_miner(cfg.miner), opt, max_lr)

    def step(self, x, y, amp: bool) -> float:
        """One optimisation step on a batch; returns its loss."""
        import torch

        self.net.train()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            emb = self.net(x)
        emb = emb.float()
        loss = self.loss_fn(emb, y, self.miner(emb, y)) if self.miner is not None else self.loss_fn(emb, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
        self.opt.step()
        return loss.item()


class Checkpoints:
    """Validation and saving in the output folder: every validation appends to ``history`` and
    writes ``checkpoint.pt`` (everything a resumed run needs, RNG states included); the best
    validation score so far also writes the net to ``best.pt``, which the finished encoder is."""

    def __init__(
        self,
        out: Path,
        cfg: TrainConfig,
        model: Model,
        rng: np.random.Generator,
        probe: Callable[[], tuple[Any, dict[str, np.ndarray]]],
        say: Callable[[str], None],
    ):
        self.path, self.best_path = out / "checkpoint.pt", out / "best.pt"
        self.cfg, self.model, self.rng, self.probe, self.say = cfg, model, rng, probe, say
        self.best: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []

    def resume(self, device: str) -> int:
        """Restore a previous run's state if there is one; returns the step to continue from."""
        import torch

        if not self.path.exists():
            return 0
        ck = torch.load(self.path, map_location=device, weights_only=False)
        self.model.net.load_state_dict(ck["net"])
        self.model.loss_fn.load_state_dict(ck["loss"])
        self.model.opt.load_state_dict(ck["opt"])
        self.best, self.history = ck["best"], ck["history"]
        self.rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        self.say(f"resumed from step {ck['step']}")
        return ck["step"]

    def __call__(self, step: int, running: float | None) -> None:
        """Validate at ``step`` (``running``: the smoothed training loss) and save."""
        import torch

        encoder, embedded = self.probe()
        v = validate(encoder, embedded, self.cfg.val_shots, self.cfg.seed)
        v["step"] = step
        self.history.append({k: v[k] for k in ("step", "accuracy", "auroc", "eer", "oscr")} | {"loss": running})
        loss_txt = "" if running is None else f"loss {running:.3f}, "
        self.say(
            f"step {step}: {loss_txt}held-out {self.cfg.val_shots}-shot acc {v['accuracy']:.3f}, AUROC {v['auroc']:.3f}, EER {v['eer']:.3f}"
        )
        m = self.model
        if self.best is None or v["score"] > self.best["score"]:
            self.best = v
            torch.save({k: t.detach().cpu() for k, t in m.net.state_dict().items()}, self.best_path)
        torch.save(
            {
                "net": m.net.state_dict(),
                "loss": m.loss_fn.state_dict(),
                "opt": m.opt.state_dict(),
                "step": step,
                "best": self.best,
                "history": self.history,
                "rng": self.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "config": asdict(self.cfg),
            },
            self.path,
        )


def _probe(net, enc_config: dict[str, Any], device: str, batches: ImageTiles):
    """The net as an encoder (evaluation mode) and its embeddings of the held-out sources."""
    from .encoders.learned import LearnedEncoder

    net.eval()
    encoder = LearnedEncoder(net, enc_config, weights_sha256="training", device=device)
    return encoder, batches.embed_validation(encoder)


def _optimise(cfg: TrainConfig, model: Model, batches: ImageTiles, checkpoint: Checkpoints, step: int, device: str, progress: bool) -> None:
    """Steps from ``step`` to ``cfg.steps``, validating every ``val_every`` and at the end."""
    import torch
    from tqdm.auto import tqdm

    # built after a resume so that a run resumed with more --steps stretches its schedule
    sched = torch.optim.lr_scheduler.OneCycleLR(
        model.opt, max_lr=model.max_lr, total_steps=max(cfg.steps, step + 1), pct_start=0.1, last_epoch=step - 1
    )
    amp = cfg.amp and device.startswith("cuda")
    bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=not progress or cfg.steps == 0, unit="step")
    running = None
    if checkpoint.best is None and (batches.closed_form or cfg.steps == 0):
        checkpoint(step, running)  # the closed-form (or untrained) start competes with every later checkpoint
    while step < cfg.steps:
        loss = model.step(*batches.sample(device), amp)
        sched.step()
        step += 1
        running = loss if running is None else 0.95 * running + 0.05 * loss
        bar.update(1)
        best = checkpoint.best
        bar.set_postfix(
            loss=f"{running:.3f}", **({"val_acc": f"{best['accuracy']:.3f}", "val_auroc": f"{best['auroc']:.3f}"} if best else {})
        )
        if step % cfg.val_every == 0 or step == cfg.steps:
            checkpoint(step, running)
    bar.close()


def _finalise(
    out: Path,
    cfg: TrainConfig,
    model: Model,
    enc_config: dict[str, Any],
    checkpoint: Checkpoints,
    data: TrainingData,
    device: str,
    seconds: float,
    optimisation_seconds: float,
) -> Path:
    """Save the best checkpoint as the encoder, with its calibration prior, metrics and how it
    was trained in config.json."""
    import torch

    from .encoders.learned import save_encoder

    model.net.load_state_dict(torch.load(checkpoint.best_path, map_location=device))
    best = checkpoint.best
    enc_config.update(
        {
            "calibration": best["calibration"],
            "training": {
                "config": asdict(cfg),
                "train_sources": len(data.images),
                "train_archs": sorted({data.sources[s]["arch"] for s in data.images}),
                "val_sources": data.val_names,
                "images": sum(len(v) for v in data.images.values()),
                "device": device,
                "seconds": round(seconds, 1),  # everything: loading, features, fitting, validation
                "optimisation_seconds": round(optimisation_seconds, 1),
                "best_step": best["step"],
                "history": checkpoint.history,
            },
            "metrics": {k: best[k] for k in ("accuracy", "auroc", "eer", "oscr")} | {"shots": cfg.val_shots, "on": "held-out sources"},
        }
    )
    save_encoder(out, model.net.cpu(), enc_config)
    return out


def _device(cfg: TrainConfig) -> str:
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AttribError("--device cuda asked for, but no GPU is available")
    return device


def train(cfg: TrainConfig, progress: bool = True, log: Callable[[str], None] | None = None, resume: bool = True) -> Path:
    """Train an encoder; returns the output folder (config.json + model.safetensors).

    The steps: read and split the sources, choose the batch source (image tiles or a feature
    bank), build the net (fitting it in closed form where the backbone is), resume from a
    checkpoint, optimise with validation checkpoints, save the best checkpoint."""
    import torch

    check_choices(cfg.loss, cfg.miner)
    device = _device(cfg)
    began = time.time()
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda m: None)

    data = TrainingData.load(cfg, say)
    rng = np.random.default_rng(cfg.seed)
    batches = batch_source(cfg, data, rng, progress)
    enc_config = {"name": out.name, "backbone": cfg.backbone, "dim": batches.dim, "head_hidden": cfg.head_hidden, "input": batches.input}
    model = Model.build(cfg, enc_config, batches, device, say)
    checkpoint = Checkpoints(out, cfg, model, rng, functools.partial(_probe, model.net, enc_config, device, batches), say)
    step = checkpoint.resume(device) if resume else 0
    started = time.time()
    _optimise(cfg, model, batches, checkpoint, step, device, progress)
    return _finalise(out, cfg, model, enc_config, checkpoint, data, device, time.time() - began, time.time() - started)
