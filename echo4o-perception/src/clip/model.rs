//! open_clip's `CLIP` (ViT image tower, causal text tower) in burn, with open_clip's parameter
//! names, so that its `state_dict` loads key for key.
//!
//! Upstream: open-clip-torch 2.26.1 `open_clip/model.py` (`CLIP.encode_image`,
//! `CLIP.encode_text`), `open_clip/transformer.py` (`ResidualAttentionBlock`: pre-LN,
//! `nn.MultiheadAttention` with a packed `in_proj`, MLP `c_fc` -> act -> `c_proj`;
//! `VisionTransformer.forward`: conv patch embedding without bias, class token, learned
//! positions, `ln_pre`, blocks, `ln_post` on the class token, `@ proj`; `text_global_pool`
//! `argmax`: the features at the end-of-text token, the highest id), `QuickGELU`. LayerNorm eps
//! is PyTorch's 1e-5.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::config::ClipConfig;
use crate::Error;
pub use crate::attention::MultiheadAttention;

/// The MLP of a block: `c_fc`, the activation, `c_proj`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Width -> mlp width.
    pub c_fc: Linear<B>,
    /// Mlp width -> width.
    pub c_proj: Linear<B>,
    quick_gelu: bool,
}

impl<B: Backend> Mlp<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = self.c_fc.forward(x);
        let x = if self.quick_gelu {
            x.clone() * sigmoid(x * 1.702)
        } else {
            gelu(x)
        };
        self.c_proj.forward(x)
    }
}

/// `ResidualAttentionBlock`: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
#[derive(Module, Debug)]
pub struct ResidualAttentionBlock<B: Backend> {
    /// Before attention.
    pub ln_1: LayerNorm<B>,
    /// Self-attention.
    pub attn: MultiheadAttention<B>,
    /// Before the MLP.
    pub ln_2: LayerNorm<B>,
    /// The MLP.
    pub mlp: Mlp<B>,
}

impl<B: Backend> ResidualAttentionBlock<B> {
    fn init(width: usize, heads: usize, mlp_ratio: f64, quick_gelu: bool, d: &B::Device) -> Self {
        let mlp_width = (width as f64 * mlp_ratio) as usize;
        ResidualAttentionBlock {
            ln_1: LayerNormConfig::new(width).init(d),
            attn: MultiheadAttention::init(width, heads, d),
            ln_2: LayerNormConfig::new(width).init(d),
            mlp: Mlp {
                c_fc: LinearConfig::new(width, mlp_width).init(d),
                c_proj: LinearConfig::new(mlp_width, width).init(d),
                quick_gelu,
            },
        }
    }

    /// One block.
    pub fn forward(&self, x: Tensor<B, 3>, mask: Option<&Tensor<B, 2>>) -> Tensor<B, 3> {
        let bias = mask.map(|m| m.clone().unsqueeze::<4>());
        let x = x.clone() + self.attn.forward_self(self.ln_1.forward(x), bias);
        x.clone() + self.mlp.forward(self.ln_2.forward(x))
    }
}

/// A stack of blocks (`transformer.resblocks`).
#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    /// The blocks.
    pub resblocks: Vec<ResidualAttentionBlock<B>>,
}

impl<B: Backend> Transformer<B> {
    fn init(
        width: usize,
        heads: usize,
        layers: usize,
        mlp_ratio: f64,
        quick_gelu: bool,
        d: &B::Device,
    ) -> Self {
        Transformer {
            resblocks: (0..layers)
                .map(|_| ResidualAttentionBlock::init(width, heads, mlp_ratio, quick_gelu, d))
                .collect(),
        }
    }
}

