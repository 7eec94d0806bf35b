//! How much image tokens influence each other in a trained model: the velocity of every latent
//! token is computed for random latents at time `t`, then again with one token's latent redrawn;
//! the change it causes at the *other* tokens, relative to its own, measures how far information
//! spreads within the image block. A model that learned a per-token denoiser (each token's
//! output a function of its own noise) scores near the value of its random initialisation.
//!
//! ```sh
//! cargo run --release --example token_coordination -- --model checkpoints/shapes_echo
//! ```

use std::path::PathBuf;

use clap::Parser;
use echo4o::model::bagel::{Context, grid_position_ids};
use echo4o::model::burn::tensor::backend::Backend;
use echo4o::model::burn::tensor::{Distribution, Tensor};
use echo4o::model::pipeline::BagelPipeline;
use echo4o::model::train::seeded_init;
use echo4o::model::{BackendTask, DeviceSpec};

#[derive(Parser)]
struct Args {
    /// Checkpoint folder.
    #[arg(long)]
    model: PathBuf,
    /// Prompt of the context.
    #[arg(long, default_value = "a photo of a red circle")]
    prompt: String,
    /// Image side in pixels.
    #[arg(long, default_value_t = 64)]
    size: u32,
    /// Flow times to probe (1: pure noise).
    #[arg(long, num_args = 1.., default_values_t = [0.95f32, 0.8, 0.5, 0.2])]
    t: Vec<f32>,
    /// Tokens redrawn (each in turn), and the seed of the draws.
    #[arg(long, default_value_t = 8)]
    probes: usize,
    /// Device: cpu (flex), ndarray, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

/// Mean over probes of (mean change at other tokens) / (change at the redrawn token).
fn spread<B: Backend>(
    pipe: &BagelPipeline<B>,
    ids: &[u32],
    size: u32,
    t: f32,
    probes: usize,
    dev: &B::Device,
) -> anyhow::Result<f32> {
    let model = &pipe.model;
    let (lh, lw) = pipe.config.check_image_size(size, size)?;
    let (n, dim) = (lh * lw, pipe.config.patch_latent_dim());
    let pos = grid_position_ids(lh, lw, pipe.config.max_latent_size);
    let markers = [
        pipe.config.tokens.start_of_image,
        pipe.config.tokens.end_of_image,
    ];
    let mut ctx = Context::default();
    model.add_text(&mut ctx, ids, dev);
    let velocity = |x: Tensor<B, 2>| model.velocity(&mut ctx.clone(), x, t, &pos, markers, None);
    let normal = || Tensor::<B, 2>::random([n, dim], Distribution::Normal(0.0, 1.0), dev);
    let mut total = 0.0;
    for p in 0..probes {
        let k = (p * 7919) % n;
        let x = normal();
        let redrawn = x
            .clone()
            .slice_assign([k..k + 1, 0..dim], normal().narrow(0, 0, 1));
        let change = (velocity(redrawn) - velocity(x)).square().sum_dim(1).sqrt();
        let per_token: Vec<f32> = change
            .into_data()
            .to_vec()
            .map_err(|e| anyhow::anyhow!("velocity change is not f32: {e:?}"))?;
        let own = per_token[k];
        let others = (per_token.iter().sum::<f32>() - own) / (n - 1) as f32;
        total += others / own.max(1e-12);
    }
    Ok(total / probes as f32)
}

struct Probe(Args);

impl BackendTask for Probe {
    type Output = anyhow::Result<()>;

    fn run<B: Backend>(self, dev: B::Device) -> anyhow::Result<()> {
        let args = self.0;
        let trained = BagelPipeline::<B>::load(&args.model, &dev)?;
        let ids = trained.tokenizer.prompt(&args.prompt)?;
        // The same architecture at its random initialisation: what "no learned spread" looks like.
        let mut fresh = BagelPipeline::<B>::load(&args.model, &dev)?;
        fresh.model = seeded_init(fresh.model, 1)?;
        println!(
            "t      trained  random init   (mean change at the other tokens / change at the redrawn one)"
        );
        for &t in &args.t {
            let a = spread(&trained, &ids, args.size, t, args.probes, &dev)?;
            let b = spread(&fresh, &ids, args.size, t, args.probes, &dev)?;
            println!("{t:<6} {a:>7.4}  {b:>11.4}");
        }
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = args.device;
    device.run(Probe(args))?
}
