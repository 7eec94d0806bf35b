//! Bagel's image transform: the `MaxLongEdgeMinShortEdgeResize` size rule and Pillow's bicubic
//! resampler reproduced bit for bit, and normalisation to [-1, 1].
//!
//! Upstream: `ByteDance-Seed/Bagel@056b5fd` `data/transforms.py` (`MaxLongEdgeMinShortEdgeResize`,
//! `ImageTransform`), which resizes PIL images with torchvision, i.e. Pillow's
//! `Image.resize(BICUBIC)` (`libImaging/Resample.c`: separable, horizontal pass first, 22-bit
//! fixed-point weights, clipping to u8 after each pass). torch's own bicubic differs by up to 13
//! levels, so only this reproduces the official inputs.

use image::RgbImage;

/// The size rule of `MaxLongEdgeMinShortEdgeResize`.
///
/// ```
/// use echo4o_core::resize::ResizeRule;
/// let vae = ResizeRule::bagel_vae(); // ImageTransform(1024, 512, 16)
/// assert_eq!(vae.target_size(4000, 3000, 1), (1024, 768));
/// assert_eq!(vae.target_size(300, 200, 1), (768, 512));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResizeRule {
    /// Longest side at most.
    pub max_size: u32,
    /// Shortest side at least (upscaling if needed).
    pub min_size: u32,
    /// Sides are multiples of this.
    pub stride: u32,
    /// Area limit (per image when several share the budget).
    pub max_pixels: u64,
}

/// Bagel's default `max_pixels`: 14 * 14 * 9 * 1024.
pub const DEFAULT_MAX_PIXELS: u64 = 14 * 14 * 9 * 1024;

/// Python's `round()` (ties to even), as the official transforms round sizes.
fn py_round(x: f64) -> f64 {
    x.round_ties_even()
}

