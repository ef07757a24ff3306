//! Benchmarks of the `game` database (issue 17) and of leaderboard records
//! (`db::leaderboard`, issue 18) at the db level, on the embedded backend
//! with durable commits, each store in a temporary directory.
//!
//! Groups:
//! - `game/trade`: open + accept of a trade between a random pair of
//!   1,000 players (A gives 1 `gold` for 1 `gems`; two transactions);
//! - `game/wallet_credit`: one admin credit of 1 `gold` to one hot user
//!   (atomic add, with a fresh idempotency key as the service makes);
//!   `game/wallet_credit_32_writers`: the same from 32 concurrent writers
//!   (throughput in credits);
//! - `game/storage_write`: one unconditional one-object write;
//! - `leaderboard/submit_10k`, `leaderboard/submit_10k_32_writers`: a
//!   `set` of a random score for a random one of 10,000 players (every
//!   write moves the record in the ranked set), one and 32 writers;
//! - `leaderboard/rank_1m`, `leaderboard/around_1m`: the rank of a random
//!   owner, and the 20 records around one, on a board of 1,000,000 records
//!   (built once per run by 1,000-record transactions; the time it took is
//!   printed), in a fresh read transaction (snapshot reads);
//! - `leaderboard/fresh_open_first_rank_1m`: opening that store anew and
//!   answering one rank (issue 18: <= 200 ms; nothing is rebuilt).
//!
//! Run: `cargo bench --bench game` (add `-- <filter>`, e.g. `-- game/`).
//! Results, machine and date: `docs/performance.md`.

// A benchmark owns its stopwatch (building the board) and its randomness.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use foundationdb_tuple::Subspace;
use myelin::db::game::{
    Actor, GameDb, IdempotencyKey, MultiUpdate, ObjectId, ObjectWrite, TradeSide, VersionCheck,
    WalletUpdate,
};
use myelin::db::leaderboard::{Board, Leaderboard, Operator, Sort, Submission};
use myelin::kv::{self, embedded};
use rand::Rng;
use tokio::runtime::Runtime;

const PLAYERS: usize = 1_000;
const LB_PLAYERS: u64 = 10_000;
/// The large board's size: 1,000,000 records when measuring (`cargo bench`
/// passes `--bench`); 20,000 when `cargo test --all-targets` runs each
/// benchmark once as a smoke test, so CI's debug build does not spend
/// minutes filling a board it does not measure.
fn big_board_size() -> u64 {
    if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        20_000
    }
}
const WRITERS: u64 = 32;
const NOW_MS: u64 = 1_700_000_000_000;

fn player(i: usize) -> String {
    format!("@p{i}:bench")
}

fn admin() -> Actor {
    Actor {
        user_id: "@admin:bench".into(),
        admin: true,
    }
}

fn fresh_key(scope: &'static str) -> IdempotencyKey {
    IdempotencyKey {
        scope,
        key: format!("~{:032x}", rand::random::<u128>()),
    }
}

fn credit(user: &str, currency: &str, amount: i64) -> WalletUpdate {
    WalletUpdate {
        user_id: user.to_owned(),
        changeset: BTreeMap::from([(currency.to_owned(), amount)]),
        metadata: "{}".into(),
    }
}

fn side(currency: &str) -> TradeSide {
    TradeSide {
        items: Vec::new(),
        currency: BTreeMap::from([(currency.to_owned(), 1)]),
    }
}

async fn credit_once(game: &GameDb, user: &str) {
    let multi = MultiUpdate {
        wallets: vec![credit(user, "gold", 1)],
        ..MultiUpdate::default()
    };
    game.apply(&admin(), Some(&fresh_key("wallets")), &multi, NOW_MS)
        .await
        .expect("credit");
}

