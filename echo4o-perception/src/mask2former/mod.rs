//! Mask2Former (Swin backbone) as mmdet 2.x builds it for instance segmentation: GenEval's
//! object detector, native in burn, loading mmdet's checkpoints key for key.
//!
//! Where the official pipeline can still see different pixels: it decodes with OpenCV
//! (`cv2.imread`), echo4o with the `image` crate. 8-bit PNGs, what generators write and GenEval
//! reads, decode identically (alpha dropped, grey replicated, as OpenCV does); a JPEG's IDCT may
//! differ from libjpeg-turbo's by a level here and there, a 16-bit PNG is rounded to 8 bits
//! where OpenCV truncates, and OpenCV applies a JPEG's EXIF rotation, which echo4o does not.
//!
//! ```no_run
//! use echo4o_bench::geneval::Detector;
//! use echo4o_perception::mask2former::{Mask2FormerConfig, Mask2FormerDetector};
//! # type B = burn_flex::Flex;
//! // mmdet's `mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_20220504_001756-743b7d99.pth`.
//! let detector = Mask2FormerDetector::<B>::load(
//!     Mask2FormerConfig::swin_s_coco(),
//!     "mask2former_swin-s.pth".as_ref(),
//!     Default::default(),
//! )?;
//! let image = image::open("00000.png")?.to_rgb8();
//! for d in detector.detect(&image)? {
//!     println!("{} {:.3} {:?}", d.class, d.score, d.bbox);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod config;
pub mod deform_attn;
pub mod detector;
pub mod head;
pub mod pixel_decoder;
pub mod position;
pub mod postprocess;
pub mod preprocess;
pub mod swin;

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use echo4o_model::weights::{KeyRules, Remap};

pub use config::Mask2FormerConfig;
pub use detector::Mask2FormerDetector;
pub use head::HeadOutput;

/// The whole network: backbone and head, named as mmdet's `Mask2Former` (`backbone.*`,
/// `panoptic_head.*`).
#[derive(Module, Debug)]
pub struct Mask2Former<B: Backend> {
    /// Swin.
    pub backbone: swin::SwinTransformer<B>,
    /// Pixel decoder, masked-attention decoder and the prediction heads.
    pub panoptic_head: head::Mask2FormerHead<B>,
}

impl<B: Backend> Mask2Former<B> {
    /// Zero-initialised in `config`'s shape (the weights come from a checkpoint).
    pub fn init(config: &Mask2FormerConfig, device: &B::Device) -> Self {
        Mask2Former {
            backbone: swin::SwinTransformer::init(&config.backbone, device),
            panoptic_head: head::Mask2FormerHead::init(config, device),
        }
    }

    /// A normalised, padded `[b, 3, h, w]` batch -> every decoder prediction.
    pub fn forward(&self, images: Tensor<B, 4>) -> HeadOutput<B> {
        let feats = self.backbone.forward(images);
        self.panoptic_head.forward(&feats)
    }
}

macro_rules! remap {
    ($from:literal => $to:literal, $back_from:literal => $back_to:literal) => {
        Remap {
            to_module: ($from, $to),
            to_official: ($back_from, $back_to),
        }
    };
}

