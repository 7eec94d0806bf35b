//! The backward passes of the row kernels (`rows`), for training on `Autodiff<Flex>`: each one
//! pass over the rows where burn's graph differentiates five to ten operations (and RoPE's
//! broadcast tables, read through strided views, cost more than the rest of the layer's
//! elementwise work together).

use pulp::Arch;

/// Gradients of a norm: of its input and of each of its gammas.
#[derive(Debug, Clone)]
pub(crate) struct NormGrads {
    pub x: Vec<f32>,
    pub gammas: Vec<Vec<f32>>,
}

/// Where a routed norm's weights come from: `gammas` (one width), and consecutive runs of
/// tokens `(tokens, index into gammas)`, each token `rows_per_token` rows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoutedGammas<'a> {
    pub gammas: &'a [&'a [f32]],
    pub runs: &'a [(usize, usize)],
    pub rows_per_token: usize,
}

/// RoPE's tables `[tokens, head_dim]`, when the norm is followed by it (q/k norms).
pub(crate) type Rope<'a> = Option<(&'a [f32], &'a [f32])>;

/// The gradient through RoPE (`rows::rope_row`), in place: the rotation's transpose.
#[inline(always)]
fn unrope_row(dy: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = dy.len() / 2;
    let (d1, d2) = dy.split_at_mut(half);
    let (c1, c2) = cos.split_at(half);
    let (s1, s2) = sin.split_at(half);
    for i in 0..half {
        let (a, b) = (d1[i], d2[i]);
        d1[i] = a * c1[i] + b * s2[i];
        d2[i] = b * c2[i] - a * s1[i];
    }
}

/// The backward pass of `rows::rms_norm` (`rope` `None`) and `rows::norm_rope` (`rope` the
/// tables, `rows_per_token` the heads): `dy` is the gradient of the output, `x` the input.
pub(crate) fn rms_norm_backward(
    x: &[f32],
    dy: &[f32],
    routed: RoutedGammas<'_>,
    eps: f32,
    rope: Rope<'_>,
) -> NormGrads {
    let width = routed.gammas.first().map_or(1, |g| g.len());
    assert!(
        routed.gammas.iter().all(|g| g.len() == width),
        "gammas of one width"
    );
    let tokens: usize = routed.runs.iter().map(|r| r.0).sum();
    assert_eq!(
        x.len(),
        tokens * routed.rows_per_token * width,
        "rows of {width}"
    );
    assert_eq!(dy.len(), x.len(), "the gradient has the input's shape");
    let mut grads = NormGrads {
        x: vec![0.0; x.len()],
        gammas: vec![vec![0.0; width]; routed.gammas.len()],
    };
    Arch::new().dispatch(NormBackward {
        x,
        dy,
        routed,
        eps,
        rope,
        grads: &mut grads,
    });
    grads
}

/// The loop of [`rms_norm_backward`] as a `WithSimd` operation (so that it compiles with the
/// CPU's SIMD features; a closure passed to `dispatch` need not be inlined into them).
struct NormBackward<'a> {
    x: &'a [f32],
    dy: &'a [f32],
    routed: RoutedGammas<'a>,
    eps: f32,
    rope: Rope<'a>,
    grads: &'a mut NormGrads,
}

impl pulp::WithSimd for NormBackward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let Self {
            x,
            dy,
            routed,
            eps,
            rope,
            grads,
        } = self;
        let width = grads.gammas.first().map_or(1, |g| g.len());
        let row_len = routed.rows_per_token * width;
        let mut dz = vec![0.0f32; width];
        let mut token = 0;
        for &(n, gi) in routed.runs {
            let gamma = routed.gammas[gi];
            let dgamma = &mut grads.gammas[gi];
            for t in token..token + n {
                for r in 0..routed.rows_per_token {
                    let at = t * row_len + r * width;
                    let (xr, dxr) = (&x[at..at + width], &mut grads.x[at..at + width]);
                    dz.copy_from_slice(&dy[at..at + width]);
                    if let Some((cos, sin)) = rope {
                        unrope_row(
                            &mut dz,
                            &cos[t * width..][..width],
                            &sin[t * width..][..width],
                        );
                    }
                    norm_row_backward(xr, &dz, gamma, eps, dxr, dgamma);
                }
            }
            token += n;
        }
    }
}

