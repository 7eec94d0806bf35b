//! Text-to-image and multi-reference generation end to end: an official checkpoint folder in,
//! an RGB image out, exactly as the official `InterleaveInferencer` builds its contexts.
//!
//! Upstream: `ByteDance-Seed/Bagel@056b5fd` `inferencer.py` (`interleave_inference`,
//! `update_context_image`, `gen_image`, `decode_image`); Echo-4o `inference_multiref.py`.

use std::path::Path;

use burn::prelude::ToElement;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use echo4o_core::image::RgbImage;
use echo4o_core::resize::ResizeRule;
use rand::SeedableRng;
use rand_distr::Distribution;

use crate::Error;
use crate::autoencoder::LatentCodec;
use crate::bagel::{Bagel, BagelVelocity, Context, Contexts, grid_position_ids};
use crate::codec::Codec;
use crate::config::{AeConfig, BagelConfig, CodecKind};
use crate::ops::{cast_params, default_float_dtype};
use crate::pixels::{chw_tensor, decode_tokens};
use crate::sampling::{SamplerConfig, denoise};
use crate::tokenizer::BagelTokenizer;
use crate::weights::{BAGEL_REMAPS, NORM_REMAPS, load_safetensors};

/// The files of an official checkpoint folder, in the order they are checked.
pub const CHECKPOINT_FILES: [&str; 4] = [
    "llm_config.json",
    "ema.safetensors",
    "ae.safetensors",
    "tokenizer.json",
];

/// `bagel_config.json`, echo4o's extension for checkpoints whose grid sizes differ from the
/// released model's (2 / 64 / 70).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
struct GridSizes {
    latent_patch_size: usize,
    max_latent_size: usize,
    vit_max_num_patch_per_side: usize,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct PipelineRequest {
    /// The prompt or instruction.
    pub prompt: String,
    /// Reference images (multi-reference composition), in order.
    pub references: Vec<RgbImage>,
    /// Output (width, height); by default 1024x1024 for text-to-image and the last reference's
    /// resized size with references (as the official inferencer does).
    pub size: Option<(u32, u32)>,
    /// Sampler settings.
    pub sampler: SamplerConfig,
    /// Seed of every random draw (posterior samples of the references, then the initial noise).
    pub seed: u64,
}

/// A loaded BAGEL / Echo-4o model with its autoencoder and tokenizer.
#[derive(Debug)]
pub struct BagelPipeline<B: Backend> {
    /// The transformer.
    pub model: Bagel<B>,
    /// The latent codec (FLUX's autoencoder, or raw pixel patches for tiny models).
    pub vae: Codec<B>,
    /// The tokenizer.
    pub tokenizer: BagelTokenizer,
    /// The configuration.
    pub config: BagelConfig,
    device: B::Device,
}

/// The longest prompt, in tokens, one request may carry. Text attention is quadratic in it: a
/// 100k-character prompt would need tens of GB; the official benchmarks' longest prompts are a
/// few hundred tokens.
pub const MAX_PROMPT_TOKENS: usize = 4096;

fn missing(dir: &Path, file: &str) -> Error {
    Error::ModelDir {
        dir: dir.display().to_string(),
        message: format!(
            "no {file} (an official BAGEL / Echo-4o checkpoint folder holds {}, and vit_config.json for multi-reference)",
            CHECKPOINT_FILES.join(", ")
        ),
    }
}

impl<B: Backend> BagelPipeline<B> {
    /// Loads an official checkpoint folder (`llm_config.json`, `vit_config.json` if the model
    /// reads images, `ema.safetensors`, `ae.safetensors`, `tokenizer.json`). An `ae_config.json`
    /// (echo4o's extension, `AutoEncoderParams` fields) selects a codec other than FLUX's.
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self, Error> {
        if !dir.is_dir() {
            return Err(Error::ModelDir {
                dir: dir.display().to_string(),
                message: "not a folder".into(),
            });
        }
        for f in CHECKPOINT_FILES {
            // Checked below, once ae_config.json says whether the codec has weights.
            if f != "ae.safetensors" && !dir.join(f).is_file() {
                return Err(missing(dir, f));
            }
        }
        let mut config = BagelConfig::from_official_dir(dir)?;
        let bagel_path = dir.join("bagel_config.json");
        if bagel_path.is_file() {
            let text = std::fs::read_to_string(&bagel_path)
                .map_err(|e| Error::Core(echo4o_core::Error::io(&bagel_path, e)))?;
            let sizes: GridSizes = serde_json::from_str(&text).map_err(|e| Error::Config {
                path: bagel_path.display().to_string(),
                message: e.to_string(),
            })?;
            config.latent_patch_size = sizes.latent_patch_size;
            config.max_latent_size = sizes.max_latent_size;
            config.vit_max_num_patch_per_side = sizes.vit_max_num_patch_per_side;
        }
        let ae_path = dir.join("ae_config.json");
        if ae_path.is_file() {
            let text = std::fs::read_to_string(&ae_path)
                .map_err(|e| Error::Core(echo4o_core::Error::io(&ae_path, e)))?;
            config.vae = serde_json::from_str::<AeConfig>(&text).map_err(|e| Error::Config {
                path: ae_path.display().to_string(),
                message: e.to_string(),
            })?;
        }
        let tokenizer = BagelTokenizer::from_file(&dir.join("tokenizer.json"))?;
        config.tokens = tokenizer.special();
        config.validate()?;
        let mut model = Bagel::init(&config, device);
        load_safetensors(&mut model, &dir.join("ema.safetensors"), BAGEL_REMAPS, &[])?;
        crate::weights::check_finite(&model, &dir.join("ema.safetensors"))?;
        if config.vae.codec != CodecKind::Pixel && !dir.join("ae.safetensors").is_file() {
            return Err(missing(dir, "ae.safetensors"));
        }
        let vae = match Codec::init(&config.vae, device) {
            Codec::Flux(mut ae) => {
                load_safetensors(&mut *ae, &dir.join("ae.safetensors"), NORM_REMAPS, &[])?;
                crate::weights::check_finite(&*ae, &dir.join("ae.safetensors"))?;
                Codec::Flux(ae)
            }
            Codec::Linear(mut linear) => {
                load_safetensors(&mut *linear, &dir.join("ae.safetensors"), &[], &[])?;
                crate::weights::check_finite(&*linear, &dir.join("ae.safetensors"))?;
                Codec::Linear(linear)
            }
            pixel => pixel,
        };
        Ok(Self::from_parts(model, vae, tokenizer, config, device))
    }

