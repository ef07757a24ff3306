//! The `game` database: storage objects, wallets and their ledger, items
//! and inventories, player-to-player trades, server transactions, and
//! leaderboards and tournaments (`leaderboards.rs`). Its
//! key schema is in [`keys`]; the design (each transaction's reads, writes
//! and conflict ranges, the invariants, the API) in `docs/game.md`.
//!
//! Each public method is one transaction run through [`kv::Database::run`].
//! Writes go through one transaction context (`ctx.rs`) that caches what it
//! read and writes everything at the end, so a storage batch, a wallet
//! update, a grant, a trade and a server transaction share one set of
//! rules. Invariants:
//! - a balance never goes below zero: a debit reads its balance with a
//!   conflict range and checks; a credit is an atomic add with no read
//!   conflict (credits never conflict with each other or with other users);
//! - every balance change writes a `wallet/ledger` entry in the same
//!   transaction, so each balance equals the sum of its user's ledger
//!   ([`GameDb::verify`]);
//! - an idempotency key is read (with a conflict range) and written in the
//!   transaction it guards, so a retry after `commit_unknown_result` finds
//!   it and applies nothing twice;
//! - an item has exactly one owner and one `items/inventory` entry, moved in
//!   the transaction that moves the item;
//! - a rejected request writes nothing (errors abort the closure before any
//!   write reaches the store: writes are buffered until the end);
//! - every change that concerns a user appends to their `changes/user_log`
//!   and names them in the wake feed ([`crate::db::notify`]).
//!
//! Positions are 10-byte commit versionstamps of this database, the `game`
//! part of a sync token.
//!
//! Who may import this: `db`, `service`, `sync`, the CLI and tests; never
//! the other databases.

mod apply;
mod ctx;
pub mod keys;
mod leaderboards;
mod model;
pub(crate) mod read;
mod storage;
mod trades;
mod verify;

use std::sync::Arc;

use crate::keys::{Directories, Space, SubspaceSpec};
use crate::kv::{self, TransactError};

pub use apply::IdempotencyKey;
pub use leaderboards::{
    BoardRecord, JOIN_SHARDS, MAX_SUBMISSIONS, OWNED_JOIN, OWNED_RECORD, Owned, RecordsPage,
    ScoreSubmission, TournamentPage, TournamentRecord,
};
pub use model::*;
pub use read::{LedgerPage, ObjectPage};
pub use verify::{Mismatch, VerifyReport};

/// A position in the `game` database: a 10-byte commit versionstamp.
pub type Position = [u8; 10];

/// Largest balance a credit may reach (2^62): concurrent credits are not
/// read with a conflict range, so this leaves room for them below `i64::MAX`.
pub const BALANCE_MAX: i64 = 1 << 62;

