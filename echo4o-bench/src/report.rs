//! Run reports: `summary.json`, `report.md` and a self-contained `report.html` gallery.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use echo4o_core::Usage;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// One category's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Category {
    /// The tag or merged category.
    pub name: String,
    /// Items scored in it.
    pub count: usize,
    /// Items passed, for pass/fail benchmarks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<usize>,
    /// Accuracy or mean score, rounded as the official script rounds it.
    pub score: f64,
}

/// The machine-readable summary of a run (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// `geneval++`, `imagine-bench`, `geneval`.
    pub benchmark: String,
    /// The judge model (empty for local scorers).
    pub judge_model: String,
    /// The image folder evaluated.
    pub images: String,
    /// The overall score.
    pub overall: f64,
    /// How the overall is computed.
    pub overall_label: String,
    /// Per-category scores, in the official order.
    pub categories: Vec<Category>,
    /// Items in the benchmark.
    pub items: usize,
    /// Items scored (missing images that score 0 included).
    pub scored: usize,
    /// Items left out (missing images, for benchmarks that skip them).
    pub skipped: usize,
    /// Items finished by an earlier, interrupted run and reused.
    pub resumed: usize,
    /// Items with no image.
    pub missing_images: Vec<String>,
    /// Items whose every judge attempt failed: (id, last error).
    pub failures: Vec<(String, String)>,
    /// Judge requests made.
    pub requests: u64,
    /// Tokens spent, summed over the replies.
    pub usage: Usage,
    /// Wall time of this invocation, in seconds.
    pub elapsed_s: f64,
    /// Benchmark-specific figures.
    pub extra: Map<String, Value>,
}

impl Summary {
    /// An empty summary for `benchmark`.
    pub fn new(benchmark: &str) -> Self {
        Summary {
            benchmark: benchmark.into(),
            judge_model: String::new(),
            images: String::new(),
            overall: 0.0,
            overall_label: String::new(),
            categories: Vec::new(),
            items: 0,
            scored: 0,
            skipped: 0,
            resumed: 0,
            missing_images: Vec::new(),
            failures: Vec::new(),
            requests: 0,
            usage: Usage::default(),
            elapsed_s: 0.0,
            extra: Map::new(),
        }
    }

    /// The Markdown report.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# {} results\n", self.benchmark);
        let _ = writeln!(
            md,
            "- images: `{}`\n- judge: `{}`\n- overall: **{}** ({})\n- items: {} scored of {} ({} skipped, {} missing images, {} failed after all attempts)\n- judge requests: {}; tokens: {} prompt + {} completion\n",
            self.images,
            if self.judge_model.is_empty() {
                "-"
            } else {
                &self.judge_model
            },
            self.overall,
            self.overall_label,
            self.scored,
            self.items,
            self.skipped,
            self.missing_images.len(),
            self.failures.len(),
            self.requests,
            self.usage.prompt_tokens,
            self.usage.completion_tokens,
        );
        let _ = writeln!(
            md,
            "| category | items | passed | score |\n|---|---:|---:|---:|"
        );
        for c in &self.categories {
            let passed = c
                .passed
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                c.name, c.count, passed, c.score
            );
        }
        let _ = writeln!(
            md,
            "| **overall** | {} | | **{}** |",
            self.scored, self.overall
        );
        for (k, v) in &self.extra {
            let _ = writeln!(md, "\n- {k}: {v}");
        }
        if !self.failures.is_empty() {
            let _ = writeln!(md, "\n## Failed items\n");
            for (id, err) in &self.failures {
                let _ = writeln!(md, "- `{id}`: {}", err.replace('\n', " "));
            }
        }
        if !self.missing_images.is_empty() {
            let _ = writeln!(
                md,
                "\n## Missing images\n\n{}",
                self.missing_images.join(", ")
            );
        }
        md
    }
}

/// One item of the HTML gallery.
#[derive(Debug, Clone, PartialEq)]
pub struct GalleryRow {
    /// The item id.
    pub id: String,
    /// Its category.
    pub category: String,
    /// The prompt.
    pub prompt: String,
    /// The checklist or note the judge read.
    pub expectation: String,
    /// The verdict in a few words.
    pub verdict: String,
    /// Pass/fail, when the benchmark has it.
    pub passed: Option<bool>,
    /// The judge's reason.
    pub reason: String,
    /// The image, when there is one.
    pub image: Option<PathBuf>,
}

