//! The one error type of `echo4o-core`.
//!
//! Every variant carries what a user needs to act on it: the path, the request id, the value that
//! was wrong. Downstream crates wrap it in their own enums with `#[from]`.

use std::path::PathBuf;

/// Result alias used throughout `echo4o-core`.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in `echo4o-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line of a JSONL file that is not the record it should be.
    #[error("{}:{line}: {message}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// Bytes that should be an image could not be decoded.
    #[error("{origin}: cannot decode image: {source}")]
    ImageDecode {
        /// Where the bytes came from: a path, a tar member, a parquet row.
        origin: String,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// An image could not be encoded.
    #[error("{target}: cannot encode image: {source}")]
    ImageEncode {
        /// Where the encoded image was going (a path, or the format name).
        target: String,
        /// The encoder's error.
        #[source]
        source: image::ImageError,
    },
    /// A file name whose extension names no image format echo4o writes.
    #[error("{}: unsupported image extension (use .png, .jpg, .jpeg or .webp)", path.display())]
    UnsupportedImageFormat {
        /// The offending path.
        path: PathBuf,
    },
    /// An image folder has no image for a request id.
    #[error("no image for request `{id}` (looked for {})", list_paths(tried))]
    ImageNotFound {
        /// The request id.
        id: String,
        /// Every path that was tried, in order.
        tried: Vec<PathBuf>,
    },
    /// A value given by the caller is out of range or inconsistent.
    #[error("invalid {what}: {message}")]
    InvalidInput {
        /// The parameter or field that is wrong.
        what: String,
        /// Why it is wrong.
        message: String,
    },
    /// An HTTP request failed for good: a permanent error, or a transient one whose retries ran
    /// out. The raw body is kept, because servers explain themselves there.
    #[error("{url}: {message}{}", body.as_deref().map(|b| format!(" (body: {})", truncate(b, 500))).unwrap_or_default())]
    Http {
        /// The URL requested.
        url: String,
        /// The HTTP status, when a response arrived.
        status: Option<u16>,
        /// What went wrong (status line, timeout, connection error).
        message: String,
        /// The response body, as received.
        body: Option<String>,
    },
    /// A plug-in (a downstream `Generator`, `Judge`, `Scorer`, `DataSource`, detector) failed
    /// with an error of its own type, kept whole so its source chain survives.
    #[error("{plugin}: {source}")]
    Plugin {
        /// The plug-in's name.
        plugin: String,
        /// Its error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A generator failed for a reason of its own.
    #[error("generator `{generator}`: {message}")]
    Generator {
        /// The generator's name.
        generator: String,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether sending the same request again can never succeed: an HTTP 4xx other than
    /// 408/409/429 (a wrong key, a forbidden model, a bad request), or a 429 that says the
    /// quota is used up. A run should stop on such an error rather than record it per item.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Http {
                status: Some(s),
                body,
                ..
            } => {
                let quota = body
                    .as_deref()
                    .is_some_and(|b| b.contains("insufficient_quota"));
                quota || ((400..500).contains(s) && !matches!(s, 408 | 409 | 429))
            }
            _ => false,
        }
    }

    /// An [`Error::Plugin`]: `plugin`'s own error, kept with its source chain.
    ///
    /// ```
    /// let io = std::io::Error::new(std::io::ErrorKind::Other, "socket closed");
    /// let e = echo4o_core::Error::plugin("my-detector", io);
    /// assert_eq!(e.to_string(), "my-detector: socket closed");
    /// assert!(std::error::Error::source(&e).is_some());
    /// ```
    pub fn plugin(
        plugin: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error::Plugin {
            plugin: plugin.into(),
            source: source.into(),
        }
    }

    /// An [`Error::InvalidInput`] about `what`.
    pub fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidInput {
            what: what.into(),
            message: message.into(),
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_path() {
        let e = Error::io(
            "/data/x.jsonl",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        assert_eq!(e.to_string(), "/data/x.jsonl: gone");
        let e = Error::ImageNotFound {
            id: "7".into(),
            tried: vec!["a/7.png".into(), "a/7.jpg".into()],
        };
        assert_eq!(
            e.to_string(),
            "no image for request `7` (looked for a/7.png, a/7.jpg)"
        );
    }
}
