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
