//! Perception for the shapes world (`echo4o_data::shapes`): a [`Detector`] by color
//! segmentation, connected components and shape fitting, and a [`ColorClassifier`] by nearest
//! palette color. With them the GenEval rule engine scores shapes images exactly as it scores
//! photos with Mask2Former and CLIP.
//!
//! ```
//! use echo4o_bench::geneval::shapes::ShapesDetector;
//! use echo4o_bench::geneval::Detector;
//! use echo4o_data::shapes::{Background, Color, Object, Scene, Shape, Size};
//!
//! let scene = Scene { width: 64, height: 64, background: Background::Cluttered, layout: Default::default(), seed: 1, objects: vec![
//!     Object { shape: Shape::Triangle, color: Color::Blue, size: Size::Large, x: 20.0, y: 30.0 },
//!     Object { shape: Shape::Star, color: Color::White, size: Size::Small, x: 48.0, y: 40.0 },
//! ]};
//! let found = ShapesDetector::default().detect(&scene.render()).unwrap();
//! let mut classes: Vec<&str> = found.iter().map(|d| d.class.as_str()).collect();
//! classes.sort();
//! assert_eq!(classes, ["star", "triangle"]);
//! ```

use std::sync::OnceLock;

use echo4o_data::shapes::{Color, Shape, distance};
use image::{GrayImage, Luma, RgbImage};

use super::geometry::BBox;
use super::{
    ColorClassifier, Detection, Detector, EngineConfig, GenEvalScores, ImageResult, evaluate_folder,
};
use crate::Result;

/// Finds shapes: each pixel nearer a palette color than the grey axis (and within
/// `max_color_distance` of it) is labelled with that color; 4-connected components of one label
/// of at least `min_area` pixels are objects; each is classified as the shape whose rendering,
/// fitted to the component's box, overlaps it best (IoU). The score is that IoU over 0.7, capped
/// at 1: crisp renders of small shapes fit at 0.8 to 1 (pixel-centre sampling loses thin tips),
/// so they clear GenEval's 0.9 counting threshold, while blobs that fit no shape do not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShapesDetector {
    /// Smallest component kept, in pixels.
    pub min_area: usize,
    /// Largest distance from a palette color that still counts as that color.
    pub max_color_distance: f32,
}

impl Default for ShapesDetector {
    fn default() -> Self {
        ShapesDetector {
            min_area: 8,
            max_color_distance: 100.0,
        }
    }
}

/// The distance of `p` to the nearest neutral grey a background uses (60..=200).
fn grey_distance(p: [u8; 3]) -> f32 {
    let mean = (p[0] as f32 + p[1] as f32 + p[2] as f32) / 3.0;
    let g = mean.clamp(60.0, 200.0).round() as u8;
    distance(p, [g; 3])
}

/// A pixel's palette label, or `None` for background.
fn label(p: [u8; 3], max: f32) -> Option<Color> {
    let (c, d) = Color::nearest(p);
    (d < max && d < grey_distance(p)).then_some(c)
}

/// One 4-connected component: its pixels.
struct Component {
    pixels: Vec<(u32, u32)>,
}

fn components(image: &RgbImage, max: f32) -> Vec<Component> {
    let (w, h) = image.dimensions();
    let labels: Vec<Option<Color>> = image.pixels().map(|p| label(p.0, max)).collect();
    let mut seen = vec![false; labels.len()];
    let mut out = Vec::new();
    for start in 0..labels.len() {
        let Some(color) = labels[start] else {
            continue;
        };
        if seen[start] {
            continue;
        }
        seen[start] = true;
        let mut stack = vec![start];
        let mut pixels = Vec::new();
        while let Some(i) = stack.pop() {
            let (x, y) = ((i as u32) % w, (i as u32) / w);
            pixels.push((x, y));
            let mut push = |nx: u32, ny: u32| {
                let j = (ny * w + nx) as usize;
                if !seen[j] && labels[j] == Some(color) {
                    seen[j] = true;
                    stack.push(j);
                }
            };
            if x > 0 {
                push(x - 1, y);
            }
            if x + 1 < w {
                push(x + 1, y);
            }
            if y > 0 {
                push(x, y - 1);
            }
            if y + 1 < h {
                push(x, y + 1);
            }
        }
        out.push(Component { pixels });
    }
    out
}

