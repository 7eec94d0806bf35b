//! Loading for training: deterministic seeded shuffling, sharding by (rank, world size) so that
//! several processes split one dataset without overlap, batching, and decode + resize on worker
//! threads with bounded prefetch.
//!
//! Sources are streams (tar shards, parquet row groups), so shuffling uses a seeded shuffle
//! buffer, as webdataset-style loaders do: memory stays bounded by the buffer, and the same seed,
//! epoch and source give the same order.

use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};

use echo4o_core::image::RgbImage;
use echo4o_core::resize::{ResizeRule, resize_bicubic};
use echo4o_core::{DataSource, Sample};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Loader settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    /// Samples per batch. By default 8.
    pub batch_size: usize,
    /// Seed of the shuffle (combined with the epoch). By default 0.
    pub seed: u64,
    /// Shuffle-buffer size; 0 or 1 keeps the source order. By default 1024.
    pub shuffle_buffer: usize,
    /// This process's rank. By default 0.
    pub rank: usize,
    /// Number of processes sharing the data. By default 1.
    pub world_size: usize,
    /// Batches decoded ahead of the consumer. By default 2.
    pub prefetch: usize,
    /// Resize targets and references by this rule; `None` keeps the decoded size.
    pub resize: Option<ResizeRule>,
    /// Resize every image to exactly (width, height) instead (tiny models). By default none.
    pub fixed_size: Option<(u32, u32)>,
    /// Drop samples that fail (recorded in [`Loader::skipped`]) instead of failing the batch.
    pub skip_bad: bool,
    /// Drop the last incomplete batch. By default false.
    pub drop_last: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 8,
            seed: 0,
            shuffle_buffer: 1024,
            rank: 0,
            world_size: 1,
            prefetch: 2,
            resize: None,
            fixed_size: None,
            skip_bad: false,
            drop_last: false,
        }
    }
}

/// A decoded, transformed sample.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The sample (its images still as read).
    pub sample: Sample,
    /// The target, decoded and resized.
    pub target: RgbImage,
    /// The references, decoded and resized.
    pub references: Vec<RgbImage>,
}

/// A loader over a shared [`DataSource`].
pub struct Loader {
    source: Arc<dyn DataSource>,
    config: LoaderConfig,
    skipped: Arc<Mutex<Vec<String>>>,
}

/// The items of one epoch: batches, or the error that failed one.
pub type Batches = Box<dyn Iterator<Item = echo4o_core::Result<Vec<Loaded>>> + Send>;

impl Loader {
    /// A loader; fails if `rank >= world_size` or a size is 0.
    pub fn new(source: Arc<dyn DataSource>, config: LoaderConfig) -> echo4o_core::Result<Self> {
        if config.world_size == 0 || config.rank >= config.world_size {
            return Err(echo4o_core::Error::invalid(
                "rank",
                format!("rank {} of world size {}", config.rank, config.world_size),
            ));
        }
        if config.batch_size == 0 {
            return Err(echo4o_core::Error::invalid(
                "batch_size",
                "must be at least 1",
            ));
        }
        Ok(Loader {
            source,
            config,
            skipped: Arc::default(),
        })
    }

    /// Samples dropped so far (with `skip_bad`), as `origin: error` lines.
    pub fn skipped(&self) -> Vec<String> {
        // A poisoned lock still holds the list; an empty default would hide the skips.
        self.skipped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The batches of `epoch`, produced on background threads.
    pub fn epoch(&self, epoch: u64) -> Batches {
        let (tx, rx) = sync_channel(self.config.prefetch.max(1));
        let source = self.source.clone();
        let config = self.config.clone();
        let skipped = self.skipped.clone();
        std::thread::spawn(move || {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
                config.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let mut buffer: Vec<echo4o_core::Result<Sample>> = Vec::new();
            let mut batch = Vec::new();
            let send_batch = |batch: Vec<echo4o_core::Result<Sample>>| -> bool {
                tx.send(decode_batch(batch, &config, &skipped)).is_ok()
            };
            let shard = source
                .samples()
                .enumerate()
                .filter(|(i, _)| i % config.world_size == config.rank)
                .map(|(_, s)| s);
            for item in shard {
                let next = if config.shuffle_buffer > 1 {
                    buffer.push(item);
                    if buffer.len() < config.shuffle_buffer {
                        continue;
                    }
                    let k = rng.random_range(0..buffer.len());
                    buffer.swap_remove(k)
                } else {
                    item
                };
                batch.push(next);
                if batch.len() == config.batch_size && !send_batch(std::mem::take(&mut batch)) {
                    return;
                }
            }
            while !buffer.is_empty() {
                let k = rng.random_range(0..buffer.len());
                batch.push(buffer.swap_remove(k));
                if batch.len() == config.batch_size && !send_batch(std::mem::take(&mut batch)) {
                    return;
                }
            }
            if !batch.is_empty() && !config.drop_last {
                send_batch(batch);
            }
        });
        Box::new(Receive(rx))
    }
}

struct Receive(Receiver<echo4o_core::Result<Vec<Loaded>>>);

impl Iterator for Receive {
    type Item = echo4o_core::Result<Vec<Loaded>>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.recv().ok()
    }
}

