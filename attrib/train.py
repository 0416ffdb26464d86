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

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .degrade import degrade
from .errors import AttribError

LOSSES = ("subcenter-arcface", "arcface", "supcon", "proxy-anchor", "multi-similarity")
MINERS = ("none", "multi-similarity")


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
            "p_jpeg": 0.4, "jpeg_q": [60, 98],
            "p_resize": 0.3, "resize": [0.5, 1.5],
            "p_blur": 0.2, "blur": [0.2, 1.2],
            "p_noise": 0.2, "noise": [0.5, 3.0],
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
        from .encoders.learned import _reflect_pad

        h, w = img.shape[:2]
        if h < size or w < size:
            img = _reflect_pad(img, max(0, size - h), max(0, size - w))
            h, w = img.shape[:2]
        y, x = self.rng.integers(0, h - size + 1), self.rng.integers(0, w - size + 1)
        return img[y : y + size, x : x + size]

    def __call__(self, img: np.ndarray) -> np.ndarray:
        # degrade a crop with margin (so JPEG blocks and rescaling do not align with the tile)
        work = self.crop(img, min(max(img.shape[:2]), 2 * self.tile + 16))
        return self.crop(degrade(work, self.p, self.rng), self.tile)


# ---------------------------------------------------------------------------------- losses


def make_loss(name: str, num_classes: int, dim: int):
    from pytorch_metric_learning import losses

    if name == "subcenter-arcface":
        return losses.SubCenterArcFaceLoss(num_classes=num_classes, embedding_size=dim, sub_centers=3)
    if name == "arcface":
        return losses.ArcFaceLoss(num_classes=num_classes, embedding_size=dim)
    if name == "proxy-anchor":
        return losses.ProxyAnchorLoss(num_classes=num_classes, embedding_size=dim)
    if name == "supcon":
        return losses.SupConLoss(temperature=0.1)
    if name == "multi-similarity":
        return losses.MultiSimilarityLoss()
    raise AttribError(f"unknown loss {name!r}: one of {', '.join(LOSSES)}")


def make_miner(name: str):
    from pytorch_metric_learning import miners

    if name == "none":
        return None
    if name == "multi-similarity":
        return miners.MultiSimilarityMiner(epsilon=0.1)
    raise AttribError(f"unknown miner {name!r}: one of {', '.join(MINERS)}")


def fit_wccn(bank: dict[str, np.ndarray], reg: float) -> tuple[np.ndarray, np.ndarray]:
    """Within-class covariance normalisation from ``{source: (n, F) features}`` ->
    ``(mean, P)``, with embeddings ``(f - mean) @ P``.

    ``W`` is the covariance of each feature around its own source's mean (pooled over sources);
    ``P = V diag(1 / sqrt(lambda + reg * mean(lambda)))`` from ``W = V diag(lambda) V^T``. The
    ridge keeps directions with almost no within-source variation (where a few training sources
    would otherwise dictate the metric) from dominating."""
    rows = [np.asarray(v, np.float64) for v in bank.values()]
    X = np.concatenate(rows)
    mean = X.mean(axis=0)
    W = np.zeros((X.shape[1], X.shape[1]))
    for r in rows:
        Z = r - r.mean(axis=0)
        W += Z.T @ Z
    W /= len(X)
    lam, V = np.linalg.eigh(W)
    lam = np.clip(lam, 0, None)
    P = V / np.sqrt(lam + reg * lam.mean() + 1e-12)
    return mean.astype(np.float32), P.astype(np.float32)


def set_wccn(net, mean: np.ndarray, P: np.ndarray) -> None:
    """Load a :func:`fit_wccn` result into a ``residual-wccn`` net (its backbone is the linear map)."""
    import torch

    with torch.no_grad():
        net.backbone.weight.copy_(torch.from_numpy(np.ascontiguousarray(P.T, dtype=np.float32)))
        net.backbone.bias.copy_(torch.from_numpy((-mean @ P).astype(np.float32)))


