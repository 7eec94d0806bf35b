//! Parity with the official code: mmdet 2.28.2's Mask2Former (Swin backbone, deformable pixel
//! decoder, masked-attention decoder, instance post-processing) and its test pipeline, and
//! OpenCV's bilinear resize, on a tiny random model with the official architecture (goldens by
//! `scripts/mask2former_goldens.sh` in `tests/data/mask2former_tiny/`).

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use echo4o_bench::geneval::Detector;
use echo4o_model::weights::load_weights;
use echo4o_perception::mask2former::preprocess::{normalize, preprocess, resize_linear};
use echo4o_perception::mask2former::{
    Mask2Former, Mask2FormerConfig, Mask2FormerDetector, ignored_keys, key_rules,
};
use serde_json::Value;

mod common;
use common::{B, assert_close, read_tensors, values};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mask2former_tiny")
}

fn config() -> Mask2FormerConfig {
    Mask2FormerConfig::from_file(&data().join("config.json")).unwrap()
}

fn model() -> Mask2Former<B> {
    let config = config();
    let mut model = Mask2Former::init(&config, &Default::default());
    let ignored = ignored_keys(&config);
    let ignored: Vec<&str> = ignored.iter().map(String::as_str).collect();
    load_weights(&mut model, &data().join("model.pth"), &key_rules(&ignored)).unwrap();
    model
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(data().join(name)).unwrap()).unwrap()
}

#[test]
fn every_stage_matches_mmdet() {
    let goldens = read_tensors(&data().join("stages.safetensors"));
    let model = model();
    let (shape, input) = &goldens["input"];
    let x = Tensor::<B, 4>::from_data(
        TensorData::new(input.clone(), shape.clone()),
        &Default::default(),
    );
    let feats = model.backbone.forward(x);
    for (i, f) in feats.iter().enumerate() {
        assert_close(
            &format!("backbone.{i}"),
            f.clone(),
            &goldens[&format!("backbone.{i}")],
            1e-4,
        );
    }
    let pixel = model.panoptic_head.pixel_decoder.forward(&feats);
    assert_close(
        "pixel_decoder.mask_features",
        pixel.mask_features.clone(),
        &goldens["pixel_decoder.mask_features"],
        1e-4,
    );
    for (i, m) in pixel.multi_scale.iter().enumerate() {
        let name = format!("pixel_decoder.multi_scale.{i}");
        assert_close(&name, m.clone(), &goldens[&name], 1e-4);
    }
    let out = model.panoptic_head.forward(&feats);
    assert_eq!(out.class_logits.len(), config().decoder.num_layers + 1);
    for (i, (c, m)) in out
        .class_logits
        .into_iter()
        .zip(out.mask_logits)
        .enumerate()
    {
        assert_close(
            &format!("class_logits.{i}"),
            c,
            &goldens[&format!("head.class_logits.{i}")],
            1e-4,
        );
        assert_close(
            &format!("mask_logits.{i}"),
            m,
            &goldens[&format!("head.mask_logits.{i}")],
            1e-4,
        );
    }
}

