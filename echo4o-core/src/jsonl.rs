//! The append-only JSONL log every resumable job keeps: one JSON record per line, each line
//! written whole and synced before `append` returns, so a killed process loses at most the line
//! it was writing. The benchmark runner's `results.jsonl`, the synthesis ledger and its
//! provenance all use it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// An open append-only JSONL file.
#[derive(Debug)]
pub struct AppendLog {
    path: PathBuf,
    file: File,
}

/// Records of `text`, parsed. A last line without its newline is what a kill during a write
/// leaves: it is not a record. A malformed complete line is an error naming its number: the file
/// is not ours to repair.
fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<(Vec<T>, usize)> {
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    let mut records = Vec::new();
    for (i, line) in text[..complete].lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(line).map_err(|e| Error::Line {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        records.push(record);
    }
    Ok((records, complete))
}

impl AppendLog {
    /// Opens (or creates, with its folder) the log at `path` and reads back its records. A torn
    /// last line is cut off the file, so the next append starts a clean line.
    ///
    /// ```
    /// use echo4o_core::jsonl::AppendLog;
    /// use serde_json::{Value, json};
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("results.jsonl");
    /// let (mut log, old) = AppendLog::open::<Value>(&path)?;
    /// assert!(old.is_empty());
    /// log.append(&json!({"id": 1}))?;
    /// let (_, back) = AppendLog::open::<Value>(&path)?;
    /// assert_eq!(back, vec![json!({"id": 1})]);
    /// # Ok::<(), echo4o_core::Error>(())
    /// ```
    pub fn open<T: DeserializeOwned>(path: &Path) -> Result<(Self, Vec<T>)> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(path, e)),
        };
        let (records, complete) = parse(path, &text)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        if complete < text.len() {
            tracing::warn!(
                "{}: dropping an unfinished last line (interrupted write)",
                path.display()
            );
            file.set_len(complete as u64)
                .map_err(|e| Error::io(path, e))?;
        }
        Ok((
            AppendLog {
                path: path.to_path_buf(),
                file,
            },
            records,
        ))
    }

    /// Reads a log's records without opening it for writing (a missing file has none; a torn
    /// last line is skipped, not cut).
    pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
        match std::fs::read_to_string(path) {
            Ok(text) => parse(path, &text).map(|(r, _)| r),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Appends one record as a line and syncs it to disk before returning.
    pub fn append<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let mut line = serde_json::to_string(record)
            .map_err(|e| Error::invalid(self.path.display().to_string(), e.to_string()))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn appends_and_reads_back_dropping_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/results.jsonl");
        {
            let (mut log, old) = AppendLog::open::<Value>(&path).unwrap();
            assert!(old.is_empty());
            log.append(&json!({"id": 1})).unwrap();
            log.append(&json!({"id": 2})).unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"id\": 3, \"resu");
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(AppendLog::read::<Value>(&path).unwrap().len(), 2);

        let (mut log, old) = AppendLog::open::<Value>(&path).unwrap();
        assert_eq!(old, vec![json!({"id": 1}), json!({"id": 2})]);
        log.append(&json!({"id": 3})).unwrap();
        let (_, all) = AppendLog::open::<Value>(&path).unwrap();
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn a_corrupt_middle_line_is_an_error_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        std::fs::write(&path, "{\"id\":1}\nnot json\n{\"id\":3}\n").unwrap();
        let err = AppendLog::open::<Value>(&path).unwrap_err().to_string();
        assert!(err.contains("results.jsonl:2:"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().lines().count(),
            3,
            "left as it was"
        );
    }
}
