//! The bundled benchmarks as [`Benchmark`]s: GenEval (short and long prompts), the shapes sets,
//! GenEval++ and Imagine-Bench.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use echo4o_core::{SamplerSettings, SizeRule};

use super::{Benchmark, EvalItem, Perception, Recipe, ScoreContext};
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
    perception: Option<Perception>,
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
        let perception = self.perception;
        let mut metadata = self.metadata;
        metadata.truncate(n);
        let mut suite = Self::new(self.name, metadata, self.shapes);
        suite.perception = perception;
        suite
    }

    /// Scores real images with these models (GenEval's Mask2Former and CLIP, from
    /// `echo4o-perception`, or your own) instead of refusing to; the shapes sets keep theirs.
    pub fn with_perception(mut self, perception: Perception) -> Self {
        self.perception = Some(perception);
        self
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
            perception: None,
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
        if self.shapes || self.perception.is_some() {
            return Ok(());
        }
        Err(Error::invalid(
            "detector",
            format!(
                "{} on real images needs GenEval's detector and colour classifier: give \
                 Mask2Former's and CLIP's weights (the CLI's --detector-weights and \
                 --clip-weights; suite::Options::perception in the library), or generate with \
                 --no-score and score the folder later",
                self.name
            ),
        ))
    }

    async fn score(&self, images: &Path, out: &Path, ctx: &ScoreContext<'_>) -> Result<Summary> {
        self.check_scorable()?;
        match &self.perception {
            Some(p) if !self.shapes => {
                geneval::evaluate_folder_with_progress(
                    self.name,
                    images,
                    out,
                    p.detector.as_ref(),
                    p.classifier.as_ref(),
                    &geneval::EngineConfig::default(),
                    ctx.progress,
                )?;
            }
            _ => {
                geneval::shapes::score_folder_as(self.name, images, out)?;
            }
        }
        read_summary(out)
    }
}

fn read_summary(out: &Path) -> Result<Summary> {
    let path = out.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))
}

/// A judge-scored benchmark (GenEval++, Imagine-Bench) as a [`Benchmark`]: its layout is the
/// first of the runner's own image candidates, its scorer the runner.
pub struct JudgedSuite<B: JudgedBenchmark> {
    name: &'static str,
    default_model: &'static str,
    bench: B,
    items: Vec<EvalItem>,
}

impl<B: JudgedBenchmark> JudgedSuite<B> {
    fn new(
        name: &'static str,
        default_model: &'static str,
        bench: B,
        item: impl Fn(&B::Item) -> EvalItem,
    ) -> Self {
        let items = bench.items().iter().map(item).collect();
        JudgedSuite {
            name,
            default_model,
            bench,
            items,
        }
    }
}

/// GenEval++ (280 prompts), images `{line}.jpg`.
pub type GenEvalPpSuite = JudgedSuite<GenEvalPp>;

impl JudgedSuite<GenEvalPp> {
    /// The official prompt set, its first `n` items.
    pub fn official_first(n: usize) -> Self {
        let items = geneval_pp::official_items().into_iter().take(n).collect();
        Self::new(
            "geneval-pp",
            geneval_pp::DEFAULT_MODEL,
            GenEvalPp::with_items(items),
            |i| EvalItem {
                id: i.line.to_string(),
                group: i.tag.clone(),
                prompt: i.prompt.clone(),
                references: Vec::new(),
            },
        )
    }
}

/// Imagine-Bench (270 prompts), images `{id}.png`.
pub type ImagineSuite = JudgedSuite<ImagineBench>;

impl JudgedSuite<ImagineBench> {
    /// The official prompt set, its first `n` items; `strict_official` keeps the shipped
    /// script's dropped Multi-Object weight.
    pub fn official_first(n: usize, strict_official: bool) -> Self {
        let scoring = if strict_official {
            Scoring::StrictOfficial
        } else {
            Scoring::Official
        };
        let items = imagine::official_items().into_iter().take(n).collect();
        Self::new(
            "imagine",
            imagine::DEFAULT_MODEL,
            ImagineBench::with_items(items).with_scoring(scoring),
            |i| EvalItem {
                id: i.id.to_string(),
                group: i.category().to_string(),
                prompt: i.instruction.clone(),
                references: Vec::new(),
            },
        )
    }
}

#[async_trait(?Send)]
impl<B: JudgedBenchmark> Benchmark for JudgedSuite<B> {
    fn name(&self) -> &str {
        self.name
    }
    fn items(&self) -> &[EvalItem] {
        &self.items
    }
    /// One image per item at 1024x1024 with BAGEL's text-to-image defaults (Echo-4o's `Eval.md`
    /// fixes no other setting).
    fn recipe(&self) -> Recipe {
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
    fn image_path(&self, images: &Path, index: usize, _sample: usize) -> PathBuf {
        // The runner's first candidate is the official name (`{line}.jpg`, `{id}.png`); both
        // built-in benchmarks always give one.
        let item = &self.bench.items()[index];
        self.bench
            .image_candidates(images, item)
            .into_iter()
            .next()
            .unwrap_or_else(|| images.join(&self.items[index].id))
    }
    fn needs_judge(&self) -> bool {
        true
    }
    fn default_judge_model(&self) -> Option<&'static str> {
        Some(self.default_model)
    }
    async fn score(&self, images: &Path, out: &Path, ctx: &ScoreContext<'_>) -> Result<Summary> {
        let judge = ctx.judge.ok_or_else(|| {
            Error::invalid("judge", format!("{} is scored by a judge", self.name))
        })?;
        let mut opts = RunOptions::new(images, out);
        opts.concurrency = ctx.concurrency;
        opts.attempts = ctx.attempts;
        Ok(runner::run(&self.bench, judge, &opts, ctx.progress)
            .await?
            .summary)
    }
}
