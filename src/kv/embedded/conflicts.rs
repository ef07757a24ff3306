//! The conflict history: which keys and ranges were written at which commit
//! version, for the last [`EmbeddedOptions::max_transaction_age`] of commits.
//! It plays the part of FoundationDB's resolver.
//!
//! Layout: one entry per committed batch (its version, its commit time, the
//! point keys and the ranges it wrote), oldest first, plus the open batch
//! being committed. A check looks only at the batches newer than the
//! transaction's read version, newest first; a read version is normally a
//! few milliseconds old, so that is a handful of small sorted sets, however
//! many writes the window holds. Forgetting is dropping whole batches from
//! the front. (One map of every key written in the window, which this
//! replaced, held about 300,000 keys at 4,000 events/s, and its inserts,
//! lookups and sweeps were 5-6% of the server's CPU, all on the committer
//! thread: docs/perf-log/2026-12-03.md.)
//!
//! Invariant: every write committed at a version above `floor` is recorded,
//! in the batch of its version. A transaction whose read version is below
//! `floor` can no longer be checked and is refused with
//! `transaction_too_old`, which its age would have caused anyway.
//!
//! Cost: a check is linear in the batches newer than its read version, so a
//! transaction nearly `max_transaction_age` old checks every batch of the
//! window and holds up the committer meanwhile: 20 point reads against
//! 5,000 batches of 15 keys took 8.8 ms (release build, 2026-12-03; 5 s at
//! 1,000 commits/s). Myelin's own transactions commit milliseconds after
//! taking their read version, and read-only ones are never checked.
//!
//! [`EmbeddedOptions::max_transaction_age`]: super::EmbeddedOptions::max_transaction_age

use std::collections::{BTreeSet, VecDeque};
use std::ops::Bound;
use std::time::{Duration, Instant};

/// The writes of one commit version.
#[derive(Default)]
struct Batch {
    version: u64,
    /// Single keys written.
    points: BTreeSet<Vec<u8>>,
    /// Range writes (`clear_range`, explicit write-conflict ranges).
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.points.is_empty() && self.ranges.is_empty()
    }

    /// Whether any write of this batch overlaps `[begin, end)`.
    fn overlaps(&self, begin: &[u8], end: &[u8]) -> bool {
        self.points
            .range::<[u8], _>((Bound::Included(begin), Bound::Excluded(end)))
            .next()
            .is_some()
            || self
                .ranges
                .iter()
                .any(|(rb, re)| rb.as_slice() < end && begin < re.as_slice())
    }
}

#[derive(Default)]
pub(super) struct History {
    /// Committed batches still in the window with their commit times,
    /// oldest first, versions increasing.
    batches: VecDeque<(Instant, Batch)>,
    /// The writes recorded since the last committed batch: the batch being
    /// committed (a failed commit's writes stay here and are kept with the
    /// next batch, which reuses its version).
    open: Batch,
    /// Writes at or below this version are forgotten.
    floor: u64,
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
    /// ranges may commit: no write at a version above `read_version` (the
    /// open batch's included, so transactions accepted earlier in the same
    /// batch count) overlaps any of them.
    pub(super) fn check(&self, read_version: u64, reads: &[(Vec<u8>, Vec<u8>)]) -> Verdict {
        if reads.is_empty() {
            return Verdict::Ok;
        }
        if read_version < self.floor {
            return Verdict::TooOld;
        }
        for batch in self.newer_than(read_version) {
            if reads.iter().any(|(b, e)| batch.overlaps(b, e)) {
                return Verdict::Conflict;
            }
        }
        Verdict::Ok
    }

