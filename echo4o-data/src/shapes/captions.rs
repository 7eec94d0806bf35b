//! Prompts and captions of the shapes world, each with GenEval-form metadata
//! (`{"tag", "include": [{"class", "count", "color"?, "position"?, "region"?, "size"?}],
//! "exclude"?, "prompt"}`) and the [`Request`] that renders a correct image of it.
//!
//! - Evaluation prompt sets: [`geneval_shapes`] (GenEval's six tasks) and [`geneval_pp_shapes`]
//!   (GenEval++'s seven tags).
//! - Training captions in the experiment's two styles: [`web_like`] (what alt-text gives: objects
//!   omitted, counts vague or wrong, colors missing, cluttered backgrounds, and never a
//!   [`is_rare`] shape-color pair) and the three Echo-4o recipes: [`echo_instruction`] (complete
//!   instructions, easy / medium / hard, clean backgrounds), [`echo_surreal`] (exactly the rare
//!   pairs web-like data lacks) and [`echo_multiref`] (a target composing single-object
//!   references).

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

use super::layout::{Group, Region, Relation, Request};
use super::{Background, Color, Shape, Size};

/// A prompt or caption, its metadata, and a request whose rendering satisfies it.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// The text.
    pub prompt: String,
    /// GenEval-form metadata (the `prompt` field equals [`Prompt::prompt`]).
    pub metadata: Map<String, Value>,
    /// The scene request: for captions, what the image shows (a web-like caption mentions only
    /// part of it); for evaluation prompts, one correct image.
    pub request: Request,
    /// Reference requests (multi-reference samples), in order.
    pub references: Vec<Request>,
}

/// The shape-color pairs held out of the web-like data: 12 of the 60 pairs, the "surreal"
/// long tail that only Echo-style data shows.
pub fn is_rare(shape: Shape, color: Color) -> bool {
    (shape as usize * 3 + color as usize).is_multiple_of(5)
}

const NUMBERS: [&str; 7] = ["zero", "one", "two", "three", "four", "five", "six"];

/// `a` or `an` before `word` (by its first letter, as the prompt sets write them).
pub fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// GenEval's `make_plural`: `+es` after a final "s", else `+s`.
pub fn plural(noun: &str) -> String {
    if noun.ends_with('s') {
        format!("{noun}es")
    } else {
        format!("{noun}s")
    }
}

/// "a red circle", "three red circles", "two circles".
fn phrase(count: u32, color: Option<Color>, shape: Shape) -> String {
    let noun = match color {
        Some(c) => format!("{} {}", c.name(), shape.name()),
        None => shape.name().to_string(),
    };
    if count == 1 {
        format!("{} {noun}", article(&noun))
    } else {
        let noun = match color {
            Some(c) => format!("{} {}", c.name(), plural(shape.name())),
            None => plural(shape.name()),
        };
        format!("{} {noun}", NUMBERS[count as usize])
    }
}

fn region_phrase(r: Region) -> &'static str {
    match r {
        Region::Left => "on the left",
        Region::Right => "on the right",
        Region::Above => "at the top",
        Region::Below => "at the bottom",
    }
}

/// Joins phrases as prompts list objects: `a`, `a and b`, `a, b, and c`.
pub fn join(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [rest @ .., last] => format!("{}, and {last}", rest.join(", ")),
    }
}

fn clause(shape: Shape, count: u32) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("class".into(), json!(shape.name()));
    m.insert("count".into(), json!(count));
    m
}

fn metadata(
    tag: &str,
    include: Vec<Map<String, Value>>,
    exclude: Vec<Value>,
    prompt: &str,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("tag".into(), json!(tag));
    m.insert(
        "include".into(),
        Value::Array(include.into_iter().map(Value::Object).collect()),
    );
    if !exclude.is_empty() {
        m.insert("exclude".into(), Value::Array(exclude));
    }
    m.insert("prompt".into(), json!(prompt));
    m
}

fn distinct_shapes(rng: &mut ChaCha8Rng, n: usize) -> Vec<Shape> {
    let mut all = Shape::ALL.to_vec();
    all.shuffle(rng);
    all.truncate(n);
    all
}

fn any_color(rng: &mut ChaCha8Rng) -> Color {
    Color::ALL[rng.random_range(0..Color::ALL.len())]
}

