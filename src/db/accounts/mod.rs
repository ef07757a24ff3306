//! Storage of the `accounts` database: users, password hashes, access tokens,
//! devices, profiles, account data, filters, push rules and the server's
//! signing key.
//!
//! This module owns the *operations* on the key layout that `keys.rs`
//! declares: each public method is one transaction run through
//! [`kv::Database::run`], safe to run twice, and either applies all of its
//! writes or none. Business rules (who may do what, username grammar, token
//! generation, password hashing) live above, in `service::accounts`; this layer
//! only keeps the stored data consistent:
//!
//! - an access token entry exists exactly as long as its device does, and the
//!   device records the token's hash, so deleting a device (logout, device
//!   deletion, password change, deactivation) deletes its token in the same
//!   transaction, and so are the device's E2EE keys (`e2ee` subspaces keyed
//!   by the device, cleared through [`e2ee::DeviceKeySpaces`]);
//! - a registration that uses an admin-made registration token creates the
//!   account and counts the use in one transaction, so a token with `n`
//!   uses allowed admits exactly `n` registrations however many race
//!   (`registration_tokens.rs`);
//! - a deactivated user has no password hash, devices, tokens or profile;
//! - every account-data write sets the current value and appends to the
//!   per-user change log in the same transaction, both stamped with the
//!   commit's versionstamp, and removes the entry the old value had in the
//!   log, so the log holds exactly one entry per changed (room, type) and a
//!   reader gets every change since a position with one range read.
//!
//! Who may import this: `db` (to open it), `service`, `sync` (account-data
//! changes), `app` (to wire the services) and the CLI (`myelin user`); never
//! the other databases. It never imports axum.

mod data;
pub mod e2ee;
pub mod keys;
mod layout;
pub mod model;
mod registration_tokens;
mod users;

use foundationdb_tuple::Subspace;

use crate::db::codec::{Corrupt, decode, encode, unpack};
use crate::kv::{self, TransactError};

pub use data::AccountDataChange;
pub use layout::Layout;
pub use model::{
    DeviceRecord, RegistrationTokenRecord, SigningKeyRecord, TokenRecord, UiaSession, UserRecord,
};
pub use users::{CreateUser, NewDevice};

/// Errors of the `accounts` storage boundary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key-value store failed (after retries, where retryable).
    #[error(transparent)]
    Kv(#[from] kv::Error),
    /// A stored value did not decode: the store is corrupt or was written by
    /// an incompatible version.
    #[error("corrupt value in accounts/{subspace}")]
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

/// Result of the `accounts` storage boundary.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A position in the `accounts` database (its account-data change log): a
/// commit versionstamp of its store, the `accounts` part of a sync token.
pub type Position = crate::db::Position<AccountsDb>;

/// A handle on the `accounts` database. Cheap to clone.
#[derive(Clone)]
pub struct AccountsDb {
    db: kv::Database,
    layout: std::sync::Arc<Layout>,
}

impl AccountsDb {
    /// The `accounts` database of an opened [`crate::db::Databases`].
    pub fn new(handle: &crate::db::Handle) -> Self {
        AccountsDb {
            db: handle.db.clone(),
            layout: std::sync::Arc::new(Layout::from_dirs(&handle.dirs)),
        }
    }

    /// The underlying key-value database.
    pub fn kv(&self) -> &kv::Database {
        &self.db
    }

    fn keys(&self) -> &Layout {
        &self.layout
    }
}

/// `[begin, end)` of every key under `space`.
fn range_of(space: &Subspace) -> kv::RangeOption {
    let (begin, end) = space.range();
    kv::RangeOption::new(begin, end)
}
