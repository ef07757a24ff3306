//! The FoundationDB-shaped transactional key-value interface.
//!
//! Every Myelin layer talks to storage through this module and nothing else. It
//! offers FoundationDB's data model and transaction semantics: ordered byte keys,
//! strictly serializable transactions through optimistic concurrency, snapshot
//! reads, atomic mutations, versionstamps, watches and FoundationDB's size and
//! age limits (see <https://apple.github.io/foundationdb/developer-guide.html>).
//!
//! Two backends implement it and are chosen at run time per logical database:
//! - [`embedded`]: in-process, durable on local disk (the default);
//! - `fdb` (cargo feature `fdb`): a thin adapter over the `foundationdb` crate.
//!
//! Dispatch is a closed `enum` rather than a trait object, so futures stay `Send`
//! and unboxed on the hot path.
//!
//! Invariants every backend keeps (tested by `tests/kv_conformance.rs`):
//! - a transaction reads one consistent snapshot, at its read version, plus its
//!   own writes;
//! - it commits only if no key in its read-conflict ranges was written by a
//!   transaction committed after its read version, else fails with
//!   [`Error::Conflict`]; snapshot reads add no read conflicts;
//! - commit versions strictly increase, and a reader that sees commit `v` sees
//!   every commit before `v`;
//! - the 10-byte versionstamp of a commit is its 8-byte commit version followed
//!   by its 2-byte order within the commit batch, both big-endian.
//!
//! Transactions are retried by [`Database::run`], the only retry loop in Myelin,
//! on FoundationDB's schedule and, on FoundationDB, through its `on_error`
//! with the runner's time budget as the transaction's timeout (see `retry.rs`).
//! [`Database::read_page`] reads a range of any size one bounded transaction
//! at a time; [`Database::read_range_paged`] does so with every page at one
//! read version (one snapshot, within its 5-second window). Transactions
//! started outside the runner ([`Database::create_transaction`]: watches,
//! one-off checks) get the runner's `Timeout` and `RetryLimit` on
//! FoundationDB all the same.
//!
//! Two layers are written against [`Transaction`] and live here so every
//! backend shares them: FoundationDB's [`directory`] layer and the Record
//! Layer's [`ranked_set`].
//!
//! Who may import this: `db` and `db::*`, `sync` (read versions and
//! watches, which no database offers) and the CLI's inspection commands.
//! `api` never touches `kv` directly. It imports only `keys`, `config` and
//! `random` below it.

mod checks;
pub mod directory;
pub mod embedded;
mod error;
#[cfg(feature = "fdb")]
pub mod fdb;
pub mod ranked_set;
mod retry;
mod stats;
mod types;

use futures::Stream;

use crate::random::Random;

pub use error::{Error, Result, limits};
pub use retry::{MaybeCommitted, RetryOptions, TransactError};
pub use types::{
    CommitInfo, ConflictRangeType, KeySelector, KeyValue, MutationType, RangeChunk, RangeOption,
    Versionstamp, Watch,
};

/// A handle to one logical database (`accounts`, `rooms` or `transitory`) on
/// whichever backend holds it. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Database {
    backend: Backend,
    retry: RetryOptions,
    /// The retry runner's backoff jitter.
    random: Random,
    /// The logical database this handle serves, for metrics.
    name: &'static str,
}

#[derive(Clone)]
enum Backend {
    Embedded(embedded::Database),
    #[cfg(feature = "fdb")]
    Fdb(fdb::Database),
}

impl From<embedded::Database> for Database {
    fn from(db: embedded::Database) -> Self {
        Database {
            backend: Backend::Embedded(db),
            retry: RetryOptions::default(),
            random: Random::default(),
            name: "unnamed",
        }
    }
}

#[cfg(feature = "fdb")]
impl From<fdb::Database> for Database {
    fn from(db: fdb::Database) -> Self {
        Database {
            backend: Backend::Fdb(db),
            retry: RetryOptions::default(),
            random: Random::default(),
            name: "unnamed",
        }
    }
}

impl Database {
    /// Replaces the retry runner's bounds for transactions run through this handle.
    pub fn with_retry_options(mut self, retry: RetryOptions) -> Self {
        self.retry = retry;
        self
    }

    /// Replaces the source of the retry runner's backoff jitter (the
    /// operating system's by default; tests pass a seeded one).
    pub fn with_random(mut self, random: Random) -> Self {
        self.random = random;
        self
    }