fn game_benches(c: &mut Criterion, rt: &Runtime) {
    let dir = tempfile::tempdir().expect("tempdir");
    let databases = rt
        .block_on(myelin::db::open_embedded_at(dir.path()))
        .expect("open store");
    let game = Arc::new(GameDb::new(&databases.game));
    rt.block_on(async {
        for chunk in (0..PLAYERS).collect::<Vec<_>>().chunks(50) {
            let wallets = chunk
                .iter()
                .flat_map(|&p| {
                    [
                        credit(&player(p), "gold", 1 << 40),
                        credit(&player(p), "gems", 1 << 40),
                    ]
                })
                .collect();
            let multi = MultiUpdate {
                wallets,
                ..MultiUpdate::default()
            };
            game.apply(&admin(), Some(&fresh_key("wallets")), &multi, NOW_MS)
                .await
                .expect("mint");
        }
    });
    let mut group = c.benchmark_group("game");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("trade", |b| {
        b.to_async(rt).iter(|| async {
            let (a, z) = {
                let mut rng = rand::rng();
                let a = rng.random_range(0..PLAYERS);
                (a, (a + rng.random_range(1..PLAYERS)) % PLAYERS)
            };
            let id = format!("{:032x}", rand::random::<u128>());
            game.open_trade(
                &id,
                &player(a),
                &player(z),
                &side("gold"),
                &side("gems"),
                NOW_MS,
            )
            .await
            .expect("open");
            game.accept_trade(&id, &player(z), NOW_MS)
                .await
                .expect("accept");
        })
    });
    group.bench_function("wallet_credit", |b| {
        b.to_async(rt).iter(|| credit_once(&game, "@hot:bench"))
    });
    group.throughput(Throughput::Elements(WRITERS));
    group.bench_function("wallet_credit_32_writers", |b| {
        b.to_async(rt).iter(|| async {
            let tasks: Vec<_> = (0..WRITERS)
                .map(|_| {
                    let game = game.clone();
                    tokio::spawn(async move { credit_once(&game, "@hot:bench").await })
                })
                .collect();
            for t in tasks {
                t.await.expect("writer");
            }
        })
    });
    group.throughput(Throughput::Elements(1));
    let n = AtomicU64::new(0);
    group.bench_function("storage_write", |b| {
        b.to_async(rt).iter(|| async {
            let i = n.fetch_add(1, Ordering::Relaxed);
            let owner = player(i as usize % PLAYERS);
            let write = ObjectWrite {
                id: ObjectId {
                    collection: "bench".into(),
                    key: format!("k{}", i % 100),
                    owner: Some(owner.clone()),
                },
                value: format!("{{\"n\":{i}}}"),
                version: VersionCheck::Any,
                permission_read: 1,
                permission_write: 1,
            };
            let actor = Actor {
                user_id: owner,
                admin: false,
            };
            game.write_objects(&actor, &[write], NOW_MS)
                .await
                .expect("write");
        })
    });
    group.finish();
}

fn board() -> Leaderboard {
    let root = Subspace::from_bytes(vec![0x16]);
    Leaderboard::new(
        Board {
            sort: Sort::Desc,
            operator: Operator::Set,
            reset: None,
        },
        root.subspace(&(0i64,)),
        root.subspace(&(1i64,)),
    )
}

fn owner(i: u64) -> String {
    format!("@p{i:07}:bench")
}

/// Submits a random score for each owner of `owners`, `batch` a transaction.
async fn fill(db: &kv::Database, lb: &Leaderboard, owners: std::ops::Range<u64>, batch: u64) {
    let mut start = owners.start;
    while start < owners.end {
        let end = (start + batch).min(owners.end);
        let scores: Vec<(String, i64, u64)> = {
            let mut rng = rand::rng();
            (start..end)
                .map(|i| (owner(i), rng.random_range(0..1_000_000_000), rng.random()))
                .collect()
        };
        let scores = &scores;
        db.run(|tx, _| async move {
            for (owner, score, id) in scores {
                let s = Submission {
                    owner,
                    score: *score,
                    subscore: 0,
                    metadata: None,
                    operator: None,
                    id: *id,
                    max_num_score: None,
                };
                lb.submit(&tx, &s, NOW_MS).await?;
            }
            Ok::<_, myelin::db::leaderboard::LeaderboardError>(())
        })
        .await
        .expect("fill");
        start = end;
    }
}

