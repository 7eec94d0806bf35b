//! Argument parsing and dispatch; one module per subcommand.

mod bench;
mod data;
mod eval;
mod generate;
mod info;
mod judge_opts;
mod perception_opts;
mod synth;
mod train;

use clap::{Parser, Subcommand};

/// Echo-4o in Rust: evaluate image generators on GenEval++ and Imagine-Bench, read and write
/// Echo-4o-style data, and run the Echo-4o/BAGEL model without Python.
#[derive(Debug, Parser)]
#[command(name = "echo4o", version, about, long_about = None, propagate_version = true)]
pub struct Args {
    /// More diagnostics (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors: no progress bars, no info messages.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Score generated images on GenEval++ or Imagine-Bench with an OpenAI-compatible judge.
    Bench(bench::BenchArgs),
    /// Generate a benchmark's images with any generator (resumable, shardable over GPUs and
    /// hosts) and score them: one command from a model to a score.
    Eval(Box<eval::EvalArgs>),
    /// Inspect, sample, convert and unpack Echo-4o-Image, Bagel parquet and JSONL datasets.
    Data(data::DataArgs),
    /// Generate an image with a BAGEL / Echo-4o checkpoint (text-to-image or multi-reference).
    Generate(generate::GenerateArgs),
    /// Show the version and which compute backends this build includes.
    Info(info::InfoArgs),
    /// Make Echo-4o-style data: recipe prompts, any image generator, verify and rewrite,
    /// resumable jobs with provenance.
    Synth(Box<synth::SynthArgs>),
    /// Train or fine-tune a BAGEL-architecture model from a run file (resumes by itself).
    Train(train::TrainArgs),
}

/// A progress bar of `template` (hidden with `--quiet`); a bad template falls back to the plain
/// bar rather than failing a long run over its decoration.
pub(crate) fn styled_bar(quiet: bool, template: &str) -> indicatif::ProgressBar {
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(0)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Sets up `tracing` on stderr at the level the flags ask for.
pub fn init_tracing(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Runs the parsed command.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Bench(a) => bench::run(a, args.quiet),
        Command::Data(a) => data::run(a, args.quiet),
        Command::Eval(a) => eval::run(*a, args.quiet),
        Command::Generate(a) => generate::run(a, args.quiet),
        Command::Info(a) => info::run(a),
        Command::Synth(a) => synth::run(*a, args.quiet),
        Command::Train(a) => train::run(a, args.quiet),
    }
}
