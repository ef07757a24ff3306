//! Read receipts (`m.read`, `m.read.private`), stored so that sync reads
//! "the receipts of room R set after position P" with one range read.
//!
//! Layout: `receipts/log (room, position) -> ReceiptRecord` holds exactly
//! one entry per (room, user, type, thread): the latest receipt, keyed by
//! the versionstamp of the commit that set it; `receipts/latest (room,
//! user, type, thread) -> position` says where that entry is, so a new
//! receipt clears the old one in the same transaction. The log is
//! therefore both the change feed (entries after P) and the current
//! receipts of the room (the whole range). Each write bumps `meta/notify`.
//!
//! Contention: a receipt reads (with conflict) only its own `latest` key,
//! so receipts of different users never conflict; two receipts of one
//! user and type race and one retries.
//!
//! Source: <https://spec.matrix.org/v1.16/client-server-api/#receipts>.

use foundationdb_tuple::Versionstamp;
use ruma::{OwnedEventId, OwnedUserId, RoomId, UserId};
use serde::{Deserialize, Serialize};

use super::{Error, Result, RoomsDb, StreamPosition, decode, encode, keys, trailing_position};
use crate::db::notify::Topic;
use crate::kv::{MutationType, RangeOption};

/// `receipts/log`: one user's latest receipt of one type in one thread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptRecord {
    /// Whose receipt.
    pub user_id: OwnedUserId,
    /// `m.read` or `m.read.private`.
    pub receipt_type: String,
    /// The thread: `""` for an unthreaded receipt, `"main"`, or a thread
    /// root's event ID.
    pub thread: String,
    /// The event read up to.
    pub event_id: OwnedEventId,
    /// When, in milliseconds since the Unix epoch.
    pub ts: u64,
}

/// What [`RoomsDb::put_receipts`] did for one receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiptUpdate {
    /// The receipt's new stream position (what sync compares with).
    pub position: StreamPosition,
}

impl RoomsDb {
    /// Sets each of `receipts` as the latest of its (user, type, thread) in
    /// `room_id`, replacing the previous one, all in one transaction;
    /// returns their new positions, in order. The receipts must be of
    /// distinct (user, type, thread) (`/read_markers` sets `m.read` and
    /// `m.read.private` together).
    ///
    /// Errors: the store's.
    pub async fn put_receipts(
        &self,
        room_id: &RoomId,
        receipts: &[ReceiptRecord],
    ) -> Result<Vec<ReceiptUpdate>> {
        let space = &self.layout.receipts;
        let room = room_id.as_str();
        let writes: Vec<(Vec<u8>, Vec<u8>)> = receipts
            .iter()
            .map(|receipt| {
                let latest = space.key(
                    &keys::RECEIPT_LATEST,
                    &(
                        room,
                        receipt.user_id.as_str(),
                        receipt.receipt_type.as_str(),
                        receipt.thread.as_str(),
                    ),
                );
                (latest, encode(receipt))
            })
            .collect();
        let writes = &writes;
        // Safe to run twice: each attempt reads where the receipt's current
        // log entry is (with a conflict), clears it and writes the new one,
        // so a retry after an attempt that did commit replaces that
        // attempt's entry: still one entry per (user, type, thread).
        let ((), info) = self
            .db
            .run_committed(|tx, _| async move {
                for (order, (latest, value)) in writes.iter().enumerate() {
                    let order = u16::try_from(order).expect("a few receipts per transaction");
                    if let Some(old) = tx.get(latest, false).await?
                        && let Ok(old) = <[u8; 12]>::try_from(old.as_slice())
                    {
                        let old = StreamPosition(old).to_tuple();
                        tx.clear(&space.key(&keys::RECEIPT_LOG, &(room, old)));
                    }
                    tx.atomic_op(
                        &space.versionstamped_key(
                            &keys::RECEIPT_LOG,
                            &(room, &Versionstamp::incomplete(order)),
                        ),
                        value,
                        MutationType::SetVersionstampedKey,
                    );
                    let mut position = vec![0u8; 10];
                    position.extend_from_slice(&order.to_be_bytes());
                    position.extend_from_slice(&0u32.to_le_bytes());
                    tx.atomic_op(latest, &position, MutationType::SetVersionstampedValue);
                }
                // Sync's changed-rooms feed (docs/sync.md).
                tx.atomic_op(
                    &self
                        .layout
                        .timeline
                        .versionstamped_key(&keys::CHANGED, &(&Versionstamp::incomplete(0), room)),
                    b"",
                    MutationType::SetVersionstampedKey,
                );
                crate::db::notify::bump(&tx, &self.layout.notify, &[Topic::Room(room)]);
                Ok::<_, Error>(())
            })
            .await?;
        let stamp = info
            .versionstamp
            .ok_or_else(|| Error::corrupt("log", "a receipt commit has no versionstamp"))?;
        (0..receipts.len())
            .map(|order| {
                Ok(ReceiptUpdate {
                    position: StreamPosition::new(stamp, order as u16),
                })
            })
            .collect()
    }

