//! Leaderboard records (`db::leaderboard`) on the embedded backend: every
//! operator on ascending and descending boards, ties, delete, a retried
//! submission, reset windows under an injected time, and ranks, pages and
//! around-owner reads equal to a brute-force sort of random boards.

use std::collections::BTreeMap;

use foundationdb_tuple::Subspace;
use myelin::db::leaderboard::{
    Board, Cursor, Leaderboard, LeaderboardError, Operator, Record, Reset, Sort, Submission,
};
use myelin::kv::{Database, embedded};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn store() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = embedded::Database::open(dir.path(), Default::default()).expect("open store");
    (dir, store.into())
}

fn board(name: &[u8], sort: Sort, operator: Operator, reset: Option<&str>) -> Leaderboard {
    let root = Subspace::from_bytes(name.to_vec());
    Leaderboard::new(
        Board {
            sort,
            operator,
            reset: reset.map(|r| Reset::parse(r).expect("cron")),
        },
        root.subspace(&(0i64,)),
        root.subspace(&(1i64,)),
    )
}

/// Submits in its own transaction, with a fresh submission ID.
async fn submit(
    db: &Database,
    lb: &Leaderboard,
    owner: &str,
    score: i64,
    subscore: i64,
    operator: Option<Operator>,
    now_ms: u64,
) -> Record {
    let id = myelin::random::Random::os().range(0..u64::MAX);
    db.run(|tx, _| async move {
        let s = Submission {
            owner,
            score,
            subscore,
            metadata: None,
            operator,
            id,
            max_num_score: None,
        };
        lb.submit(&tx, &s, now_ms).await
    })
    .await
    .expect("submit")
}

async fn get(db: &Database, lb: &Leaderboard, expiry_ms: u64, owner: &str) -> Option<Record> {
    let tx = db.create_transaction().expect("leaderboard test step");
    lb.get(&tx, expiry_ms, owner).await.expect("get")
}

#[tokio::test]
async fn every_operator_on_both_directions() {
    let (_dir, db) = store();
    // (sort, operator, submissions, scores after each).
    type Case = (Sort, Operator, &'static [(i64, i64)], &'static [(i64, i64)]);
    let cases: &[Case] = &[
        (
            Sort::Desc,
            Operator::Best,
            &[(10, 0), (5, 9), (10, 1), (15, 0), (15, 0)],
            &[(10, 0), (10, 0), (10, 1), (15, 0), (15, 0)],
        ),
        (
            Sort::Asc,
            Operator::Best,
            &[(10, 5), (15, 0), (10, 4), (3, 9), (3, 10)],
            &[(10, 5), (10, 5), (10, 4), (3, 9), (3, 9)],
        ),
        (
            Sort::Desc,
            Operator::Set,
            &[(10, 1), (5, 0), (7, 7)],
            &[(10, 1), (5, 0), (7, 7)],
        ),
        (
            Sort::Asc,
            Operator::Set,
            &[(10, 1), (50, 0), (-7, 2)],
            &[(10, 1), (50, 0), (-7, 2)],
        ),
        (
            Sort::Desc,
            Operator::Incr,
            &[(10, 1), (5, 1), (-3, 0)],
            &[(10, 1), (15, 2), (12, 2)],
        ),
        (
            Sort::Asc,
            Operator::Incr,
            &[(1, 0), (i64::MAX, 0)],
            &[(1, 0), (i64::MAX, 0)],
        ),
        (
            Sort::Desc,
            Operator::Decr,
            &[(3, 1), (-10, -4), (4, 1), (20, 20)],
            &[(0, 0), (10, 4), (6, 3), (0, 0)],
        ),
        (
            Sort::Asc,
            Operator::Decr,
            &[(-8, 0), (5, 0), (5, 0)],
            &[(8, 0), (3, 0), (0, 0)],
        ),
    ];
    for (i, (sort, op, submitted, expected)) in cases.iter().enumerate() {
        let lb = board(&[0x15, i as u8], *sort, *op, None);
        for (n, ((score, sub), want)) in submitted.iter().zip(expected.iter()).enumerate() {
            let got = submit(&db, &lb, "@p:x", *score, *sub, None, 1_000 + n as u64).await;
            assert_eq!(
                (got.entry.score, got.entry.subscore),
                *want,
                "{sort:?} {op:?} step {n}"
            );
            assert_eq!(got.entry.num_score, n as u64 + 1, "every submission counts");
            assert_eq!(got.rank, 1);
            assert_eq!(
                (got.entry.create_ms, got.entry.update_ms),
                (1_000, 1_000 + n as u64)
            );
        }
    }
    // A submission may name its own operator.
    let lb = board(b"\x15override", Sort::Desc, Operator::Best, None);
    submit(&db, &lb, "@p:x", 10, 0, None, 1).await;
    let got = submit(&db, &lb, "@p:x", 4, 0, Some(Operator::Incr), 2).await;
    assert_eq!(got.entry.score, 14);
}

