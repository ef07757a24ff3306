//! Simplified sliding sync (MSC4186) over HTTP: discovery, lists ordered by
//! activity with ranges and counts, room data (`initial`, timeline,
//! `required_state`, name, heroes, counts), incremental answers carrying
//! only changed rooms, `M_UNKNOWN_POS`, a resent `pos`, continuity across a
//! server restart, the extensions (to-device exactly once, e2ee, account
//! data, receipts, typing) and long-polls woken by a message, an invite
//! and a to-device message (`docs/sliding-sync.md`).

mod common_api;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use common_api::{Client, TestServer, assert_error};

const SS: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

/// Long enough that a poll must be woken, not time out.
const LONG_POLL_MS: u64 = 20_000;

/// A request body with one list `all` over `range` and the extensions
/// given.
fn body(range: (u64, u64), timeline_limit: u64, extensions: Value) -> Value {
    json!({
        "conn_id": "room-list",
        "lists": {
            "all": {
                "ranges": [[range.0, range.1]],
                "timeline_limit": timeline_limit,
                "required_state": [["m.room.create", ""], ["m.room.member", "$ME"], ["m.room.name", ""]],
            }
        },
        "extensions": extensions,
    })
}

async fn ss(client: &Client, pos: Option<&str>, body: &Value) -> (u16, Value) {
    let path = match pos {
        Some(pos) => format!("{SS}?timeout=0&pos={pos}"),
        None => format!("{SS}?timeout=0"),
    };
    client.post(&path, body.clone()).await
}

async fn ok(client: &Client, pos: Option<&str>, body: &Value) -> Value {
    let (status, got) = ss(client, pos, body).await;
    assert_eq!(status, 200, "{got}");
    got
}

fn pos(v: &Value) -> String {
    v["pos"].as_str().expect("pos is a string").to_owned()
}

