//! The trainer end to end on a tiny pixel-codec model: the loss falls on a fixed batch, frozen
//! parts do not move, and a saved run resumes exactly where it stopped.

#![allow(clippy::unwrap_used)]

use burn::backend::Autodiff;
use burn_flex::{Flex, FlexDevice};
use echo4o_core::image::{Rgb, RgbImage};
use echo4o_core::{Sample, SampleImage};
use echo4o_model::bagel::Bagel;
use echo4o_model::burn;
use echo4o_model::codec::Codec;
use echo4o_model::config::{AeConfig, BagelConfig};
use echo4o_model::pipeline::{BagelPipeline, save_checkpoint};
use echo4o_model::tokenizer::write_byte_level_tokenizer;
use echo4o_model::train::{TrainSettings, Trainer};

type B = Autodiff<Flex>;

fn tiny_pipeline(dir: &std::path::Path) -> BagelPipeline<Flex> {
    let mut config = BagelConfig::tiny();
    config.vae = AeConfig::pixel(2);
    let dev = FlexDevice;
    save_checkpoint(
        dir,
        &Bagel::<Flex>::init(&config, &dev),
        &Codec::<Flex>::init(&config.vae, &dev),
        &config,
    )
    .unwrap();
    write_byte_level_tokenizer(&dir.join("tokenizer.json"), 996).unwrap();
    BagelPipeline::load(dir, &dev).unwrap()
}

fn batch() -> Vec<Sample> {
    let colors = [[220u8, 30, 30], [30, 70, 225]];
    (0..4)
        .map(|i| {
            let c = colors[i % 2];
            let img = RgbImage::from_fn(
                32,
                32,
                |x, _| if x < 16 { Rgb(c) } else { Rgb([128, 128, 128]) },
            );
            let name = if i % 2 == 0 { "red" } else { "blue" };
            Sample::new(
                format!("s{i}"),
                format!("a {name} half"),
                SampleImage::decoded(img, "memory"),
            )
        })
        .collect()
}

fn settings() -> TrainSettings {
    TrainSettings {
        steps: 40,
        batch_size: 4,
        lr: 3e-3,
        warmup_steps: 5,
        text_dropout: 0.0,
        ..TrainSettings::default()
    }
}

#[test]
fn loss_falls_on_a_fixed_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::<B>::new(tiny_pipeline(dir.path()), settings(), &FlexDevice).unwrap();
    let data = batch();
    let first: f32 = (0..3)
        .map(|_| t.train_step(&data).unwrap().mse)
        .sum::<f32>()
        / 3.0;
    for _ in 0..30 {
        t.train_step(&data).unwrap();
    }
    let last: f32 = (0..3)
        .map(|_| t.train_step(&data).unwrap().mse)
        .sum::<f32>()
        / 3.0;
    assert!(last < 0.7 * first, "mse {first} -> {last}");
    assert_eq!(t.step_count(), 36);
}

#[test]
fn a_saved_run_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = batch();
    let mut straight = Trainer::<B>::new(
        tiny_pipeline(&dir.path().join("init")),
        settings(),
        &FlexDevice,
    )
    .unwrap();
    for _ in 0..3 {
        straight.train_step(&data).unwrap();
    }
    straight.save(&dir.path().join("ckpt")).unwrap();
    let want: Vec<f32> = (0..2)
        .map(|_| straight.train_step(&data).unwrap().loss)
        .collect();

    let mut resumed = Trainer::<B>::resume(&dir.path().join("ckpt"), None, &FlexDevice).unwrap();
    assert_eq!(resumed.step_count(), 3);
    let got: Vec<f32> = (0..2)
        .map(|_| resumed.train_step(&data).unwrap().loss)
        .collect();
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{got:?} vs {want:?}"
        );
    }
    // The saved EMA folder is a loadable checkpoint.
    BagelPipeline::<Flex>::load(&dir.path().join("ckpt"), &FlexDevice).unwrap();

    // A second save replaces the state whole, leaving no temporary folder behind.
    resumed.save(&dir.path().join("ckpt")).unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path().join("ckpt"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("train_state"))
        .collect();
    assert_eq!(names, vec!["train_state".to_string()]);
    // A save killed between its two renames left only the new state: resume takes it.
    let ckpt = dir.path().join("ckpt");
    std::fs::rename(ckpt.join("train_state"), ckpt.join("train_state.new")).unwrap();
    let again = Trainer::<B>::resume(&ckpt, None, &FlexDevice).unwrap();
    assert_eq!(again.step_count(), 5);
    assert!(ckpt.join("train_state/state.json").is_file());
}