#[tokio::test]
async fn ties_go_to_the_subscore_then_the_owner() {
    let (_dir, db) = store();
    for sort in [Sort::Asc, Sort::Desc] {
        let lb = board(&[0x16, sort as u8], sort, Operator::Set, None);
        for owner in ["@c:x", "@a:x", "@b:x"] {
            submit(&db, &lb, owner, 100, 5, None, 1).await;
        }
        let (better, worse) = match sort {
            Sort::Asc => (4, 6),
            Sort::Desc => (6, 4),
        };
        submit(&db, &lb, "@z:x", 100, better, None, 1).await;
        submit(&db, &lb, "@0:x", 100, worse, None, 1).await;
        let tx = db.create_transaction().expect("leaderboard test step");
        let page = lb
            .page(&tx, 0, None, 10)
            .await
            .expect("leaderboard test step");
        let order: Vec<(&str, u64)> = page
            .records
            .iter()
            .map(|r| (r.owner.as_str(), r.rank))
            .collect();
        assert_eq!(
            order,
            [
                ("@z:x", 1),
                ("@a:x", 2),
                ("@b:x", 3),
                ("@c:x", 4),
                ("@0:x", 5)
            ],
            "{sort:?}"
        );
    }
}

#[tokio::test]
async fn delete_moves_those_below_up_and_runs_twice_harmlessly() {
    let (_dir, db) = store();
    let lb = board(b"\x15del", Sort::Desc, Operator::Best, None);
    for (owner, score) in [("@a:x", 30), ("@b:x", 20), ("@c:x", 10)] {
        submit(&db, &lb, owner, score, 0, None, 1).await;
    }
    assert_eq!(
        get(&db, &lb, 0, "@c:x")
            .await
            .expect("leaderboard test step")
            .rank,
        3
    );
    let deleted = |owner: &'static str| {
        let (db, lb) = (db.clone(), lb.clone());
        async move {
            db.run(|tx, _| {
                let lb = &lb;
                async move { lb.delete(&tx, owner, 2).await }
            })
            .await
            .expect("leaderboard test step")
        }
    };
    assert!(deleted("@a:x").await);
    assert!(!deleted("@a:x").await, "a second delete finds nothing");
    assert_eq!(get(&db, &lb, 0, "@a:x").await, None);
    assert_eq!(
        get(&db, &lb, 0, "@b:x")
            .await
            .expect("leaderboard test step")
            .rank,
        1
    );
    assert_eq!(
        get(&db, &lb, 0, "@c:x")
            .await
            .expect("leaderboard test step")
            .rank,
        2
    );
    let tx = db.create_transaction().expect("leaderboard test step");
    assert_eq!(lb.count(&tx, 0).await.expect("leaderboard test step"), 2);
    // A new record after delete starts over.
    let again = submit(&db, &lb, "@a:x", 5, 0, None, 3).await;
    assert_eq!(
        (again.entry.score, again.entry.num_score, again.rank),
        (5, 1, 3)
    );
}

