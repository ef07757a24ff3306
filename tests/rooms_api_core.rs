//! The rooms HTTP API over the real server: createRoom, sending (with
//! transaction-ID idempotency and `unsigned`), refusals that store nothing,
//! state, membership, visibility, `/messages` tokens in both directions,
//! `/context`.

mod common_api;

use std::collections::HashSet;

use common_api::{Client, TestServer, assert_error};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

/// Percent-encodes everything but unreserved characters.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn create_room(c: &Client, body: Value) -> String {
    let (status, body) = c.post("/_matrix/client/v3/createRoom", body).await;
    assert_eq!(status, 200, "createRoom: {body}");
    body["room_id"]
        .as_str()
        .expect("room_id is a string")
        .to_owned()
}

async fn send(c: &Client, room: &str, txn: &str, text: &str) -> String {
    let (status, body) = c
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                enc(room)
            ),
            json!({"msgtype": "m.text", "body": text}),
        )
        .await;
    assert_eq!(status, 200, "send: {body}");
    body["event_id"]
        .as_str()
        .expect("event_id is a string")
        .to_owned()
}

async fn messages(c: &Client, room: &str, query: &str) -> (u16, Value) {
    c.get(&format!(
        "/_matrix/client/v3/rooms/{}/messages?{query}",
        enc(room)
    ))
    .await
}

fn bodies(chunk: &Value) -> Vec<String> {
    chunk
        .as_array()
        .expect("chunk is an array")
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| {
            e["content"]["body"]
                .as_str()
                .expect("body is a string")
                .to_owned()
        })
        .collect()
}

async fn login(server: &TestServer, user: &str) -> Client {
    let (status, body) = server
        .client()
        .post(
            "/_matrix/client/v3/login",
            json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user},
                "password": PASSWORD,
            }),
        )
        .await;
    assert_eq!(status, 200, "login: {body}");
    server.client().with_token(
        body["access_token"]
            .as_str()
            .expect("access_token is a string"),
    )
}

#[tokio::test]
async fn send_is_idempotent_per_device_and_transaction_id_shows_only_to_the_sender_device() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let alice2 = login(&server, "alice").await;
    let room = create_room(&alice, json!({"preset": "private_chat", "name": "R"})).await;

    let first = send(&alice, &room, "t1", "hello").await;
    assert_eq!(send(&alice, &room, "t1", "hello again").await, first);
    let other_device = send(&alice2, &room, "t1", "hello").await;
    assert_ne!(other_device, first, "txn IDs are scoped to the device");

    let path = format!(
        "/_matrix/client/v3/rooms/{}/event/{}",
        enc(&room),
        enc(&first)
    );
    let (status, event) = alice.get(&path).await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["unsigned"]["transaction_id"], "t1");
    assert_eq!(
        event["content"]["body"], "hello",
        "the repeat stored nothing"
    );
    assert!(event["unsigned"]["age"].is_u64());
    let (_, seen_by_other) = alice2.get(&path).await;
    assert!(seen_by_other["unsigned"].get("transaction_id").is_none());

    let (_, page) = messages(&alice, &room, "dir=b&limit=10").await;
    assert_eq!(bodies(&page["chunk"]), ["hello", "hello"]);
}

