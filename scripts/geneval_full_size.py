"""GenEval's whole per-image step at full size, officially: evaluate_images.py's `evaluate_image`
(Mask2Former Swin-S detection, then CLIP ViT-L/14 colour classification of the kept object) on
the 1024x1024 image of scripts/mask2former_full_size.py, with random weights written by mmdet and
open_clip; for examples/geneval_full_size.rs (issue #13).

    python scripts/geneval_full_size.py GENEVAL_CHECKOUT M2F_DIR CLIP_DIR THREADS

M2F_DIR holds model.pth and image.png (scripts/mask2former_full_size.py), CLIP_DIR
model.safetensors (scripts/clip_full_size.py). The prompt asks for one object of the class the
detector is surest of, in red, so the colour step runs. Writes M2F_DIR/geneval.json: the
metadata, the official result, and the median seconds of 3 calls of `evaluate_image` after a
warm-up (which also builds and caches the class's zero-shot classifier, as GenEval does once per
class).
"""
import json
import os
import resource
import runpy
import statistics
import sys
import time

import open_clip
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import geneval_e2e  # noqa: E402
import mask2former_goldens as goldens  # noqa: E402

GENEVAL, M2F, CLIP, THREADS = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(THREADS)
CREATE_CLIP = open_clip.create_model_and_transforms  # before evaluate_images.py's is swapped


def detector(*_args, **_kwargs):
    from mmdet.apis.inference import init_detector as official
    return official(goldens.mmdet_config(None), os.path.join(M2F, "model.pth"), device="cpu")


def clip(arch, pretrained=None, device=None, **_kwargs):
    model, _, transform = CREATE_CLIP("ViT-L-14", pretrained=None, force_quick_gelu=True)
    model.load_state_dict(load_file(os.path.join(CLIP, "model.safetensors")))
    model.eval()
    return model, transform, transform


geneval_e2e.patch_official(detector, clip)
script = os.path.join(GENEVAL, "evaluation", "evaluate_images.py")
sys.argv = [script, "unused"]
ns = runpy.run_path(script, run_name="geneval_evaluate_images")
g = ns["evaluate_image"].__globals__
g["args"] = ns["parse_args"]()
g["object_detector"], (g["clip_model"], g["transform"], g["tokenizer"]), g["classnames"] = ns["load_models"](g["args"])
g.update(THRESHOLD=0.3, COUNTING_THRESHOLD=0.9, MAX_OBJECTS=16, NMS_THRESHOLD=1.0, POSITION_THRESHOLD=0.1)

reference = json.load(open(os.path.join(M2F, "reference.json")))
best = max(reference["detections"], key=lambda d: d["score"])
name = g["classnames"][best["label"]]
metadata = {"tag": "colors", "include": [{"class": name, "count": 1, "color": "red"}], "prompt": f"a photo of a red {name}"}
path = os.path.join(M2F, "image.png")
with torch.no_grad():
    g["evaluate_image"](path, metadata)
    times, result = [], None
    for _ in range(3):
        t = time.perf_counter()
        result = g["evaluate_image"](path, metadata)
        times.append(time.perf_counter() - t)
with open(os.path.join(M2F, "geneval.json"), "w") as f:
    json.dump({"metadata": metadata, "result": result, "seconds": statistics.median(times), "all_seconds": times,
               "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}, f, indent=1)
print(f"evaluate_image: median {statistics.median(times):.2f} s of {times}; correct={result['correct']} reason={result['reason']!r}")