    /// A pipeline over parts already in memory (random weights, a fine-tuned model).
    pub fn from_parts(
        model: Bagel<B>,
        vae: impl Into<Codec<B>>,
        tokenizer: BagelTokenizer,
        mut config: BagelConfig,
        device: &B::Device,
    ) -> Self {
        config.tokens = tokenizer.special();
        // burn-store keeps the file's dtype: bring the transformer to the backend's compute dtype
        // (bf16 on `cuda:N`, f32 elsewhere) and the autoencoder to f32, as the official code
        // keeps it.
        BagelPipeline {
            model: cast_params(model, default_float_dtype::<B>()),
            vae: vae.into().cast(DType::F32),
            tokenizer,
            config,
            device: device.clone(),
        }
    }

    /// The resize rule of reference images for the VAE: sides multiples of the latent
    /// downsample, longest side at most the position table (1024/512/16 for the released model).
    pub fn vae_rule(&self) -> ResizeRule {
        let d = self.config.latent_downsample() as u32;
        let max = self.config.max_latent_size as u32 * d;
        ResizeRule {
            max_size: max,
            min_size: (max / 2).max(d),
            stride: d,
            max_pixels: echo4o_core::resize::DEFAULT_MAX_PIXELS,
        }
    }

    /// The resize rule for the ViT (980/224/14 for the released model).
    pub fn vit_rule(&self) -> Option<ResizeRule> {
        let vit = self.config.vit.as_ref()?;
        let patch = vit.patch_size as u32;
        let max = self.config.vit_max_num_patch_per_side as u32 * patch;
        Some(ResizeRule {
            max_size: max,
            min_size: 224.min(max),
            stride: patch,
            max_pixels: echo4o_core::resize::DEFAULT_MAX_PIXELS,
        })
    }

    fn normal(&self, rng: &mut rand_chacha::ChaCha8Rng, shape: Vec<usize>) -> TensorData {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| rand_distr::StandardNormal.sample(rng))
            .collect();
        TensorData::new(values, shape)
    }