/// Each shape's extent in units of its radius: (u_min, u_max, v_min, v_max).
fn extents() -> &'static [(Shape, [f32; 4]); 6] {
    static EXTENTS: OnceLock<[(Shape, [f32; 4]); 6]> = OnceLock::new();
    EXTENTS.get_or_init(|| {
        Shape::ALL.map(|s| {
            let n = 400;
            let mut e = [f32::MAX, f32::MIN, f32::MAX, f32::MIN];
            for i in 0..n {
                for j in 0..n {
                    let (u, v) = (
                        i as f32 / n as f32 * 2.0 - 1.0,
                        j as f32 / n as f32 * 2.0 - 1.0,
                    );
                    if s.contains(u, v, 1.0) {
                        e = [e[0].min(u), e[1].max(u), e[2].min(v), e[3].max(v)];
                    }
                }
            }
            (s, e)
        })
    })
}

/// The best IoU of `shape`, rendered as the scene renderer does and fitted to the box
/// `[x1, y1, x2, y2)`, with the component's pixel set `inside` (row-major over the box).
fn fit(shape: Shape, ext: [f32; 4], bbox: (u32, u32, u32, u32), inside: &[bool]) -> f32 {
    let (x1, y1, x2, y2) = bbox;
    let (bw, bh) = ((x2 - x1) as f32, (y2 - y1) as f32);
    let r0 = 0.5 * (bw / (ext[1] - ext[0]) + bh / (ext[3] - ext[2]));
    let mut best = 0f32;
    for scale in [0.92f32, 0.96, 1.0, 1.04, 1.08] {
        let r = r0 * scale;
        for ox in [-0.5f32, 0.0, 0.5] {
            for oy in [-0.5f32, 0.0, 0.5] {
                // Centre such that the shape's extent is centred on the box.
                let cx = x1 as f32 + bw / 2.0 - r * (ext[0] + ext[1]) / 2.0 + ox;
                let cy = y1 as f32 + bh / 2.0 - r * (ext[2] + ext[3]) / 2.0 + oy;
                let (mut inter, mut union) = (0usize, 0usize);
                // One pixel of margin round the box catches template pixels outside it.
                for py in y1.saturating_sub(1)..y2 + 1 {
                    for px in x1.saturating_sub(1)..x2 + 1 {
                        let t = shape.contains(px as f32 + 0.5 - cx, py as f32 + 0.5 - cy, r);
                        let c = px >= x1
                            && px < x2
                            && py >= y1
                            && py < y2
                            && inside[((py - y1) * (x2 - x1) + (px - x1)) as usize];
                        inter += usize::from(t && c);
                        union += usize::from(t || c);
                    }
                }
                if union > 0 {
                    best = best.max(inter as f32 / union as f32);
                }
            }
        }
    }
    best
}

/// The best-fitting shape of a component and its IoU.
fn classify(c: &Component) -> (Shape, f32, (u32, u32, u32, u32)) {
    let x1 = c.pixels.iter().map(|p| p.0).min().unwrap_or(0);
    let y1 = c.pixels.iter().map(|p| p.1).min().unwrap_or(0);
    let x2 = c.pixels.iter().map(|p| p.0).max().unwrap_or(0) + 1;
    let y2 = c.pixels.iter().map(|p| p.1).max().unwrap_or(0) + 1;
    let mut inside = vec![false; ((x2 - x1) * (y2 - y1)) as usize];
    for &(x, y) in &c.pixels {
        inside[((y - y1) * (x2 - x1) + (x - x1)) as usize] = true;
    }
    let bbox = (x1, y1, x2, y2);
    extents()
        .iter()
        .map(|&(s, e)| (s, fit(s, e, bbox, &inside), bbox))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((Shape::Circle, 0.0, bbox))
}

impl Detector for ShapesDetector {
    fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>> {
        let (w, h) = image.dimensions();
        let mut out = Vec::new();
        for c in components(image, self.max_color_distance) {
            if c.pixels.len() < self.min_area {
                continue;
            }
            let (shape, score, (x1, y1, x2, y2)) = classify(&c);
            let mut mask = GrayImage::new(w, h);
            for &(x, y) in &c.pixels {
                mask.put_pixel(x, y, Luma([255]));
            }
            out.push(Detection {
                class: shape.name().to_string(),
                score: (score as f64 / 0.7).min(1.0),
                bbox: BBox::new(x1 as f64, y1 as f64, x2 as f64, y2 as f64),
                mask: Some(mask),
            });
        }
        Ok(out)
    }
}

/// Names a crop's color: the palette color nearest the mean of the pixels that differ from the
/// crop background (`#999` grey, the engine's default) by more than 20.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ShapesColorClassifier;

