//! Latent codecs a checkpoint can use: FLUX's autoencoder (the released model) or a
//! [`PixelCodec`] over raw pixel patches, so tiny models train and generate with no VAE.
//!
//! `ae_config.json` selects the codec (`"codec": "pixel"`; FLUX when absent).

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

use crate::autoencoder::{AutoEncoder, LatentCodec};
use crate::config::{AeConfig, CodecKind};
use crate::linear_codec::LinearCodec;
use crate::ops::cast_params;

/// Raw pixels as latents: each `d x d` patch of the image becomes one latent pixel of `3 d^2`
/// channels (space-to-depth, channel index `c * d^2 + i * d + j`), scaled as
/// `(x - shift) * scale`. Lossless and parameter-free.
///
/// ```
/// use burn::tensor::{Distribution, Tensor};
/// use echo4o_model::autoencoder::LatentCodec;
/// use echo4o_model::codec::PixelCodec;
///
/// type B = burn_flex::Flex;
/// let codec = PixelCodec { patch: 4, scale: 1.0, shift: 0.0 };
/// let x = Tensor::<B, 4>::random([1, 3, 8, 12], Distribution::Uniform(-1.0, 1.0), &Default::default());
/// let z = LatentCodec::<B>::encode(&codec, x.clone(), None);
/// assert_eq!(z.dims(), [1, 48, 2, 3]);
/// let back = LatentCodec::<B>::decode(&codec, z);
/// back.into_data().assert_approx_eq::<f32>(&x.into_data(), Default::default());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelCodec {
    /// Patch side `d`.
    pub patch: usize,
    /// Latent scale.
    pub scale: f64,
    /// Latent shift.
    pub shift: f64,
}

impl PixelCodec {
    /// The pixel codec of `c`: patch = `2^(len(ch_mult) - 1)`, with its scale and shift.
    pub fn of(c: &AeConfig) -> Self {
        PixelCodec {
            patch: c.downsample(),
            scale: c.scale_factor,
            shift: c.shift_factor,
        }
    }
}

impl<B: Backend> LatentCodec<B> for PixelCodec {
    fn downsample(&self) -> usize {
        self.patch
    }

    fn channels(&self) -> usize {
        3 * self.patch * self.patch
    }

    fn encode(&self, images: Tensor<B, 4>, _noise: Option<Tensor<B, 4>>) -> Tensor<B, 4> {
        let [b, c, hh, ww] = images.dims();
        let d = self.patch;
        let (h, w) = (hh / d, ww / d);
        let z = images
            .narrow(2, 0, h * d)
            .narrow(3, 0, w * d)
            .reshape([b, c, h, d, w, d])
            .permute([0, 1, 3, 5, 2, 4])
            .reshape([b, c * d * d, h, w]);
        (z - self.shift) * self.scale
    }

    fn decode(&self, latents: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, cdd, h, w] = latents.dims();
        let d = self.patch;
        let c = cdd / (d * d);
        (latents / self.scale + self.shift)
            .reshape([b, c, d, d, h, w])
            .permute([0, 1, 4, 2, 5, 3])
            .reshape([b, c, h * d, w * d])
    }
}

/// The codec of a pipeline: one of the two a checkpoint folder can name, or any
/// [`LatentCodec`] a user supplies ([`Codec::custom`]).
pub enum Codec<B: Backend> {
    /// FLUX's autoencoder (boxed: it is large and the pixel codec is three numbers).
    Flux(Box<AutoEncoder<B>>),
    /// Raw pixel patches.
    Pixel(PixelCodec),
    /// Principal components of pixel patches ([`LinearCodec`]; boxed like FLUX's).
    Linear(Box<LinearCodec<B>>),
    /// A plug-in codec (another autoencoder, a tokenizer-free latent space). Shared, so a
    /// trainer's EMA pipeline and the trained one use the same instance. Its weights are its
    /// owner's to load and save: [`crate::pipeline::save_checkpoint`] writes none for it.
    Custom(std::sync::Arc<dyn LatentCodec<B> + Send + Sync>),
}

