//! The judged-benchmark runner shared by GenEval++ and Imagine-Bench: many requests in flight,
//! results appended as they finish, resumable, with the official content-retry semantics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use echo4o_core::openai::OpenAiConfig;
use echo4o_core::{Judge, JudgeRequest, Scorer, Usage, Verdict};
use futures::StreamExt;
use image::RgbImage;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::report::{self, GalleryRow, Summary};
use crate::store::ResultStore;
use crate::{Error, Result};

/// What the judge made of one item, handed to [`JudgedBenchmark::record`].
#[derive(Debug)]
pub struct Judged<P> {
    /// The parsed reply and its raw text, or the error of the last failed attempt.
    pub outcome: std::result::Result<(P, String), String>,
    /// Requests made (0 when the image could not be read).
    pub attempts: u32,
    /// Tokens spent over all attempts.
    pub usage: Usage,
    /// The image judged.
    pub image: PathBuf,
}

/// What a benchmark does for an item without an image.
#[derive(Debug)]
pub enum Missing<R> {
    /// Score it with this record (GenEval++: `correct: 0, "Image not found"`).
    Record(R),
    /// Leave it out and list it (Imagine-Bench).
    Skip,
}

/// A benchmark whose images are judged by a chat model. Implemented by
/// [`GenEvalPp`](crate::geneval_pp::GenEvalPp) and [`ImagineBench`](crate::imagine::ImagineBench).
pub trait JudgedBenchmark: Send + Sync {
    /// A benchmark item.
    type Item: Send + Sync;
    /// A parsed judge reply.
    type Parsed: Send;
    /// One line of `results.jsonl`.
    type Record: Serialize + DeserializeOwned + Clone + Send + Sync;

    /// Short name (`geneval++`, `imagine-bench`).
    fn name(&self) -> &'static str;
    /// The items, in their official order.
    fn items(&self) -> &[Self::Item];
    /// A stable unique key of an item.
    fn key(&self, item: &Self::Item) -> String;
    /// The key of the item a record belongs to.
    fn record_key(&self, record: &Self::Record) -> String;
    /// Where the item's image may be, in order of preference.
    fn image_candidates(&self, images: &Path, item: &Self::Item) -> Vec<PathBuf>;
    /// What to do when no candidate exists.
    fn missing(&self, item: &Self::Item) -> Missing<Self::Record>;
    /// The judge request for the item, given its image as base64 JPEG.
    fn request(&self, item: &Self::Item, image_b64_jpeg: &str) -> JudgeRequest;
    /// Parses a reply; `Err` makes the attempt count as failed.
    fn parse(&self, text: &str) -> std::result::Result<Self::Parsed, Unreadable>;
    /// Pause between failed attempts. By default none.
    fn attempt_delay(&self) -> Duration {
        Duration::ZERO
    }
    /// Builds the record of a judged item.
    fn record(&self, item: &Self::Item, judged: Judged<Self::Parsed>) -> Self::Record;
    /// Writes the official output files and returns the summary's benchmark-specific part.
    fn write_outputs(&self, records: &[Self::Record], out: &Path) -> Result<Summary>;
    /// One row of the HTML gallery.
    fn gallery_row(
        &self,
        item: &Self::Item,
        record: &Self::Record,
        image: Option<PathBuf>,
    ) -> GalleryRow;
    /// Why a record counts as failed (every attempt failed), if it does.
    fn failed(&self, record: &Self::Record) -> Option<String>;
    /// Requests made and tokens spent for a record.
    fn spend(&self, record: &Self::Record) -> (u32, Usage);
    /// The record as a [`Verdict`].
    fn verdict(&self, record: &Self::Record) -> Verdict;
}

