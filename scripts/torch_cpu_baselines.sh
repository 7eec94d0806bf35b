#!/usr/bin/env bash
# echo4o's CPU criterion benches and their PyTorch eager counterparts, measured in one run on the
# same machine and threads, joined into the table of BENCHMARKS.md (issue #16).
#
#   bash scripts/torch_cpu_baselines.sh            # THREADS=2 by default
#
# PyTorch is pinned (torch 2.5.1 from PyPI, used on the CPU only) and installed once into $VENV
# (default ~/.cache/echo4o/torch-venv; the PyPI wheel pulls CUDA libraries too, about 5 GB).
# Nothing here is needed by the tests or CI. Run it on an otherwise idle machine (and do not edit
# the sources while it runs: it builds first, but cargo bench rebuilds what changed).
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${THREADS:-2}
VENV=${VENV:-$HOME/.cache/echo4o/torch-venv}
TORCH_VERSION=2.5.1

if ! "$VENV/bin/python" -c "import torch; assert torch.__version__.startswith('$TORCH_VERSION')" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install "torch==$TORCH_VERSION" numpy
fi

export RAYON_NUM_THREADS=$THREADS
cargo build --release --example train_step_layout
cargo bench --bench model --bench train --no-run
layout=$(mktemp)
torch_before=$(mktemp)
torch_after=$(mktemp)
trap 'rm -f "$layout" "$torch_before" "$torch_after"' EXIT
./target/release/examples/train_step_layout > "$layout"

# PyTorch before and after echo4o: this virtual machine's speed drifts by tens of percent over
# minutes, so the echo4o column is bracketed by two PyTorch runs and both ratios are printed.
torch_run() {
    "$VENV/bin/python" scripts/torch_cpu_baselines.py --threads "$THREADS" --layout "$layout" --out "$1"
}
torch_run "$torch_before"
cargo bench --bench model -- --noplot
cargo bench --bench train -- --noplot
torch_run "$torch_after"

"$VENV/bin/python" - "$torch_before" "$torch_after" <<'PY'
import json, sys, pathlib
before, after = (json.load(open(p)) for p in sys.argv[1:3])
print(f"\ntorch {before['meta']['torch']}, {before['meta']['threads']} threads; medians; PyTorch timed before and after echo4o;")
print("ratio = PyTorch / echo4o (above 1: echo4o faster), against each PyTorch run\n")
print("| bench | echo4o (burn Flex) | PyTorch before | PyTorch after | ratio |")
print("|---|---:|---:|---:|---:|")
for name, r in before["results"].items():
    group, bench = name.split("/", 1)
    est = pathlib.Path("target/criterion", group, bench.replace("/", "_"), "new/estimates.json")
    ours = json.loads(est.read_text())["median"]["point_estimate"] / 1e6
    t0, t1 = r["median_ms"], after["results"][name]["median_ms"]
    lo, hi = sorted([t0 / ours, t1 / ours])
    print(f"| `{name}` | {ours:.3f} ms | {t0:.3f} ms | {t1:.3f} ms | {lo:.2f}-{hi:.2f}x |")
PY
