//! An embedded transaction: a snapshot at its read version, a read-your-writes
//! overlay of its buffered mutations, and the conflict ranges it collects.
//!
//! Reads merge the snapshot with the overlay as FoundationDB's
//! read-your-writes layer does: a key set or cleared in the transaction reads
//! as written (and adds no read conflict, since the store was not consulted);
//! a key with pending atomic mutations reads the snapshot and applies them;
//! a key written with a versionstamped value cannot be read
//! (`accessed_unreadable`), nor can any key of the range a versionstamped key
//! may land in (FoundationDB's `ReadYourWritesTransaction::atomicOp` marks
//! `getVersionstampKeyRange` "unmodified and unreadable", FDB 7.3
//! `fdbclient/ReadYourWrites.actor.cpp`).
//!
//! A transaction's size is FoundationDB's (`Transaction::getSize`,
//! `fdbclient/NativeAPI.actor.cpp`): each mutation's bytes plus
//! [`MUTATION_OVERHEAD_BYTES`], and each read- and write-conflict range's
//! bytes plus [`CONFLICT_RANGE_OVERHEAD_BYTES`], the ranges coalesced first.
//!
//! Each transaction counts its reads two ways: the keys they served
//! ([`Transaction::keys_read`]: one per `get` and `get_key`, one per pair a
//! `get_range` returned) and the read calls themselves
//! ([`Transaction::reads`]: one per `get`, `get_key` and `get_range`,
//! whatever it returned). Tests use them to state costs as counts of reads
//! (the ranked set's O(log n) property, the reads of a leaderboard submit)
//! instead of timings.

use std::collections::BTreeMap;
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

use super::atomic;
use super::committer::{CommitRequest, Mutation, WatchRequest};
use super::conflicts::key_after;
use super::rangeset::RangeSet;
use super::{Database, Snapshot};
use crate::kv::checks::{
    CONFLICT_RANGE_OVERHEAD_BYTES, KEYSPACE_END, MUTATION_OVERHEAD_BYTES, check_key, check_key_len,
    check_value, check_versionstamped_key, check_versionstamped_value,
};
use crate::kv::{
    CommitInfo, ConflictRangeType, Error, KeySelector, KeyValue, MutationType, RangeChunk,
    RangeOption, Result, Watch, limits,
};

/// An embedded transaction. Clones share the transaction.
#[derive(Clone)]
pub struct Transaction {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    snap: Arc<Snapshot>,
    started: Instant,
    state: Mutex<State>,
}

/// What the overlay knows of a key written in this transaction.
#[derive(Clone, Debug)]
enum Pending {
    /// Set (`Some`) or cleared (`None`).
    Known(Option<Vec<u8>>),
    /// Atomic mutations on a value this transaction has not seen.
    Atomic(Vec<(MutationType, Vec<u8>)>),
    /// Written by `SetVersionstampedValue`: unknown until commit.
    Unreadable,
}

#[derive(Default)]
struct State {
    writes: BTreeMap<Vec<u8>, Pending>,
    cleared: RangeSet,
    mutations: Vec<Mutation>,
    read_conflicts: Vec<(Vec<u8>, Vec<u8>)>,
    write_conflicts: Vec<(Vec<u8>, Vec<u8>)>,
    watches: Vec<WatchRequest>,
    /// The ranges this transaction's versionstamped keys may land in: not
    /// readable until commit.
    unreadable: RangeSet,
    /// Bytes of the mutations, with [`MUTATION_OVERHEAD_BYTES`] each;
    /// conflict ranges are added at commit.
    size_bytes: usize,
    /// Keys served by reads so far (see [`Transaction::keys_read`]).
    keys_read: u64,
    /// Read calls so far (see [`Transaction::reads`]).
    reads: u64,
    /// The first error of a mutation, reported at commit.
    error: Option<Error>,
    committed: bool,
}

impl State {
    fn fail(&mut self, e: Error) {
        self.error.get_or_insert(e);
    }

