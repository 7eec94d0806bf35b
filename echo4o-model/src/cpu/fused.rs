//! The kernels as tensor operations: each takes the kernel on a CPU backend in f32 (on
//! `Autodiff<Flex>` as an autodiff operation with its own backward pass), and burn's own graph
//! everywhere else (CUDA, bf16, autodiff over other backends), so model code calls one function
//! whatever the backend.

use burn::nn::RmsNorm;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};

use std::sync::Arc;

use super::attention::Mask;
use super::host::HostF32;
use super::rows;
use crate::packing::PackedSegments;

/// Whether the forward-only kernels serve a computation on `device` over tensors of `dtypes`:
/// burn's CPU backends (Flex, ndarray), f32, not recorded for autodiff (`Autodiff<Flex>` takes
/// the operations of `cpu::autodiff`, which carry their backward; any other autodiff backend
/// keeps burn's graph).
pub(crate) fn serves<B: Backend>(device: &B::Device, dtypes: &[DType]) -> bool {
    matches!(B::name(device).as_str(), "flex" | "ndarray")
        && !B::ad_enabled(device)
        && dtypes.iter().all(|d| *d == DType::F32)
}

/// RMSNorm of a routed sequence over the last axis: `runs` are consecutive runs of `x`'s first
/// axis, `(tokens, norm)`, each normed by its own module, in one pass on the CPU (no split and
/// concatenation per expert); `reference` is the graph to take elsewhere.
pub(crate) fn rms_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    runs: &[(usize, &RmsNorm<B>)],
    reference: impl FnOnce(Tensor<B, D>) -> Tensor<B, D>,
) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match super::autodiff::routed_norm(x, runs, None) {
        Ok(y) => return y,
        Err(x) => x,
    };
    let device = x.device();
    let dims = x.dims();
    let eps = (D >= 2)
        .then(|| host_norms(&device, x.dtype(), runs, dims[0], dims[D - 1]))
        .flatten();
    let Some(eps) = eps else {
        // Also for a 1-D `x`: its one axis is the normed one, with no tokens to route.
        return reference(x);
    };
    let rows_per_token = dims[1..D - 1].iter().product::<usize>();
    let gammas = HostGammas::new(runs);
    let xh = HostF32::new(x);
    match (xh.as_f32(), gammas.runs()) {
        (Some(x), Some(runs)) => {
            let out = rows::rms_norm(x, &runs, rows_per_token, eps);
            Tensor::from_data(TensorData::new(out, dims), &device)
        }
        _ => reference(xh.into_tensor(&device)),
    }
}

/// Qwen2's per-head q/k RMSNorm (`runs` as for [`rms_norm`]) followed by RoPE (non-interleaved
/// `rotate_half`, f32 tables `cos`, `sin` `[len, head_dim]`) on `x` `[len, heads, head_dim]`, in
/// one pass on the CPU; `reference` is the graph to take elsewhere.
pub(crate) fn norm_rope<B: Backend>(
    x: Tensor<B, 3>,
    runs: &[(usize, &RmsNorm<B>)],
    cos: &Tensor<B, 2>,
    sin: &Tensor<B, 2>,
    reference: impl FnOnce(Tensor<B, 3>) -> Tensor<B, 3>,
) -> Tensor<B, 3> {
    #[cfg(feature = "flex")]
    let x = match super::autodiff::routed_norm(x, runs, Some((cos, sin))) {
        Ok(y) => return y,
        Err(x) => x,
    };
    let device = x.device();
    let [len, heads, d] = x.dims();
    let tables_f32 = cos.dtype() == DType::F32 && sin.dtype() == DType::F32;
    let eps = host_norms(&device, x.dtype(), runs, len, d).filter(|_| tables_f32);
    let Some(eps) = eps else {
        return reference(x);
    };
    let gammas = HostGammas::new(runs);
    let (xh, ch, sh) = (
        HostF32::new(x),
        HostF32::new(cos.clone()),
        HostF32::new(sin.clone()),
    );
    match (xh.as_f32(), ch.as_f32(), sh.as_f32(), gammas.runs()) {
        (Some(x), Some(c), Some(s), Some(runs)) => {
            let out = rows::norm_rope(x, heads, d, c, s, &runs, eps);
            Tensor::from_data(TensorData::new(out, [len, heads, d]), &device)
        }
        _ => reference(xh.into_tensor(&device)),
    }
}