fn bodies(v: &Value, room: &str) -> Vec<String> {
    v["rooms"][room]["timeline"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn rooms_of(v: &Value) -> Vec<String> {
    v["rooms"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Alice in three named rooms, with a message in each, oldest room first.
async fn three_rooms(server: &TestServer) -> (Client, Vec<String>) {
    let alice = server.register("alice", "pw").await;
    let mut rooms = Vec::new();
    for i in 0..3 {
        let room = alice
            .create_room(json!({"name": format!("room {i}")}))
            .await;
        alice
            .say(&room, &format!("t{i}"), &format!("hello {i}"))
            .await;
        rooms.push(room);
    }
    (alice, rooms)
}

#[tokio::test]
async fn versions_advertise_simplified_sliding_sync() {
    let server = TestServer::start().await;
    let (status, got) = server.client().get("/_matrix/client/versions").await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        got["unstable_features"]["org.matrix.simplified_msc3575"],
        true
    );
}

#[tokio::test]
async fn a_list_orders_rooms_by_activity_and_sends_them_whole() {
    let server = TestServer::start().await;
    let (alice, rooms) = three_rooms(&server).await;
    let first = ok(&alice, None, &body((0, 1), 5, json!({}))).await;
    assert_eq!(first["lists"]["all"]["count"], 3, "{first}");
    // The range [0, 1] holds the two most recent rooms.
    let mut got = rooms_of(&first);
    got.sort();
    let mut want = vec![rooms[1].clone(), rooms[2].clone()];
    want.sort();
    assert_eq!(got, want, "{first}");
    let r2 = &first["rooms"][&rooms[2]];
    assert_eq!(r2["initial"], true);
    assert_eq!(r2["name"], "room 2");
    assert_eq!(bodies(&first, &rooms[2]), vec!["hello 2"]);
    assert_eq!(r2["joined_count"], 1);
    assert!(r2["bump_stamp"].as_u64().expect("bump_stamp") > 0);
    assert!(
        r2["bump_stamp"].as_u64() > first["rooms"][&rooms[1]]["bump_stamp"].as_u64(),
        "newer room, higher stamp: {first}"
    );
    let (me, _) = alice.whoami().await;
    let state: Vec<(String, String)> = r2["required_state"]
        .as_array()
        .expect("required_state")
        .iter()
        .map(|e| {
            (
                e["type"].as_str().expect("type").to_owned(),
                e["state_key"].as_str().expect("state_key").to_owned(),
            )
        })
        .collect();
    assert!(
        state.contains(&("m.room.create".into(), String::new())),
        "{state:?}"
    );
    assert!(state.contains(&("m.room.member".into(), me)), "{state:?}");
    assert!(
        !state.iter().any(|(t, _)| t == "m.room.power_levels"),
        "only what was asked: {state:?}"
    );
    // prev_batch works with /messages.
    let prev = r2["prev_batch"].as_str().expect("prev_batch");
    let (status, msgs) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&from={prev}&limit=5",
            rooms[2]
        ))
        .await;
    assert_eq!(status, 200, "{msgs}");
    assert!(
        !msgs["chunk"].as_array().expect("chunk").is_empty(),
        "{msgs}"
    );
}

#[tokio::test]
async fn an_incremental_answer_carries_only_changed_rooms_and_reorders() {
    let server = TestServer::start().await;
    let (alice, rooms) = three_rooms(&server).await;
    let req = body((0, 2), 5, json!({}));
    let first = ok(&alice, None, &req).await;
    let p1 = pos(&first);
    // Nothing new: no rooms.
    let quiet = ok(&alice, Some(&p1), &req).await;
    assert!(rooms_of(&quiet).is_empty(), "{quiet}");
    // A message in the oldest room: only it, incremental, now the newest.
    alice.say(&rooms[0], "late", "late news").await;
    let next = ok(&alice, Some(&pos(&quiet)), &req).await;
    assert_eq!(rooms_of(&next), vec![rooms[0].clone()], "{next}");
    let r0 = &next["rooms"][&rooms[0]];
    assert!(r0.get("initial").is_none(), "{next}");
    assert_eq!(bodies(&next, &rooms[0]), vec!["late news"]);
    assert_eq!(r0["num_live"], 1);
    let newest = first["rooms"][&rooms[2]]["bump_stamp"].as_u64();
    assert!(r0["bump_stamp"].as_u64() > newest, "{next}");
}

#[tokio::test]
async fn a_room_entering_the_range_is_sent_whole_and_a_raised_limit_expands_the_timeline() {
    let server = TestServer::start().await;
    let (alice, rooms) = three_rooms(&server).await;
    let first = ok(&alice, None, &body((0, 0), 1, json!({}))).await;
    assert_eq!(rooms_of(&first), vec![rooms[2].clone()]);
    // The oldest room gets a message: it moves to the top of the range.
    alice.say(&rooms[0], "up", "bump").await;
    let next = ok(&alice, Some(&pos(&first)), &body((0, 0), 1, json!({}))).await;
    assert_eq!(rooms_of(&next), vec![rooms[0].clone()], "{next}");
    assert_eq!(next["rooms"][&rooms[0]]["initial"], true, "{next}");
    assert_eq!(next["rooms"][&rooms[0]]["name"], "room 0");
    // A raised timeline limit resends the room with more events.
    let wider = ok(&alice, Some(&pos(&next)), &body((0, 0), 2, json!({}))).await;
    assert_eq!(wider["rooms"][&rooms[0]]["initial"], true, "{wider}");
    assert_eq!(bodies(&wider, &rooms[0]), vec!["hello 0", "bump"]);
}

#[tokio::test]
async fn an_unknown_foreign_or_expired_pos_is_m_unknown_pos() {
    let server = TestServer::start().await;
    let (alice, _) = three_rooms(&server).await;
    let bob = server.register("bob", "pw").await;
    let req = body((0, 2), 1, json!({}));
    assert_error(
        &ss(&alice, Some("nonsense"), &req).await,
        400,
        "M_UNKNOWN_POS",
    );
    let first = ok(&alice, None, &req).await;
    let p = pos(&first);
    // Another user's or another connection's pos.
    assert_error(&ss(&bob, Some(&p), &req).await, 400, "M_UNKNOWN_POS");
    let mut other = req.clone();
    other["conn_id"] = json!("encryption");
    assert_error(&ss(&alice, Some(&p), &other).await, 400, "M_UNKNOWN_POS");
    // Superseded twice over (each answer sends the rooms again with a
    // raised timeline limit, so each is a new generation).
    let p2 = pos(&ok(&alice, Some(&p), &body((0, 2), 2, json!({}))).await);
    let p3 = pos(&ok(&alice, Some(&p2), &body((0, 2), 3, json!({}))).await);
    assert_error(&ss(&alice, Some(&p), &req).await, 400, "M_UNKNOWN_POS");
    // Expired after 7 idle days.
    server.clock.advance_ms(7 * 24 * 3600 * 1000 + 1);
    assert_error(&ss(&alice, Some(&p3), &req).await, 400, "M_UNKNOWN_POS");
    // Without a pos the connection starts afresh.
    let again = ok(&alice, None, &req).await;
    assert_eq!(rooms_of(&again).len(), 3, "{again}");
    // Over a bound: a clear error.
    let huge = body((0, 100_000), 1, json!({}));
    assert_error(&ss(&alice, None, &huge).await, 400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn a_resent_pos_gets_the_same_changes_again() {
    let server = TestServer::start().await;
    let (alice, rooms) = three_rooms(&server).await;
    let req = body((0, 2), 5, json!({}));
    let p = pos(&ok(&alice, None, &req).await);
    alice.say(&rooms[1], "n", "news").await;
    let lost = ok(&alice, Some(&p), &req).await;
    assert_eq!(bodies(&lost, &rooms[1]), vec!["news"]);
    // The answer was lost: the client resends its pos.
    let again = ok(&alice, Some(&p), &req).await;
    assert_eq!(bodies(&again, &rooms[1]), vec!["news"], "{again}");
    assert!(again["rooms"][&rooms[1]].get("initial").is_none());
    // And continues from the second answer.
    let after = ok(&alice, Some(&pos(&again)), &req).await;
    assert!(rooms_of(&after).is_empty(), "{after}");
}

/// The generation part of a `pos` (`"<generation>.<token>"`).
fn generation(pos: &str) -> u64 {
    pos.split_once('.')
        .and_then(|(g, _)| g.parse().ok())
        .expect("a pos starts with its generation")
}

#[tokio::test]
async fn an_answer_that_sends_no_new_room_keeps_its_generation_and_stays_correct() {
    let server = TestServer::start().await;
    let (alice, rooms) = three_rooms(&server).await;
    let req = body((0, 2), 5, json!({}));
    let p1 = pos(&ok(&alice, None, &req).await);
    // News in a room the connection has: no record write, the same
    // generation with a newer token.
    alice.say(&rooms[1], "n1", "first news").await;
    let a2 = ok(&alice, Some(&p1), &req).await;
    assert_eq!(bodies(&a2, &rooms[1]), vec!["first news"], "{a2}");
    let p2 = pos(&a2);
    assert_eq!(generation(&p2), generation(&p1), "{p1} then {p2}");
    assert_ne!(p2, p1);
    // The older pos still answers from what the client had with it: the
    // same news, incremental.
    let again = ok(&alice, Some(&p1), &req).await;
    assert_eq!(bodies(&again, &rooms[1]), vec!["first news"], "{again}");
    assert!(
        again["rooms"][&rooms[1]].get("initial").is_none(),
        "{again}"
    );
    // And the newer one has nothing new.
    let quiet = ok(&alice, Some(&p2), &req).await;
    assert!(rooms_of(&quiet).is_empty(), "{quiet}");
    // A room entering view changes the sent set: a new generation.
    let fourth = alice.create_room(json!({"name": "room 3"})).await;
    let a3 = ok(&alice, Some(&pos(&quiet)), &body((0, 3), 5, json!({}))).await;
    assert_eq!(a3["rooms"][&fourth]["initial"], true, "{a3}");
    let p3 = pos(&a3);
    assert_eq!(generation(&p3), generation(&p2) + 1, "{p2} then {p3}");
    // An unchanged answer after the refresh interval rewrites the record
    // (its last use), so it too starts a new generation.
    server.clock.advance_ms(61_000);
    alice.say(&rooms[2], "n2", "later news").await;
    let a4 = ok(&alice, Some(&p3), &body((0, 3), 5, json!({}))).await;
    assert_eq!(bodies(&a4, &rooms[2]), vec!["later news"], "{a4}");
    assert_eq!(generation(&pos(&a4)), generation(&p3) + 1);
}

#[tokio::test]
async fn a_connection_continues_across_a_server_restart() {
    let server = TestServer::start().await;
    let (alice, rooms) = three_rooms(&server).await;
    let req = body((0, 2), 5, json!({}));
    let p = pos(&ok(&alice, None, &req).await);
    let token = alice.whoami().await;
    let (clock, dir) = (server.clock.clone(), server.data_dir.clone());
    let _tmp = server.stop().await;
    let server = TestServer::start_at(&dir, common_api::test_config(), clock).await;
    let alice = server
        .client()
        .with_token(alice.token.as_deref().expect("logged in"));
    assert_eq!(alice.whoami().await, token);
    alice.say(&rooms[0], "r", "after restart").await;
    let next = ok(&alice, Some(&p), &req).await;
    assert_eq!(rooms_of(&next), vec![rooms[0].clone()], "{next}");
    assert!(next["rooms"][&rooms[0]].get("initial").is_none(), "{next}");
    assert_eq!(bodies(&next, &rooms[0]), vec!["after restart"]);
    server.stop().await;
}

#[tokio::test]
async fn to_device_is_delivered_exactly_once_with_since() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let (bob_id, bob_device) = bob.whoami().await;
    let send = |txn: &'static str| {
        let alice = alice.clone();
        let (bob_id, bob_device) = (bob_id.clone(), bob_device.clone());
        async move {
            let (status, got) = alice
                .put(
                    &format!("/_matrix/client/v3/sendToDevice/m.test/{txn}"),
                    json!({"messages": {bob_id: {bob_device: {"n": txn}}}}),
                )
                .await;
            assert_eq!(status, 200, "{got}");
        }
    };
    let req = |since: Option<&str>| {
        let mut to_device = json!({"enabled": true});
        if let Some(since) = since {
            to_device["since"] = json!(since);
        }
        json!({"conn_id": "encryption", "extensions": {"to_device": to_device, "e2ee": {"enabled": true}}})
    };
    let first = ok(&bob, None, &req(None)).await;
    let e2ee = &first["extensions"]["e2ee"];
    assert!(
        e2ee["device_unused_fallback_key_types"].is_array(),
        "{first}"
    );
    let s0 = first["extensions"]["to_device"]["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    send("one").await;
    let lost = ok(&bob, Some(&pos(&first)), &req(Some(&s0))).await;
    let td = &lost["extensions"]["to_device"];
    assert_eq!(td["events"][0]["content"]["n"], "one", "{lost}");
    // The answer was lost: the same request gets the message again.
    let again = ok(&bob, Some(&pos(&first)), &req(Some(&s0))).await;
    assert_eq!(
        again["extensions"]["to_device"]["events"][0]["content"]["n"], "one",
        "{again}"
    );
    let since = again["extensions"]["to_device"]["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    // Acknowledged with since: gone, and the next message arrives once.
    send("two").await;
    let next = ok(&bob, Some(&pos(&again)), &req(Some(&since))).await;
    let events = next["extensions"]["to_device"]["events"]
        .as_array()
        .expect("events");
    assert_eq!(events.len(), 1, "{next}");
    assert_eq!(events[0]["content"]["n"], "two");
    let since = next["extensions"]["to_device"]["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let last = ok(&bob, Some(&pos(&next)), &req(Some(&since))).await;
    assert!(
        last["extensions"]["to_device"]
            .get("events")
            .is_none_or(|e| e.as_array().is_some_and(Vec::is_empty)),
        "{last}"
    );
}

#[tokio::test]
async fn receipts_typing_and_account_data_reach_their_extensions() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice
        .create_room(json!({"preset": "public_chat", "name": "r"}))
        .await;
    bob.join(&room).await;
    let ev = alice.say(&room, "m", "hi").await;
    let ext = json!({"receipts": {"enabled": true}, "typing": {"enabled": true}, "account_data": {"enabled": true}});
    let req = body((0, 0), 2, ext);
    let p = pos(&ok(&bob, None, &req).await);
    let (bob_id, _) = bob.whoami().await;
    let (s, g) = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{room}/typing/{}",
                alice.whoami().await.0
            ),
            json!({"typing": true, "timeout": 30000}),
        )
        .await;
    assert_eq!(s, 200, "{g}");
    let (s, g) = bob
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{ev}"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{g}");
    let (s, g) = bob
        .put(
            &format!("/_matrix/client/v3/user/{bob_id}/account_data/m.test"),
            json!({"x": 1}),
        )
        .await;
    assert_eq!(s, 200, "{g}");
    let next = ok(&bob, Some(&p), &req).await;
    let ext = &next["extensions"];
    assert_eq!(ext["typing"]["rooms"][&room]["type"], "m.typing", "{next}");
    assert_eq!(
        ext["receipts"]["rooms"][&room]["type"], "m.receipt",
        "{next}"
    );
    let global = ext["account_data"]["global"]
        .as_array()
        .expect("global account data");
    assert!(global.iter().any(|e| e["type"] == "m.test"), "{next}");
}

