//! GenEval's box geometry: IoU with the `+1`-pixel area convention, greedy NMS, and the relative
//! position rule.

use serde::{Deserialize, Serialize};

/// An axis-aligned box in pixel coordinates, `x1 <= x2`, `y1 <= y2` (as detectors report them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    /// Left.
    pub x1: f64,
    /// Top.
    pub y1: f64,
    /// Right.
    pub x2: f64,
    /// Bottom.
    pub y2: f64,
}

impl BBox {
    /// A box from its corners.
    pub fn new(x1: f64, y1: f64, x2: f64, y2: f64) -> Self {
        BBox { x1, y1, x2, y2 }
    }

    fn plus_one_area(&self) -> f64 {
        (self.x2 - self.x1 + 1.0).max(0.0) * (self.y2 - self.y1 + 1.0).max(0.0)
    }

    /// The centre.
    pub fn center(&self) -> (f64, f64) {
        ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)
    }
}

/// GenEval's `compute_iou`: areas count `+1` pixel per side; 0 when the union is empty.
pub fn iou(a: &BBox, b: &BBox) -> f64 {
    let inter = BBox::new(
        a.x1.max(b.x1),
        a.y1.max(b.y1),
        a.x2.min(b.x2),
        a.y2.min(b.y2),
    );
    let i = inter.plus_one_area();
    let u = a.plus_one_area() + b.plus_one_area() - i;
    if u != 0.0 { i / u } else { 0.0 }
}

/// The relations GenEval's position task uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Relation {
    /// `left of`.
    #[serde(rename = "left of")]
    LeftOf,
    /// `right of`.
    #[serde(rename = "right of")]
    RightOf,
    /// `above`.
    #[serde(rename = "above")]
    Above,
    /// `below`.
    #[serde(rename = "below")]
    Below,
}

impl Relation {
    /// The text used in prompts and reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::LeftOf => "left of",
            Relation::RightOf => "right of",
            Relation::Above => "above",
            Relation::Below => "below",
        }
    }
}

/// GenEval's `relative_position(A, B)` with the given threshold (officially 0.1): where A is
/// relative to B, allowing for the objects' sizes. Returned in a fixed order (left, right, above,
/// below), at most one per axis.
pub fn relative_position(a: &BBox, b: &BBox, threshold: f64) -> Vec<Relation> {
    let (ca, cb) = (a.center(), b.center());
    let offset = (ca.0 - cb.0, ca.1 - cb.1);
    let dims = (
        (a.x2 - a.x1).abs() + (b.x2 - b.x1).abs(),
        (a.y2 - a.y1).abs() + (b.y2 - b.y1).abs(),
    );
    let revise = |o: f64, d: f64| (o.abs() - threshold * d).max(0.0) * sign(o);
    let revised = (revise(offset.0, dims.0), revise(offset.1, dims.1));
    if revised.0.abs() < 1e-3 && revised.1.abs() < 1e-3 {
        return Vec::new();
    }
    let norm = offset.0.hypot(offset.1);
    let (dx, dy) = (revised.0 / norm, revised.1 / norm);
    let mut rels = Vec::new();
    if dx < -0.5 {
        rels.push(Relation::LeftOf);
    }
    if dx > 0.5 {
        rels.push(Relation::RightOf);
    }
    if dy < -0.5 {
        rels.push(Relation::Above);
    }
    if dy > 0.5 {
        rels.push(Relation::Below);
    }
    rels
}

/// numpy's `sign`: -1, 0 or 1.
fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn iou_uses_the_plus_one_convention() {
        let a = BBox::new(0.0, 0.0, 9.0, 9.0); // 10x10 = 100 with +1
        assert_eq!(iou(&a, &a), 1.0);
        let b = BBox::new(5.0, 0.0, 14.0, 9.0); // overlap 5x10 = 50; union 150
        assert!((iou(&a, &b) - 50.0 / 150.0).abs() < 1e-12);
        let far = BBox::new(100.0, 100.0, 101.0, 101.0);
        assert_eq!(iou(&a, &far), 0.0);
    }

    #[test]
    fn position_examples() {
        let left = BBox::new(0.0, 40.0, 20.0, 60.0);
        let right = BBox::new(80.0, 40.0, 100.0, 60.0);
        assert_eq!(
            relative_position(&left, &right, 0.1),
            vec![Relation::LeftOf]
        );
        assert_eq!(
            relative_position(&right, &left, 0.1),
            vec![Relation::RightOf]
        );
        let top = BBox::new(40.0, 0.0, 60.0, 20.0);
        let bottom = BBox::new(40.0, 80.0, 60.0, 100.0);
        assert_eq!(relative_position(&top, &bottom, 0.1), vec![Relation::Above]);
        // Overlapping boxes within the threshold have no relation.
        assert!(relative_position(&left, &BBox::new(1.0, 41.0, 21.0, 61.0), 0.1).is_empty());
        // Diagonal: both components above 0.5.
        let diag = BBox::new(80.0, 80.0, 90.0, 90.0);
        assert_eq!(
            relative_position(&diag, &BBox::new(0.0, 0.0, 10.0, 10.0), 0.1),
            vec![Relation::RightOf, Relation::Below]
        );
    }

    fn bbox() -> impl Strategy<Value = BBox> {
        (0.0..500.0f64, 0.0..500.0f64, 1.0..200.0f64, 1.0..200.0f64)
            .prop_map(|(x, y, w, h)| BBox::new(x, y, x + w, y + h))
    }

    fn mirror_x(b: &BBox, width: f64) -> BBox {
        BBox::new(width - b.x2, b.y1, width - b.x1, b.y2)
    }

    fn swap(r: Relation) -> Relation {
        match r {
            Relation::LeftOf => Relation::RightOf,
            Relation::RightOf => Relation::LeftOf,
            other => other,
        }
    }

    proptest! {
        #[test]
        fn iou_is_symmetric_and_bounded(a in bbox(), b in bbox()) {
            let (ab, ba) = (iou(&a, &b), iou(&b, &a));
            prop_assert!((ab - ba).abs() < 1e-12);
            prop_assert!((0.0..=1.0).contains(&ab));
        }

        #[test]
        fn mirrored_boxes_swap_left_and_right(a in bbox(), b in bbox()) {
            let rel = relative_position(&a, &b, 0.1);
            let mirrored = relative_position(&mirror_x(&a, 1000.0), &mirror_x(&b, 1000.0), 0.1);
            let swapped: Vec<_> = rel.iter().map(|r| swap(*r)).collect();
            let mut s1 = swapped.clone(); s1.sort_by_key(|r| r.as_str());
            let mut s2 = mirrored.clone(); s2.sort_by_key(|r| r.as_str());
            prop_assert_eq!(s1, s2);
        }

        #[test]
        fn relations_are_antisymmetric(a in bbox(), b in bbox()) {
            let ab = relative_position(&a, &b, 0.1);
            let ba = relative_position(&b, &a, 0.1);
            let opposite = |r: Relation| match r {
                Relation::LeftOf => Relation::RightOf,
                Relation::RightOf => Relation::LeftOf,
                Relation::Above => Relation::Below,
                Relation::Below => Relation::Above,
            };
            for r in &ab {
                prop_assert!(ba.contains(&opposite(*r)));
            }
            prop_assert_eq!(ab.len(), ba.len());
        }
    }
}
