//! The Echo-4o experiment in miniature: the same tiny BAGEL-architecture model trained at an
//! equal step budget, (a) on web-like shapes data only, (b) on web-like plus Echo-style data,
//! each with two training seeds; every checkpoint scored on GenEval-shapes and GenEval++-shapes
//! (4 images per prompt, GenEval's rule engine with the shapes detector); each arm reported per
//! task and overall with 95% bootstrap intervals over prompts (seeds pooled), for all prompts and
//! for the prompts that use the 12 shape-color pairs web-like data never shows.
//!
//! ```sh
//! cargo run --release --example shapes_experiment            # trains (resumable), then scores
//! cargo run --release --example shapes_experiment -- --eval-only
//! # one arm alone (here: the shipped model's run)
//! cargo run --release --example shapes_experiment -- --eval-only --web --echo configs/shapes_echo.json
//! ```
//!
//! Writes each run's folder (checkpoint, log, sample grids) and under `--out`: each run's
//! generated images and per-benchmark results and reports (reused while the checkpoint is
//! unchanged), `results.md` (the tables), `intervals.json`, and `samples.png` (the same prompts
//! and seeds from the first run of each arm).

#[path = "common/progress.rs"]
mod progress;
use progress::progress;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use echo4o::bench::geneval::bootstrap::{Estimate, Intervals, bootstrap};
use echo4o::bench::geneval::{ImageResult, Metadata, shapes_metadata};
use echo4o::core::{Sample, SampleImage};
use echo4o::data::shapes::captions::is_rare;
use echo4o::data::shapes::{Color, Shape};
use echo4o::experiment::{RunConfig, evaluate_shapes, generate, train};
use echo4o::model::burn::tensor::backend::Backend;
use echo4o::model::pipeline::BagelPipeline;
use echo4o::model::{BackendTask, DeviceSpec};
use indicatif::ProgressBar;

#[derive(Parser)]
struct Args {
    /// Run files of arm (a), web-like only: one per training seed (none: skip the arm).
    #[arg(long, num_args = 0.., default_values = ["configs/shapes_web.json", "configs/shapes_web_seed2.json"])]
    web: Vec<PathBuf>,
    /// Run files of arm (b), web-like + Echo-style: one per training seed.
    #[arg(long, num_args = 0.., default_values = ["configs/shapes_echo.json", "configs/shapes_echo_seed2.json"])]
    echo: Vec<PathBuf>,
    /// Output folder of the comparison.
    #[arg(long, default_value = "runs/experiment")]
    out: PathBuf,
    /// Images per prompt (GenEval uses 4).
    #[arg(long, default_value_t = 4)]
    per_prompt: usize,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 10_000)]
    resamples: usize,
    /// Skip training; score the checkpoints as they are.
    #[arg(long)]
    eval_only: bool,
}

/// The two benchmarks: (name, GenEval++?).
const BENCHES: [(&str, bool); 2] = [("geneval_shapes", false), ("geneval_pp_shapes", true)];

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

/// Removes a file or folder; one that is not there is not an error, any other failure is.
fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// What marks a run's scored images as current: the checkpoint's weights file (length and
/// modification time) and the images per prompt.
fn stamp(checkpoint: &Path, per_prompt: usize) -> anyhow::Result<String> {
    let meta = std::fs::metadata(checkpoint.join("ema.safetensors"))
        .with_context(|| format!("{} has no ema.safetensors", checkpoint.display()))?;
    let modified = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    Ok(format!("{} {modified} {per_prompt}", meta.len()))
}

struct Eval {
    checkpoint: PathBuf,
    out: PathBuf,
    per_prompt: usize,
}

/// Per benchmark, every image's verdict; and the showcase grid.
type Scored = (Vec<Vec<ImageResult>>, Vec<echo4o::core::image::RgbImage>);

