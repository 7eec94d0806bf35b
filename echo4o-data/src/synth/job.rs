//! Running a synthesis job: prompts in, verified samples with provenance out; resumable,
//! concurrent, rate-limited and under budget.
//!
//! Layout of the job folder:
//! - `job.json`: the backend description the job was started with (a rerun with another backend
//!   is refused, so one folder never mixes two generators);
//! - `ledger.jsonl`: request states (see [`super::ledger`]);
//! - `images/<key>.<ext>` and `responses/<key>.json`: each image and what the backend said,
//!   written atomically before the ledger records `done`;
//! - `provenance.jsonl`: one record per finished prompt ([`Provenance`]), fsync'd; a rerun skips
//!   every prompt it holds.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use echo4o_core::jsonl::AppendLog;
use echo4o_core::openai::images::{FailureKind, ReferenceImage};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::budget::Budget;
pub use super::budget::Prices;
pub use super::provenance::{Outcome, Provenance, Round, read_provenance};
use super::provenance::{Sidecar, read_sidecar};

use super::backend::{BackendFailure, Generated, SynthBackend};
use super::ledger::{Ledger, State, blocking, lock, now, request_key};
use super::multiref::sha256_hex;
use super::verify::{Rewriter, Verifier, VerifyInput};
use super::{RecipeKind, Reference, SynthPrompt};
use crate::{Error, Result};

/// How a job runs.
#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    /// The job folder.
    pub out: PathBuf,
    /// Seed of every per-prompt seed (local backends); OpenAI takes none.
    pub seed: u64,
    /// Prompts in flight at once. By default 4.
    pub concurrency: usize,
    /// Most requests started per minute; `None` for no limit.
    pub requests_per_minute: Option<f64>,
    /// Stop starting requests once this many images exist (all runs of the job together).
    pub max_images: Option<usize>,
    /// Stop starting requests once this many dollars were spent (all runs of the job together,
    /// images and chat tokens).
    pub max_cost: Option<f64>,
    /// Prices for cost.
    pub prices: Prices,
    /// Rewrites per image before it is dropped. By default 1.
    pub max_rewrites: usize,
}

impl JobConfig {
    /// A job in `out` with the defaults.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        JobConfig {
            out: out.into(),
            seed: 0,
            concurrency: 4,
            requests_per_minute: None,
            max_images: None,
            max_cost: None,
            prices: Prices::default(),
            max_rewrites: 1,
        }
    }
}

/// Counters of a run, passed to the observer after every change.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Prompts given.
    pub total: usize,
    /// Prompts finished in an earlier run, skipped.
    pub resumed: usize,
    /// Prompts finished (with a provenance record) in this run.
    pub finished: usize,
    /// Requests sent in this run.
    pub requests: usize,
    /// Images reused from disk without a request (a kill between image and record).
    pub reused: usize,
    /// Samples whose image matched the recipe's prompt.
    pub aligned: usize,
    /// Samples kept with a rewritten prompt.
    pub rewritten: usize,
    /// Samples kept without verification (no verifier).
    pub unverified: usize,
    /// Samples dropped after the last rewrite still failed.
    pub dropped: usize,
    /// Prompts refused by the safety system (and dropped, or rewritten once).
    pub refused: usize,
    /// Requests that failed for good.
    pub failed: usize,
    /// Requests that may be retried by a rerun.
    pub retryable: usize,
    /// Dollars spent in this run.
    pub cost: f64,
    /// Why the job stopped early (quota, key, budget), if it did.
    pub stopped: Option<String>,
}

/// A synthesis job: a backend, an optional verifier and rewriter, a configuration.
pub struct SynthJob {
    config: JobConfig,
    backend: Arc<dyn SynthBackend>,
    verifier: Option<Arc<dyn Verifier>>,
    rewriter: Option<Arc<dyn Rewriter>>,
    observer: Option<Observer>,
}

/// The progress callback of a job.
pub type Observer = Arc<dyn Fn(&Stats) + Send + Sync>;

struct Run<'a> {
    job: &'a SynthJob,
    ledger: Ledger,
    backend_desc: Value,
    stats: Mutex<Stats>,
    stop: AtomicBool,
    images: AtomicUsize,
    previous_cost: f64,
    next_slot: tokio::sync::Mutex<tokio::time::Instant>,
    provenance: Arc<Mutex<AppendLog>>,
    budget: Mutex<Budget>,
}

