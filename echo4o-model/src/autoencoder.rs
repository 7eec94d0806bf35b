//! The FLUX.1 autoencoder (BAGEL's VAE) behind the [`LatentCodec`] trait.
//!
//! Upstream: `ByteDance-Seed/Bagel@056b5fd` `modeling/autoencoder.py` (identical to
//! black-forest-labs/flux `src/flux/modules/autoencoder.py`): GroupNorm 32 (eps 1e-6), swish,
//! resnet blocks, one single-head attention block in the middle, downsampling by a stride-2 conv
//! after an asymmetric (0, 1, 0, 1) zero pad, upsampling by nearest x2 then a conv.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::tensor::Tensor;
use burn::tensor::activation::sigmoid;
use burn::tensor::backend::Backend;

use crate::config::AeConfig;

/// Image tensors <-> latent tensors: the FLUX VAE, or the pixel codec of tiny CPU models.
pub trait LatentCodec<B: Backend> {
    /// Spatial factor between image and latent.
    fn downsample(&self) -> usize;
    /// Latent channels.
    fn channels(&self) -> usize;
    /// Encodes images `[b, 3, H, W]` in [-1, 1] to latents `[b, C, H/d, W/d]`: the posterior
    /// mean, or a sample `mean + std * noise` when `noise` is given (as the official code does).
    fn encode(&self, images: Tensor<B, 4>, noise: Option<Tensor<B, 4>>) -> Tensor<B, 4>;
    /// Decodes latents to images in roughly [-1, 1].
    fn decode(&self, latents: Tensor<B, 4>) -> Tensor<B, 4>;
}

fn swish<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.clone() * sigmoid(x)
}

/// One zero column on the right and one zero row at the bottom (the FLUX downsample's
/// asymmetric `pad(0, 1, 0, 1)`), in `x`'s own dtype: burn's `pad` makes its zeros in the
/// backend's default dtype, which a fused backend refuses to mix with an f32 VAE on a bf16 backend.
fn pad_right_bottom<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    let (device, dtype) = (x.device(), x.dtype());
    let x = Tensor::cat(vec![x, Tensor::zeros([b, c, h, 1], (&device, dtype))], 3);
    Tensor::cat(
        vec![x, Tensor::zeros([b, c, 1, w + 1], (&device, dtype))],
        2,
    )
}

fn group_norm<B: Backend>(c: usize, device: &B::Device) -> GroupNorm<B> {
    GroupNormConfig::new(32, c).with_epsilon(1e-6).init(device)
}

fn conv<B: Backend>(i: usize, o: usize, k: usize, device: &B::Device) -> Conv2d<B> {
    let p = k / 2;
    Conv2dConfig::new([i, o], [k, k])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .init(device)
}

/// A resnet block with an optional 1x1 shortcut.
#[derive(Module, Debug)]
pub struct ResnetBlock<B: Backend> {
    /// First norm.
    pub norm1: GroupNorm<B>,
    /// First conv.
    pub conv1: Conv2d<B>,
    /// Second norm.
    pub norm2: GroupNorm<B>,
    /// Second conv.
    pub conv2: Conv2d<B>,
    /// Channel-changing shortcut.
    pub nin_shortcut: Option<Conv2d<B>>,
}

impl<B: Backend> ResnetBlock<B> {
    fn init(i: usize, o: usize, device: &B::Device) -> Self {
        ResnetBlock {
            norm1: group_norm(i, device),
            conv1: conv(i, o, 3, device),
            norm2: group_norm(o, device),
            conv2: conv(o, o, 3, device),
            nin_shortcut: (i != o).then(|| conv(i, o, 1, device)),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let h = self.conv1.forward(swish(self.norm1.forward(x.clone())));
        let h = self.conv2.forward(swish(self.norm2.forward(h)));
        let x = match &self.nin_shortcut {
            Some(s) => s.forward(x),
            None => x,
        };
        x + h
    }
}

/// Single-head self-attention over all pixels.
#[derive(Module, Debug)]
pub struct AttnBlock<B: Backend> {
    /// Norm.
    pub norm: GroupNorm<B>,
    /// Query (1x1 conv).
    pub q: Conv2d<B>,
    /// Key.
    pub k: Conv2d<B>,
    /// Value.
    pub v: Conv2d<B>,
    /// Output.
    pub proj_out: Conv2d<B>,
}

impl<B: Backend> AttnBlock<B> {
    fn init(c: usize, device: &B::Device) -> Self {
        AttnBlock {
            norm: group_norm(c, device),
            q: conv(c, c, 1, device),
            k: conv(c, c, 1, device),
            v: conv(c, c, 1, device),
            proj_out: conv(c, c, 1, device),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        let hn = self.norm.forward(x.clone());
        let flat = |t: Tensor<B, 4>| t.reshape([b, c, h * w]).swap_dims(1, 2); // [b, hw, c]
        let q = flat(self.q.forward(hn.clone()));
        let k = flat(self.k.forward(hn.clone()));
        let v = flat(self.v.forward(hn));
        let scores = q.matmul(k.swap_dims(1, 2)) * (1.0 / (c as f64).sqrt());
        let o = crate::ops::softmax_f32(scores, 2)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, c, h, w]);
        x + self.proj_out.forward(o)
    }
}

