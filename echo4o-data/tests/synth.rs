//! Synthesis jobs against real local HTTP servers: an images server (generations, multipart
//! edits, refusals, 429, quota errors) and a chat server (checklist judge and rewriter). Resuming
//! after a kill gives the same dataset without paying twice.
#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use echo4o_core::openai::images::{ImageOptions, ImagesClient, ImagesConfig, Profile};
use echo4o_core::openai::{ApiKey, OpenAiConfig, OpenAiJudge, RetryPolicy};
use echo4o_data::synth::backend::ImagesBackend;
use echo4o_data::synth::export::{ExportMode, export};
use echo4o_data::synth::instruction::InstructionRecipe;
use echo4o_data::synth::job::{JobConfig, Outcome, Prices, SynthJob, read_provenance};
use echo4o_data::synth::multiref::{MultirefRecipe, read_pool};
use echo4o_data::synth::verify::{ChatRewriter, ChecklistVerifier};
use echo4o_data::synth::{RecipeKind, SynthPrompt};
use echo4o_testutil::{MockReply, MockServer};
use image::{Rgb, RgbImage};
use serde_json::{Value, json};

/// A PNG whose color is derived from the prompt, so a rerun returns the same bytes.
fn png_for(prompt: &str) -> Vec<u8> {
    let h = prompt
        .bytes()
        .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    echo4o_core::encode_image(
        &RgbImage::from_pixel(16, 16, Rgb([h, 255 - h, 40])),
        image::ImageFormat::Png,
    )
    .unwrap()
}

fn prompt_of(body: &Value) -> String {
    match body {
        Value::Object(m) => m["prompt"].as_str().unwrap().to_string(),
        Value::String(s) => {
            // multipart: the text after the `prompt` part's headers
            let start = s.find("name=\"prompt\"").unwrap();
            let rest = &s[start..];
            let body = &rest[rest.find("\r\n\r\n").unwrap() + 4..];
            body[..body.find("\r\n").unwrap()].to_string()
        }
        _ => panic!("{body}"),
    }
}

fn image_reply(body: &Value) -> MockReply {
    let b64 = base64::engine::general_purpose::STANDARD.encode(png_for(&prompt_of(body)));
    MockReply::json(json!({"created": 1, "data": [{"b64_json": b64}],
        "usage": {"input_tokens": 20, "output_tokens": 1000,
                  "input_tokens_details": {"text_tokens": 20, "image_tokens": 0}}}))
    .with_header("x-request-id", "req_x")
}

fn backend(server: &MockServer) -> Arc<ImagesBackend> {
    let client = ImagesClient::new(
        ImagesConfig::new("gpt-image-test")
            .with_base_url(server.base_url())
            .with_api_key(ApiKey::new("sk-test"))
            .with_profile(Profile::OpenAi)
            .with_timeout(Duration::from_secs(20))
            .with_retry(RetryPolicy {
                max_retries: 3,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_secs(1),
            }),
    )
    .unwrap();
    Arc::new(ImagesBackend::new(
        client,
        ImageOptions {
            quality: Some("low".into()),
            ..Default::default()
        },
    ))
}

fn prompts(n: usize) -> Vec<SynthPrompt> {
    InstructionRecipe {
        seed: 11,
        ..Default::default()
    }
    .prompts(n)
    .unwrap()
}

fn config(out: &Path) -> JobConfig {
    let mut c = JobConfig::new(out);
    c.concurrency = 2;
    c.prices = Prices {
        text_input: 5.0,
        image_output: 40.0,
        version: "test".into(),
        ..Prices::default()
    };
    c
}

/// The dataset a job folder exports to, as (file, bytes) pairs.
fn exported(job: &Path) -> Vec<(String, Vec<u8>)> {
    let dest = job.join("dataset");
    let _ = std::fs::remove_dir_all(&dest);
    export(job, &dest, ExportMode::Verified).unwrap();
    let mut files = Vec::new();
    let mut stack = vec![dest.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let name = p.strip_prefix(&dest).unwrap().display().to_string();
                let bytes = if name.ends_with(".tar.gz") {
                    // compare members, not gzip headers (which hold mtimes)
                    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(
                        std::fs::File::open(&p).unwrap(),
                    ));
                    let mut all = Vec::new();
                    for m in ar.entries().unwrap() {
                        let mut m = m.unwrap();
                        all.extend(m.path().unwrap().display().to_string().into_bytes());
                        std::io::copy(&mut m, &mut all).unwrap();
                    }
                    all
                } else {
                    std::fs::read(&p).unwrap()
                };
                files.push((name, bytes));
            }
        }
    }
    files.sort();
    files
}