#[tokio::test]
async fn a_submission_run_twice_applies_once() {
    let (_dir, db) = store();
    let lb = board(b"\x15twice", Sort::Desc, Operator::Incr, None);
    let s = Submission {
        owner: "@p:x",
        score: 7,
        subscore: 0,
        metadata: Some(r#"{"level":3}"#),
        operator: None,
        id: 99,
        max_num_score: None,
    };
    // Two attempts of one submission, as after commit_unknown_result.
    for _ in 0..2 {
        let got = db
            .run(|tx, _| {
                let (lb, s) = (&lb, &s);
                async move { lb.submit(&tx, s, 5).await }
            })
            .await
            .expect("leaderboard test step");
        assert_eq!((got.entry.score, got.entry.num_score), (7, 1));
        assert_eq!(got.entry.metadata, r#"{"level":3}"#);
    }
    let next = submit(&db, &lb, "@p:x", 1, 0, None, 6).await;
    assert_eq!((next.entry.score, next.entry.num_score), (8, 2));
    assert_eq!(
        next.entry.metadata, r#"{"level":3}"#,
        "kept when none is given"
    );
}

#[tokio::test]
async fn bad_input_is_refused() {
    let (_dir, db) = store();
    let lb = board(b"\x15bad", Sort::Desc, Operator::Best, None);
    let tx = db.create_transaction().expect("leaderboard test step");
    assert!(matches!(
        lb.get(&tx, 0, "").await,
        Err(LeaderboardError::BadOwner)
    ));
    assert!(matches!(
        lb.get(&tx, 0, &"x".repeat(256)).await,
        Err(LeaderboardError::BadOwner)
    ));
    assert!(matches!(
        lb.page(&tx, 0, None, 0).await,
        Err(LeaderboardError::BadLimit)
    ));
    assert!(matches!(
        lb.page(&tx, 0, None, 1001).await,
        Err(LeaderboardError::BadLimit)
    ));
    assert_eq!(
        lb.page(&tx, 0, None, 5)
            .await
            .expect("leaderboard test step")
            .records,
        vec![]
    );
    assert_eq!(
        lb.around(&tx, 0, "@nobody:x", 5)
            .await
            .expect("leaderboard test step"),
        None
    );
}

#[tokio::test]
async fn a_reset_opens_a_new_window_and_the_old_one_reads_back_unchanged() {
    let (_dir, db) = store();
    let lb = board(b"\x15daily", Sort::Desc, Operator::Incr, Some("0 0 * * *"));
    let day_ms = 86_400_000;
    let monday = 20_000 * day_ms;
    let first = submit(&db, &lb, "@a:x", 10, 0, None, monday + 5).await;
    submit(&db, &lb, "@b:x", 20, 0, None, monday + 6).await;
    assert_eq!(first.expiry_ms, monday + day_ms);
    // The next day: a new window, the increments start from nothing.
    let tuesday = submit(&db, &lb, "@a:x", 1, 0, None, monday + day_ms).await;
    assert_eq!(tuesday.expiry_ms, monday + 2 * day_ms);
    assert_eq!(
        (tuesday.entry.score, tuesday.entry.num_score, tuesday.rank),
        (1, 1, 1)
    );
    let old = get(&db, &lb, monday + day_ms, "@a:x")
        .await
        .expect("leaderboard test step");
    assert_eq!((old.entry.score, old.entry.num_score, old.rank), (10, 1, 2));
    let tx = db.create_transaction().expect("leaderboard test step");
    assert_eq!(
        lb.count(&tx, monday + day_ms)
            .await
            .expect("leaderboard test step"),
        2
    );
    assert_eq!(
        lb.count(&tx, monday + 2 * day_ms)
            .await
            .expect("leaderboard test step"),
        1
    );
}

/// The brute-force order of a model board: (owner, score, subscore, num_score).
fn brute_force(
    sort: Sort,
    model: &BTreeMap<String, (i64, i64, u64)>,
) -> Vec<(String, i64, i64, u64)> {
    let mut all: Vec<_> = model
        .iter()
        .map(|(o, (s, ss, n))| (o.clone(), *s, *ss, *n))
        .collect();
    all.sort_by(|a, b| {
        let by_score = match sort {
            Sort::Asc => (a.1, a.2).cmp(&(b.1, b.2)),
            Sort::Desc => (b.1, b.2).cmp(&(a.1, a.2)),
        };
        by_score.then_with(|| a.0.cmp(&b.0))
    });
    all
}

#[tokio::test]
async fn ranks_equal_a_brute_force_sort_of_random_boards() {
    let (_dir, db) = store();
    for (seed, sort) in [(1u64, Sort::Desc), (2, Sort::Asc)] {
        let mut rng = StdRng::seed_from_u64(seed);
        let lb = board(&[0x17, seed as u8], sort, Operator::Best, None);
        let mut model: BTreeMap<String, (i64, i64, u64)> = BTreeMap::new();
        // 1,500 submissions by 600 owners, 50 to a transaction; scores
        // from a narrow range so ties are common.
        for _ in 0..30 {
            let batch: Vec<(String, i64, i64, Operator)> = (0..50)
                .map(|_| {
                    let op = [
                        Operator::Best,
                        Operator::Set,
                        Operator::Incr,
                        Operator::Decr,
                    ][rng.random_range(0..4)];
                    (
                        format!("@u{}:x", rng.random_range(0..600)),
                        rng.random_range(-20..40),
                        rng.random_range(0..3),
                        op,
                    )
                })
                .collect();
            let ids: Vec<u64> = (0..batch.len()).map(|_| rng.random()).collect();
            db.run(|tx, _| {
                let (lb, batch, ids) = (&lb, &batch, &ids);
                async move {
                    for ((owner, score, subscore, op), id) in batch.iter().zip(ids) {
                        let s = Submission {
                            owner,
                            score: *score,
                            subscore: *subscore,
                            metadata: None,
                            operator: Some(*op),
                            id: *id,
                            max_num_score: None,
                        };
                        lb.submit(&tx, &s, 1).await?;
                    }
                    Ok::<_, LeaderboardError>(())
                }
            })
            .await
            .expect("leaderboard test step");
            for (owner, score, subscore, op) in batch {
                let old = model.get(&owner).copied();
                let base = old.map_or((0, 0), |(s, ss, _)| (s, ss));
                let better = |a: (i64, i64), b: (i64, i64)| match sort {
                    Sort::Asc => a < b,
                    Sort::Desc => a > b,
                };
                let new = match op {
                    Operator::Best if old.is_some() && !better((score, subscore), base) => base,
                    Operator::Best | Operator::Set => (score, subscore),
                    Operator::Incr => (base.0 + score, base.1 + subscore),
                    Operator::Decr => ((base.0 - score).max(0), (base.1 - subscore).max(0)),
                };
                let n = old.map_or(0, |(_, _, n)| n) + 1;
                model.insert(owner, (new.0, new.1, n));
            }
            // Delete a few.
            let victim = format!("@u{}:x", rng.random_range(0..600));
            let deleted = db
                .run(|tx, _| {
                    let (lb, victim) = (&lb, &victim);
                    async move { lb.delete(&tx, victim, 1).await }
                })
                .await
                .expect("leaderboard test step");
            assert_eq!(deleted, model.remove(&victim).is_some());
        }
        let expected = brute_force(sort, &model);
        let tx = db.create_transaction().expect("leaderboard test step");
        // Forward through every page.
        let mut seen = Vec::new();
        let mut cursor: Option<Cursor> = None;
        let last_prev = loop {
            let page = lb
                .page(&tx, 0, cursor.as_ref(), 97)
                .await
                .expect("leaderboard test step");
            seen.extend(page.records);
            match page.next {
                Some(next) => {
                    cursor = Some(Cursor::decode(&next.encode()).expect("leaderboard test step"))
                }
                None => break page.prev,
            }
        };
        let got: Vec<(String, i64, i64, u64)> = seen
            .iter()
            .map(|r| {
                (
                    r.owner.clone(),
                    r.entry.score,
                    r.entry.subscore,
                    r.entry.num_score,
                )
            })
            .collect();
        assert_eq!(got, expected, "{sort:?}");
        let ranks: Vec<u64> = seen.iter().map(|r| r.rank).collect();
        assert_eq!(ranks, (1..=expected.len() as u64).collect::<Vec<_>>());
        // Backward from the last page with prev cursors: every record
        // before it, in order, with the same ranks.
        let last_len = seen.len() % 97;
        let last_len = if last_len == 0 { 97 } else { last_len };
        let mut back: Vec<Record> = Vec::new();
        let mut cursor = last_prev;
        while let Some(c) = cursor {
            let page = lb
                .page(&tx, 0, Some(&c), 97)
                .await
                .expect("leaderboard test step");
            let mut records = page.records;
            records.extend(back);
            back = records;
            cursor = page.prev;
        }
        assert_eq!(back[..], seen[..seen.len() - last_len]);
        // Each owner's rank, and around-owner pages.
        for (i, (owner, ..)) in expected.iter().enumerate() {
            if i % 7 != 0 {
                continue;
            }
            let record = lb
                .get(&tx, 0, owner)
                .await
                .expect("leaderboard test step")
                .expect("leaderboard test step");
            assert_eq!(record.rank, i as u64 + 1);
            let around = lb
                .around(&tx, 0, owner, 11)
                .await
                .expect("leaderboard test step")
                .expect("leaderboard test step");
            let want_start = i.saturating_sub(5).min(expected.len().saturating_sub(11));
            let owners: Vec<&str> = around.iter().map(|r| r.owner.as_str()).collect();
            let want: Vec<&str> = expected[want_start..(want_start + 11).min(expected.len())]
                .iter()
                .map(|e| e.0.as_str())
                .collect();
            assert_eq!(owners, want);
            assert_eq!(around[0].rank, want_start as u64 + 1);
        }
    }
}