#[tokio::test]
async fn an_invite_appears_with_its_state_and_a_kick_is_always_sent() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let (bob_id, _) = bob.whoami().await;
    let req = body((0, 9), 1, json!({}));
    let p = pos(&ok(&bob, None, &req).await);
    let room = alice.create_room(json!({"name": "party"})).await;
    let (s, g) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            json!({"user_id": bob_id}),
        )
        .await;
    assert_eq!(s, 200, "{g}");
    let next = ok(&bob, Some(&p), &req).await;
    let r = &next["rooms"][&room];
    assert!(
        r["invite_state"].as_array().is_some_and(|a| !a.is_empty()),
        "{next}"
    );
    assert_eq!(r["name"], "party");
    assert_eq!(next["lists"]["all"]["count"], 1);
    bob.join(&room).await;
    let joined = ok(&bob, Some(&pos(&next)), &req).await;
    let p = pos(&joined);
    // A kick reaches a connection even when the room is out of its ranges.
    let narrow = body((0, 0), 1, json!({}));
    let other = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&other).await;
    let p = pos(&ok(&bob, Some(&p), &narrow).await);
    let (s, g) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/kick"),
            json!({"user_id": bob_id}),
        )
        .await;
    assert_eq!(s, 200, "{g}");
    let kicked = ok(&bob, Some(&p), &narrow).await;
    assert!(
        kicked["rooms"][&room]["timeline"]
            .as_array()
            .is_some_and(|t| t.iter().any(|e| e["content"]["membership"] == "leave")),
        "{kicked}"
    );
}

