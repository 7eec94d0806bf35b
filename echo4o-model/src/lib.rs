//! # echo4o-model
//!
//! BAGEL, the unified transformer that Echo-4o fine-tunes, in burn: the Qwen2
//! Mixture-of-Transformers decoder ([`qwen2_mot`]), the SigLIP NaViT vision tower ([`siglip`]),
//! the FLUX autoencoder ([`autoencoder`]), the wrapper that puts images into the LLM
//! ([`bagel`]), and the sampler ([`sampling`]). Model code is generic over burn's `Backend`; the
//! backends are cargo features (`flex`, the default CPU backend; `ndarray`; `cuda`) and a
//! program picks one at run time with a [`DeviceSpec`].
//!
//! ```
//! use echo4o_model::{BackendKind, DeviceSpec};
//!
//! let device: DeviceSpec = "cpu".parse()?;
//! assert_eq!(device.kind(), BackendKind::Flex);
//! assert!(BackendKind::compiled().contains(&BackendKind::Flex));
//! # Ok::<(), echo4o_model::Error>(())
//! ```
#![deny(missing_docs)]

pub mod autoencoder;
mod backend;
pub mod bagel;
pub mod codec;
pub mod config;
mod cpu;
mod error;
pub mod flops;
pub mod generator;
pub mod linear_codec;
pub mod ops;
pub mod packing;
pub mod parity;
pub mod pipeline;
pub mod pixels;
pub mod qwen2_mot;
pub mod sampling;
pub mod siglip;
pub mod tokenizer;
pub mod train;
pub mod weights;

pub use backend::{BackendKind, BackendTask, DeviceSpec};
pub use config::BagelConfig;
pub use error::Error;

/// burn, re-exported so that users name the same version echo4o uses.
pub use burn;
