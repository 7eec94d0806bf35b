#!/usr/bin/env bash
# The GPU check of the model (BENCHMARKS.md, "GPU"): parity on CUDA in f32 and bf16, then one
# full-size BAGEL-7B-MoT flow forward at 512 and 1024 in burn (bf16) and in plain PyTorch, on the
# same card in the same run.
#
# Build on any x86-64 machine (no CUDA needed at build time), then run where the GPU is:
#   cargo build --release --features cuda --example parity --example bagel_full_size
#   BIN=target/release/examples OUT=/tmp/gpu bash scripts/gpu_check.sh
set -u
BIN=${BIN:-target/release/examples}
OUT=${OUT:-gpu_check_out}
ITERS=${ITERS:-3}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
exec > >(tee "$LOG") 2>&1

# burn-cuda loads libnvrtc at run time: add the folders that hold it (never a `compat` libcuda,
# which breaks the driver).
for dir in $(find / -xdev -name 'libnvrtc.so*' 2>/dev/null | grep -v -e stubs -e compat | xargs -r -n1 dirname | sort -u); do
    LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$dir"
done
export LD_LIBRARY_PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

step() {
    local limit=$1
    shift
    echo
    echo "### $* (limit ${limit}s)"
    local t0=$(date +%s%N)
    timeout "$limit" "$@"
    local rc=$?
    echo "### exit $rc after $((($(date +%s%N) - t0) / 1000000)) ms"
}

# The limits add up to 540 s, under the device tool's 600 s per command.
# Kernels are JIT-compiled and autotuned on first use in each process: run every parity case of
# one precision in one process (the first case's time includes compilation), keep autotuning
# short, and report the warm forward apart from the first.
export CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal}
G=echo4o-model/tests/golden
step 200 "$BIN/parity" "$G" bagel_tiny_a flux_vae_tiny bagel_tiny_m --device cuda-f32:0
step 120 "$BIN/parity" "$G" bagel_tiny_a bagel_tiny_m --device cuda:0
step 60 python3 scripts/bagel_forward_torch.py --sizes 512 1024 --iters "$ITERS"
step 160 "$BIN/bagel_full_size" --device cuda:0 --layers 28 --size 512 --iters "$ITERS"
