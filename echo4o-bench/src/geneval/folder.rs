//! Scoring a whole folder in GenEval's layout: the official `results.jsonl`, the summary and the
//! reports.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::{ColorClassifier, Detector, EngineConfig, ImageResult, evaluate_image, read_layout};
use super::{GenEvalScores, summarize};
use crate::report::{Category, GalleryRow, Summary, write_reports};
use crate::{Error, Result};

/// Scores every sample of an official-layout folder and writes `results.jsonl` (official
/// fields), `summary.json` and `report.md` into `out`; `benchmark` names the prompt set in the
/// summary (`geneval`, `geneval-shapes`, ...).
pub fn evaluate_folder(
    benchmark: &str,
    images: &Path,
    out: &Path,
    detector: &dyn Detector,
    classifier: &dyn ColorClassifier,
    config: &EngineConfig,
) -> Result<(Vec<ImageResult>, GenEvalScores)> {
    let entries = read_layout(images)?;
    if entries.is_empty() {
        return Err(Error::invalid(
            "GenEval image folder",
            format!("{} has no <NNNNN>/metadata.jsonl folders", images.display()),
        ));
    }
    let mut results = Vec::new();
    let mut lines = String::new();
    let mut unreadable = Vec::new();
    for entry in &entries {
        for sample in &entry.samples {
            let r = match echo4o_core::load_image(sample) {
                Ok(image) => evaluate_image(
                    &image,
                    &sample.display().to_string(),
                    &entry.metadata,
                    detector,
                    classifier,
                    config,
                )?,
                // One corrupt file is the generator's failure on that image, not the end of
                // the run: it counts as wrong, and the summary lists it.
                Err(e) => {
                    unreadable.push((sample.display().to_string(), e.to_string()));
                    ImageResult {
                        filename: sample.display().to_string(),
                        tag: entry.metadata.tag.clone(),
                        prompt: entry.metadata.prompt.clone(),
                        correct: false,
                        reason: format!("unreadable image: {e}"),
                        metadata: entry.metadata.to_python_json(),
                        details: "{}".into(),
                    }
                }
            };
            lines.push_str(
                &serde_json::to_string(&r).map_err(|e| Error::invalid("result", e.to_string()))?,
            );
            lines.push('\n');
            results.push(r);
        }
    }
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
