//! Small numeric helpers shared by the transformer, the ViT and the autoencoder.

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::LayerNorm;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Element, Tensor};

/// Softmax computed in f32 whatever the activation dtype (bf16 on CUDA), as the official kernels
/// accumulate, then cast back; a no-op cast on f32 backends.
pub(crate) fn softmax_f32<B: Backend, const D: usize>(x: Tensor<B, D>, dim: usize) -> Tensor<B, D> {
    let dtype = x.dtype();
    softmax(x.cast(DType::F32), dim).cast(dtype)
}

/// LayerNorm with its statistics and affine map in f32, the result cast back to the input's
/// dtype: what PyTorch's bf16 autocast does (`layer_norm` is on its f32 list). A no-op cast on f32
/// backends, where it equals burn's `LayerNorm::forward` up to rounding. (`epsilon` is passed
/// in: burn keeps the module's private.)
pub(crate) fn layer_norm_f32<B: Backend, const D: usize>(
    norm: &LayerNorm<B>,
    x: Tensor<B, D>,
    epsilon: f64,
) -> Tensor<B, D> {
    let dtype = x.dtype();
    let x = x.cast(DType::F32);
    let mean = x.clone().mean_dim(D - 1);
    let centered = x - mean;
    let var = centered.clone().square().mean_dim(D - 1);
    let mut y = centered / (var + epsilon).sqrt();
    y = y * norm.gamma.val().cast(DType::F32).unsqueeze();
    if let Some(beta) = &norm.beta {
        y = y + beta.val().cast(DType::F32).unsqueeze();
    }
    y.cast(dtype)
}

/// The float dtype a backend computes in by default (`bf16` for `Cuda<bf16>`, `f32` on the CPU
/// backends): tensors made from host data get it, so the weights must have it too.
pub fn default_float_dtype<B: Backend>() -> DType {
    <B::FloatElem as Element>::dtype()
}

/// Casts every float parameter of `module` to `dtype`.
///
/// burn-store keeps a file's dtype when it loads (a bf16 `ema.safetensors` gives bf16 tensors
/// even on an f32 backend), so the pipeline casts after loading: the transformer to the backend's
/// compute dtype, the autoencoder to f32 (the official code never casts the VAE).
///
/// ```
/// use burn::nn::LinearConfig;
/// use burn::tensor::DType;
/// use echo4o_model::ops::cast_params;
///
/// let dev = Default::default();
/// let linear = LinearConfig::new(4, 2).init::<burn_flex::Flex>(&dev);
/// let linear = cast_params(linear, DType::BF16);
/// assert_eq!(linear.weight.val().dtype(), DType::BF16);
/// ```
pub fn cast_params<B: Backend, M: Module<B>>(module: M, dtype: DType) -> M {
    struct Cast(DType);
    impl<B: Backend> ModuleMapper<B> for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let dtype = self.0;
            param.map(|t| if t.dtype() == dtype { t } else { t.cast(dtype) })
        }
    }
    module.map(&mut Cast(dtype))
}
