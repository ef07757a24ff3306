//! `GET /sync` rooms and streams over the real server: initial,
//! incremental, limited and lazy-loaded room sections, `prev_batch` with
//! `/messages`, invites and leaves, typing and receipts, to-device exactly
//! once, presence, device lists and key counts, filters, and long-polls
//! woken (or not) by room events.
//!
//! No test measures time: a woken long-poll is recognised by answering
//! well within its timeout, with the content it returns.

mod common_api;

use std::sync::Arc;

use serde_json::{Value, json};

use common_api::{Client, TestServer};

/// Long enough that a poll must be woken, not time out.
const LONG_POLL_MS: u64 = 20_000;

async fn sync(c: &Client, since: Option<&str>, extra: &str) -> Value {
    let mut path = "/_matrix/client/v3/sync?timeout=0".to_owned();
    if let Some(s) = since {
        path.push_str(&format!("&since={s}"));
    }
    path.push_str(extra);
    let (status, body) = c.get(&path).await;
    assert_eq!(status, 200, "sync: {body}");
    body
}

fn next(body: &Value) -> String {
    body["next_batch"].as_str().expect("next_batch").to_owned()
}

fn filter_param(filter: Value) -> String {
    let encoded: String = filter
        .to_string()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("&filter={encoded}")
}

async fn invite(c: &Client, room: &str, user: &str) {
    let (status, got) = c
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            json!({"user_id": user}),
        )
        .await;
    assert_eq!(status, 200, "invite: {got}");
}

fn bodies(events: &Value) -> Vec<String> {
    events
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["type"] == "m.room.message")
                .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn state_keys(events: &Value, kind: &str) -> Vec<String> {
    let mut out: Vec<String> = events
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["type"] == kind)
                .map(|e| e["state_key"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test]
async fn initial_incremental_limited_and_prev_batch_round_trip() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let room = alice.create_room(json!({"name": "Lobby"})).await;
    for i in 0..15 {
        alice.say(&room, &format!("t{i}"), &format!("m{i}")).await;
    }
    let limit5 = filter_param(json!({"room": {"timeline": {"limit": 5}}}));
    let initial = sync(&alice, None, &limit5).await;
    let joined = &initial["rooms"]["join"][&room];
    assert_eq!(
        bodies(&joined["timeline"]["events"]),
        ["m10", "m11", "m12", "m13", "m14"]
    );
    assert_eq!(joined["timeline"]["limited"], true);
    // Full state before the timeline: the name and the creator's membership.
    assert!(state_keys(&joined["state"]["events"], "m.room.name") == [""]);
    assert_eq!(joined["summary"]["m.joined_member_count"], 1);
    // prev_batch works as /messages `from`: the 10 earlier messages, newest
    // first, none repeated.
    let prev = joined["timeline"]["prev_batch"]
        .as_str()
        .expect("prev_batch");
    let (status, page) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=30&from={prev}"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    let earlier = bodies(&page["chunk"]);
    let expected: Vec<String> = (0..10).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(earlier, expected);

    // Incremental: nothing new, then exactly the new message.
    let t1 = next(&initial);
    let empty = sync(&alice, Some(&t1), "").await;
    assert!(empty["rooms"]["join"].get(&room).is_none(), "{empty}");
    alice.say(&room, "t15", "m15").await;
    let inc = sync(&alice, Some(&t1), "").await;
    let joined = &inc["rooms"]["join"][&room];
    assert_eq!(bodies(&joined["timeline"]["events"]), ["m15"]);
    assert_ne!(joined["timeline"]["limited"], true);
    assert!(
        joined["state"]["events"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    );
    // The same token again gives the same answer; the next one nothing.
    let again = sync(&alice, Some(&t1), "").await;
    assert_eq!(
        bodies(&again["rooms"]["join"][&room]["timeline"]["events"]),
        ["m15"]
    );
    let after = sync(&alice, Some(&next(&inc)), "").await;
    assert!(after["rooms"]["join"].get(&room).is_none(), "{after}");

    // A limited incremental sync carries the state changed in the gap.
    let t2 = next(&inc);
    let (status, _) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"),
            json!({"topic": "gap topic"}),
        )
        .await;
    assert_eq!(status, 200);
    for i in 16..20 {
        alice.say(&room, &format!("t{i}"), &format!("m{i}")).await;
    }
    let limit2 = filter_param(json!({"room": {"timeline": {"limit": 2}}}));
    let gap = sync(&alice, Some(&t2), &limit2).await;
    let joined = &gap["rooms"]["join"][&room];
    assert_eq!(bodies(&joined["timeline"]["events"]), ["m18", "m19"]);
    assert_eq!(joined["timeline"]["limited"], true);
    assert_eq!(state_keys(&joined["state"]["events"], "m.room.topic"), [""]);
}

