"""Reference outputs of open_clip's CLIP and clip_benchmark's zero-shot classifier, as GenEval's
colour check runs them, for echo4o-perception's parity tests (issue #13).

Run through scripts/clip_goldens.sh, which installs the pinned versions. Writes into
echo4o-perception/tests/data/clip_tiny/:

- config.json: the tiny model's open_clip config (the format of open_clip's model_configs/*.json,
  plus quick_gelu: true, as `pretrained="openai"` implies).
- model.safetensors: its randomly initialised state_dict, under open_clip's own key names.
- tokens.json: the official SimpleTokenizer on GenEval's colour templates for every COCO class
  and colour, and on strings that exercise its rules (case, punctuation, digits, contractions,
  non-ASCII, whitespace, truncation at 77).
- crops/*.png, preprocessed/*.png and features.safetensors: crops of several sizes; each after
  the official Resize(224, bicubic) + CenterCrop(224); the normalised input of two of them and
  the vision tower's stages on those (after ln_pre, after each block); every crop's image
  features; the text tower's stages and features for a few prompts; and per class the zero-shot
  classifier (embed_dim x 10 colours) and the logits of every crop against it.
- classify.json: per class, the colour clip_benchmark's run_classification predicts per crop.
- formats/: one very small CLIP (vocabulary 64) saved three ways by torch itself, to test that
  every container loads the same weights: `model.safetensors`, `checkpoint.pth` (torch.save zip
  of {"state_dict": ..., "meta": ...}, as mmdet/mmcv checkpoints are) and `legacy.bin` (the bare
  state_dict in torch's pre-1.6 non-zip format), plus its `config.json`. Every output is
  byte-identical from run to run except `legacy.bin`, whose pickle names storages by object id.
"""
import json
import os
import sys

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from clip_benchmark.metrics import zeroshot_classification as zsc
from PIL import Image
from safetensors.torch import save_file

OUT = sys.argv[1]
OBJECT_NAMES = sys.argv[2]
COLORS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"]
TEMPLATES = ["a photo of a {{c}} {cls}", "a photo of a {{c}}-colored {cls}", "a photo of a {{c}} object"]

torch.manual_seed(0)
np.random.seed(0)
torch.set_num_threads(2)

# A tiny CLIP with ViT-L/14's structure (patch 14 at 224, QuickGELU, the real 49408-token
# vocabulary and 77-token context) at small width and depth.
cfg = {
    "embed_dim": 24,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 48, "head_width": 16, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 2},
}
def make_clip(c):
    """open_clip's CLIP of config `c` (QuickGELU, as for OpenAI weights), randomly initialised."""
    return open_clip.model.CLIP(
        embed_dim=c["embed_dim"], vision_cfg=c["vision_cfg"], text_cfg=c["text_cfg"], quick_gelu=True
    )


model = make_clip(cfg)
# open_clip's init leaves some tensors at exact constants (zero biases, unit norms); perturb every
# parameter so that a wrong key, transpose or missing bias shows in the outputs.
with torch.no_grad():
    for name, p in model.named_parameters():
        if name == "logit_scale":
            continue
        p.add_(torch.randn_like(p) * 0.02)
model.eval()
os.makedirs(os.path.join(OUT, "crops"), exist_ok=True)
with open(os.path.join(OUT, "config.json"), "w") as f:
    json.dump(cfg, f, indent=2)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(OUT, "model.safetensors"))

# The tokenizer open_clip.get_tokenizer("ViT-L-14") returns.
tokenizer = open_clip.get_tokenizer("ViT-L-14")
classes = [l.strip() for l in open(OBJECT_NAMES) if l.strip()]
texts = []
for cls in classes:
    for t in TEMPLATES:
        for c in COLORS:
            texts.append(t.format(cls=cls).format(c=c))
texts += [
    "A Photo of a RED Hair Drier!",
    "it's a dog's life, isn't it? they'll've gone; we'd, I'm, you're",
    "3 cats and 12 dogs: 1.5kg, 100%",
    "  many   spaces\tand\ttabs\nand newlines  ",
    "café naïve résumé — “quotes” 日本語のテキスト emoji 🐈",
    "hyphen-ated words/and slashes (brackets) [square] {curly} <angle>",
    "<start_of_text>a photo<end_of_text>",
    "",
    " ".join(["supercalifragilisticexpialidocious"] * 30),
    "a " * 100,
]
tokens = tokenizer(texts)
with open(os.path.join(OUT, "tokens.json"), "w") as f:
    json.dump(
        # Each row up to its end token: the zeros after it are padding (id 0 itself is "!").
        [{"text": t, "ids": row[: max(i for i, v in enumerate(row) if v != 0) + 1]}
         for t, row in zip(texts, tokens.tolist())],
        f,
        ensure_ascii=False,
    )

