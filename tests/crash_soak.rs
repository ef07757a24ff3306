//! Crash soak of `myelin serve` (issue 22, point 8), run by
//! `scripts/crash-soak [CYCLES]`; ignored by a plain `cargo test`.
//!
//! Each cycle starts the `myelin` binary cargo built for this test on
//! 127.0.0.1 (a free port) over one data directory kept across cycles, lets
//! [`USERS`] clients write concurrently (messages and state events in a shared
//! room, to-device messages, account data, one-time keys, new devices with
//! their device keys), kills the server with SIGKILL after a random delay,
//! restarts it and checks, for every write ever acknowledged with a 200:
//! - messages and state events: exactly once in the room's timeline
//!   (`/messages`); a write that was in flight at the kill at most once; a
//!   message's transaction ID, sent again after the restart, gives back the
//!   acknowledged event ID and no new event;
//! - `/sync` from the token taken at the start of the previous cycle delivers
//!   every event written in that cycle once (the gap of a limited timeline
//!   filled through `/messages` from its `prev_batch`), and nothing else;
//! - to-device messages: delivered exactly once over the recipient's chain of
//!   `/sync` tokens (across every cycle);
//! - account data (`GET`), the current `m.soak` state event and the one-time
//!   key count: at least the last acknowledged write, at most the last sent;
//! - devices: each acknowledged login's token still works and `/keys/query`
//!   returns its uploaded device keys.
//!
//! Randomness (kill delays, each client's choice of writes) comes from one
//! seed, printed (`MYELIN_SOAK_SEED` replays it; the interleaving of requests
//! and the kill still depend on timing). `MYELIN_SOAK_CYCLES` is the number
//! of kills (default 5). A non-200 answer other than a dropped connection
//! after the kill is a failure too. The test fails listing every failure.

// The soak drives a separate server process over real time: its start-up
// deadline and kill moments are wall-clock time, not the service clock.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};

#[path = "crash_soak/client.rs"]
mod client;
#[path = "crash_soak/verify.rs"]
mod verify;

use client::Client;
use verify::{verify, verify_to_device};

/// Concurrent clients, one account each.
const USERS: usize = 4;
/// The server name the soak's server runs with.
const SERVER_NAME: &str = "soak.test";
/// Bounds of the random delay between the clients' start and the kill, in ms.
const KILL_AFTER_MS: std::ops::Range<u64> = 150..1500;
/// Longest wait for a started server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// The server's settings: no rate limits (the soak is one IP), the cheapest
/// password hashing (logins are part of the load).
const CONFIG: &str = r#"
[server]
login_per_ip = { per_second = 1000000.0, burst = 1000000 }
login_per_user = { per_second = 1000000.0, burst = 1000000 }
register_per_ip = { per_second = 1000000.0, burst = 1000000 }
password_hashing = { memory_kib = 8, iterations = 1, parallelism = 1 }
"#;

#[test]
#[ignore = "a crash soak of the server binary, run by scripts/crash-soak"]
fn crash_soak() {
    let cycles: u32 = env_or("MYELIN_SOAK_CYCLES", 5);
    let seed: u64 = env_or(
        "MYELIN_SOAK_SEED",
        myelin::random::Random::os().range(0..u64::MAX),
    );
    println!("crash soak: {cycles} cycles, seed {seed} (MYELIN_SOAK_SEED={seed} replays it)");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let summary = runtime.block_on(soak(cycles, seed));
    println!(
        "crash soak: {} cycles, {} writes acknowledged ({} in flight at a kill), {} checks of an acknowledged write, {} failures",
        summary.cycles,
        summary.acked,
        summary.in_flight,
        summary.checks,
        summary.failures.len()
    );
    for failure in summary.failures.iter().take(50) {
        println!("FAILURE: {failure}");
    }
    assert!(
        summary.failures.is_empty(),
        "{} failures (seed {seed})",
        summary.failures.len()
    );
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} does not parse")),
        Err(_) => default,
    }
}

/// What a soak found.
#[derive(Default)]
struct Summary {
    cycles: u32,
    acked: u64,
    in_flight: u64,
    checks: u64,
    failures: Vec<String>,
}

