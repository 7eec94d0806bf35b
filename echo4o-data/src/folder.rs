//! The plain format for users' own data: a JSONL manifest over a folder of images.
//!
//! ```text
//! my-data/
//! ├── data.jsonl        {"instruction": "...", "image": "images/000000.jpg"}
//! └── images/           {"instruction": "...", "image": "t.jpg", "references": ["a.jpg", "b.jpg"]}
//! ```
//!
//! Paths are relative to the manifest's folder. `image` (alias `target`) is the target;
//! `references` makes a multi-reference sample; `id`, `subset` and `category` are optional; any
//! other field is kept as metadata.

use std::path::{Path, PathBuf};

use echo4o_core::{DataSource, Sample, SampleImage};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::jsonl::read_records;
use crate::{Error, Result};

/// One manifest record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Optional id (default: the line number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The instruction.
    pub instruction: String,
    /// The target image, relative to the manifest.
    #[serde(alias = "target")]
    pub image: String,
    /// Reference images, relative to the manifest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    /// Subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub metadata: Map<String, Value>,
}

/// A JSONL manifest over a folder, as a [`DataSource`].
#[derive(Debug)]
pub struct FolderDataset {
    manifest: PathBuf,
    root: PathBuf,
    records: Vec<(usize, Result<Record>)>,
}

impl FolderDataset {
    /// Reads the manifest (records are parsed now; images are read as samples are iterated).
    pub fn open(manifest: &Path) -> Result<Self> {
        let root = manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok(FolderDataset {
            manifest: manifest.to_path_buf(),
            root,
            records: read_records(manifest)?,
        })
    }

    /// Whether any record names reference images (a multi-reference dataset).
    pub fn has_references(&self) -> bool {
        self.records
            .iter()
            .any(|(_, r)| r.as_ref().is_ok_and(|r| !r.references.is_empty()))
    }

    fn read_image(&self, rel: &str, line: usize) -> Result<SampleImage> {
        // A manifest names images inside its own folder; an absolute path or `..` would let a
        // downloaded manifest copy any readable file (`/etc/...`) into a converted dataset.
        let escapes = Path::new(rel).components().any(|c| {
            matches!(
                c,
                std::path::Component::ParentDir
                    | std::path::Component::RootDir
                    | std::path::Component::Prefix(_)
            )
        });
        if escapes {
            return Err(Error::Line {
                path: self.manifest.clone(),
                line,
                message: format!(
                    "image path {rel:?} leaves the manifest's folder (absolute or `..`); paths are relative to {}",
                    self.root.display()
                ),
            });
        }
        let path = self.root.join(rel);
        let bytes = std::fs::read(&path).map_err(|e| Error::Line {
            path: self.manifest.clone(),
            line,
            message: format!("{}: {e}", path.display()),
        })?;
        Ok(SampleImage::encoded(bytes, path.display().to_string()))
    }

    fn sample(&self, line: usize, record: &Result<Record>) -> Result<Sample> {
        let r = match record {
            Ok(r) => r,
            Err(e) => {
                return Err(Error::Line {
                    path: self.manifest.clone(),
                    line,
                    message: match e {
                        Error::Line { message, .. } => message.clone(),
                        other => other.to_string(),
                    },
                });
            }
        };
        let mut s = Sample::new(
            r.id.clone().unwrap_or_else(|| line.to_string()),
            r.instruction.clone(),
            self.read_image(&r.image, line)?,
        );
        s.references = r
            .references
            .iter()
            .map(|p| self.read_image(p, line))
            .collect::<Result<_>>()?;
        s.subset = r.subset.clone();
        s.category = r.category.clone();
        s.metadata = r.metadata.clone();
        Ok(s)
    }
}

impl DataSource for FolderDataset {
    fn name(&self) -> String {
        self.manifest.display().to_string()
    }

    fn len_hint(&self) -> Option<usize> {
        Some(self.records.len())
    }

    fn samples(&self) -> Box<dyn Iterator<Item = echo4o_core::Result<Sample>> + Send + '_> {
        Box::new(
            self.records
                .iter()
                .map(|(line, r)| self.sample(*line, r).map_err(Into::into)),
        )
    }
}

fn extension_of(img: &SampleImage) -> &'static str {
    let Some(bytes) = img.encoded_bytes() else {
        return "png";
    };
    match echo4o_core::image::guess_format(bytes) {
        Ok(echo4o_core::image::ImageFormat::Jpeg) => "jpg",
        Ok(echo4o_core::image::ImageFormat::WebP) => "webp",
        Ok(echo4o_core::image::ImageFormat::Png) => "png",
        _ => "img",
    }
}

fn write_image(img: &SampleImage, path: &Path) -> Result<()> {
    match img.encoded_bytes() {
        // Keep the original bytes: re-encoding would change them.
        Some(bytes) => echo4o_core::fs::write_atomic(path, bytes)?,
        None => echo4o_core::save_image(&img.to_rgb()?, path)?,
    }
    Ok(())
}

