//! Bagel's transforms on CPU arrays: the resize rule and Pillow-exact bicubic resampling (from
//! `echo4o_core::resize`, shared with the model's generator), normalisation, and patchify for
//! VAE latents and ViT pixels.

pub use echo4o_core::resize::{DEFAULT_MAX_PIXELS, ResizeRule, resize_bicubic, to_chw_pixels};

/// Patchifies a CHW array `[c, h*p, w*p]` into `[h*w, p*p*c]` rows with index
/// `(pi * p + pj) * c + ch` (channel fastest): the official `einsum("chpwq->hwpqc")` used both
/// for VAE latents (`p = 2`) and ViT pixels (`p = 14`). Trailing rows/columns that do not fill a
/// patch are dropped, as the official `[:, :h*p, :w*p]` crop does.
///
/// ```
/// // 1 channel, 2x4 pixels, 2x2 patches -> 2 tokens of 4 values.
/// let x = [0., 1., 2., 3., 4., 5., 6., 7.];
/// let t = echo4o_data::transforms::patchify(&x, 1, 2, 4, 2);
/// assert_eq!(t, vec![0., 1., 4., 5., 2., 3., 6., 7.]);
/// ```
pub fn patchify(x: &[f32], c: usize, height: usize, width: usize, p: usize) -> Vec<f32> {
    let (h, w) = (height / p, width / p);
    let mut out = Vec::with_capacity(h * w * p * p * c);
    for r in 0..h {
        for col in 0..w {
            for pi in 0..p {
                for pj in 0..p {
                    for ch in 0..c {
                        out.push(x[ch * height * width + (r * p + pi) * width + col * p + pj]);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn patchify_is_a_permutation(c in 1usize..4, h in 1usize..4, w in 1usize..4, p in 1usize..4) {
            let n = c * h * p * w * p;
            let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let mut t = patchify(&x, c, h * p, w * p, p);
            proptest::prop_assert_eq!(t.len(), n);
            t.sort_by(f32::total_cmp);
            proptest::prop_assert_eq!(t, x);
        }
    }
}
