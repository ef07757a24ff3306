//! No client input reaches a 5xx: a bounded, seeded property test over every
//! route, plus a checked-in corpus of inputs that once did.
//!
//! [`every_route_answers_generated_input_without_a_server_error`] sends
//! generated requests to the real server on 127.0.0.1:0: a route from
//! `myelin::api::registered_routes` (every ruma endpoint the router serves),
//! its path parameters filled with valid IDs, random text or oversized
//! strings (past FoundationDB's 10,000-byte key limit), random query
//! parameters, and a body that is random JSON (deep, wide, with large
//! strings), JSON shaped like the endpoint's own fields, or random bytes.
//! Every answer must be below 500; a panic would surface as 500 through the
//! server's panic layer. The case count ([`CASES`]) and the seed are fixed,
//! so CI runs the same cases every time; `MYELIN_FUZZ_CASES=N` and
//! `MYELIN_FUZZ_SEED=any-string` explore further by hand. A failing run
//! lists every route that answered 5xx with one example request each.
//!
//! [`corpus_cases_answer_without_a_server_error`] replays
//! `tests/fuzz_corpus/*.json`: inputs that produced a 500 or a panic before
//! they were fixed, each with the answer it must now get.

mod common_api;

use std::time::Duration;

use common_api::{Client, TestServer};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};

/// Generated requests per run in CI (about 10 s on a 2-core machine).
const CASES: u32 = 3_000;

/// The seed of the generated cases.
const SEED: [u8; 32] = *b"myelin-no-5xx-fuzz-seed-20261204";

/// What the generated requests refer to: IDs that exist, so requests get
/// past "not found" into the code behind it.
struct World {
    user_id: String,
    device_id: String,
    room_id: String,
    event_id: String,
}

/// One generated request.
#[derive(Debug, Clone)]
struct Case {
    route: usize,
    params: Vec<Fill>,
    query: Vec<(String, String)>,
    body: Body,
    authed: bool,
}

/// How a path parameter is filled.
#[derive(Debug, Clone)]
enum Fill {
    /// A valid value for the parameter's name (the world's room, user...).
    Valid,
    /// Random text.
    Text(String),
    /// `len` bytes of `c`.
    Long(char, usize),
}

/// A request body.
#[derive(Debug, Clone)]
enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>),
}

/// Keys that endpoints read, so generated objects hit real fields.
const KEYS: &[&str] = &[
    "type",
    "content",
    "body",
    "msgtype",
    "room_version",
    "initial_state",
    "state_key",
    "preset",
    "invite",
    "name",
    "topic",
    "room_alias_name",
    "visibility",
    "creation_content",
    "power_level_content_override",
    "user_id",
    "reason",
    "auth",
    "password",
    "identifier",
    "user",
    "device_id",
    "displayname",
    "avatar_url",
    "messages",
    "device_keys",
    "one_time_keys",
    "fallback_keys",
    "keys",
    "algorithm",
    "auth_data",
    "version",
    "sessions",
    "rooms",
    "filter",
    "limit",
    "timeout",
    "typing",
    "presence",
    "status_msg",
    "m.read",
    "thread_id",
    "new_password",
    "logout_devices",
    "username",
    "inhibit_login",
    "room",
    "event_fields",
];

/// Query parameters that endpoints read.
const QUERY: &[&str] = &[
    "from",
    "to",
    "dir",
    "limit",
    "since",
    "filter",
    "full_state",
    "format",
    "server",
    "kind",
    "version",
    "access_token",
    "set_presence",
    "search_term",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._=-]{0,12}",
        "[!@#$%:a-zA-Z0-9 ]{0,24}",
        any::<String>().prop_map(|s| s.chars().take(40).collect()),
        Just(String::new()),
        Just("-1".to_owned()),
        Just("18446744073709551616".to_owned()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        text().prop_map(Value::from),
        (1usize..4).prop_map(|k| Value::from("x".repeat(k * 40_000))),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::vec(
                (
                    prop_oneof![prop::sample::select(KEYS).prop_map(str::to_owned), text()],
                    inner
                ),
                0..8
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        1 => Just(Body::None),
        6 => json_value().prop_map(Body::Json),
        1 => (1usize..200).prop_map(|depth| Body::Json(nested(depth))),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Body::Bytes),
    ]
}

