//! The FoundationDB backend: a thin adapter from the `kv` interface to the
//! `foundationdb` crate (client API 7.3). This is the only file in Myelin that
//! imports `foundationdb`; everything else goes through [`crate::kv`].
//!
//! What it owns:
//! - **The client network.** libfdb_c runs one network thread per process, which
//!   can be started once and never restarted. [`Database::open`] boots it lazily
//!   on first use (API version [`API_VERSION`]) behind a `OnceLock`, so any number
//!   of [`Database`]s, on the same or different cluster files, share it. The
//!   `NetworkAutoStop` handle the crate returns must be dropped before the process
//!   exits (FoundationDB: "you must call `fdb_stop_network` and wait for
//!   `fdb_run_network` to return before allowing your program to exit"), but a
//!   `static` is never dropped. So the handle lives in a `static Mutex<Option<_>>`
//!   (it is `Send`; the `Mutex` makes the static `Sync`) and an `atexit` hook,
//!   registered right after the boot, takes it out and drops it: the network
//!   stops and its thread is joined before libfdb_c's own exit-time destructors
//!   run (those were registered earlier, when the library loaded, and `atexit`
//!   runs hooks in reverse order). A process that aborts needs no stop.
//! - **Semantics.** Reads, writes, conflict ranges, watches and versionstamps are
//!   FoundationDB's own. The adapter adds only what makes both backends report
//!   identically: keys, values, versionstamp offsets and explicit conflict ranges
//!   are validated as the embedded backend validates them, and a failed mutation
//!   is remembered and reported at commit (as `kv` promises, and as the embedded
//!   backend does) instead of being handed to FoundationDB; selector anchors
//!   beyond `\xff` are clamped to `\xff` as the embedded backend clamps them.
//!   FoundationDB error codes that have a dedicated [`Error`] variant become that
//!   variant (`map_error`); every other error stays whole as [`Error::Fdb`], so
//!   its code and FoundationDB's retryable and maybe-committed predicates survive.
//! - **Commits.** [`Transaction`] is an `Arc` around the crate's transaction.
//!   FoundationDB's commit consumes the transaction, so [`Transaction::commit`]
//!   needs the last clone and fails with [`Error::UsedDuringCommit`] otherwise.
//!
//! Retries: `kv::Database::run` (`src/kv/retry.rs`) keeps one FoundationDB
//! transaction for all its attempts and, after a retryable error, hands it to
//! FoundationDB's `fdb_transaction_on_error` ([`Attempted::on_error`]), which
//! waits FoundationDB's own backoff (its per-transaction state: 10 ms doubling
//! to 1 s, 30 s for proxy-memory-limit errors, tag-throttle hints, jitter) and
//! resets the transaction while keeping its options (FDB 7.3
//! `fdbclient/NativeAPI.actor.cpp`, `Transaction::onError` and `getBackoff`).
//! A failed commit keeps the crate's `TransactionCommitError`, whose `on_error`
//! does the same. Before the first attempt the runner sets
//! `TransactionOption::Timeout` (its time budget) and `RetryLimit`
//! ([`Transaction::set_bounds`]): an unreachable cluster then fails the
//! transaction with `transaction_timed_out` (1031) instead of waiting forever.
//!
//! Sizes: FoundationDB enforces its 10,000,000-byte transaction limit itself
//! (`Transaction::getSize`: mutations and coalesced conflict ranges, each
//! with its per-item overhead; the embedded backend counts the same way). The
//! adapter also counts the bytes of mutations, explicit conflict ranges and
//! non-snapshot point reads, without overheads (a lower bound of
//! FoundationDB's count), and fails the commit with
//! [`Error::TransactionTooLarge`] when that count alone is over the limit;
//! when FoundationDB's fuller count rejects the commit instead (`2101`), the
//! error reports the adapter's count, the only one available after the failed
//! commit.
//!
//! Who may import this: `kv` (dispatch and [`FdbError`] in `kv::Error`) and
//! `db` (which opens stores from the configuration). Layers above use
//! [`crate::kv::Database`]. This is the only file that names the
//! `foundationdb` crate (`tests/architecture.rs` checks it).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// FoundationDB's error, re-exported so that `kv::Error::Fdb` can hold it
/// without another file naming the `foundationdb` crate.
pub use foundationdb::FdbError;
use foundationdb::FdbResult;
use foundationdb::api::{FdbApiBuilder, NetworkAutoStop};
use foundationdb::options::{self, StreamingMode, TransactionOption};
use foundationdb::{TransactionCommitError, TransactionCommitted};

