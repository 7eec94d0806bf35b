//! GenEval++ and Imagine-Bench end to end against a real chat-completions server on 127.0.0.1
//! that records every request and replies from a script.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::path::Path;
use std::time::Duration;

use echo4o_bench::geneval_pp::{self, GenEvalPp};
use echo4o_bench::imagine::{self, ImagineBench, Scoring};
use echo4o_bench::runner::{NoProgress, RunOptions, dry_run, run};
use echo4o_core::openai::{OpenAiConfig, OpenAiJudge, RetryPolicy};
use echo4o_testutil::{MockReply, MockServer};
use image::{Rgb, RgbImage};
use serde_json::{Value, json};

fn judge(server: &MockServer, model: &str) -> OpenAiJudge {
    OpenAiJudge::new(
        OpenAiConfig::new(model)
            .with_base_url(server.base_url())
            .with_timeout(Duration::from_millis(400))
            .with_retry(RetryPolicy {
                max_retries: 3,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_secs(1),
            }),
    )
    .unwrap()
}

fn write_image(path: &Path, shade: u8) {
    echo4o_core::save_image(&RgbImage::from_pixel(24, 16, Rgb([shade, 90, 200])), path).unwrap();
}

/// The user text of a recorded request.
fn user_text(body: &Value) -> &str {
    body["messages"][1]["content"][0]["text"].as_str().unwrap()
}