fn group(shape: Shape, color: Color, size: Size, count: u32, region: Option<Region>) -> Group {
    Group {
        shape,
        color,
        size,
        count,
        region,
    }
}

/// Small for crowded groups, else either.
fn size_for(rng: &mut ChaCha8Rng, count: u32) -> Size {
    if count >= 3 || rng.random_bool(0.5) {
        Size::Small
    } else {
        Size::Large
    }
}

/// Large objects only in sparse scenes: four or more objects are all small, so they fit.
fn fit_sizes(groups: &mut [Group]) {
    if groups.iter().map(|g| g.count).sum::<u32>() > 3 {
        for g in groups {
            g.size = Size::Small;
        }
    }
}

fn request(groups: Vec<Group>, relation: Option<(usize, Relation, usize)>) -> Request {
    Request {
        groups,
        relation,
        background: Background::Clean,
    }
}

/// GenEval's six tasks over shapes: `per_task` prompts each (`single_object`, `two_object`,
/// `counting` (2 to 4, with GenEval's exclude clause), `colors`, `position`, `color_attr`), in
/// GenEval's wording, deterministic from `seed`.
pub fn geneval_shapes(per_task: usize, seed: u64) -> Vec<Prompt> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for tag in echo4o_core::vocab::GENEVAL_TASKS {
        for _ in 0..per_task {
            let s = distinct_shapes(&mut rng, 2);
            let (c0, c1) = (any_color(&mut rng), any_color(&mut rng));
            let (sz0, sz1) = (size_for(&mut rng, 1), size_for(&mut rng, 1));
            let (prompt, include, exclude, req) = match tag {
                "single_object" => (
                    format!("a photo of {}", phrase(1, None, s[0])),
                    vec![clause(s[0], 1)],
                    vec![],
                    request(vec![group(s[0], c0, sz0, 1, None)], None),
                ),
                "two_object" => (
                    format!(
                        "a photo of {} and {}",
                        phrase(1, None, s[0]),
                        phrase(1, None, s[1])
                    ),
                    vec![clause(s[0], 1), clause(s[1], 1)],
                    vec![],
                    request(
                        vec![group(s[0], c0, sz0, 1, None), group(s[1], c1, sz1, 1, None)],
                        None,
                    ),
                ),
                "counting" => {
                    let n = rng.random_range(2..=4u32);
                    (
                        format!("a photo of {}", phrase(n, None, s[0])),
                        vec![clause(s[0], n)],
                        vec![json!({"class": s[0].name(), "count": n + 1})],
                        request(vec![group(s[0], c0, Size::Small, n, None)], None),
                    )
                }
                "colors" => {
                    let mut cl = clause(s[0], 1);
                    cl.insert("color".into(), json!(c0.name()));
                    (
                        format!("a photo of {}", phrase(1, Some(c0), s[0])),
                        vec![cl],
                        vec![],
                        request(vec![group(s[0], c0, sz0, 1, None)], None),
                    )
                }
                "position" => {
                    let rel = *Relation::ALL.choose(&mut rng).unwrap_or(&Relation::LeftOf);
                    let mut cl = clause(s[1], 1);
                    cl.insert("position".into(), json!([rel.name(), 0]));
                    (
                        format!(
                            "a photo of {} {} {}",
                            phrase(1, None, s[1]),
                            rel.name(),
                            phrase(1, None, s[0])
                        ),
                        vec![clause(s[0], 1), cl],
                        vec![],
                        request(
                            vec![
                                group(s[0], c0, Size::Small, 1, None),
                                group(s[1], c1, Size::Small, 1, None),
                            ],
                            Some((1, rel, 0)),
                        ),
                    )
                }
                _ => {
                    let mut a = clause(s[0], 1);
                    a.insert("color".into(), json!(c0.name()));
                    let mut b = clause(s[1], 1);
                    b.insert("color".into(), json!(c1.name()));
                    (
                        format!(
                            "a photo of {} and {}",
                            phrase(1, Some(c0), s[0]),
                            phrase(1, Some(c1), s[1])
                        ),
                        vec![a, b],
                        vec![],
                        request(
                            vec![group(s[0], c0, sz0, 1, None), group(s[1], c1, sz1, 1, None)],
                            None,
                        ),
                    )
                }
            };
            out.push(Prompt {
                metadata: metadata(tag, include, exclude, &prompt),
                prompt,
                request: req,
                references: vec![],
            });
        }
    }
    out
}