#[tokio::test]
async fn a_job_writes_images_provenance_and_an_echo4o_layout() {
    let server = MockServer::start(|body, _| image_reply(body)).await;
    let dir = tempfile::tempdir().unwrap();
    let stats = SynthJob::new(config(dir.path()), backend(&server))
        .run(prompts(5))
        .await
        .unwrap();
    assert_eq!(
        (stats.requests, stats.unverified, stats.finished),
        (5, 5, 5)
    );
    // 20 text tokens at $5/M + 1000 image tokens at $40/M per image
    assert!((stats.cost - 5.0 * (20.0 * 5.0 + 1000.0 * 40.0) / 1e6).abs() < 1e-9);
    let records = read_provenance(&dir.path().join("provenance.jsonl")).unwrap();
    assert_eq!(records.len(), 5);
    let r = &records[0];
    assert_eq!(r.request_id.as_deref(), Some("req_x"));
    assert_eq!(r.seed, None, "OpenAI takes no seed");
    assert_eq!(r.prices_version, "test");
    assert_eq!(r.backend["model"], "gpt-image-test");
    assert_eq!(r.sent.as_ref().unwrap()["quality"], "low");
    let files = exported(dir.path());
    let index = files
        .iter()
        .find(|(n, _)| n.ends_with("Instruction-Following-Image.jsonl"))
        .unwrap();
    let lines: Vec<Value> = String::from_utf8(index.1.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["task_type"], "t2i");
    assert!(["easy", "medium", "hard"].contains(&lines[0]["type"].as_str().unwrap()));
    assert_eq!(
        lines[0]["output_image"],
        "/Echo-4o-Image/Instruction-Following-Image/images/00000.jpg"
    );
}

