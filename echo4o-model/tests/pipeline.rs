//! Checkpoint folders and end-to-end generation on a tiny random model.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::collections::BTreeSet;
use std::path::Path;

use burn_flex::{Flex, FlexDevice};
use echo4o_model::autoencoder::AutoEncoder;
use echo4o_model::bagel::Bagel;
use echo4o_model::codec::Codec;
use echo4o_model::config::{BagelConfig, VitConfig};
use echo4o_model::parity::GoldenFile;
use echo4o_model::pipeline::{BagelPipeline, PipelineRequest, save_checkpoint};
use echo4o_model::sampling::SamplerConfig;
use echo4o_model::tokenizer::write_byte_level_tokenizer;
use echo4o_model::weights::{BAGEL_REMAPS, load_safetensors};

fn tiny_with_vit() -> BagelConfig {
    let mut c = BagelConfig::tiny();
    c.vit = Some(VitConfig {
        hidden_size: 48,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        patch_size: 14,
        num_channels: 3,
        layer_norm_eps: 1e-6,
    });
    c
}

fn write_tiny_checkpoint(dir: &Path) -> BagelConfig {
    let config = tiny_with_vit();
    let dev = FlexDevice;
    save_checkpoint(
        dir,
        &Bagel::<Flex>::init(&config, &dev),
        &Codec::from(AutoEncoder::<Flex>::init(&config.vae, &dev)),
        &config,
    )
    .unwrap();
    write_byte_level_tokenizer(&dir.join("tokenizer.json"), 996).unwrap();
    config
}

#[test]
fn saved_checkpoints_use_the_official_key_names() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(dir.path());
    let keys = |p: &Path| -> BTreeSet<String> {
        let bytes = std::fs::read(p).unwrap();
        safetensors::SafeTensors::deserialize(&bytes)
            .unwrap()
            .names()
            .into_iter()
            .map(String::from)
            .collect()
    };
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    assert_eq!(
        keys(&dir.path().join("ema.safetensors")),
        keys(&golden.join("bagel_tiny_m.weights.safetensors"))
    );
    assert_eq!(
        keys(&dir.path().join("ae.safetensors")),
        keys(&golden.join("bagel_tiny_m.vae.safetensors"))
    );
}

#[test]
fn official_weights_load_back_unchanged_after_a_save() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let config = BagelConfig::from_case_json(&golden.join("bagel_tiny_m.config.json")).unwrap();
    let dev = FlexDevice;
    let mut model = Bagel::<Flex>::init(&config, &dev);
    load_safetensors(
        &mut model,
        &golden.join("bagel_tiny_m.weights.safetensors"),
        BAGEL_REMAPS,
        &[],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ema.safetensors");
    echo4o_model::weights::save_safetensors(&model, &path, BAGEL_REMAPS).unwrap();
    let a = GoldenFile::open(&golden.join("bagel_tiny_m.weights.safetensors")).unwrap();
    let b = GoldenFile::open(&path).unwrap();
    for key in [
        "llm2vae.weight",
        "time_embedder.mlp.2.weight",
        "language_model.model.layers.1.self_attn.q_norm_moe_gen.weight",
        "vit_model.vision_model.encoder.layers.0.layer_norm1.bias",
    ] {
        assert_eq!(a.f32_data(key).unwrap(), b.f32_data(key).unwrap(), "{key}");
    }
    // Saving is a pure function of the weights: the header's metadata order is fixed, so
    // repeated saves (each with a fresh hash map inside burn-store) are byte-identical.
    let first = std::fs::read(&path).unwrap();
    for i in 0..4 {
        let again = dir.path().join(format!("again{i}.safetensors"));
        echo4o_model::weights::save_safetensors(&model, &again, BAGEL_REMAPS).unwrap();
        assert!(std::fs::read(&again).unwrap() == first, "save {i} differs");
    }
}

