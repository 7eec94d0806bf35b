//! Bagel's parquet formats, read row group by row group and written with the same schemas.
//!
//! - Text-to-image (`data/t2i_dataset.py`): column `image` (encoded bytes) and `captions` (a JSON
//!   string of a dict; one value is drawn per sample, here by a seeded draw, or every value as
//!   its own sample).
//! - Multi-reference (Echo-4o `data/interleave_datasets/multiref_dataset.py`): `image_list`
//!   (list of encoded images: all but the last are references, the last is the target) and
//!   `instruction_list` (list of strings; the first is the instruction).
//!
//! Training configs point at these files through a `parquet_info` JSON mapping each path to
//! `{"num_row_groups": N}`; [`write_parquet_info`] writes one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, ListBuilder, StringBuilder};
use arrow_array::{
    Array, ArrayRef, BinaryArray, LargeBinaryArray, LargeStringArray, ListArray, RecordBatch,
    StringArray, StructArray,
};
use echo4o_core::{DataSource, Sample, SampleImage};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// Which Bagel parquet format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `image` + `captions`.
    T2i,
    /// `image_list` + `instruction_list`.
    MultiRef,
}

/// How a T2I row's caption is chosen from its `captions` dict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Captions {
    /// One value per row, drawn with this seed (deterministic per file and row).
    Seeded(u64),
    /// Every value, one sample each (`id` gets the key).
    All,
}

/// Bagel parquet files as a [`DataSource`].
#[derive(Debug, Clone)]
pub struct BagelParquet {
    files: Vec<PathBuf>,
    format: Format,
    captions: Captions,
}

fn schema_error(path: &Path, message: String) -> Error {
    Error::Layout {
        path: path.to_path_buf(),
        message,
    }
}

/// The bytes of cell `i` of a binary column (`Binary`, `LargeBinary`, or the `datasets` Image
/// feature's struct of `bytes` and `path`); `None` for a null or another type.
pub fn binary_at(col: &dyn Array, i: usize) -> Option<Vec<u8>> {
    if i >= col.len() || col.is_null(i) {
        return None;
    }
    if let Some(a) = col.as_any().downcast_ref::<BinaryArray>() {
        return Some(a.value(i).to_vec());
    }
    if let Some(a) = col.as_any().downcast_ref::<LargeBinaryArray>() {
        return Some(a.value(i).to_vec());
    }
    let s = col.as_any().downcast_ref::<StructArray>()?;
    binary_at(s.column_by_name("bytes")?.as_ref(), i)
}

/// The text of cell `i` of a `Utf8` or `LargeUtf8` column; `None` for a null or another type.
pub fn string_at(col: &dyn Array, i: usize) -> Option<String> {
    if i >= col.len() || col.is_null(i) {
        return None;
    }
    if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
        return Some(a.value(i).to_string());
    }
    col.as_any()
        .downcast_ref::<LargeStringArray>()
        .map(|a| a.value(i).to_string())
}

/// The batch's column names, comma-separated: what an error about a missing column lists.
pub fn column_names(batch: &RecordBatch) -> String {
    let names: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    names.join(", ")
}

fn column<'a>(batch: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| {
        schema_error(
            path,
            format!("no column `{name}` (columns: {})", column_names(batch)),
        )
    })
}

impl BagelParquet {
    /// T2I files.
    pub fn t2i(files: Vec<PathBuf>, captions: Captions) -> Self {
        BagelParquet {
            files,
            format: Format::T2i,
            captions,
        }
    }

    /// The files a `parquet_info` JSON lists (`{path: {"num_row_groups": N}}`, the index Bagel's
    /// dataset config points at), in the JSON's order; relative paths are taken from the JSON's
    /// folder.
    pub fn files_from_info(info: &Path) -> Result<Vec<PathBuf>> {
        let text = std::fs::read_to_string(info).map_err(|e| Error::io(info, e))?;
        let map: Map<String, Value> = serde_json::from_str(&text)
            .map_err(|e| schema_error(info, format!("not a parquet_info JSON object: {e}")))?;
        let base = info.parent().unwrap_or(Path::new("."));
        Ok(map.keys().map(|k| base.join(k)).collect())
    }

