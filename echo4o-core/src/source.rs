//! The [`DataSource`] plug-in trait and the in-memory source.

use crate::{Result, Sample};

/// Anything that yields [`Sample`]s: Echo-4o-Image snapshots, Bagel parquet files, a JSONL
/// manifest over a folder, the procedural shapes world, or samples held in memory.
///
/// Reading is synchronous (local files); the iterator yields `Err` for a bad record and the caller
/// decides whether to skip it or stop, so a bad record never silently shortens a dataset.
///
/// # Example: a source of your own
///
/// ```
/// use echo4o_core::{DataSource, Result, Sample, SampleImage};
///
/// /// Solid-color squares, one per color name.
/// struct Swatches(Vec<(&'static str, [u8; 3])>);
///
/// impl DataSource for Swatches {
///     fn name(&self) -> String {
///         "swatches".into()
///     }
///     fn len_hint(&self) -> Option<usize> {
///         Some(self.0.len())
///     }
///     fn samples(&self) -> Box<dyn Iterator<Item = Result<Sample>> + Send + '_> {
///         Box::new(self.0.iter().map(|(name, rgb)| {
///             let img = image::RgbImage::from_pixel(32, 32, image::Rgb(*rgb));
///             let target = SampleImage::decoded(img, format!("swatch:{name}"));
///             Ok(Sample::new(*name, format!("a {name} square"), target))
///         }))
///     }
/// }
///
/// let source = Swatches(vec![("red", [255, 0, 0]), ("blue", [0, 0, 255])]);
/// let captions: Vec<String> = source.samples().map(|s| s.unwrap().instruction).collect();
/// assert_eq!(captions, ["a red square", "a blue square"]);
/// ```
pub trait DataSource: Send + Sync {
    /// A short human-readable name (shown in progress bars and reports).
    fn name(&self) -> String;

    /// The number of samples, when known without reading the data.
    fn len_hint(&self) -> Option<usize> {
        None
    }

    /// Iterates over the samples in a deterministic order.
    fn samples(&self) -> Box<dyn Iterator<Item = Result<Sample>> + Send + '_>;
}

/// A [`DataSource`] over samples held in memory: for tests, for data built by a program, and as
/// the target of `collect`-style conversions.
///
/// ```
/// use echo4o_core::{DataSource, InMemorySource, Sample, SampleImage};
///
/// let img = image::RgbImage::new(8, 8);
/// let source = InMemorySource::new("demo", vec![
///     Sample::new("0", "a black square", SampleImage::decoded(img, "memory")),
/// ]);
/// assert_eq!(source.len_hint(), Some(1));
/// assert_eq!(source.samples().count(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct InMemorySource {
    name: String,
    samples: Vec<Sample>,
}

impl InMemorySource {
    /// A source named `name` over `samples`, yielded in the order given.
    pub fn new(name: impl Into<String>, samples: Vec<Sample>) -> Self {
        InMemorySource {
            name: name.into(),
            samples,
        }
    }

    /// Reads every sample of another source into memory, stopping at the first error.
    pub fn collect_from(source: &dyn DataSource) -> Result<Self> {
        let samples = source.samples().collect::<Result<Vec<_>>>()?;
        Ok(InMemorySource::new(source.name(), samples))
    }

    /// Appends a sample.
    pub fn push(&mut self, sample: Sample) {
        self.samples.push(sample);
    }

    /// The samples, in order.
    pub fn as_slice(&self) -> &[Sample] {
        &self.samples
    }
}

impl DataSource for InMemorySource {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn len_hint(&self) -> Option<usize> {
        Some(self.samples.len())
    }

    fn samples(&self) -> Box<dyn Iterator<Item = Result<Sample>> + Send + '_> {
        Box::new(self.samples.iter().cloned().map(Ok))
    }
}

impl FromIterator<Sample> for InMemorySource {
    fn from_iter<I: IntoIterator<Item = Sample>>(iter: I) -> Self {
        InMemorySource::new("memory", iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, SampleImage};

    fn sample(i: usize) -> Sample {
        Sample::new(
            i.to_string(),
            format!("caption {i}"),
            SampleImage::decoded(image::RgbImage::new(2, 2), "memory"),
        )
    }

    #[test]
    fn yields_samples_in_order_and_repeatably() {
        let source: InMemorySource = (0..5).map(sample).collect();
        for _ in 0..2 {
            let ids: Vec<_> = source.samples().map(|s| s.unwrap().id).collect();
            assert_eq!(ids, ["0", "1", "2", "3", "4"]);
        }
    }

    struct Failing;
    impl DataSource for Failing {
        fn name(&self) -> String {
            "failing".into()
        }
        fn samples(&self) -> Box<dyn Iterator<Item = Result<Sample>> + Send + '_> {
            Box::new(
                [
                    Ok(sample(0)),
                    Err(Error::invalid("line 2", "not JSON")),
                    Ok(sample(2)),
                ]
                .into_iter(),
            )
        }
    }

    #[test]
    fn collect_from_stops_at_the_first_bad_record() {
        let err = InMemorySource::collect_from(&Failing).unwrap_err();
        assert_eq!(err.to_string(), "invalid line 2: not JSON");
        let mut ok =
            InMemorySource::collect_from(&InMemorySource::new("x", vec![sample(1)])).unwrap();
        ok.push(sample(2));
        assert_eq!(ok.as_slice().len(), 2);
        assert_eq!(ok.name(), "x");
    }
}
