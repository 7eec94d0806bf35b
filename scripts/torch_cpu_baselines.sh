#!/usr/bin/env bash
# echo4o's CPU criterion benches and their PyTorch eager counterparts, measured in one run on the
# same machine and threads, joined into the table of BENCHMARKS.md (issue #16).
#
#   bash scripts/torch_cpu_baselines.sh            # THREADS=2 by default
#
# PyTorch is pinned (torch 2.5.1 from PyPI, used on the CPU only) and installed once into $VENV
# (default ~/.cache/echo4o/torch-venv; the PyPI wheel pulls CUDA libraries too, about 5 GB).
# Nothing here is needed by the tests or CI. Run it on an otherwise idle machine: both columns
# are timed minutes apart, so load from other work skews the ratio.
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
layout=$(mktemp)
torch_out=$(mktemp)
trap 'rm -f "$layout" "$torch_out"' EXIT
./target/release/examples/train_step_layout > "$layout"

cargo bench --bench model -- --noplot
cargo bench --bench train -- --noplot
"$VENV/bin/python" scripts/torch_cpu_baselines.py --threads "$THREADS" --layout "$layout" --out "$torch_out"

"$VENV/bin/python" - "$torch_out" <<'PY'
import json, sys, pathlib
torch = json.load(open(sys.argv[1]))
print(f"\ntorch {torch['meta']['torch']}, {torch['meta']['threads']} threads; medians; ratio = PyTorch / echo4o (above 1: echo4o faster)\n")
print("| bench | echo4o (burn Flex) | PyTorch eager | ratio |")
print("|---|---:|---:|---:|")
for name, r in torch["results"].items():
    group, bench = name.split("/", 1)
    est = pathlib.Path("target/criterion", group, bench.replace("/", "_"), "new/estimates.json")
    ours = json.loads(est.read_text())["median"]["point_estimate"] / 1e6
    print(f"| `{name}` | {ours:.3f} ms | {r['median_ms']:.3f} ms | {r['median_ms'] / ours:.2f}x |")
PY
