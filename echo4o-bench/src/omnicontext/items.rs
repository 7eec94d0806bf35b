//! Reading OmniContext's items: the HF dataset `OmniGen2/OmniContext` as downloaded (parquet),
//! or the folder the official `arrow2json.py` flattens it to (`metadata.json` + `images/`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ListArray, RecordBatch};
use echo4o_data::parquet::{binary_at, column_names, string_at};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Deserialize;

use super::TASK_TYPES;
use crate::suite::ReferenceImage;
use crate::{Error, Result};

/// One OmniContext item.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The dataset's `key`; the output image is `{task_type}/{key}.png`.
    pub key: String,
    /// One of the 8 [`TASK_TYPES`].
    pub task_type: String,
    /// The instruction.
    pub instruction: String,
    /// `instruction_language` (`en`; the statistics keep only `en`).
    pub language: String,
    /// The input images, in order.
    pub inputs: Vec<ReferenceImage>,
}

/// Reads the items at `path`: a `.parquet` file, a folder of them (searched recursively, as the
/// HF download lays them out under `data/`), or a flattened folder with `metadata.json`.
pub fn load(path: &Path) -> Result<Vec<Item>> {
    let items = if path.is_file() {
        read_parquet(path)?
    } else if path.join("metadata.json").is_file() {
        read_flattened(path)?
    } else if path.is_dir() {
        let mut files = Vec::new();
        find_parquet(path, &mut files)?;
        files.sort();
        if files.is_empty() {
            return Err(Error::invalid(
                "OmniContext data",
                format!(
                    "{} holds neither metadata.json (the flattened form) nor .parquet files \
                     (the HF dataset as downloaded)",
                    path.display()
                ),
            ));
        }
        let mut all = Vec::new();
        for f in files {
            all.extend(read_parquet(&f)?);
        }
        all
    } else {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        ));
    };
    check(path, &items)?;
    Ok(items)
}

fn check(path: &Path, items: &[Item]) -> Result<()> {
    if items.is_empty() {
        return Err(Error::invalid(
            "OmniContext data",
            format!("{} has no items", path.display()),
        ));
    }
    let mut keys = std::collections::HashSet::new();
    for it in items {
        if !TASK_TYPES.contains(&it.task_type.as_str()) {
            return Err(Error::invalid(
                "OmniContext data",
                format!(
                    "{}: item {:?} has task_type {:?} (known: {})",
                    path.display(),
                    it.key,
                    it.task_type,
                    TASK_TYPES.join(", ")
                ),
            ));
        }
        if it.key.is_empty() || it.key.contains(['/', '\\']) || it.key == ".." {
            return Err(Error::invalid(
                "OmniContext data",
                format!("{}: key {:?} cannot name a file", path.display(), it.key),
            ));
        }
        if it.inputs.is_empty() {
            return Err(Error::invalid(
                "OmniContext data",
                format!("{}: item {:?} has no input image", path.display(), it.key),
            ));
        }
        if !keys.insert((it.task_type.clone(), it.key.clone())) {
            return Err(Error::invalid(
                "OmniContext data",
                format!("{}: key {:?} appears twice", path.display(), it.key),
            ));
        }
    }
    Ok(())
}

fn find_parquet(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            find_parquet(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    Ok(())
}

/// One record of the flattened `metadata.json`.
#[derive(Deserialize)]
struct Flat {
    id: String,
    task_type: String,
    ori_img: OneOrMany,
    ins_en: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn read_flattened(dir: &Path) -> Result<Vec<Item>> {
    let meta = dir.join("metadata.json");
    let text = std::fs::read_to_string(&meta).map_err(|e| Error::io(&meta, e))?;
    let records: Vec<Flat> = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(meta.display().to_string(), e.to_string()))?;
    let images = dir.join("images");
    Ok(records
        .into_iter()
        .map(|r| {
            let names = match r.ori_img {
                OneOrMany::One(n) => vec![n],
                OneOrMany::Many(v) => v,
            };
            Item {
                inputs: names
                    .iter()
                    .map(|n| ReferenceImage::File(images.join(&r.task_type).join(n)))
                    .collect(),
                key: r.id,
                task_type: r.task_type,
                instruction: r.ins_en,
                // The flattened form keeps only the English instruction (`ins_en`).
                language: "en".into(),
            }
        })
        .collect())
}

fn column<'a>(batch: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a dyn Array> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| {
            Error::invalid(
                path.display().to_string(),
                format!("no column `{name}` (columns: {})", column_names(batch)),
            )
        })
}

fn read_parquet(path: &Path) -> Result<Vec<Item>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
    let mut items = Vec::new();
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
        let key = column(&batch, "key", path)?;
        let task = column(&batch, "task_type", path)?;
        let instruction = column(&batch, "instruction", path)?;
        let language = column(&batch, "instruction_language", path)?;
        let images = column(&batch, "input_images", path)?
            .as_any()
            .downcast_ref::<ListArray>()
            .ok_or_else(|| {
                Error::invalid(path.display().to_string(), "`input_images` is not a list")
            })?;
        for i in 0..batch.num_rows() {
            let at = |what: &str| {
                Error::invalid(
                    path.display().to_string(),
                    format!("row {row}: `{what}` is missing or not text"),
                )
            };
            let key = string_at(key, i).ok_or_else(|| at("key"))?;
            let list = if images.is_null(i) {
                return Err(at("input_images"));
            } else {
                images.value(i)
            };
            let inputs = (0..list.len())
                .map(|k| {
                    binary_at(list.as_ref(), k)
                        .map(|bytes| ReferenceImage::Encoded {
                            origin: format!(
                                "{} row {row} ({key}) input_images[{k}]",
                                path.display()
                            ),
                            bytes: Arc::from(bytes),
                        })
                        .ok_or_else(|| {
                            Error::invalid(
                                path.display().to_string(),
                                format!("row {row}: input_images[{k}] holds no image bytes"),
                            )
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            items.push(Item {
                task_type: string_at(task, i).ok_or_else(|| at("task_type"))?,
                instruction: string_at(instruction, i).ok_or_else(|| at("instruction"))?,
                language: string_at(language, i).ok_or_else(|| at("instruction_language"))?,
                key,
                inputs,
            });
            row += 1;
        }
    }
    Ok(items)
}
