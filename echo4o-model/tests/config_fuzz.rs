//! Checkpoint configs with hostile values: whatever numbers a config file holds, loading it ends
//! in a config or an error naming the field, never a panic or an allocation sized from it.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use echo4o_model::config::BagelConfig;
use echo4o_model::sampling::SamplerConfig;
use echo4o_model::train::TrainSettings;
use proptest::prelude::*;
use serde_json::{Value, json};

/// A JSON value a config field might hold: sane, zero, huge, negative, fractional, or not a
/// number at all.
fn field() -> impl Strategy<Value = Value> {
    prop_oneof![
        (1u64..5000).prop_map(|v| json!(v)),
        Just(json!(0)),
        Just(json!(1u64 << 40)),
        Just(json!(u64::MAX)),
        Just(json!(-3)),
        Just(json!(-1e-6)),
        Just(json!(1e300)),
        Just(json!(0.5)),
        Just(json!(null)),
        Just(json!("NaN")),
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        -10.0..10.0f64,
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(1e300),
        Just(-1e300),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn llm_configs_load_or_name_the_field(values in proptest::collection::vec(field(), 9)) {
        let names = [
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta",
        ];
        let mut map = serde_json::Map::new();
        for (n, v) in names.iter().zip(values) {
            map.insert(n.to_string(), v);
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("llm_config.json"), Value::Object(map).to_string()).unwrap();
        match BagelConfig::from_official_dir(dir.path()) {
            Ok(c) => {
                c.validate().unwrap();
                prop_assert!(c.llm.hidden_size <= 65_536 && c.llm.rms_norm_eps > 0.0);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn train_settings_never_panic_and_accept_only_finite_ranges(
        lr in float(), dropout in float(), ema in float(), shift in float(), clip in float()
    ) {
        let s = TrainSettings {
            lr,
            text_dropout: dropout,
            ema_decay: ema,
            timestep_shift: shift as f32,
            grad_clip: clip as f32,
            ..TrainSettings::default()
        };
        if s.validate().is_ok() {
            prop_assert!(lr.is_finite() && lr > 0.0 && lr <= 1.0);
            prop_assert!((0.0..=1.0).contains(&dropout));
        }
    }

    #[test]
    fn sampler_settings_never_panic_and_accept_only_finite_values(
        cfg in float(), img in float(), shift in float(), lo in float(), hi in float(), steps in 0usize..20_000
    ) {
        let s = SamplerConfig {
            num_timesteps: steps,
            cfg_text: cfg as f32,
            cfg_img: img as f32,
            shift: shift as f32,
            interval: (lo as f32, hi as f32),
            ..SamplerConfig::text_to_image()
        };
        if s.validate().is_ok() {
            prop_assert!(cfg.is_finite() && img.is_finite() && shift > 0.0 && (2..=10_000).contains(&steps));
        }
    }
}
