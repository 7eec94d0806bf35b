"""GenEval's official evaluate_images.py, run end to end with the tiny random Mask2Former and
CLIP of echo4o-perception's goldens, on a handful of images: the verdicts echo4o must reproduce
(issue #13).

    python scripts/geneval_e2e.py GENEVAL_CHECKOUT OUT

GENEVAL_CHECKOUT is a clone of https://github.com/djghosh13/geneval (run at af4902f); its
evaluation/evaluate_images.py runs unmodified. Only what it loads is swapped, from outside:
`init_detector` builds mmdet's Swin-S instance config at the tiny widths with
tests/data/mask2former_tiny/model.pth; `open_clip.create_model_and_transforms` returns the tiny
CLIP of tests/data/clip_tiny/ with open_clip's own OpenAI preprocessing; the script's
`assert DEVICE == "cuda"` and its `.to("cuda")` calls run on the CPU (torch.cuda.is_available is
patched to True, clip_benchmark's functions get device "cpu"). Writes OUT/images/ (GenEval's
layout: 11 official prompts, 2 images each) and OUT/results.jsonl (the official script's output).
"""
import json
import os
import runpy
import sys

import numpy as np
import open_clip
import torch
from clip_benchmark.metrics import zeroshot_classification as zsc
from PIL import Image
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "echo4o-perception", "tests", "data")
METADATA = os.path.join(HERE, "..", "..", "shared", "data", "benchmarks", "geneval", "evaluation_metadata.jsonl")
# Official prompts about the classes the tiny detector is sure of (clock, bed) and others.
LINES = [4, 39, 105, 180, 215, 237, 321, 337, 377, 450, 483]

sys.path.insert(0, HERE)
import mask2former_goldens as goldens  # noqa: E402


def make_images():
    OUT = sys.argv[2]
    lines = open(METADATA).read().splitlines()
    rng = np.random.default_rng(5)
    sizes = [(96, 64), (128, 96), (64, 64), (80, 120)]
    for k, line in enumerate(LINES):
        folder = os.path.join(OUT, "images", f"{k:05}")
        os.makedirs(os.path.join(folder, "samples"), exist_ok=True)
        with open(os.path.join(folder, "metadata.jsonl"), "w") as f:
            f.write(lines[line - 1] + "\n")
        for i in range(2):
            w, h = sizes[(k + i) % len(sizes)]
            img = np.zeros((h, w, 3), np.uint8)
            img[:] = rng.integers(0, 256, 3)
            for _ in range(3):
                x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
                x1, y1 = x0 + rng.integers(w // 4, w // 2), y0 + rng.integers(h // 4, h // 2)
                img[y0:y1, x0:x1] = rng.integers(0, 256, 3)
            img = np.clip(img.astype(int) + rng.integers(-15, 16, img.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(os.path.join(folder, "samples", f"{i:04}.png"))


def tiny_detector(*_args, **_kwargs):
    cfg = goldens.mmdet_config(json.load(open(os.path.join(DATA, "mask2former_tiny", "config.json"))))
    from mmdet.apis.inference import init_detector as official
    return official(cfg, os.path.join(DATA, "mask2former_tiny", "model.pth"), device="cpu")


def tiny_clip(arch, pretrained=None, device=None, **_kwargs):
    c = json.load(open(os.path.join(DATA, "clip_tiny", "config.json")))
    model = open_clip.model.CLIP(embed_dim=c["embed_dim"], vision_cfg=c["vision_cfg"], text_cfg=c["text_cfg"], quick_gelu=True)
    model.load_state_dict(load_file(os.path.join(DATA, "clip_tiny", "model.safetensors")))
    model.eval()
    transform = open_clip.transform.image_transform(224, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD)
    return model, transform, transform


def on_cpu(fn):
    def wrapped(*args, **kwargs):
        args = tuple("cpu" if a == "cuda" else a for a in args)
        kwargs = {k: ("cpu" if v == "cuda" else v) for k, v in kwargs.items()}
        return fn(*args, **kwargs)
    return wrapped


def patch_official(detector, clip):
    """Makes evaluate_images.py load `detector()` and `clip()` and run on the CPU."""
    torch.cuda.is_available = lambda: True
    import mmdet.apis
    mmdet.apis.init_detector = detector
    open_clip.create_model_and_transforms = clip
    zsc.zero_shot_classifier = on_cpu(zsc.zero_shot_classifier)
    zsc.run_classification = on_cpu(zsc.run_classification)


def main():
    GENEVAL, OUT = sys.argv[1], sys.argv[2]
    make_images()
    torch.set_num_threads(2)
    patch_official(tiny_detector, tiny_clip)
    script = os.path.join(GENEVAL, "evaluation", "evaluate_images.py")
    sys.argv = [script, os.path.join(OUT, "images"), "--outfile", os.path.join(OUT, "results.jsonl")]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
