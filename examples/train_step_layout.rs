//! Prints the packed layout of the batches `cargo bench --bench train` trains on (per example:
//! prompt tokens, reference images, latent tokens per image), as JSON, so that
//! `scripts/torch_cpu_baselines.py` can time the same step in PyTorch on the same sequence
//! lengths.
//!
//! ```sh
//! cargo run --release --example train_step_layout > /tmp/layout.json
//! ```

use std::path::Path;

use echo4o::data::shapes::source::{Mix, ShapesSource};
use echo4o::model::tokenizer::BagelTokenizer;
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/shapes_echo");
    let tokenizer = BagelTokenizer::from_file(&dir.join("tokenizer.json"))?;
    // The bench's batches: 8 batches of 16 from arm (b)'s mix at 64x64, seed 1.
    let source = ShapesSource::new(Mix::web_plus_echo(), 64, 1);
    let mut batches = Vec::new();
    for b in 0..8u64 {
        let mut examples = Vec::new();
        for sample in (0..16u64).filter_map(|i| source.sample(b * 16 + i)) {
            examples.push(json!({
                "text": tokenizer.prompt(&sample.instruction)?.len(),
                "refs": sample.references.len(),
            }));
        }
        batches.push(examples);
    }
    // 64x64 images through the shipped pixel codec: 8x8 tokens of 192 channels.
    let layout = json!({"latent_tokens": 64, "latent_dim": 192, "batches": batches});
    println!("{}", serde_json::to_string_pretty(&layout)?);
    Ok(())
}
