//! `echo4o data` as a user runs it, on a snapshot the test writes.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::path::Path;
use std::process::Command;

use echo4o::core::image::{Rgb, RgbImage};
use echo4o::core::{Sample, SampleImage};

fn data(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_echo4o"))
        .arg("data")
        .args(args)
        .output()
        .unwrap()
}

fn snapshot(root: &Path) {
    let samples: Vec<echo4o::core::Result<Sample>> = (0..7u8)
        .map(|i| {
            let img = RgbImage::from_fn(64 + u32::from(i) * 100, 48, |x, _| {
                Rgb([(x % 255) as u8, i * 30, 200])
            });
            let mut s = Sample::new(
                i.to_string(),
                format!("A photo of {i} blue cubes on a table"),
                SampleImage::decoded(img, "mem"),
            );
            s.category = Some(["easy", "medium", "hard"][usize::from(i % 3)].into());
            Ok(s)
        })
        .collect();
    echo4o::data::echo4o_image::write_echo4o(root, "Instruction-Following-Image", samples, 3)
        .unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn stats_sample_convert_and_unpack() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("Echo-4o-Image");
    snapshot(&snap);

    let o = data(&["stats", s(&snap)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("total: 7 records, 7 readable (0 multi-reference), 0 unreadable"),
        "{text}"
    );
    assert!(
        text.contains("Instruction-Following-Image") && text.contains("hard"),
        "{text}"
    );
    assert!(text.contains("512-1023"), "{text}");

    let sheet = dir.path().join("sheet.png");
    let o = data(&[
        "sample",
        s(&snap),
        "--n",
        "5",
        "--columns",
        "3",
        "--out",
        s(&sheet),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(image::open(&sheet).unwrap().width(), 3 * 204);

    let folder = dir.path().join("folder");
    assert!(
        data(&["convert", s(&snap), "--to", "folder", "--out", s(&folder)])
            .status
            .success()
    );
    let pq = dir.path().join("t2i.parquet");
    assert!(
        data(&["convert", s(&folder), "--to", "parquet", "--out", s(&pq)])
            .status
            .success()
    );
    let back = dir.path().join("back");
    let o = data(&["convert", s(&pq), "--to", "echo4o", "--out", s(&back)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = data(&["stats", s(&back)]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("7 readable"));

    let plain = dir.path().join("plain");
    let o = data(&["unpack", s(&snap), "--out", s(&plain)]);
    assert!(o.status.success());
    assert!(
        plain
            .join("Instruction-Following-Image/images/00006.jpg")
            .is_file()
    );
}

#[test]
fn bad_data_is_reported_and_skippable() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap");
    snapshot(&snap);
    let jsonl = snap.join("Instruction-Following-Image/Instruction-Following-Image.jsonl");
    let mut text = std::fs::read_to_string(&jsonl).unwrap();
    text.push_str("{broken\n");
    std::fs::write(&jsonl, text).unwrap();

    let o = data(&["stats", s(&snap)]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("1 unreadable") && out.contains("Instruction-Following-Image.jsonl:8:"),
        "{out}"
    );

    let dest = dir.path().join("f");
    let o = data(&["convert", s(&snap), "--to", "folder", "--out", s(&dest)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--skip-bad"));
    assert!(
        !dest.join("data.jsonl").exists(),
        "nothing written on failure"
    );
    let o = data(&[
        "convert",
        s(&snap),
        "--to",
        "folder",
        "--out",
        s(&dest),
        "--skip-bad",
    ]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("skipped 1"));

    let o = data(&["stats", s(dir.path())]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a dataset echo4o reads"));
}

#[test]
fn stats_of_nothing_readable_prints_totals_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("data.jsonl");
    std::fs::write(
        &manifest,
        "{\"instruction\": \"x\", \"image\": \"gone.png\"}\n{broken\n",
    )
    .unwrap();
    let o = data(&["stats", s(&manifest)]);
    assert_eq!(o.status.code(), Some(2));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("total: 2 records, 0 readable (0 multi-reference), 2 unreadable"),
        "{text}"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no readable sample"), "{err}");
}

#[test]
fn sample_refuses_huge_counts_and_columns_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap");
    snapshot(&snap);
    let out = dir.path().join("sheet.png");
    for args in [
        ["--n", "18446744073709551615"],
        ["--columns", "4294967295"],
        ["--n", "0"],
    ] {
        let o = data(&["sample", s(&snap), "--out", s(&out), args[0], args[1]]);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(args[0]), "{args:?}: {err}");
    }
    assert!(!out.exists());
}

#[test]
fn convert_to_parquet_streams_and_writes_nothing_on_a_bad_sample() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap");
    snapshot(&snap);
    let out = dir.path().join("all.parquet");
    let o = data(&[
        "convert",
        s(&snap),
        "--to",
        "parquet",
        "--out",
        s(&out),
        "--shard-size",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = data(&["stats", s(&out)]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("7 readable"));

    // A manifest whose second record has no image: the parquet is not written at all.
    let manifest = dir.path().join("m.jsonl");
    let img = dir.path().join("a.png");
    echo4o::core::save_image(&RgbImage::new(8, 8), &img).unwrap();
    std::fs::write(
        &manifest,
        "{\"instruction\": \"x\", \"image\": \"a.png\"}\n{\"instruction\": \"y\", \"image\": \"gone.png\"}\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.parquet");
    let o = data(&["convert", s(&manifest), "--to", "parquet", "--out", s(&bad)]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("m.jsonl:2:") && err.contains("nothing was written"),
        "{err}"
    );
    assert!(!bad.exists());
    assert!(!dir.path().join("bad.parquet.tmp").exists());
}
