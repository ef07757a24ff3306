//! The ranked set layer: a set of byte strings, ordered as keys, that
//! answers "what is the rank of x?" and "which element has rank i?" with
//! O(log n) reads, stored in the database so every server sees the same
//! ranks the moment an insert commits.
//!
//! Written against [`crate::kv::Transaction`] (so every backend shares it),
//! after the FoundationDB Record Layer's `RankedSet`
//! (`fdb-extensions/src/main/java/com/apple/foundationdb/async/RankedSet.java`):
//! a skip list whose levels keep counts.
//!
//! ## Key layout
//! Under the caller's subspace `S` (which must hold nothing else):
//!
//! `S + pack((level: int, element: bytes)) -> count: i64 little-endian`
//!
//! - Level 0 holds every element with count 1.
//! - Level `L` (1..[`LEVELS`]) holds the elements whose hash has its low
//!   `4·L` bits zero ([`level_of`]: one in 16 of level `L - 1`'s, the
//!   fan-out), plus the **sentinel**, the empty element, which sorts first.
//! - The count of a key at level `L >= 1` is the number of elements in
//!   `[key, next key at level L)`: the key itself and those after it up to
//!   the next key of its level. The sentinel counts the elements before the
//!   level's first key, so the counts of a level sum to the set's size.
//!
//! Elements are 1 to [`MAX_ELEMENT_BYTES`] bytes (the empty element is the
//! sentinel); with the prefix limited to [`MAX_PREFIX_BYTES`], a key is at
//! most 1,024 + 2 + 2 + 2·2,048 + 1 bytes (the tuple escape doubles zero
//! bytes), under FoundationDB's 10,000-byte key limit.
//!
//! ## Invariants
//! - An element is at level 0 exactly when it is in the set; at level
//!   `L >= 1` exactly when it is in the set and `level_of(element) >= L`.
//! - A non-empty set has the sentinel at every level `L >= 1` (the first
//!   insert writes them; removes never clear them). An empty set may have
//!   them with count 0, or no keys at all. Level 0 has no sentinel.
//! - Counts as defined above; the structure is a function of the set's
//!   elements alone (the hash decides the levels), so a set built by
//!   [`RankedSet::bulk_build`] has the same keys and values as the same
//!   elements inserted one by one, in any order.
//!
//! ## Operations and their reads
//! [`RankedSet::rank`] walks from the top level down, summing the counts of
//! the keys between the last key it stopped at and the element: about 16 keys
//! per level, `LEVELS` levels. [`RankedSet::nth`] walks the same way,
//! subtracting counts until the index falls inside a key's span. Both read
//! O(16 · log16 n) keys; `tests/ranked_set_cost.rs` counts them. An insert or
//! remove reads the predecessor at each level and writes one or two keys per
//! level. [`RankedSet::replace`] moves an element (a leaderboard record's
//! new score) with the writes of a remove and an insert but fewer reads:
//! one rank walk to the new element gives both its new rank and its
//! predecessor at every level, and from the first level where the old and
//! the new element share a predecessor up, the move changes no count, so
//! nothing there is read or written (`tests/ranked_set_replace.rs`).
//!
//! ## Conflicts
//! As in the Record Layer, an insert that does not put the element on level
//! `L` adds 1 to the predecessor's count at `L` with an atomic `Add`, after
//! finding the predecessor with a **snapshot** read plus two explicit read
//! conflict ranges: the keys strictly between the predecessor and the element
//! at level `L` (someone inserting there would make a different key the
//! predecessor), and the predecessor's level-0 key (someone removing it).
//! So two inserts or removes far apart in the order commit together: their
//! adds to a shared predecessor (the sentinel at the top levels) commute and
//! neither read the other's keys. They do conflict when one of the elements
//! lands on a level `L` where the two share a predecessor: inserting at `L`
//! reads the predecessor's count and recounts level `L - 1` between them,
//! which one in 16^L inserts does. Two writers of the same element conflict
//! on its level-0 key, so duplicates are refused even under concurrency.
//! A replace guards the levels it writes as an insert and a remove do, and
//! at the first level it skips it guards the keys between the shared
//! predecessor and both elements: an insert landing between them there
//! (or higher: it is on this level too) would split the span the move
//! stays inside, so it must conflict. Reads with `snapshot = true` add no conflicts (a submit that reports its
//! new rank should read it that way, or every concurrent insert before it
//! would conflict with it).
//!
//! ## Where this differs from the Record Layer
//! - **Hash**: the first 4 bytes of SHA-256 of the element (big-endian), not
//!   Java's `Arrays.hashCode`, whose low bits are poorly spread for the
//!   low-entropy, tuple-encoded elements a leaderboard stores. The hash
//!   decides the layout, so it can never change for a stored set.
//! - **Levels**: 8, not 6 (32 hash bits, 4 per level): the top level stays
//!   a handful of keys up to 16^7 ≈ 268 million elements, where 6 levels
//!   would read ~n/16^5 top-level keys (a million elements: 1; a hundred
//!   million: 95).
//! - **No `init`**: the sentinels are written by the first insert (an atomic
//!   add or a set of the predecessor, which is the sentinel), and an absent
//!   sentinel reads as count 0; so a set needs no creation step and an
//!   empty subspace is an empty set.
//! - **No duplicates counted**: the Record Layer's `countDuplicates` option
//!   is left out; an insert of a present element returns `false`.
//! - **Remove** reads the element's own key `(L, element)` only on the
//!   levels its hash puts it on (the invariants say it is on no other);
//!   the Record Layer reads it at every level. A zero count change is not
//!   written (no needless write conflict).
//! - **Replace** ([`RankedSet::replace`]), which the Record Layer lacks: a
//!   move in one pass that skips the levels where it changes no count.
//! - **Bulk build** from sorted elements ([`RankedSet::bulk_build`]), which
//!   the Record Layer lacks: a million per-element inserts take minutes.
//!
//! Who may import this: `db::*` layers (leaderboards) and tests. It imports
//! only `kv`.

