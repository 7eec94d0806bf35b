//! mmdet's `SinePositionalEncoding` with `normalize=True` over an unmasked map (Mask2Former never
//! masks: it pads the image, not the features), and the encoder's reference points.
//!
//! Upstream (`mmdet/models/utils/positional_encoding.py`): `y = cumsum` of ones down the rows,
//! `y / (y_last + 1e-6) * 2π` (likewise x), `dim_t = 10000^(2 (i div 2) / num_feats)`, channels
//! `[sin(y/dim_t_0), cos(y/dim_t_1), sin(y/dim_t_2), ...]` then the same for x (y first), all in
//! float32.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// `[1, 2 * num_feats, h, w]`.
pub fn sine_encoding<B: Backend>(
    num_feats: usize,
    h: usize,
    w: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    let scale = 2.0 * std::f32::consts::PI;
    let dim_t: Vec<f32> = (0..num_feats)
        .map(|i| 10000f32.powf((2 * (i / 2)) as f32 / num_feats as f32))
        .collect();
    let embed = |k: usize, n: usize| (k as f32 + 1.0) / (n as f32 + 1e-6) * scale;
    let mut data = vec![0f32; 2 * num_feats * h * w];
    for (c, &t) in dim_t.iter().enumerate() {
        let wave = |v: f32| {
            if c % 2 == 0 {
                (v / t).sin()
            } else {
                (v / t).cos()
            }
        };
        for y in 0..h {
            let ey = wave(embed(y, h));
            for x in 0..w {
                data[(c * h + y) * w + x] = ey;
                data[((num_feats + c) * h + y) * w + x] = wave(embed(x, w));
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [1, 2 * num_feats, h, w]), device)
}

/// `[h * w, 2]`: the centre of each cell of an `h x w` map as `(x, y)` fractions of the map
/// (`MlvlPointGenerator` points with offset 0.5, divided by the map's extent).
pub fn reference_points(h: usize, w: usize) -> Vec<[f32; 2]> {
    let mut points = Vec::with_capacity(h * w);
    for y in 0..h {
        for x in 0..w {
            points.push([(x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32]);
        }
    }
    points
}
