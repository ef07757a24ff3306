//! The ranked set layer (`kv::ranked_set`) on the embedded backend, against
//! a sorted `Vec` model: random inserts and removes (one per transaction and
//! several in one), then every query compared with the model, and the
//! stored keys compared with a bulk build of the model's elements (the
//! structure is a function of the elements alone). Also: the empty set,
//! duplicates, bulk-build errors, and which concurrent inserts commit
//! together.

use std::ops::Bound;

mod ranked_set_common;

use myelin::kv::ranked_set::{RankedSet, RankedSetError, level_of};
use myelin::kv::{self, Database};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use ranked_set_common::{dump, set_at, store};

/// Elements drawn from a small universe so inserts meet duplicates and
/// removes meet present elements; lengths 1..=3 and zero bytes included
/// (the tuple encoding escapes them), ordered bytewise like the set.
fn random_element(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.random_range(1..=3);
    (0..len).map(|_| rng.random_range(0..6u8)).collect()
}

async fn insert(db: &Database, set: &RankedSet, element: &[u8]) -> bool {
    db.run(|tx, _| async move { set.insert(&tx, element).await })
        .await
        .expect("insert")
}

async fn remove(db: &Database, set: &RankedSet, element: &[u8]) -> bool {
    db.run(|tx, _| async move { set.remove(&tx, element).await })
        .await
        .expect("remove")
}

/// Every query of the set compared with the sorted model.
async fn check_queries(db: &Database, set: &RankedSet, model: &[Vec<u8>], rng: &mut StdRng) {
    let tx = db.create_transaction().expect("tx");
    assert_eq!(
        set.count(&tx, true).await.expect("ranked set test step"),
        model.len() as u64
    );
    for _ in 0..20 {
        let probe = random_element(rng);
        let position = model.binary_search(&probe);
        assert_eq!(
            set.contains(&tx, &probe, true)
                .await
                .expect("ranked set test step"),
            position.is_ok()
        );
        assert_eq!(
            set.rank(&tx, &probe, true)
                .await
                .expect("ranked set test step"),
            position.ok().map(|p| p as u64),
            "rank of {probe:?} in {model:?}"
        );
        let below = position.unwrap_or_else(|p| p) as u64;
        assert_eq!(
            set.count_less_than(&tx, &probe, true)
                .await
                .expect("ranked set test step"),
            below
        );
        let after: Vec<Vec<u8>> = model
            .iter()
            .filter(|e| **e > probe)
            .take(3)
            .cloned()
            .collect();
        assert_eq!(
            set.elements(&tx, Bound::Excluded(&probe), 3, false, true)
                .await
                .expect("ranked set test step"),
            after
        );
        let before: Vec<Vec<u8>> = model
            .iter()
            .rev()
            .filter(|e| **e < probe)
            .take(3)
            .cloned()
            .collect();
        assert_eq!(
            set.elements(&tx, Bound::Excluded(&probe), 3, true, true)
                .await
                .expect("ranked set test step"),
            before
        );
    }
    for index in 0..=model.len() as u64 + 1 {
        assert_eq!(
            set.nth(&tx, index, true)
                .await
                .expect("ranked set test step"),
            model.get(index as usize).cloned(),
            "nth({index}) of {model:?}"
        );
    }
    let start = rng.random_range(0..=model.len() + 1);
    let expected: Vec<Vec<u8>> = model.iter().skip(start).take(4).cloned().collect();
    assert_eq!(
        set.range_by_rank(&tx, start as u64, 4, true)
            .await
            .expect("ranked set test step"),
        expected
    );
    assert_eq!(
        set.elements(&tx, Bound::Unbounded, usize::MAX, false, true)
            .await
            .expect("ranked set test step"),
        model
    );
}

