//! mmdet's instance post-processing for Mask2Former (`MaskFormerFusionHead.instance_postprocess`
//! after `Mask2FormerHead.simple_test` and the fusion head's `simple_test` with `rescale=True`).
//!
//! The last decoder layer's mask logits are upsampled bilinearly to the padded input, cropped to
//! the resized image, upsampled again to the original image; class scores are the softmax minus
//! the no-object column; the top `max_per_image` (query, class) pairs by score are kept; each
//! keeps its query's mask (`logit > 0`), its score times the mean sigmoid inside that mask
//! (`/ (area + 1e-6)`), and the mask's tight box (`x_max + 1`, `y_max + 1`; zeros when empty).

use std::collections::BTreeMap;

use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::pixel_decoder::upsample;
use super::preprocess::ImageMeta;

/// `test_cfg.max_per_image`.
pub const MAX_PER_IMAGE: usize = 100;

/// Queries whose masks are upsampled at once (bounds the full-resolution buffers).
const MASK_CHUNK: usize = 16;

/// One instance, in the original image's pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Class index (COCO order).
    pub label: usize,
    /// Class score times mask score.
    pub score: f32,
    /// `[x1, y1, x2, y2]`, exclusive right and bottom.
    pub bbox: [f32; 4],
    /// Row-major, the original image's size.
    pub mask: Vec<bool>,
    /// The query it came from.
    pub query: usize,
}

/// Instances from the last prediction: `class_logits` `[queries, classes + 1]`, `mask_logits`
/// `[queries, h/4, w/4]` of the padded input. Sorted by score, highest first (mmdet leaves its
/// `topk(sorted=False)` order unspecified; GenEval sorts by score itself).
pub fn instances<B: Backend>(
    class_logits: Tensor<B, 2>,
    mask_logits: Tensor<B, 3>,
    meta: &ImageMeta,
) -> Vec<Instance> {
    let [queries, k1] = class_logits.dims();
    let classes = k1 - 1;
    let scores: Vec<f32> = softmax(class_logits, 1)
        .narrow(1, 0, classes)
        .into_data()
        .convert::<f32>()
        .into_vec()
        .expect("converted to f32");
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Highest first; ties by index, so the order is deterministic.
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(MAX_PER_IMAGE.min(queries * classes));
    let mut wanted: Vec<usize> = order.iter().map(|&i| i / classes).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let masks = query_masks(mask_logits, &wanted, meta);
    let mut out: Vec<Instance> = order
        .iter()
        .map(|&i| {
            let query = i / classes;
            let m = &masks[&query];
            Instance {
                label: i % classes,
                score: scores[i] * m.score,
                bbox: m.bbox,
                mask: m.mask.clone(),
                query,
            }
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// What a query's mask gives every detection made from it.
struct QueryMask {
    mask: Vec<bool>,
    /// Mean sigmoid inside the mask (`/ (area + 1e-6)`).
    score: f32,
    bbox: [f32; 4],
}

/// Per wanted query, its mask at the original image's size, mask score and box. Queries are
/// upsampled a chunk at a time and reduced at once, so full-resolution logits of at most
/// [`MASK_CHUNK`] queries are held.
fn query_masks<B: Backend>(
    mask_logits: Tensor<B, 3>,
    wanted: &[usize],
    meta: &ImageMeta,
) -> BTreeMap<usize, QueryMask> {
    let (_, ow) = meta.original;
    let mut out = BTreeMap::new();
    for (query, logits) in full_resolution_masks(mask_logits, wanted, meta) {
        let mut mask = Vec::with_capacity(logits.len());
        // float64 sums: torch's blocked float32 reduction is closer to exact than a running
        // float32 sum over a megapixel would be.
        let (mut inside, mut area) = (0f64, 0f64);
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        for (p, &l) in logits.iter().enumerate() {
            let on = l > 0.0;
            mask.push(on);
            if on {
                inside += f64::from(1.0 / (1.0 + (-l).exp()));
                area += 1.0;
                let (y, x) = (p / ow, p % ow);
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x + 1);
                y1 = y1.max(y + 1);
            }
        }
        let bbox = if area > 0.0 {
            [x0 as f32, y0 as f32, x1 as f32, y1 as f32]
        } else {
            [0.0; 4]
        };
        let score = (inside / (area + 1e-6)) as f32;
        out.insert(query, QueryMask { mask, score, bbox });
    }
    out
}

/// The mask logits of `wanted` queries at the original image's size, computed a chunk of
/// queries at a time as the iterator is consumed.
fn full_resolution_masks<'a, B: Backend>(
    mask_logits: Tensor<B, 3>,
    wanted: &'a [usize],
    meta: &'a ImageMeta,
) -> impl Iterator<Item = (usize, Vec<f32>)> + 'a {
    let device = mask_logits.device();
    let [_, h, w] = mask_logits.dims();
    let (ph, pw) = meta.padded;
    let (rh, rw) = meta.resized;
    let (oh, ow) = meta.original;
    wanted.chunks(MASK_CHUNK).flat_map(move |chunk| {
        let index: Vec<i64> = chunk.iter().map(|&q| q as i64).collect();
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [chunk.len()]), &device);
        let n = chunk.len();
        let picked = mask_logits.clone().select(0, index).reshape([1, n, h, w]);
        let padded = upsample(picked, [ph, pw]);
        let cropped = padded.narrow(2, 0, rh).narrow(3, 0, rw);
        let original = upsample(cropped, [oh, ow]);
        let values: Vec<f32> = original
            .into_data()
            .convert::<f32>()
            .into_vec()
            .expect("converted to f32");
        chunk
            .iter()
            .enumerate()
            .map(|(j, &q)| (q, values[j * oh * ow..(j + 1) * oh * ow].to_vec()))
            .collect::<Vec<_>>()
    })
}
