//! The resumable results store: `results.jsonl`, one JSON line per finished item, each synced
//! as it is written, so a killed run loses only the items in flight. It is
//! [`echo4o_core::jsonl::AppendLog`], the log every resumable job here keeps.

/// An open `results.jsonl` (see [`echo4o_core::jsonl::AppendLog`]).
pub type ResultStore = echo4o_core::jsonl::AppendLog;
