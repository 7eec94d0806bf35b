//! mmcv's `MultiScaleDeformableAttention` with 2-d reference points, computed as mmcv computes
//! it on the CPU (`multi_scale_deformable_attn_pytorch`: bilinear `grid_sample`, zero padding,
//! `align_corners=False`).
//!
//! Per query, head, level and point: the sampling location is the reference point plus the
//! predicted offset divided by the level's `(w, h)`; the sampled values are weighted by a
//! softmax over all levels and points of the head. The module adds its input back (`identity`)
//! after `output_proj`, as mmcv does.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::ops::GridSampleOptions;

/// The attention module (`attentions.0` of an encoder layer).
#[derive(Module, Debug)]
pub struct MultiScaleDeformableAttention<B: Backend> {
    /// Query -> `heads * levels * points * 2` offsets.
    pub sampling_offsets: Linear<B>,
    /// Query -> `heads * levels * points` weights.
    pub attention_weights: Linear<B>,
    /// Value projection.
    pub value_proj: Linear<B>,
    /// Output projection.
    pub output_proj: Linear<B>,
    heads: usize,
    levels: usize,
    points: usize,
}

impl<B: Backend> MultiScaleDeformableAttention<B> {
    /// Zero-initialised.
    pub fn init(
        width: usize,
        heads: usize,
        levels: usize,
        points: usize,
        device: &B::Device,
    ) -> Self {
        MultiScaleDeformableAttention {
            sampling_offsets: LinearConfig::new(width, heads * levels * points * 2).init(device),
            attention_weights: LinearConfig::new(width, heads * levels * points).init(device),
            value_proj: LinearConfig::new(width, width).init(device),
            output_proj: LinearConfig::new(width, width).init(device),
            heads,
            levels,
            points,
        }
    }

    /// `query` `[b, n, c]` (its value too), `pos` added to it for offsets and weights,
    /// `reference` `[b, n, 2]` as `(x, y)` in [0, 1] (the same for every level), `shapes` the
    /// levels' `(h, w)` in the order the tokens are concatenated.
    pub fn forward(
        &self,
        query: Tensor<B, 3>,
        pos: Tensor<B, 3>,
        reference: Tensor<B, 3>,
        shapes: &[[usize; 2]],
    ) -> Tensor<B, 3> {
        let [b, n, c] = query.dims();
        let (heads, levels, points) = (self.heads, self.levels, self.points);
        let d = c / heads;
        let device = query.device();
        let with_pos = query.clone() + pos;
        let value = self.value_proj.forward(query.clone());
        let offsets = self
            .sampling_offsets
            .forward(with_pos.clone())
            .reshape([b, n, heads, levels, points, 2]);
        let weights = softmax(
            self.attention_weights
                .forward(with_pos)
                .reshape([b, n, heads, levels * points]),
            3,
        );
        // (w, h) per level, to scale the offsets.
        let normalizer: Vec<f32> = shapes
            .iter()
            .flat_map(|&[h, w]| [w as f32, h as f32])
            .collect();
        let normalizer = Tensor::<B, 1>::from_floats(normalizer.as_slice(), &device)
            .reshape([1, 1, 1, levels, 1, 2]);
        let locations = reference.reshape([b, n, 1, 1, 1, 2]) + offsets / normalizer;
        let grids = locations * 2.0 - 1.0;
        let mut sampled = Vec::with_capacity(levels);
        let mut start = 0;
        for (l, &[h, w]) in shapes.iter().enumerate() {
            let value_l = value
                .clone()
                .narrow(1, start, h * w)
                .reshape([b, h * w, heads, d])
                .permute([0, 2, 3, 1])
                .reshape([b * heads, d, h, w]);
            start += h * w;
            let grid_l = grids
                .clone()
                .narrow(3, l, 1)
                .reshape([b, n, heads, points, 2])
                .swap_dims(1, 2)
                .reshape([b * heads, n, points, 2]);
            // [b * heads, d, n, points]
            sampled.push(value_l.grid_sample_2d(grid_l, GridSampleOptions::default()));
        }
        let sampled = Tensor::cat(sampled, 3);
        let weights = weights
            .swap_dims(1, 2)
            .reshape([b * heads, 1, n, levels * points]);
        let out = (sampled * weights)
            .sum_dim(3)
            .reshape([b, c, n])
            .swap_dims(1, 2);
        self.output_proj.forward(out) + query
    }
}
