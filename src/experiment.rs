//! Training runs and shapes-world evaluation: what `echo4o train`, the `shapes_experiment`
//! example and the quickstart share.
//!
//! A run is described by a [`RunConfig`] (JSON): the model to start from (a preset or a
//! checkpoint folder), the data (the shapes world with a recipe mix, or any dataset folder echo4o
//! reads), the [`TrainSettings`], and how often to save and sample. [`train`] runs it, reporting
//! each step to a callback ([`TrainEvent`]; the CLI draws a progress bar from them), saves
//! resumable checkpoints in the official layout, writes sample grids and a JSONL log, and resumes
//! by itself when its output folder already holds the same run. Errors are typed ([`Error`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use echo4o_bench::geneval::{GenEvalScores, ImageResult, Metadata, write_sample_folder};
use echo4o_core::image::RgbImage;
use echo4o_core::{DataSource, Sample, SampleImage};
use echo4o_data::shapes::Layout;
use echo4o_data::shapes::source::{Mix, Recipe, ShapesSource};
use echo4o_model::burn::backend::Autodiff;
use echo4o_model::burn::tensor::backend::Backend;
use echo4o_model::codec::Codec;
use echo4o_model::config::{AeConfig, BagelConfig, LlmConfig};
use echo4o_model::linear_codec::LinearCodec;
use echo4o_model::pipeline::{BagelPipeline, PipelineRequest, save_checkpoint};
use echo4o_model::sampling::SamplerConfig;
use echo4o_model::tokenizer::{write_byte_level_tokenizer, write_word_level_tokenizer};
use echo4o_model::train::{TrainSettings, Trainer, seeded_init};
use echo4o_model::{BackendTask, DeviceSpec};
use serde::{Deserialize, Serialize};

