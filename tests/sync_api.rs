//! `GET /sync` over the real server: tokens, initial and incremental account
//! data, long-poll wakeups (one server, two servers sharing one store, and
//! the read/wait race on purpose), token stability across a restart, and
//! long-polls ending on shutdown.
//!
//! No test measures latency: a woken long-poll is recognised by returning
//! the change it waited for, which a timed-out one would not carry.

mod common_api;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use myelin::api::{AppState, serve};
use myelin::app::App;
use myelin::db::Databases;
use myelin::db::accounts::AccountsDb;
use myelin::service::ManualClock;
use myelin::sync::{DatabaseId, Notifier, Services, SyncRequest, SyncToken};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use common_api::{app_config, assert_error, test_config};

/// Long-poll timeout used where the poll must be woken, not time out: far
/// longer than any wakeup, shorter than the client's request timeout.
const LONG_POLL_MS: u64 = 25_000;

/// One server process: its state and its serve task.
struct Instance {
    base: String,
    state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Instance {
    /// A server over `databases` (which other instances may share), with its
    /// own state and notifier, as a separate process would have.
    async fn start(databases: &Databases) -> Self {
        let state = App::open(
            databases,
            app_config(test_config()),
            Arc::new(ManualClock::new(1_700_000_000_000)),
        )
        .await
        .expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, state.clone(), async {
            let _ = rx.await;
        }));
        Instance {
            base,
            state,
            shutdown: Some(tx),
            task,
        }
    }

    /// Stops serving, waits for the drain, stops the notifier and drops
    /// every store handle this instance held.
    async fn stop(mut self) {
        let _ = self.shutdown.take().expect("running").send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("server drains within 20 s")
            .expect("server task")
            .expect("server io");
        self.state.sync.notifier().stop().await;
    }

    fn client(&self, token: Option<&str>) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            base: self.base.clone(),
            token: token.map(str::to_owned),
        }
    }

    /// Registers `name` and returns its client and user ID.
    async fn register(&self, name: &str) -> (Client, String) {
        let (status, body) = self
            .client(None)
            .send(
                reqwest::Method::POST,
                "/_matrix/client/v3/register",
                Some(json!({"username": name, "password": "pw-123456", "auth": {"type": "m.login.dummy"}})),
            )
            .await;
        assert_eq!(status, 200, "register: {body}");
        let token = body["access_token"].as_str().expect("token");
        let user = body["user_id"].as_str().expect("user_id").to_owned();
        (self.client(Some(token)), user)
    }
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
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

    /// `GET /sync` with optional `since` and `timeout`; asserts 200.
    async fn sync(&self, since: Option<&str>, timeout_ms: Option<u64>) -> Value {
        let mut path = "/_matrix/client/v3/sync?".to_owned();
        if let Some(since) = since {
            path.push_str(&format!("since={since}&"));
        }
        if let Some(ms) = timeout_ms {
            path.push_str(&format!("timeout={ms}"));
        }
        let (status, body) = self.send(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "sync: {body}");
        body
    }

    async fn put_account_data(&self, user: &str, ty: &str, content: Value) {
        let path = format!("/_matrix/client/v3/user/{user}/account_data/{ty}");
        let (status, body) = self.send(reqwest::Method::PUT, &path, Some(content)).await;
        assert_eq!(status, 200, "put account data: {body}");
    }
}

