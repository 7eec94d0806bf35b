//! What one training step of a tiny FLUX-architecture autoencoder costs on this machine: the
//! figure behind the shapes model's linear codec (`echo4o_model::linear_codec`).
//!
//! ```sh
//! cargo run --release -p echo4o-model --example ae_train_step -- --ch 32 --side 64 --batch 16
//! ```
//!
//! Random images, MSE reconstruction, Adam; prints the time of each of 6 steps (the first
//! includes allocation warm-up).

use std::time::Instant;

use burn::backend::Autodiff;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Distribution, Tensor};
use echo4o_model::autoencoder::{AutoEncoder, LatentCodec};
use echo4o_model::config::AeConfig;

type B = Autodiff<burn_flex::Flex>;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().unwrap_or(default))
}

fn main() {
    let (ch, side, batch) = (arg("--ch", 32), arg("--side", 64), arg("--batch", 16));
    // FLUX's architecture at tiny width: 4 levels (downsample 8), one resnet block a level.
    let config = AeConfig {
        ch,
        ch_mult: vec![1, 1, 2, 2],
        num_res_blocks: 1,
        z_channels: 8,
        scale_factor: 1.0,
        shift_factor: 0.0,
        ..AeConfig::flux()
    };
    let device = Default::default();
    let mut ae = AutoEncoder::<B>::init(&config, &device);
    let mut optim = AdamConfig::new().init();
    println!("FLUX autoencoder, ch {ch}, {side}x{side} images, batch {batch}");
    for step in 0..6 {
        let started = Instant::now();
        let x = Tensor::<B, 4>::random(
            [batch, 3, side, side],
            Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let y = ae.decode(ae.encode(x.clone(), None));
        let loss = (y - x).square().mean();
        let grads = GradientsParams::from_grads(loss.backward(), &ae);
        ae = optim.step(1e-3, ae, grads);
        println!("step {step}: {:.3} s", started.elapsed().as_secs_f64());
    }
}
