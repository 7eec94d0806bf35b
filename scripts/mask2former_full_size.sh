#!/usr/bin/env bash
# GenEval's detector at full size (Swin-S Mask2Former, random weights written by mmdet): mmdet's
# outputs and timings on a 1024x1024 image, then echo4o's on the same weights and image, in one
# run on this machine (issue #13).
#
#   bash scripts/mask2former_full_size.sh      # THREADS=2 by default; OUT=/tmp/mask2former_full_size
#
# Uses the venv of scripts/mask2former_goldens.sh (installed by it if missing). Needs ~0.5 GB of
# disk and ~6 GB of memory. Run it on an otherwise idle machine: the ratio compares two timings
# taken a few minutes apart.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
OUT=${OUT:-/tmp/mask2former_full_size}
VENV=${VENV:-$HOME/.cache/echo4o/geneval-venv}
if ! "$VENV/bin/python" -c "import mmdet, mmcv.ops" 2>/dev/null; then
    VENV="$VENV" bash scripts/mask2former_goldens.sh
fi
cargo build --release --example mask2former_full_size
OMP_NUM_THREADS=$THREADS "$VENV/bin/python" scripts/mask2former_full_size.py "$OUT" "$THREADS"
RAYON_NUM_THREADS=$THREADS ./target/release/examples/mask2former_full_size --dir "$OUT"