    /// Counts one mutation of `bytes` bytes (its parameters).
    fn add_mutation_size(&mut self, bytes: usize) {
        self.size_bytes += MUTATION_OVERHEAD_BYTES + bytes;
    }

    /// The transaction's size as FoundationDB counts it at commit, if it
    /// is over `limit_bytes`; `None` within it.
    ///
    /// Coalescing never makes a list of ranges larger (a merged range's
    /// two keys are keys of its parts, and it carries one overhead for
    /// several), so the plain sum of the ranges bounds the size: a
    /// transaction whose bound is within the limit skips the coalescing,
    /// which was about 6% of a leaderboard submit's instructions
    /// (docs/perf-log/2026-12-05.md). Over the bound, the exact size is
    /// computed for the error.
    fn size_over(&self, limit_bytes: usize) -> Option<usize> {
        let bound = |list: &[(Vec<u8>, Vec<u8>)]| {
            list.iter()
                .map(|(b, e)| CONFLICT_RANGE_OVERHEAD_BYTES + b.len() + e.len())
                .sum::<usize>()
        };
        let bound_bytes =
            self.size_bytes + bound(&self.read_conflicts) + bound(&self.write_conflicts);
        if bound_bytes <= limit_bytes {
            return None;
        }
        Some(self.size_at_commit()).filter(|size_bytes| *size_bytes > limit_bytes)
    }

    /// The transaction's size as FoundationDB counts it at commit: the
    /// mutations, and the coalesced read- and write-conflict ranges, each
    /// with its overhead.
    fn size_at_commit(&self) -> usize {
        let ranges = |list: &[(Vec<u8>, Vec<u8>)]| {
            let mut set = RangeSet::default();
            for (b, e) in list {
                set.insert(b, e);
            }
            set.iter()
                .map(|(b, e)| CONFLICT_RANGE_OVERHEAD_BYTES + b.len() + e.len())
                .sum::<usize>()
        };
        self.size_bytes + ranges(&self.read_conflicts) + ranges(&self.write_conflicts)
    }

    /// Fails a read of `[begin, end)` that touches a range a versionstamped
    /// key of this transaction may land in.
    fn check_readable(&self, begin: &[u8], end: &[u8]) -> Result<()> {
        if self.unreadable.intersects(begin, end) {
            return Err(Error::AccessedUnreadable);
        }
        Ok(())
    }
}

