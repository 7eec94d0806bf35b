//! The full-width BAGEL-7B-MoT configuration with random weights: one flow forward at 256x256 on
//! CPU (or any size on a GPU), timed, with peak memory. Shows that the full-size path is wired end
//! to end.
//!
//! ```sh
//! cargo run --release --example bagel_full_size -- --layers 2
//! # all 28 layers in bf16 on a GPU, mean of 5 forwards after a warm-up:
//! cargo run --release --features cuda --example bagel_full_size -- \
//!     --device cuda:0 --layers 28 --size 1024 --iters 5
//! ```
//!
//! `scripts/bagel_forward_torch.py` runs the same forward in plain PyTorch for comparison.
//!
//! All 28 layers in f32 need ~58 GB (14.6 B parameters), more than a laptop has, so by default
//! the model keeps the full width (hidden 3584, 28/4 heads, intermediate 18944, vocabulary
//! 152064) with `--layers` decoder layers, and the full forward time is extrapolated per layer.

use std::time::Instant;

#[path = "common/memory.rs"]
mod memory;
use memory::status_gib;

use clap::Parser;
use echo4o::model::bagel::{Bagel, Context, grid_position_ids};
use echo4o::model::burn::tensor::backend::Backend;
use echo4o::model::burn::tensor::{Distribution, Tensor};
use echo4o::model::train::materialize;
use echo4o::model::{BackendTask, BagelConfig, DeviceSpec, flops};

#[derive(Parser)]
struct Args {
    /// Decoder layers to build (28 in the released model).
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Image side in pixels (a multiple of 16).
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 16)]
    prompt: usize,
    /// Device: cpu, ndarray, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Save the (random) weights here after the forward, with the official key names.
    #[arg(long)]
    save: Option<std::path::PathBuf>,
    /// Timed forwards after the warm-up (the mean is reported).
    #[arg(long, default_value_t = 1)]
    iters: usize,
    /// Load the weights from this safetensors file instead of keeping the random ones (reports
    /// the memory the load takes).
    #[arg(long)]
    load: Option<std::path::PathBuf>,
}

struct Run(Args);

impl BackendTask for Run {
    type Output = ();

    fn run<B: Backend>(self, dev: B::Device) {
        let args = self.0;
        let full = BagelConfig::bagel_7b_mot();
        let mut config = full.clone();
        config.vit = None;
        config.llm.num_hidden_layers = args.layers;
        let side = args.size / config.latent_downsample();
        let n = side * side;

        let t = Instant::now();
        let mut model = Bagel::<B>::init(&config, &dev);
        if let Some(path) = &args.load {
            // Sample anonymous memory while loading: its peak is what the load allocates (RSS
            // also counts the memory-mapped file's pages, which are reclaimable page cache).
            let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = done.clone();
            let sampler = std::thread::spawn(move || {
                let mut peak = 0f64;
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    peak = peak.max(status_gib("RssAnon:").unwrap_or(0.0));
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                peak
            });
            let t = Instant::now();
            if let Err(e) = echo4o::model::weights::load_safetensors(
                &mut model,
                path,
                echo4o::model::weights::BAGEL_REMAPS,
                &["language_model.lm_head.weight"],
            ) {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
            let secs = t.elapsed().as_secs_f64();
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let peak_anon = sampler.join().unwrap_or(f64::NAN);
            let file_gib = std::fs::metadata(path)
                .map(|m| m.len() as f64 / (1u64 << 30) as f64)
                .unwrap_or(f64::NAN);
            println!(
                "  load {} ({file_gib:.2} GiB): {secs:.2} s; anonymous memory: peak {peak_anon:.2} GiB, after {:.2} GiB; peak RSS incl. mapped file {:.2} GiB",
                path.display(),
                status_gib("RssAnon:").unwrap_or(f64::NAN),
                status_gib("VmHWM:").unwrap_or(f64::NAN)
            );
        }
        if args.load.is_none() {
            // burn draws a fresh module's weights at their first use: draw the ones a flow
            // forward uses here, in the build, so that the first forward measures the forward
            // (`lm_head`, 545 M parameters no flow forward touches, stays undrawn).
            materialize(&model.language_model.model);
            materialize(&model.time_embedder);
            materialize(&model.vae2llm);
            materialize(&model.llm2vae);
        }
        let mut ctx = Context::default();
        let ids: Vec<u32> = (0..args.prompt as u32).map(|i| 1000 + i).collect();
        model.add_text(&mut ctx, &ids, &dev);
        B::sync(&dev).ok();
        let init_s = t.elapsed().as_secs_f64();

        let x = Tensor::<B, 2>::random([n, 64], Distribution::Normal(0.0, 1.0), &dev);
        let pos = grid_position_ids(side, side, config.max_latent_size);
        // One warm-up pass (on a GPU it compiles and autotunes every kernel), then the timed ones.
        let warm = Instant::now();
        let _ = model
            .velocity(&mut ctx, x.clone(), 0.5, &pos, [151652, 151653], None)
            .into_data();
        let warm_s = warm.elapsed().as_secs_f64();
        let iters = args.iters.max(1);
        let t = Instant::now();
        let mut v = model
            .velocity(&mut ctx, x.clone(), 0.5, &pos, [151652, 151653], None)
            .into_data();
        for _ in 1..iters {
            v = model
                .velocity(&mut ctx, x.clone(), 0.5, &pos, [151652, 151653], None)
                .into_data();
        }
        let fwd_s = t.elapsed().as_secs_f64() / iters as f64;

        let work = flops::flow_forward(&config, n, args.prompt);
        let per_layer = fwd_s / args.layers as f64;
        let full_work = flops::flow_forward(&full, n, args.prompt);
        println!(
            "BAGEL-7B-MoT width, {} of 28 layers, {}x{} px ({n} latent tokens, {}-token prompt), device {}",
            args.layers, args.size, args.size, args.prompt, args.device
        );
        println!("  build + prefill:    {init_s:8.2} s");
        println!("  first forward:      {warm_s:8.2} s  (warm-up, not in the mean)");
        println!(
            "  one flow forward:   {fwd_s:8.4} s  (mean of {iters}; {:.1} GFLOP, {:.1} GFLOP/s)",
            work / 1e9,
            work / fwd_s / 1e9
        );
        println!("  per layer:          {per_layer:8.4} s");
        println!(
            "  28 layers (est.):   {:8.4} s  ({:.1} GFLOP)",
            per_layer * 28.0,
            full_work / 1e9
        );
        if let Some(gib) = status_gib("VmHWM:") {
            println!("  peak memory (RSS):  {gib:8.2} GiB");
        }
        println!("  velocity shape {:?}", v.shape);
        if let Some(path) = &args.save {
            match echo4o::model::weights::save_safetensors(
                &model,
                path,
                echo4o::model::weights::BAGEL_REMAPS,
            ) {
                Ok(()) => println!("  saved {}", path.display()),
                Err(e) => eprintln!("error: {e}"),
            }
        }
    }
}

fn main() {
    let args = Args::parse();
    let device = args.device;
    if let Err(e) = device.run(Run(args)) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
