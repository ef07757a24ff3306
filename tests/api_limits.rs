//! The documented request limits (docs/limits.md), each at its boundary:
//! the largest accepted input works, one more is refused with its errcode
//! and writes nothing.

mod common_api;

use common_api::{TestServer, assert_error};
use myelin::service::rooms::MAX_INITIAL_EVENTS;
use serde_json::{Value, json};

fn initial_state(n: usize) -> Value {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"type": "org.example.state", "state_key": i.to_string(), "content": {"i": i}}))
        .collect();
    json!({"initial_state": events})
}

#[tokio::test]
async fn create_room_takes_up_to_the_initial_event_limit() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;

    let refused = alice
        .post(
            "/_matrix/client/v3/createRoom",
            initial_state(MAX_INITIAL_EVENTS + 1),
        )
        .await;
    assert_error(&refused, 413, "M_TOO_LARGE");
    let (status, rooms) = alice.get("/_matrix/client/v3/joined_rooms").await;
    assert_eq!(status, 200);
    assert_eq!(
        rooms["joined_rooms"],
        json!([]),
        "a refused createRoom leaves no room"
    );

    let room = alice.create_room(initial_state(MAX_INITIAL_EVENTS)).await;
    let (status, state) = alice
        .get(&format!("/_matrix/client/v3/rooms/{room}/state"))
        .await;
    assert_eq!(status, 200);
    let custom = state
        .as_array()
        .expect("state array")
        .iter()
        .filter(|e| e["type"] == "org.example.state")
        .count();
    assert_eq!(custom, MAX_INITIAL_EVENTS);
    server.stop().await;
}

/// An account-data content whose stored value (10-byte versionstamp ++
/// JSON) is `stored` bytes long.
fn content_stored_as(stored: usize) -> Value {
    // `{"x":""}` is 8 bytes of JSON around the string.
    json!({"x": "a".repeat(stored - 10 - 8)})
}

/// Values past FoundationDB's 100,000-byte value limit are stored split over
/// several keys (`db::split`): each reads back whole through the point read,
/// through `/sync` (the change log's range read) and after a restart, at
/// the chunk boundaries and at 1 MB.
#[tokio::test]
async fn account_data_of_any_size_up_to_the_body_limit_reads_back_whole() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let (user, _) = alice.whoami().await;
    let room = alice.create_room(json!({})).await;
    let sizes = [99_999, 100_000, 100_001, 200_000, 200_001, 1_000_000];
    for (i, stored) in sizes.into_iter().enumerate() {
        let content = content_stored_as(stored);
        let global = format!("/_matrix/client/v3/user/{user}/account_data/org.example.{i}");
        let in_room =
            format!("/_matrix/client/v3/user/{user}/rooms/{room}/account_data/org.example.{i}");
        for path in [&global, &in_room] {
            let (status, body) = alice.put(path, content.clone()).await;
            assert_eq!(status, 200, "PUT {stored} bytes: {body}");
            let (status, got) = alice.get(path).await;
            assert_eq!(status, 200, "GET {stored} bytes");
            assert_eq!(got, content, "{stored} bytes read back whole");
        }
    }
    // A smaller value over a larger one leaves none of the old chunks.
    let global = format!("/_matrix/client/v3/user/{user}/account_data/org.example.5");
    let small = json!({"x": "small"});
    assert_eq!(alice.put(&global, small.clone()).await.0, 200);
    assert_eq!(alice.get(&global).await.1, small);

    let (status, sync) = alice.get("/_matrix/client/v3/sync").await;
    assert_eq!(status, 200);
    let events = sync["account_data"]["events"].as_array().expect("events");
    for (i, stored) in sizes.into_iter().enumerate().take(5) {
        let event = events
            .iter()
            .find(|e| e["type"] == format!("org.example.{i}"))
            .unwrap_or_else(|| panic!("org.example.{i} in /sync"));
        assert_eq!(
            event["content"],
            content_stored_as(stored),
            "{stored} bytes in /sync"
        );
    }
    let since = sync["next_batch"].as_str().expect("next_batch").to_owned();
    let next = content_stored_as(250_000);
    assert_eq!(alice.put(&global, next.clone()).await.0, 200);
    let (status, sync) = alice
        .get(&format!("/_matrix/client/v3/sync?since={since}&timeout=0"))
        .await;
    assert_eq!(status, 200);
    let events = sync["account_data"]["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "only the change since the token");
    assert_eq!(events[0]["content"], next);

    let dir = server.data_dir.clone();
    let clock = server.clock.clone();
    let tmp = server.stop().await;
    let server = TestServer::start_at(&dir, common_api::test_config(), clock).await;
    let alice = server.login("alice", "pw").await.expect("login");
    assert_eq!(alice.get(&global).await.1, next, "after a restart");
    server.stop().await;
    drop(tmp);
}

