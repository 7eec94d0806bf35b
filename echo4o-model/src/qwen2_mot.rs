//! The Qwen2 Mixture-of-Transformers decoder of BAGEL: every layer has an understanding expert
//! (text, ViT tokens, image markers) and a generation expert (`*_moe_gen`, VAE latent tokens)
//! that share one self-attention over the whole sequence. Tokens are routed by type.
//!
//! Upstream: `ByteDance-Seed/Bagel@056b5fd` `modeling/bagel/qwen2_navit.py` (`PackedAttentionMoT`,
//! `Qwen2MoTDecoderLayer`, `Qwen2Model`), `modeling/qwen2/modeling_qwen2.py` (RMSNorm, MLP,
//! RoPE). Field names are the upstream names, so module paths equal checkpoint keys.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};

use std::sync::Arc;

use crate::config::LlmConfig;
use crate::cpu::fused::silu_mul;
use crate::packing::PackedSegments;

/// Which expert a run of tokens uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expert {
    /// The understanding expert: text, ViT tokens, image start/end markers.
    Und,
    /// The generation expert: VAE latent tokens.
    Gen,
}

/// A packed sequence's routing: contiguous runs of rows and the expert of each run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing(Vec<(usize, Expert)>);

impl Routing {
    /// Runs of `(length, expert)`, in order; empty runs are dropped.
    pub fn new(runs: impl IntoIterator<Item = (usize, Expert)>) -> Self {
        Routing(runs.into_iter().filter(|(n, _)| *n > 0).collect())
    }

    /// All `n` rows on one expert.
    pub fn all(n: usize, expert: Expert) -> Self {
        Routing::new([(n, expert)])
    }

    /// The image block `[start marker, n latents, end marker]`.
    pub fn image_block(n: usize, expert: Expert) -> Self {
        Routing::new([(1, Expert::Und), (n, expert), (1, Expert::Und)])
    }

    /// Total rows.
    pub fn len(&self) -> usize {
        self.0.iter().map(|r| r.0).sum()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The runs as `(rows, und or gen_)`: the module of each run.
    fn experts<'a, T>(&self, und: &'a T, gen_: &'a T) -> Vec<(usize, &'a T)> {
        self.0
            .iter()
            .map(|&(n, e)| match e {
                Expert::Und => (n, und),
                Expert::Gen => (n, gen_),
            })
            .collect()
    }

    /// Each run of `x` (`[rows, ..]`) normed by its expert's RMSNorm: one pass on the CPU,
    /// [`Routing::apply`] elsewhere.
    fn norm<B: Backend, const D: usize>(
        &self,
        x: Tensor<B, D>,
        und: &RmsNorm<B>,
        gen_: &RmsNorm<B>,
    ) -> Tensor<B, D> {
        crate::cpu::fused::rms_norm(x, &self.experts(und, gen_), |x| {
            self.apply(x, |x| und.forward(x), |x| gen_.forward(x))
        })
    }

    /// Applies `und` or `gen` to each run of `x` (`[rows, ..]`) and concatenates the results.
    pub fn apply<B: Backend, const D: usize>(
        &self,
        x: Tensor<B, D>,
        und: impl Fn(Tensor<B, D>) -> Tensor<B, D>,
        gen_: impl Fn(Tensor<B, D>) -> Tensor<B, D>,
    ) -> Tensor<B, D> {
        if self.0.len() == 1 {
            return match self.0[0].1 {
                Expert::Und => und(x),
                Expert::Gen => gen_(x),
            };
        }
        if self.0.len() > 3 {
            return self.apply_grouped(x, und, gen_);
        }
        let mut start = 0;
        let parts: Vec<Tensor<B, D>> = self
            .0
            .iter()
            .map(|&(n, e)| {
                let part = x.clone().narrow(0, start, n);
                start += n;
                match e {
                    Expert::Und => und(part),
                    Expert::Gen => gen_(part),
                }
            })
            .collect();
        Tensor::cat(parts, 0)
    }