/// The image tower (`visual`).
#[derive(Module, Debug)]
pub struct VisionTransformer<B: Backend> {
    /// Patch embedding, no bias.
    pub conv1: Conv2d<B>,
    /// The class token.
    pub class_embedding: Param<Tensor<B, 1>>,
    /// `[grid^2 + 1, width]`.
    pub positional_embedding: Param<Tensor<B, 2>>,
    /// After the embeddings.
    pub ln_pre: LayerNorm<B>,
    /// The blocks.
    pub transformer: Transformer<B>,
    /// On the class token.
    pub ln_post: LayerNorm<B>,
    /// `[width, embed_dim]`.
    pub proj: Param<Tensor<B, 2>>,
}

/// What a vision forward can record, for parity tests.
#[derive(Debug, Clone)]
pub struct VisionTrace<B: Backend> {
    /// After `ln_pre`, `[b, grid^2 + 1, width]`.
    pub ln_pre: Tensor<B, 3>,
    /// After each block.
    pub blocks: Vec<Tensor<B, 3>>,
}

impl<B: Backend> VisionTransformer<B> {
    /// `[b, 3, s, s]` normalised pixels -> `[b, embed_dim]` (not normalised), and the stages.
    pub fn forward_traced(&self, pixels: Tensor<B, 4>) -> (Tensor<B, 2>, VisionTrace<B>) {
        let x = self.conv1.forward(pixels);
        let [b, w, gh, gw] = x.dims();
        let x = x.reshape([b, w, gh * gw]).swap_dims(1, 2);
        let cls = self
            .class_embedding
            .val()
            .reshape([1, 1, w])
            .expand([b, 1, w]);
        let x = Tensor::cat(vec![cls, x], 1) + self.positional_embedding.val().unsqueeze::<3>();
        let mut x = self.ln_pre.forward(x);
        let ln_pre = x.clone();
        let mut blocks = Vec::with_capacity(self.transformer.resblocks.len());
        for block in &self.transformer.resblocks {
            x = block.forward(x, None);
            blocks.push(x.clone());
        }
        let pooled = self.ln_post.forward(x.narrow(1, 0, 1)).reshape([b, w]);
        (
            pooled.matmul(self.proj.val()),
            VisionTrace { ln_pre, blocks },
        )
    }
}

/// open_clip's `CLIP`: the image tower under `visual`, the text tower at the top level.
#[derive(Module, Debug)]
pub struct Clip<B: Backend> {
    /// The image tower.
    pub visual: VisionTransformer<B>,
    /// Token embeddings, `[vocab, width]`.
    pub token_embedding: Embedding<B>,
    /// `[context, width]`.
    pub positional_embedding: Param<Tensor<B, 2>>,
    /// The text blocks (causal).
    pub transformer: Transformer<B>,
    /// After the text blocks.
    pub ln_final: LayerNorm<B>,
    /// `[width, embed_dim]`.
    pub text_projection: Param<Tensor<B, 2>>,
}

/// What a text forward can record, for parity tests.
#[derive(Debug, Clone)]
pub struct TextTrace<B: Backend> {
    /// After each block, `[b, context, width]`.
    pub blocks: Vec<Tensor<B, 3>>,
}

impl<B: Backend> Clip<B> {
    /// A CLIP of `config`'s shape; every weight is to be loaded (zeros and defaults here).
    pub fn init(config: &ClipConfig, device: &B::Device) -> Self {
        let v = &config.vision_cfg;
        let t = &config.text_cfg;
        let grid = v.image_size / v.patch_size;
        let q = config.quick_gelu;
        Clip {
            visual: VisionTransformer {
                conv1: Conv2dConfig::new([3, v.width], [v.patch_size, v.patch_size])
                    .with_stride([v.patch_size, v.patch_size])
                    .with_bias(false)
                    .init(device),
                class_embedding: Param::from_tensor(Tensor::zeros([v.width], device)),
                positional_embedding: Param::from_tensor(Tensor::zeros(
                    [grid * grid + 1, v.width],
                    device,
                )),
                ln_pre: LayerNormConfig::new(v.width).init(device),
                transformer: Transformer::init(
                    v.width,
                    v.width / v.head_width,
                    v.layers,
                    v.mlp_ratio,
                    q,
                    device,
                ),
                ln_post: LayerNormConfig::new(v.width).init(device),
                proj: Param::from_tensor(Tensor::zeros([v.width, config.embed_dim], device)),
            },
            token_embedding: EmbeddingConfig::new(t.vocab_size, t.width).init(device),
            positional_embedding: Param::from_tensor(Tensor::zeros(
                [t.context_length, t.width],
                device,
            )),
            transformer: Transformer::init(t.width, t.heads, t.layers, t.mlp_ratio, q, device),
            ln_final: LayerNormConfig::new(t.width).init(device),
            text_projection: Param::from_tensor(Tensor::zeros([t.width, config.embed_dim], device)),
        }
    }