use std::ops::Bound;

use foundationdb_tuple::{Bytes, Subspace};
use sha2::{Digest, Sha256};

use super::{ConflictRangeType, KeySelector, MutationType, RangeOption, Transaction};
use crate::kv;

/// Levels of the skip list, level 0 included.
pub const LEVELS: usize = 8;
/// Hash bits per level: each level holds about 1 in 2^4 = 16 of the keys of
/// the level below.
pub const FAN_BITS: u32 = 4;
/// Longest element, in bytes.
pub const MAX_ELEMENT_BYTES: usize = 2048;
/// Longest subspace prefix, in bytes.
pub const MAX_PREFIX_BYTES: usize = 1024;
/// Keys read per request when walking a level forward: twice the expected
/// span of a key (the fan-out), so most walks take one request.
const WALK_BATCH: usize = 32;
/// Bytes of keys and values [`RankedSet::bulk_build`] writes per
/// transaction: FoundationDB advises transactions under 1 MB, and its hard
/// limit is 10 MB.
pub const BULK_TRANSACTION_BYTES: usize = 1 << 20;

/// A failed ranked set operation.
#[derive(Debug, thiserror::Error)]
pub enum RankedSetError {
    /// The empty element is reserved for the sentinel.
    #[error("a ranked set element must not be empty")]
    EmptyElement,
    /// The element is longer than [`MAX_ELEMENT_BYTES`].
    #[error("ranked set element of {len_bytes} bytes exceeds {limit_bytes}")]
    ElementTooLarge {
        /// The element's length.
        len_bytes: usize,
        /// [`MAX_ELEMENT_BYTES`].
        limit_bytes: usize,
    },
    /// The subspace prefix is longer than [`MAX_PREFIX_BYTES`].
    #[error("ranked set prefix of {len_bytes} bytes exceeds {limit_bytes}")]
    PrefixTooLong {
        /// The prefix's length.
        len_bytes: usize,
        /// [`MAX_PREFIX_BYTES`].
        limit_bytes: usize,
    },
    /// [`RankedSet::bulk_build`] was given elements out of order or twice.
    #[error("bulk build elements must be strictly increasing (element {index} is not)")]
    NotSorted {
        /// Position of the offending element in the input.
        index: u64,
    },
    /// [`RankedSet::bulk_build`] found keys in the subspace already.
    #[error("bulk build needs an empty subspace")]
    NotEmpty,
    /// A stored key or value is not of the ranked set's format.
    #[error("malformed ranked set data: {0}")]
    Malformed(&'static str),
    /// The storage operation failed; retryable if the `kv` error is.
    #[error(transparent)]
    Kv(#[from] kv::Error),
}

impl kv::TransactError for RankedSetError {
    fn as_kv(&self) -> Option<&kv::Error> {
        match self {
            RankedSetError::Kv(e) => Some(e),
            _ => None,
        }
    }
}

type Result<T, E = RankedSetError> = std::result::Result<T, E>;

/// The highest level `element` is stored on: the number of whole 4-bit
/// groups of zero bits at the low end of its hash (the first 4 bytes of its
/// SHA-256, big-endian), capped at `LEVELS - 1`. Level `L` therefore holds
/// about one in 16^L elements.
pub fn level_of(element: &[u8]) -> usize {
    let digest = Sha256::digest(element);
    let hash = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    ((hash.trailing_zeros() / FAN_BITS) as usize).min(LEVELS - 1)
}

fn check_element(element: &[u8]) -> Result<()> {
    if element.is_empty() {
        return Err(RankedSetError::EmptyElement);
    }
    if element.len() > MAX_ELEMENT_BYTES {
        return Err(RankedSetError::ElementTooLarge {
            len_bytes: element.len(),
            limit_bytes: MAX_ELEMENT_BYTES,
        });
    }
    Ok(())
}

fn encode_count(count: i64) -> [u8; 8] {
    count.to_le_bytes()
}

fn decode_count(value: &[u8]) -> Result<i64> {
    value
        .try_into()
        .map(i64::from_le_bytes)
        .map_err(|_| RankedSetError::Malformed("count is not 8 bytes"))
}

/// A count read from the store as a number of elements.
fn as_len(count: i64) -> Result<u64> {
    u64::try_from(count).map_err(|_| RankedSetError::Malformed("negative count"))
}

/// What [`RankedSet::walk`] found.
#[derive(Default)]
struct Walk {
    /// The number of elements less than the one walked to.
    less: u64,
    /// Whether the walk met the element (and stopped there, above level 0).
    found: bool,
    /// The last key before the element on each level `>= 1`, when kept and
    /// not `found`; index 0 unused.
    predecessors: [Vec<u8>; LEVELS],
}

/// A ranked set in a caller-given subspace. Cheap to clone; holds no state
/// but the subspace, so any number of handles and servers may share a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RankedSet {
    subspace: Subspace,
}

impl RankedSet {
    /// The ranked set stored in `subspace`, which must hold nothing else.
    ///
    /// Errors: [`RankedSetError::PrefixTooLong`] past [`MAX_PREFIX_BYTES`].
    pub fn new(subspace: Subspace) -> Result<Self> {
        let len_bytes = subspace.bytes().len();
        if len_bytes > MAX_PREFIX_BYTES {
            return Err(RankedSetError::PrefixTooLong {
                len_bytes,
                limit_bytes: MAX_PREFIX_BYTES,
            });
        }
        Ok(RankedSet { subspace })
    }

