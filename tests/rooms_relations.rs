//! Bundled aggregations (spec v1.16 "Aggregations of child events") over
//! the real server: `unsigned.m.relations` with `m.replace` (the latest
//! valid edit), `m.thread` and `m.reference` on the events `/event`,
//! `/messages`, `/context`, `/relations` and `/sync` timelines serve; and
//! none where the spec's rules leave them out (another sender's edit, an
//! edit of an edit, a redacted edit, a redacted event).

mod common_api;

use serde_json::{Value, json};

use common_api::{Client, TestServer};

const PASSWORD: &str = "pw-relations-1";

/// Percent-encodes everything but ASCII letters and digits.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn send_kind(c: &Client, room: &str, kind: &str, txn: &str, content: Value) -> String {
    let (status, got) = c
        .put(
            &format!("/_matrix/client/v3/rooms/{}/send/{kind}/{txn}", enc(room)),
            content,
        )
        .await;
    assert_eq!(status, 200, "send {kind}: {got}");
    got["event_id"].as_str().expect("event_id").to_owned()
}

async fn send(c: &Client, room: &str, txn: &str, content: Value) -> String {
    send_kind(c, room, "m.room.message", txn, content).await
}

fn text(body: &str) -> Value {
    json!({"msgtype": "m.text", "body": body})
}

fn edit_of(target: &str, body: &str) -> Value {
    json!({"msgtype": "m.text", "body": format!("* {body}"),
           "m.new_content": text(body),
           "m.relates_to": {"rel_type": "m.replace", "event_id": target}})
}

async fn event(c: &Client, room: &str, id: &str) -> Value {
    let (status, got) = c
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            enc(room),
            enc(id)
        ))
        .await;
    assert_eq!(status, 200, "event: {got}");
    got
}

/// The events of `/messages` backwards from the live end.
async fn messages(c: &Client, room: &str) -> Vec<Value> {
    let (status, got) = c
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
            enc(room)
        ))
        .await;
    assert_eq!(status, 200, "messages: {got}");
    got["chunk"].as_array().expect("chunk").clone()
}

/// The events of an initial `/sync`'s timeline of `room`.
async fn sync_timeline(c: &Client, room: &str) -> Vec<Value> {
    let filter = enc(&json!({"room": {"timeline": {"limit": 50}}}).to_string());
    let (status, got) = c
        .get(&format!(
            "/_matrix/client/v3/sync?timeout=0&filter={filter}"
        ))
        .await;
    assert_eq!(status, 200, "sync: {got}");
    got["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .expect("timeline events")
        .clone()
}

fn find<'a>(events: &'a [Value], id: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event_id"] == id)
        .unwrap_or_else(|| panic!("{id} not among {events:?}"))
}

/// `unsigned.m.relations.m.replace.event_id` of an event, if any.
fn bundled_edit(event: &Value) -> Option<&str> {
    event["unsigned"]["m.relations"]["m.replace"]["event_id"].as_str()
}

/// Alice's public room that bob joined.
async fn room_with_bob(server: &TestServer) -> (Client, Client, String) {
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    (alice, bob, room)
}

/// The latest valid edit is bundled, whole, on every read path; another
/// sender's later edit, an edit of an edit and a redacted edit are not;
/// an edit itself carries no `m.replace`.
#[tokio::test]
async fn the_latest_edit_is_bundled_on_every_read_path() {
    let server = TestServer::start().await;
    let (alice, bob, room) = room_with_bob(&server).await;
    let original = send(&alice, &room, "o", text("hello")).await;
    let plain = send(&alice, &room, "p", text("never edited")).await;
    server.clock.advance_ms(1000);
    let first = send(&alice, &room, "e1", edit_of(&original, "hello, edited")).await;
    server.clock.advance_ms(1000);
    let latest = send(
        &alice,
        &room,
        "e2",
        edit_of(&original, "hello, edited twice"),
    )
    .await;
    server.clock.advance_ms(1000);
    // Later, but not valid: another sender, and an edit of an edit.
    send(&bob, &room, "b1", edit_of(&original, "bob was here")).await;
    send(&alice, &room, "e3", edit_of(&first, "edit of an edit")).await;

    let got = event(&bob, &room, &original).await;
    assert_eq!(bundled_edit(&got), Some(latest.as_str()), "/event: {got}");
    let edit = &got["unsigned"]["m.relations"]["m.replace"];
    assert_eq!(
        edit["content"]["m.new_content"]["body"],
        "hello, edited twice"
    );
    assert_eq!(edit["sender"], got["sender"]);
    assert_eq!(edit["room_id"], room.as_str());
    assert!(bundled_edit(&event(&bob, &room, &plain).await).is_none());
    assert!(
        bundled_edit(&event(&bob, &room, &first).await).is_none(),
        "an edit is not itself edited"
    );

    let chunk = messages(&bob, &room).await;
    assert_eq!(bundled_edit(find(&chunk, &original)), Some(latest.as_str()));
    assert!(bundled_edit(find(&chunk, &first)).is_none());
    assert!(bundled_edit(find(&chunk, &plain)).is_none());

    let (status, context) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/context/{}?limit=10",
            enc(&room),
            enc(&plain)
        ))
        .await;
    assert_eq!(status, 200, "context: {context}");
    let before = context["events_before"].as_array().expect("events_before");
    assert_eq!(bundled_edit(find(before, &original)), Some(latest.as_str()));
    let of_original = {
        let (status, context) = bob
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/context/{}?limit=2",
                enc(&room),
                enc(&original)
            ))
            .await;
        assert_eq!(status, 200, "context: {context}");
        context["event"].clone()
    };
    assert_eq!(bundled_edit(&of_original), Some(latest.as_str()));

    let timeline = sync_timeline(&bob, &room).await;
    assert_eq!(
        bundled_edit(find(&timeline, &original)),
        Some(latest.as_str())
    );

    // Redacting the latest edit falls back to the one before.
    let (status, got) = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/r1",
                enc(&room),
                enc(&latest)
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "redact: {got}");
    let got = event(&bob, &room, &original).await;
    assert_eq!(bundled_edit(&got), Some(first.as_str()), "{got}");
    // A redacted event carries no aggregations.
    let (status, got) = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/r2",
                enc(&room),
                enc(&original)
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "redact: {got}");
    let got = event(&bob, &room, &original).await;
    assert!(got["unsigned"].get("m.relations").is_none(), "{got}");
    server.stop().await;
}

