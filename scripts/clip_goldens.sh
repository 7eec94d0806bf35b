#!/usr/bin/env bash
# Makes the CLIP parity goldens of echo4o-perception (issue #13) with the official code:
# open_clip's CLIP and tokenizer, torchvision's preprocessing, clip_benchmark's zero-shot
# classifier, the versions GenEval's environment pins (open-clip-torch 2.26.1 on torch 2.1.2).
#
#   bash scripts/clip_goldens.sh
#
# Installs once into $VENV (default ~/.cache/echo4o/geneval-venv; the PyPI torch wheel brings
# CUDA libraries too, about 5 GB, though only the CPU is used). Tests and CI never run this: they
# read the committed outputs under echo4o-perception/tests/data/clip_tiny/.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-$HOME/.cache/echo4o/geneval-venv}
if ! "$VENV/bin/python" -c "import open_clip, clip_benchmark, torch; assert open_clip.__version__ == '2.26.1' and torch.__version__.startswith('2.1.2')" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install "setuptools<70" wheel "numpy<2"
    "$VENV/bin/pip" install torch==2.1.2 torchvision==0.16.2
    "$VENV/bin/pip" install open-clip-torch==2.26.1 clip-benchmark==1.6.1 "numpy<2" safetensors==0.4.5 pillow==10.4.0
fi
OMP_NUM_THREADS=2 "$VENV/bin/python" scripts/clip_goldens.py echo4o-perception/tests/data/clip_tiny \
    ../shared/data/benchmarks/geneval/object_names.txt
