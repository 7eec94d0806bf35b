//! Parity with the official code: open_clip 2.26.1's tokenizer and CLIP, torchvision's
//! preprocessing, clip_benchmark's zero-shot classifier, on a tiny random CLIP with ViT-L/14's
//! structure (goldens by `scripts/clip_goldens.sh` in `tests/data/clip_tiny/`).

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use echo4o_bench::geneval::{COLORS, ColorClassifier};
use echo4o_perception::clip::model::Clip;
use echo4o_perception::clip::preprocess::{preprocess, resize_and_crop};
use echo4o_perception::clip::{ClipColorClassifier, ClipConfig, ClipTokenizer};
use image::RgbImage;

mod common;
use common::{B, assert_close_values, read_tensors, values};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/clip_tiny")
}

/// Every golden tensor, as (shape, f32 values).
fn goldens() -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    read_tensors(&data().join("features.safetensors"))
}

fn assert_close(what: &str, got: Tensor<B, 3>, want: &(Vec<usize>, Vec<f32>), tol: f32) {
    common::assert_close(what, got, want, tol);
}

fn config() -> ClipConfig {
    ClipConfig::from_file(&data().join("config.json")).unwrap()
}

fn classifier() -> ClipColorClassifier<B> {
    ClipColorClassifier::load(
        config(),
        &data().join("model.safetensors"),
        Default::default(),
    )
    .unwrap()
}

fn crops() -> Vec<(String, RgbImage)> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data().join("classify.json")).unwrap()).unwrap();
    index["crops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let name = n.as_str().unwrap().to_string();
            let img = image::open(data().join("crops").join(&name))
                .unwrap()
                .to_rgb8();
            (name, img)
        })
        .collect()
}

#[test]
fn tokenizer_matches_open_clip_on_every_golden_string() {
    let t = ClipTokenizer::openai().unwrap();
    let golden: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(data().join("tokens.json")).unwrap()).unwrap();
    assert!(golden.len() >= 2400);
    let mut wrong = Vec::new();
    for entry in &golden {
        let text = entry["text"].as_str().unwrap();
        let want: Vec<u32> = entry["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let mut got = t.tokenize(text, 77);
        got.truncate(want.len());
        let padding_is_zero = t.tokenize(text, 77)[want.len()..].iter().all(|&i| i == 0);
        if got != want || !padding_is_zero {
            wrong.push(format!("{text:?}: got {got:?}, want {want:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} strings differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn preprocessing_matches_torchvision_byte_for_byte() {
    for (name, img) in crops() {
        let want = image::open(data().join("preprocessed").join(&name))
            .unwrap()
            .to_rgb8();
        let got = resize_and_crop(&img, 224).unwrap();
        assert_eq!(got.dimensions(), want.dimensions(), "{name}");
        let differing = got
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(differing, 0, "{name}: {differing} bytes differ");
    }
}

#[test]
fn vision_tower_matches_at_every_stage() {
    let g = goldens();
    let crops = crops();
    // The normalised input of the two staged crops (indices 2 and 7).
    let (shape, want_pixels) = &g["pixels"];
    let mut ours = preprocess(&crops[2].1, 224).unwrap();
    ours.extend(preprocess(&crops[7].1, 224).unwrap());
    assert_close_values("pixels", &ours, want_pixels, 1e-6);
    let pixels = Tensor::<B, 4>::from_data(
        TensorData::new(want_pixels.clone(), shape.clone()),
        &Default::default(),
    );
    let model = golden_model();
    let (features, trace) = model.visual.forward_traced(pixels);
    assert_close("vision.ln_pre", trace.ln_pre, &g["vision.ln_pre"], 1e-4);
    for (i, block) in trace.blocks.into_iter().enumerate() {
        let key = format!("vision.block{i}");
        assert_close(&key, block, &g[&key], 1e-4);
    }
    let want = &g["image_features"];
    let staged: Vec<f32> = [2usize, 7]
        .iter()
        .flat_map(|&i| want.1[i * want.0[1]..(i + 1) * want.0[1]].to_vec())
        .collect();
    assert_close_values("image_features (staged)", &values(features), &staged, 1e-4);
    // Every crop end to end: our preprocessing, then the tower.
    let mut all = Vec::new();
    for (_, img) in &crops {
        all.extend(preprocess(img, 224).unwrap());
    }
    let all = Tensor::<B, 4>::from_data(
        TensorData::new(all, [crops.len(), 3, 224, 224]),
        &Default::default(),
    );
    assert_close_values(
        "image_features",
        &values(model.encode_image(all)),
        &want.1,
        1e-4,
    );
}

/// The model with the golden weights, for stage-by-stage forwards.
fn golden_model() -> Clip<B> {
    let mut model = Clip::init(&config(), &Default::default());
    echo4o_model::weights::load_weights(
        &mut model,
        &data().join("model.safetensors"),
        &echo4o_perception::clip::color::CLIP_KEYS,
    )
    .unwrap();
    model
}

#[test]
fn text_tower_matches_at_every_stage() {
    let g = goldens();
    let model = golden_model();
    let (shape, ids) = &g["text.tokens"];
    let tokens: Vec<Vec<u32>> = ids
        .chunks(shape[1])
        .map(|r| r.iter().map(|&v| v as u32).collect())
        .collect();
    // The tokenizer makes the same ids from the prompts.
    let t = ClipTokenizer::openai().unwrap();
    for (prompt, row) in [
        "a photo of a red dog",
        "a photo of a blue-colored hair drier",
        "a photo of a pink object",
    ]
    .iter()
    .zip(&tokens)
    {
        assert_eq!(&t.tokenize(prompt, 77), row, "{prompt}");
    }
    let (features, trace) = model.encode_text_traced(&tokens).unwrap();
    for (i, block) in trace.blocks.into_iter().enumerate() {
        let key = format!("text.block{i}");
        assert_close(&key, block, &g[&key], 1e-4);
    }
    assert_close_values(
        "text_features",
        &values(features),
        &g["text_features"].1,
        1e-4,
    );
    // Rows the tokenizer would never make are refused, not padded or cut.
    let short = model
        .encode_text(&[vec![49406, 49407]])
        .unwrap_err()
        .to_string();
    assert!(
        short.contains("row 0 has 2 ids") && short.contains("77"),
        "{short}"
    );
    let mut too_big = tokens[0].clone();
    too_big[1] = 49408;
    let err = model.encode_text(&[too_big]).unwrap_err().to_string();
    assert!(err.contains("id 49408") && err.contains("49408"), "{err}");
}

#[test]
fn zero_shot_colours_match_clip_benchmark() {
    let g = goldens();
    let clf = classifier();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data().join("classify.json")).unwrap()).unwrap();
    let crops: Vec<RgbImage> = crops().into_iter().map(|(_, i)| i).collect();
    for class in ["dog", "hair drier", "traffic light"] {
        let key = class.replace(' ', "_");
        let (shape, want) = &g[&format!("classifier.{key}")];
        assert_eq!(shape, &vec![24, COLORS.len()], "{class}");
        assert_close_values(
            &format!("classifier {class}"),
            &values(clf.classifier(class).unwrap()),
            want,
            1e-5,
        );
        let logits = values(clf.logits(&crops, class).unwrap());
        assert_close_values(
            &format!("logits {class}"),
            &logits,
            &g[&format!("logits.{key}")].1,
            2e-3,
        );
        let got = clf.classify(&crops, class).unwrap();
        let want: Vec<String> = index["colors"][class]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, want, "{class}");
    }
    assert!(clf.classify(&[], "dog").unwrap().is_empty());
    let err = clf
        .classify(&[RgbImage::new(0, 3)], "dog")
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty crop"), "{err}");
}

#[test]
fn loading_is_strict_and_names_official_keys() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(data().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| {
            n != "visual.ln_pre.weight" && n != "transformer.resblocks.1.attn.in_proj_bias"
        })
        .collect();
    let extra = st.tensor("visual.proj").unwrap();
    tensors.push(("visual.head.weight".to_string(), extra));
    let path = dir.path().join("broken.safetensors");
    safetensors::serialize_to_file(tensors, None, &path).unwrap();
    let err = ClipColorClassifier::<B>::load(config(), &path, Default::default())
        .err()
        .unwrap()
        .to_string();
    for needle in [
        "broken.safetensors",
        "missing: visual.ln_pre.weight",
        "missing: transformer.resblocks.1.attn.in_proj_bias",
        "unexpected: visual.head.weight",
    ] {
        assert!(err.contains(needle), "{needle} not in:\n{err}");
    }
    assert!(!err.contains("logit_scale"), "{err}");
    // Weights of another shape: the key and both shapes.
    let mut other = config();
    other.text_cfg.width = 32;
    let err = ClipColorClassifier::<B>::load(
        other,
        &data().join("model.safetensors"),
        Default::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("token_embedding.weight"), "{err}");
}