/// How mmdet's names meet the module's: mmcv's `FFN` (`layers.0.0`, `layers.1`), the encoder and
/// decoder layers' numbered `attentions` and `norms` (in `operation_order`), the mask MLP's
/// `nn.Sequential` indices, and norms' `weight`/`bias` as burn's `gamma`/`beta`. Each rule
/// touches its own part of a name, so the reverse rules (for error messages) commute.
pub const MASK2FORMER_REMAPS: &[Remap] = &[
    remap!(r"^(.*blocks\.\d+)\.ffn\.layers\.0\.0\.(weight|bias)$" => "$1.ffn.fc1.$2",
           r"^(.*blocks\.\d+)\.ffn\.fc1\.(weight|bias)$" => "$1.ffn.layers.0.0.$2"),
    remap!(r"^(.*blocks\.\d+)\.ffn\.layers\.1\.(weight|bias)$" => "$1.ffn.fc2.$2",
           r"^(.*blocks\.\d+)\.ffn\.fc2\.(weight|bias)$" => "$1.ffn.layers.1.$2"),
    remap!(r"^(.*coder\.layers\.\d+)\.ffns\.0\.layers\.0\.0\.(weight|bias)$" => "$1.ffn.fc1.$2",
           r"^(.*coder\.layers\.\d+)\.ffn\.fc1\.(weight|bias)$" => "$1.ffns.0.layers.0.0.$2"),
    remap!(r"^(.*coder\.layers\.\d+)\.ffns\.0\.layers\.1\.(weight|bias)$" => "$1.ffn.fc2.$2",
           r"^(.*coder\.layers\.\d+)\.ffn\.fc2\.(weight|bias)$" => "$1.ffns.0.layers.1.$2"),
    remap!(r"^(.*encoder\.layers\.\d+)\.attentions\.0\.(.*)$" => "$1.attn.$2",
           r"^(.*encoder\.layers\.\d+)\.attn\.(.*)$" => "$1.attentions.0.$2"),
    remap!(r"^(.*encoder\.layers\.\d+)\.norms\.0\.(.*)$" => "$1.norm1.$2",
           r"^(.*encoder\.layers\.\d+)\.norm1\.(.*)$" => "$1.norms.0.$2"),
    remap!(r"^(.*encoder\.layers\.\d+)\.norms\.1\.(.*)$" => "$1.norm2.$2",
           r"^(.*encoder\.layers\.\d+)\.norm2\.(.*)$" => "$1.norms.1.$2"),
    remap!(r"^(.*decoder\.layers\.\d+)\.attentions\.0\.(.*)$" => "$1.cross_attn.$2",
           r"^(.*decoder\.layers\.\d+)\.cross_attn\.(.*)$" => "$1.attentions.0.$2"),
    remap!(r"^(.*decoder\.layers\.\d+)\.attentions\.1\.(.*)$" => "$1.self_attn.$2",
           r"^(.*decoder\.layers\.\d+)\.self_attn\.(.*)$" => "$1.attentions.1.$2"),
    remap!(r"^(.*decoder\.layers\.\d+)\.norms\.0\.(.*)$" => "$1.norm1.$2",
           r"^(.*decoder\.layers\.\d+)\.norm1\.(.*)$" => "$1.norms.0.$2"),
    remap!(r"^(.*decoder\.layers\.\d+)\.norms\.1\.(.*)$" => "$1.norm2.$2",
           r"^(.*decoder\.layers\.\d+)\.norm2\.(.*)$" => "$1.norms.1.$2"),
    remap!(r"^(.*decoder\.layers\.\d+)\.norms\.2\.(.*)$" => "$1.norm3.$2",
           r"^(.*decoder\.layers\.\d+)\.norm3\.(.*)$" => "$1.norms.2.$2"),
    remap!(r"^(.*)\.mask_embed\.0\.(.*)$" => "$1.mask_embed.fc1.$2",
           r"^(.*)\.mask_embed\.fc1\.(.*)$" => "$1.mask_embed.0.$2"),
    remap!(r"^(.*)\.mask_embed\.2\.(.*)$" => "$1.mask_embed.fc2.$2",
           r"^(.*)\.mask_embed\.fc2\.(.*)$" => "$1.mask_embed.2.$2"),
    remap!(r"^(.*)\.mask_embed\.4\.(.*)$" => "$1.mask_embed.fc3.$2",
           r"^(.*)\.mask_embed\.fc3\.(.*)$" => "$1.mask_embed.4.$2"),
    remap!(r"^(.*(?:norm\d?|norms\.\d|post_norm|\.gn))\.weight$" => "$1.gamma",
           r"^(.*)\.gamma$" => "$1.weight"),
    remap!(r"^(.*(?:norm\d?|norms\.\d|post_norm|\.gn))\.bias$" => "$1.beta",
           r"^(.*)\.beta$" => "$1.bias"),
];

/// The checkpoint keys read for `config`: everything, except Swin's `relative_position_index`
/// buffers (a function of the window size, derived rather than read).
pub fn ignored_keys(config: &Mask2FormerConfig) -> Vec<String> {
    let mut keys = Vec::new();
    for (stage, &depth) in config.backbone.depths.iter().enumerate() {
        for block in 0..depth {
            keys.push(format!(
                "backbone.stages.{stage}.blocks.{block}.attn.w_msa.relative_position_index"
            ));
        }
    }
    keys
}

/// The rules for an mmdet checkpoint (`torch.save` of `{"state_dict": ..., "meta": ...}`) or
/// the same state dict as safetensors; `ignored` from [`ignored_keys`].
pub fn key_rules<'a>(ignored: &'a [&'a str]) -> KeyRules<'a> {
    KeyRules {
        remaps: MASK2FORMER_REMAPS,
        optional: &[],
        ignored,
        state_dict_key: Some("state_dict"),
    }
}
