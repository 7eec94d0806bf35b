//! From any [`Generator`] to any [`Benchmark`]'s score: generate what is missing in the
//! official layout (resumable, atomic writes), possibly as one shard of many, then score.
//!
//! Shard invariance is by construction: the seed of every image is [`sample_seed`] of
//! (benchmark, item id, sample index, base seed), never of the shard or the process, and each
//! item's images are written by exactly one shard. So 1 process or 64 GPUs on 8 hosts give the
//! same files; [`merge`] joins shard folders (refusing two different files for one path) and the
//! merged folder is scored once.
//!
//! ```no_run
//! use echo4o_bench::eval::{generate, EvalPlan, NoGenProgress, Shard};
//! use echo4o_bench::suite::{by_name, Options};
//! use echo4o_core::FolderGenerator;
//!
//! # async fn demo() -> echo4o_bench::Result<()> {
//! let bench = by_name("geneval-pp-shapes", &Options::default())?;
//! let generator = FolderGenerator::new("elsewhere");
//! let plan = EvalPlan::new("out", 42).with_shard("1/3".parse()?);
//! let report = generate(bench.as_ref(), &generator, &plan, &NoGenProgress).await?;
//! println!("{} generated, {} already there", report.generated, report.existing);
//! # Ok(()) }
//! ```

mod merge;
mod scored;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use echo4o_core::{GenerationRequest, Generator};
use serde::{Deserialize, Serialize};

pub use merge::merge;
pub use scored::{ScoredImage, score_with};

use crate::suite::{Benchmark, crop_to_content};
use crate::{Error, Result};

/// Shard `index` of `count` (0-based, as SLURM array and Kubernetes completion indices are):
/// item `i` belongs to shard `i % count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: usize,
    /// How many shards there are.
    pub count: usize,
}

