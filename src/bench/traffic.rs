//! The `throughput` and `latency` scenarios: S senders and L long-polling
//! syncers over the same rooms; also the delivery phase of `sliding`
//! ([`super::sliding`]), whose syncers long-poll simplified sliding sync
//! instead of `/sync` ([`Syncing`]).
//!
//! Every event's content carries `org.myelin.bench`: `{"run", "n",
//! "sent_at_us"}`, the run marker, a sequence number unique in the run and
//! the Unix time in microseconds taken just before the `PUT` starts. A
//! syncer that receives an event of this run records `now - sent_at_us` the
//! first time (delivery latency) and counts every receipt. Sender and
//! syncers share one machine and one clock, so the difference is exact up
//! to clock reads.
//!
//! Delivery latency from the send's start includes the send's own latency
//! (the server's commit). So the report also gives it from the send's
//! acknowledgement (its 200, `delivery_after_ack_latency`): the sender
//! records the instant of each event's 200 and the tally subtracts it from
//! each first receipt. A long-poll may answer before the sender has read
//! its 200 (the server wakes syncers as it commits, then answers the
//! `PUT`); such a receipt counts as 0 ms after the ack and is counted in
//! `delivered_before_ack`.
//!
//! Events are claimed from one counter until `--events` are claimed or
//! `--duration-secs` has passed. With a rate, event `n` starts no earlier
//! than `n / rate` seconds after the first (open loop: a slow server makes
//! senders late, not the schedule slower). Sending ends, then syncers get
//! `--drain-secs` to receive the rest; completeness compares, per syncer,
//! the acknowledged events of its user's rooms with what it received.
//!
//! `/sync` syncers start from an initial sync taken before any event is sent, then
//! `--settle-ms` (default 1 s) passes between starting their long-polls
//! and the first send, so delivery is measured to waiting long-polls. They
//! long-poll with `--poll-timeout-ms` (30 s by default, as matrix-js-sdk)
//! and a timeline limit of 1,000 so a server's default limit does not
//! truncate bursts (a truncated timeline is still counted, as
//! `timeline_gaps`).
//!
//! Idle syncers (whose rooms get no events) time out and poll again. Had
//! every one started its first long-poll with the full timeout, they would
//! all time out together, one period after the start: a reconnect storm of
//! up to L requests within the spread of their starts, which clients that
//! connected at different moments never make. So syncer `j` of `L` first
//! waits `(j + 1) / L` of the timeout ([`first_poll_timeout`]) and the full
//! timeout afterwards, which spreads their timeouts evenly over each
//! period. `--aligned-polls` gives every first long-poll the full timeout,
//! to measure the storm.
//!
//! Sliding-sync syncers ([`Syncing::Sliding`]) open a connection before any
//! event is sent: one list over their user's rooms (`ranges` `[[0, n-1]]`
//! for `n` rooms, at most [`SLIDING_LIST_ROOMS`]), `timeline_limit` 100,
//! no `required_state`, then long-poll with the answer's `pos` and
//! `timeout` = `--poll-timeout-ms`, reading bench events from
//! `rooms.*.timeline` as `/sync` syncers read them from
//! `rooms.join.*.timeline.events` ([`bench_events`]). A connection the
//! server forgot (`M_UNKNOWN_POS`) is counted as a sync error and opened
//! afresh, as a client does; its whole rooms then count as duplicates.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::BenchError;
use super::client::{Account, Client, ClientError};
use super::report::{SetupReport, TrafficReport};
use super::server_stats::Sampler;
use super::setup::{Ctx, Population};
use super::stats::{Latencies, PerSecond, per_second};

/// The content key that marks bench events.
pub const MARKER: &str = "org.myelin.bench";
/// Filter of the syncers' first sync: only the position is needed.
pub const POSITION_FILTER: &str = r#"{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}},"presence":{"types":[]}}"#;
/// Filter of the syncers' long-polls.
pub const LIVE_FILTER: &str = r#"{"room":{"timeline":{"limit":1000},"state":{"lazy_load_members":true}},"presence":{"types":[]}}"#;
/// The most rooms a sliding-sync syncer's list range covers (Myelin's
/// default `max_range_rooms`): rooms past it are not delivered.
pub const SLIDING_LIST_ROOMS: usize = 1_000;
/// The `timeline_limit` of a sliding-sync syncer's list (Myelin's cap).
const SLIDING_TIMELINE_LIMIT: u64 = 100;

