//! The SIMD building blocks of the CPU kernels, written once over pulp's [`Simd`] so that the
//! same code runs with AVX2+FMA, AVX-512 or plain scalars, chosen at run time by
//! [`pulp::Arch`] (safe code: the CPU's features are checked once, not assumed at build time).

use pulp::Simd;

/// `exp(x)` lane-wise, Cephes' `expf` scheme: `x = n ln2 + r` with `|r| <= ln2 / 2`, a degree-6
/// polynomial for `exp(r)` and `2^n` built in the exponent bits. Relative error about 1e-7 (a
/// couple of ulps) on `[-87.3, 88]`; below that (`-inf` included) the result is exactly 0, as a
/// softmax over masked scores needs, and above 88 it saturates at `exp(88)` (the softmax only
/// ever passes `x <= 0`).
#[inline(always)]
pub(crate) fn exp<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5 * 2^23: adding it rounds a float below 2^22 in magnitude to an integer, and the
    // integer is then the low bits of the sum's representation.
    const ROUND: f32 = 12_582_912.0;
    // ln 2 split in two so that `n * LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const LO: f32 = -87.336_55;
    const HI: f32 = 88.0;
    let flush = simd.less_than_f32s(x, simd.splat_f32s(LO));
    let x = simd.min_f32s(simd.max_f32s(x, simd.splat_f32s(LO)), simd.splat_f32s(HI));
    let shifted = simd.mul_add_e_f32s(x, simd.splat_f32s(LOG2E), simd.splat_f32s(ROUND));
    let n = simd.sub_f32s(shifted, simd.splat_f32s(ROUND));
    let r = simd.mul_add_e_f32s(n, simd.splat_f32s(-LN2_HI), x);
    let r = simd.mul_add_e_f32s(n, simd.splat_f32s(-LN2_LO), r);
    let c = |v: f32| simd.splat_f32s(v);
    let mut p = c(1.987_569_2e-4);
    p = simd.mul_add_e_f32s(p, r, c(1.398_2e-3));
    p = simd.mul_add_e_f32s(p, r, c(8.333_452e-3));
    p = simd.mul_add_e_f32s(p, r, c(4.166_579_6e-2));
    p = simd.mul_add_e_f32s(p, r, c(1.666_666_5e-1));
    p = simd.mul_add_e_f32s(p, r, c(0.5));
    p = simd.mul_add_e_f32s(p, simd.mul_f32s(r, r), r);
    p = simd.add_f32s(p, c(1.0));
    // 2^n: n + 127 in the exponent field.
    let int = simd.sub_u32s(
        simd.transmute_u32s_f32s(shifted),
        simd.splat_u32s(ROUND.to_bits()),
    );
    let biased = simd.add_u32s(int, simd.splat_u32s(127));
    let pow2 = simd.transmute_f32s_u32s(simd.wrapping_dyn_shl_u32s(biased, simd.splat_u32s(23)));
    simd.select_f32s(flush, c(0.0), simd.mul_f32s(p, pow2))
}

/// `out = silu(gate) * up = gate / (1 + exp(-gate)) * up`, elementwise, vectorised.
pub(crate) fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    pulp::Arch::new().dispatch(SiluMul { gate, up, out });
}

struct SiluMul<'a> {
    gate: &'a [f32],
    up: &'a [f32],
    out: &'a mut [f32],
}

impl pulp::WithSimd for SiluMul<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let (g, gt) = S::as_simd_f32s(self.gate);
        let (u, ut) = S::as_simd_f32s(self.up);
        let (o, ot) = S::as_mut_simd_f32s(self.out);
        let one = simd.splat_f32s(1.0);
        let zero = simd.splat_f32s(0.0);
        for ((o, g), u) in o.iter_mut().zip(g).zip(u) {
            let e = exp(simd, simd.sub_f32s(zero, *g));
            *o = simd.mul_f32s(simd.div_f32s(*g, simd.add_f32s(one, e)), *u);
        }
        let scalar = pulp::Scalar::new();
        for ((o, g), u) in ot.iter_mut().zip(gt).zip(ut) {
            *o = g / (1.0 + exp(scalar, -g)) * u;
        }
    }
}

/// `x <- exp(x - shift)` over `xs` with `simd`'s lanes; returns the sum of the results (a
/// softmax row's normaliser).
#[inline(always)]
pub(crate) fn exp_shifted_with<S: Simd>(simd: S, xs: &mut [f32], shift: f32) -> f32 {
    {
        let (head, tail) = S::as_mut_simd_f32s(xs);
        let shift_v = simd.splat_f32s(shift);
        let mut acc = simd.splat_f32s(0.0);
        for v in head {
            *v = exp(simd, simd.sub_f32s(*v, shift_v));
            acc = simd.add_f32s(acc, *v);
        }
        let mut sum = simd.reduce_sum_f32s(acc);
        for x in tail {
            *x = exp(pulp::Scalar::new(), *x - shift);
            sum += *x;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulp::{Arch, WithSimd};

    struct Exp<'a>(&'a mut [f32]);

    impl WithSimd for Exp<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) {
            let (head, tail) = S::as_mut_simd_f32s(self.0);
            for v in head {
                *v = exp(simd, *v);
            }
            for x in tail {
                *x = exp(pulp::Scalar::new(), *x);
            }
        }
    }

    fn exp_all(xs: &[f32]) -> Vec<f32> {
        let mut out = xs.to_vec();
        Arch::new().dispatch(Exp(&mut out));
        out
    }

    #[test]
    fn exp_is_within_a_few_ulps_of_libm() {
        let xs: Vec<f32> = (-87_000..88_000)
            .map(|i| i as f32 * 1e-3 + 3.7e-4)
            .collect();
        for (x, y) in xs.iter().zip(exp_all(&xs)) {
            let want = (*x as f64).exp();
            let rel = ((y as f64 - want) / want).abs();
            assert!(rel < 3e-7, "exp({x}) = {y}, want {want} (rel {rel:e})");
        }
    }

    #[test]
    fn exp_flushes_masked_scores_to_zero() {
        let got = exp_all(&[f32::NEG_INFINITY, -1e30, -90.0, 0.0, -0.0]);
        assert_eq!(got, [0.0, 0.0, 0.0, 1.0, 1.0]);
    }
}
