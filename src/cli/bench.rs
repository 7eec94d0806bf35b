//! `echo4o bench`: score a folder of images on GenEval++ or Imagine-Bench with an
//! OpenAI-compatible judge.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use echo4o::bench::geneval::shapes::score_folder_with;
use echo4o::bench::geneval::{EngineConfig, evaluate_folder_with_progress};
use echo4o::bench::geneval_pp::{self, GenEvalPp};
use echo4o::bench::imagine::{self, ImagineBench, Scoring};
use echo4o::bench::runner::{self, JudgedBenchmark, Progress, RunOptions};
use echo4o::model::DeviceSpec;
use indicatif::ProgressBar;

use super::judge_opts::JudgeOptions;
use super::perception_opts::PerceptionOptions;

/// Arguments of `echo4o bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    benchmark: Benchmark,
}

#[derive(Debug, clap::Subcommand)]
enum Benchmark {
    /// GenEval++: 280 prompts, 7 tags, pass/fail per image (images named `{line}.jpg`).
    #[command(name = "geneval-pp")]
    GenEvalPp(JudgeArgs),
    /// Imagine-Bench: 270 fantasy prompts, 0-10 scores (images named `{id}.png|jpg|jpeg|webp`).
    Imagine {
        #[command(flatten)]
        common: JudgeArgs,
        /// Reproduce the shipped script exactly: its `TWO_OBJECT` weights key drops Multi-Object
        /// from the overall.
        #[arg(long, conflicts_with = "formula")]
        strict_official: bool,
        /// Per-image formula: `official` (min(FF,IP)*0.8+AQ*0.2, weights 3/2/2/2) or `ulmevalkit`
        /// (0.6/0.3/0.1, plain mean).
        #[arg(long, value_enum, default_value_t = Formula::Official)]
        formula: Formula,
    },
    /// GenEval's rule engine over a folder in GenEval's layout (`NNNNN/metadata.jsonl`,
    /// `NNNNN/samples/NNNN.png`), with a local detector: no judge, no network.
    #[command(name = "geneval")]
    GenEval {
        /// The image folder, in GenEval's layout.
        #[arg(long)]
        images: PathBuf,
        /// Output folder: results.jsonl (the official script's lines), summary.json, report.md.
        #[arg(long)]
        out: PathBuf,
        /// The detector behind the rules: `mask2former`, GenEval's own (mmdet's Swin-S
        /// Mask2Former; needs --detector-weights and --clip-weights), or `shapes`, the shapes
        /// world's.
        #[arg(long, value_enum, default_value_t = DetectorKind::Shapes)]
        detector: DetectorKind,
        #[command(flatten)]
        models: PerceptionOptions,
        /// Where the models run: cpu, ndarray, cuda-f32:N (GenEval's f32), cuda:N (bf16).
        #[arg(long, default_value = "cpu")]
        device: DeviceSpec,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DetectorKind {
    /// The shapes world's detector (colours from the pixels unless --clip-weights).
    Shapes,
    /// GenEval's Mask2Former (Swin-S, COCO's 80 classes) with CLIP colours.
    Mask2former,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Formula {
    Official,
    Ulmevalkit,
}

#[derive(Debug, clap::Args)]
struct JudgeArgs {
    /// Folder of generated images, named as the benchmark's official layout requires.
    #[arg(long)]
    images: PathBuf,
    /// Output folder: results.jsonl (resumable), the official outputs, summary.json, report.md,
    /// report.html.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    judge: JudgeOptions,
    /// A prompt file in the benchmark's JSONL format instead of the bundled official one.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Write the exact requests to OUT/requests.jsonl and send nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(super) struct Bar(ProgressBar, String);

impl Progress for Bar {
    fn start(&self, total: usize, done: usize) {
        self.0.set_length(total as u64);
        self.0.set_position(done as u64);
        self.0.reset_eta();
        if done > 0 {
            self.0.println(format!(
                "resuming: {done} of {total} items already {}",
                self.1
            ));
        }
    }
    fn item(&self, _key: &str, failed: bool) {
        if failed {
            let n: u64 = self.0.message().parse().unwrap_or(0) + 1;
            self.0.set_message(n.to_string());
        }
        self.0.inc(1);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// A bar counting items `verb` ("judged", "scored") and the failed ones.
pub(super) fn progress_bar(quiet: bool, verb: &str) -> Bar {
    let bar = super::styled_bar(
        quiet,
        &format!(
            "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {verb}, {{msg}} failed, {{per_sec}}, ETA {{eta}}"
        ),
    );
    bar.set_message("0");
    Bar(bar, verb.to_string())
}

pub fn run(args: BenchArgs, quiet: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match args.benchmark {
        Benchmark::GenEvalPp(common) => {
            let bench = match &common.prompts {
                Some(p) => GenEvalPp::with_items(geneval_pp::parse_items(
                    &read(p)?,
                    &p.display().to_string(),
                )?),
                None => GenEvalPp::official(),
            };
            runtime.block_on(execute(&bench, &common, geneval_pp::DEFAULT_MODEL, quiet))
        }
        Benchmark::Imagine {
            common,
            strict_official,
            formula,
        } => {
            let scoring = match (strict_official, formula) {
                (true, _) => Scoring::StrictOfficial,
                (false, Formula::Official) => Scoring::Official,
                (false, Formula::Ulmevalkit) => Scoring::UlmEvalKit,
            };
            let items = match &common.prompts {
                Some(p) => imagine::parse_items(&read(p)?, &p.display().to_string())?,
                None => imagine::official_items(),
            };
            let bench = ImagineBench::with_items(items).with_scoring(scoring);
            runtime.block_on(execute(&bench, &common, imagine::DEFAULT_MODEL, quiet))
        }
        Benchmark::GenEval {
            images,
            out,
            detector,
            models,
            device,
        } => geneval(&images, &out, detector, &models, device, quiet),
    }
}

fn geneval(
    images: &Path,
    out: &Path,
    detector: DetectorKind,
    models: &PerceptionOptions,
    device: DeviceSpec,
    quiet: bool,
) -> anyhow::Result<()> {
    if !images.is_dir() {
        bail!("--images {}: not a folder", images.display());
    }
    let scores = match detector {
        DetectorKind::Shapes => {
            if models.detector_weights.is_some() {
                bail!("--detector-weights is for --detector mask2former");
            }
            match models.load(device)?.classifier {
                None => echo4o::bench::geneval::shapes::score_folder(images, out)?.1,
                Some(classifier) => {
                    score_folder_with("geneval", images, out, classifier.as_ref())?.1
                }
            }
        }
        DetectorKind::Mask2former => {
            if models.detector_weights.is_none() {
                bail!("--detector mask2former needs --detector-weights");
            }
            let Some(p) = models.perception(device)? else {
                bail!("--detector mask2former needs --detector-weights and --clip-weights");
            };
            evaluate_folder_with_progress(
                "geneval",
                images,
                out,
                p.detector.as_ref(),
                p.classifier.as_ref(),
                &EngineConfig::default(),
                &progress_bar(quiet, "scored"),
            )?
            .1
        }
    };
    if !quiet {
        print!("{}", scores.table());
        println!(
            "\nwrote {} (results.jsonl, summary.json, report.md, report.html)",
            out.display()
        );
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

async fn execute<B: JudgedBenchmark>(
    bench: &B,
    args: &JudgeArgs,
    default_model: &str,
    quiet: bool,
) -> anyhow::Result<()> {
    if !args.images.is_dir() {
        bail!("--images {}: not a folder", args.images.display());
    }
    let config = args.judge.config(default_model);
    if args.dry_run {
        let n = runner::dry_run(bench, &config, &args.images, &args.out).await?;
        println!(
            "dry run: {n} requests of {} items written to {}",
            bench.items().len(),
            args.out.join("requests.jsonl").display()
        );
        return Ok(());
    }
    let judge = args.judge.judge(default_model)?;
    let mut opts = RunOptions::new(&args.images, &args.out);
    opts.concurrency = args.judge.concurrency as usize;
    let bar = progress_bar(quiet, "judged");
    let outcome = runner::run(bench, &judge, &opts, &bar).await?;
    let s = &outcome.summary;
    if !quiet {
        print!("{}", s.to_markdown());
        println!(
            "\nwrote {} (summary.json, report.md, report.html)",
            args.out.display()
        );
    }
    Ok(())
}
