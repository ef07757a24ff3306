//! Prometheus metrics: a real server (`api::serve_with`) with its metrics
//! listener, scraped over HTTP and parsed with a Prometheus text-format
//! parser (`prometheus-parse`); counters must rise with the traffic sent,
//! and the client port must not serve them.

use std::sync::Arc;
use std::time::Duration;

use myelin::api::{ServeOptions, serve_with};
use myelin::app::{App, AppConfig};
use myelin::service::{ManualClock, PasswordHashing, RateLimit, ServerConfig};
use prometheus_parse::{Scrape, Value};
use serde_json::{Value as Json, json};

const TIMEOUT: Duration = Duration::from_secs(30);

struct Server {
    base: String,
    metrics: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    app: App,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        myelin::metrics::enable();
        let dir = tempfile::tempdir().expect("temp dir");
        let databases = myelin::db::open_embedded_at(dir.path())
            .await
            .expect("open store");
        let config = AppConfig {
            server_name: "metrics.test".try_into().expect("server name"),
            server: ServerConfig {
                login_per_ip: RateLimit::UNLIMITED,
                login_per_user: RateLimit::UNLIMITED,
                register_per_ip: RateLimit::UNLIMITED,
                password_hashing: PasswordHashing::FAST_INSECURE,
                ..ServerConfig::default()
            },
            sync: Default::default(),
            media: myelin::service::media::MediaConfig {
                path: Some(dir.path().join("blobs")),
                ..Default::default()
            },
        };
        let app = App::open(
            &databases,
            config,
            Arc::new(ManualClock::new(1_700_000_000_000)),
        )
        .await
        .expect("app");
        let client = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind client");
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind metrics");
        let base = format!("http://{}", client.local_addr().expect("addr"));
        let metrics_base = format!("http://{}", metrics.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let options = ServeOptions {
            metrics: Some(metrics),
            ..ServeOptions::default()
        };
        let task = tokio::spawn(serve_with(
            client,
            app.clone(),
            async {
                let _ = stopped.await;
            },
            options,
        ));
        Server {
            base,
            metrics: metrics_base,
            http: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .build()
                .expect("http client"),
            stop: Some(stop),
            task,
            app,
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Json>,
    ) -> (u16, Json) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("response");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Json::Null))
    }

    async fn scrape(&self) -> (String, Scrape) {
        let response = self
            .http
            .get(format!("{}/metrics", self.metrics))
            .send()
            .await
            .expect("scrape");
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.expect("scrape body");
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
        (content_type, scrape)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("stops")
            .expect("server task")
            .expect("server io");
        self.app.sync.notifier().stop().await;
    }
}

/// The sum of the samples of `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