/// Starts `who`'s long-poll from `pos`, waits until it waits (the sync
/// service's after-read hook), runs `change` and returns the answer,
/// which must come well before the poll's timeout.
async fn woken_by<F: Future<Output = ()>>(
    server: &TestServer,
    who: &Client,
    pos: &str,
    req: &Value,
    change: F,
) -> Value {
    let (tx, mut waits) = mpsc::unbounded_channel();
    server
        .state
        .sync
        .set_after_read_hook(Some(Arc::new(move || {
            let _ = tx.send(());
            Box::pin(async {})
        })));
    let poll = {
        let (who, req) = (who.clone(), req.clone());
        let path = format!("{SS}?timeout={LONG_POLL_MS}&pos={pos}");
        tokio::spawn(async move { who.post(&path, req).await })
    };
    tokio::time::timeout(Duration::from_secs(30), waits.recv())
        .await
        .expect("the poll waits within 30 s")
        .expect("hook installed");
    change.await;
    let (status, got) = tokio::time::timeout(Duration::from_millis(LONG_POLL_MS / 2), poll)
        .await
        .expect("the change woke the poll")
        .expect("the poll answers");
    server.state.sync.set_after_read_hook(None);
    assert_eq!(status, 200, "{got}");
    got
}

#[tokio::test]
async fn long_polls_wake_on_a_message_an_invite_and_a_to_device_message() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let (bob_id, bob_device) = bob.whoami().await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let req = body((0, 9), 3, json!({"to_device": {"enabled": true}}));
    let p = pos(&ok(&bob, None, &req).await);

    let got = woken_by(&server, &bob, &p, &req, async {
        alice.say(&room, "w1", "wake up").await;
    })
    .await;
    assert_eq!(bodies(&got, &room), vec!["wake up"], "{got}");

    let other = alice.create_room(json!({})).await;
    let got = woken_by(&server, &bob, &pos(&got), &req, async {
        let (s, g) = alice
            .post(
                &format!("/_matrix/client/v3/rooms/{other}/invite"),
                json!({"user_id": bob_id}),
            )
            .await;
        assert_eq!(s, 200, "{g}");
    })
    .await;
    assert!(got["rooms"][&other]["invite_state"].is_array(), "{got}");

    let got = woken_by(&server, &bob, &pos(&got), &req, async {
        let (s, g) = alice
            .put(
                "/_matrix/client/v3/sendToDevice/m.test/w3",
                json!({"messages": {bob_id.clone(): {bob_device.clone(): {"n": 3}}}}),
            )
            .await;
        assert_eq!(s, 200, "{g}");
    })
    .await;
    assert_eq!(
        got["extensions"]["to_device"]["events"][0]["content"]["n"], 3,
        "{got}"
    );
}

