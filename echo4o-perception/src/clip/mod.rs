//! CLIP as open_clip builds it, and GenEval's zero-shot colour classifier on it.
//!
//! ```no_run
//! use echo4o_bench::geneval::ColorClassifier;
//! use echo4o_perception::clip::{ClipColorClassifier, ClipConfig};
//! # type B = burn_flex::Flex;
//! // open_clip's ViT-L-14 `openai` weights, saved as safetensors.
//! let clf = ClipColorClassifier::<B>::load(
//!     ClipConfig::vit_l_14_openai(),
//!     "open_clip_model.safetensors".as_ref(),
//!     Default::default(),
//! )?;
//! let crop = image::RgbImage::from_pixel(40, 30, image::Rgb([200, 20, 20]));
//! let colors = clf.classify(&[crop], "car")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod color;
pub mod config;
pub mod model;
pub mod preprocess;
pub mod tokenizer;

pub use color::ClipColorClassifier;
pub use config::ClipConfig;
pub use model::Clip;
pub use tokenizer::ClipTokenizer;
