//! # echo4o-perception
//!
//! The models behind GenEval's verdicts, native in burn, behind `echo4o-bench`'s perception
//! traits: [`clip`], open_clip's CLIP and GenEval's zero-shot colour classifier (a
//! [`ColorClassifier`](echo4o_bench::geneval::ColorClassifier)). Model code is generic over
//! burn's `Backend`; `echo4o-bench` itself stays free of burn.
#![deny(missing_docs)]

pub mod attention;
pub mod clip;
mod error;
pub mod mask2former;

pub use error::Error;
