//! The bundled benchmarks as [`Benchmark`]s: GenEval (short and long prompts), the shapes sets,
//! GenEval++ and Imagine-Bench.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use echo4o_core::{SamplerSettings, SizeRule};

use super::{Benchmark, EvalItem, Recipe, ScoreContext};
use crate::geneval::{self, Metadata};
use crate::geneval_pp::{self, GenEvalPp};
use crate::imagine::{self, ImagineBench, Scoring};
use crate::report::Summary;
use crate::runner::{self, JudgedBenchmark, RunOptions};
use crate::{Error, Result};

/// GenEval's 553 prompts (short or long), or a shapes-world set in the same layout.
pub struct GenEvalSuite {
    name: &'static str,
    metadata: Vec<Metadata>,
    items: Vec<EvalItem>,
    shapes: bool,
}

impl GenEvalSuite {
    /// GenEval with the short prompts, or the long ones Echo-4o's script uses by default.
    pub fn official(long: bool) -> Self {
        let name = if long { "geneval-long" } else { "geneval" };
        Self::new(name, geneval::official_metadata(long), false)
    }

    /// GenEval-shapes, or GenEval++-shapes when `pp`.
    pub fn shapes(pp: bool) -> Self {
        let name = if pp {
            "geneval-pp-shapes"
        } else {
            "geneval-shapes"
        };
        Self::new(name, geneval::shapes_metadata(pp), true)
    }

    /// Only the first `n` items (a smoke run scores what it generated, nothing else).
    pub fn first(self, n: usize) -> Self {
        let mut metadata = self.metadata;
        metadata.truncate(n);
        Self::new(self.name, metadata, self.shapes)
    }

    fn new(name: &'static str, metadata: Vec<Metadata>, shapes: bool) -> Self {
        let items = metadata
            .iter()
            .enumerate()
            .map(|(i, m)| EvalItem {
                id: format!("{i:05}"),
                group: m.tag.clone(),
                prompt: m.prompt.clone(),
                references: Vec::new(),
            })
            .collect();
        GenEvalSuite {
            name,
            metadata,
            items,
            shapes,
        }
    }
}

/// The sampler of the shapes world's 64x64 models: 30 timesteps, no shift (what the shapes
/// experiment and the quickstart score with).
pub fn shapes_sampler() -> SamplerSettings {
    SamplerSettings {
        steps: Some(30),
        shift: Some(1.0),
        ..SamplerSettings::default()
    }
}

#[async_trait(?Send)]
impl Benchmark for GenEvalSuite {
    fn name(&self) -> &str {
        self.name
    }

    fn items(&self) -> &[EvalItem] {
        &self.items
    }

    fn recipe(&self) -> Recipe {
        if self.shapes {
            Recipe {
                samples: 4,
                max_samples: None,
                width: 64,
                height: 64,
                size_rule: SizeRule::Fixed,
                sampler: shapes_sampler(),
                crop_to_content: false,
            }
        } else {
            // Echo-4o's `run_geneval.sh` + `gen_images_mp.py`: 4 images at 1024, cfg 4,
            // interval [0, 1], shift 3, 50 timesteps, each cropped to its bounding box.
            Recipe {
                samples: 4,
                max_samples: None,
                width: 1024,
                height: 1024,
                size_rule: SizeRule::Fixed,
                sampler: SamplerSettings {
                    steps: Some(50),
                    cfg_text: Some(4.0),
                    shift: Some(3.0),
                    cfg_interval: Some((0.0, 1.0)),
                    ..SamplerSettings::default()
                },
                crop_to_content: true,
            }
        }
    }

    fn image_path(&self, images: &Path, index: usize, sample: usize) -> PathBuf {
        images.join(format!("{index:05}/samples/{sample:05}.png"))
    }

    fn prepare(&self, images: &Path, index: usize) -> Result<()> {
        let path = images.join(format!("{index:05}/metadata.jsonl"));
        if !path.is_file() {
            echo4o_core::fs::write_atomic(&path, self.metadata[index].to_python_json().as_bytes())?;
        }
        Ok(())
    }

    fn needs_judge(&self) -> bool {
        false
    }

    fn check_scorable(&self) -> Result<()> {
        if self.shapes {
            return Ok(());
        }
        Err(Error::invalid(
            "detector",
            format!(
                "{} on real images needs GenEval's Mask2Former detector and CLIP color \
                 classifier, which echo4o does not ship yet; generate with --no-score and score \
                 the folder (official layout) with the official evaluate_images.py",
                self.name
            ),
        ))
    }

    async fn score(&self, images: &Path, out: &Path, _ctx: &ScoreContext<'_>) -> Result<Summary> {
        self.check_scorable()?;
        geneval::shapes::score_folder_as(self.name, images, out)?;
        read_summary(out)
    }
}

fn read_summary(out: &Path) -> Result<Summary> {
    let path = out.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))
}

