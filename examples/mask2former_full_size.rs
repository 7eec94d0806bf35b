//! GenEval's detector at full size: mmdet's Swin-S Mask2Former shapes (random weights written by
//! mmdet itself), loaded strictly, run on one 1024x1024 image, compared with mmdet's outputs and
//! timed against `inference_detector`. `scripts/mask2former_full_size.sh` makes the reference and
//! runs this.
//!
//! ```sh
//! bash scripts/mask2former_full_size.sh
//! # or, with a reference folder made earlier:
//! cargo run --release --example mask2former_full_size -- --dir /tmp/mask2former_full_size
//! ```

use std::path::PathBuf;
use std::time::Instant;

#[path = "common/memory.rs"]
mod memory;
use memory::print_peak_against;
#[path = "common/reference.rs"]
mod reference;
use reference::{max_diff, reference};

use anyhow::Context;
use clap::Parser;
use echo4o::model::burn::tensor::backend::Backend;
use echo4o::model::{BackendTask, DeviceSpec};
use echo4o::perception::mask2former::preprocess::preprocess;
use echo4o::perception::mask2former::{Mask2FormerConfig, Mask2FormerDetector};

#[derive(Parser)]
struct Args {
    /// Folder with `model.pth`, `image.png`, `reference.safetensors` and `reference.json`.
    #[arg(long)]
    dir: PathBuf,
    /// Device: cpu, ndarray, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

struct Run(Args);

impl BackendTask for Run {
    type Output = anyhow::Result<()>;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let args = self.0;
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(args.dir.join("reference.json"))?)?;
        let image = echo4o::core::load_image(&args.dir.join("image.png"))?;

        let t = Instant::now();
        let detector = Mask2FormerDetector::<B>::load(
            Mask2FormerConfig::swin_s_coco(),
            &args.dir.join("model.pth"),
            device.clone(),
        )?;
        println!(
            "loaded Swin-S Mask2Former (strict) in {:.1} s",
            t.elapsed().as_secs_f64()
        );

        // Every stage against mmdet's, on the same preprocessed input.
        let bytes = std::fs::read(args.dir.join("reference.safetensors"))?;
        let (input, _) = preprocess::<B>(&image, &device);
        let (feats, out) = detector.with_model(|m| {
            let feats = m.backbone.forward(input);
            let out = m.panoptic_head.forward(&feats);
            (feats, out)
        })?;
        let values = |t: echo4o::model::burn::tensor::TensorData| -> anyhow::Result<Vec<f32>> {
            t.convert::<f32>()
                .into_vec()
                .map_err(|e| anyhow::anyhow!("{e:?}"))
        };
        for (i, f) in feats.into_iter().enumerate() {
            let want = reference(&bytes, &format!("backbone.{i}"))?;
            let got = values(f.into_data())?;
            println!(
                "backbone.{i}: max |diff| {:.2e} (largest |value| {:.1})",
                max_diff(&got, &want),
                want.iter().fold(0f32, |m, v| m.max(v.abs()))
            );
        }
        let cls = values(
            out.class_logits
                .last()
                .context("no prediction")?
                .clone()
                .into_data(),
        )?;
        let masks = values(
            out.mask_logits
                .last()
                .context("no prediction")?
                .clone()
                .into_data(),
        )?;
        println!(
            "last layer: class logits max |diff| {:.2e}, mask logits max |diff| {:.2e}",
            max_diff(&cls, &reference(&bytes, "class_logits")?),
            max_diff(&masks, &reference(&bytes, "mask_logits")?)
        );

        // Whole detections, timed as mmdet's inference_detector: median of 3 after a warm-up.
        let mut instances = detector.instances(&image)?;
        let mut runs = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            instances = detector.instances(&image)?;
            runs.push(t.elapsed().as_secs_f64());
        }
        runs.sort_by(f64::total_cmp);
        let ours = runs[1];
        let want = meta["detections"].as_array().context("detections")?;
        let mut matched = 0;
        let mut used = vec![false; instances.len()];
        for w in want {
            let label = w["label"].as_u64().context("label")? as usize;
            let score = w["score"].as_f64().context("score")? as f32;
            let area = w["area"].as_u64().context("area")? as usize;
            let bbox: Vec<f32> = w["bbox"]
                .as_array()
                .context("bbox")?
                .iter()
                .filter_map(|v| v.as_f64().map(|v| v as f32))
                .collect();
            let best = instances
                .iter()
                .enumerate()
                .filter(|(i, g)| {
                    !used[*i]
                        && g.label == label
                        && (g.score - score).abs() <= 1e-4
                        && g.bbox.iter().zip(&bbox).all(|(a, b)| (a - b).abs() <= 0.5)
                        && g.mask.iter().filter(|&&on| on).count().abs_diff(area) <= area / 1000
                })
                .min_by(|(_, a), (_, b)| {
                    (a.score - score).abs().total_cmp(&(b.score - score).abs())
                })
                .map(|(i, _)| i);
            if let Some(i) = best {
                used[i] = true;
                matched += 1;
            }
        }
        println!(
            "detections: {matched} of mmdet's {} matched (class, score within 1e-4, box within 0.5 px, mask area within 0.1%); {} above GenEval's 0.3",
            want.len(),
            instances.iter().filter(|d| d.score > 0.3).count()
        );
        let theirs = meta["seconds"].as_f64().context("seconds")?;
        println!(
            "| work | echo4o | mmdet (torch {}) | ratio |",
            meta["torch"]
        );
        println!("|---|---:|---:|---:|");
        println!(
            "| Mask2Former Swin-S, one 1024x1024 image (resize to 800x800, detections at 1024) | {ours:.2} s | {theirs:.2} s | {:.2}x |",
            theirs / ours
        );
        print_peak_against("mmdet's process", meta["peak_rss_gib"].as_f64());
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = args.device;
    device.run(Run(args))?
}