/// GenEval++'s seven tags over shapes, `per_tag` prompts each, in GenEval++'s templates (made
/// grammatical) and metadata fields (`region`, `size`), deterministic from `seed`.
pub fn geneval_pp_shapes(per_tag: usize, seed: u64) -> Vec<Prompt> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for tag in echo4o_core::vocab::GENEVAL_PP_TAGS {
        for _ in 0..per_tag {
            let region = *Region::ALL.choose(&mut rng).unwrap_or(&Region::Left);
            let regions = [region, region.opposite()];
            let mut groups = Vec::new();
            let mut include = Vec::new();
            let mut parts = Vec::new();
            let mut exclude = Vec::new();
            match tag {
                "color_attr" => {
                    for s in distinct_shapes(&mut rng, 3) {
                        let c = any_color(&mut rng);
                        let mut cl = clause(s, 1);
                        cl.insert("color".into(), json!(c.name()));
                        include.push(cl);
                        parts.push(phrase(1, Some(c), s));
                        groups.push(group(s, c, Size::Small, 1, None));
                    }
                }
                "spatial_count_attr" | "color_spatial_attr" | "size_spatial_attr" => {
                    let sizes = [Size::Large, Size::Small];
                    for (i, s) in distinct_shapes(&mut rng, 2).into_iter().enumerate() {
                        let c = any_color(&mut rng);
                        let mut cl = clause(s, 1);
                        let (count, color, size) = match tag {
                            "spatial_count_attr" => (rng.random_range(1..=3u32), None, Size::Small),
                            "color_spatial_attr" => (1, Some(c), Size::Small),
                            _ => (1, None, sizes[i]),
                        };
                        cl.insert("count".into(), json!(count));
                        if let Some(c) = color {
                            cl.insert("color".into(), json!(c.name()));
                        }
                        cl.insert("region".into(), json!(regions[i].name()));
                        let mut text = phrase(count, color, s);
                        if tag == "size_spatial_attr" {
                            let word = if i == 0 { "larger" } else { "smaller" };
                            cl.insert("size".into(), json!(word));
                            text = format!("a {word} {}", s.name());
                        }
                        include.push(cl);
                        parts.push(format!("{text} {}", region_phrase(regions[i])));
                        groups.push(group(s, c, size, count, Some(regions[i])));
                    }
                }
                "color_count_attr" | "multi_object_count_attr" => {
                    let n = if tag == "color_count_attr" || rng.random_bool(0.5) {
                        2
                    } else {
                        3
                    };
                    for s in distinct_shapes(&mut rng, n) {
                        let c = any_color(&mut rng);
                        let count = rng.random_range(1..=3u32);
                        let color = (tag == "color_count_attr").then_some(c);
                        let mut cl = clause(s, count);
                        if let Some(c) = color {
                            cl.insert("color".into(), json!(c.name()));
                        }
                        include.push(cl);
                        parts.push(phrase(count, color, s));
                        groups.push(group(s, c, Size::Small, count, None));
                    }
                }
                _ => {
                    let s = distinct_shapes(&mut rng, 1)[0];
                    let count = rng.random_range(4..=6u32);
                    include.push(clause(s, count));
                    exclude.push(json!({"class": s.name(), "count": count + 1}));
                    parts.push(phrase(count, None, s));
                    groups.push(group(s, any_color(&mut rng), Size::Small, count, None));
                }
            }
            let prompt = format!("A photo of {}", join(&parts));
            out.push(Prompt {
                metadata: metadata(tag, include, exclude, &prompt),
                prompt,
                request: request(groups, None),
                references: vec![],
            });
        }
    }
    out
}

fn common_color(rng: &mut ChaCha8Rng, shape: Shape) -> Color {
    loop {
        let c = any_color(rng);
        if !is_rare(shape, c) {
            return c;
        }
    }
}