/// `(type, content)` of each global account-data event in a sync response.
fn account_data(body: &Value) -> Vec<(String, Value)> {
    body["account_data"]["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| {
                    (
                        e["type"].as_str().expect("type is a string").to_owned(),
                        e["content"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn next_batch(body: &Value) -> String {
    let token = body["next_batch"].as_str().expect("next_batch").to_owned();
    token.parse::<SyncToken>().expect("next_batch parses");
    token
}

/// Installs an after-read hook on `state` that reports each time a
/// long-poll is about to wait.
fn report_waits(state: &AppState) -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    state.sync.set_after_read_hook(Some(Arc::new(move || {
        let _ = tx.send(());
        Box::pin(async {})
    })));
    rx
}

/// Waits (at most 30 s, so a broken test fails instead of hanging) for the
/// next report of [`report_waits`].
async fn waited(waiting: &mut mpsc::UnboundedReceiver<()>, what: &str) {
    tokio::time::timeout(Duration::from_secs(30), waiting.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}: not within 30 s"))
        .expect(what);
}

async fn open(dir: &Path) -> Databases {
    myelin::db::open_embedded_at(dir).await.expect("open store")
}

#[tokio::test]
async fn malformed_since_tokens_are_400_invalid_param() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Instance::start(&open(tmp.path()).await).await;
    let (alice, _) = server.register("alice").await;
    let good = next_batch(&alice.sync(None, None).await);
    let mut wrong_version = good.clone().into_bytes();
    wrong_version[1] = b'w'; // second char: format version 2 -> 3
    for bad in [
        "abc".to_owned(),
        "!!notbase64".to_owned(),
        good[..good.len() - 2].to_owned(),
        format!("{good}AA"),
        String::from_utf8(wrong_version).unwrap(),
    ] {
        let path = format!("/_matrix/client/v3/sync?since={bad}");
        let got = alice.send(reqwest::Method::GET, &path, None).await;
        assert_error(&got, 400, "M_INVALID_PARAM");
    }
    server.stop().await;
}

#[tokio::test]
async fn initial_then_incremental_account_data() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Instance::start(&open(tmp.path()).await).await;
    let (alice, user) = server.register("alice").await;
    let (bob, bob_id) = server.register("bob").await;
    alice
        .put_account_data(&user, "org.example.a", json!({"n": 1}))
        .await;
    alice
        .put_account_data(&user, "org.example.b", json!({"n": 2}))
        .await;
    bob.put_account_data(&bob_id, "org.example.bob", json!({}))
        .await;

    let initial = alice.sync(None, None).await;
    assert_eq!(
        account_data(&initial),
        vec![
            ("org.example.a".to_owned(), json!({"n": 1})),
            ("org.example.b".to_owned(), json!({"n": 2})),
        ]
    );
    let t1 = next_batch(&initial);

    // Nothing new: an immediate incremental sync is empty and does not go back.
    let empty = alice.sync(Some(&t1), Some(0)).await;
    assert!(account_data(&empty).is_empty(), "{empty}");
    let t2 = next_batch(&empty);
    let (p1, p2): (SyncToken, SyncToken) = (t1.parse().unwrap(), t2.parse().unwrap());
    assert!(p2.accounts >= p1.accounts);

    // Only what changed since, latest value per type.
    alice
        .put_account_data(&user, "org.example.a", json!({"n": 3}))
        .await;
    alice
        .put_account_data(&user, "org.example.a", json!({"n": 4}))
        .await;
    bob.put_account_data(&bob_id, "org.example.bob", json!({"x": 1}))
        .await;
    let inc = alice.sync(Some(&t2), Some(0)).await;
    assert_eq!(
        account_data(&inc),
        vec![("org.example.a".to_owned(), json!({"n": 4}))]
    );
    let t3 = next_batch(&inc);
    assert!(account_data(&alice.sync(Some(&t3), Some(0)).await).is_empty());
    // The older token still gives the same answer.
    assert_eq!(
        account_data(&alice.sync(Some(&t2), Some(0)).await),
        account_data(&inc)
    );
    server.stop().await;
}

#[tokio::test]
async fn long_poll_wakes_when_account_data_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Instance::start(&open(tmp.path()).await).await;
    let (alice, user) = server.register("alice").await;
    let since = next_batch(&alice.sync(None, None).await);
    let mut waiting = report_waits(&server.state);
    let poll = {
        let alice = alice.clone();
        tokio::spawn(async move { alice.sync(Some(&since), Some(LONG_POLL_MS)).await })
    };
    waited(&mut waiting, "the long-poll waits").await;
    alice
        .put_account_data(&user, "org.example.wake", json!({"w": true}))
        .await;
    let body = poll.await.unwrap();
    assert_eq!(
        account_data(&body),
        vec![("org.example.wake".to_owned(), json!({"w": true}))],
        "the long-poll returned because of the write, not its timeout"
    );
    server.stop().await;
}