/// One row of RMSNorm backward: `y = x r g` with `r = 1/sqrt(mean(x^2) + eps)`, so
/// `dx = r (dy g - x r^2 mean(dy g x))` and `dgamma += dy x r`.
#[inline(always)]
fn norm_row_backward(
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    eps: f32,
    dx: &mut [f32],
    dgamma: &mut [f32],
) {
    let n = x.len() as f32;
    let (mut sq, mut dot) = ([0.0f32; 8], [0.0f32; 8]);
    let chunks = x
        .chunks_exact(8)
        .zip(dy.chunks_exact(8))
        .zip(gamma.chunks_exact(8));
    let tail = x.len() - x.len() % 8;
    for ((xc, dc), gc) in chunks {
        for l in 0..8 {
            sq[l] += xc[l] * xc[l];
            dot[l] += dc[l] * gc[l] * xc[l];
        }
    }
    let mut sum_sq = sq.iter().sum::<f32>();
    let mut sum_dot = dot.iter().sum::<f32>();
    for i in tail..x.len() {
        sum_sq += x[i] * x[i];
        sum_dot += dy[i] * gamma[i] * x[i];
    }
    let r = 1.0 / (sum_sq / n + eps).sqrt();
    let k = r * r * sum_dot / n;
    for i in 0..x.len() {
        dx[i] = r * (dy[i] * gamma[i] - x[i] * k);
        dgamma[i] += dy[i] * x[i] * r;
    }
}

/// The backward pass of `rows::silu_mul`: with `s = sigmoid(gate)`,
/// `d gate = dy up s (1 + gate (1 - s))` and `d up = dy gate s`.
pub(crate) fn silu_mul_backward(gate: &[f32], up: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    assert!(
        gate.len() == up.len() && up.len() == dy.len(),
        "gate, up and dy"
    );
    let (mut dg, mut du) = (vec![0.0f32; gate.len()], vec![0.0f32; gate.len()]);
    Arch::new().dispatch(SiluMulBackward {
        gate,
        up,
        dy,
        dg: &mut dg,
        du: &mut du,
    });
    (dg, du)
}

/// The loop of [`silu_mul_backward`], vectorised with the exponential of `simd`.
struct SiluMulBackward<'a> {
    gate: &'a [f32],
    up: &'a [f32],
    dy: &'a [f32],
    dg: &'a mut [f32],
    du: &'a mut [f32],
}