/// What can go wrong in a training run or a shapes evaluation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A run file that cannot be read, parsed or accepted.
    #[error("{}: not a valid run file: {message}", path.display())]
    RunFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A setting out of range or inconsistent, by its dotted path in the run file.
    #[error("{field}: {message}")]
    Setting {
        /// The setting (`data.shapes.size`, `train.lr`).
        field: String,
        /// Why.
        message: String,
    },
    /// An output folder that holds a run with other settings.
    #[error(
        "{} holds a run with other settings ({}); resuming would silently keep the old ones. \
         Use another output folder, or restore the settings (its run.json has them)",
        out.display(),
        fields.join(", ")
    )]
    OtherRun {
        /// The output folder.
        out: PathBuf,
        /// The settings that differ, by dotted path.
        fields: Vec<String>,
    },
    /// The training data could not be read.
    #[error("reading training data: {0}")]
    Data(#[source] echo4o_core::Error),
    /// From the model crate (weights, configs, training).
    #[error(transparent)]
    Model(#[from] echo4o_model::Error),
    /// From the data crate (datasets, the shapes world).
    #[error(transparent)]
    Dataset(#[from] echo4o_data::Error),
    /// From the benchmark crate (scoring).
    #[error(transparent)]
    Bench(#[from] echo4o_bench::Error),
    /// From the core crate (files, images).
    #[error(transparent)]
    Core(#[from] echo4o_core::Error),
}

impl Error {
    fn io(path: &Path, e: std::io::Error) -> Self {
        Error::Core(echo4o_core::Error::io(path, e))
    }

    fn setting(field: &str, message: impl Into<String>) -> Self {
        Error::Setting {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// What a training run reports as it goes (see [`train`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TrainEvent {
    /// The run starts at `step` of `total`; `resumed` when an earlier run's state was loaded.
    Start {
        /// Steps already done.
        step: usize,
        /// Steps in all.
        total: usize,
        /// Whether an earlier run was resumed.
        resumed: bool,
    },
    /// A step finished.
    Step {
        /// Steps done.
        step: usize,
        /// Steps in all.
        total: usize,
        /// This step's loss.
        loss: f32,
        /// Mean loss over the last 100 steps.
        mean_loss: f32,
    },
    /// A checkpoint was saved.
    Saved {
        /// At this step.
        step: usize,
    },
    /// A sample grid was written.
    Samples {
        /// At this step.
        step: usize,
        /// The image.
        path: PathBuf,
    },
}

/// The tiny BAGEL-architecture model of the shapes experiment: both experts, 3 layers, hidden
/// 256, GQA 4/2 heads, a byte-level vocabulary, the pixel codec (4x4 patches) with 2x2 latent
/// patches, so a 64x64 image is 64 tokens of 192 channels. About 4.35 M parameters (65 K of them the frozen position table).
///
/// The hidden size must exceed the token size: the velocity target `eps - x0` carries all 192
/// channels of the noise, and a narrower residual stream cannot pass them through (a first
/// version with hidden 128 plateaued at a loss of 0.45 and sampled noise).
pub fn tiny_shapes_config() -> BagelConfig {
    let mut c = BagelConfig::tiny();
    c.llm = LlmConfig {
        hidden_size: 256,
        intermediate_size: 512,
        num_hidden_layers: 3,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: None,
        ..c.llm
    };
    c.vae = AeConfig::pixel(2);
    c.latent_patch_size = 2;
    c.max_latent_size = 16;
    c
}

/// Where a run's model comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelInit {
    /// A named preset with random weights: `tiny-shapes` ([`tiny_shapes_config`]).
    Preset(String),
    /// A checkpoint folder to fine-tune (official layout).
    Checkpoint(PathBuf),
}

/// Where a run's data comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DataConfig {
    /// The shapes world: recipe weights (`web`, `instruction_easy`, `instruction_medium`,
    /// `instruction_hard`, `surreal`, `multiref`), image side, seed and layout.
    Shapes {
        /// Recipe weights.
        mix: Vec<(Recipe, f64)>,
        /// Image side in pixels.
        #[serde(default = "default_size")]
        size: u32,
        /// Seed of the stream.
        #[serde(default)]
        seed: u64,
        /// Where objects stand: `"free"` (anywhere) or `{"cells": n}` (one object at the centre
        /// of a cell of an `n x n` grid) [default: free].
        #[serde(default, skip_serializing_if = "Layout::is_free")]
        layout: Layout,
    },
    /// Any dataset folder or file echo4o reads (Echo-4o-Image, Bagel parquet, JSONL), looped.
    Path(PathBuf),
}

fn default_size() -> u32 {
    64
}

/// The smallest shapes-world image side a run accepts (the renderer needs room for six shapes).
const MIN_SHAPES_SIZE: u32 = 32;
/// The smallest cell side, in pixels, of a [`Layout::Cells`] run (a star needs that much room).
const MIN_CELL: u32 = 8;
/// The largest shapes-world image side a run accepts.
const MAX_SHAPES_SIZE: u32 = 1024;

/// The file in a run's output folder that records the run it holds, to refuse resuming it with
/// other settings.
const RUN_FILE: &str = "run.json";

/// A training run (the file `echo4o train --config` reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Output folder: the checkpoint (official layout), `train_state/`, `samples/`,
    /// `train_log.jsonl`.
    pub out: PathBuf,
    /// The model to start from.
    pub model: ModelInit,
    /// The data.
    pub data: DataConfig,
    /// Optimisation settings.
    #[serde(default)]
    pub train: TrainSettings,
    /// `cpu`, `ndarray`, `cuda:N`, `cuda-f32:N`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Save a checkpoint every this many steps (and at the end).
    #[serde(default = "default_every")]
    pub checkpoint_every: usize,
    /// Write a sample grid every this many steps (0: only at the end).
    #[serde(default = "default_every")]
    pub sample_every: usize,
    /// Prompts of the sample grids.
    #[serde(default = "default_prompts")]
    pub sample_prompts: Vec<String>,
    /// Side of the sample grids' images [default: the shapes world's size, or 256 for data
    /// from a path].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_size: Option<u32>,
    /// The tokenizer of a model started from a preset [default: `bytes`].
    #[serde(default, skip_serializing_if = "TokenizerKind::is_bytes")]
    pub tokenizer: TokenizerKind,
    /// The latent codec of a model started from a preset [default: the preset's `pixel`].
    #[serde(default, skip_serializing_if = "CodecSetting::is_pixel")]
    pub codec: CodecSetting,
    /// Changes to the preset's language-model shape (depth, width, heads) [default: none].
    #[serde(default, skip_serializing_if = "Architecture::is_preset")]
    pub architecture: Architecture,
}

/// Changes to a preset's decoder shape: each field set replaces the preset's value, so a trial
/// can vary depth and width without a new preset (the 6-layer trial in BENCHMARKS.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    /// Decoder layers (`num_hidden_layers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<usize>,
    /// Hidden size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<usize>,
    /// MLP intermediate size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate: Option<usize>,
    /// Query heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
    /// Key/value heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_heads: Option<usize>,
}

impl Architecture {
    fn is_preset(&self) -> bool {
        *self == Architecture::default()
    }

    /// Checks the reshaped preset as any model configuration is checked (sizes bounded before
    /// allocation, heads dividing the width and grouping over the key/value heads, an even head
    /// dimension).
    fn validate(&self) -> Result<()> {
        self.apply(tiny_shapes_config())
            .validate()
            .map_err(|e| Error::setting("architecture", e.to_string()))
    }

    /// `config` with the fields set here replaced.
    pub fn apply(&self, mut config: BagelConfig) -> BagelConfig {
        let llm = &mut config.llm;
        llm.num_hidden_layers = self.layers.unwrap_or(llm.num_hidden_layers);
        llm.hidden_size = self.hidden.unwrap_or(llm.hidden_size);
        llm.intermediate_size = self.intermediate.unwrap_or(llm.intermediate_size);
        llm.num_attention_heads = self.heads.unwrap_or(llm.num_attention_heads);
        llm.num_key_value_heads = self.kv_heads.unwrap_or(llm.num_key_value_heads);
        config
    }
}

/// The latent codec a preset model is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CodecSetting {
    /// The preset's own codec (raw pixel patches).
    #[default]
    Pixel,
    /// A [`LinearCodec`] fit, before training, to the first `images` images of the run's data:
    /// `patch x patch` pixel patches projected on their `channels` principal components, and
    /// `latent_patch x latent_patch` latent pixels to a token (BAGEL's `latent_patch_size`).
    Linear {
        /// Patch side in pixels (a power of two).
        patch: usize,
        /// Latent channels.
        channels: usize,
        /// Latent pixels per token side.
        #[serde(default = "default_latent_patch")]
        latent_patch: usize,
        /// Images the components are fit to.
        #[serde(default = "default_fit_images")]
        images: usize,
    },
}

impl CodecSetting {
    fn is_pixel(&self) -> bool {
        *self == CodecSetting::Pixel
    }
}

fn default_latent_patch() -> usize {
    1
}

fn default_fit_images() -> usize {
    1024
}

/// The most images a linear codec is fit to.
const MAX_FIT_IMAGES: usize = 16_384;
/// The most pixel values a fit holds (2^26: 256 MB as f32, twice that as the f64 patch matrix).
const MAX_FIT_VALUES: usize = 1 << 26;

/// The tokenizer a preset model is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerKind {
    /// One token per UTF-8 byte ([`write_byte_level_tokenizer`]): open vocabulary, but the model
    /// must learn to spell.
    #[default]
    Bytes,
    /// One token per word of the shapes world ([`shapes_vocabulary`], `WordLevel`): a closed
    /// vocabulary, each word one id from the start.
    Words,
}

