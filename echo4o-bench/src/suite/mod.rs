//! One abstraction every benchmark implements, so that any [`Generator`](echo4o_core::Generator)
//! can be taken to any benchmark's score by one loop ([`crate::eval`]).
//!
//! A [`Benchmark`] knows its items (id, prompt, reference images), the official generation
//! recipe (images per item, size rule, sampler settings as the official generation script passes
//! them), where each image goes in the official layout, and how the folder is scored. The
//! built-in ones are made by name with [`by_name`]:
//!
//! | name | items | layout | scored by |
//! |---|---|---|---|
//! | `geneval`, `geneval-long` | 553 | `NNNNN/samples/KKKKK.png` | GenEval's rule engine (needs a COCO detector) |
//! | `geneval-pp` | 280 | `{line}.jpg` | the GenEval++ judge |
//! | `imagine` | 270 | `{id}.png` | the Imagine-Bench judge |
//! | `omnicontext` | as downloaded | `{task_type}/{key}.png` | the OmniContext PF/SC judge |
//! | `geneval-shapes`, `geneval-pp-shapes` | 300, 280 | `NNNNN/samples/KKKKK.png` | the shapes detector |
//!
//! ```
//! use echo4o_bench::suite::{by_name, Options};
//!
//! let bench = by_name("geneval-pp-shapes", &Options::default())?;
//! assert_eq!(bench.items().len(), 280);
//! assert_eq!(bench.recipe().samples, 4);
//! let path = bench.image_path(std::path::Path::new("out/images"), 3, 1);
//! assert!(path.ends_with("00003/samples/00001.png"));
//! # Ok::<(), echo4o_bench::Error>(())
//! ```

mod builtin;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use echo4o_core::{Judge, SamplerSettings, SizeRule};
use image::RgbImage;

pub use builtin::{GenEvalPpSuite, GenEvalSuite, ImagineSuite, JudgedSuite, shapes_sampler};

use crate::report::Summary;
use crate::runner::Progress;
use crate::{Error, Result};

/// A reference image of an item: a file, or encoded bytes read from a dataset (parquet).
#[derive(Debug, Clone, PartialEq)]
pub enum ReferenceImage {
    /// An image file.
    File(PathBuf),
    /// Encoded image bytes (JPEG, PNG, WebP) and where they came from, for errors.
    Encoded {
        /// Where the bytes were read (`file.parquet` row 3 `input_images[1]`).
        origin: String,
        /// The encoded image.
        bytes: Arc<[u8]>,
    },
}

impl ReferenceImage {
    /// Decodes the image (EXIF orientation applied, as the official readers do).
    pub fn load(&self) -> Result<RgbImage> {
        match self {
            ReferenceImage::File(path) => Ok(echo4o_core::load_image(path)?),
            ReferenceImage::Encoded { origin, bytes } => {
                Ok(echo4o_core::decode_image(bytes, origin)?)
            }
        }
    }

    /// Where the image comes from, for messages.
    pub fn origin(&self) -> String {
        match self {
            ReferenceImage::File(path) => path.display().to_string(),
            ReferenceImage::Encoded { origin, .. } => origin.clone(),
        }
    }
}

/// One benchmark item, as generation sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalItem {
    /// The id the official layout names its image(s) after.
    pub id: String,
    /// The task, tag or type the item is reported under.
    pub group: String,
    /// The prompt or instruction.
    pub prompt: String,
    /// Reference images, in the order the instruction names them.
    pub references: Vec<ReferenceImage>,
}

/// How the official generation script makes a benchmark's images.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    /// Images per item by default (GenEval: 4).
    pub samples: usize,
    /// Images per item the official layout can hold (`None`: any number).
    pub max_samples: Option<usize>,
    /// Output width when `size_rule` is fixed.
    pub width: u32,
    /// Output height when `size_rule` is fixed.
    pub height: u32,
    /// How the output size is chosen.
    pub size_rule: SizeRule,
    /// Sampler settings the official script passes (unset: the generator's task defaults).
    pub sampler: SamplerSettings,
    /// Crop each image to the bounding box of its non-black pixels before saving, as Echo-4o's
    /// scripts do with PIL's `image.crop(image.getbbox())`.
    pub crop_to_content: bool,
}

