//! The GenEval rule engine as a synthesis [`Verifier`], and a rule-based [`Rewriter`] that writes
//! the prompt an image does satisfy from what the detector sees: Echo-4o's "no invalid images,
//! only invalid prompts" without a chat model, for detector-verified data such as the shapes
//! world.
//!
//! ```
//! use echo4o_bench::geneval::shapes::{ShapesColorClassifier, ShapesDetector};
//! use echo4o_bench::geneval::verify::rewrite_from_observations;
//! use echo4o_bench::geneval::{EngineConfig, observe};
//! use echo4o_data::shapes::layout::{Group, Request, place};
//! use echo4o_data::shapes::{Background, Color, Shape, Size};
//!
//! // Three red circles, where the prompt asked for four.
//! let request = Request {
//!     groups: vec![Group { shape: Shape::Circle, color: Color::Red, size: Size::Small, count: 3, region: None }],
//!     relation: None,
//!     background: Background::Clean,
//! };
//! let image = place(&request, 128, 128, 1).unwrap().render();
//! let seen = observe(&image, "instruction_easy", &ShapesDetector::default(), &ShapesColorClassifier, &EngineConfig::default())?;
//! let rewrite = rewrite_from_observations(&seen, image.dimensions(), "a photo of four red circles", "instruction_easy", None).unwrap();
//! assert_eq!(rewrite.prompt, "a photo of three red circles");
//! # Ok::<(), echo4o_bench::Error>(())
//! ```

use async_trait::async_trait;
use echo4o_data::synth::verify::{Rewrite, Rewriter, Verification, Verifier, VerifyInput};
use serde_json::{Map, Value, json};

use super::engine::in_region;
use super::{ColorClassifier, Detector, EngineConfig, Metadata, Observed, evaluate_image, observe};
use echo4o_data::shapes::captions::{article, join, plural};

const NUMBERS: [&str; 11] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
];

fn bench_err(e: crate::Error) -> echo4o_core::Error {
    echo4o_core::Error::invalid("GenEval verification", e.to_string())
}

fn metadata_of(input: &VerifyInput<'_>) -> echo4o_core::Result<Metadata> {
    let raw = input.metadata.ok_or_else(|| {
        echo4o_core::Error::invalid(
            "GenEval verification",
            format!(
                "prompt `{}` has no GenEval metadata (use the instruction recipe, or a checklist judge)",
                input.original.id
            ),
        )
    })?;
    let mut raw = raw.clone();
    raw.insert("prompt".into(), json!(input.prompt));
    Metadata::from_json(&Value::Object(raw).to_string(), &input.original.id, 1).map_err(bench_err)
}

/// The rule engine with its perception as a verifier: the image is aligned when every include
/// and exclude clause of the prompt's metadata holds.
pub struct GenEvalVerifier<D, C> {
    /// The detector.
    pub detector: D,
    /// The color classifier.
    pub classifier: C,
    /// The rule constants.
    pub config: EngineConfig,
    /// Name for provenance (`geneval-rules+shapes`).
    pub name: String,
}

#[async_trait]
impl<D: Detector, C: ColorClassifier> Verifier for GenEvalVerifier<D, C> {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn verify(&self, input: &VerifyInput<'_>) -> echo4o_core::Result<Verification> {
        let metadata = metadata_of(input)?;
        let r = evaluate_image(
            input.image,
            &input.original.id,
            &metadata,
            &self.detector,
            &self.classifier,
            &self.config,
        )
        .map_err(bench_err)?;
        Ok(Verification {
            aligned: r.correct,
            reasons: r.reason.lines().map(str::to_string).collect(),
            evidence: json!({"details": r.details}),
            usage: None,
        })
    }
}

/// Rewrites a prompt from detections: every detected class with its exact count (an `exclude`
/// clause pins it), its color when all its objects share one, and the region the prompt asked
/// for when all its objects lie there. The prefix ("A photo of") is kept from the old prompt.
pub struct DetectionRewriter<D, C> {
    /// The detector.
    pub detector: D,
    /// The color classifier.
    pub classifier: C,
    /// The rule constants.
    pub config: EngineConfig,
}