/// The item a GenEval++ request is about: the instruction line of its user text.
fn instruction_of(body: &Value) -> String {
    user_text(body)
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// The first 14 GenEval++ items (two of each behaviour below), lines 1..=14.
fn geneval_items() -> Vec<geneval_pp::Item> {
    geneval_pp::official_items().into_iter().take(14).collect()
}

/// Scripted judge behaviour per item, keyed by 1-based line:
/// 1-4 valid JSON pass, 5-6 fenced JSON fail, 7-8 prose around a pass, 9 garbage forever,
/// 10 a 429 then a pass, 11 a 500 then a pass, 12 a hang past the timeout then a pass,
/// 13 has no image, 14 has a corrupt image.
fn geneval_script(
    items: Vec<geneval_pp::Item>,
) -> impl Fn(&Value, usize) -> MockReply + Send + Sync {
    let seen = std::sync::Mutex::new(std::collections::HashMap::<usize, usize>::new());
    move |body, _| {
        let prompt = instruction_of(body);
        let line = items
            .iter()
            .find(|i| i.prompt == prompt)
            .map(|i| i.line)
            .unwrap_or(0);
        let n = {
            let mut seen = seen.lock().unwrap();
            let e = seen.entry(line).or_default();
            *e += 1;
            *e
        };
        match (line, n) {
            (1..=4, _) => MockReply::content(r#"{"correct": 1, "reason": "all there"}"#),
            (5 | 6, _) => {
                MockReply::content("```json\n{\"correct\": 0, \"reason\": \"wrong color\"}\n```")
            }
            (7 | 8, _) => MockReply::content(
                "Here is my verdict: {\"correct\": 1, \"reason\": \"ok\"} Thanks.",
            ),
            (9, _) => MockReply::content("I cannot decide."),
            (10, 1) => MockReply::RateLimited { secs: 0.05 },
            (11, 1) => MockReply::raw(500, "internal error"),
            (12, 1) => MockReply::content("{\"correct\": 0}").after(Duration::from_secs(3)),
            (10..=12, _) => MockReply::content(r#"{"correct": 1, "reason": "eventually"}"#),
            _ => MockReply::raw(400, "unexpected item"),
        }
    }
}

fn geneval_images(dir: &Path) {
    for line in 1..=12u8 {
        write_image(&dir.join(format!("{line}.jpg")), line * 10);
    }
    std::fs::write(dir.join("14.jpg"), b"\xff\xd8\xff not a jpeg").unwrap();
}

#[tokio::test]
async fn geneval_pp_requests_are_official_and_scores_are_exact() {
    let images = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    geneval_images(images.path());
    let items = geneval_items();
    let server = MockServer::start(geneval_script(items.clone())).await;
    let bench = GenEvalPp::with_items(items.clone());
    let mut opts = RunOptions::new(images.path(), out.path());
    opts.concurrency = 4;
    let outcome = run(&bench, &judge(&server, "gpt-4.1"), &opts, &NoProgress)
        .await
        .unwrap();

    // Request bodies: the official texts, byte for byte.
    let requests = server.requests();
    for line in [1usize, 5, 7] {
        let item = &items[line - 1];
        let body = &requests
            .iter()
            .find(|r| instruction_of(&r.body) == item.prompt)
            .unwrap()
            .body;
        assert_eq!(body["model"], "gpt-4.1");
        assert_eq!(body["temperature"], json!(0.0));
        assert_eq!(body["max_tokens"], 200);
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": geneval_pp::SYSTEM_PROMPT})
        );
        let expected_text = format!(
            "Instruction:\n{}\n\nExpectation checklist:\n{}",
            item.prompt,
            item.checklist()
        );
        assert_eq!(user_text(body), expected_text);
        let url = body["messages"][1]["content"][1]["image_url"]["url"]
            .as_str()
            .unwrap();
        let expected_b64 = echo4o_core::jpeg_base64(
            &echo4o_core::load_image(&images.path().join(format!("{line}.jpg"))).unwrap(),
        )
        .unwrap();
        assert_eq!(url, format!("data:image/jpeg;base64,{expected_b64}"));
    }
    assert!(
        geneval_pp::SYSTEM_PROMPT.contains("Be very strict and conservative in your judgment. \n")
    );
    assert_eq!(
        user_text(
            &requests
                .iter()
                .find(|r| instruction_of(&r.body) == items[0].prompt)
                .unwrap()
                .body
        ),
        "Instruction:\nA photo of a brown bus, a green truck, and a red skateboard\n\n\
         Expectation checklist:\nThis image should contain:\n\
         - brown-colored 1 bus present in the image.\n\
         - green-colored 1 truck present in the image.\n\
         - red-colored 1 skateboard present in the image."
    );

    // Item results.
    let by_id = |id: usize| outcome.records.iter().find(|r| r.id == id).unwrap();
    for id in [1, 2, 3, 4, 7, 8, 10, 11, 12] {
        assert!(by_id(id).passed(), "item {id}: {:?}", by_id(id).result);
    }
    assert_eq!(by_id(5).result["reason"], "wrong color");
    assert_eq!(by_id(9).result["correct"], -1);
    assert_eq!(by_id(9).attempts, 3, "the official three content attempts");
    assert_eq!(
        by_id(13).result,
        json!({"correct": 0, "reason": "Image not found"})
            .as_object()
            .unwrap()
            .clone()
    );
    assert_eq!(by_id(13).attempts, 0);
    assert_eq!(by_id(14).result["correct"], -1);
    assert!(
        by_id(14).result["reason"]
            .as_str()
            .unwrap()
            .contains("14.jpg")
    );
    assert_eq!(by_id(14).attempts, 0, "an unreadable image is never sent");

    // Aggregates by hand: lines 1-14 are all `color_attr`: 9 passed of 14.
    let output: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("Output.json")).unwrap())
            .unwrap();
    assert_eq!(output["tag_accuracy"], json!({"color_attr": 0.6429}));
    assert_eq!(output["overall_score_mean_of_tags"], json!(0.6429));
    assert_eq!(output["overall_accuracy_all_samples"], json!(0.6429));
    assert_eq!(output["overall_results"].as_array().unwrap().len(), 14);
    assert_eq!(output["overall_results"][0]["id"], 1);

    let summary = &outcome.summary;
    assert_eq!(summary.failures.len(), 2);
    assert_eq!(summary.missing_images, vec!["13".to_string()]);
    // Usage: every answered request reports 120 tokens (the 429, 500 and timed-out ones do not).
    let answered = 4 + 2 + 2 + 3 + 3;
    assert_eq!(summary.usage.total_tokens, 120 * answered);
    for f in [
        "summary.json",
        "report.md",
        "report.html",
        "results.jsonl",
        "run.json",
    ] {
        assert!(out.path().join(f).is_file(), "{f}");
    }
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(md.contains("| color_attr | 14 | 9 | 0.6429 |"), "{md}");
}

/// Lines ending in a newline (a run killed mid-append leaves a last line without one).
fn complete_lines(text: &str) -> usize {
    text.matches('\n').count()
}

