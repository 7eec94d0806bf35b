//! Hostile input for every reader: arbitrary manifest and index lines, mutated tar.gz shards and
//! parquet files. Whatever the bytes, reading ends (no panic, no abort) and never silently short:
//! every record is either a sample or an error naming where it is.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::io::Write;
use std::path::Path;

use echo4o_core::image::{Rgb, RgbImage};
use echo4o_data::{Sample, SampleImage, open_source};
use proptest::prelude::*;

fn jpeg(i: u8) -> Vec<u8> {
    echo4o_core::encode_jpeg(&RgbImage::from_pixel(8, 8, Rgb([i, 40, 90])), 90).unwrap()
}

/// Reads everything `path` holds; returns (samples, errors). Decoding each image is part of it.
fn read_all(path: &Path) -> (usize, usize) {
    let Ok((_, source)) = open_source(path, 0) else {
        return (0, 1);
    };
    let (mut ok, mut bad) = (0, 0);
    for s in source.samples() {
        match s.and_then(|s| s.target.to_rgb().map(|_| ())) {
            Ok(()) => ok += 1,
            Err(_) => bad += 1,
        }
    }
    (ok, bad)
}

fn tar_bytes(n: u8) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for i in 0..n {
        let bytes = jpeg(i);
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("{i:05}.jpg"), bytes.as_slice())
            .unwrap();
    }
    tar.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A one-subset snapshot of 3 records whose shard is `shard` (gzip bytes).
fn snapshot(root: &Path, index: &[u8], shard: &[u8]) {
    let dir = root.join("Instruction-Following-Image");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::write(dir.join("Instruction-Following-Image.jsonl"), index).unwrap();
    std::fs::write(dir.join("images/0-5000.tar.gz"), shard).unwrap();
}

fn index(n: u8) -> String {
    (0..n)
        .map(|i| format!("{{\"task_type\": \"t2i\", \"instruction\": \"p{i}\", \"output_image\": \"/x/images/{i:05}.jpg\", \"type\": \"easy\"}}\n"))
        .collect()
}

fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    for &(at, v) in edits {
        if !bytes.is_empty() {
            let i = at % bytes.len();
            bytes[i] = v;
        }
    }
    if let Some(c) = cut {
        bytes.truncate(c % (bytes.len() + 1));
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn manifests_of_any_bytes_are_read_to_the_end(text in proptest::collection::vec(any::<u8>(), 0..400)) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jpg"), jpeg(1)).unwrap();
        let manifest = dir.path().join("data.jsonl");
        let mut bytes = b"{\"instruction\": \"x\", \"image\": \"a.jpg\"}\n".to_vec();
        bytes.extend(&text);
        std::fs::write(&manifest, &bytes).unwrap();
        let (ok, _) = read_all(&manifest);
        prop_assert!(ok <= 1 + text.iter().filter(|b| **b == b'\n').count());
    }

    #[test]
    fn index_lines_of_any_text_are_read_to_the_end(extra in "\\PC{0,300}") {
        let dir = tempfile::tempdir().unwrap();
        let mut text = index(3);
        text.push_str(&extra);
        snapshot(dir.path(), text.as_bytes(), &gzip(&tar_bytes(3)));
        let (ok, _) = read_all(dir.path());
        prop_assert_eq!(ok, 3, "the three good records survive any extra lines");
    }

    #[test]
    fn mutated_tar_shards_are_errors_not_aborts(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let tar = mutate(tar_bytes(3), &edits, cut);
        snapshot(dir.path(), index(3).as_bytes(), &gzip(&tar));
        let (ok, bad) = read_all(dir.path());
        prop_assert!(ok == 3 || bad > 0, "{ok} ok, {bad} errors: records went missing silently");
        // Unpacking the same shard is bounded too.
        let _ = echo4o_data::echo4o_image::Echo4oImage::open(dir.path())
            .map(|d| d.unpack(&dir.path().join("out")));
    }

    #[test]
    fn mutated_gzip_streams_are_errors_not_aborts(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let gz = mutate(gzip(&tar_bytes(3)), &edits, cut);
        snapshot(dir.path(), index(3).as_bytes(), &gz);
        let (ok, bad) = read_all(dir.path());
        prop_assert!(ok == 3 || bad > 0, "{ok} ok, {bad} errors");
    }

    #[test]
    fn mutated_parquet_files_are_errors_not_aborts(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<usize>()),
        multi in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.parquet");
        let samples: Vec<echo4o_core::Result<Sample>> = (0..6u8)
            .map(|i| {
                let refs = if multi { vec![SampleImage::encoded(jpeg(100 + i), "m")] } else { vec![] };
                Ok(Sample::new(i.to_string(), format!("p{i}"), SampleImage::encoded(jpeg(i), "m"))
                    .with_references(refs))
            })
            .collect();
        if multi {
            echo4o_data::parquet::write_multi_ref(&good, samples, 2).unwrap();
        } else {
            echo4o_data::parquet::write_t2i(&good, samples, 2).unwrap();
        }
        let bad_file = dir.path().join("bad.parquet");
        std::fs::write(&bad_file, mutate(std::fs::read(&good).unwrap(), &edits, cut)).unwrap();
        let (ok, bad) = read_all(&bad_file);
        prop_assert!(ok == 6 || bad > 0, "{ok} ok, {bad} errors: rows went missing silently");
    }
}
