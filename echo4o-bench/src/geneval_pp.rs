//! GenEval++: 280 prompts in 7 tags, each image judged pass/fail against a checklist, exactly as
//! the official `test_scripts/Eval-gpt-4.1-geneval++.py` of Echo-4o does it.

use std::path::{Path, PathBuf};

use echo4o_core::{ChatMessage, ContentPart, JudgeRequest, Role};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::report::{Category, GalleryRow, Summary};
use crate::runner::{Judged, JudgedBenchmark, Missing, Unreadable};
use crate::text::{fill, parse_jsonl, py_round};
use crate::{Error, Result};

/// The official prompt set (`Geneval++.jsonl`, 280 records), bundled.
pub const PROMPTS_JSONL: &str = include_str!("../data/geneval_pp/Geneval++.jsonl");
/// The official judge system prompt, byte for byte (note the space after "judgment.").
pub const SYSTEM_PROMPT: &str = include_str!("../data/geneval_pp/judge_system_prompt.txt");
/// The official user text; `{instruction}` and `{explanation}` are substituted.
pub const USER_TEMPLATE: &str = include_str!("../data/geneval_pp/judge_user_template.txt");
/// The official judge model.
pub const DEFAULT_MODEL: &str = "gpt-4.1";
/// The official `max_tokens`.
pub const MAX_TOKENS: u32 = 200;

/// One object requirement of an item's `include` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requirement {
    /// A COCO class name.
    pub class: String,
    /// How many (the official code defaults a missing count to 1).
    #[serde(default = "one")]
    pub count: u32,
    /// One of the ten GenEval colors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// An absolute image region: `left`, `right`, `above`, `below`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `larger` or `smaller`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
}

fn one() -> u32 {
    1
}

/// An `exclude` entry: fewer than `count` objects of `class` may appear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exclusion {
    /// A COCO class name.
    pub class: String,
    /// The excluded count (the prompt's count plus one).
    pub count: u32,
}

/// One GenEval++ item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// 1-based line number in the prompt file; the image is `{line}.jpg`.
    #[serde(skip)]
    pub line: usize,
    /// The tag (`color_attr`, `counting`, ...).
    pub tag: String,
    /// Objects that must appear.
    pub include: Vec<Requirement>,
    /// Objects that must not appear (in excess).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<Exclusion>,
    /// The generation prompt.
    pub prompt: String,
}

impl Item {
    /// The expectation checklist, exactly as the official `metadata_to_explanation` builds it
    /// (naive `+s` plural, `{color}-colored`, size word, region phrase, exclude line).
    ///
    /// ```
    /// let items = echo4o_bench::geneval_pp::official_items();
    /// assert_eq!(items[240].checklist(),
    ///     "This image should contain:\n- 6 clocks present in the image.\n- No more than 6 clocks should appear.");
    /// ```
    pub fn checklist(&self) -> String {
        let noun = |class: &str, count: u32| {
            if count > 1 {
                format!("{class}s")
            } else {
                class.to_string()
            }
        };
        let mut parts: Vec<String> = self
            .include
            .iter()
            .map(|it| {
                let mut text = format!("{} {}", it.count, noun(&it.class, it.count));
                let mut desc = Vec::new();
                if let Some(c) = it.color.as_deref().filter(|c| !c.is_empty()) {
                    desc.push(format!("{c}-colored"));
                }
                if let Some(s) = it.size.as_deref().filter(|s| !s.is_empty()) {
                    desc.push(s.to_string());
                }
                if !desc.is_empty() {
                    text = format!("{} {text}", desc.join(" "));
                }
                match it.region.as_deref().filter(|r| !r.is_empty()) {
                    Some(r) => format!("- {text} located in the {r} part of the image."),
                    None => format!("- {text} present in the image."),
                }
            })
            .collect();
        parts.extend(self.exclude.iter().map(|it| {
            format!(
                "- No more than {} {} should appear.",
                i64::from(it.count) - 1,
                noun(&it.class, it.count)
            )
        }));
        format!("This image should contain:\n{}", parts.join("\n"))
    }

    /// The user text sent to the judge.
    pub fn user_text(&self) -> String {
        fill(
            USER_TEMPLATE,
            &[
                ("instruction", &self.prompt),
                ("explanation", &self.checklist()),
            ],
        )
    }
}

/// Parses a GenEval++ prompt file; errors name `origin` and the line.
pub fn parse_items(text: &str, origin: &str) -> Result<Vec<Item>> {
    let mut items: Vec<Item> = parse_jsonl(text, origin)?;
    let lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, _)| i + 1);
    for (item, line) in items.iter_mut().zip(lines) {
        item.line = line;
        if item.include.is_empty() {
            return Err(Error::Line {
                origin: origin.into(),
                line,
                message: "`include` is empty".into(),
            });
        }
    }
    Ok(items)
}