    /// Builds the three contexts for `prompt` and `references`; returns them with the size of
    /// the last reference after the VAE resize.
    fn contexts(
        &self,
        prompt: &[u32],
        references: &[RgbImage],
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> (Contexts<B>, Option<(u32, u32)>) {
        let markers = [
            self.config.tokens.start_of_image,
            self.config.tokens.end_of_image,
        ];
        let dev = &self.device;
        let mut cond = Context::default();
        let mut last = None;
        for r in references {
            let vae_img = self.vae_rule().apply(r, 1);
            last = Some(vae_img.dimensions());
            let pixels: Tensor<B, 4> = chw_tensor::<B>(&vae_img, dev).unsqueeze_dim(0);
            let [_, _, h, w] = pixels.dims();
            let d = self.vae.downsample();
            let noise = self.normal(rng, vec![1, self.vae.channels(), h / d, w / d]);
            let z = self
                .vae
                .encode(pixels, Some(Tensor::from_data(noise, (dev, DType::F32))));
            self.model
                .add_vae_latent(&mut cond, z.squeeze_dim::<3>(0), markers, None);
            if let Some(rule) = self.vit_rule() {
                let vit_img = rule.apply(&vae_img, 1);
                self.model
                    .add_vit_image(&mut cond, chw_tensor::<B>(&vit_img, dev), markers, None);
            }
        }
        let cfg_text = cond.clone();
        self.model.add_text(&mut cond, prompt, dev);
        let cfg_img = if references.is_empty() {
            cond.clone()
        } else {
            let mut c = Context::default();
            self.model.add_text(&mut c, prompt, dev);
            c
        };
        (
            Contexts {
                cond,
                cfg_text,
                cfg_img,
            },
            last,
        )
    }

    /// Generates one image; `on_step(i, n)` is called after each of the `n` denoising steps.
    pub fn generate(
        &self,
        request: &PipelineRequest,
        mut on_step: impl FnMut(usize, usize),
    ) -> Result<RgbImage, Error> {
        request.sampler.validate()?;
        if let Some((w, h)) = request.size {
            self.config.check_image_size(w, h)?;
        }
        let ids = self.tokenizer.prompt(&request.prompt)?;
        if ids.len() > MAX_PROMPT_TOKENS {
            return Err(Error::InvalidConfig {
                field: "prompt".into(),
                message: format!(
                    "{} tokens ({} characters); at most {MAX_PROMPT_TOKENS} tokens fit one request",
                    ids.len(),
                    request.prompt.chars().count()
                ),
            });
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(request.seed);
        let (mut contexts, last) = self.contexts(&ids, &request.references, &mut rng);
        let (w, h) = request.size.or(last).unwrap_or((1024, 1024));
        let (lh, lw) = self.config.check_image_size(w, h)?;
        let dim = self.config.patch_latent_dim();
        // The sampler's state stays in f32 whatever the transformer computes in (official: the
        // noise and Euler updates are f32 under bf16 autocast).
        let x_init = Tensor::from_data(
            self.normal(&mut rng, vec![lh * lw, dim]),
            (&self.device, DType::F32),
        );
        let markers = [
            self.config.tokens.start_of_image,
            self.config.tokens.end_of_image,
        ];
        let mut velocity = BagelVelocity {
            model: &self.model,
            contexts: &mut contexts,
            pos_ids: grid_position_ids(lh, lw, self.config.max_latent_size),
            markers,
        };
        let x0 = denoise(&mut velocity, x_init, &request.sampler, |i, n, _| {
            on_step(i + 1, n)
        });
        if x0.clone().is_finite().float().min().into_scalar().to_f32() != 1.0 {
            return Err(Error::NonFinite {
                what: format!(
                    "the sampled latent of {:?} (seed {})",
                    request.prompt.chars().take(60).collect::<String>(),
                    request.seed
                ),
            });
        }
        let (_, pixels) = decode_tokens(&self.vae, x0, lh, lw, self.config.latent_patch_size)?;
        RgbImage::from_raw(w, h, pixels).ok_or_else(|| Error::Shape {
            what: "decoded image".into(),
            expected: format!("{w}x{h}x3"),
            got: vec![],
        })
    }
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Config {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    echo4o_core::fs::write_atomic(path, text.as_bytes()).map_err(Error::Core)
}

/// Writes `model` and `vae` as an official-layout checkpoint folder: `llm_config.json`,
/// `vit_config.json` (with the one extra layer the official loader drops), `ema.safetensors`
/// and `ae.safetensors` with official key names, and `ae_config.json` when the codec is not
/// FLUX's. The tokenizer is the caller's to add (see
/// [`crate::tokenizer::write_byte_level_tokenizer`]).
pub fn save_checkpoint<B: Backend>(
    dir: &Path,
    model: &Bagel<B>,
    vae: &Codec<B>,
    config: &BagelConfig,
) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Core(echo4o_core::Error::io(dir, e)))?;
    write_json(&dir.join("llm_config.json"), &config.llm)?;
    if let Some(vit) = &config.vit {
        let mut file = vit.clone();
        file.num_hidden_layers += 1;
        write_json(&dir.join("vit_config.json"), &file)?;
    }
    if config.vae != AeConfig::flux() {
        write_json(&dir.join("ae_config.json"), &config.vae)?;
    }
    let sizes = GridSizes {
        latent_patch_size: config.latent_patch_size,
        max_latent_size: config.max_latent_size,
        vit_max_num_patch_per_side: config.vit_max_num_patch_per_side,
    };
    let released = BagelConfig::bagel_7b_mot();
    if (
        sizes.latent_patch_size,
        sizes.max_latent_size,
        sizes.vit_max_num_patch_per_side,
    ) != (
        released.latent_patch_size,
        released.max_latent_size,
        released.vit_max_num_patch_per_side,
    ) {
        write_json(&dir.join("bagel_config.json"), &sizes)?;
    }
    crate::weights::save_safetensors(model, &dir.join("ema.safetensors"), BAGEL_REMAPS)?;
    match vae {
        Codec::Flux(ae) => {
            crate::weights::save_safetensors(&**ae, &dir.join("ae.safetensors"), NORM_REMAPS)
        }
        Codec::Linear(linear) => {
            crate::weights::save_safetensors(&**linear, &dir.join("ae.safetensors"), &[])
        }
        Codec::Pixel(_) | Codec::Custom(_) => Ok(()),
    }
}