#[tokio::test]
async fn list_filters_pick_dms_invites_encrypted_rooms_and_room_types() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let (alice_id, _) = alice.whoami().await;
    let (bob_id, _) = bob.whoami().await;
    let plain = bob.create_room(json!({"name": "plain"})).await;
    let space = bob
        .create_room(json!({"creation_content": {"type": "m.space"}}))
        .await;
    let secret = bob
        .create_room(json!({"initial_state": [{
            "type": "m.room.encryption", "state_key": "",
            "content": {"algorithm": "m.megolm.v1.aes-sha2"}
        }]}))
        .await;
    let dm = alice.create_room(json!({"is_direct": true})).await;
    let (s, g) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{dm}/invite"),
            json!({"user_id": bob_id}),
        )
        .await;
    assert_eq!(s, 200, "{g}");
    let (s, g) = bob
        .put(
            &format!("/_matrix/client/v3/user/{bob_id}/account_data/m.direct"),
            json!({ alice_id: [dm] }),
        )
        .await;
    assert_eq!(s, 200, "{g}");
    let list =
        |filters: Value| json!({"ranges": [[0, 9]], "timeline_limit": 0, "filters": filters});
    let req = json!({
        "conn_id": "filters",
        "lists": {
            "dms": list(json!({"is_dm": true})),
            "invites": list(json!({"is_invite": true})),
            "encrypted": list(json!({"is_encrypted": true})),
            "spaces": list(json!({"room_types": ["m.space"]})),
            "no_spaces": list(json!({"not_room_types": ["m.space"]})),
            "untyped": list(json!({"room_types": [null]})),
        }
    });
    let got = ok(&bob, None, &req).await;
    let count = |name: &str| got["lists"][name]["count"].as_u64().expect("count");
    assert_eq!(count("dms"), 1, "{got}");
    assert_eq!(count("invites"), 1, "{got}");
    assert_eq!(count("encrypted"), 1, "{got}");
    assert_eq!(count("spaces"), 1, "{got}");
    assert_eq!(count("no_spaces"), 3, "{got}");
    assert_eq!(count("untyped"), 3, "{got}");
    assert_eq!(got["rooms"][&dm]["is_dm"], true, "{got}");
    assert_eq!(got["rooms"][&plain]["is_dm"], false, "{got}");
    assert!(got["rooms"][&space].is_object() && got["rooms"][&secret].is_object());
}

