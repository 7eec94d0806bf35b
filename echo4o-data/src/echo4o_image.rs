//! The Echo-4o-Image snapshot (Hugging Face `Yejy53/Echo-4o-Image`) as a [`DataSource`]:
//! subsets with a JSONL index and `images/*.tar.gz` shards, streamed shard by shard in bounded
//! memory, never extracted unless asked ([`Echo4oImage::unpack`]).
//!
//! ```text
//! Echo-4o-Image/
//! ├── Instruction-Following-Image/{Instruction-Following-Image.jsonl, images/0-5000.tar.gz, ...}
//! └── Surrel-Fantasy-Image/{conflict.jsonl, images/0-5000.tar.gz, ...}     ("Surrel", sic)
//! ```
//!
//! Records are `{"task_type", "instruction", "output_image", "type"}`; `output_image` is a logical
//! path whose file name is the member inside a shard (`00000.jpg`, also found as
//! `images/00000.jpg` or `./00000.jpg`). `type` (easy/medium/hard, T1..) is the category.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use echo4o_core::{DataSource, Sample, SampleImage};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::jsonl::read_records;
use crate::{Error, Result};

/// The released subsets and their index files.
pub const SUBSETS: [(&str, &str); 2] = [
    (
        "Instruction-Following-Image",
        "Instruction-Following-Image.jsonl",
    ),
    ("Surrel-Fantasy-Image", "conflict.jsonl"),
];

#[derive(Debug, Clone, Deserialize)]
struct Record {
    #[serde(default)]
    task_type: Option<String>,
    instruction: String,
    output_image: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

/// The file name a member or an `output_image` refers to (`./x/00001.jpg` -> `00001.jpg`).
pub fn member_key(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

/// Which samples to yield. Empty lists mean "all".
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Subset names.
    pub subsets: Vec<String>,
    /// Categories (`type`).
    pub categories: Vec<String>,
    /// Task types (`task_type`, e.g. `t2i`).
    pub task_types: Vec<String>,
}

impl Filter {
    fn keeps(&self, subset: &str, r: &Record) -> bool {
        let ok = |list: &[String], v: Option<&str>| {
            list.is_empty() || v.is_some_and(|v| list.iter().any(|x| x == v))
        };
        ok(&self.subsets, Some(subset))
            && ok(&self.categories, r.kind.as_deref())
            && ok(&self.task_types, r.task_type.as_deref())
    }
}

#[derive(Debug)]
struct Subset {
    name: String,
    jsonl: PathBuf,
    shards: Vec<PathBuf>,
    /// member key -> (line, record)
    records: HashMap<String, (usize, Record)>,
    bad_lines: Vec<(usize, String)>,
}

/// An Echo-4o-Image snapshot folder.
#[derive(Debug, Clone)]
pub struct Echo4oImage {
    root: PathBuf,
    subsets: Arc<Vec<Subset>>,
    filter: Filter,
}

/// The subsets of a snapshot: the released ones under their official index names, then any
/// other subfolder holding one `*.jsonl` and an `images/` folder (what [`write_echo4o`] makes).
fn subset_indexes(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut found: Vec<(String, PathBuf)> = SUBSETS
        .iter()
        .map(|(name, index)| (name.to_string(), root.join(name).join(index)))
        .filter(|(_, p)| p.is_file())
        .collect();
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(found);
    };
    let mut others = Vec::new();
    for e in entries.flatten() {
        let dir = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if !dir.is_dir() || SUBSETS.iter().any(|(s, _)| *s == name) || !dir.join("images").is_dir()
        {
            continue;
        }
        let jsonls: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        // Only a subset if its index looks like Echo-4o records and it has shards (a JSONL +
        // folder dataset also has a .jsonl and an images/ folder).
        if let [one] = jsonls.as_slice()
            && first_record_has_output_image(one)
            && !sorted_shards(&dir.join("images"))?.is_empty()
        {
            others.push((name, one.clone()));
        }
    }
    others.sort();
    found.extend(others);
    Ok(found)
}

fn first_record_has_output_image(jsonl: &Path) -> bool {
    use std::io::BufRead;
    let Ok(file) = std::fs::File::open(jsonl) else {
        return false;
    };
    std::io::BufReader::new(file)
        .lines()
        .map_while(std::result::Result::ok)
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str::<Map<String, Value>>(&l).ok())
        .is_some_and(|m| m.contains_key("output_image"))
}