/// A web-like training sample: a cluttered scene of 1 to 3 groups (never a rare pair) and the
/// caption alt-text would give it: each group mentioned with probability 0.7 (at least one),
/// counts exact half the time, else vague ("some", "a few") or off by one, colors named half
/// the time, positions never. Its metadata lists what the caption claims.
pub fn web_like(seed: u64) -> Prompt {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7765_625f);
    let n = rng.random_range(1..=3usize);
    let mut groups: Vec<Group> = distinct_shapes(&mut rng, n)
        .into_iter()
        .map(|s| {
            let count = rng.random_range(1..=3u32);
            group(
                s,
                common_color(&mut rng, s),
                size_for(&mut rng, count),
                count,
                None,
            )
        })
        .collect();
    fit_sizes(&mut groups);
    let keep_first = rng.random_range(0..n);
    let mut parts = Vec::new();
    let mut include = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        if i != keep_first && !rng.random_bool(0.7) {
            continue;
        }
        let color = rng.random_bool(0.5).then_some(g.color);
        let roll = rng.random::<f32>();
        let text = if roll < 0.5 || g.count == 1 && roll < 0.75 {
            phrase(g.count, color, g.shape)
        } else if roll < 0.75 {
            let vague = *["some", "a few", "several"]
                .choose(&mut rng)
                .unwrap_or(&"some");
            let noun = color.map_or(plural(g.shape.name()), |c| {
                format!("{} {}", c.name(), plural(g.shape.name()))
            });
            format!("{vague} {noun}")
        } else {
            let wrong = if g.count == 1 {
                2
            } else if rng.random_bool(0.5) {
                g.count - 1
            } else {
                g.count + 1
            };
            phrase(wrong.min(6), color, g.shape)
        };
        let mut cl = clause(g.shape, 1);
        if let Some(c) = color {
            cl.insert("color".into(), json!(c.name()));
        }
        include.push(cl);
        parts.push(text);
    }
    let prompt = format!("a photo of {}", join(&parts));
    Prompt {
        metadata: metadata("web_like", include, vec![], &prompt),
        prompt,
        request: Request {
            groups,
            relation: None,
            background: Background::Cluttered,
        },
        references: vec![],
    }
}

/// Instruction difficulty: how many attributes the instruction states (objects, counts above one,
/// colors, regions, relations): easy 1 to 3, medium 3 to 5, hard 6 or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Difficulty {
    /// 1 to 3 attributes.
    Easy,
    /// 3 to 5.
    Medium,
    /// 6 or more.
    Hard,
}

impl Difficulty {
    /// The name Echo-4o-Image uses for the category.
    pub fn name(self) -> &'static str {
        match self {
            Difficulty::Easy => "easy",
            Difficulty::Medium => "medium",
            Difficulty::Hard => "hard",
        }
    }

    fn range(self) -> (usize, usize) {
        match self {
            Difficulty::Easy => (1, 3),
            Difficulty::Medium => (3, 5),
            Difficulty::Hard => (6, 9),
        }
    }
}

/// An Echo-style instruction-following sample: a clean scene and the complete instruction for
/// it, with a number of attributes in `difficulty`'s range; the metadata states all of them.
pub fn echo_instruction(seed: u64, difficulty: Difficulty) -> Prompt {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6563_686f);
    let (lo, hi) = difficulty.range();
    loop {
        let n = rng.random_range(1..=3usize);
        let shapes = distinct_shapes(&mut rng, n);
        let mut groups: Vec<Group> = shapes
            .iter()
            .map(|&s| {
                let count = if rng.random_bool(0.5) {
                    1
                } else {
                    rng.random_range(2..=3u32)
                };
                group(
                    s,
                    common_color(&mut rng, s),
                    size_for(&mut rng, count),
                    count,
                    None,
                )
            })
            .collect();
        fit_sizes(&mut groups);
        let colored: Vec<bool> = groups.iter().map(|_| rng.random_bool(0.7)).collect();
        let mut relation = None;
        if n == 2 && groups.iter().all(|g| g.count == 1) && rng.random_bool(0.5) {
            relation = Some((
                1,
                *Relation::ALL.choose(&mut rng).unwrap_or(&Relation::LeftOf),
                0,
            ));
        } else if n == 2 && rng.random_bool(0.5) {
            let r = *Region::ALL.choose(&mut rng).unwrap_or(&Region::Left);
            groups[0].region = Some(r);
            groups[1].region = Some(r.opposite());
        }
        let attrs: usize = groups
            .iter()
            .zip(&colored)
            .map(|(g, &c)| {
                1 + usize::from(g.count > 1) + usize::from(c) + usize::from(g.region.is_some())
            })
            .sum::<usize>()
            + usize::from(relation.is_some());
        if attrs < lo || attrs > hi {
            continue;
        }
        let mut include = Vec::new();
        let mut parts = Vec::new();
        for (g, &c) in groups.iter().zip(&colored) {
            let color = c.then_some(g.color);
            let mut cl = clause(g.shape, g.count);
            if let Some(c) = color {
                cl.insert("color".into(), json!(c.name()));
            }
            let mut text = phrase(g.count, color, g.shape);
            if let Some(r) = g.region {
                cl.insert("region".into(), json!(r.name()));
                text = format!("{text} {}", region_phrase(r));
            }
            include.push(cl);
            parts.push(text);
        }
        let prompt = match relation {
            Some((a, rel, b)) => {
                include[a].insert("position".into(), json!([rel.name(), b]));
                format!("a photo of {} {} {}", parts[a], rel.name(), parts[b])
            }
            None => format!("a photo of {}", join(&parts)),
        };
        let tag = format!("instruction_{}", difficulty.name());
        return Prompt {
            metadata: metadata(&tag, include, vec![], &prompt),
            prompt,
            request: request(groups, relation),
            references: vec![],
        };
    }
}

