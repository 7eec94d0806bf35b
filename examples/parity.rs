//! Checks echo4o's BAGEL against golden vectors of the official PyTorch code.
//!
//! ```sh
//! cargo run --release --example parity -- echo4o-model/tests/golden bagel_tiny_a
//! cargo run --release --example parity -- DIR CASE --device ndarray
//! ```
//!
//! A case is `CASE.config.json`, `CASE.weights.safetensors` (official keys), optionally
//! `CASE.vae.safetensors`, and `CASE.cases.safetensors` (inputs and official outputs). Prints the
//! max absolute and relative error of every recomputed output and exits non-zero when any is
//! beyond the tolerance (atol = rtol = 1e-4; uint8 images within 1).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use echo4o::model::burn::tensor::backend::Backend;
use echo4o::model::parity::{Comparison, F32_TOLERANCE, run_case};
use echo4o::model::{BackendTask, DeviceSpec};

#[derive(Parser)]
struct Args {
    /// Folder holding the case files.
    dir: PathBuf,
    /// Case name (file prefix), e.g. bagel_tiny_a.
    case: String,
    /// Device: cpu, ndarray, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

struct Run(PathBuf, String);

impl BackendTask for Run {
    type Output = Result<Vec<Comparison>, echo4o::model::Error>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        run_case::<B>(&self.0, &self.1, &device)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let results = match args.device.run(Run(args.dir.clone(), args.case.clone())) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) | Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "{} on {} (tolerance atol {:e}, rtol {:e})",
        args.case, args.device, F32_TOLERANCE.0, F32_TOLERANCE.1
    );
    println!("{:<34} {:>12} {:>12}  ok", "output", "max abs", "max rel");
    for c in &results {
        println!(
            "{:<34} {:>12.3e} {:>12.3e}  {}",
            c.name,
            c.max_abs,
            c.max_rel,
            if c.passed { "yes" } else { "NO" }
        );
    }
    let failed = results.iter().filter(|c| !c.passed).count();
    println!("{} outputs, {failed} beyond tolerance", results.len());
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
