//! Wakes long-polls when a database they read changes, across every server
//! process sharing the stores, with one KV watch per database per process.
//!
//! ## Mechanism
//! Writers bump their database's notification key (`db::notify::bump`, an
//! atomic add in the writing transaction). Each process runs one watcher task
//! per database, which loops:
//!
//! 1. start a transaction, read the notification key, take its read version
//!    `rv`, set a watch on the key and commit (read-only; the watch compares
//!    with the value this transaction saw, so a bump committed between the
//!    read and the watch's registration fires it at once);
//! 2. publish `rv` on an in-process [`tokio::sync::watch`] channel (the
//!    published value only grows);
//! 3. wait for the watch to fire, then go to 1.
//!
//! Long-polls subscribe to the channels ([`Notifier::subscribe`]) and never
//! touch the store to wait, so 10,000 idle long-polls cost 10,000 channel
//! receivers and three KV watches.
//!
//! ## The lossless rule
//! A long-poll takes the read versions `R` of the databases it reads *before*
//! reading, reads (at versions `>= R`), and if it found nothing waits until
//! some published version exceeds its `R` ([`Subscription::wait_past`]). A
//! bump committed at version `c > R` changes the key after the watcher's last
//! read or before it: either the watch fires and the watcher's next read
//! version is `>= c`, or the watcher's current read already saw it and
//! published an `rv >= c`. Either way a version `> R` is published, so a
//! commit landing between a long-poll's read and its wait is never missed.
//! Waking for a commit that was already read costs one spurious re-read,
//! never a lost change. Because the comparison is on values, not on change
//! events, the order of subscribing and reading does not matter for
//! correctness; subscribing first is still done, so no publish is skipped.
//!
//! On a watch or read error the watcher backs off (10 ms doubling to 1 s)
//! and starts over at step 1, whose fresh read version covers anything missed.
//!
//! Who may import this: `sync` and tests.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::Databases;
use crate::kv;

/// The databases a sync position spans, in token order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatabaseId {
    /// `accounts`.
    Accounts = 0,
    /// `rooms`.
    Rooms = 1,
    /// `transitory`.
    Transitory = 2,
}

impl DatabaseId {
    /// All three, in token order.
    pub const ALL: [DatabaseId; 3] = [
        DatabaseId::Accounts,
        DatabaseId::Rooms,
        DatabaseId::Transitory,
    ];
}

/// Read versions of the three databases, indexed by [`DatabaseId`].
pub type ReadVersions = [u64; 3];

/// One process's watchers and their channels. Dropping it stops the
/// watchers.
pub struct Notifier {
    channels: [watch::Sender<u64>; 3],
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    watched: [bool; 3],
}

impl Notifier {
    /// Starts one watcher task per database whose schema declares the
    /// notification key (`db::notify::NOTIFY`); the channel of a database
    /// without it never advances, so its writes wake nobody.
    ///
    /// Must be called within a tokio runtime.
    pub fn start(databases: &Databases) -> Arc<Notifier> {
        let channels = [(); 3].map(|()| watch::channel(0u64).0);
        let mut tasks = Vec::new();
        let mut watched = [false; 3];
        for (id, handle) in DatabaseId::ALL.iter().zip(databases.handles()) {
            let Some(key) = crate::db::notify::key(&handle.dirs) else {
                tracing::debug!(
                    database = handle.spec().name,
                    "no notification key declared; long-polls do not wake on its writes"
                );
                continue;
            };
            watched[*id as usize] = true;
            tasks.push(tokio::spawn(watch_loop(
                handle.db.clone(),
                key,
                channels[*id as usize].clone(),
                handle.spec().name,
            )));
        }
        Arc::new(Notifier {
            channels,
            tasks: std::sync::Mutex::new(tasks),
            watched,
        })
    }

    /// Whether writes of `db` wake long-polls (its schema declares the
    /// notification key).
    pub fn is_watched(&self, db: DatabaseId) -> bool {
        self.watched[db as usize]
    }

    /// The latest read version published for `db` (0 before the first).
    pub fn published(&self, db: DatabaseId) -> u64 {
        *self.channels[db as usize].borrow()
    }

    /// Subscribes to every database's published versions. Subscribe before
    /// taking the read versions that [`Subscription::wait_past`] will compare.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            receivers: [0, 1, 2].map(|i| self.channels[i].subscribe()),
        }
    }

    /// Stops the watchers and waits until they have ended (and released
    /// their store handles).
    pub async fn stop(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("notifier tasks"));
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.get_mut() {
            for task in tasks.iter() {
                task.abort();
            }
        }
    }
}

/// A long-poll's view of the published versions.
pub struct Subscription {
    receivers: [watch::Receiver<u64>; 3],
}

impl Subscription {
    /// Waits until the published version of some database exceeds the read
    /// version the caller read it at (`read_versions`, by [`DatabaseId`]).
    /// Returns at once if one already does. Never returns if the notifier
    /// stops: callers race it against their timeout and shutdown.
    pub async fn wait_past(&mut self, read_versions: ReadVersions) {
        let [a, r, t] = &mut self.receivers;
        let past = |rx: &mut watch::Receiver<u64>, rv: u64| {
            let mut rx = rx.clone();
            async move {
                if rx.wait_for(|v| *v > rv).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = past(a, read_versions[0]) => {}
            () = past(r, read_versions[1]) => {}
            () = past(t, read_versions[2]) => {}
        }
    }
}

/// The watcher of one database: see the module docs.
async fn watch_loop(db: kv::Database, key: Vec<u8>, channel: watch::Sender<u64>, name: &str) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(10);
    const MAX_BACKOFF: Duration = Duration::from_secs(1);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let fired = match arm(&db, &key).await {
            Ok((rv, watch)) => {
                channel.send_if_modified(|v| {
                    let newer = rv > *v;
                    if newer {
                        *v = rv;
                    }
                    newer
                });
                watch.await
            }
            Err(e) => Err(e),
        };
        match fired {
            Ok(()) => backoff = FIRST_BACKOFF,
            Err(e) => {
                tracing::warn!(database = name, error = %e, "sync watcher failed; re-arming");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Step 1 of the watcher loop: the read version and a committed watch on
/// `key` comparing with the value at that version.
async fn arm(db: &kv::Database, key: &[u8]) -> kv::Result<(u64, kv::Watch)> {
    let tx = db.create_transaction()?;
    tx.get(key, true).await?;
    let rv = tx.get_read_version().await?;
    let watch = tx.watch(key);
    tx.commit().await?;
    Ok((rv, watch))
}