impl pulp::WithSimd for SiluMulBackward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Self {
            gate,
            up,
            dy,
            dg,
            du,
        } = self;
        let lanes = S::F32_LANES;
        let body = gate.len() / lanes * lanes;
        let (one, zero) = (simd.splat_f32s(1.0), simd.splat_f32s(0.0));
        let (g_v, _) = S::as_simd_f32s(&gate[..body]);
        let (u_v, _) = S::as_simd_f32s(&up[..body]);
        let (d_v, _) = S::as_simd_f32s(&dy[..body]);
        let (dg_v, _) = S::as_mut_simd_f32s(&mut dg[..body]);
        let (du_v, _) = S::as_mut_simd_f32s(&mut du[..body]);
        for ((((g, u), d), dgo), duo) in g_v.iter().zip(u_v).zip(d_v).zip(dg_v).zip(du_v) {
            let e = super::simd::exp(simd, simd.sub_f32s(zero, *g));
            let s = simd.div_f32s(one, simd.add_f32s(one, e));
            let ds = simd.mul_f32s(*d, s);
            // d * u * s * (1 + g (1 - s))
            let inner = simd.mul_add_e_f32s(*g, simd.sub_f32s(one, s), one);
            *dgo = simd.mul_f32s(simd.mul_f32s(ds, *u), inner);
            *duo = simd.mul_f32s(ds, *g);
        }
        for i in body..gate.len() {
            let (g, u, d) = (gate[i], up[i], dy[i]);
            let s = 1.0 / (1.0 + (-g).exp());
            dg[i] = d * u * s * (1.0 + g * (1.0 - s));
            du[i] = d * g * s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::rows;
    use crate::cpu::test_data;

    /// `sum(f(x) * w)` and its numeric gradient in x, by central differences.
    fn numeric(f: &dyn Fn(&[f32]) -> Vec<f32>, x: &[f32], w: &[f32], i: usize) -> f64 {
        let eps = 1e-3f32;
        let at = |delta: f32| {
            let mut x2 = x.to_vec();
            x2[i] += delta;
            f(&x2)
                .iter()
                .zip(w)
                .map(|(y, w)| f64::from(y * w))
                .sum::<f64>()
        };
        (at(eps) - at(-eps)) / (2.0 * f64::from(eps))
    }

    fn close(numeric: f64, kernel: f32, what: &str) {
        assert!(
            (numeric - f64::from(kernel)).abs() < 2e-2 * (1.0 + numeric.abs()),
            "{what}: numeric {numeric}, kernel {kernel}"
        );
    }

    #[test]
    fn routed_norm_and_norm_rope_backward_are_the_derivatives() {
        let (tokens, heads, d) = (5, 3, 8);
        let g0 = test_data(d, 7, 1.0);
        let g1 = test_data(d, 8, 1.0);
        let runs_idx = [(2, 0), (1, 1), (2, 0)];
        let gammas: [&[f32]; 2] = [&g0, &g1];
        let runs: Vec<(usize, &[f32])> = runs_idx.iter().map(|&(n, i)| (n, gammas[i])).collect();
        let x = test_data(tokens * heads * d, 1, 2.0);
        let w = test_data(x.len(), 2, 1.0);
        let (cos, sin) = (test_data(tokens * d, 3, 1.0), test_data(tokens * d, 4, 1.0));
        let routed = RoutedGammas {
            gammas: &gammas,
            runs: &runs_idx,
            rows_per_token: heads,
        };
        for rope in [false, true] {
            let f = |x: &[f32]| {
                if rope {
                    rows::norm_rope(x, heads, d, &cos, &sin, &runs, 1e-6)
                } else {
                    rows::rms_norm(x, &runs, heads, 1e-6)
                }
            };
            let tables = rope.then_some((&cos[..], &sin[..]));
            let g = rms_norm_backward(&x, &w, routed, 1e-6, tables);
            for i in (0..x.len()).step_by(7) {
                close(numeric(&f, &x, &w, i), g.x[i], "dx");
            }
            // Gamma 1 serves token 2 only; each gamma's gradient against a bumped gamma.
            for (gi, gamma) in gammas.iter().enumerate() {
                for c in 0..d {
                    let bumped = |delta: f32| {
                        let mut gs = [g0.clone(), g1.clone()];
                        gs[gi][c] += delta;
                        let runs: Vec<(usize, &[f32])> =
                            runs_idx.iter().map(|&(n, i)| (n, &gs[i][..])).collect();
                        let y = if rope {
                            rows::norm_rope(&x, heads, d, &cos, &sin, &runs, 1e-6)
                        } else {
                            rows::rms_norm(&x, &runs, heads, 1e-6)
                        };
                        y.iter().zip(&w).map(|(y, w)| f64::from(y * w)).sum::<f64>()
                    };
                    let n = (bumped(1e-3) - bumped(-1e-3)) / 2e-3;
                    close(
                        n,
                        g.gammas[gi][c],
                        &format!("dgamma {gi}[{c}] (gamma {})", gamma[c]),
                    );
                }
            }
        }
    }

    #[test]
    fn silu_mul_backward_is_the_derivative() {
        let gate = test_data(37, 1, 4.0);
        let up = test_data(37, 2, 2.0);
        let w = test_data(37, 3, 1.0);
        let (dg, du) = silu_mul_backward(&gate, &up, &w);
        for i in 0..37 {
            close(
                numeric(&|g| rows::silu_mul(g, &up), &gate, &w, i),
                dg[i],
                "d gate",
            );
            close(
                numeric(&|u| rows::silu_mul(&gate, u), &up, &w, i),
                du[i],
                "d up",
            );
        }
    }
}
