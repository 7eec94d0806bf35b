#!/usr/bin/env python3
"""Decode + Bagel resize throughput with Pillow, the reference the official data pipeline uses.

Usage: pillow_resize_bench.py DIR [ROUNDS]

Decodes every .jpg in DIR, converts to RGB and resizes it by Bagel's
MaxLongEdgeMinShortEdgeResize(1024, 512, 16) rule with Image.resize(BICUBIC), on one process per
core, and prints one line: `pillow images_per_s=<float> images=<n> processes=<p>`. Run by
`cargo run --release --example resize_throughput`, which measures echo4o on the same files in the
same run.
"""
import os
import sys
import time
from multiprocessing import Pool

from PIL import Image

MAX_SIZE, MIN_SIZE, STRIDE, MAX_PIXELS = 1024, 512, 16, 14 * 14 * 9 * 1024


def divisible(v):
    return max(STRIDE, int(round(v / STRIDE) * STRIDE))


def apply_scale(w, h, s):
    return divisible(round(w * s)), divisible(round(h * s))


def target(w, h):
    s = min(MAX_SIZE / max(w, h), 1.0)
    s = max(s, MIN_SIZE / min(w, h))
    nw, nh = apply_scale(w, h, s)
    if nw * nh > MAX_PIXELS:
        nw, nh = apply_scale(nw, nh, MAX_PIXELS / (nw * nh))
    if max(nw, nh) > MAX_SIZE:
        nw, nh = apply_scale(nw, nh, MAX_SIZE / max(nw, nh))
    return nw, nh


def work(path):
    img = Image.open(path).convert("RGB")
    return img.resize(target(*img.size), Image.BICUBIC).size


def main():
    folder = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))
    procs = os.cpu_count() or 1
    with Pool(procs) as pool:
        pool.map(work, files)  # warm-up
        start = time.perf_counter()
        for _ in range(rounds):
            pool.map(work, files)
        secs = time.perf_counter() - start
    print(f"pillow images_per_s={len(files) * rounds / secs:.2f} images={len(files) * rounds} processes={procs}")


if __name__ == "__main__":
    main()
