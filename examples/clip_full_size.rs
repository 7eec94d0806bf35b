//! GenEval's colour classifier at full size: open_clip's ViT-L/14 shapes (random weights written
//! by the official code), loaded strictly, run on the test crops, compared with open_clip's
//! outputs and timed against them. `scripts/clip_full_size.sh` makes the reference and runs this.
//!
//! ```sh
//! bash scripts/clip_full_size.sh
//! # or, with a reference folder made earlier:
//! cargo run --release --example clip_full_size -- --dir /tmp/clip_full_size \
//!     --crops echo4o-perception/tests/data/clip_tiny/crops
//! ```

use std::path::PathBuf;
use std::time::Instant;

#[path = "common/memory.rs"]
mod memory;
use memory::status_gib;
#[path = "common/reference.rs"]
mod reference;
use reference::{max_diff, reference};

use anyhow::Context;
use clap::Parser;
use echo4o::model::burn::tensor::Tensor;
use echo4o::model::burn::tensor::backend::Backend;
use echo4o::model::{BackendTask, DeviceSpec};
use echo4o::perception::clip::{ClipColorClassifier, ClipConfig};

#[derive(Parser)]
struct Args {
    /// Folder with `model.safetensors`, `reference.safetensors` and `reference.json`.
    #[arg(long)]
    dir: PathBuf,
    /// The crops the reference was made from (PNG).
    #[arg(long)]
    crops: PathBuf,
    /// Device: cpu, ndarray, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

/// The median of 3 timed runs after a warm-up, as the Python side times.
fn timed<T>(mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<(T, f64)> {
    f()?;
    let mut runs = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let t = Instant::now();
        last = Some(f()?);
        runs.push(t.elapsed().as_secs_f64());
    }
    runs.sort_by(f64::total_cmp);
    Ok((last.context("no run")?, runs[1]))
}

fn values<B: Backend>(t: Tensor<B, 2>) -> anyhow::Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .into_vec()
        .map_err(|e| anyhow::anyhow!("{e:?}"))
}

struct Run(Args);

impl BackendTask for Run {
    type Output = anyhow::Result<()>;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let args = self.0;
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(args.dir.join("reference.json"))?)?;
        let class = meta["class"].as_str().context("reference.json: class")?;
        let names: Vec<String> = meta["crops"]
            .as_array()
            .context("reference.json: crops")?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let crops = names
            .iter()
            .map(|n| {
                let path = args.crops.join(n);
                echo4o::core::load_image(&path)
            })
            .collect::<Result<Vec<_>, _>>()?;

        let t = Instant::now();
        let clf = ClipColorClassifier::<B>::load(
            ClipConfig::vit_l_14_openai(),
            &args.dir.join("model.safetensors"),
            device,
        )?;
        println!(
            "loaded ViT-L/14 (strict) in {:.1} s",
            t.elapsed().as_secs_f64()
        );

        let (classifier, classifier_s) = timed(|| values(clf.build_classifier(class)?))?;
        let (features, image_s) = timed(|| values(clf.image_features(&crops)?))?;
        let logits = values(clf.logits(&crops, class)?)?;
        let colors = clf.predict(&crops, class)?;

        let bytes = std::fs::read(args.dir.join("reference.safetensors"))?;
        let want_features = reference(&bytes, "image_features")?;
        let want_classifier = reference(&bytes, "classifier")?;
        let want_logits = reference(&bytes, "logits")?;
        let want_colors: Vec<&str> = meta["colors"]
            .as_array()
            .context("reference.json: colors")?
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        println!(
            "max |diff| vs open_clip: image features {:.2e} (largest |value| {:.2}), classifier {:.2e}, logits {:.2e}",
            max_diff(&features, &want_features),
            want_features.iter().fold(0f32, |m, v| m.max(v.abs())),
            max_diff(&classifier, &want_classifier),
            max_diff(&logits, &want_logits),
        );
        println!(
            "colours: {} of {} as open_clip's",
            colors
                .iter()
                .zip(&want_colors)
                .filter(|(a, b)| a == b)
                .count(),
            want_colors.len()
        );
        let py_image = meta["image_seconds"].as_f64().context("image_seconds")?;
        let py_text = meta["classifier_seconds"]
            .as_f64()
            .context("classifier_seconds")?;
        println!(
            "| work | echo4o | open_clip (torch {}) | ratio |",
            meta["torch"]
        );
        println!("|---|---:|---:|---:|");
        println!(
            "| image features, {} crops, one batch | {image_s:.3} s | {py_image:.3} s | {:.2}x |",
            crops.len(),
            py_image / image_s
        );
        println!(
            "| zero-shot classifier (30 prompts) | {classifier_s:.3} s | {py_text:.3} s | {:.2}x |",
            py_text / classifier_s
        );
        if let Some(gib) = status_gib("VmHWM:") {
            println!("peak resident memory: {gib:.2} GiB");
        }
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = args.device;
    device.run(Run(args))?
}