    /// Multi-reference files.
    pub fn multi_ref(files: Vec<PathBuf>) -> Self {
        BagelParquet {
            files,
            format: Format::MultiRef,
            captions: Captions::All,
        }
    }

    /// Rows of `batch` (rows `first..` of file `path`) as samples, in order.
    fn rows(&self, path: &Path, batch: &RecordBatch, first: usize) -> Vec<Result<Sample>> {
        let origin = |row: usize| format!("{}:row {row}", path.display());
        let bad = |row: usize, message: &str| Error::Layout {
            path: path.to_path_buf(),
            message: format!("row {row}: {message}"),
        };
        let mut out = Vec::new();
        match self.format {
            Format::T2i => {
                let (images, captions) = match (
                    column(batch, "image", path),
                    column(batch, "captions", path),
                ) {
                    (Ok(i), Ok(c)) => (i, c),
                    (Err(e), _) | (_, Err(e)) => return vec![Err(e)],
                };
                for i in 0..batch.num_rows() {
                    let row = first + i;
                    let (Some(bytes), Some(text)) = (
                        binary_at(images.as_ref(), i),
                        string_at(captions.as_ref(), i),
                    ) else {
                        out.push(Err(bad(
                            row,
                            "`image` is not binary or `captions` is not a string (or null)",
                        )));
                        continue;
                    };
                    let dict: Map<String, Value> = match serde_json::from_str(&text) {
                        Ok(Value::Object(m)) if !m.is_empty() => m,
                        _ => {
                            out.push(Err(bad(row, "`captions` is not a JSON object of captions")));
                            continue;
                        }
                    };
                    let image = SampleImage::encoded(bytes, origin(row));
                    let mut emit = |key: &str, caption: &Value, id: String| {
                        let mut s = Sample::new(
                            id,
                            caption
                                .as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| caption.to_string()),
                            image.clone(),
                        );
                        s.metadata
                            .insert("caption_key".into(), Value::String(key.to_string()));
                        out.push(Ok(s));
                    };
                    match self.captions {
                        Captions::All => {
                            for (k, v) in &dict {
                                emit(k, v, format!("{}:{row}:{k}", path.display()));
                            }
                        }
                        Captions::Seeded(seed) => {
                            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
                                seed ^ (row as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                            );
                            let k = rng.random_range(0..dict.len());
                            if let Some((key, v)) = dict.iter().nth(k) {
                                emit(key, v, format!("{}:{row}", path.display()));
                            }
                        }
                    }
                }
            }
            Format::MultiRef => {
                let (images, texts) = match (
                    column(batch, "image_list", path),
                    column(batch, "instruction_list", path),
                ) {
                    (Ok(i), Ok(t)) => (i, t),
                    (Err(e), _) | (_, Err(e)) => return vec![Err(e)],
                };
                let (Some(images), Some(texts)) = (
                    images.as_any().downcast_ref::<ListArray>(),
                    texts.as_any().downcast_ref::<ListArray>(),
                ) else {
                    return vec![Err(schema_error(
                        path,
                        "`image_list` and `instruction_list` must be lists".into(),
                    ))];
                };
                for i in 0..batch.num_rows() {
                    let row = first + i;
                    if images.is_null(i) || texts.is_null(i) {
                        out.push(Err(bad(row, "`image_list` or `instruction_list` is null")));
                        continue;
                    }
                    let imgs = images.value(i);
                    let list: Option<Vec<Vec<u8>>> = (0..imgs.len())
                        .map(|k| binary_at(imgs.as_ref(), k))
                        .collect();
                    let instruction = string_at(texts.value(i).as_ref(), 0);
                    let (Some(mut list), Some(instruction)) = (list, instruction) else {
                        out.push(Err(bad(row, "`image_list` must hold binary images and `instruction_list` at least one string")));
                        continue;
                    };
                    let Some(target) = list.pop() else {
                        out.push(Err(bad(row, "`image_list` is empty")));
                        continue;
                    };
                    let refs = list
                        .into_iter()
                        .enumerate()
                        .map(|(k, b)| {
                            SampleImage::encoded(
                                b,
                                format!("{}:row {row}:image {k}", path.display()),
                            )
                        })
                        .collect();
                    out.push(Ok(Sample::new(
                        format!("{}:{row}", path.display()),
                        instruction,
                        SampleImage::encoded(target, origin(row)),
                    )
                    .with_references(refs)));
                }
            }
        }
        out
    }

    /// Streams every file; a file whose decoding panics (the parquet crate can, on corrupt
    /// pages) ends with an error naming it, and the next file is read.
    fn produce(&self, tx: &crate::stream::Sender) {
        for path in &self.files {
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.produce_file(path, tx)
            }));
            match read {
                Ok(true) => {}
                Ok(false) => return,
                Err(_) => {
                    let e = schema_error(path, "corrupt file: decoding stopped on an internal error; its remaining rows were not read".into());
                    if tx.send(Err(e)).is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Streams one file; `false` when the consumer has gone.
    fn produce_file(&self, path: &Path, tx: &crate::stream::Sender) -> bool {
        let reader = File::open(path)
            .map_err(|e| Error::io(path, e))
            .and_then(|f| {
                ParquetRecordBatchReaderBuilder::try_new(f)
                    .map_err(|e| schema_error(path, format!("not a parquet file: {e}")))
            })
            .and_then(|b| {
                b.with_batch_size(64)
                    .build()
                    .map_err(|e| schema_error(path, e.to_string()))
            });
        let reader = match reader {
            Ok(r) => r,
            Err(e) => return tx.send(Err(e)).is_ok(),
        };
        let mut first = 0;
        for batch in reader {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    return tx
                        .send(Err(schema_error(
                            path,
                            format!("reading rows from {first}: {e}"),
                        )))
                        .is_ok();
                }
            };
            let n = batch.num_rows();
            for s in self.rows(path, &batch, first) {
                let schema_broken = matches!(&s, Err(Error::Layout { message, .. }) if message.starts_with("no column") || message.contains("must be lists"));
                if tx.send(s).is_err() {
                    return false;
                }
                if schema_broken {
                    return true;
                }
            }
            first += n;
        }
        true
    }
}