    /// The subspace holding the set.
    pub fn subspace(&self) -> &Subspace {
        &self.subspace
    }

    /// The key of `element` at `level`.
    fn key(&self, level: usize, element: &[u8]) -> Vec<u8> {
        self.subspace.pack(&(level as i64, element))
    }

    /// The range of every key at `level`.
    fn level_range(&self, level: usize) -> (Vec<u8>, Vec<u8>) {
        self.subspace.subspace(&(level as i64,)).range()
    }

    /// The element of a key at `level`.
    fn element_of(&self, key: &[u8]) -> Result<Vec<u8>> {
        let (_, element): (i64, Bytes) = self
            .subspace
            .unpack(key)
            .map_err(|_| RankedSetError::Malformed("key is not (level, element)"))?;
        Ok(element.0.into_owned())
    }

    /// Adds `element`. Returns `false`, changing nothing, if it was present.
    ///
    /// Conflicts: see the module docs; reads the element's level-0 key, so
    /// concurrent inserts of one element conflict and one of them finds it.
    ///
    /// Errors: [`RankedSetError::EmptyElement`],
    /// [`RankedSetError::ElementTooLarge`], the store's.
    pub async fn insert(&self, tx: &Transaction, element: &[u8]) -> Result<bool> {
        check_element(element)?;
        let key0 = self.key(0, element);
        if tx.get(&key0, false).await?.is_some() {
            return Ok(false);
        }
        tx.set(&key0, &encode_count(1));
        let top = level_of(element);
        // Levels in order: inserting at level L recounts level L - 1, which
        // must already hold this insert (the transaction reads its writes).
        for level in 1..LEVELS {
            let prev = self.previous(tx, level, element).await?;
            self.insert_at(tx, level, &prev, element, level <= top)
                .await?;
        }
        Ok(true)
    }

