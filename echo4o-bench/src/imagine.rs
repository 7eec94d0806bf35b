//! Imagine-Bench: 270 fantasy prompts, each image scored 0-10 on fantasy fulfillment, identity
//! preservation and aesthetic quality, exactly as the official
//! `test_scripts/Eval-gpt-4.1-Imagine.py` of Echo-4o does it.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use echo4o_core::{ChatMessage, ContentPart, JudgeRequest, Role};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::report::{Category, GalleryRow, Summary};
use crate::runner::{Judged, JudgedBenchmark, Missing, Unreadable};
use crate::text::{fill, parse_jsonl, py_round};
use crate::{Error, Result};

/// The official prompt set (`Imagine.jsonl`, 270 records), bundled.
pub const PROMPTS_JSONL: &str = include_str!("../data/imagine_bench/Imagine.jsonl");
/// The official system prompt, byte for byte.
pub const SYSTEM_PROMPT: &str = include_str!("../data/imagine_bench/judge_system_prompt.txt");
/// The official user text; `{instruction}` and `{note}` are substituted (trailing double spaces
/// kept).
pub const USER_TEMPLATE: &str = include_str!("../data/imagine_bench/judge_user_template.txt");
/// The judge model `Eval.md` uses.
pub const DEFAULT_MODEL: &str = "gpt-4.1-2025-04-14";
/// The official `max_tokens`.
pub const MAX_TOKENS: u32 = 1024;
/// The extensions tried for `{id}.{ext}`, in the official order.
pub const EXTENSIONS: [&str; 4] = echo4o_core::vocab::IMAGE_EXTENSIONS;

/// One Imagine-Bench item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// 1..270; the image is `{id}.{ext}`.
    pub id: u64,
    /// The generation prompt.
    pub instruction: String,
    /// The checklist/explanation the judge reads.
    pub note: String,
    /// The raw type (`COLOR`, `SHAPE`, ..., `Multi-Object`).
    #[serde(rename = "type")]
    pub kind: String,
}

impl Item {
    /// The merged category used for scoring.
    pub fn category(&self) -> &str {
        merged_category(&self.kind)
    }

    /// The user text sent to the judge.
    pub fn user_text(&self) -> String {
        fill(
            USER_TEMPLATE,
            &[("instruction", &self.instruction), ("note", &self.note)],
        )
    }
}

/// The official `type_map`: COLOR/SHAPE/SIZE -> Attribute shift, MATERIAL/COMBINATION ->
/// Hybridization, TIME/ENVIRONMENT -> Spatiotemporal; anything else keeps its name.
pub fn merged_category(kind: &str) -> &str {
    match kind {
        "COLOR" | "SHAPE" | "SIZE" => "Attribute shift",
        "MATERIAL" | "COMBINATION" => "Hybridization",
        "TIME" | "ENVIRONMENT" => "Spatiotemporal",
        other => other,
    }
}

/// Parses an Imagine-Bench prompt file; errors name `origin` and the line, and duplicate ids are
/// rejected (they would share an image).
pub fn parse_items(text: &str, origin: &str) -> Result<Vec<Item>> {
    let items: Vec<Item> = parse_jsonl(text, origin)?;
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        if !seen.insert(item.id) {
            return Err(Error::invalid(
                format!("{origin} record {}", i + 1),
                format!("duplicate id {}", item.id),
            ));
        }
    }
    Ok(items)
}

/// The 270 official items.
pub fn official_items() -> Vec<Item> {
    // Shipped with the crate and parsed by a test: never an empty default.
    parse_items(PROMPTS_JSONL, "Imagine.jsonl").expect("the bundled Imagine.jsonl parses")
}

/// The three judge scores; -1 where the reply had none (the official default).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Fantasy Fulfillment.
    pub fantasy_fulfillment: f64,
    /// Identity Preservation.
    pub identity_preservation: f64,
    /// Aesthetic Quality.
    pub aesthetic_quality: f64,
}

static SCORE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(Fantasy Fulfillment|Identity Preservation|Aesthetic Quality)\s*[:：]?\s*(\d{1,2})",
    )
    .unwrap_or_else(|e| unreachable!("the score regex is valid: {e}"))
});