/// A running `myelin serve`.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// Starts the server over `data` with its log appended to `log`, and
    /// waits until it answers.
    async fn start(data: &Path, config: &Path, log: &Path) -> Server {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("server log");
        let child = Command::new(env!("CARGO_BIN_EXE_myelin"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--data")
            .arg(data)
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--server-name")
            .arg(SERVER_NAME)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn myelin serve");
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = http_client();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let url = format!("{}/_matrix/client/versions", server.base);
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return server;
            }
            if let Some(status) = server.child.try_wait().expect("try_wait") {
                panic!("myelin serve exited with {status} (log: {})", log.display());
            }
            assert!(Instant::now() < deadline, "myelin serve did not answer");
            // Polling for the listener: there is no readiness signal to wait on.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, and reap the process.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("http client")
}

/// One account's session.
#[derive(Clone)]
struct Session {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Session {
    /// Sends a request; `Err` only if no response came (the server is gone).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// A request the server must answer with 200; its body.
    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let what = format!("{method} {path}");
        let (status, body) = self
            .call(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(status, 200, "{what}: {body}");
        body
    }
}

/// A device and what it uploaded.
#[derive(Clone)]
struct Device {
    session: Session,
    device_id: String,
    /// The `ed25519:<device>` key it uploaded.
    ed25519: String,
}

/// An account of the soak.
struct User {
    user_id: String,
    /// The first device, which does every write but logins.
    main: Device,
    /// Devices added by acknowledged logins (with acknowledged keys).
    devices: Vec<Device>,
    /// The to-device `/sync` token of the main device: everything before it
    /// was delivered and acknowledged.
    to_device_since: Option<String>,
}

/// The least and most a value may be after a crash: the last acknowledged
/// write and the last one sent.
#[derive(Clone, Copy, Default)]
struct Bounds {
    acked: u64,
    sent: u64,
}

/// A write identified by its `soak_id`.
#[derive(Clone, Copy)]
struct Write {
    acked: bool,
    cycle: u32,
}

/// Everything the clients were told, over all cycles.
#[derive(Default)]
struct Ledger {
    /// Messages and `m.soak` state events, by `soak_id`.
    timeline: HashMap<String, Write>,
    /// To-device messages, by `soak_id`.
    to_device: HashMap<String, Write>,
    /// How often each to-device message was delivered.
    delivered: HashMap<String, u32>,
    /// Per user: the `seq` of `m.soak` account data.
    account_data: Vec<Bounds>,
    /// Per user: the `seq` of its `m.soak` state event.
    state: Vec<Bounds>,
    /// Per user: the main device's one-time keys.
    one_time_keys: Vec<Bounds>,
    /// Per user: the last acknowledged message (txn ID, event ID).
    last_send: Vec<Option<(String, String)>>,
}

/// One client's record of a cycle.
#[derive(Default)]
struct ClientLog {
    timeline: Vec<(String, bool)>,
    to_device: Vec<(String, bool)>,
    account_data: Bounds,
    state: Bounds,
    one_time_keys: Bounds,
    last_send: Option<(String, String)>,
    devices: Vec<Device>,
    failures: Vec<String>,
}

async fn soak(cycles: u32, seed: u64) -> Summary {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let config = dir.path().join("myelin.toml");
    let log = dir.path().join("server.log");
    std::fs::write(&config, CONFIG).expect("config");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut summary = Summary::default();
    let mut ledger = Ledger {
        account_data: vec![Bounds::default(); USERS],
        state: vec![Bounds::default(); USERS],
        one_time_keys: vec![Bounds::default(); USERS],
        last_send: vec![None; USERS],
        ..Ledger::default()
    };

    let mut server = Server::start(&data, &config, &log).await;
    let (mut users, room) = set_up(&server.base).await;
    let mut since = current_token(&users[0].main.session).await;
    for cycle in 1..=cycles {
        let started = Instant::now();
        let killed = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = users
            .iter()
            .enumerate()
            .map(|(u, user)| {
                let client = Client {
                    cycle,
                    user: u,
                    user_id: user.user_id.clone(),
                    main: user.main.clone(),
                    peer: users[(u + 1) % USERS].user_id.clone(),
                    peer_device: users[(u + 1) % USERS].main.device_id.clone(),
                    room: room.clone(),
                    killed: killed.clone(),
                    rng: StdRng::seed_from_u64(rng.random()),
                    log: ClientLog {
                        account_data: ledger.account_data[u],
                        state: ledger.state[u],
                        one_time_keys: ledger.one_time_keys[u],
                        ..ClientLog::default()
                    },
                };
                tokio::spawn(client.run())
            })
            .collect();
        let kill_after_ms = rng.random_range(KILL_AFTER_MS);
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        killed.store(true, Ordering::SeqCst);
        server.kill();
        let mut acked = 0;
        let mut in_flight = 0;
        for (u, task) in tasks.into_iter().enumerate() {
            let log = task.await.expect("client task");
            for (id, ok) in log.timeline.into_iter() {
                ledger.timeline.insert(id, Write { acked: ok, cycle });
                if ok { acked += 1 } else { in_flight += 1 }
            }
            for (id, ok) in log.to_device.into_iter() {
                ledger.to_device.insert(id, Write { acked: ok, cycle });
                if ok { acked += 1 } else { in_flight += 1 }
            }
            acked += log.devices.len() as u64;
            ledger.account_data[u] = log.account_data;
            ledger.state[u] = log.state;
            ledger.one_time_keys[u] = log.one_time_keys;
            if log.last_send.is_some() {
                ledger.last_send[u] = log.last_send;
            }
            users[u].devices.extend(log.devices);
            summary.failures.extend(log.failures);
        }

        server = Server::start(&data, &config, &log).await;
        for user in &mut users {
            user.main.session.base.clone_from(&server.base);
            for device in &mut user.devices {
                device.session.base.clone_from(&server.base);
            }
        }
        let before = summary.failures.len();
        let checks = verify(
            cycle,
            &users,
            &room,
            &since,
            &mut ledger,
            &mut summary.failures,
        )
        .await
            + verify_to_device(&mut users, &mut ledger, &mut summary.failures).await;
        since = current_token(&users[0].main.session).await;
        summary.cycles = cycle;
        summary.acked += acked;
        summary.in_flight += in_flight;
        summary.checks += checks;
        println!(
            "cycle {cycle}/{cycles}: killed after {kill_after_ms} ms, {acked} writes acknowledged, {in_flight} in flight, {checks} checks, {} failures, {:.1} s",
            summary.failures.len() - before,
            started.elapsed().as_secs_f64()
        );
    }
    drop(server);
    if !summary.failures.is_empty() {
        println!("server log: {}", log.display());
        // Keep the store and the log for a look.
        let kept = dir.keep();
        println!("data kept in {}", kept.display());
    }
    summary
}

/// Registers the users, uploads their device keys and joins them to one
/// room; returns them and the room ID.
async fn set_up(base: &str) -> (Vec<User>, String) {
    let http = http_client();
    let mut users = Vec::new();
    for u in 0..USERS {
        let anonymous = Session {
            http: http.clone(),
            base: base.to_owned(),
            token: String::new(),
        };
        let body = anonymous
            .ok(
                Method::POST,
                "/_matrix/client/v3/register",
                Some(json!({
                    "username": format!("soak{u}"),
                    "password": "soak",
                    "auth": {"type": "m.login.dummy"},
                })),
            )
            .await;
        let session = Session {
            token: body["access_token"].as_str().expect("token").to_owned(),
            ..anonymous
        };
        let user_id = body["user_id"].as_str().expect("user_id").to_owned();
        let device_id = body["device_id"].as_str().expect("device_id").to_owned();
        let ed25519 = format!("ed-{user_id}-{device_id}");
        session
            .ok(
                Method::POST,
                "/_matrix/client/v3/keys/upload",
                Some(json!({"device_keys": device_keys(&user_id, &device_id, &ed25519)})),
            )
            .await;
        users.push(User {
            user_id,
            main: Device {
                session,
                device_id,
                ed25519,
            },
            devices: Vec::new(),
            to_device_since: None,
        });
    }
    let room = users[0]
        .main
        .session
        .ok(
            Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(json!({"preset": "public_chat", "power_level_content_override": {"events_default": 0, "state_default": 0}})),
        )
        .await["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned();
    for user in &users[1..] {
        user.main
            .session
            .ok(
                Method::POST,
                &format!("/_matrix/client/v3/join/{}", enc(&room)),
                Some(json!({})),
            )
            .await;
    }
    (users, room)
}

fn device_keys(user_id: &str, device_id: &str, ed25519: &str) -> Value {
    json!({
        "user_id": user_id,
        "device_id": device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{device_id}"): format!("curve-{device_id}"),
            format!("ed25519:{device_id}"): ed25519,
        },
        "signatures": {user_id: {format!("ed25519:{device_id}"): "soak"}},
    })
}

/// Percent-encodes a path segment.
fn enc(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The filter of every `/sync` of the soak: the most timeline events a
/// response may carry.
fn sync_path(since: Option<&str>) -> String {
    let filter = enc(r#"{"room":{"timeline":{"limit":100}}}"#);
    match since {
        Some(since) => format!(
            "/_matrix/client/v3/sync?timeout=0&filter={filter}&since={}",
            enc(since)
        ),
        None => format!("/_matrix/client/v3/sync?timeout=0&filter={filter}"),
    }
}

/// The `next_batch` of a sync now: a position after every write so far.
async fn current_token(session: &Session) -> String {
    let body = session.ok(Method::GET, &sync_path(None), None).await;
    body["next_batch"].as_str().expect("next_batch").to_owned()
}
