//! OmniContext end to end: items from the flattened folder and from parquet, the official
//! requests, a scripted judge on 127.0.0.1 with garbage replies and 429s, a killed run resumed,
//! and the `--strict-official` quirks.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::builder::{BinaryBuilder, ListBuilder, StringBuilder, StructBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use echo4o_bench::omnicontext::{self, Criterion, OmniContext, judge_prompt};
use echo4o_bench::runner::NoProgress;
use echo4o_bench::suite::{Benchmark, ReferenceImage};
use echo4o_core::openai::{OpenAiConfig, OpenAiJudge, RetryPolicy};
use echo4o_testutil::{MockReply, MockServer};
use image::{Rgb, RgbImage};
use serde_json::{Value, json};

fn judge(server: &MockServer) -> OpenAiJudge {
    OpenAiJudge::new(
        OpenAiConfig::new("gpt-4.1")
            .with_base_url(server.base_url())
            .with_timeout(Duration::from_secs(5))
            .with_retry(RetryPolicy {
                max_retries: 3,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(50),
            }),
    )
    .unwrap()
}

/// Four items in the flattened layout: A (multi_object, 2 inputs, one over 1 MP), B
/// (scene_character), C (single_object), D (multi_character, no generated image).
fn flattened(dir: &Path) {
    let meta = json!([
        {"id": "A", "task_type": "multi_object", "ori_img": ["A_0.jpg", "A_1.jpg"], "ins_en": "INSTR-A put the cup by the lamp"},
        {"id": "B", "task_type": "scene_character", "ori_img": ["B_0.jpg"], "ins_en": "INSTR-B the man in the park"},
        {"id": "C", "task_type": "single_object", "ori_img": "C_0.jpg", "ins_en": "INSTR-C the cup on sand"},
        {"id": "D", "task_type": "multi_character", "ori_img": ["D_0.jpg"], "ins_en": "INSTR-D two friends"},
    ]);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("metadata.json"), meta.to_string()).unwrap();
    let img = |t: &str, n: &str, w, h| {
        echo4o_core::save_image(
            &RgbImage::from_pixel(w, h, Rgb([200, 30, 40])),
            &dir.join("images").join(t).join(n),
        )
        .unwrap();
    };
    img("multi_object", "A_0.jpg", 1200, 1000);
    img("multi_object", "A_1.jpg", 100, 70);
    img("scene_character", "B_0.jpg", 64, 48);
    img("single_object", "C_0.jpg", 40, 40);
    img("multi_character", "D_0.jpg", 40, 40);
}

fn outputs(bench: &OmniContext, images: &Path) {
    for i in 0..3 {
        echo4o_core::save_image(
            &RgbImage::from_pixel(32, 32, Rgb([9, 9, 9])),
            &bench.image_path(images, i, 0),
        )
        .unwrap();
    }
}

fn text_of(body: &Value) -> String {
    body["messages"][0]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string()
}

/// (item letter, PF?) of a request.
fn who(body: &Value) -> (char, bool) {
    let t = text_of(body);
    let at = t.find("INSTR-").unwrap() + 6;
    let item = t[at..].chars().next().unwrap();
    (item, t.contains("fulfills the editing instruction"))
}

type Counts = Arc<Mutex<HashMap<(char, bool), usize>>>;

/// A: PF garbage once then 8, SC 2. B: a 429 on PF, then 6 for both in a fenced block. C:
/// garbage forever.
fn script(counts: Counts) -> impl Fn(&Value, usize) -> MockReply + Send + Sync {
    move |body, _| {
        let key = who(body);
        let n = {
            let mut c = counts.lock().unwrap();
            let e = c.entry(key).or_default();
            *e += 1;
            *e
        };
        match (key, n) {
            (('A', true), 1) => MockReply::content("The image looks fine to me."),
            (('A', true), _) => {
                MockReply::content("{\n \"score\": 8,\n \"reasoning\": \"mostly\"\n}")
            }
            (('A', false), _) => MockReply::content("{\"score\": 2, \"reasoning\": \"other cup\"}"),
            (('B', true), 1) => MockReply::RateLimited { secs: 0.01 },
            (('B', _), _) => {
                MockReply::content("```json\n{\"score\": 6, \"reasoning\": \"b\"}\n```")
            }
            _ => MockReply::content("I refuse to give numbers."),
        }
    }
}

