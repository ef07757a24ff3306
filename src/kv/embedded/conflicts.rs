//! The conflict history: which keys and ranges were written at which commit
//! version, for the last [`EmbeddedOptions::max_transaction_age`] of commits.
//! It plays the part of FoundationDB's resolver.
//!
//! Invariant: every write committed at a version above `floor` is recorded (as
//! the newest version that wrote each point key, or as a range). A transaction
//! whose read version is below `floor` can no longer be checked and is refused
//! with `transaction_too_old`, which its age would have caused anyway.
//!
//! [`EmbeddedOptions::max_transaction_age`]: super::EmbeddedOptions::max_transaction_age

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::time::{Duration, Instant};

/// How often point entries older than the window are swept.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

#[derive(Default)]
pub(super) struct History {
    /// Newest commit version that wrote each single key.
    points: BTreeMap<Vec<u8>, u64>,
    /// Range writes (`clear_range`, explicit write-conflict ranges).
    ranges: Vec<(Vec<u8>, Vec<u8>, u64)>,
    /// Commit time of each batch version still in the window, oldest first.
    batches: VecDeque<(Instant, u64)>,
    /// Writes at or below this version are forgotten.
    floor: u64,
    last_sweep: Option<Instant>,
}

/// What a conflict check found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Ok,
    Conflict,
    TooOld,
}

impl History {
    pub(super) fn new(floor: u64) -> Self {
        History {
            floor,
            ..History::default()
        }
    }

    /// Whether a transaction with `read_version` and these read-conflict
    /// ranges may commit.
    pub(super) fn check(&self, read_version: u64, reads: &[(Vec<u8>, Vec<u8>)]) -> Verdict {
        if reads.is_empty() {
            return Verdict::Ok;
        }
        if read_version < self.floor {
            return Verdict::TooOld;
        }
        let conflicts = reads.iter().any(|(b, e)| {
            self.points
                .range::<[u8], _>((Bound::Included(b.as_slice()), Bound::Excluded(e.as_slice())))
                .any(|(_, &v)| v > read_version)
                || self.ranges.iter().any(|(rb, re, v)| {
                    *v > read_version
                        && rb.as_slice() < e.as_slice()
                        && b.as_slice() < re.as_slice()
                })
        });
        if conflicts {
            Verdict::Conflict
        } else {
            Verdict::Ok
        }
    }

    /// Records a write of `[begin, end)` at `version`.
    pub(super) fn record(&mut self, begin: &[u8], end: &[u8], version: u64) {
        if is_single_key(begin, end) {
            match self.points.get_mut(begin) {
                Some(v) => *v = version,
                None => {
                    self.points.insert(begin.to_vec(), version);
                }
            }
        } else if begin < end {
            self.ranges.push((begin.to_vec(), end.to_vec(), version));
        }
    }

    /// Notes that batch `version` committed at `now`, and forgets writes that
    /// fell out of the window.
    pub(super) fn committed(&mut self, version: u64, now: Instant, window: Duration) {
        self.batches.push_back((now, version));
        while let Some(&(at, v)) = self.batches.front() {
            if now.duration_since(at) <= window {
                break;
            }
            self.floor = v;
            self.batches.pop_front();
        }
        if self
            .last_sweep
            .is_none_or(|at| now.duration_since(at) >= SWEEP_EVERY)
        {
            let floor = self.floor;
            self.points.retain(|_, v| *v > floor);
            self.ranges.retain(|(_, _, v)| *v > floor);
            self.last_sweep = Some(now);
        }
    }
}

/// Whether `[begin, end)` holds exactly one key: `end` is `begin` plus `\x00`.
pub(super) fn is_single_key(begin: &[u8], end: &[u8]) -> bool {
    end.len() == begin.len() + 1 && end.starts_with(begin) && end[begin.len()] == 0
}

/// The first key after `key`: `key` plus `\x00`.
pub(super) fn key_after(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.extend_from_slice(key);
    k.push(0);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(b: &[u8], e: &[u8]) -> (Vec<u8>, Vec<u8>) {
        (b.to_vec(), e.to_vec())
    }

    #[test]
    fn reads_conflict_only_with_later_overlapping_writes() {
        let mut h = History::new(0);
        h.record(b"k", &key_after(b"k"), 5);
        h.record(b"m", b"p", 7);
        assert_eq!(h.check(4, &[r(b"k", b"k\0")]), Verdict::Conflict);
        assert_eq!(h.check(5, &[r(b"k", b"k\0")]), Verdict::Ok);
        assert_eq!(h.check(4, &[r(b"a", b"k")]), Verdict::Ok);
        assert_eq!(h.check(6, &[r(b"o", b"z")]), Verdict::Conflict);
        assert_eq!(h.check(6, &[r(b"p", b"z")]), Verdict::Ok);
        assert_eq!(h.check(0, &[]), Verdict::Ok);
    }

    #[test]
    fn window_moves_the_floor_and_forgets_old_writes() {
        let mut h = History::new(0);
        let t0 = Instant::now();
        let window = Duration::from_secs(5);
        h.record(b"k", b"k\0", 1);
        h.committed(1, t0, window);
        h.record(b"j", b"j\0", 2);
        h.committed(2, t0 + Duration::from_secs(6), window);
        assert_eq!(h.check(0, &[r(b"a", b"z")]), Verdict::TooOld);
        assert_eq!(h.check(1, &[r(b"k", b"k\0")]), Verdict::Ok);
        assert_eq!(h.check(1, &[r(b"j", b"j\0")]), Verdict::Conflict);
        assert!(!h.points.contains_key(b"k".as_slice()));
    }
}
