"""Reference outputs of mmdet 2.x's Mask2Former (the model and test pipeline GenEval runs) and of
OpenCV's resize, for echo4o-perception's parity tests (issue #13).

Run through scripts/mask2former_goldens.sh, which installs the pinned versions. Writes into
echo4o-perception/tests/data/mask2former_tiny/:

- config.json: the tiny model in echo4o's Mask2FormerConfig format; the same numbers are patched
  into mmdet's own `mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py` (bundled with mmdet 2.28.2),
  so the architecture, test pipeline and test_cfg are the official ones at small widths: Swin
  (embed 16, depths 2-2-2-2, heads 1-1-2-4, window 7), pixel decoder (32 channels, GN 8 groups,
  2 encoder layers, 4 heads, 2 points), decoder (12 queries, 4 layers, 4 heads), 80 classes.
- model.pth: mmcv's `save_checkpoint` of that model, randomly initialised by mmdet's
  `init_weights` and then perturbed (every parameter plus N(0, 0.02 .. 0.5)) so that no norm is
  the identity and no bias zero, and four classes' logit biases raised so that some detections
  are confident; `{"state_dict": ..., "meta": ...}` as mmdet's released files.
- stages.safetensors: for one normalised input `[1, 3, 160, 224]`: the four backbone outputs,
  the pixel decoder's mask features and three refined levels, and the class and mask logits of
  every decoder prediction (before the first layer and after each).
- image.png, detections.json, detection_masks.safetensors: `inference_detector` on a 96x64 image
  (the full test pipeline: resize to 1200x800, pad to 1216x800, normalise): per detection its
  class, box and score, and its mask.
- pipeline.json: the test pipeline's output for image.png: `img_shape`, `pad_shape`, the
  normalised value of every byte 0..255 per channel (the normalisation is per value), and a
  checksum of the whole input tensor.
- resize/: random 8-bit images and `cv2.resize(..., INTER_LINEAR)` of each to several sizes
  (up and down, odd widths, the exact 2x shrink), as PNG (BGR order kept as RGB bytes: the
  resize is per channel).
"""
import json
import os
import sys
import zlib

import cv2
import mmcv
import mmdet
import numpy as np
import torch
from mmcv.runner import save_checkpoint
from mmdet.apis import inference_detector, init_detector
from PIL import Image
from safetensors.torch import save_file

torch.manual_seed(0)
np.random.seed(0)
torch.set_num_threads(2)

CONFIGS = os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs", "mask2former")
BASE = os.path.join(CONFIGS, "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py")

TINY = {
    "backbone": {"embed_dims": 16, "depths": [2, 2, 2, 2], "num_heads": [1, 1, 2, 4], "window_size": 7, "mlp_ratio": 4},
    "pixel_decoder": {"feat_channels": 32, "out_channels": 32, "num_groups": 8, "encoder_layers": 2,
                      "num_heads": 4, "num_points": 2, "feedforward_channels": 64},
    "decoder": {"num_queries": 12, "num_layers": 4, "num_heads": 4, "feedforward_channels": 64},
    "num_classes": 80,
}
# Classes made likely (added to their logit bias) so that some detections pass GenEval's 0.3
# threshold: person, car, dog, cup.
CONFIDENT = {0: 6.0, 2: 6.0, 16: 6.0, 41: 6.0}