/// The value of a `\d{1,2}` match. Python's `float()` reads any Unicode decimal digit; ASCII and
/// full-width digits (the ones a judge that writes a full-width colon might use) are read here.
fn digits_value(s: &str) -> Option<f64> {
    s.chars()
        .map(|c| match c {
            '0'..='9' => Some(c as u32 - '0' as u32),
            '\u{FF10}'..='\u{FF19}' => Some(c as u32 - 0xFF10),
            _ => None,
        })
        .try_fold(0u32, |acc, d| Some(acc * 10 + d?))
        .map(f64::from)
}

/// Extracts the three scores with the official regex semantics: optional (full-width) colon, the
/// last match per field wins, values clamped to [0, 10], -1 when a field is absent.
///
/// ```
/// use echo4o_bench::imagine::extract_scores;
/// let s = extract_scores("Fantasy Fulfillment: 8\nIdentity Preservation：12\nAesthetic Quality 7");
/// assert_eq!((s.fantasy_fulfillment, s.identity_preservation, s.aesthetic_quality), (8.0, 10.0, 7.0));
/// assert_eq!(extract_scores("nothing").aesthetic_quality, -1.0);
/// ```
pub fn extract_scores(text: &str) -> Scores {
    let mut scores = Scores {
        fantasy_fulfillment: -1.0,
        identity_preservation: -1.0,
        aesthetic_quality: -1.0,
    };
    for cap in SCORE_RE.captures_iter(text) {
        let Some(value) = digits_value(&cap[2]) else {
            continue;
        };
        let value = value.clamp(0.0, 10.0);
        match &cap[1] {
            "Fantasy Fulfillment" => scores.fantasy_fulfillment = value,
            "Identity Preservation" => scores.identity_preservation = value,
            _ => scores.aesthetic_quality = value,
        }
    }
    scores
}

/// How per-image and overall scores are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scoring {
    /// The official formula `min(FF, IP) * 0.8 + AQ * 0.2`, merged categories weighted
    /// 3/2/2/2 with Multi-Object included (what `Eval.md`'s published example shows).
    #[default]
    Official,
    /// The shipped script as it runs: its weights key `TWO_OBJECT` never matches
    /// `Multi-Object`, so Multi-Object is scored but left out of the overall (3/2/2).
    StrictOfficial,
    /// ULMEvalKit's port: `0.6 FF + 0.3 IP + 0.1 AQ` with missing fields as 0, raw types as
    /// categories, overall = plain mean over images.
    UlmEvalKit,
}

impl Scoring {
    /// The per-image weighted score, rounded to 3 decimals.
    pub fn weighted(self, s: &Scores) -> f64 {
        match self {
            Scoring::Official | Scoring::StrictOfficial => py_round(
                s.fantasy_fulfillment.min(s.identity_preservation) * 0.8
                    + s.aesthetic_quality * 0.2,
                3,
            ),
            Scoring::UlmEvalKit => {
                let z = |v: f64| if v < 0.0 { 0.0 } else { v };
                py_round(
                    0.6 * z(s.fantasy_fulfillment)
                        + 0.3 * z(s.identity_preservation)
                        + 0.1 * z(s.aesthetic_quality),
                    3,
                )
            }
        }
    }

    /// The overall weight of a merged category (`None`: not part of the overall).
    fn weight(self, category: &str) -> Option<f64> {
        match (self, category) {
            (_, "Attribute shift") => Some(3.0),
            (_, "Hybridization" | "Spatiotemporal") => Some(2.0),
            (Scoring::Official, "Multi-Object" | "TWO_OBJECT") => Some(2.0),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scoring::Official => {
                "official (min(FF,IP)*0.8+AQ*0.2; weights 3/2/2/2 incl. Multi-Object)"
            }
            Scoring::StrictOfficial => {
                "strict-official (as shipped: Multi-Object excluded from the overall, weights 3/2/2)"
            }
            Scoring::UlmEvalKit => "ulmevalkit (0.6FF+0.3IP+0.1AQ; plain mean over images)",
        }
    }
}

/// The per-item line of `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The item id.
    pub id: u64,
    /// The merged category.
    #[serde(rename = "type")]
    pub category: String,
    /// The raw type.
    pub raw_type: String,
    /// The image judged.
    pub image_path: String,
    /// The judge's full reply (or the error after the last failed attempt).
    pub evaluation: String,
    /// The extracted scores (all -1 after failed attempts).
    pub scores: Scores,
    /// Whether the judge answered at all (false: every attempt failed; the score is 0).
    pub answered: bool,
    /// Judge requests made.
    pub attempts: u32,
    /// Tokens spent.
    #[serde(default)]
    pub usage: echo4o_core::Usage,
}

