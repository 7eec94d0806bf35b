//! Images to tensors and back, as the official pipeline converts them: `[3, H, W]` in [-1, 1]
//! in, latent tokens decoded to truncated u8 pixels out. The pipeline, the trainer and the parity
//! harness all use these.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use echo4o_core::image;
use echo4o_core::resize::to_chw_pixels;

use crate::Error;
use crate::autoencoder::LatentCodec;
use crate::bagel::unpatchify;

/// An RGB image as a `[3, H, W]` tensor in [-1, 1] (Bagel's normalisation).
pub fn chw_tensor<B: Backend>(img: &image::RgbImage, device: &B::Device) -> Tensor<B, 3> {
    let (w, h) = img.dimensions();
    // f32 whatever the backend's default: the VAE encodes in f32 (`Bagel::add_vit_image` casts
    // to the transformer's dtype itself).
    Tensor::from_data(
        TensorData::new(to_chw_pixels(img), [3, h as usize, w as usize]),
        (device, burn::tensor::DType::F32),
    )
}

/// Decodes latent tokens `[h*w, p*p*C]` to an RGB u8 image as `InterleaveInferencer.decode_image`
/// does (`(x * 0.5 + 0.5).clamp(0, 1) * 255`, truncated). Returns (float image, u8 HWC).
pub fn decode_tokens<B: Backend, C: LatentCodec<B>>(
    codec: &C,
    tokens: Tensor<B, 2>,
    h: usize,
    w: usize,
    p: usize,
) -> Result<(Tensor<B, 4>, Vec<u8>), Error> {
    let latent = unpatchify(tokens, h, w, p).unsqueeze_dim::<4>(0);
    let img = codec.decode(latent);
    let u8s = to_u8(img.clone())?;
    Ok((img, u8s))
}

/// `[1, 3, H, W]` in [-1, 1] -> HWC uint8 with the official truncating conversion.
pub fn to_u8<B: Backend>(img: Tensor<B, 4>) -> Result<Vec<u8>, Error> {
    let [_, c, h, w] = img.dims();
    let scaled = ((img * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0)
        .reshape([c, h, w])
        .permute([1, 2, 0]);
    let values = scaled
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| Error::Shape {
            what: format!("decoded image data ({e:?})"),
            expected: "f32 values".into(),
            got: vec![h, w, c],
        })?;
    Ok(values.into_iter().map(|v| v as u8).collect())
}