impl TokenizerKind {
    fn is_bytes(&self) -> bool {
        *self == TokenizerKind::Bytes
    }
}

/// Every word the shapes world writes: the captions of every recipe (web-like, Echo-style
/// instructions, surreal, multi-reference) and the GenEval-shapes and GenEval++-shapes prompt
/// sets, split as the word-level tokenizer splits (runs of letters and digits, runs of
/// punctuation), lower-cased, sorted.
pub fn shapes_vocabulary() -> Vec<String> {
    use echo4o_data::shapes::captions::{geneval_pp_shapes, geneval_shapes};
    let recipes = [
        Recipe::Web,
        Recipe::InstructionEasy,
        Recipe::InstructionMedium,
        Recipe::InstructionHard,
        Recipe::Surreal,
        Recipe::Multiref,
    ];
    let mut texts: Vec<String> = recipes
        .iter()
        .flat_map(|r| (0..4000).map(move |seed| r.prompt(seed).prompt))
        .collect();
    texts.extend(
        geneval_shapes(50, echo4o_bench::geneval::SHAPES_SEED)
            .into_iter()
            .map(|p| p.prompt),
    );
    texts.extend(
        geneval_pp_shapes(40, echo4o_bench::geneval::SHAPES_SEED)
            .into_iter()
            .map(|p| p.prompt),
    );
    texts.extend(default_prompts());
    let mut words = std::collections::BTreeSet::new();
    for t in &texts {
        let mut word = String::new();
        let mut kind = None;
        for ch in t.to_lowercase().chars() {
            let k = if ch.is_alphanumeric() || ch == '_' {
                Some(true)
            } else if ch.is_whitespace() {
                None
            } else {
                Some(false)
            };
            if k != kind && !word.is_empty() {
                words.insert(std::mem::take(&mut word));
            }
            if k.is_some() {
                word.push(ch);
            }
            kind = k;
        }
        if !word.is_empty() {
            words.insert(word);
        }
    }
    words.into_iter().collect()
}

fn default_device() -> String {
    "cpu".into()
}

fn default_every() -> usize {
    500
}

fn default_prompts() -> Vec<String> {
    [
        "a photo of a red circle",
        "a photo of a blue square and a yellow star",
        "a photo of three green triangles",
        "a photo of a white cross left of a purple diamond",
        "a photo of an orange circle",
        "a photo of two pink stars",
        "a photo of a black square at the top and a brown circle at the bottom",
        "a photo of a green star",
    ]
    .map(String::from)
    .to_vec()
}

