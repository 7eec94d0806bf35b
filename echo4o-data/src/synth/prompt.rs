//! What every recipe produces: a [`SynthPrompt`], the text plus the structured metadata that lets
//! a verifier check an image against it, and the references it composes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The three Echo-4o recipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipeKind {
    /// Instruction following: templated "A photo of ..." prompts with GenEval metadata.
    Instruction,
    /// Surreal fantasy: attribute construction, then conceptual deflection.
    Surreal,
    /// Multi-reference composition of 2 to 4 reference images.
    Multiref,
}

impl RecipeKind {
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            RecipeKind::Instruction => "instruction",
            RecipeKind::Surreal => "surreal",
            RecipeKind::Multiref => "multiref",
        }
    }

    /// The Echo-4o-Image subset this recipe's samples are written to.
    pub fn subset(self) -> &'static str {
        match self {
            RecipeKind::Instruction => "Instruction-Following-Image",
            // sic: the released dataset's spelling
            RecipeKind::Surreal => "Surrel-Fantasy-Image",
            RecipeKind::Multiref => "Multi-Reference-Image",
        }
    }
}

/// What a reference image shows, as the multi-reference recipe classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefLabel {
    /// A person.
    Human,
    /// A thing.
    Object,
    /// A place or setting.
    Scene,
}

impl RefLabel {
    /// Parses `human`, `object` or `scene` (any case).
    pub fn from_name(name: &str) -> Option<RefLabel> {
        match name.trim().to_ascii_lowercase().as_str() {
            "human" | "person" => Some(RefLabel::Human),
            "object" | "thing" => Some(RefLabel::Object),
            "scene" | "place" | "setting" => Some(RefLabel::Scene),
            _ => None,
        }
    }

    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            RefLabel::Human => "human",
            RefLabel::Object => "object",
            RefLabel::Scene => "scene",
        }
    }
}

/// One reference image of a multi-reference prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Where it is.
    pub path: PathBuf,
    /// Human, object or scene.
    pub label: RefLabel,
    /// A short description used in the instruction ("a woman in a red coat").
    pub name: String,
    /// SHA-256 of the file's bytes (part of the job key).
    pub sha256: String,
    /// Its licence, as given in the pool manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<String>,
    /// Where it came from, as given in the pool manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The chat model that labelled and named it (`None`: the manifest did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labelled_by: Option<String>,
}

/// A prompt a recipe wrote, with everything needed to verify an image against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthPrompt {
    /// Stable id within the job (`instruction-000042`).
    pub id: String,
    /// The recipe.
    pub recipe: RecipeKind,
    /// Sub-category: `easy`/`medium`/`hard`, an Imagine-Bench type (`COLOR`, `MATERIAL`, ...), or
    /// the reference combination (`human+object+scene`).
    pub category: String,
    /// Template id and version, e.g. `instruction/a-photo-of@1`.
    pub template: String,
    /// The sampled attributes, as the recipe drew them.
    pub attributes: Value,
    /// The prompt text.
    pub prompt: String,
    /// GenEval-form metadata (`tag`, `include`, `exclude`, `prompt`) for rule-based verification
    /// (instruction recipe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// A checklist note of the kind Imagine-Bench's judge reads: what the image must show.
    pub checklist: String,
    /// References, in the order the prompt names them (`image 1`, `image 2`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Reference>,
    /// Who wrote the prompt: `template`, or the chat model that attributed or reworded it.
    pub written_by: Vec<String>,
}
