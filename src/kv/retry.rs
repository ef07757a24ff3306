//! The retry runner: the one place Myelin retries transactions.
//!
//! [`Database::run`] calls a closure with a [`Transaction`], commits what it
//! did, and on a retryable error (conflict, too old, commit unknown result,
//! or a retryable FoundationDB error) waits a backoff and calls it again, up
//! to [`RetryOptions::retry_limit`] retries and [`RetryOptions::timeout`] in
//! all. Closures must be safe to run more than once: each attempt starts from
//! nothing, and [`MaybeCommitted`] tells the closure that an earlier attempt
//! may have committed, so it can check an idempotency key before doing its
//! effect again.
//!
//! ## Schedule (FoundationDB's, on both backends)
//! FDB 7.3's `Transaction::onError` and `getBackoff`
//! (`fdbclient/NativeAPI.actor.cpp`) with its knobs (`fdbclient/ClientKnobs.cpp`:
//! `DEFAULT_BACKOFF` 0.01 s, `BACKOFF_GROWTH_RATE` 2, `DEFAULT_MAX_BACKOFF` 1 s,
//! `FUTURE_VERSION_RETRY_DELAY` 0.01 s):
//! - after `not_committed`, `commit_unknown_result` and the other retryable
//!   errors, wait `backoff × u` with `u` uniform in `[0, 1)`, then
//!   `backoff = min(2 × backoff, max)`; `backoff` starts at 10 ms and `max`
//!   is 1 s ([`RetryOptions::initial_backoff`], [`RetryOptions::max_backoff`]);
//! - after `transaction_too_old`, wait `min(10 ms, max)` without jitter and
//!   leave `backoff` as it was.
//!
//! On **FoundationDB** the runner keeps one transaction for every attempt and
//! calls FoundationDB's own `on_error` on it, which runs that schedule with
//! the transaction's state (and waits longer, up to 30 s, after a proxy's
//! memory-limit error, or as long as a tag throttle says). Before the first
//! attempt it sets the transaction's `Timeout` option to the runner's
//! remaining budget and its `RetryLimit` option to the retry limit, so an
//! unreachable cluster fails with `transaction_timed_out` (1031) instead of
//! hanging; the runner reports that as [`Error::TimedOut`], which the API
//! answers with 503 and `Retry-After`. On the **embedded** backend the runner
//! waits the schedule itself, its jitter drawn from the database's injected
//! [`Random`], and starts a fresh transaction.
//!
//! ## Observing
//! [`observe`] is the one place a commit, a conflict and a retry are seen
//! (logged at `trace`); metrics hook in there.
//!
//! Source: <https://apple.github.io/foundationdb/developer-guide.html#transaction-retry-loops>
//! and <https://apple.github.io/foundationdb/api-c.html#c.fdb_transaction_on_error>.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::{
    Attempted, CommitInfo, Database, Error, KeySelector, KeyValue, RangeOption, Transaction, stats,
};
use crate::random::Random;

/// Bounds of the retry runner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryOptions {
    /// Give up with [`Error::TimedOut`] once this much time has passed since
    /// the first attempt began. `None` for no bound.
    pub timeout: Option<Duration>,
    /// Give up with [`Error::RetryLimitReached`] after this many retries.
    /// `None` for no bound.
    pub retry_limit: Option<u32>,
    /// First backoff bound (FoundationDB's `DEFAULT_BACKOFF`, 10 ms); doubles
    /// with each retry. Also the wait after `transaction_too_old`. The
    /// embedded backend's; FoundationDB's `on_error` uses its own knobs.
    pub initial_backoff: Duration,
    /// Largest backoff bound (FoundationDB's `DEFAULT_MAX_BACKOFF`, 1 s).
    pub max_backoff: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            timeout: Some(Duration::from_secs(30)),
            retry_limit: Some(100),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
        }
    }
}

/// Whether an earlier attempt of this transaction may have committed (it
/// failed with `commit_unknown_result`). Sticky: once true, it stays true for
/// the later attempts of the same run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaybeCommitted(pub bool);

/// Errors a transaction closure may return: anything that can hold a `kv`
/// error, so the runner can tell the retryable ones apart.
pub trait TransactError: From<Error> {
    /// The `kv` error inside, if this is one.
    fn as_kv(&self) -> Option<&Error>;
}