fn fill() -> impl Strategy<Value = Fill> {
    prop_oneof![
        6 => Just(Fill::Valid),
        3 => text().prop_map(Fill::Text),
        1 => (prop::sample::select(vec!['a', '!', '@', '#', '$', 'é']), prop::sample::select(vec![255usize, 256, 1_000, 10_001]))
            .prop_map(|(c, n)| Fill::Long(c, n)),
    ]
}

fn case(routes: usize) -> impl Strategy<Value = Case> {
    (
        0..routes,
        prop::collection::vec(fill(), 4),
        prop::collection::vec(
            (prop::sample::select(QUERY).prop_map(str::to_owned), text()),
            0..3,
        ),
        body(),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(route, params, query, body, authed)| Case {
            route,
            params,
            query,
            body,
            authed,
        })
}

/// `[[[...1...]]]`, `depth` arrays deep, under `content`.
fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = json!([v]);
    }
    json!({"type": "m.room.message", "content": {"body": v}, "msgtype": "m.text", "body": v})
}

/// A createRoom body with `n` distinct initial state events.
fn many_state_events(n: usize) -> Value {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"type": "org.example.state", "state_key": i.to_string(), "content": {"i": i}}))
        .collect();
    json!({"initial_state": events})
}

/// Percent-encodes every byte that is not unreserved (RFC 3986).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The valid value of the path parameter `name`.
fn valid(name: &str, world: &World) -> String {
    match name {
        n if n.contains("room_id") => world.room_id.clone(),
        n if n.contains("user_id") => world.user_id.clone(),
        n if n.contains("event_id") => world.event_id.clone(),
        n if n.contains("device_id") => world.device_id.clone(),
        n if n.contains("alias") => "#fuzz:test.local".to_owned(),
        n if n.contains("event_type") => "m.room.message".to_owned(),
        n if n.contains("state_key") => String::new(),
        n if n.contains("txn_id") => "txn".to_owned(),
        n if n.contains("version") => "1".to_owned(),
        n if n.contains("filter_id") => "0".to_owned(),
        _ => "x".to_owned(),
    }
}

/// The request path of `case` on `template`.
fn path(template: &str, case: &Case, world: &World) -> String {
    let mut out = String::new();
    let mut params = case.params.iter();
    let mut long_used = false;
    for segment in template.split('/').skip(1) {
        out.push('/');
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let name = name.trim_start_matches('*');
            let value = match params.next().unwrap_or(&Fill::Valid) {
                Fill::Valid => valid(name, world),
                Fill::Text(t) => t.clone(),
                // One long parameter per request keeps the URL under the
                // 64 KiB an HTTP client will send.
                Fill::Long(_, _) if long_used => valid(name, world),
                Fill::Long(c, n) => {
                    long_used = true;
                    c.to_string().repeat(*n / c.len_utf8())
                }
            };
            out.push_str(&encode(&value));
        } else {
            out.push_str(segment);
        }
    }
    // Long-polls answer at once: the test is about answers, not waiting.
    out.push_str("?timeout=0");
    for (k, v) in &case.query {
        out.push_str(&format!("&{k}={}", encode(v)));
    }
    out
}

/// Registers the fuzzing user, creates a room with one message, and returns
/// the client and what requests may refer to.
async fn world(server: &TestServer) -> (Client, World) {
    let alice = server.register("alice", "fuzz-password").await;
    let room_id = alice.create_room(json!({"name": "fuzz"})).await;
    let event_id = alice.say(&room_id, "t0", "hello").await;
    let (user_id, device_id) = alice.whoami().await;
    (
        alice,
        World {
            user_id,
            device_id,
            room_id,
            event_id,
        },
    )
}

/// A client with a valid token: `alice` while her token works, else a new
/// login (a generated request may have logged her out).
async fn logged_in(server: &TestServer, alice: &mut Client) {
    if alice.get("/_matrix/client/v3/account/whoami").await.0 == 200 {
        return;
    }
    if let Ok(client) = server.login("alice", "fuzz-password").await {
        *alice = client.fresh_connections();
    }
}

async fn send(client: &Client, method: &str, path: &str, body: &Body) -> (u16, Value) {
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let bytes = match body {
        Body::None => Vec::new(),
        Body::Json(v) => serde_json::to_vec(v).expect("json"),
        Body::Bytes(b) => b.clone(),
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        client.send_raw(method, path, bytes),
    )
    .await
    .expect("the server answers within 60 s")
}

