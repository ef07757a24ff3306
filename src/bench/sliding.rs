//! The `sliding` scenario: simplified sliding sync (MSC4186,
//! `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`)
//! against issue 19's three targets, in one run.
//!
//! Owns the first two phases and the `sliding` report section; the third
//! phase is the traffic engine's (`traffic::run_on` with
//! `Syncing::Sliding`).
//!
//! Setup: the population (`max(--users, --syncers)` users, `--rooms` rooms
//! of `--members`), a probe user joined to every room, and one message per
//! room from its creator, so the order by recency is real.
//!
//! 1. **First list**: `--repeats` times, a fresh connection (no `pos`, a new
//!    random `conn_id`) with one list over range 0..19, `timeline_limit` 1
//!    and `required_state` name and avatar (what matrix-rust-sdk's
//!    `RoomListService` sends first). An answer is right when it holds
//!    `min(20, rooms)` rooms and its `count` is the probe's rooms.
//! 2. **One message**: on one connection of the probe, `--repeats` rounds
//!    of: (a) a message from a random room's creator, then a `timeout=0`
//!    request with the connection's `pos`, timed, checked to hold the room
//!    and the event; (b) a long-poll (`--poll-timeout-ms`) started
//!    [`LONG_POLL_HEAD_START`] before a message: the time from the send's
//!    200 and from its start to the answer that holds it (an answer
//!    without it is counted and polled again).
//! 3. **Delivery**: the `latency` shape (paced senders at `--rate`,
//!    default 1,000/s, `--events` events) with `--syncers` sliding-sync
//!    long-polls, completeness checked as for `/sync`.
//!
//! The probe stays a member of every room during delivery (one more member
//! per event than `latency`'s shape; it holds no long-poll then). Bounds:
//! each phase is capped by `--duration-secs`.

use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use serde_json::{Value, json};

use super::BenchError;
use super::client::Account;
use super::report::{SetupReport, TrafficReport};
use super::server_stats::{Sampler, ServerUsage};
use super::setup::{Ctx, Kind, Population};
use super::stats::{Latencies, LatencySummary};
use super::traffic::{self, Syncing};

/// How long a long-poll of phase 2 is given to reach the server before the
/// message is sent (HTTP gives no signal that it waits).
pub const LONG_POLL_HEAD_START: Duration = Duration::from_millis(20);
/// Long-poll answers without the message tried per round before giving up.
const MAX_POLLS_PER_ROUND: usize = 10;
/// The first list's range: rooms 0..19.
const FIRST_RANGE: u64 = 20;

/// The `sliding` section.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SlidingReport {
    /// Rooms of the probe user.
    pub rooms: u64,
    /// Phase 1.
    pub first_list: FirstListReport,
    /// Phase 2.
    pub one_message: OneMessageReport,
    /// Phase 3: sliding-sync long-polls.
    pub delivery: TrafficReport,
}

/// First room-list answers of fresh connections.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FirstListReport {
    /// Answers received.
    pub answers: u64,
    /// Answers without `min(20, rooms)` rooms or whose `count` was not the
    /// rooms.
    pub wrong_answers: u64,
    /// Rooms in the last answer.
    pub rooms_in_last_answer: u64,
    /// The list's `count` in the last answer.
    pub count_in_last_answer: u64,
    /// Request latency of each first answer.
    pub latency: LatencySummary,
    /// The server during the phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerUsage>,
}

/// One new message at a user in many rooms.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OneMessageReport {
    /// Rounds made.
    pub rounds: u64,
    /// Latency of the `timeout=0` request after the send.
    pub poll_latency: LatencySummary,
    /// `timeout=0` answers without the room and event.
    pub poll_missing: u64,
    /// From the send's 200 to the waiting long-poll's answer holding the
    /// event (0 when the answer came first).
    pub long_poll_after_ack: LatencySummary,
    /// From the send's start to that answer.
    pub long_poll_after_send_start: LatencySummary,
    /// Rounds whose long-polls never held the event.
    pub long_poll_missing: u64,
    /// Long-poll answers without the event (polled again).
    pub long_poll_empty_answers: u64,
    /// The server during the phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerUsage>,
}

/// The list matrix-rust-sdk's `RoomListService` sends first, on
/// connection `conn_id`.
pub fn room_list_body(conn_id: &str) -> Value {
    json!({
        "conn_id": conn_id,
        "lists": {"all_rooms": {
            "ranges": [[0, FIRST_RANGE - 1]],
            "timeline_limit": 1,
            "required_state": [["m.room.name", ""], ["m.room.avatar", ""]],
        }},
    })
}

