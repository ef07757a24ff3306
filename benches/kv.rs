//! Benchmarks of the `kv` interface, written against [`myelin::kv::Database`] so
//! every backend is measured the same way. By default they open the embedded backend
//! (durable commits) in a temporary directory; see `docs/performance.md` for the
//! targets, the machine and the results.
//!
//! Groups:
//! - `kv/get_snapshot`: snapshot point reads of a 10,000-key store, 1 and 2
//!   concurrent readers (a transaction serves 1,000 reads, so creating it is
//!   amortised but counted);
//! - `kv/get_range_1000`: one snapshot range read of 1,000 keys per iteration,
//!   throughput in keys;
//! - `kv/commit`: single-key transactions (100-byte value, fresh key) through
//!   `Database::run`, with 1, 16, 64 and 256 concurrent writers;
//! - `kv/atomic_add_contended`: 64 writers adding to one counter key.
//!
//! Run: `cargo bench --bench kv` (add `-- <filter>` to select). To measure
//! FoundationDB the same way: `MYELIN_BENCH_BACKEND=fdb FDB_CLUSTER_FILE=<path>
//! cargo bench --features fdb --bench kv`.

// A benchmark times what it measures (`iter_custom`): it owns its clock.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use myelin::kv::{self, MutationType, RangeOption};
use tokio::runtime::Runtime;

/// Keys preloaded for the read benchmarks.
const READ_KEYS: u32 = 10_000;
/// Reads served by one transaction in the point-read benchmark.
const READS_PER_TX: u64 = 1_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The store under benchmark and the prefix every benchmark key starts with.
struct Store {
    db: kv::Database,
    prefix: Vec<u8>,
    /// The embedded store's temporary directory, removed on drop.
    _dir: Option<tempfile::TempDir>,
}

impl Store {
    fn key(&self, suffix: &str) -> Vec<u8> {
        [self.prefix.as_slice(), suffix.as_bytes()].concat()
    }

    /// Removes every benchmark key (on a shared cluster; a no-op cost otherwise).
    async fn clear(&self) {
        let range = RangeOption::prefix(&self.prefix);
        self.db
            .run(|tx, _| {
                let (b, e) = (range.begin.key.clone(), range.end.key.clone());
                async move {
                    tx.clear_range(&b, &e);
                    Ok::<_, kv::Error>(())
                }
            })
            .await
            .expect("clear benchmark keys");
    }
}