/// The 280 official items.
pub fn official_items() -> Vec<Item> {
    // Shipped with the crate and parsed by a test: a failure here is a build defect, and an
    // empty default would silently score an empty benchmark.
    parse_items(PROMPTS_JSONL, "Geneval++.jsonl").expect("the bundled Geneval++.jsonl parses")
}

/// Parses a judge reply exactly as the official script: strip, drop a leading "```json" and a
/// trailing "```", take the greedy `{...}` span and parse it as JSON. `Err` = a failed attempt.
///
/// ```
/// use echo4o_bench::geneval_pp::{parse_reply, passes};
/// let v = parse_reply("Sure!\n```json\n{\"correct\": 1, \"reason\": \"ok\"}\n```").unwrap();
/// assert!(passes(&v));
/// assert!(parse_reply("no json here").is_err());
/// ```
pub fn parse_reply(text: &str) -> std::result::Result<Map<String, Value>, String> {
    let mut t = text.trim();
    if let Some(rest) = t.strip_prefix("```json") {
        t = rest.trim_start();
    }
    if let Some(rest) = t.strip_suffix("```") {
        t = rest.trim_end();
    }
    let (Some(start), Some(end)) = (t.find('{'), t.rfind('}')) else {
        return Err(format!("no JSON object in the reply: {text:?}"));
    };
    if end < start {
        return Err(format!("no JSON object in the reply: {text:?}"));
    }
    match serde_json::from_str::<Value>(&t[start..=end]) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("not a JSON object: {other}")),
        Err(e) => Err(format!("invalid JSON in the reply ({e}): {text:?}")),
    }
}

/// Python's `result["correct"] == 1`: true for `1`, `1.0` and `true`; false for anything else,
/// a missing key included.
pub fn passes(result: &Map<String, Value>) -> bool {
    match result.get("correct") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() == Some(1.0),
        _ => false,
    }
}

/// The per-item line of `results.jsonl` and of `Output.json`'s `overall_results`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The 1-based line number (also the image name).
    pub id: usize,
    /// The item's tag.
    pub tag: String,
    /// The item's prompt.
    pub prompt: String,
    /// The parsed verdict (`{"correct": .., "reason": ..}`), `{"correct": 0, "reason": "Image
    /// not found"}`, or `{"correct": -1, ...}` after failed attempts.
    pub result: Map<String, Value>,
    /// Judge requests made.
    #[serde(default)]
    pub attempts: u32,
    /// Tokens spent.
    #[serde(default)]
    pub usage: echo4o_core::Usage,
}

impl Record {
    /// Whether the item passed.
    pub fn passed(&self) -> bool {
        passes(&self.result)
    }
}

/// One tag's accuracy.
#[derive(Debug, Clone, PartialEq)]
pub struct TagAccuracy {
    /// The tag.
    pub tag: String,
    /// Items passed.
    pub correct: usize,
    /// Items scored.
    pub total: usize,
    /// `round(correct / total, 4)`.
    pub accuracy: f64,
}

/// GenEval++'s aggregate scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// Per tag, in order of first appearance.
    pub tags: Vec<TagAccuracy>,
    /// The official overall: the mean of tag accuracies, rounded to 4.
    pub mean_of_tags: f64,
    /// The accuracy over all samples, rounded to 4.
    pub all_samples: f64,
}

/// GenEval++ as a [`JudgedBenchmark`].
#[derive(Debug, Clone)]
pub struct GenEvalPp {
    items: Vec<Item>,
}

impl GenEvalPp {
    /// The official 280 items.
    pub fn official() -> Self {
        GenEvalPp {
            items: official_items(),
        }
    }

    /// Another item set in the same format (e.g. a shapes-world variant).
    pub fn with_items(items: Vec<Item>) -> Self {
        GenEvalPp { items }
    }

    /// Per-tag accuracy (rounded to 4, in order of first appearance), the overall mean of tag
    /// accuracies (rounded to 4) and the accuracy over all samples (rounded to 4).
    pub fn aggregate(records: &[Record]) -> Scores {
        let mut tags: Vec<(String, usize, usize)> = Vec::new();
        for r in records {
            let pos = match tags.iter().position(|(t, _, _)| *t == r.tag) {
                Some(p) => p,
                None => {
                    tags.push((r.tag.clone(), 0, 0));
                    tags.len() - 1
                }
            };
            tags[pos].1 += usize::from(r.passed());
            tags[pos].2 += 1;
        }
        let tags: Vec<TagAccuracy> = tags
            .into_iter()
            .map(|(tag, correct, total)| TagAccuracy {
                tag,
                correct,
                total,
                accuracy: py_round(correct as f64 / total as f64, 4),
            })
            .collect();
        let mean_of_tags = if tags.is_empty() {
            0.0
        } else {
            py_round(
                tags.iter().map(|t| t.accuracy).sum::<f64>() / tags.len() as f64,
                4,
            )
        };
        let correct: usize = tags.iter().map(|t| t.correct).sum();
        let all_samples = if records.is_empty() {
            0.0
        } else {
            py_round(correct as f64 / records.len() as f64, 4)
        };
        Scores {
            tags,
            mean_of_tags,
            all_samples,
        }
    }
}

