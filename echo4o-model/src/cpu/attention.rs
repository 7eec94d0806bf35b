//! Grouped-query attention on the CPU, f32, for inference.
//!
//! The work is split into blocks of query rows (every head of a row in the same block, so that a
//! block owns a contiguous run of the output) and spread over the thread pool. In a block each
//! query head computes its scores against the whole key sequence with a
//! register-blocked kernel (the block's score rows stay in the L2 cache: no score matrix per
//! head is ever allocated), adds the mask row, takes an exact softmax with a vectorised `exp`,
//! and multiplies by the values with the same kernel. Keys and values are packed once per call
//! into column panels that every block of every query head of their group reads, so the
//! grouped heads are never expanded.
//!
//! Why our own kernel: burn-flex 0.21's fused attention walks its (batch, head) pairs on one
//! thread and spends much of its time in layout copies around scalar softmax; at the shapes
//! this crate runs on a CPU it reached a quarter of PyTorch's `scaled_dot_product_attention`
//! (BENCHMARKS.md, "Against PyTorch").

use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

use super::simd::exp;
use super::tile::{ROWS, pack_tile, product};

/// Bytes of scores a block keeps (its rows times the padded key length): about a quarter of
/// a core's L2, so that the scores are read back from cache by the softmax and the second
/// product.
const BLOCK_SCORE_BYTES: usize = 192 * 1024;

/// Shape of one attention call: `queries` rows of `heads` query heads over `keys` rows of
/// `kv_heads` key/value heads, each of `head_dim`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dims {
    pub queries: usize,
    pub keys: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// Which keys each query row attends to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Mask<'a> {
    /// Every key.
    Full,
    /// An additive mask `[queries, keys]` shared by all heads (0 attend, -inf masked).
    Additive(&'a [f32]),
    /// Row `i` sees keys `0..=i + keys - queries`: text after the keys already cached, the
    /// structure a causal mask has, without building it.
    Causal,
}

/// Attention of `q` `[queries, heads, head_dim]` over `k`, `v` `[keys, kv_heads, head_dim]`
/// (row-major), with a `mask`, scale
/// `1/sqrt(head_dim)`; query head `h` reads key/value head `h / (heads / kv_heads)`. Returns
/// `[queries, heads, head_dim]`. A row whose every key is masked gives NaN, as the written-out
/// softmax does.
///
/// # Panics
/// If a slice's length disagrees with `dims`, or `heads` is not a multiple of `kv_heads`.
pub(crate) fn attention(q: &[f32], k: &[f32], v: &[f32], mask: Mask<'_>, dims: Dims) -> Vec<f32> {
    let Dims {
        queries,
        keys,
        heads,
        kv_heads,
        head_dim,
    } = dims;
    assert!(
        kv_heads > 0 && heads % kv_heads == 0,
        "{heads} query heads cannot share {kv_heads} key/value heads"
    );
    assert_eq!(q.len(), queries * heads * head_dim, "query length");
    assert_eq!(k.len(), keys * kv_heads * head_dim, "key length");
    assert_eq!(v.len(), keys * kv_heads * head_dim, "value length");
    match mask {
        Mask::Additive(m) => assert_eq!(m.len(), queries * keys, "mask length"),
        Mask::Causal => assert!(keys >= queries, "a causal block after the cached keys"),
        Mask::Full => {}
    }
    let mut out = vec![0.0f32; q.len()];
    if out.is_empty() {
        return out;
    }
    let arch = Arch::new();
    let width = 2 * arch.dispatch(super::Lanes);
    let panels = Panels::pack(k, v, dims, width);
    let padded = keys.next_multiple_of(width);

    // Blocks of query rows, every head of a row in one block so that a block owns a contiguous
    // run of the output: enough blocks to keep every thread busy, each small enough for its
    // score rows to stay in L2.
    let threads = rayon::current_num_threads();
    let by_balance = queries.div_ceil(4 * threads);
    let by_cache = (BLOCK_SCORE_BYTES / (4 * padded)).max(1);
    let rows = by_balance.min(by_cache).next_multiple_of(ROWS).min(queries);
    let attend = |(b, out): (usize, &mut [f32]), scratch: &mut Scratch| {
        arch.dispatch(Block {
            q,
            mask,
            panels: &panels,
            dims,
            width,
            start: b * rows,
            out,
            scratch,
        })
    };
    if queries * keys * heads * head_dim < PARALLEL_WORK {
        let mut scratch = Scratch::default();
        out.chunks_mut(rows * heads * head_dim)
            .enumerate()
            .for_each(|chunk| attend(chunk, &mut scratch));
    } else {
        out.par_chunks_mut(rows * heads * head_dim)
            .enumerate()
            .for_each_init(Scratch::default, |scratch, chunk| attend(chunk, scratch));
    }
    out
}