#[tokio::test]
async fn judges_score_and_write_the_official_files() {
    let dir = tempfile::tempdir().unwrap();
    flattened(&dir.path().join("data"));
    let bench = OmniContext::load(&dir.path().join("data"))
        .unwrap()
        .with_backoff(Duration::ZERO);
    assert_eq!(bench.items().len(), 4);
    let images = dir.path().join("gen");
    outputs(&bench, &images);
    let counts = Counts::default();
    let server = MockServer::start(script(counts.clone())).await;
    let out = dir.path().join("out");
    let s = bench
        .judge_folder(&judge(&server), &images, &out, 2, &NoProgress)
        .await
        .unwrap();

    // A: 3 requests (PF twice), B: 2 after its 429 retry (3 on the wire), C: PF and SC 3 times.
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3 + 3 + 6, "{:?}", counts.lock().unwrap());
    let a_pf = reqs.iter().find(|r| who(&r.body) == ('A', true)).unwrap();
    let body = &a_pf.body;
    assert_eq!(body["model"], "gpt-4.1");
    assert_eq!(body["max_tokens"], 1400);
    assert!(body.get("temperature").is_none());
    let parts = body["messages"][0]["content"].as_array().unwrap();
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(parts.len(), 4, "text, two inputs, the output");
    assert_eq!(
        parts[0]["text"],
        judge_prompt(
            Criterion::PromptFollowing,
            "multi_object",
            "INSTR-A put the cup by the lamp"
        )
    );
    // The 1200x1000 input is sent at int(sqrt(1 MP) scaling) floored to 16: 1120x928; the
    // 100x70 one floored to 96x64; the output as it is.
    let dims = |p: &Value| {
        let url = p["image_url"]["url"].as_str().unwrap();
        let b64 = url.strip_prefix("data:image/jpeg;base64,").unwrap();
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        echo4o_core::decode_image(&bytes, "x").unwrap().dimensions()
    };
    assert_eq!(
        [dims(&parts[1]), dims(&parts[2]), dims(&parts[3])],
        [(1120, 928), (96, 64), (32, 32)]
    );
    let b_sc = reqs.iter().find(|r| who(&r.body) == ('B', false)).unwrap();
    assert!(
        text_of(&b_sc.body).contains("and the scene background"),
        "scene rubric for scene_*"
    );

    // A: sqrt(8 * 2) = 4; B: 6; C failed and left out; D skipped (no image).
    assert_eq!(s.scored, 2);
    assert_eq!(s.missing_images.len(), 1);
    assert!(s.missing_images[0].ends_with("multi_character/D.png"));
    assert_eq!(s.failures.len(), 1);
    assert!(s.failures[0].0 == "single_object/C" && s.failures[0].1.contains("never parsed"));
    assert_eq!(
        s.overall, 5.0,
        "mean over the types with scores: (4 + 6) / 2"
    );
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("statistics.json")).unwrap())
            .unwrap();
    assert_eq!(stats["multi_object"]["overall_score"], 4.0);
    assert_eq!(stats["average"]["PF_score"], 7.0);
    assert!(
        std::fs::read_to_string(out.join("statistics.json"))
            .unwrap()
            .contains("\n    \"multi_object\"")
    );
    let a_line = std::fs::read_to_string(out.join("gpt4dot1/multi_object/score.jsonl")).unwrap();
    assert!(
        a_line.starts_with("{\"key\": \"A\", \"task_type\": \"multi_object\""),
        "{a_line}"
    );
    assert!(
        a_line.contains("\"PF_score\": 8.0, \"PF_score_reason\": \"mostly\""),
        "{a_line}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("gpt4dot1/single_object/score.jsonl")).unwrap(),
        ""
    );
    let combined = std::fs::read_to_string(out.join("gpt4dot1/combined_score.jsonl")).unwrap();
    assert_eq!(combined.lines().count(), 2);

    // Echo-4o's 6-type average leaves single_* out (here: nothing changes but the label).
    let multi = OmniContext::load(&dir.path().join("data"))
        .unwrap()
        .with_multi_only(true);
    let out2 = dir.path().join("out2");
    std::fs::create_dir_all(&out2).unwrap();
    std::fs::copy(out.join("results.jsonl"), out2.join("results.jsonl")).unwrap();
    let before = server.count();
    let s2 = multi
        .judge_folder(&judge(&server), &images, &out2, 2, &NoProgress)
        .await
        .unwrap();
    assert_eq!(server.count(), before, "every record resumed, no request");
    assert_eq!((s2.resumed, s2.overall), (3, 5.0));
}

#[tokio::test]
async fn a_killed_run_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    flattened(&dir.path().join("data"));
    let bench = OmniContext::load(&dir.path().join("data"))
        .unwrap()
        .with_backoff(Duration::ZERO);
    let images = dir.path().join("gen");
    outputs(&bench, &images);
    let out = dir.path().join("out");
    // The judge answers item A, then the key is revoked: the run stops with A kept.
    let server = MockServer::start(|body, _| {
        if who(body).0 == 'A' {
            MockReply::content("{\"score\": 5}")
        } else {
            MockReply::raw(
                401,
                r#"{"error": {"message": "bad key", "code": "invalid_api_key"}}"#,
            )
        }
    })
    .await;
    let err = bench
        .judge_folder(&judge(&server), &images, &out, 1, &NoProgress)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("refused") && err.contains("rerun to resume"),
        "{err}"
    );
    let kept = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    assert_eq!(kept.lines().count(), 1, "{kept}");

    let good = MockServer::start(|_, _| MockReply::content("{\"score\": 10}")).await;
    let s = bench
        .judge_folder(&judge(&good), &images, &out, 1, &NoProgress)
        .await
        .unwrap();
    assert_eq!(good.count(), 4, "only B and C are judged again");
    assert_eq!((s.resumed, s.scored), (1, 3));
}

