//! The `transitory` database: to-device messages, typing notifications,
//! presence, device-list change records and sliding-sync connection state
//! (`sliding`). Its key schema is in [`keys`];
//! retention and design are in `docs/transitory.md`.
//!
//! Each public method is one transaction run through [`kv::Database::run`],
//! safe to run twice. Business rules (who may send, timeouts, presence
//! transitions) live above, in `service::transitory`; this layer keeps the
//! stored streams consistent:
//!
//! - every stream entry's key ends in its commit versionstamp (written with
//!   `SetVersionstampedKey`), so writers never read or conflict, and a
//!   reader gets "changes since position `P`" with one range read of a
//!   subspace keyed by (user[, device] or room, versionstamp);
//! - the `log` subspaces keep only the latest entry per user or room: a
//!   writer clears the owner's log range (a blind clear) and appends; so
//!   their size is bounded by the number of users and rooms;
//! - a to-device message is removed only by the read of its recipient
//!   device whose `since` is at or after its position (the acknowledgement),
//!   in the same transaction as that read, so it is never lost before and
//!   never returned after;
//! - every write that sync delivers bumps `meta/notify` ([`crate::db::notify`]).
//!
//! Positions are 10-byte commit versionstamps of this database
//! ([`Position`]), the `transitory` part of a sync token.
//!
//! Who may import this: `db` and layers above it; never the other databases.

pub mod keys;
mod sliding;
mod streams;

use foundationdb_tuple::{Subspace, Versionstamp};

use crate::db::codec::{Corrupt, decode, encode, unpack};
use crate::keys::{Directories, DirectorySpec, SubspaceSpec};
use crate::kv::{self, KeySelector, RangeOption, TransactError};

pub use sliding::{ConnectionRecord, SentRooms};
pub use streams::{PresenceRecord, ToDeviceBatch, ToDeviceMessage, TypingUpdate};

/// A position in the `transitory` database: a commit versionstamp of its
/// store, the `transitory` part of a sync token.
pub type Position = crate::db::Position<TransitoryDb>;

/// Errors of the `transitory` storage boundary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key-value store failed (after retries, where retryable).
    #[error(transparent)]
    Kv(#[from] kv::Error),
    /// A stored value did not decode.
    #[error("corrupt value in transitory/{subspace}")]
    Corrupt {
        /// The subspace's name in `keys.rs`.
        subspace: &'static str,
        /// What failed to decode.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl From<Corrupt> for Error {
    fn from(c: Corrupt) -> Self {
        Error::Corrupt {
            subspace: c.subspace,
            source: c.source,
        }
    }
}

impl TransactError for Error {
    fn as_kv(&self) -> Option<&kv::Error> {
        match self {
            Error::Kv(e) => Some(e),
            Error::Corrupt { .. } => None,
        }
    }
}

/// Result of the `transitory` storage boundary.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every subspace of the `transitory` database, resolved.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub inbox: Subspace,
    pub txn: Subspace,
    pub txn_expiry: Subspace,
    pub typing: Subspace,
    pub typing_log: Subspace,
    pub typing_changed: Subspace,
    pub presence: Subspace,
    pub presence_log: Subspace,
    pub device_list_log: Subspace,
    pub sliding_connection: Subspace,
    pub notify: crate::db::notify::Keys,
}

impl Layout {
    fn from_dirs(dirs: &Directories) -> Self {
        let sub = |dir: &DirectorySpec, spec: &SubspaceSpec| {
            Subspace::from_bytes(dirs.space(dir).subspace_prefix(spec))
        };
        use keys::*;
        Layout {
            inbox: sub(&TO_DEVICE, &TO_DEVICE_INBOX),
            txn: sub(&TO_DEVICE, &TO_DEVICE_TXN),
            txn_expiry: sub(&TO_DEVICE, &TO_DEVICE_TXN_EXPIRY),
            typing: sub(&TYPING, &TYPING_CURRENT),
            typing_log: sub(&TYPING, &TYPING_LOG),
            typing_changed: sub(&TYPING, &TYPING_CHANGED),
            presence: sub(&PRESENCE, &PRESENCE_CURRENT),
            presence_log: sub(&PRESENCE, &PRESENCE_LOG),
            device_list_log: sub(&DEVICE_LISTS, &DEVICE_LIST_LOG),
            sliding_connection: sub(&SLIDING_SYNC, &SLIDING_CONNECTION),
            notify: crate::db::notify::Keys::of(dirs)
                .expect("transitory declares the notification keys"),
        }
    }
}

