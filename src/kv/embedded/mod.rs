//! The embedded backend: FoundationDB's transaction semantics in-process, durable
//! on local disk, on one of two storage engines chosen per database
//! ([`Engine`]: `redb`, the default, see
//! `docs/decisions/0001-embedded-storage-engine.md`; or the LSM engine
//! `fjall`, see `docs/decisions/0007-lsm-engine.md`).
//!
//! ## Design
//! The backend plays the roles of FoundationDB's sequencer, resolver and log in
//! one place: a single **committer thread** owns the store and is the only
//! one that writes to it. The store sits behind a small seam (`engine`:
//! open, a read view with point and range reads, an atomic durable batch,
//! the stored commit version); everything else here is shared by both
//! engines.
//!
//! - **Read versions.** After each durable commit batch the committer publishes a
//!   `Snapshot`: the batch's commit version and an engine read view
//!   opened right after it. A new [`Transaction`] takes the current snapshot;
//!   every read it makes sees exactly that snapshot plus its own writes. Since
//!   snapshots are published in commit order and only after the commit is
//!   durable, a reader that sees version `v` sees every commit before `v`.
//! - **Commits.** [`Transaction::commit`] sends the buffered mutations, the read-
//!   and write-conflict ranges and the read version to the committer and waits.
//!   The committer drains every queued request into one batch (group commit;
//!   while fewer requests than the last batch held have arrived it waits for
//!   more, at most half the last commit's duration and 1 ms), checks each in
//!   order against the writes of transactions committed after its read
//!   version (`conflicts::History`, including those accepted earlier in the
//!   same batch), gathers the accepted ones' writes into one `engine::Batch`
//!   (reads of atomic operations see the batch's earlier writes), applies it
//!   to the store atomically with one fsync, publishes the new snapshot, fires watches, and only then answers.
//! - **Versions.** Each batch gets the next commit version (persisted with the
//!   batch, so versions keep increasing across restarts); a transaction's
//!   versionstamp is the version followed by its order among the batch's
//!   accepted transactions.
//! - **Age.** A transaction older than [`EmbeddedOptions::max_transaction_age`]
//!   (5 seconds, FoundationDB's MVCC window) fails with `transaction_too_old`
//!   on its next read or at commit; the conflict history is pruned to that window.
//!
//! Keys are raw bytes ordered bytewise like FoundationDB's; the store also
//! holds the last commit version. It is `<dir>/store.redb` (redb) or the
//! directory `<dir>/store.fjall` (fjall); either is built under a temporary
//! name and moved into place once complete, so a crash while creating never
//! leaves a half-written store. A directory holding one engine's store is
//! never opened with the other.
//!
//! Who may import this: `kv` and `db` (which opens stores from the
//! configuration). Layers above use [`crate::kv::Database`].

mod atomic;
mod committer;
mod conflicts;
mod engine;
mod rangeset;
mod transaction;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

pub use engine::Engine;
pub use transaction::Transaction;

use super::{Error, Result, limits};
use committer::{CommitRequest, Committer};
use engine::View;

/// Tuning of an embedded store. The defaults match FoundationDB's limits.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// How long a transaction may live after taking its read version
    /// (FoundationDB: 5 seconds).
    pub max_transaction_age: Duration,
    /// Most watches outstanding at once (FoundationDB's default: 10,000).
    pub max_watches: usize,
    /// Page cache of the storage engine, in bytes (an upper bound: it fills
    /// as pages are read and written). Default 64 MiB; configurable per
    /// database (`databases.<name>.cache_size_bytes`).
    pub cache_size_bytes: usize,
    /// Most transactions committed in one batch.
    pub max_batch: usize,
    /// The storage engine (`databases.<name>.engine`). Default
    /// [`Engine::Redb`].
    pub engine: Engine,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            max_transaction_age: limits::TRANSACTION_AGE,
            max_watches: 10_000,
            cache_size_bytes: 64 << 20,
            max_batch: 4096,
            engine: Engine::default(),
        }
    }
}

/// A read view of the store at one commit version.
pub(crate) struct Snapshot {
    version: u64,
    view: View,
}

impl Snapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.view.get(key)
    }
}

/// What the committer publishes and transactions read: the current snapshot
/// and the registered watches. Shared by the committer thread and every handle.
struct Published {
    current: RwLock<Arc<Snapshot>>,
    watches: Mutex<committer::Watches>,
}

impl Published {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().expect("snapshot lock").clone()
    }
}

