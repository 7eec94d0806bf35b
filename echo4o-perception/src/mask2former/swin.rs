//! mmdet 2.x's `SwinTransformer` (`mmdet/models/backbones/swin.py`) as the Mask2Former configs
//! build it, with mmdet's parameter names.
//!
//! Upstream details kept: `PatchEmbed` pads the image up to a multiple of the patch ("corner"
//! padding, zeros right and bottom), convolves (with bias) and LayerNorms; every block is pre-norm,
//! `x + W-MSA(LN(x))` then `x + FFN(LN(x))` with exact GELU; odd blocks shift the window by half
//! (`torch.roll` by `-w/2`, the region mask of -100 between regions); feature maps that are not a
//! multiple of the window are zero-padded right and bottom before windowing and cropped after;
//! `PatchMerging` pads to even sides, gathers each 2x2 neighbourhood in `nn.Unfold`'s order
//! (channel-major, then row, then column), LayerNorms and reduces without bias; each stage's
//! output (before merging) passes its own LayerNorm (`norm0`..`norm3`). LayerNorm eps is 1e-5.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::ops::PadMode;
use burn::tensor::{Int, Tensor, TensorData};

use super::config::SwinConfig;

/// `PatchEmbed`: a 4x4 stride-4 convolution, then LayerNorm.
#[derive(Module, Debug)]
pub struct PatchEmbed<B: Backend> {
    /// The convolution.
    pub projection: Conv2d<B>,
    /// The LayerNorm over channels.
    pub norm: LayerNorm<B>,
    patch: usize,
}

impl<B: Backend> PatchEmbed<B> {
    /// `[b, 3, h, w]` -> `[b, h/4 * w/4, c]` and `(h/4, w/4)` (sides rounded up).
    pub fn forward(&self, x: Tensor<B, 4>) -> (Tensor<B, 3>, [usize; 2]) {
        let x = pad_to_multiple(x, self.patch);
        let x = self.projection.forward(x);
        let [b, c, h, w] = x.dims();
        let x = x.reshape([b, c, h * w]).swap_dims(1, 2);
        (self.norm.forward(x), [h, w])
    }
}

/// Zero padding right and bottom of `[b, c, h, w]` up to multiples of `m`.
fn pad_to_multiple<B: Backend>(x: Tensor<B, 4>, m: usize) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    let (ph, pw) = ((m - h % m) % m, (m - w % m) % m);
    if ph == 0 && pw == 0 {
        return x;
    }
    x.pad([(0, ph), (0, pw)], PadMode::Constant(0.0))
}

/// `WindowMSA`: multi-head self-attention inside one window, with the learned relative
/// position bias.
#[derive(Module, Debug)]
pub struct WindowMsa<B: Backend> {
    /// `[(2w-1)^2, heads]`.
    pub relative_position_bias_table: Param<Tensor<B, 2>>,
    /// Packed q, k, v projection (with bias).
    pub qkv: Linear<B>,
    /// Output projection.
    pub proj: Linear<B>,
    heads: usize,
    window: usize,
}

