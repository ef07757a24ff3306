//! Health endpoints and graceful shutdown of the `myelin` binary, run as a
//! child process over a temporary data directory:
//! - `/_myelin/health/live` and `/_myelin/health/ready` answer 200, the
//!   latter naming every database;
//! - SIGTERM while long-polls wait and clients send: every waiting
//!   long-poll is answered (200 with a `next_batch`) instead of being cut,
//!   the process exits with success, and after a restart every message
//!   acknowledged with a 200 is in the room's timeline.

// The test drives a separate server process over real time: its start-up
// deadline is wall-clock time, not the service clock.
#![allow(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

/// Longest wait for a started server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The server's settings: no rate limits, the cheapest password hashing, a
/// shutdown deadline far below the long-polls' timeout (so a long-poll
/// answered 200 was answered by the shutdown, not by its timeout or the
/// deadline cutting it), and a metrics listener to see the long-polls wait.
fn config(metrics_port: u16) -> String {
    format!(
        r#"
[server]
login_per_ip = {{ per_second = 1000000.0, burst = 1000000 }}
login_per_user = {{ per_second = 1000000.0, burst = 1000000 }}
register_per_ip = {{ per_second = 1000000.0, burst = 1000000 }}
password_hashing = {{ memory_kib = 8, iterations = 1, parallelism = 1 }}
[sync]
max_timeout_ms = 120000
[shutdown]
deadline_secs = 20
[metrics]
bind = "127.0.0.1:{metrics_port}"
"#
    )
}

/// The long-polls' timeout: far above the shutdown deadline.
const POLL_TIMEOUT_MS: u64 = 110_000;

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A running `myelin serve`.
struct Server {
    child: Child,
    base: String,
    metrics: String,
    http: reqwest::Client,
}

