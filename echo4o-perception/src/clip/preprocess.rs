//! open_clip's inference transform for OpenAI CLIP, bit for bit: torchvision `Resize(size,
//! BICUBIC)` (shortest side to `size`, the long side `int(size * long / short)`, Pillow's bicubic
//! resampler), `CenterCrop(size)` (offsets `int(round((side - size) / 2))`, ties to even),
//! `ToTensor`, `Normalize` with OpenAI's mean and standard deviation, in f32.
//!
//! Upstream: open-clip-torch 2.26.1 `open_clip/transform.py` (`image_transform`, resize mode
//! `shortest`), torchvision 0.16.2 `transforms/functional.py` (`_compute_resized_output_size`,
//! `center_crop`).

use echo4o_core::resize::resize_bicubic;
use image::RgbImage;

use crate::Error;

// open_clip's literals as written; Rust rounds them to f32 as torch does.
/// OpenAI CLIP's per-channel mean (`OPENAI_DATASET_MEAN`).
#[allow(clippy::excessive_precision)]
pub const OPENAI_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP's per-channel standard deviation (`OPENAI_DATASET_STD`).
#[allow(clippy::excessive_precision)]
pub const OPENAI_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Resize (shortest side to `size`) and centre crop to `size x size`: the transform's pixels
/// before `ToTensor`.
pub fn resize_and_crop(img: &RgbImage, size: u32) -> Result<RgbImage, Error> {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::Invalid {
            what: "crop".into(),
            message: format!("{w}x{h} pixels: an empty crop has no colour to classify"),
        });
    }
    let (short, long) = (w.min(h), w.max(h));
    let new_long = (f64::from(size) * f64::from(long) / f64::from(short)) as u32;
    let (nw, nh) = if w <= h {
        (size, new_long)
    } else {
        (new_long, size)
    };
    let resized = if (nw, nh) == (w, h) {
        img.clone()
    } else {
        resize_bicubic(img, nw, nh)
    };
    // Python's round() ties to even: a 225-pixel side keeps its first column, drops its last.
    let top = (f64::from(nh - size) / 2.0).round_ties_even() as u32;
    let left = (f64::from(nw - size) / 2.0).round_ties_even() as u32;
    Ok(image::imageops::crop_imm(&resized, left, top, size, size).to_image())
}

/// The whole transform: CHW f32, `(u8 / 255 - mean) / std` per channel.
pub fn preprocess(img: &RgbImage, size: u32) -> Result<Vec<f32>, Error> {
    let cropped = resize_and_crop(img, size)?;
    let plane = (size * size) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in cropped.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(p.0[c]) / 255.0 - OPENAI_MEAN[c]) / OPENAI_STD[c];
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_torchvision() {
        let img = RgbImage::new(500, 41);
        let r = resize_and_crop(&img, 224).unwrap();
        assert_eq!(r.dimensions(), (224, 224));
        assert!(resize_and_crop(&RgbImage::new(0, 5), 224).is_err());
    }
}