/// A read-only view of the store at one commit version, for backups.
///
/// Unlike a [`Transaction`] it has no age limit: it holds the engine's read
/// view (a `redb` read transaction, an MVCC snapshot that keeps the pages
/// of its version; a `fjall` snapshot, which keeps the entries it sees from
/// being compacted away) for as long as it lives, so a store of any size
/// can be read at one version while commits go on. Holding it keeps that
/// space from being reused (the store grows under a heavy write load): drop
/// it when done.
pub struct SnapshotReader {
    snap: Arc<Snapshot>,
}

impl SnapshotReader {
    /// The commit version this view reads at: it sees exactly the commits
    /// at or below it.
    pub fn version(&self) -> u64 {
        self.snap.version
    }

    /// Calls `visit` with every pair in `[begin, end)`, in key order, until
    /// it returns `false`. Blocking (disk reads): async callers run it on a
    /// blocking thread.
    ///
    /// Errors: [`Error::Storage`] if the file cannot be read.
    pub fn scan(
        &self,
        begin: &[u8],
        end: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        for entry in self.snap.view.range(begin, end, false) {
            let (k, v) = entry?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }
}

/// Raises the last commit version of the store in `dir` to at least
/// `min_version` and returns it, so commits made after a restore get
/// versions (and versionstamps) above every one the restored data holds.
/// The store (of either engine) must not be open (in this process or
/// another): both engines lock it.
///
/// Errors: [`Error::Storage`] if there is no store in `dir`, it is open or
/// it cannot be written.
pub fn advance_version(dir: &Path, min_version: u64) -> Result<u64> {
    engine::advance_version(dir, min_version)
}

/// Test hooks that make the store misbehave on purpose, as FoundationDB's
/// simulation does. Never set outside tests.
#[doc(hidden)]
#[derive(Default)]
pub struct Faults {
    /// The next this-many committed transactions report `commit_unknown_result`
    /// although they did commit.
    pub commit_unknown_result: AtomicU32,
    /// When non-zero, counts down at each transaction that reaches the
    /// committer (read-only ones do not); the one that brings it to zero
    /// fails with a storage error (not retryable) and writes nothing: a crash,
    /// as its caller sees it, just before that commit. `2` fails the second
    /// writing transaction from now.
    pub fail_commit_countdown: AtomicU32,
}

/// The largest work any one transaction did, over every transaction
/// committed (or attempted) through this store since the last
/// [`Costs::reset`]: how tests state that a transaction's work does not grow
/// with the data (FoundationDB's 5-second and 10 MB rules) as counts, not
/// timings.
#[derive(Debug, Default)]
pub struct Costs {
    /// Most keys one transaction's reads served
    /// ([`Transaction::keys_read`]).
    pub max_keys_read: AtomicU64,
    /// Most read calls one transaction made ([`Transaction::reads`]).
    pub max_reads: AtomicU64,
    /// Most mutations (sets, clears, range clears, atomic operations) one
    /// transaction sent to commit.
    pub max_mutations: AtomicU64,
}

impl Costs {
    /// Starts counting afresh.
    pub fn reset(&self) {
        self.max_keys_read.store(0, Ordering::SeqCst);
        self.max_reads.store(0, Ordering::SeqCst);
        self.max_mutations.store(0, Ordering::SeqCst);
    }

