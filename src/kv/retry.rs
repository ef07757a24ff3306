//! The retry runner: the one place Myelin retries transactions.
//!
//! [`Database::run`] calls a closure with a fresh [`Transaction`], commits what
//! it did, and on a retryable error (conflict, too old, commit unknown result,
//! or a retryable FoundationDB error) backs off exponentially with jitter and
//! calls it again, up to [`RetryOptions::retry_limit`] retries and
//! [`RetryOptions::timeout`] in all. Closures must be safe to run more than
//! once: each attempt starts from nothing, and [`MaybeCommitted`] tells the
//! closure that an earlier attempt may have committed, so it can check an
//! idempotency key before doing its effect again.
//!
//! Source: <https://apple.github.io/foundationdb/developer-guide.html#transaction-retry-loops>.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::{CommitInfo, Database, Error, KeyValue, RangeOption, Transaction, stats};
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
    /// First backoff delay; doubles with each retry.
    pub initial_backoff: Duration,
    /// Largest backoff delay.
    pub max_backoff: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            timeout: Some(Duration::from_secs(30)),
            retry_limit: Some(100),
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(200),
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
    pub async fn run_committed<T, E, F, Fut>(&self, mut f: F) -> Result<(T, CommitInfo), E>
    where
        E: TransactError,
        F: FnMut(Transaction, MaybeCommitted) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let opts = &self.retry;
        let started = Instant::now();
        let mut maybe_committed = false;
        let mut retries: u32 = 0;
        loop {
            let tx = self.create_transaction()?;
            let attempt = match f(tx.clone(), MaybeCommitted(maybe_committed)).await {
                Ok(value) => {
                    let commit_started = Instant::now();
                    let committed = tx.commit().await;
                    stats::committed(self, commit_started.elapsed());
                    committed.map(|info| (value, info)).map_err(E::from)
                }
                Err(e) => Err(e),
            };
            let err = match attempt {
                Ok(done) => {
                    stats::finished(self, true);
                    return Ok(done);
                }
                Err(e) => e,
            };
            let Some(kv) = err.as_kv().filter(|kv| kv.is_retryable()) else {
                stats::finished(self, false);
                return Err(err);
            };
            maybe_committed |= kv.maybe_committed();
            if let Some(limit) = opts.retry_limit
                && retries >= limit
            {
                stats::finished(self, false);
                let last = Box::new(clone_retryable(kv));
                return Err(Error::RetryLimitReached { limit, last }.into());
            }
            let delay = backoff(opts, &self.random, retries);
            if let Some(timeout) = opts.timeout
                && started.elapsed() + delay >= timeout
            {
                stats::finished(self, false);
                return Err(Error::TimedOut(timeout).into());
            }
            retries += 1;
            stats::retried(self, kv);
            tracing::trace!(retries, error = %kv, "retrying transaction");
            tokio::time::sleep(delay).await;
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

/// The delay before retry number `retries + 1`: exponential, capped, with up to
/// 50% random jitter (from `random`) so contending transactions spread out.
fn backoff(opts: &RetryOptions, random: &Random, retries: u32) -> Duration {
    let base = opts
        .initial_backoff
        .saturating_mul(1u32 << retries.min(16))
        .min(opts.max_backoff);
    let jitter = random.range(0.5..=1.0);
    base.mul_f64(jitter)
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

    #[test]
    fn backoff_grows_and_is_capped() {
        let opts = RetryOptions {
            initial_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(50),
            ..RetryOptions::default()
        };
        let random = Random::seeded(1);
        for _ in 0..100 {
            let first = backoff(&opts, &random, 0);
            assert!(first >= Duration::from_millis(1) && first <= Duration::from_millis(2));
            let fourth = backoff(&opts, &random, 3);
            assert!(fourth >= Duration::from_millis(8) && fourth <= Duration::from_millis(16));
            assert!(backoff(&opts, &random, 40) <= Duration::from_millis(50));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_backoffs() {
        let opts = RetryOptions::default();
        let delays = |random: Random| -> Vec<Duration> {
            (0..8)
                .map(|retries| backoff(&opts, &random, retries))
                .collect()
        };
        assert_eq!(delays(Random::seeded(5)), delays(Random::seeded(5)));
    }
}