#[tokio::test]
async fn invites_joins_and_leaves() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let (bob_id, _) = bob.whoami().await;
    let (alice_id, _) = alice.whoami().await;
    let room = alice
        .create_room(json!({"name": "Club", "preset": "private_chat"}))
        .await;
    let t0 = next(&sync(&bob, None, "").await);
    invite(&alice, &room, &bob_id).await;

    let got = sync(&bob, Some(&t0), "").await;
    let stripped = &got["rooms"]["invite"][&room]["invite_state"]["events"];
    assert_eq!(state_keys(stripped, "m.room.create"), [""]);
    assert_eq!(state_keys(stripped, "m.room.name"), [""]);
    assert_eq!(state_keys(stripped, "m.room.join_rules"), [""]);
    let mut members = vec![alice_id.clone(), bob_id.clone()];
    members.sort();
    assert_eq!(state_keys(stripped, "m.room.member"), members);
    assert!(got["rooms"]["join"].get(&room).is_none());
    // The invite shows up once.
    let t1 = next(&got);
    assert!(
        sync(&bob, Some(&t1), "").await["rooms"]["invite"]
            .get(&room)
            .is_none()
    );

    // Joining: the room comes whole in join: state up to the timeline plus
    // the timeline hold the whole current state.
    bob.join(&room).await;
    let got = sync(&bob, Some(&t1), "").await;
    let joined = &got["rooms"]["join"][&room];
    let mut whole: Vec<Value> = joined["state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    whole.extend(
        joined["timeline"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    let whole = Value::Array(whole);
    assert_eq!(state_keys(&whole, "m.room.create"), [""]);
    assert_eq!(state_keys(&whole, "m.room.name"), [""]);
    assert_eq!(joined["summary"]["m.joined_member_count"], 2);
    assert_eq!(joined["summary"]["m.heroes"], json!([alice_id]));
    assert!(got["rooms"]["invite"].get(&room).is_none());
    let t2 = next(&got);

    // Kicked: the room shows up once in leave, its timeline ending with the
    // kick; later messages are not shown.
    alice.say(&room, "a1", "before kick").await;
    let (status, _) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/kick"),
            json!({"user_id": bob_id}),
        )
        .await;
    assert_eq!(status, 200);
    alice.say(&room, "a2", "after kick").await;
    let got = sync(&bob, Some(&t2), "").await;
    let left = &got["rooms"]["leave"][&room];
    let events = left["timeline"]["events"].as_array().expect("timeline");
    let last = events.last().expect("an event");
    assert_eq!(last["type"], "m.room.member");
    assert_eq!(last["content"]["membership"], "leave");
    assert_eq!(bodies(&left["timeline"]["events"]), ["before kick"]);
    assert!(got["rooms"]["join"].get(&room).is_none());
    let t3 = next(&got);
    let later = sync(&bob, Some(&t3), "").await;
    assert!(later["rooms"]["leave"].get(&room).is_none(), "{later}");

    // Initial sync: left rooms only with include_leave.
    assert!(
        sync(&bob, None, "").await["rooms"]["leave"]
            .get(&room)
            .is_none()
    );
    let include = filter_param(json!({"room": {"include_leave": true}}));
    let with = sync(&bob, None, &include).await;
    assert!(with["rooms"]["leave"].get(&room).is_some(), "{with}");
}

#[tokio::test]
async fn lazy_loading_sends_only_the_members_of_timeline_senders() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let (bob_id, _) = bob.whoami().await;
    let (carol_id, _) = carol.whoami().await;
    let (alice_id, _) = alice.whoami().await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    carol.join(&room).await;
    bob.say(&room, "b1", "hello from bob").await;

    let lazy = filter_param(json!({"room": {
        "timeline": {"limit": 1},
        "state": {"lazy_load_members": true},
    }}));
    let got = sync(&carol, None, &lazy).await;
    let joined = &got["rooms"]["join"][&room];
    assert_eq!(bodies(&joined["timeline"]["events"]), ["hello from bob"]);
    let mut want = vec![bob_id.clone(), carol_id.clone()];
    want.sort();
    assert_eq!(
        state_keys(&joined["state"]["events"], "m.room.member"),
        want
    );

    let eager = filter_param(json!({"room": {"timeline": {"limit": 1}}}));
    let got = sync(&carol, None, &eager).await;
    let mut all = vec![alice_id, bob_id, carol_id];
    all.sort();
    assert_eq!(
        state_keys(
            &got["rooms"]["join"][&room]["state"]["events"],
            "m.room.member"
        ),
        all
    );

    // Incremental and limited: the sender's member event comes along.
    let t = next(&got);
    for i in 0..3 {
        alice.say(&room, &format!("a{i}"), "from alice").await;
    }
    let got = sync(&carol, Some(&t), &lazy).await;
    let joined = &got["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["limited"], true);
    assert!(
        state_keys(&joined["state"]["events"], "m.room.member").contains(&alice.whoami().await.0)
    );
}

