//! Parity with the official BAGEL PyTorch code: every golden case, on every compiled CPU
//! backend, within the f32 tolerance (atol = rtol = 1e-4; u8 images within 1).

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::path::{Path, PathBuf};

use echo4o_model::parity::{Comparison, run_case};

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn assert_case(results: Vec<Comparison>, case: &str, backend: &str) {
    assert!(!results.is_empty(), "{case}: nothing compared");
    let failed: Vec<String> = results
        .iter()
        .filter(|c| !c.passed)
        .map(|c| {
            format!(
                "{}: max abs {:.3e}, max rel {:.3e}",
                c.name, c.max_abs, c.max_rel
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{case} on {backend}: {} of {} outputs off:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
}

macro_rules! parity_tests {
    ($module:ident, $backend:ty, $device:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn bagel_tiny_a() {
                let r = run_case::<$backend>(&golden(), "bagel_tiny_a", &$device).unwrap();
                assert!(r.len() >= 31, "{} outputs", r.len());
                assert_case(r, "bagel_tiny_a", stringify!($module));
            }

            #[test]
            fn flux_vae_tiny() {
                let r = run_case::<$backend>(&golden(), "flux_vae_tiny", &$device).unwrap();
                assert_case(r, "flux_vae_tiny", stringify!($module));
            }

            #[test]
            fn bagel_tiny_m() {
                let r = run_case::<$backend>(&golden(), "bagel_tiny_m", &$device).unwrap();
                assert!(r.len() >= 73, "{} outputs", r.len());
                assert_case(r, "bagel_tiny_m", stringify!($module));
            }
        }
    };
}

#[cfg(feature = "flex")]
parity_tests!(flex, burn_flex::Flex, burn_flex::FlexDevice);
#[cfg(feature = "ndarray")]
parity_tests!(
    ndarray,
    burn_ndarray::NdArray,
    burn_ndarray::NdArrayDevice::Cpu
);
