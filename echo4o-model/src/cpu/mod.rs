//! CPU kernels for the work where burn's CPU backends leave most of the machine idle: safe
//! Rust over host slices, vectorised through pulp's run-time SIMD dispatch and spread over
//! rayon's pool. The model calls them on CPU backends only (see `qwen2_mot::attention`); every
//! kernel has a test against a textbook version in f64.

pub(crate) mod attention;
pub(crate) mod fused;
pub(crate) mod host;
pub(crate) mod rows;
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
