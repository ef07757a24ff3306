//! `myelin bench`: a bounded load generator for any Matrix homeserver.
//!
//! It speaks only the Client-Server API over HTTP ([`client`]), so Myelin,
//! Synapse or any other server is measured the same way; it imports nothing
//! of Myelin's storage or services. Each scenario registers its own users
//! (or logs in existing ones) and builds its own rooms, then measures:
//!
//! - `throughput`: S senders as fast as the server answers, L long-polling
//!   syncers: send rate and latency, end-to-end delivery latency and
//!   completeness (every acknowledged event reaches every syncing member
//!   exactly once) (`traffic.rs`);
//! - `latency`: the same at a paced total rate (`--rate`, default 1,000/s);
//! - `initial-sync`: a user in R rooms after E events, timeline limit 20,
//!   lazy-loaded members (`syncs.rs`);
//! - `incremental-sync`: a user in 1 room against a user in R rooms, each
//!   receiving one new event per round;
//! - `idle`: N idle long-polls held for `--hold-secs`, then woken;
//! - `all`: each of the above in turn;
//! - `trades`, `wallet-credits`, `storage-writes`: Myelin's game API
//!   (issue 17; [`game`]), not part of `all` (they need an admin account,
//!   `--admin-user`);
//! - `leaderboard`: score submissions, rank and around-owner reads on one
//!   board of `--players` records (issue 18; [`leaderboard`]), not part of
//!   `all` either;
//! - `sliding`: simplified sliding sync (MSC4186) against issue 19's
//!   targets ([`sliding`]), not part of `all`: a probe user in `--rooms`
//!   rooms, its first room list (`--repeats` fresh connections, range
//!   0..19), its answer to one new message (`timeout=0` and a waiting
//!   long-poll), then the `latency` shape with sliding-sync long-polls in
//!   place of `/sync` ones (`traffic.rs`). A sliding-sync connection is
//!   per device and a server keeps few per device (Myelin: 10), so here
//!   every syncer is its own user: the scenario registers
//!   `max(--users, --syncers)` users ([`BenchArgs::population_users`]).
//!
//! With `--server-pid`, each phase also reports the server's RSS and CPU
//! ([`server_stats`]). The result is a human table and one JSON line
//! ([`report`]). `myelin bench --plot DIR RESULT...` runs nothing: it
//! draws SVG charts of saved results ([`plot`]).
//!
//! Bounds: every phase is capped by count and by `--duration-secs`;
//! concurrency, counts and times have hard maxima checked before anything
//! runs; URLs must be loopback unless `--allow-remote`.
//!
//! Who may import this: the CLI (`myelin bench`) and tests. It imports no
//! other Myelin module.
//!
//! The load tool owns its time and chance: it measures wall-clock latency
//! (`Instant::now`, Unix time in each event) against any server, and marks
//! its runs with a random ID. It is not the server, so it takes no injected
//! clock or random source.
#![allow(clippy::disallowed_methods)]

pub mod client;
pub mod game;
pub mod leaderboard;
pub mod plot;
pub mod report;
pub mod server_stats;
mod setup;
pub mod sliding;
pub mod stats;
mod syncs;
mod traffic;

use std::net::IpAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

pub use client::ClientError;
pub use report::Report;

