//! CLIP's shape, in open_clip's own configuration format (`open_clip/model_configs/*.json`), so
//! that a user's config file for any open_clip ViT-B/L/H reads as it is.

use std::path::Path;

use serde::Deserialize;

use crate::Error;

/// A CLIP model configuration (`embed_dim`, `vision_cfg`, `text_cfg`, `quick_gelu`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipConfig {
    /// Width of the shared image-text embedding.
    pub embed_dim: usize,
    /// QuickGELU (`x * sigmoid(1.702 x)`) instead of GELU: what OpenAI's weights were trained
    /// with; open_clip turns it on for `pretrained="openai"`.
    #[serde(default)]
    pub quick_gelu: bool,
    /// The image tower.
    pub vision_cfg: VisionConfig,
    /// The text tower.
    pub text_cfg: TextConfig,
}

/// The ViT image tower (`CLIPVisionCfg`, the fields a plain ViT uses).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionConfig {
    /// Input side in pixels.
    pub image_size: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Hidden width.
    pub width: usize,
    /// Width of one attention head (heads = width / head_width).
    #[serde(default = "default_head_width")]
    pub head_width: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// MLP width over hidden width.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
}

/// The text tower (`CLIPTextCfg`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextConfig {
    /// Tokens per text.
    pub context_length: usize,
    /// Token ids.
    pub vocab_size: usize,
    /// Hidden width.
    pub width: usize,
    /// Attention heads.
    pub heads: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// MLP width over hidden width.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
}

fn default_head_width() -> usize {
    64
}

fn default_mlp_ratio() -> f64 {
    4.0
}

impl ClipConfig {
    /// ViT-L/14 as open_clip builds it for `pretrained="openai"`: GenEval's colour classifier.
    pub fn vit_l_14_openai() -> Self {
        ClipConfig {
            embed_dim: 768,
            quick_gelu: true,
            vision_cfg: VisionConfig {
                image_size: 224,
                layers: 24,
                width: 1024,
                head_width: 64,
                patch_size: 14,
                mlp_ratio: 4.0,
            },
            text_cfg: TextConfig {
                context_length: 77,
                vocab_size: 49408,
                width: 768,
                heads: 12,
                layers: 12,
                mlp_ratio: 4.0,
            },
        }
    }

    /// Reads an open_clip model config (JSON) and checks it.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let origin = path.display().to_string();
        let config: ClipConfig = serde_json::from_str(&text).map_err(|e| Error::Config {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        config.validate(&origin)?;
        Ok(config)
    }

    /// Checks the constraints the architecture needs, naming the key that breaks one.
    pub fn validate(&self, origin: &str) -> Result<(), Error> {
        let fail = |key: &str, message: String| {
            Err(Error::Config {
                origin: origin.to_string(),
                message: format!("`{key}`: {message}"),
            })
        };
        let v = &self.vision_cfg;
        let t = &self.text_cfg;
        for (key, value) in [
            ("embed_dim", self.embed_dim),
            ("vision_cfg.layers", v.layers),
            ("vision_cfg.width", v.width),
            ("vision_cfg.head_width", v.head_width),
            ("vision_cfg.patch_size", v.patch_size),
            ("text_cfg.context_length", t.context_length),
            ("text_cfg.vocab_size", t.vocab_size),
            ("text_cfg.width", t.width),
            ("text_cfg.heads", t.heads),
            ("text_cfg.layers", t.layers),
        ] {
            if value == 0 {
                return fail(key, "must be at least 1".into());
            }
        }
        if !v.width.is_multiple_of(v.head_width) {
            return fail(
                "vision_cfg.head_width",
                format!("{} does not divide width {}", v.head_width, v.width),
            );
        }
        if !v.image_size.is_multiple_of(v.patch_size) || v.image_size == 0 {
            return fail(
                "vision_cfg.image_size",
                format!(
                    "{} is not a multiple of patch_size {}",
                    v.image_size, v.patch_size
                ),
            );
        }
        if !t.width.is_multiple_of(t.heads) {
            return fail(
                "text_cfg.heads",
                format!("{} does not divide width {}", t.heads, t.width),
            );
        }
        for (key, ratio) in [
            ("vision_cfg.mlp_ratio", v.mlp_ratio),
            ("text_cfg.mlp_ratio", t.mlp_ratio),
        ] {
            if !(ratio > 0.0 && ratio.is_finite()) {
                return fail(key, format!("{ratio} is not a positive ratio"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_open_clips_vit_l_14_config() {
        let json = r#"{"embed_dim": 768, "vision_cfg": {"image_size": 224, "layers": 24,
            "width": 1024, "patch_size": 14}, "text_cfg": {"context_length": 77,
            "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12}}"#;
        let mut c: ClipConfig = serde_json::from_str(json).unwrap();
        assert!(!c.quick_gelu);
        c.quick_gelu = true;
        assert_eq!(c, ClipConfig::vit_l_14_openai());
        c.validate("ViT-L-14.json").unwrap();
    }

    #[test]
    fn a_broken_constraint_names_its_key() {
        let mut c = ClipConfig::vit_l_14_openai();
        c.text_cfg.heads = 7;
        let e = c.validate("x.json").unwrap_err().to_string();
        assert!(e.contains("x.json") && e.contains("text_cfg.heads"), "{e}");
        let e = serde_json::from_str::<ClipConfig>(r#"{"embed_dim": 1, "typo": 2}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("typo"), "{e}");
    }
}