/// Errors of the `game` storage boundary. Callers match them exactly; the
/// API maps each to an errcode in `api/error.rs`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key-value store failed (after retries, where retryable).
    #[error(transparent)]
    Kv(#[from] kv::Error),
    /// A stored value did not decode: the store is corrupt or was written
    /// by an incompatible version.
    #[error("corrupt value in game/{subspace}")]
    Corrupt {
        /// The subspace's name in `keys.rs`.
        subspace: &'static str,
        /// What failed to decode.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A storage object's version condition failed (object `index` of the
    /// batch); nothing was written.
    #[error("object {index} of the batch does not have the expected version")]
    VersionMismatch {
        /// Index of the first failing object in the batch.
        index: usize,
    },
    /// A non-admin wrote or deleted an object whose `permission_write` is 0
    /// (object `index` of the batch).
    #[error("object {index} of the batch may be written only by admins")]
    PermissionDenied {
        /// Index of the object in the batch.
        index: usize,
    },
    /// A balance would go below zero; nothing was applied.
    #[error("{user_id} has {balance} {currency}, cannot apply {delta}")]
    InsufficientFunds {
        /// Whose wallet.
        user_id: String,
        /// Which currency.
        currency: String,
        /// The balance before the failing change.
        balance: i64,
        /// The change.
        delta: i64,
    },
    /// An item is missing, not the expected owner's, or has fewer than
    /// asked; nothing was applied.
    #[error("item {item_id}: {held} held, {wanted} needed")]
    InsufficientItems {
        /// The item.
        item_id: String,
        /// The quantity the expected owner holds (0 if not theirs or gone).
        held: u64,
        /// The quantity needed.
        wanted: u64,
    },
    /// A credit would take a balance past [`BALANCE_MAX`].
    #[error("{user_id}'s {currency} balance would exceed the maximum")]
    BalanceOverflow {
        /// Whose wallet.
        user_id: String,
        /// Which currency.
        currency: String,
    },
    /// No such trade.
    #[error("trade not found")]
    TradeNotFound,
    /// The caller is not allowed this action on the trade (not a party, or
    /// not the counterparty for an accept).
    #[error("{0}")]
    NotAllowed(&'static str),
    /// The trade is no longer open (it was cancelled, or completed for a
    /// cancel).
    #[error("trade is {}", .0.as_str())]
    TradeNotOpen(TradeState),
    /// No such leaderboard (or tournament).
    #[error("leaderboard not found")]
    BoardNotFound,
    /// A leaderboard with this ID and another definition exists.
    #[error("a leaderboard with this ID and another definition exists")]
    BoardExists,
    /// The record layer refused (bad owner, cursor, limit, reset, or
    /// `max_num_score` reached) or failed.
    #[error(transparent)]
    Leaderboard(#[from] crate::db::leaderboard::LeaderboardError),
    /// The tournament takes no submission now: `not_started`, `ended` or
    /// `window_closed`.
    #[error("tournament is not active: {0}")]
    TournamentNotActive(&'static str),
    /// The tournament's window already has `max_size` joins.
    #[error("tournament is full ({max_size} joined)")]
    TournamentFull {
        /// The tournament's cap.
        max_size: u64,
    },
    /// The tournament needs a join before a submission.
    #[error("join the tournament before submitting")]
    NotJoined,
}

impl TransactError for Error {
    fn as_kv(&self) -> Option<&kv::Error> {
        match self {
            Error::Kv(e) => Some(e),
            Error::Leaderboard(e) => e.as_kv(),
            _ => None,
        }
    }
}

impl From<Corrupt> for Error {
    fn from(e: Corrupt) -> Self {
        Error::Corrupt {
            subspace: e.subspace,
            source: e.source,
        }
    }
}

/// Result of the `game` storage boundary.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every directory of the `game` database, resolved.
#[derive(Debug)]
pub(crate) struct Layout {
    pub storage: Space,
    pub wallet: Space,
    pub items: Space,
    pub trades: Space,
    pub changes: Space,
    pub leaderboards: Space,
    pub notify: crate::db::notify::Keys,
}

impl Layout {
    fn from_dirs(dirs: &Directories) -> Self {
        Layout {
            storage: dirs.space(&keys::STORAGE).clone(),
            wallet: dirs.space(&keys::WALLET).clone(),
            items: dirs.space(&keys::ITEMS).clone(),
            trades: dirs.space(&keys::TRADES).clone(),
            changes: dirs.space(&keys::CHANGES).clone(),
            leaderboards: dirs.space(&keys::LEADERBOARDS).clone(),
            notify: crate::db::notify::Keys::of(dirs).expect("game declares the notification keys"),
        }
    }
}

/// A handle on the `game` database. Cheap to clone.
#[derive(Clone)]
pub struct GameDb {
    db: kv::Database,
    layout: Arc<Layout>,
}

impl GameDb {
    /// The `game` database of an opened [`crate::db::Databases`].
    pub fn new(handle: &crate::db::Handle) -> Self {
        GameDb {
            db: handle.db.clone(),
            layout: Arc::new(Layout::from_dirs(&handle.dirs)),
        }
    }

    /// The underlying key-value database.
    pub fn kv(&self) -> &kv::Database {
        &self.db
    }

    /// The notification keys (for the sync watcher).
    pub fn notify_keys(&self) -> &crate::db::notify::Keys {
        &self.layout.notify
    }
}

// The value and key codec every database shares (`db::codec`); these
// wrappers only name this database's subspaces and error.

use crate::db::codec::{Corrupt, encode};

/// Decodes a MessagePack record of `subspace`.
fn decode<T: serde::de::DeserializeOwned>(subspace: &'static str, bytes: &[u8]) -> Result<T> {
    Ok(crate::db::codec::decode(subspace, bytes)?)
}

/// Decodes the fields of a key of subspace `sub` in `space`.
fn unpack<'de, T: foundationdb_tuple::TupleUnpack<'de>>(
    space: &Space,
    sub: &SubspaceSpec,
    key: &'de [u8],
) -> Result<T> {
    let prefix = foundationdb_tuple::Subspace::from_bytes(space.subspace_prefix(sub));
    Ok(crate::db::codec::unpack(sub.name, &prefix, key)?)
}

/// Decodes a `wallet/balance` value (i64 little-endian).
fn decode_balance(value: &[u8]) -> Result<i64> {
    value
        .try_into()
        .map(i64::from_le_bytes)
        .map_err(|_| corrupt("balance", "not 8 bytes"))
}

/// A corrupt value of `subspace`, for what failed (an error or a sentence).
fn corrupt(
    subspace: &'static str,
    detail: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Corrupt::new(subspace, detail).into()
}

/// The 10-byte commit versionstamp of a tuple versionstamp.
fn position_of(stamp: &foundationdb_tuple::Versionstamp) -> Position {
    stamp.as_bytes()[..10]
        .try_into()
        .expect("versionstamps have 10 transaction bytes")
}

#[cfg(test)]
mod tests;