# Crops as GenEval makes them: an object composited over #999 through its mask, cut to its box.
_, _, transform = open_clip.create_model_and_transforms("ViT-L-14", pretrained=None)
rng = np.random.default_rng(0)
sizes = [(224, 224), (300, 200), (37, 90), (500, 41), (5, 3), (225, 224), (1, 1), (640, 480)]
palette = [(220, 30, 30), (250, 140, 20), (240, 220, 40), (40, 170, 60), (30, 60, 220), (130, 40, 170),
           (240, 130, 180), (120, 70, 30), (15, 15, 15), (245, 245, 245)]
crops = []
for i, (w, h) in enumerate(sizes):
    base = np.full((h, w, 3), 0x99, dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((xx - w / 2) / max(w / 2.2, 0.5)) ** 2 + ((yy - h / 2) / max(h / 2.2, 0.5)) ** 2 <= 1.0
    color = np.array(palette[i % len(palette)], dtype=np.int16)
    noise = rng.integers(-25, 26, size=(h, w, 3))
    obj = np.clip(color + noise, 0, 255).astype(np.uint8)
    base[inside] = obj[inside]
    img = Image.fromarray(base)
    name = f"crop_{i}_{w}x{h}.png"
    img.save(os.path.join(OUT, "crops", name))
    crops.append((name, Image.open(os.path.join(OUT, "crops", name)).convert("RGB")))

# The preprocessing before normalisation (Resize + CenterCrop), as PNGs to compare byte for byte;
# the normalised tensor of two crops; the stages of the vision tower for those two.
os.makedirs(os.path.join(OUT, "preprocessed"), exist_ok=True)
for name, img in crops:
    transform.transforms[1](transform.transforms[0](img)).save(os.path.join(OUT, "preprocessed", name))
tensors = {}
pixels = torch.stack([transform(img) for _, img in crops])
STAGED = [2, 7]
tensors["pixels"] = pixels[STAGED]

with torch.no_grad():
    v = model.visual
    x = v.conv1(pixels[STAGED])
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat([v.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
    x = x + v.positional_embedding.to(x.dtype)
    x = v.ln_pre(x)
    tensors["vision.ln_pre"] = x.clone()
    for i, blk in enumerate(v.transformer.resblocks):
        x = blk(x)
        tensors[f"vision.block{i}"] = x.clone()
    image_features = model.encode_image(pixels)
    tensors["image_features"] = image_features
    assert torch.allclose(v.ln_post(x)[:, 0] @ v.proj, image_features[STAGED], atol=1e-5)

    prompts = ["a photo of a red dog", "a photo of a blue-colored hair drier", "a photo of a pink object"]
    text = tokenizer(prompts)
    tensors["text.tokens"] = text.to(torch.int32)
    t = model.token_embedding(text) + model.positional_embedding
    for i, blk in enumerate(model.transformer.resblocks):
        t = blk(t, attn_mask=model.attn_mask)
        tensors[f"text.block{i}"] = t.clone()
    tensors["text_features"] = model.encode_text(text)
    pooled = model.ln_final(t)[torch.arange(t.shape[0]), text.argmax(dim=-1)] @ model.text_projection
    assert torch.allclose(pooled, tensors["text_features"], atol=1e-5)

classify = {}
loader_images = [(transform(img), 0) for _, img in crops]
for cls in ["dog", "hair drier", "traffic light"]:
    templates = [t.format(cls=cls) for t in TEMPLATES]
    clf = zsc.zero_shot_classifier(model, tokenizer, COLORS, templates, "cpu")
    dataloader = torch.utils.data.DataLoader(loader_images, batch_size=16, num_workers=0)
    with torch.no_grad():
        logits, _ = zsc.run_classification(model, clf, dataloader, "cpu")
    key = cls.replace(" ", "_")
    tensors[f"classifier.{key}"] = clf
    tensors[f"logits.{key}"] = logits
    classify[cls] = [COLORS[int(i)] for i in logits.argmax(1)]

save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "features.safetensors"))
with open(os.path.join(OUT, "classify.json"), "w") as f:
    json.dump({"crops": [n for n, _ in crops], "colors": classify}, f, indent=2)
small_cfg = {
    "embed_dim": 8,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 28, "layers": 1, "width": 16, "head_width": 8, "patch_size": 14},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 8, "heads": 2, "layers": 1},
}
small = make_clip(small_cfg)
formats = os.path.join(OUT, "formats")
os.makedirs(formats, exist_ok=True)
with open(os.path.join(formats, "config.json"), "w") as f:
    json.dump(small_cfg, f, indent=2)
sd = {k: v.contiguous() for k, v in small.state_dict().items()}
save_file(sd, os.path.join(formats, "model.safetensors"))
torch.save({"state_dict": sd, "meta": {"mmdet_version": "2.28.2", "CLASSES": ("person", "bicycle"), "epoch": 50,
            "hook_msgs": {"best": 0.5}}}, os.path.join(formats, "checkpoint.pth"))
torch.save(sd, os.path.join(formats, "legacy.bin"), _use_new_zipfile_serialization=False)
print(f"wrote {OUT}: {len(texts)} tokenised strings, {len(crops)} crops, {len(tensors)} tensors")
