//! Memory figures of the running process, shared by the examples that report them.

/// A `/proc/self/status` field in GiB (`VmHWM:`: peak resident; `RssAnon:`: anonymous memory
/// now, i.e. without the pages of memory-mapped files); `None` where the file or field is absent.
pub fn status_gib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0 / 1024.0)
}

/// Prints this process's peak resident memory beside another process's (`label`: whose).
#[allow(dead_code)] // not every example compares
pub fn print_peak_against(label: &str, theirs: Option<f64>) {
    if let Some(gib) = status_gib("VmHWM:") {
        println!(
            "peak resident memory: {gib:.2} GiB ({label}: {:.2} GiB)",
            theirs.unwrap_or(f64::NAN)
        );
    }
}