impl JudgedBenchmark for GenEvalPp {
    type Item = Item;
    type Parsed = Map<String, Value>;
    type Record = Record;

    fn name(&self) -> &'static str {
        "geneval++"
    }

    fn items(&self) -> &[Item] {
        &self.items
    }

    fn key(&self, item: &Item) -> String {
        item.line.to_string()
    }

    fn record_key(&self, record: &Record) -> String {
        record.id.to_string()
    }

    fn image_candidates(&self, images: &Path, item: &Item) -> Vec<PathBuf> {
        vec![images.join(format!("{}.jpg", item.line))]
    }

    fn missing(&self, item: &Item) -> Missing<Record> {
        let mut result = Map::new();
        result.insert("correct".into(), json!(0));
        result.insert("reason".into(), json!("Image not found"));
        Missing::Record(Record {
            id: item.line,
            tag: item.tag.clone(),
            prompt: item.prompt.clone(),
            result,
            attempts: 0,
            usage: Default::default(),
        })
    }

    fn request(&self, item: &Item, image_b64_jpeg: &str) -> JudgeRequest {
        JudgeRequest {
            messages: vec![
                ChatMessage::text(Role::System, SYSTEM_PROMPT),
                ChatMessage::parts(
                    Role::User,
                    vec![
                        ContentPart::text(item.user_text()),
                        ContentPart::image_url(format!("data:image/jpeg;base64,{image_b64_jpeg}")),
                    ],
                ),
            ],
            temperature: Some(0.0),
            max_tokens: Some(MAX_TOKENS),
        }
    }

    fn parse(&self, text: &str) -> std::result::Result<Self::Parsed, Unreadable> {
        parse_reply(text).map_err(Unreadable)
    }

    fn record(&self, item: &Item, judged: Judged<Self::Parsed>) -> Record {
        let result = match judged.outcome {
            Ok((parsed, _text)) => parsed,
            Err(error) => {
                let mut m = Map::new();
                m.insert("correct".into(), json!(-1));
                m.insert(
                    "reason".into(),
                    json!(format!(
                        "Failed after {} attempts: {error}",
                        judged.attempts
                    )),
                );
                m
            }
        };
        Record {
            id: item.line,
            tag: item.tag.clone(),
            prompt: item.prompt.clone(),
            result,
            attempts: judged.attempts,
            usage: judged.usage,
        }
    }

    fn write_outputs(&self, records: &[Record], out: &Path) -> Result<Summary> {
        let scores = Self::aggregate(records);
        let (mean, all) = (scores.mean_of_tags, scores.all_samples);
        let tag_accuracy: Map<String, Value> = scores
            .tags
            .iter()
            .map(|t| (t.tag.clone(), json!(t.accuracy)))
            .collect();
        let output = json!({
            "overall_results": records.iter().map(|r| json!({
                "id": r.id, "tag": r.tag, "prompt": r.prompt, "result": r.result,
            })).collect::<Vec<_>>(),
            "tag_accuracy": tag_accuracy,
            "overall_score_mean_of_tags": mean,
            "overall_accuracy_all_samples": all,
        });
        crate::report::write_json(&out.join("Output.json"), &output)?;
        let mut summary = Summary::new(self.name());
        summary.categories = scores
            .tags
            .into_iter()
            .map(|t| Category {
                name: t.tag,
                count: t.total,
                passed: Some(t.correct),
                score: t.accuracy,
            })
            .collect();
        summary.overall = mean;
        summary.overall_label = "mean of tag accuracies".into();
        summary
            .extra
            .insert("overall_accuracy_all_samples".into(), json!(all));
        Ok(summary)
    }

    fn gallery_row(&self, item: &Item, record: &Record, image: Option<PathBuf>) -> GalleryRow {
        GalleryRow {
            id: record.id.to_string(),
            category: record.tag.clone(),
            prompt: item.prompt.clone(),
            expectation: item.checklist(),
            verdict: match record.result.get("correct") {
                Some(v) => format!("correct: {v}"),
                None => "correct: (missing)".into(),
            },
            passed: Some(record.passed()),
            reason: record
                .result
                .get("reason")
                .map(|r| {
                    r.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| r.to_string())
                })
                .unwrap_or_default(),
            image,
        }
    }

    fn verdict(&self, record: &Record) -> echo4o_core::Verdict {
        echo4o_core::Verdict {
            score: if record.passed() { 1.0 } else { 0.0 },
            passed: Some(record.passed()),
            reason: record
                .result
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            details: Value::Object(record.result.clone()),
            usage: record.usage,
        }
    }

    fn spend(&self, record: &Record) -> (u32, echo4o_core::Usage) {
        (record.attempts, record.usage)
    }

    fn failed(&self, record: &Record) -> Option<String> {
        (record.result.get("correct") == Some(&json!(-1))).then(|| {
            record
                .result
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("failed")
                .to_string()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_set_has_280_items_40_per_tag() {
        let items = official_items();
        assert_eq!(items.len(), 280);
        assert_eq!(items[0].line, 1);
        assert_eq!(items[279].line, 280);
        let txt = include_str!("../data/geneval_pp/Geneval++.txt");
        for (item, line) in items.iter().zip(txt.lines()) {
            assert_eq!(item.prompt, line);
        }
        for chunk in items.chunks(40) {
            assert!(chunk.iter().all(|i| i.tag == chunk[0].tag));
        }
    }

    #[test]
    fn checklists_match_the_official_function() {
        let items = official_items();
        let find = |p: &str| items.iter().find(|i| i.prompt == p).unwrap().user_text();
        assert_eq!(
            find("A photo of a brown bus, a green truck, and a red skateboard"),
            "Instruction:\nA photo of a brown bus, a green truck, and a red skateboard\n\n\
             Expectation checklist:\nThis image should contain:\n\
             - brown-colored 1 bus present in the image.\n\
             - green-colored 1 truck present in the image.\n\
             - red-colored 1 skateboard present in the image."
        );
        assert_eq!(
            find("A photo of a larger bench on the above and a smaller spoon on the below"),
            "Instruction:\nA photo of a larger bench on the above and a smaller spoon on the below\n\n\
             Expectation checklist:\nThis image should contain:\n\
             - larger 1 bench located in the above part of the image.\n\
             - smaller 1 spoon located in the below part of the image."
        );
        assert_eq!(
            find("A photo of six clocks"),
            "Instruction:\nA photo of six clocks\n\nExpectation checklist:\n\
             This image should contain:\n- 6 clocks present in the image.\n\
             - No more than 6 clocks should appear."
        );
    }

    #[test]
    fn reply_parsing_follows_the_official_steps() {
        assert!(passes(&parse_reply("{\"correct\": 1}").unwrap()));
        assert!(passes(
            &parse_reply("```json\n{\"correct\": 1.0}\n```").unwrap()
        ));
        assert!(passes(&parse_reply("{\"correct\": true}").unwrap()));
        assert!(!passes(&parse_reply("{\"correct\": \"1\"}").unwrap()));
        assert!(!passes(&parse_reply("{\"reason\": \"x\"}").unwrap()));
        // Greedy: from the first { to the last }.
        let v = parse_reply("a {\"correct\": 0, \"reason\": \"{nested}\"} b").unwrap();
        assert_eq!(v["reason"], "{nested}");
        assert!(parse_reply("{\"correct\": 1} and {\"correct\": 0}").is_err());
        assert!(parse_reply("} {").is_err());
        assert!(parse_reply("").is_err());
    }

    #[test]
    fn aggregation_is_the_mean_of_rounded_tag_accuracies() {
        let rec = |tag: &str, ok: bool| Record {
            id: 0,
            tag: tag.into(),
            prompt: String::new(),
            result: parse_reply(if ok {
                "{\"correct\":1}"
            } else {
                "{\"correct\":0}"
            })
            .unwrap(),
            attempts: 1,
            usage: Default::default(),
        };
        // a: 2/3 = 0.6667, b: 1/1 = 1.0 -> mean 0.83335 -> 0.8334 (0.83335 is below the tie).
        let records = vec![
            rec("a", true),
            rec("a", true),
            rec("a", false),
            rec("b", true),
        ];
        let s = GenEvalPp::aggregate(&records);
        let tag = |t: &TagAccuracy| (t.tag.clone(), t.correct, t.total, t.accuracy);
        assert_eq!(tag(&s.tags[0]), ("a".into(), 2, 3, 0.6667));
        assert_eq!(tag(&s.tags[1]), ("b".into(), 1, 1, 1.0));
        assert_eq!(s.mean_of_tags, py_round((0.6667 + 1.0) / 2.0, 4));
        assert_eq!(s.all_samples, 0.75);
    }

    proptest::proptest! {
        #[test]
        fn reply_parsing_never_panics(s in "\\PC*") {
            let _ = parse_reply(&s);
        }
    }
}