#[tokio::test]
async fn typing_and_receipts_arrive_in_ephemeral() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let (alice_id, _) = alice.whoami().await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let t = next(&sync(&bob, None, "").await);

    let (status, body) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/typing/{alice_id}"),
            json!({"typing": true, "timeout": 30000}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let got = sync(&bob, Some(&t), "").await;
    let eph = &got["rooms"]["join"][&room]["ephemeral"]["events"];
    let typing = eph
        .as_array()
        .and_then(|a| a.iter().find(|e| e["type"] == "m.typing"))
        .expect("typing event");
    assert_eq!(typing["content"]["user_ids"], json!([alice_id]));
    let t = next(&got);
    // Delivered once.
    let again = sync(&bob, Some(&t), "").await;
    assert!(again["rooms"]["join"].get(&room).is_none(), "{again}");

    let event = bob.say(&room, "b1", "read me").await;
    let (status, body) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event}"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let got = sync(&bob, Some(&t), "").await;
    let eph = &got["rooms"]["join"][&room]["ephemeral"]["events"];
    let receipt = eph
        .as_array()
        .and_then(|a| a.iter().find(|e| e["type"] == "m.receipt"))
        .expect("receipt event");
    assert!(receipt["content"][&event]["m.read"][&alice_id]["ts"].is_u64());
}

