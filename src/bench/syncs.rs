//! The sync scenarios: `initial-sync`, `incremental-sync` and `idle`.
//!
//! - `initial-sync`: after setup (U users, R rooms of M members), a probe
//!   user joins all R rooms, E events are sent (as in `throughput`, no
//!   syncers), then the probe's initial sync (filter: timeline limit 20,
//!   lazy-loaded members) is timed `--repeats` times, one at a time, each
//!   with its own `timeout` (`initial_timeout_ms`) so that a server's
//!   response cache cannot answer a repeat with the previous response.
//! - `incremental-sync`: probe 1 joins room 0, probe K joins all R rooms;
//!   each round, room 0's creator sends one event, then both probes sync
//!   from their last position with `timeout=0` (alternating which goes
//!   first) and each request is timed; a response without the event is
//!   counted. The ratio of the many-room to the one-room latency is what
//!   the "incremental sync vs joined rooms" target reads.
//! - `idle`: N long-polls from `min(U, N)` users (long-poll `i` as user
//!   `i mod U`, with timeouts differing by `i mod 1000` ms so no server can
//!   merge identical requests), held `--hold-secs`; at the end of the hold
//!   the still-pending ones are counted and the server sampled, then one
//!   account-data write per user wakes them, and those returning with it
//!   within 10 s count as `woken`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::BenchError;
use super::report::{IdleReport, IncrementalSyncReport, InitialSyncReport, SetupReport};
use super::server_stats::Sampler;
use super::setup::{Ctx, Kind};
use super::stats::{Latencies, ratio};
use super::traffic::{self, POSITION_FILTER};

/// The filter of the measured syncs: timeline limit 20, lazy-loaded members.
pub const MEASURED_FILTER: &str =
    r#"{"room":{"timeline":{"limit":20},"state":{"lazy_load_members":true}}}"#;
/// The filter of idle long-polls: no rooms, no presence.
const IDLE_FILTER: &str = r#"{"room":{"rooms":[]},"presence":{"types":[]}}"#;
/// The account-data type written to wake idle long-polls.
const WAKE_TYPE: &str = "org.myelin.bench.wake";
/// How long woken long-polls have to return.
const WAKE_DEADLINE: Duration = Duration::from_secs(10);

async fn sample(sampler: Option<Sampler>) -> Option<super::server_stats::ServerUsage> {
    match sampler {
        Some(s) => s.finish().await,
        None => None,
    }
}

/// The `timeout` of initial sync number `repeat`, in ms: `repeat mod 1000`.
///
/// Distinct for up to 1,000 repeats, because a server may cache `/sync`
/// responses by request (Synapse keeps each for 2 minutes by default, keyed
/// by user, `since`, `timeout` and filter), and the scenario measures
/// building the response, not a cache hit. A server answers an initial sync
/// with rooms at once whatever the timeout (client-server API, `GET
/// /sync`: it waits only while there is nothing to return).
fn initial_timeout_ms(repeat: usize) -> u64 {
    (repeat % 1000) as u64
}

/// `initial-sync`.
pub async fn initial(
    ctx: &Ctx<'_>,
    setup: &mut SetupReport,
) -> Result<InitialSyncReport, BenchError> {
    let a = ctx.args;
    let pop = ctx.population(setup).await?;
    let probe = ctx.accounts(Kind::Probe, 1, setup).await?.remove(0);
    ctx.join_all(&probe, &pop.rooms, setup).await?;
    let marker = format!("{}.{}", ctx.run_id, ctx.round);
    let sent = traffic::send(ctx, &pop, &marker, a.rate.unwrap_or(0.0), a.events).await?;
    let sampler = a.server_pid.and_then(Sampler::start);
    let bar = ctx.bar(a.repeats as u64, "initial syncs");
    let mut latency = Latencies::new();
    let mut last = Value::Null;
    let measured = ctx
        .capped("initial syncs", async {
            for repeat in 0..a.repeats {
                let begun = Instant::now();
                last = ctx
                    .client
                    .sync(&probe, None, initial_timeout_ms(repeat), MEASURED_FILTER)
                    .await
                    .map_err(BenchError::request("initial syncs"))?;
                latency.record(begun.elapsed());
                bar.inc(1);
            }
            Ok(())
        })
        .await;
    bar.finish_and_clear();
    measured?;
    Ok(InitialSyncReport {
        rooms: pop.rooms.len() as u64,
        events_sent: sent.count(),
        rooms_in_response: last["rooms"]["join"]
            .as_object()
            .map_or(0, |o| o.len() as u64),
        response_bytes: serde_json::to_vec(&last).map_or(0, |v| v.len() as u64),
        latency: latency.summary(),
        server: sample(sampler).await,
    })
}

