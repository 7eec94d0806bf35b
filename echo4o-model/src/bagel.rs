//! The BAGEL wrapper: the MoT language model plus the pieces that put images into it (timestep
//! embedder, latent position table, `vae2llm` / `llm2vae`) and the context it generates in.
//!
//! Upstream: `ByteDance-Seed/Bagel@056b5fd` `modeling/bagel/bagel.py` (`Bagel`, `_forward_flow`,
//! `prepare_prompts`, `prepare_vae_latent`), `modeling/bagel/modeling_utils.py`
//! (`TimestepEmbedder`, `PositionEmbedding`).

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};

use crate::config::BagelConfig;
use crate::qwen2_mot::{AttentionMode, Expert, KvCache, LanguageModel, Routing, Trace};
use crate::siglip::{Connector, SiglipVisionModel};

/// DiT's timestep embedder: `[cos(t f), sin(t f)]` (cos first, 256-d, t in [0, 1] not scaled)
/// through `Linear -> SiLU -> Linear`. Stored upstream as `mlp.0` and `mlp.2`.
#[derive(Module, Debug)]
pub struct TimestepEmbedder<B: Backend> {
    /// `[mlp.0, mlp.2]` (the SiLU between them has no weights).
    pub mlp: Vec<Linear<B>>,
}

/// Width of the sinusoidal timestep features.
pub const TIMESTEP_FEATURES: usize = 256;

impl<B: Backend> TimestepEmbedder<B> {
    fn init(hidden: usize, device: &B::Device) -> Self {
        TimestepEmbedder {
            mlp: vec![
                LinearConfig::new(TIMESTEP_FEATURES, hidden).init(device),
                LinearConfig::new(hidden, hidden).init(device),
            ],
        }
    }

    /// Embeds flow times `t` (one per row): `[len, hidden]`.
    pub fn forward(&self, t: &[f32], device: &B::Device) -> Tensor<B, 2> {
        let half = TIMESTEP_FEATURES / 2;
        let log_max = -(10000f64.ln() as f32);
        let freqs: Vec<f32> = (0..half)
            .map(|k| (log_max * k as f32 / half as f32).exp())
            .collect();
        let mut data = Vec::with_capacity(t.len() * TIMESTEP_FEATURES);
        for &ti in t {
            data.extend(freqs.iter().map(|f| (ti * f).cos()));
            data.extend(freqs.iter().map(|f| (ti * f).sin()));
        }
        let feats = Tensor::<B, 2>::from_data(
            TensorData::new(data, [t.len(), TIMESTEP_FEATURES]),
            (device, DType::F32),
        )
        .cast(self.mlp[0].weight.val().dtype());
        self.mlp[1].forward(silu(self.mlp[0].forward(feats)))
    }
}

/// A frozen 2-D sin-cos position table `[side^2, hidden]`, row `r * side + c`.
#[derive(Module, Debug)]
pub struct PositionEmbedding<B: Backend> {
    /// The table.
    pub pos_embed: Param<Tensor<B, 2>>,
}

/// The official DiT 2-D sin-cos table, computed in f64 and cast to f32 (as numpy then torch do):
/// the first half of each row encodes the column, the second half the row.
pub fn sincos_2d_table(side: usize, dim: usize) -> Vec<f32> {
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter)
        .map(|k| 1.0 / 10000f64.powf(k as f64 / quarter as f64))
        .collect();
    let mut out = Vec::with_capacity(side * side * dim);
    for r in 0..side {
        for c in 0..side {
            for p in [c as f64, r as f64] {
                out.extend(omega.iter().map(|w| (p * w).sin() as f32));
                out.extend(omega.iter().map(|w| (p * w).cos() as f32));
            }
        }
    }
    out
}

impl<B: Backend> PositionEmbedding<B> {
    fn init(side: usize, dim: usize, device: &B::Device) -> Self {
        let table = TensorData::new(sincos_2d_table(side, dim), [side * side, dim]);
        PositionEmbedding {
            pos_embed: Param::from_tensor(Tensor::from_data(table, device)).set_require_grad(false),
        }
    }

    /// Rows `ids` of the table.
    pub fn rows(&self, ids: &[usize], device: &B::Device) -> Tensor<B, 2> {
        let n = ids.len();
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [n]), device);
        self.pos_embed.val().select(0, idx)
    }
}

