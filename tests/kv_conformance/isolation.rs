//! Isolation: conflicts, snapshot reads, read-only transactions, explicit
//! conflict ranges, commit versions, gap-free visibility and paged range
//! reads at one snapshot.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use myelin::kv::{self, ConflictRangeType, MutationType, RangeOption};

use crate::common::{self, each_backend, le_u64, put_all};
use crate::{assert_code, versionstamped_value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_update_conflicts_and_run_retries_with_the_new_value() {
    each_backend(|b| async move {
        let k = b.key("counter");
        put_all(&b.db, &[(k.clone(), 10u64.to_le_bytes().to_vec())]).await;

        let t1 = b.db.create_transaction().unwrap();
        let t2 = b.db.create_transaction().unwrap();
        let v1 = le_u64(t1.get(&k, false).await.unwrap());
        let v2 = le_u64(t2.get(&k, false).await.unwrap());
        t1.set(&k, &(v1 + 1).to_le_bytes());
        t2.set(&k, &(v2 + 1).to_le_bytes());
        t1.commit().await.expect("first committer wins");
        assert_code(t2.commit().await, 1020);
        assert_eq!(le_u64(common::read(&b.db, &k).await), 11);

        // Through the runner: the first attempt is overtaken by a competing
        // commit, conflicts, and the retry reads the competitor's value.
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let db = b.db.clone();
        b.db.run(|tx, _| {
            let (k, db, attempts) = (k.clone(), db.clone(), attempts.clone());
            async move {
                let seen = le_u64(tx.get(&k, false).await?);
                let first = {
                    let mut a = attempts.lock().unwrap();
                    a.push(seen);
                    a.len() == 1
                };
                if first {
                    let rival = db.create_transaction()?;
                    rival.atomic_op(&k, &100u64.to_le_bytes(), MutationType::Add);
                    rival.commit().await?;
                }
                tx.set(&k, &(seen + 1).to_le_bytes());
                Ok::<_, kv::Error>(())
            }
        })
        .await
        .unwrap();
        assert_eq!(*attempts.lock().unwrap(), vec![11, 111]);
        assert_eq!(le_u64(common::read(&b.db, &k).await), 112);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phantom_inserts_into_a_read_range_conflict_and_outside_do_not() {
    each_backend(|b| async move {
        put_all(&b.db, &[(b.key("r/b"), b"1".to_vec())]).await;
        for (inserted, conflicts) in [("r/c", true), ("s/a", false), ("r", false)] {
            let reader = b.db.create_transaction().unwrap();
            let seen = reader.get_range_all(RangeOption::new(b.key("r/"), b.key("r0")), false);
            assert_eq!(seen.await.unwrap().len(), 1);
            reader.set(&b.key("out"), b"x");

            let writer = b.db.create_transaction().unwrap();
            writer.set(&b.key(inserted), b"new");
            writer.commit().await.unwrap();

            let result = reader.commit().await;
            if conflicts {
                assert_code(result, 1020);
            } else {
                result.unwrap_or_else(|e| panic!("insert at {inserted} must not conflict: {e}"));
            }
            let cleanup = b.db.create_transaction().unwrap();
            cleanup.clear(&b.key(inserted));
            cleanup.commit().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_reads_add_no_conflicts() {
    each_backend(|b| async move {
        let (k, other) = (b.key("k"), b.key("other"));
        put_all(&b.db, &[(k.clone(), b"v0".to_vec())]).await;
        let t1 = b.db.create_transaction().unwrap();
        assert_eq!(t1.get(&k, true).await.unwrap().as_deref(), Some(&b"v0"[..]));
        let range = t1.get_range_all(b.range(), true).await.unwrap();
        assert_eq!(range.len(), 1);
        t1.get_key(&kv::KeySelector::first_greater_or_equal(k.clone()), true)
            .await
            .unwrap();
        t1.set(&other, b"x");

        let t2 = b.db.create_transaction().unwrap();
        t2.set(&k, b"v1");
        t2.set(&b.key("new"), b"v1");
        t2.commit().await.unwrap();
        t1.commit().await.expect("snapshot reads must not conflict");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_answered_by_own_writes_add_no_conflicts() {
    each_backend(|b| async move {
        let (set, cleared) = (b.key("own/set"), b.key("own/r/k"));
        put_all(&b.db, &[(cleared.clone(), b"v0".to_vec())]).await;
        let t1 = b.db.create_transaction().unwrap();
        t1.get_read_version().await.unwrap();
        t1.set(&set, b"mine");
        t1.clear_range(&b.key("own/r/"), &b.key("own/r0"));
        assert_eq!(
            t1.get(&set, false).await.unwrap().as_deref(),
            Some(&b"mine"[..])
        );
        assert_eq!(t1.get(&cleared, false).await.unwrap(), None);

        let t2 = b.db.create_transaction().unwrap();
        t2.set(&set, b"theirs");
        t2.set(&cleared, b"theirs");
        t2.commit().await.unwrap();
        t1.commit()
            .await
            .expect("reads of own writes must not conflict");
        assert_eq!(
            common::read(&b.db, &set).await.as_deref(),
            Some(&b"mine"[..])
        );
        assert_eq!(common::read(&b.db, &cleared).await, None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_transactions_never_conflict() {
    each_backend(|b| async move {
        let k = b.key("k");
        put_all(&b.db, &[(k.clone(), b"v0".to_vec())]).await;
        let reader = b.db.create_transaction().unwrap();
        assert!(reader.get(&k, false).await.unwrap().is_some());
        reader.get_range_all(b.range(), false).await.unwrap();

        let writer = b.db.create_transaction().unwrap();
        writer.set(&k, b"v1");
        writer.commit().await.unwrap();

        let info = reader.commit().await.expect("read-only commit");
        assert_eq!(info.version, None);
        assert_eq!(info.versionstamp, None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_read_and_write_conflict_ranges() {
    each_backend(|b| async move {
        // A read-conflict range conflicts with a later write inside it, although
        // nothing was read.
        let t1 = b.db.create_transaction().unwrap();
        // FoundationDB takes the read version at the first read: fix it now.
        t1.get_read_version().await.unwrap();
        t1.add_conflict_range(&b.key("a"), &b.key("c"), ConflictRangeType::Read)
            .unwrap();
        t1.set(&b.key("z"), b"1");
        let t2 = b.db.create_transaction().unwrap();
        t2.set(&b.key("b"), b"1");
        t2.commit().await.unwrap();
        assert_code(t1.commit().await, 1020);

        // ...and not with a write just outside it (end is exclusive).
        let t1 = b.db.create_transaction().unwrap();
        // FoundationDB takes the read version at the first read: fix it now.
        t1.get_read_version().await.unwrap();
        t1.add_conflict_range(&b.key("a"), &b.key("c"), ConflictRangeType::Read)
            .unwrap();
        t1.set(&b.key("z"), b"2");
        let t2 = b.db.create_transaction().unwrap();
        t2.set(&b.key("c"), b"1");
        t2.commit().await.unwrap();
        t1.commit().await.expect("write at the exclusive end");

        // A write-conflict range makes a reader of the range conflict, although
        // the writer changed nothing there.
        let t1 = b.db.create_transaction().unwrap();
        t1.get(&b.key("m"), false).await.unwrap();
        t1.set(&b.key("z"), b"3");
        let t2 = b.db.create_transaction().unwrap();
        t2.add_conflict_range(&b.key("l"), &b.key("n"), ConflictRangeType::Write)
            .unwrap();
        t2.commit().await.unwrap();
        assert_code(t1.commit().await, 1020);
        assert_eq!(common::read(&b.db, &b.key("m")).await, None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_versions_strictly_increase() {
    each_backend(|b| async move {
        let mut last = 0u64;
        for i in 0..20u32 {
            let tx = b.db.create_transaction().unwrap();
            let rv = tx.get_read_version().await.unwrap();
            assert!(rv >= last, "read version {rv} is behind commit {last}");
            tx.set(&b.key(format!("v/{i}")), b"x");
            let version = tx
                .commit()
                .await
                .unwrap()
                .version
                .expect("a write commits a version");
            assert!(
                version > last && version > rv,
                "{version} after {last} (read {rv})"
            );
            last = version;
        }
    })
    .await;
}

/// Acknowledged commits: each key and the version that committed it.
type Acked = Arc<Mutex<Vec<(Vec<u8>, u64)>>>;

/// While writers commit concurrently, a reader that observes read version `v`
/// sees every commit with a version `<= v`, and none after it. Writers record
/// each acknowledged commit's version in a shared list; each committed value is
/// also the commit's own versionstamp, so readers can tell what they see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_every_commit_up_to_their_read_version() {
    const WRITERS: usize = 4;
    const COMMITS: usize = 40;
    const READERS: usize = 2;
    each_backend(|b| async move {
        let acked: Acked = Arc::default();
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (db, acked, done) = (b.db.clone(), acked.clone(), done.clone());
            let keys: Vec<_> = (0..COMMITS)
                .map(|i| b.key(format!("g/{w}/{i:04}")))
                .collect();
            writers.push(tokio::spawn(async move {
                for key in keys {
                    let tx = db.create_transaction().unwrap();
                    tx.atomic_op(
                        &key,
                        &versionstamped_value(b""),
                        MutationType::SetVersionstampedValue,
                    );
                    let version = tx.commit().await.unwrap().version.unwrap();
                    acked.lock().unwrap().push((key, version));
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }));
        }
        let mut readers = Vec::new();
        for _ in 0..READERS {
            let (db, acked, done) = (b.db.clone(), acked.clone(), done.clone());
            let range = RangeOption::prefix(&b.key("g/"));
            readers.push(tokio::spawn(async move {
                let mut checks = 0usize;
                loop {
                    let finished = done.load(std::sync::atomic::Ordering::SeqCst) == WRITERS;
                    let tx = db.create_transaction().unwrap();
                    let rv = tx.get_read_version().await.unwrap();
                    let seen: BTreeMap<Vec<u8>, Vec<u8>> = tx
                        .get_range_all(range.clone(), true)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|kv| (kv.key, kv.value))
                        .collect();
                    for (key, stamp) in &seen {
                        let v = u64::from_be_bytes(stamp[..8].try_into().unwrap());
                        assert!(
                            v <= rv,
                            "{key:?} committed at {v} is visible at read version {rv}"
                        );
                    }
                    // Acknowledgements recorded after our read are included: a
                    // commit acknowledged later may still be at or below `rv`.
                    for (key, v) in acked.lock().unwrap().iter() {
                        if *v <= rv {
                            assert!(
                                seen.contains_key(key),
                                "{key:?} committed at {v} is missing at read version {rv}"
                            );
                        }
                    }
                    checks += 1;
                    if finished {
                        return checks;
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        for r in readers {
            assert!(r.await.unwrap() >= 1);
        }
        assert_eq!(acked.lock().unwrap().len(), WRITERS * COMMITS);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_read_modify_write_increments_are_serializable() {
    const TASKS: u64 = 6;
    const INCREMENTS: u64 = 15;
    each_backend(|b| async move {
        let k = b.key("rmw");
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (db, k) = (b.db.clone(), k.clone());
                tokio::spawn(async move {
                    for _ in 0..INCREMENTS {
                        db.run(|tx, _| {
                            let k = k.clone();
                            async move {
                                let n = le_u64(tx.get(&k, false).await?);
                                tokio::task::yield_now().await;
                                tx.set(&k, &(n + 1).to_le_bytes());
                                Ok::<_, kv::Error>(())
                            }
                        })
                        .await
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(le_u64(common::read(&b.db, &k).await), TASKS * INCREMENTS);
    })
    .await;
}

/// Transfers between accounts keep the total; every reader, snapshot or not,
/// sees a consistent total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_keep_every_snapshot_consistent() {
    const ACCOUNTS: u64 = 4;
    const TRANSFERS: u64 = 25;
    const TOTAL: u64 = ACCOUNTS * 100;
    each_backend(|b| async move {
        let account = |i: u64| b.key(format!("acct/{i}"));
        let init: Vec<_> = (0..ACCOUNTS)
            .map(|i| (account(i), 100u64.to_le_bytes().to_vec()))
            .collect();
        put_all(&b.db, &init).await;
        let range = RangeOption::prefix(&b.key("acct/"));
        let movers: Vec<_> = (0..ACCOUNTS)
            .map(|from| {
                let db = b.db.clone();
                let (src, dst) = (account(from), account((from + 1) % ACCOUNTS));
                tokio::spawn(async move {
                    for _ in 0..TRANSFERS {
                        db.run(|tx, _| {
                            let (src, dst) = (src.clone(), dst.clone());
                            async move {
                                let a = le_u64(tx.get(&src, false).await?);
                                let c = le_u64(tx.get(&dst, false).await?);
                                let amount = a.min(3);
                                tx.set(&src, &(a - amount).to_le_bytes());
                                tx.set(&dst, &(c + amount).to_le_bytes());
                                Ok::<_, kv::Error>(())
                            }
                        })
                        .await
                        .unwrap();
                    }
                })
            })
            .collect();
        let mut audits = 0;
        while !movers.iter().all(|m| m.is_finished()) || audits == 0 {
            let tx = b.db.create_transaction().unwrap();
            let snapshot = audits % 2 == 0;
            let kvs = tx.get_range_all(range.clone(), snapshot).await.unwrap();
            assert_eq!(kvs.len() as u64, ACCOUNTS);
            let sum: u64 = kvs.into_iter().map(|kv| le_u64(Some(kv.value))).sum();
            assert_eq!(sum, TOTAL, "inconsistent read (snapshot: {snapshot})");
            audits += 1;
            tokio::task::yield_now().await;
        }
        for m in movers {
            m.await.unwrap();
        }
    })
    .await;
}

/// One way of writing, applied to a transaction.
type WriteOp<'a> = Box<dyn Fn(&kv::Transaction) + 'a>;

/// What each kind of committed write does to a reader of `[r/, r0)` that
/// read every key there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_write_into_a_read_range_conflicts() {
    use foundationdb_tuple::{Subspace, Versionstamp};
    each_backend(|b| async move {
        let writes: Vec<(&str, WriteOp)> = vec![
            ("clear", Box::new(|tx| tx.clear(&b.key("r/b")))),
            (
                "clear_range",
                Box::new(|tx| tx.clear_range(&b.key("r/a"), &b.key("r/c"))),
            ),
            (
                "clear_range around",
                Box::new(|tx| tx.clear_range(&b.key("q"), &b.key("s"))),
            ),
            (
                "atomic add",
                Box::new(|tx| tx.atomic_op(&b.key("r/b"), &1u64.to_le_bytes(), MutationType::Add)),
            ),
            (
                "versionstamped key",
                Box::new(|tx| {
                    let key = Subspace::from_bytes(b.key("r/vs/"))
                        .pack_with_versionstamp(&Versionstamp::incomplete(0));
                    tx.atomic_op(&key, b"x", MutationType::SetVersionstampedKey)
                }),
            ),
            (
                "versionstamped value",
                Box::new(|tx| {
                    tx.atomic_op(
                        &b.key("r/b"),
                        &versionstamped_value(b""),
                        MutationType::SetVersionstampedValue,
                    )
                }),
            ),
        ];
        for (what, write) in &writes {
            let reset = b.db.create_transaction().unwrap();
            reset.clear_range(&b.prefix, &common::strinc(&b.prefix));
            reset.set(&b.key("r/a"), b"1");
            reset.set(&b.key("r/b"), b"2");
            reset.commit().await.unwrap();

            let reader = b.db.create_transaction().unwrap();
            let seen = reader.get_range_all(RangeOption::new(b.key("r/"), b.key("r0")), false);
            assert_eq!(seen.await.unwrap().len(), 2);
            reader.set(&b.key("out"), b"x");
            let writer = b.db.create_transaction().unwrap();
            write(&writer);
            writer.commit().await.unwrap();
            match reader.commit().await {
                Err(e) if e.code() == Some(1020) => {}
                other => panic!("{what}: expected a conflict, got {other:?}"),
            }
        }
    })
    .await;
}

/// A range read stopped by its limit depends only on the keys up to the last
/// one returned (forward) or from it (reverse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_range_read_conflicts_only_up_to_its_last_key() {
    each_backend(|b| async move {
        let pairs: Vec<_> = ["r/a", "r/b", "r/c", "r/d"]
            .iter()
            .map(|k| (b.key(k), b"v".to_vec()))
            .collect();
        put_all(&b.db, &pairs).await;
        for (reverse, inserted, conflicts) in [
            (false, "r/bb", false),
            (false, "r/ab", true),
            (true, "r/bb", false),
            (true, "r/cc", true),
        ] {
            let reader = b.db.create_transaction().unwrap();
            let range = RangeOption::new(b.key("r/"), b.key("r0"))
                .limit(2)
                .reverse(reverse);
            let kvs = reader.get_range(&range, false).await.unwrap().kvs;
            assert_eq!(kvs.len(), 2);
            reader.set(&b.key("out"), b"x");
            let writer = b.db.create_transaction().unwrap();
            writer.set(&b.key(inserted), b"new");
            writer.commit().await.unwrap();
            let result = reader.commit().await;
            assert_eq!(
                result.as_ref().err().and_then(|e| e.code()) == Some(1020),
                conflicts,
                "reverse {reverse}, insert {inserted}: {result:?}"
            );
            let cleanup = b.db.create_transaction().unwrap();
            cleanup.clear(&b.key(inserted));
            cleanup.commit().await.unwrap();
        }
    })
    .await;
}

/// `Database::read_range_paged` promises one consistent snapshot (every page
/// at the first page's read version) while no transaction reads more than a
/// page. A writer commits pairs of keys, one sorting before every key of the
/// range and one after, in one transaction each, while the range is read
/// 100 keys a page: a read that mixed versions would see a pair's late key
/// without its early one. The read is repeated until one overlapped at
/// least two of the writer's commits (the writer runs on another thread for
/// the whole test; a read spans dozens of page transactions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_range_reads_are_one_snapshot_under_concurrent_writes() {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    each_backend(|b| async move {
        const PAIRS: u64 = 2_000;
        const PAGE: usize = 100;
        // Pair `t`: `a/(99999999 - t)`, sorting before every earlier pair's
        // `a` key, and `z/t`, after every earlier pair's `z` key.
        let pair = |prefix: &[u8], t: u64| {
            let key = |suffix: String| [prefix, suffix.as_bytes()].concat();
            (
                key(format!("a/{:08}", 99_999_999 - t)),
                key(format!("z/{t:08}")),
            )
        };
        for chunk in (0..PAIRS).collect::<Vec<_>>().chunks(500) {
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = chunk
                .iter()
                .flat_map(|&t| {
                    let (a, z) = pair(&b.prefix, t);
                    [(a, t.to_le_bytes().to_vec()), (z, t.to_le_bytes().to_vec())]
                })
                .collect();
            put_all(&b.db, &pairs).await;
        }
        let done = Arc::new(AtomicBool::new(false));
        let commits = Arc::new(AtomicU64::new(0));
        let writer = {
            let (db, done, commits) = (b.db.clone(), done.clone(), commits.clone());
            let prefix = b.prefix.clone();
            tokio::spawn(async move {
                for t in PAIRS.. {
                    if done.load(Ordering::SeqCst) {
                        break;
                    }
                    let (a, z) = pair(&prefix, t);
                    let v = t.to_le_bytes().to_vec();
                    put_all(&db, &[(a, v.clone()), (z, v)]).await;
                    commits.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let mut overlapped = false;
        for _ in 0..50 {
            if let Some(e) = b.embedded() {
                e.costs().reset();
            }
            let before = commits.load(Ordering::SeqCst);
            let kvs =
                b.db.read_range_paged(b.range(), PAGE)
                    .await
                    .expect("paged read");
            let after = commits.load(Ordering::SeqCst);
            let mut early = BTreeSet::new();
            let mut late = BTreeSet::new();
            for kv in &kvs {
                let t = u64::from_le_bytes(kv.value.as_slice().try_into().expect("8 bytes"));
                let suffix = &kv.key[b.prefix.len()..];
                let fresh = if suffix.starts_with(b"a/") {
                    early.insert(t)
                } else {
                    late.insert(t)
                };
                assert!(fresh, "pair {t} read twice");
            }
            assert_eq!(early, late, "{}: the pages mixed versions", b.name());
            assert!(early.len() as u64 >= PAIRS);
            assert!(kvs.windows(2).all(|w| w[0].key < w[1].key), "in key order");
            if let Some(e) = b.embedded() {
                let read = e.costs().max_keys_read.load(Ordering::SeqCst);
                assert!(read <= PAGE as u64, "one transaction read {read} keys");
            }
            if after >= before + 2 {
                overlapped = true;
                break;
            }
        }
        done.store(true, Ordering::SeqCst);
        writer.await.expect("writer");
        assert!(overlapped, "no read overlapped the writer's commits");
    })
    .await;
}