#[tokio::test]
async fn space_and_tag_filters_pick_a_spaces_children_and_tagged_rooms() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let (alice_id, _) = alice.whoami().await;
    let space = alice
        .create_room(json!({"creation_content": {"type": "m.space"}}))
        .await;
    let child = alice.create_room(json!({"name": "child"})).await;
    let removed = alice.create_room(json!({"name": "removed child"})).await;
    let fav = alice.create_room(json!({"name": "favourite"})).await;
    let low = alice
        .create_room(json!({"name": "favourite and low"}))
        .await;
    // A space the user is not in names no rooms, whatever its children.
    let bob = server.register("bob", "pw").await;
    let foreign = bob
        .create_room(json!({"creation_content": {"type": "m.space"}}))
        .await;
    for (in_space, room, via) in [
        (&space, &child, json!(["x"])),
        (&space, &removed, json!([])),
        (&foreign, &fav, json!(["x"])),
    ] {
        let by = if in_space == &foreign { &bob } else { &alice };
        let (s, g) = by
            .put(
                &format!("/_matrix/client/v3/rooms/{in_space}/state/m.space.child/{room}"),
                json!({ "via": via }),
            )
            .await;
        assert_eq!(s, 200, "{g}");
    }
    for (room, tags) in [
        (&fav, json!({"m.favourite": {}})),
        (&low, json!({"m.favourite": {}, "m.lowpriority": {}})),
    ] {
        let (s, g) = alice
            .put(
                &format!("/_matrix/client/v3/user/{alice_id}/rooms/{room}/account_data/m.tag"),
                json!({ "tags": tags }),
            )
            .await;
        assert_eq!(s, 200, "{g}");
    }
    let list =
        |filters: Value| json!({"ranges": [[0, 9]], "timeline_limit": 0, "filters": filters});
    let req = json!({
        "conn_id": "filters",
        "lists": {
            "in_space": list(json!({"spaces": [space]})),
            "in_foreign_space": list(json!({"spaces": [foreign]})),
            "favourites": list(json!({"tags": ["m.favourite"]})),
            "favourites_not_low": list(json!({"tags": ["m.favourite"], "not_tags": ["m.lowpriority"]})),
            "not_low": list(json!({"not_tags": ["m.lowpriority"]})),
        }
    });
    let got = ok(&alice, None, &req).await;
    let count = |name: &str| got["lists"][name]["count"].as_u64().expect("count");
    assert_eq!(count("in_space"), 1, "{got}");
    assert_eq!(count("in_foreign_space"), 0, "{got}");
    assert_eq!(count("favourites"), 2, "{got}");
    assert_eq!(count("favourites_not_low"), 1, "{got}");
    // space, child, removed, fav (not low).
    assert_eq!(count("not_low"), 4, "{got}");
    assert!(got["rooms"][&child].is_object(), "{got}");

    // A tag set later moves a room into the list on the next answer.
    let (s, g) = alice
        .put(
            &format!("/_matrix/client/v3/user/{alice_id}/rooms/{child}/account_data/m.tag"),
            json!({"tags": {"m.favourite": {}}}),
        )
        .await;
    assert_eq!(s, 200, "{g}");
    let next = ok(&alice, Some(&pos(&got)), &req).await;
    assert_eq!(next["lists"]["favourites"]["count"], 3, "{next}");

    // Malformed or oversized extra filters are refused and change nothing.
    for bad in [
        json!({"spaces": "not a list"}),
        json!({"spaces": ["not a room id"]}),
        json!({"tags": [1]}),
        json!({"not_tags": vec!["t"; 101]}),
    ] {
        let req = json!({"conn_id": "bad", "lists": {"l": list(bad.clone())}});
        assert_error(&ss(&alice, None, &req).await, 400, "M_INVALID_PARAM");
    }
    // No connection was opened by them.
    let got = ss(&alice, Some(&pos(&next)), &json!({"conn_id": "bad"})).await;
    assert_error(&got, 400, "M_UNKNOWN_POS");
}

