//! The one error type of `echo4o-bench`.

use std::path::PathBuf;

/// Result alias of `echo4o-bench`.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in `echo4o-bench`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A line of a JSONL file (prompt set, results file) is not what it should be.
    #[error("{origin}:{line}: {message}")]
    Line {
        /// The file (or bundled data name).
        origin: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An option or input value is not acceptable.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// What was wrong.
        what: String,
        /// Why.
        message: String,
    },
    /// The judge could not give verdicts: it refused for good (the run stopped), or items were
    /// left without a verdict after every transport retry.
    #[error("judge: {0}")]
    Judge(String),
    /// An error from `echo4o-core` (images, HTTP).
    #[error(transparent)]
    Core(#[from] echo4o_core::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }
}
