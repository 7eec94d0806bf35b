//! Placing objects so that a request holds: counts, absolute regions (GenEval++'s `region`),
//! one relative position between two groups (GenEval's `position`), no overlaps.

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{Background, Color, Layout, Object, Scene, Shape, Size};

/// An absolute half of the image (GenEval++'s `region`): the object's centre lies in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    /// Left half.
    Left,
    /// Right half.
    Right,
    /// Upper half (GenEval++ says "on the above").
    Above,
    /// Lower half.
    Below,
}

impl Region {
    /// Every region.
    pub const ALL: [Region; 4] = [Region::Left, Region::Right, Region::Above, Region::Below];

    /// GenEval++'s word.
    pub fn name(self) -> &'static str {
        match self {
            Region::Left => "left",
            Region::Right => "right",
            Region::Above => "above",
            Region::Below => "below",
        }
    }

    /// The opposite half.
    pub fn opposite(self) -> Region {
        match self {
            Region::Left => Region::Right,
            Region::Right => Region::Left,
            Region::Above => Region::Below,
            Region::Below => Region::Above,
        }
    }

    /// Whether a centre `(x, y)` lies in this half of a `width x height` image.
    pub fn holds(self, x: f32, y: f32, width: u32, height: u32) -> bool {
        let (cx, cy) = (width as f32 / 2.0, height as f32 / 2.0);
        match self {
            Region::Left => x < cx,
            Region::Right => x > cx,
            Region::Above => y < cy,
            Region::Below => y > cy,
        }
    }
}

/// A relation of one object to another (GenEval's `position`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Relation {
    /// "left of"
    LeftOf,
    /// "right of"
    RightOf,
    /// "above"
    Above,
    /// "below"
    Below,
}

impl Relation {
    /// Every relation.
    pub const ALL: [Relation; 4] = [
        Relation::LeftOf,
        Relation::RightOf,
        Relation::Above,
        Relation::Below,
    ];

    /// GenEval's phrase.
    pub fn name(self) -> &'static str {
        match self {
            Relation::LeftOf => "left of",
            Relation::RightOf => "right of",
            Relation::Above => "above",
            Relation::Below => "below",
        }
    }

    /// Whether `a` stands in this relation to `b` clearly: the offset runs along the relation's
    /// axis (the cross-axis offset at most 0.3 of it) and exceeds both radii plus a gap. Scenes
    /// placed so satisfy GenEval's `relative_position` with its 0.1 threshold.
    pub fn holds(self, a: (f32, f32, f32), b: (f32, f32, f32)) -> bool {
        let (dx, dy) = (a.0 - b.0, a.1 - b.1);
        let (along, across) = match self {
            Relation::LeftOf => (-dx, dy),
            Relation::RightOf => (dx, dy),
            Relation::Above => (-dy, dx),
            Relation::Below => (dy, dx),
        };
        along >= a.2 + b.2 + 2.0 && across.abs() <= 0.3 * along
    }
}

/// Identical objects requested together.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Their class.
    pub shape: Shape,
    /// Their color.
    pub color: Color,
    /// Their size.
    pub size: Size,
    /// How many (1 to 6).
    pub count: u32,
    /// The half they must be in.
    pub region: Option<Region>,
}

/// What a scene must show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The object groups.
    pub groups: Vec<Group>,
    /// `(a, relation, b)`: every object of group `a` stands in `relation` to every object of `b`.
    pub relation: Option<(usize, Relation, usize)>,
    /// The background.
    pub background: Background,
}

/// Why a request could not be placed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "cannot place {objects} objects on a {width}x{height} canvas as requested ({attempts} attempts)"
)]
pub struct LayoutError {
    /// Objects requested.
    pub objects: u32,
    /// Canvas width.
    pub width: u32,
    /// Canvas height.
    pub height: u32,
    /// Attempts made.
    pub attempts: u32,
}

const ATTEMPTS: u32 = 200;

