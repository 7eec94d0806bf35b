//! Joining shard outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Manifest, Shard};
use crate::suite::Benchmark;
use crate::{Error, Result};

/// Joins the image folders of shard outputs into `out` (copying each file once; two different
/// files for one path are an error), writes the merged manifest, and returns it. The shards
/// must be of one evaluation (benchmark, generator, seed, samples, items) and cover every shard
/// index once.
pub fn merge(bench: &dyn Benchmark, out: &Path, shards: &[PathBuf]) -> Result<Manifest> {
    if shards.is_empty() {
        return Err(Error::invalid("merge", "no shard folders given"));
    }
    let mut manifests = Vec::new();
    for dir in shards {
        manifests.push((dir, Manifest::read(dir)?));
    }
    let (first_dir, first) = &manifests[0];
    if first.benchmark != bench.name() {
        return Err(Error::invalid(
            "merge",
            format!(
                "{} holds {}, not {}",
                first_dir.display(),
                first.benchmark,
                bench.name()
            ),
        ));
    }
    let mut seen: BTreeMap<usize, &PathBuf> = BTreeMap::new();
    for (dir, m) in &manifests {
        let same = Manifest {
            shard: first.shard,
            ..m.clone()
        };
        if &same != first || m.shard.count != first.shard.count {
            return Err(Error::invalid(
                "merge",
                format!(
                    "{} is another evaluation ({}) than {} ({})",
                    dir.display(),
                    m.describe(),
                    first_dir.display(),
                    first.describe()
                ),
            ));
        }
        if let Some(other) = seen.insert(m.shard.index, dir) {
            return Err(Error::invalid(
                "merge",
                format!(
                    "shard {} given twice: {} and {}",
                    m.shard,
                    other.display(),
                    dir.display()
                ),
            ));
        }
    }
    let absent: Vec<String> = (0..first.shard.count)
        .filter(|i| !seen.contains_key(i))
        .map(|i| format!("{i}/{}", first.shard.count))
        .collect();
    if !absent.is_empty() {
        return Err(Error::invalid(
            "merge",
            format!(
                "shards {} are not among the folders given",
                absent.join(", ")
            ),
        ));
    }
    let merged = Manifest {
        shard: Shard::ALL,
        ..first.clone()
    };
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    merged.claim(out)?;
    let target = out.join("images");
    for (dir, _) in &manifests {
        let source = dir.join("images");
        if source.is_dir() && !same_dir(&source, &target) {
            copy_tree(&source, &target)?;
        }
    }
    Ok(merged)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Copies every file under `from` to the same relative path under `to`; an existing target
/// with other bytes is an error (two shards wrote one path differently).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let entry = entry.map_err(|e| Error::io(from, e))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| Error::io(&src, e))?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            let bytes = std::fs::read(&src).map_err(|e| Error::io(&src, e))?;
            match std::fs::read(&dst) {
                Ok(existing) if existing == bytes => {}
                Ok(_) => {
                    return Err(Error::invalid(
                        "merge",
                        format!(
                            "{} and {} differ: two shards wrote one image",
                            src.display(),
                            dst.display()
                        ),
                    ));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    echo4o_core::fs::write_atomic(&dst, &bytes)?;
                }
                Err(e) => return Err(Error::io(&dst, e)),
            }
        }
    }
    Ok(())
}