#[test]
fn loading_reports_every_bad_key_by_name() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(dir.path());
    // A model without a ViT: the file's vit keys are unexpected.
    let mut no_vit = Bagel::<Flex>::init(&BagelConfig::tiny(), &FlexDevice);
    let err = load_safetensors(
        &mut no_vit,
        &dir.path().join("ema.safetensors"),
        BAGEL_REMAPS,
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("unexpected: vit_model.vision_model.post_layernorm.weight"),
        "{err}"
    );
    // A model whose hidden size differs: shape mismatches are named.
    let mut wide = BagelConfig::tiny();
    wide.vit = tiny_with_vit().vit;
    wide.llm.intermediate_size = 96;
    let mut m = Bagel::<Flex>::init(&wide, &FlexDevice);
    let err = load_safetensors(
        &mut m,
        &dir.path().join("ema.safetensors"),
        BAGEL_REMAPS,
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("mlp.gate_proj"), "{err}");
}

#[test]
fn a_wrong_model_folder_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(dir.path());
    std::fs::remove_file(dir.path().join("ae.safetensors")).unwrap();
    let err = BagelPipeline::<Flex>::load(dir.path(), &FlexDevice)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no ae.safetensors"), "{err}");
}

#[test]
fn generates_text_to_image_and_multi_reference_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(dir.path());
    let pipe = BagelPipeline::<Flex>::load(dir.path(), &FlexDevice).unwrap();
    let sampler = SamplerConfig {
        num_timesteps: 4,
        ..SamplerConfig::text_to_image()
    };
    let request = PipelineRequest {
        prompt: "a red cube".into(),
        references: vec![],
        size: Some((32, 24)),
        sampler,
        seed: 7,
    };
    let mut steps = Vec::new();
    let a = pipe.generate(&request, |i, n| steps.push((i, n))).unwrap();
    assert_eq!(a.dimensions(), (32, 24));
    assert_eq!(steps, vec![(1, 3), (2, 3), (3, 3)]);
    assert_eq!(
        pipe.generate(&request, |_, _| {}).unwrap(),
        a,
        "same seed, same image"
    );
    let other = PipelineRequest {
        seed: 8,
        ..request.clone()
    };
    assert_ne!(pipe.generate(&other, |_, _| {}).unwrap(), a);

    let reference =
        image::RgbImage::from_fn(30, 20, |x, y| image::Rgb([x as u8 * 8, y as u8 * 12, 90]));
    let multi = PipelineRequest {
        references: vec![reference.clone(), reference],
        size: None,
        sampler: SamplerConfig {
            num_timesteps: 3,
            ..SamplerConfig::multi_reference()
        },
        ..request
    };
    let img = pipe.generate(&multi, |_, _| {}).unwrap();
    // The last reference after the VAE rule (stride 4, min side 32): 30x20 -> 48x32.
    assert_eq!(img.dimensions(), pipe.vae_rule().target_size(30, 20, 1));

    let too_big = PipelineRequest {
        size: Some((1000, 64)),
        ..multi
    };
    assert!(
        pipe.generate(&too_big, |_, _| {})
            .unwrap_err()
            .to_string()
            .contains("width")
    );
}

