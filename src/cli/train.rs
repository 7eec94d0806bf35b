//! `echo4o train`: run or resume a training run described by a JSON file.

use std::path::PathBuf;

use echo4o::experiment::{RunConfig, TrainEvent, train};
use indicatif::{ProgressBar, ProgressStyle};

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
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(config.train.steps as u64)
    };
    let outcome = train(&config, &mut |e| show(&bar, &config, quiet, e))?;
    bar.finish_and_clear();
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

/// Draws the run's events as a progress bar (loss, steps/s, ETA).
pub fn show(bar: &ProgressBar, config: &RunConfig, quiet: bool, event: &TrainEvent) {
    match event {
        TrainEvent::Start {
            step,
            total,
            resumed,
        } => {
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps, {msg}, {per_sec}, ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_length(*total as u64);
            bar.set_position(*step as u64);
            bar.reset_eta();
            if *resumed && !quiet {
                bar.suspend(|| eprintln!("resuming {} at step {step}", config.out.display()));
            }
        }
        TrainEvent::Step {
            step, mean_loss, ..
        } => {
            bar.set_message(format!("loss {mean_loss:.4}"));
            bar.set_position(*step as u64);
        }
        _ => {}
    }
}
