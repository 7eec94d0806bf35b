//! Decode + Bagel resize throughput (the VAE transform, to at most 1024 px) on all cores, and the
//! same with Pillow in the same run when Python and Pillow are present.
//!
//! ```sh
//! cargo run --release --example resize_throughput
//! ```
//!
//! Writes 24 JPEGs of 1536x1024 (GPT-4o-sized) to a temporary folder, times echo4o (rayon over
//! all cores, Pillow-exact bicubic) over 3 rounds, then runs `scripts/pillow_resize_bench.py`
//! (one process per core) on the same files and prints the ratio.

use std::process::Command;
use std::time::Instant;

use echo4o::core::image::{Rgb, RgbImage};
use echo4o::core::resize::ResizeRule;
use rayon::prelude::*;

const IMAGES: usize = 24;
const ROUNDS: usize = 3;

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let files: Vec<std::path::PathBuf> = (0..IMAGES)
        .map(|i| {
            let img = RgbImage::from_fn(1536, 1024, |x, y| {
                Rgb([
                    ((x * 7 + y) % 256) as u8,
                    ((y * 3 + i as u32 * 17) % 256) as u8,
                    ((x ^ y) % 256) as u8,
                ])
            });
            let path = dir.path().join(format!("{i:03}.jpg"));
            echo4o::core::save_image(&img, &path).map(|()| path)
        })
        .collect::<Result<_, _>>()?;
    let bytes: Vec<Vec<u8>> = files.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    let rule = ResizeRule::bagel_vae();
    let run = || -> anyhow::Result<usize> {
        let sizes: Vec<(u32, u32)> = bytes
            .par_iter()
            .map(|b| {
                echo4o::core::decode_image(b, "bench").map(|img| rule.apply(&img, 1).dimensions())
            })
            .collect::<Result<_, _>>()?;
        Ok(sizes.len())
    };
    run()?; // warm-up
    let start = Instant::now();
    for _ in 0..ROUNDS {
        run()?;
    }
    let ours = (IMAGES * ROUNDS) as f64 / start.elapsed().as_secs_f64();
    println!(
        "echo4o  {ours:7.2} images/s ({} threads; 1536x1024 JPEG -> 1024x688, decode + resize)",
        rayon::current_num_threads()
    );

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/pillow_resize_bench.py"
    );
    match Command::new("python3")
        .arg(script)
        .arg(dir.path())
        .arg(ROUNDS.to_string())
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let pil: Option<f64> = text
                .split_whitespace()
                .find_map(|w| w.strip_prefix("images_per_s="))
                .and_then(|v| v.parse().ok());
            match pil {
                Some(p) => println!(
                    "pillow  {p:7.2} images/s\nratio echo4o / pillow: {:.2}x",
                    ours / p
                ),
                None => println!("pillow: unexpected output {text:?}"),
            }
        }
        Ok(out) => println!(
            "pillow: not measured ({})",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("python3 failed")
        ),
        Err(e) => println!("pillow: not measured (python3: {e})"),
    }
    Ok(())
}