impl RunConfig {
    /// Reads a run file, naming the file and the field on error; values out of range are
    /// refused here ([`RunConfig::validate`]).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let bad = |message: String| Error::RunFile {
            path: path.to_path_buf(),
            message,
        };
        let config: RunConfig = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        config.validate().map_err(|e| bad(e.to_string()))?;
        Ok(config)
    }

    /// Checks every value before anything is created or trained.
    pub fn validate(&self) -> Result<()> {
        if let DataConfig::Shapes {
            size, mix, layout, ..
        } = &self.data
        {
            if let Layout::Cells(n) = *layout
                && !(1..=size / MIN_CELL).contains(&n)
            {
                return Err(Error::setting(
                    "data.shapes.layout.cells",
                    format!(
                        "{n} cells a side must be in 1..={} (cells of at least {MIN_CELL} pixels \
                         on a {size}-pixel image)",
                        size / MIN_CELL
                    ),
                ));
            }
            if !(MIN_SHAPES_SIZE..=MAX_SHAPES_SIZE).contains(size) || size % 16 != 0 {
                return Err(Error::setting(
                    "data.shapes.size",
                    format!(
                        "{size} must be a multiple of 16 in {MIN_SHAPES_SIZE}..={MAX_SHAPES_SIZE}"
                    ),
                ));
            }
            if let Some((r, w)) = mix.iter().find(|(_, w)| !w.is_finite() || *w < 0.0) {
                return Err(Error::setting(
                    "data.shapes.mix",
                    format!("weight {w} of {r:?} must be finite and not negative"),
                ));
            }
            if mix.iter().all(|(_, w)| *w <= 0.0) {
                return Err(Error::setting(
                    "data.shapes.mix",
                    "no recipe has a positive weight",
                ));
            }
        }
        if let Some(size) = self.sample_size
            && (!(16..=4096).contains(&size) || size % 16 != 0)
        {
            return Err(Error::setting(
                "sample_size",
                format!("{size} must be a multiple of 16 in 16..=4096"),
            ));
        }
        if let CodecSetting::Linear {
            patch,
            channels,
            latent_patch,
            images,
        } = self.codec
        {
            if !(1..=8).contains(&latent_patch) {
                return Err(Error::setting(
                    "codec.linear.latent_patch",
                    format!("{latent_patch} must be in 1..=8"),
                ));
            }
            if !patch.is_power_of_two() || !(2..=32).contains(&patch) {
                return Err(Error::setting(
                    "codec.linear.patch",
                    format!("{patch} must be a power of two in 2..=32"),
                ));
            }
            if channels == 0 || channels > 3 * patch * patch {
                return Err(Error::setting(
                    "codec.linear.channels",
                    format!("{channels} must be in 1..={}", 3 * patch * patch),
                ));
            }
            if !(1..=MAX_FIT_IMAGES).contains(&images) {
                return Err(Error::setting(
                    "codec.linear.images",
                    format!("{images} must be in 1..={MAX_FIT_IMAGES}"),
                ));
            }
            if let DataConfig::Shapes { size, .. } = &self.data
                && !(*size as usize).is_multiple_of(patch * latent_patch)
            {
                return Err(Error::setting(
                    "codec.linear",
                    format!(
                        "a token of {patch} x {latent_patch} pixels does not divide the image \
                         side {size}"
                    ),
                ));
            }
            if !matches!(self.model, ModelInit::Preset(_)) {
                return Err(Error::setting(
                    "codec",
                    "a checkpoint brings its own codec; only a preset model is given one",
                ));
            }
        }
        if !self.architecture.is_preset() {
            if !matches!(self.model, ModelInit::Preset(_)) {
                return Err(Error::setting(
                    "architecture",
                    "a checkpoint brings its own shape; only a preset model is given one",
                ));
            }
            self.architecture.validate()?;
        }
        self.train.validate()?;
        Ok(())
    }

    /// The settings a resumed run must share with the run it continues: everything but the
    /// step count, the output folder and how often to save or sample.
    fn identity(&self) -> Result<serde_json::Value> {
        let mut c = self.clone();
        c.train.steps = 0;
        c.out = PathBuf::new();
        c.checkpoint_every = 0;
        c.sample_every = 0;
        // A failure here must not become `null`: two nulls compare equal, and a run with other
        // settings would be resumed.
        serde_json::to_value(&c).map_err(|e| Error::RunFile {
            path: self.out.join(RUN_FILE),
            message: e.to_string(),
        })
    }

    fn source(&self) -> Result<Box<dyn DataSource>> {
        Ok(match &self.data {
            DataConfig::Shapes {
                mix,
                size,
                seed,
                layout,
            } => Box::new(ShapesSource::new(Mix(mix.clone()), *size, *seed).with_layout(*layout)),
            DataConfig::Path(p) => echo4o_data::open_source(p, self.train.seed)?.1,
        })
    }
}