/// Places `request` anywhere on a `width x height` canvas ([`Layout::Free`]), deterministically
/// from `seed`: random positions, rejection-sampled until every constraint holds and no two
/// objects' discs come within 2 pixels.
pub fn place(request: &Request, width: u32, height: u32, seed: u64) -> Result<Scene, LayoutError> {
    place_in(request, width, height, Layout::Free, seed)
}

/// [`place`] in any [`Layout`]: in [`Layout::Cells`] the random positions are cell centres.
pub fn place_in(
    request: &Request,
    width: u32,
    height: u32,
    layout: Layout,
    seed: u64,
) -> Result<Scene, LayoutError> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let objects: u32 = request.groups.iter().map(|g| g.count).sum();
    let radius = |size: Size| layout.radius(size, width, height);
    // Groups that others are placed relative to go first.
    let mut order: Vec<usize> = (0..request.groups.len()).collect();
    if let Some((a, _, _)) = request.relation {
        order.retain(|&i| i != a);
        order.push(a);
    }
    'attempt: for _ in 0..ATTEMPTS {
        let mut placed: Vec<(usize, Object)> = Vec::new();
        for &gi in &order {
            let g = &request.groups[gi];
            let r = radius(g.size);
            for _ in 0..g.count {
                let mut ok = None;
                for _ in 0..100 {
                    let (x, y) = match layout {
                        Layout::Free => (
                            r + 1.0 + rng.random::<f32>() * (width as f32 - 2.0 * r - 2.0),
                            r + 1.0 + rng.random::<f32>() * (height as f32 - 2.0 * r - 2.0),
                        ),
                        Layout::Cells(n) => {
                            let n = n.max(1);
                            let (col, row) = (rng.random_range(0..n), rng.random_range(0..n));
                            (
                                (col as f32 + 0.5) * width as f32 / n as f32,
                                (row as f32 + 0.5) * height as f32 / n as f32,
                            )
                        }
                    };
                    if let Some(region) = g.region {
                        // A margin keeps the centre clearly inside the half.
                        let m = 2.0;
                        let inside = match region {
                            Region::Left => x < width as f32 / 2.0 - m,
                            Region::Right => x > width as f32 / 2.0 + m,
                            Region::Above => y < height as f32 / 2.0 - m,
                            Region::Below => y > height as f32 / 2.0 + m,
                        };
                        if !inside {
                            continue;
                        }
                    }
                    let clear = placed.iter().all(|(_, o)| {
                        let ro = radius(o.size);
                        (o.x - x).hypot(o.y - y) >= r + ro + 2.0
                    });
                    if !clear {
                        continue;
                    }
                    if let Some((a, rel, b)) = request.relation
                        && a == gi
                    {
                        let holds = placed
                            .iter()
                            .filter(|(i, _)| *i == b)
                            .all(|(_, o)| rel.holds((x, y, r), (o.x, o.y, radius(o.size))));
                        if !holds {
                            continue;
                        }
                    }
                    ok = Some((x, y));
                    break;
                }
                let Some((x, y)) = ok else {
                    continue 'attempt;
                };
                placed.push((
                    gi,
                    Object {
                        shape: g.shape,
                        color: g.color,
                        size: g.size,
                        x,
                        y,
                    },
                ));
            }
        }
        placed.sort_by_key(|(gi, _)| *gi);
        return Ok(Scene {
            width,
            height,
            background: request.background,
            layout,
            seed,
            objects: placed.into_iter().map(|(_, o)| o).collect(),
        });
    }
    Err(LayoutError {
        objects,
        width,
        height,
        attempts: ATTEMPTS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn group(shape: Shape, count: u32, region: Option<Region>) -> Group {
        Group {
            shape,
            color: Color::Red,
            size: Size::Small,
            count,
            region,
        }
    }

    proptest! {
        #[test]
        fn placed_scenes_satisfy_their_request(
            seed in 0u64..10_000,
            counts in proptest::collection::vec(1u32..4, 1..3),
            region in proptest::option::of(0usize..4),
            relation in proptest::option::of(0usize..4),
        ) {
            let mut groups: Vec<Group> = counts
                .iter()
                .enumerate()
                .map(|(i, &c)| group(Shape::ALL[i], c, None))
                .collect();
            groups[0].region = region.map(|r| Region::ALL[r]);
            let relation = match (relation, groups.len()) {
                (Some(r), 2) => {
                    groups[0].count = 1;
                    groups[1].count = 1;
                    groups[0].region = None;
                    Some((1, Relation::ALL[r], 0))
                }
                _ => None,
            };
            let request = Request { groups: groups.clone(), relation, background: Background::Clean };
            let scene = place(&request, 64, 64, seed).unwrap();
            for (gi, g) in groups.iter().enumerate() {
                let mine: Vec<&Object> = scene.objects.iter().filter(|o| o.shape == g.shape).collect();
                prop_assert_eq!(mine.len() as u32, g.count);
                if let Some(r) = g.region {
                    prop_assert!(mine.iter().all(|o| r.holds(o.x, o.y, 64, 64)));
                }
                if let Some((a, rel, b)) = relation && a == gi {
                    let rb = &scene.objects.iter().find(|o| o.shape == groups[b].shape).unwrap();
                    let rad = Size::Small.radius(64, 64);
                    prop_assert!(mine.iter().all(|o| rel.holds((o.x, o.y, rad), (rb.x, rb.y, rad))));
                }
            }
            for (i, a) in scene.objects.iter().enumerate() {
                for b in &scene.objects[i + 1..] {
                    prop_assert!((a.x - b.x).hypot(a.y - b.y) >= 2.0 * Size::Small.radius(64, 64) + 2.0);
                }
            }
            prop_assert_eq!(place(&request, 64, 64, seed).unwrap(), scene);
        }
    }

    proptest! {
        #[test]
        fn cell_layouts_put_one_object_at_the_centre_of_a_cell(
            seed in 0u64..10_000,
            n in 3u32..6,
            counts in proptest::collection::vec(1u32..4, 1..3),
            large in proptest::bool::ANY,
        ) {
            let size = if large { Size::Large } else { Size::Small };
            let groups: Vec<Group> = counts
                .iter()
                .enumerate()
                .map(|(i, &c)| Group { size, ..group(Shape::ALL[i], c, None) })
                .collect();
            let request = Request { groups, relation: None, background: Background::Clean };
            let scene = place_in(&request, 64, 64, Layout::Cells(n), seed).unwrap();
            let cell = 64.0 / n as f32;
            let mut cells = Vec::new();
            for o in &scene.objects {
                let (col, row) = (o.x / cell - 0.5, o.y / cell - 0.5);
                prop_assert!((col - col.round()).abs() < 1e-4 && (row - row.round()).abs() < 1e-4);
                // The whole shape stays inside its cell.
                prop_assert!(scene.radius(o.size) < cell / 2.0);
                cells.push((col.round() as i32, row.round() as i32));
            }
            cells.sort_unstable();
            cells.dedup();
            prop_assert_eq!(cells.len(), scene.objects.len());
        }
    }

    #[test]
    fn a_relation_holds_between_cells_of_one_row() {
        let request = Request {
            groups: vec![
                group(Shape::Circle, 1, None),
                Group {
                    size: Size::Large,
                    ..group(Shape::Star, 1, None)
                },
            ],
            relation: Some((1, Relation::LeftOf, 0)),
            background: Background::Clean,
        };
        for seed in 0..50 {
            let scene = place_in(&request, 64, 64, Layout::Cells(4), seed).unwrap();
            let (circle, star) = (&scene.objects[0], &scene.objects[1]);
            assert_eq!(circle.y, star.y, "seed {seed}");
            assert!(star.x < circle.x, "seed {seed}");
        }
    }

    #[test]
    fn impossible_requests_fail_with_a_clear_error() {
        let request = Request {
            groups: vec![Group {
                size: Size::Large,
                ..group(Shape::Circle, 40, None)
            }],
            relation: None,
            background: Background::Clean,
        };
        let e = place(&request, 64, 64, 1).unwrap_err();
        assert!(e.to_string().contains("40 objects"), "{e}");
    }
}