/// Whether `response` holds event `n` of `marker` in room `room_id`.
fn holds(response: &Value, room_id: &str, marker: &str, n: u64) -> bool {
    traffic::timeline_holds(
        &response["rooms"]["join"][room_id]["timeline"]["events"],
        marker,
        n,
    )
}

/// `incremental-sync`.
pub async fn incremental(
    ctx: &Ctx<'_>,
    setup: &mut SetupReport,
) -> Result<IncrementalSyncReport, BenchError> {
    let a = ctx.args;
    let pop = ctx.population(setup).await?;
    let probes = ctx.accounts(Kind::Probe, 2, setup).await?;
    ctx.join_all(&probes[0], &pop.rooms[..1], setup).await?;
    ctx.join_all(&probes[1], &pop.rooms, setup).await?;
    let mut since = ctx
        .bounded("probe positions", 2, |p| {
            let probe = &probes[p];
            async move {
                let v = ctx.client.sync(probe, None, 0, POSITION_FILTER).await?;
                Ok(v["next_batch"].as_str().unwrap_or_default().to_owned())
            }
        })
        .await?;
    let marker = format!("{}.{}", ctx.run_id, ctx.round);
    let sender = &pop.accounts[pop.members[0][0]];
    let room = &pop.rooms[0];
    let sampler = a.server_pid.and_then(Sampler::start);
    let bar = ctx.bar(a.repeats as u64, "incremental syncs");
    let mut latency = [Latencies::new(), Latencies::new()];
    let mut missing = 0;
    let measured = ctx
        .capped("incremental syncs", async {
            for n in 0..a.repeats as u64 {
                ctx.client
                    .send(
                        sender,
                        room,
                        &format!("i{marker}n{n}"),
                        &traffic::content(&marker, n),
                    )
                    .await
                    .map_err(BenchError::request("send events"))?;
                let order = if n % 2 == 0 { [0, 1] } else { [1, 0] };
                for p in order {
                    let begun = Instant::now();
                    let v = ctx
                        .client
                        .sync(&probes[p], Some(&since[p]), 0, MEASURED_FILTER)
                        .await
                        .map_err(BenchError::request("incremental syncs"))?;
                    latency[p].record(begun.elapsed());
                    if !holds(&v, room, &marker, n) {
                        missing += 1;
                    }
                    since[p] = v["next_batch"].as_str().unwrap_or_default().to_owned();
                }
                bar.inc(1);
            }
            Ok(())
        })
        .await;
    bar.finish_and_clear();
    measured?;
    let (one, many) = (latency[0].summary(), latency[1].summary());
    Ok(IncrementalSyncReport {
        rooms_many: pop.rooms.len() as u64,
        one_room: one,
        many_rooms: many,
        ratio_p50: ratio(many.p50_ms, one.p50_ms),
        ratio_p99: ratio(many.p99_ms, one.p99_ms),
        event_missing: missing,
        server: sample(sampler).await,
    })
}

/// Counters shared by the idle long-polls.
#[derive(Default)]
struct Idle {
    waking: AtomicBool,
    returned_early: AtomicU64,
    returned_late: AtomicU64,
    errors: AtomicU64,
    woken: AtomicU64,
    wake_latency: Mutex<Latencies>,
    wake_started: Mutex<Option<Instant>>,
}

