//! The official flow-matching objective over packed sequences (`Bagel.forward` in train mode,
//! `pack_sequence` of `data/dataset_base.py`).
//!
//! Each [`T2iExample`] becomes `[references...] [text (causal, und)] [vision_start, N noised
//! latents, vision_end]`: each clean reference is an image split `[vision_start, latents (t = 0),
//! vision_end]` on one RoPE position (Echo-4o's `multiref_dataset`: references without loss,
//! then the instruction, then the target), the text takes the next `n` positions and the whole
//! target split the one after; examples are packed
//! into one sequence with a block-diagonal mask, so one forward trains a whole batch exactly as
//! separate forwards would. The loss is the per-token mean of `(v_pred - (eps - x0))^2` over the
//! latent channels, averaged over every latent token of the batch, plus an optional next-token
//! cross-entropy on the text.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};

use std::sync::Arc;

use crate::bagel::{Bagel, grid_position_ids};
use crate::packing::PackedSegments;
pub use crate::packing::Split;
use crate::qwen2_mot::{AttentionMode, Expert, KvCache, Routing};

/// `t = s t' / (1 + (s - 1) t')` with `t' = sigmoid(logit)`: the official per-image timestep
/// (the logit drawn from N(0, 1); `shift` is `--timestep_shift`, 1 by default).
pub fn timestep(logit: f32, shift: f32) -> f32 {
    let t = 1.0 / (1.0 + (-logit).exp());
    shift * t / (1.0 + (shift - 1.0) * t)
}

/// One example of a training batch: text-to-image, or multi-reference with clean references.
#[derive(Debug, Clone)]
pub struct T2iExample<B: Backend> {
    /// Clean reference latent tokens and their grids (multi-reference composition), in order.
    pub references: Vec<(Tensor<B, 2>, (usize, usize))>,
    /// Prompt ids including `<|im_start|>` and `<|im_end|>`; empty when the text was dropped
    /// (classifier-free guidance training).
    pub text: Vec<u32>,
    /// Clean latent tokens `x0`, `[h * w, patch_latent_dim]`, rows in grid order.
    pub x0: Tensor<B, 2>,
    /// The latent grid `(h, w)`.
    pub grid: (usize, usize),
    /// Flow time in (0, 1) (see [`timestep`]).
    pub t: f32,
    /// The noise `eps`, same shape as `x0`.
    pub noise: Tensor<B, 2>,
}

/// The losses of one batch.
#[derive(Debug, Clone)]
pub struct FlowLoss<B: Backend> {
    /// `mse + ce_weight * ce` (scalar).
    pub loss: Tensor<B, 1>,
    /// The flow-matching MSE (scalar).
    pub mse: Tensor<B, 1>,
    /// The text cross-entropy (scalar), when asked for and any text is present.
    pub ce: Option<Tensor<B, 1>>,
    /// Predicted velocities `[tokens, dim]` of every latent token, examples in order.
    pub v_pred: Tensor<B, 2>,
    /// The targets `eps - x0`, same shape.
    pub target: Tensor<B, 2>,
}

/// The additive attention mask `[L, L]` (0 attend, -inf masked) of examples packed in order,
/// each a list of splits: every split sees the earlier splits of its example and itself (text
/// causally, images fully); nothing crosses examples, and nothing sees a later split (so the
/// noised target, always last, is hidden from everything else). Equals the official
/// `prepare_attention_mask_per_sample` per example (text `causal`, references `full`, target
/// `noise`).
pub fn packed_mask(examples: &[Vec<Split>]) -> Vec<f32> {
    let total: usize = examples.iter().flatten().map(|s| s.len()).sum();
    let mut mask = vec![f32::NEG_INFINITY; total * total];
    let mut example_start = 0;
    for splits in examples {
        let mut split_start = example_start;
        for split in splits {
            for i in 0..split.len() {
                let row = split_start + i;
                let visible_end = match split {
                    Split::Causal(_) => row + 1,
                    Split::Full(n) => split_start + n,
                };
                for col in example_start..visible_end {
                    mask[row * total + col] = 0.0;
                }
            }
            split_start += split.len();
        }
        example_start = split_start;
    }
    mask
}

