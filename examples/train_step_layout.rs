//! Prints the packed layout of the batches `cargo bench --bench train` trains on (per example:
//! prompt tokens, reference images; latent tokens per image and their channels, from the
//! checkpoint), as JSON, so that `scripts/torch_cpu_baselines.py` can time the same step in
//! PyTorch on the same sequence lengths.
//!
//! ```sh
//! cargo run --release --example train_step_layout > /tmp/layout.json
//! ```

#[path = "../benches/common/train_batches.rs"]
mod train_batches;

use std::path::Path;

use echo4o::model::pipeline::BagelPipeline;
use serde_json::json;
use train_batches::{CHECKPOINT, bench_batches};

fn main() -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(CHECKPOINT);
    let pipe = BagelPipeline::<burn_flex::Flex>::load(&dir, &Default::default())?;
    let (side, bench) = bench_batches()?;
    let mut batches = Vec::new();
    for batch in bench {
        let mut examples = Vec::new();
        for sample in batch {
            examples.push(json!({
                "text": pipe.tokenizer.prompt(&sample.instruction)?.len(),
                "refs": sample.references.len(),
            }));
        }
        batches.push(examples);
    }
    let (lh, lw) = pipe.config.check_image_size(side, side)?;
    let layout = json!({
        "latent_tokens": lh * lw,
        "latent_dim": pipe.config.patch_latent_dim(),
        "batches": batches,
    });
    println!("{}", serde_json::to_string_pretty(&layout)?);
    Ok(())
}
