//! # echo4o-bench
//!
//! The benchmarks Echo-4o introduced and reported (GenEval++, Imagine-Bench, GenEval), scored
//! exactly as the official scripts score them. It depends on no compute backend: evaluating a
//! folder of images never compiles burn.
//!
//! This crate is being built up issue by issue; today it re-exports the scoring vocabulary.
//!
//! ```
//! use echo4o_bench::Verdict;
//!
//! let v = Verdict { score: 1.0, passed: Some(true), reason: "ok".into(),
//!                   details: serde_json::Value::Null, usage: Default::default() };
//! assert_eq!(v.passed, Some(true));
//! ```
#![deny(missing_docs)]

pub use echo4o_core::{Judge, Scorer, Verdict};