#[tokio::test]
async fn refused_events_are_forbidden_and_store_nothing() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let eve = server.register("eve", PASSWORD).await;
    let room = create_room(&alice, json!({"preset": "private_chat"})).await;

    // Not a member: the authorization rules refuse the event.
    let got = eve
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/x",
                enc(&room)
            ),
            json!({"msgtype": "m.text", "body": "intruder"}),
        )
        .await;
    assert_error(&got, 403, "M_FORBIDDEN");
    // Joining an invite-only room is refused too.
    let got = eve
        .post(
            &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
            json!({}),
        )
        .await;
    assert_error(&got, 403, "M_FORBIDDEN");
    // A member without the power level cannot change the name.
    let (status, _) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            json!({"user_id": "@eve:test.local"}),
        )
        .await;
    assert_eq!(status, 200);
    // With no body at all, as matrix-nio sends it: an empty body reads as `{}`.
    let (status, body) = eve
        .request(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/join/{}", enc(&room)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let got = eve
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.name", enc(&room)),
            json!({"name": "eve's"}),
        )
        .await;
    assert_error(&got, 403, "M_FORBIDDEN");

    let (_, page) = messages(&alice, &room, "dir=b&limit=50").await;
    let chunk = page["chunk"].as_array().unwrap();
    assert!(
        chunk
            .iter()
            .all(|e| e["content"]["body"] != "intruder" && e["type"] != "m.room.name"),
        "refused events were stored: {page}"
    );
}

#[tokio::test]
async fn unknown_rooms_events_and_bad_bodies_are_told_apart() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let room = create_room(&alice, json!({})).await;

    let got = alice
        .put(
            "/_matrix/client/v3/rooms/%21nope%3Atest.local/send/m.room.message/1",
            json!({"body": "x"}),
        )
        .await;
    assert_error(&got, 404, "M_NOT_FOUND");
    let got = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/%24nothing",
            enc(&room)
        ))
        .await;
    assert_error(&got, 404, "M_NOT_FOUND");
    let got = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.topic/",
            enc(&room)
        ))
        .await;
    assert_error(&got, 404, "M_NOT_FOUND");
    let got = alice
        .post_raw("/_matrix/client/v3/createRoom", b"{not json".to_vec())
        .await;
    assert_error(&got, 400, "M_NOT_JSON");
    let got = alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({"invite": "not a list"}),
        )
        .await;
    assert_error(&got, 400, "M_BAD_JSON");
    let got = alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({"room_version": "1"}),
        )
        .await;
    assert_error(&got, 400, "M_UNSUPPORTED_ROOM_VERSION");
    let got = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/@x:y",
                enc(&room)
            ),
            json!({"membership": "join"}),
        )
        .await;
    assert_error(&got, 400, "M_INVALID_PARAM");
    let got = server
        .client()
        .get(&format!("/_matrix/client/v3/rooms/{}/state", enc(&room)))
        .await;
    assert_error(&got, 401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn state_endpoints_with_and_without_state_key_and_prev_content() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let room = create_room(&alice, json!({"topic": "first"})).await;
    let r = enc(&room);

    let (status, body) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{r}/state/m.room.topic"),
            json!({"topic": "second"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for path in [
        format!("/_matrix/client/v3/rooms/{r}/state/m.room.topic"),
        format!("/_matrix/client/v3/rooms/{r}/state/m.room.topic/"),
    ] {
        let (status, content) = alice.get(&path).await;
        assert_eq!(status, 200, "{path}: {content}");
        assert_eq!(content, json!({"topic": "second"}));
    }
    let (_, event) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{r}/state/m.room.topic/?format=event"
        ))
        .await;
    assert_eq!(event["content"]["topic"], "second");
    assert_eq!(event["unsigned"]["prev_content"]["topic"], "first");
    assert!(event["unsigned"]["replaces_state"].is_string());

    let (status, all) = alice
        .get(&format!("/_matrix/client/v3/rooms/{r}/state"))
        .await;
    assert_eq!(status, 200);
    let types: HashSet<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for t in [
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.join_rules",
        "m.room.history_visibility",
        "m.room.topic",
    ] {
        assert!(types.contains(t), "{t} missing from {types:?}");
    }
}