/// Settings of a scoring pass.
pub struct ScoreContext<'a> {
    /// The judge, for judged benchmarks.
    pub judge: Option<&'a dyn Judge>,
    /// Items judged at once.
    pub concurrency: usize,
    /// Judge attempts per item.
    pub attempts: u32,
    /// Progress of the scoring.
    pub progress: &'a dyn Progress,
}

/// A benchmark as [`crate::eval`] drives it: items, recipe, layout, scorer.
///
/// Scoring futures are not `Send` (the judged runner borrows items across awaits); drive them
/// with `block_on` or on a current-thread runtime, as `echo4o eval` does.
#[async_trait(?Send)]
pub trait Benchmark: Send + Sync {
    /// The name `echo4o eval --bench` takes (`geneval-pp`).
    fn name(&self) -> &str;
    /// The items, in their official order.
    fn items(&self) -> &[EvalItem];
    /// The official generation recipe.
    fn recipe(&self) -> Recipe;
    /// Where image `sample` of item `index` goes under `images`.
    fn image_path(&self, images: &Path, index: usize, sample: usize) -> PathBuf;
    /// Writes what the layout needs besides the images (GenEval: `metadata.jsonl`). By default
    /// nothing.
    fn prepare(&self, _images: &Path, _index: usize) -> Result<()> {
        Ok(())
    }
    /// Whether this build can score the benchmark at all; checked before any generation, so a
    /// user does not generate thousands of images to learn that. By default yes.
    fn check_scorable(&self) -> Result<()> {
        Ok(())
    }
    /// Whether scoring needs a judge (`ScoreContext::judge`).
    fn needs_judge(&self) -> bool;
    /// The judge model the official script uses, for judged benchmarks.
    fn default_judge_model(&self) -> Option<&'static str> {
        None
    }
    /// Scores the folder `images` (in the official layout) into `out`: the official output files,
    /// `summary.json` and the reports.
    async fn score(&self, images: &Path, out: &Path, ctx: &ScoreContext<'_>) -> Result<Summary>;
}

/// Where items that are not bundled come from, and variants of the built-in benchmarks.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The downloaded data of a benchmark that does not ship its items (OmniContext: the HF
    /// dataset's parquet files or folder, or the flattened `metadata.json` folder).
    pub data: Option<PathBuf>,
    /// Reproduce the official scripts' quirks (Imagine-Bench's dropped Multi-Object weight;
    /// OmniContext's 6 requests per item and guessed scores).
    pub strict_official: bool,
    /// OmniContext: average over Echo-4o's 6 multi-input types instead of all 8.
    pub multi_only: bool,
    /// Only the first `n` items, for generation and scoring alike (a smoke run). `None`: all.
    pub limit: Option<usize>,
    /// GenEval's models for `geneval` and `geneval-long` on real images (Mask2Former and CLIP
    /// in the official script); without them those two can generate but not score.
    pub perception: Option<Perception>,
}

/// A detector and a colour classifier for GenEval's rule engine, shared by every scoring call.
#[derive(Clone)]
pub struct Perception {
    /// Finds the objects (GenEval's Mask2Former, or any model behind the trait).
    pub detector: std::sync::Arc<dyn crate::geneval::Detector>,
    /// Names their colours (GenEval's zero-shot CLIP, or any model behind the trait).
    pub classifier: std::sync::Arc<dyn crate::geneval::ColorClassifier>,
}

impl std::fmt::Debug for Perception {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Perception { detector, classifier }")
    }
}

/// The names [`by_name`] knows.
pub const NAMES: [&str; 7] = [
    "geneval",
    "geneval-long",
    "geneval-pp",
    "imagine",
    "omnicontext",
    "geneval-shapes",
    "geneval-pp-shapes",
];

