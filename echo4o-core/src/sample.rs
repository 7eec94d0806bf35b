//! One training or evaluation sample: an instruction, a target image, optional reference images.

use std::sync::Arc;

use image::RgbImage;
use serde_json::{Map, Value};

use crate::{Result, image_io};

/// An image inside a [`Sample`]: either still encoded (as read from a shard, a parquet cell or a
/// file) or already decoded.
///
/// Readers hand out encoded bytes so that decoding can happen on the loader's worker threads, not
/// on the thread that walks the dataset. Cloning is cheap (the pixels are shared).
#[derive(Debug, Clone)]
pub struct SampleImage {
    origin: String,
    data: ImageData,
}

#[derive(Debug, Clone)]
enum ImageData {
    Encoded(Arc<[u8]>),
    Decoded(Arc<RgbImage>),
}

impl SampleImage {
    /// Encoded bytes (PNG, JPEG, WebP, ...) from `origin`, decoded on demand.
    pub fn encoded(bytes: impl Into<Arc<[u8]>>, origin: impl Into<String>) -> Self {
        SampleImage {
            origin: origin.into(),
            data: ImageData::Encoded(bytes.into()),
        }
    }

    /// An image already in memory.
    pub fn decoded(image: RgbImage, origin: impl Into<String>) -> Self {
        SampleImage {
            origin: origin.into(),
            data: ImageData::Decoded(Arc::new(image)),
        }
    }

    /// Where the image came from: a path, `shard.tar.gz:member`, `file.parquet:row 12`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The encoded bytes, if the image has not been decoded.
    pub fn encoded_bytes(&self) -> Option<&[u8]> {
        match &self.data {
            ImageData::Encoded(b) => Some(b),
            ImageData::Decoded(_) => None,
        }
    }

    /// The pixels as RGB8, decoding if needed; a decode error names [`origin`](Self::origin).
    pub fn to_rgb(&self) -> Result<RgbImage> {
        match &self.data {
            ImageData::Encoded(bytes) => image_io::decode_image(bytes, &self.origin),
            ImageData::Decoded(img) => Ok(img.as_ref().clone()),
        }
    }
}

/// A sample of image-generation data.
///
/// The target image is required: a sample without one cannot train or be shown. Reference images
/// are empty for text-to-image data and hold 1 or more images for multi-reference data, in the
/// order the instruction refers to them.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Stable identifier inside its source (e.g. `Surrel-Fantasy-Image/00042`).
    pub id: String,
    /// The text instruction (caption, edit or composition instruction).
    pub instruction: String,
    /// The image the instruction describes or asks for.
    pub target: SampleImage,
    /// Reference images (multi-reference composition), in order.
    pub references: Vec<SampleImage>,
    /// The subset the sample belongs to (e.g. `Instruction-Following-Image`).
    pub subset: Option<String>,
    /// The category inside the subset (e.g. `hard`, `T3`).
    pub category: Option<String>,
    /// Every other field of the source record, untouched.
    pub metadata: Map<String, Value>,
}

impl Sample {
    /// A text-to-image sample with no subset, category or metadata.
    pub fn new(id: impl Into<String>, instruction: impl Into<String>, target: SampleImage) -> Self {
        Sample {
            id: id.into(),
            instruction: instruction.into(),
            target,
            references: Vec::new(),
            subset: None,
            category: None,
            metadata: Map::new(),
        }
    }

    /// Adds reference images (multi-reference composition).
    pub fn with_references(mut self, references: Vec<SampleImage>) -> Self {
        self.references = references;
        self
    }

    /// Sets the subset.
    pub fn with_subset(mut self, subset: impl Into<String>) -> Self {
        self.subset = Some(subset.into());
        self
    }

    /// Sets the category.
    pub fn with_category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// True when the sample has reference images.
    pub fn is_multi_reference(&self) -> bool {
        !self.references.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_images_decode_lazily_and_name_their_origin_on_error() {
        let png = image_io::encode_image(&RgbImage::new(3, 2), image::ImageFormat::Png).unwrap();
        let good = SampleImage::encoded(png, "shard-0.tar.gz:00001.jpg");
        assert_eq!(good.to_rgb().unwrap().dimensions(), (3, 2));
        assert!(good.encoded_bytes().is_some());

        let bad = SampleImage::encoded(&b"garbage"[..], "shard-0.tar.gz:00002.jpg");
        let err = bad.to_rgb().unwrap_err().to_string();
        assert!(err.starts_with("shard-0.tar.gz:00002.jpg"), "{err}");
    }
}
