//! GenEval's models from weight files, shared by `echo4o bench geneval` and `echo4o eval`:
//! Mask2Former (the detector) and CLIP (the colour classifier), loaded on the chosen backend and
//! handed to the rule engine as trait objects.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use echo4o::bench::geneval::{ColorClassifier, Detector};
use echo4o::bench::suite::Perception;
use echo4o::model::burn::tensor::backend::Backend;
use echo4o::model::{BackendTask, DeviceSpec};
use echo4o::perception::clip::{ClipColorClassifier, ClipConfig};
use echo4o::perception::mask2former::{Mask2FormerConfig, Mask2FormerDetector};

/// The weight files of GenEval's detector and colour classifier.
#[derive(Debug, Clone, clap::Args)]
pub struct PerceptionOptions {
    /// mmdet's Mask2Former checkpoint, GenEval's detector: the released
    /// `mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_20220504_001756-743b7d99.pth`, or its
    /// state_dict as safetensors.
    #[arg(long)]
    pub detector_weights: Option<PathBuf>,
    /// The shape of --detector-weights (JSON, echo4o's Mask2FormerConfig)
    /// [default: GenEval's Swin-S].
    #[arg(long, requires = "detector_weights")]
    pub detector_config: Option<PathBuf>,
    /// open_clip weights for GenEval's zero-shot colour classifier (its state_dict as
    /// safetensors or as torch.save wrote it, open_clip's key names): ViT-L-14 `openai`, as
    /// GenEval uses, or the model of --clip-config.
    #[arg(long)]
    pub clip_weights: Option<PathBuf>,
    /// The open_clip model config (JSON, open_clip's `model_configs` format) of
    /// --clip-weights [default: ViT-L-14 with QuickGELU].
    #[arg(long, requires = "clip_weights")]
    pub clip_config: Option<PathBuf>,
}

/// What was asked for, loaded.
pub struct Loaded {
    /// Mask2Former, when --detector-weights was given.
    pub detector: Option<Arc<dyn Detector>>,
    /// CLIP, when --clip-weights was given.
    pub classifier: Option<Arc<dyn ColorClassifier>>,
}

impl PerceptionOptions {
    /// Whether any weights were given.
    pub fn any(&self) -> bool {
        self.detector_weights.is_some() || self.clip_weights.is_some()
    }

    /// Loads whatever weights were given, on `device`; errors name the file and the key.
    pub fn load(&self, device: DeviceSpec) -> anyhow::Result<Loaded> {
        let detector = match &self.detector_weights {
            Some(weights) => Some((
                match &self.detector_config {
                    Some(path) => Mask2FormerConfig::from_file(path)?,
                    None => Mask2FormerConfig::swin_s_coco(),
                },
                weights.clone(),
            )),
            None => None,
        };
        let clip = match &self.clip_weights {
            Some(weights) => Some((
                match &self.clip_config {
                    Some(path) => ClipConfig::from_file(path)?,
                    None => ClipConfig::vit_l_14_openai(),
                },
                weights.clone(),
            )),
            None => None,
        };
        device.run(Load { detector, clip })?
    }

    /// Both models, as GenEval on real images needs them; `None` when neither was given.
    pub fn perception(&self, device: DeviceSpec) -> anyhow::Result<Option<Perception>> {
        match (&self.detector_weights, &self.clip_weights) {
            (None, None) => Ok(None),
            (Some(_), None) => bail!(
                "--detector-weights needs --clip-weights: GenEval names colours with CLIP \
                 (open_clip's ViT-L-14 `openai` weights)"
            ),
            (None, Some(_)) => bail!(
                "--clip-weights needs --detector-weights: GenEval finds objects with Mask2Former \
                 (mmdet's Swin-S COCO checkpoint)"
            ),
            (Some(_), Some(_)) => {
                let loaded = self.load(device)?;
                match (loaded.detector, loaded.classifier) {
                    (Some(detector), Some(classifier)) => Ok(Some(Perception {
                        detector,
                        classifier,
                    })),
                    _ => bail!("--detector-weights and --clip-weights were given but not loaded"),
                }
            }
        }
    }
}

struct Load {
    detector: Option<(Mask2FormerConfig, PathBuf)>,
    clip: Option<(ClipConfig, PathBuf)>,
}

impl BackendTask for Load {
    type Output = anyhow::Result<Loaded>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let detector: Option<Arc<dyn Detector>> = match self.detector {
            Some((config, weights)) => Some(Arc::new(Mask2FormerDetector::<B>::load(
                config,
                &weights,
                device.clone(),
            )?)),
            None => None,
        };
        let classifier: Option<Arc<dyn ColorClassifier>> = match self.clip {
            Some((config, weights)) => Some(Arc::new(ClipColorClassifier::<B>::load(
                config, &weights, device,
            )?)),
            None => None,
        };
        Ok(Loaded {
            detector,
            classifier,
        })
    }
}
