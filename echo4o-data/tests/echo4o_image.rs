//! Echo-4o-Image snapshots built by the test itself: real JPEGs in real tar.gz shards, in every
//! member-naming variant, with the bad inputs a real download can have.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::path::Path;

use echo4o_core::image::{Rgb, RgbImage};
use echo4o_data::echo4o_image::{Echo4oImage, Filter};
use echo4o_data::{DataSource, Sample};

fn jpeg(i: u32) -> Vec<u8> {
    echo4o_core::encode_jpeg(
        &RgbImage::from_pixel(16, 12, Rgb([(i * 40) as u8, 100, 30])),
        90,
    )
    .unwrap()
}

/// Writes a tar.gz shard with `(member name, bytes)` entries.
fn shard(path: &Path, members: &[(String, Vec<u8>)]) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes.as_slice())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

fn record(subset: &str, i: u32, kind: &str) -> String {
    format!(
        "{{\"task_type\": \"t2i\", \"instruction\": \"prompt {i}\", \"output_image\": \"/Echo-4o-Image/{subset}/images/{i:05}.jpg\", \"type\": \"{kind}\"}}\n"
    )
}

/// Instruction-Following: 6 records over two shards (members `00000.jpg`, `images/00001.jpg`,
/// `./00002.jpg` ...); Surrel-Fantasy: 2 records in one shard.
fn snapshot(root: &Path) {
    let ifi = root.join("Instruction-Following-Image");
    std::fs::create_dir_all(ifi.join("images")).unwrap();
    let kinds = ["easy", "medium", "hard", "hard", "easy", "medium"];
    let jsonl: String = (0..6)
        .map(|i| record("Instruction-Following-Image", i, kinds[i as usize]))
        .collect();
    std::fs::write(ifi.join("Instruction-Following-Image.jsonl"), jsonl).unwrap();
    let names = |range: std::ops::Range<u32>| -> Vec<(String, Vec<u8>)> {
        range
            .map(|i| {
                let prefix = ["", "images/", "./"][(i % 3) as usize];
                (format!("{prefix}{i:05}.jpg"), jpeg(i))
            })
            .collect()
    };
    shard(&ifi.join("images/3-6.tar.gz"), &names(3..6));
    shard(&ifi.join("images/0-3.tar.gz"), &names(0..3));

    let sfi = root.join("Surrel-Fantasy-Image");
    std::fs::create_dir_all(sfi.join("images")).unwrap();
    let jsonl: String = (0..2)
        .map(|i| record("Surrel-Fantasy-Image", i, "T1"))
        .collect();
    std::fs::write(sfi.join("conflict.jsonl"), jsonl).unwrap();
    shard(&sfi.join("images/0-5000.tar.gz"), &names(0..2));
}

fn ok_samples(ds: &Echo4oImage) -> Vec<Sample> {
    ds.samples().map(|s| s.unwrap()).collect()
}

#[test]
fn streams_every_subset_in_shard_order_with_categories() {
    let dir = tempfile::tempdir().unwrap();
    snapshot(dir.path());
    let ds = Echo4oImage::open(dir.path()).unwrap();
    assert_eq!(
        ds.subsets(),
        vec![
            ("Instruction-Following-Image".into(), 6),
            ("Surrel-Fantasy-Image".into(), 2)
        ]
    );
    let all = ok_samples(&ds);
    let ids: Vec<&str> = all.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "Instruction-Following-Image/00000",
            "Instruction-Following-Image/00001",
            "Instruction-Following-Image/00002",
            "Instruction-Following-Image/00003",
            "Instruction-Following-Image/00004",
            "Instruction-Following-Image/00005",
            "Surrel-Fantasy-Image/00000",
            "Surrel-Fantasy-Image/00001",
        ]
    );
    assert_eq!(all[2].instruction, "prompt 2");
    assert_eq!(all[2].category.as_deref(), Some("hard"));
    assert_eq!(all[2].metadata["task_type"], "t2i");
    assert_eq!(all[4].target.to_rgb().unwrap().dimensions(), (16, 12));
    assert_eq!(all[4].target.encoded_bytes().unwrap(), jpeg(4).as_slice());
}

#[test]
fn filters_by_subset_category_and_task_type() {
    let dir = tempfile::tempdir().unwrap();
    snapshot(dir.path());
    let hard = Echo4oImage::open(dir.path()).unwrap().with_filter(Filter {
        categories: vec!["hard".into()],
        ..Default::default()
    });
    assert_eq!(ok_samples(&hard).len(), 2);
    let surreal = Echo4oImage::open(dir.path()).unwrap().with_filter(Filter {
        subsets: vec!["Surrel-Fantasy-Image".into()],
        ..Default::default()
    });
    assert_eq!(ok_samples(&surreal).len(), 2);
    let edits = Echo4oImage::open(dir.path()).unwrap().with_filter(Filter {
        task_types: vec!["edit".into()],
        ..Default::default()
    });
    assert_eq!(ok_samples(&edits).len(), 0);
}