impl Server {
    async fn start(data: &Path) -> Server {
        let (port, metrics_port) = (free_port(), free_port());
        let config_path = data.with_extension("toml");
        std::fs::write(&config_path, config(metrics_port)).expect("write config");
        let child = Command::new(env!("CARGO_BIN_EXE_myelin"))
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--data")
            .arg(data)
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--server-name")
            .arg("health.test")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn myelin serve");
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(130))
                .build()
                .expect("http client"),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let url = format!("{}/_myelin/health/live", server.base);
            if let Ok(r) = server.http.get(&url).send().await
                && r.status().is_success()
            {
                return server;
            }
            if let Some(status) = server.child.try_wait().expect("try_wait") {
                panic!("myelin serve exited with {status}");
            }
            assert!(Instant::now() < deadline, "myelin serve did not answer");
            // Polling for the listener: there is no readiness signal to wait on.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value), reqwest::Error> {
        call(&self.http, &self.base, method, path, token, body).await
    }

    fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) with a valid signal on our own child process.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM sent");
    }

    /// `myelin_sync_long_polls_waiting` from the metrics listener.
    async fn waiting_long_polls(&self) -> f64 {
        let text = self
            .http
            .get(&self.metrics)
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("scrape body");
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("parses");
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == "myelin_sync_long_polls_waiting")
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
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

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(u16, Value), reqwest::Error> {
    let mut request = http.request(method, format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
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

async fn register(server: &Server, name: &str) -> String {
    let (status, body) = server
        .call(
            Method::POST,
            "/_matrix/client/v3/register",
            None,
            Some(json!({"username": name, "password": "secret-pass", "auth": {"type": "m.login.dummy"}})),
        )
        .await
        .expect("register");
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("token").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_and_ready_answer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&dir.path().join("data")).await;
    let (status, body) = server
        .call(Method::GET, "/_myelin/health/live", None, None)
        .await
        .expect("live");
    assert_eq!((status, body["status"].as_str()), (200, Some("live")));
    let (status, body) = server
        .call(Method::GET, "/_myelin/health/ready", None, None)
        .await
        .expect("ready");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    for name in ["accounts", "rooms", "transitory", "game"] {
        assert_eq!(body["databases"][name]["ok"], true, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_answers_long_polls_and_loses_no_acknowledged_event() {
    const POLLERS: usize = 3;
    const SENDERS: usize = 3;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = Server::start(&data).await;
    let token = register(&server, "alice").await;
    let (status, body) = server
        .call(
            Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(&token),
            Some(json!({})),
        )
        .await
        .expect("createRoom");
    assert_eq!(status, 200, "{body}");
    let room = body["room_id"].as_str().expect("room id").to_owned();

    // Long-polls on their own devices, each from a fresh token.
    let mut polls = Vec::new();
    for i in 0..POLLERS {
        let token = register(&server, &format!("poller{i}")).await;
        let (_, body) = server
            .call(Method::GET, "/_matrix/client/v3/sync", Some(&token), None)
            .await
            .expect("initial sync");
        let since = body["next_batch"].as_str().expect("next_batch").to_owned();
        let (http, base) = (server.http.clone(), server.base.clone());
        polls.push(tokio::spawn(async move {
            let path = format!("/_matrix/client/v3/sync?since={since}&timeout={POLL_TIMEOUT_MS}");
            call(&http, &base, Method::GET, &path, Some(&token), None).await
        }));
    }
    while server.waiting_long_polls().await < POLLERS as f64 {
        tokio::task::yield_now().await;
    }

    // Senders write until the server goes away, keeping what was acked.
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let (first_ack_tx, mut first_ack) = tokio::sync::mpsc::channel::<()>(SENDERS);
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (http, base) = (server.http.clone(), server.base.clone());
        let (token, room, acked) = (token.clone(), room.clone(), acked.clone());
        let first_ack_tx = first_ack_tx.clone();
        senders.push(tokio::spawn(async move {
            for n in 0.. {
                let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/s{s}-{n}");
                let body = json!({"msgtype": "m.text", "body": format!("{s}/{n}")});
                match call(&http, &base, Method::PUT, &path, Some(&token), Some(body)).await {
                    Ok((200, body)) => {
                        let id = body["event_id"].as_str().expect("event id").to_owned();
                        acked.lock().expect("acked").insert(id);
                        let _ = first_ack_tx.try_send(());
                    }
                    // Refused or cut by the shutdown: not acknowledged.
                    Ok(_) | Err(_) => return n,
                }
            }
            unreachable!("the loop ends when the server stops")
        }));
    }
    drop(first_ack_tx);
    for _ in 0..SENDERS {
        first_ack
            .recv()
            .await
            .expect("every sender got an acknowledgement");
    }

    server.terminate();
    for poll in polls {
        let (status, body) = poll
            .await
            .expect("poll task")
            .expect("the long-poll is answered, not cut");
        assert_eq!(status, 200, "{body}");
        assert!(body["next_batch"].is_string(), "{body}");
    }
    for sender in senders {
        sender.await.expect("sender task");
    }
    let (server, status) = tokio::task::spawn_blocking(move || {
        let mut server = server;
        let status = server.child.wait().expect("wait");
        (server, status)
    })
    .await
    .expect("wait task");
    assert!(status.success(), "myelin serve exited with {status}");
    drop(server);

    let server = Server::start(&data).await;
    let (status, body) = server
        .call(
            Method::POST,
            "/_matrix/client/v3/login",
            None,
            Some(json!({"type": "m.login.password", "user": "alice", "password": "secret-pass"})),
        )
        .await
        .expect("login");
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("token").to_owned();
    let (status, body) = server
        .call(
            Method::GET,
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1000"),
            Some(&token),
            None,
        )
        .await
        .expect("messages");
    assert_eq!(status, 200, "{body}");
    let stored: HashSet<String> = body["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect();
    let acked = acked.lock().expect("acked");
    assert!(!acked.is_empty());
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "acknowledged events lost: {lost:?}");
}