/// The set's keys equal those of a bulk build of the model's elements.
async fn check_structure(db: &Database, set: &RankedSet, model: &[Vec<u8>], scratch: &[u8]) {
    let reference = set_at(scratch);
    let (begin, end) = reference.subspace().range();
    db.run(|tx, _| {
        let (begin, end) = (begin.clone(), end.clone());
        async move {
            tx.clear_range(&begin, &end);
            Ok::<_, kv::Error>(())
        }
    })
    .await
    .expect("ranked set test step");
    reference
        .bulk_build(db, model.iter().cloned())
        .await
        .expect("bulk build");
    let (ours, theirs) = (dump(db, set).await, dump(db, &reference).await);
    // An emptied set keeps its sentinels at count 0; a bulk build of
    // nothing writes nothing.
    if model.is_empty() {
        assert!(
            ours.iter().all(|kv| kv.value == 0i64.to_le_bytes()),
            "{ours:?}"
        );
    } else {
        assert_eq!(ours, theirs);
    }
}

#[tokio::test]
async fn random_operations_match_a_sorted_vec() {
    let (_dir, db) = store();
    for seed in 0..6u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let set = set_at(&[0x15, seed as u8]);
        let mut model: Vec<Vec<u8>> = Vec::new();
        for round in 0..12 {
            for _ in 0..rng.random_range(1..25) {
                let element = random_element(&mut rng);
                let present = model.binary_search(&element);
                if rng.random_bool(0.6) {
                    assert_eq!(insert(&db, &set, &element).await, present.is_err());
                    if let Err(p) = present {
                        model.insert(p, element);
                    }
                } else {
                    assert_eq!(remove(&db, &set, &element).await, present.is_ok());
                    if let Ok(p) = present {
                        model.remove(p);
                    }
                }
            }
            // Several changes in one transaction: later ones read the
            // earlier ones' writes (atomic adds included).
            let batch: Vec<(bool, Vec<u8>)> = (0..rng.random_range(1..8))
                .map(|_| (rng.random_bool(0.5), random_element(&mut rng)))
                .collect();
            let results = db
                .run(|tx, _| {
                    let (set, batch) = (&set, &batch);
                    async move {
                        let mut results = Vec::new();
                        for (add, element) in batch {
                            results.push(if *add {
                                set.insert(&tx, element).await?
                            } else {
                                set.remove(&tx, element).await?
                            });
                        }
                        Ok::<_, RankedSetError>(results)
                    }
                })
                .await
                .expect("ranked set test step");
            for ((add, element), changed) in batch.into_iter().zip(results) {
                let present = model.binary_search(&element);
                match (add, present) {
                    (true, Err(p)) => {
                        assert!(changed);
                        model.insert(p, element);
                    }
                    (false, Ok(p)) => {
                        assert!(changed);
                        model.remove(p);
                    }
                    _ => assert!(!changed, "{add} {element:?} changed nothing"),
                }
            }
            check_queries(&db, &set, &model, &mut rng).await;
            check_structure(&db, &set, &model, &[0x16, seed as u8, round]).await;
        }
        // Remove everything: the set reads as empty again.
        for element in model.clone() {
            assert!(remove(&db, &set, &element).await);
        }
        check_queries(&db, &set, &[], &mut rng).await;
        check_structure(&db, &set, &[], &[0x16, seed as u8, 0xff]).await;
    }
}

#[tokio::test]
async fn an_empty_set_answers_and_refuses_bad_elements() {
    let (_dir, db) = store();
    let set = set_at(b"\x15empty");
    let tx = db.create_transaction().expect("ranked set test step");
    assert_eq!(
        set.count(&tx, false).await.expect("ranked set test step"),
        0
    );
    assert_eq!(
        set.nth(&tx, 0, false).await.expect("ranked set test step"),
        None
    );
    assert_eq!(
        set.rank(&tx, b"a", false)
            .await
            .expect("ranked set test step"),
        None
    );
    assert_eq!(
        set.count_less_than(&tx, b"a", false)
            .await
            .expect("ranked set test step"),
        0
    );
    assert!(
        !set.contains(&tx, b"a", false)
            .await
            .expect("ranked set test step")
    );
    assert_eq!(
        set.range_by_rank(&tx, 0, 10, false)
            .await
            .expect("ranked set test step"),
        Vec::<Vec<u8>>::new()
    );
    assert!(!set.remove(&tx, b"a").await.expect("ranked set test step"));
    assert!(matches!(
        set.insert(&tx, b"").await,
        Err(RankedSetError::EmptyElement)
    ));
    assert!(matches!(
        set.insert(&tx, &vec![7; 2049]).await,
        Err(RankedSetError::ElementTooLarge {
            len_bytes: 2049,
            ..
        })
    ));
    drop(tx);
    assert!(dump(&db, &set).await.is_empty(), "nothing was written");
}

