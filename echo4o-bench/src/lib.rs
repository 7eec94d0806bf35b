//! # echo4o-bench
//!
//! The benchmarks Echo-4o introduced and reported, scored exactly as the released scripts score
//! them, with any OpenAI-compatible judge (OpenAI, vLLM, llama.cpp, Ollama), many requests in
//! flight, resumable runs and reports:
//!
//! - [`geneval_pp`]: GenEval++ (280 prompts, 7 tags, pass/fail checklist judge);
//! - [`imagine`]: Imagine-Bench (270 fantasy prompts, three 0-10 scores);
//! - [`geneval`]: GenEval (553 prompts, 6 tasks): the official rule engine over pluggable
//!   [`geneval::Detector`] and [`geneval::ColorClassifier`], and its folder layout;
//! - [`runner`]: the concurrent, resumable runner of the judged benchmarks, with `--dry-run`.
//!
//! It depends on no compute backend: evaluating a folder of images never compiles burn. The
//! official prompt sets and judge prompts are bundled (see `data/PROVENANCE.md`).
//!
//! ```no_run
//! use echo4o_bench::geneval_pp::GenEvalPp;
//! use echo4o_bench::runner::{run, NoProgress, RunOptions};
//! use echo4o_core::openai::{OpenAiConfig, OpenAiJudge};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let judge = OpenAiJudge::new(OpenAiConfig::new("gpt-4.1"))?;
//! let outcome = run(&GenEvalPp::official(), &judge, &RunOptions::new("images", "out"), &NoProgress).await?;
//! println!("GenEval++ overall: {}", outcome.summary.overall);
//! # Ok(()) }
//! ```
//!
//! The scoring functions are plain and testable on their own:
//!
//! ```
//! use echo4o_bench::imagine::{extract_scores, Scoring};
//! let s = extract_scores("Fantasy Fulfillment: 7\nIdentity Preservation: 9\nAesthetic Quality: 8");
//! assert_eq!(Scoring::Official.weighted(&s), 7.2); // min(7, 9) * 0.8 + 8 * 0.2
//! ```
#![deny(missing_docs)]

mod error;
pub mod eval;
pub mod geneval;
pub mod geneval_pp;
pub mod imagine;
pub mod omnicontext;
pub mod report;
pub mod runner;
mod store;
pub mod suite;
mod text;

pub use echo4o_core::{Judge, Scorer, Verdict};
pub use error::{Error, Result};
pub use store::ResultStore;
pub use text::{fill, parse_jsonl, py_json_dumps, py_json_dumps_unicode, py_round};