    /// Removes `element`. Returns `false`, changing nothing, if it was absent.
    ///
    /// Errors: [`RankedSetError::EmptyElement`],
    /// [`RankedSetError::ElementTooLarge`], the store's.
    pub async fn remove(&self, tx: &Transaction, element: &[u8]) -> Result<bool> {
        check_element(element)?;
        let key0 = self.key(0, element);
        if tx.get(&key0, false).await?.is_none() {
            return Ok(false);
        }
        tx.clear(&key0);
        let top = level_of(element);
        for level in 1..LEVELS {
            let prev = self.previous(tx, level, element).await?;
            self.remove_at(tx, level, &prev, element, level <= top)
                .await?;
        }
        Ok(true)
    }

    /// Puts `new` in the set in place of `old` (`None`: a plain insert)
    /// and returns the 0-based rank of `new` afterwards: what
    /// [`RankedSet::remove`] of `old`, [`RankedSet::insert`] of `new` and
    /// [`RankedSet::count_less_than`] of `new` (at snapshot isolation)
    /// would do and answer, with the same keys written and the same
    /// conflicts where a count changes, in fewer reads:
    ///
    /// - one walk to `new` before anything moves (snapshot reads, as a
    ///   rank), which yields the rank, whether `new` is present (its
    ///   level-0 key ends the walk's last range; the conflict range a
    ///   conflicting read of it would add is added) and `new`'s
    ///   predecessor at every level; the removal of `old` takes one away from the rank when
    ///   `old` is below `new`, and where `old` was the predecessor its own
    ///   predecessor takes its place;
    /// - `old`'s own key is read only on the levels its hash puts it on
    ///   ([`level_of`]: the invariants say it is on no other);
    /// - level by level, `old`'s predecessor is read until a level above
    ///   both elements' where it is `new`'s too: there `-1` and `+1` fall
    ///   on one key's span, and on every level above as well (a key of a
    ///   higher level between the two would be on this level too), so
    ///   nothing is read or written from that level up. The read-conflict
    ///   ranges of that level (the keys between the shared predecessor and
    ///   both elements) make an insert between the two, which would split
    ///   the span, conflict with this transaction.
    ///
    /// Afterwards `old` is absent and `new` present, whatever they were
    /// before (an absent `old` makes this an insert; a present `new`, a
    /// removal of `old`).
    ///
    /// Errors: [`RankedSetError::EmptyElement`],
    /// [`RankedSetError::ElementTooLarge`], the store's.
    pub async fn replace(&self, tx: &Transaction, old: Option<&[u8]>, new: &[u8]) -> Result<u64> {
        check_element(new)?;
        if let Some(old) = old {
            check_element(old)?;
        }
        // The walk reads `new`'s level-0 key too, at snapshot isolation;
        // its conflict range is what a conflicting read of it would add
        // (two writers of `new` conflict, as two inserts do).
        let mut walk = self.walk(tx, new, true, true).await?;
        let new0 = self.key(0, new);
        tx.add_conflict_range(&new0, &key_after(&new0), ConflictRangeType::Read)?;
        if walk.found {
            if let Some(old) = old.filter(|old| *old != new) {
                self.remove(tx, old).await?;
            }
            return self.count_less_than(tx, new, true).await;
        }
        let old = match old {
            Some(old) if tx.get(&self.key(0, old), false).await?.is_some() => Some(old),
            _ => None,
        };
        let rank = walk.less - u64::from(old.is_some_and(|old| old < new));
        if let Some(old) = old {
            tx.clear(&self.key(0, old));
        }
        tx.set(&new0, &encode_count(1));
        let new_top = level_of(new);
        let old_top = old.map(level_of);
        for level in 1..LEVELS {
            let mut prev = std::mem::take(&mut walk.predecessors[level]);
            if let (Some(old), Some(old_top)) = (old, old_top) {
                let old_prev = self.previous(tx, level, old).await?;
                if level > old_top && level > new_top && old_prev == prev {
                    self.guard_predecessor(tx, level, &prev, new)?;
                    break;
                }
                self.remove_at(tx, level, &old_prev, old, level <= old_top)
                    .await?;
                if prev == old {
                    prev = old_prev;
                }
            }
            self.guard_predecessor(tx, level, &prev, new)?;
            self.insert_at(tx, level, &prev, new, level <= new_top)
                .await?;
        }
        Ok(rank)
    }

