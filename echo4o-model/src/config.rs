//! BAGEL's configuration: the LLM (Qwen2 MoT), the ViT (SigLIP NaViT), the FLUX autoencoder and
//! the wrapper settings, read from the official files with the overrides the official loaders
//! apply.
//!
//! Upstream: `ByteDance-Seed/Bagel@056b5fd` `app.py` l.39-60 (overrides), `modeling/bagel/bagel.py`
//! `BagelConfig`, `modeling/autoencoder.py` `load_ae` (FLUX AE params).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The Qwen2 MoT language model (`llm_config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmConfig {
    /// Vocabulary size (rows of `embed_tokens` and `lm_head`).
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// MLP inner size.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (GQA).
    pub num_key_value_heads: usize,
    /// Head dimension; `hidden_size / num_attention_heads` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
}

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    1e6
}

impl LlmConfig {
    /// The head dimension.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }
}

/// The SigLIP NaViT vision tower (`vit_config.json`), with the official overrides applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    /// Hidden size.
    pub hidden_size: usize,
    /// MLP inner size.
    pub intermediate_size: usize,
    /// Encoder layers actually used (the official loader drops the last one of the file).
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Patch side in pixels.
    #[serde(default = "default_patch")]
    pub patch_size: usize,
    /// Input channels.
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_rms_eps")]
    pub layer_norm_eps: f64,
}

fn default_patch() -> usize {
    14
}
fn default_channels() -> usize {
    3
}

/// Which latent codec a checkpoint uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodecKind {
    /// FLUX's autoencoder (the released model).
    #[default]
    Flux,
    /// Raw pixel patches ([`crate::codec::PixelCodec`]): downsample `2^(len(ch_mult) - 1)`,
    /// `z_channels` = 3 x downsample^2; `ch` and `num_res_blocks` are unused.
    Pixel,
    /// Principal components of pixel patches ([`crate::linear_codec::LinearCodec`]): patch side
    /// = downsample, `z_channels` components (at most 3 x downsample^2), weights in
    /// `ae.safetensors`; `ch` and `num_res_blocks` are unused.
    Linear,
}

impl CodecKind {
    fn is_flux(&self) -> bool {
        *self == CodecKind::Flux
    }
}

/// Autoencoder parameters (FLUX's `AutoEncoderParams`, plus echo4o's `codec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AeConfig {
    /// The codec (echo4o's extension; FLUX when absent).
    #[serde(default, skip_serializing_if = "CodecKind::is_flux")]
    pub codec: CodecKind,
    /// Image channels in.
    pub in_channels: usize,
    /// Base channel count.
    pub ch: usize,
    /// Image channels out.
    pub out_ch: usize,
    /// Channel multiplier per resolution level.
    pub ch_mult: Vec<usize>,
    /// Resnet blocks per level.
    pub num_res_blocks: usize,
    /// Latent channels.
    pub z_channels: usize,
    /// Latent scale.
    pub scale_factor: f64,
    /// Latent shift.
    pub shift_factor: f64,
}

impl AeConfig {
    /// FLUX.1's autoencoder (`load_ae`): 16 latent channels, downsample 8.
    pub fn flux() -> Self {
        AeConfig {
            codec: CodecKind::Flux,
            in_channels: 3,
            ch: 128,
            out_ch: 3,
            ch_mult: vec![1, 2, 4, 4],
            num_res_blocks: 2,
            z_channels: 16,
            scale_factor: 0.3611,
            shift_factor: 0.1159,
        }
    }

    /// A pixel codec of patch side `2^levels_minus_one`: what tiny models train with.
    pub fn pixel(patch_log2: usize) -> Self {
        let d = 1usize << patch_log2;
        AeConfig {
            codec: CodecKind::Pixel,
            in_channels: 3,
            ch: 0,
            out_ch: 3,
            ch_mult: vec![1; patch_log2 + 1],
            num_res_blocks: 0,
            z_channels: 3 * d * d,
            scale_factor: 1.0,
            shift_factor: 0.0,
        }
    }