/// A 32-byte seed from any string (for `MYELIN_FUZZ_SEED`): its bytes
/// repeated, so different strings give different seeds.
fn seed_of(s: &[u8]) -> Box<[u8; 32]> {
    let mut seed = [0u8; 32];
    for (i, b) in s.iter().cycle().take(32.max(s.len())).enumerate() {
        seed[i % 32] ^= b.wrapping_add(i as u8);
    }
    Box::new(seed)
}

fn cases() -> u32 {
    std::env::var("MYELIN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES)
}

#[test]
fn every_route_answers_generated_input_without_a_server_error() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = rt.block_on(TestServer::start());
    let (alice, world) = rt.block_on(world(&server));
    let routes = myelin::api::registered_routes();
    assert!(
        routes.len() > 50,
        "the router registered {} routes",
        routes.len()
    );
    let anonymous = server.client().fresh_connections();
    let alice = std::cell::RefCell::new(alice.fresh_connections());

    let config = Config {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    };
    let seed = std::env::var("MYELIN_FUZZ_SEED")
        .ok()
        .map_or(SEED, |s| *seed_of(s.as_bytes()));
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    // Every case runs; the 5xx answers are collected per route, so one run
    // shows every route that fails rather than the first.
    let failures = std::cell::RefCell::new(std::collections::BTreeMap::new());
    runner
        .run(&case(routes.len()), |case| {
            let (method, template) = &routes[case.route];
            let path = path(template, &case, &world);
            let got = rt.block_on(async {
                let mut current = alice.borrow().clone();
                logged_in(&server, &mut current).await;
                *alice.borrow_mut() = current.clone();
                let client = if case.authed { &current } else { &anonymous };
                send(client, method, &path, &case.body).await
            });
            if got.0 >= 500 {
                let body: String = format!("{:?}", case.body).chars().take(200).collect();
                let shown: String = path.chars().take(200).collect();
                failures
                    .borrow_mut()
                    .entry(format!("{method} {template}"))
                    .or_insert_with(|| {
                        format!("{shown} answered {}: {} (body {body})", got.0, got.1)
                    });
            }
            Ok(())
        })
        .expect("the runner only fails on failed cases");
    rt.block_on(server.stop());
    let failures = failures.into_inner();
    assert!(
        failures.is_empty(),
        "{} routes answered a server error:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|(route, example)| format!("{route}\n    e.g. {example}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn corpus_cases_answer_without_a_server_error() {
    let server = TestServer::start().await;
    let (alice, world) = world(&server).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fuzz_corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus files in {}", dir.display());
    for file in files {
        let case: Value =
            serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("corpus JSON");
        let path = case["path"]
            .as_str()
            .expect("path")
            .replace("$ROOM", &encode(&world.room_id))
            .replace("$USER", &encode(&world.user_id))
            .replace("$EVENT", &encode(&world.event_id));
        let body = match (&case["body_text"], &case["body"]) {
            (Value::String(t), _) => Body::Bytes(t.as_bytes().to_vec()),
            (_, Value::Null) => Body::None,
            (_, Value::String(g)) if g.starts_with("generate:") => Body::Json(generate(g)),
            (_, v) => Body::Json(v.clone()),
        };
        let client = if case["authed"] == false {
            server.client()
        } else {
            alice.clone()
        };
        let got = send(
            &client,
            case["method"].as_str().expect("method"),
            &path,
            &body,
        )
        .await;
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert_eq!(got.0, case["status"], "{name}: {}", got.1);
        assert_eq!(got.1["errcode"], case["errcode"], "{name}: {}", got.1);
    }
    server.stop().await;
}

/// Bodies too large to check in: `generate:nested:N`, `generate:state:N`,
/// `generate:string:N` (a `content.body` of N bytes).
fn generate(spec: &str) -> Value {
    let mut parts = spec.split(':').skip(1);
    let kind = parts.next().expect("kind");
    let n: usize = parts.next().expect("n").parse().expect("number");
    match kind {
        "nested" => nested(n),
        "state" => many_state_events(n),
        "string" => json!({"msgtype": "m.text", "body": "x".repeat(n)}),
        other => panic!("unknown generator {other}"),
    }
}