#[tokio::test]
async fn duplicates_are_refused_and_change_nothing() {
    let (_dir, db) = store();
    let set = set_at(b"\x15dup");
    for e in [b"b", b"a", b"c"] {
        assert!(insert(&db, &set, e).await);
    }
    let before = dump(&db, &set).await;
    assert!(!insert(&db, &set, b"a").await);
    assert_eq!(dump(&db, &set).await, before);
    // Twice in one transaction: the second sees the first.
    let twice = db
        .run(|tx, _| {
            let set = &set;
            async move {
                Ok::<_, RankedSetError>((
                    set.insert(&tx, b"d").await?,
                    set.insert(&tx, b"d").await?,
                ))
            }
        })
        .await
        .expect("ranked set test step");
    assert_eq!(twice, (true, false));
    let tx = db.create_transaction().expect("ranked set test step");
    assert_eq!(set.count(&tx, true).await.expect("ranked set test step"), 4);
    assert_eq!(
        set.rank(&tx, b"d", true)
            .await
            .expect("ranked set test step"),
        Some(3)
    );
}

#[tokio::test]
async fn bulk_build_refuses_unsorted_input_and_a_used_subspace() {
    let (_dir, db) = store();
    let set = set_at(b"\x15bulk");
    let unsorted = vec![b"a".to_vec(), b"c".to_vec(), b"b".to_vec()];
    assert!(matches!(
        set.bulk_build(&db, unsorted).await,
        Err(RankedSetError::NotSorted { index: 2 })
    ));
    let other = set_at(b"\x15bulk2");
    let repeated = vec![b"a".to_vec(), b"a".to_vec()];
    assert!(matches!(
        other.bulk_build(&db, repeated).await,
        Err(RankedSetError::NotSorted { index: 1 })
    ));
    let fresh = set_at(b"\x15bulk3");
    assert!(insert(&db, &fresh, b"x").await);
    assert!(matches!(
        fresh.bulk_build(&db, vec![b"y".to_vec()]).await,
        Err(RankedSetError::NotEmpty)
    ));
}

#[tokio::test]
async fn bulk_build_writes_the_keys_of_inserting_one_by_one() {
    let (_dir, db) = store();
    let mut rng = StdRng::seed_from_u64(42);
    let mut elements: Vec<Vec<u8>> = (0..3_000u32)
        .map(|i| {
            let mut e = (i * 7).to_be_bytes().to_vec();
            e.push(rng.random());
            e
        })
        .collect();
    let sorted = elements.clone();
    // Insert in a random order, 50 to a transaction.
    for i in (1..elements.len()).rev() {
        elements.swap(i, rng.random_range(0..=i));
    }
    let one_by_one = set_at(b"\x15one");
    for chunk in elements.chunks(50) {
        db.run(|tx, _| {
            let set = &one_by_one;
            async move {
                for e in chunk {
                    assert!(set.insert(&tx, e).await?);
                }
                Ok::<_, RankedSetError>(())
            }
        })
        .await
        .expect("ranked set test step");
    }
    let bulk = set_at(b"\x15all");
    assert_eq!(
        bulk.bulk_build(&db, sorted.clone())
            .await
            .expect("ranked set test step"),
        3_000
    );
    let (a, b) = (dump(&db, &one_by_one).await, dump(&db, &bulk).await);
    assert!(a.len() > 3_000, "levels above 0 hold keys: {}", a.len());
    assert_eq!(a, b);
    let tx = db.create_transaction().expect("ranked set test step");
    for i in [0usize, 1, 1_499, 2_999] {
        assert_eq!(
            bulk.nth(&tx, i as u64, true)
                .await
                .expect("ranked set test step"),
            Some(sorted[i].clone())
        );
        assert_eq!(
            bulk.rank(&tx, &sorted[i], true)
                .await
                .expect("ranked set test step"),
            Some(i as u64)
        );
    }
}

