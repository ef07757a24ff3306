//! The high-contention allocator (HCA): hands out short, never-repeated
//! integers that the directory layer turns into directory prefixes.
//!
//! Format and algorithm are FoundationDB's (`HighContentionAllocator` in
//! `bindings/python/fdb/directory_impl.py`, `directory/allocator.go`), so
//! prefixes allocated here and by FoundationDB's own bindings never collide:
//!
//! - `counters = hca[0]`: `counters[start]` holds how many allocations were
//!   attempted in the window beginning at `start`, a little-endian `i64`
//!   maintained with atomic adds. Only the latest window's counter is kept.
//! - `recent = hca[1]`: `recent[n]` exists (empty value) once `n` was handed
//!   out or tried in the current window.
//! - Windows are 64 wide while `start < 255`, 1024 while `start < 65535`, and
//!   8192 after that. A window is advanced once it is half full.
//! - A candidate is drawn uniformly from the window (from the layer's
//!   [`Random`], the operating system's unless a test seeded it); it is free if
//!   `recent[candidate]` is absent at a non-snapshot read (a read conflict, so
//!   two transactions cannot both take it) and the window did not move.
//!
//! Counters are read at snapshot isolation so that allocations do not conflict
//! on them; the winning candidate gets an explicit write-conflict key.
//! FoundationDB additionally sets `next_write_no_write_conflict_range` on the
//! window clean-up and on marking a candidate tried; the `kv` interface has no
//! such option, so those writes carry write conflicts here. That can only add
//! conflicts (a retry), never let two allocations return the same integer.
//!
//! Two allocations may run concurrently on one transaction (futures joined
//! on a shared `Transaction`); like Go's `allocatorMutex`, a process-wide
//! lock makes each "count, then read and mark a candidate" step atomic with
//! respect to the others, so the second sees the first's marks. It is held
//! only across those reads, never across a commit.
//!
//! Who may import this: the directory layer only.

use foundationdb_tuple::{Subspace, pack};

use super::DirectoryError;
use crate::kv::{ConflictRangeType, MutationType, RangeOption, Transaction};
use crate::random::Random;

/// Serialises the read-then-mark steps of concurrent allocations.
static ALLOCATOR_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The allocator rooted at `root_node[b"hca"]`.
#[derive(Clone, Debug)]
pub(super) struct HighContentionAllocator {
    counters: Subspace,
    recent: Subspace,
    /// Where candidates are drawn from.
    pub(super) random: Random,
}

/// The window of candidates for allocations counted from `start`.
pub(super) fn window_size(start: i64) -> i64 {
    if start < 255 {
        64
    } else if start < 65535 {
        1024
    } else {
        8192
    }
}

impl HighContentionAllocator {
    /// The allocator whose state lives under `subspace`, drawing candidates
    /// from the operating system's randomness.
    pub(super) fn new(subspace: &Subspace) -> Self {
        HighContentionAllocator {
            counters: subspace.subspace(&0i64),
            recent: subspace.subspace(&1i64),
            random: Random::default(),
        }
    }

    /// Allocates an integer no other allocation on this subspace has returned
    /// or will return, and returns it tuple-packed (the suffix of a new
    /// directory prefix).
    pub(super) async fn allocate(&self, tx: &Transaction) -> Result<Vec<u8>, DirectoryError> {
        loop {
            let mut start = self.latest_window(tx).await?.unwrap_or(0);
            let mut window_advanced = false;
            let window = loop {
                let counter = self.counters.pack(&start);
                let guard = ALLOCATOR_LOCK.lock().await;
                if window_advanced {
                    tx.clear_range(self.counters.bytes(), &counter);
                    tx.clear_range(self.recent.bytes(), &self.recent.pack(&start));
                }
                tx.atomic_op(&counter, &1i64.to_le_bytes(), MutationType::Add);
                let count =
                    match tx.get(&counter, true).await? {
                        Some(v) => i64::from_le_bytes(v.as_slice().try_into().map_err(|_| {
                            DirectoryError::Malformed("HCA counter is not 8 bytes")
                        })?),
                        None => 0,
                    };
                drop(guard);
                let window = window_size(start);
                if count * 2 < window {
                    break window;
                }
                start += window;
                window_advanced = true;
            };
            loop {
                let candidate = self.random.range(start..start + window);
                let guard = ALLOCATOR_LOCK.lock().await;
                let latest = self.latest_window(tx).await?;
                let key = self.recent.pack(&candidate);
                let taken = tx.get(&key, false).await?.is_some();
                tx.set(&key, b"");
                drop(guard);
                if latest.is_some_and(|latest| latest > start) {
                    break;
                }
                if !taken {
                    let mut end = key.clone();
                    end.push(0);
                    tx.add_conflict_range(&key, &end, ConflictRangeType::Write)?;
                    return Ok(pack(&candidate));
                }
            }
        }
    }

    /// The start of the latest window, read at snapshot isolation.
    async fn latest_window(&self, tx: &Transaction) -> Result<Option<i64>, DirectoryError> {
        let (begin, end) = self.counters.range();
        let chunk = tx
            .get_range(&RangeOption::new(begin, end).limit(1).reverse(true), true)
            .await?;
        match chunk.kvs.first() {
            Some(kv) => Ok(Some(self.counters.unpack::<i64>(&kv.key)?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_grow_with_the_counter() {
        assert_eq!(window_size(0), 64);
        assert_eq!(window_size(254), 64);
        assert_eq!(window_size(255), 1024);
        assert_eq!(window_size(65534), 1024);
        assert_eq!(window_size(65535), 8192);
    }

    #[test]
    fn state_lives_in_the_reference_subspaces() {
        let hca = HighContentionAllocator::new(&Subspace::from_bytes(b"H".to_vec()));
        assert_eq!(hca.counters.bytes(), b"H\x14");
        assert_eq!(hca.recent.bytes(), b"H\x15\x01");
        assert_eq!(hca.counters.pack(&300i64), b"H\x14\x16\x01\x2c");
    }
}