use super::checks::{
    KEYSPACE_END, check_key, check_key_len, check_value, check_versionstamped_key,
    check_versionstamped_value,
};
use super::{
    CommitInfo, ConflictRangeType, Error, KeySelector, KeyValue, MutationType, RangeChunk,
    RangeOption, Result, Versionstamp, Watch, limits,
};

/// The FoundationDB client API version the adapter selects: 7.3, the version
/// of the headers the `foundationdb` crate is built with (feature `fdb-7_3`).
/// The installed libfdb_c must support it (any 7.3.x or newer client).
pub const API_VERSION: i32 = 730;

/// FoundationDB's `file_not_readable` (1513): reported for a cluster-file path
/// libfdb_c cannot be given (not UTF-8, or containing a NUL byte).
const FILE_NOT_READABLE: i32 = 1513;
/// FoundationDB's `internal_error` (4100): reported if the client returns a
/// versionstamp that is not 10 bytes long, which its API rules out.
const INTERNAL_ERROR: i32 = 4100;

/// The outcome of booting the network, decided once per process.
static BOOT: OnceLock<FdbResult<()>> = OnceLock::new();
/// The running network's stop handle, taken and dropped at process exit.
static NETWORK: Mutex<Option<NetworkAutoStop>> = Mutex::new(None);

