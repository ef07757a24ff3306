//! Benchmarks of the ranked set layer (`kv::ranked_set`) on the embedded
//! backend (durable commits), at 10^3, 10^4, 10^5 and 10^6 elements (each
//! set bulk-built from 8-byte big-endian elements `0, 4, 8, ...`).
//!
//! Groups:
//! - `ranked_set/insert/{n}`: one insert of a fresh element per transaction
//!   through `Database::run`, commit included, one writer;
//! - `ranked_set/insert_32_writers/{n}`: the same with 32 concurrent
//!   writers inserting far-apart elements (throughput in inserts);
//! - `ranked_set/rank/{n}`, `ranked_set/nth/{n}`: one query of a random
//!   position in a fresh read-only transaction (snapshot reads, no commit).
//!
//! Run: `cargo bench --bench ranked_set` (add `-- <filter>` to select).
//! Results, machine and date: `docs/performance.md`, "Ranked set".

// A benchmark draws its own random positions: it owns its randomness.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use foundationdb_tuple::Subspace;
use myelin::kv::ranked_set::{RankedSet, RankedSetError};
use myelin::kv::{self, embedded};
use rand::Rng;
use tokio::runtime::Runtime;

const SIZES: [u64; 4] = [1_000, 10_000, 100_000, 1_000_000];
const WRITERS: u64 = 32;

fn elem(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// An element absent from the sets: `elem(near)` followed by `suffix`.
fn fresh(near: u64, suffix: u64) -> Vec<u8> {
    [elem(near), elem(suffix)].concat()
}

/// A store holding one bulk-built set per size.
struct Sets {
    db: kv::Database,
    sets: Vec<(u64, RankedSet)>,
    _dir: tempfile::TempDir,
}

fn build(rt: &Runtime) -> Sets {
    let dir = tempfile::tempdir().expect("tempdir");
    let db: kv::Database = embedded::Database::open(dir.path(), Default::default())
        .expect("open store")
        .into();
    let sets = rt.block_on(async {
        let mut sets = Vec::new();
        for (i, n) in SIZES.iter().enumerate() {
            let set = RankedSet::new(Subspace::from_bytes(vec![0x15, i as u8])).expect("set");
            set.bulk_build(&db, (0..*n).map(|k| elem(4 * k)))
                .await
                .expect("bulk build");
            sets.push((*n, set));
        }
        sets
    });
    Sets {
        db,
        sets,
        _dir: dir,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let sets = build(&rt);
    let db = &sets.db;
    let mut group = c.benchmark_group("ranked_set");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    for (n, set) in &sets.sets {
        // Fresh elements: a set element followed by a unique suffix sorts
        // just after it, spread over the whole set.
        let next = AtomicU64::new(0);
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("insert", n), |b| {
            b.to_async(&rt).iter(|| async {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let e = fresh(4 * ((97 * k) % n), k);
                db.run(|tx, _| {
                    let e = &e;
                    async move { set.insert(&tx, e).await }
                })
                .await
                .expect("insert")
            })
        });
        group.throughput(Throughput::Elements(WRITERS));
        let base = Arc::new(AtomicU64::new(0));
        group.bench_function(BenchmarkId::new("insert_32_writers", n), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (db, set, base) = (db.clone(), set.clone(), base.clone());
                async move {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let round = base.fetch_add(1, Ordering::Relaxed);
                        let tasks: Vec<_> = (0..WRITERS)
                            .map(|w| {
                                let (db, set) = (db.clone(), set.clone());
                                // Writer w inserts in its own 1/32 of the set.
                                let at = w * n / WRITERS + round % (n / WRITERS);
                                let e = fresh(4 * at, u64::MAX - round * WRITERS - w);
                                tokio::spawn(async move {
                                    db.run(|tx, _| {
                                        let (set, e) = (&set, &e);
                                        async move { set.insert(&tx, e).await }
                                    })
                                    .await
                                })
                            })
                            .collect();
                        for t in tasks {
                            let _: Result<bool, RankedSetError> = t.await.expect("task");
                        }
                    }
                    started.elapsed()
                }
            })
        });
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("rank", n), |b| {
            b.to_async(&rt).iter(|| async {
                let k = rand::rng().random_range(0..*n);
                let tx = db.create_transaction().expect("tx");
                set.rank(&tx, &elem(4 * k), true).await.expect("rank")
            })
        });
        group.bench_function(BenchmarkId::new("nth", n), |b| {
            b.to_async(&rt).iter(|| async {
                let k = rand::rng().random_range(0..*n);
                let tx = db.create_transaction().expect("tx");
                set.nth(&tx, k, true).await.expect("nth")
            })
        });
    }
    group.finish();
}

/// Runs the benches (what `criterion_main!` expands to, written out so the
/// crate has no undocumented public function).
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
