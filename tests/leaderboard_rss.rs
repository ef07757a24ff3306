//! A server's memory does not grow with the number of records it ranks
//! (issue 18: "server RSS independent of the number of records; no
//! in-memory copy of a board"), measured on the `myelin` binary as a child
//! process:
//!
//! 1. a store laid out as `serve --data DIR` lays it out gets two boards,
//!    `small` ([`SMALL`] records) and `big` (`$MYELIN_RSS_RECORDS`, default
//!    [`DEFAULT_BIG`]), bulk-loaded through `GameDb::load_records`;
//! 2. `myelin serve` starts on it; one read of the last owner then
//!    [`READS`] rank reads (`GET .../records/{owner}`) of random owners of
//!    `small`, then the same of `big` (the first one timed), each answer
//!    checked;
//! 3. the server's RSS (`/proc/PID/status` `VmRSS`) is read after start,
//!    after the `small` reads and after the `big` reads.
//!
//! Reads touch O(log n) keys and keep nothing per record, so the `big`
//! reads may add at most the store's page cache (`cache_size_bytes`, 64 MiB
//! by default) plus [`SLACK`] to what the `small` reads left. A server
//! holding a copy of the board would grow by about its size (a record is
//! about 100 bytes: 100 MB at 10^6). The numbers are printed; the issue-18
//! row of `docs/performance.md` quotes a run with
//! `MYELIN_RSS_RECORDS=1000000 cargo test --test leaderboard_rss -- --nocapture`.
//!
//! Linux only (`/proc`); elsewhere the test returns after the reads.

// The test drives a separate server process over real time (its start-up
// deadline and the first read's latency are wall-clock times) and draws
// its owners at random.
#![allow(clippy::disallowed_methods)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use myelin::bench::client::{Client, encode};
use myelin::bench::server_stats;
use myelin::config::{DatabaseConfig, DatabasesConfig};
use myelin::db::game::{BoardRecord, GameDb};
use myelin::db::leaderboard::{Operator, Sort};
use rand::Rng;
use reqwest::Method;

/// Records of the small board.
const SMALL: u64 = 1_000;
/// Records of the big board without `$MYELIN_RSS_RECORDS`.
const DEFAULT_BIG: u64 = 20_000;
/// Rank reads per board.
const READS: usize = 2_000;
/// Reads in flight.
const CONCURRENCY: usize = 8;
/// What the big board's reads may add beyond the page cache.
const SLACK: u64 = 32 << 20;
/// The store's default page cache (`kv::embedded`).
const CACHE: u64 = 64 << 20;
/// Longest wait for the started server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const P: &str = "/_myelin/game/v1";

fn owner(i: u64) -> String {
    format!("@p{i:07}:rss.test")
}

