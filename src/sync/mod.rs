//! Sync: position tokens, the cross-process notifier and `/sync` assembly
//! (design: `docs/sync.md`).
//!
//! - [`token`]: `next_batch` strings, one versionstamp per database;
//! - [`notifier`]: one KV watch per database per process; each wake reads
//!   the database's wake feed once and wakes only the long-polls whose
//!   topics (user, rooms, peers) it names, losslessly;
//! - [`service`]: what one `/sync` call returns, and its long-poll;
//! - `rooms`: the `rooms` section (join, invite, leave);
//! - [`filter`]: the parts of a filter sync applies;
//! - [`sliding`]: simplified sliding sync (MSC4186) on top of [`service`].
//!
//! Writers do not import this module: they bump their database's
//! notification key and name the change's topics with `db::notify::bump`
//! inside their own transaction.
//!
//! This layer spans the three databases, so it sits above `db`; it also uses
//! `kv` directly for the two things no database module offers: read versions
//! and watches.
//!
//! Who may import this: `api`, `app` and tests.

pub mod filter;
mod game;
pub mod notifier;
mod rooms;
pub mod service;
pub mod sliding;
pub mod token;
mod unread;

use std::time::Duration;

pub use filter::SyncFilter;
pub use notifier::{DatabaseId, Listener, Notifier};
pub use service::{AfterReadHook, RoomsSection, Services, SyncRequest, SyncResult, SyncService};
pub use token::{SyncToken, TokenError};

/// Settings of sync: the configuration file's `[sync]` table (environment:
/// `MYELIN_SYNC__<KEY>`), read by `app::AppConfig::from_config` and
/// documented in `docs/configuration.md`. Missing keys take the defaults;
/// unknown keys are errors.
#[derive(
    Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// The longest a `/sync` long-poll waits, whatever `timeout` the client
    /// asks for, in milliseconds.
    pub max_timeout_ms: u64,
    /// Simplified sliding sync's settings (the `[sync.sliding]` table).
    pub sliding: sliding::SlidingConfig,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            max_timeout_ms: 60_000,
            sliding: sliding::SlidingConfig::default(),
        }
    }
}

impl SyncConfig {
    /// [`SyncConfig::max_timeout_ms`] as a duration.
    pub fn max_timeout(&self) -> Duration {
        Duration::from_millis(self.max_timeout_ms)
    }
}

/// Why a sync call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `since` token is malformed (400 `M_INVALID_PARAM`).
    #[error("invalid since token: {0}")]
    InvalidToken(#[from] TokenError),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] crate::db::accounts::Error),
    /// A rooms read failed.
    #[error(transparent)]
    Rooms(#[from] crate::service::rooms::Error),
    /// A transitory or key read failed.
    #[error(transparent)]
    Service(#[from] crate::service::Error),
    /// A `game` read failed.
    #[error(transparent)]
    Game(#[from] crate::db::game::Error),
}

impl From<crate::db::rooms::Error> for Error {
    fn from(e: crate::db::rooms::Error) -> Self {
        Error::Rooms(e.into())
    }
}

impl From<crate::db::transitory::Error> for Error {
    fn from(e: crate::db::transitory::Error) -> Self {
        Error::Service(e.into())
    }
}