/// Writes pretty JSON atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
    echo4o_core::fs::write_atomic(path, text.as_bytes())?;
    Ok(())
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A small inline JPEG of the image, so the page opens offline and travels as one file.
fn thumbnail(path: &Path) -> Option<String> {
    let img = echo4o_core::load_image(path).ok()?;
    let thumb = image::imageops::thumbnail(&img, 192.min(img.width()), {
        let h = (192.0 * img.height() as f64 / img.width().max(1) as f64).round() as u32;
        h.clamp(1, 384)
    });
    let bytes = echo4o_core::encode_jpeg(&thumb, 80).ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The HTML gallery: a table of scores, then one card per item.
pub fn to_html(summary: &Summary, rows: &[GalleryRow]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{0} results</title><style>\
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}td:first-child{{text-align:left}}\
.grid{{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:14px;margin-top:2em}}\
.card{{border:1px solid #ddd;border-radius:6px;padding:10px;font-size:13px}}\
.card img{{max-width:192px;float:left;margin:0 10px 6px 0}}.pass{{border-left:6px solid #2a2}}\
.fail{{border-left:6px solid #c22}}pre{{white-space:pre-wrap;font-size:12px;clear:both;background:#f6f6f6;padding:6px}}\
.noimg{{width:192px;height:120px;float:left;margin:0 10px 6px 0;background:#eee;display:flex;align-items:center;justify-content:center}}\
</style></head><body><h1>{0}</h1><p>images <code>{1}</code> · judge <code>{2}</code> · overall <b>{3}</b> ({4})</p>",
        escape(&summary.benchmark),
        escape(&summary.images),
        escape(&summary.judge_model),
        summary.overall,
        escape(&summary.overall_label),
    );
    let _ = write!(
        h,
        "<table><tr><th>category</th><th>items</th><th>passed</th><th>score</th></tr>"
    );
    for c in &summary.categories {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&c.name),
            c.count,
            c.passed.map(|p| p.to_string()).unwrap_or_default(),
            c.score
        );
    }
    let _ = write!(h, "</table><div class=\"grid\">");
    for r in rows {
        let class = match r.passed {
            Some(true) => "card pass",
            Some(false) => "card fail",
            None => "card",
        };
        let img = match r.image.as_deref().and_then(thumbnail) {
            Some(b64) => format!(
                "<img alt=\"item {}\" src=\"data:image/jpeg;base64,{b64}\">",
                escape(&r.id)
            ),
            None => "<div class=\"noimg\">no image</div>".into(),
        };
        let _ = write!(
            h,
            "<div class=\"{class}\">{img}<b>#{}</b> <i>{}</i><br>{}<br><b>{}</b><pre>{}</pre><pre>{}</pre></div>",
            escape(&r.id),
            escape(&r.category),
            escape(&r.prompt),
            escape(&r.verdict),
            escape(&r.expectation),
            escape(&r.reason),
        );
    }
    let _ = writeln!(h, "</div></body></html>");
    h
}

/// Writes `summary.json`, `report.md` and `report.html` into `out`.
pub fn write_reports(summary: &Summary, rows: &[GalleryRow], out: &Path) -> Result<()> {
    write_json(&out.join("summary.json"), summary)?;
    echo4o_core::fs::write_atomic(&out.join("report.md"), summary.to_markdown().as_bytes())?;
    echo4o_core::fs::write_atomic(&out.join("report.html"), to_html(summary, rows).as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_and_embeds_thumbnails() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("1.jpg");
        echo4o_core::save_image(&image::RgbImage::new(640, 480), &img).unwrap();
        let mut s = Summary::new("geneval++");
        s.categories.push(Category {
            name: "<b>".into(),
            count: 1,
            passed: Some(1),
            score: 1.0,
        });
        let rows = vec![GalleryRow {
            id: "1".into(),
            category: "counting".into(),
            prompt: "A photo of <script>".into(),
            expectation: "x".into(),
            verdict: "correct: 1".into(),
            passed: Some(true),
            reason: "fine & dandy".into(),
            image: Some(img),
        }];
        let html = to_html(&s, &rows);
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
        assert!(html.contains("fine &amp; dandy"));
        assert!(html.contains("data:image/jpeg;base64,/9j/"));
        assert!(s.to_markdown().contains("| <b> | 1 | 1 | 1 |"));
    }
}