impl ResizeRule {
    /// The VAE transform of the released model: `ImageTransform(1024, 512, 16)`.
    pub fn bagel_vae() -> Self {
        ResizeRule {
            max_size: 1024,
            min_size: 512,
            stride: 16,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }

    /// The ViT transform of the released model: `ImageTransform(980, 224, 14)`.
    pub fn bagel_vit() -> Self {
        ResizeRule {
            max_size: 980,
            min_size: 224,
            stride: 14,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }

    fn divisible(&self, v: f64) -> u32 {
        let s = f64::from(self.stride);
        (py_round(v / s) * s).max(s) as u32
    }

    fn apply_scale(&self, w: f64, h: f64, scale: f64) -> (u32, u32) {
        (
            self.divisible(py_round(w * scale)),
            self.divisible(py_round(h * scale)),
        )
    }

    /// The (width, height) an image of `width x height` is resized to, `img_num` images sharing
    /// the pixel budget.
    pub fn target_size(&self, width: u32, height: u32, img_num: u32) -> (u32, u32) {
        let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
        let mut scale = (f64::from(self.max_size) / w.max(h)).min(1.0);
        scale = scale.max(f64::from(self.min_size) / w.min(h));
        let (mut nw, mut nh) = self.apply_scale(w, h, scale);
        let budget = self.max_pixels as f64 / f64::from(img_num.max(1));
        if f64::from(nw) * f64::from(nh) > budget {
            let s = budget / (f64::from(nw) * f64::from(nh));
            (nw, nh) = self.apply_scale(f64::from(nw), f64::from(nh), s);
        }
        if nw.max(nh) > self.max_size {
            let s = f64::from(self.max_size) / f64::from(nw.max(nh));
            (nw, nh) = self.apply_scale(f64::from(nw), f64::from(nh), s);
        }
        (nw, nh)
    }

    /// Resizes `img` by the rule with Pillow's bicubic resampler.
    pub fn apply(&self, img: &RgbImage, img_num: u32) -> RgbImage {
        let (w, h) = self.target_size(img.width(), img.height(), img_num);
        resize_bicubic(img, w, h)
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output index: the first input index and the fixed-point weights (Pillow's
/// `precompute_coeffs` + `normalize_coeffs_8bpc`).
fn coefficients(in_size: u32, out_size: u32) -> Vec<(usize, Vec<i32>)> {
    let scale = f64::from(in_size) / f64::from(out_size);
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (f64::from(xx) + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size)) as usize;
            let weights: Vec<f64> = (xmin..xmax)
                .map(|x| bicubic((x as f64 - center + 0.5) / filterscale))
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { *w };
                    let k = w * f64::from(1u32 << PRECISION_BITS);
                    if k < 0.0 {
                        (k - 0.5) as i32
                    } else {
                        (k + 0.5) as i32
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(v: i32) -> u8 {
    if v >= (1 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Pillow's `Image.resize((width, height), BICUBIC)` on an RGB image, bit for bit.
pub fn resize_bicubic(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (iw, ih) = img.dimensions();
    let (iw_us, ih_us) = (iw as usize, ih as usize);
    // Horizontal pass: each output pixel is a weighted sum over a run of input pixels in its row.
    let (cur_w, horizontal): (usize, std::borrow::Cow<'_, [u8]>) = if width != iw {
        let coeffs = coefficients(iw, width);
        let ow = width as usize;
        let src = img.as_raw();
        let mut out = vec![0u8; ow * ih_us * 3];
        for y in 0..ih_us {
            let row = &src[y * iw_us * 3..(y + 1) * iw_us * 3];
            let dst = &mut out[y * ow * 3..(y + 1) * ow * 3];
            for (x, (xmin, k)) in coeffs.iter().enumerate() {
                let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
                for (j, w) in k.iter().enumerate() {
                    let p = &row[(xmin + j) * 3..(xmin + j) * 3 + 3];
                    acc[0] += i32::from(p[0]) * w;
                    acc[1] += i32::from(p[1]) * w;
                    acc[2] += i32::from(p[2]) * w;
                }
                dst[x * 3] = clip8(acc[0]);
                dst[x * 3 + 1] = clip8(acc[1]);
                dst[x * 3 + 2] = clip8(acc[2]);
            }
        }
        (ow, std::borrow::Cow::Owned(out))
    } else {
        (iw_us, std::borrow::Cow::Borrowed(img.as_raw().as_slice()))
    };
    // Vertical pass: each output row is a weighted sum of input rows, accumulated row-wise.
    let pixels = if height != ih {
        let coeffs = coefficients(ih, height);
        let stride = cur_w * 3;
        let mut out = vec![0u8; stride * height as usize];
        let mut acc = vec![0i32; stride];
        for (y, (ymin, k)) in coeffs.iter().enumerate() {
            acc.fill(1i32 << (PRECISION_BITS - 1));
            for (j, w) in k.iter().enumerate() {
                let row = &horizontal[(ymin + j) * stride..(ymin + j + 1) * stride];
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += i32::from(v) * w;
                }
            }
            for (o, &a) in out[y * stride..(y + 1) * stride].iter_mut().zip(&acc) {
                *o = clip8(a);
            }
        }
        out
    } else {
        horizontal.into_owned()
    };
    RgbImage::from_raw(cur_w as u32, height, pixels).unwrap_or_else(|| RgbImage::new(width, height))
}

/// `ToTensor` then `Normalize(0.5, 0.5)`: CHW f32 values `(u8 / 255 - 0.5) / 0.5`, computed in f32
/// as torchvision does.
pub fn to_chw_pixels(img: &RgbImage) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let mut out = vec![0f32; 3 * (w * h) as usize];
    let plane = (w * h) as usize;
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(p.0[c]) / 255.0 - 0.5) / 0.5;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_rule_matches_the_golden_case() {
        // bagel_tiny_m: VAE ImageTransform(64, 16, 4), ViT ImageTransform(112, 28, 14).
        let vae = ResizeRule {
            max_size: 64,
            min_size: 16,
            stride: 4,
            max_pixels: DEFAULT_MAX_PIXELS,
        };
        let vit = ResizeRule {
            max_size: 112,
            min_size: 28,
            stride: 14,
            max_pixels: DEFAULT_MAX_PIXELS,
        };
        assert_eq!(vae.target_size(45, 30, 1), (44, 32));
        assert_eq!(vae.target_size(20, 45, 1), (20, 44));
        assert_eq!(vit.target_size(44, 32, 1), (42, 28));
        assert_eq!(vit.target_size(20, 44, 1), (28, 56));
    }

    #[test]
    fn the_pixel_budget_and_long_edge_clamp_apply() {
        let rule = ResizeRule::bagel_vae();
        let (w, h) = rule.target_size(1024, 1024, 4);
        assert!(
            u64::from(w * h) <= DEFAULT_MAX_PIXELS / 4 + 16 * 1024,
            "{w}x{h}"
        );
        assert_eq!(rule.target_size(5000, 100, 1).0, 1024);
    }

    #[test]
    fn identity_and_constant_images() {
        let img = RgbImage::from_fn(9, 7, |x, y| image::Rgb([x as u8 * 20, y as u8 * 30, 5]));
        assert_eq!(resize_bicubic(&img, 9, 7), img);
        let flat = RgbImage::from_pixel(13, 11, image::Rgb([200, 10, 77]));
        assert_eq!(
            resize_bicubic(&flat, 5, 17),
            RgbImage::from_pixel(5, 17, image::Rgb([200, 10, 77]))
        );
    }

    #[test]
    fn normalises_to_minus_one_one() {
        let img = RgbImage::from_pixel(1, 1, image::Rgb([0, 255, 128]));
        assert_eq!(
            to_chw_pixels(&img),
            vec![-1.0, 1.0, (128.0f32 / 255.0 - 0.5) / 0.5]
        );
    }

    proptest::proptest! {
        #[test]
        fn target_sizes_are_stride_multiples_within_bounds(w in 1u32..5000, h in 1u32..5000) {
            let rule = ResizeRule::bagel_vae();
            let (tw, th) = rule.target_size(w, h, 1);
            proptest::prop_assert!(tw % 16 == 0 && th % 16 == 0 && tw >= 16 && th >= 16);
            proptest::prop_assert!(tw.max(th) <= 1024);
        }
    }
}