/// `idle`.
pub async fn idle(ctx: &Ctx<'_>, setup: &mut SetupReport) -> Result<IdleReport, BenchError> {
    let a = ctx.args;
    let users = a.users.min(a.idle);
    let accounts = ctx.accounts(Kind::User, users, setup).await?;
    let since = ctx
        .bounded("idle positions", users, |u| {
            let account = &accounts[u];
            async move {
                let v = ctx.client.sync(account, None, 0, IDLE_FILTER).await?;
                Ok(v["next_batch"].as_str().unwrap_or_default().to_owned())
            }
        })
        .await?;
    let sampler = a.server_pid.and_then(Sampler::start);
    let state = Arc::new(Idle::default());
    let timeout_base_ms = (a.hold_secs + 20) * 1000;
    let tasks: Vec<_> = (0..a.idle)
        .map(|i| {
            let (client, state) = (ctx.client.clone(), state.clone());
            let (account, since) = (accounts[i % users].clone(), since[i % users].clone());
            tokio::spawn(async move {
                let timeout_ms = timeout_base_ms + (i % 1000) as u64;
                let result = client
                    .sync(&account, Some(&since), timeout_ms, IDLE_FILTER)
                    .await;
                let waking = state.waking.load(Ordering::SeqCst);
                match result {
                    Err(_) => state.errors.fetch_add(1, Ordering::SeqCst),
                    Ok(_) if !waking => state.returned_early.fetch_add(1, Ordering::SeqCst),
                    Ok(v) => {
                        let has_wake = v["account_data"]["events"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|e| e["type"] == WAKE_TYPE);
                        if has_wake {
                            let started = *state.wake_started.lock().expect("wake start");
                            if let Some(t) = started {
                                state
                                    .wake_latency
                                    .lock()
                                    .expect("latency")
                                    .record(t.elapsed());
                            }
                            state.woken.fetch_add(1, Ordering::SeqCst)
                        } else {
                            state.returned_late.fetch_add(1, Ordering::SeqCst)
                        }
                    }
                };
            })
        })
        .collect();
    let bar = ctx.bar(a.hold_secs, "holding (s)");
    for _ in 0..a.hold_secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        bar.inc(1);
    }
    bar.finish_and_clear();
    *state.wake_started.lock().expect("wake start") = Some(Instant::now());
    state.waking.store(true, Ordering::SeqCst);
    let returned_early = state.returned_early.load(Ordering::SeqCst);
    let errors = state.errors.load(Ordering::SeqCst);
    let server = sample(sampler).await;

    let marker = format!("{}.{}", ctx.run_id, ctx.round);
    let wake = json!({"run": marker});
    let woke = ctx
        .bounded("wake", users, |u| {
            ctx.client.put_account_data(&accounts[u], WAKE_TYPE, &wake)
        })
        .await;
    let deadline = Instant::now() + WAKE_DEADLINE;
    while woke.is_ok() && Instant::now() < deadline && !tasks.iter().all(|t| t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tasks.iter().for_each(|t| t.abort());
    woke?;
    let wake_latency = state.wake_latency.lock().expect("latency").summary();
    Ok(IdleReport {
        requested: a.idle as u64,
        open_at_end: (a.idle as u64).saturating_sub(returned_early + errors),
        returned_early,
        errors,
        woken: state.woken.load(Ordering::SeqCst),
        returned_without_wake: state.returned_late.load(Ordering::SeqCst),
        wake_latency,
        hold_secs: a.hold_secs,
        server,
    })
}

#[cfg(test)]
mod tests {
    use super::initial_timeout_ms;

    /// The first 1,000 repeats send pairwise distinct timeouts, all under 1 s.
    #[test]
    fn initial_sync_repeats_differ_in_timeout() {
        let mut seen = std::collections::HashSet::new();
        for repeat in 0..1000 {
            let t = initial_timeout_ms(repeat);
            assert!(t < 1000, "repeat {repeat}: {t} ms");
            assert!(seen.insert(t), "repeat {repeat} repeats timeout {t}");
        }
        assert_eq!(initial_timeout_ms(1000), 0);
    }
}