const SEND_ROUTE: &str = "/_matrix/client/v3/rooms/:room_id/send/:event_type/:txn_id";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_rise_with_traffic_and_parse() {
    let server = Server::start().await;
    let (content_type, before) = server.scrape().await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );

    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/register",
            None,
            Some(json!({"username": "alice", "password": "secret-pass", "auth": {"type": "m.login.dummy"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("token").to_owned();
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(&token),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let room = body["room_id"].as_str().expect("room id").to_owned();
    const SENDS: usize = 5;
    for i in 0..SENDS {
        let (status, body) = server
            .call(
                reqwest::Method::PUT,
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t{i}"),
                Some(&token),
                Some(json!({"msgtype": "m.text", "body": format!("hello {i}")})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = server
        .call(
            reqwest::Method::GET,
            "/_matrix/client/v3/no/such/endpoint",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 404);
    // The client port does not serve metrics.
    let (status, _) = server
        .call(reqwest::Method::GET, "/metrics", None, None)
        .await;
    assert_eq!(status, 404);

    let (_, after) = server.scrape().await;
    let sends = |scrape: &Scrape| {
        value(
            scrape,
            "myelin_http_requests_total",
            &[("route", SEND_ROUTE), ("method", "PUT"), ("status", "200")],
        )
    };
    // At least: the other test of this binary sends too, into the same process-wide registry.
    assert!(sends(&after) - sends(&before) >= SENDS as f64);
    let unmatched = |scrape: &Scrape| {
        value(
            scrape,
            "myelin_http_requests_total",
            &[("route", "unmatched"), ("status", "404")],
        )
    };
    assert!(unmatched(&after) - unmatched(&before) >= 2.0);
    let latency = |scrape: &Scrape| {
        value(
            scrape,
            "myelin_http_request_duration_seconds",
            &[("route", SEND_ROUTE)],
        )
    };
    assert!(latency(&after) - latency(&before) >= SENDS as f64);
    let messages = |scrape: &Scrape| {
        value(
            scrape,
            "myelin_events_persisted_total",
            &[("type", "m.room.message")],
        )
    };
    assert!(messages(&after) - messages(&before) >= SENDS as f64);
    let room_commits = |scrape: &Scrape| {
        value(
            scrape,
            "myelin_kv_transactions_total",
            &[
                ("database", "rooms"),
                ("backend", "embedded"),
                ("outcome", "committed"),
            ],
        )
    };
    assert!(room_commits(&after) - room_commits(&before) >= SENDS as f64);
    let written = |scrape: &Scrape| value(scrape, "myelin_kv_embedded_written_bytes_total", &[]);
    assert!(written(&after) > written(&before));
    assert!(value(&after, "process_open_fds", &[]) > 0.0);
    assert!(value(&after, "process_resident_memory_bytes", &[]) > 0.0);
    assert_eq!(
        value(
            &after,
            "myelin_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_long_poll_shows_and_its_wake_counts() {
    let server = Server::start().await;
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/register",
            None,
            Some(json!({"username": "bob", "password": "secret-pass", "auth": {"type": "m.login.dummy"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("token").to_owned();
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(&token),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let room = body["room_id"].as_str().expect("room id").to_owned();
    let (_, body) = server
        .call(
            reqwest::Method::GET,
            "/_matrix/client/v3/sync",
            Some(&token),
            None,
        )
        .await;
    let since = body["next_batch"].as_str().expect("next_batch").to_owned();
    let (_, before) = server.scrape().await;
    let wakes_before = value(&before, "myelin_sync_wakes_total", &[]);

    let poll = {
        let http = server.http.clone();
        let url = format!(
            "{}/_matrix/client/v3/sync?since={since}&timeout=20000",
            server.base
        );
        let token = token.clone();
        tokio::spawn(async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("sync")
                .status()
                .as_u16()
        })
    };
    // The long-poll is registered with the notifier once the gauge shows it.
    let waiting = loop {
        let (_, scrape) = server.scrape().await;
        let waiting = value(&scrape, "myelin_sync_long_polls_waiting", &[]);
        if waiting >= 1.0 {
            break waiting;
        }
        assert!(!poll.is_finished(), "the long-poll ended before it waited");
        tokio::task::yield_now().await;
    };
    assert_eq!(waiting, 1.0);
    let (status, body) = server
        .call(
            reqwest::Method::PUT,
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/wake"),
            Some(&token),
            Some(json!({"msgtype": "m.text", "body": "wake up"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(poll.await.expect("poll task"), 200);
    let (_, after) = server.scrape().await;
    assert_eq!(value(&after, "myelin_sync_long_polls_waiting", &[]), 0.0);
    assert!(value(&after, "myelin_sync_wakes_total", &[]) >= wakes_before + 1.0);
    assert!(value(&after, "myelin_sync_delivery_seconds", &[]) >= 1.0);
    server.stop().await;
}

/// Registers `name`; returns its access token and device ID.
async fn register(server: &Server, name: &str) -> (String, String) {
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/register",
            None,
            Some(json!({"username": name, "password": "secret-pass", "auth": {"type": "m.login.dummy"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    (
        body["access_token"].as_str().expect("token").to_owned(),
        body["device_id"].as_str().expect("device").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_counts_and_the_event_cache_move_with_traffic() {
    let server = Server::start().await;
    let sample = || async {
        let counts = myelin::service::admin::sample_store_counts(&server.app.databases)
            .await
            .expect("sample");
        myelin::metrics::store_counts(counts);
        counts
    };
    let before = sample().await;
    let (token, _) = register(&server, "carol").await;
    let (_, dave_device) = register(&server, "dave").await;
    // Three to-device messages for dave, waiting in his device's inbox.
    for i in 0..3 {
        let (status, body) = server
            .call(
                reqwest::Method::PUT,
                &format!("/_matrix/client/v3/sendToDevice/m.test/t{i}"),
                Some(&token),
                Some(json!({"messages": {"@dave:metrics.test": {dave_device.as_str(): {"n": i}}}})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let after = sample().await;
    // Exact: the gauges are sampled here, and the other tests of this
    // binary register other users concurrently only into other stores.
    assert_eq!(after.registered_users, before.registered_users + 2);
    assert_eq!(after.devices, before.devices + 2);
    assert_eq!(after.to_device_queued, before.to_device_queued + 3);
    let (_, scrape) = server.scrape().await;
    // Each test's server has its own store, but the gauges are process-wide:
    // the latest sample of any test sets them, so check they are present.
    for name in [
        "myelin_registered_users",
        "myelin_devices",
        "myelin_to_device_queued_messages",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.metric == name),
            "{name} missing"
        );
    }

    // The event cache: sends authorize against cached state events (hits)
    // and read them once (misses); its entries and bytes are non-zero.
    let cache = |scrape: &Scrape, name: &str| value(scrape, name, &[("cache", "events")]);
    let hits_before = cache(&scrape, "myelin_cache_hits_total");
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(&token),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let room = body["room_id"].as_str().expect("room id").to_owned();
    for i in 0..3 {
        let (status, body) = server
            .call(
                reqwest::Method::PUT,
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/c{i}"),
                Some(&token),
                Some(json!({"msgtype": "m.text", "body": "cached"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, scrape) = server.scrape().await;
    assert!(cache(&scrape, "myelin_cache_hits_total") > hits_before);
    assert!(cache(&scrape, "myelin_cache_misses_total") > 0.0);
    assert!(cache(&scrape, "myelin_cache_entries") > 0.0);
    assert!(cache(&scrape, "myelin_cache_size_bytes") > 0.0);
    // The panic counter is exported (it moves in `api::panics`'s tests,
    // where a handler panics).
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "myelin_http_panics_total")
    );
    server.stop().await;
}
