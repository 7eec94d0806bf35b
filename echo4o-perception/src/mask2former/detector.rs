//! Mask2Former behind `echo4o-bench`'s [`Detector`]: what `inference_detector` returns, as
//! GenEval reads it (per detection: COCO class, score, box, full-image mask).

use std::path::Path;
use std::sync::Mutex;

use burn::tensor::backend::Backend;
use echo4o_bench::geneval::{BBox, Detection, Detector, OBJECT_NAMES};
use echo4o_model::weights::load_weights;
use image::{GrayImage, RgbImage};

use super::postprocess::{Instance, instances};
use super::preprocess::preprocess;
use super::{Mask2Former, Mask2FormerConfig, ignored_keys, key_rules};
use crate::Error;

/// GenEval's detector on a Mask2Former model.
pub struct Mask2FormerDetector<B: Backend> {
    model: Mutex<Mask2Former<B>>,
    classes: Vec<String>,
    device: B::Device,
}

impl<B: Backend> Mask2FormerDetector<B> {
    /// Wraps a model whose weights are loaded; classes are GenEval's COCO names, which must
    /// number `config.num_classes`.
    pub fn new(
        model: Mask2Former<B>,
        config: &Mask2FormerConfig,
        device: B::Device,
    ) -> Result<Self, Error> {
        let classes: Vec<String> = OBJECT_NAMES.lines().map(str::to_string).collect();
        if classes.len() != config.num_classes {
            return Err(Error::Config {
                origin: "mask2former".into(),
                message: format!(
                    "num_classes = {} but GenEval names {} COCO classes",
                    config.num_classes,
                    classes.len()
                ),
            });
        }
        Ok(Mask2FormerDetector {
            model: Mutex::new(model),
            classes,
            device,
        })
    }

    /// Builds `config`'s model and loads an mmdet checkpoint (`.pth` with `state_dict`, or
    /// safetensors) strictly: every key used, mismatches named by mmdet's names.
    pub fn load(
        config: Mask2FormerConfig,
        weights: &Path,
        device: B::Device,
    ) -> Result<Self, Error> {
        config.validate("mask2former config")?;
        let mut model = Mask2Former::init(&config, &device);
        let ignored = ignored_keys(&config);
        let ignored: Vec<&str> = ignored.iter().map(String::as_str).collect();
        load_weights(&mut model, weights, &key_rules(&ignored))?;
        Self::new(model, &config, device)
    }

    /// Runs `f` on the model (for per-stage inspection; detection goes through
    /// [`Self::instances`]).
    pub fn with_model<T>(&self, f: impl FnOnce(&Mask2Former<B>) -> T) -> Result<T, Error> {
        let model = self.model.lock().map_err(|_| poisoned())?;
        Ok(f(&model))
    }

    /// The instances of `image` as mmdet's post-processing leaves them (highest score first).
    pub fn instances(&self, image: &RgbImage) -> Result<Vec<Instance>, Error> {
        if image.width() == 0 || image.height() == 0 {
            return Err(Error::Invalid {
                what: "image".into(),
                message: "it has no pixels".into(),
            });
        }
        let (input, meta) = preprocess::<B>(image, &self.device);
        let model = self.model.lock().map_err(|_| poisoned())?;
        let mut out = model.forward(input);
        let classes = out.class_logits.pop().expect("at least one prediction");
        let masks = out.mask_logits.pop().expect("at least one prediction");
        let [_, q, k] = classes.dims();
        let [_, _, h, w] = masks.dims();
        Ok(instances(
            classes.reshape([q, k]),
            masks.reshape([q, h, w]),
            &meta,
        ))
    }
}

fn poisoned() -> Error {
    Error::Invalid {
        what: "detector".into(),
        message: "a previous detection panicked while holding the model".into(),
    }
}

impl<B: Backend> Detector for Mask2FormerDetector<B> {
    fn detect(&self, image: &RgbImage) -> echo4o_bench::Result<Vec<Detection>> {
        let (w, h) = image.dimensions();
        Ok(self
            .instances(image)?
            .into_iter()
            .map(|inst| {
                let mask = GrayImage::from_raw(
                    w,
                    h,
                    inst.mask
                        .iter()
                        .map(|&on| if on { 255 } else { 0 })
                        .collect(),
                )
                .expect("mask of the image's size");
                let [x1, y1, x2, y2] = inst.bbox.map(f64::from);
                Detection {
                    class: self.classes[inst.label].clone(),
                    score: f64::from(inst.score),
                    bbox: BBox { x1, y1, x2, y2 },
                    mask: Some(mask),
                }
            })
            .collect())
    }
}
