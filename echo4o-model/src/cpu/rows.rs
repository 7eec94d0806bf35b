//! Row-wise kernels of the decoder layer: RMSNorm, Qwen2's per-head q/k RMSNorm followed by
//! RoPE, and the SwiGLU gate. Each is one pass over its rows where burn's graph takes several
//! (square, mean, sqrt, divide, multiply; narrow, negate, concatenate, broadcast), and each
//! rounds as that graph does, operation by operation, so that outputs agree to the last bits
//! but for the order of the sum of squares.

use pulp::Arch;
use rayon::prelude::*;

/// Values below which a kernel stays on the calling thread (waking the pool costs more).
const PARALLEL_VALUES: usize = 1 << 15;

/// Runs `f(row_index, out_row)` over the rows of `out` (each `width` long), in parallel when
/// there is enough work, with the CPU's SIMD features enabled for `f`'s body.
fn for_rows(out: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let arch = Arch::new();
    if out.len() < PARALLEL_VALUES {
        arch.dispatch(|| {
            for (i, row) in out.chunks_exact_mut(width).enumerate() {
                f(i, row);
            }
        });
        return;
    }
    let rows_per_task = (PARALLEL_VALUES / 4 / width).max(1);
    out.par_chunks_mut(rows_per_task * width)
        .enumerate()
        .for_each(|(t, chunk)| {
            arch.dispatch(|| {
                for (i, row) in chunk.chunks_exact_mut(width).enumerate() {
                    f(t * rows_per_task + i, row);
                }
            })
        });
}

/// `out = x / sqrt(mean(x^2) + eps) * gamma` for one row (burn's `RmsNorm` in f32).
#[inline(always)]
fn norm_row(x: &[f32], gamma: &[f32], eps: f32, out: &mut [f32]) {
    // Eight partial sums: a sum LLVM can vectorise (a single running sum is a serial chain).
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    let sum = acc.iter().sum::<f32>() + tail;
    let rms = (sum / x.len() as f32 + eps).sqrt();
    for ((o, v), g) in out.iter_mut().zip(x).zip(gamma) {
        *o = v / rms * g;
    }
}

/// RMSNorm over the last axis, `x` being rows of `gammas`' width: consecutive runs of tokens
/// `(tokens, gamma)`, each token `rows_per_token` rows (the heads of a per-head norm, or 1), so
/// that the experts of a routed sequence norm in one pass without splitting it.
pub(crate) fn rms_norm(x: &[f32], runs: &GammaRuns, rows_per_token: usize, eps: f32) -> Vec<f32> {
    let width = runs.first().map_or(1, |r| r.1.len());
    assert!(
        runs.iter().all(|r| r.1.len() == width),
        "gammas of one width"
    );
    let tokens: usize = runs.iter().map(|r| r.0).sum();
    assert_eq!(x.len(), tokens * rows_per_token * width, "rows of {width}");
    let mut out = vec![0.0f32; x.len()];
    let gamma = RunLookup::new(runs);
    for_rows(&mut out, width, |i, row| {
        norm_row(
            &x[i * width..][..width],
            gamma.of(i / rows_per_token),
            eps,
            row,
        )
    });
    out
}

/// Consecutive runs of tokens `(tokens, gamma)`: which norm weights each token takes.
pub(crate) type GammaRuns<'a> = [(usize, &'a [f32])];

/// The gamma of a token, from consecutive runs of tokens.
struct RunLookup<'a> {
    /// First token of each run, ascending.
    starts: Vec<usize>,
    gammas: Vec<&'a [f32]>,
}