/// Elements of the large set: multiples of 4, big-endian.
fn elem(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// The first absent element at or after `from` (`from` + 4k + `offset`)
/// whose highest level is `level`.
fn absent_at_level(from: u64, offset: u64, level: usize) -> u64 {
    (0..)
        .map(|k| from + 4 * k + offset)
        .find(|n| level_of(&elem(*n)) == level)
        .expect("some element has the level")
}

#[tokio::test]
async fn concurrent_inserts_far_apart_both_commit_without_retry() {
    let (_dir, db) = store();
    let set = set_at(b"\x15large");
    let n = 100_000u64;
    set.bulk_build(&db, (0..n).map(|i| elem(4 * i)))
        .await
        .expect("ranked set test step");
    // Near the start and near the end. Level 0 and 1: an insert that lands on
    // level L conflicts with inserts that share its predecessor at L (module
    // docs), which for elements this far apart means L >= 4.
    let low = absent_at_level(40, 1, 1);
    let high = absent_at_level(4 * (n - 100), 1, 0);
    let a = db.create_transaction().expect("ranked set test step");
    let b = db.create_transaction().expect("ranked set test step");
    assert!(
        set.insert(&a, &elem(low))
            .await
            .expect("ranked set test step")
    );
    assert!(
        set.insert(&b, &elem(high))
            .await
            .expect("ranked set test step")
    );
    a.commit().await.expect("first insert commits");
    b.commit()
        .await
        .expect("second insert commits, no conflict");
    let tx = db.create_transaction().expect("ranked set test step");
    assert_eq!(
        set.count(&tx, true).await.expect("ranked set test step"),
        n + 2
    );
    assert_eq!(
        set.rank(&tx, &elem(high), true)
            .await
            .expect("ranked set test step"),
        Some((high / 4) + 2)
    );
    // Removes far apart commit together too.
    let a = db.create_transaction().expect("ranked set test step");
    let b = db.create_transaction().expect("ranked set test step");
    assert!(
        set.remove(&a, &elem(low))
            .await
            .expect("ranked set test step")
    );
    assert!(
        set.remove(&b, &elem(high))
            .await
            .expect("ranked set test step")
    );
    a.commit().await.expect("first remove commits");
    b.commit()
        .await
        .expect("second remove commits, no conflict");
    let tx = db.create_transaction().expect("ranked set test step");
    assert_eq!(set.count(&tx, true).await.expect("ranked set test step"), n);
    assert_eq!(
        set.nth(&tx, n - 1, true)
            .await
            .expect("ranked set test step"),
        Some(elem(4 * (n - 1)))
    );
}

#[tokio::test]
async fn an_insert_that_splits_a_span_conflicts_with_an_insert_inside_it() {
    let (_dir, db) = store();
    let set = set_at(b"\x15split");
    set.bulk_build(&db, (0..10_000u64).map(|i| elem(4 * i)))
        .await
        .expect("ranked set test step");
    // `splitter` lands on level 1, so it recounts level 0 from its
    // predecessor at level 1 up to itself; `inside` lies in that stretch.
    let splitter = absent_at_level(4_000, 2, 1);
    let inside = splitter - 1;
    let a = db.create_transaction().expect("ranked set test step");
    let b = db.create_transaction().expect("ranked set test step");
    assert!(
        set.insert(&a, &elem(splitter))
            .await
            .expect("ranked set test step")
    );
    assert!(
        set.insert(&b, &elem(inside))
            .await
            .expect("ranked set test step")
    );
    b.commit().await.expect("the insert inside commits first");
    assert!(matches!(a.commit().await, Err(kv::Error::Conflict)));
    // Retried, it commits and the counts stay exact.
    assert!(insert(&db, &set, &elem(splitter)).await);
    let tx = db.create_transaction().expect("ranked set test step");
    assert_eq!(
        set.rank(&tx, &elem(splitter), true)
            .await
            .expect("ranked set test step"),
        Some(splitter / 4 + 2)
    );
    assert_eq!(
        set.count(&tx, true).await.expect("ranked set test step"),
        10_002
    );
}