impl DataSource for BagelParquet {
    fn name(&self) -> String {
        format!("bagel-parquet:{} files", self.files.len())
    }

    fn samples(&self) -> Box<dyn Iterator<Item = echo4o_core::Result<Sample>> + Send + '_> {
        let me = self.clone();
        let origin = self.files.first().cloned().unwrap_or_default();
        crate::stream::spawn(origin, 64, move |tx| me.produce(tx))
    }
}

/// A row group is flushed once it holds this many bytes of images, whatever `rows_per_group`
/// says: memory stays bounded however large the dataset, and an arrow binary array's 32-bit
/// offsets (2 GiB per array) can never overflow.
pub const MAX_GROUP_BYTES: usize = 256 << 20;

/// The largest single image a row may hold (it must fit a binary array's 32-bit offsets).
const MAX_IMAGE_BYTES: usize = 1 << 30;

/// Columns being filled for one row group.
trait Rows {
    /// Appends one sample; returns the image bytes it added.
    fn push(&mut self, s: &Sample) -> Result<usize>;
    /// The rows appended since the last call, as a batch (the builders are left empty).
    fn finish(&mut self) -> std::result::Result<RecordBatch, arrow_schema::ArrowError>;
}

struct T2iRows {
    images: BinaryBuilder,
    captions: StringBuilder,
}