enum Obtained {
    Image {
        key: String,
        sidecar: Box<Sidecar>,
        bytes: Vec<u8>,
    },
    Failed {
        key: String,
        failure: BackendFailure,
    },
    /// The job is stopping; nothing was sent.
    Stopped,
}

impl SynthJob {
    /// A job with `backend` and no verifier (every image kept with its prompt).
    pub fn new(config: JobConfig, backend: Arc<dyn SynthBackend>) -> Self {
        SynthJob {
            config,
            backend,
            verifier: None,
            rewriter: None,
            observer: None,
        }
    }

    /// Verifies every image.
    pub fn with_verifier(mut self, verifier: Arc<dyn Verifier>) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Rewrites prompts of misaligned images (and a refused instruction prompt, once).
    pub fn with_rewriter(mut self, rewriter: Arc<dyn Rewriter>) -> Self {
        self.rewriter = Some(rewriter);
        self
    }

    /// Calls `observer` with the counters after every change (draw a progress bar with it).
    pub fn with_observer(mut self, observer: impl Fn(&Stats) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The per-prompt seed: from the job seed and the prompt id.
    pub fn prompt_seed(&self, id: &str) -> u64 {
        let h = sha256_hex(format!("{}:{id}", self.config.seed).as_bytes());
        u64::from_str_radix(&h[..16], 16).unwrap_or(0)
    }

    /// The key of the request for `prompt` with `text`.
    pub fn key(&self, prompt: &SynthPrompt, text: &str) -> String {
        let seed = self
            .backend
            .takes_seed()
            .then(|| self.prompt_seed(&prompt.id));
        request_key(&json!({
            "backend": self.backend.describe(),
            "prompt": text,
            "references": prompt.references.iter().map(|r| r.sha256.clone()).collect::<Vec<_>>(),
            "seed": seed,
        }))
    }

    /// Runs the job over `prompts`: skips what a previous run finished, generates, verifies,
    /// rewrites, and appends one provenance record per finished prompt. Returns the counters;
    /// `stats.stopped` says why it stopped early, if it did.
    pub async fn run(&self, prompts: Vec<SynthPrompt>) -> Result<Stats> {
        self.config.prices.validate()?;
        if let Some(max) = self.config.max_cost
            && !(max.is_finite() && max >= 0.0)
        {
            return Err(echo4o_core::Error::invalid(
                "max_cost",
                format!("{max} must be a finite number, not negative"),
            )
            .into());
        }
        let out = &self.config.out;
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let backend_desc = self.backend.describe();
        let job_file = out.join("job.json");
        match std::fs::read_to_string(&job_file) {
            Ok(text) => {
                let old: Value = serde_json::from_str(&text).map_err(|e| Error::Line {
                    path: job_file.clone(),
                    line: 1,
                    message: e.to_string(),
                })?;
                if old.get("backend") != Some(&backend_desc) {
                    return Err(Error::Layout {
                        path: out.clone(),
                        message: format!(
                            "this job folder was started with backend {}, not {}; use another --out",
                            old.get("backend").unwrap_or(&Value::Null),
                            backend_desc
                        ),
                    });
                }
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                // Unreadable is not "new": starting over would forget the job's backend check.
                return Err(Error::io(&job_file, e));
            }
            Err(_) => {
                let text = serde_json::to_string_pretty(
                    &json!({"backend": backend_desc, "seed": self.config.seed}),
                )
                .map_err(|e| echo4o_core::Error::invalid("job.json", e.to_string()))?;
                echo4o_core::fs::write_atomic(&job_file, text.as_bytes())?;
            }
        }
        let provenance_path = out.join("provenance.jsonl");
        let (provenance, finished) = AppendLog::open::<Provenance>(&provenance_path)?;
        let previous_cost: f64 = finished.iter().map(|p| p.cost).sum();
        // The dearest earlier record is the first estimate of an image's cost, so a resumed run
        // with a cost cap does not start blind (chat costs in it only make the estimate safer).
        let largest_token_cost = finished
            .iter()
            .map(|p| p.cost - self.config.prices.per_image)
            .fold(0.0, f64::max);
        let done: HashSet<String> = finished.into_iter().map(|p| p.prompt.id).collect();
        let ledger = Ledger::open(&out.join("ledger.jsonl"))?;
        let mut stats = Stats {
            total: prompts.len(),
            ..Stats::default()
        };
        let todo: Vec<SynthPrompt> = prompts
            .into_iter()
            .filter(|p| {
                let skip = done.contains(&p.id);
                stats.resumed += usize::from(skip);
                !skip
            })
            .collect();
        let run = Run {
            job: self,
            images: AtomicUsize::new(ledger.count(State::Done)),
            previous_cost,
            ledger,
            backend_desc,
            stats: Mutex::new(stats),
            stop: AtomicBool::new(false),
            next_slot: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            provenance: Arc::new(Mutex::new(provenance)),
            budget: Mutex::new(Budget::starting_at(largest_token_cost)),
        };
        run.notify();
        let results: Vec<Result<()>> = futures::stream::iter(todo)
            .map(|p| run.process(p))
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        for r in results {
            r?;
        }
        let stats = lock(&run.stats).clone();
        Ok(stats)
    }
}

fn extension(bytes: &[u8]) -> &'static str {
    match echo4o_core::image::guess_format(bytes) {
        Ok(echo4o_core::image::ImageFormat::Jpeg) => "jpg",
        Ok(echo4o_core::image::ImageFormat::WebP) => "webp",
        _ => "png",
    }
}

