//! The rooms HTTP API, second part: aliases and `m.room.canonical_alias`,
//! the public room directory, the user directory, receipts and read
//! markers (and the function sync reads them with), relations and threads,
//! redactions, and profile changes propagating into member events.

mod common_api;

use common_api::{Client, TestServer, assert_error};
use myelin::service::rooms::StreamPosition;
use ruma::{OwnedRoomId, OwnedUserId};
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

async fn send(c: &Client, room: &str, txn: &str, content: Value) -> String {
    let (status, body) = c
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                enc(room)
            ),
            content,
        )
        .await;
    assert_eq!(status, 200, "send: {body}");
    body["event_id"]
        .as_str()
        .expect("event_id is a string")
        .to_owned()
}

fn ids(chunk: &Value) -> Vec<String> {
    chunk
        .as_array()
        .expect("chunk is an array")
        .iter()
        .map(|e| {
            e["event_id"]
                .as_str()
                .expect("event_id is a string")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn aliases_canonical_alias_and_join_by_alias() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = create_room(
        &alice,
        json!({"preset": "public_chat", "room_alias_name": "lobby"}),
    )
    .await;
    let alias = "#lobby:test.local";
    let (status, found) = server
        .client()
        .get(&format!("/_matrix/client/v3/directory/room/{}", enc(alias)))
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["room_id"], room);
    assert_eq!(found["servers"], json!(["test.local"]));
    let (_, canonical) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.canonical_alias",
            enc(&room)
        ))
        .await;
    assert_eq!(canonical["alias"], alias);
    // The same name again is taken.
    let got = alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({"room_alias_name": "lobby"}),
        )
        .await;
    assert_error(&got, 400, "M_ROOM_IN_USE");

    // Join by alias.
    let (status, joined) = bob
        .post(
            &format!("/_matrix/client/v3/join/{}", enc(alias)),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["room_id"], room);

    // A second alias; PUT twice is 409; non-members cannot add one.
    let second = "#hall:test.local";
    let path = format!("/_matrix/client/v3/directory/room/{}", enc(second));
    assert_eq!(alice.put(&path, json!({"room_id": room})).await.0, 200);
    assert_error(
        &alice.put(&path, json!({"room_id": room})).await,
        409,
        "M_UNKNOWN",
    );
    let carol = server.register("carol", PASSWORD).await;
    assert_error(
        &carol
            .put(
                &format!("/_matrix/client/v3/directory/room/{}", enc("#c:test.local")),
                json!({"room_id": room}),
            )
            .await,
        403,
        "M_FORBIDDEN",
    );
    let (_, listed) = bob
        .get(&format!("/_matrix/client/v3/rooms/{}/aliases", enc(&room)))
        .await;
    let mut aliases: Vec<&str> = listed["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    aliases.sort();
    assert_eq!(aliases, ["#hall:test.local", "#lobby:test.local"]);

    // The canonical alias may only name aliases of this room.
    let other = create_room(&alice, json!({"room_alias_name": "elsewhere"})).await;
    let got = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.canonical_alias",
                enc(&room)
            ),
            json!({"alias": alias, "alt_aliases": ["#elsewhere:test.local"]}),
        )
        .await;
    assert_error(&got, 400, "M_BAD_ALIAS");
    let (status, _) = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.canonical_alias",
                enc(&room)
            ),
            json!({"alias": alias, "alt_aliases": [second]}),
        )
        .await;
    assert_eq!(status, 200);

    // Bob (power 0, not the creator) cannot delete; alice can; deleting
    // removes it from the canonical alias too.
    assert_error(&bob.delete(&path, json!({})).await, 403, "M_FORBIDDEN");
    assert_eq!(alice.delete(&path, json!({})).await.0, 200);
    assert_error(&alice.get(&path).await, 404, "M_NOT_FOUND");
    assert_error(&alice.delete(&path, json!({})).await, 404, "M_NOT_FOUND");
    let (_, canonical) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.canonical_alias",
            enc(&room)
        ))
        .await;
    assert_eq!(canonical, json!({"alias": alias, "alt_aliases": []}));
    let _ = other;
}

