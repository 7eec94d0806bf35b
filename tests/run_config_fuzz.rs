//! Run files with hostile values: `RunConfig::from_file` either returns a run whose every value
//! is in range, or an error naming the file; never a panic.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use echo4o::experiment::RunConfig;
use proptest::prelude::*;
use serde_json::{Value, json};

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..5000).prop_map(|v| json!(v)),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        Just(json!(7.5)),
        Just(json!(1e300)),
        Just(json!(-1e300)),
        Just(json!(null)),
        Just(json!("x")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn run_files_load_in_range_or_fail_naming_the_file(
        size in number(), weight in number(), lr in number(), dropout in number(),
        batch in number(), sample_size in number()
    ) {
        let run = json!({
            "out": "runs/x",
            "model": {"preset": "tiny-shapes"},
            "data": {"shapes": {"mix": [["web", weight]], "size": size, "seed": 1}},
            "train": {"steps": 3, "batch_size": batch, "lr": lr, "text_dropout": dropout},
            "sample_size": sample_size,
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        std::fs::write(&path, run.to_string()).unwrap();
        match RunConfig::from_file(&path) {
            Ok(c) => {
                prop_assert!(c.train.lr > 0.0 && c.train.lr <= 1.0);
                prop_assert!((0.0..=1.0).contains(&c.train.text_dropout));
                prop_assert!((1..=4096).contains(&c.train.batch_size));
            }
            Err(e) => prop_assert!(format!("{e:#}").contains("run.json"), "{e:#}"),
        }
    }
}