    /// For a transaction [`History::check`] found in conflict: the first of
    /// its read-conflict ranges that a newer write overlaps, and the
    /// version of the newest such write (what a conflict log names; the
    /// check itself stops at the first overlap and keeps no range).
    pub(super) fn first_conflict<'r>(
        &self,
        read_version: u64,
        reads: &'r [(Vec<u8>, Vec<u8>)],
    ) -> Option<(&'r [u8], &'r [u8], u64)> {
        self.newer_than(read_version).find_map(|batch| {
            reads
                .iter()
                .find(|(b, e)| batch.overlaps(b, e))
                .map(|(b, e)| (b.as_slice(), e.as_slice(), batch.version))
        })
    }

    /// The batches written after `read_version`, newest first, the open
    /// one included (its version is set by its first write; empty, it
    /// holds nothing to check).
    fn newer_than(&self, read_version: u64) -> impl Iterator<Item = &Batch> {
        let open = (!self.open.is_empty()).then_some(&self.open);
        open.into_iter()
            .chain(self.batches.iter().rev().map(|(_, batch)| batch))
            .take_while(move |batch| batch.version > read_version)
    }

    /// Records a write of `[begin, end)` at `version`, the version of the
    /// batch being committed.
    pub(super) fn record(&mut self, begin: &[u8], end: &[u8], version: u64) {
        debug_assert!(self.batches.back().is_none_or(|(_, b)| b.version < version));
        self.open.version = version;
        if is_single_key(begin, end) {
            if !self.open.points.contains(begin) {
                self.open.points.insert(begin.to_vec());
            }
        } else if begin < end {
            self.open.ranges.push((begin.to_vec(), end.to_vec()));
        }
    }

    /// Notes that batch `version` committed at `now`, and forgets the
    /// batches that fell out of the window.
    pub(super) fn committed(&mut self, version: u64, now: Instant, window: Duration) {
        let mut batch = std::mem::take(&mut self.open);
        batch.version = version;
        self.batches.push_back((now, batch));
        while let Some((at, front)) = self.batches.front() {
            if now.duration_since(*at) <= window {
                break;
            }
            self.floor = front.version;
            self.batches.pop_front();
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
// The history is kept by the committer's clock; its tests read it too.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn r(b: &[u8], e: &[u8]) -> (Vec<u8>, Vec<u8>) {
        (b.to_vec(), e.to_vec())
    }

    #[test]
    fn reads_conflict_only_with_later_overlapping_writes() {
        let mut h = History::new(0);
        let (now, window) = (Instant::now(), Duration::from_secs(5));
        h.record(b"k", &key_after(b"k"), 5);
        h.committed(5, now, window);
        h.record(b"m", b"p", 7);
        h.committed(7, now, window);
        assert_eq!(h.check(4, &[r(b"k", b"k\0")]), Verdict::Conflict);
        assert_eq!(h.check(5, &[r(b"k", b"k\0")]), Verdict::Ok);
        assert_eq!(h.check(4, &[r(b"a", b"k")]), Verdict::Ok);
        assert_eq!(h.check(6, &[r(b"o", b"z")]), Verdict::Conflict);
        assert_eq!(h.check(6, &[r(b"p", b"z")]), Verdict::Ok);
        assert_eq!(h.check(0, &[]), Verdict::Ok);
        // The log names the range that conflicted and the newest write's
        // version.
        let reads = [r(b"a", b"b"), r(b"k", b"k\0"), r(b"o", b"z")];
        assert_eq!(h.first_conflict(4, &reads), Some((&b"o"[..], &b"z"[..], 7)));
        assert_eq!(h.first_conflict(7, &reads), None);
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
        assert_eq!(h.batches.len(), 1, "batch 1 is forgotten");
    }

    #[test]
    fn the_open_batch_counts_and_a_failed_commit_keeps_its_writes() {
        let mut h = History::new(0);
        let (now, window) = (Instant::now(), Duration::from_secs(5));
        h.record(b"a", b"a\0", 1);
        h.committed(1, now, window);
        // Accepted earlier in batch 2: a later transaction of batch 2 that
        // read `k` at version 1 conflicts before batch 2 commits.
        h.record(b"k", b"k\0", 2);
        assert_eq!(h.check(1, &[r(b"k", b"k\0")]), Verdict::Conflict);
        assert_eq!(h.check(1, &[r(b"a", b"b")]), Verdict::Ok);
        // Batch 2's commit failed (no `committed`); the retry reuses
        // version 2 and its writes are still there.
        h.record(b"q", b"r", 2);
        h.committed(2, now, window);
        assert_eq!(h.check(1, &[r(b"k", b"k\0")]), Verdict::Conflict);
        assert_eq!(h.check(1, &[r(b"q\x05", b"z")]), Verdict::Conflict);
        assert_eq!(h.check(2, &[r(b"a", b"z")]), Verdict::Ok);
        // Older batches are looked at too, not only the newest.
        h.committed(3, now, window);
        assert_eq!(h.check(0, &[r(b"a", b"a\0")]), Verdict::Conflict);
    }
}