impl<B: Backend> WindowMsa<B> {
    /// The bias table gathered to `[heads, w*w, w*w]` by the relative position of each pair of
    /// window cells (mmdet's `relative_position_index`, derived here rather than read: it is a
    /// constant buffer of the window size).
    fn position_bias(&self) -> Tensor<B, 3> {
        let w = self.window;
        let n = w * w;
        let mut index = Vec::with_capacity(n * n);
        for a in 0..n {
            let (ia, ja) = (a / w, a % w);
            for b in 0..n {
                let (ib, jb) = (b / w, b % w);
                index.push(((ia + w - 1 - ib) * (2 * w - 1) + (ja + w - 1 - jb)) as i64);
            }
        }
        let table = self.relative_position_bias_table.val();
        let device = table.device();
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [n * n]), &device);
        table
            .select(0, index)
            .reshape([n, n, self.heads])
            .permute([2, 0, 1])
    }

    /// `x`: `[windows, n, c]`; `mask`: `[windows per image, n, n]` of 0 / -100.
    fn forward(&self, x: Tensor<B, 3>, mask: Option<Tensor<B, 3>>) -> Tensor<B, 3> {
        let [nw, n, c] = x.dims();
        let (h, d) = (self.heads, c / self.heads);
        let qkv = self
            .qkv
            .forward(x)
            .reshape([nw, n, 3, h, d])
            .permute([2, 0, 3, 1, 4]);
        let part = |i: usize| qkv.clone().narrow(0, i, 1).reshape([nw, h, n, d]);
        let q = part(0) * (d as f64).powf(-0.5);
        let (k, v) = (part(1), part(2));
        let mut attn = q.matmul(k.swap_dims(2, 3)) + self.position_bias().unsqueeze::<4>();
        if let Some(mask) = mask {
            let per_image = mask.dims()[0];
            attn = (attn.reshape([nw / per_image, per_image, h, n, n])
                + mask.unsqueeze_dim::<4>(1).unsqueeze::<5>())
            .reshape([nw, h, n, n]);
        }
        let out = softmax(attn, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([nw, n, c]);
        self.proj.forward(out)
    }
}

/// `ShiftWindowMSA`: pads to whole windows, shifts (odd blocks), attends per window, undoes both.
#[derive(Module, Debug)]
pub struct ShiftWindowMsa<B: Backend> {
    /// The attention inside a window.
    pub w_msa: WindowMsa<B>,
    shift: usize,
}

impl<B: Backend> ShiftWindowMsa<B> {
    /// `mask` caches the shifted-window mask of this map size: every shifted block of a stage
    /// uses the same one, so it is built once per stage.
    fn forward(
        &self,
        x: Tensor<B, 3>,
        [h, w]: [usize; 2],
        mask: &mut Option<Tensor<B, 3>>,
    ) -> Tensor<B, 3> {
        let [b, _, c] = x.dims();
        let ws = self.w_msa.window;
        let x = x.reshape([b, h, w, c]);
        let (pad_r, pad_b) = ((ws - w % ws) % ws, (ws - h % ws) % ws);
        let x = if pad_r > 0 || pad_b > 0 {
            x.pad([(0, pad_b), (0, pad_r), (0, 0)], PadMode::Constant(0.0))
        } else {
            x
        };
        let (hp, wp) = (h + pad_b, w + pad_r);
        let s = self.shift as i64;
        let (x, window_mask) = if s > 0 {
            let device = x.device();
            (
                // burn's `roll(k)` moves element `i + k` to `i`: torch's `roll(-k)`.
                x.roll(&[s, s], &[1, 2]),
                Some(
                    mask.get_or_insert_with(|| shift_mask::<B>(hp, wp, ws, self.shift, &device))
                        .clone(),
                ),
            )
        } else {
            (x, None)
        };
        let windows = x
            .reshape([b, hp / ws, ws, wp / ws, ws, c])
            .permute([0, 1, 3, 2, 4, 5])
            .reshape([b * (hp / ws) * (wp / ws), ws * ws, c]);
        let out = self.w_msa.forward(windows, window_mask);
        let x = out
            .reshape([b, hp / ws, wp / ws, ws, ws, c])
            .permute([0, 1, 3, 2, 4, 5])
            .reshape([b, hp, wp, c]);
        let x = if s > 0 { x.roll(&[-s, -s], &[1, 2]) } else { x };
        let x = if pad_r > 0 || pad_b > 0 {
            x.narrow(1, 0, h).narrow(2, 0, w)
        } else {
            x
        };
        x.reshape([b, h * w, c])
    }
}

