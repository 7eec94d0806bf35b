//! The SigLIP NaViT vision tower BAGEL reads reference images with, and the connector into the
//! LLM.
//!
//! Upstream: `ByteDance-Seed/Bagel@056b5fd` `modeling/bagel/siglip_navit.py` (patch embedding
//! stored as a Linear `[hidden, p*p*c]` with input order `(p, q, c)`, learned position table
//! indexed `r * side + c`, pre-LN encoder layers, `gelu_pytorch_tanh`, post layer norm) and
//! `modeling/bagel/modeling_utils.py` (`MLPconnector`).

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::config::VitConfig;

/// GELU with the tanh approximation (`gelu_pytorch_tanh`).
pub fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let c = (2.0f64 / std::f64::consts::PI).sqrt();
    let inner = (x.clone() + x.clone().powi_scalar(3) * 0.044715) * c;
    x.clone() * (inner.tanh() + 1.0) * 0.5
}

/// Patch and position embeddings (`vision_model.embeddings`).
#[derive(Module, Debug)]
pub struct Embeddings<B: Backend> {
    /// Linear patch embedding over `(p, q, c)`-ordered patches.
    pub patch_embedding: Linear<B>,
    /// Learned absolute positions, row `r * side + c`.
    pub position_embedding: Embedding<B>,
}

/// ViT self-attention.
#[derive(Module, Debug)]
pub struct VitAttention<B: Backend> {
    /// Query.
    pub q_proj: Linear<B>,
    /// Key.
    pub k_proj: Linear<B>,
    /// Value.
    pub v_proj: Linear<B>,
    /// Output.
    pub out_proj: Linear<B>,
    heads: usize,
}

/// ViT MLP.
#[derive(Module, Debug)]
pub struct VitMlp<B: Backend> {
    /// In.
    pub fc1: Linear<B>,
    /// Out.
    pub fc2: Linear<B>,
}

/// A pre-LN encoder layer.
#[derive(Module, Debug)]
pub struct EncoderLayer<B: Backend> {
    /// Before attention.
    pub layer_norm1: LayerNorm<B>,
    /// Attention.
    pub self_attn: VitAttention<B>,
    /// Before the MLP.
    pub layer_norm2: LayerNorm<B>,
    /// MLP.
    pub mlp: VitMlp<B>,
}

/// The encoder stack.
#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    /// The layers.
    pub layers: Vec<EncoderLayer<B>>,
}

/// `vision_model`.
#[derive(Module, Debug)]
pub struct VisionTransformer<B: Backend> {
    /// Embeddings.
    pub embeddings: Embeddings<B>,
    /// Encoder.
    pub encoder: Encoder<B>,
    /// Final norm.
    pub post_layernorm: LayerNorm<B>,
}

/// `vit_model`: SigLIP NaViT.
#[derive(Module, Debug)]
pub struct SiglipVisionModel<B: Backend> {
    /// The transformer.
    pub vision_model: VisionTransformer<B>,
    patch: usize,
    layer_norm_eps: f64,
}

/// The ViT -> LLM MLP (`connector`): `fc2(gelu_tanh(fc1(x)))`.
#[derive(Module, Debug)]
pub struct Connector<B: Backend> {
    /// ViT hidden -> LLM hidden.
    pub fc1: Linear<B>,
    /// LLM hidden -> LLM hidden.
    pub fc2: Linear<B>,
}

impl<B: Backend> Connector<B> {
    /// A random connector.
    pub fn init(vit_hidden: usize, hidden: usize, device: &B::Device) -> Self {
        Connector {
            fc1: LinearConfig::new(vit_hidden, hidden).init(device),
            fc2: LinearConfig::new(hidden, hidden).init(device),
        }
    }

    /// `[n, vit_hidden]` -> `[n, hidden]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = x.cast(self.fc1.weight.val().dtype());
        self.fc2.forward(gelu_tanh(self.fc1.forward(x)))
    }
}

/// What a ViT forward can record.
#[derive(Debug, Clone, Default)]
pub struct VitTrace<B: Backend> {
    /// Embeddings (input of layer 0).
    pub embeddings: Option<Tensor<B, 2>>,
    /// Each layer's output.
    pub layers: Vec<Tensor<B, 2>>,
}