/// Commits exactly between a long-poll's read and its wait, many times; on
/// even rounds the notifier has also published the commit before the
/// long-poll registers (the case a "wait for the next change event" design
/// misses; here the recent log must catch it). Every round must return its
/// own change. Rounds go two by two to one of two server processes sharing
/// the store, so both kinds of wait are raced: a process that read the
/// user's circle at the token waits before reading, and from round 2 on
/// the first round of each pair is on a token the other process issued, so
/// it reads first.
#[tokio::test]
async fn commits_between_read_and_wait_are_never_missed() {
    const ROUNDS: u64 = 60;
    let tmp = tempfile::tempdir().unwrap();
    let databases = open(tmp.path()).await;
    let servers = [
        Instance::start(&databases).await,
        Instance::start(&databases).await,
    ];
    let (_alice, user) = servers[0].register("alice").await;
    let accounts = AccountsDb::new(&databases.accounts);
    let round = Arc::new(AtomicU64::new(0));
    let armed = Arc::new(AtomicBool::new(false));
    for server in &servers {
        let (round, armed, user) = (round.clone(), armed.clone(), user.clone());
        let notifier: Arc<Notifier> = server.state.sync.notifier().clone();
        let accounts = accounts.clone();
        server
            .state
            .sync
            .set_after_read_hook(Some(Arc::new(move || {
                let (round, armed, user) = (round.clone(), armed.clone(), user.clone());
                let (accounts, notifier) = (accounts.clone(), notifier.clone());
                Box::pin(async move {
                    if !armed.swap(false, Ordering::SeqCst) {
                        return;
                    }
                    let i = round.load(Ordering::SeqCst);
                    let content = serde_json::value::to_raw_value(&json!({"round": i})).unwrap();
                    let stamp = accounts
                        .set_account_data(&user, None, "org.example.race", &content)
                        .await
                        .expect("write");
                    if i % 2 == 0 {
                        let version = stamp.version();
                        notifier.wait_published(DatabaseId::Accounts, version).await;
                        assert!(notifier.published(DatabaseId::Accounts) >= version);
                    }
                })
            })));
    }
    let services = servers.each_ref().map(|server| Services {
        rooms: server.state.rooms.clone(),
        transitory: server.state.transitory.clone(),
        e2ee: server.state.e2ee.clone(),
    });
    let user_id = ruma::UserId::parse(user.as_str()).expect("user id");
    let mut since = servers[0]
        .state
        .sync
        .sync(&services[0], &user_id, &SyncRequest::default())
        .await
        .unwrap()
        .next_batch
        .to_string();
    for i in 0..ROUNDS {
        let at = (i / 2 % 2) as usize;
        round.store(i, Ordering::SeqCst);
        armed.store(true, Ordering::SeqCst);
        let req = SyncRequest {
            since: Some(since.clone()),
            timeout: Duration::from_millis(LONG_POLL_MS),
            ..SyncRequest::default()
        };
        // A poll that missed its wake would still answer at its timeout
        // with what it then reads: only a wake answers within half of it.
        let got = tokio::time::timeout(
            Duration::from_millis(LONG_POLL_MS / 2),
            servers[at].state.sync.sync(&services[at], &user_id, &req),
        )
        .await
        .unwrap_or_else(|_| panic!("round {i}: the poll was not woken"))
        .unwrap();
        assert!(!armed.load(Ordering::SeqCst), "round {i}: the hook ran");
        let contents: Vec<String> = got
            .account_data
            .iter()
            .map(|c| c.content.to_string())
            .collect();
        assert_eq!(contents, vec![format!("{{\"round\":{i}}}")], "round {i}");
        since = got.next_batch.to_string();
    }
    for server in servers {
        server.stop().await;
    }
}

