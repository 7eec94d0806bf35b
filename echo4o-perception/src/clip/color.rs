//! GenEval's colour check: zero-shot CLIP over the ten colours, as `evaluate_images.py` builds it
//! with clip_benchmark.
//!
//! Upstream: GenEval `evaluation/evaluate_images.py` (`color_classification`: three templates
//! per class, `"a photo of a {c} {classname}"`, `"a photo of a {c}-colored {classname}"`,
//! `"a photo of a {c} object"`; crops batched by 16), clip-benchmark 1.6.1
//! `metrics/zeroshot_classification.py` (`zero_shot_classifier`: per colour, the templates'
//! text features L2-normalised, averaged, normalised again; `run_classification`: logits =
//! 100 x normalised image features @ classifier; the prediction is the argmax, first on ties).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use echo4o_bench::geneval::{COLORS, ColorClassifier};
use echo4o_model::weights::{KeyRules, Remap, load_weights};
use image::RgbImage;

use super::config::ClipConfig;
use super::model::{Clip, first_max, l2_normalize};
use super::preprocess::preprocess;
use super::tokenizer::ClipTokenizer;
use crate::Error;

/// open_clip's LayerNorms (`ln_1`, `ln_2`, `ln_pre`, `ln_post`, `ln_final`): PyTorch
/// `weight`/`bias`, burn `gamma`/`beta`.
pub const CLIP_REMAPS: &[Remap] = &[
    Remap {
        to_module: (r"^(.*ln_[a-z0-9]+)\.weight$", "$1.gamma"),
        to_official: (r"^(.*ln_[a-z0-9]+)\.gamma$", "$1.weight"),
    },
    Remap {
        to_module: (r"^(.*ln_[a-z0-9]+)\.bias$", "$1.beta"),
        to_official: (r"^(.*ln_[a-z0-9]+)\.beta$", "$1.bias"),
    },
];

/// Checkpoint tensors the classifier has no use for: the contrastive temperature.
pub const CLIP_IGNORED: &[&str] = &["logit_scale"];

/// How open_clip's `state_dict` keys meet [`Clip`]'s.
pub const CLIP_KEYS: KeyRules<'static> = KeyRules {
    remaps: CLIP_REMAPS,
    optional: &[],
    ignored: CLIP_IGNORED,
    state_dict_key: None,
};

/// The templates GenEval fills per object class and colour.
pub fn templates(class: &str, color: &str) -> [String; 3] {
    [
        format!("a photo of a {color} {class}"),
        format!("a photo of a {color}-colored {class}"),
        format!("a photo of a {color} object"),
    ]
}

/// Crops per forward, as the official `DataLoader(batch_size=16)`.
const BATCH: usize = 16;

struct State<B: Backend> {
    model: Clip<B>,
    /// Per class, `[embed_dim, 10]`: built once, as the official `COLOR_CLASSIFIERS` caches.
    classifiers: HashMap<String, Tensor<B, 2>>,
}

/// GenEval's zero-shot colour classifier on a CLIP model.
pub struct ClipColorClassifier<B: Backend> {
    state: Mutex<State<B>>,
    tokenizer: ClipTokenizer,
    config: ClipConfig,
    device: B::Device,
}

impl<B: Backend> ClipColorClassifier<B> {
    /// Wraps a model (its weights already loaded) of `config`'s shape.
    pub fn new(
        model: Clip<B>,
        config: ClipConfig,
        tokenizer: ClipTokenizer,
        device: B::Device,
    ) -> Self {
        ClipColorClassifier {
            state: Mutex::new(State {
                model,
                classifiers: HashMap::new(),
            }),
            tokenizer,
            config,
            device,
        }
    }