/// The clause of one object of color `c`.
fn one_colored(s: Shape, c: Color) -> Map<String, Value> {
    let mut cl = clause(s, 1);
    cl.insert("color".into(), json!(c.name()));
    cl
}

/// An Echo-style surreal sample: one or two objects, at least one in a rare shape-color pair
/// (the attribute combinations web-like data never shows), clean background, complete caption.
pub fn echo_surreal(seed: u64) -> Prompt {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7375_7272);
    let n = rng.random_range(1..=2usize);
    let shapes = distinct_shapes(&mut rng, n);
    let mut include = Vec::new();
    let mut parts = Vec::new();
    let mut groups = Vec::new();
    for (i, s) in shapes.into_iter().enumerate() {
        let rare: Vec<Color> = Color::ALL.into_iter().filter(|&c| is_rare(s, c)).collect();
        let c = if i == 0 {
            *rare.choose(&mut rng).unwrap_or(&Color::Red)
        } else {
            any_color(&mut rng)
        };
        include.push(one_colored(s, c));
        parts.push(phrase(1, Some(c), s));
        groups.push(group(s, c, size_for(&mut rng, 1), 1, None));
    }
    let prompt = format!("a photo of {}", join(&parts));
    Prompt {
        metadata: metadata("surreal", include, vec![], &prompt),
        prompt,
        request: request(groups, None),
        references: vec![],
    }
}