    /// [`Routing::apply`] for many runs (packed training batches): gathers each expert's rows,
    /// applies it once, and puts the rows back in order, so the op count does not grow with the
    /// number of runs.
    fn apply_grouped<B: Backend, const D: usize>(
        &self,
        x: Tensor<B, D>,
        und: impl Fn(Tensor<B, D>) -> Tensor<B, D>,
        gen_: impl Fn(Tensor<B, D>) -> Tensor<B, D>,
    ) -> Tensor<B, D> {
        let (mut und_rows, mut gen_rows) = (Vec::new(), Vec::new());
        let mut start = 0i64;
        for &(n, e) in &self.0 {
            let rows = start..start + n as i64;
            match e {
                Expert::Und => und_rows.extend(rows),
                Expert::Gen => gen_rows.extend(rows),
            }
            start += n as i64;
        }
        if gen_rows.is_empty() {
            return und(x);
        }
        if und_rows.is_empty() {
            return gen_(x);
        }
        let device = x.device();
        let index = |v: Vec<i64>| {
            let n = v.len();
            Tensor::<B, 1, burn::tensor::Int>::from_data(TensorData::new(v, [n]), &device)
        };
        let mut inverse = vec![0i64; start as usize];
        for (k, &r) in und_rows.iter().chain(&gen_rows).enumerate() {
            inverse[r as usize] = k as i64;
        }
        let yu = und(x.clone().select(0, index(und_rows)));
        let yg = gen_(x.select(0, index(gen_rows)));
        Tensor::cat(vec![yu, yg], 0).select(0, index(inverse))
    }
}

/// The cos/sin tables of Qwen2's RoPE for the given positions, `[len, head_dim]` each, computed
/// in f32 as HF does (`inv_freq = 1/theta^(2i/d)`, `emb = cat(freqs, freqs)`).
pub fn rope_tables<B: Backend>(
    positions: &[usize],
    head_dim: usize,
    theta: f64,
    device: &B::Device,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| (1.0 / theta.powf((2 * i) as f64 / head_dim as f64)) as f32)
        .collect();
    let mut cos = Vec::with_capacity(positions.len() * head_dim);
    let mut sin = Vec::with_capacity(positions.len() * head_dim);
    for &p in positions {
        // `emb = cat(freqs, freqs)`: the same frequencies twice.
        for _ in 0..2 {
            for f in &inv_freq {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
    }
    let shape = [positions.len(), head_dim];
    (
        Tensor::from_data(TensorData::new(cos, shape), (device, DType::F32)),
        Tensor::from_data(TensorData::new(sin, shape), (device, DType::F32)),
    )
}

/// Applies RoPE to `x` `[len, heads, head_dim]` as HF writes it: `x * cos + rotate_half(x) * sin`
/// (non-interleaved). The CPU backends take `cpu::fused::norm_rope` instead.
pub(crate) fn apply_rope<B: Backend>(
    x: Tensor<B, 3>,
    cos: &Tensor<B, 2>,
    sin: &Tensor<B, 2>,
) -> Tensor<B, 3> {
    let [len, heads, d] = x.dims();
    let half = d / 2;
    let x1 = x.clone().narrow(2, 0, half);
    let x2 = x.clone().narrow(2, half, half);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 2);
    // The tables are f32 (HF computes them so, then casts to the activations' dtype).
    let dtype = x.dtype();
    let cos = cos
        .clone()
        .cast(dtype)
        .reshape([len, 1, d])
        .expand([len, heads, d]);
    let sin = sin
        .clone()
        .cast(dtype)
        .reshape([len, 1, d])
        .expand([len, heads, d]);
    x * cos + rotated * sin
}

/// Keys and values of one layer for the tokens already in a context, post-norm and post-RoPE:
/// `[len, kv_heads, head_dim]` each.
#[derive(Debug, Clone)]
pub struct LayerKv<B: Backend> {
    /// Keys.
    pub k: Tensor<B, 3>,
    /// Values.
    pub v: Tensor<B, 3>,
}

