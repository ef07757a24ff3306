//! Throughput of `myelin backup` (issue 21 point 3; targets in
//! `docs/performance.md`: backup ≥ 100 MB/s, restore ≥ 50 MB/s).
//!
//! Builds an embedded store with every database opened and
//! `MYELIN_BENCH_BACKUP_MB` (default 300) MB of keys and values (30-byte
//! keys, 1,000-byte random values) written through `kv` transactions, then
//! times, once each: `backup::create` (snapshot read, chunk files, SHA-256,
//! fsync), `backup::verify` (every chunk read and hashed) and
//! `backup::restore` into an empty store (verify, then 2 MiB transactions, 8
//! in flight, then the version advance). MB are 10^6 bytes of keys plus
//! values; the operations are seconds long, so one run is the measurement
//! (criterion's repetitions would take minutes).
//!
//! Run: `cargo bench --bench backup` (release). `cargo test --bench backup`
//! runs it unoptimized (our code at opt-level 0; redb and sha2 are optimized
//! in every profile).

// A benchmark times what it measures: it owns its clock.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use futures::StreamExt;
use myelin::backup;
use myelin::random::Random;

const VALUE_BYTES: usize = 1_000;
const BATCH_PAIRS: usize = 2_000;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --bench backup` passes
    // nothing or a filter. Either way the whole measurement runs.
    let mb: usize = std::env::var("MYELIN_BENCH_BACKUP_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run(mb));
}

async fn run(mb: usize) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (src, out, dst) = (
        tmp.path().join("src"),
        tmp.path().join("backup"),
        tmp.path().join("dst"),
    );
    let pairs = mb * 1_000_000 / (VALUE_BYTES + 30);
    {
        let databases = myelin::db::open_embedded_at(&src).await.expect("open");
        let db = databases.game.db.clone();
        let random = Random::seeded(21);
        let batches: Vec<Vec<(Vec<u8>, Vec<u8>)>> = (0..pairs)
            .step_by(BATCH_PAIRS)
            .map(|start| {
                (start..(start + BATCH_PAIRS).min(pairs))
                    .map(|i| {
                        let mut key = b"\x40bench/".to_vec();
                        key.extend_from_slice(format!("{i:022}").as_bytes());
                        let mut value = vec![0u8; VALUE_BYTES];
                        random.fill(&mut value);
                        (key, value)
                    })
                    .collect()
            })
            .collect();
        futures::stream::iter(batches)
            .map(|batch| {
                let db = db.clone();
                async move {
                    db.run(|tx, _| {
                        for (k, v) in &batch {
                            tx.set(k, v);
                        }
                        async { Ok::<_, myelin::kv::Error>(()) }
                    })
                    .await
                    .expect("load batch")
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<()>>()
            .await;
        for handle in databases.handles() {
            if let Some(e) = handle.db.as_embedded() {
                e.shutdown();
            }
        }
    }

    let stores = myelin::db::connect(&myelin::db::embedded_config(&src)).expect("connect");
    let started = Instant::now();
    let (_, summary) = backup::create(&stores, &out).await.expect("backup");
    report(
        "backup create",
        summary.bytes,
        started.elapsed().as_secs_f64(),
    );
    drop(stores);

    let started = Instant::now();
    let verified = backup::verify(&out).expect("verify");
    report(
        "backup verify",
        verified.bytes,
        started.elapsed().as_secs_f64(),
    );

    let targets = myelin::db::connect(&myelin::db::embedded_config(&dst)).expect("target");
    let started = Instant::now();
    let restored = backup::restore(targets, &out, false)
        .await
        .expect("restore");
    report(
        "backup restore",
        restored.bytes,
        started.elapsed().as_secs_f64(),
    );
    assert_eq!(restored.pairs, summary.pairs);
}

fn report(what: &str, bytes: u64, seconds: f64) {
    let mb = bytes as f64 / 1e6;
    println!(
        "{what}: {mb:.1} MB in {seconds:.2} s = {:.1} MB/s",
        mb / seconds
    );
}