impl<B: Backend> SiglipVisionModel<B> {
    /// A random ViT with a position table of `side x side`.
    pub fn init(c: &VitConfig, side: usize, device: &B::Device) -> Self {
        let h = c.hidden_size;
        let ln = || {
            LayerNormConfig::new(h)
                .with_epsilon(c.layer_norm_eps)
                .init(device)
        };
        let lin = |i, o| LinearConfig::new(i, o).init(device);
        SiglipVisionModel {
            vision_model: VisionTransformer {
                embeddings: Embeddings {
                    patch_embedding: lin(c.patch_size * c.patch_size * c.num_channels, h),
                    position_embedding: EmbeddingConfig::new(side * side, h).init(device),
                },
                encoder: Encoder {
                    layers: (0..c.num_hidden_layers)
                        .map(|_| EncoderLayer {
                            layer_norm1: ln(),
                            self_attn: VitAttention {
                                q_proj: lin(h, h),
                                k_proj: lin(h, h),
                                v_proj: lin(h, h),
                                out_proj: lin(h, h),
                                heads: c.num_attention_heads,
                            },
                            layer_norm2: ln(),
                            mlp: VitMlp {
                                fc1: lin(h, c.intermediate_size),
                                fc2: lin(c.intermediate_size, h),
                            },
                        })
                        .collect(),
                },
                post_layernorm: ln(),
            },
            patch: c.patch_size,
            layer_norm_eps: c.layer_norm_eps,
        }
    }

    /// The patch side.
    pub fn patch_size(&self) -> usize {
        self.patch
    }

    /// Encodes one image's patches.
    ///
    /// # Shapes
    /// - `patches`: `[n, p*p*c]` in `(p, q, c)` order, rows in grid order;
    /// - `pos_ids`: n rows of the position table (`r * side + c`);
    /// - returns `[n, hidden]` after the post layer norm.
    pub fn forward(
        &self,
        patches: Tensor<B, 2>,
        pos_ids: &[usize],
        mut trace: Option<&mut VitTrace<B>>,
    ) -> Tensor<B, 2> {
        let device = patches.device();
        let vm = &self.vision_model;
        let patches = patches.cast(vm.embeddings.patch_embedding.weight.val().dtype());
        let n = pos_ids.len();
        let ids: Vec<i64> = pos_ids.iter().map(|&i| i as i64).collect();
        let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [n]), &device);
        let pos = vm.embeddings.position_embedding.weight.val().select(0, ids);
        let mut x = vm.embeddings.patch_embedding.forward(patches) + pos;
        if let Some(t) = trace.as_deref_mut() {
            t.embeddings = Some(x.clone());
        }
        for layer in &vm.encoder.layers {
            let a = &layer.self_attn;
            let h = crate::ops::layer_norm_f32(&layer.layer_norm1, x.clone(), self.layer_norm_eps);
            let [n, d] = h.dims();
            let hd = d / a.heads;
            let split = |t: Tensor<B, 2>| t.reshape([n, a.heads, hd]).swap_dims(0, 1);
            let q = split(a.q_proj.forward(h.clone()));
            let k = split(a.k_proj.forward(h.clone()));
            let v = split(a.v_proj.forward(h));
            let scores = q.matmul(k.swap_dims(1, 2)) * (1.0 / (hd as f64).sqrt());
            let o = crate::ops::softmax_f32(scores, 2)
                .matmul(v)
                .swap_dims(0, 1)
                .reshape([n, d]);
            x = x + a.out_proj.forward(o);
            let h = crate::ops::layer_norm_f32(&layer.layer_norm2, x.clone(), self.layer_norm_eps);
            x = x.clone() + layer.mlp.fc2.forward(gelu_tanh(layer.mlp.fc1.forward(h)));
            if let Some(t) = trace.as_deref_mut() {
                t.layers.push(x.clone());
            }
        }
        crate::ops::layer_norm_f32(&vm.post_layernorm, x, self.layer_norm_eps)
    }
}
