//! One training step of the shipped shapes model (forward + backward + AdamW + EMA, batch 16 of
//! 64x64 shapes images from arm (b)'s data mix), on the default CPU backend: the step whose
//! speed bounds what the 60-minute miniature of the paper can learn.
//!
//! ```sh
//! cargo bench --bench train
//! ```

#[path = "common/device.rs"]
mod device;
use device::bench_device;
#[path = "common/train_batches.rs"]
mod train_batches;
use train_batches::{CHECKPOINT, bench_batches};

use std::path::Path;
use std::time::Duration;

use criterion::Criterion;
use echo4o::model::BackendTask;
use echo4o::model::burn::backend::Autodiff;
use echo4o::model::burn::tensor::backend::Backend;
use echo4o::model::pipeline::BagelPipeline;
use echo4o::model::train::{TrainSettings, Trainer};

struct Benches<'a>(&'a mut Criterion);

impl BackendTask for Benches<'_> {
    type Output = anyhow::Result<()>;

    fn run<B: Backend>(self, dev: B::Device) -> anyhow::Result<()> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(CHECKPOINT);
        let pipeline = BagelPipeline::<B>::load(&dir, &dev)?;
        let settings = TrainSettings {
            steps: 1_000_000,
            batch_size: 16,
            lr: 1e-4,
            warmup_steps: 0,
            ..TrainSettings::default()
        };
        let mut trainer = Trainer::<Autodiff<B>>::new(pipeline, settings, &dev)?;
        let (_, batches) = bench_batches()?;
        let mut g = self.0.benchmark_group("train");
        g.sample_size(10)
            .measurement_time(Duration::from_secs(8))
            .warm_up_time(Duration::from_secs(2));
        let mut i = 0;
        g.bench_function("train_step/shapes_b16", |b| {
            b.iter(|| {
                i += 1;
                trainer.train_step(&batches[i % batches.len()])
            })
        });
        g.finish();
        Ok(())
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let device = bench_device();
    match device.run(Benches(&mut c)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
    c.final_summary();
}