/// The KV cache of a context: one entry per layer, or none for an empty context. Not a module:
/// it is passed `&mut` and grows as the context does.
#[derive(Debug, Clone, Default)]
pub struct KvCache<B: Backend> {
    layers: Vec<LayerKv<B>>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache.
    pub fn new() -> Self {
        KvCache {
            layers: Vec::new(),
            len: 0,
        }
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Layer `l`'s keys and values, if any token is held.
    pub fn layer(&self, l: usize) -> Option<&LayerKv<B>> {
        self.layers.get(l)
    }

    /// Empties the cache.
    pub fn reset(&mut self) {
        self.layers.clear();
        self.len = 0;
    }

    fn append(&mut self, new: Vec<LayerKv<B>>, len: usize) {
        if self.layers.is_empty() {
            self.layers = new;
        } else {
            for (old, n) in self.layers.iter_mut().zip(new) {
                old.k = Tensor::cat(vec![old.k.clone(), n.k], 0);
                old.v = Tensor::cat(vec![old.v.clone(), n.v], 0);
            }
        }
        self.len += len;
    }
}

/// Qwen2's SwiGLU MLP: `down(silu(gate(x)) * up(x))`, no biases.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Gate projection.
    pub gate_proj: Linear<B>,
    /// Up projection.
    pub up_proj: Linear<B>,
    /// Down projection.
    pub down_proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    fn init(c: &LlmConfig, device: &B::Device) -> Self {
        let lin = |i, o| LinearConfig::new(i, o).with_bias(false).init(device);
        Mlp {
            gate_proj: lin(c.hidden_size, c.intermediate_size),
            up_proj: lin(c.hidden_size, c.intermediate_size),
            down_proj: lin(c.intermediate_size, c.hidden_size),
        }
    }

    fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        self.down_proj.forward(silu_mul(
            self.gate_proj.forward(x.clone()),
            self.up_proj.forward(x),
        ))
    }
}

