//! The result of a run: a human table and one JSON line.
//!
//! The JSON line is a single object, `"tool": "myelin-bench"`, `"format":
//! 1`; times are in milliseconds (`_ms`) or seconds (`_secs`), sizes in
//! bytes (`_bytes`), rates per second (`_per_s`). Sections of scenarios
//! that did not run are absent; `server` sections appear only with
//! `--server-pid`. Field meanings are documented on each struct here.
//!
//! Fields are only ever added (readers such as [`super::plot`] take every
//! field as optional), so `format` stays 1: `throughput` and `latency`
//! gained per-second series and latency CDFs on 2026-12-05, then
//! `delivery_after_ack_latency` and `delivered_before_ack`, and the
//! `sliding` section appeared; older lines lack them.

use std::fmt::Write;

use serde::Serialize;

use super::BenchArgs;
use super::game::{TradesReport, WritesReport};
use super::leaderboard::LeaderboardReport;
use super::server_stats::ServerUsage;
use super::sliding::SlidingReport;
use super::stats::{CdfPoint, LatencySummary};

/// Everything one invocation measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Always `myelin-bench`.
    pub tool: &'static str,
    /// Version of this JSON shape.
    pub format: u32,
    /// `--scenario`.
    pub scenario: &'static str,
    /// `--url`.
    pub url: String,
    /// Random per invocation; part of every localpart and event marker.
    pub run_id: String,
    /// Wall-clock start, Unix milliseconds.
    pub started_unix_ms: u64,
    /// The sizes asked for.
    pub settings: Settings,
    /// What setup made, summed over scenarios.
    pub setup: SetupReport,
    /// `throughput`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput: Option<TrafficReport>,
    /// `latency`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<TrafficReport>,
    /// `initial-sync`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_sync: Option<InitialSyncReport>,
    /// `incremental-sync`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incremental_sync: Option<IncrementalSyncReport>,
    /// `idle`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleReport>,
    /// `trades`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trades: Option<TradesReport>,
    /// `wallet-credits`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wallet_credits: Option<WritesReport>,
    /// `storage-writes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_writes: Option<WritesReport>,
    /// `leaderboard`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaderboard: Option<LeaderboardReport>,
    /// `sliding`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sliding: Option<SlidingReport>,
}

/// The sizes of the run (from the arguments).
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// `--users`.
    pub users: usize,
    /// `--rooms`.
    pub rooms: usize,
    /// `--members`.
    pub members: usize,
    /// `--senders`.
    pub senders: usize,
    /// `--syncers`.
    pub syncers: usize,
    /// `--events`.
    pub events: u64,
    /// `--idle`.
    pub idle: usize,
    /// `--repeats`.
    pub repeats: usize,
    /// `--duration-secs`.
    pub duration_secs: u64,
    /// `--hold-secs`.
    pub hold_secs: u64,
    /// `--settle-ms`.
    pub settle_ms: u64,
    /// `--poll-timeout-ms`.
    pub poll_timeout_ms: u64,
    /// `--aligned-polls`.
    pub aligned_polls: bool,
    /// `--players`.
    pub players: usize,
    /// `--ops`.
    pub ops: u64,
}

/// What setup made and how long it took.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SetupReport {
    /// Accounts registered or logged in.
    pub users: u64,
    /// Rooms created.
    pub rooms: u64,
    /// Joins.
    pub joins: u64,
    /// Wall time of setup.
    pub secs: f64,
}

