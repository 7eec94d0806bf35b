//! Compute backends, chosen at compile time by cargo features and at run time by a
//! [`DeviceSpec`].
//!
//! Model code is generic over [`burn::tensor::backend::Backend`]; this module is the one place
//! that names concrete backend types. Programs pick a backend from a string (`--device cpu`,
//! `--device cuda:0`) and hand a [`BackendTask`] to [`DeviceSpec::run`], which monomorphises the
//! task for that backend. Nothing outside `echo4o-model` needs to name a backend type.

use std::fmt;
use std::str::FromStr;

use burn::tensor::backend::Backend;

use crate::Error;

/// The backend kinds echo4o knows, whether or not this build includes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// burn's Flex CPU backend (feature `flex`, the default).
    Flex,
    /// burn-ndarray CPU backend (feature `ndarray`).
    NdArray,
    /// burn-cuda GPU backend (feature `cuda`).
    Cuda,
}

impl BackendKind {
    /// Every kind, in order of preference for CPU-only machines.
    pub const ALL: [BackendKind; 3] = [BackendKind::Flex, BackendKind::NdArray, BackendKind::Cuda];

    /// The cargo feature that compiles this backend in.
    pub fn feature(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::NdArray => "ndarray",
            BackendKind::Cuda => "cuda",
        }
    }

    /// Whether this build includes the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            BackendKind::Flex => cfg!(feature = "flex"),
            BackendKind::NdArray => cfg!(feature = "ndarray"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The backends this build includes.
    pub fn compiled() -> Vec<BackendKind> {
        Self::ALL.into_iter().filter(|k| k.is_compiled()).collect()
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.feature())
    }
}

/// A device chosen by the user: `cpu` (= `flex`), `flex`, `ndarray`, `cuda:N` (bf16, the
/// official GPU precision; `cuda` = `cuda:0`) or `cuda-f32:N`.
///
/// ```
/// use echo4o_model::{BackendKind, DeviceSpec};
///
/// let spec: DeviceSpec = "cuda:1".parse().unwrap();
/// assert_eq!(spec, DeviceSpec::Cuda(1));
/// assert_eq!(spec.kind(), BackendKind::Cuda);
/// assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Flex);
/// assert!("tpu".parse::<DeviceSpec>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceSpec {
    /// The Flex CPU backend.
    #[default]
    Flex,
    /// The ndarray CPU backend.
    NdArray,
    /// CUDA GPU number N, bf16 weights and activations (norms and softmax computed in f32).
    Cuda(usize),
    /// CUDA GPU number N, f32 throughout.
    CudaF32(usize),
}

impl DeviceSpec {
    /// The backend this device belongs to.
    pub fn kind(self) -> BackendKind {
        match self {
            DeviceSpec::Flex => BackendKind::Flex,
            DeviceSpec::NdArray => BackendKind::NdArray,
            DeviceSpec::Cuda(_) | DeviceSpec::CudaF32(_) => BackendKind::Cuda,
        }
    }

    /// Runs `task` on this device's backend.
    ///
    /// Fails with [`Error::BackendNotCompiled`] when the build lacks the backend's feature.
    ///
    /// ```
    /// use burn::prelude::ToElement;
    /// use burn::tensor::{Tensor, backend::Backend};
    /// use echo4o_model::{BackendTask, DeviceSpec};
    ///
    /// struct SumOnes(usize);
    /// impl BackendTask for SumOnes {
    ///     type Output = f32;
    ///     fn run<B: Backend>(self, device: B::Device) -> f32 {
    ///         Tensor::<B, 1>::ones([self.0], &device).sum().into_scalar().to_f32()
    ///     }
    /// }
    ///
    /// assert_eq!(DeviceSpec::Flex.run(SumOnes(5)).unwrap(), 5.0);
    /// ```
    pub fn run<T: BackendTask>(self, task: T) -> Result<T::Output, Error> {
        match self {
            #[cfg(feature = "flex")]
            DeviceSpec::Flex => Ok(task.run::<burn_flex::Flex>(burn_flex::FlexDevice)),
            #[cfg(feature = "ndarray")]
            DeviceSpec::NdArray => {
                Ok(task.run::<burn_ndarray::NdArray>(burn_ndarray::NdArrayDevice::Cpu))
            }
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(index) => Ok(
                task.run::<burn_cuda::Cuda<burn::tensor::bf16>>(burn_cuda::CudaDevice { index })
            ),
            #[cfg(feature = "cuda")]
            DeviceSpec::CudaF32(index) => {
                Ok(task.run::<burn_cuda::Cuda<f32>>(burn_cuda::CudaDevice { index }))
            }
            #[allow(unreachable_patterns)]
            other => Err(Error::BackendNotCompiled {
                requested: other.to_string(),
                feature: other.kind().feature(),
                compiled: BackendKind::compiled(),
            }),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Flex => f.write_str("flex"),
            DeviceSpec::NdArray => f.write_str("ndarray"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
            DeviceSpec::CudaF32(i) => write!(f, "cuda-f32:{i}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::InvalidDevice {
            given: s.to_string(),
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(DeviceSpec::Flex),
            "ndarray" => Ok(DeviceSpec::NdArray),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            "cuda-f32" => Ok(DeviceSpec::CudaF32(0)),
            other => {
                if let Some(n) = other.strip_prefix("cuda:") {
                    n.parse().map(DeviceSpec::Cuda).map_err(|_| bad())
                } else if let Some(n) = other.strip_prefix("cuda-f32:") {
                    n.parse().map(DeviceSpec::CudaF32).map_err(|_| bad())
                } else {
                    Err(bad())
                }
            }
        }
    }
}

/// Work that is generic over the backend: the program writes it once, [`DeviceSpec::run`] picks
/// the backend at run time.
pub trait BackendTask {
    /// What the task returns.
    type Output;

    /// Runs the task on backend `B`, on `device`.
    fn run<B: Backend>(self, device: B::Device) -> Self::Output;
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::prelude::ToElement;
    use burn::tensor::Tensor;

    #[test]
    fn parses_and_prints_round_trip() {
        for s in ["flex", "ndarray", "cuda:0", "cuda:3", "cuda-f32:1"] {
            assert_eq!(s.parse::<DeviceSpec>().unwrap().to_string(), s);
        }
        assert_eq!("CUDA".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        let err = "cuda:x".parse::<DeviceSpec>().unwrap_err().to_string();
        assert!(err.contains("cuda:x"), "{err}");
    }

    struct MatmulTrace;
    impl BackendTask for MatmulTrace {
        type Output = f32;
        fn run<B: Backend>(self, device: B::Device) -> f32 {
            let a = Tensor::<B, 2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &device);
            let eye = Tensor::<B, 2>::from_floats([[1.0, 0.0], [0.0, 1.0]], &device);
            (a.matmul(eye) * Tensor::from_floats([[1.0, 0.0], [0.0, 1.0]], &device))
                .sum()
                .into_scalar()
                .to_f32()
        }
    }

    #[test]
    fn runs_tasks_on_every_compiled_cpu_backend() {
        for spec in [DeviceSpec::Flex, DeviceSpec::NdArray] {
            match spec.run(MatmulTrace) {
                Ok(v) => assert_eq!(v, 5.0),
                Err(e) => {
                    assert!(!spec.kind().is_compiled());
                    assert!(e.to_string().contains(spec.kind().feature()), "{e}");
                }
            }
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_missing_backend_names_its_feature() {
        let err = DeviceSpec::Cuda(0)
            .run(MatmulTrace)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