impl Rows for T2iRows {
    fn push(&mut self, s: &Sample) -> Result<usize> {
        let bytes = encoded(&s.target)?;
        let n = bytes.len();
        self.images.append_value(bytes);
        let mut dict = Map::new();
        dict.insert("caption".into(), Value::String(s.instruction.clone()));
        self.captions.append_value(Value::Object(dict).to_string());
        Ok(n)
    }
    fn finish(&mut self) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
        RecordBatch::try_from_iter([
            ("image", Arc::new(self.images.finish()) as ArrayRef),
            ("captions", Arc::new(self.captions.finish()) as ArrayRef),
        ])
    }
}

struct MultiRefRows {
    images: ListBuilder<BinaryBuilder>,
    texts: ListBuilder<StringBuilder>,
}

impl Rows for MultiRefRows {
    fn push(&mut self, s: &Sample) -> Result<usize> {
        let mut n = 0;
        for img in s.references.iter().chain([&s.target]) {
            let bytes = encoded(img)?;
            n += bytes.len();
            self.images.values().append_value(bytes);
        }
        self.images.append(true);
        self.texts.values().append_value(&s.instruction);
        self.texts.append(true);
        Ok(n)
    }
    fn finish(&mut self) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
        RecordBatch::try_from_iter([
            ("image_list", Arc::new(self.images.finish()) as ArrayRef),
            (
                "instruction_list",
                Arc::new(self.texts.finish()) as ArrayRef,
            ),
        ])
    }
}