/// Hard maxima of the arguments.
pub mod caps {
    /// `--users`.
    pub const USERS: usize = 100_000;
    /// `--rooms`.
    pub const ROOMS: usize = 100_000;
    /// `--senders`.
    pub const SENDERS: usize = 1_024;
    /// `--syncers`.
    pub const SYNCERS: usize = 10_000;
    /// `--idle`.
    pub const IDLE: usize = 20_000;
    /// `--events`.
    pub const EVENTS: u64 = 10_000_000;
    /// `--repeats`.
    pub const REPEATS: usize = 10_000;
    /// `--setup-concurrency`.
    pub const SETUP_CONCURRENCY: usize = 256;
    /// `--duration-secs`, `--hold-secs` and `--drain-secs`.
    pub const SECS: u64 = 600;
    /// `--players`.
    pub const PLAYERS: usize = 100_000;
    /// `--ops`.
    pub const OPS: u64 = 10_000_000;
}

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Senders as fast as possible, syncers long-polling.
    Throughput,
    /// Senders at a paced total rate, syncers long-polling.
    Latency,
    /// Initial sync of a user in every room after the events.
    InitialSync,
    /// Incremental sync of a user in 1 room against one in every room.
    IncrementalSync,
    /// Idle long-poll capacity.
    Idle,
    /// Every scenario above in turn.
    All,
    /// Random-pair trades between `--players` players (game API).
    Trades,
    /// Admin credits to one hot user (game API).
    WalletCredits,
    /// Paced storage object writes (game API).
    StorageWrites,
    /// Score submissions, rank and around-owner reads (leaderboard API).
    Leaderboard,
    /// Simplified sliding sync: first room list, one new message, and
    /// delivery to sliding-sync long-polls.
    Sliding,
}

impl Scenario {
    /// The name used on the command line and in the JSON line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::Latency => "latency",
            Scenario::InitialSync => "initial-sync",
            Scenario::IncrementalSync => "incremental-sync",
            Scenario::Idle => "idle",
            Scenario::All => "all",
            Scenario::Trades => "trades",
            Scenario::WalletCredits => "wallet-credits",
            Scenario::StorageWrites => "storage-writes",
            Scenario::Leaderboard => "leaderboard",
            Scenario::Sliding => "sliding",
        }
    }
}

/// `myelin bench`: load-test a Matrix homeserver over the Client-Server API.
#[derive(Clone, Debug, Parser)]
#[command(name = "bench")]
pub struct BenchArgs {
    /// Base URL of the homeserver.
    #[arg(long, default_value = "http://127.0.0.1:8008")]
    pub url: String,
    /// Allow a URL whose host is not loopback.
    #[arg(long)]
    pub allow_remote: bool,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Scenario::Throughput)]
    pub scenario: Scenario,
    /// Users to register (or log in with `--login`); `sliding`: at least
    /// `--syncers` (one user per sliding-sync long-poll).
    #[arg(long, default_value_t = 16)]
    pub users: usize,
    /// Rooms to create (for incremental-sync and sliding: the rooms of the
    /// many-room user).
    #[arg(long, default_value_t = 16)]
    pub rooms: usize,
    /// Members per room, creator included (at most `--users`).
    #[arg(long, default_value_t = 4)]
    pub members: usize,
    /// Concurrent senders (sender s sends into room s mod R; the game
    /// scenarios: concurrent clients).
    #[arg(long, default_value_t = 16)]
    pub senders: usize,
    /// Long-polling syncers (syncer j syncs as user j mod U).
    #[arg(long, default_value_t = 16)]
    pub syncers: usize,
    /// Events to send in total.
    #[arg(long, default_value_t = 2_000)]
    pub events: u64,
    /// Total send rate in events/s (0: as fast as possible; `latency`
    /// defaults to 1000; `storage-writes`: writes/s, default 2000;
    /// `wallet-credits`: credits/s, default unpaced).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Cap on each phase's wall time, seconds.
    #[arg(long, default_value_t = 60)]
    pub duration_secs: u64,
    /// After sending, how long syncers may take to receive everything.
    #[arg(long, default_value_t = 10)]
    pub drain_secs: u64,
    /// `throughput` and `latency`: milliseconds between starting the
    /// syncers' first long-polls and the first send, so that delivery is
    /// measured to long-polls already waiting rather than during their
    /// start-up burst (1,000 syncers connecting at once); 0 measures the
    /// burst too. At most 60,000.
    #[arg(long, default_value_t = 1000)]
    pub settle_ms: u64,
    /// `throughput` and `latency`: the syncers' long-poll timeout,
    /// milliseconds (the `timeout` of `GET /sync`). The default is what
    /// Element and matrix-js-sdk use. 1,000 to 120,000.
    #[arg(long, default_value_t = 30_000)]
    pub poll_timeout_ms: u64,
    /// `throughput` and `latency`: every syncer's first long-poll waits the
    /// full `--poll-timeout-ms`, so all idle syncers time out and poll again
    /// at the same moment (a reconnect storm). Without it, syncer `j` of `L`
    /// first waits `(j + 1) / L` of it, which spreads their timeouts evenly
    /// over one period, as among clients that did not connect at the same
    /// instant.
    #[arg(long)]
    pub aligned_polls: bool,
    /// Idle long-polls to open.
    #[arg(long, default_value_t = 100)]
    pub idle: usize,
    /// How long to hold the idle long-polls, seconds.
    #[arg(long, default_value_t = 10)]
    pub hold_secs: u64,
    /// Measured requests of the sync scenarios (`sliding`: first room
    /// lists, and rounds of one new message).
    #[arg(long, default_value_t = 20)]
    pub repeats: usize,
    /// Concurrent requests while registering, creating and joining.
    #[arg(long, default_value_t = 16)]
    pub setup_concurrency: usize,
    /// Registration token, for servers that require one.
    #[arg(long, env = "MYELIN_BENCH_REGISTRATION_TOKEN")]
    pub registration_token: Option<String>,
    /// Log in existing users `<prefix>0..<prefix>N` instead of registering.
    #[arg(long)]
    pub login: bool,
    /// Localpart prefix of the users.
    #[arg(long, default_value = "bench")]
    pub user_prefix: String,
    /// Password of the users (registered or logged in).
    #[arg(long, default_value = "bench-password-1")]
    pub password: String,
    /// `trades`: players to register, mint gold to and grant items to;
    /// `leaderboard`: players to register, each with one record.
    #[arg(long, default_value_t = 10_000)]
    pub players: usize,
    /// `trades`, `wallet-credits`, `storage-writes`: trades, credits or
    /// writes to make; `leaderboard`: submissions, then as many rank reads
    /// and as many around-owner reads.
    #[arg(long, default_value_t = 20_000)]
    pub ops: u64,
    /// `trades`, `wallet-credits`, `leaderboard`: an admin account's
    /// localpart, made beforehand with `myelin user create NAME --admin`.
    #[arg(long)]
    pub admin_user: Option<String>,
    /// The admin account's password.
    #[arg(long, env = "MYELIN_BENCH_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// PID of the server, to report its RSS and CPU.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// `--plot DIR RESULT...`: run nothing; write SVG charts of the
    /// result files (saved standard output of earlier runs) into `DIR`,
    /// one line per file. One list (the directory first) keeps the
    /// arguments small.
    #[arg(long, num_args = 2.., value_names = ["DIR", "RESULT"])]
    pub plot: Vec<std::path::PathBuf>,
}

