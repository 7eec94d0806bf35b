//! # echo4o
//!
//! Echo-4o (arXiv 2508.09987) for Rust: the Echo-4o-Image dataset, the Echo-4o/BAGEL model on
//! burn, and the GenEval++, Imagine-Bench and GenEval benchmarks, as one facade over the member
//! crates. Depend on a member crate directly when you need only part of it: `echo4o-bench` and
//! `echo4o-data` compile without burn.
//!
//! | module | crate | what |
//! |---|---|---|
//! | [`core`] | `echo4o-core` | shared types, plug-in traits, errors, image I/O |
//! | [`data`] | `echo4o-data` | datasets, transforms, loaders, writers |
//! | [`model`] | `echo4o-model` | BAGEL in burn, backends |
//! | [`bench`](mod@bench) | `echo4o-bench` | GenEval++, Imagine-Bench, GenEval |
//! | [`perception`] | `echo4o-perception` | GenEval's models in burn: CLIP colour classifier |
//! | [`experiment`] | this crate | training runs and shapes-world evaluation |
//!
//! ```
//! use echo4o::core::GenerationRequest;
//! use echo4o::model::DeviceSpec;
//!
//! let request = GenerationRequest::new("1", "A photo of a red apple").with_seed(7);
//! let device: DeviceSpec = "cpu".parse()?;
//! assert_eq!(request.seed, 7);
//! assert_eq!(device, DeviceSpec::Flex);
//! # Ok::<(), echo4o::model::Error>(())
//! ```
#![deny(missing_docs)]

pub mod experiment;

pub use echo4o_bench as bench;
pub use echo4o_core as core;
pub use echo4o_data as data;
pub use echo4o_model as model;
pub use echo4o_perception as perception;
