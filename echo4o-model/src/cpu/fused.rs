//! The kernels as tensor operations: each takes the kernel on a CPU backend in f32 outside
//! autodiff, and burn's own graph everywhere else (CUDA, bf16, training), so model code calls
//! one function whatever the backend.

use burn::nn::RmsNorm;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};

use super::host::HostF32;
use super::rows;

/// Whether the kernels serve a computation on `device` over tensors of `dtypes`: burn's CPU
/// backends (Flex, ndarray), f32, not recorded for autodiff (training keeps burn's graph, which
/// its backward needs).
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
    let gammas: Vec<HostF32> = runs.iter().map(|r| HostF32::new(r.1.gamma.val())).collect();
    let xh = HostF32::new(x);
    let slices: Option<Vec<(usize, &[f32])>> = runs
        .iter()
        .zip(&gammas)
        .map(|(r, g)| g.as_f32().map(|g| (r.0, g)))
        .collect();
    match (xh.as_f32(), slices) {
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
    let device = x.device();
    let [len, heads, d] = x.dims();
    let tables_f32 = cos.dtype() == DType::F32 && sin.dtype() == DType::F32;
    let eps = host_norms(&device, x.dtype(), runs, len, d).filter(|_| tables_f32);
    let Some(eps) = eps else {
        return reference(x);
    };
    let gammas: Vec<HostF32> = runs.iter().map(|r| HostF32::new(r.1.gamma.val())).collect();
    let (xh, ch, sh) = (
        HostF32::new(x),
        HostF32::new(cos.clone()),
        HostF32::new(sin.clone()),
    );
    let slices: Option<Vec<(usize, &[f32])>> = runs
        .iter()
        .zip(&gammas)
        .map(|(r, g)| g.as_f32().map(|g| (r.0, g)))
        .collect();
    match (xh.as_f32(), ch.as_f32(), sh.as_f32(), slices) {
        (Some(x), Some(c), Some(s), Some(runs)) => {
            let out = rows::rope(x, heads, d, c, s, Some((&runs, eps)));
            Tensor::from_data(TensorData::new(out, [len, heads, d]), &device)
        }
        _ => reference(xh.into_tensor(&device)),
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

/// `silu(gate) * up`, one vectorised pass on the CPU.
pub(crate) fn silu_mul<B: Backend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
) -> Tensor<B, D> {
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
