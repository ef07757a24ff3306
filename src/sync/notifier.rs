//! Wakes exactly the long-polls a commit concerns, across every server
//! process sharing the stores, with one KV watch per database per process.
//!
//! ## Mechanism
//! Writers bump their database's notification counter and name the topics
//! the change concerns (`db::notify::bump`: users, rooms, peers of a user)
//! in its wake feed, in the writing transaction. Each process runs one
//! watcher task per database, which loops:
//!
//! 1. in one transaction: read the counter, take the read version `rv`,
//!    read the wake-feed entries after the version it read last (all with
//!    versions `<= rv`), set a watch on the counter and commit (read-only;
//!    the watch compares with the value this transaction saw, so a bump
//!    committed after the read fires it at once);
//! 2. publish: every long-poll registered for one of the entries' topics
//!    with a read version below the entry's is woken, and the entries are
//!    kept in a short in-process log ([`RECENT_ENTRIES`] per database);
//! 3. now and then prune the feed (entries older than [`RETENTION`]);
//! 4. wait for the watch to fire, then go to 1.
//!
//! So a commit costs one feed read per process plus O(long-polls it
//! concerns), whatever the number of long-polls; 10,000 idle long-polls cost
//! 10,000 registrations and one KV watch per database.
//!
//! ## The lossless rule
//! A long-poll takes the read versions `R` of the databases, reads
//! everything for its user at versions `>= R`, and if it found nothing
//! registers its topics with `R` ([`Notifier::listen`]) and waits. It must
//! be woken by any later commit `c > R` naming one of its topics:
//! - if the watcher publishes `c` after the registration, the registration
//!   is found by topic and woken;
//! - if it published `c` before, the registration (under the same lock)
//!   finds `c` in the recent log and is woken at once; if the recent log no
//!   longer reaches back to `R` it is woken at once anyway (a spurious wake
//!   costs one read, never a lost change).
//!
//! Every commit is published: the watcher's feed read at `rv` sees every
//! entry committed at or before `rv`, and the next read starts right after
//! `rv`. When it cannot know what it missed, it wakes every registration of
//! the database instead: on its first read, when more than [`FEED_BATCH`]
//! entries arrived at once, when an entry cannot be decoded, and when the
//! feed was pruned past the version it last read (`meta/wake_floor`). On a
//! watch or read error it backs off (10 ms doubling to 1 s) and reads again
//! from the same version, so nothing is skipped.
//!
//! Topics are hashed per process into [`TopicKey`]s; two topics with one
//! hash only wake each other's long-polls spuriously.
//!
//! Who may import this: `sync` and tests.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::db::Databases;
use crate::db::notify::{self, Topic};
use crate::kv::{self, RangeOption};

/// The databases a sync position spans, in token order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatabaseId {
    /// `accounts`.
    Accounts = 0,
    /// `rooms`.
    Rooms = 1,
    /// `transitory`.
    Transitory = 2,
    /// `game`.
    Game = 3,
}

/// How many databases a sync position spans.
pub const DATABASES: usize = 4;

impl DatabaseId {
    /// All of them, in token order.
    pub const ALL: [DatabaseId; DATABASES] = [
        DatabaseId::Accounts,
        DatabaseId::Rooms,
        DatabaseId::Transitory,
        DatabaseId::Game,
    ];
}

/// Read versions of the databases, indexed by [`DatabaseId`].
pub type ReadVersions = [u64; DATABASES];

/// At most this many wake-feed entries are read per watcher round; more
/// arrived at once wake every long-poll of the database instead.
pub const FEED_BATCH: usize = 10_000;

/// Published entries kept per database for registrations whose read
/// version precedes the latest publish (module docs).
pub const RECENT_ENTRIES: usize = 65_536;

/// Wake-feed entries older than this are pruned. A process whose watcher
/// falls further behind wakes all its long-polls once.
pub const RETENTION: Duration = Duration::from_secs(60);

/// How often a watcher prunes at most.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// A topic as this process's registry keys it (a hash of kind and ID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicKey(u64);