/// The shared self-attention with both experts' projections and q/k norms.
#[derive(Module, Debug)]
pub struct SelfAttn<B: Backend> {
    /// Und query projection (with bias).
    pub q_proj: Linear<B>,
    /// Und key projection (with bias).
    pub k_proj: Linear<B>,
    /// Und value projection (with bias).
    pub v_proj: Linear<B>,
    /// Und output projection (no bias).
    pub o_proj: Linear<B>,
    /// Gen query projection.
    pub q_proj_moe_gen: Linear<B>,
    /// Gen key projection.
    pub k_proj_moe_gen: Linear<B>,
    /// Gen value projection.
    pub v_proj_moe_gen: Linear<B>,
    /// Gen output projection.
    pub o_proj_moe_gen: Linear<B>,
    /// Und per-head query RMSNorm.
    pub q_norm: RmsNorm<B>,
    /// Und per-head key RMSNorm.
    pub k_norm: RmsNorm<B>,
    /// Gen per-head query RMSNorm.
    pub q_norm_moe_gen: RmsNorm<B>,
    /// Gen per-head key RMSNorm.
    pub k_norm_moe_gen: RmsNorm<B>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl<B: Backend> SelfAttn<B> {
    fn init(c: &LlmConfig, device: &B::Device) -> Self {
        let (h, hd) = (c.hidden_size, c.head_dim());
        let q = c.num_attention_heads * hd;
        let kv = c.num_key_value_heads * hd;
        let lin = |i, o, bias| LinearConfig::new(i, o).with_bias(bias).init(device);
        let norm = || {
            RmsNormConfig::new(hd)
                .with_epsilon(c.rms_norm_eps)
                .init(device)
        };
        SelfAttn {
            q_proj: lin(h, q, true),
            k_proj: lin(h, kv, true),
            v_proj: lin(h, kv, true),
            o_proj: lin(q, h, false),
            q_proj_moe_gen: lin(h, q, true),
            k_proj_moe_gen: lin(h, kv, true),
            v_proj_moe_gen: lin(h, kv, true),
            o_proj_moe_gen: lin(q, h, false),
            q_norm: norm(),
            k_norm: norm(),
            q_norm_moe_gen: norm(),
            k_norm_moe_gen: norm(),
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: hd,
        }
    }

    /// Projects and normalises q, k, v for the rows of `x` (`[len, hidden]`), then applies RoPE:
    /// q `[len, heads, hd]`, k and v `[len, kv_heads, hd]`.
    fn qkv(
        &self,
        x: Tensor<B, 2>,
        routing: &Routing,
        cos: &Tensor<B, 2>,
        sin: &Tensor<B, 2>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>) {
        let len = x.dims()[0];
        let (h, kvh, hd) = (self.heads, self.kv_heads, self.head_dim);
        let project = |x: Tensor<B, 2>, und: &Linear<B>, gen_: &Linear<B>| {
            routing.apply(x, |x| und.forward(x), |x| gen_.forward(x))
        };
        let q = project(x.clone(), &self.q_proj, &self.q_proj_moe_gen);
        let k = project(x.clone(), &self.k_proj, &self.k_proj_moe_gen);
        let v = project(x, &self.v_proj, &self.v_proj_moe_gen);
        // The per-head norms and RoPE in one pass on the CPU; elsewhere as HF writes them.
        let norm_rope = |x: Tensor<B, 3>, und: &RmsNorm<B>, gen_: &RmsNorm<B>| {
            crate::cpu::fused::norm_rope(x, &routing.experts(und, gen_), cos, sin, |x| {
                let x = routing.apply(x, |x| und.forward(x), |x| gen_.forward(x));
                apply_rope(x, cos, sin)
            })
        };
        (
            norm_rope(q.reshape([len, h, hd]), &self.q_norm, &self.q_norm_moe_gen),
            norm_rope(
                k.reshape([len, kvh, hd]),
                &self.k_norm,
                &self.k_norm_moe_gen,
            ),
            v.reshape([len, kvh, hd]),
        )
    }
}

/// Grouped-query attention of `q` `[lq, heads, hd]` over keys/values `[lk, kv_heads, hd]` with
/// an optional additive mask `[lq, lk]`, scale `1/sqrt(hd)`; query head `h` reads key/value head
/// `h / (heads / kv_heads)`. Returns `[lq, heads * hd]`.
///
/// On the CPU backends (Flex, ndarray) in f32 outside training this is echo4o's own kernel
/// (`cpu::attention`: vectorised, multi-threaded, keys and values never copied per query head,
/// no score matrix per head). Everywhere else it is [`attention_reference`], which accumulates
/// mask and softmax in f32 as the official kernels do.
pub fn attention<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    mask: Option<Tensor<B, 2>>,
) -> Tensor<B, 2> {
    // Under autodiff this takes the written-out path (training attends through
    // `AttentionMode::Segments`, whose kernel has its own backward). CUDA keeps it until a GPU
    // run has checked burn-cubecl's flash kernel against the goldens (BENCHMARKS.md, GPU).
    crate::cpu::fused::attention(q, k, v, mask, attention_reference)
}

