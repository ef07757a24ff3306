//! The game scenarios (issue 17), over Myelin's game API
//! (`/_myelin/game/v1`, `docs/game.md`), HTTP only like the others:
//!
//! - `trades`: `--players` players (default 10,000), each minted
//!   [`MINT`] `gold` and granted [`ITEMS_EACH`] items by the admin, then
//!   `--senders` workers make `--ops` trades between random pairs (player
//!   A offers one of its items for a random price in gold from B: `POST
//!   /trades`, then B's `POST /trades/{id}/accept`); completed trades/s,
//!   the latency of the pair of requests, and 409s. Afterwards every
//!   player's wallet and inventory is read over HTTP and the invariants
//!   checked: the sum of `gold` equals what was minted, no balance is
//!   negative, every granted item has exactly one owner.
//! - `wallet-credits`: `--senders` admin clients credit one hot user
//!   `gold: 1` `--ops` times (one update per request; credits are atomic
//!   adds on the server, so they never conflict); credits/s, latency, and
//!   the final balance checked against the credits acknowledged.
//! - `storage-writes`: `--users` players write one object each per request
//!   (`PUT /storage`, unconditional, 100 keys per player reused) at a
//!   paced total `--rate` (default 2,000/s, open loop as `latency`),
//!   `--ops` writes; latency p50/p99.
//!
//! Minting and granting need an admin account: `--admin-user` and
//! `--admin-password` (or `$MYELIN_BENCH_ADMIN_PASSWORD`) log in an
//! account made beforehand with `myelin user create NAME --admin` on the
//! server's store (before `serve`, which holds the store). The tool never
//! makes an account an admin itself.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};

use super::BenchError;
use super::client::{Account, ClientError, encode};
use super::report::SetupReport;
use super::server_stats::{Sampler, ServerUsage};
use super::setup::{Ctx, Kind};
use super::stats::{Latencies, LatencySummary, per_second};

/// Gold minted to each player of `trades`.
pub const MINT: i64 = 1_000_000;
/// Items granted to each player of `trades`.
pub const ITEMS_EACH: usize = 2;
/// The game API's prefix.
pub const PREFIX: &str = "/_myelin/game/v1";
/// `POST /wallets/update` endpoint name.
pub const WALLETS_UPDATE: &str = "POST /_myelin/game/v1/wallets/update";
/// `POST /items/grant` endpoint name.
pub const ITEMS_GRANT: &str = "POST /_myelin/game/v1/items/grant";
/// `POST /trades` endpoint name.
pub const TRADE_OPEN: &str = "POST /_myelin/game/v1/trades";
/// `POST /trades/{id}/accept` endpoint name.
pub const TRADE_ACCEPT: &str = "POST /_myelin/game/v1/trades/{id}/accept";
/// `GET /wallet` endpoint name.
pub const WALLET: &str = "GET /_myelin/game/v1/wallet";
/// `GET /inventory` endpoint name.
pub const INVENTORY: &str = "GET /_myelin/game/v1/inventory";
/// `PUT /storage` endpoint name.
pub const STORAGE_WRITE: &str = "PUT /_myelin/game/v1/storage";

/// Most updates in one `POST /wallets/update` (the API's batch limit).
const BATCH: usize = 100;

/// `trades`: what the trading phase and the check found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TradesReport {
    /// Players (`--players`).
    pub players: u64,
    /// Concurrent trading clients (`--senders`).
    pub workers: u64,
    /// Gold minted in total.
    pub minted: i64,
    /// Items granted in total.
    pub items: u64,
    /// Trades accepted (completed).
    pub completed: u64,
    /// Trades opened but not completed (an error on accept).
    pub failed: u64,
    /// Answers with HTTP 409 (funds, items or trade state).
    pub conflicts: u64,
    /// Other failed requests.
    pub errors: u64,
    /// The first failure, for the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// From the first trade's start to the last one's end.
    pub window_secs: f64,
    /// Completed trades per second over the window.
    pub completed_per_s: f64,
    /// Open + accept, per completed trade.
    pub trade_latency: LatencySummary,
    /// Sum of every player's `gold` after the run.
    pub gold_after: i64,
    /// Balances below zero found.
    pub negative_balances: u64,
    /// Granted items held by no player.
    pub items_missing: u64,
    /// Items listed by more than one player, or not granted in this run.
    pub items_duplicated: u64,
    /// Whether every invariant held.
    pub invariants_hold: bool,
    /// Seconds the check took (2 reads per player).
    pub check_secs: f64,
    /// The server while trading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerUsage>,
}