/// The gammas of runs of norms on the host, `(tokens, gamma)` in run order.
struct HostGammas(Vec<(usize, HostF32)>);

impl HostGammas {
    fn new<B: Backend>(runs: &[(usize, &RmsNorm<B>)]) -> Self {
        HostGammas(
            runs.iter()
                .map(|r| (r.0, HostF32::new(r.1.gamma.val())))
                .collect(),
        )
    }

    /// The runs as slices, if every gamma is f32 on the host.
    fn runs(&self) -> Option<Vec<(usize, &[f32])>> {
        self.0
            .iter()
            .map(|(n, g)| g.as_f32().map(|g| (*n, g)))
            .collect()
    }
}

/// The epsilon the kernels use for `runs` of norms over `tokens` tokens of `width`, if they serve
/// them: a CPU backend, f32 throughout, runs covering the tokens, every gamma `width` wide, one
/// epsilon for all (as one config gives).
fn host_norms<B: Backend>(
    device: &B::Device,
    dtype: DType,
    runs: &[(usize, &RmsNorm<B>)],
    tokens: usize,
    width: usize,
) -> Option<f32> {
    let mut dtypes = vec![dtype];
    dtypes.extend(runs.iter().map(|r| r.1.gamma.val().dtype()));
    let eps = runs.first()?.1.epsilon;
    let fits = runs.iter().map(|r| r.0).sum::<usize>() == tokens
        && runs
            .iter()
            .all(|r| r.1.gamma.dims() == [width] && r.1.epsilon == eps);
    (fits && serves::<B>(device, &dtypes)).then_some(eps as f32)
}

/// Grouped-query attention of `q` `[lq, heads, hd]` over `k`, `v` `[lk, kv_heads, hd]` with an
/// optional additive `mask` `[lq, lk]`, scale `1/sqrt(hd)`, as `[lq, heads * hd]`: the CPU
/// kernel where it serves, `reference` (the written-out graph) elsewhere.
pub(crate) fn attention<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    mask: Option<Tensor<B, 2>>,
    reference: impl FnOnce(
        Tensor<B, 3>,
        Tensor<B, 3>,
        Tensor<B, 3>,
        Option<Tensor<B, 2>>,
    ) -> Tensor<B, 2>,
) -> Tensor<B, 2> {
    let device = q.device();
    let mut dtypes = vec![q.dtype(), k.dtype(), v.dtype()];
    dtypes.extend(mask.as_ref().map(|m| m.dtype()));
    if !serves::<B>(&device, &dtypes) {
        return reference(q, k, v, mask);
    }
    let mh = mask.map(HostF32::new);
    let host_mask = match &mh {
        None => Some(Mask::Full),
        Some(m) => m.as_f32().map(Mask::Additive),
    };
    let Some(host_mask) = host_mask else {
        unreachable!("an f32 mask of a CPU backend reads as an f32 slice")
    };
    match host_attention(q, k, v, host_mask) {
        Ok(out) => out,
        Err((q, k, v)) => reference(q, k, v, mh.map(|m| m.into_tensor(&device))),
    }
}

/// [`attention`] with a causal mask after the keys already cached (row `i` of `q` sees keys
/// `0..=i + lk - lq`), which the CPU kernel applies from its structure instead of reading a
/// mask; `reference` (which builds the mask) elsewhere.
pub(crate) fn causal_attention<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    reference: impl FnOnce(Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>) -> Tensor<B, 2>,
) -> Tensor<B, 2> {
    let device = q.device();
    let serve = serves::<B>(&device, &[q.dtype(), k.dtype(), v.dtype()]);
    if !serve || k.dims()[0] < q.dims()[0] {
        return reference(q, k, v);
    }
    match host_attention(q, k, v, Mask::Causal) {
        Ok(out) => out,
        Err((q, k, v)) => reference(q, k, v),
    }
}