impl Transaction {
    pub(super) fn new(db: Database, snap: Arc<Snapshot>, started: Instant) -> Self {
        Transaction {
            inner: Arc::new(Inner {
                db,
                snap,
                started,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// A new transaction reading at this one's read version (the same
    /// snapshot) and as old as it: FoundationDB's `set_read_version` on a
    /// fresh transaction, whose age counts from when that version was
    /// taken, so it fails with `transaction_too_old` when this one would.
    /// For reads split over several transactions at one version
    /// ([`crate::kv::Database::read_range_paged`]).
    ///
    /// Errors: [`Error::Closed`] after the store is shut down.
    pub fn at_same_version(&self) -> Result<Transaction> {
        self.inner.db.check_open()?;
        Ok(Transaction::new(
            self.inner.db.clone(),
            self.inner.snap.clone(),
            self.inner.started,
        ))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().expect("transaction state lock")
    }

    /// How many keys this transaction's reads have served: one per `get`
    /// and `get_key` (found or not), one per pair a `get_range` returned.
    /// Reads that failed count nothing. Clones share the count.
    pub fn keys_read(&self) -> u64 {
        self.state().keys_read
    }

    /// How many read calls this transaction has made: one per `get`,
    /// `get_key` and `get_range` (a batch of
    /// [`crate::kv::Transaction::get_ranges`] is one), found or not, empty
    /// or not. Each is one round trip on FoundationDB and one lookup in the
    /// embedded store, whatever it returns, so this is the count to cut
    /// for CPU per transaction. Reads that failed count nothing. Clones
    /// share the count.
    pub fn reads(&self) -> u64 {
        self.state().reads
    }

    fn check_live(&self, st: &State) -> Result<()> {
        if st.committed {
            return Err(Error::UsedDuringCommit);
        }
        if self.inner.started.elapsed() > self.inner.db.options().max_transaction_age {
            return Err(Error::TooOld);
        }
        Ok(())
    }

    /// See [`crate::kv::Transaction::get`].
    pub async fn get(&self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>> {
        let mut st = self.state();
        self.check_live(&st)?;
        check_key(key)?;
        st.check_readable(key, &key_after(key))?;
        st.keys_read += 1;
        st.reads += 1;
        let base = match st.writes.get(key) {
            Some(Pending::Known(v)) => return Ok(v.clone()),
            Some(Pending::Unreadable) => return Err(Error::AccessedUnreadable),
            // Known from this transaction's own clear_range: the store was not
            // consulted, so no read conflict (FoundationDB's read-your-writes).
            // (An atomic op on a cleared key is `Known`, see `atomic_op`.)
            None if st.cleared.contains(key) => return Ok(None),
            _ => self.inner.snap.get(key)?,
        };
        if !snapshot {
            st.read_conflicts.push((key.to_vec(), key_after(key)));
        }
        Ok(match st.writes.get(key) {
            Some(Pending::Atomic(ops)) => apply_all(ops, base),
            _ => base,
        })
    }

    /// See [`crate::kv::Transaction::get_key`].
    pub async fn get_key(&self, selector: &KeySelector, snapshot: bool) -> Result<Vec<u8>> {
        let mut st = self.state();
        self.check_live(&st)?;
        let key = self.resolve(&st, selector)?;
        let (lo, hi) = if key.as_slice() < selector.key.as_slice() {
            (key.as_slice(), selector.key.as_slice())
        } else {
            (selector.key.as_slice(), key.as_slice())
        };
        st.check_readable(lo, &key_after(hi))?;
        st.keys_read += 1;
        st.reads += 1;
        if !snapshot {
            let (lo, hi) = if key.as_slice() < selector.key.as_slice() {
                (key.clone(), key_after(&selector.key))
            } else {
                (selector.key.clone(), key_after(&key))
            };
            st.read_conflicts.push((lo, hi));
        }
        Ok(key)
    }

    /// See [`crate::kv::Transaction::get_range`]. Returns the whole range up to
    /// its limit in one batch (`more` is always false).
    pub async fn get_range(&self, range: &RangeOption, snapshot: bool) -> Result<RangeChunk> {
        let mut st = self.state();
        self.check_live(&st)?;
        let begin = self.range_bound(&st, &range.begin)?;
        let end = self.range_bound(&st, &range.end)?;
        if begin >= end {
            st.reads += 1;
            if !snapshot {
                let lo = range.begin.key.clone().min(range.end.key.clone());
                let hi = key_after(&range.begin.key.clone().max(range.end.key.clone()));
                st.read_conflicts.push((lo, hi));
            }
            return Ok(RangeChunk::default());
        }
        st.check_readable(&begin, &end)?;
        let limit = range.limit.unwrap_or(usize::MAX);
        let mut kvs = Vec::new();
        for kv in self.merged(&st, &begin, &end, range.reverse) {
            if kvs.len() >= limit {
                break;
            }
            kvs.push(kv?);
        }
        st.keys_read += kvs.len() as u64;
        st.reads += 1;
        if !snapshot {
            // What the result depends on: from the begin selector's anchor or
            // resolved key, whichever is lower, to the end selector's anchor, or
            // to its resolved key when it moved forward past keys (offset > 1).
            // An end `first_greater_or_equal(k)` resolves to the next existing
            // key, but keys between `k` and it are not part of the result and
            // must not conflict (a phantom outside the range). Cut at the last
            // key returned when the limit stopped the read.
            let mut lo = begin.clone().min(range.begin.key.clone());
            let end_anchor = if range.end.or_equal {
                key_after(&range.end.key)
            } else {
                range.end.key.clone()
            };
            let mut hi = if range.end.offset > 1 {
                end.clone().max(end_anchor)
            } else {
                end_anchor
            }
            .min(KEYSPACE_END.to_vec());
            if kvs.len() >= limit
                && let Some(last) = kvs.last()
            {
                if range.reverse {
                    lo = last.key.clone();
                } else {
                    hi = key_after(&last.key);
                }
            }
            st.read_conflicts.push((lo, hi));
        }
        Ok(RangeChunk { kvs, more: false })
    }

    /// Where a range read's selector puts the range's edge. A
    /// `first_greater_or_equal(k)` or `first_greater_than(k)` edge is `k` or
    /// the key just after it: the same keys as resolving it to a stored key,
    /// without stepping onto a key outside the range. Resolving would fail a
    /// read that ends just before a key this transaction wrote with a
    /// versionstamped value (`accessed_unreadable`); FoundationDB fails a
    /// range read only when the range itself holds an unreadable key (its
    /// `Unreadable` workload, `fdbserver/workloads/Unreadable.actor.cpp`,
    /// asserts exactly that). Other selectors are resolved.
    fn range_bound(&self, st: &State, sel: &KeySelector) -> Result<Vec<u8>> {
        if sel.offset != 1 {
            return self.resolve(st, sel);
        }
        let anchor = sel.key.as_slice().min(KEYSPACE_END);
        let edge = if sel.or_equal {
            key_after(anchor)
        } else {
            anchor.to_vec()
        };
        Ok(edge.min(KEYSPACE_END.to_vec()))
    }

    /// Resolves a key selector against the snapshot plus this transaction's
    /// writes, clamped to `[b"", b"\xff"]`.
    fn resolve(&self, st: &State, sel: &KeySelector) -> Result<Vec<u8>> {
        let anchor = sel.key.as_slice().min(KEYSPACE_END);
        if sel.offset >= 1 {
            // The `offset`-th key after the last key before the anchor.
            let from = if sel.or_equal {
                key_after(anchor)
            } else {
                anchor.to_vec()
            };
            let n = (sel.offset - 1) as usize;
            match self.merged(st, &from, KEYSPACE_END, false).nth(n) {
                Some(kv) => Ok(kv?.key),
                None => Ok(KEYSPACE_END.to_vec()),
            }
        } else {
            // The last key before (or at) the anchor, then `-offset` more back.
            let until = if sel.or_equal {
                key_after(anchor)
            } else {
                anchor.to_vec()
            };
            let n = (-(sel.offset as i64)) as usize;
            match self.merged(st, b"", &until, true).nth(n) {
                Some(kv) => Ok(kv?.key),
                None => Ok(Vec::new()),
            }
        }
    }

    /// The snapshot merged with the overlay over `[begin, end)`.
    fn merged<'a>(
        &'a self,
        st: &'a State,
        begin: &[u8],
        end: &[u8],
        reverse: bool,
    ) -> impl Iterator<Item = Result<KeyValue>> + 'a {
        let end = end.min(KEYSPACE_END);
        let snap: Box<dyn Iterator<Item = Result<KeyValue>>> = if begin >= end {
            Box::new(std::iter::empty())
        } else {
            Box::new(
                self.inner
                    .snap
                    .view
                    .range(begin, end, reverse)
                    .map(|e| e.map(|(key, value)| KeyValue { key, value })),
            )
        };
        let bounds = (
            Bound::Included(begin.to_vec()),
            Bound::Excluded(end.to_vec()),
        );
        let overlay: Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Pending)>> = if begin >= end {
            Box::new(std::iter::empty())
        } else if reverse {
            Box::new(st.writes.range(bounds).rev())
        } else {
            Box::new(st.writes.range(bounds))
        };
        Merge {
            snap: snap.peekable(),
            overlay: overlay.peekable(),
            cleared: &st.cleared,
            reverse,
        }
    }

    /// See [`crate::kv::Transaction::set`].
    pub fn set(&self, key: &[u8], value: &[u8]) {
        let mut st = self.state();
        if let Err(e) = check_key(key).and_then(|()| check_value(value)) {
            return st.fail(e);
        }
        st.add_mutation_size(key.len() + value.len());
        st.writes
            .insert(key.to_vec(), Pending::Known(Some(value.to_vec())));
        st.write_conflicts.push((key.to_vec(), key_after(key)));
        st.mutations
            .push(Mutation::Set(key.to_vec(), value.to_vec()));
    }

    /// See [`crate::kv::Transaction::clear`].
    pub fn clear(&self, key: &[u8]) {
        let mut st = self.state();
        if let Err(e) = check_key(key) {
            return st.fail(e);
        }
        // FoundationDB sends it as the range `[key, key + \x00)`.
        st.add_mutation_size(2 * key.len() + 1);
        st.writes.insert(key.to_vec(), Pending::Known(None));
        st.write_conflicts.push((key.to_vec(), key_after(key)));
        st.mutations.push(Mutation::Clear(key.to_vec()));
    }

    /// See [`crate::kv::Transaction::clear_range`].
    pub fn clear_range(&self, begin: &[u8], end: &[u8]) {
        let mut st = self.state();
        if begin > end {
            return st.fail(Error::InvertedRange);
        }
        let end = end.min(KEYSPACE_END);
        if begin >= end {
            return;
        }
        if let Err(e) = check_key_len(begin).and_then(|()| check_key_len(end)) {
            return st.fail(e);
        }
        st.add_mutation_size(begin.len() + end.len());
        let inside: Vec<Vec<u8>> = st
            .writes
            .range::<[u8], _>((Bound::Included(begin), Bound::Excluded(end)))
            .map(|(k, _)| k.clone())
            .collect();
        for k in inside {
            st.writes.remove(&k);
        }
        st.cleared.insert(begin, end);
        st.write_conflicts.push((begin.to_vec(), end.to_vec()));
        st.mutations
            .push(Mutation::ClearRange(begin.to_vec(), end.to_vec()));
    }

    /// See [`crate::kv::Transaction::atomic_op`].
    pub fn atomic_op(&self, key: &[u8], param: &[u8], op: MutationType) {
        let mut st = self.state();
        let checked = match op {
            MutationType::SetVersionstampedKey => check_versionstamped_key(key)
                .and_then(|(body, offset)| check_value(param).map(|()| Some((body, offset)))),
            MutationType::SetVersionstampedValue => check_versionstamped_value(param)
                .and_then(|_| check_key(key))
                .map(|()| None),
            _ => check_key(key)
                .and_then(|()| check_value(param))
                .map(|()| None),
        };
        let stamped_key = match checked {
            Ok(stamped) => stamped,
            Err(e) => return st.fail(e),
        };
        st.add_mutation_size(key.len() + param.len());
        st.mutations
            .push(Mutation::Atomic(key.to_vec(), param.to_vec(), op));
        if let Some((body, offset)) = stamped_key {
            // The key is not known until commit (the committer records its
            // own write conflict then). As FoundationDB does
            // (`getVersionstampKeyRange`, FDB 7.3 `fdbclient/Atomic.h`), the
            // whole range it may land in, from the stamp of this read
            // version to ten `\xff` bytes, becomes a write-conflict range and
            // unreadable until commit.
            let (begin, end) = versionstamp_key_range(body, offset, self.inner.snap.version);
            st.unreadable.insert(&begin, &end);
            st.write_conflicts.push((begin, end));
            return;
        }
        match op {
            MutationType::SetVersionstampedKey => return,
            MutationType::SetVersionstampedValue => {
                st.writes.insert(key.to_vec(), Pending::Unreadable);
            }
            _ => {
                let cleared = st.cleared.contains(key);
                let next = match st.writes.remove(key) {
                    Some(Pending::Known(v)) => {
                        Pending::Known(atomic::apply(op, v.as_deref(), param))
                    }
                    None if cleared => Pending::Known(atomic::apply(op, None, param)),
                    Some(Pending::Atomic(mut ops)) => {
                        ops.push((op, param.to_vec()));
                        Pending::Atomic(ops)
                    }
                    None => Pending::Atomic(vec![(op, param.to_vec())]),
                    Some(Pending::Unreadable) => Pending::Unreadable,
                };
                st.writes.insert(key.to_vec(), next);
            }
        }
        st.write_conflicts.push((key.to_vec(), key_after(key)));
    }

    /// See [`crate::kv::Transaction::add_conflict_range`].
    pub fn add_conflict_range(
        &self,
        begin: &[u8],
        end: &[u8],
        kind: ConflictRangeType,
    ) -> Result<()> {
        let mut st = self.state();
        if begin > end {
            return Err(Error::InvertedRange);
        }
        check_key_len(begin)?;
        check_key_len(end)?;
        // Counted at commit with the other conflict ranges.
        let range = (begin.to_vec(), end.to_vec());
        match kind {
            ConflictRangeType::Read => st.read_conflicts.push(range),
            ConflictRangeType::Write => st.write_conflicts.push(range),
        }
        Ok(())
    }

    /// See [`crate::kv::Transaction::get_read_version`].
    pub async fn get_read_version(&self) -> Result<u64> {
        self.check_live(&self.state())?;
        Ok(self.inner.snap.version)
    }

    /// See [`crate::kv::Transaction::watch`].
    pub fn watch(&self, key: &[u8]) -> Watch {
        let (fire, fired) = oneshot::channel();
        let mut st = self.state();
        // The value to compare with is the one this transaction sees now
        // (FoundationDB: "the value as readable by that transaction"), not the
        // value at commit: a change committed in between fires the watch at once.
        //
        // FoundationDB's watch reads the key as a non-snapshot read
        // (`RYWImpl::watch` calls `readWithConflictRange(ryw, GetValueReq(key),
        // Snapshot::False)`, FDB 7.3 `fdbclient/ReadYourWrites.actor.cpp`), so
        // the key joins the read-conflict ranges as `get(key, false)` would
        // add it: a writing transaction whose watched key changed after its
        // read version fails with `not_committed`.
        let expected = check_key(key)
            .and_then(|()| st.check_readable(key, &key_after(key)))
            .and_then(|()| match st.writes.get(key) {
                Some(Pending::Known(v)) => Ok(Some(v.clone())),
                Some(Pending::Unreadable) => Err(Error::AccessedUnreadable),
                Some(Pending::Atomic(_)) => Ok(None),
                None if st.cleared.contains(key) => Ok(Some(None)),
                None => self.inner.snap.get(key).map(Some),
            });
        if expected.is_ok()
            && !matches!(st.writes.get(key), Some(Pending::Known(_)))
            && !st.cleared.contains(key)
        {
            st.read_conflicts.push((key.to_vec(), key_after(key)));
        }
        match expected {
            Err(e) => {
                let _ = fire.send(Err(e));
            }
            Ok(expected) => st.watches.push(WatchRequest {
                key: key.to_vec(),
                expected,
                fire,
            }),
        }
        Watch::new(async move { fired.await.unwrap_or(Err(Error::Closed)) })
    }

    /// See [`crate::kv::Transaction::commit`].
    pub async fn commit(self) -> Result<CommitInfo> {
        let (req, reply) = {
            let mut st = self.state();
            self.inner
                .db
                .record_costs(st.keys_read, st.reads, st.mutations.len());
            self.check_live(&st)?;
            st.committed = true;
            if let Some(e) = st.error.take() {
                return Err(e);
            }
            if let Some(size_bytes) = st.size_over(limits::TRANSACTION_SIZE_BYTES) {
                return Err(Error::TransactionTooLarge {
                    size_bytes,
                    limit_bytes: limits::TRANSACTION_SIZE_BYTES,
                });
            }
            if st.mutations.is_empty() && st.write_conflicts.is_empty() {
                // Read-only: nothing to resolve. Watches expect what this
                // transaction read.
                let watches = std::mem::take(&mut st.watches);
                drop(st);
                for w in watches {
                    let expected = match w.expected {
                        Some(seen) => seen,
                        None => self.inner.snap.get(&w.key)?,
                    };
                    // A refused watch (too many) fails the watch, not the
                    // commit, as in FoundationDB: `fire` carries the error.
                    let _ = self.inner.db.register_watch(w.key, expected, w.fire);
                }
                return Ok(CommitInfo::default());
            }
            let (reply, rx) = oneshot::channel();
            let req = CommitRequest {
                read_version: self.inner.snap.version,
                read_conflicts: std::mem::take(&mut st.read_conflicts),
                write_conflicts: std::mem::take(&mut st.write_conflicts),
                mutations: std::mem::take(&mut st.mutations),
                watches: std::mem::take(&mut st.watches),
                reply,
            };
            (req, rx)
        };
        self.inner.db.send_commit(req)?;
        reply.await.map_err(|_| Error::CommitUnknownResult)?
    }
}

/// Merges snapshot pairs with overlay entries in key order (or reverse).
struct Merge<'a, S: Iterator, O: Iterator> {
    snap: Peekable<S>,
    overlay: Peekable<O>,
    cleared: &'a RangeSet,
    reverse: bool,
}

impl<'a, S, O> Iterator for Merge<'a, S, O>
where
    S: Iterator<Item = Result<KeyValue>>,
    O: Iterator<Item = (&'a Vec<u8>, &'a Pending)>,
{
    type Item = Result<KeyValue>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let snap_key = match self.snap.peek() {
                Some(Ok(kv)) => Some(kv.key.as_slice()),
                Some(Err(_)) => return self.snap.next(),
                None => None,
            };
            let over_key = self.overlay.peek().map(|(k, _)| k.as_slice());
            let take_overlay = match (snap_key, over_key) {
                (None, None) => return None,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(s), Some(o)) => (o <= s) != self.reverse || o == s,
            };
            if !take_overlay {
                let kv = self.snap.next()?.expect("peeked Ok");
                if self.cleared.contains(&kv.key) {
                    continue;
                }
                return Some(Ok(kv));
            }
            let (key, pending) = self.overlay.next()?;
            let base = match self.snap.peek() {
                Some(Ok(kv)) if kv.key == *key => {
                    self.snap.next().and_then(|r| r.ok()).map(|kv| kv.value)
                }
                _ => None,
            };
            let value = match pending {
                Pending::Known(v) => v.clone(),
                Pending::Atomic(ops) => apply_all(ops, base),
                Pending::Unreadable => return Some(Err(Error::AccessedUnreadable)),
            };
            if let Some(value) = value {
                return Some(Ok(KeyValue {
                    key: key.clone(),
                    value,
                }));
            }
        }
    }
}

fn apply_all(ops: &[(MutationType, Vec<u8>)], base: Option<Vec<u8>>) -> Option<Vec<u8>> {
    ops.iter().fold(base, |v, (op, param)| {
        atomic::apply(*op, v.as_deref(), param)
    })
}

/// The range a versionstamped key with `body` (the key without its offset)
/// and placeholder `offset` may land in once committed after read version
/// `read_version`: FoundationDB's `getVersionstampKeyRange` (FDB 7.3
/// `fdbclient/include/fdbclient/Atomic.h`): from the body with the stamp of
/// `read_version` (batch order 0) to the body with ten `\xff` bytes followed
/// by `\x00`, clamped to `\xff`.
fn versionstamp_key_range(body: &[u8], offset: usize, read_version: u64) -> (Vec<u8>, Vec<u8>) {
    let mut begin = body.to_vec();
    begin[offset..offset + 8].copy_from_slice(&read_version.to_be_bytes());
    begin[offset + 8..offset + 10].copy_from_slice(&[0, 0]);
    let mut end = body.to_vec();
    end[offset..offset + 10].copy_from_slice(&[0xff; 10]);
    end.push(0);
    let end = end.min(KEYSPACE_END.to_vec());
    (begin, end)
}
