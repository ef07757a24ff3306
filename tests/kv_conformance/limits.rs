//! FoundationDB's limits, the retry runner's bounds, and the idempotency
//! pattern for maybe-committed retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use myelin::kv::{
    self, Error, MaybeCommitted, RetryOptions, TransactError, embedded::EmbeddedOptions, limits,
};

use crate::common::{self, Kind, each_backend, le_u64};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_fail_with_their_own_errors() {
    each_backend(|b| async move {
        let commit_with = |f: &dyn Fn(&kv::Transaction)| {
            let tx = b.db.create_transaction().unwrap();
            f(&tx);
            tx.commit()
        };
        // At the limits: fine.
        let at_key = b.key(vec![b'k'; limits::KEY_SIZE_BYTES - b.prefix.len()]);
        let value = vec![b'v'; limits::VALUE_SIZE_BYTES];
        commit_with(&|tx| tx.set(&at_key, &value))
            .await
            .expect("at the limits");

        let long_key = b.key(vec![b'k'; limits::KEY_SIZE_BYTES + 1 - b.prefix.len()]);
        let err = commit_with(&|tx| tx.set(&long_key, b"v"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::KeyTooLarge { .. }) || err.code() == Some(2102),
            "{err:?}"
        );

        let long_value = vec![b'v'; limits::VALUE_SIZE_BYTES + 1];
        let err = commit_with(&|tx| tx.set(&b.key("v"), &long_value))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::ValueTooLarge { .. }) || err.code() == Some(2103),
            "{err:?}"
        );

        let chunk = vec![b'v'; 99_000];
        let err = commit_with(&|tx| {
            for i in 0..(limits::TRANSACTION_SIZE_BYTES / chunk.len() + 1) {
                tx.set(&b.key(format!("big/{i:04}")), &chunk);
            }
        })
        .await
        .unwrap_err();
        assert!(
            matches!(err, Error::TransactionTooLarge { .. }) || err.code() == Some(2101),
            "{err:?}"
        );
        // Nothing of the refused transactions was written.
        let tx = b.db.create_transaction().unwrap();
        assert!(tx.get(&b.key("v"), false).await.unwrap().is_none());
        assert!(tx.get(&b.key("big/0000"), false).await.unwrap().is_none());
    })
    .await;
}

/// The 4-byte offset of a versionstamped key or value counts toward the key
/// and value limits: FDB 7.3 `ReadYourWritesTransaction::atomicOp`
/// (`fdbclient/ReadYourWrites.actor.cpp`) checks `key.size()` and
/// `operand.size()` as given, offset included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versionstamp_offsets_count_toward_the_key_and_value_limits() {
    each_backend(|b| async move {
        let stamped = |len: usize| {
            // `len` bytes in all: a body ending in the 10-byte placeholder,
            // then the offset.
            let mut key = b.key(vec![b'k'; len - 14 - b.prefix.len()]);
            let offset = key.len() as u32;
            key.extend_from_slice(&[0; 10]);
            key.extend_from_slice(&offset.to_le_bytes());
            key
        };
        let commit_key = |key: Vec<u8>| {
            let tx = b.db.create_transaction().unwrap();
            tx.atomic_op(&key, b"v", kv::MutationType::SetVersionstampedKey);
            tx.commit()
        };
        commit_key(stamped(limits::KEY_SIZE_BYTES))
            .await
            .expect("at the limit, offset included");
        let err = commit_key(stamped(limits::KEY_SIZE_BYTES + 1))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(2102), "{err:?}");

        let commit_value = |len: usize| {
            let mut param = vec![b'v'; len - 14];
            param.extend_from_slice(&[0; 10]);
            param.extend_from_slice(&0u32.to_le_bytes());
            let tx = b.db.create_transaction().unwrap();
            tx.atomic_op(
                &b.key("vv"),
                &param,
                kv::MutationType::SetVersionstampedValue,
            );
            tx.commit()
        };
        commit_value(limits::VALUE_SIZE_BYTES)
            .await
            .expect("at the limit, offset included");
        let err = commit_value(limits::VALUE_SIZE_BYTES + 1)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(2103), "{err:?}");
    })
    .await;
}