/// `wallet-credits` and `storage-writes`: a stream of one kind of request.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WritesReport {
    /// Concurrent clients (`--senders`).
    pub workers: u64,
    /// The paced total rate asked for (0: as fast as answered).
    pub rate_target_per_s: f64,
    /// Requests acknowledged (2xx).
    pub ok: u64,
    /// Answers with HTTP 409.
    pub conflicts: u64,
    /// Other failed requests.
    pub errors: u64,
    /// The first failure, for the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// From the first request's start to the last one's end.
    pub window_secs: f64,
    /// Acknowledged requests per second over the window.
    pub ok_per_s: f64,
    /// Request latency (sent to answered).
    pub latency: LatencySummary,
    /// `wallet-credits`: whether the hot user's final balance equals the
    /// acknowledged credits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance_matches: Option<bool>,
    /// The server during the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerUsage>,
}

/// Counts of one stream of requests, shared by its workers.
#[derive(Default)]
struct Tally {
    latencies: Latencies,
    ok: u64,
    failed: u64,
    conflicts: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn failure(&mut self, e: &ClientError) {
        if matches!(e, ClientError::Status { status: 409, .. }) {
            self.conflicts += 1;
        } else {
            self.errors += 1;
        }
        self.first_error.get_or_insert_with(|| e.to_string());
    }
}

fn path(rest: &str) -> String {
    format!("{PREFIX}{rest}")
}

/// Logs in `--admin-user`.
async fn admin(ctx: &Ctx<'_>) -> Result<Account, BenchError> {
    let a = ctx.args;
    let (Some(user), Some(password)) = (&a.admin_user, &a.admin_password) else {
        return Err(BenchError::BadArgs(
            "this scenario needs --admin-user and --admin-password (an account made with \
             `myelin user create NAME --admin`)"
                .into(),
        ));
    };
    ctx.client
        .login(user, password)
        .await
        .map_err(|source| BenchError::Request {
            phase: "admin login",
            source,
        })
}

async fn call(
    ctx: &Ctx<'_>,
    endpoint: &'static str,
    method: Method,
    path: &str,
    who: &Account,
    body: Option<&Value>,
) -> Result<Value, ClientError> {
    ctx.client
        .call(endpoint, method, path, Some(&who.token), &[], body)
        .await
}

/// Runs `work(i)` for `i` in `0..ops` on `workers` tasks, each op starting
/// no earlier than `i / rate` s after the first when `rate > 0`, within
/// the time cap. Returns the tally and the window.
async fn stream<F, Fut>(
    ctx: &Ctx<'_>,
    phase: &'static str,
    ops: u64,
    rate: f64,
    work: F,
) -> Result<(Tally, Duration), BenchError>
where
    F: Fn(u64) -> Fut + Sync,
    Fut: std::future::Future<Output = Result<(), ClientError>>,
{
    let next = AtomicU64::new(0);
    let tally = Mutex::new(Tally::default());
    let bar = ctx.bar(ops, phase);
    let start = Instant::now();
    let worker = || async {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= ops {
                return;
            }
            if rate > 0.0 {
                tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into())
                    .await;
            }
            let sent = Instant::now();
            let result = work(i).await;
            let took = sent.elapsed();
            let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(()) => {
                    t.ok += 1;
                    t.latencies.record(took);
                }
                Err(e) => {
                    t.failed += 1;
                    t.failure(&e);
                }
            }
            bar.inc(1);
        }
    };
    let workers = futures::future::join_all((0..ctx.args.senders).map(|_| worker()));
    let result = ctx
        .capped(phase, async {
            workers.await;
            Ok(())
        })
        .await;
    bar.finish_and_clear();
    result?;
    let window = start.elapsed();
    Ok((
        tally.into_inner().unwrap_or_else(|p| p.into_inner()),
        window,
    ))
}

