#!/usr/bin/env bash
# Makes the Mask2Former parity goldens of echo4o-perception (issue #13) with the official code:
# mmdet 2.28.2's Mask2Former and test pipeline on mmcv-full 1.7.2 (CPU ops), OpenCV's resize, the
# versions GenEval's environment pins (torch 2.1.2).
#
#   bash scripts/mask2former_goldens.sh
#
# Installs once into $VENV (default ~/.cache/echo4o/geneval-venv, shared with clip_goldens.sh).
# mmcv-full has no wheel for this torch: it compiles from source, about 19 minutes on 2 cores.
# Tests and CI never run this: they read the committed outputs under
# echo4o-perception/tests/data/mask2former_tiny/.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-$HOME/.cache/echo4o/geneval-venv}
if ! "$VENV/bin/python" -c "import mmdet, mmcv, torch; from mmcv.ops import MultiScaleDeformableAttention; assert mmdet.__version__ == '2.28.2' and mmcv.__version__ == '1.7.2'" 2>/dev/null; then
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install "setuptools<70" wheel "numpy<2"
    "$VENV/bin/pip" install torch==2.1.2 torchvision==0.16.2
    MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=2 "$VENV/bin/pip" install --no-build-isolation mmcv-full==1.7.2
    "$VENV/bin/pip" install mmdet==2.28.2 safetensors==0.4.5 pillow==10.4.0 pandas==2.2.3
    # mmcv pulls an opencv that needs numpy 2, which torch 2.1 cannot load.
    "$VENV/bin/pip" install "numpy<2" "opencv-python<4.9"
fi
OMP_NUM_THREADS=2 "$VENV/bin/python" scripts/mask2former_goldens.py echo4o-perception/tests/data/mask2former_tiny
