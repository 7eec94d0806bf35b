//! GenEval (553 prompts, 6 tasks), scored by the official rule engine over pluggable perception.
//!
//! The official script detects objects with Mask2Former and classifies colors with CLIP; here
//! both are traits ([`Detector`], [`ColorClassifier`]), and the rules between them (thresholds,
//! NMS, top-`count` selection, color crops on `#999`, the position rule, include AND / exclude
//! OR) are reproduced exactly, so any perception model plugs in.

pub mod bootstrap;
mod engine;
mod folder;
pub mod geometry;
mod layout;
mod perception;
mod scores;
pub mod shapes;
pub mod verify;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use engine::{EngineConfig, GenEvalScorer, ImageResult, Observed, evaluate_image, observe};
pub use folder::{PROGRESS_LOG, evaluate_folder, evaluate_folder_with_progress};
pub use geometry::{BBox, Relation};
pub use layout::{GenEvalLayout, LayoutEntry, read_layout, write_sample_folder};
pub use perception::{COLORS, ColorClassifier, Detection, Detector};
pub use scores::{GenEvalScores, summarize};

use crate::{Error, Result};

/// The official metadata (short prompts), bundled.
pub const METADATA_JSONL: &str = include_str!("../../data/geneval/evaluation_metadata.jsonl");
/// The same 553 records with LLM-rewritten long prompts (Echo-4o's script default), bundled.
pub const METADATA_LONG_JSONL: &str =
    include_str!("../../data/geneval/evaluation_metadata_long.jsonl");
/// The 80 COCO class names in COCO order.
pub const OBJECT_NAMES: &str = include_str!("../../data/geneval/object_names.txt");

/// GenEval-shapes: GenEval's six tasks over the shapes world, 50 prompts each, made by
/// `echo4o_data::shapes::captions::geneval_shapes(50, SHAPES_SEED)` and checked in.
pub const SHAPES_METADATA_JSONL: &str = include_str!("../../data/shapes/geneval_shapes.jsonl");
/// GenEval++-shapes: GenEval++'s seven tags over the shapes world, 40 prompts each (as
/// GenEval++), made by `geneval_pp_shapes(40, SHAPES_SEED)` and checked in.
pub const SHAPES_PP_METADATA_JSONL: &str =
    include_str!("../../data/shapes/geneval_pp_shapes.jsonl");
/// The seed both shapes prompt sets were made with.
pub const SHAPES_SEED: u64 = 2026;

/// The checked-in shapes prompt sets: GenEval-shapes, or GenEval++-shapes when `pp`.
pub fn shapes_metadata(pp: bool) -> Vec<Metadata> {
    let (text, name) = if pp {
        (SHAPES_PP_METADATA_JSONL, "geneval_pp_shapes.jsonl")
    } else {
        (SHAPES_METADATA_JSONL, "geneval_shapes.jsonl")
    };
    // Shipped with the crate and parsed by a test: a failure is a build defect, and an empty
    // default would silently score an empty benchmark.
    parse_metadata(text, name).expect("the bundled metadata parses")
}

/// The six tasks in canonical order (the order of the official results header
/// `SO TO CT CL POS ATTR`).
pub const TASKS: [&str; 6] = echo4o_core::vocab::GENEVAL_TASKS;

/// One `include` clause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requirement {
    /// A COCO class name.
    pub class: String,
    /// At least this many.
    pub count: u32,
    /// Each of the `count` objects must be this color.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// `[relation, index of the target include clause]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<(Relation, usize)>,
    /// GenEval++'s absolute region (`left`, `right`, `above`, `below`): each object's box centre
    /// lies in that half of the image. Not in GenEval's own metadata; the rule engine checks it
    /// so GenEval++-style prompts (the shapes world's) can be scored without a judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// GenEval++'s `larger` / `smaller`: each object's box is larger (smaller) than every object
    /// of the clauses marked the other way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
}

/// One `exclude` clause: fewer than `count` objects of `class`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exclusion {
    /// A COCO class name.
    pub class: String,
    /// The excluded count.
    pub count: u32,
}