    /// Whether `element` is in the set (one point read).
    ///
    /// Errors: [`RankedSetError::EmptyElement`],
    /// [`RankedSetError::ElementTooLarge`], the store's.
    pub async fn contains(&self, tx: &Transaction, element: &[u8], snapshot: bool) -> Result<bool> {
        check_element(element)?;
        Ok(tx.get(&self.key(0, element), snapshot).await?.is_some())
    }

    /// The number of elements.
    ///
    /// Errors: the store's; [`RankedSetError::Malformed`].
    pub async fn count(&self, tx: &Transaction, snapshot: bool) -> Result<u64> {
        let (begin, end) = self.level_range(LEVELS - 1);
        let top = tx
            .get_range_all(RangeOption::new(begin, end), snapshot)
            .await?;
        let mut total = 0;
        for kv in top {
            total += decode_count(&kv.value)?;
        }
        as_len(total)
    }

    /// The 0-based position of `element` in the set, or `None` if absent.
    ///
    /// Errors: [`RankedSetError::EmptyElement`],
    /// [`RankedSetError::ElementTooLarge`], the store's.
    pub async fn rank(
        &self,
        tx: &Transaction,
        element: &[u8],
        snapshot: bool,
    ) -> Result<Option<u64>> {
        if !self.contains(tx, element, snapshot).await? {
            return Ok(None);
        }
        self.count_less_than(tx, element, snapshot).await.map(Some)
    }

    /// The number of elements less than `element`: its rank if present, the
    /// rank it would take if inserted otherwise.
    ///
    /// Errors: [`RankedSetError::EmptyElement`],
    /// [`RankedSetError::ElementTooLarge`], the store's.
    pub async fn count_less_than(
        &self,
        tx: &Transaction,
        element: &[u8],
        snapshot: bool,
    ) -> Result<u64> {
        Ok(self.walk(tx, element, snapshot, false).await?.less)
    }

    /// The walk of [`RankedSet::count_less_than`]: from the top level
    /// down, the counts of the keys from the last key it stopped at up to
    /// `element`. It stops early where it meets `element` on a level
    /// `>= 1` (`found`); otherwise it ends at level 0. With `keep` it also
    /// keeps the last key before `element` on every level `>= 1` (the
    /// sentinel, empty, where there is none) and reads `element`'s own
    /// level-0 key in its last range (`found` if present), so a move needs
    /// no read of its own for either.
    async fn walk(
        &self,
        tx: &Transaction,
        element: &[u8],
        snapshot: bool,
        keep: bool,
    ) -> Result<Walk> {
        check_element(element)?;
        let mut walk = Walk::default();
        let mut rank: i64 = 0;
        // The last key at or before `element` on the level above: the
        // elements before it are counted in `rank`.
        let mut from: Vec<u8> = Vec::new();
        for level in (1..LEVELS).rev() {
            let range = RangeOption {
                begin: KeySelector::first_greater_or_equal(self.key(level, &from)),
                end: KeySelector::first_greater_than(self.key(level, element)),
                limit: None,
                reverse: false,
            };
            let kvs = tx.get_range_all(range, snapshot).await?;
            if let Some(last) = kvs.last() {
                for kv in &kvs[..kvs.len() - 1] {
                    rank += decode_count(&kv.value)?;
                }
                let last_element = self.element_of(&last.key)?;
                if last_element == element {
                    walk.found = true;
                    walk.less = as_len(rank)?;
                    return Ok(walk);
                }
                from = last_element;
            }
            if keep {
                walk.predecessors[level].clone_from(&from);
            }
        }
        let key0 = self.key(0, element);
        let end = if keep { key_after(&key0) } else { key0.clone() };
        for kv in tx
            .get_range_all(RangeOption::new(self.key(0, &from), end), snapshot)
            .await?
        {
            if kv.key == key0 {
                walk.found = true;
            } else {
                rank += decode_count(&kv.value)?;
            }
        }
        walk.less = as_len(rank)?;
        Ok(walk)
    }