/// [`attention`] written out: heads expanded, the score matrix materialised, mask and softmax in
/// f32 whatever the activation dtype. The reference the fused path is tested and benched against.
pub fn attention_reference<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    mask: Option<Tensor<B, 2>>,
) -> Tensor<B, 2> {
    let [lq, h, hd] = q.dims();
    let [lk, kv_heads, _] = k.dims();
    let group = h / kv_heads;
    let expand = |t: Tensor<B, 3>| {
        t.swap_dims(0, 1) // [kv, lk, hd]
            .unsqueeze_dim::<4>(1) // [kv, 1, lk, hd]
            .expand([kv_heads, group, lk, hd])
            .reshape([h, lk, hd])
    };
    let (k, v) = (expand(k), expand(v));
    let q = q.swap_dims(0, 1); // [h, lq, hd]
    let scores = q.matmul(k.swap_dims(1, 2)) * (1.0 / (hd as f64).sqrt());
    // Mask and softmax in f32 whatever the activation dtype, as the official kernels accumulate.
    let dtype = scores.dtype();
    let mut scores = scores.cast(DType::F32);
    if let Some(m) = mask {
        scores = scores + m.cast(DType::F32).unsqueeze_dim(0);
    }
    softmax(scores, 2)
        .cast(dtype)
        .matmul(v)
        .swap_dims(0, 1)
        .reshape([lq, h * hd])
}

/// Attention of packed segments written out: each segment's rows gathered, its prefixes as a
/// dense mask, [`attention_reference`], and the rows put back in packed order.
pub fn segment_attention_reference<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    segments: &PackedSegments,
) -> Tensor<B, 2> {
    let device = q.device();
    let index = |rows: &[usize]| {
        let ids: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        Tensor::<B, 1, burn::tensor::Int>::from_data(TensorData::new(ids, [rows.len()]), &device)
    };
    let in_order = segments.is_in_order();
    let mut start = 0;
    let parts = segments
        .segments()
        .map(|seg| {
            let n = seg.len();
            let first = start;
            let rows = |t: &Tensor<B, 3>| {
                if in_order {
                    t.clone().narrow(0, first, n)
                } else {
                    t.clone().select(0, index(seg.rows))
                }
            };
            let mask = Tensor::<B, 2>::from_data(
                TensorData::new(PackedSegments::mask(seg), [n, n]),
                (&device, DType::F32),
            );
            start += n;
            attention_reference(rows(&q), rows(&k), rows(&v), Some(mask))
        })
        .collect();
    let out = Tensor::cat(parts, 0);
    if in_order {
        return out;
    }
    // Row `r` of the packed sequence is row `inverse[r]` of the segments' concatenation.
    let mut inverse = vec![0; segments.len()];
    for (k, &r) in segments.segments().flat_map(|s| s.rows).enumerate() {
        inverse[r] = k;
    }
    out.select(0, index(&inverse))
}

/// One MoT decoder layer.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    /// Und pre-attention norm.
    pub input_layernorm: RmsNorm<B>,
    /// Gen pre-attention norm.
    pub input_layernorm_moe_gen: RmsNorm<B>,
    /// Und pre-MLP norm.
    pub post_attention_layernorm: RmsNorm<B>,
    /// Gen pre-MLP norm.
    pub post_attention_layernorm_moe_gen: RmsNorm<B>,
    /// The shared attention.
    pub self_attn: SelfAttn<B>,
    /// Und MLP.
    pub mlp: Mlp<B>,
    /// Gen MLP.
    pub mlp_moe_gen: Mlp<B>,
}

/// How a block of tokens attends.
#[derive(Debug, Clone)]
pub enum AttentionMode<B: Backend> {
    /// Every token sees the cache and the whole block (image blocks).
    Full,
    /// Every token sees the cache and the block up to itself (text prefill).
    Causal,
    /// An explicit additive mask `[block, cache + block]`.
    Mask(Tensor<B, 2>),
    /// Independent packed examples (training's batches), each row attending to a prefix of its
    /// own example; no cache. Attention runs per example, so a packed batch costs the sum of its
    /// examples' squares, not the square of its length.
    Segments(Arc<PackedSegments>),
}