impl BackendTask for Eval {
    type Output = anyhow::Result<Scored>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let pipe = BagelPipeline::<B>::load(&self.checkpoint, &device)
            .with_context(|| format!("loading {}", self.checkpoint.display()))?;
        let stamp_path = self.out.join("stamp.txt");
        let current = stamp(&self.checkpoint, self.per_prompt)?;
        let fresh = std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(&current);
        if !fresh {
            // Gone before anything is regenerated: an interrupted run must not leave half a
            // folder marked current.
            remove_if_present(&stamp_path)?;
        }
        let mut results = Vec::new();
        for (name, pp) in BENCHES {
            let images = self.out.join(name).join("images");
            if fresh {
                // The images of this checkpoint are there: score them again, do not regenerate.
                let (r, _) =
                    echo4o::bench::geneval::shapes::score_folder(&images, &self.out.join(name))?;
                results.push(r);
                continue;
            }
            let metadata = shapes_metadata(pp);
            let bar = ProgressBar::new(metadata.len() as u64);
            bar.set_message(format!("{} {name}", self.checkpoint.display()));
            remove_if_present(&images)?;
            let (r, _) = evaluate_shapes(
                &pipe,
                &metadata,
                self.per_prompt,
                &images,
                &self.out.join(name),
                64,
                &mut |done, _| bar.set_position(done as u64),
            )?;
            bar.finish_and_clear();
            results.push(r);
        }
        std::fs::write(&stamp_path, current)?;
        let grid = SHOWCASE
            .iter()
            .enumerate()
            .map(|(i, p)| generate(&pipe, p, 100 + i as u64, 64))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((results, grid))
    }
}

/// Whether an image's prompt asks for one of the held-out shape-color pairs.
fn uses_held_out_pair(r: &ImageResult) -> anyhow::Result<bool> {
    let m = Metadata::from_json(&r.metadata, &r.filename, 1)?;
    Ok(m.include.iter().any(|inc| {
        match (
            Shape::from_name(&inc.class),
            inc.color.as_deref().and_then(Color::from_name),
        ) {
            (Some(s), Some(c)) => is_rare(s, c),
            _ => false,
        }
    }))
}

fn cell(e: &Estimate) -> String {
    format!(
        "{:.1} [{:.1}, {:.1}]",
        e.score * 100.0,
        e.low * 100.0,
        e.high * 100.0
    )
}