/// A random pipeline for `config`, its weights drawn from `seed` ([`seeded_init`]), with a
/// byte-level tokenizer written into `dir`.
pub fn fresh_pipeline<B: Backend>(
    config: &BagelConfig,
    dir: &Path,
    seed: u64,
    device: &B::Device,
) -> Result<BagelPipeline<B>> {
    let codec = Codec::<B>::init(&config.vae, device);
    fresh_pipeline_with(config, codec, TokenizerKind::Bytes, dir, seed, device)
}

/// [`fresh_pipeline`] with the codec `codec` (which `config.vae` describes) and the tokenizer
/// of `tokenizer`.
pub fn fresh_pipeline_with<B: Backend>(
    config: &BagelConfig,
    codec: Codec<B>,
    tokenizer: TokenizerKind,
    dir: &Path,
    seed: u64,
    device: &B::Device,
) -> Result<BagelPipeline<B>> {
    save_checkpoint(
        dir,
        &seeded_init(echo4o_model::bagel::Bagel::<B>::init(config, device), seed)?,
        &codec,
        config,
    )?;
    let base = config.llm.vocab_size as u32 - 4;
    let path = dir.join("tokenizer.json");
    match tokenizer {
        TokenizerKind::Bytes => write_byte_level_tokenizer(&path, base)?,
        TokenizerKind::Words => {
            let words = shapes_vocabulary();
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            write_word_level_tokenizer(&path, &words, base)?
        }
    }
    Ok(BagelPipeline::load(dir, device)?)
}

/// The sampler used for grids and evaluation of tiny models: the official T2I guidance
/// (4.0 on [0.4, 1], global renorm) over 30 timesteps, shift 1 (64-pixel images need no shift).
pub fn tiny_sampler() -> SamplerConfig {
    SamplerConfig {
        num_timesteps: 30,
        shift: 1.0,
        ..SamplerConfig::text_to_image()
    }
}

/// Generates one image per prompt and lays them out in a captioned grid.
pub fn sample_grid<B: Backend>(
    pipe: &BagelPipeline<B>,
    prompts: &[String],
    seed: u64,
    size: u32,
) -> Result<RgbImage> {
    let mut samples = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        let img = generate(pipe, p, seed + i as u64, size)?;
        samples.push(Sample::new(
            i.to_string(),
            p.clone(),
            SampleImage::decoded(img, "generated"),
        ));
    }
    Ok(echo4o_data::contact_sheet::contact_sheet(&samples, 4))
}

/// One text-to-image generation with [`tiny_sampler`].
pub fn generate<B: Backend>(
    pipe: &BagelPipeline<B>,
    prompt: &str,
    seed: u64,
    size: u32,
) -> Result<RgbImage> {
    let request = PipelineRequest {
        prompt: prompt.to_string(),
        references: vec![],
        size: Some((size, size)),
        sampler: tiny_sampler(),
        seed,
    };
    Ok(pipe.generate(&request, |_, _| {})?)
}

/// Generates `per_prompt` images for each prompt into GenEval's layout under `images`, then
/// scores them with the shapes detector through GenEval's rule engine (results, summary and
/// reports under `out`), returning every image's verdict with the summary. `progress(done,
/// total)` is called after each prompt.
pub fn evaluate_shapes<B: Backend>(
    pipe: &BagelPipeline<B>,
    metadata: &[Metadata],
    per_prompt: usize,
    images: &Path,
    out: &Path,
    size: u32,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<ImageResult>, GenEvalScores)> {
    for (i, m) in metadata.iter().enumerate() {
        let imgs = (0..per_prompt)
            .map(|k| generate(pipe, &m.prompt, (i * per_prompt + k) as u64, size))
            .collect::<Result<Vec<_>>>()?;
        write_sample_folder(images, i, m, &imgs)?;
        progress(i + 1, metadata.len());
    }
    Ok(echo4o_bench::geneval::shapes::score_folder(images, out)?)
}

/// Keeps the lines of a resumed run's log up to the saved `step`: a run killed after its last
/// checkpoint logged steps the resumed run takes again, and a kill may have cut a line short.
fn trim_log(path: &Path, step: usize) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s as usize <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    if kept.len() != text.len() {
        echo4o_core::fs::write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

/// The dotted paths at which two JSON values differ (`train.lr`, `data.shapes.size`).
fn differing_fields(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    fn walk(a: &serde_json::Value, b: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match (x.get(k), y.get(k)) {
                        (Some(u), Some(v)) => walk(u, v, &p, out),
                        _ => out.push(p),
                    }
                }
            }
            _ if a != b => out.push(if path.is_empty() {
                "(all)".into()
            } else {
                path.into()
            }),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(a, b, "", &mut out);
    out
}