/// Whether a first-list answer holds `min(20, rooms)` rooms and `count`
/// `rooms`.
pub fn first_list_is_right(v: &Value, rooms: u64) -> bool {
    let held = v["rooms"].as_object().map_or(0, |o| o.len() as u64);
    held == rooms.min(FIRST_RANGE) && v["lists"]["all_rooms"]["count"].as_u64() == Some(rooms)
}

/// Whether a sliding-sync answer holds event `n` of `marker` in `room_id`'s
/// timeline.
pub fn holds(v: &Value, room_id: &str, marker: &str, n: u64) -> bool {
    traffic::timeline_holds(&v["rooms"][room_id]["timeline"], marker, n)
}

async fn sample(sampler: Option<Sampler>) -> Option<ServerUsage> {
    match sampler {
        Some(s) => s.finish().await,
        None => None,
    }
}

/// `sliding`.
pub async fn run(ctx: &Ctx<'_>, setup: &mut SetupReport) -> Result<SlidingReport, BenchError> {
    let a = ctx.args;
    let pop = ctx.population(setup).await?;
    let probe = ctx.accounts(Kind::Probe, 1, setup).await?.remove(0);
    ctx.join_all(&probe, &pop.rooms, setup).await?;
    let marker = format!("{}.{}", ctx.run_id, ctx.round);
    let room_marker = format!("{marker}.rooms");
    let started = Instant::now();
    ctx.bounded("room messages", pop.rooms.len(), |r| {
        let creator = &pop.accounts[pop.members[r][0]];
        let content = traffic::content(&room_marker, r as u64);
        let txn = format!("s{room_marker}n{r}");
        let room_id = &pop.rooms[r];
        async move { ctx.client.send(creator, room_id, &txn, &content).await }
    })
    .await?;
    setup.secs += started.elapsed().as_secs_f64();
    let first_list = first_list(ctx, &probe, pop.rooms.len() as u64).await?;
    let one_message = one_message(ctx, &pop, &probe, &format!("{marker}.one")).await?;
    let rate = a.rate.unwrap_or(1000.0);
    let delivery = traffic::run_on(ctx, &pop, rate, Syncing::Sliding).await?;
    Ok(SlidingReport {
        rooms: pop.rooms.len() as u64,
        first_list,
        one_message,
        delivery,
    })
}

/// Phase 1 (module docs).
async fn first_list(
    ctx: &Ctx<'_>,
    probe: &Account,
    rooms: u64,
) -> Result<FirstListReport, BenchError> {
    let a = ctx.args;
    let sampler = a.server_pid.and_then(Sampler::start);
    let bar = ctx.bar(a.repeats as u64, "first lists");
    let mut r = FirstListReport::default();
    let mut latency = Latencies::new();
    let measured = ctx
        .capped("first lists", async {
            for _ in 0..a.repeats {
                let conn_id = format!("bench-{:08x}", rand::random::<u32>());
                let body = room_list_body(&conn_id);
                let begun = Instant::now();
                let v = ctx
                    .client
                    .sliding_sync(probe, None, 0, &body)
                    .await
                    .map_err(BenchError::request("first lists"))?;
                latency.record(begun.elapsed());
                r.answers += 1;
                if !first_list_is_right(&v, rooms) {
                    r.wrong_answers += 1;
                }
                r.rooms_in_last_answer = v["rooms"].as_object().map_or(0, |o| o.len() as u64);
                r.count_in_last_answer = v["lists"]["all_rooms"]["count"].as_u64().unwrap_or(0);
                bar.inc(1);
            }
            Ok(())
        })
        .await;
    bar.finish_and_clear();
    measured?;
    r.latency = latency.summary();
    r.server = sample(sampler).await;
    Ok(r)
}

