"""ViT-L/14 at its real shapes (random weights, as open_clip builds it for pretrained="openai"):
the official outputs and timings that examples/clip_full_size.rs compares against (issue #13).

    python scripts/clip_full_size.py OUT_DIR CROPS_DIR THREADS

Writes OUT_DIR/model.safetensors (open_clip's state_dict, 1.7 GB), OUT_DIR/reference.safetensors
(image features of every crop, the zero-shot classifier of the class "car", the logits) and
OUT_DIR/reference.json (predicted colours, and the median seconds of 3 timed runs after a
warm-up: the crops' image features in one batch, the classifier's 30 text forwards).
"""
import json
import os
import statistics
import sys
import time

import open_clip
import torch
from clip_benchmark.metrics import zeroshot_classification as zsc
from PIL import Image
from safetensors.torch import save_file

out, crops_dir, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
COLORS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"]
CLASS = "car"
TEMPLATES = [f"a photo of a {{c}} {CLASS}", f"a photo of a {{c}}-colored {CLASS}", "a photo of a {c} object"]

model, _, transform = open_clip.create_model_and_transforms("ViT-L-14", pretrained=None, force_quick_gelu=True)
model.eval()
tokenizer = open_clip.get_tokenizer("ViT-L-14")
os.makedirs(out, exist_ok=True)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, "model.safetensors"))

names = sorted(n for n in os.listdir(crops_dir) if n.endswith(".png"))
pixels = torch.stack([transform(Image.open(os.path.join(crops_dir, n)).convert("RGB")) for n in names])


def timed(fn):
    fn()
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - t)
    return result, statistics.median(runs)


with torch.no_grad():
    features, image_s = timed(lambda: model.encode_image(pixels))
    clf, text_s = timed(lambda: zsc.zero_shot_classifier(model, tokenizer, COLORS, TEMPLATES, "cpu", amp=False))
    loader = torch.utils.data.DataLoader([(p, 0) for p in pixels], batch_size=16, num_workers=0)
    logits, _ = zsc.run_classification(model, clf, loader, "cpu", amp=False)
save_file(
    {"image_features": features.contiguous(), "classifier": clf.contiguous(), "logits": logits.contiguous()},
    os.path.join(out, "reference.safetensors"),
)
with open(os.path.join(out, "reference.json"), "w") as f:
    json.dump(
        {
            "crops": names,
            "class": CLASS,
            "colors": [COLORS[int(i)] for i in logits.argmax(1)],
            "threads": threads,
            "torch": torch.__version__,
            "open_clip": open_clip.__version__,
            "image_seconds": image_s,
            "classifier_seconds": text_s,
        },
        f,
        indent=2,
    )
print(f"torch: image features of {len(names)} crops {image_s:.3f} s, classifier {text_s:.3f} s")