#[test]
fn detections_match_inference_detector() {
    let detector =
        Mask2FormerDetector::<B>::load(config(), &data().join("model.pth"), Default::default())
            .unwrap();
    let image = image::open(data().join("image.png")).unwrap().to_rgb8();
    let got = detector.instances(&image).unwrap();
    let want = json("detections.json");
    let want = want.as_array().unwrap();
    let masks = read_tensors(&data().join("detection_masks.safetensors"));
    let (mshape, mvalues) = &masks["masks"];
    let area = mshape[1] * mshape[2];
    assert_eq!(got.len(), want.len(), "number of detections");
    let mut used = vec![false; got.len()];
    let mut unmatched = Vec::new();
    for (j, w) in want.iter().enumerate() {
        let label = w["label"].as_u64().unwrap() as usize;
        let score = w["score"].as_f64().unwrap() as f32;
        let bbox: Vec<f32> = w["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let want_mask: Vec<bool> = mvalues[j * area..(j + 1) * area]
            .iter()
            .map(|&v| v > 0.5)
            .collect();
        // The closest unused detection of the class (scores of low-ranked pairs lie closer
        // together than the tolerance, so the first one within it may be another's twin).
        let found = got
            .iter()
            .enumerate()
            .filter(|(i, g)| {
                !used[*i]
                    && g.label == label
                    && (g.score - score).abs() <= 1e-4
                    && g.bbox.iter().zip(&bbox).all(|(a, b)| (a - b).abs() <= 0.5)
                    && iou(&g.mask, &want_mask) >= 0.999
            })
            .min_by(|(_, a), (_, b)| (a.score - score).abs().total_cmp(&(b.score - score).abs()))
            .map(|(i, _)| i);
        match found {
            Some(i) => used[i] = true,
            None => unmatched.push((j, label, score)),
        }
    }
    assert!(
        unmatched.is_empty(),
        "mmdet detections without a match (index, class, score): {unmatched:?}"
    );
    // The Detector view carries the same detections, named by GenEval's class list.
    let detections = detector.detect(&image).unwrap();
    assert_eq!(detections.len(), got.len());
    assert_eq!(
        detections[0].class,
        echo4o_bench::geneval::OBJECT_NAMES
            .lines()
            .nth(got[0].label)
            .unwrap()
    );
}

fn iou(a: &[bool], b: &[bool]) -> f64 {
    let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

#[test]
fn the_test_pipeline_matches_mmdet() {
    let want = json("pipeline.json");
    let image = image::open(data().join("image.png")).unwrap().to_rgb8();
    let (tensor, meta) = preprocess::<B>(&image, &Default::default());
    let pair = |k: &str| -> (usize, usize) {
        let v = want[k].as_array().unwrap();
        (
            v[0].as_u64().unwrap() as usize,
            v[1].as_u64().unwrap() as usize,
        )
    };
    assert_eq!(meta.resized, pair("img_shape"));
    assert_eq!(meta.padded, pair("pad_shape"));
    assert_eq!(meta.original, pair("ori_shape"));
    let shape: Vec<usize> = want["tensor_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(tensor.dims()[1..].to_vec(), shape);
    let got = values(tensor);
    let bytes: Vec<u8> = got.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(
        u64::from(crc32(&bytes)),
        want["tensor_crc32"].as_u64().unwrap(),
        "input tensor differs"
    );
    // Every byte value normalises as mmcv does.
    let table = want["normalized"].as_array().unwrap();
    for (c, row) in table.iter().enumerate() {
        for (v, want) in row.as_array().unwrap().iter().enumerate() {
            assert_eq!(
                normalize(v as u8, c),
                want.as_f64().unwrap() as f32,
                "channel {c} value {v}"
            );
        }
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

#[test]
fn bilinear_resize_matches_opencv_byte_for_byte() {
    let dir = data().join("resize");
    let cases =
        serde_json::from_str::<Value>(&std::fs::read_to_string(dir.join("cases.json")).unwrap())
            .unwrap();
    let mut checked = 0;
    for case in cases["cases"].as_array().unwrap() {
        let src = image::open(dir.join(case["source"].as_str().unwrap()))
            .unwrap()
            .to_rgb8();
        let want = image::open(dir.join(case["output"].as_str().unwrap()))
            .unwrap()
            .to_rgb8();
        let size = case["size"].as_array().unwrap();
        let (dw, dh) = (
            size[0].as_u64().unwrap() as usize,
            size[1].as_u64().unwrap() as usize,
        );
        let got = resize_linear(
            src.as_raw(),
            (src.width() as usize, src.height() as usize),
            3,
            (dw, dh),
        );
        let bad = got
            .iter()
            .zip(want.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            bad,
            0,
            "{}: {bad} of {} bytes differ",
            case["output"],
            got.len()
        );
        checked += 1;
    }
    assert!(checked >= 40);
}

#[test]
fn a_checkpoint_of_another_shape_names_its_first_wrong_key() {
    let mut config = config();
    config.backbone.embed_dims = 48;
    config.backbone.num_heads = vec![3, 6, 12, 24];
    let err =
        match Mask2FormerDetector::<B>::load(config, &data().join("model.pth"), Default::default())
        {
            Ok(_) => panic!("a 48-wide backbone loaded 32-wide weights"),
            Err(e) => e.to_string(),
        };
    assert!(
        err.contains("backbone.patch_embed.projection.weight"),
        "{err}"
    );
}
