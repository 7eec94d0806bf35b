//! `echo4o synth` as a user runs it: against a real local images server (stable-diffusion.cpp's
//! profile) and a local chat judge; dry runs; bad input named.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::process::Command;

use base64::Engine as _;
use echo4o_testutil::{MockReply, MockServer};
use serde_json::{Value, json};

fn image_reply() -> MockReply {
    let png = echo4o::core::encode_image(
        &image::RgbImage::from_pixel(16, 16, image::Rgb([200, 30, 30])),
        image::ImageFormat::Png,
    )
    .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(png);
    MockReply::json(json!({"created": 1, "data": [{"b64_json": b64}]}))
}

fn synth(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_echo4o"));
    cmd.args(["--quiet", "synth"]).args(args);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_server_job_verifies_rewrites_resumes_and_writes_the_dataset() {
    let images = MockServer::start(|_, _| image_reply()).await;
    // The judge fails every recipe prompt; the rewrite ("REWRITTEN") passes.
    let chat = MockServer::start(|body, _| {
        let text = body.to_string();
        if text.contains("strict judge") {
            if text.contains("REWRITTEN") {
                MockReply::content(r#"{"aligned": true, "reasons": []}"#)
            } else {
                MockReply::content(r#"{"aligned": false, "reasons": ["wrong count"]}"#)
            }
        } else {
            MockReply::content("A photo of REWRITTEN things")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("job");
    let prices = dir.path().join("prices.json");
    std::fs::write(&prices, r#"{"per_image": 0.01, "version": "test"}"#).unwrap();
    let run = || {
        let images_url = images.base_url();
        let chat_url = chat.base_url();
        let out = out.clone();
        let prices = prices.clone();
        tokio::task::spawn_blocking(move || {
            synth(&[
                "--recipe",
                "instruction",
                "--count",
                "4",
                "--seed",
                "2",
                "--base-url",
                &images_url,
                "--profile",
                "sd-cpp",
                "--model",
                "sd",
                "--size",
                "512x512",
                "--steps",
                "20",
                "--verify",
                "checklist",
                "--rewrite",
                "chat",
                "--judge-url",
                &chat_url,
                "--judge-model",
                "judge",
                "--prices",
            ])
            .arg(&prices)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
        })
    };
    let first = run().await.unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(images.count(), 4);
    let sent = &images.requests()[0].body;
    assert!(
        sent["prompt"]
            .as_str()
            .unwrap()
            .contains("<sd_cpp_extra_args>{\"seed\":"),
        "sd-server takes the seed in the prompt: {sent}"
    );
    assert_eq!(sent["size"], "512x512");
    let index = out.join("dataset/Instruction-Following-Image/Instruction-Following-Image.jsonl");
    let lines: Vec<Value> = std::fs::read_to_string(&index)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["instruction"], "A photo of REWRITTEN things");
    let provenance = std::fs::read_to_string(out.join("provenance.jsonl")).unwrap();
    let record: Value = serde_json::from_str(provenance.lines().next().unwrap()).unwrap();
    assert_eq!(record["outcome"], "rewritten");
    assert!(record["seed"].is_u64(), "local servers record their seed");
    assert!((record["cost"].as_f64().unwrap() - 0.01).abs() < 1e-12);

    // A rerun pays for nothing.
    let second = run().await.unwrap();
    assert!(second.status.success());
    assert_eq!(images.count(), 4);
}

#[test]
fn dry_run_prints_prompts_and_the_request_estimate() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_echo4o"))
        .args([
            "synth",
            "--recipe",
            "instruction",
            "--count",
            "7",
            "--verify",
            "checklist",
            "--rewrite",
            "chat",
            "--max-rewrites",
            "2",
            "--dry-run",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("7 prompts"), "{text}");
    assert!(text.contains("A photo of"), "{text}");
    assert!(text.contains("7 image requests"), "{text}");
    assert!(
        text.contains("up to 21 verifications, 14 rewrites"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("prompts.jsonl"))
            .unwrap()
            .lines()
            .count(),
        7
    );
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = synth(&["--recipe", "multiref", "--count", "2", "--dry-run", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pool"));

    let pool = dir.path().join("pool.jsonl");
    std::fs::write(
        &pool,
        "{\"path\": \"missing.png\", \"label\": \"human\", \"name\": \"x\"}\n",
    )
    .unwrap();
    let out = synth(&[
        "--recipe",
        "multiref",
        "--count",
        "2",
        "--dry-run",
        "--pool",
    ])
    .arg(&pool)
    .arg("--out")
    .arg(dir.path())
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pool.jsonl:1") && err.contains("missing.png"),
        "{err}"
    );

    let objects = dir.path().join("objects.txt");
    std::fs::write(&objects, "{not json\n").unwrap();
    let out = synth(&["--recipe", "surreal", "--dry-run", "--objects"])
        .arg(&objects)
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("objects.txt:1"), "{err}");
}

/// `user:password@` in a URL is sent as basic auth and written nowhere; `$OPENAI_API_KEY` is not
/// sent to a local host; a job stopped by its budget exits non-zero after exporting.
#[tokio::test(flavor = "multi_thread")]
async fn url_passwords_stay_secret_the_openai_key_stays_home_and_a_stopped_job_fails() {
    let images = MockServer::start(|_, _| image_reply()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("job");
    let prices = dir.path().join("prices.json");
    std::fs::write(&prices, r#"{"per_image": 1.0, "version": "test"}"#).unwrap();
    let url = images
        .base_url()
        .replace("http://", "http://alice:hunter2@");
    let o = {
        let out = out.clone();
        tokio::task::spawn_blocking(move || {
            synth(&[
                "--recipe",
                "instruction",
                "--count",
                "3",
                "--base-url",
                &url,
                "--profile",
                "sd-cpp",
                "--model",
                "sd",
                "--max-cost",
                "1.5",
                "--prices",
            ])
            .arg(&prices)
            .arg("--out")
            .arg(&out)
            .env("OPENAI_API_KEY", "sk-must-not-leak")
            .output()
            .unwrap()
        })
        .await
        .unwrap()
    };
    assert_eq!(o.status.code(), Some(2), "a budget stop is not success");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("stopped early") && err.contains("budget"),
        "{err}"
    );
    assert_eq!(images.count(), 1, "one $1 image fits under $1.50");
    let auth = images.requests()[0].authorization.clone().unwrap();
    assert!(auth.starts_with("Basic "), "{auth}");
    assert!(!auth.contains("sk-must-not-leak"));
    let mut written = String::new();
    for e in walk(&out) {
        if let Ok(t) = std::fs::read_to_string(&e) {
            written.push_str(&t);
        }
    }
    assert!(written.contains("127.0.0.1"), "the URL is recorded");
    assert!(!written.contains("hunter2"), "the password is not");
    assert!(!written.contains("sk-must-not-leak"));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn huge_counts_and_zero_timeouts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value) in [("--count", "100000000"), ("--timeout", "0")] {
        let o = synth(&["--recipe", "instruction", "--dry-run", flag, value])
            .arg("--out")
            .arg(dir.path().join("job"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{flag}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(flag), "{flag}");
    }
}

/// The checklist judge honours `--timeout` and `--retries`: a judge slower than the timeout gets
/// one request per image and no verdict, instead of the defaults' five minutes and six retries.
#[tokio::test(flavor = "multi_thread")]
async fn the_checklist_judge_honours_timeout_and_retries() {
    let images = MockServer::start(|_, _| image_reply()).await;
    let chat = MockServer::start(|_, _| {
        MockReply::content(r#"{"aligned": true, "reasons": []}"#)
            .after(std::time::Duration::from_secs(3))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("job");
    let (images_url, chat_url) = (images.base_url(), chat.base_url());
    let o = {
        let out = out.clone();
        tokio::task::spawn_blocking(move || {
            synth(&[
                "--recipe",
                "instruction",
                "--count",
                "2",
                "--base-url",
                &images_url,
                "--profile",
                "sd-cpp",
                "--model",
                "sd",
                "--verify",
                "checklist",
                "--judge-url",
                &chat_url,
                "--judge-model",
                "judge",
                "--timeout",
                "1",
                "--retries",
                "0",
            ])
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
        })
        .await
        .unwrap()
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(chat.count(), 2, "one judge request per image, no retries");
    let provenance = std::fs::read_to_string(out.join("provenance.jsonl")).unwrap_or_default();
    assert_eq!(
        provenance.lines().count(),
        0,
        "no verdict arrived within the timeout"
    );
}