/// The recipe of the judged text-to-image benchmarks: one image per item at 1024x1024 with
/// BAGEL's text-to-image defaults (Echo-4o's `Eval.md` fixes no other setting).
fn one_image_recipe() -> Recipe {
    Recipe {
        samples: 1,
        max_samples: Some(1),
        width: 1024,
        height: 1024,
        size_rule: SizeRule::Fixed,
        sampler: SamplerSettings::default(),
        crop_to_content: false,
    }
}

async fn run_judged<B: JudgedBenchmark>(
    bench: &B,
    images: &Path,
    out: &Path,
    ctx: &ScoreContext<'_>,
) -> Result<Summary> {
    let judge = ctx
        .judge
        .ok_or_else(|| Error::invalid("judge", format!("{} is scored by a judge", bench.name())))?;
    let mut opts = RunOptions::new(images, out);
    opts.concurrency = ctx.concurrency;
    opts.attempts = ctx.attempts;
    Ok(runner::run(bench, judge, &opts, ctx.progress)
        .await?
        .summary)
}

/// GenEval++ (280 prompts), images `{line}.jpg`.
pub struct GenEvalPpSuite {
    bench: GenEvalPp,
    items: Vec<EvalItem>,
}

impl GenEvalPpSuite {
    /// The official prompt set.
    pub fn official() -> Self {
        Self::new(geneval_pp::official_items())
    }

    /// Only the first `n` items.
    pub fn first(self, n: usize) -> Self {
        Self::new(self.bench.items().iter().take(n).cloned().collect())
    }

    fn new(items: Vec<geneval_pp::Item>) -> Self {
        let bench = GenEvalPp::with_items(items);
        let items = bench
            .items()
            .iter()
            .map(|i| EvalItem {
                id: i.line.to_string(),
                group: i.tag.clone(),
                prompt: i.prompt.clone(),
                references: Vec::new(),
            })
            .collect();
        GenEvalPpSuite { bench, items }
    }
}

#[async_trait(?Send)]
impl Benchmark for GenEvalPpSuite {
    fn name(&self) -> &str {
        "geneval-pp"
    }
    fn items(&self) -> &[EvalItem] {
        &self.items
    }
    fn recipe(&self) -> Recipe {
        one_image_recipe()
    }
    fn image_path(&self, images: &Path, index: usize, _sample: usize) -> PathBuf {
        images.join(format!("{}.jpg", self.items[index].id))
    }
    fn needs_judge(&self) -> bool {
        true
    }
    fn default_judge_model(&self) -> Option<&'static str> {
        Some(geneval_pp::DEFAULT_MODEL)
    }
    async fn score(&self, images: &Path, out: &Path, ctx: &ScoreContext<'_>) -> Result<Summary> {
        run_judged(&self.bench, images, out, ctx).await
    }
}

/// Imagine-Bench (270 prompts), images `{id}.png`.
pub struct ImagineSuite {
    bench: ImagineBench,
    items: Vec<EvalItem>,
    strict: bool,
}

impl ImagineSuite {
    /// The official prompt set; `strict_official` keeps the shipped script's dropped
    /// Multi-Object weight.
    pub fn official(strict_official: bool) -> Self {
        Self::new(imagine::official_items(), strict_official)
    }

    /// Only the first `n` items.
    pub fn first(self, n: usize) -> Self {
        let strict = self.strict;
        Self::new(self.bench.items().iter().take(n).cloned().collect(), strict)
    }

    fn new(items: Vec<imagine::Item>, strict_official: bool) -> Self {
        let scoring = if strict_official {
            Scoring::StrictOfficial
        } else {
            Scoring::Official
        };
        let bench = ImagineBench::with_items(items).with_scoring(scoring);
        let items = bench
            .items()
            .iter()
            .map(|i| EvalItem {
                id: i.id.to_string(),
                group: i.category().to_string(),
                prompt: i.instruction.clone(),
                references: Vec::new(),
            })
            .collect();
        ImagineSuite {
            bench,
            items,
            strict: strict_official,
        }
    }
}

#[async_trait(?Send)]
impl Benchmark for ImagineSuite {
    fn name(&self) -> &str {
        "imagine"
    }
    fn items(&self) -> &[EvalItem] {
        &self.items
    }
    fn recipe(&self) -> Recipe {
        one_image_recipe()
    }
    fn image_path(&self, images: &Path, index: usize, _sample: usize) -> PathBuf {
        images.join(format!("{}.png", self.items[index].id))
    }
    fn needs_judge(&self) -> bool {
        true
    }
    fn default_judge_model(&self) -> Option<&'static str> {
        Some(imagine::DEFAULT_MODEL)
    }
    async fn score(&self, images: &Path, out: &Path, ctx: &ScoreContext<'_>) -> Result<Summary> {
        run_judged(&self.bench, images, out, ctx).await
    }
}