#[test]
fn frozen_understanding_weights_do_not_move() {
    let dir = tempfile::tempdir().unwrap();
    let s = TrainSettings {
        freeze_und: true,
        ema_decay: 0.0,
        ..settings()
    };
    let pipe = tiny_pipeline(dir.path());
    let before_und = pipe.model.language_model.model.layers[0]
        .mlp
        .gate_proj
        .weight
        .val()
        .into_data();
    let before_gen = pipe.model.language_model.model.layers[0]
        .mlp_moe_gen
        .gate_proj
        .weight
        .val()
        .into_data();
    let mut t = Trainer::<B>::new(pipe, s, &FlexDevice).unwrap();
    for _ in 0..3 {
        t.train_step(&batch()).unwrap();
    }
    let ema = t.ema_pipeline().model;
    let after_und = ema.language_model.model.layers[0]
        .mlp
        .gate_proj
        .weight
        .val()
        .into_data();
    let after_gen = ema.language_model.model.layers[0]
        .mlp_moe_gen
        .gate_proj
        .weight
        .val()
        .into_data();
    assert_eq!(before_und, after_und);
    assert_ne!(before_gen, after_gen);
}

#[test]
fn multi_reference_examples_train() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::<B>::new(tiny_pipeline(dir.path()), settings(), &FlexDevice).unwrap();
    let mut data = batch();
    for s in &mut data {
        s.references = vec![s.target.clone(), s.target.clone()];
        s.instruction = format!("combine: {}", s.instruction);
    }
    let first = t.train_step(&data).unwrap();
    assert!(first.mse.is_finite() && first.mse > 0.0);
}

#[test]
fn text_dropout_7_and_lr_1e300_are_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    for (field, s) in [
        (
            "text_dropout",
            TrainSettings {
                text_dropout: 7.0,
                ..settings()
            },
        ),
        (
            "lr",
            TrainSettings {
                lr: 1e300,
                ..settings()
            },
        ),
        (
            "lr",
            TrainSettings {
                lr: f64::NAN,
                ..settings()
            },
        ),
    ] {
        let e = Trainer::<B>::new(tiny_pipeline(dir.path()), s, &FlexDevice)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(&format!("train.{field}")), "{e}");
    }
}

/// Turns every float parameter into NaN: what an overflowing optimiser leaves behind.
struct Poison;

impl burn::module::ModuleMapper<Flex> for Poison {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<burn::tensor::Tensor<Flex, D>>,
    ) -> burn::module::Param<burn::tensor::Tensor<Flex, D>> {
        param.map(|t| t * f32::NAN)
    }
}

#[test]
fn a_diverged_run_stops_and_keeps_the_last_good_checkpoint() {
    use burn::module::Module;
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let good = Trainer::<B>::new(
        tiny_pipeline(&dir.path().join("a")),
        settings(),
        &FlexDevice,
    )
    .unwrap();
    good.save(&ckpt).unwrap();
    let saved = std::fs::read(ckpt.join("ema.safetensors")).unwrap();

    let mut pipe = tiny_pipeline(&dir.path().join("b"));
    pipe.model = pipe.model.map(&mut Poison);
    let mut bad = Trainer::<B>::new(pipe, settings(), &FlexDevice).unwrap();
    let e = bad.train_step(&batch()).unwrap_err().to_string();
    assert!(e.contains("diverged at step 1") && e.contains("NaN"), "{e}");
    let e = bad.save(&ckpt).unwrap_err().to_string();
    assert!(e.contains("not finite"), "{e}");
    assert_eq!(std::fs::read(ckpt.join("ema.safetensors")).unwrap(), saved);
}

#[test]
fn resume_without_state_json_says_so_instead_of_blaming_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::<B>::new(
        tiny_pipeline(&dir.path().join("init")),
        settings(),
        &FlexDevice,
    )
    .unwrap();
    let ckpt = dir.path().join("ckpt");
    t.train_step(&batch()).unwrap();
    t.save(&ckpt).unwrap();
    std::fs::remove_file(ckpt.join("train_state/state.json")).unwrap();
    let e = Trainer::<B>::resume(&ckpt, None, &FlexDevice)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("state.json") && !e.contains("weights do not match"),
        "{e}"
    );
}
