//! mmdet 2.x's test pipeline for the Mask2Former instance configs, value for value:
//! `Resize(img_scale=(1333, 800), keep_ratio=True)` (mmcv `imrescale`, OpenCV `INTER_LINEAR` on
//! 8-bit pixels), `Pad(size_divisor=32, pad_val=128)` (right and bottom, before normalising),
//! `Normalize(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)`.
//!
//! OpenCV's 8-bit bilinear resize is fixed-point: 11-bit weights
//! (`saturate_cast<short>(w * 2048)`, rounded half to even), an exact integer horizontal pass,
//! and a vertical pass that drops precision as OpenCV's vector code does, for every byte of the
//! row: `(((a >> 4) * b0 >> 16) + ((c >> 4) * b1 >> 16) + 2) >> 2` (the textbook rounding,
//! `(a * b0 + c * b1 + 2^21) >> 22`, differs from OpenCV 4.8 on about one pixel in ten). An exact 2x shrink is
//! OpenCV's 2x2 area average; an unchanged size is a copy. [`resize_linear`] reproduces all three
//! byte for byte (checked against `cv2.resize` of opencv-python 4.8.1 in the tests).

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use image::RgbImage;

/// The longest and shortest side the test pipeline fits images into (`img_scale`).
pub const IMG_SCALE: (f64, f64) = (1333.0, 800.0);
/// The padded input's sides are multiples of this.
pub const SIZE_DIVISOR: usize = 32;
/// Padding value of every channel.
pub const PAD_VALUE: u8 = 128;
/// Per-channel mean, RGB.
pub const MEAN: [f64; 3] = [123.675, 116.28, 103.53];
/// Per-channel standard deviation, RGB.
pub const STD: [f64; 3] = [58.395, 57.12, 57.375];

/// The shapes mmdet's `img_metas` carry, as `(height, width)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageMeta {
    /// The image as decoded (`ori_shape`).
    pub original: (usize, usize),
    /// After the keep-ratio resize (`img_shape`).
    pub resized: (usize, usize),
    /// After padding (`batch_input_shape`).
    pub padded: (usize, usize),
}

/// mmcv's `rescale_size(old, (1333, 800))`: the scale that fits the long side into 1333 and the
/// short side into 800, sides rounded half up; returns `(width, height)`.
pub fn rescale_size(width: usize, height: usize) -> (usize, usize) {
    let (long, short) = IMG_SCALE;
    let (w, h) = (width as f64, height as f64);
    let scale = (long / w.max(h)).min(short / w.min(h));
    (
        (w * scale + 0.5).floor() as usize,
        (h * scale + 0.5).floor() as usize,
    )
}

/// `cv2.resize(src, (dw, dh), interpolation=cv2.INTER_LINEAR)` on interleaved 8-bit pixels with
/// `cn` channels, `src` `sh x sw`.
pub fn resize_linear(
    src: &[u8],
    (sw, sh): (usize, usize),
    cn: usize,
    (dw, dh): (usize, usize),
) -> Vec<u8> {
    assert_eq!(src.len(), sw * sh * cn, "source buffer of the wrong size");
    if (sw, sh) == (dw, dh) {
        return src.to_vec();
    }
    let inv_x = dw as f64 / sw as f64;
    let inv_y = dh as f64 / sh as f64;
    let (scale_x, scale_y) = (1.0 / inv_x, 1.0 / inv_y);
    let is_two = |s: f64| (s - s.round()).abs() < f64::EPSILON && s.round() == 2.0;
    if is_two(scale_x) && is_two(scale_y) {
        return area_half(src, (sw, sh), cn, (dw, dh));
    }
    const ONE: i32 = 2048;
    let weight = |f: f32| -> i32 { (f * ONE as f32).round_ties_even() as i32 };
    // Horizontal taps: source offsets (in bytes) and weights per destination column.
    let mut xofs = Vec::with_capacity(dw);
    let mut alpha = Vec::with_capacity(dw);
    for dx in 0..dw {
        let mut fx = ((dx as f64 + 0.5) * scale_x - 0.5) as f32;
        let mut sx = fx.floor() as i64;
        fx -= sx as f32;
        if sx < 0 {
            fx = 0.0;
            sx = 0;
        }
        if sx >= sw as i64 - 1 {
            fx = 0.0;
            sx = sw as i64 - 1;
        }
        xofs.push(sx as usize);
        alpha.push((weight(1.0 - fx), weight(fx)));
    }
    // One source row resized horizontally: exact integers, 2048 times the pixel.
    let hresize = |row: usize| -> Vec<i32> {
        let line = &src[row * sw * cn..(row + 1) * sw * cn];
        let mut out = Vec::with_capacity(dw * cn);
        for dx in 0..dw {
            let sx = xofs[dx];
            let (a0, a1) = alpha[dx];
            for k in 0..cn {
                let p0 = line[sx * cn + k] as i32;
                let p1 = if sx + 1 < sw {
                    line[(sx + 1) * cn + k] as i32
                } else {
                    0
                };
                out.push(if sx + 1 < sw {
                    p0 * a0 + p1 * a1
                } else {
                    p0 * ONE
                });
            }
        }
        out
    };
    let width = dw * cn;
    let mut dst = Vec::with_capacity(dh * width);
    for dy in 0..dh {
        let fy_full = ((dy as f64 + 0.5) * scale_y - 0.5) as f32;
        let sy = fy_full.floor() as i64;
        let fy = fy_full - sy as f32;
        let (b0, b1) = (weight(1.0 - fy), weight(fy));
        let clamp = |r: i64| r.clamp(0, sh as i64 - 1) as usize;
        let r0 = hresize(clamp(sy));
        let r1 = hresize(clamp(sy + 1));
        for x in 0..width {
            let v = ((((r0[x] >> 4) * b0) >> 16) + (((r1[x] >> 4) * b1) >> 16) + 2) >> 2;
            dst.push(v.clamp(0, 255) as u8);
        }
    }
    dst
}