#[tokio::test]
async fn public_room_directory_lists_filters_and_pages() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let mut public = Vec::new();
    for name in ["Rust lovers", "Gardening", "Rustaceans"] {
        public.push(
            create_room(
                &alice,
                json!({"visibility": "public", "preset": "public_chat", "name": name, "topic": format!("about {name}")}),
            )
            .await,
        );
    }
    let private = create_room(&alice, json!({"name": "Rust secret"})).await;

    let (status, all) = server.client().get("/_matrix/client/v3/publicRooms").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["chunk"].as_array().unwrap().len(), 3);
    assert_eq!(all["total_room_count_estimate"], 3);
    let entry = &all["chunk"][0];
    assert_eq!(entry["num_joined_members"], 1);
    // `join_rule` defaults to `public` and ruma leaves the default out.
    assert!(entry["join_rule"].is_null() || entry["join_rule"] == "public");
    assert_eq!(entry["world_readable"], false);

    // Pages of one with `since`.
    let mut seen = Vec::new();
    let mut since: Option<String> = None;
    for _ in 0..5 {
        let q = match &since {
            Some(s) => format!("/_matrix/client/v3/publicRooms?limit=1&since={}", enc(s)),
            None => "/_matrix/client/v3/publicRooms?limit=1".to_owned(),
        };
        let (_, page) = server.client().get(&q).await;
        seen.extend(
            page["chunk"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["room_id"].as_str().unwrap().to_owned()),
        );
        match page["next_batch"].as_str() {
            Some(n) => since = Some(n.to_owned()),
            None => break,
        }
    }
    seen.sort();
    let mut want = public.clone();
    want.sort();
    assert_eq!(seen, want);

    // POST with a search term (case-insensitive, name or topic).
    let (status, rust) = bob
        .post(
            "/_matrix/client/v3/publicRooms",
            json!({"filter": {"generic_search_term": "rUsT"}}),
        )
        .await;
    assert_eq!(status, 200, "{rust}");
    let mut names: Vec<&str> = rust["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["Rust lovers", "Rustaceans"]);

    // Directory visibility of one room: get, and set by moderators only.
    let vis = |room: &str| format!("/_matrix/client/v3/directory/list/room/{}", enc(room));
    assert_eq!(bob.get(&vis(&public[1])).await.1["visibility"], "public");
    assert_eq!(bob.get(&vis(&private)).await.1["visibility"], "private");
    assert_error(
        &bob.put(&vis(&private), json!({"visibility": "public"}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(
        alice
            .put(&vis(&public[1]), json!({"visibility": "private"}))
            .await
            .0,
        200
    );
    let (_, after) = server.client().get("/_matrix/client/v3/publicRooms").await;
    assert_eq!(after["chunk"].as_array().unwrap().len(), 2);
    assert_error(&bob.get(&vis("!nope:test.local")).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn user_directory_finds_users_sharing_rooms_or_in_public_rooms() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let carol = server.register("carol", PASSWORD).await;
    let dave = server.register("dave", PASSWORD).await;
    let (status, _) = bob
        .put(
            "/_matrix/client/v3/profile/@bob:test.local/displayname",
            json!({"displayname": "Bobby Tables"}),
        )
        .await;
    assert_eq!(status, 200);
    // alice and bob share a private room; carol is in a public room.
    let shared = create_room(&alice, json!({"invite": ["@bob:test.local"]})).await;
    assert_eq!(
        bob.post(
            &format!("/_matrix/client/v3/join/{}", enc(&shared)),
            json!({})
        )
        .await
        .0,
        200
    );
    create_room(
        &carol,
        json!({"visibility": "public", "preset": "public_chat"}),
    )
    .await;
    // dave is alone in a private room.
    create_room(&dave, json!({})).await;

    let search = |c: Client, term: &'static str| async move {
        let (status, body) = c
            .post(
                "/_matrix/client/v3/user_directory/search",
                json!({"search_term": term, "limit": 10}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["user_id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(search(alice.clone(), "tables").await, ["@bob:test.local"]);
    assert_eq!(search(alice.clone(), "carol").await, ["@carol:test.local"]);
    assert!(search(alice.clone(), "dave").await.is_empty());
    assert!(search(dave.clone(), "bob").await.is_empty());
}

#[tokio::test]
async fn receipts_and_read_markers_are_stored_for_sync() {
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
    let e1 = send(
        &alice,
        &room,
        "1",
        json!({"msgtype": "m.text", "body": "one"}),
    )
    .await;
    let e2 = send(
        &alice,
        &room,
        "2",
        json!({"msgtype": "m.text", "body": "two"}),
    )
    .await;
    let rooms = &server.state.rooms;
    let room_id = OwnedRoomId::try_from(room.as_str()).unwrap();
    let alice_id = OwnedUserId::try_from("@alice:test.local").unwrap();
    let bob_id = OwnedUserId::try_from("@bob:test.local").unwrap();
    let before = rooms.db().latest_position(&room_id).await.unwrap().unwrap();

    let receipt = |c: Client, kind: &'static str, event: String, body: Value| {
        let r = r.clone();
        async move {
            c.post(
                &format!(
                    "/_matrix/client/v3/rooms/{r}/receipt/{kind}/{}",
                    enc(&event)
                ),
                body,
            )
            .await
        }
    };
    assert_eq!(
        receipt(bob.clone(), "m.read", e1.clone(), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        receipt(
            bob.clone(),
            "m.read",
            e2.clone(),
            json!({"thread_id": "main"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        receipt(bob.clone(), "m.read.private", e2.clone(), json!({}))
            .await
            .0,
        200
    );
    // Failures: not a member, unknown type, unknown event.
    assert_error(
        &receipt(eve.clone(), "m.read", e1.clone(), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &receipt(bob.clone(), "m.nonsense", e1.clone(), json!({})).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &receipt(bob.clone(), "m.read", "$missing".into(), json!({})).await,
        404,
        "M_NOT_FOUND",
    );

    // What sync reads: alice sees bob's public receipts, not his private one.
    let (event, last) = rooms
        .receipt_event(&alice_id, &room_id, Some(before), None)
        .await
        .unwrap()
        .expect("receipts");
    assert_eq!(event["type"], "m.receipt");
    let content = &event["content"];
    assert!(content[&e1]["m.read"]["@bob:test.local"]["ts"].is_u64());
    assert_eq!(
        content[&e2]["m.read"]["@bob:test.local"]["thread_id"],
        "main"
    );
    assert!(content[&e2].get("m.read.private").is_none(), "{content}");
    let (own, _) = rooms
        .receipt_event(&bob_id, &room_id, Some(before), None)
        .await
        .unwrap()
        .unwrap();
    assert!(own["content"][&e2]["m.read.private"]["@bob:test.local"].is_object());
    // Nothing after the last position; a newer receipt replaces the old
    // one of the same (user, type, thread).
    assert!(
        rooms
            .receipt_event(&alice_id, &room_id, Some(last), None)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        receipt(bob.clone(), "m.read", e2.clone(), json!({}))
            .await
            .0,
        200
    );
    let (newer, _) = rooms
        .receipt_event(&alice_id, &room_id, Some(last), None)
        .await
        .unwrap()
        .unwrap();
    assert!(newer["content"][&e2]["m.read"]["@bob:test.local"].is_object());
    let (current, _) = rooms
        .receipt_event(&alice_id, &room_id, None, None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        current["content"].get(&e1).is_none(),
        "bob's unthreaded receipt moved from e1 to e2: {current}"
    );
    let up_to: StreamPosition = last;
    assert!(
        rooms
            .receipt_event(&alice_id, &room_id, Some(before), Some(up_to))
            .await
            .unwrap()
            .is_some()
    );

    // Read markers: fully read lands in room account data.
    let (status, body) = bob
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/read_markers"),
            json!({"m.fully_read": e2, "m.read": e2}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, marker) = bob
        .get(&format!(
            "/_matrix/client/v3/user/@bob:test.local/rooms/{r}/account_data/m.fully_read"
        ))
        .await;
    assert_eq!(status, 200, "{marker}");
    assert_eq!(marker["event_id"], e2);
}

#[tokio::test]
async fn relations_threads_and_redactions() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = create_room(&alice, json!({"preset": "public_chat"})).await;
    let r = enc(&room);
    assert_eq!(
        bob.post(&format!("/_matrix/client/v3/rooms/{r}/join"), json!({}))
            .await
            .0,
        200
    );
    let root = send(
        &alice,
        &room,
        "root",
        json!({"msgtype": "m.text", "body": "root"}),
    )
    .await;
    let mut replies = Vec::new();
    for i in 0..3 {
        replies.push(
            send(
                &bob,
                &room,
                &format!("t{i}"),
                json!({"msgtype": "m.text", "body": format!("reply {i}"),
                       "m.relates_to": {"rel_type": "m.thread", "event_id": root}}),
            )
            .await,
        );
    }
    let (status, body) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{r}/send/m.reaction/react"),
            json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "👍"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let reaction = body["event_id"].as_str().unwrap().to_owned();

    let rel = |suffix: &str| {
        format!(
            "/_matrix/client/v1/rooms/{r}/relations/{}{suffix}",
            enc(&root)
        )
    };
    let (status, all) = alice.get(&rel("")).await;
    assert_eq!(status, 200, "{all}");
    let mut want: Vec<String> = replies.iter().rev().cloned().collect();
    want.insert(0, reaction.clone());
    assert_eq!(ids(&all["chunk"]), want, "newest first");
    let (_, threads) = alice.get(&rel("/m.thread")).await;
    assert_eq!(ids(&threads["chunk"]).len(), 3);
    let (_, reactions) = alice.get(&rel("/m.annotation/m.reaction")).await;
    assert_eq!(ids(&reactions["chunk"]), std::slice::from_ref(&reaction));
    let (_, none) = alice.get(&rel("/m.annotation/m.room.message")).await;
    assert!(ids(&none["chunk"]).is_empty());

    // Paging forwards two at a time.
    let (_, p1) = alice
        .get(&format!("{}?dir=f&limit=2", rel("/m.thread")))
        .await;
    assert_eq!(ids(&p1["chunk"]), replies[..2]);
    let next = p1["next_batch"].as_str().unwrap();
    let (_, p2) = alice
        .get(&format!("{}?dir=f&limit=2&from={next}", rel("/m.thread")))
        .await;
    assert_eq!(ids(&p2["chunk"]), replies[2..]);
    assert!(p2.get("next_batch").is_none());

    // Threads list with the summary.
    let (status, list) = alice
        .get(&format!("/_matrix/client/v1/rooms/{r}/threads"))
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(ids(&list["chunk"]), std::slice::from_ref(&root));
    let summary = &list["chunk"][0]["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(summary["count"], 3);
    assert_eq!(summary["latest_event"]["event_id"], replies[2]);
    let (_, mine) = alice
        .get(&format!(
            "/_matrix/client/v1/rooms/{r}/threads?include=participated"
        ))
        .await;
    assert_eq!(
        ids(&mine["chunk"]),
        std::slice::from_ref(&root),
        "alice started it"
    );

    // Redacting a reply removes it from the relations; bob may not redact
    // alice's event (power 0), alice may redact bob's (power 100).
    let redact = |c: Client, event: String, txn: &'static str| {
        let r = r.clone();
        async move {
            c.put(
                &format!("/_matrix/client/v3/rooms/{r}/redact/{}/{txn}", enc(&event)),
                json!({"reason": "spam"}),
            )
            .await
        }
    };
    assert_error(
        &redact(bob.clone(), root.clone(), "x").await,
        403,
        "M_FORBIDDEN",
    );
    // Read once before the redaction (so the server has it cached), then
    // after: the redaction shows.
    let event_path = format!("/_matrix/client/v3/rooms/{r}/event/{}", enc(&replies[0]));
    let (_, before) = alice.get(&event_path).await;
    assert_ne!(before["content"], json!({}), "{before}");
    let (status, first) = redact(alice.clone(), replies[0].clone(), "r1").await;
    assert_eq!(status, 200, "{first}");
    let (_, again) = redact(alice.clone(), replies[0].clone(), "r1").await;
    assert_eq!(again["event_id"], first["event_id"], "idempotent txn");
    let (_, redacted) = alice.get(&event_path).await;
    assert_eq!(redacted["content"], json!({}));
    assert_eq!(
        redacted["unsigned"]["redacted_because"]["event_id"],
        first["event_id"]
    );
    let (_, threads) = alice.get(&rel("/m.thread")).await;
    assert_eq!(ids(&threads["chunk"]).len(), 2);

    // Relations of an unknown event are 404.
    let got = alice
        .get(&format!(
            "/_matrix/client/v1/rooms/{r}/relations/%24missing"
        ))
        .await;
    assert_error(&got, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn profile_changes_become_member_events_in_joined_rooms() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let r1 = create_room(&alice, json!({})).await;
    let r2 = create_room(&alice, json!({})).await;
    let (status, body) = alice
        .put(
            "/_matrix/client/v3/profile/@alice:test.local/displayname",
            json!({"displayname": "Alice A"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for room in [&r1, &r2] {
        let (_, member) = alice
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/@alice:test.local?format=event",
                enc(room)
            ))
            .await;
        assert_eq!(member["content"]["displayname"], "Alice A", "{member}");
        assert_eq!(member["content"]["membership"], "join");
        assert!(
            member["unsigned"]["prev_content"]
                .get("displayname")
                .is_none()
        );
    }
    let (status, _) = alice
        .put(
            "/_matrix/client/v3/profile/@alice:test.local/avatar_url",
            json!({"avatar_url": "mxc://test.local/abc"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, content) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/@alice:test.local",
            enc(&r1)
        ))
        .await;
    assert_eq!(
        content,
        json!({"membership": "join", "displayname": "Alice A", "avatar_url": "mxc://test.local/abc"})
    );
}
