//! The official GenEval image folder layout: `<NNNNN>/metadata.jsonl` (one JSON object) and
//! `<NNNNN>/samples/<k>.png`.

use std::path::{Path, PathBuf};

use echo4o_core::ImageLayout;
use image::RgbImage;

use super::Metadata;
use crate::{Error, Result};

/// One prompt folder of the layout.
#[derive(Debug, Clone)]
pub struct LayoutEntry {
    /// The folder (`.../00012`).
    pub folder: PathBuf,
    /// Its metadata.
    pub metadata: Metadata,
    /// Its samples, ordered by number.
    pub samples: Vec<PathBuf>,
}

fn digits(name: &str) -> Option<u64> {
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

fn sorted_numbered(dir: &Path, keep: impl Fn(&str) -> Option<u64>) -> Result<Vec<(u64, PathBuf)>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Some(n) = entry.file_name().to_str().and_then(&keep) {
            entries.push((n, entry.path()));
        }
    }
    entries.sort();
    Ok(entries)
}

/// Reads a layout: only digit-named folders, only `\d+.png` samples, as the official script.
pub fn read_layout(root: &Path) -> Result<Vec<LayoutEntry>> {
    let folders = sorted_numbered(root, |n| digits(n).filter(|_| root.join(n).is_dir()))?;
    folders
        .into_iter()
        .map(|(_, folder)| {
            let meta_path = folder.join("metadata.jsonl");
            let text = std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
            let metadata = Metadata::from_json(&text, &meta_path.display().to_string(), 1)?;
            let samples_dir = folder.join("samples");
            let samples = if samples_dir.is_dir() {
                sorted_numbered(&samples_dir, |n| n.strip_suffix(".png").and_then(digits))?
                    .into_iter()
                    .map(|(_, p)| p)
                    .collect()
            } else {
                Vec::new()
            };
            Ok(LayoutEntry {
                folder,
                metadata,
                samples,
            })
        })
        .collect()
}

/// Writes one prompt folder: `root/{index:05}/metadata.jsonl` and `samples/{k:05}.png` (the
/// names Echo-4o's and Bagel's generation scripts write).
pub fn write_sample_folder(
    root: &Path,
    index: usize,
    metadata: &Metadata,
    images: &[RgbImage],
) -> Result<PathBuf> {
    let folder = root.join(format!("{index:05}"));
    echo4o_core::fs::write_atomic(
        &folder.join("metadata.jsonl"),
        metadata.to_python_json().as_bytes(),
    )?;
    for (k, img) in images.iter().enumerate() {
        echo4o_core::save_image(img, &folder.join(format!("samples/{k:05}.png")))?;
    }
    Ok(folder)
}

/// The layout as an [`ImageLayout`] for [`echo4o_core::FolderGenerator`]: request id = the
/// folder name (`00012`), image `k` = `samples/{k:05}.png`, `{k:04}.png` or `{k}.png`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GenEvalLayout;

impl ImageLayout for GenEvalLayout {
    fn candidates(&self, root: &Path, id: &str, index: usize) -> Vec<PathBuf> {
        let samples = root.join(id).join("samples");
        vec![
            samples.join(format!("{index:05}.png")),
            samples.join(format!("{index:04}.png")),
            samples.join(format!("{index}.png")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geneval::official_metadata;

    #[test]
    fn writes_and_reads_back_the_official_layout() {
        let dir = tempfile::tempdir().unwrap();
        let meta = official_metadata(false);
        let img = RgbImage::new(8, 8);
        for i in [0usize, 2, 11] {
            write_sample_folder(dir.path(), i, &meta[i], &[img.clone(), img.clone()]).unwrap();
        }
        // Ignored: non-digit folders and non-matching sample names.
        std::fs::create_dir_all(dir.path().join("notes")).unwrap();
        std::fs::write(dir.path().join("00000/samples/grid.png"), b"x").unwrap();

        let entries = read_layout(dir.path()).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].metadata, meta[11]);
        assert_eq!(entries[0].samples.len(), 2);
        assert!(entries[0].samples[1].ends_with("00000/samples/00001.png"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("00002/metadata.jsonl")).unwrap(),
            crate::geneval::METADATA_JSONL.lines().nth(2).unwrap()
        );

        let folder = echo4o_core::FolderGenerator::new(dir.path()).with_layout(GenEvalLayout);
        assert!(
            folder
                .find("00011", 1)
                .unwrap()
                .ends_with("00011/samples/00001.png")
        );
    }

    #[test]
    fn a_broken_metadata_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("00004")).unwrap();
        std::fs::write(dir.path().join("00004/metadata.jsonl"), "{broken").unwrap();
        let err = read_layout(dir.path()).unwrap_err().to_string();
        assert!(err.contains("00004/metadata.jsonl:1:"), "{err}");
    }
}