/// A transaction's size counts each mutation's and each conflict range's
/// overhead, as FoundationDB's does (FDB 7.3 `Transaction::getSize`,
/// `fdbclient/NativeAPI.actor.cpp`: the `expectedSize` of the mutations and
/// of the read- and write-conflict ranges, each `VectorRef` item counting
/// `sizeof(MutationRef)` or `sizeof(KeyRangeRef)` beside its bytes). Many
/// small writes whose bytes alone are a tenth of the limit are too large.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_size_counts_per_item_overhead_and_write_conflicts() {
    each_backend(|b| async move {
        let key = |i: usize| b.key(format!("small/{i:07}/"));
        let key_len = key(0).len();
        // One `set` with an empty value: the mutation (overhead 56, the key)
        // and its write-conflict range `[key, key + \x00)` (overhead 32).
        // The keys end in `/`, so no two ranges touch and none coalesce.
        let per_set = 56 + key_len + 32 + 2 * key_len + 1;
        let fits = limits::TRANSACTION_SIZE_BYTES / per_set - 1_000;
        let too_many = limits::TRANSACTION_SIZE_BYTES / per_set + 1_000;
        assert!(too_many * key_len < limits::TRANSACTION_SIZE_BYTES / 5);
        let write = |n: usize| {
            let tx = b.db.create_transaction().unwrap();
            for i in 0..n {
                tx.set(&key(i), b"");
            }
            tx.commit()
        };
        let err = write(too_many).await.unwrap_err();
        assert_eq!(err.code(), Some(2101), "{err:?}");
        let tx = b.db.create_transaction().unwrap();
        assert!(tx.get(&key(0), false).await.unwrap().is_none());
        write(fits)
            .await
            .expect("under the limit with its overheads");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_transactions_fail_with_too_old() {
    // The embedded store's window is shortened rather than waited out; on a
    // real cluster the test waits past FoundationDB's five seconds.
    let mut stores = common::embedded_each(EmbeddedOptions {
        max_transaction_age: Duration::from_millis(200),
        ..Default::default()
    });
    stores.extend(
        common::backends()
            .into_iter()
            .filter(|b| b.kind == Kind::Fdb),
    );
    for b in stores {
        let wait = match b.kind {
            Kind::Embedded => Duration::from_millis(300),
            Kind::Fdb => limits::TRANSACTION_AGE + Duration::from_secs(1),
        };
        let tx = b.db.create_transaction().unwrap();
        tx.get(&b.key("k"), false).await.unwrap();
        tokio::time::sleep(wait).await;
        let err = tx.get(&b.key("j"), false).await.unwrap_err();
        assert!(
            matches!(err, Error::TooOld) || err.code() == Some(1007),
            "{err:?}"
        );
        assert!(err.is_retryable());

        let tx = b.db.create_transaction().unwrap();
        tx.get(&b.key("k"), false).await.unwrap();
        tx.set(&b.key("k"), b"late");
        tokio::time::sleep(wait).await;
        let err = tx.commit().await.unwrap_err();
        assert!(
            matches!(err, Error::TooOld) || err.code() == Some(1007),
            "{err:?}"
        );
        assert!(common::read(&b.db, &b.key("k")).await.is_none());
    }
}

fn bounded(retry_limit: Option<u32>, timeout: Option<Duration>) -> RetryOptions {
    RetryOptions {
        retry_limit,
        timeout,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
    }
}

/// A closure error that is not a `kv` error.
#[derive(Debug)]
enum AppError {
    Kv(Error),
    NotAllowed,
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Kv(e)
    }
}

impl TransactError for AppError {
    fn as_kv(&self) -> Option<&Error> {
        match self {
            AppError::Kv(e) => Some(e),
            AppError::NotAllowed => None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_runner_honours_its_bounds() {
    each_backend(|b| async move {
        let attempts = Arc::new(AtomicU32::new(0));
        let always_conflicts = |attempts: Arc<AtomicU32>| {
            move |_tx: kv::Transaction, _| {
                attempts.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(Error::Conflict) }
            }
        };

        let db = b.db.clone().with_retry_options(bounded(Some(3), None));
        let err = db
            .run(always_conflicts(attempts.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::RetryLimitReached { limit: 3, .. }),
            "{err:?}"
        );
        assert_eq!(
            attempts.swap(0, Ordering::SeqCst),
            4,
            "the first attempt and 3 retries"
        );

        let db =
            b.db.clone()
                .with_retry_options(bounded(None, Some(Duration::from_millis(50))));
        let err = db
            .run(always_conflicts(attempts.clone()))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::TimedOut(_)), "{err:?}");
        assert!(attempts.swap(0, Ordering::SeqCst) >= 1);

        // Errors that are not retryable come back at once, kv or not.
        let err =
            b.db.run(|_tx, _| {
                attempts.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(Error::InvertedRange) }
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvertedRange));
        let err =
            b.db.run(|_tx, _| {
                attempts.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(AppError::NotAllowed) }
            })
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::NotAllowed));
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
    })
    .await;
}

/// Increments `counter` once per run, or once per idempotency key `id` when
/// `idempotent`: after a maybe-committed attempt it first checks whether the
/// key shows that attempt did commit.
async fn increment(db: &kv::Database, counter: &[u8], id: &[u8], idempotent: bool) -> u32 {
    let attempts = AtomicU32::new(0);
    db.run(|tx, maybe_committed: MaybeCommitted| {
        attempts.fetch_add(1, Ordering::SeqCst);
        async move {
            if idempotent && maybe_committed.0 && tx.get(id, false).await?.is_some() {
                return Ok::<_, Error>(());
            }
            let n = le_u64(tx.get(counter, false).await?);
            tx.set(counter, &(n + 1).to_le_bytes());
            if idempotent {
                tx.set(id, b"done");
            }
            Ok(())
        }
    })
    .await
    .expect("the transaction commits");
    attempts.load(Ordering::SeqCst)
}

/// Embedded only: the `commit_unknown_result` fault is an embedded test hook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_makes_maybe_committed_retries_safe() {
    let b = common::embedded_with(Default::default());
    let faults = b.embedded().unwrap().faults();

    let naive = b.key("naive");
    faults.commit_unknown_result.store(1, Ordering::SeqCst);
    assert_eq!(increment(&b.db, &naive, &b.key("id/naive"), false).await, 2);
    assert_eq!(
        le_u64(common::read(&b.db, &naive).await),
        2,
        "the naive closure counted twice"
    );

    let careful = b.key("careful");
    faults.commit_unknown_result.store(1, Ordering::SeqCst);
    assert_eq!(increment(&b.db, &careful, &b.key("id/1"), true).await, 2);
    assert_eq!(
        le_u64(common::read(&b.db, &careful).await),
        1,
        "the idempotent closure counted once"
    );
    assert_eq!(faults.commit_unknown_result.load(Ordering::SeqCst), 0);
}
