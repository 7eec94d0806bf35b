//! # echo4o-model
//!
//! BAGEL, the unified transformer that Echo-4o fine-tunes, in burn. Model code is generic over
//! burn's `Backend`; the backends are cargo features (`flex`, the default CPU backend; `ndarray`;
//! `cuda`) and a program picks one at run time with a [`DeviceSpec`].
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

mod backend;
mod error;

pub use backend::{BackendKind, BackendTask, DeviceSpec};
pub use error::Error;

/// burn, re-exported so that users name the same version echo4o uses.
pub use burn;
