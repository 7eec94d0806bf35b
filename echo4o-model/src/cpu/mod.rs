//! CPU kernels for the work where burn's CPU backends leave most of the machine idle: safe
//! Rust over host slices, vectorised through pulp's run-time SIMD dispatch and spread over
//! rayon's pool. The model calls them through `fused`, which takes them on burn's CPU backends
//! in f32 outside autodiff and burn's own graph everywhere else; every kernel has a test
//! against a textbook version in f64.

pub(crate) mod attention;
#[cfg(feature = "flex")]
mod autodiff;
pub(crate) mod fused;
pub(crate) mod host;
pub(crate) mod rows;
#[cfg(feature = "flex")]
mod rows_backward;
pub(crate) mod segments;
mod simd;
mod tile;

/// The f32 lanes of the SIMD level the CPU runs (what `pulp::Arch::new()` dispatches to).
struct Lanes;

impl pulp::WithSimd for Lanes {
    type Output = usize;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> usize {
        S::F32_LANES
    }
}

/// Reproducible test values in `[-amplitude, amplitude)` from a small LCG.
#[cfg(test)]
fn test_data(n: usize, seed: u32, amplitude: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * amplitude
        })
        .collect()
}