/// Images per shard in the released layout.
pub const SHARD_SIZE: usize = 5000;

/// Writes samples as an Echo-4o-Image subset: `out/<subset>/<index>.jsonl` (the official index
/// name for the released subsets, `<subset>.jsonl` otherwise) and `out/<subset>/images/` shards
/// `0-5000.tar.gz`, ... of `shard_size` JPEG members `NNNNN.jpg` (JPEG bytes kept as they are,
/// other images re-encoded). Returns the number of samples written.
pub fn write_echo4o(
    out: &Path,
    subset: &str,
    samples: impl IntoIterator<Item = echo4o_core::Result<Sample>>,
    shard_size: usize,
) -> Result<usize> {
    let shard_size = shard_size.max(1);
    check_subset_name(subset)?;
    let dir = out.join(subset);
    let images = dir.join("images");
    std::fs::create_dir_all(&images).map_err(|e| Error::io(&images, e))?;
    let index = SUBSETS
        .iter()
        .find(|(s, _)| *s == subset)
        .map(|(_, j)| j.to_string())
        .unwrap_or_else(|| format!("{subset}.jsonl"));
    let mut lines = String::new();
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    let mut n = 0;
    let flush = |start: usize, members: &mut Vec<(String, Vec<u8>)>| -> Result<()> {
        if members.is_empty() {
            return Ok(());
        }
        let path = images.join(format!("{start}-{}.tar.gz", start + shard_size));
        let tmp = images.join(format!(".{start}.tar.gz.tmp"));
        let write = || -> std::io::Result<()> {
            let gz = flate2::write::GzEncoder::new(
                std::fs::File::create(&tmp)?,
                flate2::Compression::default(),
            );
            let mut tar = tar::Builder::new(gz);
            for (name, bytes) in members.iter() {
                let mut header = tar::Header::new_gnu();
                header.set_size(bytes.len() as u64);
                header.set_mode(0o644);
                header.set_cksum();
                tar.append_data(&mut header, name, bytes.as_slice())?;
            }
            tar.into_inner()?.finish()?.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| Error::io(&path, e))?;
        members.clear();
        Ok(())
    };
    for sample in samples {
        let s = sample?;
        let bytes = match s.target.encoded_bytes() {
            Some(b)
                if matches!(
                    echo4o_core::image::guess_format(b),
                    Ok(echo4o_core::image::ImageFormat::Jpeg)
                ) =>
            {
                b.to_vec()
            }
            _ => echo4o_core::encode_jpeg(&s.target.to_rgb()?, echo4o_core::SAVE_JPEG_QUALITY)?,
        };
        let name = format!("{n:05}.jpg");
        let mut record = Map::new();
        let task = s
            .metadata
            .get("task_type")
            .cloned()
            .unwrap_or(Value::String("t2i".into()));
        record.insert("task_type".into(), task);
        record.insert("instruction".into(), Value::String(s.instruction.clone()));
        record.insert(
            "output_image".into(),
            Value::String(format!("/Echo-4o-Image/{subset}/images/{name}")),
        );
        if let Some(c) = &s.category {
            record.insert("type".into(), Value::String(c.clone()));
        }
        lines.push_str(&Value::Object(record).to_string());
        lines.push('\n');
        members.push((name, bytes));
        n += 1;
        if members.len() == shard_size {
            flush(n - shard_size, &mut members)?;
        }
    }
    flush(n - members.len(), &mut members)?;
    echo4o_core::fs::write_atomic(&dir.join(index), lines.as_bytes())?;
    Ok(n)
}

/// A subset name is one folder inside the output: no separators, no `..`, nothing absolute.
fn check_subset_name(subset: &str) -> Result<()> {
    let plain = !subset.is_empty()
        && subset != "."
        && subset != ".."
        && !subset.contains(['/', '\\', '\0'])
        && !Path::new(subset).is_absolute();
    if plain {
        Ok(())
    } else {
        Err(echo4o_core::Error::invalid(
            "subset",
            format!("{subset:?} is not a plain folder name (no `/`, `\\` or `..`)"),
        )
        .into())
    }
}

/// Shards in order of their first index (`0-5000`, `5000-10000`, ...), then by name.
fn sorted_shards(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut shards: Vec<(u64, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = e.map_err(|e| Error::io(dir, e))?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(stem) = name
            .strip_suffix(".tar.gz")
            .or_else(|| name.strip_suffix(".tgz"))
        {
            let start = stem
                .split('-')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(u64::MAX);
            shards.push((start, p));
        }
    }
    shards.sort();
    Ok(shards.into_iter().map(|(_, p)| p).collect())
}