/// `trades`.
pub async fn trades(ctx: &Ctx<'_>, setup: &mut SetupReport) -> Result<TradesReport, BenchError> {
    let a = ctx.args;
    let admin = admin(ctx).await?;
    let players = ctx.accounts(Kind::User, a.players, setup).await?;
    let started = Instant::now();
    // Mint: 100 players a request.
    let chunks: Vec<&[Account]> = players.chunks(BATCH).collect();
    ctx.bounded("mint gold", chunks.len(), |c| {
        let updates: Vec<Value> = chunks[c]
            .iter()
            .map(|p| json!({"user_id": p.user_id, "changeset": {"gold": MINT}}))
            .collect();
        let body = json!({"updates": updates});
        let admin = &admin;
        async move {
            call(
                ctx,
                WALLETS_UPDATE,
                Method::POST,
                &path("/wallets/update"),
                admin,
                Some(&body),
            )
            .await
            .map(|_| ())
        }
    })
    .await?;
    let granted = ctx
        .bounded("grant items", players.len(), |p| {
            let body = json!({
                "user_id": players[p].user_id,
                "items": vec![json!({"type": "sword"}); ITEMS_EACH],
            });
            let admin = &admin;
            async move {
                let v = call(
                    ctx,
                    ITEMS_GRANT,
                    Method::POST,
                    &path("/items/grant"),
                    admin,
                    Some(&body),
                )
                .await?;
                let ids: Vec<String> = v["item_ids"]
                    .as_array()
                    .map(|ids| {
                        ids.iter()
                            .filter_map(|i| i.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                if ids.len() != ITEMS_EACH {
                    return Err(ClientError::Missing {
                        endpoint: ITEMS_GRANT,
                        field: "item_ids",
                    });
                }
                Ok(ids)
            }
        })
        .await?;
    setup.secs += started.elapsed().as_secs_f64();
    let all_items: std::collections::HashSet<String> = granted.iter().flatten().cloned().collect();
    // Each player's items as the tool knows them; an item is taken out
    // while a trade offers it, so no two trades offer one item.
    let held = Mutex::new(granted);
    let sampler = a.server_pid.and_then(Sampler::start);
    let n = players.len();
    let (tally, window) = stream(ctx, "trade", a.ops, 0.0, |_| {
        let (from, to, item, price) = {
            let mut rng = rand::rng();
            let from = rng.random_range(0..n);
            let mut to = rng.random_range(0..n - 1);
            if to >= from {
                to += 1;
            }
            let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
            (from, to, held[from].pop(), rng.random_range(1..=10i64))
        };
        let held = &held;
        let players = &players;
        async move {
            let give = match &item {
                Some(id) => json!({"items": [id]}),
                None => json!({"currency": {"gold": 1}}),
            };
            let body = json!({
                "counterparty": players[to].user_id,
                "give": give,
                "take": {"currency": {"gold": price}},
            });
            let result = async {
                let v = call(
                    ctx,
                    TRADE_OPEN,
                    Method::POST,
                    &path("/trades"),
                    &players[from],
                    Some(&body),
                )
                .await?;
                let id = v["trade_id"].as_str().ok_or(ClientError::Missing {
                    endpoint: TRADE_OPEN,
                    field: "trade_id",
                })?;
                let accept = path(&format!("/trades/{}/accept", encode(id)));
                call(ctx, TRADE_ACCEPT, Method::POST, &accept, &players[to], None).await
            }
            .await;
            if let Some(item) = item {
                let owner = if result.is_ok() { to } else { from };
                held.lock().unwrap_or_else(|p| p.into_inner())[owner].push(item);
            }
            result.map(|_| ())
        }
    })
    .await?;
    let server = match sampler {
        Some(s) => s.finish().await,
        None => None,
    };
    // The check, over HTTP: every wallet and inventory.
    let checked = Instant::now();
    let players = &players;
    let seen = ctx
        .bounded("check", players.len(), |p| async move {
            let w = call(
                ctx,
                WALLET,
                Method::GET,
                &path("/wallet"),
                &players[p],
                None,
            )
            .await?;
            let inv = call(
                ctx,
                INVENTORY,
                Method::GET,
                &path("/inventory"),
                &players[p],
                None,
            )
            .await?;
            let gold = w["balances"]["gold"].as_i64().unwrap_or(0);
            let items: Vec<String> = inv["items"]
                .as_array()
                .map(|is| {
                    is.iter()
                        .filter_map(|i| i["item_id"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            Ok((gold, items))
        })
        .await?;
    let mut owners: std::collections::HashMap<String, u64> = Default::default();
    let (mut gold_after, mut negative) = (0i64, 0u64);
    for (gold, items) in &seen {
        gold_after = gold_after.saturating_add(*gold);
        negative += u64::from(*gold < 0);
        for i in items {
            *owners.entry(i.clone()).or_default() += 1;
        }
    }
    let items_missing = all_items
        .iter()
        .filter(|i| !owners.contains_key(*i))
        .count() as u64;
    let items_duplicated = owners
        .iter()
        .filter(|(i, c)| **c > 1 || !all_items.contains(*i))
        .count() as u64;
    let minted = MINT * n as i64;
    Ok(TradesReport {
        players: n as u64,
        workers: a.senders as u64,
        minted,
        items: all_items.len() as u64,
        completed: tally.ok,
        failed: tally.failed,
        conflicts: tally.conflicts,
        errors: tally.errors,
        first_error: tally.first_error,
        window_secs: window.as_secs_f64(),
        completed_per_s: per_second(tally.ok, window),
        trade_latency: tally.latencies.summary(),
        gold_after,
        negative_balances: negative,
        items_missing,
        items_duplicated,
        invariants_hold: gold_after == minted
            && negative == 0
            && items_missing == 0
            && items_duplicated == 0,
        check_secs: checked.elapsed().as_secs_f64(),
        server,
    })
}

/// `wallet-credits`.
pub async fn wallet_credits(
    ctx: &Ctx<'_>,
    setup: &mut SetupReport,
) -> Result<WritesReport, BenchError> {
    let a = ctx.args;
    let admin = admin(ctx).await?;
    let hot = ctx.accounts(Kind::User, 1, setup).await?.remove(0);
    let body = json!({"updates": [{"user_id": hot.user_id, "changeset": {"gold": 1}}]});
    let update = path("/wallets/update");
    let sampler = a.server_pid.and_then(Sampler::start);
    let (tally, window) = stream(ctx, "credit", a.ops, a.rate.unwrap_or(0.0), |_| async {
        call(
            ctx,
            WALLETS_UPDATE,
            Method::POST,
            &update,
            &admin,
            Some(&body),
        )
        .await
        .map(|_| ())
    })
    .await?;
    let server = match sampler {
        Some(s) => s.finish().await,
        None => None,
    };
    let w = call(ctx, WALLET, Method::GET, &path("/wallet"), &hot, None)
        .await
        .map_err(|source| BenchError::Request {
            phase: "check",
            source,
        })?;
    // Every acknowledged credit is in the balance, and nothing else is
    // (a failed request wrote nothing).
    let balance_matches = w["balances"]["gold"].as_u64().unwrap_or(0) == tally.ok;
    Ok(writes_report(
        ctx,
        a.rate.unwrap_or(0.0),
        tally,
        window,
        Some(balance_matches),
        server,
    ))
}

/// `storage-writes`.
pub async fn storage_writes(
    ctx: &Ctx<'_>,
    setup: &mut SetupReport,
) -> Result<WritesReport, BenchError> {
    let a = ctx.args;
    let rate = a.rate.unwrap_or(2_000.0);
    let players = ctx.accounts(Kind::User, a.users, setup).await?;
    let write = path("/storage");
    let sampler = a.server_pid.and_then(Sampler::start);
    let (tally, window) = stream(ctx, "storage write", a.ops, rate, |i| {
        let who = &players[i as usize % players.len()];
        let body = json!({"objects": [{
            "collection": "bench",
            "key": format!("k{}", (i as usize / players.len()) % 100),
            "value": {"n": i, "run": ctx.run_id},
        }]});
        let write = &write;
        async move {
            call(ctx, STORAGE_WRITE, Method::PUT, write, who, Some(&body))
                .await
                .map(|_| ())
        }
    })
    .await?;
    let server = match sampler {
        Some(s) => s.finish().await,
        None => None,
    };
    Ok(writes_report(ctx, rate, tally, window, None, server))
}

fn writes_report(
    ctx: &Ctx<'_>,
    rate: f64,
    tally: Tally,
    window: Duration,
    balance_matches: Option<bool>,
    server: Option<ServerUsage>,
) -> WritesReport {
    WritesReport {
        workers: ctx.args.senders as u64,
        rate_target_per_s: rate,
        ok: tally.ok,
        conflicts: tally.conflicts,
        errors: tally.errors,
        first_error: tally.first_error,
        window_secs: window.as_secs_f64(),
        ok_per_s: per_second(tally.ok, window),
        latency: tally.latencies.summary(),
        balance_matches,
        server,
    }
}
