//! CPU per leaderboard submit, for an instruction counter: a board of
//! 10,000 records (`GameDb::load_records`), then `N` submits of one
//! operator through `GameDb::submit_scores` (the HTTP handler's call, one
//! durable commit each), each by a random one of the 10,000 owners with a
//! random score (`0..1e9`, a fixed seed, so every run submits the same).
//!
//! Instructions per submit are the difference of two runs over the
//! difference of their `N` (the set-up cancels out):
//!
//! ```text
//! cargo build --release --example leaderboard_submit_cost
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/leaderboard_submit_cost set 0
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/leaderboard_submit_cost set 2000
//! ```
//!
//! (valgrind prints `Collected : <instructions>` for each.) Operators:
//! `set`, `best`, `incr`. Results: `docs/perf-log/`.

// A measurement tool owns its randomness (seeded) and reports on stderr.
#![allow(clippy::disallowed_methods)]

use myelin::db::game::{Actor, BoardRecord, GameDb, ScoreSubmission};
use myelin::db::leaderboard::{Operator, Sort};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const RECORDS: u64 = 10_000;
const NOW_MS: u64 = 1_700_000_000_000;

fn owner(i: u64) -> String {
    format!("@p{i:05}:cost.example")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let operator = match args.next().as_deref() {
        Some("set") => Operator::Set,
        Some("best") => Operator::Best,
        Some("incr") => Operator::Incr,
        _ => {
            eprintln!("usage: leaderboard_submit_cost <set|best|incr> <submits>");
            std::process::exit(2);
        }
    };
    let submits: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: leaderboard_submit_cost <set|best|incr> <submits>");
        std::process::exit(2);
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(operator, submits));
}

async fn run(operator: Operator, submits: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let databases = myelin::db::open_embedded_at(dir.path())
        .await
        .expect("open store");
    let game = GameDb::new(&databases.game);
    let board = BoardRecord {
        sort: Sort::Desc,
        operator,
        reset: None,
        authoritative: false,
        metadata: "{}".into(),
        create_ms: 0,
        tournament: None,
    };
    game.create_board("cost", &board).await.expect("create");
    let mut rng = StdRng::seed_from_u64(18);
    let records: Vec<(String, i64, i64)> = (0..RECORDS)
        .map(|i| (owner(i), rng.random_range(0..1_000_000_000), 0))
        .collect();
    game.load_records("cost", &records, NOW_MS)
        .await
        .expect("load");
    let started = std::time::Instant::now();
    for id in 1..=submits {
        let who = owner(rng.random_range(0..RECORDS));
        let score = match operator {
            Operator::Incr => rng.random_range(0..1_000),
            _ => rng.random_range(0..1_000_000_000),
        };
        let actor = Actor {
            user_id: who.clone(),
            admin: false,
        };
        let submission = ScoreSubmission {
            owner: who,
            score,
            subscore: 0,
            metadata: None,
            operator: None,
            id,
        };
        game.submit_scores(&actor, "cost", &[submission], NOW_MS)
            .await
            .expect("submit");
    }
    eprintln!(
        "{submits} submits in {:.2} s",
        started.elapsed().as_secs_f64()
    );
}
