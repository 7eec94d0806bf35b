//! Confidence intervals for GenEval's scores by the bootstrap over prompts.
//!
//! GenEval scores a few hundred prompts, a handful of images each; two models that differ by a
//! few points may not differ at all. [`bootstrap`] resamples prompts with replacement within
//! each task (the benchmark's design fixes how many prompts a task has), recomputes every task
//! score and the overall score (mean of tasks) as [`super::summarize`] does, and reports the
//! 2.5th and 97.5th percentiles. Images of one prompt stay together: they share the prompt's
//! difficulty, so resampling images would understate the spread. A prompt is an entry of the
//! prompt set: its `NNNNN` folder in GenEval's layout with its metadata (two entries with the
//! same text are two prompts). Results of several training seeds or sampling seeds of one model
//! are pooled by passing them together: their images of the same entry are one prompt.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{ImageResult, TASKS};

/// A score and its 95% interval, as fractions in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The score of the results as given.
    pub score: f64,
    /// 2.5th percentile of the resampled scores.
    pub low: f64,
    /// 97.5th percentile.
    pub high: f64,
}

/// Every task's score and the overall score, with intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intervals {
    /// Per task in canonical order: (task, prompts, images, estimate).
    pub tasks: Vec<(String, usize, usize, Estimate)>,
    /// The mean of the task scores.
    pub overall: Estimate,
}

/// One prompt: correct images and images.
type Prompt = (u32, u32);

fn score(prompts: &[Prompt]) -> f64 {
    let (c, n) = prompts.iter().fold((0u64, 0u64), |(c, n), p| {
        (c + u64::from(p.0), n + u64::from(p.1))
    });
    if n == 0 { 0.0 } else { c as f64 / n as f64 }
}

