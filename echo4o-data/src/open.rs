//! Opening any supported dataset from a path, by what the path holds.

use std::path::{Path, PathBuf};

use echo4o_core::DataSource;

use crate::echo4o_image::Echo4oImage;
use crate::folder::FolderDataset;
use crate::parquet::{BagelParquet, Captions};
use crate::{Error, Result};

/// The formats [`open_source`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An Echo-4o-Image snapshot folder.
    Echo4oImage,
    /// A JSONL manifest (a `.jsonl` file, or a folder with `data.jsonl`).
    Folder,
    /// Bagel T2I parquet (`image`, `captions`).
    ParquetT2i,
    /// Bagel multi-reference parquet (`image_list`, `instruction_list`).
    ParquetMultiRef,
}

fn parquet_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::io(path, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    files.sort();
    Ok(files)
}

fn parquet_kind(file: &Path) -> Result<Kind> {
    let f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
    let b =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| {
            Error::Layout {
                path: file.to_path_buf(),
                message: format!("not a parquet file: {e}"),
            }
        })?;
    let schema = b.schema();
    let has = |n: &str| schema.field_with_name(n).is_ok();
    if has("image_list") && has("instruction_list") {
        Ok(Kind::ParquetMultiRef)
    } else if has("image") && has("captions") {
        Ok(Kind::ParquetT2i)
    } else {
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        Err(Error::Layout {
            path: file.to_path_buf(),
            message: format!(
                "neither Bagel T2I (image, captions) nor multi_ref (image_list, instruction_list) parquet: columns {}",
                names.join(", ")
            ),
        })
    }
}

/// What `path` holds.
pub fn detect(path: &Path) -> Result<Kind> {
    let ext = |p: &Path, e: &str| p.extension().is_some_and(|x| x == e);
    if path.is_file() && ext(path, "jsonl") {
        return Ok(Kind::Folder);
    }
    if path.is_file() && ext(path, "parquet") {
        return parquet_kind(path);
    }
    if path.is_dir() {
        if Echo4oImage::is_snapshot(path) {
            return Ok(Kind::Echo4oImage);
        }
        if path.join("data.jsonl").is_file() {
            return Ok(Kind::Folder);
        }
        if let Some(first) = parquet_files(path)?.first() {
            return parquet_kind(first);
        }
    }
    Err(Error::Layout {
        path: path.to_path_buf(),
        message: "not a dataset echo4o reads (an Echo-4o-Image snapshot, a .jsonl manifest or a folder with data.jsonl, Bagel .parquet files)".into(),
    })
}

/// Opens `path` as a [`DataSource`], detecting its format (returned too); `seed` draws T2I
/// parquet captions.
pub fn open_source(path: &Path, seed: u64) -> Result<(Kind, Box<dyn DataSource>)> {
    let kind = detect(path)?;
    let source: Box<dyn DataSource> = match kind {
        Kind::Echo4oImage => Box::new(Echo4oImage::open(path)?),
        Kind::Folder => {
            let manifest = if path.is_dir() {
                path.join("data.jsonl")
            } else {
                path.to_path_buf()
            };
            Box::new(FolderDataset::open(&manifest)?)
        }
        Kind::ParquetT2i => Box::new(BagelParquet::t2i(
            parquet_files(path)?,
            Captions::Seeded(seed),
        )),
        Kind::ParquetMultiRef => Box::new(BagelParquet::multi_ref(parquet_files(path)?)),
    };
    Ok((kind, source))
}