impl<B: Backend> std::fmt::Debug for Codec<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Codec::Flux(ae) => f.debug_tuple("Flux").field(ae).finish(),
            Codec::Pixel(p) => f.debug_tuple("Pixel").field(p).finish(),
            Codec::Linear(l) => f.debug_tuple("Linear").field(l).finish(),
            Codec::Custom(c) => write!(
                f,
                "Custom(downsample {}, {} channels)",
                c.downsample(),
                c.channels()
            ),
        }
    }
}

impl<B: Backend> Codec<B> {
    /// A codec for `c` (random weights for FLUX, an unfitted [`LinearCodec`]).
    pub fn init(c: &AeConfig, device: &B::Device) -> Self {
        match c.codec {
            CodecKind::Flux => Codec::Flux(Box::new(AutoEncoder::init(c, device))),
            CodecKind::Pixel => Codec::Pixel(PixelCodec::of(c)),
            CodecKind::Linear => Codec::Linear(Box::new(LinearCodec::init(c, device))),
        }
    }

    /// A user-supplied codec.
    ///
    /// ```
    /// use echo4o_model::codec::{Codec, PixelCodec};
    /// use echo4o_model::autoencoder::LatentCodec;
    ///
    /// let c = Codec::<burn_flex::Flex>::custom(PixelCodec { patch: 2, scale: 1.0, shift: 0.0 });
    /// assert_eq!(c.channels(), 12);
    /// ```
    pub fn custom(codec: impl LatentCodec<B> + Send + Sync + 'static) -> Self {
        Codec::Custom(std::sync::Arc::new(codec))
    }

    /// The codec with its weights in `dtype` (the pipeline keeps codecs in f32; a custom codec
    /// keeps whatever precision it chose).
    pub fn cast(self, dtype: DType) -> Self {
        match self {
            Codec::Flux(ae) => Codec::Flux(Box::new(cast_params(*ae, dtype))),
            Codec::Linear(l) => Codec::Linear(Box::new(cast_params(*l, dtype))),
            other => other,
        }
    }

    /// A copy sharing nothing mutable (weights are cloned, a custom codec is shared).
    pub fn duplicate(&self) -> Self {
        match self {
            Codec::Flux(ae) => Codec::Flux(ae.clone()),
            Codec::Linear(l) => Codec::Linear(l.clone()),
            Codec::Pixel(p) => Codec::Pixel(*p),
            Codec::Custom(c) => Codec::Custom(c.clone()),
        }
    }
}

impl<B: Backend> From<AutoEncoder<B>> for Codec<B> {
    fn from(ae: AutoEncoder<B>) -> Self {
        Codec::Flux(Box::new(ae))
    }
}

impl<B: Backend> LatentCodec<B> for Codec<B> {
    fn downsample(&self) -> usize {
        match self {
            Codec::Flux(a) => a.downsample(),
            Codec::Pixel(p) => LatentCodec::<B>::downsample(p),
            Codec::Linear(l) => l.downsample(),
            Codec::Custom(c) => c.downsample(),
        }
    }

    fn channels(&self) -> usize {
        match self {
            Codec::Flux(a) => a.channels(),
            Codec::Pixel(p) => LatentCodec::<B>::channels(p),
            Codec::Linear(l) => l.channels(),
            Codec::Custom(c) => c.channels(),
        }
    }

    fn encode(&self, images: Tensor<B, 4>, noise: Option<Tensor<B, 4>>) -> Tensor<B, 4> {
        match self {
            Codec::Flux(a) => a.encode(images, noise),
            Codec::Pixel(p) => p.encode(images, noise),
            Codec::Linear(l) => l.encode(images, noise),
            Codec::Custom(c) => c.encode(images, noise),
        }
    }

    fn decode(&self, latents: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Codec::Flux(a) => a.decode(latents),
            Codec::Pixel(p) => p.decode(latents),
            Codec::Linear(l) => l.decode(latents),
            Codec::Custom(c) => c.decode(latents),
        }
    }
}