    /// `encode_image`: `[b, 3, s, s]` normalised pixels -> `[b, embed_dim]`.
    pub fn encode_image(&self, pixels: Tensor<B, 4>) -> Tensor<B, 2> {
        self.visual.forward_traced(pixels).0
    }

    /// `encode_text`: `[b, context]` token ids -> `[b, embed_dim]`, and the stages. Every row
    /// must hold exactly `context` ids (as [`ClipTokenizer::tokenize`](super::ClipTokenizer::tokenize)
    /// makes them), each below the vocabulary size.
    pub fn encode_text_traced(
        &self,
        tokens: &[Vec<u32>],
    ) -> Result<(Tensor<B, 2>, TextTrace<B>), Error> {
        let device = self.positional_embedding.device();
        let b = tokens.len();
        let n = self.positional_embedding.dims()[0];
        let vocab = self.token_embedding.weight.dims()[0];
        for (r, row) in tokens.iter().enumerate() {
            if row.len() != n {
                return Err(Error::Invalid {
                    what: "token ids".into(),
                    message: format!("row {r} has {} ids, the text tower takes {n}", row.len()),
                });
            }
            if let Some(&id) = row.iter().find(|&&id| id as usize >= vocab) {
                return Err(Error::Invalid {
                    what: "token ids".into(),
                    message: format!("row {r} holds id {id}, the vocabulary has {vocab}"),
                });
            }
        }
        let flat: Vec<i64> = tokens.iter().flatten().map(|&id| i64::from(id)).collect();
        // The pooled position: the first maximum of each row (torch's argmax), the end token.
        let eot: Vec<i64> = tokens.iter().map(|row| first_max(row) as i64).collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [b, n]), &device);
        let mut x =
            self.token_embedding.forward(ids) + self.positional_embedding.val().unsqueeze::<3>();
        let mask = causal_mask::<B>(n, &device);
        let mut blocks = Vec::with_capacity(self.transformer.resblocks.len());
        for block in &self.transformer.resblocks {
            x = block.forward(x, Some(&mask));
            blocks.push(x.clone());
        }
        let x = self.ln_final.forward(x);
        let w = x.dims()[2];
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(eot, [b]), &device)
            .reshape([b, 1, 1])
            .expand([b, 1, w]);
        let pooled = x.gather(1, index).reshape([b, w]);
        Ok((
            pooled.matmul(self.text_projection.val()),
            TextTrace { blocks },
        ))
    }

    /// `encode_text`, without the stages.
    pub fn encode_text(&self, tokens: &[Vec<u32>]) -> Result<Tensor<B, 2>, Error> {
        Ok(self.encode_text_traced(tokens)?.0)
    }
}

/// The index of the first largest value (torch's `argmax`); 0 for an empty slice.
pub(crate) fn first_max<T: PartialOrd>(values: &[T]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// `[n, n]`: 0 on and below the diagonal, `-inf` above (open_clip's `build_causal_mask`).
fn causal_mask<B: Backend>(n: usize, device: &B::Device) -> Tensor<B, 2> {
    let values: Vec<f32> = (0..n * n)
        .map(|i| {
            if i % n > i / n {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    Tensor::from_data(TensorData::new(values, [n, n]), device)
}

/// Rows scaled to unit L2 norm (`F.normalize(x, dim=-1)`, eps 1e-12).
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}