    /// The receipts of `room_id` set at a position `after < p <= up_to`
    /// (either bound optional), in stream order: with `after = None` the
    /// current receipts of the room, with the sync token's position the
    /// ones sync has not delivered yet. Private receipts (`m.read.private`)
    /// are included: callers show them only to their owner. One range read.
    ///
    /// Errors: the store's.
    pub async fn receipts_since(
        &self,
        room_id: &RoomId,
        after: Option<StreamPosition>,
        up_to: Option<StreamPosition>,
    ) -> Result<Vec<(StreamPosition, ReceiptRecord)>> {
        let space = &self.layout.receipts;
        let room = room_id.as_str();
        let (all_begin, all_end) = space.range(&keys::RECEIPT_LOG, &(room,));
        let begin = match after {
            Some(p) => {
                let mut k = space.key(&keys::RECEIPT_LOG, &(room, p.to_tuple()));
                k.push(0);
                k
            }
            None => all_begin,
        };
        let end = match up_to {
            Some(p) => {
                let mut k = space.key(&keys::RECEIPT_LOG, &(room, p.to_tuple()));
                k.push(0);
                k
            }
            None => all_end,
        };
        if begin >= end {
            return Ok(Vec::new());
        }
        let kvs = self.db.read_range(RangeOption::new(begin, end)).await?;
        kvs.iter()
            .map(|kv| {
                Ok((
                    trailing_position("log", &kv.key)?,
                    decode("log", &kv.value)?,
                ))
            })
            .collect()
    }

    // --- The user's own receipts (unread counts in /sync, docs/sync.md) ---

    /// `user`'s own current receipts in `room_id` (every type and thread),
    /// each with the stream position of the commit that set it: one range
    /// read of `receipts/latest (room, user)` and one log read per entry,
    /// in one transaction (snapshot reads, no conflicts). Sync uses it to
    /// find where the user's unread notifications start.
    ///
    /// Errors: the store's; a malformed entry is `Corrupt`.
    pub async fn own_receipts(
        &self,
        room_id: &RoomId,
        user: &UserId,
    ) -> Result<Vec<(StreamPosition, ReceiptRecord)>> {
        let space = &self.layout.receipts;
        let room = room_id.as_str();
        let (begin, end) = space.range(&keys::RECEIPT_LATEST, &(room, user.as_str()));
        // Read-only: safe to run any number of times.
        let logs = self
            .db
            .run(|tx, _| {
                let range = RangeOption::new(begin.clone(), end.clone());
                async move {
                    let latest = tx.get_range_all(range, true).await?;
                    let mut out = Vec::with_capacity(latest.len());
                    for kv in latest {
                        let Ok(position) = <[u8; 12]>::try_from(kv.value.as_slice()) else {
                            continue;
                        };
                        let position = StreamPosition(position);
                        let log = space.key(&keys::RECEIPT_LOG, &(room, position.to_tuple()));
                        if let Some(value) = tx.get(&log, true).await? {
                            out.push((position, value));
                        }
                    }
                    Ok::<_, Error>(out)
                }
            })
            .await?;
        logs.into_iter()
            .map(|(p, v)| Ok((p, decode("log", &v)?)))
            .collect()
    }
}
