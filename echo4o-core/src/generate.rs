//! The [`Generator`] plug-in trait, its request type, and [`FolderGenerator`], which serves
//! images generated elsewhere.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::{Error, Result, image_io};

/// Sampler settings a request may override. `None` means "the generator's default for this task".
///
/// These are BAGEL's knobs (see `echo4o-model`); other generators use what applies to them and
/// ignore the rest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerSettings {
    /// Number of timesteps (BAGEL: 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// Text classifier-free guidance scale (BAGEL: 4.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cfg_text: Option<f32>,
    /// Image classifier-free guidance scale (BAGEL: 1.0 for T2I, 2.0 with references).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cfg_img: Option<f32>,
    /// Timestep shift (BAGEL: 3.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<f32>,
    /// Guidance applies where `lo < t <= hi` (BAGEL: `[0.4, 1]` for T2I, `[0, 1]` with
    /// references; GenEval's generation script passes `[0, 1]` for T2I too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cfg_interval: Option<(f32, f32)>,
}

/// How the output size of a request is chosen.
///
/// The official scripts differ here, so the rule travels with the request rather than being a
/// generator setting: GenEval-style text-to-image asks for a fixed size, Echo-4o's OmniContext
/// script derives it from the first input image ([`first_reference_size`]), and BAGEL's
/// inferencer uses the last reference after the VAE resize (only the model knows that resize).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeRule {
    /// `width` x `height` of the request.
    #[default]
    Fixed,
    /// [`first_reference_size`] of the first reference (Echo-4o's `gen_images_omnicontext.py`).
    FirstReference,
    /// The last reference's size after the model's own VAE resize (BAGEL's inferencer).
    LastReference,
}

/// Python's `round()` (ties to even), as the official scripts round sizes.
fn py_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// Echo-4o's `apply_scale`: each side scaled, rounded, then rounded to a multiple of 16 (at
/// least 16).
fn apply_scale(width: u32, height: u32, scale: f64) -> (u32, u32) {
    let divisible = |v: f64| (py_round(v / 16.0) * 16.0).max(16.0) as u32;
    (
        divisible(py_round(width as f64 * scale)),
        divisible(py_round(height as f64 * scale)),
    )
}

/// The output size Echo-4o's OmniContext script derives from the first input image of
/// `width` x `height`: `scale = max(min(1024 / long side, 1), 512 / short side)`, applied with
/// sides rounded to multiples of 16, then scaled down again if the long side exceeds 1024.
///
/// ```
/// use echo4o_core::first_reference_size;
/// assert_eq!(first_reference_size(800, 600), (800, 608)); // kept, rounded to the grid
/// assert_eq!(first_reference_size(300, 200), (768, 512)); // short side raised to 512
/// assert_eq!(first_reference_size(4000, 1000), (1024, 256)); // long side capped again
/// ```
pub fn first_reference_size(width: u32, height: u32) -> (u32, u32) {
    let (w, h) = (width.max(1) as f64, height.max(1) as f64);
    let scale = (1024.0 / w.max(h)).min(1.0).max(512.0 / w.min(h));
    let (w, h) = apply_scale(width.max(1), height.max(1), scale);
    if w.max(h) > 1024 {
        apply_scale(w, h, 1024.0 / w.max(h) as f64)
    } else {
        (w, h)
    }
}

/// What to generate: a prompt, optional reference images, a size and a seed.
///
/// ```
/// use echo4o_core::GenerationRequest;
///
/// let req = GenerationRequest::new("17", "A photo of six clocks")
///     .with_size(512, 512)
///     .with_seed(42);
/// assert_eq!((req.width, req.height, req.seed, req.num_images), (512, 512, 42, 1));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// The caller's id for this request; folder generators look images up by it, and outputs are
    /// named after it.
    pub id: String,
    /// The text prompt or instruction.
    pub prompt: String,
    /// Reference images for multi-reference composition, in the order the prompt names them.
    pub references: Vec<RgbImage>,
    /// Output width in pixels. By default 1024.
    pub width: u32,
    /// Output height in pixels. By default 1024.
    pub height: u32,
    /// How the output size is chosen; `width` and `height` apply under [`SizeRule::Fixed`]. By
    /// default fixed.
    pub size_rule: SizeRule,
    /// Seed for every random draw. By default 0.
    pub seed: u64,
    /// How many images to return. By default 1.
    pub num_images: usize,
    /// Sampler overrides. By default none.
    pub sampler: SamplerSettings,
}

