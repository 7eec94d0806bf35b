//! Data pipeline throughput: decode + Bagel's VAE resize (to at most 1024 px, Pillow-exact
//! bicubic) of GPT-4o-sized JPEGs, on one core and on all cores.
//!
//! ```sh
//! cargo bench --bench data
//! ```

use std::time::Duration;

use criterion::{Criterion, Throughput};
use echo4o::core::image::{Rgb, RgbImage};
use echo4o::core::resize::ResizeRule;
use rayon::prelude::*;

fn jpegs(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let img = RgbImage::from_fn(1536, 1024, |x, y| {
                Rgb([
                    ((x * 7 + y) % 256) as u8,
                    ((y * 3 + i as u32 * 17) % 256) as u8,
                    ((x ^ y) % 256) as u8,
                ])
            });
            echo4o::core::encode_jpeg(&img, 95).unwrap_or_default()
        })
        .collect()
}

fn decode_resize(c: &mut Criterion) {
    let images = jpegs(8);
    let rule = ResizeRule::bagel_vae();
    let mut g = c.benchmark_group("data");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(images.len() as u64));
    g.bench_function("decode_resize_1024/1_thread", |b| {
        b.iter(|| {
            images
                .iter()
                .map(|j| {
                    echo4o::core::decode_image(j, "b")
                        .map(|i| rule.apply(&i, 1).width())
                        .unwrap_or(0)
                })
                .sum::<u32>()
        })
    });
    g.bench_function("decode_resize_1024/all_threads", |b| {
        b.iter(|| {
            images
                .par_iter()
                .map(|j| {
                    echo4o::core::decode_image(j, "b")
                        .map(|i| rule.apply(&i, 1).width())
                        .unwrap_or(0)
                })
                .sum::<u32>()
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    decode_resize(&mut c);
    c.final_summary();
}
