//! The shapes world: procedural scenes of colored shapes with exact ground truth, the miniature
//! in which echo4o reproduces the Echo-4o experiment on a CPU.
//!
//! A [`Scene`] is a list of placed [`Object`]s (one of six [`Shape`]s, one of GenEval's ten
//! [`Color`]s, a [`Size`]) over a clean or cluttered [`Background`]; [`Scene::render`] draws it
//! deterministically. [`layout`] places objects to satisfy a request (counts, absolute regions,
//! relative positions) and [`captions`] writes the two caption styles of the experiment with
//! GenEval-form metadata, so the GenEval rule engine (echo4o-bench) can score any image made from
//! them.
//!
//! ```
//! use echo4o_data::shapes::{Background, Color, Object, Scene, Shape, Size};
//!
//! let scene = Scene {
//!     width: 64,
//!     height: 64,
//!     background: Background::Clean,
//!     layout: Default::default(),
//!     seed: 0,
//!     objects: vec![Object { shape: Shape::Star, color: Color::Red, size: Size::Large, x: 32.0, y: 32.0 }],
//! };
//! let image = scene.render();
//! assert_eq!(image.get_pixel(32, 32).0, Color::Red.rgb());
//! assert_eq!(image.get_pixel(2, 2).0, [128, 128, 128]);
//! ```

pub mod captions;
pub mod layout;
pub mod source;

use echo4o_core::image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The six shape classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// A disc.
    Circle,
    /// An axis-aligned square.
    Square,
    /// An upward-pointing triangle.
    Triangle,
    /// A square turned 45 degrees.
    Diamond,
    /// A five-pointed star.
    Star,
    /// A plus sign with arms a third of its width.
    Cross,
}

impl Shape {
    /// Every shape.
    pub const ALL: [Shape; 6] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Diamond,
        Shape::Star,
        Shape::Cross,
    ];

    /// The class name used in prompts and metadata.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Diamond => "diamond",
            Shape::Star => "star",
            Shape::Cross => "cross",
        }
    }

    /// The shape called `name`.
    pub fn from_name(name: &str) -> Option<Shape> {
        Shape::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the point `(dx, dy)` (relative to the centre, y down) lies inside the shape of
    /// radius `r`. Every shape fits in the disc of radius `r`, so placement can treat objects as
    /// discs.
    pub fn contains(self, dx: f32, dy: f32, r: f32) -> bool {
        let (u, v) = (dx / r, dy / r);
        match self {
            Shape::Circle => u * u + v * v <= 1.0,
            Shape::Square => u.abs() <= 0.72 && v.abs() <= 0.72,
            Shape::Diamond => u.abs() + v.abs() <= 1.0,
            Shape::Cross => {
                let (a, b) = (u.abs(), v.abs());
                a <= 0.9 && b <= 0.9 && (a <= 0.3 || b <= 0.3)
            }
            Shape::Triangle => {
                // Apex (0, -1), base from (-0.85, 0.5) to (0.85, 0.5).
                (-1.0..=0.5).contains(&v) && u.abs() <= 0.85 * (v + 1.0) / 1.5
            }
            Shape::Star => star_contains(u, v),
        }
    }
}

/// A five-pointed star of outer radius 1 and inner radius 0.5, apex up.
fn star_contains(u: f32, v: f32) -> bool {
    let rho = (u * u + v * v).sqrt();
    if rho > 1.0 {
        return false;
    }
    if rho < 1e-6 {
        return true;
    }
    // Angle from the upward axis, folded into one of ten half-sectors of 36 degrees.
    let theta = u.atan2(-v).rem_euclid(std::f32::consts::TAU);
    let sector = std::f32::consts::TAU / 10.0;
    let phi = theta % (2.0 * sector);
    let phi = if phi > sector {
        2.0 * sector - phi
    } else {
        phi
    };
    // Edge from the tip (1, 0) to the inner vertex (0.45, sector), in polar form.
    let (tip, inner) = ((1.0f32, 0.0f32), (0.5 * sector.cos(), 0.5 * sector.sin()));
    let (px, py) = (rho * phi.cos(), rho * phi.sin());
    // Inside when on the centre's side of the edge line.
    let cross = |ax: f32, ay: f32, bx: f32, by: f32, x: f32, y: f32| {
        (bx - ax) * (y - ay) - (by - ay) * (x - ax)
    };
    let side_point = cross(tip.0, tip.1, inner.0, inner.1, px, py);
    let side_centre = cross(tip.0, tip.1, inner.0, inner.1, 0.0, 0.0);
    side_point * side_centre >= 0.0
}

/// GenEval's ten colors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    /// red
    Red,
    /// orange
    Orange,
    /// yellow
    Yellow,
    /// green
    Green,
    /// blue
    Blue,
    /// purple
    Purple,
    /// pink
    Pink,
    /// brown
    Brown,
    /// black
    Black,
    /// white
    White,
}