/// Hooks for progress display; every method defaults to doing nothing.
pub trait Progress: Send + Sync {
    /// The run starts: `total` items, `done` of them finished in an earlier run.
    fn start(&self, _total: usize, _done: usize) {}
    /// An item finished; `failed` when every attempt failed.
    fn item(&self, _key: &str, _failed: bool) {}
    /// All items are done.
    fn finish(&self) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The folder of images, in the benchmark's official naming.
    pub images: PathBuf,
    /// The output folder (results, official outputs, reports).
    pub out: PathBuf,
    /// Items judged at once. By default 8.
    pub concurrency: usize,
    /// Judge attempts per item (the official scripts make 3). By default 3.
    pub attempts: u32,
}

impl RunOptions {
    /// Options for `images` -> `out` with the defaults.
    pub fn new(images: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        RunOptions {
            images: images.into(),
            out: out.into(),
            concurrency: 8,
            attempts: 3,
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome<R> {
    /// The records, in item order (missing-image records included, skipped items not).
    pub records: Vec<R>,
    /// The summary also written to `summary.json`.
    pub summary: Summary,
}

fn find_image(candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates.iter().find(|p| p.is_file()).cloned()
}

/// The image at `path` as the base64 JPEG a judge request carries, decoded and encoded on the
/// blocking pool.
async fn encode(path: PathBuf) -> echo4o_core::Result<String> {
    tokio::task::spawn_blocking(move || {
        echo4o_core::load_image(&path).and_then(|img| echo4o_core::jpeg_base64(&img))
    })
    .await
    .unwrap_or_else(|e| {
        Err(echo4o_core::Error::invalid(
            "image encoding task",
            e.to_string(),
        ))
    })
}

/// Why a judge reply could not be read as a verdict: the attempt counts as failed, and the text
/// is what the record keeps as the reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

enum Done<R> {
    /// A verdict, with the fingerprint of the image it was given (taken before it was sent).
    Scored(R, Option<serde_json::Value>),
    MissingRecord(R),
    Skipped(String),
    /// Every transport retry failed (connection, timeout, 5xx): no verdict, a rerun retries.
    Unjudged(String, echo4o_core::Error),
    /// The judge refused for good (401, 403, quota): the run stops.
    Permanent(echo4o_core::Error),
}

/// How much of a judge reply (or error) is kept in records, reports and messages. A 10 MB
/// unparseable reply must not be copied into every output file.
pub const MAX_REPLY_CHARS: usize = 8192;

/// `text` cut to [`MAX_REPLY_CHARS`] characters, saying how much was cut.
pub fn cap_reply(text: String) -> String {
    match text.char_indices().nth(MAX_REPLY_CHARS) {
        Some((i, _)) => format!("{}... [{} more bytes cut]", &text[..i], text.len() - i),
        None => text,
    }
}

/// Why a run of judge requests for one item ended without a verdict to record.
enum NoVerdict {
    Transport(echo4o_core::Error),
    Permanent(echo4o_core::Error),
}

async fn judge_item<B: JudgedBenchmark>(
    bench: &B,
    judge: &dyn Judge,
    item: &B::Item,
    opts: &RunOptions,
) -> Done<B::Record> {
    let Some(image) = find_image(&bench.image_candidates(&opts.images, item)) else {
        return match bench.missing(item) {
            Missing::Record(r) => Done::MissingRecord(r),
            Missing::Skip => Done::Skipped(bench.key(item)),
        };
    };
    let print = fingerprint(&image);
    let mut judged = Judged {
        outcome: Err(String::new()),
        attempts: 0,
        usage: Usage::default(),
        image: image.clone(),
    };
    let b64 = match encode(image).await {
        Ok(b64) => b64,
        Err(e) => {
            judged.outcome = Err(e.to_string());
            return Done::Scored(bench.record(item, judged), print);
        }
    };
    match judge_attempts(bench, judge, item, &b64, &mut judged, opts.attempts).await {
        Ok(()) => Done::Scored(bench.record(item, judged), print),
        Err(NoVerdict::Transport(e)) => Done::Unjudged(bench.key(item), e),
        Err(NoVerdict::Permanent(e)) => Done::Permanent(e),
    }
}

/// Up to `attempts` judge requests for one item, as the official scripts retry: an unparseable
/// reply is a failed attempt. A request that fails at the transport level (after the client's
/// own retries) or for good is not a verdict: it ends the item with [`NoVerdict`].
async fn judge_attempts<B: JudgedBenchmark>(
    bench: &B,
    judge: &dyn Judge,
    item: &B::Item,
    b64: &str,
    judged: &mut Judged<B::Parsed>,
    attempts: u32,
) -> std::result::Result<(), NoVerdict> {
    let request = bench.request(item, b64);
    for attempt in 0..attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(bench.attempt_delay()).await;
        }
        judged.attempts += 1;
        match judge.complete(&request).await {
            Ok(reply) => {
                if let Some(u) = reply.usage {
                    judged.usage += u;
                }
                match bench.parse(&reply.text) {
                    Ok(parsed) => {
                        judged.outcome = Ok((parsed, cap_reply(reply.text)));
                        return Ok(());
                    }
                    Err(e) => judged.outcome = Err(cap_reply(e.0)),
                }
            }
            Err(e) if e.is_permanent() => return Err(NoVerdict::Permanent(e)),
            Err(e) => return Err(NoVerdict::Transport(e)),
        }
        tracing::debug!(
            "item {}: attempt {} failed: {:?}",
            bench.key(item),
            attempt + 1,
            judged.outcome.as_ref().err()
        );
    }
    Ok(())
}

/// A judged benchmark and a judge as a [`Scorer`]: scores one in-memory image against one item
/// with the benchmark's official request, attempts and parsing (the synthesis pipeline's
/// checklist verifier).
pub struct JudgeScorer<'a, B> {
    bench: &'a B,
    judge: &'a dyn Judge,
}