    /// Names the logical database this handle serves (`db::SPECS`), the
    /// `database` label of its transactions' metrics. Default `"unnamed"`.
    pub fn with_name(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// The logical database this handle serves ([`Database::with_name`]).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The retry runner's bounds.
    pub fn retry_options(&self) -> &RetryOptions {
        &self.retry
    }

    /// The backend's name, for logs and `myelin keys`: `"embedded"` or `"fdb"`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Embedded(_) => "embedded",
            #[cfg(feature = "fdb")]
            Backend::Fdb(_) => "fdb",
        }
    }

    /// The embedded backend behind this handle, if that is the backend.
    pub fn as_embedded(&self) -> Option<&embedded::Database> {
        match &self.backend {
            Backend::Embedded(db) => Some(db),
            #[cfg(feature = "fdb")]
            Backend::Fdb(_) => None,
        }
    }

    /// Starts a transaction outside the retry runner. Prefer
    /// [`Database::run`], which retries it. A transaction started here gets
    /// the runner's bounds all the same: on FoundationDB its `Timeout`
    /// option is [`RetryOptions::timeout`] and its `RetryLimit` the retry
    /// limit, so its reads, its commit (and a watch's arming commit) fail
    /// with [`Error::TimedOut`]'s code 1031 instead of waiting for an
    /// unreachable cluster; the embedded backend's reads never wait on a
    /// network and its age limit (5 s) applies as to every transaction.
    pub fn create_transaction(&self) -> Result<Transaction> {
        let tx = self.unbounded_transaction()?;
        tx.set_bounds(self.retry.timeout, self.retry.retry_limit)?;
        Ok(tx)
    }

    /// A transaction with no bounds set yet (the runner sets its own).
    fn unbounded_transaction(&self) -> Result<Transaction> {
        Ok(Transaction(match &self.backend {
            Backend::Embedded(db) => TxInner::Embedded(db.create_transaction()?),
            #[cfg(feature = "fdb")]
            Backend::Fdb(db) => TxInner::Fdb(db.create_transaction()?),
        }))
    }

    /// A read-only transaction at the read version of `tx` (FoundationDB's
    /// `set_read_version`; the embedded backend shares `tx`'s snapshot and
    /// start time), with this handle's bounds. It sees exactly what `tx`
    /// saw of the store (not `tx`'s own writes) and fails with
    /// [`Error::TooOld`] once that version leaves the 5-second MVCC window,
    /// as `tx` would: several transactions at one version bound each one's
    /// work, not the time the whole read may take.
    async fn at_read_version_of(&self, tx: &Transaction) -> Result<Transaction> {
        let sibling = match (&self.backend, &tx.0) {
            (Backend::Embedded(_), TxInner::Embedded(tx)) => {
                Transaction(TxInner::Embedded(tx.at_same_version()?))
            }
            #[cfg(feature = "fdb")]
            (Backend::Fdb(db), TxInner::Fdb(tx)) => {
                let version = tx.get_read_version().await?;
                Transaction(TxInner::Fdb(db.create_transaction_at(version)?))
            }
            #[cfg(feature = "fdb")]
            _ => unreachable!("a transaction of another backend"),
        };
        sibling.set_bounds(self.retry.timeout, self.retry.retry_limit)?;
        Ok(sibling)
    }
}

/// One transaction. Cheap to clone: clones are the same transaction, so a
/// closure run by [`Database::run`] may hand it to helpers. Mutations are
/// buffered and take effect atomically at commit; errors of mutations (key and
/// value sizes, transaction size) surface at commit, as in FoundationDB.
#[derive(Clone)]
pub struct Transaction(TxInner);

#[derive(Clone)]
enum TxInner {
    Embedded(embedded::Transaction),
    #[cfg(feature = "fdb")]
    Fdb(fdb::Transaction),
}

/// A transaction whose attempt failed, as the retry runner retries it: the
/// embedded backend starts a fresh transaction after the runner's backoff;
/// FoundationDB's transaction is kept for its `on_error`.
enum Attempted {
    Embedded,
    #[cfg(feature = "fdb")]
    Fdb(fdb::Attempted),
}

macro_rules! dispatch {
    ($self:expr, $tx:ident => $body:expr) => {
        match &$self.0 {
            TxInner::Embedded($tx) => $body,
            #[cfg(feature = "fdb")]
            TxInner::Fdb($tx) => $body,
        }
    };
}

impl Transaction {
    /// The embedded transaction behind this handle, if that is the backend
    /// (tests read its [`embedded::Transaction::keys_read`]).
    pub fn as_embedded(&self) -> Option<&embedded::Transaction> {
        match &self.0 {
            TxInner::Embedded(tx) => Some(tx),
            #[cfg(feature = "fdb")]
            TxInner::Fdb(_) => None,
        }
    }

