//! The one error type of `echo4o-model`.

use crate::BackendKind;

/// Everything that can go wrong in `echo4o-model`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A device string that names no known device.
    #[error("unknown device `{given}` (expected cpu, flex, ndarray, cuda:N or cuda-f32:N)")]
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
    /// A configuration file that cannot be read as one.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A configuration value that breaks the architecture's constraints.
    #[error("invalid config `{field}`: {message}")]
    InvalidConfig {
        /// The field.
        field: String,
        /// Why.
        message: String,
    },
    /// Weights that do not fit the model: missing, unexpected or mis-shaped keys.
    #[error("{path}: weights do not match the model:\n{details}")]
    Weights {
        /// The weight file.
        path: String,
        /// One line per problem, naming the key.
        details: String,
    },
    /// A model folder that is not a usable checkpoint.
    #[error("{dir}: {message}")]
    ModelDir {
        /// The folder.
        dir: String,
        /// What is missing or wrong.
        message: String,
    },
    /// A tensor with the wrong shape was passed in.
    #[error("{what}: expected shape {expected}, got {got:?}")]
    Shape {
        /// The input.
        what: String,
        /// The expected shape, in words.
        expected: String,
        /// The shape received.
        got: Vec<usize>,
    },
    /// A training-state file (`train_state/`) that cannot be read or written.
    #[error("{path}: training state: {message}")]
    TrainState {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Training produced non-finite numbers; the run stopped and nothing diverged was saved.
    #[error("training diverged at step {step}: {what}")]
    Diverged {
        /// The step.
        step: usize,
        /// What became non-finite.
        what: String,
    },
    /// A computation produced NaN or infinity (generation with degenerate weights or settings).
    #[error("non-finite values (NaN or inf) in {what}")]
    NonFinite {
        /// What held them.
        what: String,
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