impl<'a, B: JudgedBenchmark> JudgeScorer<'a, B> {
    /// Scores with `bench`'s protocol and `judge`.
    pub fn new(bench: &'a B, judge: &'a dyn Judge) -> Self {
        JudgeScorer { bench, judge }
    }
}

#[async_trait::async_trait]
impl<B: JudgedBenchmark> Scorer for JudgeScorer<'_, B> {
    type Item = B::Item;

    async fn score(&self, item: &B::Item, image: &RgbImage) -> echo4o_core::Result<Verdict> {
        let b64 = echo4o_core::jpeg_base64(image)?;
        let mut judged = Judged {
            outcome: Err(String::new()),
            attempts: 0,
            usage: Usage::default(),
            image: PathBuf::from("<memory>"),
        };
        match judge_attempts(self.bench, self.judge, item, &b64, &mut judged, 3).await {
            Ok(()) => Ok(self.bench.verdict(&self.bench.record(item, judged))),
            Err(NoVerdict::Transport(e) | NoVerdict::Permanent(e)) => Err(e),
        }
    }
}

/// What a results folder was made with: a resumed run must match it, or its verdicts would be
/// reported for other images, prompts or judges.
fn run_identity<B: JudgedBenchmark>(bench: &B, judge: &dyn Judge) -> Result<serde_json::Value> {
    // The prompts: every request as sent, without its image.
    let mut requests = String::new();
    for item in bench.items() {
        requests.push_str(&bench.key(item));
        requests.push_str(
            &serde_json::to_string(&bench.request(item, ""))
                .map_err(|e| Error::invalid("judge request", e.to_string()))?,
        );
    }
    Ok(json!({
        "benchmark": bench.name(),
        "judge_model": judge.model(),
        "judge_endpoint": judge.endpoint(),
        "prompts_sha256": echo4o_data::synth::multiref::sha256_hex(requests.as_bytes()),
    }))
}

