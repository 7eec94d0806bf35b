//! Attention over packed training examples, forward and backward: each segment's rows attend to
//! a prefix of their own segment (`PackedSegments`), grouped-query heads read their key/value
//! head in place, and the forward pass keeps each segment's probabilities for the backward pass
//! (training's examples are tens of rows: a few thousand values per example and head, less than
//! one activation of a linear layer).
//!
//! The examples of a training batch are short (tens of rows), so the work is one segment per
//! task over the pool, with the segment's rows gathered into contiguous buffers: at these sizes
//! the cost of burn's graph is its operations (a dozen per segment and layer, each with a
//! backward), not the arithmetic this does in one pass.

use pulp::Arch;
use rayon::prelude::*;

use crate::packing::{PackedSegments, Segment};

/// Head layout: `q` is `[rows, heads, head_dim]`, `k` and `v` `[rows, kv_heads, head_dim]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl Heads {
    fn scale(self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }

    /// The key/value head query head `h` reads.
    fn kv_of(self, h: usize) -> usize {
        h / (self.heads / self.kv_heads)
    }
}

/// What the forward pass returns: the output `[rows, heads * head_dim]` and, per segment of `n`
/// rows, its attention probabilities `[heads, n, n]` (zero past each row's prefix), which the
/// backward pass needs.
#[derive(Debug, Clone)]
pub(crate) struct Forward {
    pub out: Vec<f32>,
    pub probs: Vec<Vec<f32>>,
}