/// A failed run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An argument is out of range.
    #[error("invalid arguments: {0}")]
    BadArgs(String),
    /// The URL's host is not loopback and `--allow-remote` was not given.
    #[error("refusing the non-loopback URL {0} (pass --allow-remote to measure a remote server)")]
    Remote(String),
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    /// A request of a phase failed.
    #[error("{phase}: {source}")]
    Request {
        /// The phase.
        phase: &'static str,
        /// What failed.
        #[source]
        source: ClientError,
    },
    /// `--plot` could not write its charts.
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
    /// A phase did not finish within `--duration-secs`.
    #[error("{phase} did not finish within {secs} s (--duration-secs)")]
    Deadline {
        /// The phase.
        phase: &'static str,
        /// The cap.
        secs: u64,
    },
}

impl BenchError {
    /// The endpoint the server does not implement, when that is why the
    /// run failed.
    pub fn missing_endpoint(&self) -> Option<&'static str> {
        match self {
            BenchError::Request {
                source: ClientError::Unrecognized { endpoint, .. },
                ..
            } => Some(endpoint),
            _ => None,
        }
    }

    fn request(phase: &'static str) -> impl FnOnce(ClientError) -> BenchError {
        move |source| BenchError::Request { phase, source }
    }
}

impl BenchArgs {
    /// Checks every bound and the loopback rule.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |what: &str| Err(BenchError::BadArgs(what.to_owned()));
        let within = |v: usize, min: usize, max: usize| (min..=max).contains(&v);
        if !within(self.users, 1, caps::USERS) {
            return bad(&format!("--users must be 1..={}", caps::USERS));
        }
        if !within(self.rooms, 1, caps::ROOMS) {
            return bad(&format!("--rooms must be 1..={}", caps::ROOMS));
        }
        if self.scenario != Scenario::Idle && !within(self.members, 1, self.population_users()) {
            return bad("--members must be 1..=--users");
        }
        if !within(self.senders, 1, caps::SENDERS) {
            return bad(&format!("--senders must be 1..={}", caps::SENDERS));
        }
        if !within(self.syncers, 0, caps::SYNCERS) {
            return bad(&format!("--syncers must be at most {}", caps::SYNCERS));
        }
        if !within(self.idle, 1, caps::IDLE) {
            return bad(&format!("--idle must be 1..={}", caps::IDLE));
        }
        if self.events > caps::EVENTS {
            return bad(&format!("--events must be at most {}", caps::EVENTS));
        }
        if !within(self.repeats, 1, caps::REPEATS) {
            return bad(&format!("--repeats must be 1..={}", caps::REPEATS));
        }
        if !within(self.players, 2, caps::PLAYERS) {
            return bad(&format!("--players must be 2..={}", caps::PLAYERS));
        }
        if self.ops > caps::OPS {
            return bad(&format!("--ops must be at most {}", caps::OPS));
        }
        if !within(self.setup_concurrency, 1, caps::SETUP_CONCURRENCY) {
            return bad(&format!(
                "--setup-concurrency must be 1..={}",
                caps::SETUP_CONCURRENCY
            ));
        }
        for (name, v) in [
            ("--duration-secs", self.duration_secs),
            ("--hold-secs", self.hold_secs),
            ("--drain-secs", self.drain_secs),
        ] {
            if !(1..=caps::SECS).contains(&v) {
                return bad(&format!("{name} must be 1..={}", caps::SECS));
            }
        }
        if self.settle_ms > 60_000 {
            return bad("--settle-ms must be at most 60000");
        }
        if !(1_000..=120_000).contains(&self.poll_timeout_ms) {
            return bad("--poll-timeout-ms must be 1000..=120000");
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate >= 0.0)
        {
            return bad("--rate must be a finite number >= 0");
        }
        if !self.allow_remote && !is_loopback_url(&self.url) {
            return Err(BenchError::Remote(self.url.clone()));
        }
        Ok(())
    }

    /// The users a scenario's population registers: `--users`, but for
    /// `sliding` at least `--syncers`, because each sliding-sync long-poll
    /// needs a connection of its own and a server bounds connections per
    /// device (Myelin: `max_connections_per_device`, 10, then the least
    /// recently used is dropped and its `pos` answers `M_UNKNOWN_POS`).
    pub fn population_users(&self) -> usize {
        match self.scenario {
            Scenario::Sliding => self.users.max(self.syncers),
            _ => self.users,
        }
    }

    /// The per-phase cap.
    fn phase_cap(&self) -> Duration {
        Duration::from_secs(self.duration_secs)
    }
}