/// One process's watchers and registrations. Dropping it stops the
/// watchers.
pub struct Notifier {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Each watched database and its notification keys (`None`: its writes
    /// wake nobody).
    feeds: [Option<(kv::Database, notify::Keys)>; DATABASES],
}

/// What the watchers and the long-polls share.
struct Shared {
    hasher: RandomState,
    registry: Mutex<Registry>,
    /// Registrations entered and not yet dropped, counted per entry
    /// (topics plus one), to know when the registry is worth sweeping.
    live_entries: AtomicUsize,
    published: [watch::Sender<u64>; DATABASES],
}

#[derive(Default)]
struct Registry {
    by_topic: HashMap<TopicKey, Vec<Weak<Waiter>>>,
    everyone: Vec<Weak<Waiter>>,
    /// Entries in `by_topic` and `everyone`, live or not.
    entries: usize,
    recent: [Recent; DATABASES],
}

/// The entries one database published lately, oldest first.
#[derive(Default)]
struct Recent {
    /// The read version of the latest publish.
    published: u64,
    /// Every entry with a version above this is in `log`.
    floor: u64,
    /// `(version, topic)`; `None` stands for every topic.
    log: VecDeque<(u64, Option<TopicKey>)>,
}

/// One waiting long-poll.
struct Waiter {
    read_versions: ReadVersions,
    fired: AtomicBool,
    notify: Notify,
}

impl Waiter {
    /// Wakes the long-poll if `version` is newer than what it read of `db`
    /// and it was not woken yet; whether this call woke it.
    fn fire(&self, db: usize, version: u64) -> bool {
        let wakes = version > self.read_versions[db] && !self.fired.swap(true, Ordering::AcqRel);
        if wakes {
            self.notify.notify_one();
        }
        wakes
    }
}

/// A registration made by [`Notifier::listen`]; dropping it ends it.
pub struct Listener {
    waiter: Arc<Waiter>,
    shared: Arc<Shared>,
    entries: usize,
    /// Counts this long-poll in `myelin_sync_long_polls_waiting`.
    _waiting: crate::metrics::InFlight,
}

impl Listener {
    /// Resolves once a change concerning one of the registered topics was
    /// published with a version above the registered read version of its
    /// database (at once if one already was). Never resolves if the
    /// notifier stops: callers race it against their timeout and shutdown.
    pub async fn fired(&self) {
        self.waiter.notify.notified().await;
    }

    /// Whether [`Listener::fired`] would resolve at once.
    pub fn has_fired(&self) -> bool {
        self.waiter.fired.load(Ordering::Acquire)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shared
            .live_entries
            .fetch_sub(self.entries, Ordering::Relaxed);
    }
}

impl Notifier {
    /// Starts one watcher task per database whose schema declares the
    /// notification keys (`db::notify::SUBSPACES`); a database without them
    /// publishes nothing, so its writes wake nobody.
    ///
    /// Must be called within a tokio runtime.
    pub fn start(databases: &Databases) -> Arc<Notifier> {
        let shared = Arc::new(Shared {
            hasher: RandomState::new(),
            registry: Mutex::new(Registry::default()),
            live_entries: AtomicUsize::new(0),
            published: [(); DATABASES].map(|()| watch::channel(0u64).0),
        });
        let mut tasks = Vec::new();
        let mut feeds = [None, None, None, None];
        for (id, handle) in DatabaseId::ALL.iter().zip(databases.handles()) {
            let Some(keys) = notify::Keys::of(&handle.dirs) else {
                tracing::debug!(
                    database = handle.spec().name,
                    "no notification keys declared; long-polls do not wake on its writes"
                );
                continue;
            };
            feeds[*id as usize] = Some((handle.db.clone(), keys.clone()));
            tasks.push(tokio::spawn(watch_loop(
                shared.clone(),
                *id,
                handle.db.clone(),
                keys,
                handle.spec().name,
            )));
        }
        Arc::new(Notifier {
            shared,
            tasks: Mutex::new(tasks),
            feeds,
        })
    }

    /// The read version of `db`'s latest publish (0 before the first):
    /// every change committed at or before it has been published.
    pub fn published(&self, db: DatabaseId) -> u64 {
        *self.shared.published[db as usize].borrow()
    }