#[tokio::test]
async fn a_killed_then_resumed_run_writes_the_same_files() {
    let images = tempfile::tempdir().unwrap();
    geneval_images(images.path());
    let items = geneval_items();
    let bench = GenEvalPp::with_items(items.clone());

    let full = tempfile::tempdir().unwrap();
    let server = MockServer::start(geneval_script(items.clone())).await;
    run(
        &bench,
        &judge(&server, "gpt-4.1"),
        &RunOptions::new(images.path(), full.path()),
        &NoProgress,
    )
    .await
    .unwrap();

    // Interrupted: replies take 100 ms, the run is dropped once 4 results are on disk.
    let resumed = tempfile::tempdir().unwrap();
    let script = geneval_script(items.clone());
    let slow = MockServer::start(move |b, n| script(b, n).after(Duration::from_millis(100))).await;
    let mut opts = RunOptions::new(images.path(), resumed.path());
    opts.concurrency = 2;
    let slow_judge = judge(&slow, "gpt-4.1");
    let results = resumed.path().join("results.jsonl");
    let watcher = async {
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let n = std::fs::read_to_string(&results)
                .map(|t| complete_lines(&t))
                .unwrap_or(0);
            if n >= 4 {
                break;
            }
        }
    };
    tokio::select! {
        r = run(&bench, &slow_judge, &opts, &NoProgress) => panic!("finished before the kill: {:?}", r.map(|o| o.summary.overall)),
        () = watcher => {}
    }
    // Complete lines only: a line caught mid-write is not a result, and the resume drops it.
    let done_before = complete_lines(&std::fs::read_to_string(&results).unwrap());
    assert!(done_before < 13, "{done_before}");

    // Resumed against the same judge (a run folder is bound to its judge's endpoint).
    let sent_before = slow.count();
    let outcome = run(&bench, &slow_judge, &opts, &NoProgress).await.unwrap();
    assert_eq!(outcome.summary.resumed, done_before);
    let finished_items: std::collections::HashSet<String> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .take(done_before)
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].to_string())
        .collect();
    for r in slow.requests().into_iter().skip(sent_before) {
        let prompt = instruction_of(&r.body);
        let line = items.iter().find(|i| i.prompt == prompt).unwrap().line;
        assert!(
            !finished_items.contains(&line.to_string()),
            "item {line} was judged twice"
        );
    }

    for f in ["Output.json", "report.md", "report.html"] {
        let a = std::fs::read(full.path().join(f)).unwrap();
        let b = std::fs::read(resumed.path().join(f)).unwrap();
        assert!(a == b, "{f} differs");
    }
    let strip = |p: &Path| {
        let mut v: Value =
            serde_json::from_str(&std::fs::read_to_string(p.join("summary.json")).unwrap())
                .unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("elapsed_s");
        o.remove("resumed");
        v
    };
    assert_eq!(strip(full.path()), strip(resumed.path()));
}

#[tokio::test]
async fn an_output_folder_of_another_judge_is_refused() {
    let images = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    geneval_images(images.path());
    let items: Vec<_> = geneval_items().into_iter().take(2).collect();
    let server = MockServer::start(geneval_script(items.clone())).await;
    let bench = GenEvalPp::with_items(items);
    let opts = RunOptions::new(images.path(), out.path());
    run(&bench, &judge(&server, "gpt-4.1"), &opts, &NoProgress)
        .await
        .unwrap();
    let err = run(&bench, &judge(&server, "other-model"), &opts, &NoProgress)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("judge_model"), "{err}");
}

#[tokio::test]
async fn dry_run_writes_the_exact_requests_without_sending() {
    let images = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    geneval_images(images.path());
    std::fs::remove_file(images.path().join("14.jpg")).unwrap();
    let bench = GenEvalPp::with_items(geneval_items());
    let config = OpenAiConfig::new("gpt-4.1").with_base_url("http://127.0.0.1:9/v1");
    let n = dry_run(&bench, &config, images.path(), out.path())
        .await
        .unwrap();
    assert_eq!(n, 12);
    let text = std::fs::read_to_string(out.path().join("requests.jsonl")).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["id"], "1");
    assert_eq!(first["url"], "http://127.0.0.1:9/v1/chat/completions");
    assert_eq!(
        first["body"]["messages"][0]["content"],
        geneval_pp::SYSTEM_PROMPT
    );
}

/// Imagine-Bench: items 1-3 (COLOR), 121-122 (COMBINATION), 151 (TIME), 211-212 (Multi-Object).
fn imagine_items() -> Vec<imagine::Item> {
    imagine::official_items()
        .into_iter()
        .filter(|i| [1, 2, 3, 121, 122, 151, 211, 212].contains(&i.id))
        .collect()
}

