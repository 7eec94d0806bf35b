//! Job keys and the append-only ledger.
//!
//! A request's key is the SHA-256 of its canonical JSON (backend, model, endpoint, parameters,
//! prompt, reference hashes, seed): the same request always has the same key, and any change
//! makes a new one. The ledger is one JSON line per state change, fsync'd, so a killed job
//! knows on restart which requests finished (never paid twice), which were refused (never sent
//! unchanged again), and which may be retried.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use echo4o_core::jsonl::AppendLog;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::multiref::sha256_hex;
use crate::Result;

/// `value` as JSON with every object's keys sorted: the canonical form that is hashed.
pub fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&m[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical_json).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// The key of a request: SHA-256 of the canonical JSON of `request`.
///
/// ```
/// use echo4o_data::synth::request_key;
/// use serde_json::json;
///
/// let a = request_key(&json!({"prompt": "a cat", "model": "m"}));
/// let b = request_key(&json!({"model": "m", "prompt": "a cat"}));
/// assert_eq!(a, b);
/// assert_ne!(a, request_key(&json!({"model": "m", "prompt": "a dog"})));
/// ```
pub fn request_key(request: &Value) -> String {
    sha256_hex(canonical_json(request).as_bytes())
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Sent, no answer recorded yet (a kill here may have been billed).
    Sent,
    /// The image is on disk.
    Done,
    /// The safety system refused it: never sent unchanged again.
    Refused,
    /// It will not succeed as it is.
    FailedPermanent,
    /// It may succeed later (rate limits ran out, timeout, overload).
    FailedRetryable,
}

/// One ledger line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The request key.
    pub key: String,
    /// The prompt id.
    pub id: String,
    /// The new state.
    pub state: State,
    /// Unix time, seconds.
    pub at: f64,
    /// What happened (errors), if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The append-only ledger file and the last state of every key in it.
#[derive(Debug)]
pub struct Ledger {
    states: Mutex<HashMap<String, State>>,
    log: std::sync::Arc<Mutex<AppendLog>>,
}

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Locks `m`, also when another thread panicked while holding it: the data behind a poisoned
/// lock is still the last consistent state (every writer here updates in one step), and treating
/// it as empty would read "never sent" (a second payment) or "nothing spent".
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Ledger {
    /// Opens (or creates) the ledger at `path`. A last line cut off by a kill is removed; any
    /// other bad line is an error naming it.
    pub fn open(path: &Path) -> Result<Ledger> {
        let (log, entries) = AppendLog::open::<Entry>(path)?;
        let states = entries.into_iter().map(|e| (e.key, e.state)).collect();
        Ok(Ledger {
            states: Mutex::new(states),
            log: std::sync::Arc::new(Mutex::new(log)),
        })
    }

    /// The last state of `key`.
    pub fn state(&self, key: &str) -> Option<State> {
        // A poisoned lock still holds the states: reading it as "never sent" would pay twice.
        lock(&self.states).get(key).copied()
    }

    /// How many keys are in `state`.
    pub fn count(&self, state: State) -> usize {
        lock(&self.states).values().filter(|v| **v == state).count()
    }

    /// Appends an entry, synced to disk before returning. The write and its fsync run on tokio's
    /// blocking pool: one slow disk flush must not stall every request in flight.
    pub async fn append(
        &self,
        key: &str,
        id: &str,
        state: State,
        message: Option<String>,
    ) -> Result<()> {
        let entry = Entry {
            key: key.to_string(),
            id: id.to_string(),
            state,
            at: now(),
            message,
        };
        let log = self.log.clone();
        let line = entry.clone();
        blocking(move || lock(&log).append(&line).map_err(Into::into)).await?;
        lock(&self.states).insert(entry.key, state);
        Ok(())
    }
}

/// Runs file work on tokio's blocking pool and waits for it.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| echo4o_core::Error::invalid("file writer", e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn survives_a_cut_off_line_and_keeps_the_last_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let l = Ledger::open(&path).unwrap();
        l.append("k1", "a", State::Sent, None).await.unwrap();
        l.append("k1", "a", State::Done, None).await.unwrap();
        l.append("k2", "b", State::Sent, None).await.unwrap();
        drop(l);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(br#"{"key":"k2","id":"b","sta"#).unwrap();
        drop(f);
        let l = Ledger::open(&path).unwrap();
        assert_eq!(l.state("k1"), Some(State::Done));
        assert_eq!(l.state("k2"), Some(State::Sent));
        l.append("k2", "b", State::Refused, None).await.unwrap();
        let l = Ledger::open(&path).unwrap();
        assert_eq!(l.state("k2"), Some(State::Refused));
        assert_eq!(l.count(State::Done), 1);
    }

    #[tokio::test]
    async fn a_poisoned_lock_still_reads_done_not_never_sent() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("ledger.jsonl")).unwrap();
        l.append("k", "a", State::Done, None).await.unwrap();
        // Another task panicked while holding the states.
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = l.states.lock().unwrap();
                panic!("a worker died mid-update");
            })
            .join()
        });
        assert!(l.states.is_poisoned());
        assert_eq!(
            l.state("k"),
            Some(State::Done),
            "read as never sent, it would be paid twice"
        );
        assert_eq!(l.count(State::Done), 1);
        l.append("k2", "b", State::Sent, None).await.unwrap();
        assert_eq!(l.state("k2"), Some(State::Sent));
    }

    #[test]
    fn a_bad_line_in_the_middle_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        std::fs::write(&path, "not json\n{}\n").unwrap();
        let e = Ledger::open(&path).unwrap_err().to_string();
        assert!(e.contains("ledger.jsonl:1"), "{e}");
    }
}
