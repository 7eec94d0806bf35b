//! The [`Scorer`] plug-in trait: (benchmark item, image) -> verdict.

use async_trait::async_trait;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::{Result, Usage};

/// A scorer's judgement of one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The item's score on the benchmark's own scale (1.0/0.0 for pass/fail benchmarks, 0..10 for
    /// Imagine-Bench).
    pub score: f64,
    /// Whether the item counts as passed, for benchmarks that have such a notion.
    pub passed: Option<bool>,
    /// The judge's or rule engine's explanation.
    pub reason: String,
    /// Benchmark-specific details, written to the results file as they are.
    #[serde(default)]
    pub details: serde_json::Value,
    /// Tokens spent on the verdict (zero for local scorers).
    #[serde(default)]
    pub usage: Usage,
}

/// Scores one benchmark item's image: the GenEval++ and Imagine-Bench judges, the GenEval rule
/// engine.
///
/// # Example: a scorer of your own
///
/// ```
/// use async_trait::async_trait;
/// use echo4o_core::{Result, Scorer, Usage, Verdict};
/// use image::RgbImage;
///
/// /// Passes images brighter than a threshold.
/// struct Bright(u8);
///
/// #[async_trait]
/// impl Scorer for Bright {
///     type Item = String;
///     async fn score(&self, item: &String, image: &RgbImage) -> Result<Verdict> {
///         let mean = image.as_raw().iter().map(|&v| v as f64).sum::<f64>()
///             / image.as_raw().len() as f64;
///         Ok(Verdict {
///             score: mean,
///             passed: Some(mean > self.0 as f64),
///             reason: format!("{item}: mean {mean:.1}"),
///             details: serde_json::Value::Null,
///             usage: Usage::default(),
///         })
///     }
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let white = RgbImage::from_pixel(2, 2, image::Rgb([255, 255, 255]));
/// let verdict = Bright(100).score(&"item 1".to_string(), &white).await?;
/// assert_eq!(verdict.passed, Some(true));
/// # Ok::<(), echo4o_core::Error>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait Scorer: Send + Sync {
    /// The benchmark item this scorer reads (prompt, metadata, checklist).
    type Item: Send + Sync;

    /// Scores `image` against `item`.
    async fn score(&self, item: &Self::Item, image: &RgbImage) -> Result<Verdict>;
}