/// The boards, written where `serve --data data` opens its databases.
async fn build(data: &Path, big: u64) {
    let mut config = DatabasesConfig::default();
    for spec in myelin::db::SPECS {
        config.set(
            spec.name,
            DatabaseConfig {
                path: Some(data.join(spec.name)),
                ..DatabaseConfig::default()
            },
        );
    }
    let databases = myelin::db::open(&config).await.expect("open the store");
    let game = GameDb::new(&databases.game);
    let board = BoardRecord {
        sort: Sort::Desc,
        operator: Operator::Best,
        reset: None,
        authoritative: false,
        metadata: "{}".into(),
        create_ms: 0,
        tournament: None,
    };
    for (id, n) in [("small", SMALL), ("big", big)] {
        game.create_board(id, &board).await.expect("create board");
        let records: Vec<(String, i64, i64)> = (0..n)
            .map(|i| {
                (
                    owner(i),
                    (i.wrapping_mul(2_654_435_761) % 1_000_000_007) as i64,
                    0,
                )
            })
            .collect();
        let loaded = game
            .load_records(id, &records, 1)
            .await
            .expect("load records");
        assert_eq!(loaded, n);
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The child server, killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss(pid: u32) -> Option<u64> {
    server_stats::read(pid).map(|r| r.rss_bytes)
}

/// `READS` rank reads of random owners of `board` (`n` records), each
/// answer checked; returns the first read's latency.
async fn read_ranks(client: &Client, token: &str, board: &str, n: u64) -> Duration {
    let read = |i: u64| async move {
        let who = owner(i);
        let path = format!("{P}/leaderboards/{board}/records/{}", encode(&who));
        let got = client
            .call("GET record", Method::GET, &path, Some(token), &[], None)
            .await
            .expect("rank read");
        assert_eq!(got["owner"], who.as_str());
        let rank = got["rank"].as_u64().expect("rank");
        assert!((1..=n).contains(&rank), "{got}");
    };
    let first = Instant::now();
    read(n - 1).await;
    let first = first.elapsed();
    let owners: Vec<u64> = {
        let mut rng = rand::rng();
        (0..READS).map(|_| rng.random_range(0..n)).collect()
    };
    futures::stream::iter(owners)
        .for_each_concurrent(CONCURRENCY, read)
        .await;
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_rss_does_not_grow_with_the_records_it_ranks() {
    let big: u64 = std::env::var("MYELIN_RSS_RECORDS")
        .ok()
        .map(|v| v.parse().expect("MYELIN_RSS_RECORDS is a number"))
        .unwrap_or(DEFAULT_BIG);
    assert!(big >= SMALL, "MYELIN_RSS_RECORDS must be at least {SMALL}");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let built = Instant::now();
    build(&data, big).await;
    eprintln!(
        "leaderboard_rss: loaded {SMALL} + {big} records in {:.1} s",
        built.elapsed().as_secs_f64()
    );

    let config = dir.path().join("myelin.toml");
    std::fs::write(
        &config,
        r#"
[server]
register_per_ip = { per_second = 1000000.0, burst = 1000000 }
password_hashing = { memory_kib = 8, iterations = 1, parallelism = 1 }
"#,
    )
    .expect("write config");
    let port = free_port();
    let spawned = Instant::now();
    let mut server = Serve(
        Command::new(env!("CARGO_BIN_EXE_myelin"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--data")
            .arg(&data)
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn myelin serve"),
    );
    let pid = server.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let client = Client::new(&base, Duration::from_secs(60)).expect("client");
    let http = reqwest::Client::new();
    loop {
        if let Ok(r) = http.get(format!("{base}/_myelin/health/live")).send().await
            && r.status().is_success()
        {
            break;
        }
        if let Some(status) = server.0.try_wait().expect("try_wait") {
            panic!("myelin serve exited with {status}");
        }
        assert!(
            spawned.elapsed() < START_TIMEOUT,
            "myelin serve did not answer"
        );
        // Polling for the listener: there is no readiness signal to wait on.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let live = spawned.elapsed();
    let user = client
        .register("rss", "pw-rss-123", None)
        .await
        .expect("register");
    let at_start = rss(pid);
    read_ranks(&client, &user.token, "small", SMALL).await;
    let after_small = rss(pid);
    let first_big = read_ranks(&client, &user.token, "big", big).await;
    let after_big = rss(pid);
    const MIB: f64 = (1 << 20) as f64;
    let mib = |b: Option<u64>| b.map_or(f64::NAN, |b| b as f64 / MIB);
    eprintln!(
        "leaderboard_rss: {big} records; live {:.0} ms after spawn; first rank of big {:.2} ms; \
         RSS {:.1} MiB at start, {:.1} after {n} reads of {SMALL} records, {:.1} after {n} \
         reads of {big}",
        live.as_secs_f64() * 1e3,
        first_big.as_secs_f64() * 1e3,
        mib(at_start),
        mib(after_small),
        mib(after_big),
        n = READS + 1,
    );
    if let (Some(small), Some(big_rss)) = (after_small, after_big) {
        assert!(
            big_rss <= small + CACHE + SLACK,
            "ranking {big} records grew the server from {small} to {big_rss} bytes"
        );
    }
    drop(server);
}