/// Keys and values in the layout the kernel streams: for each key/value head, keys as panels
/// of `width` keys (`[head_dim][width]`, the transpose, zero past the last key) and values as
/// panels of `width` columns (`[keys][width]`, zero past the head dim).
struct Panels {
    keys: Vec<f32>,
    values: Vec<f32>,
    key_panels: usize,
    value_panels: usize,
}

impl Panels {
    fn pack(k: &[f32], v: &[f32], dims: Dims, width: usize) -> Self {
        let Dims {
            keys: n,
            kv_heads,
            head_dim: d,
            ..
        } = dims;
        let key_panels = n.div_ceil(width);
        let value_panels = d.div_ceil(width);
        let mut keys = vec![0.0f32; kv_heads * key_panels * d * width];
        let mut values = vec![0.0f32; kv_heads * value_panels * n * width];
        for j in 0..n {
            let (p, c) = (j / width, j % width);
            for g in 0..kv_heads {
                let row = &k[(j * kv_heads + g) * d..][..d];
                let panel = (g * key_panels + p) * d * width;
                for (i, x) in row.iter().enumerate() {
                    keys[panel + i * width + c] = *x;
                }
                let row = &v[(j * kv_heads + g) * d..][..d];
                for (p, cols) in row.chunks(width).enumerate() {
                    let at = ((g * value_panels + p) * n + j) * width;
                    values[at..at + cols.len()].copy_from_slice(cols);
                }
            }
        }
        Panels {
            keys,
            values,
            key_panels,
            value_panels,
        }
    }
}

/// Multiply-adds (queries x keys x heads x head dim) below which a call runs on the calling
/// thread: a few tens of microseconds, about what waking the pool costs.
const PARALLEL_WORK: usize = 1 << 19;

/// Buffers a thread reuses from block to block.
#[derive(Default)]
struct Scratch {
    /// `[rows, padded keys]`: scores, then probabilities.
    scores: Vec<f32>,
    /// A packed tile of rows, see [`pack_tile`].
    tile: Vec<f32>,
    /// `1 / sum` of each row's unnormalised probabilities.
    inv_sum: Vec<f32>,
}

/// One block of query rows, all heads: `out` is its run of the output, `[rows, heads, head_dim]`.
struct Block<'a> {
    q: &'a [f32],
    mask: Mask<'a>,
    panels: &'a Panels,
    dims: Dims,
    width: usize,
    start: usize,
    out: &'a mut [f32],
    scratch: &'a mut Scratch,
}