/// Whether `url` is `http(s)://` to `localhost`, `127.0.0.0/8` or `::1`.
pub fn is_loopback_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return false;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, _)) => h,
            None => return false,
        }
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Runs the chosen scenario(s) and returns the report; prints progress bars
/// to standard error unless `--quiet`.
///
/// Errors: bad arguments, the first failed request of a setup step (a
/// server that lacks an endpoint gives [`BenchError::missing_endpoint`]),
/// or a phase over its time cap.
pub async fn run_bench(args: &BenchArgs) -> Result<Report, BenchError> {
    args.validate()?;
    let ctx = setup::Ctx::new(args)?;
    let mut report = Report::new(args, &ctx.run_id);
    let scenarios = match args.scenario {
        Scenario::All => vec![
            Scenario::Throughput,
            Scenario::Latency,
            Scenario::InitialSync,
            Scenario::IncrementalSync,
            Scenario::Idle,
        ],
        one => vec![one],
    };
    for (i, scenario) in scenarios.iter().enumerate() {
        let ctx = ctx.round(i);
        match scenario {
            Scenario::Throughput => {
                let rate = args.rate.unwrap_or(0.0);
                report.throughput = Some(traffic::run(&ctx, &mut report.setup, rate).await?);
            }
            Scenario::Latency => {
                let rate = args.rate.unwrap_or(1000.0);
                report.latency = Some(traffic::run(&ctx, &mut report.setup, rate).await?);
            }
            Scenario::InitialSync => {
                report.initial_sync = Some(syncs::initial(&ctx, &mut report.setup).await?);
            }
            Scenario::IncrementalSync => {
                report.incremental_sync = Some(syncs::incremental(&ctx, &mut report.setup).await?);
            }
            Scenario::Idle | Scenario::All => {
                report.idle = Some(syncs::idle(&ctx, &mut report.setup).await?);
            }
            Scenario::Trades => {
                report.trades = Some(game::trades(&ctx, &mut report.setup).await?);
            }
            Scenario::WalletCredits => {
                report.wallet_credits = Some(game::wallet_credits(&ctx, &mut report.setup).await?);
            }
            Scenario::StorageWrites => {
                report.storage_writes = Some(game::storage_writes(&ctx, &mut report.setup).await?);
            }
            Scenario::Leaderboard => {
                report.leaderboard = Some(leaderboard::run(&ctx, &mut report.setup).await?);
            }
            Scenario::Sliding => {
                report.sliding = Some(sliding::run(&ctx, &mut report.setup).await?);
            }
        }
    }
    Ok(report)
}

