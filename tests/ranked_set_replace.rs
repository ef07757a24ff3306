//! `RankedSet::replace` (a leaderboard record's move) on the embedded
//! backend: it must write exactly the keys that `remove(old)` then
//! `insert(new)` write and answer the rank `count_less_than(new)` answers
//! after them, for moves near and far, onto and off higher levels, plain
//! inserts, an absent `old`, a present `new`, and several in one
//! transaction. And its shortcut (nothing read or written from the level
//! where both elements share a predecessor) stays safe under concurrency:
//! an insert that splits that shared span conflicts with it, while moves
//! far apart commit together.

mod ranked_set_common;

use myelin::kv::ranked_set::{RankedSet, RankedSetError, level_of};
use myelin::kv::{self, Database};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use ranked_set_common::{dump, set_at, store};

/// Big-endian, so byte order is numeric order (and the high zero bytes
/// exercise the tuple encoding's escapes).
fn elem(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// One move: `old` (if any) out, `new` in.
type Move = (Option<Vec<u8>>, Vec<u8>);

/// Applies `moves` in one transaction with `replace`.
async fn by_replace(db: &Database, set: &RankedSet, moves: &[Move]) -> Vec<u64> {
    db.run(|tx, _| async move {
        let mut ranks = Vec::new();
        for (old, new) in moves {
            ranks.push(set.replace(&tx, old.as_deref(), new).await?);
        }
        Ok::<_, RankedSetError>(ranks)
    })
    .await
    .expect("replace")
}

/// Applies `moves` in one transaction with `remove`, `insert` and
/// `count_less_than`.
async fn by_parts(db: &Database, set: &RankedSet, moves: &[Move]) -> Vec<u64> {
    db.run(|tx, _| async move {
        let mut ranks = Vec::new();
        for (old, new) in moves {
            if let Some(old) = old {
                set.remove(&tx, old).await?;
            }
            set.insert(&tx, new).await?;
            ranks.push(set.count_less_than(&tx, new, true).await?);
        }
        Ok::<_, RankedSetError>(ranks)
    })
    .await
    .expect("remove and insert")
}

/// An element absent from `model`, near `around`, on level `min_level` or
/// higher.
fn absent_near(model: &[u64], around: u64, min_level: usize) -> u64 {
    (around..)
        .find(|n| level_of(&elem(*n)) >= min_level && model.binary_search(n).is_err())
        .expect("an absent element")
}

/// A random move of one of the kinds `replace` must handle.
fn random_move(rng: &mut StdRng, model: &[u64]) -> (Option<u64>, u64) {
    let present = |rng: &mut StdRng| model[rng.random_range(0..model.len())];
    match rng.random_range(0..10) {
        // Near: a few neighbours away, often the same span above level 0.
        0..=2 => {
            let old = present(rng);
            let step = rng.random_range(1..200);
            let around = if rng.random_bool(0.5) {
                old + step
            } else {
                old.saturating_sub(step)
            };
            (Some(old), absent_near(model, around, 0))
        }
        // Far.
        3 | 4 => (
            Some(present(rng)),
            absent_near(model, rng.random_range(0..200_000), 0),
        ),
        // Onto a higher level, and off one.
        5 => (
            Some(present(rng)),
            absent_near(model, rng.random_range(0..200_000), 2),
        ),
        6 => {
            let old = model
                .iter()
                .copied()
                .skip(rng.random_range(0..model.len()))
                .find(|n| level_of(&elem(*n)) >= 1)
                .unwrap_or(model[0]);
            (
                Some(old),
                absent_near(model, rng.random_range(0..200_000), 0),
            )
        }
        // A plain insert, an absent `old`, a present `new`, `old == new`.
        7 => (None, absent_near(model, rng.random_range(0..200_000), 0)),
        8 => {
            let old = absent_near(model, rng.random_range(0..200_000), 0);
            let new = absent_near(model, rng.random_range(0..200_000), 0);
            (Some(old), new)
        }
        _ => {
            let old = present(rng);
            let new = if rng.random_bool(0.5) {
                old
            } else {
                present(rng)
            };
            (Some(old), new)
        }
    }
}

/// Applies a move to the sorted model; returns the rank of `new` after.
fn apply(model: &mut Vec<u64>, (old, new): (Option<u64>, u64)) -> u64 {
    if let Some(Ok(p)) = old.map(|o| model.binary_search(&o)) {
        model.remove(p);
    }
    match model.binary_search(&new) {
        Ok(p) => p as u64,
        Err(p) => {
            model.insert(p, new);
            p as u64
        }
    }
}

#[tokio::test]
async fn replace_writes_what_remove_then_insert_write() {
    let (_dir, db) = store();
    for seed in 0..4u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut model: Vec<u64> = (0..3_000).map(|_| rng.random_range(0..200_000)).collect();
        model.sort_unstable();
        model.dedup();
        let ours = set_at(&[0x15, seed as u8, 0]);
        let theirs = set_at(&[0x15, seed as u8, 1]);
        for set in [&ours, &theirs] {
            set.bulk_build(&db, model.iter().map(|n| elem(*n)))
                .await
                .expect("bulk build");
        }
        for round in 0..40 {
            // One move per transaction, then several in one (later ones
            // read the earlier ones' writes).
            let batch = if round % 4 == 3 {
                rng.random_range(2..6)
            } else {
                1
            };
            let mut moves: Vec<Move> = Vec::new();
            let mut expected = Vec::new();
            for _ in 0..batch {
                let m = random_move(&mut rng, &model);
                moves.push((m.0.map(elem), elem(m.1)));
                expected.push(apply(&mut model, m));
            }
            let got = by_replace(&db, &ours, &moves).await;
            assert_eq!(got, expected, "seed {seed} round {round}: {moves:?}");
            assert_eq!(by_parts(&db, &theirs, &moves).await, expected);
            assert_eq!(
                dump(&db, &ours).await,
                dump(&db, &theirs).await,
                "seed {seed} round {round}: {moves:?}"
            );
        }
        let tx = db.create_transaction().expect("tx");
        assert_eq!(
            ours.count(&tx, true).await.expect("count"),
            model.len() as u64
        );
    }
}