    /// The element at 0-based position `index`, or `None` if the set has
    /// `index` elements or fewer.
    ///
    /// Errors: the store's; [`RankedSetError::Malformed`].
    pub async fn nth(
        &self,
        tx: &Transaction,
        index: u64,
        snapshot: bool,
    ) -> Result<Option<Vec<u8>>> {
        let mut remaining = i64::try_from(index).unwrap_or(i64::MAX);
        // The key whose span holds `index`, found on the level above.
        let mut from: Vec<u8> = Vec::new();
        'levels: for level in (0..LEVELS).rev() {
            let (_, level_end) = self.level_range(level);
            let mut begin = KeySelector::first_greater_or_equal(self.key(level, &from));
            loop {
                let range = RangeOption {
                    begin,
                    end: KeySelector::first_greater_or_equal(level_end.clone()),
                    limit: Some(WALK_BATCH),
                    reverse: false,
                };
                let chunk = tx.get_range(&range, snapshot).await?.kvs;
                for kv in &chunk {
                    let element = self.element_of(&kv.key)?;
                    if remaining == 0 && !element.is_empty() {
                        return Ok(Some(element));
                    }
                    let count = decode_count(&kv.value)?;
                    if count > remaining {
                        from = element;
                        continue 'levels;
                    }
                    remaining -= count;
                }
                match chunk.last() {
                    Some(last) if chunk.len() == WALK_BATCH => {
                        begin = KeySelector::first_greater_than(last.key.clone());
                    }
                    // The level ends before `index`: the set is too small.
                    _ => return Ok(None),
                }
            }
        }
        Ok(None)
    }

    /// Up to `limit` elements in order, after `after` (exclusive; from the
    /// first element if `Unbounded`), or before it, descending, if `reverse`.
    ///
    /// Errors: [`RankedSetError::EmptyElement`],
    /// [`RankedSetError::ElementTooLarge`] for the bound, the store's.
    pub async fn elements(
        &self,
        tx: &Transaction,
        after: Bound<&[u8]>,
        limit: usize,
        reverse: bool,
        snapshot: bool,
    ) -> Result<Vec<Vec<u8>>> {
        let (begin, end) = self.level_range(0);
        let (begin, end) = match after {
            Bound::Unbounded => (
                KeySelector::first_greater_or_equal(begin),
                KeySelector::first_greater_or_equal(end),
            ),
            Bound::Included(e) | Bound::Excluded(e) => {
                check_element(e)?;
                let at = self.key(0, e);
                let inclusive = matches!(after, Bound::Included(_));
                if reverse {
                    let end = if inclusive {
                        KeySelector::first_greater_than(at)
                    } else {
                        KeySelector::first_greater_or_equal(at)
                    };
                    (KeySelector::first_greater_or_equal(begin), end)
                } else {
                    let begin = if inclusive {
                        KeySelector::first_greater_or_equal(at)
                    } else {
                        KeySelector::first_greater_than(at)
                    };
                    (begin, KeySelector::first_greater_or_equal(end))
                }
            }
        };
        let range = RangeOption {
            begin,
            end,
            limit: Some(limit),
            reverse,
        };
        let kvs = tx.get_range_all(range, snapshot).await?;
        kvs.iter().map(|kv| self.element_of(&kv.key)).collect()
    }