impl Run<'_> {
    fn notify(&self) {
        if let Some(obs) = &self.job.observer {
            obs(&lock(&self.stats));
        }
    }

    fn update(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut lock(&self.stats));
        self.notify();
    }

    fn stop(&self, why: String) {
        if !self.stop.swap(true, Ordering::SeqCst) {
            tracing::warn!("stopping the job: {why}");
            self.update(|s| s.stopped = Some(why));
        }
    }

    /// Dollars spent by the job: earlier runs' records and this run.
    fn spent(&self) -> f64 {
        self.previous_cost + lock(&self.stats).cost
    }

    /// An image for `text`: from disk if a previous run made it, else one request.
    async fn obtain(&self, prompt: &SynthPrompt, text: &str) -> Result<Obtained> {
        let config = &self.job.config;
        let key = self.job.key(prompt, text);
        let sidecar_path = config.out.join("responses").join(format!("{key}.json"));
        let (out, path) = (config.out.clone(), sidecar_path.clone());
        if let Some((sidecar, bytes)) = blocking(move || read_sidecar(&out, &path)).await? {
            if self.ledger.state(&key) != Some(State::Done) {
                self.ledger
                    .append(
                        &key,
                        &prompt.id,
                        State::Done,
                        Some("recovered from disk".into()),
                    )
                    .await?;
            }
            self.update(|s| s.reused += 1);
            return Ok(Obtained::Image {
                key,
                sidecar: Box::new(sidecar),
                bytes,
            });
        }
        match self.ledger.state(&key) {
            Some(State::Refused) => {
                return Ok(Obtained::Failed {
                    key,
                    failure: BackendFailure {
                        kind: FailureKind::Refused,
                        message: "refused in an earlier run (not sent again)".into(),
                        body: None,
                        request_id: None,
                        attempts: 0,
                    },
                });
            }
            Some(State::FailedPermanent) => {
                return Ok(Obtained::Failed {
                    key,
                    failure: BackendFailure {
                        kind: FailureKind::Permanent,
                        message: "failed for good in an earlier run".into(),
                        body: None,
                        request_id: None,
                        attempts: 0,
                    },
                });
            }
            _ => {}
        }
        if self.stop.load(Ordering::SeqCst) {
            return Ok(Obtained::Stopped);
        }
        // Budget: count the image before sending, give it back if the request fails.
        let before = self.images.fetch_add(1, Ordering::SeqCst);
        if let Some(max) = config.max_images
            && before >= max
        {
            self.images.fetch_sub(1, Ordering::SeqCst);
            self.stop(format!("budget: {max} images reached"));
            return Ok(Obtained::Stopped);
        }
        let reserved = match config.max_cost {
            // Wait while requests in flight may still leave room; stop once none is in flight
            // and the next image still does not fit.
            Some(max) => loop {
                if self.stop.load(Ordering::SeqCst) {
                    self.images.fetch_sub(1, Ordering::SeqCst);
                    return Ok(Obtained::Stopped);
                }
                let spent = self.spent();
                // Offer and in-flight count under one lock: the "nothing in flight" that stops
                // the job must be the state the refusal was made in.
                let (offer, idle) = {
                    let mut budget = lock(&self.budget);
                    let offer = budget.reserve(spent, config.prices.per_image, max);
                    (offer, budget.in_flight() == 0)
                };
                match offer {
                    Some(r) => break Some(r),
                    None if idle => {
                        self.images.fetch_sub(1, Ordering::SeqCst);
                        self.stop(format!(
                            "budget: ${max:.2} spent or the next image would exceed it"
                        ));
                        return Ok(Obtained::Stopped);
                    }
                    None => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            },
            None => None,
        };
        let result = self.send(prompt, text, &key, &sidecar_path).await;
        if let Some(r) = reserved {
            let token_cost = match &result {
                Ok(Obtained::Image { sidecar, .. }) => Some(sidecar.cost - config.prices.per_image),
                _ => None,
            };
            lock(&self.budget).release(r, token_cost);
        }
        result
    }

    /// Sends one image request (the budget already reserved) and records what came back.
    async fn send(
        &self,
        prompt: &SynthPrompt,
        text: &str,
        key: &str,
        sidecar_path: &Path,
    ) -> Result<Obtained> {
        let config = &self.job.config;
        let key = key.to_string();
        if let Some(rpm) = config.requests_per_minute.filter(|r| *r > 0.0) {
            let mut slot = self.next_slot.lock().await;
            let at = (*slot).max(tokio::time::Instant::now());
            *slot = at + Duration::from_secs_f64(60.0 / rpm);
            drop(slot);
            tokio::time::sleep_until(at).await;
        }
        let seed = self
            .job
            .backend
            .takes_seed()
            .then(|| self.job.prompt_seed(&prompt.id));
        let refs = prompt.references.clone();
        let references = blocking(move || {
            refs.iter()
                .enumerate()
                .map(|(i, r)| reference_bytes(i, r))
                .collect::<Result<Vec<_>>>()
        })
        .await?;
        self.ledger
            .append(&key, &prompt.id, State::Sent, None)
            .await?;
        self.update(|s| s.requests += 1);
        let result = self
            .job
            .backend
            .generate(text, &references, seed.unwrap_or(0))
            .await;
        match result {
            Ok(g) => {
                let Generated {
                    image,
                    revised_prompt,
                    usage,
                    request_id,
                    created,
                    attempts,
                    sent,
                    omitted,
                } = g;
                let tokens = usage.as_ref().map(|u| self.job.backend.usage_tokens(u));
                let cost = config.prices.image_cost(tokens.as_ref());
                if let Err(e) = echo4o_core::image::guess_format(&image)
                    .map_err(|e| e.to_string())
                    .and_then(|_| {
                        echo4o_core::decode_image(&image, "reply")
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    })
                {
                    // Paid for, but not an image: count the cost, keep nothing, and let a rerun
                    // ask again instead of failing on a stored non-image forever.
                    self.images.fetch_sub(1, Ordering::SeqCst);
                    self.update(|s| s.cost += cost);
                    let message = format!("the reply is not an image ({} bytes): {e}", image.len());
                    self.ledger
                        .append(
                            &key,
                            &prompt.id,
                            State::FailedRetryable,
                            Some(message.clone()),
                        )
                        .await?;
                    return Ok(Obtained::Failed {
                        key,
                        failure: BackendFailure {
                            kind: FailureKind::Retryable,
                            message,
                            body: None,
                            request_id,
                            attempts,
                        },
                    });
                }
                let rel = format!("images/{key}.{}", extension(&image));
                let (path, bytes) = (config.out.join(&rel), image.clone());
                blocking(move || Ok(echo4o_core::fs::write_atomic(&path, &bytes)?)).await?;
                let sidecar = Sidecar {
                    prompt: text.to_string(),
                    seed,
                    revised_prompt,
                    usage,
                    request_id,
                    created,
                    attempts,
                    sent,
                    omitted,
                    cost,
                    image: rel,
                };
                let json = serde_json::to_string_pretty(&sidecar)
                    .map_err(|e| echo4o_core::Error::invalid("sidecar", e.to_string()))?;
                let path = sidecar_path.to_path_buf();
                blocking(move || Ok(echo4o_core::fs::write_atomic(&path, json.as_bytes())?))
                    .await?;
                self.ledger
                    .append(&key, &prompt.id, State::Done, None)
                    .await?;
                self.update(|s| s.cost += cost);
                Ok(Obtained::Image {
                    key,
                    sidecar: Box::new(sidecar),
                    bytes: image,
                })
            }
            Err(failure) => {
                self.images.fetch_sub(1, Ordering::SeqCst);
                let state = match failure.kind {
                    FailureKind::Refused => State::Refused,
                    FailureKind::Permanent => State::FailedPermanent,
                    _ => State::FailedRetryable,
                };
                let message = match &failure.body {
                    Some(b) => format!("{} | body: {b}", failure.message),
                    None => failure.message.clone(),
                };
                self.ledger
                    .append(&key, &prompt.id, state, Some(message))
                    .await?;
                if failure.kind.stops_job() {
                    self.stop(format!("{:?}: {}", failure.kind, failure.message));
                }
                Ok(Obtained::Failed { key, failure })
            }
        }
    }

    async fn process(&self, prompt: SynthPrompt) -> Result<()> {
        if self.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let started_at = now();
        let mut text = prompt.prompt.clone();
        let mut metadata = prompt.metadata.clone();
        let mut refusal = None;
        let mut extra_cost = 0.0;
        let mut obtained = self.obtain(&prompt, &text).await?;
        // A refused instruction prompt is an invalid prompt: rewritten once, else dropped.
        if let Obtained::Failed { failure, .. } = &obtained
            && failure.kind == FailureKind::Refused
        {
            let mut note = json!({"message": failure.message, "body": failure.body});
            if prompt.recipe == RecipeKind::Instruction
                && let Some(rw) = &self.job.rewriter
            {
                let reason = failure.body.clone().unwrap_or(failure.message.clone());
                match rw.rewrite_refused(&prompt, &reason).await {
                    Ok(Some(new)) => {
                        extra_cost += self.job.config.prices.chat_cost(new.usage.as_ref());
                        note["rewritten_to"] = json!(new.prompt);
                        note["rewritten_by"] = json!(rw.name());
                        text = new.prompt;
                        metadata = new.metadata;
                        refusal = Some(note);
                        obtained = self.obtain(&prompt, &text).await?;
                    }
                    Ok(None) => refusal = Some(note),
                    Err(e) => {
                        note["rewrite_error"] = json!(e.to_string());
                        refusal = Some(note);
                    }
                }
            } else {
                refusal = Some(note);
            }
        }
        let config = &self.job.config;
        let mut record = Provenance {
            prompt: prompt.clone(),
            outcome: Outcome::Failed,
            final_prompt: None,
            final_metadata: None,
            key: None,
            sent_prompt: Some(text.clone()),
            image: None,
            image_sha256: None,
            backend: self.backend_desc.clone(),
            seed: None,
            revised_prompt: None,
            request_id: None,
            created: None,
            usage: None,
            sent: None,
            omitted: vec![],
            attempts: 0,
            cost: extra_cost,
            prices_version: config.prices.version.clone(),
            rounds: vec![],
            refusal: refusal.clone(),
            error: None,
            started_at,
            finished_at: 0.0,
        };
        match obtained {
            Obtained::Stopped => return Ok(()),
            Obtained::Failed { key, failure } => {
                record.key = Some(key);
                record.attempts = failure.attempts;
                record.error = Some(failure.to_string());
                match failure.kind {
                    FailureKind::Refused => {
                        record.outcome = Outcome::Refused;
                        if record.refusal.is_none() {
                            record.refusal =
                                Some(json!({"message": failure.message, "body": failure.body}));
                        }
                        self.update(|s| s.refused += 1);
                    }
                    FailureKind::Permanent => {
                        record.outcome = Outcome::Failed;
                        self.update(|s| s.failed += 1);
                    }
                    // Retryable, quota, key: no record, so a rerun tries again.
                    _ => {
                        self.update(|s| s.retryable += 1);
                        return Ok(());
                    }
                }
                if refusal.is_some() && failure.kind != FailureKind::Refused {
                    self.update(|s| s.refused += 1);
                }
            }
            Obtained::Image {
                key,
                sidecar,
                bytes,
            } => {
                record.key = Some(key);
                record.image_sha256 = Some(sha256_hex(&bytes));
                record.image = Some(sidecar.image.clone());
                record.seed = sidecar.seed;
                record.revised_prompt = sidecar.revised_prompt.clone();
                record.request_id = sidecar.request_id.clone();
                record.created = sidecar.created;
                record.usage = sidecar.usage.clone();
                record.sent = Some(sidecar.sent.clone());
                record.omitted = sidecar.omitted.clone();
                record.attempts = sidecar.attempts;
                record.cost += sidecar.cost;
                if refusal.is_some() {
                    self.update(|s| s.refused += 1);
                }
                match self
                    .verify(&prompt, &text, metadata, &bytes, &mut record)
                    .await
                {
                    Ok(()) => {}
                    Err(e) => {
                        // A judge that failed: no record, a rerun verifies again (no new image).
                        tracing::warn!("{}: verification failed: {e}", prompt.id);
                        self.update(|s| s.retryable += 1);
                        return Ok(());
                    }
                }
            }
        }
        self.update(|s| {
            s.cost += extra_cost;
            s.finished += 1;
        });
        record.finished_at = now();
        let log = self.provenance.clone();
        blocking(move || lock(&log).append(&record).map_err(Into::into)).await
    }

    async fn verify(
        &self,
        prompt: &SynthPrompt,
        text: &str,
        metadata: Option<Map<String, Value>>,
        bytes: &[u8],
        record: &mut Provenance,
    ) -> echo4o_core::Result<()> {
        let prices = &self.job.config.prices;
        let Some(verifier) = &self.job.verifier else {
            record.outcome = Outcome::Unverified;
            record.final_prompt = Some(text.to_string());
            record.final_metadata = metadata;
            self.update(|s| s.unverified += 1);
            return Ok(());
        };
        let image = echo4o_core::decode_image(bytes, record.image.as_deref().unwrap_or("image"))?;
        let mut text = text.to_string();
        let mut metadata = metadata;
        let mut written_by = if record.refusal.is_some() {
            "refusal-rewrite".to_string()
        } else {
            "recipe".to_string()
        };
        for round in 0..=self.job.config.max_rewrites {
            let input = VerifyInput {
                original: prompt,
                prompt: &text,
                metadata: metadata.as_ref(),
                checklist: &prompt.checklist,
                image: &image,
            };
            let verdict = verifier.verify(&input).await?;
            let chat = prices.chat_cost(verdict.usage.as_ref());
            record.cost += chat;
            self.update(|s| s.cost += chat);
            record.rounds.push(Round {
                prompt: text.clone(),
                metadata: metadata.clone(),
                written_by: written_by.clone(),
                verifier: verifier.name(),
                verification: verdict.clone(),
            });
            if verdict.aligned {
                record.outcome = if round == 0 {
                    Outcome::Aligned
                } else {
                    Outcome::Rewritten
                };
                record.final_prompt = Some(text);
                record.final_metadata = metadata;
                self.update(|s| {
                    if round == 0 {
                        s.aligned += 1
                    } else {
                        s.rewritten += 1
                    }
                });
                return Ok(());
            }
            if round == self.job.config.max_rewrites {
                break;
            }
            let Some(rewriter) = &self.job.rewriter else {
                break;
            };
            let Some(rw) = rewriter.rewrite(&input, &verdict).await? else {
                break;
            };
            let chat = prices.chat_cost(rw.usage.as_ref());
            record.cost += chat;
            self.update(|s| s.cost += chat);
            text = rw.prompt;
            metadata = rw.metadata;
            written_by = rewriter.name();
        }
        record.outcome = Outcome::Dropped;
        self.update(|s| s.dropped += 1);
        Ok(())
    }
}

fn reference_bytes(i: usize, r: &Reference) -> Result<ReferenceImage> {
    let bytes = std::fs::read(&r.path).map_err(|e| Error::io(&r.path, e))?;
    let actual = sha256_hex(&bytes);
    if actual != r.sha256 {
        return Err(Error::Layout {
            path: r.path.clone(),
            message: format!(
                "reference changed since the prompt was written (sha256 {actual}, expected {})",
                r.sha256
            ),
        });
    }
    let ext = r
        .path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("png")
        .to_ascii_lowercase();
    Ok(ReferenceImage {
        name: format!("ref{i}.{ext}"),
        bytes,
    })
}
