//! The `echo4o` binary as a user runs it.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::process::Command;

fn echo4o(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_echo4o"))
        .args(args)
        .output()
        .expect("the echo4o binary runs")
}

#[test]
fn help_lists_the_global_flags() {
    let out = echo4o(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--verbose", "--quiet", "--version", "info"] {
        assert!(text.contains(flag), "missing {flag} in:\n{text}");
    }
}

#[test]
fn version_is_the_crate_version() {
    let out = echo4o(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("echo4o {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn info_reports_the_default_backend() {
    let out = echo4o(&["info"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("backend flex"), "{text}");
    assert!(text.contains("compiled in (default)"), "{text}");
}

#[test]
fn usage_errors_exit_non_zero_with_a_message() {
    let out = echo4o(&["no-such-command"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-command"));
    let out = echo4o(&["-v", "-q", "info"]);
    assert!(!out.status.success(), "--verbose and --quiet conflict");
}

#[test]
fn an_io_error_says_the_os_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-run.json");
    let out = echo4o(&["train", "--config", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-run.json"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}