/// Senders and long-polling syncers (`throughput`, `latency`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct TrafficReport {
    /// Target total send rate (0: unpaced).
    pub rate_target_per_s: f64,
    /// Concurrent senders.
    pub senders: u64,
    /// Long-polling syncers.
    pub syncers: u64,
    /// Events acknowledged by the server (200 with an `event_id`).
    pub sent: u64,
    /// Sends that failed.
    pub send_errors: u64,
    /// The first send failure, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_send_error: Option<String>,
    /// From the first send to the last acknowledgement.
    pub send_window_secs: f64,
    /// `sent / send_window_secs`.
    pub send_per_s: f64,
    /// Request latency of successful sends.
    pub send_latency: LatencySummary,
    /// Sum over syncers of the acknowledged events in their user's rooms.
    pub deliveries_expected: u64,
    /// Of those, how many were received (each counted once).
    pub deliveries_received: u64,
    /// `deliveries_expected - deliveries_received`.
    pub missing: u64,
    /// Extra receipts of an event a syncer had already received.
    pub duplicates: u64,
    /// Events of this run received that were not expected (a send that
    /// failed on the client side but was stored).
    pub unexpected: u64,
    /// Sync responses with a `limited` timeline (a gap the client would
    /// have to backfill).
    pub timeline_gaps: u64,
    /// Syncers whose user is in a room but whose first `/sync` listed no
    /// joined room: the server's `/sync` does not deliver rooms (every
    /// delivery to them then counts as missing).
    pub syncers_without_rooms: u64,
    /// Failed `/sync` requests (retried).
    pub sync_errors: u64,
    /// From the first send to the last first receipt.
    pub delivery_window_secs: f64,
    /// `deliveries_received / delivery_window_secs`.
    pub delivered_per_s: f64,
    /// From send start to first receipt by a syncer, per syncer and event.
    pub delivery_latency: LatencySummary,
    /// From the send's acknowledgement (the sender read its 200) to the
    /// first receipt, per syncer and event: delivery without the send's own
    /// latency. A receipt before the acknowledgement counts as 0
    /// (`delivered_before_ack`). Added 2026-12-05.
    pub delivery_after_ack_latency: LatencySummary,
    /// First receipts that came before the sender read the send's 200
    /// (the server woke the syncer before answering the `PUT`).
    pub delivered_before_ack: u64,
    /// No missing, duplicate or unexpected event, and every send succeeded.
    pub complete: bool,
    /// The server during sending and draining.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerUsage>,
    /// The Unix second of the first send: where the per-second series
    /// start.
    pub series_start_unix_s: u64,
    /// Sends acknowledged in each second from `series_start_unix_s`
    /// (counted at the acknowledgement).
    pub sent_per_second: Vec<u64>,
    /// First receipts by a syncer in each second from
    /// `series_start_unix_s`.
    pub delivered_per_second: Vec<u64>,
    /// The distribution of `send_latency` (120 points).
    pub send_latency_cdf: Vec<CdfPoint>,
    /// The distribution of `delivery_latency` (120 points).
    pub delivery_latency_cdf: Vec<CdfPoint>,
}

/// Initial sync of one user in every room (`initial-sync`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct InitialSyncReport {
    /// Rooms the measured user is in.
    pub rooms: u64,
    /// Events sent into the rooms before measuring.
    pub events_sent: u64,
    /// Joined rooms in the last response.
    pub rooms_in_response: u64,
    /// Size of the last response (re-serialised JSON).
    pub response_bytes: u64,
    /// Request latency of each initial sync.
    pub latency: LatencySummary,
    /// The server during the measured syncs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerUsage>,
}

/// Incremental sync, 1 room against many (`incremental-sync`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct IncrementalSyncReport {
    /// Rooms of the many-room user.
    pub rooms_many: u64,
    /// Latency of the 1-room user's syncs.
    pub one_room: LatencySummary,
    /// Latency of the many-room user's syncs.
    pub many_rooms: LatencySummary,
    /// `many_rooms.p50_ms / one_room.p50_ms`.
    pub ratio_p50: f64,
    /// `many_rooms.p99_ms / one_room.p99_ms`.
    pub ratio_p99: f64,
    /// Syncs whose response lacked the new event.
    pub event_missing: u64,
    /// The server during the measured syncs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerUsage>,
}

/// Idle long-poll capacity (`idle`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct IdleReport {
    /// Long-polls opened.
    pub requested: u64,
    /// Long-polls still pending when the hold ended.
    pub open_at_end: u64,
    /// Long-polls that returned before the hold ended (nothing had changed).
    pub returned_early: u64,
    /// Long-polls that failed (connection refused or reset, HTTP error).
    pub errors: u64,
    /// Held long-polls that returned the wake-up account data within the
    /// wake deadline.
    pub woken: u64,
    /// Held long-polls that returned during the wake-up without it.
    pub returned_without_wake: u64,
    /// From the start of the wake-up writes to each long-poll's return.
    pub wake_latency: LatencySummary,
    /// `--hold-secs`.
    pub hold_secs: u64,
    /// The server while opening and holding the long-polls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerUsage>,
}

impl Report {
    /// An empty report for `args`.
    pub fn new(args: &BenchArgs, run_id: &str) -> Self {
        let started_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        Report {
            tool: "myelin-bench",
            format: 1,
            scenario: args.scenario.name(),
            url: args.url.clone(),
            run_id: run_id.to_owned(),
            started_unix_ms,
            settings: Settings {
                users: args.users,
                rooms: args.rooms,
                members: args.members,
                senders: args.senders,
                syncers: args.syncers,
                events: args.events,
                idle: args.idle,
                repeats: args.repeats,
                duration_secs: args.duration_secs,
                hold_secs: args.hold_secs,
                settle_ms: args.settle_ms,
                poll_timeout_ms: args.poll_timeout_ms,
                aligned_polls: args.aligned_polls,
                players: args.players,
                ops: args.ops,
            },
            setup: SetupReport::default(),
            throughput: None,
            latency: None,
            initial_sync: None,
            incremental_sync: None,
            idle: None,
            trades: None,
            wallet_credits: None,
            storage_writes: None,
            leaderboard: None,
            sliding: None,
        }
    }

