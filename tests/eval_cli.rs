//! `echo4o eval` as a user runs it, with the shipped shapes model: 3 shards merged give the same
//! bytes and the same scores as 1 shard, reruns resume, and wrong inputs get clear errors.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::path::Path;
use std::process::{Command, Output};

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/checkpoints/shapes_echo");

fn echo4o(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_echo4o"))
        .arg("--quiet")
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = echo4o(args);
    assert!(
        out.status.success(),
        "echo4o {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn err(args: &[&str]) -> String {
    let out = echo4o(args);
    assert!(!out.status.success(), "echo4o {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

/// Every file under `dir`, relative path -> bytes.
fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The scores of a summary, without what legitimately differs (paths, timings).
fn scores(out: &Path) -> serde_json::Value {
    let mut s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let m = s.as_object_mut().unwrap();
    for k in ["images", "elapsed_s"] {
        m.remove(k);
    }
    s
}

/// The verdict of every image, in order, without its path.
fn verdicts(out: &Path) -> Vec<(bool, String)> {
    std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["correct"].as_bool().unwrap(),
                v["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn three_shards_merged_equal_one_shard() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).display().to_string();
    let common = [
        "--bench",
        "geneval-pp-shapes",
        "--generator",
        &format!("bagel:{MODEL}"),
        "--limit",
        "8",
        "--samples",
        "2",
    ];
    let one = d("one");
    let table = ok(&[&["eval"][..], &common, &["--out", &one]].concat());
    assert!(table.is_empty(), "--quiet prints nothing: {table}");
    let mut shards = Vec::new();
    for i in 0..3 {
        let s = d(&format!("shard{i}"));
        ok(&[
            &["eval"][..],
            &common,
            &["--out", &s, "--shard", &format!("{i}/3")],
        ]
        .concat());
        assert!(
            !Path::new(&s).join("summary.json").exists(),
            "a shard does not score"
        );
        shards.push(s);
    }
    let merged = d("merged");
    ok(&[
        &["eval", "merge", "--out", &merged][..],
        &shards.iter().map(String::as_str).collect::<Vec<_>>(),
    ]
    .concat());

    let (a, b) = (
        files(&dir.path().join("one/images")),
        files(&dir.path().join("merged/images")),
    );
    assert_eq!(a.len(), 8 * 3, "8 folders: metadata + 2 samples each");
    assert!(
        a == b,
        "the merged images are byte-identical to the single run's"
    );
    assert_eq!(
        scores(&dir.path().join("one")),
        scores(&dir.path().join("merged"))
    );
    assert_eq!(
        verdicts(&dir.path().join("one")),
        verdicts(&dir.path().join("merged"))
    );

    // A rerun finds everything written and only scores again.
    let before = files(&dir.path().join("one/images"));
    ok(&[&["eval"][..], &common, &["--out", &one]].concat());
    assert!(before == files(&dir.path().join("one/images")));

    // Another plan in the same folder, a shard set with a hole, a stray shard.
    let e = err(&[&["eval"][..], &common, &["--out", &one, "--seed", "7"]].concat());
    assert!(
        e.contains("another evaluation") && e.contains("seed 42"),
        "{e}"
    );
    let e = err(&["eval", "merge", "--out", &d("m2"), &shards[0], &shards[2]]);
    assert!(e.contains("shards 1/3"), "{e}");
}

#[test]
fn folder_generators_score_images_made_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let made = dir.path().join("made");
    ok(&[
        "eval",
        "--bench",
        "geneval-shapes",
        "--generator",
        &format!("bagel:{MODEL}"),
        "--limit",
        "3",
        "--samples",
        "1",
        "--no-score",
        "--out",
        made.to_str().unwrap(),
    ]);
    assert!(!made.join("summary.json").exists());
    let scored = dir.path().join("scored");
    ok(&[
        "eval",
        "--bench",
        "geneval-shapes",
        "--generator",
        &format!("folder:{}", made.join("images").display()),
        "--out",
        scored.to_str().unwrap(),
    ]);
    assert_eq!(verdicts(&scored).len(), 3);
}

#[test]
fn wrong_inputs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o").display().to_string();
    let base = ["eval", "--generator", "folder:x", "--out", &out];
    let e = err(&[&base[..], &["--bench", "genevall"]].concat());
    assert!(
        e.contains("unknown name \"genevall\"") && e.contains("geneval-pp-shapes"),
        "{e}"
    );
    let e = err(&[&base[..], &["--bench", "omnicontext"]].concat());
    assert!(e.contains("--data"), "{e}");
    let e = err(&[
        "eval",
        "--bench",
        "geneval",
        "--generator",
        "dalle:x",
        "--out",
        &out,
    ]);
    assert!(e.contains("unknown generator kind"), "{e}");
    let e = err(&[
        &["eval", "--bench", "geneval-pp"][..],
        &[
            "--generator",
            &format!("bagel:{MODEL}"),
            "--out",
            &out,
            "--samples",
            "2",
        ],
    ]
    .concat());
    assert!(e.contains("1 image(s) per item"), "{e}");
    let e = err(&[
        "eval",
        "--bench",
        "geneval",
        "--generator",
        &format!("bagel:{MODEL}"),
        "--out",
        &out,
        "--shard",
        "3/3",
    ]);
    assert!(e.contains("3/3"), "{e}");
    // GenEval on real images needs the COCO detector: said before anything is generated.
    let e = err(&[
        "eval",
        "--bench",
        "geneval",
        "--generator",
        &format!("bagel:{MODEL}"),
        "--out",
        &out,
        "--limit",
        "1",
    ]);
    assert!(e.contains("Mask2Former") && e.contains("--no-score"), "{e}");
    assert!(!dir.path().join("o/images").exists());
}

/// A judged benchmark end to end through `eval`: a folder of 3 GenEval++ images with `--limit 3`
/// is judged by a local server, and only those 3 items are scored.
#[tokio::test(flavor = "multi_thread")]
async fn a_judged_benchmark_scores_only_its_limited_items() {
    use echo4o_testutil::{MockReply, MockServer};
    let server =
        MockServer::start(|_, _| MockReply::content(r#"{"correct": 1, "reason": "ok"}"#)).await;
    let dir = tempfile::tempdir().unwrap();
    for line in 1..=3 {
        let img = image::RgbImage::from_pixel(16, 16, image::Rgb([line * 40, 0, 0]));
        echo4o::core::save_image(&img, &dir.path().join(format!("gen/{line}.jpg"))).unwrap();
    }
    let out = dir.path().join("out");
    let (gen_dir, out_s, url) = (
        format!("folder:{}", dir.path().join("gen").display()),
        out.display().to_string(),
        server.base_url(),
    );
    let stdout = tokio::task::spawn_blocking(move || {
        ok(&[
            "eval",
            "--bench",
            "geneval-pp",
            "--generator",
            &gen_dir,
            "--out",
            &out_s,
            "--limit",
            "3",
            "--judge-url",
            &url,
        ])
    })
    .await
    .unwrap();
    assert!(stdout.is_empty());
    assert_eq!(server.count(), 3);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        (s["items"].as_u64(), s["scored"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(s["missing_images"].as_array().map(Vec::len), Some(0));
}

/// `eval --bench geneval` scores real images in one command when given GenEval's models (here
/// the tiny random Mask2Former and CLIP of the parity tests): the verdicts are the official
/// `evaluate_images.py`'s on the same images and weights (`scripts/geneval_e2e.py`).
#[test]
fn geneval_on_real_images_scores_with_the_given_models() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("echo4o-perception/tests/data");
    let e2e = data.join("geneval_e2e");
    let m2f = data.join("mask2former_tiny");
    let clip = data.join("clip_tiny");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let path = |p: std::path::PathBuf| p.display().to_string();
    let generator = format!("folder:{}", e2e.join("images").display());
    let (dw, dc, cw, cc) = (
        path(m2f.join("model.pth")),
        path(m2f.join("config.json")),
        path(clip.join("model.safetensors")),
        path(clip.join("config.json")),
    );
    let models = [
        "--detector-weights",
        dw.as_str(),
        "--detector-config",
        dc.as_str(),
        "--clip-weights",
        cw.as_str(),
        "--clip-config",
        cc.as_str(),
    ];
    let mut args = vec!["eval", "--bench", "geneval", "--generator", &generator];
    let out_s = out.display().to_string();
    args.extend(["--out", out_s.as_str()]);
    args.extend(models);
    ok(&args);
    let official: Vec<(String, bool, String)> = std::fs::read_to_string(e2e.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["filename"].as_str().unwrap().to_string(),
                v["correct"].as_bool().unwrap(),
                v["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), official.len());
    for line in &lines {
        let name = line["filename"].as_str().unwrap();
        let (_, correct, reason) = official.iter().find(|o| name.ends_with(&o.0)).unwrap();
        assert_eq!(line["correct"].as_bool().unwrap(), *correct, "{name}");
        assert_eq!(line["reason"].as_str().unwrap(), reason, "{name}");
    }
    assert!(out.join("summary.json").is_file());
    // Half the models, or models for a benchmark that takes none: said before any work.
    let e = err(&[
        "eval",
        "--bench",
        "geneval",
        "--generator",
        &generator,
        "--out",
        &path(dir.path().join("half")),
        "--clip-weights",
        &cw,
        "--clip-config",
        &cc,
    ]);
    assert!(e.contains("--detector-weights"), "{e}");
    let e = err(&[
        "eval",
        "--bench",
        "geneval-pp",
        "--generator",
        &generator,
        "--out",
        &path(dir.path().join("pp")),
        "--detector-weights",
        &dw,
    ]);
    assert!(e.contains("geneval and geneval-long"), "{e}");
}
