//! Atomic mutations and versionstamps.

use std::sync::{Arc, Mutex};

use foundationdb_tuple::{Subspace, Versionstamp};
use myelin::kv::{self, MutationType, RangeOption};

use crate::common::{self, each_backend, le_u64};
use crate::versionstamped_value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_atomic_adds_sum_exactly() {
    const TASKS: u64 = 8;
    const INCREMENTS: u64 = 25;
    each_backend(|b| async move {
        let k = b.key("sum");
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (db, k) = (b.db.clone(), k.clone());
                tokio::spawn(async move {
                    for _ in 0..INCREMENTS {
                        db.run(|tx, _| {
                            let k = k.clone();
                            async move {
                                tx.atomic_op(&k, &1u64.to_le_bytes(), MutationType::Add);
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

/// Applies one atomic op to `key` (set to `initial` first, or cleared) in its
/// own transaction and returns the committed value.
async fn after_op(
    b: &common::Backend,
    initial: Option<&[u8]>,
    param: &[u8],
    op: MutationType,
) -> Option<Vec<u8>> {
    let key = b.key("atomic");
    let tx = b.db.create_transaction().expect("a transaction starts");
    match initial {
        Some(v) => tx.set(&key, v),
        None => tx.clear(&key),
    }
    tx.commit().await.expect("the transaction commits");
    let tx = b.db.create_transaction().expect("a transaction starts");
    tx.atomic_op(&key, param, op);
    tx.commit().await.expect("the transaction commits");
    common::read(&b.db, &key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_op_semantics() {
    use MutationType::*;
    each_backend(|b| async move {
        let le = |n: u32| n.to_le_bytes().to_vec();
        // Add wraps, treats absent as zero, and fits the existing value to the
        // parameter's length.
        assert_eq!(after_op(&b, None, &le(5), Add).await, Some(le(5)));
        assert_eq!(
            after_op(&b, Some(&le(u32::MAX)), &le(2), Add).await,
            Some(le(1))
        );
        assert_eq!(after_op(&b, Some(&[1, 0]), &le(1), Add).await, Some(le(2)));
        // Max and Min compare little-endian unsigned integers.
        assert_eq!(
            after_op(&b, Some(&le(256)), &le(255), Max).await,
            Some(le(256))
        );
        assert_eq!(
            after_op(&b, Some(&le(255)), &le(256), Max).await,
            Some(le(256))
        );
        assert_eq!(
            after_op(&b, Some(&le(256)), &le(255), Min).await,
            Some(le(255))
        );
        assert_eq!(after_op(&b, None, &le(7), Min).await, Some(le(7)));
        assert_eq!(after_op(&b, None, &le(7), Max).await, Some(le(7)));
        // Byte comparisons are lexicographic.
        assert_eq!(
            after_op(&b, Some(b"b"), b"ab", ByteMax).await,
            Some(b"b".to_vec())
        );
        assert_eq!(
            after_op(&b, Some(b"b"), b"ab", ByteMin).await,
            Some(b"ab".to_vec())
        );
        assert_eq!(
            after_op(&b, None, b"ab", ByteMin).await,
            Some(b"ab".to_vec())
        );
        // CompareAndClear clears only an equal value.
        assert_eq!(after_op(&b, Some(b"x"), b"x", CompareAndClear).await, None);
        assert_eq!(
            after_op(&b, Some(b"y"), b"x", CompareAndClear).await,
            Some(b"y".to_vec())
        );
        assert_eq!(after_op(&b, None, b"x", CompareAndClear).await, None);
        // AppendIfFits appends within the value limit, else leaves the value.
        assert_eq!(
            after_op(&b, Some(b"ab"), b"cd", AppendIfFits).await,
            Some(b"abcd".to_vec())
        );
        let big = vec![b'x'; kv::limits::VALUE_SIZE_BYTES - 1];
        let kept = after_op(&b, Some(&big), b"yz", AppendIfFits).await;
        assert_eq!(kept.as_deref(), Some(big.as_slice()));
        // Bitwise ops.
        assert_eq!(
            after_op(&b, Some(&[0b1100]), &[0b1010], BitAnd).await,
            Some(vec![0b1000])
        );
        assert_eq!(
            after_op(&b, Some(&[0b1100]), &[0b1010], BitOr).await,
            Some(vec![0b1110])
        );
        assert_eq!(
            after_op(&b, Some(&[0b1100]), &[0b1010], BitXor).await,
            Some(vec![0b0110])
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versionstamped_key_and_value_hold_the_commit_versionstamp() {
    each_backend(|b| async move {
        let space = Subspace::from_bytes(b.key("vs/"));
        let key = space.pack_with_versionstamp(&("event", Versionstamp::incomplete(7)));
        let tx = b.db.create_transaction().unwrap();
        tx.atomic_op(&key, b"payload", MutationType::SetVersionstampedKey);
        tx.atomic_op(
            &b.key("vv"),
            &versionstamped_value(b"head:"),
            MutationType::SetVersionstampedValue,
        );
        // Reading back a versionstamped value before commit is not allowed.
        assert_eq!(
            tx.get(&b.key("vv"), false).await.unwrap_err().code(),
            Some(1036)
        );
        let stamp = tx
            .commit()
            .await
            .unwrap()
            .versionstamp
            .expect("writes get a versionstamp");

        let tx = b.db.create_transaction().unwrap();
        let kvs = tx
            .get_range_all(RangeOption::prefix(space.bytes()), false)
            .await
            .unwrap();
        assert_eq!(kvs.len(), 1);
        let (name, vs): (String, Versionstamp) = space.unpack(&kvs[0].key).unwrap();
        assert_eq!(name, "event");
        assert_eq!(vs, Versionstamp::complete(stamp, 7));
        assert_eq!(kvs[0].value, b"payload");
        let value = tx.get(&b.key("vv"), false).await.unwrap().unwrap();
        assert_eq!(&value[..5], b"head:");
        assert_eq!(&value[5..], &stamp);
    })
    .await;
}

/// A key written with a versionstamped value is unreadable to its own
/// transaction, and so is a range that holds it; a range that only ends next
/// to it (a subspace just before it) reads as usual, as in FoundationDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_next_to_an_unreadable_key_reads_and_one_holding_it_fails() {
    each_backend(|b| async move {
        let tx = b.db.create_transaction().unwrap();
        tx.set(&b.key("a/1"), b"one");
        tx.commit().await.unwrap();

        let tx = b.db.create_transaction().unwrap();
        tx.atomic_op(
            &b.key("b/1"),
            &versionstamped_value(b""),
            MutationType::SetVersionstampedValue,
        );
        for snapshot in [false, true] {
            let before = tx
                .get_range_all(RangeOption::prefix(&b.key("a/")), snapshot)
                .await
                .unwrap();
            assert_eq!(before.len(), 1, "snapshot {snapshot}");
            assert_eq!(before[0].value, b"one");
            let reversed = tx
                .get_range_all(RangeOption::prefix(&b.key("a/")).reverse(true), snapshot)
                .await
                .unwrap();
            assert_eq!(reversed.len(), 1, "snapshot {snapshot}");
        }
        let holding = tx
            .get_range_all(RangeOption::prefix(&b.key("b/")), false)
            .await
            .unwrap_err();
        assert_eq!(holding.code(), Some(1036));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versionstamp_order_is_commit_order_across_concurrent_committers() {
    const TASKS: usize = 8;
    const COMMITS: usize = 25;
    each_backend(|b| async move {
        let log: Arc<Mutex<Vec<[u8; 10]>>> = Arc::default();
        let space = Subspace::from_bytes(b.key("log/"));
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let (db, log, space) = (b.db.clone(), log.clone(), space.clone());
                tokio::spawn(async move {
                    for i in 0..COMMITS {
                        let tx = db.create_transaction().unwrap();
                        let key = space.pack_with_versionstamp(&Versionstamp::incomplete(0));
                        tx.atomic_op(
                            &key,
                            format!("{t}/{i}").as_bytes(),
                            MutationType::SetVersionstampedKey,
                        );
                        let info = tx.commit().await.unwrap();
                        let stamp = info.versionstamp.unwrap();
                        assert_eq!(&stamp[..8], &info.version.unwrap().to_be_bytes());
                        log.lock().unwrap().push(stamp);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let mut stamps = log.lock().unwrap().clone();
        stamps.sort();
        stamps.dedup();
        assert_eq!(stamps.len(), TASKS * COMMITS, "versionstamps are unique");

        // The log, read in key order, is the commit order: its keys are exactly
        // the returned versionstamps, sorted, and each writer's own entries
        // appear in the order it committed them.
        let tx = b.db.create_transaction().unwrap();
        let kvs = tx
            .get_range_all(RangeOption::prefix(space.bytes()), true)
            .await
            .unwrap();
        let stored: Vec<[u8; 10]> = kvs
            .iter()
            .map(|kv| {
                let vs: Versionstamp = space.unpack(&kv.key).unwrap();
                vs.transaction_version().try_into().unwrap()
            })
            .collect();
        assert_eq!(stored, stamps);
        for t in 0..TASKS {
            let mine: Vec<usize> = kvs
                .iter()
                .filter_map(|kv| {
                    let s = String::from_utf8(kv.value.clone()).unwrap();
                    let (w, i) = s.split_once('/').unwrap();
                    (w == t.to_string()).then(|| i.parse().unwrap())
                })
                .collect();
            assert_eq!(mine, (0..COMMITS).collect::<Vec<_>>(), "writer {t}");
        }
    })
    .await;
}

/// After `SetVersionstampedKey`, every key of the range the key may land in
/// is unreadable to its transaction (`accessed_unreadable`, 1036) until
/// commit; keys outside it read as usual. FoundationDB: FDB 7.3
/// `ReadYourWritesTransaction::atomicOp` (`fdbclient/ReadYourWrites.actor.cpp`)
/// marks `getVersionstampKeyRange` (`fdbclient/include/fdbclient/Atomic.h`:
/// the key with the read version's stamp up to the key with ten `\xff`
/// bytes) "unmodified and unreadable".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_range_a_versionstamped_key_may_land_in_is_unreadable_until_commit() {
    each_backend(|b| async move {
        let space = Subspace::from_bytes(b.key("vk/"));
        let before = b.key("vj");
        let after = b.key("vl");
        let tx = b.db.create_transaction().unwrap();
        tx.set(&before, b"b");
        tx.set(&after, b"a");
        tx.commit().await.unwrap();

        let tx = b.db.create_transaction().unwrap();
        tx.get_read_version().await.unwrap();
        let key = space.pack_with_versionstamp(&("event", Versionstamp::incomplete(0)));
        tx.atomic_op(&key, b"payload", MutationType::SetVersionstampedKey);
        // A key the stamp could produce: the largest version.
        let highest = space.pack(&("event", Versionstamp::complete([0xff; 10], 0)));
        for snapshot in [false, true] {
            assert_eq!(
                tx.get(&highest, snapshot).await.unwrap_err().code(),
                Some(1036),
                "snapshot {snapshot}"
            );
            assert_eq!(
                tx.get_range_all(RangeOption::prefix(space.bytes()), snapshot)
                    .await
                    .unwrap_err()
                    .code(),
                Some(1036),
                "snapshot {snapshot}"
            );
        }
        assert_eq!(
            tx.get(&before, false).await.unwrap().as_deref(),
            Some(&b"b"[..])
        );
        assert_eq!(
            tx.get(&after, false).await.unwrap().as_deref(),
            Some(&b"a"[..])
        );
        drop(tx);

        let tx = b.db.create_transaction().unwrap();
        tx.atomic_op(&key, b"payload", MutationType::SetVersionstampedKey);
        tx.commit().await.unwrap();
        let tx = b.db.create_transaction().unwrap();
        let kvs = tx
            .get_range_all(RangeOption::prefix(space.bytes()), false)
            .await
            .unwrap();
        assert_eq!(kvs.len(), 1, "readable once committed");
    })
    .await;
}