    /// The JSON line (no newline).
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }

    /// The human summary table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let s = &self.setup;
        let _ = writeln!(
            t,
            "myelin bench · {} · {} · run {}",
            self.scenario, self.url, self.run_id
        );
        let _ = writeln!(
            t,
            "setup           {} users, {} rooms, {} joins in {:.2} s",
            s.users, s.rooms, s.joins, s.secs
        );
        for (name, r) in [("throughput", &self.throughput), ("latency", &self.latency)] {
            let Some(r) = r else { continue };
            let _ = writeln!(
                t,
                "[{name}] {} senders, {} syncers, target {} events/s",
                r.senders,
                r.syncers,
                rate(r.rate_target_per_s)
            );
            traffic(&mut t, r, "GET /sync");
        }
        if let Some(r) = &self.initial_sync {
            let _ = writeln!(
                t,
                "[initial-sync] user in {} rooms after {} events; response: {} rooms, {} bytes",
                r.rooms, r.events_sent, r.rooms_in_response, r.response_bytes
            );
            row(&mut t, "  initial sync", &r.latency);
            if r.rooms_in_response < r.rooms {
                let _ = writeln!(
                    t,
                    "  WARNING       the response lists {} of the user's {} rooms",
                    r.rooms_in_response, r.rooms
                );
            }
            server(&mut t, &r.server);
        }
        if let Some(r) = &self.incremental_sync {
            let _ = writeln!(
                t,
                "[incremental-sync] 1 room vs {} rooms, one new event each ({} responses lacked it)",
                r.rooms_many, r.event_missing
            );
            row(&mut t, "  1 room", &r.one_room);
            row(&mut t, &format!("  {} rooms", r.rooms_many), &r.many_rooms);
            let _ = writeln!(
                t,
                "  ratio         p50 {:.2}x, p99 {:.2}x",
                r.ratio_p50, r.ratio_p99
            );
            if r.event_missing > 0 {
                let _ = writeln!(
                    t,
                    "  WARNING       {} sync responses lacked the new event: the latencies do not include delivering it",
                    r.event_missing
                );
            }
            server(&mut t, &r.server);
        }
        if let Some(r) = &self.idle {
            let _ = writeln!(
                t,
                "[idle] {} long-polls held {} s: {} open at end, {} returned early, {} errors, {} woken",
                r.requested, r.hold_secs, r.open_at_end, r.returned_early, r.errors, r.woken
            );
            row(&mut t, "  wake", &r.wake_latency);
            server(&mut t, &r.server);
        }
        if let Some(r) = &self.trades {
            let _ = writeln!(
                t,
                "[trades] {} players, {} clients: {} completed, {} failed ({} 409s, {} other errors), {:.0} trades/s over {:.2} s",
                r.players,
                r.workers,
                r.completed,
                r.failed,
                r.conflicts,
                r.errors,
                r.completed_per_s,
                r.window_secs
            );
            row(&mut t, "  trade", &r.trade_latency);
            let _ = writeln!(
                t,
                "  invariants    {}: gold {} of {} minted, {} negative, {} items missing, {} duplicated (check {:.1} s)",
                if r.invariants_hold {
                    "hold"
                } else {
                    "VIOLATED"
                },
                r.gold_after,
                r.minted,
                r.negative_balances,
                r.items_missing,
                r.items_duplicated,
                r.check_secs
            );
            error(&mut t, &r.first_error);
            server(&mut t, &r.server);
        }
        for (name, r) in [
            ("wallet-credits", &self.wallet_credits),
            ("storage-writes", &self.storage_writes),
        ] {
            let Some(r) = r else { continue };
            let _ = writeln!(
                t,
                "[{name}] {} clients, target {}/s: {} ok, {} 409s, {} other errors, {:.0}/s over {:.2} s",
                r.workers,
                rate(r.rate_target_per_s),
                r.ok,
                r.conflicts,
                r.errors,
                r.ok_per_s,
                r.window_secs
            );
            row(&mut t, "  latency", &r.latency);
            if let Some(ok) = r.balance_matches {
                let _ = writeln!(
                    t,
                    "  balance       {}",
                    if ok {
                        "equals the credits"
                    } else {
                        "DIFFERS from the credits"
                    }
                );
            }
            error(&mut t, &r.first_error);
            server(&mut t, &r.server);
        }
        if let Some(r) = &self.leaderboard {
            let _ = writeln!(
                t,
                "[leaderboard] board {}: {} players, one record each (seeded in {:.2} s); {} wrong read answers",
                r.board_id, r.players, r.seed_secs, r.wrong_answers
            );
            for (name, p) in [
                ("submit", &r.submit),
                ("rank", &r.rank),
                ("around 20", &r.around),
            ] {
                let _ = writeln!(
                    t,
                    "  {name:<13} {} clients: {} ok, {} 409s, {} other errors, {:.0}/s over {:.2} s",
                    p.workers, p.ok, p.conflicts, p.errors, p.ok_per_s, p.window_secs
                );
                row(&mut t, "    latency", &p.latency);
                error(&mut t, &p.first_error);
                server(&mut t, &p.server);
            }
        }
        if let Some(r) = &self.sliding {
            sliding(&mut t, r);
        }
        t.truncate(t.trim_end().len());
        t
    }
}

