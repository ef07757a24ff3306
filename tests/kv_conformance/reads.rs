//! Reads: read-your-writes, key selectors, ranges (direction, limits,
//! streaming), all compared with the in-memory model of `common::model`.

use futures::TryStreamExt;
use myelin::kv::{self, KeySelector, KeyValue, MutationType, RangeOption};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::model::{Model, Resolved};
use crate::common::{Backend, each_backend, put_all, strinc};

const KEYS: usize = 24;

fn mkey(b: &Backend, i: usize) -> Vec<u8> {
    b.key(format!("m/{i:02}"))
}

/// Whether `got` (a key from the backend) is where the model says.
fn assert_resolved(b: &Backend, got: &[u8], want: &Resolved, what: &dyn std::fmt::Debug) {
    let end = strinc(&b.prefix);
    match want {
        Resolved::Key(k) => assert_eq!(got, k.as_slice(), "{what:?}"),
        Resolved::Before => assert!(
            got < b.prefix.as_slice(),
            "{what:?}: {got:?} not before the prefix"
        ),
        Resolved::After => assert!(
            got >= end.as_slice(),
            "{what:?}: {got:?} not after the prefix"
        ),
    }
}

/// Random selectors around the model's keys: each anchor is a key, a point
/// between keys, or one end; offsets span -3..=3.
fn random_selector(rng: &mut StdRng, b: &Backend) -> KeySelector {
    let i = rng.random_range(0..KEYS);
    let mut key = mkey(b, i);
    if rng.random_bool(0.3) {
        key.push(b'+');
    }
    KeySelector {
        key,
        or_equal: rng.random_bool(0.5),
        offset: rng.random_range(-3..=3),
    }
}