/// Row-major position ids of an `h x w` grid in a table of side `side`: `r * side + c`.
pub fn grid_position_ids(h: usize, w: usize, side: usize) -> Vec<usize> {
    (0..h)
        .flat_map(|r| (0..w).map(move |c| r * side + c))
        .collect()
}

/// A generation context: the KV cache of everything added so far and the next RoPE position.
#[derive(Debug, Clone)]
pub struct Context<B: Backend> {
    /// Keys and values of the context's tokens.
    pub cache: KvCache<B>,
    /// The RoPE position the next item starts at.
    pub rope: usize,
}

impl<B: Backend> Default for Context<B> {
    fn default() -> Self {
        Context {
            cache: KvCache::new(),
            rope: 0,
        }
    }
}

/// BAGEL: the language model and its image interfaces.
#[derive(Module, Debug)]
pub struct Bagel<B: Backend> {
    /// The MoT language model.
    pub language_model: LanguageModel<B>,
    /// Flow-time embedding.
    pub time_embedder: TimestepEmbedder<B>,
    /// Latent token (64) -> hidden.
    pub vae2llm: Linear<B>,
    /// Hidden -> velocity (64).
    pub llm2vae: Linear<B>,
    /// Latent 2-D position table.
    pub latent_pos_embed: PositionEmbedding<B>,
    /// The ViT (multi-reference, editing).
    pub vit_model: Option<SiglipVisionModel<B>>,
    /// ViT -> hidden MLP.
    pub connector: Option<Connector<B>>,
    /// ViT 2-D position table.
    pub vit_pos_embed: Option<PositionEmbedding<B>>,
    rope_theta: f64,
    max_latent_size: usize,
    vit_side: usize,
    latent_patch: usize,
}

/// What one image-block forward can record (parity tests, inspection).
#[derive(Debug, Clone, Default)]
pub struct FlowTrace<B: Backend> {
    /// Input of layer 0, `[N + 2, hidden]`.
    pub input_seq: Option<Tensor<B, 2>>,
    /// Per-layer outputs.
    pub layers: Trace<B>,
    /// After the final norms, `[N + 2, hidden]`.
    pub final_hidden: Option<Tensor<B, 2>>,
}

impl<B: Backend> Bagel<B> {
    /// A randomly initialised model of `config` (the position tables hold their sin-cos values).
    pub fn init(config: &BagelConfig, device: &B::Device) -> Self {
        let h = config.llm.hidden_size;
        let p = config.patch_latent_dim();
        let (vit_model, connector, vit_pos_embed) = match &config.vit {
            Some(v) => (
                Some(SiglipVisionModel::init(
                    v,
                    config.vit_max_num_patch_per_side,
                    device,
                )),
                Some(Connector::init(v.hidden_size, h, device)),
                Some(PositionEmbedding::init(
                    config.vit_max_num_patch_per_side,
                    h,
                    device,
                )),
            ),
            None => (None, None, None),
        };
        Bagel {
            language_model: LanguageModel::init(&config.llm, device),
            time_embedder: TimestepEmbedder::init(h, device),
            vae2llm: LinearConfig::new(p, h).init(device),
            llm2vae: LinearConfig::new(h, p).init(device),
            latent_pos_embed: PositionEmbedding::init(config.max_latent_size, h, device),
            vit_model,
            connector,
            vit_pos_embed,
            rope_theta: config.llm.rope_theta,
            max_latent_size: config.max_latent_size,
            vit_side: config.vit_max_num_patch_per_side,
            latent_patch: config.latent_patch_size,
        }
    }

    /// Side of the latent position table.
    pub fn max_latent_size(&self) -> usize {
        self.max_latent_size
    }

    /// Side of the ViT position table.
    pub fn vit_side(&self) -> usize {
        self.vit_side
    }

    /// The RoPE base.
    pub fn rope_theta(&self) -> f64 {
        self.rope_theta
    }

    /// Appends a text segment (ids already wrapped in `[bos] .. [eos]`) to `ctx`: causal, und
    /// expert, consecutive RoPE positions (`forward_cache_update_text`).
    pub fn add_text(&self, ctx: &mut Context<B>, ids: &[u32], device: &B::Device) {
        let x = self.language_model.embed(ids, device);
        let positions: Vec<usize> = (ctx.rope..ctx.rope + ids.len()).collect();
        self.language_model.forward_block(
            x,
            &Routing::all(ids.len(), Expert::Und),
            &positions,
            self.rope_theta,
            &mut ctx.cache,
            &AttentionMode::Causal,
            true,
            None,
        );
        ctx.rope += ids.len();
    }

