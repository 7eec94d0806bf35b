//! mmdet's `MSDeformAttnPixelDecoder` (`mmdet/models/plugins/msdeformattn_pixel_decoder.py`).
//!
//! The three coarsest backbone levels are projected (1x1 conv + GroupNorm), given sine positions
//! plus a learned level embedding, and refined together by a post-norm encoder of deformable
//! attention layers (`attn, norm, ffn, norm`; ReLU FFN). The finest level then joins by one FPN
//! step: 1x1 lateral conv + GroupNorm, plus the refined stride-8 map upsampled bilinearly
//! (`align_corners=False`), then 3x3 conv + GroupNorm + ReLU; a 1x1 conv of that gives the mask
//! features.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig,
    PaddingConfig2d,
};
use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Tensor, TensorData};

use super::config::{FEATURE_LEVELS, Mask2FormerConfig};
use super::deform_attn::MultiScaleDeformableAttention;
use super::position::{reference_points, sine_encoding};
use super::swin::Ffn;

/// mmcv's `ConvModule` as configured here: conv, GroupNorm, optional ReLU.
#[derive(Module, Debug)]
pub struct ConvModule<B: Backend> {
    /// The convolution.
    pub conv: Conv2d<B>,
    /// Its GroupNorm.
    pub gn: GroupNorm<B>,
    relu: bool,
}

impl<B: Backend> ConvModule<B> {
    fn init(
        cin: usize,
        cout: usize,
        kernel: usize,
        bias: bool,
        relu: bool,
        groups: usize,
        device: &B::Device,
    ) -> Self {
        ConvModule {
            conv: Conv2dConfig::new([cin, cout], [kernel, kernel])
                .with_padding(PaddingConfig2d::Explicit(
                    kernel / 2,
                    kernel / 2,
                    kernel / 2,
                    kernel / 2,
                ))
                .with_bias(bias)
                .init(device),
            gn: GroupNormConfig::new(groups, cout).init(device),
            relu,
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = self.gn.forward(self.conv.forward(x));
        if self.relu {
            burn::tensor::activation::relu(x)
        } else {
            x
        }
    }
}

/// A post-norm encoder layer (`BaseTransformerLayer` with `self_attn, norm, ffn, norm`).
#[derive(Module, Debug)]
pub struct EncoderLayer<B: Backend> {
    /// Deformable self-attention (its own residual inside).
    pub attn: MultiScaleDeformableAttention<B>,
    /// After attention.
    pub norm1: LayerNorm<B>,
    /// ReLU FFN (residual inside).
    pub ffn: Ffn<B>,
    /// After the FFN.
    pub norm2: LayerNorm<B>,
}

/// The encoder (`DetrTransformerEncoder`; post-norm layers, so no final norm).
#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    /// Its layers.
    pub layers: Vec<EncoderLayer<B>>,
}

/// What the pixel decoder hands the transformer decoder.
#[derive(Debug, Clone)]
pub struct PixelDecoderOutput<B: Backend> {
    /// `[b, out_channels, h/4, w/4]`.
    pub mask_features: Tensor<B, 4>,
    /// The refined levels, coarse to fine: strides 32, 16, 8, each `[b, feat_channels, ., .]`.
    pub multi_scale: Vec<Tensor<B, 4>>,
}

/// The pixel decoder.
#[derive(Module, Debug)]
pub struct MsDeformAttnPixelDecoder<B: Backend> {
    /// Per encoder level, coarsest first: 1x1 conv (with bias) + GroupNorm.
    pub input_convs: Vec<ConvModule<B>>,
    /// The deformable encoder.
    pub encoder: Encoder<B>,
    /// `[levels, feat_channels]`, added to the positions.
    pub level_encoding: Embedding<B>,
    /// The finest level's 1x1 conv (no bias) + GroupNorm.
    pub lateral_convs: Vec<ConvModule<B>>,
    /// 3x3 conv (no bias) + GroupNorm + ReLU after the FPN sum.
    pub output_convs: Vec<ConvModule<B>>,
    /// 1x1 conv to the mask features.
    pub mask_feature: Conv2d<B>,
    num_feats: usize,
}

