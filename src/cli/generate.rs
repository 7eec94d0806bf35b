//! `echo4o generate`: text-to-image and multi-reference generation with a BAGEL / Echo-4o
//! checkpoint folder.

use std::path::PathBuf;

use anyhow::{Context, bail};
use echo4o::core::{check_image_output, load_image, save_image};
use echo4o::model::burn::tensor::backend::Backend;
use echo4o::model::pipeline::{BagelPipeline, PipelineRequest};
use echo4o::model::sampling::SamplerConfig;
use echo4o::model::{BackendTask, DeviceSpec};
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `echo4o generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Checkpoint folder: llm_config.json, vit_config.json, ema.safetensors, ae.safetensors,
    /// tokenizer.json (the official BAGEL-7B-MoT / Echo-4o layout).
    #[arg(long)]
    model: PathBuf,
    /// The prompt or instruction.
    #[arg(long)]
    prompt: String,
    /// Reference images for multi-reference composition (repeat for several, in order).
    #[arg(long = "ref", value_name = "IMAGE")]
    references: Vec<PathBuf>,
    /// Output size WxH in pixels, multiples of 16 [default: 1024x1024, or the last reference's
    /// resized size].
    #[arg(long, value_parser = parse_size)]
    size: Option<(u32, u32)>,
    /// Timestep grid points (the official num_timesteps; N-1 model evaluations).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Text guidance scale.
    #[arg(long, default_value_t = 4.0)]
    cfg_text: f32,
    /// Image guidance scale [default: 1.0 without references, 2.0 with].
    #[arg(long)]
    cfg_img: Option<f32>,
    /// Timestep shift.
    #[arg(long, default_value_t = 3.0)]
    shift: f32,
    /// Seed of every random draw; the same seed and device give the same image.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device: cpu (flex), ndarray, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Output image (.png, .jpg, .webp).
    #[arg(long)]
    out: PathBuf,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("`{s}`: expected WxH, e.g. 1024x768"))?;
    let p = |v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("`{s}`: `{v}` is not a number"))
    };
    Ok((p(w)?, p(h)?))
}

struct Job {
    args: GenerateArgs,
    request: PipelineRequest,
    quiet: bool,
}

impl BackendTask for Job {
    type Output = anyhow::Result<()>;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let spinner = if self.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new_spinner()
        };
        spinner.set_message(format!("loading {}", self.args.model.display()));
        let pipeline = BagelPipeline::<B>::load(&self.args.model, &device)?;
        spinner.finish_and_clear();
        let bar = if self.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(self.request.sampler.num_timesteps.saturating_sub(1) as u64)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} denoising {bar:30} {pos}/{len} steps, {per_sec}, ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let image = pipeline.generate(&self.request, |i, _| bar.set_position(i as u64))?;
        bar.finish_and_clear();
        save_image(&image, &self.args.out)?;
        if !self.quiet {
            println!(
                "wrote {} ({}x{}, seed {}, device {})",
                self.args.out.display(),
                image.width(),
                image.height(),
                self.request.seed,
                self.args.device
            );
        }
        Ok(())
    }
}

pub fn run(args: GenerateArgs, quiet: bool) -> anyhow::Result<()> {
    if args.steps < 2 {
        bail!("--steps {}: at least 2 timesteps are needed", args.steps);
    }
    // Fail now, not after minutes of denoising.
    check_image_output(&args.out).with_context(|| format!("--out {}", args.out.display()))?;
    let references = args
        .references
        .iter()
        .map(|p| load_image(p).with_context(|| format!("reading reference {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut sampler = if references.is_empty() {
        SamplerConfig::text_to_image()
    } else {
        SamplerConfig::multi_reference()
    };
    sampler.num_timesteps = args.steps;
    sampler.cfg_text = args.cfg_text;
    if let Some(s) = args.cfg_img {
        sampler.cfg_img = s;
    }
    sampler.shift = args.shift;
    sampler
        .validate()
        .context("--steps, --cfg-text, --cfg-img or --shift")?;
    let request = PipelineRequest {
        prompt: args.prompt.clone(),
        references,
        size: args.size,
        sampler,
        seed: args.seed,
    };
    let device = args.device;
    device.run(Job {
        args,
        request,
        quiet,
    })?
}
