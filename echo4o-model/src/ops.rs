//! Small numeric helpers shared by the transformer, the ViT and the autoencoder.

use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

/// Softmax computed in f32 whatever the activation dtype (bf16 on CUDA), as the official kernels
/// accumulate, then cast back; a no-op cast on f32 backends.
pub(crate) fn softmax_f32<B: Backend, const D: usize>(x: Tensor<B, D>, dim: usize) -> Tensor<B, D> {
    let dtype = x.dtype();
    softmax(x.cast(DType::F32), dim).cast(dtype)
}