    /// Up to `limit` elements from 0-based position `start` on, in order:
    /// one [`RankedSet::nth`] and one range read.
    ///
    /// Errors: the store's; [`RankedSetError::Malformed`].
    pub async fn range_by_rank(
        &self,
        tx: &Transaction,
        start: u64,
        limit: usize,
        snapshot: bool,
    ) -> Result<Vec<Vec<u8>>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let Some(first) = self.nth(tx, start, snapshot).await? else {
            return Ok(Vec::new());
        };
        self.elements(tx, Bound::Included(&first), limit, false, snapshot)
            .await
    }

    /// Builds the set from `elements`, which must be strictly increasing,
    /// into an empty subspace, in transactions of about
    /// [`BULK_TRANSACTION_BYTES`] each. Returns the number of elements.
    ///
    /// The result has exactly the keys and values that inserting the
    /// elements one by one gives (module invariants), at a fraction of the
    /// cost: each key is written once, with its final count, and nothing is
    /// read. It is **not atomic**: between its transactions the subspace
    /// holds a partial set whose counts are incomplete, so build into a
    /// subspace no reader or writer uses until this returns (a new board, a
    /// benchmark, a migration). Each transaction only sets keys to values
    /// fixed before it runs, so running one twice is harmless.
    ///
    /// Errors: [`RankedSetError::NotEmpty`] if the subspace holds any key;
    /// [`RankedSetError::NotSorted`], [`RankedSetError::EmptyElement`],
    /// [`RankedSetError::ElementTooLarge`] for a bad element, after the
    /// elements before it were written; the store's.
    pub async fn bulk_build<I>(&self, db: &kv::Database, elements: I) -> Result<u64>
    where
        I: IntoIterator<Item = Vec<u8>>,
    {
        let (begin, end) = self.subspace.range();
        let existing = db.read_range(RangeOption::new(begin, end).limit(1)).await?;
        if !existing.is_empty() {
            return Err(RankedSetError::NotEmpty);
        }
        // The last key opened at each level >= 1 and the elements counted in
        // its span so far; index 0 unused.
        let mut open: Vec<(Vec<u8>, i64)> = vec![(Vec::new(), 0); LEVELS];
        let mut batch: Vec<(Vec<u8>, [u8; 8])> = Vec::new();
        let mut batch_bytes = 0;
        let mut count: u64 = 0;
        let mut last: Option<Vec<u8>> = None;
        for element in elements {
            check_element(&element)?;
            if last.as_ref().is_some_and(|l| *l >= element) {
                return Err(RankedSetError::NotSorted { index: count });
            }
            let mut push = |key: Vec<u8>, value: i64| {
                batch_bytes += key.len() + 8;
                batch.push((key, encode_count(value)));
            };
            push(self.key(0, &element), 1);
            let top = level_of(&element);
            for (level, slot) in open.iter_mut().enumerate().skip(1) {
                if level <= top {
                    let (closed, span) = std::mem::replace(slot, (element.clone(), 0));
                    push(self.key(level, &closed), span);
                }
                slot.1 += 1;
            }
            count += 1;
            last = Some(element);
            if batch_bytes >= BULK_TRANSACTION_BYTES {
                write_batch(db, &std::mem::take(&mut batch)).await?;
                batch_bytes = 0;
            }
        }
        if count > 0 {
            for (level, (element, span)) in open.iter().enumerate().skip(1) {
                batch.push((self.key(level, element), encode_count(*span)));
            }
        }
        write_batch(db, &batch).await?;
        Ok(count)
    }

    /// The element before `element` at `level` (the sentinel, empty, if
    /// none), read at snapshot isolation, with the read conflicts that make
    /// an atomic add to it safe ([`RankedSet::guard_predecessor`]).
    async fn previous(&self, tx: &Transaction, level: usize, element: &[u8]) -> Result<Vec<u8>> {
        let key = self.key(level, element);
        let range = RangeOption::new(self.key(level, b""), key)
            .limit(1)
            .reverse(true);
        let found = tx.get_range(&range, true).await?.kvs;
        let prev = match found.first() {
            Some(kv) => self.element_of(&kv.key)?,
            None => Vec::new(),
        };
        self.guard_predecessor(tx, level, &prev, element)?;
        Ok(prev)
    }

    /// Adds the read conflicts that keep `prev`, found at snapshot
    /// isolation, `element`'s predecessor at `level` until commit: the
    /// keys strictly between the two at this level, and `prev`'s level-0
    /// key (module docs, "Conflicts").
    fn guard_predecessor(
        &self,
        tx: &Transaction,
        level: usize,
        prev: &[u8],
        element: &[u8],
    ) -> Result<()> {
        let prev_key = self.key(level, prev);
        tx.add_conflict_range(
            &key_after(&prev_key),
            &self.key(level, element),
            ConflictRangeType::Read,
        )?;
        if !prev.is_empty() {
            let prev0 = self.key(0, prev);
            tx.add_conflict_range(&prev0, &key_after(&prev0), ConflictRangeType::Read)?;
        }
        Ok(())
    }

    /// Inserts `element` at `level` (`>= 1`) after its predecessor `prev`
    /// (guarded by the caller): adds 1 to `prev`'s count, or, when the
    /// element is on the level (`on_level`), splits `prev`'s span,
    /// recounting level `level - 1` (which must already hold the element).
    async fn insert_at(
        &self,
        tx: &Transaction,
        level: usize,
        prev: &[u8],
        element: &[u8],
        on_level: bool,
    ) -> Result<()> {
        let prev_key = self.key(level, prev);
        if !on_level {
            tx.atomic_op(&prev_key, &encode_count(1), MutationType::Add);
            return Ok(());
        }
        let prev_count = match tx.get(&prev_key, false).await? {
            Some(v) => decode_count(&v)?,
            None => 0,
        };
        let kept = self.count_between(tx, level - 1, prev, element).await?;
        tx.set(&prev_key, &encode_count(kept));
        tx.set(
            &self.key(level, element),
            &encode_count(prev_count - kept + 1),
        );
        Ok(())
    }

    /// Removes `element` from `level` (`>= 1`), its predecessor there
    /// being `prev` (guarded by the caller): `prev` loses the element and
    /// inherits the span of the element's own key, which exists only when
    /// the element's hash puts it on the level (`on_level`; the invariants
    /// say it is on no other, so no read looks for it there).
    async fn remove_at(
        &self,
        tx: &Transaction,
        level: usize,
        prev: &[u8],
        element: &[u8],
        on_level: bool,
    ) -> Result<()> {
        let mut change = -1;
        if on_level {
            let key = self.key(level, element);
            if let Some(v) = tx.get(&key, false).await? {
                change += decode_count(&v)?;
                tx.clear(&key);
            }
        }
        if change != 0 {
            tx.atomic_op(
                &self.key(level, prev),
                &encode_count(change),
                MutationType::Add,
            );
        }
        Ok(())
    }

    /// The number of elements in `[from, to)`, from the counts at `level`
    /// (a conflicting read: the caller overwrites a count with it).
    async fn count_between(
        &self,
        tx: &Transaction,
        level: usize,
        from: &[u8],
        to: &[u8],
    ) -> Result<i64> {
        let range = RangeOption::new(self.key(level, from), self.key(level, to));
        let mut total = 0;
        for kv in tx.get_range_all(range, false).await? {
            total += decode_count(&kv.value)?;
        }
        Ok(total)
    }
}