/// Which sync API the syncers long-poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syncing {
    /// `GET /sync` (`throughput`, `latency`).
    Sync,
    /// Simplified sliding sync, MSC4186 (`sliding`).
    Sliding,
}

/// Where one syncer stands: its `/sync` token, or its sliding-sync
/// connection (the request body and the last answer's `pos`; none: open
/// afresh).
enum Position {
    Sync(String),
    Sliding { body: Value, pos: Option<String> },
}

impl Position {
    /// Takes the first position of `account`, in `rooms` rooms, before any
    /// event is sent; also whether the answer listed any room.
    async fn open(
        syncing: Syncing,
        client: &Client,
        account: &Account,
        rooms: usize,
    ) -> Result<(Position, bool), ClientError> {
        match syncing {
            Syncing::Sync => {
                let v = client.sync(account, None, 0, POSITION_FILTER).await?;
                let lists_rooms = v["rooms"]["join"]
                    .as_object()
                    .is_some_and(|o| !o.is_empty());
                let since = v["next_batch"].as_str().unwrap_or_default().to_owned();
                Ok((Position::Sync(since), lists_rooms))
            }
            Syncing::Sliding => {
                let last = rooms.clamp(1, SLIDING_LIST_ROOMS) - 1;
                let body = json!({
                    "conn_id": "myelin-bench",
                    "lists": {"rooms": {
                        "ranges": [[0, last]],
                        "timeline_limit": SLIDING_TIMELINE_LIMIT,
                        "required_state": [],
                    }},
                });
                let v = client.sliding_sync(account, None, 0, &body).await?;
                let lists_rooms = v["rooms"].as_object().is_some_and(|o| !o.is_empty());
                let pos = v["pos"].as_str().map(str::to_owned);
                Ok((Position::Sliding { body, pos }, lists_rooms))
            }
        }
    }

    fn syncing(&self) -> Syncing {
        match self {
            Position::Sync(_) => Syncing::Sync,
            Position::Sliding { .. } => Syncing::Sliding,
        }
    }

    /// One long-poll of up to `timeout_ms` from here; moves to its answer's
    /// position. A sliding connection the server forgot (`M_UNKNOWN_POS`)
    /// is opened afresh by the next poll.
    async fn poll(
        &mut self,
        client: &Client,
        account: &Account,
        timeout_ms: u64,
    ) -> Result<Value, ClientError> {
        match self {
            Position::Sync(since) => {
                let v = client
                    .sync(account, Some(since), timeout_ms, LIVE_FILTER)
                    .await?;
                if let Some(next) = v["next_batch"].as_str() {
                    *since = next.to_owned();
                }
                Ok(v)
            }
            Position::Sliding { body, pos } => {
                let polled = client
                    .sliding_sync(account, pos.as_deref(), timeout_ms, body)
                    .await;
                match &polled {
                    Ok(v) => *pos = v["pos"].as_str().map(str::to_owned),
                    Err(e) if e.is_errcode("M_UNKNOWN_POS") => *pos = None,
                    Err(_) => {}
                }
                polled
            }
        }
    }
}

/// The events of run `marker` in a sync answer `v` of kind `syncing`, in
/// answer order, as `(n, sent_at_us)`, and how many of its room timelines
/// are `limited`. `/sync` answers hold them in `rooms.join.*.timeline.events`
/// (`limited` beside), sliding-sync answers in `rooms.*.timeline` (`limited`
/// on the room). Events of other runs, and marked events without a number,
/// are skipped.
pub fn bench_events(syncing: Syncing, v: &Value, marker: &str) -> (Vec<(u64, Option<u64>)>, u64) {
    let (rooms, events, limited): (&Value, &[&str], &[&str]) = match syncing {
        Syncing::Sync => (
            &v["rooms"]["join"],
            &["timeline", "events"],
            &["timeline", "limited"],
        ),
        Syncing::Sliding => (&v["rooms"], &["timeline"], &["limited"]),
    };
    fn at<'a>(room: &'a Value, path: &[&str]) -> &'a Value {
        path.iter().fold(room, |v, k| &v[*k])
    }
    let (mut found, mut gaps) = (Vec::new(), 0);
    for room in rooms.as_object().into_iter().flat_map(|o| o.values()) {
        if at(room, limited) == &Value::Bool(true) {
            gaps += 1;
        }
        for event in at(room, events).as_array().into_iter().flatten() {
            let m = &event["content"][MARKER];
            if m["run"].as_str() != Some(marker) {
                continue;
            }
            let Some(n) = m["n"].as_u64() else { continue };
            found.push((n, m["sent_at_us"].as_u64()));
        }
    }
    (found, gaps)
}
/// The timeout, in milliseconds, of the first long-poll of syncer `j` of
/// `syncers` whose later long-polls wait `timeout_ms`: `(j + 1) /
/// syncers` of it, at least 1 ms; all of it if `aligned` (module docs).
pub fn first_poll_timeout(j: usize, syncers: usize, timeout_ms: u64, aligned: bool) -> u64 {
    if aligned || syncers == 0 {
        return timeout_ms;
    }
    let share = timeout_ms as u128 * (j as u128 + 1) / syncers as u128;
    (share as u64).clamp(1, timeout_ms)
}

