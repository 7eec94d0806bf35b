//! The one error type of `echo4o-data`.

use std::path::PathBuf;

/// Result alias of `echo4o-data`.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong reading or writing data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A JSONL line that is not the record it should be.
    #[error("{}:{line}: {message}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A record whose image is in no shard.
    #[error("{}:{line}: `{image}` is not in any shard of {}", path.display(), shards.display())]
    MissingMember {
        /// The JSONL file.
        path: PathBuf,
        /// Its line.
        line: usize,
        /// The `output_image` value.
        image: String,
        /// The shard folder.
        shards: PathBuf,
    },
    /// A shard (tar.gz) that cannot be read to its end.
    #[error("{}: corrupt or truncated shard: {message}", path.display())]
    Shard {
        /// The shard.
        path: PathBuf,
        /// The archive or gzip error.
        message: String,
    },
    /// A folder that is not the layout it should be.
    #[error("{}: {message}", path.display())]
    Layout {
        /// The folder.
        path: PathBuf,
        /// What is missing.
        message: String,
    },
    /// An I/O or image error from `echo4o-core`.
    #[error(transparent)]
    Core(#[from] echo4o_core::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Core(echo4o_core::Error::io(path, source))
    }
}

impl From<Error> for echo4o_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(c) => c,
            other => echo4o_core::Error::invalid("data", other.to_string()),
        }
    }
}
