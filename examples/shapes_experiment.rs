//! The Echo-4o experiment in miniature: the same tiny BAGEL-architecture model trained twice at
//! an equal step budget, (a) on web-like shapes data only, (b) on web-like plus Echo-style data,
//! then both scored on GenEval-shapes and GenEval++-shapes by the GenEval rule engine with the
//! shapes detector.
//!
//! ```sh
//! cargo run --release --example shapes_experiment            # trains (resumable), then scores
//! cargo run --release --example shapes_experiment -- --eval-only
//! ```
//!
//! Writes `runs/shapes_web/`, `runs/shapes_echo/` (checkpoints, logs, sample grids),
//! `runs/experiment/` (generated images, per-benchmark results and reports, `results.md`, and
//! `samples.png`: the same prompts from both models).

#[path = "common/progress.rs"]
mod progress;
use progress::progress;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use echo4o::bench::geneval::{GenEvalScores, shapes_metadata};
use echo4o::core::{Sample, SampleImage};
use echo4o::experiment::{RunConfig, evaluate_shapes, generate, train};
use echo4o::model::burn::tensor::backend::Backend;
use echo4o::model::pipeline::BagelPipeline;
use echo4o::model::{BackendTask, DeviceSpec};
use indicatif::ProgressBar;

#[derive(Parser)]
struct Args {
    /// Run files of arm (a) and arm (b) (or one run alone, to score one model).
    #[arg(long, num_args = 1..=2, default_values = ["configs/shapes_web.json", "configs/shapes_echo.json"])]
    runs: Vec<PathBuf>,
    /// Output folder of the comparison.
    #[arg(long, default_value = "runs/experiment")]
    out: PathBuf,
    /// Images per prompt (GenEval uses 4).
    #[arg(long, default_value_t = 1)]
    per_prompt: usize,
    /// Skip training; score the checkpoints as they are.
    #[arg(long)]
    eval_only: bool,
}

struct Eval {
    checkpoint: PathBuf,
    out: PathBuf,
    per_prompt: usize,
}

impl BackendTask for Eval {
    type Output = anyhow::Result<(
        GenEvalScores,
        GenEvalScores,
        Vec<echo4o::core::image::RgbImage>,
    )>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let pipe = BagelPipeline::<B>::load(&self.checkpoint, &device)
            .with_context(|| format!("loading {}", self.checkpoint.display()))?;
        let score = |name: &str, pp: bool| -> anyhow::Result<GenEvalScores> {
            let metadata = shapes_metadata(pp);
            let bar = ProgressBar::new(metadata.len() as u64);
            bar.set_message(name.to_string());
            let images = self.out.join(name).join("images");
            let _ = std::fs::remove_dir_all(&images);
            let s = evaluate_shapes(
                &pipe,
                &metadata,
                self.per_prompt,
                &images,
                &self.out.join(name),
                64,
                &mut |done, _| bar.set_position(done as u64),
            )?;
            bar.finish_and_clear();
            Ok(s)
        };
        let g = score("geneval_shapes", false)?;
        let pp = score("geneval_pp_shapes", true)?;
        let grid = SHOWCASE
            .iter()
            .enumerate()
            .map(|(i, p)| generate(&pipe, p, 100 + i as u64, 64))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((g, pp, grid))
    }
}

/// Prompts of the side-by-side grid: rare pairs (never in web-like data), counts, positions.
const SHOWCASE: [&str; 8] = [
    "a photo of a red circle",
    "a photo of a yellow star and a blue square",
    "a photo of three green triangles",
    "a photo of a white cross left of a purple diamond",
    "a photo of a red square",
    "a photo of two orange stars",
    "a photo of a black circle at the top and a pink triangle at the bottom",
    "a photo of a blue diamond",
];

fn table(rows: &[(&str, &GenEvalScores)]) -> String {
    let mut tasks: Vec<String> = Vec::new();
    for (_, s) in rows {
        for (t, _, _) in &s.tasks {
            if !tasks.contains(t) {
                tasks.push(t.clone());
            }
        }
    }
    let mut md = format!(
        "| model | {} | overall |\n|---|{}---|\n",
        tasks.join(" | "),
        "---|".repeat(tasks.len())
    );
    for (name, s) in rows {
        let cells: Vec<String> = tasks
            .iter()
            .map(|t| {
                s.tasks
                    .iter()
                    .find(|x| &x.0 == t)
                    .map_or("-".into(), |x| format!("{:.1}", x.2 * 100.0))
            })
            .collect();
        md.push_str(&format!(
            "| {name} | {} | **{:.1}** |\n",
            cells.join(" | "),
            s.overall * 100.0
        ));
    }
    md
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let configs = args
        .runs
        .iter()
        .map(|p| RunConfig::from_file(p))
        .collect::<Result<Vec<_>, _>>()?;
    if !args.eval_only {
        for c in &configs {
            eprintln!("training {} ({} steps)", c.out.display(), c.train.steps);
            let o = train(c, &mut progress(c.train.steps))?;
            eprintln!(
                "  {} steps, final loss {:.4}, {:.0} s",
                o.steps, o.final_loss, o.seconds
            );
        }
    }
    let names: &[&str] = if configs.len() == 1 {
        &["(b) web-like + Echo-style"]
    } else {
        &["(a) web-like only", "(b) web-like + Echo-style"]
    };
    let mut results = Vec::new();
    let mut grids = Vec::new();
    for (c, &name) in configs.iter().zip(names) {
        let out = args.out.join(c.out.file_name().unwrap_or_default());
        let device: DeviceSpec = c.device.parse()?;
        let (g, pp, grid) = device.run(Eval {
            checkpoint: c.out.clone(),
            out,
            per_prompt: args.per_prompt,
        })??;
        eprintln!(
            "{name}: GenEval-shapes {:.1}, GenEval++-shapes {:.1}",
            g.overall * 100.0,
            pp.overall * 100.0
        );
        results.push((name, g, pp));
        grids.push(grid);
    }
    let g_rows: Vec<(&str, &GenEvalScores)> = results.iter().map(|(n, g, _)| (*n, g)).collect();
    let pp_rows: Vec<(&str, &GenEvalScores)> = results.iter().map(|(n, _, p)| (*n, p)).collect();
    let md = format!(
        "## GenEval-shapes ({} prompts x {} image)\n\n{}\n## GenEval++-shapes ({} prompts x {} image)\n\n{}",
        shapes_metadata(false).len(),
        args.per_prompt,
        table(&g_rows),
        shapes_metadata(true).len(),
        args.per_prompt,
        table(&pp_rows)
    );
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("results.md"), &md)?;
    println!("{md}");
    // Side by side: row 1 model (a), row 2 model (b), one column per showcase prompt.
    let mut samples = Vec::new();
    for (grid, &name) in grids.iter().zip(names) {
        for (img, p) in grid.iter().zip(SHOWCASE) {
            samples.push(Sample::new(
                name,
                format!("{} | {p}", &name[..3]),
                SampleImage::decoded(img.clone(), "generated"),
            ));
        }
    }
    let sheet = echo4o::data::contact_sheet::contact_sheet(&samples, SHOWCASE.len() as u32);
    let path: &Path = &args.out.join("samples.png");
    echo4o::core::save_image(&sheet, path)?;
    println!(
        "wrote {} and {}",
        args.out.join("results.md").display(),
        path.display()
    );
    Ok(())
}