#[test]
fn bad_records_missing_members_and_truncated_shards_are_reported_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    snapshot(dir.path());
    let ifi = dir.path().join("Instruction-Following-Image");
    // A malformed line and a record without a member.
    let mut jsonl = std::fs::read_to_string(ifi.join("Instruction-Following-Image.jsonl")).unwrap();
    jsonl.push_str("{\"instruction\": oops}\n");
    jsonl.push_str(&record("Instruction-Following-Image", 9, "easy"));
    std::fs::write(ifi.join("Instruction-Following-Image.jsonl"), jsonl).unwrap();
    // Truncate the second shard.
    let s2 = ifi.join("images/3-6.tar.gz");
    let bytes = std::fs::read(&s2).unwrap();
    std::fs::write(&s2, &bytes[..bytes.len() / 2]).unwrap();

    let ds = Echo4oImage::open(dir.path()).unwrap();
    let results: Vec<_> = ds.samples().collect();
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("Instruction-Following-Image.jsonl:7:")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("3-6.tar.gz") && e.contains("truncated")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains(":8:")
            && e.contains("00009.jpg")
            && e.contains("not in any shard")),
        "{errors:?}"
    );
    let good = results.iter().filter(|r| r.is_ok()).count();
    // 3 from the intact shard + whatever of the truncated one came before the cut + 2 surreal.
    assert!((5..8).contains(&good), "{good}");
    // Every record is accounted for: delivered, or reported missing.
    let reported_missing = errors
        .iter()
        .filter(|e| e.contains("not in any shard"))
        .count();
    assert_eq!(good + reported_missing, 6 + 1 + 2);
}

#[test]
fn a_corrupt_jpeg_fails_on_decode_naming_the_shard_member() {
    let dir = tempfile::tempdir().unwrap();
    let sfi = dir.path().join("Surrel-Fantasy-Image");
    std::fs::create_dir_all(sfi.join("images")).unwrap();
    std::fs::write(
        sfi.join("conflict.jsonl"),
        record("Surrel-Fantasy-Image", 0, "T2"),
    )
    .unwrap();
    shard(
        &sfi.join("images/0-5000.tar.gz"),
        &[("00000.jpg".into(), b"\xff\xd8\xff garbage".to_vec())],
    );
    let s = Echo4oImage::open(dir.path())
        .unwrap()
        .samples()
        .next()
        .unwrap()
        .unwrap();
    let err = s.target.to_rgb().unwrap_err().to_string();
    assert!(err.contains("0-5000.tar.gz:00000.jpg"), "{err}");
}

#[test]
fn unpack_writes_plain_files() {
    let dir = tempfile::tempdir().unwrap();
    snapshot(dir.path());
    let out = tempfile::tempdir().unwrap();
    let n = Echo4oImage::open(dir.path())
        .unwrap()
        .unpack(out.path())
        .unwrap();
    assert_eq!(n, 8);
    assert_eq!(
        std::fs::read(
            out.path()
                .join("Instruction-Following-Image/images/00004.jpg")
        )
        .unwrap(),
        jpeg(4)
    );
    assert!(
        out.path()
            .join("Surrel-Fantasy-Image/conflict.jsonl")
            .is_file()
    );
}

#[test]
fn a_folder_without_subsets_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Echo4oImage::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("no Echo-4o-Image subset"), "{err}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    #[test]
    fn a_shard_truncated_anywhere_never_panics(cut in 0usize..10_000) {
        let dir = tempfile::tempdir().unwrap();
        snapshot(dir.path());
        let s = dir.path().join("Surrel-Fantasy-Image/images/0-5000.tar.gz");
        let bytes = std::fs::read(&s).unwrap();
        std::fs::write(&s, &bytes[..cut.min(bytes.len())]).unwrap();
        let ds = Echo4oImage::open(dir.path()).unwrap();
        let n = ds.samples().count();
        proptest::prop_assert!(n >= 6);
    }
}