/// Checks every point read, selector and range of `tx` against `model`.
async fn compare(b: &Backend, tx: &kv::Transaction, model: &Model, rng: &mut StdRng) {
    for i in 0..KEYS {
        let k = mkey(b, i);
        assert_eq!(
            tx.get(&k, false).await.expect("the point read succeeds"),
            model.map.get(&k).cloned(),
            "get {k:?}"
        );
    }
    for _ in 0..40 {
        let sel = random_selector(rng, b);
        let got = tx
            .get_key(&sel, rng.random_bool(0.5))
            .await
            .expect("the key selector resolves");
        assert_resolved(b, &got, &model.resolve(&sel), &sel);
    }
    for _ in 0..40 {
        let (begin, end) = (random_selector(rng, b), random_selector(rng, b));
        let inside = |s: &KeySelector| matches!(model.resolve(s), Resolved::Key(_));
        let limit = (inside(&begin) && inside(&end) && rng.random_bool(0.5))
            .then(|| rng.random_range(1..6));
        let range = RangeOption {
            begin,
            end,
            limit,
            reverse: rng.random_bool(0.5),
        };
        let got: Vec<KeyValue> = tx
            .get_range(&range, rng.random_bool(0.5))
            .await
            .expect("the range read succeeds")
            .kvs
            .into_iter()
            .filter(|kv| kv.key.starts_with(&b.prefix))
            .collect();
        assert_eq!(got, model.range(&range), "{range:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_match_the_model_with_and_without_own_writes() {
    each_backend(|b| async move {
        let mut rng = StdRng::seed_from_u64(0x6d79_656c);
        for _round in 0..4 {
            let mut model = Model::default();
            let base: Vec<(Vec<u8>, Vec<u8>)> = (0..KEYS)
                .filter(|_| rng.random_bool(0.5))
                .map(|i| (mkey(&b, i), format!("base{i}").into_bytes()))
                .collect();
            let reset = b.db.create_transaction().unwrap();
            reset.clear_range(&b.key("m/"), &b.key("m0"));
            reset.commit().await.unwrap();
            put_all(&b.db, &base).await;
            for (k, v) in &base {
                model.set(k, v);
            }

            let tx = b.db.create_transaction().unwrap();
            compare(&b, &tx, &model, &mut rng).await;
            // Uncommitted writes of every kind, mirrored in the model.
            for _ in 0..12 {
                let k = mkey(&b, rng.random_range(0..KEYS));
                match rng.random_range(0..4) {
                    0 => {
                        let v = format!("w{}", rng.random::<u16>()).into_bytes();
                        tx.set(&k, &v);
                        model.set(&k, &v);
                    }
                    1 => {
                        tx.clear(&k);
                        model.clear(&k);
                    }
                    2 => {
                        let end = mkey(&b, rng.random_range(0..KEYS));
                        if k <= end {
                            tx.clear_range(&k, &end);
                            model.clear_range(&k, &end);
                        }
                    }
                    _ => {
                        let delta = rng.random_range(1..1000u64);
                        tx.atomic_op(&k, &delta.to_le_bytes(), MutationType::Add);
                        model.add_u64(&k, delta);
                    }
                }
            }
            compare(&b, &tx, &model, &mut rng).await;
            tx.commit().await.unwrap();
            let after = b.db.create_transaction().unwrap();
            compare(&b, &after, &model, &mut rng).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_respect_direction_and_limits() {
    each_backend(|b| async move {
        let pairs: Vec<_> = (0..10).map(|i| (mkey(&b, i), vec![i as u8])).collect();
        put_all(&b.db, &pairs).await;
        let tx = b.db.create_transaction().unwrap();
        let keys = |kvs: Vec<KeyValue>| kvs.into_iter().map(|kv| kv.value[0]).collect::<Vec<_>>();
        let all = RangeOption::new(mkey(&b, 2), mkey(&b, 8));
        assert_eq!(
            keys(tx.get_range_all(all.clone(), false).await.unwrap()),
            vec![2, 3, 4, 5, 6, 7]
        );
        let rev = all.clone().reverse(true);
        assert_eq!(
            keys(tx.get_range_all(rev.clone(), false).await.unwrap()),
            vec![7, 6, 5, 4, 3, 2]
        );
        assert_eq!(
            keys(tx.get_range_all(all.clone().limit(2), false).await.unwrap()),
            vec![2, 3]
        );
        assert_eq!(
            keys(tx.get_range_all(rev.limit(2), false).await.unwrap()),
            vec![7, 6]
        );
        assert_eq!(
            keys(
                tx.get_range(&all.clone().limit(3), false)
                    .await
                    .unwrap()
                    .kvs
            ),
            vec![2, 3, 4]
        );
        // An empty and an inverted range read nothing.
        let empty = RangeOption::new(mkey(&b, 5), mkey(&b, 5));
        assert!(tx.get_range_all(empty, false).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_ranges_streams_in_batches() {
    const N: usize = 1_500;
    each_backend(|b| async move {
        let pairs: Vec<_> = (0..N)
            .map(|i| (b.key(format!("s/{i:05}")), vec![b'v'; 16]))
            .collect();
        for chunk in pairs.chunks(500) {
            put_all(&b.db, chunk).await;
        }
        let tx = b.db.create_transaction().unwrap();
        let range = RangeOption::prefix(&b.key("s/"));
        let batches: Vec<Vec<KeyValue>> = tx
            .get_ranges(range.clone(), true)
            .try_collect()
            .await
            .unwrap();
        assert!(batches.len() >= 2, "{} batches", batches.len());
        let keys: Vec<Vec<u8>> = batches.into_iter().flatten().map(|kv| kv.key).collect();
        assert_eq!(
            keys,
            pairs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()
        );

        let limited = range.limit(700).reverse(true);
        let got: Vec<Vec<u8>> = tx
            .get_ranges(limited, false)
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .into_iter()
            .flatten()
            .map(|kv| kv.key)
            .collect();
        let want: Vec<Vec<u8>> = pairs
            .iter()
            .rev()
            .take(700)
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(got, want);
    })
    .await;
}

/// `Database::read_page` reads a range of any size in pages, one transaction
/// each: no transaction reads more than a page (FoundationDB's 5-second and
/// 10 MB rules hold however large the range), the pages together are the
/// range (up to its limit, in either direction), and a write between two
/// pages shows in the later one, since each page is its own transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_reads_bound_each_transaction() {
    each_backend(|b| async move {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..95)
            .map(|i| (b.key(format!("p/{i:03}")), vec![i as u8]))
            .collect();
        put_all(&b.db, &pairs).await;
        let all = RangeOption::prefix(&b.key("p/"));
        for (range, expected) in [
            (all.clone(), pairs.clone()),
            (all.clone().limit(42), pairs[..42].to_vec()),
            (
                all.clone().reverse(true).limit(31),
                pairs.iter().rev().take(31).cloned().collect(),
            ),
        ] {
            let mut next = Some(range);
            let mut got = Vec::new();
            let mut pages = 0;
            while let Some(range) = next {
                let (page, rest) = b.db.read_page(&range, 10).await.unwrap();
                assert!(page.len() <= 10, "a page of {} keys", page.len());
                pages += 1;
                got.extend(page.into_iter().map(|kv| (kv.key, kv.value)));
                next = rest;
            }
            assert_eq!(got, expected);
            assert_eq!(pages, expected.len().div_ceil(10).max(1));
        }

        let (first, rest) = b.db.read_page(&all, 10).await.unwrap();
        assert_eq!(first.len(), 10);
        put_all(&b.db, &[(b.key("p/050x"), b"late".to_vec())]).await;
        let mut next = rest;
        let mut seen_late = false;
        while let Some(range) = next {
            let (page, rest) = b.db.read_page(&range, 10).await.unwrap();
            seen_late |= page.iter().any(|kv| kv.value == b"late");
            next = rest;
        }
        assert!(seen_late, "each page is a new transaction");
    })
    .await;
}
