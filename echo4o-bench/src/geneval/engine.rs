//! The official GenEval rule engine (`evaluation/evaluate_images.py`), over pluggable perception.

use std::collections::HashMap;

use image::RgbImage;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::Metadata;
use super::geometry::{BBox, iou, relative_position};
use super::perception::{COLORS, ColorClassifier, Detection, Detector};
use crate::Result;
use crate::text::py_json_dumps;

/// The official constants (`--options k=v` in the script).
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Detection score threshold. By default 0.3.
    pub threshold: f64,
    /// Threshold for the counting task. By default 0.9.
    pub counting_threshold: f64,
    /// Objects kept per class. By default 16.
    pub max_objects: usize,
    /// NMS IoU threshold; 1.0 disables NMS. By default 1.0.
    pub max_overlap: f64,
    /// Position rule threshold. By default 0.1.
    pub position_threshold: f64,
    /// Background of color crops; `None` keeps the original pixels. By default `#999`.
    pub bgcolor: Option<[u8; 3]>,
    /// Cut color crops to the box. By default true.
    pub crop: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            threshold: 0.3,
            counting_threshold: 0.9,
            max_objects: 16,
            max_overlap: 1.0,
            position_threshold: 0.1,
            bgcolor: Some([0x99; 3]),
            crop: true,
        }
    }
}

/// One line of the official `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageResult {
    /// The image file.
    pub filename: String,
    /// The task.
    pub tag: String,
    /// The prompt.
    pub prompt: String,
    /// Whether every rule held.
    pub correct: bool,
    /// Why not, one line per broken rule.
    pub reason: String,
    /// The metadata, as Python's `json.dumps` writes it.
    pub metadata: String,
    /// The kept boxes per class (`[x1, y1, x2, y2, score]`), as `json.dumps` writes them.
    pub details: String,
}

/// The kept detections per class, in the official order (confidence descending).
fn select(
    detections: Vec<Detection>,
    threshold: f64,
    config: &EngineConfig,
) -> HashMap<String, Vec<Detection>> {
    let mut by_class: HashMap<String, Vec<Detection>> = HashMap::new();
    for d in detections {
        by_class.entry(d.class.clone()).or_default().push(d);
    }
    let mut kept = HashMap::new();
    for (class, mut dets) in by_class {
        // Stable sort, then reverse, as numpy's argsort(...)[::-1] orders equal scores.
        dets.sort_by(|a, b| a.score.total_cmp(&b.score));
        dets.reverse();
        let mut ordering: Vec<Detection> = dets
            .into_iter()
            .filter(|d| d.score > threshold)
            .take(config.max_objects)
            .collect();
        let mut out = Vec::new();
        while !ordering.is_empty() {
            let best = ordering.remove(0);
            if config.max_overlap < 1.0 {
                ordering.retain(|d| iou(&best.bbox, &d.bbox) < config.max_overlap);
            }
            out.push(best);
        }
        if !out.is_empty() {
            kept.insert(class, out);
        }
    }
    kept
}