/// A built-in benchmark by name (see the table in the [module docs](self)).
pub fn by_name(name: &str, options: &Options) -> Result<Box<dyn Benchmark>> {
    if options.data.is_some() && name != "omnicontext" {
        return Err(Error::invalid(
            "--data",
            format!("{name} ships its items; --data is for omnicontext"),
        ));
    }
    let n = options.limit.unwrap_or(usize::MAX);
    Ok(match name {
        "geneval" | "geneval-long" => {
            let suite = GenEvalSuite::official(name == "geneval-long").first(n);
            match &options.perception {
                Some(p) => Box::new(suite.with_perception(p.clone())),
                None => Box::new(suite),
            }
        }
        "geneval-shapes" => Box::new(GenEvalSuite::shapes(false).first(n)),
        "geneval-pp-shapes" => Box::new(GenEvalSuite::shapes(true).first(n)),
        "geneval-pp" => Box::new(GenEvalPpSuite::official_first(n)),
        "imagine" => Box::new(ImagineSuite::official_first(n, options.strict_official)),
        "omnicontext" => {
            let Some(data) = &options.data else {
                return Err(Error::invalid(
                    "omnicontext",
                    "needs --data: the downloaded OmniGen2/OmniContext dataset (its parquet \
                     files or folder) or the flattened folder with metadata.json",
                ));
            };
            let mut items = crate::omnicontext::load(data)?;
            items.truncate(n);
            Box::new(
                crate::omnicontext::OmniContext::with_items(items)
                    .with_strict_official(options.strict_official)
                    .with_multi_only(options.multi_only),
            )
        }
        other => {
            return Err(Error::invalid(
                "benchmark",
                format!("unknown name {other:?} (known: {})", NAMES.join(", ")),
            ));
        }
    })
}

/// PIL's `image.crop(image.getbbox())`: the smallest box holding every pixel with a non-zero
/// channel; an all-black image is returned whole (PIL's `crop(None)`).
///
/// ```
/// use echo4o_bench::suite::crop_to_content;
/// let mut img = image::RgbImage::new(8, 6);
/// img.put_pixel(2, 1, image::Rgb([0, 0, 9]));
/// img.put_pixel(5, 3, image::Rgb([1, 0, 0]));
/// assert_eq!(crop_to_content(&img).dimensions(), (4, 3));
/// ```
pub fn crop_to_content(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut bbox: Option<(u32, u32, u32, u32)> = None;
    for (x, y, p) in img.enumerate_pixels() {
        if p.0 != [0, 0, 0] {
            bbox = Some(match bbox {
                None => (x, y, x, y),
                Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
            });
        }
    }
    match bbox {
        Some((x0, y0, x1, y1)) if (x0, y0, x1, y1) != (0, 0, w - 1, h - 1) => {
            image::imageops::crop_imm(img, x0, y0, x1 - x0 + 1, y1 - y0 + 1).to_image()
        }
        _ => img.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_builds_or_says_what_it_needs() {
        for name in NAMES {
            match by_name(name, &Options::default()) {
                Ok(b) => {
                    assert_eq!(b.name(), name);
                    assert!(!b.items().is_empty(), "{name}");
                    let r = b.recipe();
                    assert!(r.samples >= 1 && r.max_samples.is_none_or(|m| m >= r.samples));
                }
                Err(e) => {
                    assert_eq!(name, "omnicontext");
                    assert!(e.to_string().contains("--data"), "{e}");
                }
            }
        }
        let err = by_name("genevall", &Options::default())
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("geneval-pp")));
        let with_data = Options {
            data: Some("x".into()),
            ..Options::default()
        };
        assert!(by_name("geneval", &with_data).is_err());
    }

    #[test]
    fn crop_keeps_an_image_without_black_borders() {
        let img = RgbImage::from_pixel(5, 4, image::Rgb([3, 3, 3]));
        assert_eq!(crop_to_content(&img), img);
        let black = RgbImage::new(5, 4);
        assert_eq!(crop_to_content(&black), black);
    }

    #[test]
    fn ids_are_unique_in_every_bundled_benchmark() {
        for name in NAMES.iter().filter(|n| **n != "omnicontext") {
            let b = by_name(name, &Options::default()).unwrap();
            let mut ids: Vec<&str> = b.items().iter().map(|i| i.id.as_str()).collect();
            ids.sort_unstable();
            let n = ids.len();
            ids.dedup();
            assert_eq!(ids.len(), n, "{name}");
        }
    }
}