/// What a run reports at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// Steps done.
    pub steps: usize,
    /// Mean loss over the last 100 steps.
    pub final_loss: f32,
    /// Wall time of this invocation's steps.
    pub seconds: f64,
}

struct TrainTask<'a> {
    config: &'a RunConfig,
    progress: &'a mut dyn FnMut(&TrainEvent),
}

impl BackendTask for TrainTask<'_> {
    type Output = Result<RunOutcome>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        run_on::<B>(self.config, self.progress, &device)
    }
}

/// Runs (or resumes) `config` on its device, reporting each step to `progress`.
///
/// ```no_run
/// use echo4o::experiment::{RunConfig, TrainEvent, train};
///
/// let config = RunConfig::from_file("configs/shapes_echo.json".as_ref())?;
/// let outcome = train(&config, &mut |e: &TrainEvent| {
///     if let TrainEvent::Step { step, total, mean_loss, .. } = e {
///         eprintln!("{step}/{total}: loss {mean_loss:.4}");
///     }
/// })?;
/// println!("{} steps in {:.0} s", outcome.steps, outcome.seconds);
/// # Ok::<(), echo4o::experiment::Error>(())
/// ```
pub fn train(config: &RunConfig, progress: &mut dyn FnMut(&TrainEvent)) -> Result<RunOutcome> {
    let device: DeviceSpec = config.device.parse()?;
    device.run(TrainTask { config, progress })?
}

/// Refuses to resume a run folder that holds a run with other settings; records the run in a
/// fresh one.
fn claim_run_folder(config: &RunConfig, resuming: bool) -> Result<()> {
    let out = &config.out;
    let run_file = out.join(RUN_FILE);
    if resuming && run_file.is_file() {
        let text = std::fs::read_to_string(&run_file).map_err(|e| Error::io(&run_file, e))?;
        let saved: RunConfig = serde_json::from_str(&text).map_err(|e| Error::RunFile {
            path: run_file.clone(),
            message: e.to_string(),
        })?;
        let (was, now) = (saved.identity()?, config.identity()?);
        if was != now {
            return Err(Error::OtherRun {
                out: out.clone(),
                fields: differing_fields(&was, &now),
            });
        }
    }
    if !resuming {
        let text = serde_json::to_string_pretty(config).map_err(|e| Error::RunFile {
            path: run_file.clone(),
            message: e.to_string(),
        })?;
        echo4o_core::fs::write_atomic(&run_file, text.as_bytes())?;
    }
    Ok(())
}

/// The model a run that starts from a preset trains: the preset's configuration and codec, or
/// a [`LinearCodec`] fit to the run's first images when the run asks for one (`codec`). A fit is
/// deterministic, so the same run file always gives the same codec.
pub fn preset_model<B: Backend>(
    config: &RunConfig,
    device: &B::Device,
) -> Result<(BagelConfig, Codec<B>)> {
    let mut model = match &config.model {
        ModelInit::Preset(name) if name == "tiny-shapes" => {
            config.architecture.apply(tiny_shapes_config())
        }
        ModelInit::Preset(name) => {
            return Err(Error::setting(
                "model.preset",
                format!("unknown preset {name:?} (known: tiny-shapes)"),
            ));
        }
        ModelInit::Checkpoint(dir) => {
            return Err(Error::setting(
                "model",
                format!("{} is a checkpoint, not a preset", dir.display()),
            ));
        }
    };
    let CodecSetting::Linear {
        patch,
        channels,
        latent_patch,
        images,
    } = config.codec
    else {
        let codec = Codec::init(&model.vae, device);
        return Ok((model, codec));
    };
    let mut values = Vec::new();
    let mut side = None;
    for sample in config.source()?.samples().take(images) {
        let sample = sample.map_err(Error::Data)?;
        let image = sample.target.to_rgb().map_err(Error::Data)?;
        let (w, h) = image.dimensions();
        let first = *side.get_or_insert((w, h));
        if first != (w, h) {
            return Err(Error::setting(
                "codec.linear",
                format!(
                    "fitting needs images of one size; sample {} is {w}x{h}, not {}x{}",
                    sample.id, first.0, first.1
                ),
            ));
        }
        if values.len() + 3 * (w * h) as usize > MAX_FIT_VALUES {
            return Err(Error::setting(
                "codec.linear.images",
                format!(
                    "{images} images of {w}x{h} are more than the {MAX_FIT_VALUES} pixel values \
                     a fit holds in memory"
                ),
            ));
        }
        values.extend(echo4o_core::resize::to_chw_pixels(&image));
    }
    let Some((w, h)) = side else {
        return Err(Error::setting("codec.linear", "the data holds no images"));
    };
    let n = values.len() / (3 * w as usize * h as usize);
    let fit = LinearCodec::<B>::fit(
        &values,
        [n, 3, h as usize, w as usize],
        patch,
        channels,
        device,
    )?;
    model.vae = fit.config;
    // The preset's `max_latent_size` (16 tokens a side) stays: the position table is sized by
    // it, and tokens of 8 pixels or more cover 128-pixel images.
    model.latent_patch_size = latent_patch;
    Ok((model, Codec::Linear(Box::new(fit.codec))))
}

