//! The one error type of `echo4o-model`.

use crate::BackendKind;

/// Everything that can go wrong in `echo4o-model`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A device string that names no known device.
    #[error("unknown device `{given}` (expected cpu, flex, ndarray, cuda or cuda:N)")]
    InvalidDevice {
        /// What the user wrote.
        given: String,
    },
    /// The device's backend is not part of this build.
    #[error(
        "device `{requested}` needs the `{feature}` backend, which this build lacks \
         (built with: {}); rebuild with `--features {feature}`",
        list(compiled)
    )]
    BackendNotCompiled {
        /// The device asked for.
        requested: String,
        /// The cargo feature that would add it.
        feature: &'static str,
        /// The backends this build has.
        compiled: Vec<BackendKind>,
    },
    /// An error from `echo4o-core` (I/O, images).
    #[error(transparent)]
    Core(#[from] echo4o_core::Error),
}

fn list(kinds: &[BackendKind]) -> String {
    if kinds.is_empty() {
        return "none".into();
    }
    kinds
        .iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
