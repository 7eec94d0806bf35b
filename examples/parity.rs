//! Checks echo4o's BAGEL against golden vectors of the official PyTorch code.
//!
//! ```sh
//! cargo run --release --example parity -- echo4o-model/tests/golden bagel_tiny_a
//! cargo run --release --example parity -- DIR bagel_tiny_a flux_vae_tiny bagel_tiny_m   # one process
//! cargo run --release --example parity -- DIR CASE --device ndarray
//! cargo run --release --example parity -- DIR CASE --dtype bf16      # bf16 transformer, tol 5e-2
//! cargo run --release --features cuda --example parity -- DIR CASE --device cuda:0   # bf16
//! cargo run --release --features cuda --example parity -- DIR CASE --device cuda-f32:0
//! ```
//!
//! A case is `CASE.config.json`, `CASE.weights.safetensors` (official keys), optionally
//! `CASE.vae.safetensors`, and `CASE.cases.safetensors` (inputs and official outputs). Prints the
//! max absolute and relative error of every recomputed output and exits non-zero when any is
//! beyond the tolerance (atol = rtol = 1e-4, or 5e-2 when the transformer computes in bf16;
//! uint8 images within 1). Several cases run in one process, so a GPU backend compiles each
//! kernel once; each case's wall time is printed (the first includes compilation and autotuning).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use echo4o::model::burn::tensor::DType;
use echo4o::model::burn::tensor::backend::Backend;
use echo4o::model::ops::default_float_dtype;
use echo4o::model::parity::{BF16_TOLERANCE, Comparison, F32_TOLERANCE, run_case_as};
use echo4o::model::{BackendTask, DeviceSpec};

#[derive(Clone, Copy, clap::ValueEnum)]
enum Precision {
    F32,
    Bf16,
}

#[derive(Parser)]
struct Args {
    /// Folder holding the case files.
    dir: PathBuf,
    /// Case names (file prefixes), e.g. bagel_tiny_a; several run in one process.
    #[arg(required = true)]
    cases: Vec<String>,
    /// Device: cpu, ndarray, cuda:N (bf16), cuda-f32:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// The transformer's compute dtype (default: the device's, bf16 on cuda:N, else f32).
    #[arg(long, value_enum)]
    dtype: Option<Precision>,
    /// Absolute and relative tolerance (default 1e-4 in f32, 5e-2 in bf16).
    #[arg(long)]
    tolerance: Option<f64>,
}

struct Run(PathBuf, Vec<String>, Option<Precision>, Option<f64>);

type CaseResult = (String, f64, Result<Vec<Comparison>, echo4o::model::Error>);

impl BackendTask for Run {
    type Output = (DType, (f64, f64), Vec<CaseResult>);
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let dtype = match self.2 {
            Some(Precision::F32) => DType::F32,
            Some(Precision::Bf16) => DType::BF16,
            None => default_float_dtype::<B>(),
        };
        let tol = match (self.3, dtype) {
            (Some(t), _) => (t, t),
            (None, DType::F32) => F32_TOLERANCE,
            (None, _) => BF16_TOLERANCE,
        };
        let results = self
            .1
            .iter()
            .map(|case| {
                let started = Instant::now();
                let r = run_case_as::<B>(&self.0, case, &device, dtype, tol);
                (case.clone(), started.elapsed().as_secs_f64(), r)
            })
            .collect();
        (dtype, tol, results)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let task = Run(
        args.dir.clone(),
        args.cases.clone(),
        args.dtype,
        args.tolerance,
    );
    let (dtype, tol, results) = match args.device.run(task) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut code = ExitCode::SUCCESS;
    for (case, seconds, result) in results {
        let comparisons = match result {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{case}: error: {e}");
                code = ExitCode::from(2);
                continue;
            }
        };
        println!(
            "{case} on {}, transformer in {dtype:?} (tolerance atol {:e}, rtol {:e}), {seconds:.2} s",
            args.device, tol.0, tol.1
        );
        println!("{:<34} {:>12} {:>12}  ok", "output", "max abs", "max rel");
        for c in &comparisons {
            println!(
                "{:<34} {:>12.3e} {:>12.3e}  {}",
                c.name,
                c.max_abs,
                c.max_rel,
                if c.passed { "yes" } else { "NO" }
            );
        }
        let failed = comparisons.iter().filter(|c| !c.passed).count();
        println!("{} outputs, {failed} beyond tolerance\n", comparisons.len());
        if failed > 0 && code == ExitCode::SUCCESS {
            code = ExitCode::FAILURE;
        }
    }
    code
}
