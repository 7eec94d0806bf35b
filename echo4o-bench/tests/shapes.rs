//! The shapes scorer validated on ground truth: the GenEval rule engine, with the shapes detector
//! and color classifier, judges renders of the GenEval-shapes and GenEval++-shapes prompts
//! correct (at least 99%), and judges renders that break the prompt wrong.

#![allow(clippy::unwrap_used)]

use echo4o_bench::geneval::shapes::{ShapesColorClassifier, ShapesDetector};
use echo4o_bench::geneval::{
    EngineConfig, Metadata, SHAPES_METADATA_JSONL, SHAPES_PP_METADATA_JSONL, SHAPES_SEED,
    evaluate_image, shapes_metadata,
};
use echo4o_data::shapes::captions::{Prompt, geneval_pp_shapes, geneval_shapes};
use echo4o_data::shapes::layout::place;
use echo4o_data::shapes::{Background, Color};

fn judge(p: &Prompt, image: &echo4o_core::image::RgbImage) -> (bool, String) {
    let text = serde_json::to_string(&p.metadata).unwrap();
    let m = Metadata::from_json(&text, "prompt set", 1).unwrap();
    let r = evaluate_image(
        image,
        "render.png",
        &m,
        &ShapesDetector::default(),
        &ShapesColorClassifier,
        &EngineConfig::default(),
    )
    .unwrap();
    (r.correct, r.reason)
}

/// Renders every prompt (on clean and cluttered backgrounds, two layouts each) and returns the
/// share judged correct, with the failures.
fn accuracy(prompts: &[Prompt]) -> (f64, usize, Vec<String>) {
    let mut total = 0;
    let mut failures = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        for background in [Background::Clean, Background::Cluttered] {
            for layout_seed in [0u64, 1] {
                let mut request = p.request.clone();
                request.background = background;
                let scene = place(&request, 64, 64, i as u64 * 7 + layout_seed).unwrap();
                let (ok, reason) = judge(p, &scene.render());
                total += 1;
                if !ok {
                    failures.push(format!("{} [{background:?}]: {reason}", p.prompt));
                }
            }
        }
    }
    let acc = 1.0 - failures.len() as f64 / total as f64;
    (acc, total, failures)
}

#[test]
fn renders_of_geneval_shapes_prompts_are_judged_correct() {
    let (acc, n, failures) = accuracy(&geneval_shapes(40, 2026));
    println!(
        "GenEval-shapes: {:.2}% of {n} renders judged correct",
        acc * 100.0
    );
    assert!(acc >= 0.99, "{:.4}:\n{}", acc, failures.join("\n"));
}

#[test]
fn renders_of_geneval_pp_shapes_prompts_are_judged_correct() {
    let (acc, n, failures) = accuracy(&geneval_pp_shapes(40, 2026));
    println!(
        "GenEval++-shapes: {:.2}% of {n} renders judged correct",
        acc * 100.0
    );
    assert!(acc >= 0.99, "{:.4}:\n{}", acc, failures.join("\n"));
}

#[test]
fn renders_that_break_the_prompt_are_judged_wrong() {
    let prompts = geneval_pp_shapes(10, 5);
    let mut caught = 0;
    let mut total = 0;
    for (i, p) in prompts.iter().enumerate() {
        let mut request = p.request.clone();
        // Break it: one object fewer in the first group, or a wrong color where one is named.
        if p.metadata["tag"] == "color_attr" || p.metadata["tag"] == "color_spatial_attr" {
            let c = request.groups[0].color;
            request.groups[0].color = Color::ALL[(c as usize + 3) % 10];
        } else {
            request.groups[0].count -= 1;
            if request.groups[0].count == 0 {
                request.groups.remove(0);
            }
        }
        let scene = place(&request, 64, 64, i as u64).unwrap();
        total += 1;
        caught += usize::from(!judge(p, &scene.render()).0);
    }
    // Every broken render is caught, except size/region prompts whose broken group had one object
    // fewer (a removed group is always caught).
    assert!(caught * 100 >= total * 95, "{caught} of {total}");
}

fn jsonl(prompts: &[Prompt]) -> String {
    prompts
        .iter()
        .map(|p| serde_json::to_string(&p.metadata).unwrap() + "\n")
        .collect()
}