/// The middle of encoder and decoder: resnet, attention, resnet.
#[derive(Module, Debug)]
pub struct Mid<B: Backend> {
    /// First block.
    pub block_1: ResnetBlock<B>,
    /// Attention.
    pub attn_1: AttnBlock<B>,
    /// Second block.
    pub block_2: ResnetBlock<B>,
}

impl<B: Backend> Mid<B> {
    fn init(c: usize, device: &B::Device) -> Self {
        Mid {
            block_1: ResnetBlock::init(c, c, device),
            attn_1: AttnBlock::init(c, device),
            block_2: ResnetBlock::init(c, c, device),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.block_2
            .forward(self.attn_1.forward(self.block_1.forward(x)))
    }
}

/// A strided conv after a (0, 1, 0, 1) zero pad.
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    /// The stride-2 conv.
    pub conv: Conv2d<B>,
}

/// Nearest x2, then a conv.
#[derive(Module, Debug)]
pub struct Upsample<B: Backend> {
    /// The conv.
    pub conv: Conv2d<B>,
}

/// One encoder resolution level.
#[derive(Module, Debug)]
pub struct DownLevel<B: Backend> {
    /// Resnet blocks.
    pub block: Vec<ResnetBlock<B>>,
    /// Downsampling (all but the last level).
    pub downsample: Option<Downsample<B>>,
}

/// One decoder resolution level.
#[derive(Module, Debug)]
pub struct UpLevel<B: Backend> {
    /// Resnet blocks.
    pub block: Vec<ResnetBlock<B>>,
    /// Upsampling (all but level 0).
    pub upsample: Option<Upsample<B>>,
}

/// The encoder: image -> `[mean ; logvar]`.
#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    /// Stem.
    pub conv_in: Conv2d<B>,
    /// Levels, highest resolution first.
    pub down: Vec<DownLevel<B>>,
    /// Middle.
    pub mid: Mid<B>,
    /// Final norm.
    pub norm_out: GroupNorm<B>,
    /// To `2 * z_channels`.
    pub conv_out: Conv2d<B>,
}

/// The decoder: latent -> image.
#[derive(Module, Debug)]
pub struct Decoder<B: Backend> {
    /// Stem.
    pub conv_in: Conv2d<B>,
    /// Middle.
    pub mid: Mid<B>,
    /// Levels indexed by resolution (run from the last to 0).
    pub up: Vec<UpLevel<B>>,
    /// Final norm.
    pub norm_out: GroupNorm<B>,
    /// To RGB.
    pub conv_out: Conv2d<B>,
}

/// The FLUX autoencoder.
#[derive(Module, Debug)]
pub struct AutoEncoder<B: Backend> {
    /// Encoder.
    pub encoder: Encoder<B>,
    /// Decoder.
    pub decoder: Decoder<B>,
    scale_factor: f64,
    shift_factor: f64,
    z_channels: usize,
    levels: usize,
}

