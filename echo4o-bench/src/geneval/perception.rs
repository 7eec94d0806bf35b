//! The perception behind GenEval's rules, as traits: a [`Detector`] (Mask2Former in the official
//! script) and a [`ColorClassifier`] (zero-shot CLIP), over [`COLORS`].

use image::{GrayImage, RgbImage};

use super::geometry::BBox;
use crate::Result;

/// The ten GenEval colors, in the official order.
pub const COLORS: [&str; 10] = echo4o_core::vocab::GENEVAL_COLORS;

/// One detected object.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Its class (a COCO name).
    pub class: String,
    /// Confidence in [0, 1].
    pub score: f64,
    /// Its box in pixels.
    pub bbox: BBox,
    /// Its instance mask, the image's size, non-zero inside; `None` when the detector has none.
    pub mask: Option<GrayImage>,
}

/// Finds objects in an image: Mask2Former in the official script; the shapes-world detector, or
/// any model behind this trait, here.
pub trait Detector: Send + Sync {
    /// All detections in `image`, of any class, any confidence (the engine thresholds them).
    fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>>;
}

/// Names the color of object crops: zero-shot CLIP over [`COLORS`] in the official script.
pub trait ColorClassifier: Send + Sync {
    /// One color of [`COLORS`] per crop. Crops are the object composited over the background
    /// color through its mask, then cut to its box, as the official `ImageCrops` makes them.
    fn classify(&self, crops: &[RgbImage], class: &str) -> Result<Vec<String>>;
}