/// `myelin bench`: runs, then prints the human table and, as the last line
/// of standard output, the JSON line.
pub async fn run(args: BenchArgs) -> Result<(), BenchError> {
    if let Some((dir, results)) = args.plot.split_first() {
        if results.is_empty() {
            return Err(BenchError::BadArgs(
                "--plot needs a directory and at least one result file".into(),
            ));
        }
        for chart in plot::write_charts(dir, results)? {
            println!("{}", chart.display());
        }
        return Ok(());
    }
    let report = run_bench(&args).await?;
    println!("{}", report.table());
    println!("{}", report.json_line());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> BenchArgs {
        let mut argv = vec!["bench"];
        argv.extend_from_slice(extra);
        BenchArgs::try_parse_from(argv).expect("parses")
    }

    #[test]
    fn loopback_rule() {
        for ok in [
            "http://127.0.0.1:8008",
            "http://localhost:8008/",
            "https://127.0.0.2",
            "http://[::1]:8448/x",
        ] {
            assert!(is_loopback_url(ok), "{ok}");
        }
        for no in [
            "http://example.org",
            "http://10.0.0.1:8008",
            "http://127.0.0.1.example.org",
            "http://user@127.0.0.1@evil",
            "ftp://127.0.0.1",
            "http://[::2]:80",
        ] {
            assert!(!is_loopback_url(no), "{no}");
        }
        assert!(matches!(
            args(&["--url", "http://192.0.2.1:8008"]).validate(),
            Err(BenchError::Remote(_))
        ));
        args(&["--url", "http://192.0.2.1:8008", "--allow-remote"])
            .validate()
            .expect("allowed");
    }

    #[test]
    fn plot_takes_a_directory_then_results() {
        let a = args(&["--plot", "/tmp/charts", "a.json", "b.json"]);
        assert_eq!(a.plot.len(), 3);
        assert!(BenchArgs::try_parse_from(["bench", "--plot", "/tmp/charts"]).is_err());
    }

    #[test]
    fn bounds_are_enforced() {
        args(&[]).validate().expect("defaults are valid");
        for bad in [
            &["--senders", "0"][..],
            &["--senders", "5000"],
            &["--members", "17"],
            &["--duration-secs", "0"],
            &["--duration-secs", "601"],
            &["--idle", "20001"],
            &["--rate=-1"],
            &["--events", "10000001"],
            &["--players", "1"],
            &["--ops", "10000001"],
        ] {
            assert!(
                matches!(args(bad).validate(), Err(BenchError::BadArgs(_))),
                "{bad:?}"
            );
        }
    }
}