#[tokio::test]
async fn only_bump_events_reorder_the_list_and_move_bump_stamp() {
    let server = TestServer::start().await;
    let (alice, rooms) = three_rooms(&server).await;
    let top = |v: &Value| rooms_of(v);
    let req = body((0, 2), 1, json!({}));
    let first = ok(&alice, None, &req).await;
    let stamp0 = first["rooms"][&rooms[0]]["bump_stamp"].as_u64();
    // A topic change in the oldest room: sent (it changed), same stamp.
    let (s, g) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.topic", rooms[0]),
            json!({"topic": "quiet"}),
        )
        .await;
    assert_eq!(s, 200, "{g}");
    let next = ok(&alice, Some(&pos(&first)), &req).await;
    assert_eq!(rooms_of(&next), vec![rooms[0].clone()], "{next}");
    assert_eq!(next["rooms"][&rooms[0]]["bump_stamp"].as_u64(), stamp0);
    // ... and it stays below the others: a fresh range [0, 0] shows room 2.
    let fresh = ok(&alice, None, &body((0, 0), 1, json!({}))).await;
    assert_eq!(top(&fresh), vec![rooms[2].clone()], "{fresh}");
    // A message moves it to the top.
    alice.say(&rooms[0], "m", "news").await;
    let fresh = ok(&alice, None, &body((0, 0), 1, json!({}))).await;
    assert_eq!(top(&fresh), vec![rooms[0].clone()], "{fresh}");
    assert!(fresh["rooms"][&rooms[0]]["bump_stamp"].as_u64() > stamp0);
}