#[tokio::test]
async fn a_write_on_one_server_wakes_a_long_poll_on_another() {
    let tmp = tempfile::tempdir().unwrap();
    let databases = open(tmp.path()).await;
    let one = Instance::start(&databases).await;
    let two = Instance::start(&databases).await;
    let (alice_on_one, user) = one.register("alice").await;
    let alice_on_two = two.client(alice_on_one.token.as_deref());
    let mut since = next_batch(&alice_on_two.sync(None, None).await);
    for round in 0..3 {
        let mut waiting = report_waits(&two.state);
        let poll = {
            let (client, since) = (alice_on_two.clone(), since.clone());
            tokio::spawn(async move { client.sync(Some(&since), Some(LONG_POLL_MS)).await })
        };
        waited(&mut waiting, "the long-poll on server two waits").await;
        alice_on_one
            .put_account_data(&user, "org.example.x", json!({"round": round}))
            .await;
        let body = poll.await.unwrap();
        assert_eq!(
            account_data(&body),
            vec![("org.example.x".to_owned(), json!({"round": round}))]
        );
        since = next_batch(&body);
    }
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn tokens_stay_valid_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let databases = open(tmp.path()).await;
    let server = Instance::start(&databases).await;
    let (alice, user) = server.register("alice").await;
    let token = alice.token.clone().unwrap();
    alice
        .put_account_data(&user, "org.example.before", json!({}))
        .await;
    let before = next_batch(&alice.sync(None, None).await);
    server.stop().await;
    drop(databases);

    let databases = open(tmp.path()).await;
    let server = Instance::start(&databases).await;
    let alice = server.client(Some(&token));
    assert!(account_data(&alice.sync(Some(&before), Some(0)).await).is_empty());
    alice
        .put_account_data(&user, "org.example.after", json!({"a": 1}))
        .await;
    let body = alice.sync(Some(&before), Some(0)).await;
    assert_eq!(
        account_data(&body),
        vec![("org.example.after".to_owned(), json!({"a": 1}))]
    );
    let (old, new): (SyncToken, SyncToken) =
        (before.parse().unwrap(), next_batch(&body).parse().unwrap());
    assert!(new.accounts > old.accounts && new.rooms >= old.rooms);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_waiting_long_polls() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Instance::start(&open(tmp.path()).await).await;
    let (alice, _) = server.register("alice").await;
    let since = next_batch(&alice.sync(None, None).await);
    let mut waiting = report_waits(&server.state);
    let polls: Vec<_> = (0..5)
        .map(|_| {
            let (alice, since) = (alice.clone(), since.clone());
            // Longer than `Instance::stop` allows for the drain.
            tokio::spawn(async move { alice.sync(Some(&since), Some(28_000)).await })
        })
        .collect();
    for _ in 0..5 {
        waited(&mut waiting, "every long-poll waits").await;
    }
    server.stop().await;
    for poll in polls {
        let body = poll.await.unwrap();
        assert!(account_data(&body).is_empty());
        next_batch(&body);
    }
}

/// A sync that has nothing to acknowledge or record is read-only: it adds
/// no commit to any database (a write per sync would put every long-poll
/// through the committer and its fsync).
#[tokio::test]
async fn a_sync_with_nothing_new_commits_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let databases = open(tmp.path()).await;
    let server = Instance::start(&databases).await;
    let (alice, _) = server.register("alice").await;
    let mut since = next_batch(&alice.sync(None, Some(0)).await);
    let versions = || async {
        let mut out = Vec::new();
        for handle in databases.handles() {
            let tx = handle.db.create_transaction().expect("transaction");
            out.push(tx.get_read_version().await.expect("read version"));
        }
        out
    };
    let before = versions().await;
    for _ in 0..5 {
        since = next_batch(&alice.sync(Some(&since), Some(0)).await);
    }
    assert_eq!(versions().await, before, "no database committed");
    server.stop().await;
}