#[tokio::test]
async fn imagine_requests_are_official_and_scores_are_exact() {
    let images = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let items = imagine_items();
    for (id, ext) in [
        (1, "png"),
        (2, "jpg"),
        (3, "webp"),
        (121, "jpeg"),
        (122, "png"),
        (211, "png"),
    ] {
        write_image(&images.path().join(format!("{id}.{ext}")), id as u8);
    }
    // 151's image is unreadable: recorded as failed without a request, as officially. (A
    // judge that cannot be reached is never a verdict: see
    // `transport_failures_are_not_verdicts_and_a_rerun_retries_them`.)
    std::fs::write(images.path().join("151.png"), b"\x89PNG broken").unwrap();
    // 212 has no image: skipped and listed.
    let replies: Vec<(u64, &str)> = vec![
        (
            1,
            "Fantasy Fulfillment: 8\nReason: a\n\nIdentity Preservation: 9\nReason: b\n\nAesthetic Quality: 7\nReason: c",
        ),
        (
            2,
            "Fantasy Fulfillment：6  \nIdentity Preservation：4\nAesthetic Quality：10",
        ),
        (
            3,
            "Fantasy Fulfillment: 10\nIdentity Preservation: 10\n(no aesthetic score)",
        ),
        (
            121,
            "Fantasy Fulfillment: 5\nIdentity Preservation: 7\nAesthetic Quality: 6\nOn reflection, Fantasy Fulfillment: 3",
        ),
        (
            122,
            "Fantasy Fulfillment: 9\nIdentity Preservation: 8\nAesthetic Quality: 9",
        ),
        (151, "FAIL"),
        (
            211,
            "Fantasy Fulfillment: 7\nIdentity Preservation: 7\nAesthetic Quality: 8",
        ),
    ];
    let lookup = items.clone();
    let server = MockServer::start(move |body, _| {
        let text = user_text(body);
        let item = lookup
            .iter()
            .find(|i| text.contains(&format!("PROMPT: \"{}\"", i.instruction)))
            .unwrap();
        match replies.iter().find(|(id, _)| *id == item.id) {
            Some((_, "FAIL")) => MockReply::raw(503, "overloaded"),
            Some((_, reply)) => MockReply::content(*reply),
            None => MockReply::raw(400, "unexpected"),
        }
    })
    .await;
    let bench = ImagineBench::with_items(items.clone());
    let outcome = run(
        &bench,
        &judge(&server, "gpt-4.1-2025-04-14"),
        &RunOptions::new(images.path(), out.path()),
        &NoProgress,
    )
    .await
    .unwrap();

    let requests = server.requests();
    let body = &requests
        .iter()
        .find(|r| user_text(&r.body).contains(&items[0].instruction))
        .unwrap()
        .body;
    assert_eq!(body["model"], "gpt-4.1-2025-04-14");
    assert_eq!(body["max_tokens"], 1024);
    assert_eq!(body["temperature"], json!(0.0));
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": [{"type": "text", "text": imagine::SYSTEM_PROMPT}]})
    );
    let template = imagine::USER_TEMPLATE;
    assert_eq!(
        user_text(body),
        template
            .replace("{instruction}", &items[0].instruction)
            .replace("{note}", &items[0].note)
    );
    let url = body["messages"][1]["content"][1]["image_url"]["url"]
        .as_str()
        .unwrap();
    assert!(
        url.starts_with("data:image/png;base64,/9j/"),
        "official PNG label over JPEG bytes"
    );

    // Per image: 1: min(8,9)*.8+7*.2 = 7.8; 2: min(6,4)*.8+10*.2 = 5.2; 3: 10*.8 + (-1)*.2 = 7.8;
    // 121: last FF wins: min(3,7)*.8+6*.2 = 3.6; 122: 8*.8+9*.2 = 8.2; 151: all attempts failed = 0;
    // 211: 7*.8+8*.2 = 7.2.
    let scores: Vec<(u64, f64)> = std::fs::read_to_string(out.path().join("scores.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["id"].as_u64().unwrap(),
                v["Weighted Score"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        scores,
        vec![
            (1, 7.8),
            (2, 5.2),
            (3, 7.8),
            (121, 3.6),
            (122, 8.2),
            (151, 0.0),
            (211, 7.2)
        ]
    );
    let rec151 = outcome.records.iter().find(|r| r.id == 151).unwrap();
    assert_eq!(rec151.attempts, 0);

    // Categories: Attribute shift (7.8+5.2+7.8)/3 = 6.933; Hybridization (3.6+8.2)/2 = 5.9;
    // Spatiotemporal 0; Multi-Object 7.2. Overall (3*6.9333+2*5.9+2*0+2*7.2)/9 = 5.222.
    let s = &outcome.summary;
    let cats: Vec<(&str, usize, f64)> = s
        .categories
        .iter()
        .map(|c| (c.name.as_str(), c.count, c.score))
        .collect();
    assert_eq!(
        cats,
        vec![
            ("Attribute shift", 3, 6.933),
            ("Hybridization", 2, 5.9),
            ("Spatiotemporal", 1, 0.0),
            ("Multi-Object", 1, 7.2)
        ]
    );
    assert_eq!(s.overall, 5.222);
    assert_eq!(s.missing_images, vec!["212".to_string()]);
    assert_eq!(s.skipped, 1);

    let full: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("full.json")).unwrap())
            .unwrap();
    assert_eq!(full.as_array().unwrap().len(), 7);
    assert_eq!(full[0]["type"], "Attribute shift");
    assert_eq!(full[0]["instruction"], items[0].instruction);

    // The other formulas, over the same records.
    let strict = ImagineBench::with_items(items.clone()).with_scoring(Scoring::StrictOfficial);
    assert_eq!(
        strict.aggregate(&outcome.records).1,
        echo4o_bench::py_round((3.0 * (20.8 / 3.0) + 2.0 * 5.9) / 7.0, 3)
    );
    let ulm = ImagineBench::with_items(items).with_scoring(Scoring::UlmEvalKit);
    // 1: 4.8+2.7+0.7 = 8.2; 2: 3.6+1.2+1 = 5.8; 3: 6+3+0 = 9; 121: 1.8+2.1+0.6 = 4.5;
    // 122: 5.4+2.4+0.9 = 8.7; 151: 0; 211: 4.2+2.1+0.8 = 7.1 -> mean 43.3/7 = 6.186.
    assert_eq!(ulm.aggregate(&outcome.records).1, 6.186);
}