    /// The spatial downsampling factor, `2^(levels - 1)`.
    pub fn downsample(&self) -> usize {
        1 << self.ch_mult.len().saturating_sub(1)
    }
}

/// The four special tokens BAGEL uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct SpecialTokens {
    /// `<|im_start|>`, starts every text segment.
    pub bos_token_id: u32,
    /// `<|im_end|>`, ends every text segment.
    pub eos_token_id: u32,
    /// `<|vision_start|>`.
    pub start_of_image: u32,
    /// `<|vision_end|>`.
    pub end_of_image: u32,
}

impl SpecialTokens {
    /// The Qwen2.5 ids: 151644, 151645, 151652, 151653.
    pub fn qwen2() -> Self {
        SpecialTokens {
            bos_token_id: 151644,
            eos_token_id: 151645,
            start_of_image: 151652,
            end_of_image: 151653,
        }
    }
}

/// Everything needed to build a BAGEL model.
#[derive(Debug, Clone, PartialEq)]
pub struct BagelConfig {
    /// The language model.
    pub llm: LlmConfig,
    /// The vision tower, when the model reads images (multi-reference, editing).
    pub vit: Option<VitConfig>,
    /// The autoencoder.
    pub vae: AeConfig,
    /// Latent patch side (2): one LLM token covers `patch x patch` latent pixels.
    pub latent_patch_size: usize,
    /// Side of the latent position table (64 for the released model).
    pub max_latent_size: usize,
    /// Side of the ViT position table (70).
    pub vit_max_num_patch_per_side: usize,
    /// Special token ids.
    pub tokens: SpecialTokens,
}

impl BagelConfig {
    /// BAGEL-7B-MoT as released (the Echo-4o model has the same architecture).
    pub fn bagel_7b_mot() -> Self {
        BagelConfig {
            llm: LlmConfig {
                vocab_size: 152064,
                hidden_size: 3584,
                intermediate_size: 18944,
                num_hidden_layers: 28,
                num_attention_heads: 28,
                num_key_value_heads: 4,
                head_dim: None,
                rms_norm_eps: 1e-6,
                rope_theta: 1e6,
            },
            vit: Some(VitConfig {
                hidden_size: 1152,
                intermediate_size: 4304,
                num_hidden_layers: 26,
                num_attention_heads: 16,
                patch_size: 14,
                num_channels: 3,
                layer_norm_eps: 1e-6,
            }),
            vae: AeConfig::flux(),
            latent_patch_size: 2,
            max_latent_size: 64,
            vit_max_num_patch_per_side: 70,
            tokens: SpecialTokens::qwen2(),
        }
    }

    /// A tiny model for tests and CPU experiments (hidden 64, 2 layers, tiny AE).
    pub fn tiny() -> Self {
        BagelConfig {
            llm: LlmConfig {
                vocab_size: 1000,
                hidden_size: 64,
                intermediate_size: 128,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                head_dim: Some(16),
                rms_norm_eps: 1e-6,
                rope_theta: 1e6,
            },
            vit: None,
            vae: AeConfig {
                codec: CodecKind::Flux,
                in_channels: 3,
                ch: 32,
                out_ch: 3,
                ch_mult: vec![1, 2],
                num_res_blocks: 1,
                z_channels: 16,
                scale_factor: 0.3611,
                shift_factor: 0.1159,
            },
            latent_patch_size: 2,
            max_latent_size: 16,
            vit_max_num_patch_per_side: 8,
            tokens: SpecialTokens {
                bos_token_id: 996,
                eos_token_id: 997,
                start_of_image: 998,
                end_of_image: 999,
            },
        }
    }

