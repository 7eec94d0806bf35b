//! Writing a finished job as a dataset: Echo-4o-Image layout for the text-to-image recipes
//! (`Instruction-Following-Image/`, `Surrel-Fantasy-Image/`, with `type` = the category) and
//! Bagel multi_ref parquet for multi-reference samples, in prompt-id order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use echo4o_core::{Sample, SampleImage};

use super::RecipeKind;
use super::job::{Provenance, read_provenance};
use crate::{Error, Result};

/// Which samples and prompts to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportMode {
    /// Kept samples with their final (verified, maybe rewritten) prompt.
    Verified,
    /// Every generated image with the prompt it was generated from, unverified: the baseline a
    /// verified set is compared with.
    Unfiltered,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportSummary {
    /// Samples per subset (or `multi_ref`).
    pub written: BTreeMap<String, usize>,
    /// Files and folders written.
    pub paths: Vec<PathBuf>,
}

fn sample(job: &Path, p: &Provenance, mode: ExportMode) -> Option<Result<Sample>> {
    let image = p.image.as_ref()?;
    let text = match mode {
        ExportMode::Verified if p.outcome.kept() => p.final_prompt.clone()?,
        ExportMode::Verified => return None,
        ExportMode::Unfiltered => p.sent_prompt.clone().unwrap_or(p.prompt.prompt.clone()),
    };
    let path = job.join(image);
    Some((|| {
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let mut refs = Vec::new();
        for r in &p.prompt.references {
            let b = std::fs::read(&r.path).map_err(|e| Error::io(&r.path, e))?;
            refs.push(SampleImage::encoded(b, r.path.display().to_string()));
        }
        Ok(Sample::new(
            p.prompt.id.clone(),
            text,
            SampleImage::encoded(bytes, path.display().to_string()),
        )
        .with_references(refs)
        .with_subset(p.prompt.recipe.subset())
        .with_category(p.prompt.category.clone()))
    })())
}

/// Exports the job in `job` to `dest`.
pub fn export(job: &Path, dest: &Path, mode: ExportMode) -> Result<ExportSummary> {
    let mut records = read_provenance(&job.join("provenance.jsonl"))?;
    records.sort_by(|a, b| a.prompt.id.cmp(&b.prompt.id));
    let mut summary = ExportSummary::default();
    for recipe in [
        RecipeKind::Instruction,
        RecipeKind::Surreal,
        RecipeKind::Multiref,
    ] {
        let samples: Vec<Result<Sample>> = records
            .iter()
            .filter(|p| p.prompt.recipe == recipe)
            .filter_map(|p| sample(job, p, mode))
            .collect();
        if samples.is_empty() {
            continue;
        }
        let samples: Vec<Sample> = samples.into_iter().collect::<Result<_>>()?;
        if recipe == RecipeKind::Multiref {
            let dir = dest.join("multi_ref");
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let file = dir.join("part-00000.parquet");
            let n = crate::parquet::write_multi_ref(&file, samples.into_iter().map(Ok), 64)?;
            let info = dir.join("parquet_info.json");
            crate::parquet::write_parquet_info(&info, std::slice::from_ref(&file))?;
            summary.written.insert("multi_ref".into(), n);
            summary.paths.extend([file, info]);
        } else {
            let subset = recipe.subset();
            let n = crate::echo4o_image::write_echo4o(
                dest,
                subset,
                samples.into_iter().map(Ok),
                crate::echo4o_image::SHARD_SIZE,
            )?;
            summary.written.insert(subset.into(), n);
            summary.paths.push(dest.join(subset));
        }
    }
    Ok(summary)
}
