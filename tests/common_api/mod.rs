//! Test harness of the HTTP API: starts the real server (`myelin::api::serve`)
//! on `127.0.0.1:0` over a temporary embedded store, with an injected
//! [`ManualClock`], and offers a small JSON client. Every request has a
//! timeout, so a hung server fails the test instead of stalling it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use myelin::api::{AppState, serve};
use myelin::app::{App, AppConfig};
use myelin::service::{ManualClock, PasswordHashing, RateLimit, ServerConfig};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Per-request timeout of the test client.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The test server's name.
pub const SERVER_NAME: &str = "test.local";

/// Settings for tests: no rate limits, the cheapest password hashing.
pub fn test_config() -> ServerConfig {
    ServerConfig {
        login_per_ip: RateLimit::UNLIMITED,
        login_per_user: RateLimit::UNLIMITED,
        register_per_ip: RateLimit::UNLIMITED,
        password_hashing: PasswordHashing::FAST_INSECURE,
        ..ServerConfig::default()
    }
}

/// The services' settings: [`SERVER_NAME`], `server` and sync's defaults.
pub fn app_config(server: ServerConfig) -> AppConfig {
    AppConfig {
        server_name: SERVER_NAME.try_into().expect("server name"),
        server,
        sync: Default::default(),
        media: Default::default(),
    }
}

/// A running server and what it runs on.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The clock the server reads.
    pub clock: ManualClock,
    /// Where the store lives.
    pub data_dir: PathBuf,
    /// The state the server runs with.
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _tmp: Option<Arc<tempfile::TempDir>>,
}

impl TestServer {
    /// A server over a fresh temporary store with [`test_config`].
    pub async fn start() -> Self {
        Self::start_config(test_config()).await
    }

    /// A server over a fresh temporary store with `config`.
    pub async fn start_config(config: ServerConfig) -> Self {
        let tmp = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut server =
            Self::start_at(tmp.path(), config, ManualClock::new(1_700_000_000_000)).await;
        server._tmp = Some(tmp);
        server
    }

    /// A server over a fresh temporary store with [`test_config`] and the
    /// media repository's settings `media` (its blobs under the store's
    /// directory unless `media.path` is set).
    pub async fn start_media(media: myelin::service::media::MediaConfig) -> Self {
        let tmp = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut config = app_config(test_config());
        config.media = media;
        let clock = ManualClock::new(1_700_000_000_000);
        let mut server = Self::start_app(tmp.path(), config, clock).await;
        server._tmp = Some(tmp);
        server
    }

    /// A server over the store in `dir` (which outlives it).
    pub async fn start_at(dir: &Path, config: ServerConfig, clock: ManualClock) -> Self {
        Self::start_app(dir, app_config(config), clock).await
    }

    /// A server over the store in `dir` (which outlives it) with
    /// `app_config`; media blobs default to `<dir>/blobs`.
    pub async fn start_app(dir: &Path, app_config: AppConfig, clock: ManualClock) -> Self {
        let databases = myelin::db::open_embedded_at(dir).await.expect("open store");
        Self::start_on_app(databases, dir, app_config, clock).await
    }

    /// A server over `databases`, opened by the caller (`data_dir` is only
    /// recorded).
    pub async fn start_on(
        databases: myelin::db::Databases,
        data_dir: &Path,
        config: ServerConfig,
        clock: ManualClock,
    ) -> Self {
        Self::start_on_app(databases, data_dir, app_config(config), clock).await
    }

    /// A server over `databases` with `app_config`; media blobs default to
    /// `<data_dir>/blobs`.
    pub async fn start_on_app(
        databases: myelin::db::Databases,
        data_dir: &Path,
        mut app_config: AppConfig,
        clock: ManualClock,
    ) -> Self {
        let dir = data_dir;
        if app_config.media.path.is_none() {
            app_config.media.path = Some(dir.join("blobs"));
        }
        let state = App::open(&databases, app_config, Arc::new(clock.clone()))
            .await
            .expect("state");
        drop(databases);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, state.clone(), async {
            let _ = rx.await;
        }));
        TestServer {
            base,
            clock,
            data_dir: dir.to_path_buf(),
            state,
            shutdown: Some(tx),
            task: Some(task),
            _tmp: None,
        }
    }

    /// Stops the server gracefully and waits until it has drained; returns
    /// the temporary directory (if this server owns one) so the store can be
    /// reopened.
    pub async fn stop(mut self) -> Option<Arc<tempfile::TempDir>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("server stops within 30 s")
                .expect("server task")
                .expect("server io");
        }
        // The notifier's watchers hold store handles; stop them so the store
        // closes and can be reopened.
        self.state.sync.notifier().stop().await;
        self._tmp.take()
    }

    /// A client without an access token.
    pub fn client(&self) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("client"),
            base: self.base.clone(),
            token: None,
        }
    }

    /// Registers `localpart` with `password` (UIA dummy flow in one request)
    /// and returns a client logged in as the new user.
    pub async fn register(&self, localpart: &str, password: &str) -> Client {
        let (status, body) = self
            .client()
            .post(
                "/_matrix/client/v3/register",
                json!({
                    "username": localpart,
                    "password": password,
                    "auth": {"type": "m.login.dummy"},
                }),
            )
            .await;
        assert_eq!(status, 200, "register {localpart}: {body}");
        self.client()
            .with_token(body["access_token"].as_str().expect("token"))
    }
}