/// The same weights saved by torch three ways (safetensors, a `torch.save` zip with the state dict
/// under `state_dict` beside a `meta` dict, a bare state dict in the legacy non-zip format) load
/// into the same model: identical features from each.
#[test]
fn every_container_torch_writes_loads_the_same_weights() {
    use echo4o_model::weights::{KeyRules, WeightFormat, load_weights};
    use echo4o_perception::clip::color::CLIP_KEYS;
    let dir = data().join("formats");
    let config = ClipConfig::from_file(&dir.join("config.json")).unwrap();
    let device = Default::default();
    let features = |file: &str, rules: &KeyRules<'_>| {
        let mut model = Clip::<B>::init(&config, &device);
        load_weights(&mut model, &dir.join(file), rules).unwrap();
        let pixels = Tensor::<B, 4>::from_data(
            TensorData::new(
                (0..3 * 28 * 28).map(|i| (i % 17) as f32 / 17.0).collect(),
                [1, 3, 28, 28],
            ),
            &device,
        );
        let mut out = values(model.encode_image(pixels));
        out.extend(values(
            model
                .encode_text(&[vec![62, 5, 9, 63, 0, 0, 0, 0]])
                .unwrap(),
        ));
        out
    };
    assert_eq!(
        WeightFormat::detect(&dir.join("checkpoint.pth")).unwrap(),
        WeightFormat::PyTorch
    );
    assert_eq!(
        WeightFormat::detect(&dir.join("legacy.bin")).unwrap(),
        WeightFormat::PyTorch
    );
    assert_eq!(
        WeightFormat::detect(&dir.join("model.safetensors")).unwrap(),
        WeightFormat::Safetensors
    );
    let reference = features("model.safetensors", &CLIP_KEYS);
    assert!(reference.iter().any(|v| *v != 0.0));
    let nested = KeyRules {
        state_dict_key: Some("state_dict"),
        ..CLIP_KEYS
    };
    assert_eq!(features("checkpoint.pth", &nested), reference);
    assert_eq!(features("legacy.bin", &CLIP_KEYS), reference);
    // Without the entry name, the mmdet-style checkpoint's tensors are not where the model
    // looks: every key is reported, none silently left at its initial value.
    let mut model = Clip::<B>::init(&config, &device);
    let err = load_weights(&mut model, &dir.join("checkpoint.pth"), &CLIP_KEYS)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing: visual.conv1.weight"), "{err}");
}