/// One GenEval prompt's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// The task.
    pub tag: String,
    /// Required objects (AND).
    pub include: Vec<Requirement>,
    /// Forbidden counts (OR).
    pub exclude: Vec<Exclusion>,
    /// The prompt.
    pub prompt: String,
    /// The record as read, key order kept, so it is written back exactly.
    pub raw: Map<String, Value>,
}

#[derive(Deserialize)]
struct Fields {
    tag: String,
    include: Vec<Requirement>,
    #[serde(default)]
    exclude: Vec<Exclusion>,
    prompt: String,
}

impl Metadata {
    /// Parses one record; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str, line: usize) -> Result<Self> {
        let at = |message: String| Error::Line {
            origin: origin.to_string(),
            line,
            message,
        };
        let raw: Map<String, Value> =
            serde_json::from_str(text.trim()).map_err(|e| at(e.to_string()))?;
        let f: Fields =
            serde_json::from_value(Value::Object(raw.clone())).map_err(|e| at(e.to_string()))?;
        for (i, req) in f.include.iter().enumerate() {
            if let Some((_, target)) = req.position
                && target >= i
            {
                return Err(at(format!(
                    "include[{i}] refers to include[{target}], which does not come before it"
                )));
            }
        }
        Ok(Metadata {
            tag: f.tag,
            include: f.include,
            exclude: f.exclude,
            prompt: f.prompt,
            raw,
        })
    }

    /// The record as Python's `json.dumps` writes it.
    pub fn to_python_json(&self) -> String {
        crate::text::py_json_dumps(&Value::Object(self.raw.clone()))
    }
}

/// Parses a metadata JSONL file (one record per line).
pub fn parse_metadata(text: &str, origin: &str) -> Result<Vec<Metadata>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| Metadata::from_json(l, origin, i + 1))
        .collect()
}

/// The 553 official prompts: `long` selects the rewritten long prompts.
pub fn official_metadata(long: bool) -> Vec<Metadata> {
    let (text, name) = if long {
        (METADATA_LONG_JSONL, "evaluation_metadata_long.jsonl")
    } else {
        (METADATA_JSONL, "evaluation_metadata.jsonl")
    };
    // Shipped with the crate and parsed by a test: a failure is a build defect, and an empty
    // default would silently score an empty benchmark.
    parse_metadata(text, name).expect("the bundled metadata parses")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_metadata_has_553_records_in_task_blocks() {
        for long in [false, true] {
            let all = official_metadata(long);
            assert_eq!(all.len(), 553);
            let count = |t: &str| all.iter().filter(|m| m.tag == t).count();
            assert_eq!(
                TASKS.map(count),
                [80, 99, 80, 94, 100, 100],
                "long = {long}"
            );
        }
        let short = official_metadata(false);
        let long = official_metadata(true);
        for (s, l) in short.iter().zip(&long) {
            assert_eq!(
                (&s.tag, &s.include, &s.exclude),
                (&l.tag, &l.include, &l.exclude)
            );
        }
        assert_eq!(OBJECT_NAMES.lines().count(), 80);
    }

    #[test]
    fn records_write_back_as_python_dumps_them() {
        let first = METADATA_JSONL.lines().next().unwrap();
        assert_eq!(official_metadata(false)[0].to_python_json(), first);
        let pos = METADATA_JSONL.lines().nth(360).unwrap();
        let m = Metadata::from_json(pos, "x", 361).unwrap();
        assert_eq!(m.to_python_json(), pos);
    }

    #[test]
    fn bad_records_name_the_line() {
        let err = parse_metadata("{\"tag\": \"x\"}\n", "m.jsonl")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("m.jsonl:1: missing field"), "{err}");
        let fwd = r#"{"tag": "position", "include": [{"class": "a", "count": 1, "position": ["above", 1]}, {"class": "b", "count": 1}], "prompt": "p"}"#;
        let err = parse_metadata(fwd, "m.jsonl").unwrap_err().to_string();
        assert!(err.contains("does not come before"), "{err}");
    }
}
