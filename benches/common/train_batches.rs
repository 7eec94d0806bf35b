//! The batches `cargo bench --bench train` trains on, shared with the `train_step_layout` example
//! so that the PyTorch baseline (`scripts/torch_cpu_baselines.py`) times the same sequences.

use echo4o::core::Sample;
use echo4o::data::shapes::source::{Mix, ShapesSource};

/// The shipped checkpoint the bench trains, relative to the workspace root.
pub const CHECKPOINT: &str = "checkpoints/shapes_echo";

/// Image side of the bench's samples, in pixels.
pub const SIDE: u32 = 64;

/// 8 batches of 16 samples of arm (b)'s mix (web-like + Echo-style), seed 1.
pub fn bench_batches() -> Vec<Vec<Sample>> {
    let source = ShapesSource::new(Mix::web_plus_echo(), SIDE, 1);
    (0..8u64)
        .map(|b| {
            (0..16u64)
                .filter_map(|i| source.sample(b * 16 + i))
                .collect()
        })
        .collect()
}
