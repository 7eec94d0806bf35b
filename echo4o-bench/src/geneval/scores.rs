//! GenEval's aggregate scores, as `summary_scores.py` computes them.

use serde::{Deserialize, Serialize};

use super::{ImageResult, TASKS};

/// GenEval's aggregate scores (`summary_scores.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenEvalScores {
    /// Per task in canonical order: (task, images, mean correct).
    pub tasks: Vec<(String, usize, f64)>,
    /// Mean of the task scores.
    pub overall: f64,
    /// Share of correct images.
    pub correct_images: f64,
    /// Share of prompts with at least one correct image.
    pub correct_prompts: f64,
}

impl GenEvalScores {
    /// A plain-text table: one line per task (images, score in percent), then the overall.
    pub fn table(&self) -> String {
        let mut t = String::new();
        for (task, n, score) in &self.tasks {
            t.push_str(&format!(
                "{task:<26} {n:>5} images  {:>6.2}%\n",
                score * 100.0
            ));
        }
        let n: usize = self.tasks.iter().map(|x| x.1).sum();
        t.push_str(&format!(
            "{:<26} {n:>5} images  {:>6.2}%\n",
            "overall (mean of tasks)",
            self.overall * 100.0
        ));
        t
    }
}

/// Task score = mean over the task's images; overall = unweighted mean of the tasks present, in
/// canonical order (not the file-system order the official script happens to print).
pub fn summarize(results: &[ImageResult]) -> GenEvalScores {
    let mut tasks = Vec::new();
    let mut order: Vec<String> = TASKS.iter().map(|t| t.to_string()).collect();
    for r in results {
        if !order.contains(&r.tag) {
            order.push(r.tag.clone());
        }
    }
    for tag in order {
        let of_tag: Vec<&ImageResult> = results.iter().filter(|r| r.tag == tag).collect();
        if of_tag.is_empty() {
            continue;
        }
        let mean = of_tag.iter().filter(|r| r.correct).count() as f64 / of_tag.len() as f64;
        tasks.push((tag, of_tag.len(), mean));
    }
    let overall = if tasks.is_empty() {
        0.0
    } else {
        tasks.iter().map(|t| t.2).sum::<f64>() / tasks.len() as f64
    };
    let share = |n: usize, d: usize| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    let mut prompts: Vec<(&str, bool)> = Vec::new();
    for r in results {
        match prompts.iter_mut().find(|(m, _)| *m == r.metadata) {
            Some(p) => p.1 |= r.correct,
            None => prompts.push((&r.metadata, r.correct)),
        }
    }
    GenEvalScores {
        tasks,
        overall,
        correct_images: share(results.iter().filter(|r| r.correct).count(), results.len()),
        correct_prompts: share(prompts.iter().filter(|p| p.1).count(), prompts.len()),
    }
}