#[tokio::test]
async fn a_judged_benchmark_is_a_scorer() {
    use echo4o_bench::runner::JudgeScorer;
    use echo4o_core::Scorer;
    let items = geneval_items();
    let server = MockServer::start(geneval_script(items.clone())).await;
    let bench = GenEvalPp::with_items(items.clone());
    let judge = judge(&server, "gpt-4.1");
    let scorer = JudgeScorer::new(&bench, &judge);
    let img = RgbImage::new(8, 8);
    let pass = scorer.score(&items[0], &img).await.unwrap();
    assert_eq!((pass.score, pass.passed), (1.0, Some(true)));
    assert_eq!(pass.reason, "all there");
    let fail = scorer.score(&items[8], &img).await.unwrap();
    assert_eq!(fail.passed, Some(false));
    assert_eq!(fail.details["correct"], -1);
    assert_eq!(fail.usage.total_tokens, 3 * 120);
}

fn results_lines(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_401_or_a_quota_error_stops_the_run_and_stores_no_verdict() {
    let images = tempfile::tempdir().unwrap();
    geneval_images(images.path());
    let bench = GenEvalPp::with_items(geneval_items().into_iter().take(8).collect());
    for reply in [
        MockReply::raw(401, r#"{"error":{"message":"Incorrect API key"}}"#),
        MockReply::raw(
            429,
            r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota"}}"#,
        ),
    ] {
        let out = tempfile::tempdir().unwrap();
        let server = MockServer::start(move |_, _| reply.clone()).await;
        let mut opts = RunOptions::new(images.path(), out.path());
        opts.concurrency = 1;
        let err = run(&bench, &judge(&server, "gpt-4.1"), &opts, &NoProgress)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("will not pass by retrying"), "{err}");
        assert_eq!(server.count(), 1, "stopped at the first permanent error");
        assert!(
            results_lines(out.path()).is_empty(),
            "no -1 verdict was stored"
        );
    }
}

#[tokio::test]
async fn transport_failures_are_not_verdicts_and_a_rerun_retries_them() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let images = tempfile::tempdir().unwrap();
    geneval_images(images.path());
    let items: Vec<_> = geneval_items().into_iter().take(3).collect();
    let down = std::sync::Arc::new(AtomicBool::new(true));
    let d = down.clone();
    let second = items[1].prompt.clone();
    let server = MockServer::start(move |body, _| {
        if d.load(Ordering::SeqCst) && instruction_of(body) == second {
            MockReply::raw(503, "overloaded")
        } else {
            MockReply::content(r#"{"correct": 1, "reason": "ok"}"#)
        }
    })
    .await;
    let bench = GenEvalPp::with_items(items);
    let out = tempfile::tempdir().unwrap();
    let opts = RunOptions::new(images.path(), out.path());
    let err = run(&bench, &judge(&server, "gpt-4.1"), &opts, &NoProgress)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 items could not be judged"), "{err}");
    let ids: Vec<u64> = results_lines(out.path())
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(
        !ids.contains(&2),
        "no verdict stored for the unreachable item"
    );
    down.store(false, Ordering::SeqCst);
    let before = server.count();
    let outcome = run(&bench, &judge(&server, "gpt-4.1"), &opts, &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        server.count() - before,
        1,
        "only the unjudged item is sent again"
    );
    assert!(outcome.records.iter().all(|r| r.passed()));
}

#[tokio::test]
async fn reusing_out_with_another_images_folder_judges_the_new_images() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    geneval_images(a.path());
    geneval_images(b.path());
    let items: Vec<_> = geneval_items().into_iter().take(4).collect();
    let server = MockServer::start(geneval_script(items.clone())).await;
    let bench = GenEvalPp::with_items(items);
    let out = tempfile::tempdir().unwrap();
    let judge = judge(&server, "gpt-4.1");
    let judge_folder = |images: &Path| {
        let opts = RunOptions::new(images, out.path());
        let (bench, judge) = (&bench, &judge);
        async move { run(bench, judge, &opts, &NoProgress).await.unwrap() }
    };
    judge_folder(a.path()).await;
    assert_eq!(server.count(), 4);
    // The same folder again: nothing to do.
    judge_folder(a.path()).await;
    assert_eq!(server.count(), 4);
    // Another folder: every image is judged, none reported with the old verdict.
    let outcome = judge_folder(b.path()).await;
    assert_eq!(server.count(), 8);
    assert_eq!(outcome.summary.resumed, 0);
    // One image regenerated in place: only it is judged again.
    std::thread::sleep(Duration::from_millis(20));
    write_image(&b.path().join("2.jpg"), 77);
    judge_folder(b.path()).await;
    assert_eq!(server.count(), 9);
}

