#!/usr/bin/env bash
# GenEval's colour classifier at full size (ViT-L/14, random weights): open_clip's outputs and
# timings, then echo4o's on the same weights and crops, in one run on this machine (issue #13).
#
#   bash scripts/clip_full_size.sh            # THREADS=2 by default; OUT=/tmp/clip_full_size
#
# Uses the venv of scripts/clip_goldens.sh (installed by it if missing). Needs ~2 GB of disk for
# the weights and ~5 GB of memory. Run it on an otherwise idle machine: the ratio compares two
# timings taken a minute apart.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
OUT=${OUT:-/tmp/clip_full_size}
VENV=${VENV:-$HOME/.cache/echo4o/geneval-venv}
if ! "$VENV/bin/python" -c "import open_clip, clip_benchmark" 2>/dev/null; then
    VENV="$VENV" bash scripts/clip_goldens.sh
fi
cargo build --release --example clip_full_size
OMP_NUM_THREADS=$THREADS "$VENV/bin/python" scripts/clip_full_size.py "$OUT" \
    echo4o-perception/tests/data/clip_tiny/crops "$THREADS"
RAYON_NUM_THREADS=$THREADS ./target/release/examples/clip_full_size --dir "$OUT" \
    --crops echo4o-perception/tests/data/clip_tiny/crops