impl<B: Backend> AutoEncoder<B> {
    /// A random autoencoder of `c`.
    pub fn init(c: &AeConfig, device: &B::Device) -> Self {
        let levels = c.ch_mult.len();
        let mut in_mult = vec![1];
        in_mult.extend(&c.ch_mult);
        let mut down = Vec::new();
        let mut block_in = c.ch;
        for (i, (&mult_in, &mult)) in in_mult.iter().zip(&c.ch_mult).enumerate() {
            block_in = c.ch * mult_in;
            let block_out = c.ch * mult;
            let mut block = Vec::new();
            for _ in 0..c.num_res_blocks {
                block.push(ResnetBlock::init(block_in, block_out, device));
                block_in = block_out;
            }
            let downsample = (i + 1 != levels).then(|| Downsample {
                conv: Conv2dConfig::new([block_in, block_in], [3, 3])
                    .with_stride([2, 2])
                    .with_padding(PaddingConfig2d::Valid)
                    .init(device),
            });
            down.push(DownLevel { block, downsample });
        }
        let encoder = Encoder {
            conv_in: conv(c.in_channels, c.ch, 3, device),
            down,
            mid: Mid::init(block_in, device),
            norm_out: group_norm(block_in, device),
            conv_out: conv(block_in, 2 * c.z_channels, 3, device),
        };

        let mut block_in = c.ch * c.ch_mult[levels - 1];
        let dec_in = block_in;
        let mut up: Vec<UpLevel<B>> = Vec::new();
        for i in (0..levels).rev() {
            let block_out = c.ch * c.ch_mult[i];
            let mut block = Vec::new();
            for _ in 0..=c.num_res_blocks {
                block.push(ResnetBlock::init(block_in, block_out, device));
                block_in = block_out;
            }
            let upsample = (i != 0).then(|| Upsample {
                conv: conv(block_in, block_in, 3, device),
            });
            up.insert(0, UpLevel { block, upsample });
        }
        let decoder = Decoder {
            conv_in: conv(c.z_channels, dec_in, 3, device),
            mid: Mid::init(dec_in, device),
            up,
            norm_out: group_norm(block_in, device),
            conv_out: conv(block_in, c.out_ch, 3, device),
        };
        AutoEncoder {
            encoder,
            decoder,
            scale_factor: c.scale_factor,
            shift_factor: c.shift_factor,
            z_channels: c.z_channels,
            levels,
        }
    }

    /// The dtype the autoencoder computes in: its weights' (f32 in the pipeline on every device,
    /// as the official code never casts the VAE). The codec methods cast to it and back.
    pub fn dtype(&self) -> burn::tensor::DType {
        self.decoder.conv_in.weight.val().dtype()
    }

    /// The encoder's raw output `[b, 2 z, h, w]` (`[mean ; logvar]`).
    pub fn moments(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let e = &self.encoder;
        let mut h = e.conv_in.forward(x);
        for level in &e.down {
            for b in &level.block {
                h = b.forward(h);
            }
            if let Some(d) = &level.downsample {
                h = d.conv.forward(pad_right_bottom(h));
            }
        }
        let h = e.mid.forward(h);
        e.conv_out.forward(swish(e.norm_out.forward(h)))
    }

    /// The decoder alone on unscaled latents.
    pub fn decoder_forward(&self, z: Tensor<B, 4>) -> Tensor<B, 4> {
        let d = &self.decoder;
        let mut h = d.mid.forward(d.conv_in.forward(z));
        for level in d.up.iter().rev() {
            for b in &level.block {
                h = b.forward(h);
            }
            if let Some(u) = &level.upsample {
                let [b, c, hh, ww] = h.dims();
                let up = h
                    .reshape([b, c, hh, 1, ww, 1])
                    .expand([b, c, hh, 2, ww, 2])
                    .reshape([b, c, hh * 2, ww * 2]);
                h = u.conv.forward(up);
            }
        }
        d.conv_out.forward(swish(d.norm_out.forward(h)))
    }
}

impl<B: Backend> LatentCodec<B> for AutoEncoder<B> {
    fn downsample(&self) -> usize {
        1 << (self.levels - 1)
    }

    fn channels(&self) -> usize {
        self.z_channels
    }

    fn encode(&self, images: Tensor<B, 4>, noise: Option<Tensor<B, 4>>) -> Tensor<B, 4> {
        let (dtype, own) = (images.dtype(), self.dtype());
        let m = self.moments(images.cast(own));
        let mean = m.clone().narrow(1, 0, self.z_channels);
        let z = match noise {
            Some(n) => {
                let logvar = m.narrow(1, self.z_channels, self.z_channels);
                mean + (logvar * 0.5).exp() * n.cast(own)
            }
            None => mean,
        };
        ((z - self.shift_factor) * self.scale_factor).cast(dtype)
    }

    fn decode(&self, latents: Tensor<B, 4>) -> Tensor<B, 4> {
        let (dtype, own) = (latents.dtype(), self.dtype());
        self.decoder_forward(latents.cast(own) / self.scale_factor + self.shift_factor)
            .cast(dtype)
    }
}