/// Checks that `out` holds no run of another benchmark, judge or prompt set, and records this
/// one. A field an older run.json lacks is filled in, not held against it.
fn claim_output(out: &Path, identity: &serde_json::Value) -> Result<()> {
    let path = out.join("run.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut old: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
            let mut filled = false;
            if let (Some(old_map), Some(new_map)) = (old.as_object_mut(), identity.as_object()) {
                for (field, want) in new_map {
                    match old_map.get(field) {
                        Some(have) if have != want => {
                            return Err(Error::invalid(
                                "output folder",
                                format!(
                                    "{} holds a run with {field} {have} (this run: {want}); its verdicts \
                                     would be reported for this run: use another --out",
                                    out.display()
                                ),
                            ));
                        }
                        Some(_) => {}
                        None => {
                            old_map.insert(field.clone(), want.clone());
                            filled = true;
                        }
                    }
                }
            }
            if filled {
                report::write_json(&path, &old)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => report::write_json(&path, identity),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// What identifies an image file's content cheaply: path, size and modification time.
fn fingerprint(path: &Path) -> Option<serde_json::Value> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(
        json!({"path": path.display().to_string(), "size": meta.len(), "mtime_ns": mtime.to_string()}),
    )
}

/// Runs `bench` on the images of `opts.images` with `judge`, resuming whatever `opts.out` already
/// holds, and writes the official outputs, `summary.json`, `report.md` and `report.html`.
pub async fn run<B: JudgedBenchmark>(
    bench: &B,
    judge: &dyn Judge,
    opts: &RunOptions,
    progress: &dyn Progress,
) -> Result<RunOutcome<B::Record>> {
    if opts.concurrency == 0 {
        return Err(Error::invalid("concurrency", "must be at least 1"));
    }
    let started = Instant::now();
    claim_output(&opts.out, &run_identity(bench, judge)?)?;
    let results_path = opts.out.join("results.jsonl");
    let (store, previous) = ResultStore::open::<B::Record>(&results_path)?;
    // `images.jsonl` beside `results.jsonl`: for each judged item, the fingerprint of the image
    // it was judged on. A resumed run re-judges an item whose image changed (another `--images`
    // folder, a regenerated file) instead of reporting the old verdict for it.
    let (prints_store, prints) =
        ResultStore::open::<serde_json::Value>(&opts.out.join("images.jsonl"))?;
    let prints: HashMap<String, serde_json::Value> = prints
        .into_iter()
        .filter_map(|v| Some((v.get("key")?.as_str()?.to_string(), v["image"].clone())))
        .collect();
    let stores = std::sync::Arc::new(std::sync::Mutex::new((store, prints_store)));
    let by_key: HashMap<String, &B::Item> =
        bench.items().iter().map(|i| (bench.key(i), i)).collect();
    // Keep an earlier verdict only if it was judged on the image that is there now.
    let mut done: HashMap<String, B::Record> = previous
        .into_iter()
        .map(|r| (bench.record_key(&r), r))
        .filter(|(key, _)| {
            let now = by_key
                .get(key)
                .and_then(|i| find_image(&bench.image_candidates(&opts.images, i)))
                .and_then(|p| fingerprint(&p));
            now.is_some() && prints.get(key) == now.as_ref()
        })
        .collect();
    let resumed = bench
        .items()
        .iter()
        .filter(|i| done.contains_key(&bench.key(i)))
        .count();
    progress.start(bench.items().len(), resumed);

    let pending: Vec<&B::Item> = bench
        .items()
        .iter()
        .filter(|i| !done.contains_key(&bench.key(i)))
        .collect();
    let mut missing_records = HashMap::new();
    let mut unjudged: Vec<(String, echo4o_core::Error)> = Vec::new();
    let mut stream = futures::stream::iter(pending)
        .map(|item| judge_item(bench, judge, item, opts))
        .buffer_unordered(opts.concurrency);
    while let Some(result) = stream.next().await {
        match result {
            Done::Scored(record, image) => {
                let key = bench.record_key(&record);
                // Written and synced on the blocking pool: an fsync must not stall the requests
                // in flight.
                let (stores, line) = (stores.clone(), serde_json::to_value(&record));
                let print = json!({"key": key, "image": image});
                tokio::task::spawn_blocking(move || -> Result<()> {
                    let line = line.map_err(|e| Error::invalid("result record", e.to_string()))?;
                    let mut s = stores
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    s.0.append(&line)?;
                    s.1.append(&print)?;
                    Ok(())
                })
                .await
                .map_err(|e| Error::invalid("results writer", e.to_string()))??;
                progress.item(&key, bench.failed(&record).is_some());
                done.insert(key, record);
            }
            Done::Unjudged(key, e) => {
                progress.item(&key, true);
                unjudged.push((key, e));
            }
            Done::Permanent(e) => {
                drop(stream);
                progress.finish();
                return Err(Error::Judge(format!(
                    "{e}; this will not pass by retrying, so the run stopped ({} items judged are kept in {}; rerun once fixed)",
                    done.len(),
                    results_path.display()
                )));
            }
            Done::MissingRecord(record) => {
                let key = bench.record_key(&record);
                progress.item(&key, false);
                missing_records.insert(key, record);
            }
            Done::Skipped(key) => progress.item(&key, false),
        }
    }
    drop(stream);
    progress.finish();
    if let Some((key, e)) = unjudged.first() {
        return Err(Error::Judge(format!(
            "{} items could not be judged (transport failures after every retry; item {key}: {e}); \
                 no verdict was stored for them: rerun the same command to retry them",
            unjudged.len()
        )));
    }

    let mut records = Vec::new();
    let mut rows = Vec::new();
    let mut missing_images = Vec::new();
    for item in bench.items() {
        let key = bench.key(item);
        if let Some(r) = done.get(&key) {
            let image = find_image(&bench.image_candidates(&opts.images, item));
            rows.push(bench.gallery_row(item, r, image));
            records.push(r.clone());
        } else if let Some(r) = missing_records.remove(&key) {
            rows.push(bench.gallery_row(item, &r, None));
            records.push(r);
            missing_images.push(key);
        } else {
            missing_images.push(key);
        }
    }
    let mut summary = bench.write_outputs(&records, &opts.out)?;
    summary.judge_model = judge.model();
    summary.images = opts.images.display().to_string();
    summary.items = bench.items().len();
    summary.scored = records.len();
    summary.resumed = resumed;
    summary.missing_images = missing_images;
    summary.skipped = bench.items().len() - records.len();
    summary.failures = records
        .iter()
        .filter_map(|r| bench.failed(r).map(|e| (bench.record_key(r), e)))
        .collect();
    for r in &records {
        let (attempts, usage) = bench.spend(r);
        summary.requests += u64::from(attempts);
        summary.usage += usage;
    }
    summary.elapsed_s = started.elapsed().as_secs_f64();
    report::write_reports(&summary, &rows, &opts.out)?;
    Ok(RunOutcome { records, summary })
}

/// Writes the exact requests a run would send to `out/requests.jsonl` (one
/// `{"id", "url", "body"}` line per item with an image) without sending any; returns how many.
pub async fn dry_run<B: JudgedBenchmark>(
    bench: &B,
    config: &OpenAiConfig,
    images: &Path,
    out: &Path,
) -> Result<usize> {
    let mut text = String::new();
    let mut n = 0;
    for item in bench.items() {
        let Some(image) = find_image(&bench.image_candidates(images, item)) else {
            continue;
        };
        let b64 = encode(image.clone())
            .await
            .map_err(|e| Error::invalid(format!("image {}", image.display()), e.to_string()))?;
        let line = json!({
            "id": bench.key(item),
            "url": config.endpoint(),
            "body": config.body(&bench.request(item, &b64)),
        });
        text.push_str(&line.to_string());
        text.push('\n');
        n += 1;
    }
    echo4o_core::fs::write_atomic(&out.join("requests.jsonl"), text.as_bytes())?;
    Ok(n)
}