#[tokio::test]
async fn odd_usage_keeps_the_verdict_and_a_10_mb_reply_is_capped() {
    let images = tempfile::tempdir().unwrap();
    geneval_images(images.path());
    let items: Vec<_> = geneval_items().into_iter().take(2).collect();
    let first = items[0].prompt.clone();
    let huge = "x".repeat(10 << 20);
    let server = MockServer::start(move |body, _| {
        if instruction_of(body) == first {
            MockReply::json(json!({
                "choices": [{"message": {"role": "assistant", "content": "{\"correct\": 1, \"reason\": \"ok\"}"}}],
                "usage": {"prompt_tokens": null, "completion_tokens": 7.0, "total_tokens": 7.5}
            }))
        } else {
            MockReply::content(huge.clone())
        }
    })
    .await;
    let bench = GenEvalPp::with_items(items);
    let out = tempfile::tempdir().unwrap();
    let outcome = run(
        &bench,
        &judge(&server, "gpt-4.1"),
        &RunOptions::new(images.path(), out.path()),
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(
        outcome.records[0].passed(),
        "{:?}",
        outcome.records[0].result
    );
    assert_eq!(outcome.records[0].usage.completion_tokens, 7);
    for f in [
        "results.jsonl",
        "summary.json",
        "report.md",
        "report.html",
        "Output.json",
    ] {
        let len = std::fs::metadata(out.path().join(f)).unwrap().len();
        assert!(len < 200_000, "{f}: {len} bytes");
    }
}

#[test]
fn imagine_finds_upper_case_extensions() {
    use echo4o_bench::runner::JudgedBenchmark;
    let dir = tempfile::tempdir().unwrap();
    let bench = ImagineBench::with_items(imagine::official_items().into_iter().take(1).collect());
    let item = &bench.items()[0];
    std::fs::write(dir.path().join(format!("{}.JPG", item.id)), b"x").unwrap();
    assert!(
        bench
            .image_candidates(dir.path(), item)
            .iter()
            .any(|p| p.is_file())
    );
}
