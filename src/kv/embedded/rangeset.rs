//! A set of disjoint half-open key ranges `[begin, end)`, kept merged (as
//! FoundationDB's coalesced key-range maps are): the keys a transaction has
//! cleared with `clear_range`, the ranges its versionstamped keys may land in,
//! and its conflict ranges when their size is counted.

use std::collections::BTreeMap;
use std::ops::Bound;

/// Disjoint, non-adjacent ranges, keyed by begin.
#[derive(Clone, Debug, Default)]
pub(super) struct RangeSet {
    ranges: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl RangeSet {
    /// Adds `[begin, end)`, merging it with every range it touches.
    pub(super) fn insert(&mut self, begin: &[u8], end: &[u8]) {
        if begin >= end {
            return;
        }
        let mut begin = begin.to_vec();
        let mut end = end.to_vec();
        // A range starting at or before `begin` that reaches it.
        if let Some((b, e)) = self.ranges.range(..=begin.clone()).next_back()
            && e.as_slice() >= begin.as_slice()
        {
            begin = b.clone();
            if e > &end {
                end = e.clone();
            }
        }
        let absorbed: Vec<Vec<u8>> = self
            .ranges
            .range::<[u8], _>((
                Bound::Included(begin.as_slice()),
                Bound::Included(end.as_slice()),
            ))
            .map(|(b, e)| {
                if e > &end {
                    end = e.clone();
                }
                b.clone()
            })
            .collect();
        for b in absorbed {
            self.ranges.remove(&b);
        }
        self.ranges.insert(begin, end);
    }

    /// Whether some key of `[begin, end)` lies in one of the ranges.
    pub(super) fn intersects(&self, begin: &[u8], end: &[u8]) -> bool {
        begin < end
            && (self.contains(begin)
                || self
                    .ranges
                    .range::<[u8], _>((Bound::Excluded(begin), Bound::Excluded(end)))
                    .next()
                    .is_some())
    }

    /// The ranges, in key order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.ranges
            .iter()
            .map(|(b, e)| (b.as_slice(), e.as_slice()))
    }

    /// Whether `key` lies in one of the ranges.
    pub(super) fn contains(&self, key: &[u8]) -> bool {
        self.ranges
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .is_some_and(|(_, end)| key < end.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_overlapping_and_adjacent_ranges() {
        let mut s = RangeSet::default();
        s.insert(b"b", b"d");
        s.insert(b"f", b"h");
        assert!(s.contains(b"b") && s.contains(b"c") && !s.contains(b"d"));
        assert!(!s.contains(b"a") && !s.contains(b"e") && s.contains(b"g"));
        s.insert(b"c", b"g");
        assert_eq!(s.ranges.len(), 1);
        assert!(s.contains(b"e") && !s.contains(b"h"));
        s.insert(b"h", b"i");
        assert_eq!(s.ranges.len(), 1);
        assert!(s.contains(b"h") && !s.contains(b"i"));
        s.insert(b"x", b"a");
        assert_eq!(s.ranges.len(), 1);
    }

    #[test]
    fn intersects_any_overlap_but_not_a_touch() {
        let mut set = RangeSet::default();
        set.insert(b"c", b"e");
        assert!(set.intersects(b"a", b"d"));
        assert!(set.intersects(b"d", b"z"));
        assert!(set.intersects(b"a", b"z"));
        assert!(!set.intersects(b"a", b"c"), "end is exclusive");
        assert!(!set.intersects(b"e", b"z"), "the range's end is exclusive");
        assert!(!set.intersects(b"d", b"d"), "empty");
    }
}