/// Streams samples into `path` one bounded row group at a time, through a temporary file that
/// replaces `path` only when every sample was written (a failure leaves nothing behind).
fn write_rows(
    path: &Path,
    samples: impl IntoIterator<Item = echo4o_core::Result<Sample>>,
    rows_per_group: usize,
    max_group_bytes: usize,
    rows: &mut dyn Rows,
) -> Result<usize> {
    let rows_per_group = rows_per_group.max(1);
    let tmp = path.with_extension("parquet.tmp");
    let fail = |m: String| schema_error(path, format!("cannot write parquet: {m}"));
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows_per_group))
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut writer: Option<ArrowWriter<File>> = None;
    let flush = |rows: &mut dyn Rows, writer: &mut Option<ArrowWriter<File>>| -> Result<()> {
        let batch = rows.finish().map_err(|e| fail(e.to_string()))?;
        if writer.is_none() {
            let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            *writer = Some(
                ArrowWriter::try_new(file, batch.schema(), Some(props.clone()))
                    .map_err(|e| fail(e.to_string()))?,
            );
        }
        if let Some(w) = writer.as_mut() {
            w.write(&batch).map_err(|e| fail(e.to_string()))?;
            // One row group per flush: bounded memory in the writer as well.
            w.flush().map_err(|e| fail(e.to_string()))?;
        }
        Ok(())
    };
    let result = (|| -> Result<usize> {
        let (mut n, mut in_group, mut bytes) = (0usize, 0usize, 0usize);
        for s in samples {
            let s = s?;
            let added = rows.push(&s)?;
            if added > MAX_IMAGE_BYTES {
                return Err(schema_error(
                    path,
                    format!(
                        "sample `{}`: {added} bytes of images in one row (at most {MAX_IMAGE_BYTES})",
                        s.id
                    ),
                ));
            }
            n += 1;
            in_group += 1;
            bytes += added;
            if in_group == rows_per_group || bytes >= max_group_bytes {
                flush(rows, &mut writer)?;
                (in_group, bytes) = (0, 0);
            }
        }
        if in_group > 0 || writer.is_none() {
            flush(rows, &mut writer)?;
        }
        if let Some(w) = writer.take() {
            w.close().map_err(|e| fail(e.to_string()))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        Ok(n)
    })();
    if result.is_err() {
        drop(writer);
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes T2I samples as Bagel T2I parquet (`image`, `captions` = `{"caption": instruction}`),
/// keeping encoded bytes, streamed in row groups of at most `rows_per_group` rows and
/// [`MAX_GROUP_BYTES`] of images. Returns the number of rows; on an error nothing is written.
pub fn write_t2i(
    path: &Path,
    samples: impl IntoIterator<Item = echo4o_core::Result<Sample>>,
    rows_per_group: usize,
) -> Result<usize> {
    let mut rows = T2iRows {
        images: BinaryBuilder::new(),
        captions: StringBuilder::new(),
    };
    write_rows(path, samples, rows_per_group, MAX_GROUP_BYTES, &mut rows)
}

/// Writes multi-reference samples as Bagel multi_ref parquet (`image_list` = references then the
/// target, `instruction_list` = `[instruction]`), streamed as [`write_t2i`] is. Returns the
/// number of rows; on an error nothing is written.
pub fn write_multi_ref(
    path: &Path,
    samples: impl IntoIterator<Item = echo4o_core::Result<Sample>>,
    rows_per_group: usize,
) -> Result<usize> {
    let mut rows = MultiRefRows {
        images: ListBuilder::new(BinaryBuilder::new()),
        texts: ListBuilder::new(StringBuilder::new()),
    };
    write_rows(path, samples, rows_per_group, MAX_GROUP_BYTES, &mut rows)
}

fn encoded(img: &SampleImage) -> Result<Vec<u8>> {
    Ok(match img.encoded_bytes() {
        Some(b) => b.to_vec(),
        None => echo4o_core::encode_image(&img.to_rgb()?, echo4o_core::image::ImageFormat::Png)?,
    })
}

/// Writes the `parquet_info` JSON Bagel's dataset config reads: `{path: {"num_row_groups": N}}`.
pub fn write_parquet_info(out: &Path, files: &[PathBuf]) -> Result<()> {
    let mut info = Map::new();
    for f in files {
        let file = File::open(f).map_err(|e| Error::io(f, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| schema_error(f, e.to_string()))?;
        let groups = builder.metadata().num_row_groups();
        info.insert(
            f.display().to_string(),
            serde_json::json!({ "num_row_groups": groups }),
        );
    }
    let text = serde_json::to_string_pretty(&Value::Object(info))
        .map_err(|e| schema_error(out, e.to_string()))?;
    echo4o_core::fs::write_atomic(out, text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: usize, bytes: usize) -> Sample {
        Sample::new(
            i.to_string(),
            format!("p{i}"),
            SampleImage::encoded(vec![i as u8; bytes], "mem"),
        )
    }

    #[test]
    fn images_past_the_group_byte_bound_start_a_new_row_group() {
        // The 2 GiB overflow of one binary array is prevented by this bound (256 MiB in use);
        // a small bound shows the mechanism without writing gigabytes.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let mut rows = T2iRows {
            images: BinaryBuilder::new(),
            captions: StringBuilder::new(),
        };
        let samples = (0..10).map(|i| Ok(sample(i, 1000)));
        assert_eq!(
            write_rows(&path, samples, 1000, 2500, &mut rows).unwrap(),
            10
        );
        let file = File::open(&path).unwrap();
        let meta = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        assert_eq!(meta.metadata().num_row_groups(), 4, "3 + 3 + 3 + 1 rows");
        let back: Vec<Sample> = BagelParquet::t2i(vec![path], Captions::All)
            .samples()
            .map(|s| s.unwrap())
            .collect();
        assert_eq!(back.len(), 10);
        assert_eq!(back[9].target.encoded_bytes().unwrap(), &[9u8; 1000][..]);
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let samples = vec![
            Ok(sample(0, 10)),
            Err(echo4o_core::Error::invalid("x", "bad sample")),
        ];
        assert!(write_t2i(&path, samples, 1).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
