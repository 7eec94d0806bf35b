//! Bagel parquet files written and read back, with the schema mistakes a user can make.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use echo4o_core::image::{Rgb, RgbImage};
use echo4o_data::parquet::{
    BagelParquet, Captions, write_multi_ref, write_parquet_info, write_t2i,
};
use echo4o_data::{DataSource, Sample, SampleImage};

fn jpeg(i: u8) -> Vec<u8> {
    echo4o_core::encode_jpeg(&RgbImage::from_pixel(8, 8, Rgb([i, 9, 9])), 90).unwrap()
}

fn samples(n: u8, refs: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            Sample::new(
                i.to_string(),
                format!("prompt {i}"),
                SampleImage::encoded(jpeg(i), "mem"),
            )
            .with_references(
                (0..refs)
                    .map(|k| SampleImage::encoded(jpeg(100 + k as u8), "mem"))
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn t2i_round_trip_over_several_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t2i.parquet");
    assert_eq!(
        write_t2i(&path, samples(10, 0).into_iter().map(Ok), 3).unwrap(),
        10
    );
    let back: Vec<Sample> = BagelParquet::t2i(vec![path.clone()], Captions::Seeded(1))
        .samples()
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(back.len(), 10);
    assert_eq!(back[7].instruction, "prompt 7");
    assert_eq!(back[7].target.encoded_bytes().unwrap(), jpeg(7).as_slice());
    let info = dir.path().join("parquet_info.json");
    write_parquet_info(&info, std::slice::from_ref(&path)).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(info).unwrap()).unwrap();
    assert_eq!(v[path.display().to_string()]["num_row_groups"], 4);
    assert_eq!(
        BagelParquet::files_from_info(&dir.path().join("parquet_info.json")).unwrap(),
        vec![path.clone()]
    );
}

#[test]
fn captions_are_drawn_by_seed_or_all_taken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("multi_caption.parquet");
    let mut images = BinaryBuilder::new();
    let mut caps = StringBuilder::new();
    for i in 0..20u8 {
        images.append_value(jpeg(i));
        caps.append_value(format!(
            "{{\"short\": \"s{i}\", \"long\": \"l{i}\", \"tags\": \"t{i}\"}}"
        ));
    }
    let batch = RecordBatch::try_from_iter([
        ("image", Arc::new(images.finish()) as ArrayRef),
        ("captions", Arc::new(caps.finish()) as ArrayRef),
    ])
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();

    let draw = |seed| -> Vec<String> {
        BagelParquet::t2i(vec![path.clone()], Captions::Seeded(seed))
            .samples()
            .map(|s| s.unwrap().instruction)
            .collect()
    };
    assert_eq!(draw(5), draw(5));
    assert_ne!(draw(5), draw(6));
    let keys: std::collections::HashSet<String> =
        draw(5).iter().map(|c| c[..1].to_string()).collect();
    assert!(keys.len() > 1, "the draw uses several keys: {keys:?}");
    let all: Vec<Sample> = BagelParquet::t2i(vec![path], Captions::All)
        .samples()
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(all.len(), 60);
    assert_eq!(all[1].metadata["caption_key"], "long");
}

#[test]
fn multi_ref_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("multi.parquet");
    write_multi_ref(&path, samples(4, 2).into_iter().map(Ok), 2).unwrap();
    let back: Vec<Sample> = BagelParquet::multi_ref(vec![path])
        .samples()
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(back.len(), 4);
    assert_eq!(back[2].instruction, "prompt 2");
    assert_eq!(back[2].references.len(), 2);
    assert_eq!(
        back[2].references[1].encoded_bytes().unwrap(),
        jpeg(101).as_slice()
    );
    assert_eq!(back[2].target.encoded_bytes().unwrap(), jpeg(2).as_slice());
}

#[test]
fn wrong_schemas_and_non_parquet_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let t2i = dir.path().join("t2i.parquet");
    write_t2i(&t2i, samples(3, 0).into_iter().map(Ok), 10).unwrap();
    let errs: Vec<String> = BagelParquet::multi_ref(vec![t2i.clone()])
        .samples()
        .map(|s| s.unwrap_err().to_string())
        .collect();
    assert_eq!(errs.len(), 1, "one error for the file, not one per row");
    assert!(
        errs[0].contains("t2i.parquet")
            && errs[0].contains("no column `image_list`")
            && errs[0].contains("captions"),
        "{}",
        errs[0]
    );

    let junk = dir.path().join("junk.parquet");
    std::fs::write(&junk, b"PAR1 but not really").unwrap();
    let err = BagelParquet::t2i(vec![junk, t2i], Captions::All)
        .samples()
        .next()
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("junk.parquet") && err.contains("not a parquet file"),
        "{err}"
    );
}

#[test]
fn null_or_empty_instruction_lists_are_bad_rows_not_a_panic() {
    use arrow_array::builder::ListBuilder;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("multi.parquet");
    let mut images = ListBuilder::new(BinaryBuilder::new());
    let mut texts = ListBuilder::new(StringBuilder::new());
    for row in 0..101u8 {
        images.values().append_value(jpeg(row));
        images.append(true);
        match row % 3 {
            0 => {
                texts.values().append_value(format!("prompt {row}"));
                texts.append(true);
            }
            1 => texts.append(true),  // empty list
            _ => texts.append(false), // null
        }
    }
    let batch = RecordBatch::try_from_iter([
        ("image_list", Arc::new(images.finish()) as ArrayRef),
        ("instruction_list", Arc::new(texts.finish()) as ArrayRef),
    ])
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();

    let all: Vec<_> = BagelParquet::multi_ref(vec![path]).samples().collect();
    assert_eq!(all.len(), 101, "every row is reported");
    assert_eq!(all.iter().filter(|s| s.is_ok()).count(), 34);
    let e = all[1].as_ref().unwrap_err().to_string();
    assert!(e.contains("row 1"), "{e}");
    let e = all[2].as_ref().unwrap_err().to_string();
    assert!(e.contains("row 2") && e.contains("null"), "{e}");
}