    /// Loads open_clip weights, its `state_dict` under open_clip's key names, as safetensors
    /// (`open_clip_model.safetensors` of ViT-L-14 `openai`) or as `torch.save` writes it
    /// (`open_clip_pytorch_model.bin`), strictly: every key of the model must be there with its
    /// shape, and every key there must be used (`logit_scale` aside). OpenAI's own
    /// `ViT-L-14.pt` is a TorchScript archive, which this does not read.
    pub fn load(config: ClipConfig, weights: &Path, device: B::Device) -> Result<Self, Error> {
        config.validate("CLIP config")?;
        let mut model = Clip::init(&config, &device);
        load_weights(&mut model, weights, &CLIP_KEYS)?;
        echo4o_model::weights::check_finite(&model, weights)?;
        Ok(Self::new(model, config, ClipTokenizer::openai()?, device))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<B>> {
        // A panic inside a forward leaves no half-written state: the cache only gains entries.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The zero-shot classifier of `class`: `[embed_dim, 10]`, one unit column per colour;
    /// built once per class, as the official `COLOR_CLASSIFIERS` caches it.
    pub fn classifier(&self, class: &str) -> Result<Tensor<B, 2>, Error> {
        if let Some(c) = self.lock().classifiers.get(class) {
            return Ok(c.clone());
        }
        let classifier = self.build_classifier(class)?;
        self.lock()
            .classifiers
            .insert(class.to_string(), classifier.clone());
        Ok(classifier)
    }

    /// [`classifier`](Self::classifier) without the cache: per colour, the three templates'
    /// text features normalised, averaged and normalised again.
    pub fn build_classifier(&self, class: &str) -> Result<Tensor<B, 2>, Error> {
        let context = self.config.text_cfg.context_length;
        let columns = COLORS
            .iter()
            .map(|color| {
                let tokens: Vec<Vec<u32>> = templates(class, color)
                    .iter()
                    .map(|t| self.tokenizer.tokenize(t, context))
                    .collect();
                let features = self.lock().model.encode_text(&tokens)?;
                Ok(l2_normalize(l2_normalize(features).mean_dim(0)).transpose())
            })
            .collect::<Result<Vec<Tensor<B, 2>>, Error>>()?;
        Ok(Tensor::cat(columns, 1))
    }

    /// `[n, embed_dim]`: the image features of each crop (not normalised), in batches of 16.
    pub fn image_features(&self, crops: &[RgbImage]) -> Result<Tensor<B, 2>, Error> {
        let size = self.config.vision_cfg.image_size;
        let embed = self.config.embed_dim;
        let mut out = Vec::new();
        for batch in crops.chunks(BATCH) {
            let mut pixels = Vec::with_capacity(batch.len() * 3 * size * size);
            for crop in batch {
                pixels.extend(preprocess(crop, size as u32)?);
            }
            let pixels = Tensor::<B, 4>::from_data(
                TensorData::new(pixels, [batch.len(), 3, size, size]),
                &self.device,
            );
            out.push(self.lock().model.encode_image(pixels));
        }
        if out.is_empty() {
            return Ok(Tensor::zeros([0, embed], &self.device));
        }
        Ok(Tensor::cat(out, 0))
    }

    /// `[n, 10]`: 100 x the cosine of each crop's image features with each colour's column.
    pub fn logits(&self, crops: &[RgbImage], class: &str) -> Result<Tensor<B, 2>, Error> {
        if crops.is_empty() {
            return Ok(Tensor::zeros([0, COLORS.len()], &self.device));
        }
        let classifier = self.classifier(class)?;
        Ok(l2_normalize(self.image_features(crops)?).matmul(classifier) * 100.0)
    }

    /// The colour of each crop.
    pub fn predict(&self, crops: &[RgbImage], class: &str) -> Result<Vec<&'static str>, Error> {
        if crops.is_empty() {
            return Ok(Vec::new());
        }
        let logits = self.logits(crops, class)?;
        let values: Vec<f32> = logits
            .into_data()
            .convert::<f32>()
            .into_vec()
            .map_err(|e| Error::Invalid {
                what: "logits".into(),
                message: format!("{e:?}"),
            })?;
        Ok(values
            .chunks(COLORS.len())
            .map(|row| COLORS[first_max(row)])
            .collect())
    }
}

impl<B: Backend> ColorClassifier for ClipColorClassifier<B>
where
    B::Device: Sync,
{
    fn classify(&self, crops: &[RgbImage], class: &str) -> echo4o_bench::Result<Vec<String>> {
        Ok(self
            .predict(crops, class)?
            .into_iter()
            .map(str::to_string)
            .collect())
    }
}
