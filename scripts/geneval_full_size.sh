#!/usr/bin/env bash
# GenEval's whole per-image step at full size (Swin-S Mask2Former + ViT-L/14 CLIP, random weights
# written by mmdet and open_clip): the official evaluate_images.py against echo4o on the same
# 1024x1024 image, same weights, same prompt, in one run on this machine (issue #13).
#
#   bash scripts/geneval_full_size.sh GENEVAL_CHECKOUT   # THREADS=2; M2F=/tmp/mask2former_full_size
#                                                        # CLIP=/tmp/clip_full_size
#
# GENEVAL_CHECKOUT: a clone of https://github.com/djghosh13/geneval. Makes the weights with
# scripts/mask2former_full_size.sh and scripts/clip_full_size.sh first if they are missing. Run it
# on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
GENEVAL=${1:?usage: scripts/geneval_full_size.sh GENEVAL_CHECKOUT}
THREADS=${THREADS:-2}
M2F=${M2F:-/tmp/mask2former_full_size}
CLIP=${CLIP:-/tmp/clip_full_size}
VENV=${VENV:-$HOME/.cache/echo4o/geneval-venv}
[ -f "$M2F/reference.json" ] || OUT="$M2F" THREADS="$THREADS" bash scripts/mask2former_full_size.sh
[ -f "$CLIP/model.safetensors" ] || OUT="$CLIP" THREADS="$THREADS" bash scripts/clip_full_size.sh
"$VENV/bin/pip" show pandas > /dev/null 2>&1 || "$VENV/bin/pip" install "pandas==2.2.3" "numpy<2"
cargo build --release --example geneval_full_size
OMP_NUM_THREADS=$THREADS "$VENV/bin/python" scripts/geneval_full_size.py "$GENEVAL" "$M2F" "$CLIP" "$THREADS"
RAYON_NUM_THREADS=$THREADS ./target/release/examples/geneval_full_size --m2f "$M2F" --clip "$CLIP"
