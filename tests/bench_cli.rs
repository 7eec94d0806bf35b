//! `echo4o bench` as a user runs it, against a real local judge server.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use echo4o_testutil::{MockReply, MockServer};

const PROMPTS: &str = "\
{\"tag\": \"counting\", \"include\": [{\"class\": \"clock\", \"count\": 4}], \"exclude\": [{\"class\": \"clock\", \"count\": 5}], \"prompt\": \"A photo of four clocks\"}
{\"tag\": \"counting\", \"include\": [{\"class\": \"cat\", \"count\": 5}], \"exclude\": [{\"class\": \"cat\", \"count\": 6}], \"prompt\": \"A photo of five cats\"}
{\"tag\": \"color_attr\", \"include\": [{\"class\": \"bus\", \"count\": 1, \"color\": \"red\"}], \"prompt\": \"A photo of a red bus\"}
{\"tag\": \"color_attr\", \"include\": [{\"class\": \"cup\", \"count\": 1, \"color\": \"blue\"}], \"prompt\": \"A photo of a blue cup\"}
{\"tag\": \"color_attr\", \"include\": [{\"class\": \"dog\", \"count\": 1, \"color\": \"white\"}], \"prompt\": \"A photo of a white dog\"}
{\"tag\": \"color_attr\", \"include\": [{\"class\": \"car\", \"count\": 1, \"color\": \"black\"}], \"prompt\": \"A photo of a black car\"}
";

fn setup(dir: &Path) {
    std::fs::write(dir.join("prompts.jsonl"), PROMPTS).unwrap();
    std::fs::create_dir_all(dir.join("images")).unwrap();
    for line in 1..=6 {
        let img = image::RgbImage::from_pixel(16, 16, image::Rgb([line * 40, 0, 0]));
        echo4o::core::save_image(&img, &dir.join(format!("images/{line}.jpg"))).unwrap();
    }
}

/// Passes the counting items, fails the color ones.
fn verdict(body: &serde_json::Value) -> MockReply {
    let text = body["messages"][1]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    if text.contains("clock") || text.contains("cats") {
        MockReply::content(r#"{"correct": 1, "reason": "right count"}"#)
    } else {
        MockReply::content(r#"{"correct": 0, "reason": "wrong color"}"#)
    }
}

fn bench_cmd(dir: &Path, out: &str, url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_echo4o"));
    cmd.args([
        "--quiet",
        "bench",
        "geneval-pp",
        "--concurrency",
        "2",
        "--judge-url",
        url,
    ])
    .arg("--images")
    .arg(dir.join("images"))
    .arg("--prompts")
    .arg(dir.join("prompts.jsonl"))
    .arg("--out")
    .arg(dir.join(out));
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_process_resumes_to_the_same_output() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let fast = MockServer::start(|b, _| verdict(b)).await;
    let status = bench_cmd(dir.path(), "full", &fast.base_url())
        .status()
        .unwrap();
    assert!(status.success());
    let output: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("full/Output.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        output["tag_accuracy"],
        serde_json::json!({"counting": 1.0, "color_attr": 0.0})
    );
    assert_eq!(output["overall_score_mean_of_tags"], 0.5);

    let slow = MockServer::start(|b, _| verdict(b).after(Duration::from_millis(400))).await;
    let mut child = bench_cmd(dir.path(), "killed", &slow.base_url())
        .spawn()
        .unwrap();
    let results = dir.path().join("killed/results.jsonl");
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = std::fs::read_to_string(&results)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n >= 2 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = std::fs::read_to_string(&results).unwrap().lines().count();
    assert!((2..6).contains(&kept), "{kept}");

    let before = slow.count();
    let status = bench_cmd(dir.path(), "killed", &slow.base_url())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        slow.count() - before <= 6 - kept,
        "finished items were judged again"
    );
    for f in ["Output.json", "report.md", "report.html"] {
        assert_eq!(
            std::fs::read(dir.path().join("full").join(f)).unwrap(),
            std::fs::read(dir.path().join("killed").join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    std::fs::write(
        dir.path().join("bad.jsonl"),
        "{\"tag\": \"x\", \"include\": [], \"prompt\": \"p\"}\n{oops\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_echo4o"))
        .args([
            "bench",
            "geneval-pp",
            "--judge-url",
            "http://127.0.0.1:9/v1",
            "--prompts",
        ])
        .arg(dir.path().join("bad.jsonl"))
        .arg("--images")
        .arg(dir.path().join("images"))
        .arg("--out")
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.jsonl:2: key must be a string"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_echo4o"))
        .args(["bench", "imagine", "--images", "/no/such/folder", "--out"])
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/folder"));

    let out = Command::new(env!("CARGO_BIN_EXE_echo4o"))
        .args([
            "bench",
            "geneval-pp",
            "--api-key-env",
            "ECHO4O_TEST_UNSET_KEY",
            "--images",
        ])
        .arg(dir.path().join("images"))
        .arg("--out")
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ECHO4O_TEST_UNSET_KEY"));
}

#[test]
fn dry_run_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let out = bench_cmd(dir.path(), "dry", "http://127.0.0.1:9/v1")
        .arg("--dry-run")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("dry/requests.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 6);
}

/// A GenEval-layout folder under `dir/images`: folder k holds the metadata of GenEval-shapes
/// prompt `asked` and a render of prompt `drawn`, for each `(asked, drawn)` of `samples`.
fn shapes_folder(dir: &Path, samples: &[(usize, usize)]) -> std::path::PathBuf {
    use echo4o::bench::geneval::{shapes_metadata, write_sample_folder};
    use echo4o::data::shapes::captions::geneval_shapes;
    use echo4o::data::shapes::layout::place;

    let images = dir.join("images");
    let prompts = geneval_shapes(50, echo4o::bench::geneval::SHAPES_SEED);
    let metadata = shapes_metadata(false);
    for (k, &(asked, drawn)) in samples.iter().enumerate() {
        let img = place(&prompts[drawn].request, 64, 64, 1).unwrap().render();
        write_sample_folder(&images, k, &metadata[asked], &[img]).unwrap();
    }
    images
}

/// `echo4o bench geneval --images images --out out`, plus `extra` arguments.
fn geneval_cli(images: &Path, out: &Path, extra: &[&Path]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_echo4o"))
        .args(["bench", "geneval", "--images"])
        .arg(images)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// The `results.jsonl` lines of a scored folder.
fn result_lines(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `echo4o bench geneval` scores a GenEval-layout folder of shapes renders with the shapes
/// detector: renders of the prompts pass, a render of another prompt fails.
#[test]
fn geneval_with_the_shapes_detector_scores_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    // The first prompt of each task: its own render, and for the last one a render of the first
    // task's prompt (a wrong image).
    let mut samples: Vec<(usize, usize)> = (0..6).map(|t| (t * 50, t * 50)).collect();
    samples[5].1 = 0;
    let images = shapes_folder(dir.path(), &samples);
    let out = dir.path().join("out");
    let run = geneval_cli(&images, &out, &[]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("color_attr"), "{stdout}");
    let correct: Vec<bool> = result_lines(&out)
        .iter()
        .map(|l| l["correct"] == true)
        .collect();
    assert_eq!(correct, [true, true, true, true, true, false]);
    for f in ["summary.json", "report.md", "report.html"] {
        assert!(out.join(f).is_file(), "{f}");
    }
}

/// `--clip-weights` names colours with GenEval's zero-shot CLIP classifier (here the tiny random
/// open_clip model of the parity tests): the CLI writes what the library gives with the same
/// classifier, and weights that do not fit the config fail naming the file and the key.
#[test]
fn geneval_with_clip_colours_matches_the_library() {
    use echo4o::bench::geneval::shapes::score_folder_with;
    use echo4o::perception::clip::{ClipColorClassifier, ClipConfig};

    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("echo4o-perception/tests/data/clip_tiny");
    let config = clip.join("config.json");
    let dir = tempfile::tempdir().unwrap();
    // colors and color_attr prompts: the ones the classifier decides.
    let images = shapes_folder(
        dir.path(),
        &[(150, 150), (151, 151), (250, 250), (251, 251)],
    );
    let out = dir.path().join("out");
    let weights = clip.join("model.safetensors");
    let run = geneval_cli(
        &images,
        &out,
        &[
            "--clip-weights".as_ref(),
            &weights,
            "--clip-config".as_ref(),
            &config,
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let classifier = ClipColorClassifier::<burn_flex::Flex>::load(
        ClipConfig::from_file(&config).unwrap(),
        &weights,
        Default::default(),
    )
    .unwrap();
    let (results, _) =
        score_folder_with("geneval", &images, &dir.path().join("lib"), &classifier).unwrap();
    let cli = result_lines(&out);
    assert_eq!(cli.len(), results.len());
    for (line, r) in cli.iter().zip(&results) {
        assert_eq!(line["correct"], r.correct, "{line}");
        assert_eq!(line["reason"], r.reason.as_str(), "{line}");
    }
    // The random tiny model names colours differently from the detector's pixel rule somewhere.
    let shapes = echo4o::bench::geneval::shapes::score_folder(&images, &dir.path().join("shapes"))
        .unwrap()
        .0;
    assert!(
        shapes
            .iter()
            .zip(&results)
            .any(|(a, b)| a.reason != b.reason),
        "CLIP colours made no difference"
    );
    // Weights of another model: refused before any image is scored, naming file and key.
    let other = clip.join("formats/model.safetensors");
    let bad_out = dir.path().join("bad");
    let bad = geneval_cli(
        &images,
        &bad_out,
        &[
            "--clip-weights".as_ref(),
            &other,
            "--clip-config".as_ref(),
            &config,
        ],
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("formats/model.safetensors") && err.contains("token_embedding.weight"),
        "{err}"
    );
    assert!(!bad_out.join("results.jsonl").exists());
}

/// `--detector mask2former` scores real images with GenEval's detector and CLIP colours (here
/// the tiny random models of the parity tests): every verdict and reason is the official
/// `evaluate_images.py`'s on the same images and weights (`scripts/geneval_e2e.py`).
#[test]
fn geneval_with_mask2former_gives_the_official_verdicts() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("echo4o-perception/tests/data");
    let e2e = data.join("geneval_e2e");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let m2f = data.join("mask2former_tiny");
    let clip = data.join("clip_tiny");
    let run = geneval_cli(
        &e2e.join("images"),
        &out,
        &[
            "--detector".as_ref(),
            "mask2former".as_ref(),
            "--detector-weights".as_ref(),
            &m2f.join("model.pth"),
            "--detector-config".as_ref(),
            &m2f.join("config.json"),
            "--clip-weights".as_ref(),
            &clip.join("model.safetensors"),
            "--clip-config".as_ref(),
            &clip.join("config.json"),
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let official: Vec<serde_json::Value> = std::fs::read_to_string(e2e.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ours = result_lines(&out);
    assert_eq!(ours.len(), official.len());
    for line in &ours {
        let name = line["filename"].as_str().unwrap();
        let want = official
            .iter()
            .find(|o| name.ends_with(o["filename"].as_str().unwrap()))
            .unwrap();
        assert_eq!(line["correct"], want["correct"], "{name}");
        assert_eq!(line["reason"], want["reason"], "{name}");
    }
    // Mask2Former without CLIP is refused before any work: GenEval names colours with CLIP.
    let bare = geneval_cli(
        &e2e.join("images"),
        &dir.path().join("bare"),
        &[
            "--detector".as_ref(),
            "mask2former".as_ref(),
            "--detector-weights".as_ref(),
            &m2f.join("model.pth"),
            "--detector-config".as_ref(),
            &m2f.join("config.json"),
        ],
    );
    assert!(!bare.status.success());
    assert!(String::from_utf8_lossy(&bare.stderr).contains("--clip-weights"));
}

/// One corrupt image counts as wrong and is listed; it does not end the run.
#[test]
fn geneval_scores_the_rest_when_one_image_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let images = shapes_folder(dir.path(), &[(0, 0), (1, 1)]);
    let broken = images.join("00001/samples/00000.png");
    assert!(broken.is_file());
    std::fs::write(&broken, b"\x89PNG not really").unwrap();
    let out = dir.path().join("out");
    let run = geneval_cli(&images, &out, &[]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let lines = result_lines(&out);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["correct"], true);
    assert_eq!(lines[1]["correct"], false);
    assert!(
        lines[1]["reason"]
            .as_str()
            .unwrap()
            .contains("unreadable image")
    );
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(summary.contains("00000.png"), "{summary}");
}

#[test]
fn a_zero_timeout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_echo4o"))
        .args(["bench", "geneval-pp", "--images"])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("out"))
        .args(["--timeout", "0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--timeout"));
}
