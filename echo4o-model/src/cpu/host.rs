//! Float tensors as host slices for the CPU kernels.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};

/// A float tensor's values on the host. On Flex a contiguous tensor lends its own buffer, shared
/// or not (a key/value tensor also held by a cache is read in place); anything else is read out
/// as [`TensorData`], a copy only where the backend must make one.
pub(crate) enum HostF32 {
    /// Flex's tensor itself, contiguous.
    #[cfg(feature = "flex")]
    Flex(burn_flex::FlexTensor),
    /// The values read out.
    Data(TensorData),
}

impl HostF32 {
    /// The values of `t`.
    pub(crate) fn new<B: Backend, const D: usize>(t: Tensor<B, D>) -> Self {
        let slot = match t.into_primitive() {
            TensorPrimitive::Float(p) => Some(p),
            quantized => {
                return HostF32::Data(Tensor::<B, D>::from_primitive(quantized).into_data());
            }
        };
        #[cfg(feature = "flex")]
        let slot = {
            // `B` is Flex exactly when its primitive is Flex's tensor: a safe downcast.
            let mut slot = slot;
            let flex = (&mut slot as &mut dyn std::any::Any)
                .downcast_mut::<Option<burn_flex::FlexTensor>>()
                .and_then(Option::take);
            if let Some(f) = flex {
                return if f.as_slice::<f32>().is_some() {
                    HostF32::Flex(f)
                } else {
                    HostF32::Data(f.into_data())
                };
            }
            slot
        };
        let Some(p) = slot else {
            unreachable!("only the Flex branch takes the primitive, and it returns")
        };
        HostF32::Data(Tensor::<B, D>::from_primitive(TensorPrimitive::Float(p)).into_data())
    }

    /// The values as f32, if they are f32 (and aligned as f32).
    pub(crate) fn as_f32(&self) -> Option<&[f32]> {
        match self {
            #[cfg(feature = "flex")]
            HostF32::Flex(f) => f.as_slice::<f32>(),
            HostF32::Data(d) => d.as_slice::<f32>().ok(),
        }
    }

    /// The values as a tensor again.
    pub(crate) fn into_tensor<B: Backend, const D: usize>(
        self,
        device: &B::Device,
    ) -> Tensor<B, D> {
        match self {
            #[cfg(feature = "flex")]
            HostF32::Flex(f) => Tensor::from_data(f.into_data(), device),
            HostF32::Data(d) => Tensor::from_data(d, device),
        }
    }
}