#[tokio::test]
async fn resuming_after_a_kill_gives_the_same_dataset_without_paying_twice() {
    // Uninterrupted reference run.
    let server = MockServer::start(|body, _| image_reply(body)).await;
    let reference = tempfile::tempdir().unwrap();
    SynthJob::new(config(reference.path()), backend(&server))
        .run(prompts(8))
        .await
        .unwrap();
    let want = exported(reference.path());

    // The 4th request hangs; the job is killed once it has been sent.
    let server = MockServer::start(|body, n| {
        if n == 3 {
            image_reply(body).after(Duration::from_secs(30))
        } else {
            image_reply(body)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.concurrency = 1;
    let job = SynthJob::new(c.clone(), backend(&server));
    let all = prompts(8);
    let handle = tokio::spawn({
        let all = all.clone();
        async move { job.run(all).await }
    });
    while server.count() < 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handle.abort();
    let _ = handle.await;
    let before = server.requests();
    assert_eq!(before.len(), 4);

    let stats = SynthJob::new(c, backend(&server)).run(all).await.unwrap();
    assert_eq!(stats.resumed, 3, "three prompts finished before the kill");
    assert_eq!(
        stats.requests, 5,
        "only the unanswered one and the four never sent"
    );
    // Every prompt that got an answer was asked once; only the one cut off was asked twice.
    let mut asked: Vec<String> = server
        .requests()
        .iter()
        .map(|r| prompt_of(&r.body))
        .collect();
    let cut = prompt_of(&before[3].body);
    asked.sort();
    let dupes: Vec<&String> = asked
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    assert_eq!(dupes, vec![&cut]);
    assert_eq!(
        exported(dir.path()),
        want,
        "same dataset as the uninterrupted run"
    );
}

#[tokio::test]
async fn an_image_on_disk_without_its_record_is_reused_not_regenerated() {
    let server = MockServer::start(|body, _| image_reply(body)).await;
    let dir = tempfile::tempdir().unwrap();
    SynthJob::new(config(dir.path()), backend(&server))
        .run(prompts(3))
        .await
        .unwrap();
    // A kill after the image was written but before the record: drop the provenance file.
    std::fs::remove_file(dir.path().join("provenance.jsonl")).unwrap();
    let stats = SynthJob::new(config(dir.path()), backend(&server))
        .run(prompts(3))
        .await
        .unwrap();
    assert_eq!((stats.requests, stats.reused), (0, 3));
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn refusals_are_rewritten_once_rate_limits_retried_and_quota_stops_the_job() {
    // Prompt 0 is refused, its rewrite is accepted; prompt 1 meets two 429s.
    let ps = prompts(6);
    let refused = ps[0].prompt.clone();
    let limited = ps[1].prompt.clone();
    let server = MockServer::start(move |body, _| {
        let p = prompt_of(body);
        if p == refused {
            MockReply::raw(
                400,
                r#"{"error":{"message":"Your request was rejected by the safety system.","code":"moderation_blocked"}}"#,
            )
        } else if p == limited {
            MockReply::RateLimited { secs: 0.01 }
        } else {
            image_reply(body)
        }
    })
    .await;
    let chat = MockServer::start(|_, _| MockReply::content("A photo of a harmless cat")).await;
    let judge = OpenAiJudge::new(
        OpenAiConfig::new("rewriter")
            .with_base_url(chat.base_url())
            .with_api_key(ApiKey::new("x")),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stats = SynthJob::new(config(dir.path()), backend(&server))
        .with_rewriter(Arc::new(ChatRewriter::new(judge)))
        .run(ps.clone())
        .await
        .unwrap();
    assert_eq!(stats.refused, 1);
    assert_eq!(
        stats.retryable, 1,
        "429s outlasting the retries are left for a rerun"
    );
    assert_eq!(stats.unverified, 5);
    let records = read_provenance(&dir.path().join("provenance.jsonl")).unwrap();
    let r0 = records.iter().find(|r| r.prompt.id == ps[0].id).unwrap();
    assert_eq!(r0.outcome, Outcome::Unverified);
    assert_eq!(r0.sent_prompt.as_deref(), Some("A photo of a harmless cat"));
    assert!(
        r0.refusal.as_ref().unwrap()["body"]
            .as_str()
            .unwrap()
            .contains("moderation_blocked")
    );
    let sent_refused = server
        .requests()
        .iter()
        .filter(|r| prompt_of(&r.body) == ps[0].prompt)
        .count();
    assert_eq!(
        sent_refused, 1,
        "a refused prompt is never sent unchanged again"
    );
    let sent_limited = server
        .requests()
        .iter()
        .filter(|r| prompt_of(&r.body) == ps[1].prompt)
        .count();
    assert_eq!(sent_limited, 4, "first try and three retries");

    // A rerun sends neither the refused prompt nor anything finished; the 429 prompt is retried.
    let before = server.count();
    let stats = SynthJob::new(config(dir.path()), backend(&server))
        .run(ps.clone())
        .await
        .unwrap();
    assert_eq!((stats.resumed, stats.requests), (5, 1));
    assert_eq!(server.count() - before, 4);

    // Quota: the job stops cleanly after the first error; nothing else is sent.
    let quota = MockServer::start(|_, _| {
        MockReply::raw(
            429,
            r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota"}}"#,
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.concurrency = 1;
    let stats = SynthJob::new(c, backend(&quota)).run(ps).await.unwrap();
    assert!(stats.stopped.unwrap().contains("Quota"));
    assert_eq!(quota.count(), 1);
    assert_eq!(stats.finished, 0);
}

#[tokio::test]
async fn the_budget_guard_caps_images_across_runs() {
    let server = MockServer::start(|body, _| image_reply(body)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.max_images = Some(3);
    let stats = SynthJob::new(c.clone(), backend(&server))
        .run(prompts(6))
        .await
        .unwrap();
    assert_eq!(stats.requests, 3);
    assert!(stats.stopped.unwrap().contains("3 images"));
    let stats = SynthJob::new(c, backend(&server))
        .run(prompts(6))
        .await
        .unwrap();
    assert_eq!(stats.requests, 0, "the cap counts earlier runs");
    assert_eq!(server.count(), 3);

    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.concurrency = 1;
    c.max_cost = Some(0.05); // one image costs 0.0401: a second would exceed the cap
    let stats = SynthJob::new(c.clone(), backend(&server))
        .run(prompts(6))
        .await
        .unwrap();
    assert_eq!(stats.requests, 1);
    assert!(stats.cost <= 0.05, "{}", stats.cost);
    let stats = SynthJob::new(c, backend(&server))
        .run(prompts(6))
        .await
        .unwrap();
    assert_eq!(stats.requests, 0, "the cost cap counts earlier runs too");
}

#[tokio::test]
async fn checklist_verification_and_chat_rewrites_keep_every_verdict() {
    let images = MockServer::start(|body, _| image_reply(body)).await;
    // The judge says the first prompt of each sample is wrong, then accepts the rewrite.
    let chat = MockServer::start(|body, _| {
        let text = body.to_string();
        if text.contains("strict judge") {
            if text.contains("REWRITTEN") {
                MockReply::content(r#"{"aligned": true, "reasons": []}"#)
            } else {
                MockReply::content(r#"{"aligned": false, "reasons": ["three cups, not four"]}"#)
            }
        } else {
            MockReply::content("A photo of REWRITTEN three cups")
        }
    })
    .await;
    let judge = |name: &str| {
        OpenAiJudge::new(
            OpenAiConfig::new(name)
                .with_base_url(chat.base_url())
                .with_api_key(ApiKey::new("x")),
        )
        .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.prices.chat_input = 2.0;
    c.prices.chat_output = 8.0;
    let stats = SynthJob::new(c, backend(&images))
        .with_verifier(Arc::new(ChecklistVerifier::new(judge("judge"))))
        .with_rewriter(Arc::new(ChatRewriter::new(judge("writer"))))
        .run(prompts(2))
        .await
        .unwrap();
    assert_eq!(stats.rewritten, 2);
    let records = read_provenance(&dir.path().join("provenance.jsonl")).unwrap();
    let r = &records[0];
    assert_eq!(r.outcome, Outcome::Rewritten);
    assert_eq!(r.rounds.len(), 2);
    assert!(!r.rounds[0].verification.aligned);
    assert_eq!(r.rounds[0].verification.reasons, ["three cups, not four"]);
    assert_eq!(r.rounds[1].written_by, "chat:writer");
    assert_eq!(
        r.final_prompt.as_deref(),
        Some("A photo of REWRITTEN three cups")
    );
    // image + 2 judge calls + 1 rewrite, each chat call 100 in / 20 out tokens
    let chat_cost = 3.0 * (100.0 * 2.0 + 20.0 * 8.0) / 1e6;
    assert!((r.cost - (0.0401 + chat_cost)).abs() < 1e-9, "{}", r.cost);
    assert_eq!(images.count(), 2, "rewriting never regenerates");
}

#[tokio::test]
async fn multiref_prompts_go_as_multipart_edits_and_export_as_bagel_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let pool_dir = dir.path().join("pool");
    std::fs::create_dir_all(&pool_dir).unwrap();
    let mut manifest = String::new();
    for (i, (label, name)) in [
        ("human", "a woman in a red coat"),
        ("object", "a blue bicycle"),
        ("object", "a wooden chair"),
        ("scene", "a snowy village"),
    ]
    .iter()
    .enumerate()
    {
        let f = format!("r{i}.png");
        std::fs::write(pool_dir.join(&f), png_for(name)).unwrap();
        manifest.push_str(
            &json!({"path": f, "label": label, "name": name, "licence": "CC0"}).to_string(),
        );
        manifest.push('\n');
    }
    std::fs::write(pool_dir.join("pool.jsonl"), manifest).unwrap();
    let pool = read_pool(&pool_dir.join("pool.jsonl")).unwrap();
    assert!(pool.iter().all(|p| p.labelled));
    let ps = MultirefRecipe::new(pool.into_iter().map(|p| p.reference).collect(), 3)
        .prompts(3)
        .unwrap();
    assert!(ps.iter().all(|p| p.recipe == RecipeKind::Multiref));

    let server = MockServer::start(|body, _| image_reply(body)).await;
    let job_dir = dir.path().join("job");
    let stats = SynthJob::new(config(&job_dir), backend(&server))
        .run(ps.clone())
        .await
        .unwrap();
    assert_eq!(stats.unverified, 3);
    for r in server.requests() {
        assert_eq!(r.path, "/v1/images/edits");
        let parts = r.body.as_str().unwrap().matches("name=\"image[]\"").count();
        assert!((2..=4).contains(&parts));
    }
    let records = read_provenance(&job_dir.join("provenance.jsonl")).unwrap();
    assert_eq!(
        records[0].prompt.references[0].licence.as_deref(),
        Some("CC0")
    );
    let dest = job_dir.join("dataset");
    let summary = export(&job_dir, &dest, ExportMode::Verified).unwrap();
    assert_eq!(summary.written["multi_ref"], 3);
    let data = echo4o_data::parquet::BagelParquet::multi_ref(vec![
        dest.join("multi_ref/part-00000.parquet"),
    ]);
    use echo4o_data::DataSource;
    let samples: Vec<_> = data.samples().map(|s| s.unwrap()).collect();
    assert_eq!(samples.len(), 3);
    assert_eq!(samples[0].references.len(), ps[0].references.len());

    // A malformed pool line is named.
    std::fs::write(
        pool_dir.join("bad.jsonl"),
        "{\"path\": \"r0.png\", \"label\": \"ghost\"}\n",
    )
    .unwrap();
    let e = read_pool(&pool_dir.join("bad.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.jsonl:1") && e.contains("ghost"), "{e}");
}

#[tokio::test]
async fn chat_models_construct_attributes_label_references_and_reword() {
    use echo4o_data::synth::multiref::{label_reference, reword};
    use echo4o_data::synth::surreal::{SurrealRecipe, construct_attributes};
    let chat = MockServer::start(|body, _| {
        let text = body.to_string();
        if text.contains("regular attributes") {
            MockReply::content(
                "Sure:\n```json\n{\"color\": \"green\", \"size\": \"hand-sized\", \"material\": \"glass\", \"structure\": \"a long neck\"}\n```",
            )
        } else if text.contains("main subject") {
            MockReply::content(r#"{"label": "scene", "name": "a snowy village"}"#)
        } else {
            MockReply::content("Set the bicycle from image 1 in image 2's snowy village.")
        }
    })
    .await;
    let judge = OpenAiJudge::new(
        OpenAiConfig::new("writer")
            .with_base_url(chat.base_url())
            .with_api_key(ApiKey::new("x")),
    )
    .unwrap();
    let bottle = construct_attributes(&judge, "bottle").await.unwrap();
    assert_eq!(
        (bottle.color.as_str(), bottle.constructed_by.as_deref()),
        ("green", Some("writer"))
    );
    let mut objects = echo4o_data::synth::surreal::builtin_attributes();
    objects[0] = bottle;
    let ps = SurrealRecipe { objects, seed: 0 }.prompts(60).unwrap();
    let p = ps
        .iter()
        .find(|p| p.attributes["objects"][0]["object"] == "bottle")
        .unwrap();
    assert!(p.written_by.contains(&"attributes:writer".to_string()));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("v.png"), png_for("village")).unwrap();
    std::fs::write(dir.path().join("b.png"), png_for("bike")).unwrap();
    std::fs::write(
        dir.path().join("pool.jsonl"),
        "{\"path\": \"b.png\", \"label\": \"object\", \"name\": \"a blue bicycle\"}\n{\"path\": \"v.png\"}\n",
    )
    .unwrap();
    let mut pool = read_pool(&dir.path().join("pool.jsonl")).unwrap();
    assert!(pool[0].labelled && !pool[1].labelled);
    label_reference(&judge, &mut pool[1].reference)
        .await
        .unwrap();
    assert_eq!(pool[1].reference.name, "a snowy village");
    assert_eq!(pool[1].reference.labelled_by.as_deref(), Some("writer"));
    let refs: Vec<_> = pool.into_iter().map(|e| e.reference).collect();
    let mut recipe = MultirefRecipe::new(refs, 1);
    recipe.max_refs = 2;
    let mut p = recipe.prompts(1).unwrap().remove(0);
    assert_eq!(p.references.len(), 2);
    assert!(p.written_by.contains(&"labels:writer".to_string()));
    assert!(reword(&judge, &mut p).await.unwrap());
    assert_eq!(
        p.prompt,
        "Set the bicycle from image 1 in image 2's snowy village."
    );
    assert!(p.written_by.contains(&"reworded:writer".to_string()));
}

#[tokio::test]
async fn cost_cap_with_concurrency_4_never_pays_four_100_dollar_images_against_150() {
    let server = MockServer::start(|body, _| image_reply(body)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.concurrency = 4;
    c.prices = Prices {
        per_image: 100.0,
        version: "test".into(),
        ..Prices::default()
    };
    c.max_cost = Some(150.0);
    let stats = SynthJob::new(c, backend(&server))
        .run(prompts(8))
        .await
        .unwrap();
    assert_eq!(server.count(), 1, "only one $100 image fits under $150");
    assert_eq!(stats.cost, 100.0);
    assert!(stats.stopped.unwrap().contains("budget"));
}

#[tokio::test]
async fn per_image_price_counts_when_the_reply_carries_usage() {
    let server = MockServer::start(|body, _| image_reply(body)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.prices.per_image = 1.0;
    let stats = SynthJob::new(c, backend(&server))
        .run(prompts(1))
        .await
        .unwrap();
    assert!((stats.cost - 1.0401).abs() < 1e-9, "{}", stats.cost);
}

#[tokio::test]
async fn negative_prices_and_caps_are_refused() {
    let server = MockServer::start(|body, _| image_reply(body)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.prices.image_output = -40.0;
    let e = SynthJob::new(c, backend(&server))
        .run(prompts(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("prices.image_output"), "{e}");
    let mut c = config(dir.path());
    c.max_cost = Some(f64::NAN);
    assert!(
        SynthJob::new(c, backend(&server))
            .run(prompts(1))
            .await
            .is_err()
    );
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn a_reply_that_is_valid_base64_but_not_an_image_is_not_recorded_as_done() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let garbage = Arc::new(AtomicBool::new(true));
    let g = garbage.clone();
    let server = MockServer::start(move |body, _| {
        if g.load(Ordering::SeqCst) {
            let b64 = base64::engine::general_purpose::STANDARD.encode(b"this is not an image");
            MockReply::json(json!({"created": 1, "data": [{"b64_json": b64}]}))
        } else {
            image_reply(body)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let stats = SynthJob::new(config(dir.path()), backend(&server))
        .run(prompts(2))
        .await
        .unwrap();
    assert_eq!((stats.finished, stats.retryable), (0, 2));
    assert!(
        read_provenance(&dir.path().join("provenance.jsonl"))
            .unwrap()
            .is_empty()
    );
    // The server recovers: a rerun asks again and finishes, instead of failing forever.
    garbage.store(false, Ordering::SeqCst);
    let stats = SynthJob::new(config(dir.path()), backend(&server))
        .run(prompts(2))
        .await
        .unwrap();
    assert_eq!(stats.finished, 2);
}

#[tokio::test]
async fn an_unreadable_job_json_or_sidecar_stops_instead_of_starting_over_or_paying_again() {
    let server = MockServer::start(|body, _| image_reply(body)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("job.json")).unwrap(); // a folder: unreadable
    let e = SynthJob::new(config(dir.path()), backend(&server))
        .run(prompts(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("job.json"), "{e}");
    assert_eq!(server.count(), 0);

    let dir = tempfile::tempdir().unwrap();
    SynthJob::new(config(dir.path()), backend(&server))
        .run(prompts(1))
        .await
        .unwrap();
    assert_eq!(server.count(), 1);
    // Lose the provenance (as a kill before the record would) and damage the sidecar.
    std::fs::remove_file(dir.path().join("provenance.jsonl")).unwrap();
    let sidecar = std::fs::read_dir(dir.path().join("responses"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&sidecar, b"{not json").unwrap();
    let e = SynthJob::new(config(dir.path()), backend(&server))
        .run(prompts(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("paid for") && e.contains(".json"), "{e}");
    assert_eq!(server.count(), 1, "no second payment");
}