/// The CPU kernel over `q`, `k`, `v` read on the host (the caller checked that the kernels
/// serve them), or the tensors back if they do not read as f32.
#[allow(clippy::type_complexity)]
fn host_attention<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    mask: Mask<'_>,
) -> Result<Tensor<B, 2>, (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>)> {
    let device = q.device();
    let [lq, h, hd] = q.dims();
    let [lk, kv_heads, _] = k.dims();
    let dims = super::attention::Dims {
        queries: lq,
        keys: lk,
        heads: h,
        kv_heads,
        head_dim: hd,
    };
    let (qh, kh, vh) = (HostF32::new(q), HostF32::new(k), HostF32::new(v));
    if let (Some(q), Some(k), Some(v)) = (qh.as_f32(), kh.as_f32(), vh.as_f32()) {
        let out = super::attention::attention(q, k, v, mask, dims);
        return Ok(Tensor::from_data(
            TensorData::new(out, [lq, h * hd]),
            &device,
        ));
    }
    Err((
        qh.into_tensor(&device),
        kh.into_tensor(&device),
        vh.into_tensor(&device),
    ))
}

/// Attention of packed training examples (`q` `[rows, heads, hd]`, `k`, `v`
/// `[rows, kv_heads, hd]`, each row attending to a prefix of its segment, scale `1/sqrt(hd)`) as
/// `[rows, heads * hd]`: the CPU kernel in f32 on Flex and ndarray and, with its own backward, on
/// `Autodiff<Flex>`; `reference` (burn's graph, segment by segment) elsewhere.
pub(crate) fn segment_attention<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    segments: &Arc<PackedSegments>,
    reference: impl FnOnce(Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>) -> Tensor<B, 2>,
) -> Tensor<B, 2> {
    let device = q.device();
    let [rows, h, hd] = q.dims();
    let [_, kv_heads, _] = k.dims();
    if rows != segments.len() || k.dims()[0] != rows || v.dims() != k.dims() {
        // A layout that does not fit: burn's graph reports it in its own words.
        return reference(q, k, v);
    }
    #[cfg(feature = "flex")]
    let (q, k, v) = {
        use super::autodiff::{as_flex_autodiff, from_flex_autodiff};
        match (
            as_flex_autodiff(q),
            as_flex_autodiff(k),
            as_flex_autodiff(v),
        ) {
            (Ok(q), Ok(k), Ok(v)) => {
                return from_flex_autodiff(super::autodiff::segment_attention(q, k, v, segments));
            }
            (q, k, v) => (
                q.map_or_else(|t| t, from_flex_autodiff),
                k.map_or_else(|t| t, from_flex_autodiff),
                v.map_or_else(|t| t, from_flex_autodiff),
            ),
        }
    };
    if !serves::<B>(&device, &[q.dtype(), k.dtype(), v.dtype()]) {
        return reference(q, k, v);
    }
    let heads = super::segments::Heads {
        heads: h,
        kv_heads,
        head_dim: hd,
    };
    let (qh, kh, vh) = (HostF32::new(q), HostF32::new(k), HostF32::new(v));
    match (qh.as_f32(), kh.as_f32(), vh.as_f32()) {
        (Some(q), Some(k), Some(v)) => {
            let out = super::segments::forward(q, k, v, segments, heads).out;
            Tensor::from_data(TensorData::new(out, [rows, h * hd]), &device)
        }
        _ => reference(
            qh.into_tensor(&device),
            kh.into_tensor(&device),
            vh.into_tensor(&device),
        ),
    }
}

/// `silu(gate) * up`, one vectorised pass on the CPU.
pub(crate) fn silu_mul<B: Backend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let (gate, up) = match super::autodiff::silu_mul(gate, up) {
        Ok(y) => return y,
        Err(inputs) => inputs,
    };
    let device = gate.device();
    if !serves::<B>(&device, &[gate.dtype(), up.dtype()]) || gate.shape() != up.shape() {
        return silu(gate) * up;
    }
    let shape = gate.shape();
    let (gh, uh) = (HostF32::new(gate), HostF32::new(up));
    match (gh.as_f32(), uh.as_f32()) {
        (Some(g), Some(u)) => {
            Tensor::from_data(TensorData::new(rows::silu_mul(g, u), shape), &device)
        }
        _ => silu(gh.into_tensor::<B, D>(&device)) * uh.into_tensor(&device),
    }
}
