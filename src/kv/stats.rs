//! kv's metric hooks: what the retry runner ([`super::retry`]) reports to
//! [`crate::metrics`] about each run, labelled with the handle's database
//! name ([`Database::with_name`]) and backend. One call line per event in
//! the runner keeps its loop readable.
//!
//! Who may import this: `kv` only.

use std::time::Duration;

use super::{Database, Error};
use crate::metrics::{self, TxOutcome};

/// A run of the retry runner ended: committed or gave up.
pub(super) fn finished(db: &Database, committed: bool) {
    let outcome = if committed {
        TxOutcome::Committed
    } else {
        TxOutcome::Error
    };
    metrics::kv_transaction(db.name(), db.backend_name(), outcome);
}

/// An attempt failed with retryable `error` and will be retried.
pub(super) fn retried(db: &Database, error: &Error) {
    metrics::kv_retry(
        db.name(),
        db.backend_name(),
        matches!(error, Error::Conflict),
    );
}

/// A commit call returned after `elapsed`.
pub(super) fn committed(db: &Database, elapsed: Duration) {
    metrics::kv_commit(db.name(), db.backend_name(), elapsed);
}
