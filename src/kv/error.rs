//! Errors of the `kv` boundary.
//!
//! Every backend reports failures through [`Error`], whose variants mirror the
//! FoundationDB error codes a caller can act on (see
//! <https://apple.github.io/foundationdb/api-error-codes.html>). Callers classify
//! errors with [`Error::is_retryable`] and [`Error::maybe_committed`], never by
//! matching strings; the FoundationDB backend keeps the original `FdbError` as the
//! source so its code survives.
//!
//! Who may import this: everything above `kv`.

use std::time::Duration;

/// A `kv` result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failure of a `kv` operation, with the FoundationDB error code each variant
/// corresponds to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `not_committed` (1020): a read-conflict range of the transaction
    /// intersects a write committed after its read version. Retryable.
    #[error("transaction not committed due to conflict with another transaction (1020)")]
    Conflict,
    /// `transaction_too_old` (1007): the transaction is older than the MVCC window
    /// (5 seconds by default). Retryable.
    #[error("transaction is too old to perform reads or be committed (1007)")]
    TooOld,
    /// `commit_unknown_result` (1021): the commit may or may not have been applied.
    /// Retryable, but the closure is told that an earlier attempt may have committed.
    #[error("transaction may or may not have committed (1021)")]
    CommitUnknownResult,
    /// `key_too_large` (2102): a key is longer than [`limits::KEY_SIZE_BYTES`].
    #[error("key length {len_bytes} exceeds the limit of {limit_bytes} bytes (2102)")]
    KeyTooLarge {
        /// The offending key's length.
        len_bytes: usize,
        /// The limit.
        limit_bytes: usize,
    },
    /// `value_too_large` (2103): a value is longer than [`limits::VALUE_SIZE_BYTES`].
    #[error("value length {len_bytes} exceeds the limit of {limit_bytes} bytes (2103)")]
    ValueTooLarge {
        /// The offending value's length.
        len_bytes: usize,
        /// The limit.
        limit_bytes: usize,
    },
    /// `transaction_too_large` (2101): mutations and conflict ranges add up to more
    /// than [`limits::TRANSACTION_SIZE_BYTES`].
    #[error("transaction size {size_bytes} exceeds the limit of {limit_bytes} bytes (2101)")]
    TransactionTooLarge {
        /// The transaction's size as counted at the time of the error.
        size_bytes: usize,
        /// The limit.
        limit_bytes: usize,
    },
    /// `transaction_timed_out` (1031): the retry runner's time budget
    /// elapsed (on FoundationDB, the transaction's `Timeout` option fired).
    #[error("operation aborted because the transaction timed out after {0:?} (1031)")]
    TimedOut(Duration),
    /// The retry runner gave up after its retry limit; the last error is the source.
    #[error("transaction retry limit of {limit} reached")]
    RetryLimitReached {
        /// The configured limit.
        limit: u32,
        /// The error of the last attempt.
        #[source]
        last: Box<Error>,
    },
    /// `accessed_unreadable` (1036): read of a key written with a versionstamped
    /// operation in the same transaction.
    #[error("read or wrote an unreadable key (1036)")]
    AccessedUnreadable,
    /// `inverted_range` (2005): a range whose begin is after its end.
    #[error("range begin key larger than end key (2005)")]
    InvertedRange,
    /// `key_outside_legal_range` (2004): a key at or after `\xff` (the system keyspace).
    #[error("key outside legal range (2004)")]
    KeyOutsideLegalRange,
    /// `invalid_mutation_type` (2018) or a malformed versionstamp offset (2000).
    #[error("invalid mutation: {0}")]
    InvalidMutation(&'static str),
    /// `used_during_commit` (2017): the transaction was used after commit, or is
    /// still shared when the runner commits it.
    #[error("operation issued while a commit was outstanding or after commit (2017)")]
    UsedDuringCommit,
    /// `too_many_watches` (1032).
    #[error("too many watches currently set (1032)")]
    TooManyWatches,
    /// The store is shutting down or its committer has stopped.
    #[error("the database is closed")]
    Closed,
    /// The embedded storage engine failed (I/O, corruption). Not retryable.
    #[error("embedded storage engine error: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An error from the FoundationDB client, kept whole.
    #[cfg(feature = "fdb")]
    #[error(transparent)]
    Fdb(#[from] super::fdb::FdbError),
}

impl Error {
    /// Whether the retry runner should try the transaction again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Conflict | Error::TooOld | Error::CommitUnknownResult => true,
            #[cfg(feature = "fdb")]
            Error::Fdb(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// Whether the failed attempt may nevertheless have committed.
    pub fn maybe_committed(&self) -> bool {
        match self {
            Error::CommitUnknownResult => true,
            #[cfg(feature = "fdb")]
            Error::Fdb(e) => e.is_maybe_committed(),
            _ => false,
        }
    }

    /// Whether the store could not do the work within the retry runner's
    /// bounds: its time budget ([`Error::TimedOut`], FoundationDB's
    /// `transaction_timed_out`, 1031, as when the cluster is unreachable) or
    /// its retry limit ([`Error::RetryLimitReached`], sustained contention).
    /// Nothing is wrong with the request; the API answers 503 with
    /// `Retry-After` so the client tries again later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::TimedOut(_) | Error::RetryLimitReached { .. })
            || self.code() == Some(1031)
    }

    /// The FoundationDB error code this error corresponds to, if any.
    pub fn code(&self) -> Option<i32> {
        Some(match self {
            Error::Conflict => 1020,
            Error::TooOld => 1007,
            Error::CommitUnknownResult => 1021,
            Error::KeyTooLarge { .. } => 2102,
            Error::ValueTooLarge { .. } => 2103,
            Error::TransactionTooLarge { .. } => 2101,
            Error::TimedOut(_) => 1031,
            Error::AccessedUnreadable => 1036,
            Error::InvertedRange => 2005,
            Error::KeyOutsideLegalRange => 2004,
            Error::InvalidMutation(_) => 2018,
            Error::UsedDuringCommit => 2017,
            Error::TooManyWatches => 1032,
            #[cfg(feature = "fdb")]
            Error::Fdb(e) => e.code(),
            Error::RetryLimitReached { .. } | Error::Closed | Error::Storage(_) => return None,
        })
    }

    pub(crate) fn storage(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Storage(Box::new(e))
    }
}

/// FoundationDB's limits, enforced identically by every backend.
///
/// Source: <https://apple.github.io/foundationdb/known-limitations.html>.
pub mod limits {
    use std::time::Duration;

    /// Largest key, in bytes.
    pub const KEY_SIZE_BYTES: usize = 10_000;
    /// Largest value, in bytes.
    pub const VALUE_SIZE_BYTES: usize = 100_000;
    /// Largest transaction (mutations plus conflict ranges), in bytes.
    pub const TRANSACTION_SIZE_BYTES: usize = 10_000_000;
    /// Longest a transaction may live after getting its read version.
    pub const TRANSACTION_AGE: Duration = Duration::from_secs(5);
}