#[test]
fn written_snapshots_read_back_equal() {
    use echo4o_data::echo4o_image::write_echo4o;
    let dir = tempfile::tempdir().unwrap();
    snapshot(dir.path());
    let original = ok_samples(&Echo4oImage::open(dir.path()).unwrap().with_filter(Filter {
        subsets: vec!["Instruction-Following-Image".into()],
        ..Default::default()
    }));
    let out = tempfile::tempdir().unwrap();
    let n = write_echo4o(
        out.path(),
        "Instruction-Following-Image",
        original.iter().cloned().map(Ok),
        4,
    )
    .unwrap();
    assert_eq!(n, 6);
    assert!(
        out.path()
            .join("Instruction-Following-Image/images/0-4.tar.gz")
            .is_file()
    );
    assert!(
        out.path()
            .join("Instruction-Following-Image/images/4-8.tar.gz")
            .is_file()
    );
    let back = ok_samples(&Echo4oImage::open(out.path()).unwrap());
    assert_eq!(back.len(), 6);
    for (a, b) in original.iter().zip(&back) {
        assert_eq!(
            (&a.id, &a.instruction, &a.category),
            (&b.id, &b.instruction, &b.category)
        );
        assert_eq!(a.target.encoded_bytes(), b.target.encoded_bytes());
    }
    // A custom subset name is detected too.
    write_echo4o(
        out.path(),
        "My-Subset",
        original.iter().cloned().map(Ok),
        5000,
    )
    .unwrap();
    let subsets = Echo4oImage::open(out.path()).unwrap().subsets();
    assert_eq!(subsets[1], ("My-Subset".to_string(), 6));
}

#[test]
fn a_100_byte_shard_whose_member_claims_2_pow_62_bytes_is_an_error_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("snap");
    let ifi = root.join("Instruction-Following-Image");
    std::fs::create_dir_all(ifi.join("images")).unwrap();
    std::fs::write(
        ifi.join("Instruction-Following-Image.jsonl"),
        record("Instruction-Following-Image", 0, "easy"),
    )
    .unwrap();
    // A GNU header that claims 2^62 bytes, followed by 100 bytes: what a hostile or corrupt
    // download looks like.
    let mut header = tar::Header::new_gnu();
    header.set_path("00000.jpg").unwrap();
    header.set_size(1 << 62);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut raw = header.as_bytes().to_vec();
    raw.extend_from_slice(&[0u8; 100]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    std::fs::write(ifi.join("images/0-5000.tar.gz"), gz.finish().unwrap()).unwrap();

    let ds = Echo4oImage::open(&root).unwrap();
    let errors: Vec<String> = ds
        .samples()
        .filter_map(|s| s.err().map(|e| e.to_string()))
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("0-5000.tar.gz") && e.contains("claims")),
        "{errors:?}"
    );
    let e = ds.unpack(&dir.path().join("out")).unwrap_err().to_string();
    assert!(e.contains("claims"), "{e}");
}

#[test]
fn unpacking_a_snapshot_into_itself_is_refused_and_the_index_survives() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("snap");
    snapshot(&root);
    let index = root.join("Instruction-Following-Image/Instruction-Following-Image.jsonl");
    let before = std::fs::read(&index).unwrap();
    let ds = Echo4oImage::open(&root).unwrap();
    let e = ds.unpack(&root).unwrap_err().to_string();
    assert!(e.contains("unpack into another folder"), "{e}");
    assert_eq!(std::fs::read(&index).unwrap(), before);
}

#[test]
fn two_records_with_one_file_name_in_different_folders_are_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("snap");
    snapshot(&root);
    let index = root.join("Instruction-Following-Image/Instruction-Following-Image.jsonl");
    let mut text = std::fs::read_to_string(&index).unwrap();
    text.push_str("{\"task_type\": \"t2i\", \"instruction\": \"a blue cube\", \"output_image\": \"/elsewhere/images/00000.jpg\", \"type\": \"easy\"}\n");
    std::fs::write(&index, text).unwrap();
    let ds = Echo4oImage::open(&root).unwrap();
    let all: Vec<_> = ds.samples().collect();
    let e = all
        .iter()
        .filter_map(|s| s.as_ref().err())
        .map(|e| e.to_string())
        .find(|e| e.contains(":7:"))
        .unwrap();
    assert!(e.contains("same file name as line 1"), "{e}");
    // Member 00000.jpg keeps the instruction of the line that named it first.
    let first = all
        .iter()
        .filter_map(|s| s.as_ref().ok())
        .find(|s| {
            s.id.ends_with("/00000") && s.subset.as_deref() == Some("Instruction-Following-Image")
        })
        .unwrap();
    assert_eq!(first.instruction, "prompt 0");
}

#[test]
fn a_subset_name_that_leaves_the_output_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    for bad in ["../../x", "/tmp/x", "..", "", "a/b"] {
        let e = echo4o_data::echo4o_image::write_echo4o(&out, bad, Vec::new(), 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("subset"), "{bad}: {e}");
    }
    assert!(!dir.path().join("x").exists());
}