def feature_bank(fe, images: dict[str, list[np.ndarray]], variants: int, augment: dict[str, Any], rng: np.random.Generator,
                 update: Callable[[int], Any] | None = None) -> dict[str, np.ndarray]:
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


# ---------------------------------------------------------------------------------- training


def train(cfg: TrainConfig, progress: bool = True, log: Callable[[str], None] | None = None, resume: bool = True) -> Path:
    """Train an encoder; returns the output folder (config.json + model.safetensors)."""
    import torch
    from tqdm.auto import tqdm

    from .encoders.learned import LearnedEncoder, build_net, save_encoder

    if cfg.loss not in LOSSES:
        raise AttribError(f"unknown loss {cfg.loss!r}: one of {', '.join(LOSSES)}")
    make_miner(cfg.miner)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AttribError("--device cuda asked for, but no GPU is available")
    began = time.time()
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda m: None)

    sources = read_sources(Path(cfg.data))
    train_names, val_names = split_train_val(sources, cfg)
    say(f"{len(train_names)} training sources, {len(val_names)} validation sources (never trained on)")
    train_imgs = {s: load_images(sources[s]["files"]) for s in train_names}
    train_imgs = {s: v for s, v in train_imgs.items() if v}
    val_imgs = {s: load_images(sources[s]["files"]) for s in val_names}
    labels_of = {s: i for i, s in enumerate(sorted(train_imgs))}
    rng = np.random.default_rng(cfg.seed)
    feature_mode = cfg.backbone.startswith("residual-")
    wccn = cfg.backbone == "residual-wccn"
    bank: dict[str, Any] = {}
    if feature_mode:
        from .encoders.residual import ResidualSpectrumEncoder

        fe = ResidualSpectrumEncoder(**cfg.residual)
        total = sum(len(v) for v in train_imgs.values()) * (1 + cfg.feature_variants)
        with tqdm(total=total, desc="features", disable=not progress, unit="img") as fbar:
            feats = feature_bank(fe, train_imgs, cfg.feature_variants, cfg.augment, rng, fbar.update)
        bank = {k: torch.from_numpy(v) for k, v in feats.items()}
        val_feats = feature_bank(fe, val_imgs, 0, cfg.augment, rng)

    enc_config = {
        "name": out.name,
        "backbone": cfg.backbone,
        "dim": fe.dim if wccn else cfg.dim,
        "head_hidden": cfg.head_hidden,
        "input": {"tile": cfg.tile, "max_tiles": cfg.max_tiles, "policy": "grid-crops-mean", "batch_size": 32},
    }
    if feature_mode:
        enc_config["input"] = {"tile": 0, "max_tiles": 0, "policy": "residual-features", "residual": dict(cfg.residual), "batch_size": 32}
    net, _ = build_net(enc_config, cfg.weights)
    if wccn:
        set_wccn(net, *fit_wccn(feats, cfg.wccn_reg))
        say(f"fitted WCCN on {sum(len(v) for v in bank.values())} feature rows of {len(bank)} sources")
    net = net.to(device)
    loss_fn = make_loss(cfg.loss, len(labels_of), enc_config["dim"]).to(device)
    miner = make_miner(cfg.miner)
    params = [{"params": net.parameters(), "lr": cfg.lr}]
    if list(loss_fn.parameters()):
        params.append({"params": loss_fn.parameters(), "lr": cfg.lr * 10})
    opt = torch.optim.AdamW(params, weight_decay=cfg.weight_decay)
    aug = Augmenter(cfg.tile, cfg.augment, rng)
    step, best, history = 0, None, []
    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        net.load_state_dict(ck["net"])
        loss_fn.load_state_dict(ck["loss"])
        opt.load_state_dict(ck["opt"])
        step, best, history = ck["step"], ck["best"], ck["history"]
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        say(f"resumed from step {step}")
    # built after a resume so that a run resumed with more --steps stretches its schedule
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in params], total_steps=max(cfg.steps, step + 1), pct_start=0.1, last_epoch=step - 1
    )
    use_amp = cfg.amp and device.startswith("cuda")
    started = time.time()
    class_names = sorted(train_imgs)
    bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=not progress or cfg.steps == 0, unit="step")
    running = None

    def checkpoint() -> None:
        nonlocal best
        net.eval()
        probe = LearnedEncoder(net, enc_config, weights_sha256="training", device=device)
        if feature_mode:
            embedded = {k: probe.embed_features(f) for k, f in val_feats.items()}
        else:
            embedded = {k: probe.embed(imgs) for k, imgs in val_imgs.items()}
        v = validate(probe, embedded, cfg.val_shots, cfg.seed)
        v["step"] = step
        history.append({k: v[k] for k in ("step", "accuracy", "auroc", "eer", "oscr")} | {"loss": running})
        loss_txt = "" if running is None else f"loss {running:.3f}, "
        say(f"step {step}: {loss_txt}held-out {cfg.val_shots}-shot acc {v['accuracy']:.3f}, AUROC {v['auroc']:.3f}, EER {v['eer']:.3f}")
        if best is None or v["score"] > best["score"]:
            best = v
            torch.save({k: t.detach().cpu() for k, t in net.state_dict().items()}, out / "best.pt")
        torch.save(
            {
                "net": net.state_dict(), "loss": loss_fn.state_dict(), "opt": opt.state_dict(),
                "step": step, "best": best, "history": history, "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "config": asdict(cfg),
            },
            ckpt_path,
        )

    if best is None and (wccn or cfg.steps == 0):
        checkpoint()  # the closed-form (or untrained) start competes with every later checkpoint
    while step < cfg.steps:
        net.train()
        chosen = rng.choice(len(class_names), size=min(cfg.batch_classes, len(class_names)), replace=False)
        tiles, labels = [], []
        for c in chosen:
            name = class_names[c]
            if feature_mode:
                rows = bank[name][torch.from_numpy(rng.integers(0, len(bank[name]), cfg.per_class))]
                tiles.append(rows)
                labels += [labels_of[name]] * cfg.per_class
                continue
            imgs = train_imgs[name]
            for j in rng.integers(0, len(imgs), cfg.per_class):
                tiles.append(aug(imgs[j]))
                labels.append(labels_of[name])
        if feature_mode:
            x = torch.cat(tiles).to(device)
        else:
            x = torch.from_numpy(np.stack(tiles)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
        y = torch.tensor(labels, device=device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            emb = net(x)
        emb = emb.float()
        loss = loss_fn(emb, y, miner(emb, y)) if miner is not None else loss_fn(emb, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        step += 1
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{running:.3f}", **({"val_acc": f"{best['accuracy']:.3f}", "val_auroc": f"{best['auroc']:.3f}"} if best else {}))
        if step % cfg.val_every == 0 or step == cfg.steps:
            checkpoint()
    bar.close()
    net.load_state_dict(torch.load(out / "best.pt", map_location=device))
    enc_config.update(
        {
            "calibration": best["calibration"],
            "training": {
                "config": asdict(cfg),
                "train_sources": len(train_imgs),
                "train_archs": sorted({sources[s]["arch"] for s in train_imgs}),
                "val_sources": val_names,
                "images": sum(len(v) for v in train_imgs.values()),
                "device": device,
                "seconds": round(time.time() - began, 1),  # everything: loading, features, fitting, validation
                "optimisation_seconds": round(time.time() - started, 1),
                "best_step": best["step"],
                "history": history,
            },
            "metrics": {k: best[k] for k in ("accuracy", "auroc", "eer", "oscr")} | {"shots": cfg.val_shots, "on": "held-out sources"},
        }
    )
    save_encoder(out, net.cpu(), enc_config)
    return out
