//! # echo4o-data
//!
//! Echo-4o-style training data without Python: readers for the Echo-4o-Image snapshot
//! ([`echo4o_image`]) and a plain JSONL + folder format ([`folder`]), each a
//! [`echo4o_core::DataSource`]; Bagel's transforms ([`transforms`]); writers; the shapes world
//! ([`shapes`]); and the synthesis pipeline Echo-4o used but never released ([`synth`]: recipes,
//! image backends, verify-and-rewrite, resumable jobs with provenance). It depends on no compute
//! backend.
//!
//! ```no_run
//! use echo4o_data::{DataSource, echo4o_image::{Echo4oImage, Filter}};
//!
//! let data = Echo4oImage::open("Echo-4o-Image".as_ref())?
//!     .with_filter(Filter { categories: vec!["hard".into()], ..Default::default() });
//! for sample in data.samples().take(3) {
//!     let s = sample?;
//!     println!("{}: {}", s.id, s.instruction);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod contact_sheet;
pub mod convert;
pub mod echo4o_image;
mod error;
pub mod folder;
pub mod jsonl;
pub mod loader;
mod open;
pub mod parquet;
pub mod shapes;
mod stream;
#[cfg(feature = "synth")]
pub mod synth;
pub mod transforms;

pub use echo4o_core::{DataSource, InMemorySource, Sample, SampleImage};
pub use error::{Error, Result};
pub use open::{Kind, detect, open_source};