/// Unix time in microseconds.
pub fn now_unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// The receipts of one event by one syncer.
struct Receipts {
    count: u32,
    first: Instant,
}

/// What one syncer has seen.
#[derive(Default)]
struct Seen {
    /// Receipts per event number.
    receipts: HashMap<u64, Receipts>,
    latency: Latencies,
    /// First receipts per Unix second.
    per_second: PerSecond,
    gaps: u64,
    errors: u64,
    last_first_receipt: Option<Instant>,
    fatal: Option<ClientError>,
}

struct Syncer {
    seen: Mutex<Seen>,
    distinct: AtomicU64,
}

/// What the senders did.
pub struct Sent {
    /// Acknowledged event numbers per room index.
    pub acked: Vec<Vec<u64>>,
    /// When each acknowledged event's 200 was read, by event number.
    pub acked_at: HashMap<u64, Instant>,
    /// Latency of acknowledged sends.
    pub latency: Latencies,
    /// Acknowledgements per Unix second.
    pub per_second: PerSecond,
    /// Unix time of the first send, microseconds.
    pub started_unix_us: u64,
    /// Failed sends.
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// From the first send to the last acknowledgement.
    pub window: Duration,
    /// When the first send started.
    pub started: Instant,
}

impl Sent {
    /// Acknowledged events.
    pub fn count(&self) -> u64 {
        self.acked.iter().map(|a| a.len() as u64).sum()
    }
}

/// Runs `throughput` (rate 0) or `latency` (rate > 0) with `/sync`
/// syncers on a population of its own.
pub async fn run(
    ctx: &Ctx<'_>,
    setup: &mut SetupReport,
    rate: f64,
) -> Result<TrafficReport, BenchError> {
    let pop = ctx.population(setup).await?;
    run_on(ctx, &pop, rate, Syncing::Sync).await
}