/// Phase 2 (module docs); messages are marked `marker`.
async fn one_message(
    ctx: &Ctx<'_>,
    pop: &Population,
    probe: &Account,
    marker: &str,
) -> Result<OneMessageReport, BenchError> {
    let a = ctx.args;
    let phase = "one new message";
    let body = room_list_body("bench-one-message");
    let mut pos = ctx
        .client
        .sliding_sync(probe, None, 0, &body)
        .await
        .map_err(BenchError::request(phase))?["pos"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let sampler = a.server_pid.and_then(Sampler::start);
    let bar = ctx.bar(a.repeats as u64, "one message");
    let mut r = OneMessageReport::default();
    let (mut poll, mut after_ack, mut after_start) =
        (Latencies::new(), Latencies::new(), Latencies::new());
    let send = |n: u64| {
        let room = rand::rng().random_range(0..pop.rooms.len());
        let sender = pop.accounts[pop.members[room][0]].clone();
        let txn = format!("m{marker}n{n}");
        let content = traffic::content(marker, n);
        let room_id = pop.rooms[room].clone();
        async move {
            ctx.client
                .send(&sender, &room_id, &txn, &content)
                .await
                .map(|_| room_id)
                .map_err(BenchError::request(phase))
        }
    };
    let measured = ctx
        .capped(phase, async {
            for round in 0..a.repeats as u64 {
                // (a) the message, then a timeout=0 request.
                let n = 2 * round;
                let room_id = send(n).await?;
                let begun = Instant::now();
                let v = ctx
                    .client
                    .sliding_sync(probe, Some(&pos), 0, &body)
                    .await
                    .map_err(BenchError::request(phase))?;
                poll.record(begun.elapsed());
                if !holds(&v, &room_id, marker, n) {
                    r.poll_missing += 1;
                }
                pos = v["pos"].as_str().unwrap_or_default().to_owned();
                // (b) a waiting long-poll, then the message.
                let n = n + 1;
                let client = ctx.client.clone();
                let (account, body_b, from) = (probe.clone(), body.clone(), pos.clone());
                let timeout_ms = a.poll_timeout_ms;
                let first_poll = tokio::spawn(async move {
                    let v = client
                        .sliding_sync(&account, Some(&from), timeout_ms, &body_b)
                        .await;
                    (v, Instant::now())
                });
                tokio::time::sleep(LONG_POLL_HEAD_START).await;
                let send_start = Instant::now();
                let room_id = send(n).await?;
                let acked = Instant::now();
                let (mut polled, mut answered) = match first_poll.await {
                    Ok(x) => x,
                    Err(join) => std::panic::resume_unwind(join.into_panic()),
                };
                let mut found = false;
                for _ in 0..MAX_POLLS_PER_ROUND {
                    let v = polled.map_err(BenchError::request(phase))?;
                    pos = v["pos"].as_str().unwrap_or_default().to_owned();
                    if holds(&v, &room_id, marker, n) {
                        after_ack.record(answered.saturating_duration_since(acked));
                        after_start.record(answered.saturating_duration_since(send_start));
                        found = true;
                        break;
                    }
                    r.long_poll_empty_answers += 1;
                    polled = ctx
                        .client
                        .sliding_sync(probe, Some(&pos), timeout_ms, &body)
                        .await;
                    answered = Instant::now();
                }
                if !found {
                    r.long_poll_missing += 1;
                }
                r.rounds += 1;
                bar.inc(1);
            }
            Ok(())
        })
        .await;
    bar.finish_and_clear();
    measured?;
    r.poll_latency = poll.summary();
    r.long_poll_after_ack = after_ack.summary();
    r.long_poll_after_send_start = after_start.summary();
    r.server = sample(sampler).await;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::traffic::MARKER;

    #[test]
    fn a_first_list_is_right_with_min_20_rooms_and_the_count() {
        let rooms = |k: usize| -> Value {
            (0..k)
                .map(|i| (format!("!r{i}:h"), json!({})))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let answer =
            |k, count: u64| json!({"rooms": rooms(k), "lists": {"all_rooms": {"count": count}}});
        assert!(first_list_is_right(&answer(20, 1000), 1000));
        assert!(first_list_is_right(&answer(5, 5), 5));
        assert!(!first_list_is_right(&answer(19, 1000), 1000));
        assert!(!first_list_is_right(&answer(20, 999), 1000));
        assert!(!first_list_is_right(&json!({}), 5));
    }

    #[test]
    fn holds_finds_the_marked_event_in_the_room() {
        let v = json!({"rooms": {"!a:h": {"timeline": [
            {"content": {MARKER: {"run": "x.0.one", "n": 3}}},
        ]}}});
        assert!(holds(&v, "!a:h", "x.0.one", 3));
        assert!(!holds(&v, "!a:h", "x.0.one", 4));
        assert!(!holds(&v, "!b:h", "x.0.one", 3));
        assert!(!holds(&v, "!a:h", "x.0", 3));
    }
}