impl ColorClassifier for ShapesColorClassifier {
    fn classify(&self, crops: &[RgbImage], _class: &str) -> Result<Vec<String>> {
        Ok(crops
            .iter()
            .map(|crop| {
                let fg: Vec<[u8; 3]> = crop
                    .pixels()
                    .map(|p| p.0)
                    .filter(|&p| distance(p, [0x99; 3]) > 20.0)
                    .collect();
                let pixels: Vec<[u8; 3]> = if fg.is_empty() {
                    crop.pixels().map(|p| p.0).collect()
                } else {
                    fg
                };
                let n = pixels.len().max(1) as f32;
                let mean = [0, 1, 2]
                    .map(|k| (pixels.iter().map(|p| p[k] as f32).sum::<f32>() / n).round() as u8);
                Color::nearest(mean).0.name().to_string()
            })
            .collect())
    }
}

/// Scores a GenEval-layout folder of shapes images with [`ShapesDetector`],
/// [`ShapesColorClassifier`] and the official engine settings (results and reports under `out`).
pub fn score_folder(
    images: &std::path::Path,
    out: &std::path::Path,
) -> Result<(Vec<ImageResult>, GenEvalScores)> {
    score_folder_as("geneval", images, out)
}

/// [`score_folder`], naming the prompt set `benchmark` in the summary.
pub fn score_folder_as(
    benchmark: &str,
    images: &std::path::Path,
    out: &std::path::Path,
) -> Result<(Vec<ImageResult>, GenEvalScores)> {
    score_folder_with(benchmark, images, out, &ShapesColorClassifier)
}

/// [`score_folder_as`] with another colour classifier behind the shapes detector (GenEval's
/// zero-shot CLIP, say).
pub fn score_folder_with(
    benchmark: &str,
    images: &std::path::Path,
    out: &std::path::Path,
    classifier: &dyn ColorClassifier,
) -> Result<(Vec<ImageResult>, GenEvalScores)> {
    evaluate_folder(
        benchmark,
        images,
        out,
        &ShapesDetector::default(),
        classifier,
        &EngineConfig::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use echo4o_data::shapes::{Background, Object, Scene, Size};

    #[test]
    fn every_shape_color_and_size_is_recognised_on_both_backgrounds() {
        let mut wrong = Vec::new();
        for (i, shape) in Shape::ALL.into_iter().enumerate() {
            for (j, color) in Color::ALL.into_iter().enumerate() {
                for size in [Size::Small, Size::Large] {
                    for background in [Background::Clean, Background::Cluttered] {
                        let scene = Scene {
                            width: 64,
                            height: 64,
                            background,
                            layout: Default::default(),
                            seed: (i * 10 + j) as u64,
                            objects: vec![Object {
                                shape,
                                color,
                                size,
                                x: 20.3 + i as f32 * 3.1,
                                y: 25.7 + j as f32 * 1.3,
                            }],
                        };
                        let found = ShapesDetector::default().detect(&scene.render()).unwrap();
                        let ok = found.len() == 1 && found[0].class == shape.name();
                        if !ok {
                            let got: Vec<(String, f64)> =
                                found.iter().map(|d| (d.class.clone(), d.score)).collect();
                            wrong.push(format!(
                                "{shape:?} {color:?} {size:?} {background:?}: {got:?}"
                            ));
                        }
                    }
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of 240 wrong:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }

    #[test]
    fn shapes_sized_to_cells_are_recognised_and_neighbours_stay_apart() {
        use echo4o_data::shapes::Layout;
        let cell = |col: u32, row: u32| (col as f32 * 16.0 + 8.0, row as f32 * 16.0 + 8.0);
        let mut wrong = Vec::new();
        for (i, shape) in Shape::ALL.into_iter().enumerate() {
            for (j, color) in Color::ALL.into_iter().enumerate() {
                for size in [Size::Small, Size::Large] {
                    // A full 4x4 grid of one shape, color and size: sixteen objects, none merged.
                    let objects = (0..16)
                        .map(|k| {
                            let (x, y) = cell(k % 4, k / 4);
                            Object {
                                shape,
                                color,
                                size,
                                x,
                                y,
                            }
                        })
                        .collect();
                    let scene = Scene {
                        width: 64,
                        height: 64,
                        background: [Background::Clean, Background::Cluttered][(i + j) % 2],
                        layout: Layout::Cells(4),
                        seed: (i * 10 + j) as u64,
                        objects,
                    };
                    let found = ShapesDetector::default().detect(&scene.render()).unwrap();
                    let right = found.iter().filter(|d| d.class == shape.name()).count();
                    if found.len() != 16 || right != 16 {
                        wrong.push(format!(
                            "{shape:?} {color:?} {size:?}: {right} of {}",
                            found.len()
                        ));
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
