//! `echo4o info`: what this build contains.

use std::io::Write;

use echo4o::model::BackendKind;

/// Arguments of `echo4o info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {}

pub fn run(_args: InfoArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "echo4o {}", env!("CARGO_PKG_VERSION"))?;
    for kind in BackendKind::ALL {
        let (device, state) = match (kind, kind.is_compiled()) {
            (BackendKind::Flex, true) => ("--device cpu", "compiled in (default)"),
            (BackendKind::NdArray, true) => ("--device ndarray", "compiled in"),
            (BackendKind::Cuda, true) => ("--device cuda:N", "compiled in"),
            (_, false) => ("", "not compiled in"),
        };
        let hint = if kind.is_compiled() {
            device.to_string()
        } else {
            format!("rebuild with --features {}", kind.feature())
        };
        writeln!(out, "backend {:<8} {state:<22} {hint}", kind.feature())?;
    }
    Ok(())
}