#[tokio::test]
async fn filters_and_push_rules_past_the_value_limit_read_back_whole() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let (user, _) = alice.whoami().await;

    let fields: Vec<String> = (0..30_000).map(|i| format!("content.f{i}")).collect();
    let filter = json!({"event_fields": fields});
    let (status, body) = alice
        .post(
            &format!("/_matrix/client/v3/user/{user}/filter"),
            filter.clone(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["filter_id"].as_str().expect("filter_id");
    let (status, got) = alice
        .get(&format!("/_matrix/client/v3/user/{user}/filter/{id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["event_fields"], filter["event_fields"]);

    let pattern = "p".repeat(300_000);
    let rule = "/_matrix/client/v3/pushrules/global/content/big";
    let (status, body) = alice
        .put(rule, json!({"pattern": pattern, "actions": ["notify"]}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, got) = alice.get(rule).await;
    assert_eq!(status, 200);
    assert_eq!(got["pattern"], pattern.as_str());
    server.stop().await;
}

#[tokio::test]
async fn a_push_rule_set_past_its_limit_is_refused_and_keeps_the_old_set() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let pattern = "p".repeat(900_000);
    let mut added = 0;
    let refused = loop {
        let path = format!("/_matrix/client/v3/pushrules/global/content/r{added}");
        let got = alice
            .put(&path, json!({"pattern": pattern, "actions": ["notify"]}))
            .await;
        if got.0 != 200 {
            break got;
        }
        added += 1;
        assert!(added < 10, "the set never reached its limit");
    };
    assert_error(&refused, 413, "M_TOO_LARGE");
    assert!(added >= 3, "rules under the limit are taken ({added})");
    let (status, rules) = alice.get("/_matrix/client/v3/pushrules/").await;
    assert_eq!(status, 200);
    let content = rules["global"]["content"]
        .as_array()
        .expect("content rules");
    let ours = content
        .iter()
        .filter(|r| r["rule_id"].as_str().is_some_and(|id| id.starts_with('r')))
        .count();
    assert_eq!(ours, added, "the refused rule was not stored");
    server.stop().await;
}

/// The request ceiling fits the longest value the store splits (checked
/// when this test compiles).
const _: () =
    assert!(myelin::api::extract::MAX_REQUEST_BYTES_CEILING <= myelin::db::split::MAX_VALUE_BYTES);

/// Values a client may send up to the body limit that have a documented
/// limit (docs/limits.md): each is refused with its errcode and nothing is
/// stored (a megabyte in any of them reached FoundationDB's value limit and
/// a 500 before).
#[tokio::test]
async fn megabyte_values_never_reach_a_server_error() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let (user, device) = alice.whoami().await;
    let big = "a".repeat(1_000_000);
    let probes = [
        (
            "PUT",
            format!("/_matrix/client/v3/profile/{user}/displayname"),
            json!({"displayname": big}),
            (400, "M_INVALID_PARAM"),
        ),
        (
            "PUT",
            format!("/_matrix/client/v3/profile/{user}/avatar_url"),
            json!({"avatar_url": big}),
            (400, "M_INVALID_PARAM"),
        ),
        (
            "PUT",
            format!("/_matrix/client/v3/profile/{user}/org.example.field"),
            json!({"org.example.field": big}),
            (413, "M_TOO_LARGE"),
        ),
        (
            "PUT",
            format!("/_matrix/client/v3/devices/{device}"),
            json!({"display_name": big}),
            (413, "M_TOO_LARGE"),
        ),
        (
            "PUT",
            "/_matrix/client/v3/sendToDevice/org.example/t1".to_owned(),
            json!({"messages": {user.clone(): {device.clone(): {"x": big}}}}),
            (413, "M_TOO_LARGE"),
        ),
        (
            "POST",
            "/_matrix/client/v3/keys/upload".to_owned(),
            json!({"one_time_keys": {"signed_curve25519:AAAA": {"key": big}}}),
            (413, "M_TOO_LARGE"),
        ),
        (
            "POST",
            "/_matrix/client/v3/room_keys/version".to_owned(),
            json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": big}}),
            (413, "M_TOO_LARGE"),
        ),
    ];
    for (method, path, body, (status, errcode)) in probes {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let got = alice.request(method.clone(), &path, Some(body)).await;
        assert_eq!(got.0, status, "{method} {path}: {}", got.1);
        assert_eq!(got.1["errcode"], errcode, "{method} {path}: {}", got.1);
    }
    // Nothing was stored: the profile and device are as they were.
    let (_, profile) = alice
        .get(&format!("/_matrix/client/v3/profile/{user}"))
        .await;
    assert!(profile.get("org.example.field").is_none(), "{profile}");
    assert!(profile.get("avatar_url").is_none(), "{profile}");
    let (_, dev) = alice
        .get(&format!("/_matrix/client/v3/devices/{device}"))
        .await;
    let name_len = dev["display_name"].as_str().map_or(0, str::len);
    assert!(
        name_len < 1_000,
        "the device kept its name: {name_len} bytes"
    );
    server.stop().await;
}