    /// Runs an image block `[start, tokens, end]` over `ctx` with one RoPE position for the
    /// whole block and full attention; `update` appends it to the cache (clean reference images),
    /// otherwise the cache is left as it was (denoising). Returns the final hidden states.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn image_block(
        &self,
        ctx: &mut Context<B>,
        tokens: Tensor<B, 2>,
        expert: Expert,
        markers: [u32; 2],
        update: bool,
        trace: Option<&mut FlowTrace<B>>,
    ) -> Tensor<B, 2> {
        let device = tokens.device();
        let n = tokens.dims()[0];
        let marks = self.language_model.embed(&markers, &device);
        let seq = Tensor::cat(
            vec![marks.clone().narrow(0, 0, 1), tokens, marks.narrow(0, 1, 1)],
            0,
        );
        let positions = vec![ctx.rope; n + 2];
        let mut layers = Trace::default();
        let keep = trace.is_some();
        let hidden = self.language_model.forward_block(
            seq.clone(),
            &Routing::image_block(n, expert),
            &positions,
            self.rope_theta,
            &mut ctx.cache,
            &AttentionMode::Full,
            update,
            keep.then_some(&mut layers),
        );
        if let Some(t) = trace {
            *t = FlowTrace {
                input_seq: Some(seq),
                layers,
                final_hidden: Some(hidden.clone()),
            };
        }
        hidden
    }

    /// Latent tokens as LLM inputs: `vae2llm(x) + temb(t) + latent_pos_embed[pos_ids]`.
    pub fn latent_inputs(&self, x: Tensor<B, 2>, t: f32, pos_ids: &[usize]) -> Tensor<B, 2> {
        let device = x.device();
        let x = x.cast(self.dtype());
        let n = x.dims()[0];
        let temb = self.time_embedder.forward(&[t], &device);
        self.vae2llm.forward(x)
            + temb.expand([n, self.language_model.hidden_size()])
            + self.latent_pos_embed.rows(pos_ids, &device)
    }

    /// One flow forward (`_forward_flow` without CFG): the velocity `[N, 64]` of latent tokens
    /// `x` `[N, 64]` at time `t`, attending to `ctx` (left unchanged).
    ///
    /// `x` may be in another dtype than the model (the sampler keeps its state in f32 while a
    /// bf16 model computes, as the official code does under autocast); the velocity comes back in
    /// `x`'s dtype.
    ///
    /// # Shapes
    /// - `x`: `[N, patch_latent_dim]`, rows in grid order; `pos_ids`: N entries.
    #[allow(clippy::too_many_arguments)]
    pub fn velocity(
        &self,
        ctx: &mut Context<B>,
        x: Tensor<B, 2>,
        t: f32,
        pos_ids: &[usize],
        markers: [u32; 2],
        trace: Option<&mut FlowTrace<B>>,
    ) -> Tensor<B, 2> {
        let (n, dtype) = (x.dims()[0], x.dtype());
        let tokens = self.latent_inputs(x, t, pos_ids);
        let hidden = self.image_block(ctx, tokens, Expert::Gen, markers, false, trace);
        self.llm2vae.forward(hidden.narrow(0, 1, n)).cast(dtype)
    }

    /// The dtype the transformer computes in: its weights' (see [`crate::ops::cast_params`]).
    pub fn dtype(&self) -> burn::tensor::DType {
        self.vae2llm.weight.val().dtype()
    }
}

/// Latents `[C, p*h, p*w]` -> tokens `[h*w, p*p*C]`, index `(pi * p + pj) * C + c` within a
/// token (channel fastest), tokens row-major: the official `einsum("chpwq->hwpqc")`.
pub fn patchify<B: Backend>(latent: Tensor<B, 3>, p: usize) -> Tensor<B, 2> {
    let [c, hh, ww] = latent.dims();
    let (h, w) = (hh / p, ww / p);
    latent
        .narrow(1, 0, h * p)
        .narrow(2, 0, w * p)
        .reshape([c, h, p, w, p])
        .permute([1, 3, 2, 4, 0])
        .reshape([h * w, p * p * c])
}

