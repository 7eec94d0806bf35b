//! Mask2Former's shape: the numbers of mmdet 2.x's
//! `mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py` (and the configs it inherits) that decide
//! tensor shapes, in one JSON-readable struct, so a small random model and the real one run
//! through the same code.

use std::path::Path;

use serde::Deserialize;

use crate::Error;

/// A Mask2Former instance-segmentation model with a Swin backbone.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mask2FormerConfig {
    /// The backbone (`model.backbone`).
    pub backbone: SwinConfig,
    /// The pixel decoder (`panoptic_head.pixel_decoder`).
    pub pixel_decoder: PixelDecoderConfig,
    /// The masked-attention decoder and its heads (`panoptic_head`).
    pub decoder: DecoderConfig,
    /// Object classes (`num_things_classes`; no stuff classes in the instance config). GenEval
    /// reads them by index as COCO's 80.
    pub num_classes: usize,
}

/// mmdet's `SwinTransformer` (patch size 4, strides 4-2-2-2, every stage output, post-norm per
/// output, no absolute position embedding, as the Mask2Former configs build it).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwinConfig {
    /// Width of the first stage; each later stage doubles it.
    pub embed_dims: usize,
    /// Blocks per stage.
    pub depths: Vec<usize>,
    /// Attention heads per stage.
    pub num_heads: Vec<usize>,
    /// Side of the attention window.
    pub window_size: usize,
    /// FFN width over stage width.
    pub mlp_ratio: usize,
}

/// `MSDeformAttnPixelDecoder`: a multi-scale deformable-attention encoder over the three
/// coarsest backbone levels, then an FPN step onto the finest.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PixelDecoderConfig {
    /// Width of every level after projection (`feat_channels`, also the decoder's width).
    pub feat_channels: usize,
    /// Width of the mask features (`out_channels`).
    pub out_channels: usize,
    /// GroupNorm groups.
    pub num_groups: usize,
    /// Encoder layers.
    pub encoder_layers: usize,
    /// Deformable-attention heads.
    pub num_heads: usize,
    /// Sampling points per head and level.
    pub num_points: usize,
    /// Encoder FFN width.
    pub feedforward_channels: usize,
}

/// The masked-attention transformer decoder of `Mask2FormerHead`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoderConfig {
    /// Object queries.
    pub num_queries: usize,
    /// Decoder layers (cross-attention, self-attention, FFN each).
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// FFN width.
    pub feedforward_channels: usize,
}

/// Encoder levels (`num_transformer_feat_level`); the three coarsest of the backbone's four.
pub const FEATURE_LEVELS: usize = 3;

impl Mask2FormerConfig {
    /// `mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py`: the detector behind GenEval.
    pub fn swin_s_coco() -> Self {
        Mask2FormerConfig {
            backbone: SwinConfig {
                embed_dims: 96,
                depths: vec![2, 2, 18, 2],
                num_heads: vec![3, 6, 12, 24],
                window_size: 7,
                mlp_ratio: 4,
            },
            pixel_decoder: PixelDecoderConfig {
                feat_channels: 256,
                out_channels: 256,
                num_groups: 32,
                encoder_layers: 6,
                num_heads: 8,
                num_points: 4,
                feedforward_channels: 1024,
            },
            decoder: DecoderConfig {
                num_queries: 100,
                num_layers: 9,
                num_heads: 8,
                feedforward_channels: 2048,
            },
            num_classes: 80,
        }
    }

    /// Reads a JSON file of this struct's shape and checks it.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: Self = serde_json::from_str(&text).map_err(|e| Error::Config {
            origin: path.display().to_string(),
            message: e.to_string(),
        })?;
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    /// Refuses shapes the architecture cannot take, naming the key.
    pub fn validate(&self, origin: &str) -> Result<(), Error> {
        let fail = |message: String| {
            Err(Error::Config {
                origin: origin.to_string(),
                message,
            })
        };
        let b = &self.backbone;
        if b.depths.len() != 4 || b.num_heads.len() != 4 {
            return fail(format!(
                "backbone.depths and backbone.num_heads need 4 stages (got {} and {})",
                b.depths.len(),
                b.num_heads.len()
            ));
        }
        for (stage, &heads) in b.num_heads.iter().enumerate() {
            let width = b.embed_dims << stage;
            if heads == 0 || !width.is_multiple_of(heads) {
                return fail(format!(
                    "backbone.num_heads[{stage}] = {heads} does not divide the stage width {width}"
                ));
            }
        }
        if b.window_size < 2 || b.mlp_ratio == 0 || b.depths.contains(&0) {
            return fail("backbone.window_size >= 2, mlp_ratio >= 1 and depths >= 1".into());
        }
        let p = &self.pixel_decoder;
        if p.num_groups == 0
            || !p.feat_channels.is_multiple_of(p.num_groups)
            || p.out_channels == 0
            || p.num_heads == 0
            || !p.feat_channels.is_multiple_of(p.num_heads)
            || p.num_points == 0
            || p.encoder_layers == 0
        {
            return fail(format!(
                "pixel_decoder: num_groups ({}) and num_heads ({}) must divide feat_channels ({}), and every count be >= 1",
                p.num_groups, p.num_heads, p.feat_channels
            ));
        }
        let d = &self.decoder;
        if d.num_heads == 0 || !p.feat_channels.is_multiple_of(d.num_heads) {
            return fail(format!(
                "decoder.num_heads = {} does not divide pixel_decoder.feat_channels = {}",
                d.num_heads, p.feat_channels
            ));
        }
        if d.num_queries == 0 || d.num_layers == 0 || self.num_classes == 0 {
            return fail(
                "decoder.num_queries, decoder.num_layers and num_classes must be >= 1".into(),
            );
        }
        Ok(())
    }

    /// The backbone's width per stage.
    pub fn stage_widths(&self) -> [usize; 4] {
        let e = self.backbone.embed_dims;
        [e, 2 * e, 4 * e, 8 * e]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preset_is_valid_and_refusals_name_the_key() {
        Mask2FormerConfig::swin_s_coco().validate("preset").unwrap();
        let mut c = Mask2FormerConfig::swin_s_coco();
        c.backbone.num_heads[2] = 5;
        let e = c.validate("x.json").unwrap_err().to_string();
        assert!(e.contains("backbone.num_heads[2]"), "{e}");
        let mut c = Mask2FormerConfig::swin_s_coco();
        c.decoder.num_heads = 7;
        assert!(
            c.validate("x")
                .unwrap_err()
                .to_string()
                .contains("decoder.num_heads")
        );
    }
}