def mmdet_config(tiny):
    """mmdet's Swin-S instance config with the tiny numbers patched in (None: the real one)."""
    cfg = mmcv.Config.fromfile(BASE)
    cfg.model.backbone.init_cfg = None
    if tiny is None:
        return cfg
    b, p, d = tiny["backbone"], tiny["pixel_decoder"], tiny["decoder"]
    bb = cfg.model.backbone
    bb.embed_dims, bb.depths, bb.num_heads = b["embed_dims"], b["depths"], b["num_heads"]
    bb.window_size, bb.mlp_ratio = b["window_size"], b["mlp_ratio"]
    head = cfg.model.panoptic_head
    head.in_channels = [b["embed_dims"] * 2 ** i for i in range(4)]
    head.feat_channels, head.out_channels = p["feat_channels"], p["out_channels"]
    head.num_queries = d["num_queries"]
    pd = head.pixel_decoder
    pd.norm_cfg = dict(type="GN", num_groups=p["num_groups"])
    enc = pd.encoder
    enc.num_layers = p["encoder_layers"]
    enc.transformerlayers.attn_cfgs.embed_dims = p["feat_channels"]
    enc.transformerlayers.attn_cfgs.num_heads = p["num_heads"]
    enc.transformerlayers.attn_cfgs.num_points = p["num_points"]
    enc.transformerlayers.ffn_cfgs.embed_dims = p["feat_channels"]
    enc.transformerlayers.ffn_cfgs.feedforward_channels = p["feedforward_channels"]
    pd.positional_encoding.num_feats = p["feat_channels"] // 2
    head.positional_encoding.num_feats = p["feat_channels"] // 2
    dec = head.transformer_decoder
    dec.num_layers = d["num_layers"]
    dec.transformerlayers.attn_cfgs.embed_dims = p["feat_channels"]
    dec.transformerlayers.attn_cfgs.num_heads = d["num_heads"]
    dec.transformerlayers.ffn_cfgs.embed_dims = p["feat_channels"]
    dec.transformerlayers.ffn_cfgs.feedforward_channels = d["feedforward_channels"]
    dec.transformerlayers.feedforward_channels = d["feedforward_channels"]
    return cfg


def build(tiny):
    cfg = mmdet_config(tiny)
    model = init_detector(cfg, None, device="cpu")
    model.init_weights()
    model.eval()
    return model


