//! The `leaderboard` scenario (issue 18), over Myelin's leaderboard API
//! (`/_myelin/game/v1/leaderboards`, `docs/leaderboards.md`), HTTP only
//! like the others:
//!
//! 1. the admin (`--admin-user`, `--admin-password`) creates a board
//!    `bench-<run>-<round>` (`sort: desc`, `operator: set`, so every write
//!    moves its record in the ranked set);
//! 2. `--players` players (default 10,000) are registered (or logged in
//!    with `--login`), and each submits one random score (setup: the board
//!    then holds one record per player);
//! 3. **submit**: `--senders` clients make `--ops` submissions, each a
//!    random player's `POST .../records` with a random score in
//!    0..1,000,000,000 (the player's own token): writes/s, latency, 409s;
//! 4. **rank**: `--ops` `GET .../records/{owner}` of random players;
//! 5. **around**: `--ops` `GET .../records/around/{owner}?limit=20` of
//!    random players.
//!
//! Each phase reports acknowledged requests per second and latency
//! p50/p95/p99 ([`WritesReport`], `balance_matches` absent) and, with
//! `--server-pid`, the server's RSS and CPU. Every read answer is checked:
//! a rank answer names the owner with a rank in `1..=players`; an around
//! answer holds `min(20, players)` records of consecutive ranks including
//! the owner's. Answers that fail the check are counted in
//! `wrong_answers` (and are not acknowledged).
//!
//! Registration hashes each password with Argon2 (at the default cost,
//! 500 players took 14 s on the 2-core machine of `docs/performance.md`,
//! so 10,000 take minutes); a
//! server started only for this benchmark can take
//! `password_hashing = { memory_kib = 8, iterations = 1, parallelism = 1 }`
//! in `[server]` (`docs/performance.md`), or reuse accounts with `--login`.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};

use super::BenchError;
use super::client::{Account, ClientError, encode};
use super::game::{PREFIX, WritesReport};
use super::report::SetupReport;
use super::server_stats::Sampler;
use super::setup::{Ctx, Kind};
use super::stats::{Latencies, per_second};

/// `POST /leaderboards` endpoint name.
pub const CREATE: &str = "POST /_myelin/game/v1/leaderboards";
/// `POST /leaderboards/{id}/records` endpoint name.
pub const SUBMIT: &str = "POST /_myelin/game/v1/leaderboards/{id}/records";
/// `GET /leaderboards/{id}/records/{owner}` endpoint name.
pub const RECORD: &str = "GET /_myelin/game/v1/leaderboards/{id}/records/{owner}";
/// `GET /leaderboards/{id}/records/around/{owner}` endpoint name.
pub const AROUND: &str = "GET /_myelin/game/v1/leaderboards/{id}/records/around/{owner}";

/// The `limit` of the around-owner reads.
pub const AROUND_LIMIT: u64 = 20;
/// Scores are drawn from `0..MAX_SCORE`.
const MAX_SCORE: i64 = 1_000_000_000;

/// `leaderboard`: the board and the three phases.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LeaderboardReport {
    /// The board's ID.
    pub board_id: String,
    /// Players (`--players`), each with one record after setup.
    pub players: u64,
    /// Seconds the setup's one submission per player took.
    pub seed_secs: f64,
    /// Random scores of random players.
    pub submit: WritesReport,
    /// `GET .../records/{owner}` of random players.
    pub rank: WritesReport,
    /// `GET .../records/around/{owner}?limit=20` of random players.
    pub around: WritesReport,
    /// Read answers that failed the check (module docs).
    pub wrong_answers: u64,
}