impl TestServer {
    /// Logs `localpart` in with `password` on a new device; the client, or
    /// the failed response.
    pub async fn login(&self, localpart: &str, password: &str) -> Result<Client, (u16, Value)> {
        let (status, body) = self
            .client()
            .post(
                "/_matrix/client/v3/login",
                json!({"type": "m.login.password", "user": localpart, "password": password}),
            )
            .await;
        match body["access_token"].as_str() {
            Some(token) if status == 200 => Ok(self.client().with_token(token)),
            _ => Err((status, body)),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
/// A fresh server with three users: `admin` (made an admin account),
/// `alice` and `bob`, each logged in: the setup the game, leaderboard and
/// admin tests share.
pub struct AdminAliceBob {
    pub server: TestServer,
    pub admin: Client,
    pub alice: Client,
    pub bob: Client,
}

/// Starts a [`TestServer`] and registers [`AdminAliceBob`]'s three users.
pub async fn admin_alice_bob() -> AdminAliceBob {
    let server = TestServer::start().await;
    let admin = server.register("admin", "pw-admin-1").await;
    let alice = server.register("alice", "pw-alice-1").await;
    let bob = server.register("bob", "pw-bob-1").await;
    server
        .state
        .accounts
        .set_admin("admin", true)
        .await
        .expect("make the admin");
    AdminAliceBob {
        server,
        admin,
        alice,
        bob,
    }
}

/// A JSON client of the test server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// The access token sent as `Authorization: Bearer`, if any.
    pub token: Option<String>,
}

impl Client {
    /// The same client opening a new connection per request: a server may
    /// close a connection after refusing a request before reading its body,
    /// which a pooled connection would report as a broken pipe on the next
    /// request.
    pub fn fresh_connections(mut self) -> Self {
        self.http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        self
    }

    /// The same client with `token`.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// Sends a request with an optional JSON body; returns the status and the
    /// JSON body (`Null` if the body is empty or not JSON).
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(Method::POST, path, Some(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(Method::PUT, path, Some(body)).await
    }

    /// `DELETE path` with a JSON body.
    pub async fn delete(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(Method::DELETE, path, Some(body)).await
    }

    /// `POST path` with a raw body and content type.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        self.send_raw(Method::POST, path, body).await
    }

    /// `method path` with a raw body (sent as `application/json` when not
    /// empty); returns the status and the JSON body (`Null` if not JSON).
    pub async fn send_raw(&self, method: Method, path: &str, body: Vec<u8>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !body.is_empty() {
            req = req.header("content-type", "application/json").body(body);
        }
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// `POST /createRoom` with `body`; asserts 200 and returns the room ID.
    pub async fn create_room(&self, body: Value) -> String {
        let (status, got) = self.post("/_matrix/client/v3/createRoom", body).await;
        assert_eq!(status, 200, "createRoom: {got}");
        got["room_id"].as_str().expect("room_id").to_owned()
    }

    /// `POST /rooms/{room}/join`; asserts 200.
    pub async fn join(&self, room: &str) {
        let path = format!("/_matrix/client/v3/rooms/{room}/join");
        let (status, got) = self.post(&path, json!({})).await;
        assert_eq!(status, 200, "join: {got}");
    }

    /// Sends the text message `body` to `room` with transaction ID `txn`;
    /// asserts 200 and returns the event ID.
    pub async fn say(&self, room: &str, txn: &str, body: &str) -> String {
        let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
        let content = json!({"msgtype": "m.text", "body": body});
        let (status, got) = self.put(&path, content).await;
        assert_eq!(status, 200, "send: {got}");
        got["event_id"].as_str().expect("event_id").to_owned()
    }

    /// The user ID and device ID of this client's token (`whoami`).
    pub async fn whoami(&self) -> (String, String) {
        let (status, body) = self.get("/_matrix/client/v3/account/whoami").await;
        assert_eq!(status, 200, "whoami: {body}");
        (
            body["user_id"].as_str().expect("user_id").to_owned(),
            body["device_id"].as_str().expect("device_id").to_owned(),
        )
    }
}

/// Asserts a Matrix error response.
#[track_caller]
pub fn assert_error(got: &(u16, Value), status: u16, errcode: &str) {
    assert_eq!(got.0, status, "status of {}", got.1);
    assert_eq!(got.1["errcode"], errcode, "errcode of {}", got.1);
    assert!(got.1["error"].is_string(), "error message in {}", got.1);
}

/// `user`'s `/sync` now (`timeout=0`, after `since` or initial): asserts
/// 200 and returns `next_batch` and the whole answer.
pub async fn sync_now(user: &Client, since: Option<&str>) -> (String, Value) {
    let q = since.map_or(String::new(), |s| format!("&since={s}"));
    let (status, body) = user
        .get(&format!(
            "/_matrix/client/v3/sync?timeout=0&set_presence=offline{q}"
        ))
        .await;
    assert_eq!(status, 200, "sync: {body}");
    let next = body["next_batch"].as_str().expect("next_batch").to_owned();
    (next, body)
}