impl TransactError for Error {
    fn as_kv(&self) -> Option<&Error> {
        Some(self)
    }
}

impl Database {
    /// Runs `f` in a transaction, commits, and retries on retryable errors
    /// within this handle's [`RetryOptions`]. Returns what the closure returned.
    pub async fn run<T, E, F, Fut>(&self, f: F) -> Result<T, E>
    where
        E: TransactError,
        F: FnMut(Transaction, MaybeCommitted) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run_committed(f).await.map(|(value, _)| value)
    }

    /// As [`Database::run`], and also returns the successful commit's
    /// version and versionstamp.
    pub async fn run_committed<T, E, F, Fut>(&self, f: F) -> Result<(T, CommitInfo), E>
    where
        E: TransactError,
        F: FnMut(Transaction, MaybeCommitted) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let result = self.run_attempts(f).await;
        stats::finished(self, result.is_ok());
        result
    }

    /// The retry loop of [`Database::run_committed`] (which records how each
    /// run ended).
    async fn run_attempts<T, E, F, Fut>(&self, mut f: F) -> Result<(T, CommitInfo), E>
    where
        E: TransactError,
        F: FnMut(Transaction, MaybeCommitted) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let opts = &self.retry;
        let started = Instant::now();
        let mut maybe_committed = false;
        let mut retries: u32 = 0;
        let mut backoff = Backoff::new(opts);
        let mut tx = self.bounded_transaction(started)?;
        loop {
            let (err, attempted) = match f(tx.clone(), MaybeCommitted(maybe_committed)).await {
                Ok(value) => {
                    let commit_started = Instant::now();
                    let committed = tx.commit_or_keep().await;
                    stats::committed(self, commit_started.elapsed());
                    match committed {
                        Ok(info) => {
                            observe(Observed::Committed { retries });
                            return Ok((value, info));
                        }
                        Err((e, attempted)) => (E::from(e), attempted),
                    }
                }
                Err(e) => (e, tx.into_attempted()),
            };
            let Some(kv) = err.as_kv() else {
                return Err(err);
            };
            if kv.code() == Some(TRANSACTION_TIMED_OUT) {
                return Err(self.timed_out().into());
            }
            if !kv.is_retryable() {
                return Err(err);
            }
            observe(Observed::Retryable { error: kv, retries });
            stats::retried(self, kv);
            maybe_committed |= kv.maybe_committed();
            if let Some(limit) = opts.retry_limit
                && retries >= limit
            {
                let last = Box::new(clone_retryable(kv));
                return Err(Error::RetryLimitReached { limit, last }.into());
            }
            tx = match attempted {
                Attempted::Embedded => {
                    let delay = backoff.delay(opts, &self.random, kv);
                    if let Some(timeout) = opts.timeout
                        && started.elapsed() + delay >= timeout
                    {
                        return Err(self.timed_out().into());
                    }
                    tokio::time::sleep(delay).await;
                    self.bounded_transaction(started)?
                }
                #[cfg(feature = "fdb")]
                Attempted::Fdb(attempted) => match attempted.on_error(kv).await {
                    Ok(Some(tx)) => Transaction(super::TxInner::Fdb(tx)),
                    // A clone of the transaction outlived the attempt.
                    Ok(None) => self.bounded_transaction(started)?,
                    Err(e) if e.code() == Some(TRANSACTION_TIMED_OUT) => {
                        return Err(self.timed_out().into());
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            retries += 1;
        }
    }

    /// A new transaction with the backend's bounds set to what is left of
    /// the runner's budget (started at `started`) and its retry limit.
    fn bounded_transaction(&self, started: Instant) -> Result<Transaction, Error> {
        let opts = &self.retry;
        let tx = self.unbounded_transaction()?;
        let remaining = match opts.timeout {
            Some(timeout) => match timeout.checked_sub(started.elapsed()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(self.timed_out()),
            },
            None => None,
        };
        tx.set_bounds(remaining, opts.retry_limit)?;
        Ok(tx)
    }

    /// The runner's timeout error: the budget, or zero with none configured
    /// (FoundationDB's own database-wide timeout fired).
    fn timed_out(&self) -> Error {
        Error::TimedOut(self.retry.timeout.unwrap_or_default())
    }
}

/// FoundationDB's `transaction_timed_out`.
const TRANSACTION_TIMED_OUT: i32 = 1031;
/// FoundationDB's `transaction_too_old`.
const TRANSACTION_TOO_OLD: i32 = 1007;

/// The embedded backend's backoff state: FoundationDB's schedule (see the
/// module docs), one per run.
struct Backoff {
    /// The bound of the next delay.
    bound: Duration,
}

impl Backoff {
    fn new(opts: &RetryOptions) -> Self {
        Backoff {
            bound: opts.initial_backoff.min(opts.max_backoff),
        }
    }

    /// The delay before retrying after `error`, and the next state.
    fn delay(&mut self, opts: &RetryOptions, random: &Random, error: &Error) -> Duration {
        if error.code() == Some(TRANSACTION_TOO_OLD) {
            return opts.initial_backoff.min(opts.max_backoff);
        }
        let delay = self.bound.mul_f64(random.range(0.0..1.0));
        self.bound = self.bound.saturating_mul(2).min(opts.max_backoff);
        delay
    }
}

/// What the runner saw, for [`observe`].
enum Observed<'a> {
    /// A commit succeeded after `retries` retries.
    Committed { retries: u32 },
    /// An attempt failed with a retryable error (a conflict is
    /// [`Error::Conflict`]); the runner retries unless a bound is reached.
    Retryable { error: &'a Error, retries: u32 },
}

/// The one place the runner reports commits, conflicts and retries.
fn observe(event: Observed<'_>) {
    match event {
        Observed::Committed { retries } => tracing::trace!(retries, "transaction committed"),
        Observed::Retryable { error, retries } => {
            tracing::trace!(retries, conflict = matches!(error, Error::Conflict), %error, "transaction attempt failed")
        }
    }
}

impl Database {
    /// The value of `key` in a one-shot, read-only transaction with a
    /// snapshot read: no conflicts, retried like any transaction.
    pub async fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.run(|tx, _| async move { tx.get(key, true).await })
            .await
    }

    /// One page of `range`: at most `page` pairs (and at most the range's
    /// limit), read in a one-shot snapshot transaction, and the range that
    /// continues after it (`None` when the range or its limit is exhausted).
    /// A caller that loops on the continuation reads any range with no
    /// transaction reading more than `page` keys, so none grows with the data
    /// toward FoundationDB's 5-second and 10 MB limits. The pages are not one
    /// snapshot: a key written between two pages may or may not appear. For
    /// scans that tolerate that (inspection tools).
    pub async fn read_page(
        &self,
        range: &RangeOption,
        page: usize,
    ) -> Result<(Vec<KeyValue>, Option<RangeOption>), Error> {
        self.run(|tx, _| async move { page_of(&tx, range, page).await })
            .await
    }

    /// The whole range (up to its limit), read `page` pairs per
    /// transaction, every page at the read version of the first: one
    /// consistent snapshot, as [`Database::read_range`] gives, with no
    /// transaction reading more than `page` keys. The pages are read one
    /// after another, each in its own read-only transaction at that version
    /// (FoundationDB's `set_read_version`), so the read must finish within
    /// the version's 5-second MVCC window: past it a page fails with
    /// `transaction_too_old` and the runner starts the whole read again at
    /// a new version, until its budget ([`RetryOptions`]) ends it with
    /// [`Error::TimedOut`]. That bounds it: at a few milliseconds a page,
    /// hundreds of thousands of keys fit in the window. For ranges that
    /// must be read at one version and may grow large (a room's current
    /// state, its members, a backup version's keys); immutable ranges can
    /// use [`Database::read_page`], which has no window. The conformance
    /// test `paged_range_reads_are_one_snapshot_under_concurrent_writes`
    /// (`tests/kv_conformance/isolation.rs`) pages a range while another
    /// task commits into it and checks both promises (one snapshot, no
    /// transaction over `page` keys); the same pages read with
    /// [`Database::read_page`] fail it.
    pub async fn read_range_paged(
        &self,
        range: RangeOption,
        page: usize,
    ) -> Result<Vec<KeyValue>, Error> {
        // Read-only: safe to run any number of times.
        self.run(|tx, _| {
            let range = range.clone();
            async move {
                let (mut out, mut next) = page_of(&tx, &range, page).await?;
                while let Some(rest) = next {
                    let sibling = self.at_read_version_of(&tx).await?;
                    let (kvs, after) = page_of(&sibling, &rest, page).await?;
                    // Read-only: the commit writes nothing (on the embedded
                    // backend it records the page's cost).
                    sibling.commit().await?;
                    out.extend(kvs);
                    next = after;
                }
                Ok(out)
            }
        })
        .await
    }

    /// The range (up to its limit) in a one-shot, read-only transaction with
    /// snapshot reads: no conflicts, retried like any transaction.
    pub async fn read_range(&self, range: RangeOption) -> Result<Vec<KeyValue>, Error> {
        self.run(|tx, _| {
            let range = range.clone();
            async move { tx.get_range_all(range, true).await }
        })
        .await
    }
}

