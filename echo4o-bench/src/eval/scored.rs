//! Scoring an evaluation with any [`Scorer`]: the seam where a downstream scorer (a local VLM,
//! a reward model, a human rating tool) plugs in without touching this crate.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use echo4o_core::{Scorer, Verdict};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::Manifest;
use crate::report::{Category, GalleryRow, Summary, write_reports};
use crate::runner::Progress;
use crate::store::ResultStore;
use crate::suite::{Benchmark, EvalItem};
use crate::{Error, Result};

/// One line of `verdicts.jsonl`: an image and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredImage {
    /// The item id.
    pub id: String,
    /// The item's group (task, tag, type).
    pub group: String,
    /// The sample index.
    pub sample: usize,
    /// The image scored.
    pub image: String,
    /// The verdict; `None` when the image could not be read or the scorer failed.
    pub verdict: Option<Verdict>,
    /// Why there is no verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Scores every image the manifest of `out` names (all items, all samples) with `scorer`,
/// `concurrency` at once, appending each to `out/verdicts.jsonl` as it finishes (a rerun
/// resumes), then writes `summary.json` and the reports: per group the mean score (and passes),
/// overall the mean over groups. An image that cannot be read, or that the scorer fails on, is
/// listed as a failure and left out of the means.
///
/// ```no_run
/// use echo4o_bench::eval::score_with;
/// use echo4o_bench::runner::NoProgress;
/// use echo4o_bench::suite::{by_name, EvalItem, Options};
/// use echo4o_core::{Result, Scorer, Usage, Verdict};
///
/// struct Brightness;
///
/// #[async_trait::async_trait]
/// impl Scorer for Brightness {
///     type Item = EvalItem;
///     async fn score(&self, _item: &EvalItem, image: &image::RgbImage) -> Result<Verdict> {
///         let raw = image.as_raw();
///         let mean = raw.iter().map(|&v| v as f64).sum::<f64>() / raw.len() as f64;
///         Ok(Verdict { score: mean, passed: None, reason: String::new(),
///                      details: serde_json::Value::Null, usage: Usage::default() })
///     }
/// }
///
/// # async fn demo() -> echo4o_bench::Result<()> {
/// let bench = by_name("geneval-pp-shapes", &Options::default())?;
/// let dir = std::path::Path::new("runs/eval");
/// let summary = score_with(bench.as_ref(), &Brightness, dir, 4, &NoProgress).await?;
/// println!("mean brightness {}", summary.overall);
/// # Ok(()) }
/// ```
pub async fn score_with(
    bench: &dyn Benchmark,
    scorer: &dyn Scorer<Item = EvalItem>,
    out: &Path,
    concurrency: usize,
    progress: &dyn Progress,
) -> Result<Summary> {
    if concurrency == 0 {
        return Err(Error::invalid("concurrency", "must be at least 1"));
    }
    let started = Instant::now();
    let manifest = Manifest::read(out)?;
    if manifest.benchmark != bench.name() {
        return Err(Error::invalid(
            "benchmark",
            format!(
                "{} holds {}, not {}",
                out.display(),
                manifest.benchmark,
                bench.name()
            ),
        ));
    }
    let images = out.join("images");
    let (store, previous) = ResultStore::open::<ScoredImage>(&out.join("verdicts.jsonl"))?;
    let done: BTreeMap<(String, usize), ScoredImage> = previous
        .into_iter()
        .map(|r| ((r.id.clone(), r.sample), r))
        .collect();
    let todo: Vec<(usize, usize)> = (0..manifest.items.min(bench.items().len()))
        .flat_map(|i| (0..manifest.samples).map(move |k| (i, k)))
        .filter(|&(i, k)| !done.contains_key(&(bench.items()[i].id.clone(), k)))
        .collect();
    let resumed = done.len();
    progress.start(todo.len() + resumed, resumed);
    let store = tokio::sync::Mutex::new(store);
    let mut fresh = Vec::new();
    let images = &images;
    let mut stream = futures::stream::iter(todo.into_iter().map(|(i, k)| async move {
        let item = &bench.items()[i];
        let path = bench.image_path(images, i, k);
        let outcome = match echo4o_core::load_image(&path) {
            Ok(img) => scorer.score(item, &img).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let (verdict, error) = match outcome {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        ScoredImage {
            id: item.id.clone(),
            group: item.group.clone(),
            sample: k,
            image: path.display().to_string(),
            verdict,
            error,
        }
    }))
    .buffer_unordered(concurrency);
    while let Some(record) = stream.next().await {
        store.lock().await.append(&record)?;
        progress.item(&record.id, record.verdict.is_none());
        fresh.push(record);
    }
    progress.finish();
    let records: Vec<ScoredImage> = done.into_values().chain(fresh).collect();
    summarize(bench, &records, out, resumed, started)
}

fn summarize(
    bench: &dyn Benchmark,
    records: &[ScoredImage],
    out: &Path,
    resumed: usize,
    started: Instant,
) -> Result<Summary> {
    let mut groups: Vec<String> = Vec::new();
    for item in bench.items() {
        if !groups.contains(&item.group) {
            groups.push(item.group.clone());
        }
    }
    let mut summary = Summary::new(bench.name());
    summary.images = out.join("images").display().to_string();
    summary.items = bench.items().len();
    summary.resumed = resumed;
    for g in &groups {
        let scored: Vec<&Verdict> = records
            .iter()
            .filter(|r| &r.group == g)
            .filter_map(|r| r.verdict.as_ref())
            .collect();
        if scored.is_empty() {
            continue;
        }
        let passed = scored
            .iter()
            .any(|v| v.passed.is_some())
            .then(|| scored.iter().filter(|v| v.passed == Some(true)).count());
        summary.categories.push(Category {
            name: g.clone(),
            count: scored.len(),
            passed,
            score: scored.iter().map(|v| v.score).sum::<f64>() / scored.len() as f64,
        });
    }
    summary.scored = summary.categories.iter().map(|c| c.count).sum();
    summary.overall = if summary.categories.is_empty() {
        0.0
    } else {
        summary.categories.iter().map(|c| c.score).sum::<f64>() / summary.categories.len() as f64
    };
    summary.overall_label = "mean over groups of the mean verdict score".into();
    summary.failures = records
        .iter()
        .filter_map(|r| {
            r.error
                .as_ref()
                .map(|e| (format!("{}[{}]", r.id, r.sample), e.clone()))
        })
        .collect();
    for r in records {
        if let Some(v) = &r.verdict {
            summary.usage += v.usage;
        }
    }
    summary.elapsed_s = started.elapsed().as_secs_f64();
    let prompts: std::collections::HashMap<&str, &str> = bench
        .items()
        .iter()
        .map(|i| (i.id.as_str(), i.prompt.as_str()))
        .collect();
    let rows: Vec<GalleryRow> = records
        .iter()
        .map(|r| GalleryRow {
            id: format!("{}[{}]", r.id, r.sample),
            category: r.group.clone(),
            // Every record is of an item of `bench` (the manifest named it).
            prompt: prompts
                .get(r.id.as_str())
                .copied()
                .unwrap_or_default()
                .to_string(),
            expectation: String::new(),
            verdict: r
                .verdict
                .as_ref()
                .map_or("failed".into(), |v| format!("{}", v.score)),
            passed: r.verdict.as_ref().and_then(|v| v.passed),
            reason: r
                .verdict
                .as_ref()
                .map_or_else(|| r.error.clone().unwrap_or_default(), |v| v.reason.clone()),
            image: Some(r.image.clone().into()),
        })
        .collect();
    write_reports(&summary, &rows, out)?;
    Ok(summary)
}
