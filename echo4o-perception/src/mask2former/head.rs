//! mmdet's `Mask2FormerHead` (`mmdet/models/dense_heads/mask2former_head.py`): the pixel
//! decoder, then learned queries refined by a masked-attention decoder.
//!
//! Each decoder layer is post-norm `cross_attn, norm, self_attn, norm, ffn, norm`
//! (`DetrTransformerDecoderLayer`): the queries attend to one level of the pixel decoder
//! (coarse to fine in turn), keys carrying sine positions and the level embedding, queries
//! carrying `query_embed`; the cross-attention is masked to where the previous prediction's
//! mask, resized bilinearly to that level, has sigmoid >= 0.5 (a query whose mask would be empty
//! attends everywhere). Before the first layer and after each, the shared `post_norm` feeds the
//! class head (`cls_embed`, classes + no-object) and the mask head (3-layer ReLU MLP, dot product
//! with the mask features).

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::backend::Backend;

use super::config::{FEATURE_LEVELS, Mask2FormerConfig};
use super::pixel_decoder::{MsDeformAttnPixelDecoder, upsample};
use super::position::sine_encoding;
use super::swin::Ffn;
use crate::attention::{MultiheadAttention, mask_to_bias};

/// mmcv's `MultiheadAttention` wrapper: positions added to query and key (not value), the
/// residual added after the output projection.
#[derive(Module, Debug)]
pub struct PositionalAttention<B: Backend> {
    /// `nn.MultiheadAttention`.
    pub attn: MultiheadAttention<B>,
}

impl<B: Backend> PositionalAttention<B> {
    fn forward(
        &self,
        query: Tensor<B, 3>,
        key: Tensor<B, 3>,
        query_pos: Tensor<B, 3>,
        key_pos: Tensor<B, 3>,
        bias: Option<Tensor<B, 4>>,
    ) -> Tensor<B, 3> {
        let out = self
            .attn
            .forward(query.clone() + query_pos, key.clone() + key_pos, key, bias);
        query + out
    }
}

/// One decoder layer.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    /// Masked cross-attention to a pixel-decoder level (`attentions.0`).
    pub cross_attn: PositionalAttention<B>,
    /// Self-attention among the queries (`attentions.1`).
    pub self_attn: PositionalAttention<B>,
    /// After cross-attention.
    pub norm1: LayerNorm<B>,
    /// After self-attention.
    pub norm2: LayerNorm<B>,
    /// After the FFN.
    pub norm3: LayerNorm<B>,
    /// ReLU FFN.
    pub ffn: Ffn<B>,
}

/// The decoder's layers and its shared output norm.
#[derive(Module, Debug)]
pub struct TransformerDecoder<B: Backend> {
    /// The layers.
    pub layers: Vec<DecoderLayer<B>>,
    /// Applied before every prediction.
    pub post_norm: LayerNorm<B>,
}

/// The mask head's MLP (checkpoint `mask_embed.0`, `.2`, `.4`; renamed on load).
#[derive(Module, Debug)]
pub struct MaskEmbed<B: Backend> {
    /// First layer.
    pub fc1: Linear<B>,
    /// Second layer.
    pub fc2: Linear<B>,
    /// Output layer.
    pub fc3: Linear<B>,
}

/// Class and mask logits after the zeroth (before any layer) to the last decoder layer.
#[derive(Debug, Clone)]
pub struct HeadOutput<B: Backend> {
    /// Per prediction, `[b, queries, classes + 1]`.
    pub class_logits: Vec<Tensor<B, 3>>,
    /// Per prediction, `[b, queries, h/4, w/4]` (the padded input's quarter).
    pub mask_logits: Vec<Tensor<B, 4>>,
}

/// The head.
#[derive(Module, Debug)]
pub struct Mask2FormerHead<B: Backend> {
    /// The pixel decoder.
    pub pixel_decoder: MsDeformAttnPixelDecoder<B>,
    /// The masked-attention decoder.
    pub transformer_decoder: TransformerDecoder<B>,
    /// Query positions, `[queries, c]`.
    pub query_embed: Embedding<B>,
    /// Initial query features, `[queries, c]`.
    pub query_feat: Embedding<B>,
    /// Per level, added to the decoder's keys and values.
    pub level_embed: Embedding<B>,
    /// Class logits (classes + no-object).
    pub cls_embed: Linear<B>,
    /// The mask MLP.
    pub mask_embed: MaskEmbed<B>,
}