/// The shifted-window mask, `[windows, n, n]`: -100 between cells that came from different
/// regions of the rolled map, 0 within a region (mmdet's `img_mask` construction).
fn shift_mask<B: Backend>(
    hp: usize,
    wp: usize,
    ws: usize,
    shift: usize,
    device: &B::Device,
) -> Tensor<B, 3> {
    let region = |i: usize, side: usize| -> usize {
        if i < side - ws {
            0
        } else if i < side - shift {
            1
        } else {
            2
        }
    };
    let (nh, nw, n) = (hp / ws, wp / ws, ws * ws);
    let mut data = Vec::with_capacity(nh * nw * n * n);
    for wy in 0..nh {
        for wx in 0..nw {
            let cell = |k: usize| {
                let (y, x) = (wy * ws + k / ws, wx * ws + k % ws);
                region(y, hp) * 3 + region(x, wp)
            };
            for a in 0..n {
                for b in 0..n {
                    data.push(if cell(a) == cell(b) { 0.0f32 } else { -100.0 });
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [nh * nw, n, n]), device)
}

/// mmcv's `FFN` with two layers: `x + fc2(act(fc1(x)))` (checkpoint names `layers.0.0`,
/// `layers.1`, renamed on load).
#[derive(Module, Debug)]
pub struct Ffn<B: Backend> {
    /// Width -> hidden.
    pub fc1: Linear<B>,
    /// Hidden -> width.
    pub fc2: Linear<B>,
    relu: bool,
}

impl<B: Backend> Ffn<B> {
    /// With ReLU (`relu`) or exact GELU between the layers.
    pub fn init(width: usize, hidden: usize, relu: bool, device: &B::Device) -> Self {
        Ffn {
            fc1: LinearConfig::new(width, hidden).init(device),
            fc2: LinearConfig::new(hidden, width).init(device),
            relu,
        }
    }

    /// The residual FFN, `x + fc2(act(fc1(x)))`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward_with_identity(x.clone(), x)
    }
}

/// `SwinBlock`.
#[derive(Module, Debug)]
pub struct SwinBlock<B: Backend> {
    /// Before attention.
    pub norm1: LayerNorm<B>,
    /// (Shifted) window attention.
    pub attn: ShiftWindowMsa<B>,
    /// Before the FFN.
    pub norm2: LayerNorm<B>,
    /// The FFN.
    pub ffn: Ffn<B>,
}

impl<B: Backend> SwinBlock<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        hw: [usize; 2],
        shift_mask: &mut Option<Tensor<B, 3>>,
    ) -> Tensor<B, 3> {
        let x = x.clone() + self.attn.forward(self.norm1.forward(x), hw, shift_mask);
        self.ffn
            .forward_with_identity(self.norm2.forward(x.clone()), x)
    }
}

impl<B: Backend> Ffn<B> {
    /// `identity + fc2(act(fc1(x)))`: the FFN's residual taken from elsewhere (Swin adds the
    /// pre-norm input).
    pub fn forward_with_identity(&self, x: Tensor<B, 3>, identity: Tensor<B, 3>) -> Tensor<B, 3> {
        let hidden = self.fc1.forward(x);
        let hidden = if self.relu {
            burn::tensor::activation::relu(hidden)
        } else {
            gelu(hidden)
        };
        identity + self.fc2.forward(hidden)
    }
}

/// `PatchMerging`: 2x2 neighbourhoods to one token of twice the width.
#[derive(Module, Debug)]
pub struct PatchMerging<B: Backend> {
    /// Over the gathered `4c`.
    pub norm: LayerNorm<B>,
    /// `4c -> 2c`, no bias.
    pub reduction: Linear<B>,
}

impl<B: Backend> PatchMerging<B> {
    fn forward(&self, x: Tensor<B, 3>, [h, w]: [usize; 2]) -> (Tensor<B, 3>, [usize; 2]) {
        let [b, _, c] = x.dims();
        let x = pad_to_multiple(x.swap_dims(1, 2).reshape([b, c, h, w]), 2);
        let [_, _, h, w] = x.dims();
        let (oh, ow) = (h / 2, w / 2);
        // nn.Unfold's column: channel-major, then kernel row, then kernel column.
        let x = x
            .reshape([b, c, oh, 2, ow, 2])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([b, oh * ow, 4 * c]);
        (self.reduction.forward(self.norm.forward(x)), [oh, ow])
    }
}