impl<B: Backend> DecoderLayer<B> {
    fn init(c: &LlmConfig, device: &B::Device) -> Self {
        let norm = || {
            RmsNormConfig::new(c.hidden_size)
                .with_epsilon(c.rms_norm_eps)
                .init(device)
        };
        DecoderLayer {
            input_layernorm: norm(),
            input_layernorm_moe_gen: norm(),
            post_attention_layernorm: norm(),
            post_attention_layernorm_moe_gen: norm(),
            self_attn: SelfAttn::init(c, device),
            mlp: Mlp::init(c, device),
            mlp_moe_gen: Mlp::init(c, device),
        }
    }

    /// One layer over a block `x` `[len, hidden]` attending to `past` (if any) and itself.
    /// Returns the new residual stream and this block's keys/values.
    fn forward(
        &self,
        x: Tensor<B, 2>,
        routing: &Routing,
        rope: &(Tensor<B, 2>, Tensor<B, 2>),
        past: Option<&LayerKv<B>>,
        mode: &AttentionMode<B>,
    ) -> (Tensor<B, 2>, LayerKv<B>) {
        let residual = x.clone();
        let xn = routing.norm(x, &self.input_layernorm, &self.input_layernorm_moe_gen);
        let (q, k, v) = self.self_attn.qkv(xn, routing, &rope.0, &rope.1);
        let (k_all, v_all) = match past {
            Some(p) => (
                Tensor::cat(vec![p.k.clone(), k.clone()], 0),
                Tensor::cat(vec![p.v.clone(), v.clone()], 0),
            ),
            None => (k.clone(), v.clone()),
        };
        let (lq, lk) = (q.dims()[0], k_all.dims()[0]);
        let attn = match mode {
            AttentionMode::Full => attention(q, k_all, v_all, None),
            AttentionMode::Causal => {
                crate::cpu::fused::causal_attention(q, k_all, v_all, |q, k, v| {
                    let mask = causal_mask::<B>(lq, lk, &q.device());
                    attention_reference(q, k, v, Some(mask))
                })
            }
            AttentionMode::Mask(m) => attention(q, k_all, v_all, Some(m.clone())),
            AttentionMode::Segments(segments) => {
                crate::cpu::fused::segment_attention(q, k_all, v_all, segments, |q, k, v| {
                    segment_attention_reference(q, k, v, segments)
                })
            }
        };
        let o = routing.apply(
            attn,
            |a| self.self_attn.o_proj.forward(a),
            |a| self.self_attn.o_proj_moe_gen.forward(a),
        );
        let x = residual + o;
        let xn = routing.norm(
            x.clone(),
            &self.post_attention_layernorm,
            &self.post_attention_layernorm_moe_gen,
        );
        let y = routing.apply(xn, |x| self.mlp.forward(x), |x| self.mlp_moe_gen.forward(x));
        (x + y, LayerKv { k, v })
    }
}

