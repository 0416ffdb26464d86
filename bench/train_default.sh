#!/usr/bin/env bash
# How the shipped learned encoder (attrib/data/encoders/fp-mlp) and the comparison were made.
# Splits (no generator is in two of them):
#   train:  8 architectures (tconv-k3/k4, nearest, bilinear, bicubic, vae, transformer-p4/p8), seeds 0-3 and 6, + real
#   val:    seed 4 of those 8 architectures   (checkpoint choice + calibration prior)
#   testA:  pixelshuffle and stylegan, every seed   (architectures never trained on)
#   testB:  seed 5 of the 8 training architectures  (unseen weights of seen architectures)
set -euo pipefail
ZOO=${ZOO:-zoo}
# the 10 kinds the zoo had then (it cycles over more now): 20 seeds of each
attrib zoo build "$ZOO/z200" --generators 200 --images 40 --size 128 \
  --kind tconv-k4,tconv-k3,nearest,bilinear,bicubic,pixelshuffle,vae,stylegan,transformer-p4,transformer-p8
mkdir -p "$ZOO/train" "$ZOO/testA" "$ZOO/testB"
for d in "$ZOO"/z200/*/; do
  n=$(basename "$d"); kind=${n%-s*}; seed=${n##*-s}
  if [ "$n" = real ]; then ln -sfn "$(realpath "$d")" "$ZOO/train/$n"
  elif [ "$kind" = pixelshuffle ] || [ "$kind" = stylegan ]; then ln -sfn "$(realpath "$d")" "$ZOO/testA/$n"
  elif [ "$seed" = 5 ]; then ln -sfn "$(realpath "$d")" "$ZOO/testB/$n"
  elif [ "$seed" -le 6 ]; then ln -sfn "$(realpath "$d")" "$ZOO/train/$n"
  fi
done
VAL=""
for k in bicubic bilinear nearest tconv-k3 tconv-k4 transformer-p4 transformer-p8 vae; do VAL="$VAL --val-source $k-s4"; done
attrib train "$ZOO/train" --out encoders/fp-mlp --backbone residual-mlp --steps 1500 --val-every 250 --batch-classes 32 --per-class 8 $VAL
attrib train "$ZOO/train" --out encoders/fp-cnn --backbone fpcnn --steps 600 --val-every 150 --batch-classes 16 --per-class 4 $VAL
python bench/calibrate_residual.py "$ZOO/train"
python bench/compare_encoders.py --test unseen-archs="$ZOO/testA" --test unseen-seeds="$ZOO/testB" \
  --encoder residual --encoder encoders/fp-mlp --encoder encoders/fp-cnn --post jpeg75 --post resize0.5 --out bench/out