/// A handle on the `transitory` database. Cheap to clone.
#[derive(Clone)]
pub struct TransitoryDb {
    db: kv::Database,
    layout: std::sync::Arc<Layout>,
}

impl TransitoryDb {
    /// The `transitory` database of an opened [`crate::db::Databases`].
    pub fn new(handle: &crate::db::Handle) -> Self {
        TransitoryDb {
            db: handle.db.clone(),
            layout: std::sync::Arc::new(Layout::from_dirs(&handle.dirs)),
        }
    }

    /// The underlying key-value database.
    pub fn kv(&self) -> &kv::Database {
        &self.db
    }

    /// The position "everything committed so far": the current read
    /// version followed by `ff ff` ([`Position::at_read_version`]).
    pub async fn current_position(&self) -> Result<Position> {
        // Read-only: safe to run any number of times.
        let rv = self
            .db
            .run(|tx, _| async move { Ok::<_, Error>(tx.get_read_version().await?) })
            .await?;
        Ok(Position::at_read_version(rv))
    }
}

/// The commit position of a complete tuple versionstamp.
fn position_of(stamp: &Versionstamp) -> Position {
    Position::of_versionstamp(stamp)
}

/// The range of `owner`'s entries in a log subspace `space` (keys
/// `owner ++ (versionstamp)`) with a position after `since` (all if `None`),
/// up to `limit` entries.
fn after(space: &Subspace, since: Option<Position>, limit: Option<usize>) -> RangeOption {
    let (begin, end) = space.range();
    let begin = match since {
        // Every user version of commit `since` sorts at or before 0xffff.
        Some(p) => KeySelector::first_greater_than(
            space.pack(&Versionstamp::complete(p.to_bytes(), 0xffff)),
        ),
        None => KeySelector::first_greater_or_equal(begin),
    };
    RangeOption {
        begin,
        end: KeySelector::first_greater_or_equal(end),
        limit,
        reverse: false,
    }
}

/// Clears every entry of a log subspace `space` and appends one at the
/// commit's versionstamp: the log keeps only the latest change. Blind writes:
/// no read, no conflict with other writers.
fn replace_log_entry(tx: &kv::Transaction, space: &Subspace) {
    let (begin, end) = space.range();
    tx.clear_range(&begin, &end);
    let key = space.pack_with_versionstamp(&Versionstamp::incomplete(0));
    tx.atomic_op(&key, &[], kv::MutationType::SetVersionstampedKey);
}

/// [`replace_log_entry`] for a room's `typing/log`, also moving the room's
/// entry in `typing/changed` (sync's cross-room feed): reads the log (with
/// conflict, so two concurrent changes of one room serialize and the feed
/// keeps exactly one entry per room), clears the feed entry it names and
/// appends the new one at the commit's versionstamp.
async fn replace_typing_log(
    tx: &kv::Transaction,
    log: &Subspace,
    changed: &Subspace,
    room: &str,
) -> Result<()> {
    let (begin, end) = log.range();
    let old = tx
        .get_range_all(RangeOption::new(begin, end).limit(1), false)
        .await?;
    if let Some(entry) = old.first() {
        let stamp: Versionstamp = unpack("typing_log", log, &entry.key)?;
        tx.clear(&changed.pack(&(stamp, room)));
    }
    replace_log_entry(tx, log);
    let key = changed.pack_with_versionstamp(&(Versionstamp::incomplete(0), room));
    tx.atomic_op(&key, &[], kv::MutationType::SetVersionstampedKey);
    Ok(())
}