/// Imagine-Bench as a [`JudgedBenchmark`].
#[derive(Debug, Clone)]
pub struct ImagineBench {
    items: Vec<Item>,
    scoring: Scoring,
    png_label: bool,
}

impl ImagineBench {
    /// The official 270 items, official scoring.
    pub fn official() -> Self {
        Self::with_items(official_items())
    }

    /// Another item set in the same format.
    pub fn with_items(items: Vec<Item>) -> Self {
        ImagineBench {
            items,
            scoring: Scoring::Official,
            png_label: true,
        }
    }

    /// Sets the scoring. By default [`Scoring::Official`].
    pub fn with_scoring(mut self, scoring: Scoring) -> Self {
        self.scoring = scoring;
        self
    }

    /// Whether the data URL says `image/png` over the JPEG bytes, as the official script does.
    /// By default true; false labels it `image/jpeg`.
    pub fn with_png_label(mut self, png_label: bool) -> Self {
        self.png_label = png_label;
        self
    }

    /// The score of one record under this scoring (0 when the judge never answered).
    pub fn score(&self, record: &Record) -> f64 {
        if record.answered {
            self.scoring.weighted(&record.scores)
        } else {
            0.0
        }
    }

    /// Per-category (count, mean score rounded to 3) in order of first appearance, and the
    /// overall rounded to 3.
    pub fn aggregate(&self, records: &[Record]) -> (Vec<(String, usize, f64)>, f64) {
        let category = |r: &Record| match self.scoring {
            Scoring::UlmEvalKit => r.raw_type.clone(),
            _ => r.category.clone(),
        };
        let mut cats: Vec<(String, usize, f64)> = Vec::new();
        for r in records {
            let name = category(r);
            let pos = match cats.iter().position(|c| c.0 == name) {
                Some(p) => p,
                None => {
                    cats.push((name, 0, 0.0));
                    cats.len() - 1
                }
            };
            cats[pos].1 += 1;
            cats[pos].2 += self.score(r);
        }
        let means: Vec<(String, usize, f64)> = cats
            .into_iter()
            .map(|(n, c, sum)| (n, c, sum / c as f64))
            .collect();
        let overall = match self.scoring {
            Scoring::UlmEvalKit => {
                let total: f64 = records.iter().map(|r| self.score(r)).sum();
                if records.is_empty() {
                    0.0
                } else {
                    total / records.len() as f64
                }
            }
            _ => {
                let (num, den) =
                    means.iter().fold((0.0, 0.0), |(num, den), (n, _, avg)| {
                        match self.scoring.weight(n) {
                            Some(w) => (num + w * avg, den + w),
                            None => (num, den),
                        }
                    });
                if den > 0.0 { num / den } else { 0.0 }
            }
        };
        let rounded = means
            .into_iter()
            .map(|(n, c, avg)| (n, c, py_round(avg, 3)))
            .collect();
        (rounded, py_round(overall, 3))
    }
}

impl JudgedBenchmark for ImagineBench {
    type Item = Item;
    type Parsed = Scores;
    type Record = Record;