impl Color {
    /// Every color, in GenEval's order.
    pub const ALL: [Color; 10] = [
        Color::Red,
        Color::Orange,
        Color::Yellow,
        Color::Green,
        Color::Blue,
        Color::Purple,
        Color::Pink,
        Color::Brown,
        Color::Black,
        Color::White,
    ];

    /// The color's name (GenEval's).
    pub fn name(self) -> &'static str {
        match self {
            Color::Red => "red",
            Color::Orange => "orange",
            Color::Yellow => "yellow",
            Color::Green => "green",
            Color::Blue => "blue",
            Color::Purple => "purple",
            Color::Pink => "pink",
            Color::Brown => "brown",
            Color::Black => "black",
            Color::White => "white",
        }
    }

    /// The color called `name`.
    pub fn from_name(name: &str) -> Option<Color> {
        Color::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The rendered RGB value: saturated, far from each other and from the neutral greys of the
    /// backgrounds.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Color::Red => [220, 30, 30],
            Color::Orange => [250, 140, 0],
            Color::Yellow => [245, 225, 20],
            Color::Green => [30, 165, 50],
            Color::Blue => [30, 70, 225],
            Color::Purple => [135, 40, 175],
            Color::Pink => [250, 135, 200],
            Color::Brown => [120, 70, 25],
            Color::Black => [15, 15, 15],
            Color::White => [248, 248, 248],
        }
    }

    /// The palette color nearest to `rgb` and its Euclidean distance.
    pub fn nearest(rgb: [u8; 3]) -> (Color, f32) {
        Color::ALL
            .into_iter()
            .map(|c| (c, distance(c.rgb(), rgb)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((Color::Black, f32::INFINITY))
    }
}

/// Euclidean distance between two RGB values.
pub fn distance(a: [u8; 3], b: [u8; 3]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, y)| (x as f32 - y as f32).powi(2))
        .sum::<f32>()
        .sqrt()
}

/// Two object sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// Radius 11% of the shorter side.
    Small,
    /// Radius 18% of the shorter side.
    Large,
}

impl Size {
    /// The radius in pixels on a `width x height` canvas in the free layout (in cells:
    /// [`Layout::radius`]).
    pub fn radius(self, width: u32, height: u32) -> f32 {
        let side = width.min(height) as f32;
        match self {
            Size::Small => side * 0.11,
            Size::Large => side * 0.18,
        }
    }
}

/// Where objects may stand, and so how large they are drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Anywhere on the canvas, sized by [`Size::radius`].
    #[default]
    Free,
    /// At the centres of the cells of an `n x n` grid, at most one object a cell, each sized to
    /// its cell (large: radius 0.42 of the cell side, small: 0.32). When a model's image tokens
    /// cover one cell each, every object is then exactly one token: a small transformer learns to
    /// draw such a token long before it learns to stitch one shape from several (BENCHMARKS.md,
    /// "Objects in cells").
    Cells(u32),
}

impl Layout {
    /// Whether this is [`Layout::Free`].
    pub fn is_free(&self) -> bool {
        *self == Layout::Free
    }

    /// The radius of an object of `size` on a `width x height` canvas.
    pub fn radius(self, size: Size, width: u32, height: u32) -> f32 {
        match self {
            Layout::Free => size.radius(width, height),
            Layout::Cells(n) => {
                let cell = width.min(height) as f32 / n.max(1) as f32;
                match size {
                    Size::Small => cell * 0.32,
                    Size::Large => cell * 0.42,
                }
            }
        }
    }
}

/// The canvas behind the objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Background {
    /// Uniform grey 128: the Echo-style "pure background".
    Clean,
    /// Grey with low-contrast neutral blobs and stripes: what web photos look like here.
    Cluttered,
}

/// The background grey.
pub const BACKGROUND_GREY: u8 = 128;

/// One placed object.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Object {
    /// Its class.
    pub shape: Shape,
    /// Its color.
    pub color: Color,
    /// Its size.
    pub size: Size,
    /// Centre, pixels from the left.
    pub x: f32,
    /// Centre, pixels from the top.
    pub y: f32,
}

/// A scene: what to draw, exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    /// Canvas width.
    pub width: u32,
    /// Canvas height.
    pub height: u32,
    /// The background.
    pub background: Background,
    /// How the objects were placed, which sets their drawn size.
    #[serde(default, skip_serializing_if = "Layout::is_free")]
    pub layout: Layout,
    /// Seed of the background's clutter.
    pub seed: u64,
    /// The objects, drawn in order.
    pub objects: Vec<Object>,
}

