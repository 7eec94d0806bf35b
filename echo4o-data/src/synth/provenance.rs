//! What a job keeps about each prompt: the [`Provenance`] record in `provenance.jsonl`, and the
//! response sidecar written beside each image.

use std::path::Path;

use echo4o_core::jsonl::AppendLog;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::SynthPrompt;
use super::verify::Verification;
use crate::{Error, Result};

/// One verification round of a sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// The prompt checked.
    pub prompt: String,
    /// Its metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Who wrote it: `recipe` or the rewriter's name.
    pub written_by: String,
    /// The verifier's name.
    pub verifier: String,
    /// Its verdict.
    pub verification: Verification,
}

/// What became of a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The image matched the recipe's prompt.
    Aligned,
    /// Kept with a rewritten prompt.
    Rewritten,
    /// Kept without verification.
    Unverified,
    /// Generated, but no prompt matched within the rewrites.
    Dropped,
    /// Refused by the safety system (after the one rewrite, if any).
    Refused,
    /// The request failed for good.
    Failed,
}

impl Outcome {
    /// Whether the sample goes into the dataset.
    pub fn kept(self) -> bool {
        matches!(
            self,
            Outcome::Aligned | Outcome::Rewritten | Outcome::Unverified
        )
    }
}

/// The provenance of one prompt: everything needed to know where a sample came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The prompt as the recipe wrote it (recipe, category, template, attributes, checklist,
    /// references with hashes and licences, who wrote it).
    pub prompt: SynthPrompt,
    /// What became of it.
    pub outcome: Outcome,
    /// The prompt the sample is kept with (the last aligned one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_prompt: Option<String>,
    /// Its metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_metadata: Option<Map<String, Value>>,
    /// The request key of the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The prompt actually sent (differs from the recipe's after a refusal rewrite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_prompt: Option<String>,
    /// The image file, relative to the job folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// SHA-256 of the image bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_sha256: Option<String>,
    /// The backend, model and parameters.
    pub backend: Value,
    /// The seed sent (`None` where the backend takes none, e.g. OpenAI: not reproducible).
    pub seed: Option<u64>,
    /// The backend's `revised_prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revised_prompt: Option<String>,
    /// Request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// `created`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    /// Raw `usage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
    /// Fields sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<Map<String, Value>>,
    /// Options the backend did not take.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub omitted: Vec<String>,
    /// Requests sent for it (retries included).
    pub attempts: u32,
    /// Dollars: the image plus every judge and rewriter call.
    pub cost: f64,
    /// The prices' version.
    pub prices_version: String,
    /// Every verification round, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<Round>,
    /// The refusal, when there was one: the server's error body, and the prompt rewritten for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Value>,
    /// The error of a failed request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix time work on the prompt began in the run that finished it.
    pub started_at: f64,
    /// Unix time the record was written.
    pub finished_at: f64,
}

/// The response sidecar written beside each image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Sidecar {
    pub(crate) prompt: String,
    pub(crate) seed: Option<u64>,
    pub(crate) revised_prompt: Option<String>,
    pub(crate) usage: Option<Value>,
    pub(crate) request_id: Option<String>,
    pub(crate) created: Option<i64>,
    pub(crate) attempts: u32,
    pub(crate) sent: Map<String, Value>,
    pub(crate) omitted: Vec<String>,
    pub(crate) cost: f64,
    pub(crate) image: String,
}

/// A previous run's reply for a key: its sidecar and image bytes, if both are on disk. A sidecar
/// that exists but cannot be read, or whose image is gone or not an image, is an error naming it:
/// that image was paid for, and silently requesting it again would pay twice.
pub(crate) fn read_sidecar(out: &Path, path: &Path) -> Result<Option<(Sidecar, Vec<u8>)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let bad = |message: String| Error::Layout {
        path: path.to_path_buf(),
        message: format!(
            "{message}; this reply was paid for: repair or delete the file to request it again"
        ),
    };
    let sidecar: Sidecar =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a reply sidecar: {e}")))?;
    let image = out.join(&sidecar.image);
    let bytes = std::fs::read(&image).map_err(|e| bad(format!("{}: {e}", image.display())))?;
    echo4o_core::decode_image(&bytes, &image.display().to_string())
        .map_err(|e| bad(e.to_string()))?;
    Ok(Some((sidecar, bytes)))
}

/// Reads `provenance.jsonl` (a cut-off last line is ignored; a missing file has no records).
pub fn read_provenance(path: &Path) -> Result<Vec<Provenance>> {
    Ok(AppendLog::read(path)?)
}