impl GenerationRequest {
    /// A request for one 1024x1024 image with seed 0 and the generator's default sampler.
    pub fn new(id: impl Into<String>, prompt: impl Into<String>) -> Self {
        GenerationRequest {
            id: id.into(),
            prompt: prompt.into(),
            references: Vec::new(),
            width: 1024,
            height: 1024,
            size_rule: SizeRule::Fixed,
            seed: 0,
            num_images: 1,
            sampler: SamplerSettings::default(),
        }
    }

    /// Sets the output size.
    pub fn with_size(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }

    /// Sets how the output size is chosen.
    pub fn with_size_rule(mut self, rule: SizeRule) -> Self {
        self.size_rule = rule;
        self
    }

    /// The output size when it does not depend on the model: `width` x `height` under
    /// [`SizeRule::Fixed`], [`first_reference_size`] of the first reference under
    /// [`SizeRule::FirstReference`]; `None` under [`SizeRule::LastReference`], or when the rule
    /// needs a reference the request lacks.
    pub fn resolved_size(&self) -> Option<(u32, u32)> {
        match self.size_rule {
            SizeRule::Fixed => Some((self.width, self.height)),
            SizeRule::FirstReference => self
                .references
                .first()
                .map(|r| first_reference_size(r.width(), r.height())),
            SizeRule::LastReference => None,
        }
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the number of images.
    pub fn with_num_images(mut self, n: usize) -> Self {
        self.num_images = n;
        self
    }

    /// Sets the reference images.
    pub fn with_references(mut self, references: Vec<RgbImage>) -> Self {
        self.references = references;
        self
    }

    /// Sets the sampler overrides.
    pub fn with_sampler(mut self, sampler: SamplerSettings) -> Self {
        self.sampler = sampler;
        self
    }
}

/// An image generator: BAGEL on burn, an OpenAI-compatible images API, or a folder of images
/// generated elsewhere.
///
/// It returns exactly `request.num_images` images or an error.
///
/// # Example: a generator of your own
///
/// ```
/// use async_trait::async_trait;
/// use echo4o_core::{GenerationRequest, Generator, Result};
/// use image::{Rgb, RgbImage};
///
/// /// Paints every image grey; useful to dry-run a pipeline.
/// struct Grey;
///
/// #[async_trait]
/// impl Generator for Grey {
///     fn name(&self) -> String {
///         "grey".into()
///     }
///     async fn generate(&self, req: &GenerationRequest) -> Result<Vec<RgbImage>> {
///         let img = RgbImage::from_pixel(req.width, req.height, Rgb([128, 128, 128]));
///         Ok(vec![img; req.num_images])
///     }
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let images = Grey.generate(&GenerationRequest::new("1", "anything").with_size(64, 32)).await?;
/// assert_eq!(images[0].dimensions(), (64, 32));
/// # Ok::<(), echo4o_core::Error>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait Generator: Send + Sync {
    /// A short name for reports and provenance (e.g. `bagel-7b-mot`, `gpt-image-1`).
    fn name(&self) -> String;

    /// Generates `request.num_images` images for `request`.
    async fn generate(&self, request: &GenerationRequest) -> Result<Vec<RgbImage>>;

    /// Whether requests may carry reference images. Evaluation asks before it starts, so a
    /// text-only generator is refused a multi-reference benchmark at once rather than failing
    /// item by item. By default `true`.
    fn accepts_references(&self) -> bool {
        true
    }
}

