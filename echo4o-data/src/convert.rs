//! Converting any dataset echo4o reads into another layout, streamed: samples go to the writer
//! as they are read, so memory stays bounded by one shard or row group whatever the input size.

use std::path::Path;

use echo4o_core::DataSource;

use crate::{Result, echo4o_image, folder, parquet};

/// The layout to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An Echo-4o-Image subset (JSONL + tar.gz shards) named `subset`.
    Echo4o {
        /// The subset folder's name.
        subset: String,
    },
    /// A JSONL manifest + image folder.
    Folder,
    /// Bagel parquet: `multi_ref` (`image_list` + `instruction_list`) or T2I (`image` +
    /// `captions`).
    Parquet {
        /// Whether to write the multi-reference schema.
        multi_ref: bool,
    },
}

/// What a conversion did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Converted {
    /// Samples written.
    pub written: usize,
    /// Bad samples skipped (with `skip_bad`), each as its error names it.
    pub skipped: Vec<String>,
}

/// Writes every sample of `source` to `out` in `target`'s layout (`group` images per shard, or
/// rows per row group). A bad sample stops the conversion unless `skip_bad`, which counts and
/// lists it instead; `progress` is called for each sample read.
///
/// ```
/// use echo4o_core::{InMemorySource, Sample, SampleImage};
/// use echo4o_data::convert::{Target, convert};
///
/// # let dir = tempfile::tempdir().unwrap();
/// let png = echo4o_core::encode_image(&image::RgbImage::new(4, 4), image::ImageFormat::Png)?;
/// let source = InMemorySource::new("mem", vec![Sample::new("a", "a cat", SampleImage::encoded(png, "mem"))]);
/// let out = dir.path().join("t2i.parquet");
/// let done = convert(&source, &Target::Parquet { multi_ref: false }, &out, 5000, false, &mut |_| {})?;
/// assert_eq!(done.written, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn convert(
    source: &dyn DataSource,
    target: &Target,
    out: &Path,
    group: usize,
    skip_bad: bool,
    progress: &mut dyn FnMut(usize),
) -> Result<Converted> {
    let mut skipped = Vec::new();
    let mut read = 0;
    let samples = source
        .samples()
        .inspect(|_| {
            read += 1;
            progress(read);
        })
        .filter(|s| match s {
            Err(e) if skip_bad => {
                skipped.push(e.to_string());
                false
            }
            _ => true,
        });
    let written = match target {
        Target::Echo4o { subset } => echo4o_image::write_echo4o(out, subset, samples, group)?,
        Target::Folder => folder::write_folder(out, samples)?,
        Target::Parquet { multi_ref: true } => parquet::write_multi_ref(out, samples, group)?,
        Target::Parquet { multi_ref: false } => parquet::write_t2i(out, samples, group)?,
    };
    Ok(Converted { written, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use echo4o_core::{Sample, SampleImage};

    /// A source that, before yielding sample `check_at`, checks that the writer has already put
    /// something on disk: it fails if the conversion first collects the whole input.
    struct Watched {
        file: std::path::PathBuf,
        check_at: usize,
    }

    impl DataSource for Watched {
        fn name(&self) -> String {
            "watched".into()
        }
        fn samples(&self) -> Box<dyn Iterator<Item = echo4o_core::Result<Sample>> + Send + '_> {
            // 64 KiB of incompressible bytes per sample: more than the writer's buffers even
            // after compression, so a flushed row group is on disk.
            let mut x = 0x2545_f491_u32;
            let bytes: Vec<u8> = (0..64 << 10)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            Box::new((0..10).map(move |i| {
                if i == self.check_at {
                    let len = std::fs::metadata(&self.file).map(|m| m.len()).unwrap_or(0);
                    assert!(
                        len > 0,
                        "nothing written before sample {i}: the input was collected"
                    );
                }
                Ok(Sample::new(
                    i.to_string(),
                    format!("p{i}"),
                    SampleImage::encoded(bytes.clone(), "mem"),
                ))
            }))
        }
    }

    #[test]
    fn conversion_streams_row_groups_while_reading() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("t.parquet");
        let source = Watched {
            file: out.with_extension("parquet.tmp"),
            check_at: 5,
        };
        let done = convert(
            &source,
            &Target::Parquet { multi_ref: false },
            &out,
            2,
            false,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(done.written, 10);
    }
}