/// Counts of one phase, shared by its clients.
#[derive(Default)]
struct Counts {
    latencies: Latencies,
    ok: u64,
    conflicts: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Counts {
    /// Counts one request that took `took`: its latency when it succeeded,
    /// a 409 or another error (the first kept) when not.
    fn add(&mut self, result: Result<(), ClientError>, took: Duration) {
        let Err(e) = result else {
            self.ok += 1;
            self.latencies.record(took);
            return;
        };
        if matches!(e, ClientError::Status { status: 409, .. }) {
            self.conflicts += 1;
        } else {
            self.errors += 1;
        }
        self.first_error.get_or_insert_with(|| e.to_string());
    }
}

/// Runs `work(i)` for `i` in `0..ops`, `--senders` at a time, within the
/// time cap, and reports it as one phase.
async fn phase<F, Fut>(
    ctx: &Ctx<'_>,
    name: &'static str,
    ops: u64,
    work: F,
) -> Result<WritesReport, BenchError>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<(), ClientError>>,
{
    let counts = Mutex::new(Counts::default());
    let sampler = ctx.args.server_pid.and_then(Sampler::start);
    let bar = ctx.bar(ops, name);
    let start = Instant::now();
    let clients = futures::stream::iter(0..ops).for_each_concurrent(ctx.args.senders, |i| {
        let (counts, bar, request) = (&counts, &bar, work(i));
        async move {
            let sent = Instant::now();
            let result = request.await;
            let took = sent.elapsed();
            counts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .add(result, took);
            bar.inc(1);
        }
    });
    let capped = ctx
        .capped(name, async {
            clients.await;
            Ok(())
        })
        .await;
    bar.finish_and_clear();
    let window = start.elapsed();
    let server = match sampler {
        Some(s) => s.finish().await,
        None => None,
    };
    capped?;
    let c = counts.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(WritesReport {
        workers: ctx.args.senders as u64,
        rate_target_per_s: 0.0,
        ok: c.ok,
        conflicts: c.conflicts,
        errors: c.errors,
        first_error: c.first_error,
        window_secs: window.as_secs_f64(),
        ok_per_s: per_second(c.ok, window),
        latency: c.latencies.summary(),
        balance_matches: None,
        server,
    })
}

/// A random score.
fn score() -> i64 {
    rand::rng().random_range(0..MAX_SCORE)
}

/// A random player's index.
fn anyone(players: usize) -> usize {
    rand::rng().random_range(0..players)
}

/// A read answer that failed the check.
fn wrong(endpoint: &'static str, what: &'static str) -> ClientError {
    ClientError::Missing {
        endpoint,
        field: what,
    }
}

/// Whether `page` (an around answer for `owner`) holds `want` records of
/// consecutive ranks, the owner's among them.
fn around_is_consistent(page: &Value, owner: &str, want: u64) -> bool {
    let Some(records) = page["records"].as_array() else {
        return false;
    };
    let ranks: Vec<u64> = records.iter().filter_map(|r| r["rank"].as_u64()).collect();
    ranks.len() as u64 == want
        && ranks.len() == records.len()
        && ranks.windows(2).all(|w| w[1] == w[0] + 1)
        && records.iter().any(|r| r["owner"] == owner)
}

/// `leaderboard`.
pub async fn run(ctx: &Ctx<'_>, setup: &mut SetupReport) -> Result<LeaderboardReport, BenchError> {
    let a = ctx.args;
    let (Some(admin_user), Some(admin_password)) = (&a.admin_user, &a.admin_password) else {
        return Err(BenchError::BadArgs(
            "the leaderboard scenario needs --admin-user and --admin-password (an account made \
             with `myelin user create NAME --admin`)"
                .into(),
        ));
    };
    let admin = ctx
        .client
        .login(admin_user, admin_password)
        .await
        .map_err(BenchError::request("admin login"))?;
    let board_id = format!("bench-{}-{}", ctx.run_id, ctx.round);
    let board = format!("{PREFIX}/leaderboards/{}", encode(&board_id));
    let body = json!({"id": board_id, "sort": "desc", "operator": "set"});
    let path = format!("{PREFIX}/leaderboards");
    ctx.client
        .call(
            CREATE,
            Method::POST,
            &path,
            Some(&admin.token),
            &[],
            Some(&body),
        )
        .await
        .map_err(BenchError::request("create board"))?;
    let players = ctx.accounts(Kind::User, a.players, setup).await?;
    let n = players.len();
    let submit_path = format!("{board}/records");
    let submit = |who: &Account| {
        let body = json!({"score": score()});
        let (token, submit_path) = (who.token.clone(), &submit_path);
        async move {
            ctx.client
                .call(
                    SUBMIT,
                    Method::POST,
                    submit_path,
                    Some(&token),
                    &[],
                    Some(&body),
                )
                .await
                .map(|_| ())
        }
    };
    let seeded = Instant::now();
    ctx.bounded("seed records", n, |p| submit(&players[p]))
        .await?;
    let seed_secs = seeded.elapsed().as_secs_f64();
    setup.secs += seed_secs;

    let submit = phase(ctx, "submit", a.ops, |_| submit(&players[anyone(n)])).await?;
    let wrong_answers = AtomicU64::new(0);
    let checked = |ok: bool, endpoint: &'static str, what: &'static str| {
        if ok {
            Ok(())
        } else {
            wrong_answers.fetch_add(1, Ordering::Relaxed);
            Err(wrong(endpoint, what))
        }
    };
    let (board, token) = (&board, players[0].token.as_str());
    let rank = phase(ctx, "rank", a.ops, |_| {
        let owner = &players[anyone(n)].user_id;
        let path = format!("{board}/records/{}", encode(owner));
        let checked = &checked;
        async move {
            let r = ctx
                .client
                .call(RECORD, Method::GET, &path, Some(token), &[], None)
                .await?;
            let rank = r["rank"].as_u64().unwrap_or(0);
            checked(
                r["owner"] == owner.as_str() && (1..=n as u64).contains(&rank),
                RECORD,
                "owner and a rank within the board",
            )
        }
    })
    .await?;
    let want = AROUND_LIMIT.min(n as u64);
    let limit = AROUND_LIMIT.to_string();
    let around = phase(ctx, "around", a.ops, |_| {
        let owner = &players[anyone(n)].user_id;
        let path = format!("{board}/records/around/{}", encode(owner));
        let (checked, limit) = (&checked, &limit);
        async move {
            let page = ctx
                .client
                .call(
                    AROUND,
                    Method::GET,
                    &path,
                    Some(token),
                    &[("limit", limit.as_str())],
                    None,
                )
                .await?;
            checked(
                around_is_consistent(&page, owner, want),
                AROUND,
                "records of consecutive ranks around the owner",
            )
        }
    })
    .await?;
    Ok(LeaderboardReport {
        board_id,
        players: n as u64,
        seed_secs,
        submit,
        rank,
        around,
        wrong_answers: wrong_answers.load(Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn around_answers_are_checked() {
        let page = |ranks: &[u64], owner_at: usize| {
            let records: Vec<Value> = ranks
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let owner = if i == owner_at { "@me:x" } else { "@other:x" };
                    json!({"owner": owner, "rank": r})
                })
                .collect();
            json!({ "records": records })
        };
        assert!(around_is_consistent(&page(&[4, 5, 6], 1), "@me:x", 3));
        assert!(!around_is_consistent(&page(&[4, 5, 6], 9), "@me:x", 3));
        assert!(!around_is_consistent(&page(&[4, 6, 7], 0), "@me:x", 3));
        assert!(!around_is_consistent(&page(&[4, 5], 0), "@me:x", 3));
        assert!(!around_is_consistent(&json!({}), "@me:x", 0));
    }
}
