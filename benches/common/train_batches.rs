//! The batches `cargo bench --bench train` trains on, shared with the `train_step_layout` example
//! so that the PyTorch baseline (`scripts/torch_cpu_baselines.py`) times the same sequences.

use std::path::Path;

use echo4o::core::Sample;
use echo4o::data::shapes::source::{Mix, ShapesSource};
use echo4o::experiment::{DataConfig, RunConfig};

/// The shipped checkpoint the bench trains, relative to the workspace root.
pub const CHECKPOINT: &str = "checkpoints/shapes_echo";

/// The image side and 8 batches of 16 samples of the data the shipped checkpoint was trained on
/// (read from its `run.json`, so the bench follows whatever model is shipped).
pub fn bench_batches() -> anyhow::Result<(u32, Vec<Vec<Sample>>)> {
    let run = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(CHECKPOINT)
        .join("run.json");
    let DataConfig::Shapes {
        mix,
        size,
        seed,
        layout,
    } = RunConfig::from_file(&run)?.data
    else {
        anyhow::bail!(
            "{}: the shipped run is not trained on the shapes world",
            run.display()
        );
    };
    let source = ShapesSource::new(Mix(mix), size, seed).with_layout(layout);
    let batches = (0..8u64)
        .map(|b| {
            (0..16u64)
                .filter_map(|i| source.sample(b * 16 + i))
                .collect()
        })
        .collect();
    Ok((size, batches))
}