#[tokio::test]
async fn replaces_far_apart_commit_together() {
    let (_dir, db) = store();
    let set = set_at(b"\x15far");
    let n = 100_000u64;
    set.bulk_build(&db, (0..n).map(|i| elem(4 * i)))
        .await
        .expect("bulk build");
    // Each moves one level-0 element a few places: near the start and near
    // the end.
    let level0 = |from: u64| {
        (from..)
            .map(|i| 4 * i)
            .find(|e| level_of(&elem(*e)) == 0)
            .expect("a level-0 element")
    };
    let model: Vec<u64> = Vec::new();
    let (low, high) = (level0(10), level0(n - 100));
    let (low_to, high_to) = (
        absent_near(&model, low + 9, 0),
        absent_near(&model, high + 9, 0),
    );
    let a = db.create_transaction().expect("tx");
    let b = db.create_transaction().expect("tx");
    set.replace(&a, Some(&elem(low)), &elem(low_to))
        .await
        .expect("replace");
    set.replace(&b, Some(&elem(high)), &elem(high_to))
        .await
        .expect("replace");
    a.commit().await.expect("first move commits");
    b.commit().await.expect("second move commits, no conflict");
    let tx = db.create_transaction().expect("tx");
    assert_eq!(set.count(&tx, true).await.expect("count"), n);
    // Below `high + 9`: the multiples of 4 up to `high + 8`, less `low`
    // and `high`, plus `low + 9`.
    assert_eq!(
        set.rank(&tx, &elem(high_to), true).await.expect("rank"),
        Some(high / 4 + 2)
    );
}

#[tokio::test]
async fn a_replace_conflicts_with_an_insert_that_splits_its_span() {
    let (_dir, db) = store();
    let set = set_at(b"\x15split");
    let mut model: Vec<u64> = (0..10_000u64).map(|i| 4 * i).collect();
    set.bulk_build(&db, model.iter().map(|n| elem(*n)))
        .await
        .expect("bulk build");
    // `splitter` lands on level 1 between `old` and `new`, both on level 0
    // with no level-1 key between them: the move shares its level-1
    // predecessor, so it reads and writes nothing from level 1 up.
    let (old, splitter, new) = (1..)
        .map(|i| (4 * i, 4 * i + 1, 4 * i + 2))
        .find(|(old, splitter, new)| {
            level_of(&elem(*old)) == 0
                && level_of(&elem(*splitter)) >= 1
                && level_of(&elem(*new)) == 0
        })
        .expect("such a triple");
    let a = db.create_transaction().expect("tx");
    let b = db.create_transaction().expect("tx");
    set.replace(&a, Some(&elem(old)), &elem(new))
        .await
        .expect("replace");
    assert!(set.insert(&b, &elem(splitter)).await.expect("insert"));
    b.commit().await.expect("the split commits first");
    assert!(matches!(a.commit().await, Err(kv::Error::Conflict)));
    // Retried, the move commits and the structure is exact.
    by_replace(&db, &set, &[(Some(elem(old)), elem(new))]).await;
    apply(&mut model, (None, splitter));
    apply(&mut model, (Some(old), new));
    let reference = set_at(b"\x15reference");
    reference
        .bulk_build(&db, model.iter().map(|n| elem(*n)))
        .await
        .expect("bulk build");
    assert_eq!(dump(&db, &set).await, dump(&db, &reference).await);
}