/// Where a folder of pre-generated images keeps image `index` of request `id`.
///
/// The benchmarks add their official layouts (GenEval's `<NNNNN>/samples/<k>.png`, GenEval++'s
/// `{line}.jpg`); [`FlatLayout`] is the plain default.
pub trait ImageLayout: Send + Sync {
    /// Paths to try, in order of preference, for image `index` of request `id`.
    fn candidates(&self, root: &Path, id: &str, index: usize) -> Vec<PathBuf>;
}

pub use crate::vocab::IMAGE_EXTENSIONS;

/// `{id}.{ext}` for the first image, `{id}_{index}.{ext}` for the others, with `ext` tried in the
/// order of [`IMAGE_EXTENSIONS`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FlatLayout;

impl ImageLayout for FlatLayout {
    fn candidates(&self, root: &Path, id: &str, index: usize) -> Vec<PathBuf> {
        let stem = if index == 0 {
            id.to_string()
        } else {
            format!("{id}_{index}")
        };
        IMAGE_EXTENSIONS
            .iter()
            .map(|ext| root.join(format!("{stem}.{ext}")))
            .collect()
    }
}

/// A [`Generator`] that serves images generated elsewhere, looked up by request id.
///
/// This is how images from any other system (a Python pipeline, a web service, a human) enter
/// echo4o's evaluation: point the benchmark runner at the folder.
///
/// ```
/// use echo4o_core::{FolderGenerator, GenerationRequest, Generator};
///
/// # let dir = tempfile::tempdir().unwrap();
/// let img = image::RgbImage::from_pixel(8, 8, image::Rgb([0, 128, 255]));
/// echo4o_core::save_image(&img, &dir.path().join("17.png")).unwrap();
///
/// let folder = FolderGenerator::new(dir.path());
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let images = folder.generate(&GenerationRequest::new("17", "ignored")).await.unwrap();
/// assert_eq!(images, vec![img]);
/// let missing = folder.generate(&GenerationRequest::new("18", "ignored")).await;
/// assert!(missing.unwrap_err().to_string().contains("18.png"));
/// # });
/// ```
pub struct FolderGenerator {
    root: PathBuf,
    layout: Box<dyn ImageLayout>,
}

impl FolderGenerator {
    /// Serves images from `root` in the [`FlatLayout`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FolderGenerator {
            root: root.into(),
            layout: Box::new(FlatLayout),
        }
    }

    /// Uses another layout. By default [`FlatLayout`].
    pub fn with_layout(mut self, layout: impl ImageLayout + 'static) -> Self {
        self.layout = Box::new(layout);
        self
    }

    /// The folder served.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of image `index` of request `id`: the first candidate that exists.
    pub fn find(&self, id: &str, index: usize) -> Result<PathBuf> {
        let tried = self.layout.candidates(&self.root, id, index);
        match tried.iter().find(|p| p.is_file()) {
            Some(p) => Ok(p.clone()),
            None => Err(Error::ImageNotFound {
                id: if index == 0 {
                    id.to_string()
                } else {
                    format!("{id}[{index}]")
                },
                tried,
            }),
        }
    }
}

#[async_trait]
impl Generator for FolderGenerator {
    fn name(&self) -> String {
        format!("folder:{}", self.root.display())
    }