#[tokio::test]
async fn to_device_messages_are_delivered_exactly_once() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let (bob_id, bob_dev) = bob.whoami().await;
    let t0 = next(&sync(&bob, None, "").await);
    let (status, body) = alice
        .put(
            "/_matrix/client/v3/sendToDevice/org.example.ping/txn1",
            json!({"messages": {&bob_id: {&bob_dev: {"n": 1}}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let got = sync(&bob, Some(&t0), "").await;
    let events = got["to_device"]["events"].as_array().expect("to_device");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "org.example.ping");
    assert_eq!(events[0]["content"]["n"], 1);
    // Not acknowledged yet: the same token returns it again.
    let again = sync(&bob, Some(&t0), "").await;
    assert_eq!(
        again["to_device"]["events"].as_array().map(Vec::len),
        Some(1)
    );
    // Acknowledged by the next token: never again.
    let t1 = next(&again);
    let after = sync(&bob, Some(&t1), "").await;
    assert!(
        after["to_device"]["events"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    );
    let after = sync(&bob, Some(&t1), "").await;
    assert!(
        after["to_device"]["events"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    );
}

#[tokio::test]
async fn presence_device_lists_and_key_counts() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let (alice_id, alice_dev) = alice.whoami().await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let t = next(&sync(&bob, None, "&set_presence=offline").await);

    let (status, body) = alice
        .put(
            &format!("/_matrix/client/v3/presence/{alice_id}/status"),
            json!({"presence": "online", "status_msg": "here"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let got = sync(&bob, Some(&t), "&set_presence=offline").await;
    let presence = got["presence"]["events"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["sender"] == alice_id.as_str()))
        .expect("alice's presence");
    assert_eq!(presence["content"]["presence"], "online");
    assert_eq!(presence["content"]["status_msg"], "here");
    let t = next(&got);

    let keys = json!({
        "device_keys": {
            "user_id": alice_id, "device_id": alice_dev,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
            "keys": {format!("curve25519:{alice_dev}"): "c", format!("ed25519:{alice_dev}"): "e"},
            "signatures": {&alice_id: {format!("ed25519:{alice_dev}"): "s"}},
        },
        "one_time_keys": {
            "signed_curve25519:AAA": {"key": "k1", "signatures": {}},
            "signed_curve25519:AAB": {"key": "k2", "signatures": {}},
        },
        "fallback_keys": {"signed_curve25519:FB": {"key": "f", "fallback": true, "signatures": {}}},
    });
    let (status, body) = alice.post("/_matrix/client/v3/keys/upload", keys).await;
    assert_eq!(status, 200, "{body}");
    let got = sync(&bob, Some(&t), "&set_presence=offline").await;
    assert_eq!(got["device_lists"]["changed"], json!([alice_id]), "{got}");

    let own = sync(&alice, None, "").await;
    assert_eq!(own["device_one_time_keys_count"]["signed_curve25519"], 2);
    assert_eq!(
        own["device_unused_fallback_key_types"],
        json!(["signed_curve25519"])
    );

    // Bob leaves: alice's device list says she no longer shares a room.
    let ta = next(&own);
    let (status, _) = bob
        .post(&format!("/_matrix/client/v3/rooms/{room}/leave"), json!({}))
        .await;
    assert_eq!(status, 200);
    let (bob_id, _) = bob.whoami().await;
    let got = sync(&alice, Some(&ta), "").await;
    assert_eq!(got["device_lists"]["left"], json!([bob_id]), "{got}");
}

#[tokio::test]
async fn filters_by_id_and_inline() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let (alice_id, _) = alice.whoami().await;
    let a = alice.create_room(json!({"name": "A"})).await;
    let b = alice.create_room(json!({"name": "B"})).await;
    alice.say(&a, "1", "in a").await;
    alice.say(&b, "2", "in b").await;
    let (status, body) = alice
        .put(
            &format!("/_matrix/client/v3/user/{alice_id}/account_data/org.example.x"),
            json!({"x": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alice
        .post(
            &format!("/_matrix/client/v3/user/{alice_id}/filter"),
            json!({
                "room": {"not_rooms": [b], "timeline": {"not_types": ["m.room.member"]}},
                "account_data": {"not_types": ["org.example.x"]},
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["filter_id"].as_str().unwrap();
    let got = sync(&alice, None, &format!("&filter={id}")).await;
    assert!(got["rooms"]["join"].get(&b).is_none());
    let events = got["rooms"]["join"][&a]["timeline"]["events"]
        .as_array()
        .unwrap();
    assert!(events.iter().all(|e| e["type"] != "m.room.member"));
    assert_eq!(
        bodies(&got["rooms"]["join"][&a]["timeline"]["events"]),
        ["in a"]
    );
    assert!(
        got["account_data"]["events"]
            .as_array()
            .is_none_or(|a| a.iter().all(|e| e["type"] != "org.example.x"))
    );

    let only_b =
        filter_param(json!({"room": {"rooms": [b], "timeline": {"types": ["m.room.message"]}}}));
    let got = sync(&alice, None, &only_b).await;
    assert!(got["rooms"]["join"].get(&a).is_none());
    assert_eq!(
        bodies(&got["rooms"]["join"][&b]["timeline"]["events"]),
        ["in b"]
    );
    assert_eq!(
        got["rooms"]["join"][&b]["timeline"]["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (status, _) = alice.get("/_matrix/client/v3/sync?filter=nope").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_long_poll_wakes_for_its_room_and_not_for_others() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let shared = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&shared).await;
    let elsewhere = carol.create_room(json!({})).await;
    let t = next(&sync(&bob, None, "").await);
    // Each time a poll has read and is about to wait, the hook says so: a
    // change sent after that signal tests the wake path, not the read.
    let (signal, mut waits) = tokio::sync::mpsc::unbounded_channel();
    server
        .state
        .sync
        .set_after_read_hook(Some(Arc::new(move || {
            let _ = signal.send(());
            Box::pin(async {})
        })));

    // Woken by a message in a joined room: returns with that message.
    let poll = {
        let bob = bob.clone();
        let t = t.clone();
        tokio::spawn(async move {
            bob.get(&format!(
                "/_matrix/client/v3/sync?set_presence=offline&timeout={LONG_POLL_MS}&since={t}"
            ))
            .await
        })
    };
    waits.recv().await.expect("hook installed");
    alice.say(&shared, "w1", "wake up").await;
    // Unwoken, the poll would answer only at its timeout.
    let (status, got) =
        tokio::time::timeout(std::time::Duration::from_millis(LONG_POLL_MS / 2), poll)
            .await
            .expect("the message woke the poll")
            .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        bodies(&got["rooms"]["join"][&shared]["timeline"]["events"]),
        ["wake up"]
    );
    let t = next(&got);

    // A message in a room bob is not in does not wake bob's poll at all
    // (the wake feed names carol's room only): the poll waits once
    // until its timeout and answers empty. Only waits from here count.
    while waits.try_recv().is_ok() {}
    let poll = {
        let bob = bob.clone();
        let t = t.clone();
        tokio::spawn(async move {
            bob.get(&format!(
                "/_matrix/client/v3/sync?set_presence=offline&timeout=1500&since={t}"
            ))
            .await
        })
    };
    waits.recv().await.expect("hook installed");
    carol.say(&elsewhere, "c1", "not for bob").await;
    let (status, got) = poll.await.unwrap();
    assert_eq!(status, 200);
    assert!(
        waits.try_recv().is_err(),
        "carol's message did not make bob's poll read and wait again"
    );
    server.state.sync.set_after_read_hook(None);
    assert!(
        got["rooms"]["join"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "{got}"
    );
    assert!(
        got["rooms"]["invite"]
            .as_object()
            .is_none_or(|m| m.is_empty())
    );
    // The position moved past carol's message: a later sync does not see it.
    let after = sync(&bob, Some(&next(&got)), "&set_presence=offline").await;
    assert!(
        after["rooms"]["join"]
            .as_object()
            .is_none_or(|m| m.is_empty())
    );
}
