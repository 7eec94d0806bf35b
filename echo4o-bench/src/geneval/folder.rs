//! Scoring a whole folder in GenEval's layout: the official `results.jsonl`, the summary and the
//! reports.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use echo4o_core::jsonl::AppendLog;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ColorClassifier, Detector, EngineConfig, ImageResult, evaluate_image, read_layout};
use super::{GenEvalScores, summarize};
use crate::report::{Category, GalleryRow, Summary, write_reports};
use crate::runner::{NoProgress, Progress};
use crate::{Error, Result};

/// The resume log in `out`: one line per scored image, appended as it is scored.
pub const PROGRESS_LOG: &str = "scored.jsonl";

/// One line of [`PROGRESS_LOG`]: an image's result and what its file looked like, so that a
/// regenerated image (another size or modification time) is scored again rather than reused.
#[derive(Debug, Serialize, Deserialize)]
struct Scored {
    bytes: u64,
    modified_ns: u64,
    result: ImageResult,
    /// Why the image could not be read, when it could not (it then counts as wrong).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unreadable: Option<String>,
}

/// `(size, modification time)` of `path`; `None` when unreadable (then it is scored, and fails).
fn fingerprint(path: &Path) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some((meta.len(), u64::try_from(modified.as_nanos()).ok()?))
}

/// Scores every sample of an official-layout folder and writes `results.jsonl` (official
/// fields), `summary.json` and `report.md` into `out` (created if missing); `benchmark` names the
/// prompt set in the summary (`geneval`, `geneval-shapes`, ...). Resumable: see
/// [`evaluate_folder_with_progress`].
pub fn evaluate_folder(
    benchmark: &str,
    images: &Path,
    out: &Path,
    detector: &dyn Detector,
    classifier: &dyn ColorClassifier,
    config: &EngineConfig,
) -> Result<(Vec<ImageResult>, GenEvalScores)> {
    evaluate_folder_with_progress(
        benchmark,
        images,
        out,
        detector,
        classifier,
        config,
        &NoProgress,
    )
}

/// [`evaluate_folder`], reporting each image to `progress`. Each result is appended to
/// `out/scored.jsonl` as soon as it is known, so a run that is killed (hours into 2,212 images
/// with Mask2Former on a CPU) resumes where it stopped: images whose file is unchanged since they
/// were scored are not scored again. `results.jsonl` is written whole at the end, in the
/// layout's order.
pub fn evaluate_folder_with_progress(
    benchmark: &str,
    images: &Path,
    out: &Path,
    detector: &dyn Detector,
    classifier: &dyn ColorClassifier,
    config: &EngineConfig,
    progress: &dyn Progress,
) -> Result<(Vec<ImageResult>, GenEvalScores)> {
    let entries = read_layout(images)?;
    if entries.is_empty() {
        return Err(Error::invalid(
            "GenEval image folder",
            format!("{} has no <NNNNN>/metadata.jsonl folders", images.display()),
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let (mut log, earlier) = AppendLog::open::<Scored>(&out.join(PROGRESS_LOG))?;
    let mut done: HashMap<String, Scored> = earlier
        .into_iter()
        .map(|s| (s.result.filename.clone(), s))
        .collect();
    // Per prompt, its metadata as the official script writes it and, per sample in layout
    // order, the earlier result if that still stands: the file and the metadata are what it
    // was made from.
    let reused: Vec<(String, Vec<Option<Scored>>)> = entries
        .iter()
        .map(|e| {
            let metadata = e.metadata.to_python_json();
            let earlier = e
                .samples
                .iter()
                .map(|p| {
                    done.remove(&p.display().to_string()).filter(|s| {
                        fingerprint(p) == Some((s.bytes, s.modified_ns))
                            && s.result.metadata == metadata
                    })
                })
                .collect();
            (metadata, earlier)
        })
        .collect();
    let total: usize = entries.iter().map(|e| e.samples.len()).sum();
    let already = reused.iter().flat_map(|r| &r.1).flatten().count();
    progress.start(total, already);
    let mut results = Vec::new();
    let mut lines = String::new();
    let mut unreadable = Vec::new();
    for (entry, (metadata, reused)) in entries.iter().zip(reused) {
        for (sample, earlier) in entry.samples.iter().zip(reused) {
            let key = sample.display().to_string();
            let (r, failure) = match earlier {
                Some(s) => (s.result, s.unreadable),
                None => {
                    let (r, failure) = match echo4o_core::load_image(sample) {
                        Ok(image) => (
                            evaluate_image(
                                &image,
                                &key,
                                &entry.metadata,
                                detector,
                                classifier,
                                config,
                            )?,
                            None,
                        ),
                        // One corrupt file is the generator's failure on that image, not the end
                        // of the run: it counts as wrong, and the summary lists it.
                        Err(e) => (
                            ImageResult {
                                filename: key.clone(),
                                tag: entry.metadata.tag.clone(),
                                prompt: entry.metadata.prompt.clone(),
                                correct: false,
                                reason: format!("unreadable image: {e}"),
                                metadata: metadata.clone(),
                                details: "{}".into(),
                            },
                            Some(e.to_string()),
                        ),
                    };
                    if let Some((bytes, modified_ns)) = fingerprint(sample) {
                        log.append(&Scored {
                            bytes,
                            modified_ns,
                            result: r.clone(),
                            unreadable: failure.clone(),
                        })?;
                    }
                    progress.item(&key, failure.is_some());
                    (r, failure)
                }
            };
            if let Some(e) = failure {
                unreadable.push((key.clone(), e));
            }
            lines.push_str(
                &serde_json::to_string(&r).map_err(|e| Error::invalid("result", e.to_string()))?,
            );
            lines.push('\n');
            results.push(r);
        }
    }
    progress.finish();
    echo4o_core::fs::write_atomic(&out.join("results.jsonl"), lines.as_bytes())?;
    let scores = summarize(&results);
    let mut summary = Summary::new(benchmark);
    summary.images = images.display().to_string();
    summary.items = entries.len();
    summary.scored = results.len();
    summary.overall = scores.overall;
    summary.overall_label = "mean of the task scores".into();
    summary.categories = scores
        .tasks
        .iter()
        .map(|(t, n, s)| Category {
            name: t.clone(),
            count: *n,
            passed: Some(results.iter().filter(|r| &r.tag == t && r.correct).count()),
            score: *s,
        })
        .collect();
    summary.missing_images = entries
        .iter()
        .filter(|e| e.samples.is_empty())
        .map(|e| e.folder.display().to_string())
        .collect();
    summary.failures = unreadable;
    summary
        .extra
        .insert("correct_images".into(), json!(scores.correct_images));
    summary
        .extra
        .insert("correct_prompts".into(), json!(scores.correct_prompts));
    let rows: Vec<GalleryRow> = results
        .iter()
        .map(|r| GalleryRow {
            id: r.filename.clone(),
            category: r.tag.clone(),
            prompt: r.prompt.clone(),
            expectation: r.metadata.clone(),
            verdict: if r.correct { "correct" } else { "wrong" }.into(),
            passed: Some(r.correct),
            reason: r.reason.clone(),
            image: Some(PathBuf::from(&r.filename)),
        })
        .collect();
    write_reports(&summary, &rows, out)?;
    Ok((results, scores))
}