/// One page of `range` read in `tx` with snapshot reads: at most `page`
/// pairs (and at most the range's limit), and the range that continues
/// after it (`None` when the range or its limit is exhausted).
async fn page_of(
    tx: &Transaction,
    range: &RangeOption,
    page: usize,
) -> Result<(Vec<KeyValue>, Option<RangeOption>), Error> {
    let page = page.max(1);
    let want = range.limit.map_or(page, |limit| limit.min(page));
    let mut this = range.clone();
    this.limit = Some(want);
    let kvs = tx.get_range_all(this, true).await?;
    let rest = range.limit.map(|limit| limit - kvs.len());
    let next = match kvs.last() {
        Some(last) if kvs.len() == want && rest != Some(0) => {
            let mut next = range.clone();
            next.limit = rest;
            if range.reverse {
                next.end = KeySelector::first_greater_or_equal(last.key.clone());
            } else {
                next.begin = KeySelector::first_greater_than(last.key.clone());
            }
            Some(next)
        }
        _ => None,
    };
    Ok((kvs, next))
}

/// A copy of a retryable error for [`Error::RetryLimitReached`]. Retryable
/// errors carry no payload except FoundationDB's, which is `Copy`.
fn clone_retryable(e: &Error) -> Error {
    match e {
        Error::TooOld => Error::TooOld,
        Error::CommitUnknownResult => Error::CommitUnknownResult,
        #[cfg(feature = "fdb")]
        Error::Fdb(e) => Error::Fdb(*e),
        _ => Error::Conflict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FDB 7.3 `Transaction::getBackoff`: `backoff * random01()`, then
    /// `backoff = min(backoff * BACKOFF_GROWTH_RATE, maxBackoff)`; too old
    /// waits `min(FUTURE_VERSION_RETRY_DELAY, maxBackoff)` and keeps the state.
    #[test]
    fn the_schedule_is_foundationdbs() {
        let opts = RetryOptions::default();
        assert_eq!(opts.initial_backoff, Duration::from_millis(10));
        assert_eq!(opts.max_backoff, Duration::from_secs(1));
        let random = Random::seeded(7);
        let mut backoff = Backoff::new(&opts);
        let mut bounds = Vec::new();
        let mut sum = Duration::ZERO;
        for _ in 0..10 {
            bounds.push(backoff.bound);
            let delay = backoff.delay(&opts, &random, &Error::Conflict);
            assert!(delay < *bounds.last().expect("pushed"), "{delay:?}");
            sum += delay;
        }
        let ms: Vec<u128> = bounds.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        // Jitter spreads the delays: not all at their bound.
        assert!(sum < bounds.iter().sum::<Duration>());
        let before = backoff.bound;
        assert_eq!(
            backoff.delay(&opts, &random, &Error::TooOld),
            Duration::from_millis(10)
        );
        assert_eq!(backoff.bound, before, "too old leaves the backoff");
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let opts = RetryOptions::default();
        let delays = |random: Random| -> Vec<Duration> {
            let mut backoff = Backoff::new(&opts);
            (0..8)
                .map(|_| backoff.delay(&opts, &random, &Error::Conflict))
                .collect()
        };
        assert_eq!(delays(Random::seeded(5)), delays(Random::seeded(5)));
        assert_ne!(delays(Random::seeded(5)), delays(Random::seeded(6)));
    }
}