#[test]
fn bf16_checkpoints_load_into_f32_models() {
    // The released ema.safetensors is bf16: convert a golden file and load it.
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let bytes = std::fs::read(golden.join("bagel_tiny_a.weights.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let converted: Vec<(String, Vec<u8>, Vec<usize>)> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| {
            let bf: Vec<u8> = v
                .data()
                .chunks_exact(4)
                .flat_map(|c| {
                    half::bf16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])).to_le_bytes()
                })
                .collect();
            (name, bf, v.shape().to_vec())
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = converted
        .iter()
        .map(|(n, d, s)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ema.safetensors");
    safetensors::serialize_to_file(views, None, &path).unwrap();

    let config = BagelConfig::from_case_json(&golden.join("bagel_tiny_a.config.json")).unwrap();
    let mut model = Bagel::<Flex>::init(&config, &FlexDevice);
    load_safetensors(&mut model, &path, BAGEL_REMAPS, &[]).unwrap();
    let w = model
        .llm2vae
        .weight
        .val()
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap();
    let want = GoldenFile::open(&golden.join("bagel_tiny_a.weights.safetensors"))
        .unwrap()
        .f32_data("llm2vae.weight")
        .unwrap();
    let want = want.to_vec::<f32>().unwrap();
    // burn stores Linear weights transposed: compare element (i, j) with (j, i).
    let n = 64;
    for i in 0..n {
        for j in 0..n {
            let rounded = half::bf16::from_f32(want[i * n + j]).to_f32();
            assert_eq!(w[j * n + i], rounded, "({i}, {j})");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_generator_plug_in_serves_requests() {
    use echo4o_core::{GenerationRequest, Generator, SamplerSettings};
    use echo4o_model::generator::BagelGenerator;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(dir.path());
    let pipe = BagelPipeline::<Flex>::load(dir.path(), &FlexDevice).unwrap();
    let steps = Arc::new(AtomicUsize::new(0));
    let counter = steps.clone();
    let generator =
        BagelGenerator::new(pipe, "bagel-tiny").with_progress(Arc::new(move |_, _, _| {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
    let request = GenerationRequest::new("1", "two blue spheres")
        .with_size(16, 16)
        .with_num_images(2)
        .with_sampler(SamplerSettings {
            steps: Some(3),
            ..Default::default()
        });
    let images = generator.generate(&request).await.unwrap();
    assert_eq!(images.len(), 2);
    assert_ne!(images[0], images[1], "image k uses seed + k");
    assert_eq!(steps.load(Ordering::SeqCst), 4);
    let bad = generator
        .generate(&request.clone().with_size(15, 16))
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("bagel-tiny"), "{bad}");
}

#[test]
fn recomputed_position_tables_equal_the_stored_ones() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let w = GoldenFile::open(&golden.join("bagel_tiny_m.weights.safetensors")).unwrap();
    for (key, side) in [
        ("latent_pos_embed.pos_embed", 16),
        ("vit_pos_embed.pos_embed", 8),
    ] {
        let stored = w.f32_data(key).unwrap().to_vec::<f32>().unwrap();
        let ours = echo4o_model::bagel::sincos_2d_table(side, 64);
        let max = stored
            .iter()
            .zip(&ours)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max < 1e-6, "{key}: {max}");
    }
}

/// A 4-step 32x32 generation from `pipe` gives a 32x32 image.
fn generates_32x32(pipe: &BagelPipeline<Flex>) {
    let request = PipelineRequest {
        prompt: "a red circle".into(),
        references: vec![],
        size: Some((32, 32)),
        sampler: SamplerConfig {
            num_timesteps: 4,
            ..SamplerConfig::text_to_image()
        },
        seed: 3,
    };
    let img = pipe.generate(&request, |_, _| {}).unwrap();
    assert_eq!(img.dimensions(), (32, 32));
}

/// A tiny model with the pixel codec: saved without ae.safetensors, loaded back, generating.
#[test]
fn pixel_codec_checkpoints_round_trip_and_generate() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BagelConfig::tiny();
    config.vae = echo4o_model::config::AeConfig::pixel(3);
    config.validate().unwrap();
    let dev = FlexDevice;
    let vae = Codec::<Flex>::init(&config.vae, &dev);
    save_checkpoint(
        dir.path(),
        &Bagel::<Flex>::init(&config, &dev),
        &vae,
        &config,
    )
    .unwrap();
    write_byte_level_tokenizer(&dir.path().join("tokenizer.json"), 996).unwrap();
    assert!(!dir.path().join("ae.safetensors").exists());
    let pipe = BagelPipeline::<Flex>::load(dir.path(), &dev).unwrap();
    assert!(matches!(pipe.vae, Codec::Pixel(_)));
    assert_eq!(pipe.config.patch_latent_dim(), 2 * 2 * 3 * 8 * 8);
    generates_32x32(&pipe);
}

/// A codec from outside the crate, counting its calls, plugged into a pipeline: generation goes
/// through it and gives what the same built-in codec gives.
#[test]
fn a_user_supplied_codec_plugs_into_the_pipeline() {
    use echo4o_model::autoencoder::LatentCodec;
    use echo4o_model::burn::tensor::Tensor;
    use echo4o_model::codec::PixelCodec;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(PixelCodec, Arc<AtomicUsize>);
    impl LatentCodec<Flex> for Counting {
        fn downsample(&self) -> usize {
            LatentCodec::<Flex>::downsample(&self.0)
        }
        fn channels(&self) -> usize {
            LatentCodec::<Flex>::channels(&self.0)
        }
        fn encode(&self, x: Tensor<Flex, 4>, n: Option<Tensor<Flex, 4>>) -> Tensor<Flex, 4> {
            self.0.encode(x, n)
        }
        fn decode(&self, z: Tensor<Flex, 4>) -> Tensor<Flex, 4> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.decode(z)
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let mut config = BagelConfig::tiny();
    config.vae = echo4o_model::config::AeConfig::pixel(3);
    let dev = FlexDevice;
    save_checkpoint(
        dir.path(),
        &Bagel::<Flex>::init(&config, &dev),
        &Codec::<Flex>::init(&config.vae, &dev),
        &config,
    )
    .unwrap();
    write_byte_level_tokenizer(&dir.path().join("tokenizer.json"), 996).unwrap();
    let builtin = BagelPipeline::<Flex>::load(dir.path(), &dev).unwrap();
    let request = PipelineRequest {
        prompt: "a red circle".into(),
        references: vec![],
        size: Some((32, 32)),
        sampler: SamplerConfig {
            num_timesteps: 3,
            ..SamplerConfig::text_to_image()
        },
        seed: 5,
    };
    let want = builtin.generate(&request, |_, _| {}).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let custom = BagelPipeline::from_parts(
        builtin.model.clone(),
        Codec::custom(Counting(PixelCodec::of(&config.vae), calls.clone())),
        builtin.tokenizer.clone(),
        builtin.config.clone(),
        &dev,
    );
    assert_eq!(custom.generate(&request, |_, _| {}).unwrap(), want);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A tiny model with a fitted linear codec: saved with its `mean` and `basis` in
/// ae.safetensors, loaded back bit for bit, generating; a checkpoint that lacks the file is
/// refused by name.
#[test]
fn linear_codec_checkpoints_round_trip_and_generate() {
    use echo4o_model::autoencoder::LatentCodec;
    use echo4o_model::burn::tensor::{Distribution, Tensor};
    use echo4o_model::linear_codec::LinearCodec;

    let dev = FlexDevice;
    let images = Tensor::<Flex, 4>::random([6, 3, 32, 32], Distribution::Uniform(-1.0, 1.0), &dev);
    let fit = LinearCodec::<Flex>::fit(
        &images.to_data().to_vec::<f32>().unwrap(),
        [6, 3, 32, 32],
        4,
        12,
        &dev,
    )
    .unwrap();
    let mut config = BagelConfig::tiny();
    config.vae = fit.config.clone();
    config.latent_patch_size = 2;
    config.validate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_checkpoint(
        dir.path(),
        &Bagel::<Flex>::init(&config, &dev),
        &Codec::Linear(Box::new(fit.codec.clone())),
        &config,
    )
    .unwrap();
    write_byte_level_tokenizer(&dir.path().join("tokenizer.json"), 996).unwrap();
    let bytes = std::fs::read(dir.path().join("ae.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    assert_eq!(names, ["basis", "mean"]);
    let pipe = BagelPipeline::<Flex>::load(dir.path(), &dev).unwrap();
    let Codec::Linear(loaded) = &pipe.vae else {
        panic!("not the linear codec: {:?}", pipe.vae)
    };
    assert_eq!(
        loaded.encode(images.clone(), None).into_data(),
        fit.codec.encode(images, None).into_data()
    );
    assert_eq!(pipe.config.patch_latent_dim(), 2 * 2 * 12);
    generates_32x32(&pipe);

    std::fs::remove_file(dir.path().join("ae.safetensors")).unwrap();
    let err = BagelPipeline::<Flex>::load(dir.path(), &dev)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ae.safetensors"), "{err}");
}