impl<B: Backend> Mask2FormerHead<B> {
    /// Zero-initialised in `config`'s shape.
    pub fn init(config: &Mask2FormerConfig, device: &B::Device) -> Self {
        let c = config.pixel_decoder.feat_channels;
        let d = &config.decoder;
        let attention = || PositionalAttention {
            attn: MultiheadAttention::init(c, d.num_heads, device),
        };
        let ln = || LayerNormConfig::new(c).init(device);
        let layers = (0..d.num_layers)
            .map(|_| DecoderLayer {
                cross_attn: attention(),
                self_attn: attention(),
                norm1: ln(),
                norm2: ln(),
                norm3: ln(),
                ffn: Ffn::init(c, d.feedforward_channels, true, device),
            })
            .collect();
        Mask2FormerHead {
            pixel_decoder: MsDeformAttnPixelDecoder::init(config, device),
            transformer_decoder: TransformerDecoder {
                layers,
                post_norm: ln(),
            },
            query_embed: EmbeddingConfig::new(d.num_queries, c).init(device),
            query_feat: EmbeddingConfig::new(d.num_queries, c).init(device),
            level_embed: EmbeddingConfig::new(FEATURE_LEVELS, c).init(device),
            cls_embed: LinearConfig::new(c, config.num_classes + 1).init(device),
            mask_embed: MaskEmbed {
                fc1: LinearConfig::new(c, c).init(device),
                fc2: LinearConfig::new(c, c).init(device),
                fc3: LinearConfig::new(c, config.pixel_decoder.out_channels).init(device),
            },
        }
    }

    /// `forward_head`: the predictions of queries `q` (`[b, queries, c]`), and the attention
    /// bias for the next layer at `size` (`[b, 1, queries, h*w]`, `-inf` where not to attend).
    fn predict(
        &self,
        q: Tensor<B, 3>,
        mask_features: &Tensor<B, 4>,
        size: [usize; 2],
    ) -> (Tensor<B, 3>, Tensor<B, 4>, Tensor<B, 4>) {
        let q = self.transformer_decoder.post_norm.forward(q);
        let class_logits = self.cls_embed.forward(q.clone());
        let m = &self.mask_embed;
        let embed = m.fc3.forward(relu(m.fc2.forward(relu(m.fc1.forward(q)))));
        let [b, c, h, w] = mask_features.dims();
        let queries = embed.dims()[1];
        let masks = embed
            .matmul(mask_features.clone().reshape([b, c, h * w]))
            .reshape([b, queries, h, w]);
        let resized = upsample(masks.clone(), size).reshape([b, queries, size[0] * size[1]]);
        let mut blocked = sigmoid(resized).lower_elem(0.5);
        // A query that would see nothing sees everything.
        let all = blocked
            .clone()
            .int()
            .sum_dim(2)
            .equal_elem((size[0] * size[1]) as i64);
        blocked = blocked.bool_and(all.bool_not());
        let bias = mask_to_bias(blocked.unsqueeze_dim(1));
        (class_logits, masks, bias)
    }

    /// The backbone's four maps -> every prediction of the decoder.
    pub fn forward(&self, feats: &[Tensor<B, 4>]) -> HeadOutput<B> {
        let device = feats[0].device();
        let pixel = self.pixel_decoder.forward(feats);
        let b = feats[0].dims()[0];
        let level_embed = self.level_embed.weight.val();
        let mut keys = Vec::with_capacity(FEATURE_LEVELS);
        let mut key_pos = Vec::with_capacity(FEATURE_LEVELS);
        let mut sizes = Vec::with_capacity(FEATURE_LEVELS);
        for (i, level) in pixel.multi_scale.iter().enumerate() {
            let [_, c, h, w] = level.dims();
            keys.push(
                level.clone().reshape([b, c, h * w]).swap_dims(1, 2)
                    + level_embed.clone().narrow(0, i, 1).unsqueeze::<3>(),
            );
            key_pos.push(
                sine_encoding::<B>(c / 2, h, w, &device)
                    .reshape([1, c, h * w])
                    .swap_dims(1, 2)
                    .repeat_dim(0, b),
            );
            sizes.push([h, w]);
        }
        let mut q = self
            .query_feat
            .weight
            .val()
            .unsqueeze::<3>()
            .repeat_dim(0, b);
        let query_pos = self
            .query_embed
            .weight
            .val()
            .unsqueeze::<3>()
            .repeat_dim(0, b);
        let mut class_logits = Vec::new();
        let mut mask_logits = Vec::new();
        let (cls, masks, mut bias) = self.predict(q.clone(), &pixel.mask_features, sizes[0]);
        class_logits.push(cls);
        mask_logits.push(masks);
        for (i, layer) in self.transformer_decoder.layers.iter().enumerate() {
            let level = i % FEATURE_LEVELS;
            q = layer.cross_attn.forward(
                q,
                keys[level].clone(),
                query_pos.clone(),
                key_pos[level].clone(),
                Some(bias),
            );
            q = layer.norm1.forward(q);
            q = layer
                .self_attn
                .forward(q.clone(), q, query_pos.clone(), query_pos.clone(), None);
            q = layer.norm2.forward(q);
            q = layer.norm3.forward(layer.ffn.forward(q));
            let next = sizes[(i + 1) % FEATURE_LEVELS];
            let (cls, masks, next_bias) = self.predict(q.clone(), &pixel.mask_features, next);
            class_logits.push(cls);
            mask_logits.push(masks);
            bias = next_bias;
        }
        HeadOutput {
            class_logits,
            mask_logits,
        }
    }
}