/// Python's `round()` of a crop coordinate (ties to even), as PIL's `crop` applies it.
fn round_half_even(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// The official crop: composite over the background through the mask, then `Image.crop(box)`
/// (rounded coordinates; pixels outside the image are black, as PIL fills them).
fn crop(image: &RgbImage, det: &Detection, config: &EngineConfig) -> RgbImage {
    let (w, h) = image.dimensions();
    let composited;
    let source = match (&det.mask, config.bgcolor) {
        (Some(mask), Some(bg)) if mask.dimensions() == (w, h) => {
            composited = RgbImage::from_fn(w, h, |x, y| {
                if mask.get_pixel(x, y).0[0] != 0 {
                    *image.get_pixel(x, y)
                } else {
                    image::Rgb(bg)
                }
            });
            &composited
        }
        _ => image,
    };
    if !config.crop {
        return source.clone();
    }
    let b = &det.bbox;
    let (x0, y0) = (round_half_even(b.x1), round_half_even(b.y1));
    let (x1, y1) = (round_half_even(b.x2), round_half_even(b.y2));
    let cw = (x1 - x0).max(0) as u32;
    let ch = (y1 - y0).max(0) as u32;
    RgbImage::from_fn(cw, ch, |x, y| {
        let (sx, sy) = (x0 + i64::from(x), y0 + i64::from(y));
        if sx >= 0 && sy >= 0 && (sx as u32) < w && (sy as u32) < h {
            *source.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

/// GenEval++'s region rule: the box centre lies in the `left`, `right`, `above` or `below` half of
/// an image of `size`; any other name holds nowhere.
pub(crate) fn in_region(region: &str, bbox: &BBox, size: (u32, u32)) -> bool {
    let (x, y) = bbox.center();
    let (w, h) = (f64::from(size.0), f64::from(size.1));
    match region {
        "left" => x < w / 2.0,
        "right" => x > w / 2.0,
        "above" => y < h / 2.0,
        "below" => y > h / 2.0,
        _ => false,
    }
}

/// The official `evaluate`: include clauses (AND) with color and position checks, then exclude
/// clauses (OR). Returns (correct, reason).
fn evaluate(
    image: &RgbImage,
    objects: &HashMap<String, Vec<Detection>>,
    metadata: &Metadata,
    classifier: &dyn ColorClassifier,
    config: &EngineConfig,
) -> Result<(bool, String)> {
    let mut correct = true;
    let mut reason = Vec::new();
    let mut matched_groups: Vec<Option<Vec<&Detection>>> = Vec::new();
    for req in &metadata.include {
        let class = &req.class;
        let mut matched = true;
        let found: Vec<&Detection> = objects
            .get(class)
            .map(|v| v.iter().take(req.count as usize).collect())
            .unwrap_or_default();
        if found.len() < req.count as usize {
            correct = false;
            matched = false;
            reason.push(format!(
                "expected {class}>={}, found {}",
                req.count,
                found.len()
            ));
        } else {
            if let Some(color) = &req.color {
                let crops: Vec<RgbImage> = found.iter().map(|d| crop(image, d, config)).collect();
                let colors = classifier.classify(&crops, class)?;
                let count = |c: &str| colors.iter().filter(|x| *x == c).count();
                if count(color) < req.count as usize {
                    correct = false;
                    matched = false;
                    let seen: Vec<String> = COLORS
                        .iter()
                        .filter(|c| colors.iter().any(|x| x == *c))
                        .map(|c| format!("{} {c}", count(c)))
                        .collect();
                    reason.push(format!(
                        "expected {color} {class}>={}, found {} {color}; and {}",
                        req.count,
                        count(color),
                        seen.join(", ")
                    ));
                }
            }
            if let (Some((relation, target)), true) = (req.position, matched) {
                match matched_groups.get(target).and_then(|g| g.as_ref()) {
                    None => {
                        correct = false;
                        matched = false;
                        reason.push(format!("no target for {class} to be {}", relation.as_str()));
                    }
                    Some(targets) => {
                        'objects: for obj in &found {
                            for t in targets {
                                let rels = relative_position(
                                    &obj.bbox,
                                    &t.bbox,
                                    config.position_threshold,
                                );
                                if !rels.contains(&relation) {
                                    correct = false;
                                    matched = false;
                                    let names: Vec<&str> =
                                        rels.iter().map(|r| r.as_str()).collect();
                                    reason.push(format!(
                                        "expected {class} {} target, found {} target",
                                        relation.as_str(),
                                        names.join(" and ")
                                    ));
                                    break 'objects;
                                }
                            }
                        }
                    }
                }
            }
        }
        if let (Some(region), true) = (&req.region, matched) {
            let size = image.dimensions();
            let outside = found.iter().filter(|d| !in_region(region, &d.bbox, size));
            let n = outside.count();
            if n > 0 {
                correct = false;
                matched = false;
                reason.push(format!("expected {class} on the {region}, {n} not"));
            }
        }
        matched_groups.push(matched.then_some(found));
    }
    // GenEval++ sizes: every `larger` object's box exceeds every `smaller` object's.
    let area = |d: &&Detection| (d.bbox.x2 - d.bbox.x1) * (d.bbox.y2 - d.bbox.y1);
    let areas = |word: &str| -> Vec<f64> {
        metadata
            .include
            .iter()
            .zip(&matched_groups)
            .filter(|(r, _)| r.size.as_deref() == Some(word))
            .flat_map(|(_, g)| g.iter().flatten().map(area))
            .collect()
    };
    let (larger, smaller) = (areas("larger"), areas("smaller"));
    let min_larger = larger.iter().copied().fold(f64::INFINITY, f64::min);
    let max_smaller = smaller.iter().copied().fold(0.0, f64::max);
    if !larger.is_empty() && !smaller.is_empty() && min_larger <= max_smaller {
        correct = false;
        reason.push(format!(
            "expected larger objects (min box area {min_larger}) than smaller ones (max {max_smaller})"
        ));
    }
    for req in &metadata.exclude {
        let n = objects.get(&req.class).map_or(0, Vec::len);
        if n >= req.count as usize {
            correct = false;
            reason.push(format!("expected {}<{}, found {n}", req.class, req.count));
        }
    }
    Ok((correct, reason.join("\n")))
}

/// One kept detection and its color, as the rule engine perceives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The class.
    pub class: String,
    /// The box.
    pub bbox: BBox,
    /// The detector's confidence.
    pub score: f64,
    /// The color the classifier names for its crop.
    pub color: String,
}

/// What the engine sees in `image` when scoring a prompt of task `tag`: every class's kept
/// detections (same threshold, cap and NMS as [`evaluate_image`]) with their colors, classes in
/// name order, objects by confidence. Rule-based prompt rewriting starts from this.
pub fn observe(
    image: &RgbImage,
    tag: &str,
    detector: &dyn Detector,
    classifier: &dyn ColorClassifier,
    config: &EngineConfig,
) -> Result<Vec<Observed>> {
    let threshold = if tag == "counting" {
        config.counting_threshold
    } else {
        config.threshold
    };
    let objects = select(detector.detect(image)?, threshold, config);
    let mut classes: Vec<&String> = objects.keys().collect();
    classes.sort();
    let mut out = Vec::new();
    for class in classes {
        let dets = &objects[class];
        let crops: Vec<RgbImage> = dets.iter().map(|d| crop(image, d, config)).collect();
        let colors = classifier.classify(&crops, class)?;
        for (d, color) in dets.iter().zip(colors) {
            out.push(Observed {
                class: class.clone(),
                bbox: d.bbox,
                score: d.score,
                color,
            });
        }
    }
    Ok(out)
}

/// Scores one image against its metadata with the official rules.
pub fn evaluate_image(
    image: &RgbImage,
    filename: &str,
    metadata: &Metadata,
    detector: &dyn Detector,
    classifier: &dyn ColorClassifier,
    config: &EngineConfig,
) -> Result<ImageResult> {
    let threshold = if metadata.tag == "counting" {
        config.counting_threshold
    } else {
        config.threshold
    };
    let objects = select(detector.detect(image)?, threshold, config);
    let (correct, reason) = evaluate(image, &objects, metadata, classifier, config)?;
    let mut classes: Vec<&String> = objects.keys().collect();
    classes.sort();
    let details: Map<String, Value> = classes
        .into_iter()
        .map(|c| {
            let boxes: Vec<Value> = objects[c]
                .iter()
                .map(|d| json!([d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2, d.score]))
                .collect();
            (c.clone(), Value::Array(boxes))
        })
        .collect();
    Ok(ImageResult {
        filename: filename.to_string(),
        tag: metadata.tag.clone(),
        prompt: metadata.prompt.clone(),
        correct,
        reason,
        metadata: metadata.to_python_json(),
        details: py_json_dumps(&Value::Object(details)),
    })
}

/// The rule engine with its perception as a [`echo4o_core::Scorer`] over [`Metadata`] items:
/// score 1 or 0, the official reason, the kept boxes as details.
///
/// Detection is CPU- or GPU-bound and synchronous: each image is scored on tokio's blocking
/// pool, so many scorings in flight never stall the async tasks around them (a judge's HTTP
/// requests, a generator's I/O).
pub struct GenEvalScorer<D, C> {
    detector: std::sync::Arc<D>,
    classifier: std::sync::Arc<C>,
    config: EngineConfig,
}

impl<D: Detector + 'static, C: ColorClassifier + 'static> GenEvalScorer<D, C> {
    /// A scorer with this perception and these rule constants.
    pub fn new(detector: D, classifier: C, config: EngineConfig) -> Self {
        GenEvalScorer {
            detector: std::sync::Arc::new(detector),
            classifier: std::sync::Arc::new(classifier),
            config,
        }
    }
}

#[async_trait::async_trait]
impl<D: Detector + 'static, C: ColorClassifier + 'static> echo4o_core::Scorer
    for GenEvalScorer<D, C>
{
    type Item = Metadata;

    async fn score(
        &self,
        item: &Metadata,
        image: &RgbImage,
    ) -> echo4o_core::Result<echo4o_core::Verdict> {
        let (detector, classifier) = (self.detector.clone(), self.classifier.clone());
        let (item, image, config) = (item.clone(), image.clone(), self.config.clone());
        let r = tokio::task::spawn_blocking(move || {
            evaluate_image(&image, "<memory>", &item, &*detector, &*classifier, &config)
        })
        .await
        .map_err(|e| echo4o_core::Error::invalid("GenEval scoring", e.to_string()))?
        .map_err(|e| echo4o_core::Error::plugin("GenEval scoring", e))?;
        let details = serde_json::from_str(&r.details)
            .map_err(|e| echo4o_core::Error::invalid("GenEval details", e.to_string()))?;
        Ok(echo4o_core::Verdict {
            score: if r.correct { 1.0 } else { 0.0 },
            passed: Some(r.correct),
            reason: r.reason,
            details,
            usage: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geneval::{Metadata, official_metadata, summarize};
    use image::GrayImage;

    /// Reports fixed detections whatever the image.
    struct Fixed(Vec<Detection>);
    impl Detector for Fixed {
        fn detect(&self, _: &RgbImage) -> Result<Vec<Detection>> {
            Ok(self.0.clone())
        }
    }

    /// Names the color of a crop by its mean pixel: pure red/blue/green/... by the brightest
    /// channel; the #999 background alone reads as "white".
    struct MeanColor;
    impl ColorClassifier for MeanColor {
        fn classify(&self, crops: &[RgbImage], _class: &str) -> Result<Vec<String>> {
            Ok(crops
                .iter()
                .map(|c| {
                    let n = (c.width() * c.height()).max(1) as f64;
                    let mean = |k: usize| c.pixels().map(|p| p.0[k] as f64).sum::<f64>() / n;
                    let (r, g, b) = (mean(0), mean(1), mean(2));
                    if r > g + 40.0 && r > b + 40.0 {
                        "red"
                    } else if b > r + 40.0 && b > g + 40.0 {
                        "blue"
                    } else if g > r + 40.0 && g > b + 40.0 {
                        "green"
                    } else {
                        "white"
                    }
                    .to_string()
                })
                .collect())
        }
    }

    fn det(class: &str, score: f64, b: [f64; 4]) -> Detection {
        Detection {
            class: class.into(),
            score,
            bbox: BBox::new(b[0], b[1], b[2], b[3]),
            mask: None,
        }
    }

    fn meta(line: &str) -> Metadata {
        Metadata::from_json(line, "test", 1).unwrap()
    }

    fn run(m: &Metadata, dets: Vec<Detection>, img: &RgbImage) -> ImageResult {
        evaluate_image(
            img,
            "x.png",
            m,
            &Fixed(dets),
            &MeanColor,
            &EngineConfig::default(),
        )
        .unwrap()
    }

    #[test]
    fn thresholds_and_the_counting_threshold() {
        let img = RgbImage::new(100, 100);
        let two = meta(
            r#"{"tag": "two_object", "include": [{"class": "cat", "count": 1}, {"class": "dog", "count": 1}], "prompt": "a photo of a cat and a dog"}"#,
        );
        let r = run(
            &two,
            vec![
                det("cat", 0.31, [0., 0., 9., 9.]),
                det("dog", 0.3, [20., 0., 29., 9.]),
            ],
            &img,
        );
        assert!(!r.correct);
        assert_eq!(r.reason, "expected dog>=1, found 0");
        assert_eq!(r.details, "{\"cat\": [[0.0, 0.0, 9.0, 9.0, 0.31]]}");

        let counting = meta(
            r#"{"tag": "counting", "include": [{"class": "clock", "count": 2}], "exclude": [{"class": "clock", "count": 3}], "prompt": "a photo of two clocks"}"#,
        );
        let clocks = |s: f64| {
            vec![
                det("clock", 0.95, [0., 0., 9., 9.]),
                det("clock", 0.92, [20., 0., 29., 9.]),
                det("clock", s, [40., 0., 49., 9.]),
            ]
        };
        assert!(
            run(&counting, clocks(0.85), &img).correct,
            "0.85 is below the counting threshold"
        );
        let r = run(&counting, clocks(0.95), &img);
        assert!(!r.correct);
        assert_eq!(r.reason, "expected clock<3, found 3");
    }

    #[test]
    fn at_most_16_objects_per_class_and_optional_nms() {
        let img = RgbImage::new(100, 100);
        let many: Vec<Detection> = (0..20)
            .map(|i| det("apple", 0.5 + i as f64 / 100.0, [0., 0., 5., 5.]))
            .collect();
        let m = meta(
            r#"{"tag": "counting", "include": [{"class": "apple", "count": 1}], "exclude": [{"class": "apple", "count": 17}], "prompt": "p"}"#,
        );
        let cfg = EngineConfig {
            counting_threshold: 0.3,
            ..EngineConfig::default()
        };
        let r = evaluate_image(&img, "x", &m, &Fixed(many.clone()), &MeanColor, &cfg).unwrap();
        assert!(r.correct, "{}", r.reason);
        let m2 = meta(
            r#"{"tag": "counting", "include": [{"class": "apple", "count": 1}], "exclude": [{"class": "apple", "count": 2}], "prompt": "p"}"#,
        );
        let nms = EngineConfig {
            counting_threshold: 0.3,
            max_overlap: 0.5,
            ..EngineConfig::default()
        };
        let r = evaluate_image(&img, "x", &m2, &Fixed(many), &MeanColor, &nms).unwrap();
        assert!(
            r.correct,
            "identical boxes collapse under NMS: {}",
            r.reason
        );
    }

    #[test]
    fn color_uses_mask_composited_crops_on_grey() {
        // A red square at (10..30, 10..30) in a blue image; the box covers more than the square.
        let mut img = RgbImage::from_pixel(64, 64, image::Rgb([0, 0, 255]));
        let mut mask = GrayImage::new(64, 64);
        for y in 10..30 {
            for x in 10..30 {
                img.put_pixel(x, y, image::Rgb([255, 0, 0]));
                mask.put_pixel(x, y, image::Luma([1]));
            }
        }
        let m = meta(
            r#"{"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a photo of a red car"}"#,
        );
        let mut d = det("car", 0.9, [5., 5., 35., 35.]);
        assert!(
            !run(&m, vec![d.clone()], &img).correct,
            "without a mask the blue border counts"
        );
        d.mask = Some(mask);
        let r = run(&m, vec![d], &img);
        assert!(r.correct, "{}", r.reason);

        let blue = meta(
            r#"{"tag": "colors", "include": [{"class": "car", "count": 1, "color": "blue"}], "prompt": "p"}"#,
        );
        let r = run(&blue, vec![det("car", 0.9, [10., 10., 30., 30.])], &img);
        assert_eq!(r.reason, "expected blue car>=1, found 0 blue; and 1 red");
    }

    #[test]
    fn position_against_every_target_and_missing_targets() {
        let img = RgbImage::new(200, 100);
        let m = &official_metadata(false)[353]; // first position prompt
        let (a, b) = (&m.include[0].class, &m.include[1].class);
        let (rel, _) = m.include[1].position.unwrap();
        let place = |r: crate::geneval::Relation| -> ([f64; 4], [f64; 4]) {
            use crate::geneval::Relation::*;
            let target = [90., 40., 110., 60.];
            let obj = match r {
                LeftOf => [0., 40., 20., 60.],
                RightOf => [180., 40., 200., 60.],
                Above => [90., 0., 110., 10.],
                Below => [90., 90., 110., 100.],
            };
            (target, obj)
        };
        let (t, o) = place(rel);
        assert!(run(m, vec![det(a, 0.9, t), det(b, 0.9, o)], &img).correct);
        let r = run(m, vec![det(a, 0.9, t), det(b, 0.9, t)], &img);
        assert!(!r.correct);
        assert_eq!(
            r.reason,
            format!("expected {b} {} target, found  target", rel.as_str())
        );
        let r = run(m, vec![det(b, 0.9, o)], &img);
        assert_eq!(
            r.reason,
            format!(
                "expected {a}>=1, found 0\nno target for {b} to be {}",
                rel.as_str()
            )
        );
    }

    #[test]
    fn the_engine_is_a_scorer() {
        use echo4o_core::Scorer;
        let scorer = GenEvalScorer::new(
            Fixed(vec![det("cat", 0.9, [0., 0., 9., 9.])]),
            MeanColor,
            EngineConfig::default(),
        );
        let m = meta(
            r#"{"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": "a photo of a cat"}"#,
        );
        let v = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(scorer.score(&m, &RgbImage::new(16, 16)))
            .unwrap();
        assert_eq!((v.score, v.passed), (1.0, Some(true)));
        assert_eq!(v.details["cat"][0][4], 0.9);
    }

    #[test]
    fn crops_round_like_pil() {
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(3.5), 4);
        assert_eq!(round_half_even(-0.5), 0);
        assert_eq!(round_half_even(7.2), 7);
        let img = RgbImage::from_pixel(10, 10, image::Rgb([9, 9, 9]));
        let c = crop(
            &img,
            &det("x", 1.0, [8.0, 8.0, 12.0, 12.0]),
            &EngineConfig::default(),
        );
        assert_eq!(c.dimensions(), (4, 4));
        assert_eq!(c.get_pixel(0, 0).0, [9, 9, 9]);
        assert_eq!(c.get_pixel(3, 3).0, [0, 0, 0], "outside the image is black");
    }

    #[test]
    fn summary_is_the_mean_of_tasks_in_canonical_order() {
        let r = |tag: &str, ok: bool, m: &str| ImageResult {
            filename: String::new(),
            tag: tag.into(),
            prompt: String::new(),
            correct: ok,
            reason: String::new(),
            metadata: m.into(),
            details: String::new(),
        };
        let results = vec![
            r("counting", true, "a"),
            r("counting", false, "a"),
            r("single_object", true, "b"),
            r("single_object", true, "c"),
            r("position", false, "d"),
        ];
        let s = summarize(&results);
        let names: Vec<&str> = s.tasks.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(names, ["single_object", "counting", "position"]);
        assert_eq!(s.overall, (1.0 + 0.5 + 0.0) / 3.0);
        assert_eq!(s.correct_images, 0.6);
        assert_eq!(s.correct_prompts, 0.75);
    }
}