/// The gradients of `q`, `k` and `v`, in their shapes.
#[derive(Debug, Clone)]
pub(crate) struct Grads {
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums so that LLVM vectorises the sum.
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y += a * x`.
#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// Rows `rows` of `x` (each `width` wide), gathered in order.
fn gather(x: &[f32], rows: &[usize], width: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * width);
    for &r in rows {
        out.extend_from_slice(&x[r * width..(r + 1) * width]);
    }
    out
}

/// Writes each row of `local` (segment order) to its packed row of `x`.
fn scatter(x: &mut [f32], rows: &[usize], width: usize, local: &[f32]) {
    for (&r, row) in rows.iter().zip(local.chunks_exact(width)) {
        x[r * width..(r + 1) * width].copy_from_slice(row);
    }
}

/// Attention of every segment: row `i` of a segment attends to the segment's first
/// `visible[i]` rows with scale `1/sqrt(head_dim)`.
pub(crate) fn forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    segments: &PackedSegments,
    heads: Heads,
) -> Forward {
    let (h, kvh, d) = (heads.heads, heads.kv_heads, heads.head_dim);
    let arch = Arch::new();
    let list: Vec<Segment<'_>> = segments.segments().collect();
    let results: Vec<_> = list
        .into_par_iter()
        .map(|seg| {
            let (q, k, v) = (
                gather(q, seg.rows, h * d),
                gather(k, seg.rows, kvh * d),
                gather(v, seg.rows, kvh * d),
            );
            let visible = seg.visible;
            (
                seg,
                arch.dispatch(ForwardSegment {
                    q: &q,
                    k: &k,
                    v: &v,
                    visible,
                    heads,
                }),
            )
        })
        .collect();
    let mut fwd = Forward {
        out: vec![0.0; segments.len() * h * d],
        probs: Vec::with_capacity(results.len()),
    };
    for (seg, (out, probs)) in results {
        scatter(&mut fwd.out, seg.rows, h * d, &out);
        fwd.probs.push(probs);
    }
    fwd
}

/// One segment's forward pass over its gathered rows (a `WithSimd` operation, so that the loops
/// compile with the CPU's SIMD features).
struct ForwardSegment<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    visible: &'a [usize],
    heads: Heads,
}

impl pulp::WithSimd for ForwardSegment<'_> {
    type Output = (Vec<f32>, Vec<f32>);

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> Self::Output {
        let Self {
            q,
            k,
            v,
            visible,
            heads,
        } = self;
        let (h, kvh, d) = (heads.heads, heads.kv_heads, heads.head_dim);
        let scale = heads.scale();
        let n = visible.len();
        let mut out = vec![0.0f32; n * h * d];
        let mut probs = vec![0.0f32; h * n * n];
        for hh in 0..h {
            let g = heads.kv_of(hh);
            for (i, &vis) in visible.iter().enumerate() {
                let qi = &q[(i * h + hh) * d..][..d];
                let p = &mut probs[(hh * n + i) * n..][..vis];
                let mut max = f32::NEG_INFINITY;
                for (j, pj) in p.iter_mut().enumerate() {
                    *pj = dot(qi, &k[(j * kvh + g) * d..][..d]) * scale;
                    max = max.max(*pj);
                }
                let inv = 1.0 / super::simd::exp_shifted_with(simd, p, max);
                let o = &mut out[(i * h + hh) * d..][..d];
                for (j, pj) in p.iter_mut().enumerate() {
                    *pj *= inv;
                    axpy(o, *pj, &v[(j * kvh + g) * d..][..d]);
                }
            }
        }
        (out, probs)
    }
}

/// The gradients of [`forward`] given the gradient `d_out` of its output, from the inputs and
/// what the forward pass returned.
pub(crate) fn backward(
    (q, k, v): (&[f32], &[f32], &[f32]),
    fwd: (&[f32], &[Vec<f32>]),
    d_out: &[f32],
    segments: &PackedSegments,
    heads: Heads,
) -> Grads {
    let (out, probs) = fwd;
    let (h, kvh, d) = (heads.heads, heads.kv_heads, heads.head_dim);
    let arch = Arch::new();
    let list: Vec<(Segment<'_>, &Vec<f32>)> = segments.segments().zip(probs).collect();
    let results: Vec<_> = list
        .into_par_iter()
        .map(|(seg, probs)| {
            let g = |x: &[f32], width| gather(x, seg.rows, width);
            let (q, k, v) = (g(q, h * d), g(k, kvh * d), g(v, kvh * d));
            let (out, d_out) = (g(out, h * d), g(d_out, h * d));
            let op = BackwardSegment {
                q: &q,
                k: &k,
                v: &v,
                out: &out,
                d_out: &d_out,
                probs,
                visible: seg.visible,
                heads,
            };
            (seg, arch.dispatch(op))
        })
        .collect();
    let mut grads = Grads {
        q: vec![0.0; segments.len() * h * d],
        k: vec![0.0; segments.len() * kvh * d],
        v: vec![0.0; segments.len() * kvh * d],
    };
    for (seg, (dq, dk, dv)) in results {
        scatter(&mut grads.q, seg.rows, h * d, &dq);
        scatter(&mut grads.k, seg.rows, kvh * d, &dk);
        scatter(&mut grads.v, seg.rows, kvh * d, &dv);
    }
    grads
}

/// One segment's backward pass over its gathered rows: with `delta_i = dO_i . O_i`,
/// `dS_ij = P_ij (dO_i . V_j - delta_i)`, `dQ_i = scale sum_j dS_ij K_j`,
/// `dK_j = scale sum_i dS_ij Q_i`, `dV_j = sum_i P_ij dO_i`.
struct BackwardSegment<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    out: &'a [f32],
    d_out: &'a [f32],
    probs: &'a [f32],
    visible: &'a [usize],
    heads: Heads,
}

impl pulp::WithSimd for BackwardSegment<'_> {
    type Output = (Vec<f32>, Vec<f32>, Vec<f32>);

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
        let Self {
            q,
            k,
            v,
            out,
            d_out,
            probs,
            visible,
            heads,
        } = self;
        let (h, kvh, d) = (heads.heads, heads.kv_heads, heads.head_dim);
        let scale = heads.scale();
        let n = visible.len();
        let mut dq = vec![0.0f32; n * h * d];
        let mut dk = vec![0.0f32; n * kvh * d];
        let mut dv = vec![0.0f32; n * kvh * d];
        for hh in 0..h {
            let g = heads.kv_of(hh);
            for (i, &vis) in visible.iter().enumerate() {
                let at = (i * h + hh) * d;
                let (qi, doi) = (&q[at..at + d], &d_out[at..at + d]);
                let delta = dot(doi, &out[at..at + d]);
                let p = &probs[(hh * n + i) * n..][..vis];
                let dqi = &mut dq[at..at + d];
                for (j, &pj) in p.iter().enumerate() {
                    let kv_at = (j * kvh + g) * d;
                    let dp = dot(doi, &v[kv_at..kv_at + d]);
                    let ds = pj * (dp - delta) * scale;
                    axpy(dqi, ds, &k[kv_at..kv_at + d]);
                    axpy(&mut dk[kv_at..kv_at + d], ds, qi);
                    axpy(&mut dv[kv_at..kv_at + d], pj, doi);
                }
            }
        }
        (dq, dk, dv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_data;
    use crate::packing::Split::{Causal, Full};

    /// The loss `sum(out * w)` in f64 written out: scores, masked softmax, weighted values.
    fn loss_f64(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        w: &[f32],
        segments: &PackedSegments,
        heads: Heads,
    ) -> f64 {
        let Heads {
            heads: h,
            kv_heads: kvh,
            head_dim: d,
        } = heads;
        let scale = 1.0 / (d as f64).sqrt();
        let mut loss = 0.0;
        for seg in segments.segments() {
            for (i, &ri) in seg.rows.iter().enumerate() {
                for hh in 0..h {
                    let g = hh / (h / kvh);
                    let s: Vec<f64> = seg.rows[..seg.visible[i]]
                        .iter()
                        .map(|&rj| {
                            (0..d)
                                .map(|c| {
                                    f64::from(q[(ri * h + hh) * d + c])
                                        * f64::from(k[(rj * kvh + g) * d + c])
                                })
                                .sum::<f64>()
                                * scale
                        })
                        .collect();
                    let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = s.iter().map(|x| (x - max).exp()).sum();
                    for c in 0..d {
                        let o: f64 = seg.rows[..seg.visible[i]]
                            .iter()
                            .zip(&s)
                            .map(|(&rj, x)| {
                                (x - max).exp() / z * f64::from(v[(rj * kvh + g) * d + c])
                            })
                            .sum();
                        loss += o * f64::from(w[(ri * h + hh) * d + c]);
                    }
                }
            }
        }
        loss
    }

    fn packed() -> PackedSegments {
        // Two examples (reference + text + target; text + target) and a lone image, with the
        // rows scattered as a regrouping by expert would leave them.
        let p = PackedSegments::new(&[
            vec![Full(3), Causal(4), Full(5)],
            vec![Causal(2), Full(3)],
            vec![Full(2)],
        ]);
        let n = p.len();
        let to: Vec<usize> = (0..n).map(|r| (r * 7) % n).collect();
        p.moved(&to)
    }

    #[test]
    fn forward_matches_the_written_out_softmax_and_backward_its_derivative() {
        let segs = packed();
        let n = segs.len();
        assert_eq!(
            n, 19,
            "7 is coprime with the row count, so the move permutes"
        );
        let heads = Heads {
            heads: 4,
            kv_heads: 2,
            head_dim: 12,
        };
        let (qw, kw) = (4 * 12, 2 * 12);
        let (q, k, v) = (
            test_data(n * qw, 1, 1.5),
            test_data(n * kw, 2, 1.5),
            test_data(n * kw, 3, 1.0),
        );
        let w = test_data(n * qw, 4, 1.0);
        let fwd = forward(&q, &k, &v, &segs, heads);
        // The loss through the kernel equals the written-out loss.
        let loss: f64 = fwd.out.iter().zip(&w).map(|(o, w)| f64::from(o * w)).sum();
        let reference = loss_f64(&q, &k, &v, &w, &segs, heads);
        assert!((loss - reference).abs() < 1e-4, "{loss} vs {reference}");
        // Each gradient against central differences of the f64 loss.
        let grads = backward((&q, &k, &v), (&fwd.out, &fwd.probs), &w, &segs, heads);
        let eps = 1e-3f32;
        let check = |which: usize, grad: &[f32]| {
            for idx in (0..grad.len()).step_by(5) {
                let bumped = |delta: f32| {
                    let (mut q2, mut k2, mut v2) = (q.clone(), k.clone(), v.clone());
                    [&mut q2, &mut k2, &mut v2][which][idx] += delta;
                    loss_f64(&q2, &k2, &v2, &w, &segs, heads)
                };
                let numeric = (bumped(eps) - bumped(-eps)) / (2.0 * f64::from(eps));
                assert!(
                    (numeric - f64::from(grad[idx])).abs() < 2e-3,
                    "input {which} value {idx}: numeric {numeric}, kernel {}",
                    grad[idx]
                );
            }
        };
        check(0, &grads.q);
        check(1, &grads.k);
        check(2, &grads.v);
    }
}
