//! Watches: when they fire, and cancellation.

use std::time::Duration;

use futures::FutureExt;
use myelin::kv::{self, embedded::EmbeddedOptions};

use crate::common::{self, each_backend, put_all};

/// A guard against a hang, not a timing assertion: a watch that should fire
/// fires within milliseconds.
const HANG: Duration = Duration::from_secs(20);

async fn fired(w: impl std::future::Future<Output = kv::Result<()>>) {
    tokio::time::timeout(HANG, w)
        .await
        .expect("the watch never fired")
        .expect("the watch failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_fires_after_a_committed_change_and_not_before() {
    each_backend(|b| async move {
        let k = b.key("w");
        put_all(&b.db, &[(k.clone(), b"v0".to_vec())]).await;
        let tx = b.db.create_transaction().unwrap();
        assert_eq!(
            tx.get(&k, false).await.unwrap().as_deref(),
            Some(&b"v0"[..])
        );
        let mut watch = Box::pin(tx.watch(&k));
        tx.commit().await.unwrap();

        // Neither an unrelated commit, nor an uncommitted change, nor rewriting
        // the same value fires it.
        put_all(&b.db, &[(b.key("other"), b"x".to_vec())]).await;
        let pending = b.db.create_transaction().unwrap();
        pending.set(&k, b"never committed");
        drop(pending);
        put_all(&b.db, &[(k.clone(), b"v0".to_vec())]).await;
        // A later commit orders after those; once it is visible they were handled.
        put_all(&b.db, &[(b.key("other"), b"y".to_vec())]).await;
        assert!(
            (&mut watch).now_or_never().is_none(),
            "fired without a change"
        );

        put_all(&b.db, &[(k.clone(), b"v1".to_vec())]).await;
        fired(watch).await;
    })
    .await;
}

/// A watch compares with the value its transaction saw, so a change
/// committed in between fires it at once; and, as in FoundationDB, a watch
/// reads its key as a non-snapshot read (FDB 7.3
/// `fdbclient/ReadYourWrites.actor.cpp`, `RYWImpl::watch`:
/// `readWithConflictRange(ryw, GetValueReq(key), Snapshot::False)`), so a
/// writing transaction whose watched key changed after its read version
/// does not commit (`not_committed`, 1020) and its watch fails. A read-only
/// transaction has nothing to commit and never conflicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_on_a_key_changed_before_commit_fires_at_once() {
    each_backend(|b| async move {
        for writes in [false, true] {
            let k = b.key(format!("w/{writes}"));
            put_all(&b.db, &[(k.clone(), b"old".to_vec())]).await;
            let tx = b.db.create_transaction().unwrap();
            assert_eq!(
                tx.get(&k, true).await.unwrap().as_deref(),
                Some(&b"old"[..])
            );
            put_all(&b.db, &[(k.clone(), b"new".to_vec())]).await;
            if writes {
                tx.set(&b.key("elsewhere"), b"x");
            }
            let watch = tx.watch(&k);
            let committed = tx.commit().await;
            if writes {
                crate::assert_code(committed, 1020);
                let failed = tokio::time::timeout(HANG, watch)
                    .await
                    .expect("the watch of an uncommitted transaction ends");
                assert!(failed.is_err(), "a watch of a failed commit fails");
                let tx = b.db.create_transaction().unwrap();
                assert!(tx.get(&b.key("elsewhere"), false).await.unwrap().is_none());
            } else {
                committed.unwrap();
                fired(watch).await;
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_fires_on_clear_range_and_atomic_changes() {
    each_backend(|b| async move {
        let (k, n) = (b.key("wr/k"), b.key("wr/n"));
        put_all(&b.db, &[(k.clone(), b"v".to_vec())]).await;
        let tx = b.db.create_transaction().unwrap();
        let (on_k, on_n) = (tx.watch(&k), tx.watch(&n));
        tx.commit().await.unwrap();
        let clear = b.db.create_transaction().unwrap();
        clear.clear_range(&b.key("wr/"), &b.key("wr0"));
        clear.commit().await.unwrap();
        fired(on_k).await;
        let add = b.db.create_transaction().unwrap();
        add.atomic_op(&n, &1u64.to_le_bytes(), kv::MutationType::Add);
        add.commit().await.unwrap();
        fired(on_n).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_expects_the_transactions_own_write() {
    each_backend(|b| async move {
        let k = b.key("mine");
        let tx = b.db.create_transaction().unwrap();
        tx.set(&k, b"mine");
        let mut watch = Box::pin(tx.watch(&k));
        tx.commit().await.unwrap();
        put_all(&b.db, &[(b.key("other"), b"x".to_vec())]).await;
        assert!(
            (&mut watch).now_or_never().is_none(),
            "fired on its own write"
        );
        put_all(&b.db, &[(k.clone(), b"theirs".to_vec())]).await;
        fired(watch).await;
    })
    .await;
}

/// Embedded only (it counts registered watches): a dropped watch is cancelled
/// and stops counting against `max_watches`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_watch_cancels_it() {
    for b in common::embedded_each(EmbeddedOptions {
        max_watches: 2,
        ..Default::default()
    }) {
        dropped_watches_stop_counting(b).await;
    }
}

async fn dropped_watches_stop_counting(b: common::Backend) {
    let watch_on = |name: &str| {
        let tx = b.db.create_transaction().expect("transaction");
        let w = tx.watch(&b.key(name));
        (tx, w)
    };
    let (t1, w1) = watch_on("a");
    t1.commit().await.expect("t1 commits");
    let (t2, w2) = watch_on("b");
    t2.commit().await.expect("t2 commits");
    // Over the limit the watch fails (too_many_watches), not the commit.
    let (t3, w3) = watch_on("c");
    t3.commit().await.expect("t3 commits");
    assert_eq!(w3.await.expect_err("the watch fails").code(), Some(1032));

    drop(w1);
    drop(w2);
    let (t4, w4) = watch_on("d");
    t4.commit().await.expect("dropped watches no longer count");
    put_all(
        &b.db,
        &[(b.key("a"), b"1".to_vec()), (b.key("d"), b"1".to_vec())],
    )
    .await;
    fired(w4).await;
}