/// The prompt entry an image answers: the folder above `samples/` in GenEval's layout
/// (`.../00012/samples/00003.png` -> `00012`; empty for another layout) and the metadata.
fn prompt_entry(r: &ImageResult) -> (String, &str) {
    let folder = std::path::Path::new(&r.filename)
        .parent()
        .and_then(std::path::Path::parent)
        .and_then(std::path::Path::file_name)
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    (folder, r.metadata.as_str())
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// The percentile bootstrap of `results` with `resamples` draws from `seed` (10,000 is usual;
/// the same seed gives the same intervals). Returns `None` for no results.
///
/// ```
/// use echo4o_bench::geneval::{ImageResult, bootstrap::bootstrap};
///
/// let result = |prompt: usize, correct: bool| ImageResult {
///     filename: format!("images/{prompt:05}/samples/00000.png"),
///     tag: "single_object".into(),
///     prompt: format!("prompt {prompt}"),
///     correct,
///     reason: String::new(),
///     metadata: "{\"prompt\": \"a photo of a star\"}".into(), // the same text, 40 entries
///     details: String::new(),
/// };
/// // 40 prompts, half of them right.
/// let results: Vec<ImageResult> = (0..40).map(|p| result(p, p % 2 == 0)).collect();
/// let ci = bootstrap(&results, 2000, 7).unwrap();
/// assert_eq!(ci.overall.score, 0.5);
/// assert!(ci.overall.low < 0.4 && ci.overall.high > 0.6);
/// ```
pub fn bootstrap(results: &[ImageResult], resamples: usize, seed: u64) -> Option<Intervals> {
    // task -> prompt entry -> (correct, images), in a fixed order so a seed reproduces.
    let mut by_task: BTreeMap<&str, BTreeMap<(String, &str), Prompt>> = BTreeMap::new();
    for r in results {
        let p = by_task
            .entry(r.tag.as_str())
            .or_default()
            .entry(prompt_entry(r))
            .or_default();
        p.0 += u32::from(r.correct);
        p.1 += 1;
    }
    if by_task.is_empty() {
        return None;
    }
    let mut order: Vec<&str> = TASKS
        .iter()
        .copied()
        .filter(|t| by_task.contains_key(t))
        .collect();
    order.extend(by_task.keys().filter(|t| !TASKS.contains(t)));
    let prompts: Vec<Vec<Prompt>> = order
        .iter()
        .map(|t| by_task[t].values().copied().collect())
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draws: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples); prompts.len() + 1];
    let mut sample: Vec<Prompt> = Vec::new();
    for _ in 0..resamples {
        let mut sum = 0.0;
        for (t, of_task) in prompts.iter().enumerate() {
            sample.clear();
            sample.extend((0..of_task.len()).map(|_| of_task[rng.random_range(0..of_task.len())]));
            let s = score(&sample);
            draws[t].push(s);
            sum += s;
        }
        draws[prompts.len()].push(sum / prompts.len() as f64);
    }
    for d in &mut draws {
        d.sort_by(f64::total_cmp);
    }
    let estimate = |point: f64, d: &[f64]| Estimate {
        score: point,
        low: percentile(d, 0.025),
        high: percentile(d, 0.975),
    };
    let points: Vec<f64> = prompts.iter().map(|p| score(p)).collect();
    let overall = points.iter().sum::<f64>() / points.len() as f64;
    Some(Intervals {
        tasks: order
            .iter()
            .zip(&prompts)
            .zip(&points)
            .enumerate()
            .map(|(i, ((t, p), &point))| {
                let images = p.iter().map(|x| x.1 as usize).sum();
                (t.to_string(), p.len(), images, estimate(point, &draws[i]))
            })
            .collect(),
        overall: estimate(overall, &draws[prompts.len()]),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report
mod tests {
    use super::*;

    /// An image of entry `prompt`: every entry of a task has the same text, as GenEval-shapes'
    /// single-object prompts repeat; the folder tells them apart.
    fn result(tag: &str, prompt: usize, correct: bool) -> ImageResult {
        ImageResult {
            filename: format!("run/{tag}/images/{prompt:05}/samples/00000.png"),
            tag: tag.into(),
            prompt: String::new(),
            correct,
            reason: String::new(),
            metadata: format!("{{\"tag\": \"{tag}\"}}"),
            details: String::new(),
        }
    }

    #[test]
    fn points_match_summarize_and_intervals_hold_them() {
        let mut results = Vec::new();
        for p in 0..30 {
            for k in 0..4 {
                results.push(result("counting", p, (p + k) % 3 == 0));
                results.push(result("colors", p, p % 5 != 0));
            }
        }
        let ci = bootstrap(&results, 1000, 1).unwrap();
        let summary = super::super::summarize(&results);
        assert_eq!(ci.tasks[0].0, "counting"); // canonical order, not alphabetical
        for ((task, prompts, images, e), (t, n, s)) in ci.tasks.iter().zip(&summary.tasks) {
            assert_eq!((task, images), (t, n));
            assert_eq!(*prompts, 30);
            assert!((e.score - s).abs() < 1e-12);
            assert!(e.low <= e.score && e.score <= e.high, "{task}: {e:?}");
        }
        assert!((ci.overall.score - summary.overall).abs() < 1e-12);
        assert_eq!(
            ci,
            bootstrap(&results, 1000, 1).unwrap(),
            "a seed reproduces"
        );
    }

    #[test]
    fn a_prompts_images_move_together_and_uniform_results_have_no_spread() {
        // Every image of a prompt agrees: the spread is that of 10 prompts, not of 40 images.
        let mut results = Vec::new();
        for p in 0..10 {
            for _ in 0..4 {
                results.push(result("colors", p, p < 5));
            }
        }
        let ci = bootstrap(&results, 4000, 3).unwrap();
        assert!(ci.overall.high - ci.overall.low > 0.5, "{:?}", ci.overall);
        let all: Vec<ImageResult> = (0..10).map(|p| result("colors", p, true)).collect();
        let ci = bootstrap(&all, 100, 3).unwrap();
        assert_eq!((ci.overall.low, ci.overall.high), (1.0, 1.0));
        assert!(bootstrap(&[], 100, 3).is_none());
    }
}