async fn submit_random(db: &kv::Database, lb: &Leaderboard, players: u64) {
    let (who, score, id) = {
        let mut rng = rand::rng();
        (
            owner(rng.random_range(0..players)),
            rng.random_range(0..1_000_000_000),
            rng.random(),
        )
    };
    let who = &who;
    db.run(|tx, _| async move {
        let s = Submission {
            owner: who,
            score,
            subscore: 0,
            metadata: None,
            operator: None,
            id,
            max_num_score: None,
        };
        lb.submit(&tx, &s, NOW_MS).await
    })
    .await
    .expect("submit");
}

fn open(path: &std::path::Path) -> kv::Database {
    embedded::Database::open(path, Default::default())
        .expect("open store")
        .into()
}

fn leaderboard_benches(c: &mut Criterion, rt: &Runtime) {
    let mut group = c.benchmark_group("leaderboard");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));

    let small_dir = tempfile::tempdir().expect("tempdir");
    let small = Arc::new(open(small_dir.path()));
    let lb = Arc::new(board());
    rt.block_on(fill(&small, &lb, 0..LB_PLAYERS, 250));
    group.bench_function("submit_10k", |b| {
        b.to_async(rt)
            .iter(|| submit_random(&small, &lb, LB_PLAYERS))
    });
    group.throughput(Throughput::Elements(WRITERS));
    group.bench_function("submit_10k_32_writers", |b| {
        b.to_async(rt).iter(|| async {
            let tasks: Vec<_> = (0..WRITERS)
                .map(|_| {
                    let (db, lb) = (small.clone(), lb.clone());
                    tokio::spawn(async move { submit_random(&db, &lb, LB_PLAYERS).await })
                })
                .collect();
            for t in tasks {
                t.await.expect("writer");
            }
        })
    });
    group.throughput(Throughput::Elements(1));

    let big_dir = tempfile::tempdir().expect("tempdir");
    let big = open(big_dir.path());
    let built = Instant::now();
    let records = big_board_size();
    rt.block_on(fill(&big, &lb, 0..records, 250));
    eprintln!(
        "leaderboard: built {records} records in {:.1} s",
        built.elapsed().as_secs_f64()
    );
    let random_owner = || owner(rand::rng().random_range(0..records));
    group.bench_function("rank_1m", |b| {
        b.to_async(rt).iter(|| async {
            let tx = big.create_transaction().expect("transaction");
            let r = lb.get(&tx, 0, &random_owner()).await.expect("rank");
            assert!(r.is_some_and(|r| (1..=records).contains(&r.rank)));
        })
    });
    group.bench_function("around_1m", |b| {
        b.to_async(rt).iter(|| async {
            let tx = big.create_transaction().expect("transaction");
            let page = lb
                .around(&tx, 0, &random_owner(), 20)
                .await
                .expect("around");
            assert_eq!(page.map(|p| p.len()), Some(20));
        })
    });
    drop(big);
    let (big_path, lb) = (big_dir.path(), &*lb);
    let random_owner = &random_owner;
    group.sample_size(10);
    group.bench_function("fresh_open_first_rank_1m", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let who = random_owner();
                let started = Instant::now();
                let db = open(big_path);
                let tx = db.create_transaction().expect("transaction");
                let r = lb.get(&tx, 0, &who).await.expect("rank");
                total += started.elapsed();
                assert!(r.is_some());
                drop(tx);
                drop(db);
            }
            total
        })
    });
    group.finish();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut c = Criterion::default().configure_from_args();
    game_benches(&mut c, &rt);
    leaderboard_benches(&mut c, &rt);
    c.final_summary();
}