impl<B: Backend> MsDeformAttnPixelDecoder<B> {
    /// Zero-initialised in `config`'s shape.
    pub fn init(config: &Mask2FormerConfig, device: &B::Device) -> Self {
        let p = &config.pixel_decoder;
        let widths = config.stage_widths();
        let c = p.feat_channels;
        let g = p.num_groups;
        let input_convs = (0..FEATURE_LEVELS)
            .map(|i| ConvModule::init(widths[3 - i], c, 1, true, false, g, device))
            .collect();
        let layers = (0..p.encoder_layers)
            .map(|_| EncoderLayer {
                attn: MultiScaleDeformableAttention::init(
                    c,
                    p.num_heads,
                    FEATURE_LEVELS,
                    p.num_points,
                    device,
                ),
                norm1: LayerNormConfig::new(c).init(device),
                ffn: Ffn::init(c, p.feedforward_channels, true, device),
                norm2: LayerNormConfig::new(c).init(device),
            })
            .collect();
        MsDeformAttnPixelDecoder {
            input_convs,
            encoder: Encoder { layers },
            level_encoding: EmbeddingConfig::new(FEATURE_LEVELS, c).init(device),
            lateral_convs: vec![ConvModule::init(widths[0], c, 1, false, false, g, device)],
            output_convs: vec![ConvModule::init(c, c, 3, false, true, g, device)],
            mask_feature: Conv2dConfig::new([c, p.out_channels], [1, 1]).init(device),
            num_feats: c / 2,
        }
    }

    /// The backbone's four maps (finest first) -> mask features and the refined levels.
    pub fn forward(&self, feats: &[Tensor<B, 4>]) -> PixelDecoderOutput<B> {
        let device = feats[0].device();
        let [b, _, _, _] = feats[0].dims();
        let level_embed = self.level_encoding.weight.val();
        let mut tokens = Vec::new();
        let mut positions = Vec::new();
        let mut references = Vec::new();
        let mut shapes = Vec::new();
        for (i, conv) in self.input_convs.iter().enumerate() {
            let feat = &feats[feats.len() - 1 - i];
            let [_, _, h, w] = feat.dims();
            let projected = conv.forward(feat.clone());
            let c = projected.dims()[1];
            tokens.push(projected.reshape([b, c, h * w]).swap_dims(1, 2));
            let pos = sine_encoding::<B>(self.num_feats, h, w, &device)
                + level_embed.clone().narrow(0, i, 1).reshape([1, c, 1, 1]);
            positions.push(pos.reshape([1, c, h * w]).swap_dims(1, 2).repeat_dim(0, b));
            references.extend(reference_points(h, w));
            shapes.push([h, w]);
        }
        let mut x = Tensor::cat(tokens, 1);
        let pos = Tensor::cat(positions, 1);
        let n = references.len();
        let flat: Vec<f32> = references.into_iter().flatten().collect();
        let reference =
            Tensor::<B, 3>::from_data(TensorData::new(flat, [1, n, 2]), &device).repeat_dim(0, b);
        for layer in &self.encoder.layers {
            x = layer
                .attn
                .forward(x, pos.clone(), reference.clone(), &shapes);
            x = layer.norm1.forward(x);
            x = layer.ffn.forward(x);
            x = layer.norm2.forward(x);
        }
        let c = x.dims()[2];
        let mut multi_scale = Vec::with_capacity(FEATURE_LEVELS + 1);
        let mut start = 0;
        for &[h, w] in &shapes {
            multi_scale.push(
                x.clone()
                    .narrow(1, start, h * w)
                    .swap_dims(1, 2)
                    .reshape([b, c, h, w]),
            );
            start += h * w;
        }
        let lateral = self.lateral_convs[0].forward(feats[0].clone());
        let [_, _, h, w] = lateral.dims();
        let coarse = multi_scale[FEATURE_LEVELS - 1].clone();
        let fine = self.output_convs[0].forward(lateral + upsample(coarse, [h, w]));
        let mask_features = self.mask_feature.forward(fine);
        PixelDecoderOutput {
            mask_features,
            multi_scale,
        }
    }
}

/// `F.interpolate(x, size, mode="bilinear", align_corners=False)`.
pub fn upsample<B: Backend>(x: Tensor<B, 4>, size: [usize; 2]) -> Tensor<B, 4> {
    interpolate(
        x,
        size,
        InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false),
    )
}