unsafe extern "C" {
    /// C's `atexit`: runs `callback` when the process exits normally.
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

/// Selects the API version and starts the network thread, once per process.
fn ensure_network() -> Result<()> {
    let booted = BOOT.get_or_init(|| {
        let builder = FdbApiBuilder::default()
            .set_runtime_version(API_VERSION)
            .build()?;
        // SAFETY: `boot` requires the returned handle to be dropped before the
        // process exits. It goes into `NETWORK`, and `stop_network_at_exit`,
        // registered just below, drops it from an `atexit` hook.
        let network = unsafe { builder.boot() }?;
        *NETWORK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(network);
        // SAFETY: registering a plain `extern "C" fn()` with C's `atexit`.
        // Should registration fail (only on exhausting the hook table), the
        // network simply keeps running at exit, as in a process that aborts.
        if unsafe { atexit(stop_network_at_exit) } != 0 {
            tracing::warn!("could not register the FoundationDB network stop at exit");
        }
        Ok(())
    });
    booted.map_err(Error::Fdb)
}

/// Stops the network and joins its thread; runs at process exit.
extern "C" fn stop_network_at_exit() {
    // `try_lock`: were another thread in the middle of booting, waiting here
    // would deadlock the exit; its network then keeps running, as in an abort.
    let network = match NETWORK.try_lock() {
        Ok(mut guard) => guard.take(),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner().take(),
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    // Dropping stops the network; a panic must not unwind into C.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(network)));
}

/// An open FoundationDB database: one cluster file, one logical database.
/// Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Database {
    inner: Arc<foundationdb::Database>,
    cluster_file: Option<PathBuf>,
}

impl Database {
    /// Connects to the cluster described by `cluster_file`, or by FoundationDB's
    /// default cluster file when `None` (`FDB_CLUSTER_FILE`, then `./fdb.cluster`,
    /// then `/etc/foundationdb/fdb.cluster` on Linux). Boots the client network
    /// on the first call in the process.
    ///
    /// Errors: [`Error::Fdb`] with FoundationDB's code: `api_version_not_supported`
    /// (2203) if the installed libfdb_c is older than 7.3, `no_cluster_file_found`
    /// (1515), `connection_string_invalid` (2104), or `file_not_readable` (1513)
    /// for a path that is not UTF-8 or contains a NUL byte. Connecting is lazy:
    /// an unreachable cluster is not an error here. It shows up in the first
    /// transaction, which waits until its `Timeout` option (set by the retry
    /// runner) fails it with `transaction_timed_out` (1031); `db::open` reads
    /// one key of each cluster within a deadline for that reason.
    pub fn open(cluster_file: Option<&Path>) -> Result<Database> {
        ensure_network()?;
        let path = match cluster_file {
            Some(p) => Some(
                p.to_str()
                    .filter(|s| !s.contains('\0'))
                    .ok_or(FdbError::from_code(FILE_NOT_READABLE))?,
            ),
            None => None,
        };
        let inner = foundationdb::Database::new(path).map_err(map_error)?;
        Ok(Database {
            inner: Arc::new(inner),
            cluster_file: cluster_file.map(Path::to_path_buf),
        })
    }

    /// The cluster file this handle was opened with; `None` for the default.
    pub fn cluster_file(&self) -> Option<&Path> {
        self.cluster_file.as_deref()
    }

    /// Starts a transaction. Its read version is taken at its first read.
    pub fn create_transaction(&self) -> Result<Transaction> {
        let tx = self.inner.create_trx().map_err(map_error)?;
        Ok(Transaction::wrap(tx))
    }

    /// Starts a transaction that reads at `version` (FoundationDB's
    /// `fdb_transaction_set_read_version`): it sees what a transaction with
    /// that read version saw, and fails with `transaction_too_old` (1007)
    /// once the version is older than the MVCC window (5 s).
    pub fn create_transaction_at(&self, version: u64) -> Result<Transaction> {
        let tx = self.inner.create_trx().map_err(map_error)?;
        // FoundationDB versions fit in an i64 (they are never negative).
        tx.set_read_version(i64::try_from(version).unwrap_or(i64::MAX));
        Ok(Transaction::wrap(tx))
    }
}

/// A FoundationDB transaction. Clones share the transaction.
#[derive(Clone)]
pub struct Transaction {
    inner: Arc<Inner>,
}

struct Inner {
    tx: foundationdb::Transaction,
    state: Mutex<State>,
}

/// What the adapter tracks beside FoundationDB's own state.
#[derive(Default)]
struct State {
    /// The first error of a mutation, reported at commit.
    error: Option<Error>,
    /// Bytes counted as the embedded backend counts them (see the module docs).
    size_bytes: usize,
    /// Whether a mutation or write-conflict range was handed to FoundationDB.
    wrote: bool,
}

impl Transaction {
    fn wrap(tx: foundationdb::Transaction) -> Transaction {
        Transaction {
            inner: Arc::new(Inner {
                tx,
                state: Mutex::new(State::default()),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().expect("fdb transaction state lock")
    }

    /// Records a write of `bytes` bytes, or the mutation's error.
    fn record_write(&self, checked: Result<()>, bytes: usize) -> bool {
        let mut st = self.state();
        match checked {
            Ok(()) => {
                st.size_bytes += bytes;
                st.wrote = true;
                true
            }
            Err(e) => {
                st.error.get_or_insert(e);
                false
            }
        }
    }

    /// See [`crate::kv::Transaction::get`].
    pub async fn get(&self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        if !snapshot {
            // The read-conflict range `[key, key + \x00)`, as the embedded backend counts it.
            self.state().size_bytes += 2 * key.len() + 1;
        }
        let value = self.inner.tx.get(key, snapshot).await.map_err(map_error)?;
        Ok(value.map(|v| v.to_vec()))
    }

    /// See [`crate::kv::Transaction::get_key`].
    pub async fn get_key(&self, selector: &KeySelector, snapshot: bool) -> Result<Vec<u8>> {
        let key = self
            .inner
            .tx
            .get_key(&fdb_selector(selector), snapshot)
            .await
            .map_err(map_error)?;
        Ok(key.to_vec())
    }

    /// See [`crate::kv::Transaction::get_range`]. One FoundationDB batch: with a
    /// limit, exactly that many pairs unless the range ends first (streaming mode
    /// `exact`); without one, as many as FoundationDB sends at once (`want_all`),
    /// with `more` set if it stopped early. A limit of zero reads nothing.
    pub async fn get_range(&self, range: &RangeOption, snapshot: bool) -> Result<RangeChunk> {
        if range.limit == Some(0) {
            return Ok(RangeChunk::default());
        }
        let opt = foundationdb::RangeOption {
            begin: fdb_selector(&range.begin),
            end: fdb_selector(&range.end),
            limit: range.limit,
            mode: if range.limit.is_some() {
                StreamingMode::Exact
            } else {
                StreamingMode::WantAll
            },
            reverse: range.reverse,
            ..foundationdb::RangeOption::default()
        };
        // The iteration number only matters in the `iterator` streaming mode.
        let values = self
            .inner
            .tx
            .get_range(&opt, 1, snapshot)
            .await
            .map_err(map_error)?;
        let kvs: Vec<KeyValue> = values
            .iter()
            .map(|kv| KeyValue {
                key: kv.key().to_vec(),
                value: kv.value().to_vec(),
            })
            .collect();
        // FoundationDB may set `more` when only the limit stopped it; `kv` does not.
        let more = values.more() && range.limit.is_none_or(|limit| kvs.len() < limit);
        Ok(RangeChunk { kvs, more })
    }

    /// See [`crate::kv::Transaction::set`].
    pub fn set(&self, key: &[u8], value: &[u8]) {
        let checked = check_key(key).and_then(|()| check_value(value));
        if self.record_write(checked, key.len() + value.len()) {
            self.inner.tx.set(key, value);
        }
    }

    /// See [`crate::kv::Transaction::clear`].
    pub fn clear(&self, key: &[u8]) {
        if self.record_write(check_key(key), key.len()) {
            self.inner.tx.clear(key);
        }
    }

    /// See [`crate::kv::Transaction::clear_range`]. The end is clamped to `\xff`;
    /// an empty range is a no-op.
    pub fn clear_range(&self, begin: &[u8], end: &[u8]) {
        if begin > end {
            self.record_write(Err(Error::InvertedRange), 0);
            return;
        }
        let end = end.min(KEYSPACE_END);
        if begin >= end {
            return;
        }
        let checked = check_key_len(begin).and_then(|()| check_key_len(end));
        if self.record_write(checked, begin.len() + end.len()) {
            self.inner.tx.clear_range(begin, end);
        }
    }

    /// See [`crate::kv::Transaction::atomic_op`].
    pub fn atomic_op(&self, key: &[u8], param: &[u8], op: MutationType) {
        let checked = match op {
            MutationType::SetVersionstampedKey => {
                check_versionstamped_key(key).and_then(|_| check_value(param))
            }
            MutationType::SetVersionstampedValue => {
                check_versionstamped_value(param).and_then(|_| check_key(key))
            }
            _ => check_key(key).and_then(|()| check_value(param)),
        };
        if self.record_write(checked, key.len() + param.len()) {
            self.inner.tx.atomic_op(key, param, fdb_mutation(op));
        }
    }

    /// See [`crate::kv::Transaction::add_conflict_range`]. Both ends are clamped
    /// to `\xff` (nothing beyond it can conflict with user keys).
    pub fn add_conflict_range(
        &self,
        begin: &[u8],
        end: &[u8],
        kind: ConflictRangeType,
    ) -> Result<()> {
        if begin > end {
            return Err(Error::InvertedRange);
        }
        check_key_len(begin)?;
        check_key_len(end)?;
        {
            let mut st = self.state();
            st.size_bytes += begin.len() + end.len();
            st.wrote |= kind == ConflictRangeType::Write;
        }
        let (begin, end) = (begin.min(KEYSPACE_END), end.min(KEYSPACE_END));
        if begin >= end {
            return Ok(());
        }
        let ty = match kind {
            ConflictRangeType::Read => options::ConflictRangeType::Read,
            ConflictRangeType::Write => options::ConflictRangeType::Write,
        };
        self.inner
            .tx
            .add_conflict_range(begin, end, ty)
            .map_err(map_error)
    }

    /// See [`crate::kv::Transaction::get_read_version`].
    pub async fn get_read_version(&self) -> Result<u64> {
        let version = self.inner.tx.get_read_version().await.map_err(map_error)?;
        // FoundationDB versions are never negative.
        Ok(version as u64)
    }

    /// See [`crate::kv::Transaction::watch`]. The watch outlives the transaction
    /// object; FoundationDB sets it when the transaction commits, and fails it
    /// (with FoundationDB's error) if the transaction is dropped uncommitted.
    pub fn watch(&self, key: &[u8]) -> Watch {
        if let Err(e) = check_key(key) {
            return Watch::new(async move { Err(e) });
        }
        let fired = self.inner.tx.watch(key);
        Watch::new(async move { fired.await.map_err(map_error) })
    }

    /// Sets FoundationDB's `Timeout` (milliseconds; `None` or zero: none)
    /// and `RetryLimit` (`None`: none) options. FoundationDB measures the
    /// timeout from the transaction's creation and keeps both across
    /// `on_error` (API 610 and later; `fdb.options`, and
    /// `ReadYourWritesTransaction::resetTimeout` in FDB 7.3's
    /// `fdbclient/ReadYourWrites.actor.cpp`: `timebomb(timeoutInSeconds + creationTime)`).
    pub fn set_bounds(&self, timeout: Option<Duration>, retry_limit: Option<u32>) -> Result<()> {
        let timeout_ms = timeout.map_or(0, |t| {
            // At least 1 ms: zero would mean "no timeout".
            i32::try_from(t.as_millis()).unwrap_or(i32::MAX).max(1)
        });
        let limit = retry_limit.map_or(-1, |l| i32::try_from(l).unwrap_or(i32::MAX));
        let tx = &self.inner.tx;
        tx.set_option(TransactionOption::Timeout(timeout_ms))
            .and_then(|()| tx.set_option(TransactionOption::RetryLimit(limit)))
            .map_err(map_error)
    }

    /// This transaction after a failed attempt, for [`Attempted::on_error`].
    /// Holds the FoundationDB transaction only if this is its last clone.
    pub fn into_attempted(self) -> Attempted {
        Attempted(
            Arc::try_unwrap(self.inner)
                .ok()
                .map(|inner| AttemptedTx::Open(inner.tx)),
        )
    }

    /// See [`crate::kv::Transaction::commit`]. Fails with
    /// [`Error::UsedDuringCommit`] if another clone of this transaction is alive.
    pub async fn commit(self) -> Result<CommitInfo> {
        self.commit_or_keep().await.map_err(|(e, _)| e)
    }

    /// As [`Transaction::commit`], and on failure also returns the
    /// transaction (as the crate's commit error holds it) for
    /// [`Attempted::on_error`].
    pub async fn commit_or_keep(self) -> std::result::Result<CommitInfo, (Error, Attempted)> {
        let Inner { tx, state } = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(_) => return Err((Error::UsedDuringCommit, Attempted(None))),
        };
        let st = state.into_inner().expect("fdb transaction state lock");
        let refused = match st.error {
            Some(e) => Some(e),
            None => {
                (st.size_bytes > limits::TRANSACTION_SIZE_BYTES).then(|| too_large(st.size_bytes))
            }
        };
        if let Some(e) = refused {
            return Err((e, Attempted(Some(AttemptedTx::Open(tx)))));
        }
        // The versionstamp future must be requested before the commit; a
        // read-only transaction has none (its future would fail).
        let stamp = st.wrote.then(|| tx.get_versionstamp());
        let committed: TransactionCommitted = match tx.commit().await {
            Ok(committed) => committed,
            Err(e) => {
                let mapped = map_commit_error(*e, st.size_bytes);
                return Err((mapped, Attempted(Some(AttemptedTx::Commit(e)))));
            }
        };
        let info = async {
            let version = committed.committed_version().map_err(map_error)?;
            // FoundationDB reports -1 for a read-only commit.
            let (Ok(version), Some(stamp)) = (u64::try_from(version), stamp) else {
                return Ok(CommitInfo::default());
            };
            let stamp = stamp.await.map_err(map_error)?;
            let versionstamp = Versionstamp::try_from(&stamp[..])
                .map_err(|_| Error::Fdb(FdbError::from_code(INTERNAL_ERROR)))?;
            Ok(CommitInfo {
                version: Some(version),
                versionstamp: Some(versionstamp),
            })
        };
        info.await.map_err(|e| (e, Attempted(None)))
    }
}

/// A FoundationDB transaction whose attempt failed, kept so that the retry
/// runner can call FoundationDB's `on_error` on the same transaction.
pub struct Attempted(Option<AttemptedTx>);

enum AttemptedTx {
    /// The closure or a check before the commit failed.
    Open(foundationdb::Transaction),
    /// FoundationDB refused the commit; the error holds the transaction.
    Commit(TransactionCommitError),
}

impl Attempted {
    /// FoundationDB's `on_error` for `error`: waits FoundationDB's backoff and
    /// returns the reset transaction (its options kept), or fails with the
    /// error when FoundationDB does not retry it (not retryable, retry limit
    /// or timeout reached). `Ok(None)` when no transaction was kept (a clone
    /// outlived the attempt); the runner then starts a fresh one.
    pub async fn on_error(self, error: &Error) -> Result<Option<Transaction>> {
        let tx = match self.0 {
            None => return Ok(None),
            Some(AttemptedTx::Commit(e)) => e.on_error().await,
            Some(AttemptedTx::Open(tx)) => {
                let code = match error {
                    Error::Fdb(e) => *e,
                    other => FdbError::from_code(other.code().unwrap_or(INTERNAL_ERROR)),
                };
                tx.on_error(code).await
            }
        }
        .map_err(map_error)?;
        Ok(Some(Transaction::wrap(tx)))
    }
}

/// The crate's key selector for a `kv` one, its anchor clamped to `\xff`.
fn fdb_selector(sel: &KeySelector) -> foundationdb::KeySelector<'_> {
    let key = sel.key.as_slice().min(KEYSPACE_END);
    foundationdb::KeySelector::new(Cow::Borrowed(key), sel.or_equal, sel.offset)
}

/// FoundationDB's mutation type for a `kv` one (same names, same semantics).
fn fdb_mutation(op: MutationType) -> options::MutationType {
    match op {
        MutationType::Add => options::MutationType::Add,
        MutationType::Max => options::MutationType::Max,
        MutationType::Min => options::MutationType::Min,
        MutationType::BitAnd => options::MutationType::BitAnd,
        MutationType::BitOr => options::MutationType::BitOr,
        MutationType::BitXor => options::MutationType::BitXor,
        MutationType::ByteMax => options::MutationType::ByteMax,
        MutationType::ByteMin => options::MutationType::ByteMin,
        MutationType::AppendIfFits => options::MutationType::AppendIfFits,
        MutationType::CompareAndClear => options::MutationType::CompareAndClear,
        MutationType::SetVersionstampedKey => options::MutationType::SetVersionstampedKey,
        MutationType::SetVersionstampedValue => options::MutationType::SetVersionstampedValue,
    }
}

/// The `kv` error for a FoundationDB error: the dedicated variant where the
/// code has one and needs no detail FoundationDB does not give, else the error
/// kept whole. Key and value size errors (2102, 2103) stay [`Error::Fdb`]: the
/// adapter checks every key and value before FoundationDB sees it and reports
/// [`Error::KeyTooLarge`] / [`Error::ValueTooLarge`] with the real lengths, so
/// FoundationDB reporting them means a limit other than [`limits`], and no
/// length is known. Transaction size (2101) is mapped by [`map_commit_error`].
fn map_error(e: FdbError) -> Error {
    match e.code() {
        1007 => Error::TooOld,
        1020 => Error::Conflict,
        1021 => Error::CommitUnknownResult,
        1032 => Error::TooManyWatches,
        1036 => Error::AccessedUnreadable,
        2004 => Error::KeyOutsideLegalRange,
        2005 => Error::InvertedRange,
        2017 => Error::UsedDuringCommit,
        2018 => Error::InvalidMutation("invalid mutation type (2018)"),
        _ => Error::Fdb(e),
    }
}

/// As [`map_error`], for a failed commit: `transaction_too_large` (2101)
/// becomes [`Error::TransactionTooLarge`] with the adapter's count of the
/// transaction's bytes.
fn map_commit_error(e: FdbError, size_bytes: usize) -> Error {
    match e.code() {
        2101 => too_large(size_bytes),
        _ => map_error(e),
    }
}

fn too_large(size_bytes: usize) -> Error {
    Error::TransactionTooLarge {
        size_bytes,
        limit_bytes: limits::TRANSACTION_SIZE_BYTES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdb_codes_with_a_variant_map_to_it_and_keep_their_code() {
        for code in [1007, 1020, 1021, 1032, 1036, 2004, 2005, 2017, 2018] {
            let mapped = map_error(FdbError::from_code(code));
            assert!(!matches!(mapped, Error::Fdb(_)), "{code} kept as Fdb");
            assert_eq!(mapped.code(), Some(code));
        }
        assert!(matches!(
            map_error(FdbError::from_code(1020)),
            Error::Conflict
        ));
        assert!(matches!(
            map_error(FdbError::from_code(1007)),
            Error::TooOld
        ));
        assert!(matches!(
            map_error(FdbError::from_code(1021)),
            Error::CommitUnknownResult
        ));
    }

    #[test]
    fn other_fdb_codes_stay_whole() {
        // future_version, process_behind, transaction_cancelled, key_too_large.
        for code in [1009, 1037, 1025, 2102, 2103] {
            match map_error(FdbError::from_code(code)) {
                Error::Fdb(e) => assert_eq!(e.code(), code),
                other => panic!("{code} mapped to {other:?}"),
            }
        }
    }

    #[test]
    fn transaction_too_large_at_commit_reports_the_counted_size() {
        match map_commit_error(FdbError::from_code(2101), 12_345) {
            Error::TransactionTooLarge {
                size_bytes,
                limit_bytes,
            } => {
                assert_eq!(size_bytes, 12_345);
                assert_eq!(limit_bytes, limits::TRANSACTION_SIZE_BYTES);
            }
            other => panic!("2101 mapped to {other:?}"),
        }
        assert!(matches!(
            map_commit_error(FdbError::from_code(1020), 1),
            Error::Conflict
        ));
    }

    #[test]
    fn mutation_types_map_to_fdb_codes() {
        // Codes from fdb.options (API 7.3).
        let expected = [
            (MutationType::Add, 2),
            (MutationType::BitAnd, 6),
            (MutationType::BitOr, 7),
            (MutationType::BitXor, 8),
            (MutationType::AppendIfFits, 9),
            (MutationType::Max, 12),
            (MutationType::Min, 13),
            (MutationType::SetVersionstampedKey, 14),
            (MutationType::SetVersionstampedValue, 15),
            (MutationType::ByteMin, 16),
            (MutationType::ByteMax, 17),
            (MutationType::CompareAndClear, 20),
        ];
        for (op, code) in expected {
            assert_eq!(fdb_mutation(op).code() as i64, code, "{op:?}");
        }
    }

    /// A compile-time check: the handles and every future they return are
    /// `Send`, so transactions can run on a multi-threaded runtime. No
    /// transaction is created (that needs a cluster).
    #[test]
    fn handles_and_futures_are_send() {
        fn send<T: Send>(_: &T) {}
        fn sync<T: Sync>() {}
        sync::<Database>();
        sync::<Transaction>();
        let tx: Option<Transaction> = None;
        if let Some(tx) = tx {
            let range = RangeOption::new(b"a".to_vec(), b"b".to_vec());
            let sel = KeySelector::first_greater_or_equal(b"a".to_vec());
            send(&tx.get(b"k", false));
            send(&tx.get_key(&sel, false));
            send(&tx.get_range(&range, false));
            send(&tx.get_read_version());
            send(&tx.watch(b"k"));
            send(&tx.commit());
        }
    }

    #[test]
    fn selector_anchors_beyond_the_keyspace_are_clamped() {
        let sel = KeySelector::first_greater_or_equal(b"\xff\x01".to_vec());
        let fdb = fdb_selector(&sel);
        assert_eq!(fdb.key(), b"\xff");
        assert!(!fdb.or_equal());
        assert_eq!(fdb.offset(), 1);
        let inside = KeySelector::last_less_than(b"abc".to_vec());
        assert_eq!(fdb_selector(&inside).key(), b"abc");
    }
}