/// A thread root carries `m.thread`: the newest reply, the count, and
/// whether the reader took part; `/relations` bundles on what it lists
/// (an edited reply carries its edit).
#[tokio::test]
async fn thread_roots_carry_their_summary_and_relations_bundle_too() {
    let server = TestServer::start().await;
    let (alice, bob, room) = room_with_bob(&server).await;
    let carol = server.register("carol", PASSWORD).await;
    carol.join(&room).await;
    let root = send(&alice, &room, "root", text("root")).await;
    let reply = |body: &str| {
        json!({"msgtype": "m.text", "body": body,
               "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    };
    let first = send(&bob, &room, "t1", reply("one")).await;
    let last = send(&bob, &room, "t2", reply("two")).await;
    server.clock.advance_ms(1000);
    let edit = send(&bob, &room, "t2e", edit_of(&last, "two, edited")).await;

    for (reader, took_part) in [(&alice, true), (&bob, true), (&carol, false)] {
        let got = event(reader, &room, &root).await;
        let thread = &got["unsigned"]["m.relations"]["m.thread"];
        assert_eq!(thread["count"], 2, "{got}");
        assert_eq!(thread["latest_event"]["event_id"], last.as_str(), "{got}");
        assert_eq!(thread["current_user_participated"], took_part, "{got}");
    }
    let chunk = messages(&carol, &room).await;
    assert_eq!(
        find(&chunk, &root)["unsigned"]["m.relations"]["m.thread"]["count"],
        2
    );
    let timeline = sync_timeline(&carol, &room).await;
    assert_eq!(
        find(&timeline, &root)["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"],
        last.as_str()
    );

    let (status, got) = carol
        .get(&format!(
            "/_matrix/client/v1/rooms/{}/relations/{}/m.thread",
            enc(&room),
            enc(&root)
        ))
        .await;
    assert_eq!(status, 200, "relations: {got}");
    let chunk = got["chunk"].as_array().expect("chunk");
    assert_eq!(bundled_edit(find(chunk, &last)), Some(edit.as_str()));
    assert!(bundled_edit(find(chunk, &first)).is_none());

    // A redacted reply no longer counts.
    let (status, got) = bob
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/r1",
                enc(&room),
                enc(&last)
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "redact: {got}");
    let got = event(&carol, &room, &root).await;
    let thread = &got["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(thread["count"], 1, "{got}");
    assert_eq!(thread["latest_event"]["event_id"], first.as_str(), "{got}");
    server.stop().await;
}

/// `m.reference` lists the referencing events' IDs, oldest first;
/// reactions (`m.annotation`) are not bundled; state events carry none.
#[tokio::test]
async fn references_are_bundled_as_a_chunk_of_ids() {
    let server = TestServer::start().await;
    let (alice, bob, room) = room_with_bob(&server).await;
    let target = send(&alice, &room, "t", text("poll, say")).await;
    let reference = |txn: &'static str| {
        let (bob, room, target) = (&bob, &room, &target);
        async move {
            send_kind(
                bob,
                room,
                "org.example.response",
                txn,
                json!({"m.relates_to": {"rel_type": "m.reference", "event_id": target}}),
            )
            .await
        }
    };
    let r1 = reference("r1").await;
    let r2 = reference("r2").await;
    send_kind(
        &bob,
        &room,
        "m.reaction",
        "x",
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": "👍"}}),
    )
    .await;

    let got = event(&alice, &room, &target).await;
    let relations = &got["unsigned"]["m.relations"];
    assert_eq!(
        relations["m.reference"],
        json!({"chunk": [{"event_id": r1}, {"event_id": r2}]}),
        "{got}"
    );
    assert!(relations.get("m.annotation").is_none(), "{got}");
    assert!(relations.get("m.replace").is_none(), "{got}");

    // A state event is never bundled, even with children.
    let (status, got) = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/org.example.state/k",
                enc(&room)
            ),
            json!({"v": 1}),
        )
        .await;
    assert_eq!(status, 200, "state: {got}");
    let state_id = got["event_id"].as_str().expect("event_id").to_owned();
    send(&alice, &room, "s", {
        let mut edit = edit_of(&state_id, "x");
        edit["m.relates_to"]["rel_type"] = json!("m.reference");
        edit
    })
    .await;
    let got = event(&alice, &room, &state_id).await;
    assert!(got["unsigned"].get("m.relations").is_none(), "{got}");
    server.stop().await;
}
