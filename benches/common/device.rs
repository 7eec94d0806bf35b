//! The device a bench runs on: `$ECHO4O_BENCH_DEVICE` (cpu, ndarray, cuda:N, ...), by default
//! the Flex CPU backend. A value that names no device stops the bench rather than silently
//! measuring the default.

use echo4o::model::DeviceSpec;

pub fn bench_device() -> DeviceSpec {
    match std::env::var("ECHO4O_BENCH_DEVICE") {
        Err(_) => DeviceSpec::default(),
        Ok(v) => v.parse().unwrap_or_else(|e| {
            eprintln!("error: ECHO4O_BENCH_DEVICE={v}: {e}");
            std::process::exit(2);
        }),
    }
}
