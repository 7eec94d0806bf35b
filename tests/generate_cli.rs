//! `echo4o generate` as a user runs it, on a tiny random checkpoint in the official layout.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;

use echo4o::model::burn::tensor::backend::Backend;
use echo4o::model::config::{BagelConfig, VitConfig};
use echo4o::model::{BackendTask, DeviceSpec};

struct WriteTiny(PathBuf);

impl BackendTask for WriteTiny {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) {
        let mut config = BagelConfig::tiny();
        config.vit = Some(VitConfig {
            hidden_size: 48,
            intermediate_size: 64,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            patch_size: 14,
            num_channels: 3,
            layer_norm_eps: 1e-6,
        });
        let model = echo4o::model::bagel::Bagel::<B>::init(&config, &device);
        let vae = echo4o::model::codec::Codec::<B>::init(&config.vae, &device);
        echo4o::model::pipeline::save_checkpoint(&self.0, &model, &vae, &config).unwrap();
        echo4o::model::tokenizer::write_byte_level_tokenizer(&self.0.join("tokenizer.json"), 996)
            .unwrap();
    }
}

fn generate(args: &[&str], model: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_echo4o"))
        .arg("generate")
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn generates_text_to_image_and_multi_reference_images() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    DeviceSpec::Flex.run(WriteTiny(model.clone())).unwrap();

    let out = dir.path().join("t2i.png");
    let o = generate(
        &[
            "--prompt",
            "a red cube",
            "--size",
            "32x16",
            "--steps",
            "4",
            "--seed",
            "3",
        ],
        &model,
        &out,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("seed 3"));
    assert_eq!(image::open(&out).unwrap().to_rgb8().dimensions(), (32, 16));

    let reference = dir.path().join("ref.png");
    image::RgbImage::from_fn(40, 24, |x, y| image::Rgb([x as u8 * 5, y as u8 * 9, 40]))
        .save(&reference)
        .unwrap();
    let out2 = dir.path().join("multi.jpg");
    let o = generate(
        &[
            "--prompt",
            "put it on the left",
            "--ref",
            reference.to_str().unwrap(),
            "--steps",
            "3",
        ],
        &model,
        &out2,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out2.is_file());
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.png");
    let o = generate(&["--prompt", "p"], dir.path(), &out);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no llm_config.json"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let o = generate(&["--prompt", "p", "--size", "big"], dir.path(), &out);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected WxH"));

    let o = generate(&["--prompt", "p", "--device", "cuda:0"], dir.path(), &out);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--features cuda") || err.contains("no llm_config.json"),
        "{err}"
    );
}

/// Every float parameter becomes NaN: a corrupt or diverged checkpoint.
struct Poison;

impl<B: Backend> echo4o::model::burn::module::ModuleMapper<B> for Poison {
    fn map_float<const D: usize>(
        &mut self,
        param: echo4o::model::burn::module::Param<echo4o::model::burn::tensor::Tensor<B, D>>,
    ) -> echo4o::model::burn::module::Param<echo4o::model::burn::tensor::Tensor<B, D>> {
        param.map(|t| t * f32::NAN)
    }
}

struct WritePoisoned(PathBuf);

impl BackendTask for WritePoisoned {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) {
        use echo4o::model::burn::module::Module;
        let config = BagelConfig::tiny();
        let model = echo4o::model::bagel::Bagel::<B>::init(&config, &device).map(&mut Poison);
        let vae = echo4o::model::codec::Codec::<B>::init(&config.vae, &device);
        echo4o::model::pipeline::save_checkpoint(&self.0, &model, &vae, &config).unwrap();
        echo4o::model::tokenizer::write_byte_level_tokenizer(&self.0.join("tokenizer.json"), 996)
            .unwrap();
    }
}

#[test]
fn nan_settings_huge_prompts_bad_weights_and_unwritable_outputs_fail_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    DeviceSpec::Flex.run(WriteTiny(model.clone())).unwrap();
    let out = dir.path().join("x.png");
    let small = ["--size", "32x32", "--steps", "3"];
    for (flag, value, named) in [
        ("--cfg-text", "NaN", "cfg_text"),
        ("--shift", "inf", "shift"),
        ("--cfg-img", "-inf", "cfg_img"),
    ] {
        let arg = format!("{flag}={value}");
        let mut args = vec!["--prompt", "p", arg.as_str()];
        args.extend(small);
        let o = generate(&args, &model, &out);
        assert_eq!(o.status.code(), Some(2), "{flag}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(named), "{flag}: {err}");
        assert!(!out.exists());
    }

    let long = "a red cube ".repeat(10_000);
    let mut args = vec!["--prompt", long.as_str()];
    args.extend(small);
    let o = generate(&args, &model, &out);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tokens") && err.contains("at most"), "{err}");

    // An output that cannot be written fails before the model is even loaded.
    let mut args = vec!["--prompt", "p"];
    args.extend(small);
    let o = generate(&args, &model, dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is a folder"));
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let o = generate(&args, &model, &blocker.join("x.png"));
    assert_eq!(o.status.code(), Some(2));

    let poisoned = dir.path().join("poisoned");
    DeviceSpec::Flex
        .run(WritePoisoned(poisoned.clone()))
        .unwrap();
    let o = generate(&args, &poisoned, &out);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("ema.safetensors") && err.contains("non-finite"),
        "{err}"
    );
    assert!(!out.exists());
}