/// The inverse of [`patchify`]: tokens `[h*w, p*p*C]` -> latents `[C, p*h, p*w]`.
pub fn unpatchify<B: Backend>(tokens: Tensor<B, 2>, h: usize, w: usize, p: usize) -> Tensor<B, 3> {
    let c = tokens.dims()[1] / (p * p);
    tokens
        .reshape([h, w, p, p, c])
        .permute([4, 0, 2, 1, 3])
        .reshape([c, h * p, w * p])
}

/// The three contexts classifier-free guidance needs.
#[derive(Debug, Clone, Default)]
pub struct Contexts<B: Backend> {
    /// Everything: references and text.
    pub cond: Context<B>,
    /// Without the last text (for T2I: empty).
    pub cfg_text: Context<B>,
    /// Without the reference images (for T2I: the same as `cond`).
    pub cfg_img: Context<B>,
}

impl<B: Backend> Bagel<B> {
    /// Appends a clean reference image as VAE latents (`forward_cache_update_vae`): the latent
    /// tokens get `t = 0`, the gen expert, one RoPE position; the rope then advances by 1.
    ///
    /// # Shapes
    /// - `latent`: `[C, H/d, W/d]`, already encoded by the [`crate::autoencoder::LatentCodec`].
    pub fn add_vae_latent(
        &self,
        ctx: &mut Context<B>,
        latent: Tensor<B, 3>,
        markers: [u32; 2],
        trace: Option<&mut FlowTrace<B>>,
    ) {
        let p = self.patch_size();
        let [_, hh, ww] = latent.dims();
        let tokens = patchify(latent, p);
        let pos = grid_position_ids(hh / p, ww / p, self.max_latent_size);
        let inputs = self.latent_inputs(tokens, 0.0, &pos);
        self.image_block(ctx, inputs, Expert::Gen, markers, true, trace);
        ctx.rope += 1;
    }

    /// Appends a reference image through the ViT (`forward_cache_update_vit`): und expert, one
    /// RoPE position; the rope then advances by 1. Returns the connector output.
    ///
    /// # Shapes
    /// - `pixels`: `[3, H, W]` in [-1, 1], sides multiples of the ViT patch.
    pub fn add_vit_image(
        &self,
        ctx: &mut Context<B>,
        pixels: Tensor<B, 3>,
        markers: [u32; 2],
        trace: Option<&mut FlowTrace<B>>,
    ) -> Option<Tensor<B, 2>> {
        let (vit, connector, table) = (
            self.vit_model.as_ref()?,
            self.connector.as_ref()?,
            self.vit_pos_embed.as_ref()?,
        );
        let patch = vit.patch_size();
        let [_, hh, ww] = pixels.dims();
        let (h, w) = (hh / patch, ww / patch);
        let tokens = patchify(pixels, patch);
        let pos = grid_position_ids(h, w, self.vit_side);
        let out = connector.forward(vit.forward(tokens, &pos, None));
        let inputs = out.clone() + table.rows(&pos, &out.device());
        self.image_block(ctx, inputs, Expert::Und, markers, true, trace);
        ctx.rope += 1;
        Some(out)
    }

    /// The latent patch side.
    pub fn patch_size(&self) -> usize {
        self.latent_patch
    }
}

/// A [`crate::sampling::VelocityModel`] over a [`Bagel`] and its three contexts.
pub struct BagelVelocity<'a, B: Backend> {
    /// The model.
    pub model: &'a Bagel<B>,
    /// The contexts.
    pub contexts: &'a mut Contexts<B>,
    /// Position ids of the target grid.
    pub pos_ids: Vec<usize>,
    /// `[start_of_image, end_of_image]`.
    pub markers: [u32; 2],
}

impl<B: Backend> crate::sampling::VelocityModel<B> for BagelVelocity<'_, B> {
    fn velocity(
        &mut self,
        x: Tensor<B, 2>,
        t: f32,
        which: crate::sampling::Guidance,
    ) -> Tensor<B, 2> {
        use crate::sampling::Guidance;
        let ctx = match which {
            Guidance::Cond => &mut self.contexts.cond,
            Guidance::CfgText => &mut self.contexts.cfg_text,
            Guidance::CfgImg => &mut self.contexts.cfg_img,
        };
        self.model
            .velocity(ctx, x, t, &self.pos_ids, self.markers, None)
    }
}