    fn record(&self, keys_read: u64, reads: u64, mutations: u64) {
        self.max_keys_read.fetch_max(keys_read, Ordering::SeqCst);
        self.max_reads.fetch_max(reads, Ordering::SeqCst);
        self.max_mutations.fetch_max(mutations, Ordering::SeqCst);
    }
}

/// An open embedded store. Cheap to clone; the store closes when the last
/// clone is dropped or [`Database::shutdown`] is called.
#[derive(Clone)]
pub struct Database {
    shared: Arc<Shared>,
}

struct Shared {
    published: Arc<Published>,
    commits: Mutex<Option<mpsc::Sender<CommitRequest>>>,
    committer: Mutex<Option<JoinHandle<()>>>,
    options: EmbeddedOptions,
    faults: Arc<Faults>,
    costs: Costs,
    path: PathBuf,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn stop(&self) {
        drop(self.commits.lock().expect("commit channel lock").take());
        if let Some(handle) = self.committer.lock().expect("committer lock").take() {
            let _ = handle.join();
            // The published view holds the engine open (fjall's keyspace
            // handles keep its lock): replace it, so the directory can be
            // opened again once the transactions still reading are gone.
            let mut current = self.published.current.write().expect("snapshot lock");
            let version = current.version;
            *current = Arc::new(Snapshot {
                version,
                view: View::Closed,
            });
        }
    }
}

impl Database {
    /// Opens the store of `options.engine` in directory `dir`, creating it
    /// if needed.
    ///
    /// Errors: [`Error::Storage`] if the directory cannot be created, holds
    /// the other engine's store, the store is locked by another process, or
    /// it is corrupt.
    pub fn open(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self> {
        let (store, version, path) = engine::Store::open(dir.as_ref(), &options)?;
        let snapshot = Snapshot {
            version,
            view: store.view()?,
        };
        let published = Arc::new(Published {
            current: RwLock::new(Arc::new(snapshot)),
            watches: Mutex::new(committer::Watches::default()),
        });
        let faults = Arc::new(Faults::default());
        let (tx, rx) = mpsc::channel();
        let committer = Committer::new(store, version, published.clone(), faults.clone(), &options);
        let handle = std::thread::Builder::new()
            .name("myelin-committer".into())
            .spawn(move || committer.run(rx))
            .map_err(Error::storage)?;
        Ok(Database {
            shared: Arc::new(Shared {
                published,
                commits: Mutex::new(Some(tx)),
                committer: Mutex::new(Some(handle)),
                options,
                faults,
                costs: Costs::default(),
                path,
            }),
        })
    }

    /// Starts a transaction at the current read version.
    // Its start time bounds its age (FoundationDB's 5 s): the backend's
    // clock, not the service's.
    #[allow(clippy::disallowed_methods)]
    pub fn create_transaction(&self) -> Result<Transaction> {
        self.check_open()?;
        Ok(Transaction::new(
            self.clone(),
            self.shared.published.snapshot(),
            Instant::now(),
        ))
    }

    /// [`Error::Closed`] after [`Database::shutdown`].
    fn check_open(&self) -> Result<()> {
        let open = self
            .shared
            .commits
            .lock()
            .expect("commit channel lock")
            .is_some();
        if open { Ok(()) } else { Err(Error::Closed) }
    }

    /// A read-only view of the whole store at the current read version
    /// that never grows too old, for backups ([`SnapshotReader`]).
    ///
    /// Errors: [`Error::Closed`] after [`Database::shutdown`].
    pub fn snapshot_reader(&self) -> Result<SnapshotReader> {
        self.check_open()?;
        Ok(SnapshotReader {
            snap: self.shared.published.snapshot(),
        })
    }

    /// The version of the last durable commit.
    pub fn last_version(&self) -> u64 {
        self.shared.published.snapshot().version
    }

    /// The store: the file `<dir>/store.redb` or the directory
    /// `<dir>/store.fjall`.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The storage engine under this store.
    pub fn engine(&self) -> Engine {
        self.shared.options.engine
    }

    /// The store's options.
    pub fn options(&self) -> &EmbeddedOptions {
        &self.shared.options
    }

    /// The largest work of one transaction so far (see [`Costs`]).
    pub fn costs(&self) -> &Costs {
        &self.shared.costs
    }

    /// Records one transaction's work at its commit.
    pub(crate) fn record_costs(&self, keys_read: u64, reads: u64, mutations: usize) {
        self.shared.costs.record(keys_read, reads, mutations as u64);
    }

    /// Fault injection for tests.
    #[doc(hidden)]
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Stops the committer after the commits already queued and closes the
    /// file, so the same directory can be opened again. Later operations on any
    /// clone fail with [`Error::Closed`].
    pub fn shutdown(&self) {
        self.shared.stop();
    }

    fn send_commit(&self, req: CommitRequest) -> Result<()> {
        let guard = self.shared.commits.lock().expect("commit channel lock");
        let sender = guard.as_ref().ok_or(Error::Closed)?;
        sender.send(req).map_err(|_| Error::Closed)
    }

    fn register_watch(
        &self,
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        fire: oneshot::Sender<Result<()>>,
    ) -> Result<()> {
        committer::register_watch(
            &self.shared.published,
            self.shared.options.max_watches,
            key,
            expected,
            fire,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_creation_cut_short_leaves_no_store_and_the_next_open_creates_one() {
        let dir = tempfile::tempdir().unwrap();
        // What a crash while creating leaves: a partial file under a
        // temporary name (this process's, and another's), no store.
        let ours = dir
            .path()
            .join(format!("store.redb.new-{}", std::process::id()));
        std::fs::write(&ours, b"partial").unwrap();
        std::fs::write(dir.path().join("store.redb.new-1"), b"partial").unwrap();
        let store = Database::open(dir.path(), EmbeddedOptions::default()).expect("opens");
        assert_eq!(store.last_version(), 0);
        assert!(!ours.exists(), "the temporary file became the store");
        store.shutdown();
        // An existing store is opened, never replaced.
        let again = Database::open(dir.path(), EmbeddedOptions::default()).expect("reopens");
        again.shutdown();
    }
}
