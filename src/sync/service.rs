//! Sync assembly: what `GET /sync` returns for one user since a token, and
//! the long-poll around it.
//!
//! One call ([`SyncService::sync`]) loops:
//! 1. take the read version `R` of each database (the notifier subscription
//!    was taken before the first iteration);
//! 2. read what changed since the token: global account data (one range
//!    read of the user's change log);
//! 3. compute `next_batch`: per database the latest of the `since` part, the
//!    position of `R` and the position of every change returned;
//! 4. return if this is an initial or `full_state` sync, if something was
//!    found, or if the deadline passed; else wait until the notifier
//!    publishes a version past `R` (then go to 1), the deadline, or shutdown.
//!
//! Why `next_batch` is exact: the read in step 2 runs at a version `R' >= R`
//! and returns every change of the user in `(since, R']`; so no change of
//! the user lies in `(next, R']` and none at or before `next` is left out.
//! A change in `(R, R']` may be returned now and also wake the wait, which
//! then re-reads once and finds nothing: a spurious wakeup, never a repeat.
//!
//! Not yet assembled (left to the rooms and transitory work): room account
//! data (it needs the user's memberships), `rooms.*`, `to_device`,
//! `presence`, `device_lists`.
//!
//! Who may import this: `sync` and, through it, `api`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::notifier::{DatabaseId, Notifier, ReadVersions};
use super::token::{Position, SyncToken};
use super::{Error, SyncConfig};
use crate::db::Databases;
use crate::db::accounts::{AccountDataChange, AccountsDb};
use crate::kv;

/// A test seam: runs after a long-poll's read and before its wait, so tests
/// can commit exactly in the window the lossless rule protects.
pub type AfterReadHook = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The parameters of one `/sync` call that this layer uses.
#[derive(Clone, Debug, Default)]
pub struct SyncRequest {
    /// The `since` token, as the client sent it.
    pub since: Option<String>,
    /// How long to wait for news, before the configured cap.
    pub timeout: Duration,
    /// Whether the client asked for full state (returns at once).
    pub full_state: bool,
}

/// What one `/sync` call found.
#[derive(Debug, Default)]
pub struct SyncResult {
    /// The token to continue from.
    pub next_batch: SyncToken,
    /// Global account data changed since the token (latest value per type),
    /// oldest first.
    pub account_data: Vec<AccountDataChange>,
}

/// The sync service of one server process. Cheap to share (`Arc`).
pub struct SyncService {
    databases: Databases,
    accounts: AccountsDb,
    notifier: Arc<Notifier>,
    config: SyncConfig,
    shutdown: watch::Sender<bool>,
    after_read: Mutex<Option<AfterReadHook>>,
}

impl SyncService {
    /// The service over opened databases; starts this process's
    /// [`Notifier`]. Must be called within a tokio runtime.
    pub fn new(databases: &Databases, config: SyncConfig) -> Self {
        SyncService {
            databases: databases.clone(),
            accounts: AccountsDb::new(&databases.accounts),
            notifier: Notifier::start(databases),
            config,
            shutdown: watch::channel(false).0,
            after_read: Mutex::new(None),
        }
    }

    /// This process's notifier.
    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    /// The settings.
    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    /// Ends every waiting long-poll now (each returns its current, possibly
    /// empty, result) and makes later ones return without waiting. Called
    /// when the server begins a graceful shutdown.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Installs (or with `None` removes) the [`AfterReadHook`]. For tests.
    pub fn set_after_read_hook(&self, hook: Option<AfterReadHook>) {
        *self.after_read.lock().expect("hook lock") = hook;
    }

    /// `GET /sync` for `user_id`: see the module docs.
    ///
    /// Errors: [`Error::InvalidToken`] for a malformed `since`; storage
    /// failures.
    pub async fn sync(&self, user_id: &str, req: &SyncRequest) -> Result<SyncResult, Error> {
        let since: Option<SyncToken> = req.since.as_deref().map(str::parse).transpose()?;
        let timeout = req.timeout.min(self.config.max_timeout());
        let deadline = Instant::now() + timeout;
        let mut news = self.notifier.subscribe();
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let rvs = self.read_versions().await?;
            let changes = self
                .accounts
                .account_data_since(user_id, since.map(|t| t.accounts.0))
                .await?;
            let mut next = SyncToken {
                accounts: Position::at_read_version(rvs[DatabaseId::Accounts as usize]),
                rooms: Position::at_read_version(rvs[DatabaseId::Rooms as usize]),
                transitory: Position::at_read_version(rvs[DatabaseId::Transitory as usize]),
            };
            if let Some(since) = since {
                next = next.max(since);
            }
            if let Some(last) = changes.iter().map(|c| Position(c.position)).max() {
                next.accounts = next.accounts.max(last);
            }
            let account_data: Vec<AccountDataChange> = changes
                .into_iter()
                .filter(|c| c.room_id.is_none())
                .collect();
            let result = SyncResult {
                next_batch: next,
                account_data,
            };
            let found = !result.account_data.is_empty();
            if since.is_none() || req.full_state || found || Instant::now() >= deadline {
                return Ok(result);
            }
            let hook = self.after_read.lock().expect("hook lock").clone();
            if let Some(hook) = hook {
                hook().await;
            }
            tokio::select! {
                () = news.wait_past(rvs) => {}
                () = tokio::time::sleep_until(deadline) => return Ok(result),
                _ = shutdown.wait_for(|stopping| *stopping) => return Ok(result),
            }
        }
    }

    /// The read version of each database, in [`DatabaseId`] order.
    async fn read_versions(&self) -> Result<ReadVersions, Error> {
        let mut out = [0u64; 3];
        for (slot, handle) in out.iter_mut().zip(self.databases.handles()) {
            *slot = handle
                .db
                .run(|tx, _| async move { tx.get_read_version().await })
                .await
                .map_err(|e: kv::Error| Error::Storage(e.into()))?;
        }
        Ok(out)
    }
}
