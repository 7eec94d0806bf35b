//! `echo4o train`: run or resume a training run described by a JSON file.

use std::path::PathBuf;

use echo4o::experiment::{RunConfig, train};

/// Arguments of `echo4o train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The run file (JSON: out, model, data, train, device, checkpoint_every, sample_every,
    /// sample_prompts); see `configs/` for the shapes experiment's two runs.
    #[arg(long)]
    config: PathBuf,
    /// Override the number of steps (extends a finished run).
    #[arg(long)]
    steps: Option<usize>,
    /// Override the output folder.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs the training run; resumes when its output folder holds one.
pub fn run(args: TrainArgs, quiet: bool) -> anyhow::Result<()> {
    let mut config = RunConfig::from_file(&args.config)?;
    if let Some(steps) = args.steps {
        config.train.steps = steps;
    }
    if let Some(out) = args.out {
        config.out = out;
    }
    let outcome = train(&config, quiet)?;
    if !quiet {
        println!(
            "{} steps, mean loss of the last 100: {:.4}, {:.1} s this run; checkpoint in {}",
            outcome.steps,
            outcome.final_loss,
            outcome.seconds,
            config.out.display()
        );
    }
    Ok(())
}