#[tokio::test]
async fn membership_endpoints_and_lists() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let carol = server.register("carol", PASSWORD).await;
    let room = create_room(&alice, json!({"preset": "public_chat"})).await;
    let r = enc(&room);
    let path = |what: &str| format!("/_matrix/client/v3/rooms/{r}/{what}");

    let (status, _) = bob
        .put(
            "/_matrix/client/v3/profile/@bob:test.local/displayname",
            json!({"displayname": "Bob B"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(bob.post(&path("join"), json!({})).await.0, 200);
    assert_eq!(carol.post(&path("join"), json!({})).await.0, 200);
    let (_, joined) = bob.get("/_matrix/client/v3/joined_rooms").await;
    assert_eq!(joined["joined_rooms"], json!([room]));
    let (_, members) = bob.get(&path("joined_members")).await;
    assert_eq!(members["joined"].as_object().unwrap().len(), 3);
    assert_eq!(
        members["joined"]["@bob:test.local"]["display_name"],
        "Bob B"
    );

    // Kick, ban, unban; bob may not kick (power 0).
    assert_error(
        &bob.post(&path("kick"), json!({"user_id": "@carol:test.local"}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    let (status, _) = messages(&alice, &room, "dir=b&limit=1").await;
    assert_eq!(status, 200);
    let before_kick = messages(&alice, &room, "dir=b&limit=1").await.1["start"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        alice
            .post(
                &path("kick"),
                json!({"user_id": "@carol:test.local", "reason": "bye"})
            )
            .await
            .0,
        200
    );
    assert_eq!(
        alice
            .post(&path("ban"), json!({"user_id": "@bob:test.local"}))
            .await
            .0,
        200
    );
    assert_error(
        &bob.post(&path("join"), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    let (_, banned) = alice
        .get(&format!("{}?membership=ban", path("members")))
        .await;
    let banned: Vec<&str> = banned["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert_eq!(banned, ["@bob:test.local"]);
    let (_, not_leave) = alice
        .get(&format!("{}?not_membership=leave", path("members")))
        .await;
    assert_eq!(not_leave["chunk"].as_array().unwrap().len(), 2);
    // `at` a token from before the kick: carol was still joined.
    let (_, then) = alice
        .get(&format!(
            "{}?at={before_kick}&membership=join",
            path("members")
        ))
        .await;
    assert_eq!(then["chunk"].as_array().unwrap().len(), 3, "{then}");

    assert_eq!(
        alice
            .post(&path("unban"), json!({"user_id": "@bob:test.local"}))
            .await
            .0,
        200
    );
    assert_eq!(bob.post(&path("join"), json!({})).await.0, 200);

    // Forget: only after leaving.
    assert_error(
        &bob.post(&path("forget"), json!({})).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_eq!(bob.post(&path("leave"), json!({})).await.0, 200);
    assert_eq!(bob.post(&path("forget"), json!({})).await.0, 200);
    let forgotten = server
        .state
        .rooms
        .forgotten_rooms(&ruma::OwnedUserId::try_from("@bob:test.local").unwrap())
        .await
        .unwrap();
    assert_eq!(
        forgotten,
        [ruma::OwnedRoomId::try_from(room.as_str()).unwrap()]
    );
}

#[tokio::test]
async fn knocking_needs_a_knock_join_rule() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let private = create_room(&alice, json!({"preset": "private_chat"})).await;
    let got = bob
        .post(
            &format!("/_matrix/client/v3/knock/{}", enc(&private)),
            json!({}),
        )
        .await;
    assert_error(&got, 403, "M_FORBIDDEN");
    let knockable = create_room(
        &alice,
        json!({
            "preset": "private_chat",
            "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}],
        }),
    )
    .await;
    let (status, body) = bob
        .post(
            &format!("/_matrix/client/v3/knock/{}", enc(&knockable)),
            json!({"reason": "let me in"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], knockable);
    let (_, members) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/members?membership=knock",
            enc(&knockable)
        ))
        .await;
    assert_eq!(members["chunk"][0]["state_key"], "@bob:test.local");
    assert_eq!(members["chunk"][0]["content"]["reason"], "let me in");
}

#[tokio::test]
async fn visibility_is_enforced_over_http() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let eve = server.register("eve", PASSWORD).await;
    let room = create_room(&alice, json!({"preset": "public_chat"})).await;
    let r = enc(&room);
    assert_eq!(
        bob.post(&format!("/_matrix/client/v3/rooms/{r}/join"), json!({}))
            .await
            .0,
        200
    );
    let seen = send(&alice, &room, "1", "while bob was here").await;
    assert_eq!(
        bob.post(&format!("/_matrix/client/v3/rooms/{r}/leave"), json!({}))
            .await
            .0,
        200
    );
    let hidden = send(&alice, &room, "2", "after bob left").await;

    let event = |id: &str| format!("/_matrix/client/v3/rooms/{r}/event/{}", enc(id));
    assert_eq!(bob.get(&event(&seen)).await.0, 200);
    assert_error(&bob.get(&event(&hidden)).await, 404, "M_NOT_FOUND");
    let (_, page) = messages(&bob, &room, "dir=b&limit=50").await;
    assert_eq!(bodies(&page["chunk"]), ["while bob was here"]);
    // Eve was never in the room (history is `shared`).
    assert_error(&eve.get(&event(&seen)).await, 404, "M_NOT_FOUND");
    assert_error(&messages(&eve, &room, "dir=b").await, 403, "M_FORBIDDEN");
    assert_error(
        &eve.get(&format!("/_matrix/client/v3/rooms/{r}/state"))
            .await,
        403,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn messages_pages_in_both_directions_with_tokens_and_filters() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = create_room(&alice, json!({"preset": "public_chat"})).await;
    assert_eq!(
        bob.post(
            &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
            json!({})
        )
        .await
        .0,
        200
    );
    for i in 0..5 {
        send(&alice, &room, &format!("a{i}"), &format!("m{i}")).await;
    }
    send(&bob, &room, "b", "from bob").await;

    // Backwards from the live end, two at a time.
    let (status, p1) = messages(&alice, &room, "dir=b&limit=2").await;
    assert_eq!(status, 200, "{p1}");
    assert_eq!(bodies(&p1["chunk"]), ["from bob", "m4"]);
    let end1 = p1["end"].as_str().unwrap();
    let (_, p2) = messages(&alice, &room, &format!("dir=b&limit=2&from={end1}")).await;
    assert_eq!(bodies(&p2["chunk"]), ["m3", "m2"]);
    assert_eq!(p2["start"], end1);
    // Turning around at p2's end returns exactly what came after it.
    let end2 = p2["end"].as_str().unwrap();
    let (_, fwd) = messages(&alice, &room, &format!("dir=f&limit=3&from={end2}")).await;
    assert_eq!(bodies(&fwd["chunk"]), ["m2", "m3", "m4"]);
    // ... and forwards again from there.
    let (_, rest) = messages(
        &alice,
        &room,
        &format!("dir=f&limit=10&from={}", fwd["end"].as_str().unwrap()),
    )
    .await;
    assert_eq!(bodies(&rest["chunk"]), ["from bob"]);
    assert!(rest.get("end").is_none(), "nothing more: {rest}");

    // `to` bounds the page: backwards from the end down to p1's end.
    let (_, bounded) = messages(&alice, &room, &format!("dir=b&limit=10&to={end1}")).await;
    assert_eq!(bodies(&bounded["chunk"]), ["from bob", "m4"]);

    // Forwards from the start sees the room's creation first.
    let (_, first) = messages(&alice, &room, "dir=f&limit=1").await;
    assert_eq!(first["chunk"][0]["type"], "m.room.create");

    // All of history backwards without duplicates; `end` disappears at the start.
    let mut seen = Vec::new();
    let mut from = String::new();
    for _ in 0..50 {
        let q = if from.is_empty() {
            "dir=b&limit=3".to_owned()
        } else {
            format!("dir=b&limit=3&from={from}")
        };
        let (_, page) = messages(&alice, &room, &q).await;
        for e in page["chunk"].as_array().unwrap() {
            seen.push(e["event_id"].as_str().unwrap().to_owned());
        }
        match page["end"].as_str() {
            Some(end) => from = end.to_owned(),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "duplicates while paginating");
    assert!(
        seen.len() >= 12,
        "creation events and messages: {}",
        seen.len()
    );

    // Filters: types, not_senders, lazy-loaded members.
    let filter = enc(
        &json!({"types": ["m.room.message"], "not_senders": ["@alice:test.local"], "lazy_load_members": true})
            .to_string(),
    );
    let (status, filtered) =
        messages(&alice, &room, &format!("dir=b&limit=5&filter={filter}")).await;
    assert_eq!(status, 200, "{filtered}");
    assert_eq!(bodies(&filtered["chunk"]), ["from bob"]);
    let state = filtered["state"].as_array().unwrap();
    assert_eq!(state.len(), 1, "{filtered}");
    assert_eq!(state[0]["state_key"], "@bob:test.local");

    // Malformed tokens are refused.
    assert_error(
        &messages(&alice, &room, "dir=b&from=nonsense").await,
        400,
        "M_INVALID_PARAM",
    );
}

#[tokio::test]
async fn sync_tokens_are_accepted_as_messages_from() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let room = create_room(&alice, json!({})).await;
    send(&alice, &room, "1", "before sync").await;
    let (status, sync) = alice.get("/_matrix/client/v3/sync?timeout=0").await;
    assert_eq!(status, 200, "{sync}");
    let token = sync["next_batch"].as_str().unwrap().to_owned();
    send(&alice, &room, "2", "after sync").await;
    let (status, back) = messages(&alice, &room, &format!("dir=b&limit=1&from={token}")).await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(bodies(&back["chunk"]), ["before sync"]);
    let (_, fwd) = messages(&alice, &room, &format!("dir=f&limit=5&from={token}")).await;
    assert_eq!(bodies(&fwd["chunk"]), ["after sync"]);
}

#[tokio::test]
async fn context_returns_events_around_and_state() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let room = create_room(&alice, json!({"name": "ctx"})).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(send(&alice, &room, &format!("{i}"), &format!("c{i}")).await);
    }
    let (status, ctx) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/context/{}?limit=2",
            enc(&room),
            enc(&ids[2])
        ))
        .await;
    assert_eq!(status, 200, "{ctx}");
    assert_eq!(ctx["event"]["content"]["body"], "c2");
    assert_eq!(bodies(&ctx["events_before"]), ["c1"]);
    assert_eq!(bodies(&ctx["events_after"]), ["c3"]);
    assert!(
        ctx["state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.name")
    );
    // The tokens continue the context in each direction.
    let (_, before) = messages(
        &alice,
        &room,
        &format!("dir=b&limit=1&from={}", ctx["start"].as_str().unwrap()),
    )
    .await;
    assert_eq!(bodies(&before["chunk"]), ["c0"]);
    let (_, after) = messages(
        &alice,
        &room,
        &format!("dir=f&limit=5&from={}", ctx["end"].as_str().unwrap()),
    )
    .await;
    assert_eq!(bodies(&after["chunk"]), ["c4"]);
    let got = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/context/%24missing",
            enc(&room)
        ))
        .await;
    assert_error(&got, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn member_events_carry_the_profile_from_room_creation_on() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    for (client, user, name) in [(&alice, "alice", "Alice L."), (&bob, "bob", "Bob B.")] {
        let (status, body) = client
            .put(
                &format!("/_matrix/client/v3/profile/@{user}:test.local/displayname"),
                json!({"displayname": name}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let room = create_room(&alice, json!({"invite": ["@bob:test.local"]})).await;
    for (user, name) in [("alice", "Alice L."), ("bob", "Bob B.")] {
        let (status, content) = alice
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/@{user}:test.local",
                enc(&room)
            ))
            .await;
        assert_eq!(status, 200, "{content}");
        assert_eq!(content["displayname"], name, "{user}: {content}");
    }
}