    /// Reads an official checkpoint folder's `llm_config.json` and `vit_config.json` (if present)
    /// with the official loaders' overrides: q/k-norm on, untied embeddings, ViT layers minus one,
    /// ViT RoPE off, `max_latent_size` 64, the FLUX autoencoder, the Qwen2.5 special tokens.
    pub fn from_official_dir(dir: &Path) -> Result<Self, Error> {
        let llm: LlmConfig = read_json(&dir.join("llm_config.json"))?;
        let vit_path = dir.join("vit_config.json");
        let vit = if vit_path.exists() {
            let mut vit: VitConfig = read_json(&vit_path)?;
            vit.num_hidden_layers = vit.num_hidden_layers.saturating_sub(1);
            Some(vit)
        } else {
            None
        };
        let config = BagelConfig {
            llm,
            vit,
            ..Self::bagel_7b_mot()
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads a golden-case config (the format of `shared/golden/*.config.json`: effective values).
    pub fn from_case_json(path: &Path) -> Result<Self, Error> {
        #[derive(Deserialize)]
        struct Bagel {
            latent_patch_size: usize,
            max_latent_size: usize,
            #[serde(default = "seventy")]
            vit_max_num_patch_per_side: usize,
        }
        fn seventy() -> usize {
            70
        }
        #[derive(Deserialize)]
        struct Case {
            llm_config: LlmConfig,
            #[serde(default)]
            vit_config: Option<VitConfig>,
            bagel_config: Bagel,
            #[serde(default)]
            vae_config: Option<serde_json::Value>,
            new_token_ids: SpecialTokens,
        }
        let case: Case = read_json(path)?;
        let vae = match case.vae_config {
            Some(v) if v.get("ch").is_some() => {
                serde_json::from_value(v).map_err(|e| Error::Config {
                    path: path.display().to_string(),
                    message: format!("vae_config: {e}"),
                })?
            }
            _ => AeConfig::flux(),
        };
        let config = BagelConfig {
            llm: case.llm_config,
            vit: case.vit_config,
            vae,
            latent_patch_size: case.bagel_config.latent_patch_size,
            max_latent_size: case.bagel_config.max_latent_size,
            vit_max_num_patch_per_side: case.bagel_config.vit_max_num_patch_per_side,
            tokens: case.new_token_ids,
        };
        config.validate()?;
        Ok(config)
    }

    /// Pixels per LLM latent token side: autoencoder downsample x latent patch.
    pub fn latent_downsample(&self) -> usize {
        self.vae.downsample() * self.latent_patch_size
    }

    /// Channels of one latent token: `patch^2 * z_channels`.
    pub fn patch_latent_dim(&self) -> usize {
        self.latent_patch_size * self.latent_patch_size * self.vae.z_channels
    }

    /// Checks the constraints the architecture needs, naming the field that breaks one.
    pub fn validate(&self) -> Result<(), Error> {
        let l = &self.llm;
        let bad = |field: &str, message: String| {
            Err(Error::InvalidConfig {
                field: field.to_string(),
                message,
            })
        };
        // Sizes are bounded before anything is allocated from them: a file claiming a hidden
        // size of 2^40 must be an error, not an abort inside the allocator.
        let sizes: [(&str, usize, usize); 10] = [
            ("llm.vocab_size", l.vocab_size, MAX_VOCAB),
            ("llm.hidden_size", l.hidden_size, MAX_WIDTH),
            ("llm.intermediate_size", l.intermediate_size, 8 * MAX_WIDTH),
            ("llm.num_hidden_layers", l.num_hidden_layers, MAX_LAYERS),
            ("llm.num_attention_heads", l.num_attention_heads, 1024),
            ("llm.num_key_value_heads", l.num_key_value_heads, 1024),
            ("llm.head_dim", l.head_dim(), MAX_WIDTH),
            ("latent_patch_size", self.latent_patch_size, 64),
            ("max_latent_size", self.max_latent_size, 1024),
            (
                "vit_max_num_patch_per_side",
                self.vit_max_num_patch_per_side,
                1024,
            ),
        ];
        for (field, v, max) in sizes {
            if v == 0 || v > max {
                return bad(field, format!("{v} is outside 1..={max}"));
            }
        }
        let finite_positive = |field: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                bad(field, format!("{v} must be a finite positive number"))
            }
        };
        finite_positive("llm.rms_norm_eps", l.rms_norm_eps)?;
        finite_positive("llm.rope_theta", l.rope_theta)?;
        if let Some(v) = &self.vit {
            for (field, value, max) in [
                ("vit.hidden_size", v.hidden_size, MAX_WIDTH),
                ("vit.intermediate_size", v.intermediate_size, 8 * MAX_WIDTH),
                ("vit.num_hidden_layers", v.num_hidden_layers, MAX_LAYERS),
                ("vit.num_attention_heads", v.num_attention_heads, 1024),
                ("vit.patch_size", v.patch_size, 64),
                ("vit.num_channels", v.num_channels, 16),
            ] {
                if value == 0 || value > max {
                    return bad(field, format!("{value} is outside 1..={max}"));
                }
            }
            finite_positive("vit.layer_norm_eps", v.layer_norm_eps)?;
        }
        let ae = &self.vae;
        // The pixel codec has no network: its `ch` and `num_res_blocks` are unused (0).
        let flux = ae.codec == CodecKind::Flux;
        for (field, value, max) in [
            ("vae.in_channels", ae.in_channels, 16),
            ("vae.out_ch", ae.out_ch, 16),
            ("vae.ch", if flux { ae.ch } else { 1 }, 4096),
            ("vae.z_channels", ae.z_channels, 4096),
            ("vae.ch_mult", ae.ch_mult.len(), 8),
        ] {
            if value == 0 || value > max {
                return bad(field, format!("{value} is outside 1..={max}"));
            }
        }
        if ae.ch_mult.iter().any(|&m| m == 0 || m > 64) || ae.num_res_blocks > 64 {
            return bad(
                "vae.ch_mult",
                "multipliers must be in 1..=64 and num_res_blocks at most 64".into(),
            );
        }
        if !(ae.scale_factor.is_finite() && ae.scale_factor != 0.0 && ae.shift_factor.is_finite()) {
            return bad(
                "vae.scale_factor",
                format!(
                    "scale {} and shift {} must be finite, the scale non-zero",
                    ae.scale_factor, ae.shift_factor
                ),
            );
        }
        if l.num_attention_heads == 0 || l.num_key_value_heads == 0 {
            return bad("llm.num_attention_heads", "heads must be positive".into());
        }
        if l.head_dim.is_none() && !l.hidden_size.is_multiple_of(l.num_attention_heads) {
            return bad(
                "llm.hidden_size",
                format!(
                    "{} is not divisible by {} heads",
                    l.hidden_size, l.num_attention_heads
                ),
            );
        }
        if !l.head_dim().is_multiple_of(2) {
            return bad(
                "llm.head_dim",
                format!("{} must be even for RoPE", l.head_dim()),
            );
        }
        if !l.hidden_size.is_multiple_of(4) {
            return bad(
                "llm.hidden_size",
                format!(
                    "{} must be a multiple of 4 (2-D sin-cos positions)",
                    l.hidden_size
                ),
            );
        }
        if !l.num_attention_heads.is_multiple_of(l.num_key_value_heads) {
            return bad(
                "llm.num_key_value_heads",
                format!(
                    "{} query heads are not a multiple of {} key/value heads",
                    l.num_attention_heads, l.num_key_value_heads
                ),
            );
        }
        if let Some(v) = &self.vit
            && (v.num_attention_heads == 0 || v.hidden_size % v.num_attention_heads != 0)
        {
            return bad(
                "vit.hidden_size",
                format!(
                    "{} is not divisible by {} heads",
                    v.hidden_size, v.num_attention_heads
                ),
            );
        }
        if self.vae.codec == CodecKind::Pixel {
            let d = self.vae.downsample();
            if self.vae.z_channels != 3 * d * d {
                return bad(
                    "vae.z_channels",
                    format!(
                        "{} must be 3 x {d}^2 for the pixel codec",
                        self.vae.z_channels
                    ),
                );
            }
        } else if self.vae.codec == CodecKind::Linear {
            let d = self.vae.downsample();
            if self.vae.z_channels > 3 * d * d {
                return bad(
                    "vae.z_channels",
                    format!(
                        "{} is more than the 3 x {d}^2 values of a patch",
                        self.vae.z_channels
                    ),
                );
            }
        } else if !self.vae.ch.is_multiple_of(32) {
            return bad(
                "vae.ch",
                format!("{} must be a multiple of 32 (GroupNorm 32)", self.vae.ch),
            );
        }
        Ok(())
    }

