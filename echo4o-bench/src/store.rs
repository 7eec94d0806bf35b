//! The append-only results store: one JSON line per finished item in `results.jsonl`, flushed
//! and synced as it is written, so a killed run loses only the items in flight.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// An open `results.jsonl`.
#[derive(Debug)]
pub struct ResultStore {
    path: PathBuf,
    file: File,
}

impl ResultStore {
    /// Opens (or creates) `path` and reads back the records already in it.
    ///
    /// A last line without its newline is what a kill during a write leaves; it is dropped (the
    /// item runs again) and the file is cut back to the last whole line. A malformed line
    /// anywhere else is an error naming the line: the file is not ours to repair.
    pub fn open<R: DeserializeOwned>(path: &Path) -> Result<(Self, Vec<R>)> {
        let mut records = Vec::new();
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            let complete_len = match text.rfind('\n') {
                Some(i) => i + 1,
                None => 0,
            };
            if complete_len < text.len() {
                tracing::warn!(
                    "{}: dropping an unfinished last line (interrupted write)",
                    path.display()
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| Error::io(path, e))?;
                f.set_len(complete_len as u64)
                    .map_err(|e| Error::io(path, e))?;
            }
            records = crate::text::parse_jsonl(&text[..complete_len], &path.display().to_string())?;
        } else if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok((
            ResultStore {
                path: path.to_path_buf(),
                file,
            },
            records,
        ))
    }

    /// Appends one record as a line and syncs it to disk.
    pub fn append<R: Serialize>(&mut self, record: &R) -> Result<()> {
        let mut line = serde_json::to_string(record)
            .map_err(|e| Error::invalid("result record", e.to_string()))?;
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
            let (mut store, old) = ResultStore::open::<Value>(&path).unwrap();
            assert!(old.is_empty());
            store.append(&json!({"id": 1})).unwrap();
            store.append(&json!({"id": 2})).unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"id\": 3, \"resu");
        std::fs::write(&path, bytes).unwrap();

        let (mut store, old) = ResultStore::open::<Value>(&path).unwrap();
        assert_eq!(old, vec![json!({"id": 1}), json!({"id": 2})]);
        store.append(&json!({"id": 3})).unwrap();
        let (_, all) = ResultStore::open::<Value>(&path).unwrap();
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn a_corrupt_middle_line_is_an_error_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        std::fs::write(&path, "{\"id\":1}\nnot json\n{\"id\":3}\n").unwrap();
        let err = ResultStore::open::<Value>(&path).unwrap_err().to_string();
        assert!(err.contains("results.jsonl:2:"), "{err}");
    }
}
