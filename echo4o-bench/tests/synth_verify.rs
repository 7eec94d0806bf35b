//! The GenEval rule engine verifying synthesis jobs, and rule-based rewriting from detections,
//! on shapes-world renders with known mistakes.
#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use echo4o_bench::geneval::EngineConfig;
use echo4o_bench::geneval::shapes::{ShapesColorClassifier, ShapesDetector};
use echo4o_bench::geneval::verify::{DetectionRewriter, GenEvalVerifier};
use echo4o_core::{GenerationRequest, Generator};
use echo4o_data::shapes::captions::{Difficulty, echo_instruction};
use echo4o_data::shapes::layout::{Request, place};
use echo4o_data::synth::backend::GeneratorBackend;
use echo4o_data::synth::job::{JobConfig, Outcome, SynthJob, read_provenance};
use echo4o_data::synth::{RecipeKind, SynthPrompt};
use image::RgbImage;

/// Renders each prompt's scene, with one object too few in the first group for every other
/// prompt: a generator whose mistakes are known.
struct Renderer {
    scenes: HashMap<String, Request>,
}

#[async_trait]
impl Generator for Renderer {
    fn name(&self) -> String {
        "shapes-renderer".into()
    }

    async fn generate(&self, req: &GenerationRequest) -> echo4o_core::Result<Vec<RgbImage>> {
        let scene = self.scenes.get(&req.prompt).unwrap();
        let img = place(scene, req.width, req.height, req.seed)
            .map_err(|e| echo4o_core::Error::invalid("scene", e.to_string()))?
            .render();
        Ok(vec![img])
    }
}

fn verifier() -> GenEvalVerifier<ShapesDetector, ShapesColorClassifier> {
    GenEvalVerifier {
        detector: ShapesDetector::default(),
        classifier: ShapesColorClassifier,
        config: EngineConfig::default(),
        name: "geneval-rules+shapes".into(),
    }
}

#[tokio::test]
async fn misaligned_renders_are_rewritten_into_aligned_samples() {
    let mut scenes = HashMap::new();
    let mut prompts = Vec::new();
    let mut broken = 0;
    for i in 0..24u64 {
        let p = echo_instruction(100 + i, Difficulty::Easy);
        let mut request = p.request.clone();
        // Break every other scene where the prompt would notice: one object fewer in a group of
        // two or more, or another color where the prompt states one.
        let states_color = p.metadata["include"][0].get("color").is_some();
        if i % 2 == 0 {
            let g = &mut request.groups[0];
            if g.count > 1 {
                g.count -= 1;
                broken += 1;
            } else if states_color {
                g.color = if g.color == echo4o_data::shapes::Color::Red {
                    echo4o_data::shapes::Color::Blue
                } else {
                    echo4o_data::shapes::Color::Red
                };
                broken += 1;
            }
        }
        scenes.insert(p.prompt.clone(), request);
        prompts.push(SynthPrompt {
            id: format!("shapes-{i:03}"),
            recipe: RecipeKind::Instruction,
            category: "easy".into(),
            template: "shapes/echo-instruction@1".into(),
            attributes: serde_json::Value::Null,
            prompt: p.prompt.clone(),
            metadata: Some(p.metadata.clone()),
            checklist: String::new(),
            references: vec![],
            written_by: vec!["template".into()],
        });
    }
    assert!(broken >= 8, "{broken}");
    let backend = GeneratorBackend::new(Arc::new(Renderer { scenes }), 128, 128);
    let dir = tempfile::tempdir().unwrap();
    let stats = SynthJob::new(JobConfig::new(dir.path()), Arc::new(backend))
        .with_verifier(Arc::new(verifier()))
        .with_rewriter(Arc::new(DetectionRewriter {
            detector: ShapesDetector::default(),
            classifier: ShapesColorClassifier,
            config: EngineConfig::default(),
        }))
        .run(prompts)
        .await
        .unwrap();
    assert_eq!(stats.aligned, 24 - broken, "{stats:?}");
    assert_eq!(
        stats.rewritten, broken,
        "every broken render gets a prompt it satisfies"
    );
    assert_eq!(stats.dropped, 0);
    let records = read_provenance(&dir.path().join("provenance.jsonl")).unwrap();
    let r = records
        .iter()
        .find(|r| r.outcome == Outcome::Rewritten)
        .unwrap();
    assert_eq!(r.rounds.len(), 2);
    assert!(!r.rounds[0].verification.aligned);
    assert!(!r.rounds[0].verification.reasons.is_empty());
    assert_eq!(r.rounds[1].written_by, "rules:detections");
    let m = r.final_metadata.as_ref().unwrap();
    assert!(
        !m["exclude"].as_array().unwrap().is_empty(),
        "counts are exact"
    );
    assert!(r.final_prompt.as_ref().unwrap().starts_with("a photo of "));
}

#[tokio::test]
async fn prompts_without_metadata_are_an_error_not_a_verdict() {
    let p = SynthPrompt {
        id: "s".into(),
        recipe: RecipeKind::Surreal,
        category: "COLOR".into(),
        template: "t".into(),
        attributes: serde_json::Value::Null,
        prompt: "a blue banana".into(),
        metadata: None,
        checklist: "blue".into(),
        references: vec![],
        written_by: vec![],
    };
    let img = RgbImage::new(8, 8);
    let input = echo4o_data::synth::verify::VerifyInput {
        original: &p,
        prompt: &p.prompt,
        metadata: None,
        checklist: &p.checklist,
        image: &img,
    };
    use echo4o_data::synth::verify::Verifier;
    let e = verifier().verify(&input).await.unwrap_err().to_string();
    assert!(e.contains("no GenEval metadata"), "{e}");
}