    /// Checks that an image size can be generated: multiples of the latent downsample, within the
    /// position table.
    pub fn check_image_size(&self, width: u32, height: u32) -> Result<(usize, usize), Error> {
        let d = self.latent_downsample();
        let max = self.max_latent_size * d;
        for (name, v) in [("width", width as usize), ("height", height as usize)] {
            if v == 0 || v % d != 0 || v > max {
                return Err(Error::InvalidConfig {
                    field: name.into(),
                    message: format!(
                        "{v} px: must be a positive multiple of {d} and at most {max}"
                    ),
                });
            }
        }
        Ok((height as usize / d, width as usize / d))
    }
}

/// The widest hidden size a config may claim (BAGEL-7B: 3584; the largest open LLMs: ~16k).
const MAX_WIDTH: usize = 65_536;
/// The most layers a config may claim.
const MAX_LAYERS: usize = 1024;
/// The largest vocabulary a config may claim.
const MAX_VOCAB: usize = 1 << 22;

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::Core(echo4o_core::Error::io(path, e)))?;
    serde_json::from_str(&text).map_err(|e| Error::Config {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_rms_norm_eps_and_a_hidden_size_of_2_pow_40_are_refused() {
        let mut c = BagelConfig::tiny();
        c.llm.rms_norm_eps = -1e-6;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("llm.rms_norm_eps"), "{e}");
        let mut c = BagelConfig::tiny();
        c.llm.hidden_size = 1 << 40;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("llm.hidden_size"), "{e}");
    }

    #[test]
    fn presets_are_valid() {
        BagelConfig::bagel_7b_mot().validate().unwrap();
        BagelConfig::tiny().validate().unwrap();
        assert_eq!(BagelConfig::bagel_7b_mot().latent_downsample(), 16);
        assert_eq!(BagelConfig::bagel_7b_mot().patch_latent_dim(), 64);
        assert_eq!(
            BagelConfig::bagel_7b_mot()
                .check_image_size(1024, 768)
                .unwrap(),
            (48, 64)
        );
        assert!(
            BagelConfig::bagel_7b_mot()
                .check_image_size(1000, 1024)
                .is_err()
        );
        assert!(
            BagelConfig::bagel_7b_mot()
                .check_image_size(2048, 1024)
                .is_err()
        );
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = BagelConfig::tiny();
        c.llm.num_key_value_heads = 3;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("llm.num_key_value_heads"), "{e}");
        let mut c = BagelConfig::tiny();
        c.llm.head_dim = Some(15);
        assert!(c.validate().unwrap_err().to_string().contains("even"));
    }

    #[test]
    fn official_dir_applies_the_loader_overrides() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("llm_config.json"),
            r#"{"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
               "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
               "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": true,
               "architectures": ["Qwen2ForCausalLM"], "torch_dtype": "bfloat16"}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("vit_config.json"),
            r#"{"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
               "num_attention_heads": 16, "patch_size": 14, "image_size": 980}"#,
        )
        .unwrap();
        let c = BagelConfig::from_official_dir(dir.path()).unwrap();
        assert_eq!(c, BagelConfig::bagel_7b_mot());
        assert_eq!(c.llm.head_dim(), 128);

        std::fs::write(dir.path().join("llm_config.json"), "{\"hidden_size\": 1}").unwrap();
        let e = BagelConfig::from_official_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("llm_config.json") && e.contains("vocab_size"),
            "{e}"
        );
    }
}
