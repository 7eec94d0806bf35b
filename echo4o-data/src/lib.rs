//! # echo4o-data
//!
//! Echo-4o-style training data without Python: readers for the Echo-4o-Image snapshot and Bagel's
//! parquet formats (each a [`echo4o_core::DataSource`]), Bagel's image transforms, loaders,
//! writers, the procedural shapes world and the synthesis pipeline. It depends on no compute
//! backend.
//!
//! This crate is being built up issue by issue; today it re-exports the core data vocabulary.
//!
//! ```
//! use echo4o_data::{DataSource, InMemorySource};
//!
//! let empty = InMemorySource::new("empty", Vec::new());
//! assert_eq!(empty.samples().count(), 0);
//! ```
#![deny(missing_docs)]

pub use echo4o_core::{DataSource, InMemorySource, Sample, SampleImage};