    /// The commit version of the newest entry of `db`'s wake feed (0 if
    /// none, or if `db` is not watched): once [`Notifier::published`]
    /// reaches it, every commit so far that named a topic was published.
    ///
    /// Errors: the store's.
    pub async fn newest_wake(&self, db: DatabaseId) -> kv::Result<u64> {
        let Some((store, keys)) = &self.feeds[db as usize] else {
            return Ok(0);
        };
        let (begin, end) = keys.wake_through(u64::MAX);
        let newest = store
            .run(|tx, _| {
                let (begin, end) = (begin.clone(), end.clone());
                async move {
                    tx.get_range_all(RangeOption::new(begin, end).limit(1).reverse(true), true)
                        .await
                }
            })
            .await?;
        Ok(newest
            .first()
            .and_then(|kv| keys.decode_wake(&kv.key))
            .map_or(0, |e| e.version))
    }

    /// Waits until every change of `db` committed at or before `version`
    /// has been published.
    pub async fn wait_published(&self, db: DatabaseId, version: u64) {
        let mut rx = self.shared.published[db as usize].subscribe();
        let _ = rx.wait_for(|v| *v >= version).await;
    }

    /// The key of `topic` in this process's registry.
    pub fn topic_key(&self, topic: Topic<'_>) -> TopicKey {
        self.shared.key(topic)
    }

