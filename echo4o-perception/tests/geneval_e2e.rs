//! GenEval end to end: the official `evaluate_images.py` (GenEval af4902f, unmodified) with the
//! tiny random Mask2Former and CLIP of the parity goldens gave a verdict and reason per image
//! (`scripts/geneval_e2e.py`, outputs in `tests/data/geneval_e2e/`); echo4o's rule engine with
//! the same models, loaded from the same files, must give the same ones.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use echo4o_bench::geneval::{EngineConfig, evaluate_folder};
use echo4o_perception::clip::{ClipColorClassifier, ClipConfig};
use echo4o_perception::mask2former::{Mask2FormerConfig, Mask2FormerDetector};
use serde_json::Value;

mod common;
use common::B;

fn data(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(sub)
}

#[test]
fn verdicts_and_reasons_match_evaluate_images_py() {
    let m2f = data("mask2former_tiny");
    let detector = Mask2FormerDetector::<B>::load(
        Mask2FormerConfig::from_file(&m2f.join("config.json")).unwrap(),
        &m2f.join("model.pth"),
        Default::default(),
    )
    .unwrap();
    let clip = data("clip_tiny");
    let classifier = ClipColorClassifier::<B>::load(
        ClipConfig::from_file(&clip.join("config.json")).unwrap(),
        &clip.join("model.safetensors"),
        Default::default(),
    )
    .unwrap();
    let root = data("geneval_e2e");
    let out = tempfile::tempdir().unwrap();
    let (results, _) = evaluate_folder(
        "geneval",
        &root.join("images"),
        out.path(),
        &detector,
        &classifier,
        &EngineConfig::default(),
    )
    .unwrap();
    let official: BTreeMap<String, Value> = std::fs::read_to_string(root.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["filename"].as_str().unwrap().to_string(), v)
        })
        .collect();
    assert_eq!(results.len(), official.len());
    let mut correct = 0;
    for r in &results {
        let key = r.filename.split("geneval_e2e/").nth(1).unwrap();
        let want = &official[key];
        assert_eq!(
            r.correct,
            want["correct"].as_bool().unwrap(),
            "{key}: correct"
        );
        assert_eq!(r.reason, want["reason"].as_str().unwrap(), "{key}: reason");
        assert_eq!(
            r.metadata,
            want["metadata"].as_str().unwrap(),
            "{key}: metadata"
        );
        // The kept detections: same classes, same number each.
        let ours: Value = serde_json::from_str(&r.details).unwrap();
        let theirs: Value = serde_json::from_str(want["details"].as_str().unwrap()).unwrap();
        let counts = |v: &Value| -> BTreeMap<String, usize> {
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, boxes)| (k.clone(), boxes.as_array().unwrap().len()))
                .collect()
        };
        assert_eq!(
            counts(&ours),
            counts(&theirs),
            "{key}: detections kept per class"
        );
        correct += usize::from(r.correct);
    }
    // The set mixes verdicts, so agreement is not trivially "all wrong".
    assert!(correct > 0 && correct < results.len());
}
