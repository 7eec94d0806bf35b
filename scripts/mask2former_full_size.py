"""GenEval's detector at full size (mmdet's Swin-S Mask2Former, random weights): the official
outputs and timings on one 1024x1024 image, for examples/mask2former_full_size.rs (issue #13).

    python scripts/mask2former_full_size.py OUT THREADS

Writes OUT/model.pth (mmcv's save_checkpoint of the randomly initialised, perturbed model, as
scripts/mask2former_goldens.py makes the tiny one), OUT/image.png, OUT/reference.safetensors (the
last decoder layer's class and mask logits, the backbone's four outputs) and OUT/reference.json
(the detections with their masks' areas, the timing of inference_detector: median of 3 after a
warm-up, torch threads = THREADS; the process's peak resident memory).
"""
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
from mmcv.runner import save_checkpoint
from mmdet.apis import inference_detector
from mmdet.datasets import replace_ImageToTensor
from mmdet.datasets.pipelines import Compose
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from mask2former_goldens import build, perturb, two_boxes  # noqa: E402

OUT, THREADS = sys.argv[1], int(sys.argv[2])
os.makedirs(OUT, exist_ok=True)
torch.set_num_threads(THREADS)
torch.manual_seed(0)

model = build(None)
perturb(model)
save_checkpoint(model, os.path.join(OUT, "model.pth"))
print("parameters:", sum(p.numel() for p in model.parameters()))

path = os.path.join(OUT, "image.png")
Image.fromarray(two_boxes(1024, 1024, np.random.default_rng(4), 25)).save(path)

with torch.no_grad():
    inference_detector(model, path)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        bbox_results, segm_results = inference_detector(model, path)
        times.append(time.perf_counter() - t)

    pipeline = Compose(replace_ImageToTensor(model.cfg.data.test.pipeline))
    data = pipeline(dict(img_info=dict(filename=path), img_prefix=None))
    x = data["img"][0].data[None]
    feats = model.extract_feat(x)
    metas = [dict(batch_input_shape=tuple(x.shape[-2:]))]
    cls, masks = model.panoptic_head(feats, metas)
tensors = {f"backbone.{i}": f for i, f in enumerate(feats)}
tensors["class_logits"] = cls[-1][0]
tensors["mask_logits"] = masks[-1][0]
save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "reference.safetensors"))

dets = []
for label, (boxes, segs) in enumerate(zip(bbox_results, segm_results)):
    for box, seg in zip(boxes, segs):
        dets.append({"label": label, "bbox": [float(v) for v in box[:4]], "score": float(box[4]),
                     "area": int(seg.sum())})
with open(os.path.join(OUT, "reference.json"), "w") as f:
    json.dump({"torch": torch.__version__, "threads": THREADS, "seconds": statistics.median(times),
               "all_seconds": times, "detections": dets,
               "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}, f, indent=1)
print(f"inference_detector: median {statistics.median(times):.2f} s of {times}")
