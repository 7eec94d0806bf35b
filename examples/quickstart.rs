//! The quickstart: the shipped Echo-style shapes model (trained by echo4o itself, see the README)
//! generates images for a slice of GenEval-shapes and of GenEval++-shapes, GenEval's rule engine
//! scores them with the shapes detector, and everything lands in `quickstart_out/`.
//!
//! ```sh
//! cargo run --release --example quickstart
//! ```
//!
//! No network, no GPU, no download: the checkpoint is in `checkpoints/shapes_echo/`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use echo4o::bench::geneval::{Metadata, shapes_metadata};
use echo4o::core::{Sample, SampleImage};
use echo4o::experiment::evaluate_shapes;
use echo4o::model::burn::tensor::backend::Backend;
use echo4o::model::pipeline::BagelPipeline;
use echo4o::model::{BackendTask, DeviceSpec};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
struct Args {
    /// The checkpoint folder.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/checkpoints/shapes_echo"))]
    model: PathBuf,
    /// Prompts per task of each benchmark (GenEval-shapes: 6 tasks of 50 prompts; GenEval++-shapes:
    /// 7 tags of 40).
    #[arg(long, default_value_t = 4)]
    per_tag: usize,
    /// Output folder.
    #[arg(long, default_value = "quickstart_out")]
    out: PathBuf,
    /// Device: cpu, ndarray, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

/// The first `per_tag` prompts of each tag of GenEval-shapes (`pp` false) or GenEval++-shapes.
fn slice(pp: bool, per_tag: usize) -> Vec<Metadata> {
    let mut seen: Vec<(String, usize)> = Vec::new();
    shapes_metadata(pp)
        .into_iter()
        .filter(|m| {
            match seen.iter_mut().find(|(t, _)| *t == m.tag) {
                Some((_, n)) if *n >= per_tag => return false,
                Some((_, n)) => *n += 1,
                None => seen.push((m.tag.clone(), 1)),
            }
            true
        })
        .collect()
}

struct Run(Args);

impl BackendTask for Run {
    type Output = anyhow::Result<()>;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let args = self.0;
        let started = Instant::now();
        let pipe = BagelPipeline::<B>::load(&args.model, &device)
            .with_context(|| format!("loading the checkpoint {}", args.model.display()))?;
        let sets = [
            (
                "GenEval-shapes",
                "geneval_shapes",
                slice(false, args.per_tag),
            ),
            (
                "GenEval++-shapes",
                "geneval_pp_shapes",
                slice(true, args.per_tag),
            ),
        ];
        let total: usize = sets.iter().map(|s| s.2.len()).sum();
        println!(
            "echo4o quickstart: {total} prompts ({} GenEval-shapes, {} GenEval++-shapes), model {} on {}",
            sets[0].2.len(),
            sets[1].2.len(),
            args.model.display(),
            args.device
        );
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} images, ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let mut tables = String::new();
        let mut samples = Vec::new();
        let mut done_before = 0;
        for (title, dir, prompts) in &sets {
            let out = args.out.join(dir);
            let images = out.join("images");
            let _ = std::fs::remove_dir_all(&images);
            let (_, scores) =
                evaluate_shapes(&pipe, prompts, 1, &images, &out, 64, &mut |done, _| {
                    bar.set_position((done_before + done) as u64)
                })?;
            done_before += prompts.len();
            tables.push_str(&format!("\n{title}\n{}", scores.table()));
            // The grid: every image with its prompt.
            for (i, m) in prompts.iter().enumerate() {
                let path = images.join(format!("{i:05}/samples/00000.png"));
                let img = echo4o::core::load_image(&path)?;
                samples.push(Sample::new(
                    format!("{dir}/{i}"),
                    m.prompt.clone(),
                    SampleImage::decoded(img, path.display().to_string()),
                ));
            }
        }
        bar.finish_and_clear();
        print!("{tables}");
        let grid: &Path = &args.out.join("grid.png");
        echo4o::core::save_image(
            &echo4o::data::contact_sheet::contact_sheet(&samples, 8),
            grid,
        )?;
        println!(
            "\nwrote {} (grid.png; per benchmark: report.md, report.html, results.jsonl, images/) in {:.1} s",
            args.out.display(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = args.device;
    device.run(Run(args))?
}