/// The store to measure: FoundationDB when built with `--features fdb` and
/// `MYELIN_BENCH_BACKEND=fdb` (cluster file from `FDB_CLUSTER_FILE`, keys under
/// a `\xfdmyelin-bench/` prefix cleared afterwards), else a fresh embedded store
/// in a temporary directory.
fn open_store() -> Store {
    #[cfg(feature = "fdb")]
    if std::env::var("MYELIN_BENCH_BACKEND").as_deref() == Ok("fdb") {
        let cluster = std::env::var_os("FDB_CLUSTER_FILE").map(std::path::PathBuf::from);
        let db = kv::fdb::Database::open(cluster.as_deref()).expect("open FoundationDB");
        return Store {
            db: db.into(),
            prefix: b"\xfdmyelin-bench/".to_vec(),
            _dir: None,
        };
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let db = kv::embedded::Database::open(dir.path(), Default::default()).expect("open store");
    Store {
        db: db.into(),
        prefix: b"bench/".to_vec(),
        _dir: Some(dir),
    }
}

fn read_key(prefix: &[u8], i: u32) -> Vec<u8> {
    [prefix, format!("read/{i:08}").as_bytes()].concat()
}

async fn preload(store: &Store) {
    let prefix = store.prefix.as_slice();
    for chunk in (0..READ_KEYS).collect::<Vec<_>>().chunks(1_000) {
        store
            .db
            .run(|tx, _| async move {
                for &i in chunk {
                    tx.set(&read_key(prefix, i), &[b'v'; 100]);
                }
                Ok::<_, kv::Error>(())
            })
            .await
            .expect("preload");
    }
}

/// `readers` tasks doing `iters` snapshot point reads in all, a fresh
/// transaction every [`READS_PER_TX`] reads.
async fn read_round(store: &Store, readers: u64, iters: u64) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..readers)
        .map(|r| {
            let (db, prefix) = (store.db.clone(), store.prefix.clone());
            let share = iters / readers + u64::from(r < iters % readers);
            tokio::spawn(async move {
                let mut done = 0u64;
                let mut i = r as u32 * 7919;
                while done < share {
                    let tx = db.create_transaction().expect("tx");
                    let n = READS_PER_TX.min(share - done);
                    for _ in 0..n {
                        i = (i + 7919) % READ_KEYS;
                        let v = tx.get(&read_key(&prefix, i), true).await.expect("get");
                        assert!(v.is_some());
                    }
                    done += n;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("reader");
    }
    start.elapsed()
}

fn bench_reads(c: &mut Criterion) {
    let rt = runtime();
    let store = open_store();
    rt.block_on(preload(&store));

    let mut group = c.benchmark_group("kv/get_snapshot");
    group.throughput(Throughput::Elements(1));
    for readers in [1u64, 2] {
        group.bench_function(format!("readers_{readers}"), |b| {
            b.to_async(&rt)
                .iter_custom(|iters| read_round(&store, readers, iters))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("kv/get_range_1000");
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("snapshot", |b| {
        b.to_async(&rt).iter(|| async {
            let tx = store.db.create_transaction().expect("tx");
            let range = RangeOption::new(
                read_key(&store.prefix, 1_000),
                read_key(&store.prefix, 2_000),
            );
            let kvs = tx.get_range_all(range, true).await.expect("range");
            assert_eq!(kvs.len(), 1_000);
        })
    });
    group.finish();
    rt.block_on(store.clear());
}

/// Commits `iters` single-key transactions (fresh key, 100-byte value) from
/// `writers` concurrent tasks and returns the elapsed time.
async fn commit_round(store: &Store, writers: u64, iters: u64, next: &Arc<AtomicU64>) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (db, prefix, next) = (store.db.clone(), store.prefix.clone(), next.clone());
            let share = iters / writers + u64::from(w < iters % writers);
            tokio::spawn(async move {
                for _ in 0..share {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let key = [prefix.as_slice(), format!("commit/{n:012}").as_bytes()].concat();
                    db.run(|tx, _| {
                        let key = key.clone();
                        async move {
                            tx.set(&key, &[b'c'; 100]);
                            Ok::<_, kv::Error>(())
                        }
                    })
                    .await
                    .expect("commit");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    start.elapsed()
}

/// `writers` tasks each adding 1 to one counter key, `iters` adds in all.
async fn add_round(store: &Store, writers: u64, iters: u64) -> Duration {
    let start = Instant::now();
    let counter = store.key("counter");
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (db, counter) = (store.db.clone(), counter.clone());
            let share = iters / writers + u64::from(w < iters % writers);
            tokio::spawn(async move {
                for _ in 0..share {
                    db.run(|tx, _| {
                        let counter = counter.clone();
                        async move {
                            tx.atomic_op(&counter, &1u64.to_le_bytes(), MutationType::Add);
                            Ok::<_, kv::Error>(())
                        }
                    })
                    .await
                    .expect("atomic add");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("adder");
    }
    start.elapsed()
}

fn bench_commits(c: &mut Criterion) {
    let rt = runtime();
    let store = open_store();
    let next = Arc::new(AtomicU64::new(0));

    let mut group = c.benchmark_group("kv/commit");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    for writers in [1u64, 16, 64, 256] {
        group.bench_function(format!("writers_{writers}"), |b| {
            b.to_async(&rt)
                .iter_custom(|iters| commit_round(&store, writers, iters, &next))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("kv/atomic_add_contended");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("writers_64", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| add_round(&store, 64, iters))
    });
    group.finish();
    rt.block_on(store.clear());
}

/// Runs every group (what `criterion_main!` expands to, written out so the
/// crate has no undocumented public function).
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench_reads(&mut criterion);
    bench_commits(&mut criterion);
    criterion.final_summary();
}