impl Shard {
    /// The whole benchmark in one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether item `i` is this shard's.
    pub fn owns(&self, i: usize) -> bool {
        i % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = Error;

    /// `I/N` with `0 <= I < N`.
    fn from_str(s: &str) -> Result<Self> {
        let bad =
            |why: &str| Error::invalid("shard", format!("`{s}`: {why} (expected I/N, 0 <= I < N)"));
        let (i, n) = s.split_once('/').ok_or_else(|| bad("no `/`"))?;
        let index: usize = i.trim().parse().map_err(|_| bad("I is not a number"))?;
        let count: usize = n.trim().parse().map_err(|_| bad("N is not a number"))?;
        if count == 0 || index >= count {
            return Err(bad("out of range"));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The seed of image `sample` of item `id` of `benchmark` under `base`: FNV-1a (64-bit) over the
/// four fields, each ended by a 0xff byte, then SplitMix64's finaliser. Stable across versions,
/// platforms, shard counts and processes.
///
/// ```
/// use echo4o_bench::eval::sample_seed;
/// let a = sample_seed("geneval", "00012", 0, 42);
/// assert_eq!(a, sample_seed("geneval", "00012", 0, 42));
/// assert_ne!(a, sample_seed("geneval", "00012", 1, 42));
/// assert_ne!(a, sample_seed("geneval-long", "00012", 0, 42));
/// ```
pub fn sample_seed(benchmark: &str, id: &str, sample: usize, base: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes.iter().chain(&[0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(benchmark.as_bytes());
    eat(id.as_bytes());
    eat(&(sample as u64).to_le_bytes());
    eat(&base.to_le_bytes());
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What to generate, where.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalPlan {
    /// The output folder: images under `images/`, the manifest `eval.json`, scores beside.
    pub out: PathBuf,
    /// The base seed.
    pub seed: u64,
    /// Images per item (`None`: the recipe's).
    pub samples: Option<usize>,
    /// This process's shard.
    pub shard: Shard,
    /// Only the first `limit` items (a smoke run); `None`: all.
    pub limit: Option<usize>,
}

impl EvalPlan {
    /// All items, the recipe's image count, one shard.
    pub fn new(out: impl Into<PathBuf>, seed: u64) -> Self {
        EvalPlan {
            out: out.into(),
            seed,
            samples: None,
            shard: Shard::ALL,
            limit: None,
        }
    }

    /// Sets the shard.
    pub fn with_shard(mut self, shard: Shard) -> Self {
        self.shard = shard;
        self
    }

    /// Sets the images per item.
    pub fn with_samples(mut self, samples: usize) -> Self {
        self.samples = Some(samples);
        self
    }

    /// Limits the run to the first `n` items.
    pub fn with_limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// The image folder.
    pub fn images(&self) -> PathBuf {
        self.out.join("images")
    }
}

/// `eval.json`: what an output folder holds, so that a rerun resumes only the same plan and
/// [`merge`] joins only shards of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The benchmark name.
    pub benchmark: String,
    /// The generator's name.
    pub generator: String,
    /// The base seed.
    pub seed: u64,
    /// Images per item.
    pub samples: usize,
    /// Items evaluated (after `limit`).
    pub items: usize,
    /// The shard this folder holds (`0/1` for a merged or unsharded folder).
    pub shard: Shard,
}

impl Manifest {
    fn path(out: &Path) -> PathBuf {
        out.join("eval.json")
    }

    /// Reads `out/eval.json`.
    pub fn read(out: &Path) -> Result<Manifest> {
        let path = Self::path(out);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))
    }

    fn write(&self, out: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid("eval.json", e.to_string()))?;
        echo4o_core::fs::write_atomic(&Self::path(out), text.as_bytes())?;
        Ok(())
    }

    /// Writes the manifest, or checks that the folder's existing one describes the same plan.
    pub(crate) fn claim(&self, out: &Path) -> Result<()> {
        if !Self::path(out).is_file() {
            return self.write(out);
        }
        let old = Self::read(out)?;
        if &old != self {
            return Err(Error::invalid(
                Self::path(out).display().to_string(),
                format!(
                    "this folder holds another evaluation ({}); use another --out, or remove it \
                     to start over (this run: {})",
                    old.describe(),
                    self.describe()
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "{} by {}, seed {}, {} per item, {} items, shard {}",
            self.benchmark, self.generator, self.seed, self.samples, self.items, self.shard
        )
    }
}

/// Hooks for generation progress; every method defaults to doing nothing.
pub trait GenProgress: Send + Sync {
    /// Generation starts: `total` images for this shard, `existing` of them already written.
    fn start(&self, _total: usize, _existing: usize) {}
    /// An image was written (or failed).
    fn image(&self, _id: &str, _sample: usize) {}
    /// Generation is over.
    fn finish(&self) {}
}

/// A [`GenProgress`] that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoGenProgress;
impl GenProgress for NoGenProgress {}

/// What [`generate`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationReport {
    /// Images written by this call.
    pub generated: usize,
    /// Images found already written (by an earlier, interrupted run).
    pub existing: usize,
    /// Items whose generation failed: (item id, error). Their images are missing; a rerun
    /// retries them.
    pub failed: Vec<(String, String)>,
}

/// The number of images per item a plan asks of a benchmark, checked against its layout.
fn samples_of(bench: &dyn Benchmark, plan: &EvalPlan) -> Result<usize> {
    let recipe = bench.recipe();
    let n = plan.samples.unwrap_or(recipe.samples);
    if n == 0 {
        return Err(Error::invalid("samples", "must be at least 1"));
    }
    if let Some(max) = recipe.max_samples
        && n > max
    {
        return Err(Error::invalid(
            "samples",
            format!(
                "{} holds {max} image(s) per item in its official layout; {n} asked",
                bench.name()
            ),
        ));
    }
    Ok(n)
}

fn item_count(bench: &dyn Benchmark, plan: &EvalPlan) -> usize {
    plan.limit
        .map_or(bench.items().len(), |l| l.min(bench.items().len()))
}

/// Generates every image of this shard that is not yet written, in the official layout under
/// `plan.images()`, one request per image with its [`sample_seed`]. Writes are atomic, so an
/// interrupted run leaves only whole images, and a rerun of the same plan continues. A failed
/// item is reported and the others go on.
pub async fn generate(
    bench: &dyn Benchmark,
    generator: &dyn Generator,
    plan: &EvalPlan,
    progress: &dyn GenProgress,
) -> Result<GenerationReport> {
    let samples = samples_of(bench, plan)?;
    let count = item_count(bench, plan);
    let manifest = Manifest {
        benchmark: bench.name().to_string(),
        generator: generator.name(),
        seed: plan.seed,
        samples,
        items: count,
        shard: plan.shard,
    };
    if !generator.accepts_references()
        && let Some(item) = bench.items()[..count]
            .iter()
            .find(|i| !i.references.is_empty())
    {
        return Err(Error::invalid(
            "generator",
            format!(
                "{} takes no reference images, and {} items need them (item {} has {})",
                generator.name(),
                bench.name(),
                item.id,
                item.references.len()
            ),
        ));
    }
    std::fs::create_dir_all(&plan.out).map_err(|e| Error::io(&plan.out, e))?;
    manifest.claim(&plan.out)?;
    let images = plan.images();
    let recipe = bench.recipe();
    let mine: Vec<usize> = (0..count).filter(|&i| plan.shard.owns(i)).collect();
    let mut todo = Vec::new();
    let mut report = GenerationReport::default();
    for &i in &mine {
        for k in 0..samples {
            if bench.image_path(&images, i, k).is_file() {
                report.existing += 1;
            } else {
                todo.push((i, k));
            }
        }
    }
    progress.start(mine.len() * samples, report.existing);
    let mut failed_item = None;
    for (i, k) in todo {
        let item = &bench.items()[i];
        if failed_item == Some(i) {
            continue;
        }
        let outcome = async {
            bench.prepare(&images, i)?;
            let references = item
                .references
                .iter()
                .map(|r| r.load())
                .collect::<Result<Vec<_>>>()?;
            let request = GenerationRequest::new(item.id.clone(), item.prompt.clone())
                .with_size(recipe.width, recipe.height)
                .with_size_rule(recipe.size_rule)
                .with_references(references)
                .with_sampler(recipe.sampler.clone())
                .with_seed(sample_seed(bench.name(), &item.id, k, plan.seed));
            let mut image = generator
                .generate(&request)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| Error::invalid("generator", "returned no image"))?;
            if recipe.crop_to_content {
                image = crop_to_content(&image);
            }
            echo4o_core::save_image(&image, &bench.image_path(&images, i, k))?;
            Ok::<(), Error>(())
        }
        .await;
        match outcome {
            Ok(()) => report.generated += 1,
            Err(e) => {
                report.failed.push((item.id.clone(), e.to_string()));
                failed_item = Some(i);
            }
        }
        progress.image(&item.id, k);
    }
    progress.finish();
    Ok(report)
}

/// The paths of images a complete evaluation of `manifest` needs that `images` lacks.
pub fn missing_images(bench: &dyn Benchmark, manifest: &Manifest, images: &Path) -> Vec<PathBuf> {
    (0..manifest.items)
        .flat_map(|i| (0..manifest.samples).map(move |k| (i, k)))
        .map(|(i, k)| bench.image_path(images, i, k))
        .filter(|p| !p.is_file())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{Options, by_name};
    use async_trait::async_trait;
    use image::{Rgb, RgbImage};

    /// Paints each image with bytes of its seed, so files tell which seed made them.
    struct SeedPainter;

    #[async_trait]
    impl Generator for SeedPainter {
        fn name(&self) -> String {
            "seed-painter".into()
        }
        async fn generate(&self, req: &GenerationRequest) -> echo4o_core::Result<Vec<RgbImage>> {
            if req.prompt.contains("fail me") {
                return Err(echo4o_core::Error::Generator {
                    generator: self.name(),
                    message: "asked to".into(),
                });
            }
            let b = req.seed.to_le_bytes();
            Ok(vec![RgbImage::from_pixel(
                req.width,
                req.height,
                Rgb([b[0], b[1], b[2]]),
            )])
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn shards_parse_and_partition() {
        let s: Shard = "2/3".parse().unwrap();
        assert_eq!((s.index, s.count, s.to_string()), (2, 3, "2/3".to_string()));
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            let err = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
        let owners: Vec<usize> = (0..7)
            .map(|i| {
                (0..3)
                    .filter(|&j| Shard { index: j, count: 3 }.owns(i))
                    .count()
            })
            .collect();
        assert_eq!(owners, vec![1; 7]);
    }

    #[test]
    fn seeds_are_pinned() {
        // Changing the rule changes every image of every evaluation: this must not happen
        // silently.
        assert_eq!(
            sample_seed("geneval", "00000", 0, 42),
            0xc4a5_a62d_e654_1bf2
        );
    }

    #[test]
    fn sharded_runs_write_the_same_files_as_one_and_resume() {
        let bench = by_name("geneval-pp-shapes", &Options::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let one = EvalPlan::new(dir.path().join("one"), 7)
            .with_limit(5)
            .with_samples(2);
        let r = block_on(generate(bench.as_ref(), &SeedPainter, &one, &NoGenProgress)).unwrap();
        assert_eq!((r.generated, r.existing), (10, 0));
        let again = block_on(generate(bench.as_ref(), &SeedPainter, &one, &NoGenProgress)).unwrap();
        assert_eq!((again.generated, again.existing), (0, 10));

        let mut shards = Vec::new();
        for i in 0..3 {
            let plan = EvalPlan {
                out: dir.path().join(format!("s{i}")),
                shard: Shard { index: i, count: 3 },
                ..one.clone()
            };
            block_on(generate(
                bench.as_ref(),
                &SeedPainter,
                &plan,
                &NoGenProgress,
            ))
            .unwrap();
            shards.push(plan.out);
        }
        let merged_dir = dir.path().join("merged");
        let m = merge(bench.as_ref(), &merged_dir, &shards).unwrap();
        assert_eq!(m, Manifest::read(&dir.path().join("one")).unwrap());
        assert!(missing_images(bench.as_ref(), &m, &merged_dir.join("images")).is_empty());
        for i in 0..5 {
            for k in 0..2 {
                let a = std::fs::read(bench.image_path(&one.images(), i, k)).unwrap();
                let b = std::fs::read(bench.image_path(&merged_dir.join("images"), i, k)).unwrap();
                assert_eq!(a, b, "item {i} sample {k}");
            }
            let meta = format!("{i:05}/metadata.jsonl");
            assert_eq!(
                std::fs::read(one.images().join(&meta)).unwrap(),
                std::fs::read(merged_dir.join("images").join(&meta)).unwrap()
            );
        }

        // Incomplete, repeated or foreign shard sets are refused.
        let err = merge(bench.as_ref(), &dir.path().join("m2"), &shards[..2]).unwrap_err();
        assert!(err.to_string().contains("shards 2/3"), "{err}");
        let twice = vec![shards[0].clone(), shards[0].clone(), shards[1].clone()];
        let err = merge(bench.as_ref(), &dir.path().join("m3"), &twice).unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");
        let err = merge(
            bench.as_ref(),
            &dir.path().join("m4"),
            &[dir.path().join("one"), shards[0].clone()],
        );
        assert!(err.is_err());
    }

    /// A downstream scorer: the red channel of the first pixel, failing on item 00001.
    struct Red(std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl echo4o_core::Scorer for Red {
        type Item = crate::suite::EvalItem;
        async fn score(
            &self,
            item: &crate::suite::EvalItem,
            image: &RgbImage,
        ) -> echo4o_core::Result<echo4o_core::Verdict> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if item.id == "00001" {
                return Err(echo4o_core::Error::invalid("red", "no opinion"));
            }
            let r = f64::from(image.get_pixel(0, 0).0[0]);
            Ok(echo4o_core::Verdict {
                score: r,
                passed: Some(r > 127.0),
                reason: format!("red {r}"),
                details: serde_json::Value::Null,
                usage: echo4o_core::Usage::default(),
            })
        }
    }

    #[test]
    fn any_scorer_plugs_in_and_resumes() {
        let bench = by_name("geneval-shapes", &Options::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let plan = EvalPlan::new(dir.path(), 5).with_limit(3).with_samples(2);
        block_on(generate(
            bench.as_ref(),
            &SeedPainter,
            &plan,
            &NoGenProgress,
        ))
        .unwrap();
        let red = Red(Default::default());
        let s = block_on(score_with(
            bench.as_ref(),
            &red,
            dir.path(),
            2,
            &crate::runner::NoProgress,
        ))
        .unwrap();
        assert_eq!(red.0.load(std::sync::atomic::Ordering::SeqCst), 6);
        assert_eq!((s.scored, s.failures.len()), (4, 2));
        assert!(s.failures[0].1.contains("no opinion"), "{:?}", s.failures);
        let reds: Vec<f64> = [0usize, 2]
            .iter()
            .flat_map(|&i| (0..2).map(move |k| (i, k)))
            .map(|(i, k)| {
                let seed = sample_seed("geneval-shapes", &format!("{i:05}"), k, 5);
                f64::from(seed.to_le_bytes()[0])
            })
            .collect();
        let want = reds.iter().sum::<f64>() / 4.0;
        assert_eq!(
            s.categories.len(),
            1,
            "the first three items are single_object"
        );
        assert!((s.overall - want).abs() < 1e-9, "{} vs {want}", s.overall);
        assert!(dir.path().join("report.html").is_file());

        let again = block_on(score_with(
            bench.as_ref(),
            &red,
            dir.path(),
            2,
            &crate::runner::NoProgress,
        ))
        .unwrap();
        assert_eq!(
            red.0.load(std::sync::atomic::Ordering::SeqCst),
            6,
            "all resumed"
        );
        assert_eq!((again.resumed, again.overall), (6, s.overall));
    }

    struct TextOnly;

    #[async_trait]
    impl Generator for TextOnly {
        fn name(&self) -> String {
            "text-only".into()
        }
        async fn generate(&self, _: &GenerationRequest) -> echo4o_core::Result<Vec<RgbImage>> {
            unreachable!("refused before any request")
        }
        fn accepts_references(&self) -> bool {
            false
        }
    }

    #[test]
    fn a_text_only_generator_is_refused_references_before_any_work() {
        use crate::omnicontext::{Item, OmniContext};
        use crate::suite::ReferenceImage;
        let bench = OmniContext::with_items(vec![Item {
            key: "k".into(),
            task_type: "multi_object".into(),
            instruction: "put them together".into(),
            language: "en".into(),
            inputs: vec![ReferenceImage::File("a.png".into()); 2],
        }]);
        let dir = tempfile::tempdir().unwrap();
        let plan = EvalPlan::new(dir.path().join("o"), 1);
        let err = block_on(generate(&bench, &TextOnly, &plan, &NoGenProgress))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("text-only takes no reference images") && err.contains("item k has 2"),
            "{err}"
        );
        assert!(!dir.path().join("o").exists(), "nothing written");
    }

    #[test]
    fn another_plan_in_the_same_folder_is_refused() {
        let bench = by_name("geneval-shapes", &Options::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let plan = EvalPlan::new(dir.path(), 1).with_limit(1).with_samples(1);
        block_on(generate(
            bench.as_ref(),
            &SeedPainter,
            &plan,
            &NoGenProgress,
        ))
        .unwrap();
        let other = EvalPlan { seed: 2, ..plan };
        let err = block_on(generate(
            bench.as_ref(),
            &SeedPainter,
            &other,
            &NoGenProgress,
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("another evaluation") && err.contains("seed 1"),
            "{err}"
        );
    }

    #[test]
    fn the_layout_limits_samples_and_failures_are_reported() {
        let bench = by_name("geneval-pp", &Options::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let plan = EvalPlan::new(dir.path(), 1).with_samples(2);
        let err = block_on(generate(
            bench.as_ref(),
            &SeedPainter,
            &plan,
            &NoGenProgress,
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("1 image(s) per item"), "{err}");

        let plan = EvalPlan::new(dir.path(), 1).with_limit(2);
        let r = block_on(generate(
            bench.as_ref(),
            &SeedPainter,
            &plan,
            &NoGenProgress,
        ))
        .unwrap();
        assert_eq!(r.generated, 2);
        assert!(dir.path().join("images/1.jpg").is_file());
    }
}
