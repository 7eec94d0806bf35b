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

/// `norm.forward(x)`, one pass per row on the CPU.
pub(crate) fn rms_norm<B: Backend, const D: usize>(
    norm: &RmsNorm<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let device = x.device();
    let gamma = norm.gamma.val();
    if !serves::<B>(&device, &[x.dtype(), gamma.dtype()]) {
        return norm.forward(x);
    }
    let shape = x.shape();
    let (xh, gh) = (HostF32::new(x), HostF32::new(gamma));
    match (xh.as_f32(), gh.as_f32()) {
        (Some(x), Some(g)) => {
            let out = rows::rms_norm(x, g, norm.epsilon as f32);
            Tensor::from_data(TensorData::new(out, shape), &device)
        }
        _ => norm.forward(xh.into_tensor(&device)),
    }
}

/// Qwen2's RoPE on `x` `[len, heads, head_dim]` with f32 tables `cos`, `sin` `[len, head_dim]`
/// (non-interleaved `rotate_half`), in one pass on the CPU; `reference` is the graph to take
/// elsewhere.
pub(crate) fn rope<B: Backend>(
    x: Tensor<B, 3>,
    cos: &Tensor<B, 2>,
    sin: &Tensor<B, 2>,
    reference: impl FnOnce(Tensor<B, 3>) -> Tensor<B, 3>,
) -> Tensor<B, 3> {
    let device = x.device();
    if !serves::<B>(&device, &[x.dtype(), cos.dtype(), sin.dtype()]) {
        return reference(x);
    }
    let [len, heads, d] = x.dims();
    let xh = HostF32::new(x);
    let (ch, sh) = (HostF32::new(cos.clone()), HostF32::new(sin.clone()));
    match (xh.as_f32(), ch.as_f32(), sh.as_f32()) {
        (Some(x), Some(c), Some(s)) => {
            let out = rows::rope(x, heads, d, c, s, None);
            Tensor::from_data(TensorData::new(out, [len, heads, d]), &device)
        }
        _ => reference(xh.into_tensor(&device)),
    }
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