/// The rewrite for `observed` in an image of `size` (see [`DetectionRewriter`]); `None` when
/// nothing was detected or a count is above ten.
pub fn rewrite_from_observations(
    observed: &[Observed],
    size: (u32, u32),
    old_prompt: &str,
    tag: &str,
    old_metadata: Option<&Metadata>,
) -> Option<Rewrite> {
    if observed.is_empty() {
        return None;
    }
    let prefix = if old_prompt.starts_with("A photo of") {
        "A photo of"
    } else {
        "a photo of"
    };
    // Classes in the order the old prompt named them, then the rest by name.
    let mut classes: Vec<String> = Vec::new();
    if let Some(m) = old_metadata {
        for r in &m.include {
            if observed.iter().any(|o| o.class == r.class) && !classes.contains(&r.class) {
                classes.push(r.class.clone());
            }
        }
    }
    for o in observed {
        if !classes.contains(&o.class) {
            classes.push(o.class.clone());
        }
    }
    let mut parts = Vec::new();
    let mut include = Vec::new();
    let mut exclude = Vec::new();
    for class in &classes {
        let objs: Vec<&Observed> = observed.iter().filter(|o| &o.class == class).collect();
        let n = objs.len();
        if n >= NUMBERS.len() {
            return None;
        }
        let color = objs
            .iter()
            .all(|o| o.color == objs[0].color)
            .then(|| objs[0].color.clone());
        let wanted_region = old_metadata.and_then(|m| {
            m.include
                .iter()
                .find(|r| &r.class == class)
                .and_then(|r| r.region.clone())
        });
        let region =
            wanted_region.filter(|region| objs.iter().all(|o| in_region(region, &o.bbox, size)));
        let noun = if n == 1 { class.clone() } else { plural(class) };
        let noun = match &color {
            Some(c) => format!("{c} {noun}"),
            None => noun,
        };
        let mut text = if n == 1 {
            format!("{} {noun}", article(&noun))
        } else {
            format!("{} {noun}", NUMBERS[n])
        };
        let mut clause = Map::new();
        clause.insert("class".into(), json!(class));
        clause.insert("count".into(), json!(n));
        if let Some(c) = &color {
            clause.insert("color".into(), json!(c));
        }
        if let Some(r) = &region {
            clause.insert("region".into(), json!(r));
            text.push(' ');
            text.push_str(match r.as_str() {
                "left" => "on the left",
                "right" => "on the right",
                "above" => "at the top",
                _ => "at the bottom",
            });
        }
        include.push(Value::Object(clause));
        exclude.push(json!({"class": class, "count": n + 1}));
        parts.push(text);
    }
    if parts.is_empty() {
        return None;
    }
    let prompt = format!("{prefix} {}", join(&parts));
    let mut metadata = Map::new();
    metadata.insert("tag".into(), json!(tag));
    metadata.insert("include".into(), Value::Array(include));
    metadata.insert("exclude".into(), Value::Array(exclude));
    metadata.insert("prompt".into(), json!(prompt));
    Some(Rewrite {
        prompt,
        metadata: Some(metadata),
        usage: None,
    })
}

#[async_trait]
impl<D: Detector, C: ColorClassifier> Rewriter for DetectionRewriter<D, C> {
    fn name(&self) -> String {
        "rules:detections".into()
    }

    async fn rewrite(
        &self,
        input: &VerifyInput<'_>,
        _verdict: &Verification,
    ) -> echo4o_core::Result<Option<Rewrite>> {
        let old = metadata_of(input).ok();
        let tag = old.as_ref().map_or("rewritten", |m| m.tag.as_str());
        let observed = observe(
            input.image,
            tag,
            &self.detector,
            &self.classifier,
            &self.config,
        )
        .map_err(bench_err)?;
        Ok(rewrite_from_observations(
            &observed,
            input.image.dimensions(),
            input.prompt,
            tag,
            old.as_ref(),
        ))
    }
}