impl Scene {
    /// Draws the scene: the background, then each object (pixel centres inside the shape get its
    /// color; no anti-aliasing, so the ground truth is exact).
    pub fn render(&self) -> RgbImage {
        let mut img = self.background_image();
        for o in &self.objects {
            let r = self.radius(o.size);
            let x0 = (o.x - r).floor().max(0.0) as u32;
            let y0 = (o.y - r).floor().max(0.0) as u32;
            let x1 = ((o.x + r).ceil() as u32).min(self.width.saturating_sub(1));
            let y1 = ((o.y + r).ceil() as u32).min(self.height.saturating_sub(1));
            for py in y0..=y1 {
                for px in x0..=x1 {
                    let (dx, dy) = (px as f32 + 0.5 - o.x, py as f32 + 0.5 - o.y);
                    if o.shape.contains(dx, dy, r) {
                        img.put_pixel(px, py, Rgb(o.color.rgb()));
                    }
                }
            }
        }
        img
    }

    /// The drawn radius of an object of `size` in this scene.
    pub fn radius(&self, size: Size) -> f32 {
        self.layout.radius(size, self.width, self.height)
    }

    fn background_image(&self) -> RgbImage {
        let g = BACKGROUND_GREY;
        let mut img = RgbImage::from_pixel(self.width, self.height, Rgb([g, g, g]));
        if self.background == Background::Clean {
            return img;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed ^ 0x5ca1_ab1e);
        let (w, h) = (self.width as f32, self.height as f32);
        // Soft neutral blobs (grey 100..156) and thin stripes: texture without color, so no
        // clutter pixel is nearer a palette color than the grey axis.
        for _ in 0..6 {
            let (cx, cy) = (rng.random::<f32>() * w, rng.random::<f32>() * h);
            let rad = (0.1 + 0.25 * rng.random::<f32>()) * w.min(h);
            let level = 100 + rng.random_range(0..57u8);
            for (px, py, p) in img.enumerate_pixels_mut() {
                let d = ((px as f32 - cx).powi(2) + (py as f32 - cy).powi(2)).sqrt();
                if d < rad {
                    let a = 1.0 - d / rad;
                    let v = p.0[0] as f32 * (1.0 - a) + level as f32 * a;
                    p.0 = [v as u8; 3];
                }
            }
        }
        for _ in 0..4 {
            let horizontal = rng.random::<bool>();
            let at = rng.random_range(0..self.width.min(self.height));
            let level = 96 + rng.random_range(0..64u8);
            for t in 0..self.width.max(self.height) {
                let (px, py) = if horizontal { (t, at) } else { (at, t) };
                if px < self.width && py < self.height {
                    img.put_pixel(px, py, Rgb([level; 3]));
                }
            }
        }
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shapes_colors_are_genevals_in_its_order() {
        assert_eq!(
            Color::ALL.map(|c| c.name()),
            echo4o_core::vocab::GENEVAL_COLORS
        );
    }

    #[test]
    fn every_shape_fits_its_disc_and_covers_its_centre() {
        for s in Shape::ALL {
            assert!(s.contains(0.0, 0.0, 10.0), "{s:?}");
            for i in 0..400 {
                let (u, v) = ((i % 20) as f32 - 9.5, (i / 20) as f32 - 9.5);
                if s.contains(u, v, 10.0) {
                    assert!(u * u + v * v <= 100.0 + 1e-3, "{s:?} at ({u}, {v})");
                }
            }
        }
    }

    #[test]
    fn shapes_fill_distinct_fractions_of_their_disc() {
        let fill = |s: Shape| {
            let n = 200;
            let inside = (0..n * n)
                .filter(|i| {
                    let (u, v) = (
                        (i % n) as f32 / n as f32 * 2.0 - 1.0,
                        (i / n) as f32 / n as f32 * 2.0 - 1.0,
                    );
                    s.contains(u, v, 1.0)
                })
                .count();
            inside as f32 / (n * n) as f32
        };
        let fills: Vec<f32> = Shape::ALL.into_iter().map(fill).collect();
        // circle pi/4, square 0.52, triangle 0.36, diamond 0.5, star ~0.28, cross ~0.36
        assert!(
            (fills[0] - std::f32::consts::FRAC_PI_4).abs() < 0.01,
            "{fills:?}"
        );
        assert!(fills.iter().all(|f| *f > 0.15), "{fills:?}");
    }

    #[test]
    fn clutter_stays_on_the_grey_axis() {
        let scene = Scene {
            width: 64,
            height: 64,
            background: Background::Cluttered,
            layout: Layout::Free,
            seed: 3,
            objects: vec![],
        };
        let img = scene.render();
        assert!(img.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));
        assert!(img.pixels().any(|p| p.0[0] != BACKGROUND_GREY));
        assert_eq!(img, scene.render(), "deterministic");
    }

    #[test]
    fn palette_colors_are_far_apart() {
        for a in Color::ALL {
            for b in Color::ALL {
                if a != b {
                    assert!(distance(a.rgb(), b.rgb()) > 60.0, "{a:?} {b:?}");
                }
            }
            assert_eq!(Color::nearest(a.rgb()).0, a);
        }
    }
}