fn run_on<B: Backend>(
    config: &RunConfig,
    progress: &mut dyn FnMut(&TrainEvent),
    device: &B::Device,
) -> Result<RunOutcome> {
    config.validate()?;
    let out = &config.out;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let resuming = out.join("train_state/state.json").is_file();
    claim_run_folder(config, resuming)?;
    let mut trainer = if resuming {
        Trainer::<Autodiff<B>>::resume(out, Some(config.train.steps), device)?
    } else {
        let pipe = match &config.model {
            ModelInit::Preset(_) => {
                let (model, codec) = preset_model::<B>(config, device)?;
                fresh_pipeline_with::<B>(
                    &model,
                    codec,
                    config.tokenizer,
                    out,
                    config.train.seed,
                    device,
                )?
            }
            ModelInit::Checkpoint(dir) => BagelPipeline::load(dir, device)?,
        };
        Trainer::<Autodiff<B>>::new(pipe, config.train.clone(), device)?
    };
    let size = match (&config.data, config.sample_size) {
        (_, Some(size)) => size,
        (DataConfig::Shapes { size, .. }, None) => *size,
        (DataConfig::Path(_), None) => 256,
    };
    let source = config.source()?;
    let batch_size = config.train.batch_size.max(1);
    let total = config.train.steps;
    // Resume where the stream was: skip the samples earlier steps used.
    let mut stream: Box<dyn Iterator<Item = echo4o_core::Result<Sample>> + Send + '_> =
        Box::new(source.samples().skip(trainer.step_count() * batch_size));
    progress(&TrainEvent::Start {
        step: trainer.step_count(),
        total,
        resumed: resuming,
    });
    let log_path = out.join("train_log.jsonl");
    if resuming {
        trim_log(&log_path, trainer.step_count())?;
    }
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io(&log_path, e))?;
    let started = Instant::now();
    let mut recent: Vec<f32> = Vec::new();
    let samples_dir = out.join("samples");
    while trainer.step_count() < total {
        let mut batch = Vec::with_capacity(batch_size);
        while batch.len() < batch_size {
            match stream.next() {
                Some(Ok(s)) => batch.push(s),
                Some(Err(e)) => return Err(Error::Data(e)),
                // A finite dataset loops.
                None => stream = source.samples(),
            }
        }
        let stats = trainer.train_step(&batch)?;
        recent.push(stats.loss);
        if recent.len() > 100 {
            recent.remove(0);
        }
        let mean = recent.iter().sum::<f32>() / recent.len() as f32;
        // The loss is finite here (the trainer stops on a non-finite one), so this is JSON.
        writeln!(
            log,
            "{{\"step\":{},\"loss\":{},\"mse\":{},\"lr\":{},\"seconds\":{:.3}}}",
            stats.step,
            stats.loss,
            stats.mse,
            stats.lr,
            started.elapsed().as_secs_f64()
        )
        .map_err(|e| Error::io(&log_path, e))?;
        let step = stats.step;
        progress(&TrainEvent::Step {
            step,
            total,
            loss: stats.loss,
            mean_loss: mean,
        });
        if step % config.checkpoint_every.max(1) == 0 || step == total {
            trainer.save(out)?;
            progress(&TrainEvent::Saved { step });
        }
        if (config.sample_every > 0 && step % config.sample_every == 0) || step == total {
            std::fs::create_dir_all(&samples_dir).map_err(|e| Error::io(&samples_dir, e))?;
            let grid = sample_grid(&trainer.ema_pipeline(), &config.sample_prompts, 0, size)?;
            let path = samples_dir.join(format!("step_{step:06}.png"));
            echo4o_core::save_image(&grid, &path)?;
            progress(&TrainEvent::Samples { step, path });
        }
    }
    let final_loss = if recent.is_empty() {
        f32::NAN
    } else {
        recent.iter().sum::<f32>() / recent.len() as f32
    };
    Ok(RunOutcome {
        steps: trainer.step_count(),
        final_loss,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shapes_benchmarks_recipe_is_the_tiny_sampler() {
        // `echo4o eval --bench geneval-*-shapes` and the experiment must score the same way.
        let recipe = echo4o_bench::suite::shapes_sampler();
        let tiny = tiny_sampler();
        assert_eq!(recipe.steps, Some(tiny.num_timesteps as u32));
        assert_eq!(recipe.shift, Some(tiny.shift));
        let t2i = SamplerConfig::text_to_image();
        assert_eq!(
            (tiny.cfg_text, tiny.cfg_img, tiny.interval),
            (t2i.cfg_text, t2i.cfg_img, t2i.interval)
        );
        assert_eq!(
            (recipe.cfg_text, recipe.cfg_img, recipe.cfg_interval),
            (None, None, None)
        );
    }

    fn run_with(architecture: &str, model: &str) -> Result<RunConfig> {
        let text = format!(
            r#"{{"out": "x", "model": {model}, "data": {{"shapes": {{"mix": [["web", 1.0]]}}}},
                "architecture": {architecture}}}"#
        );
        let config: RunConfig = serde_json::from_str(&text).expect("parses");
        config.validate().map(|()| config)
    }

    #[test]
    fn an_architecture_reshapes_the_preset_and_nothing_else() {
        let preset = r#"{"preset": "tiny-shapes"}"#;
        let config = run_with(
            r#"{"layers": 6, "hidden": 192, "intermediate": 384}"#,
            preset,
        )
        .expect("valid");
        let (base, shaped) = (
            tiny_shapes_config(),
            config.architecture.apply(tiny_shapes_config()),
        );
        assert_eq!(
            (
                shaped.llm.num_hidden_layers,
                shaped.llm.hidden_size,
                shaped.llm.intermediate_size
            ),
            (6, 192, 384)
        );
        assert_eq!(
            (
                shaped.llm.num_attention_heads,
                shaped.vae,
                shaped.latent_patch_size
            ),
            (
                base.llm.num_attention_heads,
                base.vae,
                base.latent_patch_size
            )
        );
        // An empty architecture is no change, and is left out of the run's identity.
        let empty = run_with("{}", preset).expect("valid");
        assert!(empty.architecture.is_preset());
        assert!(
            !serde_json::to_string(&empty)
                .unwrap()
                .contains("architecture")
        );
    }

    #[test]
    fn an_architecture_that_cannot_be_built_is_refused_by_field() {
        let preset = r#"{"preset": "tiny-shapes"}"#;
        for (architecture, named) in [
            (r#"{"layers": 0}"#, "num_hidden_layers"),
            (r#"{"hidden": 250}"#, "hidden_size"),
            (r#"{"heads": 8, "kv_heads": 3}"#, "num_key_value_heads"),
            (r#"{"hidden": 100000}"#, "hidden_size"),
        ] {
            let err = run_with(architecture, preset)
                .expect_err(architecture)
                .to_string();
            assert!(err.contains(named), "{architecture}: {err}");
        }
        let err = run_with(r#"{"layers": 4}"#, r#"{"checkpoint": "ckpt"}"#)
            .expect_err("a checkpoint has its shape")
            .to_string();
        assert!(err.contains("architecture"), "{err}");
    }

    fn shapes_run(shapes: &str) -> Result<RunConfig> {
        let text = format!(
            r#"{{"out": "x", "model": {{"preset": "tiny-shapes"}}, "data": {{"shapes": {shapes}}}}}"#
        );
        let config: RunConfig = serde_json::from_str(&text).expect("parses");
        config.validate().map(|()| config)
    }

    #[test]
    fn a_cell_layout_is_read_checked_and_kept_out_of_free_runs() {
        let cells =
            shapes_run(r#"{"mix": [["web", 1.0]], "layout": {"cells": 4}}"#).expect("valid");
        assert!(matches!(
            cells.data,
            DataConfig::Shapes {
                layout: Layout::Cells(4),
                ..
            }
        ));
        assert!(cells.source().unwrap().name().contains("4x4 cells"));
        let free = shapes_run(r#"{"mix": [["web", 1.0]]}"#).expect("valid");
        // Runs from before the layout existed keep their identity.
        assert!(!serde_json::to_string(&free).unwrap().contains("layout"));
        for bad in [0, 9] {
            let err = shapes_run(&format!(
                r#"{{"mix": [["web", 1.0]], "layout": {{"cells": {bad}}}}}"#
            ))
            .expect_err("out of range")
            .to_string();
            assert!(err.contains("data.shapes.layout.cells"), "{err}");
        }
    }
}