fn transform(img: RgbImage, config: &LoaderConfig) -> RgbImage {
    match (config.fixed_size, config.resize) {
        (Some((w, h)), _) if img.dimensions() != (w, h) => resize_bicubic(&img, w, h),
        (None, Some(rule)) => rule.apply(&img, 1),
        _ => img,
    }
}

fn load(sample: Sample, config: &LoaderConfig) -> echo4o_core::Result<Loaded> {
    let target = transform(sample.target.to_rgb()?, config);
    let references = sample
        .references
        .iter()
        .map(|r| r.to_rgb().map(|img| transform(img, config)))
        .collect::<echo4o_core::Result<Vec<_>>>()?;
    Ok(Loaded {
        sample,
        target,
        references,
    })
}

/// Decodes a batch on the rayon pool, in order.
fn decode_batch(
    batch: Vec<echo4o_core::Result<Sample>>,
    config: &LoaderConfig,
    skipped: &Mutex<Vec<String>>,
) -> echo4o_core::Result<Vec<Loaded>> {
    let loaded: Vec<echo4o_core::Result<Loaded>> = batch
        .into_par_iter()
        .map(|s| s.and_then(|s| load(s, config)))
        .collect();
    let mut out = Vec::with_capacity(loaded.len());
    for l in loaded {
        match l {
            Ok(x) => out.push(x),
            Err(e) if config.skip_bad => {
                if let Ok(mut v) = skipped.lock() {
                    v.push(e.to_string());
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use echo4o_core::{InMemorySource, SampleImage};

    fn source(n: usize) -> Arc<dyn DataSource> {
        let samples = (0..n)
            .map(|i| {
                let img = RgbImage::from_pixel(
                    8 + (i % 3) as u32,
                    8,
                    echo4o_core::image::Rgb([i as u8, 0, 0]),
                );
                Sample::new(
                    i.to_string(),
                    format!("s{i}"),
                    SampleImage::decoded(img, "mem"),
                )
            })
            .collect();
        Arc::new(InMemorySource::new("t", samples))
    }

    fn ids(loader: &Loader, epoch: u64) -> Vec<String> {
        loader
            .epoch(epoch)
            .flat_map(|b| b.unwrap().into_iter().map(|l| l.sample.id))
            .collect()
    }

    #[test]
    fn shuffles_deterministically_per_seed_and_epoch() {
        let cfg = LoaderConfig {
            batch_size: 4,
            shuffle_buffer: 8,
            ..Default::default()
        };
        let a = Loader::new(source(30), cfg.clone()).unwrap();
        let b = Loader::new(source(30), cfg.clone()).unwrap();
        assert_eq!(ids(&a, 0), ids(&b, 0));
        assert_ne!(ids(&a, 0), ids(&a, 1));
        let mut all = ids(&a, 0);
        all.sort_by_key(|s| s.parse::<usize>().unwrap());
        assert_eq!(all, (0..30).map(|i| i.to_string()).collect::<Vec<_>>());
    }

    #[test]
    fn ranks_split_the_data_without_overlap() {
        let mut seen = Vec::new();
        for rank in 0..3 {
            let cfg = LoaderConfig {
                rank,
                world_size: 3,
                batch_size: 5,
                ..Default::default()
            };
            seen.extend(ids(&Loader::new(source(31), cfg).unwrap(), 0));
        }
        seen.sort_by_key(|s| s.parse::<usize>().unwrap());
        assert_eq!(seen, (0..31).map(|i| i.to_string()).collect::<Vec<_>>());
        assert!(
            Loader::new(
                source(1),
                LoaderConfig {
                    rank: 3,
                    world_size: 3,
                    ..Default::default()
                }
            )
            .is_err()
        );
    }

    #[test]
    fn batches_resize_and_skip_bad_samples() {
        let mut samples: Vec<Sample> = (0..5)
            .map(|i| {
                Sample::new(
                    i.to_string(),
                    "x",
                    SampleImage::decoded(RgbImage::new(10, 6), "mem"),
                )
            })
            .collect();
        samples.push(Sample::new(
            "bad",
            "x",
            SampleImage::encoded(&b"not an image"[..], "bad.jpg"),
        ));
        let src: Arc<dyn DataSource> = Arc::new(InMemorySource::new("t", samples));
        let cfg = LoaderConfig {
            batch_size: 4,
            shuffle_buffer: 0,
            fixed_size: Some((4, 4)),
            skip_bad: true,
            ..Default::default()
        };
        let loader = Loader::new(src.clone(), cfg.clone()).unwrap();
        let batches: Vec<Vec<Loaded>> = loader.epoch(0).map(|b| b.unwrap()).collect();
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 1]);
        assert!(
            batches
                .iter()
                .flatten()
                .all(|l| l.target.dimensions() == (4, 4))
        );
        assert_eq!(loader.skipped().len(), 1);
        assert!(loader.skipped()[0].contains("bad.jpg"));

        let strict = Loader::new(
            src,
            LoaderConfig {
                skip_bad: false,
                ..cfg
            },
        )
        .unwrap();
        let results: Vec<_> = strict.epoch(0).collect();
        assert!(
            results[1]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("bad.jpg")
        );
    }
}