    /// Registers a long-poll that read everything of its user at
    /// `read_versions` and waits for any later change naming one of
    /// `topics` (sorted, see [`Notifier::topic_key`]). If such a change was
    /// already published (or may have been), the listener fires at once.
    pub fn listen(&self, topics: &[TopicKey], read_versions: ReadVersions) -> Listener {
        debug_assert!(topics.is_sorted(), "topics must be sorted");
        let waiter = Arc::new(Waiter {
            read_versions,
            fired: AtomicBool::new(false),
            notify: Notify::new(),
        });
        let entries = topics.len() + 1;
        let mut registry = self.shared.registry.lock().expect("notifier registry");
        for (db, recent) in registry.recent.iter().enumerate() {
            recent.catch_up(&waiter, db, topics);
        }
        let mut listener = Listener {
            waiter: waiter.clone(),
            shared: self.shared.clone(),
            entries: 0,
            _waiting: crate::metrics::sync_waiting(),
        };
        if waiter.fired.load(Ordering::Acquire) {
            return listener;
        }
        let weak = Arc::downgrade(&waiter);
        for topic in topics {
            registry
                .by_topic
                .entry(*topic)
                .or_default()
                .push(weak.clone());
        }
        registry.everyone.push(weak);
        registry.entries += entries;
        let live = self
            .shared
            .live_entries
            .fetch_add(entries, Ordering::Relaxed)
            + entries;
        if registry.entries > 2 * live + 4096 {
            registry.sweep();
        }
        listener.entries = entries;
        listener
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

impl Shared {
    fn key(&self, topic: Topic<'_>) -> TopicKey {
        TopicKey(self.hasher.hash_one((topic.kind(), topic.id())))
    }

    /// Step 2 of the watcher loop for `db`: everything up to `rv` is
    /// `entries` (`(version, topic)`), or unknown if `everyone`. Returns how
    /// many waiting long-polls it woke.
    fn publish(
        &self,
        db: DatabaseId,
        rv: u64,
        entries: &[(u64, TopicKey)],
        everyone: bool,
    ) -> usize {
        let d = db as usize;
        let mut woken = 0;
        {
            let mut registry = self.registry.lock().expect("notifier registry");
            for (version, topic) in entries {
                if let Some(waiters) = registry.by_topic.get(topic) {
                    for waiter in waiters.iter().filter_map(Weak::upgrade) {
                        woken += usize::from(waiter.fire(d, *version));
                    }
                }
            }
            if everyone {
                for waiter in registry.everyone.iter().filter_map(Weak::upgrade) {
                    woken += usize::from(waiter.fire(d, rv));
                }
            }
            let recent = &mut registry.recent[d];
            recent
                .log
                .extend(entries.iter().map(|(v, topic)| (*v, Some(*topic))));
            if everyone {
                recent.log.push_back((rv, None));
            }
            while recent.log.len() > RECENT_ENTRIES {
                if let Some((version, _)) = recent.log.pop_front() {
                    recent.floor = version;
                }
            }
            recent.published = recent.published.max(rv);
        }
        self.published[d].send_if_modified(|v| {
            let newer = rv > *v;
            if newer {
                *v = rv;
            }
            newer
        });
        woken
    }
}

impl Registry {
    /// Drops the entries of ended registrations.
    fn sweep(&mut self) {
        let alive = |w: &Weak<Waiter>| w.strong_count() > 0;
        self.by_topic.retain(|_, waiters| {
            waiters.retain(alive);
            !waiters.is_empty()
        });
        self.everyone.retain(alive);
        self.entries = self.everyone.len() + self.by_topic.values().map(Vec::len).sum::<usize>();
    }
}

impl Recent {
    /// Fires `waiter` if a change of database `db` concerning one of
    /// `topics` (sorted) was published after its read version, or if that
    /// cannot be told any more.
    fn catch_up(&self, waiter: &Waiter, db: usize, topics: &[TopicKey]) {
        let rv = waiter.read_versions[db];
        if self.published <= rv {
            return;
        }
        if self.floor > rv {
            waiter.fire(db, self.published);
            return;
        }
        let start = self.log.partition_point(|(v, _)| *v <= rv);
        for (version, topic) in self.log.range(start..) {
            if topic.is_none_or(|t| topics.binary_search(&t).is_ok()) {
                waiter.fire(db, *version);
                return;
            }
        }
    }
}

/// The watcher of one database: see the module docs.
async fn watch_loop(
    shared: Arc<Shared>,
    id: DatabaseId,
    db: kv::Database,
    keys: notify::Keys,
    name: &str,
) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(10);
    const MAX_BACKOFF: Duration = Duration::from_secs(1);
    let mut backoff = FIRST_BACKOFF;
    let mut last: Option<u64> = None;
    // (when, read version), at most one a second: what to prune.
    let mut seen: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut pruned_at = Instant::now();
    loop {
        let round_started = Instant::now();
        let fired = match arm(&shared, &db, &keys, last).await {
            Ok(armed) => {
                let woken = shared.publish(id, armed.rv, &armed.entries, armed.everyone);
                crate::metrics::sync_wakes(woken, round_started.elapsed());
                last = Some(armed.rv);
                let now = Instant::now();
                if seen
                    .back()
                    .is_none_or(|(t, _)| now - *t >= Duration::from_secs(1))
                {
                    seen.push_back((now, armed.rv));
                }
                if now - pruned_at >= PRUNE_EVERY {
                    pruned_at = now;
                    prune_old(&db, &keys, &mut seen, now, name).await;
                }
                armed.watch.await
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

/// Prunes the feed up to the newest read version seen at least
/// [`RETENTION`] ago; failures only delay it.
async fn prune_old(
    db: &kv::Database,
    keys: &notify::Keys,
    seen: &mut VecDeque<(Instant, u64)>,
    now: Instant,
    name: &str,
) {
    let mut upto = None;
    while let Some((t, rv)) = seen.front().copied() {
        if now - t < RETENTION {
            break;
        }
        upto = Some(rv);
        seen.pop_front();
    }
    if let Some(upto) = upto
        && let Err(e) = notify::prune(db, keys, upto).await
    {
        tracing::warn!(database = name, error = %e, "pruning the wake feed failed");
    }
}

/// One armed round: everything up to `rv` and the watch for what follows.
struct Armed {
    rv: u64,
    entries: Vec<(u64, TopicKey)>,
    everyone: bool,
    watch: kv::Watch,
}

/// Step 1 of the watcher loop: the read version, the feed entries after
/// `last` (or "everyone" if they cannot be known), and a committed watch on
/// the counter comparing with the value at that version.
async fn arm(
    shared: &Shared,
    db: &kv::Database,
    keys: &notify::Keys,
    last: Option<u64>,
) -> kv::Result<Armed> {
    let tx = db.create_transaction()?;
    tx.get(keys.counter(), true).await?;
    let rv = tx.get_read_version().await?;
    let mut entries = Vec::new();
    let mut everyone = true;
    if let Some(last) = last {
        let floor = tx
            .get(keys.floor(), true)
            .await?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_le_bytes);
        if floor <= last {
            let (begin, end) = keys.wake_after(Some(last));
            let kvs = tx
                .get_range_all(RangeOption::new(begin, end).limit(FEED_BATCH + 1), true)
                .await?;
            everyone = kvs.len() > FEED_BATCH;
            for kv in kvs.iter().take(FEED_BATCH) {
                match keys.decode_wake(&kv.key) {
                    Some(entry) => entries.push((entry.version, shared.key(entry.topic()))),
                    None => everyone = true,
                }
            }
        }
    }
    let watch = tx.watch(keys.counter());
    tx.commit().await?;
    Ok(Armed {
        rv,
        entries,
        everyone,
        watch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            hasher: RandomState::new(),
            registry: Mutex::new(Registry::default()),
            live_entries: AtomicUsize::new(0),
            published: [(); DATABASES].map(|()| watch::channel(0u64).0),
        }
    }

    fn notifier() -> Notifier {
        Notifier {
            shared: Arc::new(shared()),
            tasks: Mutex::new(Vec::new()),
            feeds: [None, None, None, None],
        }
    }

    fn fired(listener: &Listener) -> bool {
        listener.has_fired()
    }

    const ROOMS: DatabaseId = DatabaseId::Rooms;

    #[test]
    fn a_publish_wakes_only_the_topics_it_names() {
        let n = notifier();
        let a = n.topic_key(Topic::Room("!a:x"));
        let b = n.topic_key(Topic::Room("!b:x"));
        n.shared.publish(ROOMS, 10, &[], true);
        let on_a = n.listen(&[a], [0, 10, 0, 0]);
        let on_b = n.listen(&[b], [0, 10, 0, 0]);
        n.shared.publish(ROOMS, 11, &[(11, a)], false);
        assert!(fired(&on_a));
        assert!(!fired(&on_b), "a change in another room does not wake");
    }

    #[test]
    fn a_change_the_listener_already_read_does_not_wake() {
        let n = notifier();
        let a = n.topic_key(Topic::User("@a:x"));
        n.shared.publish(ROOMS, 10, &[], true);
        let l = n.listen(&[a], [0, 12, 0, 0]);
        n.shared.publish(ROOMS, 12, &[(12, a)], false);
        assert!(!fired(&l), "version 12 was in the listener's read");
        n.shared.publish(ROOMS, 13, &[(13, a)], false);
        assert!(fired(&l));
    }

    #[test]
    fn registering_after_the_publish_finds_the_change_in_the_recent_log() {
        let n = notifier();
        let a = n.topic_key(Topic::Room("!a:x"));
        let b = n.topic_key(Topic::Room("!b:x"));
        n.shared.publish(ROOMS, 10, &[], true);
        n.shared.publish(ROOMS, 15, &[(12, a), (15, b)], false);
        // Read at 11: missed 12 (a) and 15 (b).
        let mut both = [a, b];
        both.sort();
        assert!(fired(&n.listen(&[a], [0, 11, 0, 0])));
        assert!(fired(&n.listen(&[b], [0, 12, 0, 0])));
        assert!(fired(&n.listen(&both, [0, 11, 0, 0])));
        // Read at 15: nothing missed.
        assert!(!fired(&n.listen(&both, [0, 15, 0, 0])));
        // Another database's versions are not compared with these.
        assert!(!fired(&n.listen(&[a], [0, 15, 11, 0])));
    }

    #[test]
    fn an_unknown_past_wakes_at_once() {
        let n = notifier();
        let a = n.topic_key(Topic::Room("!a:x"));
        let other = n.topic_key(Topic::Room("!other:x"));
        // The first publish of a database cannot say what came before it.
        n.shared.publish(ROOMS, 10, &[], true);
        assert!(fired(&n.listen(&[a], [0, 9, 0, 0])));
        // A log trimmed past the read version cannot either.
        let many: Vec<(u64, TopicKey)> = (0..RECENT_ENTRIES as u64 + 1)
            .map(|i| (20 + i, other))
            .collect();
        let top = 20 + RECENT_ENTRIES as u64;
        n.shared.publish(ROOMS, top, &many, false);
        assert!(
            fired(&n.listen(&[a], [0, 19, 0, 0])),
            "log no longer reaches 19"
        );
        assert!(!fired(&n.listen(&[a], [0, 20, 0, 0])), "log reaches 20");
    }

    #[test]
    fn everyone_wakes_every_listener_of_that_database() {
        let n = notifier();
        let a = n.topic_key(Topic::User("@a:x"));
        n.shared.publish(ROOMS, 10, &[], true);
        let l = n.listen(&[a], [0, 10, 0, 0]);
        let idle = n.listen(&[], [0, 10, 0, 0]);
        n.shared.publish(ROOMS, 11, &[], true);
        assert!(fired(&l));
        assert!(fired(&idle));
    }

    #[test]
    fn ended_registrations_are_swept() {
        let n = notifier();
        let a = n.topic_key(Topic::Room("!a:x"));
        n.shared.publish(ROOMS, 10, &[], true);
        for _ in 0..10_000 {
            drop(n.listen(&[a], [0, 10, 0, 0]));
        }
        let kept = n.listen(&[a], [0, 10, 0, 0]);
        let entries = n.shared.registry.lock().unwrap().entries;
        assert!(entries <= 2 * 2 + 4096 + 2, "{entries} entries kept");
        n.shared.publish(ROOMS, 11, &[(11, a)], false);
        assert!(fired(&kept), "the live registration survived the sweep");
    }

    async fn bump(db: &kv::Database, keys: &notify::Keys, topics: &[Topic<'_>]) {
        db.run(|tx, _| async move {
            notify::bump(&tx, keys, topics);
            Ok::<_, kv::Error>(())
        })
        .await
        .expect("bump");
    }

    #[tokio::test]
    async fn the_watcher_reads_the_feed_after_its_last_read_and_knows_what_it_cannot_know() {
        let tmp = tempfile::tempdir().unwrap();
        let dbs = crate::db::open_embedded_at(tmp.path()).await.unwrap();
        let (db, keys) = (&dbs.rooms.db, notify::Keys::of(&dbs.rooms.dirs).unwrap());
        let s = shared();
        let first = arm(&s, db, &keys, None).await.unwrap();
        assert!(first.everyone, "a first read cannot know what came before");

        bump(db, &keys, &[Topic::Room("!a:x"), Topic::User("@u:x")]).await;
        let second = arm(&s, db, &keys, Some(first.rv)).await.unwrap();
        assert!(!second.everyone);
        let mut got: Vec<TopicKey> = second.entries.iter().map(|(_, t)| *t).collect();
        let mut want = vec![s.key(Topic::Room("!a:x")), s.key(Topic::User("@u:x"))];
        got.sort();
        want.sort();
        assert_eq!(got, want);
        let version = second.entries[0].0;
        assert!(first.rv < version && version <= second.rv);
        let third = arm(&s, db, &keys, Some(second.rv)).await.unwrap();
        assert!(third.entries.is_empty() && !third.everyone, "read once");

        // Pruned past a watcher's last read: it wakes everyone.
        assert_eq!(
            notify::prune(db, &keys, second.rv).await.unwrap(),
            Some(version)
        );
        assert_eq!(notify::prune(db, &keys, second.rv).await.unwrap(), None);
        let lagging = arm(&s, db, &keys, Some(first.rv)).await.unwrap();
        assert!(lagging.everyone && lagging.entries.is_empty());
        let current = arm(&s, db, &keys, Some(second.rv)).await.unwrap();
        assert!(!current.everyone);

        // More than one round's worth at once: everyone.
        let rooms: Vec<String> = (0..=FEED_BATCH).map(|i| format!("!r{i}:x")).collect();
        let topics: Vec<Topic<'_>> = rooms.iter().map(|r| Topic::Room(r)).collect();
        bump(db, &keys, &topics).await;
        let flood = arm(&s, db, &keys, Some(current.rv)).await.unwrap();
        assert!(flood.everyone);
    }

    #[tokio::test]
    async fn fired_resolves_for_a_wake_before_or_after_the_wait_begins() {
        let n = Arc::new(notifier());
        let a = n.topic_key(Topic::User("@a:x"));
        n.shared.publish(ROOMS, 10, &[], true);
        let before = n.listen(&[a], [0, 10, 0, 0]);
        n.shared.publish(ROOMS, 11, &[(11, a)], false);
        tokio::time::timeout(Duration::from_secs(5), before.fired())
            .await
            .expect("a wake before the wait is kept");
        let after = n.listen(&[a], [0, 11, 0, 0]);
        let wait = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(5), after.fired()).await
        });
        tokio::task::yield_now().await;
        n.shared.publish(ROOMS, 12, &[(12, a)], false);
        wait.await.unwrap().expect("a wake during the wait");
    }
}
