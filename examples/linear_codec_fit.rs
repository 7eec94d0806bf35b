//! How well a linear codec (`echo4o_model::linear_codec`) keeps shapes-world images, for several
//! patch sides and channel counts: fit to 1024 renders of the Echo-style training mix, then on
//! 200 other renders report the variance kept, the round-trip PSNR, and how many renders the
//! shapes detector reads the same (the same sorted list of shape classes) after the round trip,
//! an upper bound on what a generator using that codec can score.
//!
//! ```sh
//! cargo run --release --example linear_codec_fit
//! cargo run --release --example linear_codec_fit -- --cells 4   # objects in 4x4 cells
//! ```

use std::time::Instant;

use clap::Parser;

use echo4o::bench::geneval::Detector;
use echo4o::bench::geneval::shapes::ShapesDetector;
use echo4o::core::DataSource;
use echo4o::core::image::RgbImage;
use echo4o::core::resize::to_chw_pixels;
use echo4o::data::shapes::Layout;
use echo4o::data::shapes::source::{Mix, ShapesSource};
use echo4o::model::autoencoder::LatentCodec;
use echo4o::model::burn::tensor::{Tensor, TensorData};
use echo4o::model::linear_codec::LinearCodec;
use echo4o::model::pixels::to_u8;

type B = burn_flex::Flex;

const FIT: usize = 1024;
const HELD_OUT: usize = 200;
const SIDE: usize = 64;

#[derive(Parser)]
struct Args {
    /// Place the objects in the cells of an N x N grid (the run files' `"layout": {"cells": N}`)
    /// instead of anywhere.
    #[arg(long)]
    cells: Option<u32>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let layout = args.cells.map_or(Layout::Free, Layout::Cells);
    let device = Default::default();
    let renders = ShapesSource::new(Mix::web_plus_echo(), SIDE as u32, 1)
        .with_layout(layout)
        .samples()
        .take(FIT + HELD_OUT)
        .map(|s| s?.target.to_rgb())
        .collect::<echo4o::core::Result<Vec<RgbImage>>>()?;
    let values: Vec<f32> = renders[..FIT].iter().flat_map(to_chw_pixels).collect();
    let detector = ShapesDetector::default();
    let classes = |img: &RgbImage| -> anyhow::Result<Vec<String>> {
        let mut c: Vec<String> = detector.detect(img)?.into_iter().map(|d| d.class).collect();
        c.sort();
        Ok(c)
    };
    println!("| patch | channels | fit | variance kept | PSNR | detector reads the same |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (patch, channels) in [(4, 8), (4, 12), (4, 16), (4, 24), (8, 32), (8, 64), (8, 96)] {
        let started = Instant::now();
        let fit = LinearCodec::<B>::fit(&values, [FIT, 3, SIDE, SIDE], patch, channels, &device)?;
        let seconds = started.elapsed().as_secs_f64();
        let (mut same, mut mse) = (0usize, 0f64);
        for img in &renders[FIT..] {
            let x = Tensor::<B, 3>::from_data(
                TensorData::new(to_chw_pixels(img), [3, SIDE, SIDE]),
                &device,
            )
            .unsqueeze::<4>();
            let y = fit.codec.decode(fit.codec.encode(x.clone(), None));
            // Pixels in [-1, 1]: a quarter of the squared error is the error in [0, 1] units.
            mse += f64::from((y.clone() - x).square().mean().into_scalar()) / 4.0;
            let back = RgbImage::from_raw(SIDE as u32, SIDE as u32, to_u8(y)?)
                .ok_or_else(|| anyhow::anyhow!("decoded image of the wrong size"))?;
            same += usize::from(classes(&back)? == classes(img)?);
        }
        let psnr = -10.0 * (mse / HELD_OUT as f64).log10();
        println!(
            "| {patch} | {channels} | {seconds:.1} s | {:.1}% | {psnr:.1} dB | {same}/{HELD_OUT} |",
            fit.explained * 100.0
        );
    }
    Ok(())
}