/// The first key after `key`.
fn key_after(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

/// Sets every pair of `batch` in one transaction. Safe to run twice: it
/// only sets keys to values fixed before it runs.
async fn write_batch(db: &kv::Database, batch: &[(Vec<u8>, [u8; 8])]) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    db.run(|tx, _| async move {
        for (key, value) in batch {
            tx.set(key, value);
        }
        Ok::<_, kv::Error>(())
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_thin_out_by_the_fan_out() {
        let mut at_least = [0u32; LEVELS];
        for i in 0u32..65_536 {
            for (level, n) in at_least.iter_mut().enumerate() {
                if level_of(&i.to_be_bytes()) >= level {
                    *n += 1;
                }
            }
        }
        assert_eq!(at_least[0], 65_536);
        // About 4,096 at level 1 and 256 at level 2 (binomial spreads of
        // ±4 sigma).
        assert!((3_850..4_350).contains(&at_least[1]), "{at_least:?}");
        assert!((190..330).contains(&at_least[2]), "{at_least:?}");
    }

    #[test]
    fn elements_are_checked() {
        assert!(matches!(
            check_element(b""),
            Err(RankedSetError::EmptyElement)
        ));
        assert!(check_element(&[0; MAX_ELEMENT_BYTES]).is_ok());
        assert!(matches!(
            check_element(&[0; MAX_ELEMENT_BYTES + 1]),
            Err(RankedSetError::ElementTooLarge { .. })
        ));
        let long = Subspace::from_bytes(vec![1; MAX_PREFIX_BYTES + 1]);
        assert!(matches!(
            RankedSet::new(long),
            Err(RankedSetError::PrefixTooLong { .. })
        ));
    }

    #[test]
    fn the_longest_key_fits_foundationdb() {
        let set = RankedSet::new(Subspace::from_bytes(vec![1; MAX_PREFIX_BYTES])).unwrap();
        // Zero bytes are escaped to two bytes: the worst case.
        let key = set.key(LEVELS - 1, &[0; MAX_ELEMENT_BYTES]);
        assert!(key.len() <= kv::limits::KEY_SIZE_BYTES, "{}", key.len());
    }
}