/// An Echo-style multi-reference sample: 2 or 3 single-object references (centred, clean) and a
/// target composing their objects, with an instruction naming what to take from each image.
pub fn echo_multiref(seed: u64) -> Prompt {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6d72_6566);
    let n = rng.random_range(2..=3usize);
    let shapes = distinct_shapes(&mut rng, n);
    let mut include = Vec::new();
    let mut parts = Vec::new();
    let mut groups = Vec::new();
    let mut references = Vec::new();
    for (i, s) in shapes.into_iter().enumerate() {
        let c = any_color(&mut rng);
        let size = size_for(&mut rng, 1);
        include.push(one_colored(s, c));
        parts.push(format!(
            "the {} {} from image {}",
            c.name(),
            s.name(),
            i + 1
        ));
        let g = group(s, c, size, 1, None);
        groups.push(g);
        references.push(request(
            vec![Group {
                size: Size::Large,
                ..g
            }],
            None,
        ));
    }
    let prompt = format!("Put {} together in one picture", join(&parts));
    Prompt {
        metadata: metadata("multiref", include, vec![], &prompt),
        prompt,
        request: request(groups, None),
        references,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes::Layout;
    use crate::shapes::layout::{LayoutError, place_in};
    use proptest::prelude::*;

    /// Places `request` in the free layout and in the 4x4 cells of the 16-token model.
    fn placeable(request: &Request, seed: u64) -> Result<(), LayoutError> {
        for layout in [Layout::Free, Layout::Cells(4)] {
            place_in(request, 64, 64, layout, seed)?;
        }
        Ok(())
    }

    fn includes(p: &Prompt) -> Vec<Map<String, Value>> {
        p.metadata["include"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_object().unwrap().clone())
            .collect()
    }

    /// Every metadata clause names a shape, color and count the prompt text states.
    fn consistent(p: &Prompt) -> Result<(), TestCaseError> {
        prop_assert_eq!(p.metadata["prompt"].as_str(), Some(p.prompt.as_str()));
        for cl in includes(p) {
            let class = cl["class"].as_str().unwrap();
            prop_assert!(p.prompt.contains(class), "{} lacks {}", p.prompt, class);
            if let Some(c) = cl.get("color") {
                let phrase = format!("{} {}", c.as_str().unwrap(), class);
                prop_assert!(p.prompt.contains(&phrase), "{} lacks {}", p.prompt, phrase);
            }
            let n = cl["count"].as_u64().unwrap();
            if n > 1 {
                prop_assert!(
                    p.prompt.contains(NUMBERS[n as usize]),
                    "{} lacks {}",
                    p.prompt,
                    n
                );
            }
            if let Some(r) = cl.get("region") {
                let r = Region::ALL
                    .into_iter()
                    .find(|x| x.name() == r.as_str().unwrap())
                    .unwrap();
                prop_assert!(p.prompt.contains(region_phrase(r)));
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn echo_captions_match_their_metadata_and_their_scene(seed in 0u64..100_000, d in 0usize..3) {
            let difficulty = [Difficulty::Easy, Difficulty::Medium, Difficulty::Hard][d];
            for p in [echo_instruction(seed, difficulty), echo_surreal(seed), echo_multiref(seed)] {
                consistent(&p)?;
                // Every clause's count and color is what the request renders.
                for cl in includes(&p) {
                    let g = p.request.groups.iter().find(|g| g.shape.name() == cl["class"]).unwrap();
                    prop_assert_eq!(u64::from(g.count), cl["count"].as_u64().unwrap());
                    if let Some(c) = cl.get("color") {
                        prop_assert_eq!(g.color.name(), c.as_str().unwrap());
                    }
                }
                prop_assert!(placeable(&p.request, seed).is_ok(), "{:?}", p.request);
            }
            let a = echo_instruction(seed, difficulty);
            let attrs: usize = includes(&a).iter().map(|c| {
                1 + usize::from(c["count"].as_u64().unwrap() > 1) + usize::from(c.contains_key("color"))
                    + usize::from(c.contains_key("region")) + usize::from(c.contains_key("position"))
            }).sum();
            let (lo, hi) = difficulty.range();
            prop_assert!((lo..=hi).contains(&attrs), "{}: {} attributes", a.prompt, attrs);
        }

        #[test]
        fn web_like_captions_never_show_rare_pairs(seed in 0u64..100_000) {
            let p = web_like(seed);
            prop_assert!(p.request.groups.iter().all(|g| !is_rare(g.shape, g.color)));
            prop_assert_eq!(p.request.background, Background::Cluttered);
            prop_assert!(placeable(&p.request, seed).is_ok());
            for cl in includes(&p) {
                prop_assert!(p.prompt.contains(cl["class"].as_str().unwrap()));
            }
        }

        #[test]
        fn surreal_samples_always_show_a_rare_pair(seed in 0u64..100_000) {
            let p = echo_surreal(seed);
            prop_assert!(is_rare(p.request.groups[0].shape, p.request.groups[0].color));
        }
    }

    #[test]
    fn prompt_sets_are_consistent_placeable_and_deterministic() {
        let g = geneval_shapes(20, 7);
        assert_eq!(g.len(), 120);
        let pp = geneval_pp_shapes(20, 7);
        assert_eq!(pp.len(), 140);
        for (i, p) in g.iter().chain(&pp).enumerate() {
            consistent(p).unwrap();
            placeable(&p.request, i as u64).unwrap_or_else(|e| panic!("{}: {e}", p.prompt));
        }
        assert_eq!(g, geneval_shapes(20, 7));
        assert_eq!(is_rare_count(), 12);
    }

    fn is_rare_count() -> usize {
        Shape::ALL
            .iter()
            .flat_map(|&s| Color::ALL.map(move |c| (s, c)))
            .filter(|&(s, c)| is_rare(s, c))
            .count()
    }
}