/// Additive causal mask for `lq` new tokens after `lk - lq` cached ones (bottom-right aligned).
fn causal_mask<B: Backend>(lq: usize, lk: usize, device: &B::Device) -> Tensor<B, 2> {
    let offset = lk - lq;
    let data: Vec<f32> = (0..lq)
        .flat_map(|i| {
            (0..lk).map(move |j| {
                if j <= i + offset {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_data(TensorData::new(data, [lq, lk]), device)
}

/// The decoder stack with embeddings and final norms (`language_model.model`).
#[derive(Module, Debug)]
pub struct Qwen2Model<B: Backend> {
    /// Token embeddings (shared by both experts).
    pub embed_tokens: Embedding<B>,
    /// The layers.
    pub layers: Vec<DecoderLayer<B>>,
    /// Und final norm.
    pub norm: RmsNorm<B>,
    /// Gen final norm.
    pub norm_moe_gen: RmsNorm<B>,
}

/// `language_model`: the decoder and its LM head.
#[derive(Module, Debug)]
pub struct LanguageModel<B: Backend> {
    /// The decoder.
    pub model: Qwen2Model<B>,
    /// The LM head (untied).
    pub lm_head: Linear<B>,
}

/// What a forward pass over a block can record for inspection and parity tests.
#[derive(Debug, Clone, Default)]
pub struct Trace<B: Backend> {
    /// The residual stream after each layer.
    pub layer_outputs: Vec<Tensor<B, 2>>,
}

impl<B: Backend> LanguageModel<B> {
    /// A randomly initialised language model.
    pub fn init(c: &LlmConfig, device: &B::Device) -> Self {
        let norm = || {
            RmsNormConfig::new(c.hidden_size)
                .with_epsilon(c.rms_norm_eps)
                .init(device)
        };
        LanguageModel {
            model: Qwen2Model {
                embed_tokens: EmbeddingConfig::new(c.vocab_size, c.hidden_size).init(device),
                layers: (0..c.num_hidden_layers)
                    .map(|_| DecoderLayer::init(c, device))
                    .collect(),
                norm: norm(),
                norm_moe_gen: norm(),
            },
            lm_head: LinearConfig::new(c.hidden_size, c.vocab_size)
                .with_bias(false)
                .init(device),
        }
    }

    /// Embeddings of token ids, `[len, hidden]`.
    pub fn embed(&self, ids: &[u32], device: &B::Device) -> Tensor<B, 2> {
        let ids: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        let n = ids.len();
        let t = Tensor::<B, 1, burn::tensor::Int>::from_data(TensorData::new(ids, [n]), device);
        self.model
            .embed_tokens
            .forward(t.reshape([1, n]))
            .reshape([n, self.hidden_size()])
    }

    /// The hidden size.
    pub fn hidden_size(&self) -> usize {
        self.model.norm.gamma.dims()[0]
    }

    /// Runs the layers over `x` (`[len, hidden]`, already embedded) at RoPE `positions`,
    /// attending to `cache`; with `update`, the block's keys/values are appended to the cache.
    /// Returns the final hidden states after the expert-specific final norm.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_block(
        &self,
        x: Tensor<B, 2>,
        routing: &Routing,
        positions: &[usize],
        rope_theta: f64,
        cache: &mut KvCache<B>,
        mode: &AttentionMode<B>,
        update: bool,
        mut trace: Option<&mut Trace<B>>,
    ) -> Tensor<B, 2> {
        let device = x.device();
        let head_dim = self
            .model
            .layers
            .first()
            .map_or(2, |l| l.self_attn.head_dim);
        let rope = rope_tables::<B>(positions, head_dim, rope_theta, &device);
        let len = x.dims()[0];
        let mut h = x;
        let mut new_kv = Vec::with_capacity(self.model.layers.len());
        for (l, layer) in self.model.layers.iter().enumerate() {
            let (out, kv) = layer.forward(h, routing, &rope, cache.layer(l), mode);
            h = out;
            if let Some(t) = trace.as_deref_mut() {
                t.layer_outputs.push(h.clone());
            }
            if update {
                new_kv.push(kv);
            }
        }
        if update {
            cache.append(new_kv, len);
        }
        routing.norm(h, &self.model.norm, &self.model.norm_moe_gen)
    }
}

#[cfg(all(test, feature = "flex"))]
#[allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use burn_flex::Flex;

    /// Packed-segment attention on `Autodiff<Flex>` (the kernel as one autodiff operation with
    /// its own backward) against burn's graph of the written-out path: outputs and the
    /// gradients of q, k and v, with the rows in packing order and scattered.
    #[test]
    fn segment_attention_and_its_gradients_match_burns_graph() {
        use crate::packing::Split::{Causal, Full};
        use burn::backend::Autodiff;
        type Ad = Autodiff<Flex>;
        let dev = Default::default();
        let packed = PackedSegments::new(&[
            vec![Full(4), Causal(6), Full(18)],
            vec![Causal(9), Full(18)],
            vec![Full(5)],
        ]);
        let n = packed.len();
        let scattered = packed.moved(&(0..n).map(|r| (r * 11) % n).collect::<Vec<_>>());
        for segments in [packed, scattered] {
            let segments = Arc::new(segments);
            let r = |shape: [usize; 3]| {
                Tensor::<Flex, 3>::random(shape, Distribution::Normal(0.0, 1.0), &dev)
            };
            let (q, k, v) = (r([n, 4, 16]), r([n, 2, 16]), r([n, 2, 16]));
            let w = Tensor::<Ad, 2>::from_inner(Tensor::<Flex, 2>::random(
                [n, 64],
                Distribution::Normal(0.0, 1.0),
                &dev,
            ));
            let run = |fused: bool| {
                let leaf =
                    |t: &Tensor<Flex, 3>| Tensor::<Ad, 3>::from_inner(t.clone()).require_grad();
                let (q, k, v) = (leaf(&q), leaf(&k), leaf(&v));
                let out = if fused {
                    crate::cpu::fused::segment_attention(
                        q.clone(),
                        k.clone(),
                        v.clone(),
                        &segments,
                        |_, _, _| panic!("Autodiff<Flex> f32 takes the kernel"),
                    )
                } else {
                    segment_attention_reference(q.clone(), k.clone(), v.clone(), &segments)
                };
                let grads = (out.clone() * w.clone()).sum().backward();
                let g = |t: &Tensor<Ad, 3>| t.grad(&grads).expect("a gradient");
                (out.inner(), g(&q), g(&k), g(&v))
            };
            let (a, b) = (run(true), run(false));
            let diff2 = |x: Tensor<Flex, 2>, y: Tensor<Flex, 2>| (x - y).abs().max().into_scalar();
            let diff3 = |x: Tensor<Flex, 3>, y: Tensor<Flex, 3>| (x - y).abs().max().into_scalar();
            assert!(diff2(a.0, b.0) < 1e-5, "outputs");
            for (name, x, y) in [("q", a.1, b.1), ("k", a.2, b.2), ("v", a.3, b.3)] {
                let d = diff3(x, y);
                assert!(d < 1e-4, "gradient of {name}: max diff {d}");
            }
        }
    }

    /// The CPU kernel through the tensor API against the written-out path: grouped heads, with
    /// and without a mask, short and long blocks.
    #[test]
    fn fused_attention_matches_the_reference() {
        let dev = Default::default();
        for (lq, lk, h, kvh, masked) in [
            (5, 9, 4, 2, true),
            (7, 7, 2, 2, false),
            (300, 900, 8, 2, true),
            (64, 1030, 4, 1, false),
        ] {
            let r = |shape: [usize; 3]| {
                Tensor::<Flex, 3>::random(shape, Distribution::Normal(0.0, 1.0), &dev)
            };
            let (q, k, v) = (r([lq, h, 16]), r([lk, kvh, 16]), r([lk, kvh, 16]));
            let mask = masked.then(|| {
                let off = lk - lq;
                let data: Vec<f32> = (0..lq)
                    .flat_map(|i| {
                        (0..lk).map(move |j| if j <= i + off { 0.0 } else { f32::NEG_INFINITY })
                    })
                    .collect();
                Tensor::<Flex, 2>::from_data(TensorData::new(data, [lq, lk]), &dev)
            });
            let fused = attention(q.clone(), k.clone(), v.clone(), mask.clone());
            let reference = attention_reference(q.clone(), k.clone(), v.clone(), mask.clone());
            if masked {
                // The mask is causal: the kernel's causal structure gives the same rows.
                let causal = crate::cpu::fused::causal_attention(q, k, v, |_, _, _| {
                    panic!("Flex f32 takes the kernel")
                });
                let diff = (causal - reference.clone()).abs().max().into_scalar();
                assert!(diff < 1e-5, "{lq}x{lk} h{h}/{kvh} causal: max diff {diff}");
            }
            let diff = (fused - reference).abs().max().into_scalar();
            assert!(
                diff < 1e-5,
                "{lq}x{lk} h{h}/{kvh} mask {masked}: max diff {diff}"
            );
        }
    }
}
