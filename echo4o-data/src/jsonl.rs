//! Reading JSONL files line by line with their line numbers, so every bad record is reported
//! with its location.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Parses every non-empty line of `path` as a `T`; a bad line is an `Err` naming the file and
/// line, and parsing goes on (the caller decides whether to skip or stop).
pub fn read_records<T: DeserializeOwned>(path: &Path) -> Result<Vec<(usize, Result<T>)>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push((i + 1, parse_line(&line, path, i + 1)));
    }
    Ok(out)
}

/// Parses one line; the error names `path:line`.
pub fn parse_line<T: DeserializeOwned>(line: &str, path: &Path, line_no: usize) -> Result<T> {
    serde_json::from_str(line).map_err(|e| Error::Line {
        path: PathBuf::from(path),
        line: line_no,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_as_a_line_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let line = String::from_utf8_lossy(&bytes);
            let r: Result<serde_json::Value> = parse_line(&line, Path::new("x.jsonl"), 3);
            if let Err(e) = r {
                proptest::prop_assert!(e.to_string().starts_with("x.jsonl:3: "));
            }
        }
    }
}