def two_boxes(h, w, rng, noise):
    """A blue image with a red and a green box (at fixed fractions of the size), plus noise."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (40, 120, 200)
    img[h * 10 // 64:h * 40 // 64, w * 20 // 96:w * 60 // 96] = (230, 30, 30)
    img[h * 30 // 64:h * 60 // 64, w * 50 // 96:w * 90 // 96] = (20, 200, 60)
    return np.clip(img.astype(int) + rng.integers(-noise, noise + 1, img.shape), 0, 255).astype(np.uint8)


def perturb(model):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.02 if p.dim() > 1 else 0.3
            if "relative_position_bias_table" in name:
                scale = 0.5
            p.add_(torch.randn(p.shape, generator=g) * scale)
        # Sharper class and mask predictions than random init gives: class logits that differ
        # between queries by several units, mask logits far from 0.
        head = model.panoptic_head
        head.cls_embed.weight.mul_(30.0)
        head.mask_embed[4].weight.mul_(20.0)
        for label, boost in CONFIDENT.items():
            head.cls_embed.bias[label] += boost


def main():
    OUT = sys.argv[1]
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(TINY, f, indent=2)
        f.write("\n")
    model = build(TINY)
    perturb(model)
    save_checkpoint(model, os.path.join(OUT, "model.pth"), meta={"note": "echo4o tiny random Mask2Former"})

    # Every stage on one normalised input.
    x = torch.randn(1, 3, 160, 224, generator=torch.Generator().manual_seed(2))
    tensors = {"input": x}
    with torch.no_grad():
        feats = model.extract_feat(x)
        for i, f in enumerate(feats):
            tensors[f"backbone.{i}"] = f
        mask_features, multi_scale = model.panoptic_head.pixel_decoder(feats)
        tensors["pixel_decoder.mask_features"] = mask_features
        for i, m in enumerate(multi_scale):
            tensors[f"pixel_decoder.multi_scale.{i}"] = m
        metas = [dict(batch_input_shape=(160, 224), img_shape=(160, 224, 3), ori_shape=(160, 224, 3), pad_shape=(160, 224, 3))]
        cls_list, mask_list = model.panoptic_head(feats, metas)
        for i, (c, m) in enumerate(zip(cls_list, mask_list)):
            tensors[f"head.class_logits.{i}"] = c
            tensors[f"head.mask_logits.{i}"] = m
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "stages.safetensors"))

    # The whole pipeline on an image.
    rng = np.random.default_rng(3)
    path = os.path.join(OUT, "image.png")
    Image.fromarray(two_boxes(64, 96, rng, 20)).save(path)
    with torch.no_grad():
        bbox_results, segm_results = inference_detector(model, path)
    dets, masks = [], []
    for label, (boxes, segs) in enumerate(zip(bbox_results, segm_results)):
        for box, seg in zip(boxes, segs):
            dets.append({"label": label, "bbox": [float(v) for v in box[:4]], "score": float(box[4])})
            masks.append(torch.from_numpy(np.ascontiguousarray(seg).astype(np.uint8)))
    with open(os.path.join(OUT, "detections.json"), "w") as f:
        json.dump(dets, f, indent=1)
        f.write("\n")
    save_file({"masks": torch.stack(masks)}, os.path.join(OUT, "detection_masks.safetensors"))

    # The test pipeline's tensor for the same image.
    from mmdet.datasets.pipelines import Compose
    from mmdet.datasets import replace_ImageToTensor
    cfg = model.cfg
    pipeline = Compose(replace_ImageToTensor(cfg.data.test.pipeline))
    data = pipeline(dict(img_info=dict(filename=path), img_prefix=None))
    tensor = data["img"][0].numpy() if hasattr(data["img"][0], "numpy") else data["img"][0].data.numpy()
    meta = data["img_metas"][0].data
    norm = cfg.data.test.pipeline[1].transforms[3]
    table = []
    for c in range(3):
        probe = np.zeros((1, 256, 3), np.float32)
        probe[0, :, c] = np.arange(256)
        out = mmcv.imnormalize(probe, np.array(norm.mean, np.float32), np.array(norm.std, np.float32), to_rgb=False)
        table.append([float(v) for v in out[0, :, c]])
    with open(os.path.join(OUT, "pipeline.json"), "w") as f:
        json.dump({
            "img_shape": list(meta["img_shape"][:2]),
            "pad_shape": list(meta["pad_shape"][:2]),
            "ori_shape": list(meta["ori_shape"][:2]),
            "normalized": table,
            "tensor_shape": list(tensor.shape),
            "tensor_crc32": zlib.crc32(np.ascontiguousarray(tensor, dtype="<f4").tobytes()),
            "tensor_sum": float(tensor.astype(np.float64).sum()),
        }, f, indent=1)
        f.write("\n")

    # OpenCV's INTER_LINEAR resize on random images.
    rdir = os.path.join(OUT, "resize")
    os.makedirs(rdir, exist_ok=True)
    cases = []
    sources = [(37, 23), (64, 48), (90, 61), (16, 16)]
    targets = [(80, 50), (53, 41), (128, 96), (32, 24), (45, 30), (19, 11), (96, 64), (8, 8), (200, 9), (7, 120)]
    for si, (sw, sh) in enumerate(sources):
        src = rng.integers(0, 256, (sh, sw, 3), dtype=np.uint8)
        Image.fromarray(src).save(os.path.join(rdir, f"src{si}.png"))
        for (dw, dh) in targets + [(sw // 2, sh // 2)]:
            out = cv2.resize(src, (dw, dh), interpolation=cv2.INTER_LINEAR)
            name = f"src{si}_{dw}x{dh}.png"
            Image.fromarray(out).save(os.path.join(rdir, name))
            cases.append({"source": f"src{si}.png", "size": [dw, dh], "output": name})
    with open(os.path.join(rdir, "cases.json"), "w") as f:
        json.dump({"opencv": cv2.__version__, "cases": cases}, f, indent=1)
        f.write("\n")
    print("keys:", len(model.state_dict()), "params:", sum(p.numel() for p in model.parameters()))
    print("detections:", len(dets))


if __name__ == "__main__":
    main()