/// OpenCV's fast area resize for an exact 2x shrink: the rounded mean of each 2x2 block.
fn area_half(
    src: &[u8],
    (sw, _sh): (usize, usize),
    cn: usize,
    (dw, dh): (usize, usize),
) -> Vec<u8> {
    let mut dst = Vec::with_capacity(dw * dh * cn);
    for y in 0..dh {
        for x in 0..dw {
            for k in 0..cn {
                let at = |yy: usize, xx: usize| src[(yy * sw + xx) * cn + k] as u32;
                let sum = at(2 * y, 2 * x)
                    + at(2 * y, 2 * x + 1)
                    + at(2 * y + 1, 2 * x)
                    + at(2 * y + 1, 2 * x + 1);
                dst.push(((sum + 2) >> 2) as u8);
            }
        }
    }
    dst
}

/// `Normalize`'s value for byte `value` of RGB channel `channel`: mmdet keeps mean and std as
/// float32, mmcv takes `1 / std` in float64, and OpenCV's `subtract` / `multiply` of a float32
/// image by those float64 constants round once, to float32, at the end.
pub fn normalize(value: u8, channel: usize) -> f32 {
    let mean = f64::from(MEAN[channel] as f32);
    let inv_std = 1.0 / f64::from(STD[channel] as f32);
    ((f64::from(value) - mean) * inv_std) as f32
}

/// The network input for `image`: resized, padded with 128, normalised, `[1, 3, h, w]` RGB.
pub fn preprocess<B: Backend>(image: &RgbImage, device: &B::Device) -> (Tensor<B, 4>, ImageMeta) {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let (nw, nh) = rescale_size(w, h);
    let resized = resize_linear(image.as_raw(), (w, h), 3, (nw, nh));
    let pad = |s: usize| s.div_ceil(SIZE_DIVISOR) * SIZE_DIVISOR;
    let (pw, ph) = (pad(nw), pad(nh));
    let table: Vec<[f32; 256]> = (0..3)
        .map(|c| std::array::from_fn(|v| normalize(v as u8, c)))
        .collect();
    let mut data = vec![0f32; 3 * ph * pw];
    for y in 0..ph {
        for x in 0..pw {
            for c in 0..3 {
                let v = if y < nh && x < nw {
                    resized[(y * nw + x) * 3 + c]
                } else {
                    PAD_VALUE
                };
                data[(c * ph + y) * pw + x] = table[c][v as usize];
            }
        }
    }
    let tensor = Tensor::from_data(TensorData::new(data, [1, 3, ph, pw]), device);
    let meta = ImageMeta {
        original: (h, w),
        resized: (nh, nw),
        padded: (ph, pw),
    };
    (tensor, meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_mmcv_rescale() {
        assert_eq!(rescale_size(1024, 1024), (800, 800));
        assert_eq!(rescale_size(512, 512), (800, 800));
        assert_eq!(rescale_size(640, 480), (1067, 800));
        assert_eq!(rescale_size(2000, 500), (1333, 333));
    }

    #[test]
    fn a_constant_image_stays_constant() {
        let src = vec![77u8; 13 * 9 * 3];
        let out = resize_linear(&src, (13, 9), 3, (29, 17));
        assert!(out.iter().all(|&v| v == 77), "{out:?}");
    }
}