impl<'a> RunLookup<'a> {
    fn new(runs: &[(usize, &'a [f32])]) -> Self {
        let mut at = 0;
        let starts = runs
            .iter()
            .map(|r| {
                let s = at;
                at += r.0;
                s
            })
            .collect();
        RunLookup {
            starts,
            gammas: runs.iter().map(|r| r.1).collect(),
        }
    }

    #[inline(always)]
    fn of(&self, token: usize) -> &'a [f32] {
        // Runs are few (three for an image block), many only in packed training batches.
        self.gammas[self.starts.partition_point(|s| *s <= token) - 1]
    }
}

/// Qwen2's RoPE on one head's row in place (`rotate_half`, non-interleaved): with `h = d / 2`,
/// `x[i] <- x[i] cos[i] - x[i + h] sin[i]`, `x[i + h] <- x[i + h] cos[i + h] + x[i] sin[i + h]`
/// (each pair read before it is written).
#[inline(always)]
fn rope_row(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = x.len() / 2;
    let (x1, x2) = x.split_at_mut(half);
    let (c1, c2) = cos.split_at(half);
    let (s1, s2) = sin.split_at(half);
    for i in 0..half {
        let (a, b) = (x1[i], x2[i]);
        x1[i] = a * c1[i] + (-b) * s1[i];
        x2[i] = b * c2[i] + a * s2[i];
    }
}

/// Qwen2's per-head q/k RMSNorm (`runs` as for [`rms_norm`], in tokens) followed by RoPE on `x`
/// `[len, heads, head_dim]`, with the tables `cos`, `sin` `[len, head_dim]`.
pub(crate) fn norm_rope(
    x: &[f32],
    heads: usize,
    d: usize,
    cos: &[f32],
    sin: &[f32],
    runs: &GammaRuns,
    eps: f32,
) -> Vec<f32> {
    assert_eq!(d % 2, 0, "an even head dim");
    let row_len = heads * d;
    assert_eq!(x.len() % row_len.max(1), 0, "rows of {heads} heads of {d}");
    let len = x.len() / row_len.max(1);
    assert!(
        cos.len() >= len * d && sin.len() >= len * d,
        "cos and sin tables"
    );
    let mut out = vec![0.0f32; x.len()];
    if out.is_empty() {
        return out;
    }
    let gammas = RunLookup::new(runs);
    for_rows(&mut out, row_len, |t, row| {
        let (c, s) = (&cos[t * d..][..d], &sin[t * d..][..d]);
        let src = &x[t * row_len..][..row_len];
        for (head, o) in src.chunks_exact(d).zip(row.chunks_exact_mut(d)) {
            norm_row(head, gammas.of(t), eps, o);
            rope_row(o, c, s);
        }
    });
    out
}

/// Qwen2's SwiGLU gate, `silu(gate) * up = gate / (1 + exp(-gate)) * up`, elementwise.
pub(crate) fn silu_mul(gate: &[f32], up: &[f32]) -> Vec<f32> {
    assert_eq!(gate.len(), up.len(), "gate and up");
    let mut out = vec![0.0f32; gate.len()];
    if out.len() < PARALLEL_VALUES {
        super::simd::silu_mul(gate, up, &mut out);
        return out;
    }
    // Chunks the size of `for_rows`' tasks; the kernel is elementwise.
    let chunk = PARALLEL_VALUES / 4;
    out.par_chunks_mut(chunk).enumerate().for_each(|(i, o)| {
        let at = i * chunk;
        super::simd::silu_mul(&gate[at..][..o.len()], &up[at..][..o.len()], o)
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        crate::cpu::test_data(n, seed, 4.0)
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    fn norm_ref(x: &[f32], gamma: &[f32], eps: f32) -> Vec<f32> {
        x.chunks(gamma.len())
            .flat_map(|r| {
                let ms = r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / r.len() as f64;
                let rms = (ms + eps as f64).sqrt();
                r.iter()
                    .zip(gamma)
                    .map(move |(v, g)| (*v as f64 / rms * *g as f64) as f32)
            })
            .collect()
    }

    #[test]
    fn rms_norm_matches_the_formula() {
        for (rows, width) in [(1, 1), (3, 7), (5, 64), (300, 512)] {
            let x = data(rows * width, 1);
            let gamma = data(width, 2);
            let got = rms_norm(&x, &[(rows, &gamma[..])], 1, 1e-6);
            assert!(
                max_diff(&got, &norm_ref(&x, &gamma, 1e-6)) < 1e-5,
                "{rows}x{width}"
            );
        }
    }

    #[test]
    fn rms_norm_takes_each_runs_gamma_for_every_row_of_its_tokens() {
        let (heads, width) = (3, 8);
        let (g1, g2) = (data(width, 11), data(width, 12));
        let runs = [(1, &g1[..]), (4, &g2[..]), (2, &g1[..])];
        let x = data(7 * heads * width, 13);
        let got = rms_norm(&x, &runs, heads, 1e-6);
        let rows = |t0: usize, t1: usize| &x[t0 * heads * width..t1 * heads * width];
        let want: Vec<f32> = [
            norm_ref(rows(0, 1), &g1, 1e-6),
            norm_ref(rows(1, 5), &g2, 1e-6),
            norm_ref(rows(5, 7), &g1, 1e-6),
        ]
        .concat();
        assert!(max_diff(&got, &want) < 1e-5);
    }

    #[test]
    fn norm_rope_norms_each_head_then_rotates_each_half() {
        // Head dims of the models (16, 64) and one above any fixed-size buffer (320).
        for (len, heads, d) in [(37, 3, 16), (9, 2, 64), (5, 2, 320)] {
            let x = data(len * heads * d, 3);
            let (cos, sin) = (data(len * d, 4), data(len * d, 5));
            let gamma = data(d, 6);
            let got = norm_rope(&x, heads, d, &cos, &sin, &[(len, &gamma[..])], 1e-6);
            let src = norm_ref(&x, &gamma, 1e-6);
            let mut want = vec![0.0f32; x.len()];
            for t in 0..len {
                for h in 0..heads {
                    let at = (t * heads + h) * d;
                    for i in 0..d {
                        let rot = if i < d / 2 {
                            -src[at + i + d / 2]
                        } else {
                            src[at + i - d / 2]
                        };
                        want[at + i] = src[at + i] * cos[t * d + i] + rot * sin[t * d + i];
                    }
                }
            }
            assert!(max_diff(&got, &want) < 1e-4, "{len}x{heads}x{d}");
        }
    }

    #[test]
    fn silu_mul_matches_the_formula() {
        for n in [1, 15, 1024, 70_001] {
            let (g, u) = (data(n, 7), data(n, 8));
            let got = silu_mul(&g, &u);
            let want: Vec<f32> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| (*g as f64 / (1.0 + (-*g as f64).exp()) * *u as f64) as f32)
                .collect();
            assert!(max_diff(&got, &want) < 1e-5, "{n}");
        }
    }
}