/// One markdown table: a row per arm, a column per task, then overall.
fn table(rows: &[(&str, &Intervals)]) -> String {
    let mut tasks: Vec<String> = Vec::new();
    for (_, ci) in rows {
        for (t, ..) in &ci.tasks {
            if !tasks.contains(t) {
                tasks.push(t.clone());
            }
        }
    }
    let mut md = format!(
        "| arm | {} | overall |\n|---|{}---|\n",
        tasks.join(" | "),
        "---|".repeat(tasks.len())
    );
    for (name, ci) in rows {
        let cells: Vec<String> = tasks
            .iter()
            .map(|t| {
                ci.tasks
                    .iter()
                    .find(|x| &x.0 == t)
                    .map_or("-".into(), |(_, prompts, _, e)| {
                        format!("{} ({prompts})", cell(e))
                    })
            })
            .collect();
        md.push_str(&format!(
            "| {name} | {} | **{}** |\n",
            cells.join(" | "),
            cell(&ci.overall)
        ));
    }
    md
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let arms: Vec<(&str, Vec<RunConfig>)> = [
        ("(a) web-like only", &args.web),
        ("(b) web-like + Echo-style", &args.echo),
    ]
    .into_iter()
    .filter(|(_, files)| !files.is_empty())
    .map(|(name, files)| {
        let runs = files
            .iter()
            .map(|p| RunConfig::from_file(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((name, runs))
    })
    .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(!arms.is_empty(), "no run files: give --web and/or --echo");
    if !args.eval_only {
        for c in arms.iter().flat_map(|(_, runs)| runs) {
            eprintln!("training {} ({} steps)", c.out.display(), c.train.steps);
            let o = train(c, &mut progress(c.train.steps))?;
            eprintln!(
                "  {} steps, final loss {:.4}, {:.0} s",
                o.steps, o.final_loss, o.seconds
            );
        }
    }
    // Per arm and benchmark: all results pooled over seeds.
    let mut pooled: Vec<(&str, Vec<Vec<ImageResult>>)> = Vec::new();
    let mut grids = Vec::new();
    for (name, runs) in &arms {
        let mut per_bench = vec![Vec::new(); BENCHES.len()];
        for (i, c) in runs.iter().enumerate() {
            // Each run's scores in a folder named as its run folder.
            let folder = c.out.file_name().with_context(|| {
                format!(
                    "run folder {} has no name to file its scores under",
                    c.out.display()
                )
            })?;
            let out = args.out.join(folder);
            let device: DeviceSpec = c.device.parse()?;
            let (results, grid) = device.run(Eval {
                checkpoint: c.out.clone(),
                out,
                per_prompt: args.per_prompt,
            })??;
            for (all, r) in per_bench.iter_mut().zip(results) {
                all.extend(r);
            }
            if i == 0 {
                grids.push((*name, grid));
            }
        }
        pooled.push((name, per_bench));
    }
    let mut md = String::new();
    let mut json = serde_json::Map::new();
    for (b, (bench, pp)) in BENCHES.iter().enumerate() {
        let prompts = shapes_metadata(*pp).len();
        for held_out in [false, true] {
            let mut rows = Vec::new();
            for (name, per_bench) in &pooled {
                let mut results = Vec::new();
                for r in &per_bench[b] {
                    if !held_out || uses_held_out_pair(r)? {
                        results.push(r.clone());
                    }
                }
                if let Some(ci) = bootstrap(&results, args.resamples, 0) {
                    rows.push((*name, ci));
                }
            }
            let title = if held_out {
                format!("{bench}, prompts with a held-out shape-color pair")
            } else {
                format!("{bench} ({prompts} prompts x {} images)", args.per_prompt)
            };
            let table_rows: Vec<(&str, &Intervals)> = rows.iter().map(|(n, c)| (*n, c)).collect();
            md.push_str(&format!("## {title}\n\n{}\n", table(&table_rows)));
            let key = if held_out {
                format!("{bench}_held_out")
            } else {
                bench.to_string()
            };
            json.insert(
                key,
                serde_json::to_value(
                    rows.iter()
                        .map(|(n, c)| (n.to_string(), c.clone()))
                        .collect::<std::collections::BTreeMap<_, _>>(),
                )?,
            );
        }
    }
    let seeds: Vec<String> = arms
        .iter()
        .map(|(name, runs)| format!("{name}: {} run(s)", runs.len()))
        .collect();
    md.insert_str(
        0,
        &format!(
            "Score in percent [95% bootstrap interval over prompts, {} resamples; seeds pooled: \
             {}]; (n) prompts per task.\n\n",
            args.resamples,
            seeds.join(", ")
        ),
    );
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("results.md"), &md)?;
    std::fs::write(
        args.out.join("intervals.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    println!("{md}");
    // Side by side: a row per arm, one column per showcase prompt.
    let mut samples = Vec::new();
    for (name, grid) in &grids {
        for (img, p) in grid.iter().zip(SHOWCASE) {
            samples.push(Sample::new(
                *name,
                format!("{} | {p}", &name[..3]),
                SampleImage::decoded(img.clone(), "generated"),
            ));
        }
    }
    let sheet = echo4o::data::contact_sheet::contact_sheet(&samples, SHOWCASE.len() as u32);
    let path: &Path = &args.out.join("samples.png");
    echo4o::core::save_image(&sheet, path)?;
    println!(
        "wrote {}, {} and {}",
        args.out.join("results.md").display(),
        args.out.join("intervals.json").display(),
        path.display()
    );
    Ok(())
}
