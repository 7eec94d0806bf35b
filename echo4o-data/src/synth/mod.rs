//! The Echo-4o synthesis pipeline, which the paper used but never released: three recipes write
//! prompts, any image generator draws them, a verifier checks each image, a rewriter fixes the
//! prompt of a misaligned one ("no invalid images, only invalid prompts"), and a resumable job
//! keeps a ledger, a budget and full provenance.
//!
//! - Recipes: [`instruction::InstructionRecipe`], [`surreal::SurrealRecipe`],
//!   [`multiref::MultirefRecipe`]; each yields [`SynthPrompt`]s with structured metadata.
//! - Backends: [`backend::ImagesBackend`] (OpenAI or a compatible local server) and
//!   [`backend::GeneratorBackend`] (any [`echo4o_core::Generator`], BAGEL included).
//! - Verification: [`verify::Verifier`] / [`verify::Rewriter`]; chat-model versions here, the
//!   GenEval rule engine and a rule-based rewriter in `echo4o-bench`.
//! - Jobs: [`job::SynthJob`] (ledger, atomic outputs, concurrency, rate and budget limits,
//!   [`job::Provenance`]), then [`export::export`] to the Echo-4o-Image layout and Bagel parquet.
//!
//! ```no_run
//! use std::sync::Arc;
//! use echo4o_core::openai::images::{ImageOptions, ImagesClient, ImagesConfig};
//! use echo4o_data::synth::{backend::ImagesBackend, instruction::InstructionRecipe, job::{JobConfig, SynthJob}};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let prompts = InstructionRecipe { seed: 7, ..Default::default() }.prompts(100)?;
//! let client = ImagesClient::new(ImagesConfig::new("gpt-image-1.5"))?;
//! let backend = ImagesBackend::new(client, ImageOptions { quality: Some("low".into()), ..Default::default() });
//! let mut config = JobConfig::new("synth_out");
//! config.max_images = Some(100);
//! let stats = SynthJob::new(config, Arc::new(backend)).run(prompts).await?;
//! println!("{} kept, {} refused", stats.aligned + stats.unverified, stats.refused);
//! # Ok(()) }
//! ```

pub mod backend;
mod budget;
pub mod export;
pub mod instruction;
pub mod job;
pub mod ledger;
pub mod multiref;
mod prompt;
mod provenance;
pub mod surreal;
pub mod verify;

pub use ledger::{canonical_json, request_key};
pub use prompt::{RecipeKind, RefLabel, Reference, SynthPrompt};