/// Sends and long-polls on `pop`: syncer `j` syncs as user `j mod U` with
/// `syncing`, events are marked with the run and round ([`content`]).
pub async fn run_on(
    ctx: &Ctx<'_>,
    pop: &Population,
    rate: f64,
    syncing: Syncing,
) -> Result<TrafficReport, BenchError> {
    let a = ctx.args;
    let syncer_user: Vec<usize> = (0..a.syncers).map(|j| j % pop.accounts.len()).collect();
    let rooms_of = pop.rooms_of();
    let positions = ctx
        .bounded("syncer positions", a.syncers, |j| {
            let user = syncer_user[j];
            Position::open(
                syncing,
                &ctx.client,
                &pop.accounts[user],
                rooms_of[user].len(),
            )
        })
        .await?;
    let syncers_without_rooms = positions
        .iter()
        .zip(&syncer_user)
        .filter(|((_, lists_rooms), u)| !lists_rooms && !rooms_of[**u].is_empty())
        .count() as u64;
    let marker = format!("{}.{}", ctx.run_id, ctx.round);
    let sampler = a.server_pid.and_then(Sampler::start);
    let syncers: Vec<Arc<Syncer>> = (0..a.syncers)
        .map(|_| {
            Arc::new(Syncer {
                seen: Mutex::new(Seen::default()),
                distinct: AtomicU64::new(0),
            })
        })
        .collect();
    let tasks: Vec<_> = positions
        .into_iter()
        .enumerate()
        .map(|(j, (position, _))| {
            let timeouts = (
                first_poll_timeout(j, a.syncers, a.poll_timeout_ms, a.aligned_polls),
                a.poll_timeout_ms,
            );
            tokio::spawn(sync_loop(
                ctx.client.clone(),
                pop.accounts[syncer_user[j]].clone(),
                position,
                timeouts,
                marker.clone(),
                syncers[j].clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(a.settle_ms)).await;
    let sent = send(ctx, pop, &marker, rate, a.events).await;
    let sent = match sent {
        Ok(sent) => sent,
        Err(e) => {
            tasks.iter().for_each(|t| t.abort());
            return Err(e);
        }
    };

    // Drain: wait until every syncer has as many distinct events as it
    // expects, a syncer hits a missing endpoint, or the drain time is over.
    let expected: Vec<u64> = syncer_user
        .iter()
        .map(|&u| {
            rooms_of[u]
                .iter()
                .map(|&r| sent.acked[r].len() as u64)
                .sum()
        })
        .collect();
    let drain_until = Instant::now() + Duration::from_secs(a.drain_secs);
    let bar = ctx.bar(expected.iter().sum(), "delivering");
    loop {
        let got: u64 = syncers
            .iter()
            .map(|s| s.distinct.load(Ordering::Relaxed))
            .sum();
        bar.set_position(got);
        let done = syncers
            .iter()
            .zip(&expected)
            .all(|(s, &e)| s.distinct.load(Ordering::Relaxed) >= e);
        if done || Instant::now() >= drain_until || tasks.iter().any(|t| t.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bar.finish_and_clear();
    tasks.iter().for_each(|t| t.abort());
    let server = match sampler {
        Some(s) => s.finish().await,
        None => None,
    };
    let mut report = tally(pop, &sent, &syncer_user, &syncers)?;
    report.rate_target_per_s = rate;
    report.senders = a.senders as u64;
    report.syncers_without_rooms = syncers_without_rooms;
    report.server = server;
    Ok(report)
}

/// Compares what each syncer received with what was acknowledged.
fn tally(
    pop: &Population,
    sent: &Sent,
    syncer_user: &[usize],
    syncers: &[Arc<Syncer>],
) -> Result<TrafficReport, BenchError> {
    let room_of: HashMap<u64, usize> = sent
        .acked
        .iter()
        .enumerate()
        .flat_map(|(r, ns)| ns.iter().map(move |&n| (n, r)))
        .collect();
    let rooms_of = pop.rooms_of();
    let mut r = TrafficReport {
        syncers: syncers.len() as u64,
        sent: sent.count(),
        send_errors: sent.errors,
        first_send_error: sent.first_error.clone(),
        send_window_secs: sent.window.as_secs_f64(),
        send_per_s: per_second(sent.count(), sent.window),
        send_latency: sent.latency.summary(),
        series_start_unix_s: sent.started_unix_us / 1_000_000,
        sent_per_second: sent.per_second.series(sent.started_unix_us / 1_000_000),
        send_latency_cdf: sent.latency.cdf(),
        ..TrafficReport::default()
    };
    let mut delivery = Latencies::new();
    let mut after_ack = Latencies::new();
    let mut delivered = PerSecond::default();
    let mut last_receipt = sent.started;
    for (syncer, &user) in syncers.iter().zip(syncer_user) {
        let mut seen = syncer.seen.lock().expect("syncer state");
        if let Some(e) = seen.fatal.take() {
            return Err(BenchError::Request {
                phase: "long-poll syncers",
                source: e,
            });
        }
        let mine: HashSet<usize> = rooms_of[user].iter().copied().collect();
        let expected: u64 = mine.iter().map(|&room| sent.acked[room].len() as u64).sum();
        let mut found = 0;
        for (n, receipts) in &seen.receipts {
            r.duplicates += u64::from(receipts.count.saturating_sub(1));
            match room_of.get(n) {
                Some(room) if mine.contains(room) => {
                    found += 1;
                    if let Some(&acked) = sent.acked_at.get(n) {
                        if receipts.first < acked {
                            r.delivered_before_ack += 1;
                        }
                        after_ack.record(receipts.first.saturating_duration_since(acked));
                    }
                }
                _ => r.unexpected += 1,
            }
        }
        r.deliveries_expected += expected;
        r.deliveries_received += found;
        r.missing += expected - found;
        r.timeline_gaps += seen.gaps;
        r.sync_errors += seen.errors;
        delivery.merge(&seen.latency);
        delivered.merge(&seen.per_second);
        if let Some(t) = seen.last_first_receipt {
            last_receipt = last_receipt.max(t);
        }
    }
    let window = last_receipt.saturating_duration_since(sent.started);
    r.delivery_window_secs = window.as_secs_f64();
    r.delivered_per_s = per_second(r.deliveries_received, window);
    r.delivery_latency = delivery.summary();
    r.delivery_latency_cdf = delivery.cdf();
    r.delivery_after_ack_latency = after_ack.summary();
    r.delivered_per_second = delivered.series(r.series_start_unix_s);
    r.complete = r.missing == 0 && r.duplicates == 0 && r.unexpected == 0 && r.send_errors == 0;
    Ok(r)
}

/// One syncer: long-polls from `position` until aborted, the first time
/// with timeout `first_ms`, then `then_ms`, recording this run's events.
/// Transient failures are counted and retried after 100 ms; a missing
/// endpoint ends the loop.
async fn sync_loop(
    client: Client,
    account: Account,
    mut position: Position,
    (first_ms, then_ms): (u64, u64),
    marker: String,
    syncer: Arc<Syncer>,
) {
    let mut timeout_ms = first_ms;
    loop {
        let polled = position.poll(&client, &account, timeout_ms).await;
        timeout_ms = then_ms;
        match polled {
            Ok(v) => {
                let now = Instant::now();
                let now_us = now_unix_us();
                let (events, gaps) = bench_events(position.syncing(), &v, &marker);
                let mut seen = syncer.seen.lock().expect("syncer state");
                seen.gaps += gaps;
                for (n, sent_at) in events {
                    let receipts = seen.receipts.entry(n).or_insert(Receipts {
                        count: 0,
                        first: now,
                    });
                    receipts.count += 1;
                    if receipts.count == 1 {
                        seen.latency
                            .record_us(now_us.saturating_sub(sent_at.unwrap_or(now_us)));
                        seen.per_second.record(now_us);
                        seen.last_first_receipt = Some(now);
                        syncer.distinct.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(e) if e.is_unrecognized() => {
                syncer.seen.lock().expect("syncer state").fatal = Some(e);
                return;
            }
            Err(_) => {
                syncer.seen.lock().expect("syncer state").errors += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Whether a timeline (a JSON array of events, of `/sync` or of sliding
/// sync) holds event `n` of the run `marker`.
pub fn timeline_holds(timeline: &Value, marker: &str, n: u64) -> bool {
    timeline.as_array().into_iter().flatten().any(|e| {
        let m = &e["content"][MARKER];
        m["run"].as_str() == Some(marker) && m["n"].as_u64() == Some(n)
    })
}

/// The bench event content of event `n`.
pub fn content(marker: &str, n: u64) -> Value {
    json!({
        "msgtype": "m.text",
        "body": format!("myelin bench {marker} #{n}"),
        MARKER: {"run": marker, "n": n, "sent_at_us": now_unix_us()},
    })
}

/// Sends up to `events` events with `--senders` concurrent senders (sender
/// `s` sends into room `s mod R` as one of its members), paced at `rate`
/// events/s when `rate > 0`, for at most `--duration-secs`.
pub async fn send(
    ctx: &Ctx<'_>,
    pop: &Population,
    marker: &str,
    rate: f64,
    events: u64,
) -> Result<Sent, BenchError> {
    let a = ctx.args;
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let started_unix_us = now_unix_us();
    let deadline = started + a.phase_cap();
    let bar = ctx.bar(events, "sending");
    let mut tasks = Vec::with_capacity(a.senders);
    for s in 0..a.senders {
        let room = s % pop.rooms.len();
        let members = &pop.members[room];
        let account = pop.accounts[members[(s / pop.rooms.len()) % members.len()]].clone();
        let (room_id, client, marker) = (
            pop.rooms[room].clone(),
            ctx.client.clone(),
            marker.to_owned(),
        );
        let (next, stop, bar) = (next.clone(), stop.clone(), bar.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut acked_at = Vec::new();
            let mut latency = Latencies::new();
            let mut per_second = PerSecond::default();
            let (mut errors, mut first_error, mut last_ack) = (0u64, None, None);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= events || stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    break;
                }
                if rate > 0.0 {
                    let at = started + Duration::from_secs_f64(n as f64 / rate);
                    if at >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(at.into()).await;
                }
                let body = content(&marker, n);
                let begun = Instant::now();
                match client
                    .send(&account, &room_id, &format!("b{marker}n{n}"), &body)
                    .await
                {
                    Ok(_) => {
                        let ack = Instant::now();
                        latency.record(ack.duration_since(begun));
                        per_second.record(now_unix_us());
                        acked.push(n);
                        acked_at.push((n, ack));
                        last_ack = Some(ack);
                    }
                    Err(e) if e.is_unrecognized() => {
                        stop.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
                bar.inc(1);
            }
            Ok((
                room,
                (acked, acked_at),
                (latency, per_second),
                errors,
                first_error,
                last_ack,
            ))
        }));
    }
    let mut sent = Sent {
        acked: vec![Vec::new(); pop.rooms.len()],
        acked_at: HashMap::new(),
        latency: Latencies::new(),
        per_second: PerSecond::default(),
        started_unix_us,
        errors: 0,
        first_error: None,
        window: Duration::ZERO,
        started,
    };
    let mut failure = None;
    let mut last = started;
    for task in tasks {
        match task.await {
            Ok(Ok((
                room,
                (acked, acked_at),
                (latency, per_second),
                errors,
                first_error,
                last_ack,
            ))) => {
                sent.acked[room].extend(acked);
                sent.acked_at.extend(acked_at);
                sent.latency.merge(&latency);
                sent.per_second.merge(&per_second);
                sent.errors += errors;
                if sent.first_error.is_none() {
                    sent.first_error = first_error;
                }
                if let Some(t) = last_ack {
                    last = last.max(t);
                }
            }
            Ok(Err(e)) => failure = Some(e),
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }
    bar.finish_and_clear();
    if let Some(source) = failure {
        return Err(BenchError::Request {
            phase: "send events",
            source,
        });
    }
    sent.window = last.saturating_duration_since(started);
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::{Syncing, bench_events, first_poll_timeout};
    use serde_json::json;

    #[test]
    fn bench_events_are_read_from_either_answer_shape() {
        let ev = |run: &str, n: u64| json!({"content": {"org.myelin.bench": {"run": run, "n": n, "sent_at_us": 7}}});
        let sync = json!({"rooms": {"join": {"!a:h": {"timeline": {
            "limited": true, "events": [ev("r.0", 1), ev("other", 2), json!({"content": {}})],
        }}}}});
        assert_eq!(
            bench_events(Syncing::Sync, &sync, "r.0"),
            (vec![(1, Some(7))], 1)
        );
        let sliding = json!({"rooms": {
            "!a:h": {"timeline": [ev("r.0", 3)], "limited": false},
            "!b:h": {"timeline": [ev("r.0", 4)], "limited": true},
        }});
        let (mut found, gaps) = bench_events(Syncing::Sliding, &sliding, "r.0");
        found.sort_unstable();
        assert_eq!((found, gaps), (vec![(3, Some(7)), (4, Some(7))], 1));
        // One shape read as the other finds nothing.
        assert_eq!(bench_events(Syncing::Sync, &sliding, "r.0"), (vec![], 0));
        assert_eq!(bench_events(Syncing::Sliding, &sync, "r.0").0, vec![]);
    }

    #[test]
    fn first_long_polls_time_out_spread_over_one_period_unless_aligned() {
        let (syncers, period) = (1_000, 30_000);
        let firsts: Vec<u64> = (0..syncers)
            .map(|j| first_poll_timeout(j, syncers, period, false))
            .collect();
        assert_eq!(firsts[0], 30);
        assert_eq!(firsts[syncers - 1], period);
        assert!(firsts.windows(2).all(|w| w[0] < w[1]));
        // Each tenth of the period holds a tenth of the timeouts.
        for tenth in 0..10 {
            let (lo, hi) = (tenth * period / 10, (tenth + 1) * period / 10);
            let n = firsts.iter().filter(|&&t| lo < t && t <= hi).count();
            assert_eq!(n, syncers / 10, "tenth {tenth}");
        }
        assert!(
            (0..syncers).all(|j| first_poll_timeout(j, syncers, period, true) == period),
            "aligned: every first long-poll waits the full timeout"
        );
        // More syncers than milliseconds: never a zero timeout.
        assert_eq!(first_poll_timeout(0, 5_000, 1_000, false), 1);
    }
}
