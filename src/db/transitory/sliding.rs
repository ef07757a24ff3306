//! Simplified sliding sync (MSC4186) connection state: one record per
//! (user, device, `conn_id`) in `sliding_sync/connection`
//! (`docs/sliding-sync.md`).
//!
//! A record holds the connection's generation (the first part of every
//! `pos` it answered), when it was last used and which rooms were sent (with
//! the timeline limit they were sent with) as of its last two generations:
//! the newest, and the one before, so a client that resends the `pos` of
//! a lost answer continues from what it really has. Records are small
//! (the caller bounds the rooms kept) and at most `max_per_device` exist per
//! device: saving one past that removes the device's least recently used.
//!
//! Who may import this: `db::transitory` (re-exported from it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Error, Result, TransitoryDb, decode, encode};
use crate::kv::RangeOption;

/// Rooms sent on a connection: room ID → the timeline limit it was last
/// sent with (a request with a higher limit resends its timeline).
pub type SentRooms = BTreeMap<String, u32>;

/// One sliding-sync connection (`sliding_sync/connection`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    /// The generation of the newest answer (starts at 1, +1 per answer).
    pub generation: u64,
    /// When the connection was last used (ms since the epoch).
    pub used_ms: u64,
    /// The rooms sent as of `generation`.
    pub sent: SentRooms,
    /// The rooms sent as of `generation - 1`, if that answer exists.
    pub previous: Option<SentRooms>,
}

impl TransitoryDb {
    /// The connection `(user, device, conn_id)`, if stored. One key read.
    ///
    /// Errors: storage failures; [`Error::Corrupt`] for a record that does
    /// not decode.
    pub async fn sliding_connection(
        &self,
        user: &str,
        device: &str,
        conn_id: &str,
    ) -> Result<Option<ConnectionRecord>> {
        let key = self
            .layout
            .sliding_connection
            .pack(&(user, device, conn_id));
        let value = self.db.read(&key).await?;
        value
            .map(|v| decode("sliding_connection", &v))
            .transpose()
            .map_err(Into::into)
    }

    /// Stores `record` for `(user, device, conn_id)`, and, if the device
    /// then has more than `max_per_device` connections, removes the least
    /// recently used others. One transaction; safe to run twice (it writes
    /// the same record and removes the same records again).
    ///
    /// Errors: storage failures; a stored record of the device that does
    /// not decode is removed as if it were the oldest.
    pub async fn put_sliding_connection(
        &self,
        user: &str,
        device: &str,
        conn_id: &str,
        record: &ConnectionRecord,
        max_per_device: usize,
    ) -> Result<()> {
        let space = self.layout.sliding_connection.clone();
        let key = space.pack(&(user, device, conn_id));
        let value = encode(record);
        let (begin, end) = space.subspace(&(user, device)).range();
        // Safe to run twice: a retry writes the same record, finds the
        // least recently used others the first run removed gone, and so
        // removes nothing more unless the device is still over its limit.
        self.db
            .run(|tx, _| {
                let (key, value, begin, end) = (&key, &value, &begin, &end);
                async move {
                    tx.set(key, value);
                    let all = tx
                        .get_range_all(RangeOption::new(begin.clone(), end.clone()), false)
                        .await?;
                    if all.len() > max_per_device {
                        let mut others: Vec<(u64, Vec<u8>)> = all
                            .iter()
                            .filter(|kv| kv.key != *key)
                            .map(|kv| {
                                let used =
                                    decode::<ConnectionRecord>("sliding_connection", &kv.value)
                                        .map_or(0, |r| r.used_ms);
                                (used, kv.key.clone())
                            })
                            .collect();
                        others.sort();
                        for (_, old) in others.iter().take(all.len() - max_per_device) {
                            tx.clear(old);
                        }
                    }
                    Ok::<_, Error>(())
                }
            })
            .await
    }

    /// Removes the connection `(user, device, conn_id)` (expired or
    /// restarted). One blind clear; safe to run twice.
    pub async fn delete_sliding_connection(
        &self,
        user: &str,
        device: &str,
        conn_id: &str,
    ) -> Result<()> {
        let key = self
            .layout
            .sliding_connection
            .pack(&(user, device, conn_id));
        // Safe to run twice: a blind clear of one key.
        self.db
            .run(|tx, _| {
                let key = &key;
                async move {
                    tx.clear(key);
                    Ok::<_, Error>(())
                }
            })
            .await
    }
}