/// The checked-in prompt sets are what the generators make with the fixed seed (run with
/// `ECHO4O_BLESS=1` to rewrite them after a deliberate change of the generators).
#[test]
fn checked_in_prompt_sets_match_their_generators() {
    let sets = [
        (
            jsonl(&geneval_shapes(50, SHAPES_SEED)),
            SHAPES_METADATA_JSONL,
            "geneval_shapes.jsonl",
        ),
        (
            jsonl(&geneval_pp_shapes(40, SHAPES_SEED)),
            SHAPES_PP_METADATA_JSONL,
            "geneval_pp_shapes.jsonl",
        ),
    ];
    for (made, shipped, name) in sets {
        if std::env::var_os("ECHO4O_BLESS").is_some() {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("data/shapes")
                .join(name);
            std::fs::write(path, &made).unwrap();
        } else {
            assert!(
                made == shipped,
                "{name} differs from its generator (ECHO4O_BLESS=1 rewrites it)"
            );
        }
    }
    assert_eq!(shapes_metadata(false).len(), 300);
    assert_eq!(shapes_metadata(true).len(), 280);
}

/// The engine as a `Scorer`: detection runs on the blocking pool, and the verdict is the engine's.
#[tokio::test]
async fn the_engine_is_a_scorer_that_detects_off_the_async_threads() {
    use echo4o_bench::geneval::GenEvalScorer;
    use echo4o_core::Scorer;
    let prompts = geneval_shapes(50, SHAPES_SEED);
    let metadata = shapes_metadata(false);
    let scorer = GenEvalScorer::new(
        ShapesDetector::default(),
        ShapesColorClassifier,
        EngineConfig::default(),
    );
    let right = place(&prompts[0].request, 64, 64, 1).unwrap().render();
    // An empty canvas: no object at all.
    let wrong = echo4o_core::image::RgbImage::from_pixel(64, 64, echo4o_core::image::Rgb([128; 3]));
    let v = scorer.score(&metadata[0], &right).await.unwrap();
    assert_eq!((v.score, v.passed), (1.0, Some(true)));
    let v = scorer.score(&metadata[0], &wrong).await.unwrap();
    assert_eq!(v.passed, Some(false));
    assert!(!v.reason.is_empty());
}

/// A detector that counts its calls.
struct Counting(ShapesDetector, std::sync::atomic::AtomicUsize);

impl echo4o_bench::geneval::Detector for Counting {
    fn detect(
        &self,
        image: &echo4o_core::image::RgbImage,
    ) -> echo4o_bench::Result<Vec<echo4o_bench::geneval::Detection>> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.detect(image)
    }
}

/// Folder scoring resumes: a rerun scores nothing again and writes the same results; an image
/// rewritten since is scored again; a torn last log line (a kill mid-write) costs one image.
#[test]
fn folder_scoring_resumes_and_rescores_only_changed_images() {
    use echo4o_bench::geneval::{PROGRESS_LOG, evaluate_folder, write_sample_folder};
    use std::sync::atomic::Ordering;

    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let prompts = geneval_shapes(50, SHAPES_SEED);
    let metadata = shapes_metadata(false);
    for k in 0..4 {
        let img = place(&prompts[k * 50].request, 64, 64, 1).unwrap().render();
        write_sample_folder(&images, k, &metadata[k * 50], &[img.clone(), img]).unwrap();
    }
    let detector = Counting(ShapesDetector::default(), Default::default());
    let out = dir.path().join("out");
    let run = || {
        evaluate_folder(
            "geneval-shapes",
            &images,
            &out,
            &detector,
            &ShapesColorClassifier,
            &EngineConfig::default(),
        )
        .unwrap()
        .0
    };
    let first = run();
    assert_eq!(detector.1.swap(0, Ordering::SeqCst), 8);
    let results = std::fs::read(out.join("results.jsonl")).unwrap();
    assert_eq!(run(), first);
    assert_eq!(
        detector.1.swap(0, Ordering::SeqCst),
        0,
        "nothing scored twice"
    );
    assert_eq!(std::fs::read(out.join("results.jsonl")).unwrap(), results);

    // Regenerate one image (another prompt's render): only it is scored again, and it now fails.
    let other = place(&prompts[1].request, 64, 64, 3).unwrap().render();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let changed = images.join("00002/samples/00001.png");
    echo4o_core::save_image(&other, &changed).unwrap();
    let second = run();
    assert_eq!(detector.1.swap(0, Ordering::SeqCst), 1);
    let i = second
        .iter()
        .position(|r| r.filename == changed.display().to_string())
        .unwrap();
    assert!(first[i].correct && !second[i].correct, "{:?}", second[i]);

    // A kill during the last append leaves a torn line: that image is scored again, no more.
    let log = out.join(PROGRESS_LOG);
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, &text[..text.len() - 10]).unwrap();
    assert_eq!(run(), second);
    assert_eq!(detector.1.swap(0, Ordering::SeqCst), 1);
}