/// The rows of one traffic report; `api` names the syncers' endpoint.
fn traffic(t: &mut String, r: &TrafficReport, api: &str) {
    let _ = writeln!(
        t,
        "  sent          {} ok, {} errors, {:.0} events/s over {:.2} s",
        r.sent, r.send_errors, r.send_per_s, r.send_window_secs
    );
    row(t, "  send latency", &r.send_latency);
    let _ = writeln!(
        t,
        "  delivered     {}/{} ({} missing, {} duplicate, {} unexpected, {} gaps, {} sync errors), {:.0}/s",
        r.deliveries_received,
        r.deliveries_expected,
        r.missing,
        r.duplicates,
        r.unexpected,
        r.timeline_gaps,
        r.sync_errors,
        r.delivered_per_s
    );
    row(t, "  delivery", &r.delivery_latency);
    row(t, "  after the 200", &r.delivery_after_ack_latency);
    if r.delivered_before_ack > 0 {
        let _ = writeln!(
            t,
            "  before ack    {} receipts came before their send's 200 (counted as 0 ms)",
            r.delivered_before_ack
        );
    }
    let _ = writeln!(t, "  complete      {}", r.complete);
    if r.syncers_without_rooms > 0 {
        let _ = writeln!(
            t,
            "  WARNING       {} syncers got no joined rooms from {api}: the server does not deliver room events",
            r.syncers_without_rooms
        );
    }
    server(t, &r.server);
}

/// The rows of the `sliding` section.
fn sliding(t: &mut String, r: &SlidingReport) {
    let f = &r.first_list;
    let _ = writeln!(
        t,
        "[sliding] a user in {} rooms (simplified sliding sync, MSC4186)",
        r.rooms
    );
    let _ = writeln!(
        t,
        "  first list    {} fresh connections, range 0..19: {} wrong answers (last: {} rooms, count {})",
        f.answers, f.wrong_answers, f.rooms_in_last_answer, f.count_in_last_answer
    );
    row(t, "  first list", &f.latency);
    server(t, &f.server);
    let m = &r.one_message;
    let _ = writeln!(
        t,
        "  one message   {} rounds: {} timeout=0 answers and {} long-poll answers lacked it ({} long-poll answers without it before it)",
        m.rounds, m.poll_missing, m.long_poll_missing, m.long_poll_empty_answers
    );
    row(t, "  timeout=0", &m.poll_latency);
    row(t, "  poll after 200", &m.long_poll_after_ack);
    row(t, "  poll from send", &m.long_poll_after_send_start);
    server(t, &m.server);
    let d = &r.delivery;
    let _ = writeln!(
        t,
        "  delivery      {} senders, {} sliding-sync long-polls, target {} events/s",
        d.senders,
        d.syncers,
        rate(d.rate_target_per_s)
    );
    traffic(t, d, "sliding sync");
}

fn rate(per_s: f64) -> String {
    if per_s == 0.0 {
        "unpaced".to_owned()
    } else {
        format!("{per_s:.0}")
    }
}

fn row(t: &mut String, name: &str, l: &LatencySummary) {
    let _ = writeln!(
        t,
        "{name:<15} n={} p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms  mean {:.2} ms",
        l.count, l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, l.mean_ms
    );
}

fn error(t: &mut String, e: &Option<String>) {
    if let Some(e) = e {
        let _ = writeln!(t, "  first error   {e}");
    }
}

fn server(t: &mut String, s: &Option<ServerUsage>) {
    if let Some(s) = s {
        const MIB: f64 = 1024.0 * 1024.0;
        let _ = writeln!(
            t,
            "  server        RSS {:.1} -> {:.1} MiB (peak {:.1}), CPU {:.2} s ({:.0}% of a core)",
            s.rss_start_bytes as f64 / MIB,
            s.rss_end_bytes as f64 / MIB,
            s.rss_peak_bytes as f64 / MIB,
            s.cpu_secs,
            s.cpu_percent
        );
    }
}