    /// The value of `key`, or `None` if absent. A non-snapshot read adds `key` to
    /// the read-conflict ranges.
    pub async fn get(&self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>> {
        dispatch!(self, tx => tx.get(key, snapshot).await)
    }

    /// The key the selector resolves to, clamped to `[b"", b"\xff"]`.
    pub async fn get_key(&self, selector: &KeySelector, snapshot: bool) -> Result<Vec<u8>> {
        dispatch!(self, tx => tx.get_key(selector, snapshot).await)
    }

    /// One batch of the range: at most `limit` pairs, in key order (or reverse
    /// order). `more` tells whether the backend stopped before the range's end;
    /// [`Transaction::get_ranges`] follows it.
    pub async fn get_range(&self, range: &RangeOption, snapshot: bool) -> Result<RangeChunk> {
        dispatch!(self, tx => tx.get_range(range, snapshot).await)
    }

    /// The range as a stream of batches, following `more` until the range or its
    /// limit is exhausted.
    pub fn get_ranges(
        &self,
        range: RangeOption,
        snapshot: bool,
    ) -> impl Stream<Item = Result<Vec<KeyValue>>> + Send + 'static {
        types::stream_range(self.clone(), range, snapshot)
    }

    /// The whole range (up to its limit) in one vector.
    pub async fn get_range_all(&self, range: RangeOption, snapshot: bool) -> Result<Vec<KeyValue>> {
        use futures::TryStreamExt;
        let batches: Vec<Vec<KeyValue>> = self.get_ranges(range, snapshot).try_collect().await?;
        Ok(batches.into_iter().flatten().collect())
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: &[u8], value: &[u8]) {
        dispatch!(self, tx => tx.set(key, value))
    }

    /// Removes `key`.
    pub fn clear(&self, key: &[u8]) {
        dispatch!(self, tx => tx.clear(key))
    }

    /// Removes every key in `[begin, end)`.
    pub fn clear_range(&self, begin: &[u8], end: &[u8]) {
        dispatch!(self, tx => tx.clear_range(begin, end))
    }

    /// Applies an atomic mutation: it reads nothing (adds no read conflict) and is
    /// evaluated against the latest value at commit. See [`MutationType`].
    pub fn atomic_op(&self, key: &[u8], param: &[u8], op: MutationType) {
        dispatch!(self, tx => tx.atomic_op(key, param, op))
    }

    /// Adds an explicit conflict range `[begin, end)`.
    pub fn add_conflict_range(
        &self,
        begin: &[u8],
        end: &[u8],
        kind: ConflictRangeType,
    ) -> Result<()> {
        dispatch!(self, tx => tx.add_conflict_range(begin, end, kind))
    }

    /// The transaction's read version: every read sees exactly the commits with
    /// a version at or below it.
    pub async fn get_read_version(&self) -> Result<u64> {
        dispatch!(self, tx => tx.get_read_version().await)
    }

    /// A watch on `key`: once this transaction commits, the returned future
    /// resolves after a later commit changes the key's value from what this
    /// transaction saw (its own writes included). Dropping it cancels the watch.
    pub fn watch(&self, key: &[u8]) -> Watch {
        dispatch!(self, tx => tx.watch(key))
    }

    /// Sets the backend's own bounds for this transaction: FoundationDB's
    /// `Timeout` and `RetryLimit` options (see `src/kv/retry.rs`). The
    /// embedded backend needs none: its runner checks the budget itself and
    /// its reads never wait on a network.
    fn set_bounds(
        &self,
        timeout: Option<std::time::Duration>,
        retry_limit: Option<u32>,
    ) -> Result<()> {
        match &self.0 {
            TxInner::Embedded(_) => {
                let _ = (timeout, retry_limit);
                Ok(())
            }
            #[cfg(feature = "fdb")]
            TxInner::Fdb(tx) => tx.set_bounds(timeout, retry_limit),
        }
    }

    /// This transaction after its closure failed, kept for the retry
    /// runner's `on_error`.
    fn into_attempted(self) -> Attempted {
        match self.0 {
            TxInner::Embedded(_) => Attempted::Embedded,
            #[cfg(feature = "fdb")]
            TxInner::Fdb(tx) => Attempted::Fdb(tx.into_attempted()),
        }
    }

    /// As [`Transaction::commit`], and on failure also returns what the
    /// retry runner needs to retry on the same transaction.
    async fn commit_or_keep(self) -> std::result::Result<CommitInfo, (Error, Attempted)> {
        match self.0 {
            TxInner::Embedded(tx) => tx.commit().await.map_err(|e| (e, Attempted::Embedded)),
            #[cfg(feature = "fdb")]
            TxInner::Fdb(tx) => tx
                .commit_or_keep()
                .await
                .map_err(|(e, attempted)| (e, Attempted::Fdb(attempted))),
        }
    }

    /// Commits. Returns the commit version and versionstamp, or `None` for both
    /// when the transaction wrote nothing (read-only transactions never
    /// conflict). Fails with [`Error::UsedDuringCommit`] if another clone of the
    /// transaction is still alive, for the FoundationDB backend.
    pub async fn commit(self) -> Result<CommitInfo> {
        match self.0 {
            TxInner::Embedded(tx) => tx.commit().await,
            #[cfg(feature = "fdb")]
            TxInner::Fdb(tx) => tx.commit().await,
        }
    }
}