/// The official loss of a batch (see the module docs). `markers` are `[vision_start,
/// vision_end]`; `ce_weight` 0 skips the cross-entropy (the default of T2I data).
pub fn flow_loss<B: Backend>(
    model: &Bagel<B>,
    batch: &[T2iExample<B>],
    markers: [u32; 2],
    ce_weight: f32,
    max_latent_size: usize,
) -> FlowLoss<B> {
    let device = batch.first().map(|e| e.x0.device()).unwrap_or_default();
    let lm = &model.language_model;
    let mut pieces = Vec::new();
    let mut runs = Vec::new();
    let mut positions = Vec::new();
    let mut splits = Vec::new();
    let mut latent_rows = Vec::new();
    let mut text_pairs: Vec<(usize, u32)> = Vec::new(); // (row predicting, next id)
    let mut row = 0;
    let marks = lm.embed(&markers, &device);
    let image_split = |pieces: &mut Vec<Tensor<B, 2>>, inputs: Tensor<B, 2>| {
        pieces.push(marks.clone().narrow(0, 0, 1));
        pieces.push(inputs);
        pieces.push(marks.clone().narrow(0, 1, 1));
    };
    for ex in batch {
        let mut example = Vec::new();
        let mut rope = 0;
        for (tokens, grid) in &ex.references {
            let m = tokens.dims()[0];
            let pos = grid_position_ids(grid.0, grid.1, max_latent_size);
            image_split(&mut pieces, model.latent_inputs(tokens.clone(), 0.0, &pos));
            runs.extend([(1, Expert::Und), (m, Expert::Gen), (1, Expert::Und)]);
            positions.extend(std::iter::repeat_n(rope, m + 2));
            example.push(Split::Full(m + 2));
            rope += 1;
            row += m + 2;
        }
        let n = ex.text.len();
        if n > 0 {
            pieces.push(lm.embed(&ex.text, &device));
            for (k, &next) in ex.text.iter().enumerate().skip(1) {
                text_pairs.push((row + k - 1, next));
            }
            runs.push((n, Expert::Und));
            positions.extend(rope..rope + n);
            example.push(Split::Causal(n));
            rope += n;
            row += n;
        }
        let m = ex.x0.dims()[0];
        let x_t = ex.x0.clone() * (1.0 - ex.t) + ex.noise.clone() * ex.t;
        let pos = grid_position_ids(ex.grid.0, ex.grid.1, max_latent_size);
        image_split(&mut pieces, model.latent_inputs(x_t, ex.t, &pos));
        runs.extend([(1, Expert::Und), (m, Expert::Gen), (1, Expert::Und)]);
        positions.extend(std::iter::repeat_n(rope, m + 2));
        example.push(Split::Full(m + 2));
        latent_rows.extend(row + 1..row + 1 + m);
        row += m + 2;
        splits.push(example);
    }
    // Each example's rows attend to prefixes of the example: `packed_mask(&splits)` without
    // its `[L, L]` matrix.
    let segments = Arc::new(PackedSegments::new(&splits));
    let hidden = lm.forward_block(
        Tensor::cat(pieces, 0),
        &Routing::new(runs),
        &positions,
        model.rope_theta(),
        &mut KvCache::new(),
        &AttentionMode::Segments(segments),
        false,
        None,
    );
    let index = |rows: &[usize]| {
        let ids: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [rows.len()]), &device)
    };
    let v_pred = model
        .llm2vae
        .forward(hidden.clone().select(0, index(&latent_rows)))
        .cast(DType::F32);
    let target = Tensor::cat(
        batch
            .iter()
            .map(|e| (e.noise.clone() - e.x0.clone()).cast(DType::F32))
            .collect(),
        0,
    );
    let mse = (v_pred.clone() - target.clone()).square().mean();
    let ce = (ce_weight > 0.0 && !text_pairs.is_empty()).then(|| {
        let rows: Vec<usize> = text_pairs.iter().map(|p| p.0).collect();
        let logits = lm
            .lm_head
            .forward(hidden.select(0, index(&rows)))
            .cast(DType::F32);
        let [k, _] = logits.dims();
        let next: Vec<i64> = text_pairs.iter().map(|p| i64::from(p.1)).collect();
        let next = Tensor::<B, 1, Int>::from_data(TensorData::new(next, [k]), &device);
        let picked = log_softmax(logits, 1).gather(1, next.reshape([k, 1]));
        picked.mean().neg()
    });
    let loss = match &ce {
        Some(ce) => mse.clone() + ce.clone() * ce_weight,
        None => mse.clone(),
    };
    FlowLoss {
        loss,
        mse,
        ce,
        v_pred,
        target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestep_is_the_shifted_sigmoid() {
        assert!((timestep(0.0, 1.0) - 0.5).abs() < 1e-7);
        assert!((timestep(0.3, 1.0) - 0.574_442_5).abs() < 1e-6);
        // shift 3 at t' = 0.5: 1.5 / 2 = 0.75
        assert!((timestep(0.0, 3.0) - 0.75).abs() < 1e-6);
    }

    #[test]
    fn packed_mask_is_block_diagonal_with_causal_text() {
        use Split::{Causal, Full};
        let m = packed_mask(&[vec![Causal(2), Full(3)], vec![Full(3)]]);
        let l = 5 + 3;
        let at = |i: usize, j: usize| m[i * l + j] == 0.0;
        assert!(at(0, 0) && !at(0, 1) && at(1, 0) && at(1, 1));
        // image rows 2..5 see the text and the whole image split
        assert!((2..5).all(|i| (0..5).all(|j| at(i, j))));
        // text rows do not see the image split
        assert!(!at(1, 2));
        // nothing crosses examples
        assert!((0..5).all(|i| (5..8).all(|j| !at(i, j) && !at(j, i))));
        // an example without text: its image split alone
        assert!((5..8).all(|i| (5..8).all(|j| at(i, j))));
    }

    #[test]
    fn packed_segments_are_the_diagonal_blocks_of_the_packed_mask() {
        use Split::{Causal, Full};
        let examples = [
            vec![Full(3), Causal(2), Full(4)],
            vec![Causal(5), Full(3)],
            vec![Full(2)],
        ];
        let dense = packed_mask(&examples);
        let l = 19;
        let segments = PackedSegments::new(&examples);
        let mut start = 0;
        for seg in segments.segments() {
            let n = seg.len();
            let block = PackedSegments::mask(seg);
            for i in 0..n {
                for j in 0..l {
                    let inside = (start..start + n).contains(&j);
                    let expected = if inside {
                        block[i * n + j - start]
                    } else {
                        f32::NEG_INFINITY
                    };
                    assert_eq!(
                        dense[(start + i) * l + j],
                        expected,
                        "row {} col {j}",
                        start + i
                    );
                }
            }
            start += n;
        }
        assert_eq!(start, l);
    }

    #[test]
    fn references_are_seen_by_the_text_and_the_target_but_see_neither() {
        use Split::{Causal, Full};
        // reference (3 rows), text (2), target (3)
        let m = packed_mask(&[vec![Full(3), Causal(2), Full(3)]]);
        let l = 8;
        let at = |i: usize, j: usize| m[i * l + j] == 0.0;
        assert!((0..3).all(|i| (0..3).all(|j| at(i, j)) && (3..8).all(|j| !at(i, j))));
        assert!(at(3, 0) && at(3, 2) && at(3, 3) && !at(3, 4) && at(4, 4));
        assert!((5..8).all(|i| (0..8).all(|j| at(i, j))));
    }

    /// A packed batch (examples with and without text and references) gives each example what
    /// it gives alone, on Flex and on `Autodiff<Flex>` (where the packed forward runs regrouped
    /// by expert through the kernels' autodiff operations), and the gradient of the packed loss
    /// is the examples' gradients weighted by their share of the latent values.
    #[cfg(feature = "flex")]
    #[test]
    #[allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report
    fn a_packed_batch_trains_each_example_as_alone() {
        use crate::config::BagelConfig;
        use burn::backend::Autodiff;
        use burn::tensor::Distribution;
        use burn_flex::Flex;

        type Ad = Autodiff<Flex>;
        let config = BagelConfig::tiny();
        let dev = Default::default();
        let dim = config.patch_latent_dim();
        let r =
            |n: usize| Tensor::<Flex, 2>::random([n, dim], Distribution::Normal(0.0, 1.0), &dev);
        let example = |refs: Vec<(Tensor<Flex, 2>, (usize, usize))>,
                       text: Vec<u32>,
                       grid: (usize, usize),
                       t| {
            let n = grid.0 * grid.1;
            T2iExample {
                references: refs,
                text,
                x0: r(n),
                grid,
                t,
                noise: r(n),
            }
        };
        let batch = vec![
            example(vec![], vec![5, 6, 7, 8], (2, 2), 0.3),
            example(
                vec![(r(4), (2, 2)), (r(2), (1, 2))],
                vec![9, 10],
                (2, 2),
                0.7,
            ),
            example(vec![], vec![], (2, 3), 0.5),
        ];
        let markers = [config.tokens.start_of_image, config.tokens.end_of_image];
        let loss = |model: &Bagel<Flex>, batch: &[T2iExample<Flex>]| {
            flow_loss(model, batch, markers, 0.0, config.max_latent_size)
        };
        let model = Bagel::<Flex>::init(&config, &dev);
        let packed = loss(&model, &batch).v_pred;
        let alone: Vec<_> = batch
            .iter()
            .map(|e| loss(&model, std::slice::from_ref(e)).v_pred)
            .collect();
        let diff = (packed - Tensor::cat(alone, 0)).abs().max().into_scalar();
        assert!(diff < 1e-4, "Flex: packed against alone, max diff {diff}");

        let model = Bagel::<Ad>::init(&config, &dev);
        let to_ad = |e: &T2iExample<Flex>| T2iExample::<Ad> {
            references: e
                .references
                .iter()
                .map(|(t, g)| (Tensor::from_inner(t.clone()), *g))
                .collect(),
            text: e.text.clone(),
            x0: Tensor::from_inner(e.x0.clone()),
            grid: e.grid,
            t: e.t,
            noise: Tensor::from_inner(e.noise.clone()),
        };
        let batch: Vec<T2iExample<Ad>> = batch.iter().map(to_ad).collect();
        let weights = |m: &Bagel<Ad>| {
            let l = &m.language_model.model.layers[0];
            [
                l.self_attn.q_proj.weight.val(),
                l.mlp_moe_gen.up_proj.weight.val(),
            ]
        };
        let run = |batch: &[T2iExample<Ad>]| {
            let out = flow_loss(&model, batch, markers, 0.0, config.max_latent_size);
            let grads = out.mse.backward();
            let [w0, w1] = weights(&model).map(|w| w.grad(&grads).unwrap());
            let gamma = &model.language_model.model.layers[0].input_layernorm.gamma;
            let g2 = gamma.val().grad(&grads).unwrap().unsqueeze::<2>();
            (out.v_pred.inner(), [w0, w1, g2])
        };
        let (packed, packed_grads) = run(&batch);
        let total: usize = batch.iter().map(|e| e.x0.dims()[0]).sum();
        let mut alone = Vec::new();
        let mut summed: Option<[Tensor<Flex, 2>; 2]> = None;
        let mut summed_gamma: Option<Tensor<Flex, 2>> = None;
        for e in &batch {
            let share = e.x0.dims()[0] as f32 / total as f32;
            let (v, [g0, g1, g2]) = run(std::slice::from_ref(e));
            alone.push(v);
            summed = Some(match summed {
                None => [g0 * share, g1 * share],
                Some([a, b]) => [a + g0 * share, b + g1 * share],
            });
            summed_gamma = Some(match summed_gamma {
                None => g2 * share,
                Some(a) => a + g2 * share,
            });
        }
        let diff = (packed - Tensor::cat(alone, 0)).abs().max().into_scalar();
        assert!(
            diff < 1e-4,
            "Autodiff<Flex>: packed against alone, max diff {diff}"
        );
        let [a, b] = summed.unwrap();
        let [p0, p1, p2] = packed_grads;
        for (name, x, y) in [("q_proj", p0, a), ("mlp_moe_gen.up_proj", p1, b)] {
            let d = (x - y).abs().max().into_scalar();
            assert!(d < 1e-5, "gradient of {name}: max diff {d}");
        }
        let d = (p2 - summed_gamma.unwrap()).abs().max().into_scalar();
        assert!(d < 1e-5, "gradient of input_layernorm: max diff {d}");
    }
}