#[tokio::test]
async fn strict_official_asks_six_times_and_guesses() {
    let dir = tempfile::tempdir().unwrap();
    flattened(&dir.path().join("data"));
    let strict = |seed| {
        OmniContext::load(&dir.path().join("data"))
            .unwrap()
            .with_backoff(Duration::ZERO)
            .with_strict_official(true)
            .with_guess_seed(seed)
    };
    let bench = strict(3);
    let images = dir.path().join("gen");
    outputs(&bench, &images);
    let server = MockServer::start(|body, _| match who(body).0 {
        'C' => MockReply::content("no idea"),
        _ => MockReply::content("{\"score\": 7, \"reasoning\": \"r\"}"),
    })
    .await;
    let out = dir.path().join("out");
    let s = bench
        .judge_folder(&judge(&server), &images, &out, 1, &NoProgress)
        .await
        .unwrap();
    assert_eq!(server.count(), 18, "6 requests for each of the 3 items");
    assert_eq!(s.scored, 3, "C's scores are guessed, so it counts");
    let guessed = s.extra["guessed"].as_array().unwrap();
    assert_eq!(guessed.len(), 1);
    assert!(
        guessed[0]
            .as_str()
            .unwrap()
            .starts_with("single_object/C: PF guessed")
    );
    let line = std::fs::read_to_string(out.join("gpt4dot1/single_object/score.jsonl")).unwrap();
    assert!(line.contains("guess_if_cannot_parse | no idea"), "{line}");
    // The guess is a function of the printed seed.
    let again = strict(3)
        .judge_folder(
            &judge(&server),
            &images,
            &dir.path().join("o2"),
            1,
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(again.extra["guessed"], s.extra["guessed"]);
}

fn parquet_file(path: &Path) {
    let png = |shade| {
        echo4o_core::encode_image(
            &RgbImage::from_pixel(8, 6, Rgb([shade, 0, 0])),
            image::ImageFormat::Png,
        )
        .unwrap()
    };
    let mut key = StringBuilder::new();
    let mut task = StringBuilder::new();
    let mut instr = StringBuilder::new();
    let mut lang = StringBuilder::new();
    let fields = vec![
        arrow_schema::Field::new("bytes", arrow_schema::DataType::Binary, true),
        arrow_schema::Field::new("path", arrow_schema::DataType::Utf8, true),
    ];
    let mut images = ListBuilder::new(StructBuilder::from_fields(fields, 0));
    for (k, t, n) in [("k1", "multi_object", 2u8), ("k2", "scene_object", 1)] {
        key.append_value(k);
        task.append_value(t);
        instr.append_value(format!("instruction {k}"));
        lang.append_value("en");
        let s = images.values();
        for i in 0..n {
            s.field_builder::<BinaryBuilder>(0)
                .unwrap()
                .append_value(png(i * 100));
            s.field_builder::<StringBuilder>(1).unwrap().append_null();
            s.append(true);
        }
        images.append(true);
    }
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("key", Arc::new(key.finish())),
        ("task_type", Arc::new(task.finish())),
        ("instruction", Arc::new(instr.finish())),
        ("instruction_language", Arc::new(lang.finish())),
        ("input_images", Arc::new(images.finish())),
    ];
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn reads_the_hf_dataset_as_downloaded() {
    let dir = tempfile::tempdir().unwrap();
    parquet_file(
        &dir.path()
            .join("OmniContext/data/train-00000-of-00001.parquet"),
    );
    let items = omnicontext::load(&dir.path().join("OmniContext")).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!((items[0].key.as_str(), items[0].inputs.len()), ("k1", 2));
    assert_eq!(items[1].task_type, "scene_object");
    let img = items[0].inputs[1].load().unwrap();
    assert_eq!(
        (img.dimensions(), img.get_pixel(0, 0).0),
        ((8, 6), [100, 0, 0])
    );
    assert!(
        matches!(&items[0].inputs[0], ReferenceImage::Encoded { origin, .. } if origin.contains("row 0 (k1) input_images[0]"))
    );
    // The size rule reads the first input: 8x6 is raised until the short side is 512.
    let bench = OmniContext::with_items(items);
    assert_eq!(
        bench.recipe().size_rule,
        echo4o_core::SizeRule::FirstReference
    );
    assert!(
        bench
            .image_path(Path::new("o"), 1, 0)
            .ends_with("scene_object/k2.png")
    );
}

#[test]
fn bad_data_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = omnicontext::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("neither metadata.json"), "{err}");
    std::fs::write(
        dir.path().join("metadata.json"),
        r#"[{"id": "x", "task_type": "multi_thing", "ori_img": ["a.jpg"], "ins_en": "i"}]"#,
    )
    .unwrap();
    let err = omnicontext::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("multi_thing") && err.contains("known:"),
        "{err}"
    );
    std::fs::write(dir.path().join("metadata.json"), "[{\"id\": 3}]").unwrap();
    let err = omnicontext::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("metadata.json"), "{err}");
}
