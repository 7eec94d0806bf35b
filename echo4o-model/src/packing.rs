//! Independent examples packed into one sequence, as training packs a batch (`pack_sequence` of
//! the official `data/dataset_base.py`): which rows form each example and which keys each row
//! attends to.
//!
//! Every mask the official packing builds gives each row a *prefix* of its own example: text
//! sees the tokens before it and itself, an image split its example up to its own end. So a
//! packed batch is described exactly by one number per row, and attention over it needs no dense
//! `[L, L]` mask: the CPU kernel stops each row at its prefix, and the other backends build each
//! example's small mask from the prefixes ([`PackedSegments::mask`]).

/// How a split of a packed example attends within itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Text: each token sees the tokens before it.
    Causal(usize),
    /// An image split (markers and latents): all of itself.
    Full(usize),
}

impl Split {
    /// Rows in the split.
    pub fn len(self) -> usize {
        match self {
            Split::Causal(n) | Split::Full(n) => n,
        }
    }

    /// Whether the split has no rows.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// Packed examples (segments) that attend only within themselves, each row to a prefix of its
/// segment. Rows of a segment need not be consecutive in the packed sequence (a sequence
/// regrouped by expert scatters them), so each segment lists its rows in its own order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedSegments {
    /// Segment `s` is positions `bounds[s]..bounds[s + 1]` of `rows` and `visible`.
    bounds: Vec<usize>,
    /// The packed row of each position.
    rows: Vec<usize>,
    /// How many of its segment's first positions each position attends to (at least 1: itself
    /// or more, so no row is fully masked).
    visible: Vec<usize>,
}

/// One segment: its rows in the packed sequence and the prefix each attends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// The packed row of each position, in the segment's order.
    pub rows: &'a [usize],
    /// The number of the segment's first positions each position attends to.
    pub visible: &'a [usize],
}

impl Segment<'_> {
    /// Positions in the segment.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the segment is empty (never, for a segment of [`PackedSegments`]).
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl PackedSegments {
    /// Examples packed in order, each a list of splits: every split sees the earlier splits of
    /// its example and itself (text causally, images fully); nothing crosses examples and
    /// nothing sees a later split. Empty examples take no rows and form no segment.
    pub fn new(examples: &[Vec<Split>]) -> Self {
        let mut packed = PackedSegments {
            bounds: vec![0],
            rows: Vec::new(),
            visible: Vec::new(),
        };
        for splits in examples {
            let mut split_start = 0;
            for split in splits {
                for i in 0..split.len() {
                    packed.visible.push(match split {
                        Split::Causal(_) => split_start + i + 1,
                        Split::Full(n) => split_start + n,
                    });
                }
                split_start += split.len();
            }
            if split_start > 0 {
                let first = packed.rows.len();
                packed.rows.extend(first..first + split_start);
                packed.bounds.push(packed.rows.len());
            }
        }
        packed
    }

    /// Rows of the packed sequence.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row is packed.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The segments, in packing order.
    pub fn segments(&self) -> impl ExactSizeIterator<Item = Segment<'_>> + '_ {
        self.bounds.windows(2).map(|w| Segment {
            rows: &self.rows[w[0]..w[1]],
            visible: &self.visible[w[0]..w[1]],
        })
    }

    /// The same segments after the packed rows move: row `r` becomes row `to[r]`.
    ///
    /// # Panics
    /// If `to` is not a permutation of the packed rows.
    pub fn moved(&self, to: &[usize]) -> Self {
        let mut seen = vec![false; to.len()];
        assert!(
            to.len() == self.len()
                && to
                    .iter()
                    .all(|&r| r < to.len() && !std::mem::replace(&mut seen[r], true)),
            "a move of {} packed rows must be a permutation of them",
            self.len()
        );
        PackedSegments {
            bounds: self.bounds.clone(),
            rows: self.rows.iter().map(|&r| to[r]).collect(),
            visible: self.visible.clone(),
        }
    }

    /// Whether segment after segment takes rows `0, 1, 2, ...` (as [`PackedSegments::new`]
    /// packs them), so that outputs per segment concatenate into packed order.
    pub fn is_in_order(&self) -> bool {
        self.rows.iter().enumerate().all(|(i, &r)| i == r)
    }

    /// The additive mask `[n, n]` (0 attend, -inf masked) of a segment of `n` positions, in the
    /// segment's order: the dense form of the prefixes, for backends without the kernel.
    pub fn mask(segment: Segment<'_>) -> Vec<f32> {
        let n = segment.len();
        let mut mask = vec![f32::NEG_INFINITY; n * n];
        for (row, &visible) in mask.chunks_exact_mut(n.max(1)).zip(segment.visible) {
            row[..visible].fill(0.0);
        }
        mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Split::{Causal, Full};

    #[test]
    fn prefixes_follow_the_splits() {
        let p = PackedSegments::new(&[vec![Causal(2), Full(3)], vec![], vec![Full(2)]]);
        let segs: Vec<_> = p.segments().collect();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].rows, &[0, 1, 2, 3, 4]);
        assert_eq!(segs[0].visible, &[1, 2, 5, 5, 5]);
        assert_eq!(segs[1].rows, &[5, 6]);
        assert_eq!(segs[1].visible, &[2, 2]);
        assert!(p.is_in_order());
        let moved = p.moved(&[6, 5, 4, 3, 2, 1, 0]);
        assert!(!moved.is_in_order());
        assert_eq!(
            moved.segments().next().map(|s| s.rows),
            Some(&[6, 5, 4, 3, 2][..])
        );
    }

    #[test]
    fn the_mask_opens_each_rows_prefix() {
        let p = PackedSegments::new(&[vec![Full(1), Causal(2)]]);
        let m = PackedSegments::mask(p.segments().next().expect("one segment"));
        let ninf = f32::NEG_INFINITY;
        assert_eq!(m, vec![0.0, ninf, ninf, 0.0, 0.0, ninf, 0.0, 0.0, 0.0]);
    }

    #[test]
    #[should_panic(expected = "permutation")]
    fn a_move_must_be_a_permutation() {
        PackedSegments::new(&[vec![Full(2)]]).moved(&[1, 1]);
    }
}