    async fn generate(&self, request: &GenerationRequest) -> Result<Vec<RgbImage>> {
        (0..request.num_images)
            .map(|k| image_io::load_image(&self.find(&request.id, k)?))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn serves_every_extension_in_preference_order() {
        let dir = tempfile::tempdir().unwrap();
        let red = RgbImage::from_pixel(4, 4, image::Rgb([255, 0, 0]));
        let blue = RgbImage::from_pixel(4, 4, image::Rgb([0, 0, 255]));
        image_io::save_image(&red, &dir.path().join("a.webp")).unwrap();
        image_io::save_image(&blue, &dir.path().join("a.png")).unwrap();
        image_io::save_image(&red, &dir.path().join("a_1.webp")).unwrap();
        let folder = FolderGenerator::new(dir.path());
        let req = GenerationRequest::new("a", "p").with_num_images(2);
        let images = block_on(folder.generate(&req)).unwrap();
        assert_eq!(images, vec![blue, red]);
        assert!(folder.name().starts_with("folder:"));
    }

    #[test]
    fn missing_and_unreadable_images_are_errors_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let folder = FolderGenerator::new(dir.path());
        let err = block_on(folder.generate(&GenerationRequest::new("7", "p")))
            .unwrap_err()
            .to_string();
        for ext in IMAGE_EXTENSIONS {
            assert!(err.contains(&format!("7.{ext}")), "{err}");
        }

        std::fs::write(dir.path().join("8.jpg"), b"truncated").unwrap();
        let err = block_on(folder.generate(&GenerationRequest::new("8", "p")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("8.jpg") && err.contains("cannot decode"),
            "{err}"
        );

        image_io::save_image(&RgbImage::new(2, 2), &dir.path().join("9.png")).unwrap();
        let err = block_on(folder.generate(&GenerationRequest::new("9", "p").with_num_images(2)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("9[1]") && err.contains("9_1.png"), "{err}");
    }

    struct Nested;
    impl ImageLayout for Nested {
        fn candidates(&self, root: &Path, id: &str, index: usize) -> Vec<PathBuf> {
            vec![root.join(id).join(format!("{index}.png"))]
        }
    }

    #[test]
    fn custom_layouts_plug_in() {
        let dir = tempfile::tempdir().unwrap();
        image_io::save_image(&RgbImage::new(2, 2), &dir.path().join("00003/0.png")).unwrap();
        let folder = FolderGenerator::new(dir.path()).with_layout(Nested);
        assert_eq!(
            folder.find("00003", 0).unwrap(),
            dir.path().join("00003/0.png")
        );
    }

    #[test]
    fn size_rules_resolve_without_the_model_where_they_can() {
        let refs = vec![RgbImage::new(300, 200), RgbImage::new(64, 64)];
        let req = GenerationRequest::new("1", "p").with_size(64, 32);
        assert_eq!(req.resolved_size(), Some((64, 32)));
        let first = req.clone().with_size_rule(SizeRule::FirstReference);
        assert_eq!(first.resolved_size(), None, "no reference to read");
        assert_eq!(
            first.with_references(refs.clone()).resolved_size(),
            Some((768, 512))
        );
        let last = req
            .with_references(refs)
            .with_size_rule(SizeRule::LastReference);
        assert_eq!(last.resolved_size(), None);
    }

    #[test]
    fn first_reference_size_rounds_as_python_does() {
        // 1000 * 1.0 / 16 = 62.5 rounds to even (62): 992, not 1008.
        assert_eq!(first_reference_size(1000, 1000), (992, 992));
        // A large image: scale 1024/2048 = 0.5 -> 1024x768.
        assert_eq!(first_reference_size(2048, 1536), (1024, 768));
        // Tiny images are raised until the short side is 512.
        assert_eq!(first_reference_size(1, 1), (512, 512));
    }

    proptest::proptest! {
        #[test]
        fn first_reference_size_stays_on_the_grid(w in 1u32..6000, h in 1u32..6000) {
            let (ow, oh) = first_reference_size(w, h);
            proptest::prop_assert!(ow % 16 == 0 && oh % 16 == 0 && ow >= 16 && oh >= 16);
            proptest::prop_assert!(ow.max(oh) <= 1024, "{w}x{h} -> {ow}x{oh}");
        }
    }

    #[test]
    fn sampler_settings_skip_unset_fields() {
        let s = SamplerSettings {
            steps: Some(30),
            ..Default::default()
        };
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"steps":30}"#);
        let err = serde_json::from_str::<SamplerSettings>(r#"{"stepz":3}"#).unwrap_err();
        assert!(err.to_string().contains("stepz"));
    }
}