/// Writes samples as a folder dataset in `out` (`data.jsonl` + `images/`), keeping encoded
/// images byte for byte. Stops at the first bad sample; returns how many were written.
pub fn write_folder(
    out: &Path,
    samples: impl IntoIterator<Item = echo4o_core::Result<Sample>>,
) -> Result<usize> {
    let mut lines = String::new();
    let mut n = 0;
    for sample in samples {
        let s = sample?;
        let target = format!("images/{n:06}.{}", extension_of(&s.target));
        write_image(&s.target, &out.join(&target))?;
        let mut references = Vec::new();
        for (k, r) in s.references.iter().enumerate() {
            let rel = format!("images/{n:06}_ref{k}.{}", extension_of(r));
            write_image(r, &out.join(&rel))?;
            references.push(rel);
        }
        let record = Record {
            id: Some(s.id.clone()),
            instruction: s.instruction.clone(),
            image: target,
            references,
            subset: s.subset.clone(),
            category: s.category.clone(),
            metadata: s.metadata.clone(),
        };
        lines.push_str(&serde_json::to_string(&record).map_err(|e| Error::Layout {
            path: out.to_path_buf(),
            message: e.to_string(),
        })?);
        lines.push('\n');
        n += 1;
    }
    echo4o_core::fs::write_atomic(&out.join("data.jsonl"), lines.as_bytes())?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use echo4o_core::InMemorySource;

    fn jpeg(shade: u8) -> Vec<u8> {
        echo4o_core::encode_jpeg(
            &echo4o_core::image::RgbImage::from_pixel(8, 6, echo4o_core::image::Rgb([shade, 0, 0])),
            90,
        )
        .unwrap()
    }

    #[test]
    fn write_then_read_gives_the_same_samples() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Sample::new("a", "a red square", SampleImage::encoded(jpeg(200), "mem"))
            .with_subset("Instruction-Following-Image")
            .with_category("easy");
        a.metadata.insert("task_type".into(), "t2i".into());
        let b = Sample::new("b", "combine them", SampleImage::encoded(jpeg(10), "mem"))
            .with_references(vec![
                SampleImage::encoded(jpeg(50), "mem"),
                SampleImage::decoded(echo4o_core::image::RgbImage::new(4, 4), "mem"),
            ]);
        let source = InMemorySource::new("x", vec![a.clone(), b.clone()]);
        assert_eq!(write_folder(dir.path(), source.samples()).unwrap(), 2);

        let back = FolderDataset::open(&dir.path().join("data.jsonl")).unwrap();
        let got: Vec<Sample> = back.samples().map(|s| s.unwrap()).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].id.as_str(), got[0].instruction.as_str()),
            ("a", "a red square")
        );
        assert_eq!(
            got[0].target.encoded_bytes().unwrap(),
            a.target.encoded_bytes().unwrap()
        );
        assert_eq!(
            got[0].subset.as_deref(),
            Some("Instruction-Following-Image")
        );
        assert_eq!(got[0].metadata["task_type"], "t2i");
        assert_eq!(got[1].references.len(), 2);
        assert_eq!(
            got[1].references[1].to_rgb().unwrap(),
            echo4o_core::image::RgbImage::new(4, 4)
        );
    }

    #[test]
    fn a_manifest_naming_etc_or_dot_dot_is_refused_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("data");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::write(dir.path().join("secret.png"), b"not yours").unwrap();
        std::fs::write(inner.join("ok.png"), b"an image").unwrap();
        let manifest = inner.join("data.jsonl");
        std::fs::write(
            &manifest,
            "{\"instruction\": \"x\", \"image\": \"/etc/hostname\"}\n{\"instruction\": \"y\", \"image\": \"../secret.png\"}\n{\"instruction\": \"z\", \"image\": \"ok.png\", \"references\": [\"../../../etc/passwd\"]}\n",
        )
        .unwrap();
        let ds = FolderDataset::open(&manifest).unwrap();
        let r: Vec<_> = ds.samples().collect();
        for (i, s) in r.iter().enumerate() {
            let e = s.as_ref().unwrap_err().to_string();
            assert!(
                e.contains(&format!("data.jsonl:{}:", i + 1))
                    && e.contains("leaves the manifest's folder"),
                "{e}"
            );
        }
    }

    #[test]
    fn bad_lines_and_missing_images_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ok.png"),
            echo4o_core::encode_image(
                &echo4o_core::image::RgbImage::new(2, 2),
                echo4o_core::image::ImageFormat::Png,
            )
            .unwrap(),
        )
        .unwrap();
        let manifest = dir.path().join("m.jsonl");
        std::fs::write(&manifest, "{\"instruction\": \"x\", \"image\": \"ok.png\"}\n{not json\n{\"instruction\": \"y\", \"target\": \"gone.png\"}\n").unwrap();
        let ds = FolderDataset::open(&manifest).unwrap();
        let r: Vec<_> = ds.samples().collect();
        assert!(r[0].is_ok());
        let e1 = r[1].as_ref().unwrap_err().to_string();
        assert!(e1.contains("m.jsonl:2:"), "{e1}");
        let e2 = r[2].as_ref().unwrap_err().to_string();
        assert!(e2.contains("m.jsonl:3:") && e2.contains("gone.png"), "{e2}");
    }
}