    fn name(&self) -> &'static str {
        "imagine-bench"
    }

    fn items(&self) -> &[Item] {
        &self.items
    }

    fn key(&self, item: &Item) -> String {
        item.id.to_string()
    }

    fn record_key(&self, record: &Record) -> String {
        record.id.to_string()
    }

    fn image_candidates(&self, images: &Path, item: &Item) -> Vec<PathBuf> {
        // Lower case first (the official names), then upper case (`.JPG` from cameras and
        // some Windows tools), which a case-sensitive file system would otherwise miss.
        EXTENSIONS
            .iter()
            .map(|ext| images.join(format!("{}.{ext}", item.id)))
            .chain(
                EXTENSIONS
                    .iter()
                    .map(|ext| images.join(format!("{}.{}", item.id, ext.to_uppercase()))),
            )
            .collect()
    }

    fn missing(&self, _item: &Item) -> Missing<Record> {
        Missing::Skip
    }

    fn request(&self, item: &Item, image_b64_jpeg: &str) -> JudgeRequest {
        let mime = if self.png_label {
            "image/png"
        } else {
            "image/jpeg"
        };
        JudgeRequest {
            messages: vec![
                ChatMessage::parts(Role::System, vec![ContentPart::text(SYSTEM_PROMPT)]),
                ChatMessage::parts(
                    Role::User,
                    vec![
                        ContentPart::text(item.user_text()),
                        ContentPart::image_url(format!("data:{mime};base64,{image_b64_jpeg}")),
                    ],
                ),
            ],
            temperature: Some(0.0),
            max_tokens: Some(MAX_TOKENS),
        }
    }

    /// Any reply is accepted (missing fields score -1, as officially); only failed requests are
    /// retried.
    fn parse(&self, text: &str) -> std::result::Result<Scores, Unreadable> {
        Ok(extract_scores(text))
    }

    fn attempt_delay(&self) -> std::time::Duration {
        std::time::Duration::from_secs(2)
    }

    fn record(&self, item: &Item, judged: Judged<Scores>) -> Record {
        let (evaluation, scores, answered) = match judged.outcome {
            Ok((scores, text)) => (text, scores, true),
            Err(error) => (
                error,
                Scores {
                    fantasy_fulfillment: -1.0,
                    identity_preservation: -1.0,
                    aesthetic_quality: -1.0,
                },
                false,
            ),
        };
        Record {
            id: item.id,
            category: item.category().to_string(),
            raw_type: item.kind.clone(),
            image_path: judged.image.display().to_string(),
            evaluation,
            scores,
            answered,
            attempts: judged.attempts,
            usage: judged.usage,
        }
    }

    fn write_outputs(&self, records: &[Record], out: &Path) -> Result<Summary> {
        let full: Vec<Value> = records
            .iter()
            .map(|r| {
                let item = self.items.iter().find(|i| i.id == r.id);
                json!({
                    "id": r.id,
                    "instruction": item.map(|i| i.instruction.as_str()).unwrap_or_default(),
                    "note": item.map(|i| i.note.as_str()).unwrap_or_default(),
                    "type": r.category,
                    "image_path": r.image_path,
                    "evaluation": r.evaluation,
                })
            })
            .collect();
        crate::report::write_json(&out.join("full.json"), &Value::Array(full))?;
        let mut lines = String::new();
        for r in records {
            let line = json!({
                "id": r.id,
                "type": r.category,
                "Weighted Score": self.score(r),
                "evaluation_text": r.evaluation,
            });
            lines.push_str(&line.to_string());
            lines.push('\n');
        }
        echo4o_core::fs::write_atomic(&out.join("scores.jsonl"), lines.as_bytes())?;

        let (cats, overall) = self.aggregate(records);
        let mut summary = Summary::new(self.name());
        summary.categories = cats
            .into_iter()
            .map(|(name, count, score)| Category {
                name,
                count,
                passed: None,
                score,
            })
            .collect();
        summary.overall = overall;
        summary.overall_label = self.scoring.name().into();
        Ok(summary)
    }

    fn gallery_row(&self, item: &Item, record: &Record, image: Option<PathBuf>) -> GalleryRow {
        let s = &record.scores;
        GalleryRow {
            id: record.id.to_string(),
            category: record.category.clone(),
            prompt: item.instruction.clone(),
            expectation: item.note.clone(),
            verdict: format!(
                "{:.3} (FF {}, IP {}, AQ {})",
                self.score(record),
                s.fantasy_fulfillment,
                s.identity_preservation,
                s.aesthetic_quality
            ),
            passed: None,
            reason: record.evaluation.clone(),
            image,
        }
    }

    fn verdict(&self, record: &Record) -> echo4o_core::Verdict {
        echo4o_core::Verdict {
            score: self.score(record),
            passed: None,
            reason: record.evaluation.clone(),
            details: serde_json::to_value(record.scores).unwrap_or_default(),
            usage: record.usage,
        }
    }

    fn spend(&self, record: &Record) -> (u32, echo4o_core::Usage) {
        (record.attempts, record.usage)
    }

    fn failed(&self, record: &Record) -> Option<String> {
        (!record.answered).then(|| record.evaluation.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_set_has_270_items_in_four_merged_categories() {
        let items = official_items();
        assert_eq!(items.len(), 270);
        let count = |c: &str| items.iter().filter(|i| i.category() == c).count();
        assert_eq!(count("Attribute shift"), 90);
        assert_eq!(count("Hybridization"), 60);
        assert_eq!(count("Spatiotemporal"), 60);
        assert_eq!(count("Multi-Object"), 60);
        let txt = include_str!("../data/imagine_bench/Imagine.txt");
        for (item, line) in items.iter().zip(txt.lines()) {
            assert_eq!(item.instruction, line.trim_end());
        }
    }

    #[test]
    fn user_text_keeps_the_template_bytes() {
        let item = &official_items()[0];
        let text = item.user_text();
        assert!(text.starts_with("Please evaluate strictly and return ONLY the three scores"));
        assert!(text.contains(&format!("PROMPT: \"{}\"  \n", item.instruction)));
        assert!(text.contains(&format!("EXPLANATION: \"{}\"  \n", item.note)));
        assert!(text.contains("**Fantasy Fulfillment (0–10):**  \n"));
        assert_eq!(
            text.len(),
            USER_TEMPLATE.len() - "{instruction}{note}".len()
                + item.instruction.len()
                + item.note.len()
        );
    }

    #[test]
    fn extraction_last_match_wins_and_clamps() {
        let s = extract_scores(
            "Fantasy Fulfillment: 3\nReason: x\nFantasy Fulfillment: 9\nIdentity Preservation:99\n",
        );
        assert_eq!(s.fantasy_fulfillment, 9.0);
        assert_eq!(s.identity_preservation, 10.0); // \d{1,2} takes "99", clamped
        assert_eq!(s.aesthetic_quality, -1.0);
        assert_eq!(
            extract_scores("Aesthetic Quality：７").aesthetic_quality,
            7.0
        );
        assert_eq!(
            extract_scores("Aesthetic Quality - 7").aesthetic_quality,
            -1.0
        );
    }

    #[test]
    fn weighted_scores_and_the_published_overall() {
        let s = Scores {
            fantasy_fulfillment: 7.0,
            identity_preservation: 9.0,
            aesthetic_quality: 8.0,
        };
        assert_eq!(Scoring::Official.weighted(&s), 7.2);
        assert_eq!(Scoring::UlmEvalKit.weighted(&s), 7.7);
        let missing = Scores {
            fantasy_fulfillment: -1.0,
            identity_preservation: 9.0,
            aesthetic_quality: 8.0,
        };
        assert_eq!(Scoring::Official.weighted(&missing), 0.8);
        assert_eq!(Scoring::UlmEvalKit.weighted(&missing), 3.5);

        // Eval.md's example: 8.821 / 9.339 / 8.377 / 7.813 -> 8.613 with Multi-Object weighted 2.
        let bench = ImagineBench::with_items(vec![]);
        let rec = |cat: &str, score: f64| Record {
            id: 0,
            category: cat.into(),
            raw_type: cat.into(),
            image_path: String::new(),
            evaluation: String::new(),
            scores: Scores {
                fantasy_fulfillment: score,
                identity_preservation: score,
                aesthetic_quality: score,
            },
            answered: true,
            attempts: 1,
            usage: Default::default(),
        };
        let records: Vec<Record> = [
            ("Attribute shift", 8.821),
            ("Hybridization", 9.339),
            ("Spatiotemporal", 8.377),
            ("Multi-Object", 7.813),
        ]
        .iter()
        .map(|(c, s)| rec(c, *s))
        .collect();
        assert_eq!(bench.aggregate(&records).1, 8.613);
        let strict = bench.clone().with_scoring(Scoring::StrictOfficial);
        assert_eq!(
            strict.aggregate(&records).1,
            py_round((3.0 * 8.821 + 2.0 * 9.339 + 2.0 * 8.377) / 7.0, 3)
        );
    }

    proptest::proptest! {
        #[test]
        fn extracted_scores_are_in_range_or_minus_one(s in "\\PC*") {
            let sc = extract_scores(&s);
            for v in [sc.fantasy_fulfillment, sc.identity_preservation, sc.aesthetic_quality] {
                proptest::prop_assert!(v == -1.0 || (0.0..=10.0).contains(&v));
            }
        }
    }
}