#[tokio::test]
async fn room_extensions_cover_only_the_lists_and_subscriptions_they_name() {
    let server = TestServer::start().await;
    let (alice, rooms) = three_rooms(&server).await;
    let (me, _) = alice.whoami().await;
    for room in &rooms {
        let (s, g) = alice
            .put(
                &format!("/_matrix/client/v3/user/{me}/rooms/{room}/account_data/m.test"),
                json!({"room": room}),
            )
            .await;
        assert_eq!(s, 200, "{g}");
    }
    // "top" holds room 2, "next" room 1; room 0 is subscribed.
    let request = |account_data: Value| {
        json!({
            "conn_id": "scoped",
            "lists": {
                "top": {"ranges": [[0, 0]], "timeline_limit": 1, "required_state": []},
                "next": {"ranges": [[1, 1]], "timeline_limit": 1, "required_state": []},
            },
            "room_subscriptions": {rooms[0].as_str(): {"timeline_limit": 1, "required_state": []}},
            "extensions": {"account_data": account_data},
        })
    };
    let covered = |v: &Value| -> Vec<String> {
        let mut got: Vec<String> = v["extensions"]["account_data"]["rooms"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        got.sort();
        got
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let all = ok(&alice, None, &request(json!({"enabled": true}))).await;
    assert_eq!(
        covered(&all),
        sorted(rooms.clone()),
        "default: every list and subscription"
    );
    let top = ok(
        &alice,
        None,
        &request(json!({"enabled": true, "lists": ["top"], "rooms": []})),
    )
    .await;
    assert_eq!(covered(&top), vec![rooms[2].clone()], "{top}");
    let lists = ok(
        &alice,
        None,
        &request(json!({"enabled": true, "lists": ["*"], "rooms": []})),
    )
    .await;
    assert_eq!(
        covered(&lists),
        sorted(vec![rooms[1].clone(), rooms[2].clone()])
    );
    let subs = ok(
        &alice,
        None,
        &request(json!({"enabled": true, "lists": [], "rooms": ["*"]})),
    )
    .await;
    assert_eq!(covered(&subs), vec![rooms[0].clone()], "{subs}");
    let named = ok(
        &alice,
        None,
        &request(json!({"enabled": true, "lists": [], "rooms": [rooms[0], rooms[1]]})),
    )
    .await;
    // Room 1 is in view by a list only: naming it in `rooms` is not enough.
    assert_eq!(covered(&named), vec![rooms[0].clone()], "{named}");
    let none = ok(
        &alice,
        None,
        &request(json!({"enabled": true, "lists": [], "rooms": []})),
    )
    .await;
    assert!(covered(&none).is_empty(), "{none}");
    // The rooms themselves are sent whatever the scoping.
    assert_eq!(sorted(rooms_of(&none)), sorted(rooms.clone()));
}

#[tokio::test]
async fn a_room_bumped_during_a_long_poll_enters_the_range_and_the_others_keep_their_order() {
    let server = TestServer::start().await;
    let (alice, rooms) = three_rooms(&server).await;
    let req = body((0, 1), 1, json!({}));
    let first = ok(&alice, None, &req).await;
    let mut got = rooms_of(&first);
    got.sort();
    let mut want = vec![rooms[1].clone(), rooms[2].clone()];
    want.sort();
    assert_eq!(got, want, "{first}");
    // While the poll waits, the oldest room (out of range) gets a message:
    // the order read after the wake re-reads it and keeps the others.
    let woke = woken_by(&server, &alice, &pos(&first), &req, async {
        alice.say(&rooms[0], "w", "from below").await;
    })
    .await;
    let r0 = &woke["rooms"][&rooms[0]];
    assert_eq!(r0["initial"], true, "entered the range: {woke}");
    assert_eq!(bodies(&woke, &rooms[0]), vec!["from below"]);
    // Room 1 fell out of the range; room 2 is still in it, unchanged.
    let fresh = ok(&alice, None, &req).await;
    let mut got = rooms_of(&fresh);
    got.sort();
    let mut want = vec![rooms[0].clone(), rooms[2].clone()];
    want.sort();
    assert_eq!(got, want, "{fresh}");
}
