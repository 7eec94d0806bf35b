//! The one error type of `echo4o-perception`.

use std::path::PathBuf;

/// Everything that can go wrong in `echo4o-perception`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A model configuration that cannot be read or breaks the architecture.
    #[error("{origin}: {message}")]
    Config {
        /// The file (or preset) it came from.
        origin: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A BPE merges file that is not CLIP's.
    #[error("{source_file}: {message}")]
    Tokenizer {
        /// The file.
        source_file: String,
        /// What is wrong.
        message: String,
    },
    /// Input the model cannot take (an empty crop, a class name that makes no prompt).
    #[error("invalid {what}: {message}")]
    Invalid {
        /// What was wrong.
        what: String,
        /// Why.
        message: String,
    },
    /// Weights that do not fit, a backend missing from this build: `echo4o-model`'s errors.
    #[error(transparent)]
    Model(#[from] echo4o_model::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Into the benchmark's errors as a plug-in's own error, its source chain kept.
impl From<Error> for echo4o_bench::Error {
    fn from(e: Error) -> Self {
        echo4o_bench::Error::Core(echo4o_core::Error::plugin("CLIP colour classifier", e))
    }
}