impl WithSimd for Block<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Dims {
            keys,
            heads,
            kv_heads,
            head_dim: d,
            ..
        } = self.dims;
        assert_eq!(
            self.width,
            2 * S::F32_LANES,
            "dispatched to another SIMD level"
        );
        let width = self.width;
        let group = heads / kv_heads;
        let start = self.start;
        let rows = self.out.len() / (heads * d);
        let padded = self.panels.key_panels * width;
        let vecs_per_row = padded / S::F32_LANES;
        let key_panel_len = d * width;
        let value_panel_len = keys * width;
        let scale = 1.0 / (d as f32).sqrt();
        let Scratch {
            scores,
            tile: a_tile,
            inv_sum,
        } = self.scratch;
        scores.resize(rows * padded, 0.0);
        inv_sum.resize(rows, 0.0);
        let scores =
            &mut S::as_mut_simd_f32s(&mut scores[..rows * padded]).0[..rows * vecs_per_row];
        let mut tile = [[simd.splat_f32s(0.0); 2]; ROWS];
        for h in 0..heads {
            let g = h / group;
            let key_panels = &self.panels.keys[g * self.panels.key_panels * key_panel_len..]
                [..self.panels.key_panels * key_panel_len];
            let value_panels = &self.panels.values
                [g * self.panels.value_panels * value_panel_len..]
                [..self.panels.value_panels * value_panel_len];
            // Scores: [rows, padded] = (q * scale) k^T, a tile of rows against every panel of keys.
            for r0 in (0..rows).step_by(ROWS) {
                let m = ROWS.min(rows - r0);
                // Rows of this head are `heads * d` apart in `q`; the scale goes into the tile.
                let first = ((start + r0) * heads + h) * d;
                pack_tile(&self.q[first..], heads * d, m, d, a_tile);
                a_tile.iter_mut().for_each(|x| *x *= scale);
                for (p, panel) in key_panels.chunks_exact(key_panel_len).enumerate() {
                    product(simd, m, a_tile, S::as_simd_f32s(panel).0, &mut tile);
                    for (r, acc) in tile.iter().take(m).enumerate() {
                        let at = (r0 + r) * vecs_per_row + 2 * p;
                        scores[at..at + 2].copy_from_slice(acc);
                    }
                }
            }
            // Mask, softmax; the normaliser is applied to the output rows.
            for (r, row) in scores.chunks_exact_mut(vecs_per_row).enumerate() {
                let flat: &mut [f32] = bytemuck::cast_slice_mut(row);
                flat[keys..].fill(f32::NEG_INFINITY);
                if let Mask::Causal = self.mask {
                    let visible = start + r + 1 + keys - self.dims.queries;
                    flat[visible.min(keys)..keys].fill(f32::NEG_INFINITY);
                }
                if let Mask::Additive(mask) = self.mask {
                    let m = &mask[(start + r) * keys..][..keys];
                    let (mv, mt) = S::as_simd_f32s(m);
                    let (sv, st) = S::as_mut_simd_f32s(&mut flat[..keys]);
                    for (s, m) in sv.iter_mut().zip(mv) {
                        *s = simd.add_f32s(*s, *m);
                    }
                    for (s, m) in st.iter_mut().zip(mt) {
                        *s += m;
                    }
                }
                let mut max = simd.splat_f32s(f32::NEG_INFINITY);
                for s in row.iter() {
                    max = simd.max_f32s(max, *s);
                }
                let max = simd.reduce_max_f32s(max);
                if max == f32::NEG_INFINITY {
                    // Every key masked: NaN, as the written-out softmax gives.
                    inv_sum[r] = f32::NAN;
                    row.fill(simd.splat_f32s(0.0));
                    continue;
                }
                let max = simd.splat_f32s(max);
                let mut sum = simd.splat_f32s(0.0);
                for s in row.iter_mut() {
                    *s = exp(simd, simd.sub_f32s(*s, max));
                    sum = simd.add_f32s(sum, *s);
                }
                inv_sum[r] = 1.0 / simd.reduce_sum_f32s(sum);
            }
            // Output: [rows, d] = p v, a tile of rows against every panel of value columns.
            let probs: &[f32] = bytemuck::cast_slice(scores);
            for r0 in (0..rows).step_by(ROWS) {
                let m = ROWS.min(rows - r0);
                pack_tile(&probs[r0 * padded..], padded, m, keys, a_tile);
                for (p, panel) in value_panels.chunks_exact(value_panel_len).enumerate() {
                    let (c0, cols) = (p * width, width.min(d - p * width));
                    product(simd, m, a_tile, S::as_simd_f32s(panel).0, &mut tile);
                    for (r, acc) in tile.iter().take(m).enumerate() {
                        let inv = simd.splat_f32s(inv_sum[r0 + r]);
                        let scaled = [simd.mul_f32s(acc[0], inv), simd.mul_f32s(acc[1], inv)];
                        let flat: &[f32] = bytemuck::cast_slice(&scaled);
                        let at = ((r0 + r) * heads + h) * d + c0;
                        self.out[at..at + cols].copy_from_slice(&flat[..cols]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook computation in f64.
    fn naive(q: &[f32], k: &[f32], v: &[f32], mask: Option<&[f32]>, dims: Dims) -> Vec<f32> {
        let Dims {
            queries,
            keys,
            heads,
            kv_heads,
            head_dim: d,
        } = dims;
        let group = heads / kv_heads;
        let mut out = vec![0.0f32; queries * heads * d];
        for i in 0..queries {
            for h in 0..heads {
                let g = h / group;
                let qi = &q[(i * heads + h) * d..][..d];
                let scores: Vec<f64> = (0..keys)
                    .map(|j| {
                        let kj = &k[(j * kv_heads + g) * d..][..d];
                        let dot: f64 = qi.iter().zip(kj).map(|(a, b)| *a as f64 * *b as f64).sum();
                        dot / (d as f64).sqrt() + mask.map_or(0.0, |m| m[i * keys + j] as f64)
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = w.iter().sum();
                for c in 0..d {
                    let o: f64 = (0..keys)
                        .map(|j| w[j] * v[(j * kv_heads + g) * d + c] as f64)
                        .sum();
                    out[(i * heads + h) * d + c] = (o / sum) as f32;
                }
            }
        }
        out
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        crate::cpu::test_data(n, seed, 2.0)
    }

    #[test]
    fn matches_the_textbook_on_ragged_shapes() {
        for (queries, keys, heads, kv_heads, head_dim, masked) in [
            (1, 1, 1, 1, 1, false),
            (5, 9, 4, 2, 16, true),
            (7, 7, 2, 2, 8, false),
            (13, 37, 6, 3, 20, true),
            (64, 88, 4, 2, 64, false),
            (40, 130, 8, 1, 72, true),
        ] {
            let dims = Dims {
                queries,
                keys,
                heads,
                kv_heads,
                head_dim,
            };
            let q = data(queries * heads * head_dim, 1);
            let k = data(keys * kv_heads * head_dim, 2);
            let v = data(keys * kv_heads * head_dim, 3);
            let mask: Option<Vec<f32>> = masked.then(|| {
                let off = keys - queries;
                (0..queries)
                    .flat_map(|i| {
                        (0..keys).map(move |j| if j <= i + off { 0.5 } else { f32::NEG_INFINITY })
                    })
                    .collect()
            });
            let got = attention(
                &q,
                &k,
                &v,
                mask.as_deref().map_or(Mask::Full, Mask::Additive),
                dims,
            );
            let want = naive(&q, &k, &v, mask.as_deref(), dims);
            let max_diff = |got: &[f32]| {
                got.iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max)
            };
            let diff = max_diff(&got);
            assert!(diff < 2e-5, "{dims:?} masked {masked}: max diff {diff}");
            if masked {
                // The mask is causal (0.5 where open: a constant shift of every open score),
                // so the causal structure gives the same rows without it.
                let diff = max_diff(&attention(&q, &k, &v, Mask::Causal, dims));
                assert!(diff < 2e-5, "{dims:?} causal: max diff {diff}");
            }
        }
    }

    #[test]
    fn a_fully_masked_row_is_nan_like_the_written_out_softmax() {
        let dims = Dims {
            queries: 2,
            keys: 3,
            heads: 1,
            kv_heads: 1,
            head_dim: 4,
        };
        let mut mask = vec![0.0; 6];
        mask[3..].fill(f32::NEG_INFINITY);
        let out = attention(
            &data(8, 1),
            &data(12, 2),
            &data(12, 3),
            Mask::Additive(&mask),
            dims,
        );
        assert!(out[..4].iter().all(|x| x.is_finite()));
        assert!(out[4..].iter().all(|x| x.is_nan()));
    }
}