impl Echo4oImage {
    /// Opens a snapshot folder, detecting the subsets present (an error if there is none) and
    /// reading their indexes.
    pub fn open(root: &Path) -> Result<Self> {
        let mut subsets = Vec::new();
        for (name, jsonl) in subset_indexes(root)? {
            let images = root.join(&name).join("images");
            let shards = if images.is_dir() {
                sorted_shards(&images)?
            } else {
                Vec::new()
            };
            let mut records: HashMap<String, (usize, Record)> = HashMap::new();
            let mut bad_lines = Vec::new();
            for (line, r) in read_records::<Record>(&jsonl)? {
                match r {
                    Ok(rec) => {
                        // Shard members are found by file name alone, so two records whose
                        // `output_image` share a file name (in different folders) would both
                        // claim one image: the later one is refused, never silently merged.
                        let key = member_key(&rec.output_image).to_string();
                        if let Some((first, _)) = records.get(&key) {
                            bad_lines.push((
                                line,
                                format!(
                                    "`output_image` {:?} has the same file name as line {first}; shard members are found by file name, so it is ambiguous",
                                    rec.output_image
                                ),
                            ));
                            continue;
                        }
                        records.insert(key, (line, rec));
                    }
                    Err(Error::Line { message, .. }) => bad_lines.push((line, message)),
                    Err(other) => bad_lines.push((line, other.to_string())),
                }
            }
            subsets.push(Subset {
                name: name.to_string(),
                jsonl,
                shards,
                records,
                bad_lines,
            });
        }
        if subsets.is_empty() {
            return Err(Error::Layout {
                path: root.to_path_buf(),
                message: format!(
                    "no Echo-4o-Image subset found (expected {})",
                    SUBSETS
                        .iter()
                        .map(|(s, j)| format!("{s}/{j}"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            });
        }
        Ok(Echo4oImage {
            root: root.to_path_buf(),
            subsets: Arc::new(subsets),
            filter: Filter::default(),
        })
    }

    /// Whether `root` holds at least one subset, without reading the indexes.
    pub fn is_snapshot(root: &Path) -> bool {
        subset_indexes(root).is_ok_and(|s| !s.is_empty())
    }

    /// Keeps only what `filter` selects. By default everything.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// The subsets present and their record counts.
    pub fn subsets(&self) -> Vec<(String, usize)> {
        self.subsets
            .iter()
            .map(|s| (s.name.clone(), s.records.len() + s.bad_lines.len()))
            .collect()
    }

    /// Extracts every selected image to `dest/<subset>/images/<name>` and copies the indexes,
    /// for random access. Returns the number of images written.
    ///
    /// `dest` must not be the snapshot itself: copying an index onto itself would truncate it.
    pub fn unpack(&self, dest: &Path) -> Result<usize> {
        if same_path(dest, &self.root) {
            return Err(Error::Layout {
                path: dest.to_path_buf(),
                message: "is the snapshot being unpacked; unpack into another folder".into(),
            });
        }
        let mut n = 0;
        for s in self.subsets.iter() {
            if !self.filter.subsets.is_empty() && !self.filter.subsets.contains(&s.name) {
                continue;
            }
            let out = dest.join(&s.name);
            std::fs::create_dir_all(out.join("images")).map_err(|e| Error::io(&out, e))?;
            let file_name = s.jsonl.file_name().unwrap_or_default();
            let copy = out.join(file_name);
            if same_path(&copy, &s.jsonl) {
                return Err(Error::Layout {
                    path: copy,
                    message: "is the index being unpacked; unpack into another folder".into(),
                });
            }
            std::fs::copy(&s.jsonl, &copy).map_err(|e| Error::io(&copy, e))?;
            for shard in &s.shards {
                for_each_member(shard, &mut |key, bytes| {
                    echo4o_core::fs::write_atomic(&out.join("images").join(key), &bytes)?;
                    n += 1;
                    Ok(())
                })?;
            }
        }
        Ok(n)
    }
}

/// Whether two paths name the same existing file or folder (after resolving links and `..`).
fn same_path(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// The largest shard member read into memory. Released images are a few MB; a header claiming
/// more is corrupt or hostile, and the allocation must never be sized from it unchecked.
pub const MAX_MEMBER_BYTES: u64 = 256 << 20;

/// Calls `f(member key, bytes)` for every file in a tar.gz shard; a truncated or corrupt shard is
/// an [`Error::Shard`] naming it, and so is a member larger than [`MAX_MEMBER_BYTES`].
fn for_each_member(shard: &Path, f: &mut dyn FnMut(&str, Vec<u8>) -> Result<()>) -> Result<()> {
    let bad = |e: std::io::Error| Error::Shard {
        path: shard.to_path_buf(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(shard).map_err(|e| Error::io(shard, e))?;
    let mut archive =
        tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let size = entry.size();
        if size > MAX_MEMBER_BYTES {
            return Err(Error::Shard {
                path: shard.to_path_buf(),
                message: format!(
                    "member `{name}` claims {size} bytes (more than the {MAX_MEMBER_BYTES}-byte limit of one image)"
                ),
            });
        }
        // The header's size is a claim: the bytes that really follow decide the length.
        let mut bytes = Vec::with_capacity(size.min(1 << 20) as usize);
        entry.read_to_end(&mut bytes).map_err(bad)?;
        f(member_key(&name), bytes)?;
    }
    Ok(())
}

/// How many samples may wait between the shard reader and the consumer.
const PREFETCH: usize = 16;

fn produce(subsets: &[Subset], filter: &Filter, tx: &crate::stream::Sender) {
    for s in subsets {
        if !filter.subsets.is_empty() && !filter.subsets.contains(&s.name) {
            continue;
        }
        for (line, message) in &s.bad_lines {
            let e = Error::Line {
                path: s.jsonl.clone(),
                line: *line,
                message: message.clone(),
            };
            if tx.send(Err(e)).is_err() {
                return;
            }
        }
        let mut found = std::collections::HashSet::new();
        for shard in &s.shards {
            let result = for_each_member(shard, &mut |key, bytes| {
                let Some((_, r)) = s.records.get(key) else {
                    return Ok(());
                };
                found.insert(key.to_string());
                if !filter.keeps(&s.name, r) {
                    return Ok(());
                }
                let stem = key.rsplit_once('.').map_or(key, |(a, _)| a);
                let mut sample = Sample::new(
                    format!("{}/{stem}", s.name),
                    r.instruction.clone(),
                    SampleImage::encoded(bytes, format!("{}:{key}", shard.display())),
                )
                .with_subset(s.name.clone());
                sample.category = r.kind.clone();
                sample.metadata = r.other.clone();
                if let Some(t) = &r.task_type {
                    sample
                        .metadata
                        .insert("task_type".into(), Value::String(t.clone()));
                }
                sample
                    .metadata
                    .insert("output_image".into(), Value::String(r.output_image.clone()));
                // A closed receiver means the consumer stopped: end quietly.
                tx.send(Ok(sample)).map_err(|_| Error::Layout {
                    path: shard.clone(),
                    message: "consumer gone".into(),
                })
            });
            if let Err(e) = result
                && (matches!(e, Error::Layout { .. }) || tx.send(Err(e)).is_err())
            {
                return;
            }
        }
        let mut missing: Vec<(&usize, &Record)> = s
            .records
            .iter()
            .filter(|(k, (_, r))| !found.contains(*k) && filter.keeps(&s.name, r))
            .map(|(_, (line, r))| (line, r))
            .collect();
        missing.sort_by_key(|(line, _)| **line);
        for (line, r) in missing {
            let e = Error::MissingMember {
                path: s.jsonl.clone(),
                line: *line,
                image: r.output_image.clone(),
                shards: s
                    .jsonl
                    .parent()
                    .map(|p| p.join("images"))
                    .unwrap_or_default(),
            };
            if tx.send(Err(e)).is_err() {
                return;
            }
        }
    }
}

impl DataSource for Echo4oImage {
    fn name(&self) -> String {
        self.root.display().to_string()
    }

    fn len_hint(&self) -> Option<usize> {
        Some(self.subsets.iter().map(|s| s.records.len()).sum())
    }

    /// Samples in shard order; bad index lines first, records whose image is in no shard last,
    /// each as an `Err` naming file and line.
    fn samples(&self) -> Box<dyn Iterator<Item = echo4o_core::Result<Sample>> + Send + '_> {
        let subsets = self.subsets.clone();
        let filter = self.filter.clone();
        crate::stream::spawn(self.root.clone(), PREFETCH, move |tx| {
            produce(&subsets, &filter, tx)
        })
    }
}