/// `SwinBlockSequence`: one stage's blocks, then (all but the last stage) a merge.
#[derive(Module, Debug)]
pub struct SwinStage<B: Backend> {
    /// The blocks, unshifted and shifted in turn.
    pub blocks: Vec<SwinBlock<B>>,
    /// The merge into the next stage.
    pub downsample: Option<PatchMerging<B>>,
}

/// The backbone.
#[derive(Module, Debug)]
pub struct SwinTransformer<B: Backend> {
    /// The patch embedding.
    pub patch_embed: PatchEmbed<B>,
    /// The four stages.
    pub stages: Vec<SwinStage<B>>,
    /// Output norm of stage 0.
    pub norm0: LayerNorm<B>,
    /// Output norm of stage 1.
    pub norm1: LayerNorm<B>,
    /// Output norm of stage 2.
    pub norm2: LayerNorm<B>,
    /// Output norm of stage 3.
    pub norm3: LayerNorm<B>,
}

impl<B: Backend> SwinTransformer<B> {
    /// Zero-initialised in `config`'s shape (weights come from a checkpoint).
    pub fn init(config: &SwinConfig, device: &B::Device) -> Self {
        let ln = |c: usize| LayerNormConfig::new(c).init(device);
        let e = config.embed_dims;
        let ws = config.window_size;
        let stages = (0..4)
            .map(|i| {
                let c = e << i;
                let heads = config.num_heads[i];
                let blocks = (0..config.depths[i])
                    .map(|j| SwinBlock {
                        norm1: ln(c),
                        attn: ShiftWindowMsa {
                            w_msa: WindowMsa {
                                relative_position_bias_table: Param::from_tensor(Tensor::zeros(
                                    [(2 * ws - 1) * (2 * ws - 1), heads],
                                    device,
                                )),
                                qkv: LinearConfig::new(c, 3 * c).init(device),
                                proj: LinearConfig::new(c, c).init(device),
                                heads,
                                window: ws,
                            },
                            shift: if j % 2 == 1 { ws / 2 } else { 0 },
                        },
                        norm2: ln(c),
                        ffn: Ffn::init(c, config.mlp_ratio * c, false, device),
                    })
                    .collect();
                let downsample = (i < 3).then(|| PatchMerging {
                    norm: ln(4 * c),
                    reduction: LinearConfig::new(4 * c, 2 * c)
                        .with_bias(false)
                        .init(device),
                });
                SwinStage { blocks, downsample }
            })
            .collect();
        SwinTransformer {
            patch_embed: PatchEmbed {
                projection: Conv2dConfig::new([3, e], [4, 4])
                    .with_stride([4, 4])
                    .init(device),
                norm: ln(e),
                patch: 4,
            },
            stages,
            norm0: ln(e),
            norm1: ln(2 * e),
            norm2: ln(4 * e),
            norm3: ln(8 * e),
        }
    }

    /// `[b, 3, h, w]` (normalised) -> the four stage outputs, `[b, c_i, h/2^(i+2), w/2^(i+2)]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Vec<Tensor<B, 4>> {
        let (mut x, mut hw) = self.patch_embed.forward(x);
        let norms = [&self.norm0, &self.norm1, &self.norm2, &self.norm3];
        let mut outs = Vec::with_capacity(4);
        for (stage, norm) in self.stages.iter().zip(norms) {
            let mut shift_mask = None;
            for block in &stage.blocks {
                x = block.forward(x, hw, &mut shift_mask);
            }
            let [b, _, c] = x.dims();
            outs.push(
                norm.forward(x.clone())
                    .swap_dims(1, 2)
                    .reshape([b, c, hw[0], hw[1]]),
            );
            if let Some(merge) = &stage.downsample {
                (x, hw) = merge.forward(x, hw);
            }
        }
        outs
    }
}
