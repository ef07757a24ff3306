//! `unread_notifications` in `GET /sync` over the real server: counts from
//! the user's push rules over the events after their read receipt
//! (`docs/sync.md`): plain messages notify, mentions highlight, receipts
//! (public and private) reset the count, the user's own events never
//! count, user rules change the outcome, and the count is capped.

mod common_api;

use serde_json::{Value, json};

use common_api::{Client, TestServer};

/// The per-room cap (`sync::unread::MAX_COUNTED`).
const MAX_COUNTED: u64 = 100;

async fn sync(c: &Client, since: Option<&str>) -> Value {
    let mut path = "/_matrix/client/v3/sync?timeout=0".to_owned();
    if let Some(s) = since {
        path.push_str(&format!("&since={s}"));
    }
    let (status, body) = c.get(&path).await;
    assert_eq!(status, 200, "sync: {body}");
    body
}

fn next(body: &Value) -> String {
    body["next_batch"].as_str().expect("next_batch").to_owned()
}

/// `(notification_count, highlight_count)` of `room` in a sync response.
fn counts(body: &Value, room: &str) -> (u64, u64) {
    let unread = &body["rooms"]["join"][room]["unread_notifications"];
    (
        unread["notification_count"]
            .as_u64()
            .unwrap_or_else(|| panic!("notification_count of {room}: {body}")),
        unread["highlight_count"]
            .as_u64()
            .unwrap_or_else(|| panic!("highlight_count of {room}: {body}")),
    )
}

async fn send(c: &Client, room: &str, txn: &str, content: Value) -> String {
    let (status, got) = c
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
            content,
        )
        .await;
    assert_eq!(status, 200, "send: {got}");
    got["event_id"]
        .as_str()
        .expect("event_id is a string")
        .to_owned()
}

async fn say(c: &Client, room: &str, txn: &str, body: &str) -> String {
    send(c, room, txn, json!({"msgtype": "m.text", "body": body})).await
}

async fn receipt(c: &Client, room: &str, kind: &str, event: &str) {
    let (status, body) = c
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/{kind}/{event}"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "receipt: {body}");
}

/// Alice creates a public room that bob and carol join, then takes the
/// display name "Alice Liddell": three members, so plain messages match `.m.rule.message`
/// (two would match `.m.rule.room_one_to_one`).
async fn three_member_room(server: &TestServer) -> (Client, String, Client, Client, String) {
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let (alice_id, _) = alice.whoami().await;
    let (status, got) = alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({"preset": "public_chat"}),
        )
        .await;
    assert_eq!(status, 200, "createRoom: {got}");
    let room = got["room_id"]
        .as_str()
        .expect("room_id is a string")
        .to_owned();
    for c in [&bob, &carol] {
        let (status, got) = c
            .post(&format!("/_matrix/client/v3/rooms/{room}/join"), json!({}))
            .await;
        assert_eq!(status, 200, "join: {got}");
    }
    // Set once in the room: the profile change writes a new member event
    // of hers carrying the name (which is what push rules read).
    let (status, body) = alice
        .put(
            &format!("/_matrix/client/v3/profile/{alice_id}/displayname"),
            json!({"displayname": "Alice Liddell"}),
        )
        .await;
    assert_eq!(status, 200, "displayname: {body}");
    (alice, alice_id, bob, carol, room)
}

#[tokio::test]
async fn messages_count_until_read_and_mentions_highlight() {
    let server = TestServer::start().await;
    let (alice, alice_id, bob, _carol, room) = three_member_room(&server).await;

    // Member events and alice's own room setup do not notify.
    let first = sync(&alice, None).await;
    assert_eq!(counts(&first, &room), (0, 0), "{first}");
    let t = next(&first);

    say(&bob, &room, "b1", "one").await;
    let second = say(&bob, &room, "b2", "two").await;
    say(&bob, &room, "b3", "three").await;
    let got = sync(&alice, Some(&t)).await;
    assert_eq!(counts(&got, &room), (3, 0), "incremental: {got}");
    assert_eq!(counts(&sync(&alice, None).await, &room), (3, 0), "initial");
    let t = next(&got);

    // A receipt on the second: only the third is unread. The receipt alone
    // brings the room into the incremental response.
    receipt(&alice, &room, "m.read", &second).await;
    let got = sync(&alice, Some(&t)).await;
    assert_eq!(counts(&got, &room), (1, 0), "after receipt: {got}");
    let t = next(&got);

    // Alice's own messages never count.
    say(&alice, &room, "a1", "my own words").await;
    let got = sync(&alice, Some(&t)).await;
    assert_eq!(counts(&got, &room), (1, 0), "own message: {got}");
    let t = next(&got);

    // A mention (the body names her, `m.mentions` lists her, as clients
    // send pills) notifies and highlights.
    let mention = send(
        &bob,
        &room,
        "b4",
        json!({
            "msgtype": "m.text",
            "body": "Alice Liddell: look",
            "m.mentions": {"user_ids": [alice_id]},
        }),
    )
    .await;
    let got = sync(&alice, Some(&t)).await;
    assert_eq!(counts(&got, &room), (2, 1), "mention: {got}");
    let t = next(&got);

    // A private receipt on the mention reads everything.
    receipt(&alice, &room, "m.read.private", &mention).await;
    let got = sync(&alice, Some(&t)).await;
    assert_eq!(counts(&got, &room), (0, 0), "private receipt: {got}");

    // Bob's view is his own: alice's message and nothing else of his.
    let bobs = sync(&bob, None).await;
    assert_eq!(counts(&bobs, &room), (1, 0), "bob: {bobs}");
}

#[tokio::test]
async fn user_rules_decide_what_counts() {
    let server = TestServer::start().await;
    let (alice, _alice_id, bob, _carol, room) = three_member_room(&server).await;

    // Disable the default rule for plain messages.
    let (status, body) = alice
        .put(
            "/_matrix/client/v3/pushrules/global/underride/.m.rule.message/enabled",
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(status, 200, "disable .m.rule.message: {body}");
    // A rule of her own: her display name in a body highlights (exercises
    // the display name taken from her member event).
    let (status, body) = alice
        .put(
            "/_matrix/client/v3/pushrules/global/override/my_name",
            json!({
                "conditions": [{"kind": "contains_display_name"}],
                "actions": ["notify", {"set_tweak": "highlight"}],
            }),
        )
        .await;
    assert_eq!(status, 200, "override rule: {body}");

    say(&bob, &room, "b1", "plain one").await;
    say(&bob, &room, "b2", "plain two").await;
    let got = sync(&alice, None).await;
    assert_eq!(counts(&got, &room), (0, 0), "plain messages: {got}");

    say(&bob, &room, "b3", "hello Alice Liddell").await;
    say(&bob, &room, "b4", "hello Alice Smith").await;
    let got = sync(&alice, None).await;
    assert_eq!(counts(&got, &room), (1, 1), "display name: {got}");

    // Re-enabled, the plain messages count again.
    let (status, body) = alice
        .put(
            "/_matrix/client/v3/pushrules/global/underride/.m.rule.message/enabled",
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(status, 200, "enable .m.rule.message: {body}");
    let got = sync(&alice, None).await;
    assert_eq!(counts(&got, &room), (4, 1), "re-enabled: {got}");
}

#[tokio::test]
async fn counts_are_capped_per_room() {
    let server = TestServer::start().await;
    let (alice, _alice_id, bob, _carol, room) = three_member_room(&server).await;
    for i in 0..MAX_COUNTED + 5 {
        say(&bob, &room, &format!("b{i}"), &format!("message {i}")).await;
    }
    let got = sync(&alice, None).await;
    assert_eq!(counts(&got, &room), (MAX_COUNTED, 0), "capped: {got}");
}

#[tokio::test]
async fn room_mentions_highlight_only_from_senders_with_the_power() {
    let server = TestServer::start().await;
    let (alice, alice_id, bob, carol, room) = three_member_room(&server).await;
    let (bob_id, _) = bob.whoami().await;
    let (status, body) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"
        ))
        .await;
    assert_eq!(status, 200, "power levels: {body}");
    let mut levels = body;
    levels["users"] = json!({ alice_id: 100, bob_id: 50 });
    let (status, body) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"),
            levels,
        )
        .await;
    assert_eq!(status, 200, "set power levels: {body}");
    let t = next(&sync(&alice, None).await);

    let everyone = json!({
        "msgtype": "m.text",
        "body": "@room listen",
        "m.mentions": {"room": true},
    });
    send(&carol, &room, "c1", everyone.clone()).await;
    let got = sync(&alice, Some(&t)).await;
    assert_eq!(counts(&got, &room), (1, 0), "carol (level 0): {got}");
    send(&bob, &room, "b1", everyone).await;
    let got = sync(&alice, Some(&t)).await;
    assert_eq!(counts(&got, &room), (2, 1), "bob (level 50): {got}");
}

/// Counts carried from sync to sync (each event evaluated once, the newest
/// `MAX_COUNTED` kept) equal a count made afresh by a new server process
/// over the same store: older mentions shift out of the window as newer
/// messages arrive.
#[tokio::test]
async fn counts_carried_across_syncs_equal_a_fresh_count() {
    let server = TestServer::start().await;
    let (alice, alice_id, bob, _carol, room) = three_member_room(&server).await;
    let mention = json!({
        "msgtype": "m.text",
        "body": "look",
        "m.mentions": {"user_ids": [alice_id]},
    });
    for i in 0..10 {
        send(&bob, &room, &format!("m{i}"), mention.clone()).await;
    }
    let mut t = next(&sync(&alice, None).await);
    let mut sent = 10;
    let mut expected = Vec::new();
    for round in 0..3 {
        for i in 0..50 {
            say(&bob, &room, &format!("r{round}-{i}"), "plain").await;
        }
        sent += 50;
        let got = sync(&alice, Some(&t)).await;
        // The newest 100 of: 10 mentions, then the plain messages.
        let newest = sent.min(MAX_COUNTED);
        let mentions = 10u64.saturating_sub(sent - newest);
        assert_eq!(counts(&got, &room), (newest, mentions), "round {round}");
        expected.push(counts(&got, &room));
        t = next(&got);
    }
    assert_eq!(expected.last(), Some(&(MAX_COUNTED, 0)));

    let (clock, dir) = (server.clock.clone(), server.data_dir.clone());
    let _tmp = server.stop().await;
    let server = TestServer::start_at(&dir, common_api::test_config(), clock).await;
    let alice = server.client().with_token(alice.token.as_deref().unwrap());
    let fresh = sync(&alice, None).await;
    assert_eq!(counts(&fresh, &room), (MAX_COUNTED, 0), "fresh: {fresh}");
    server.stop().await;
}

/// Events a filter keeps out of the timeline still count, also when they
/// arrived while the room had no other news (so it was in no response and
/// the counting stopped before them).
#[tokio::test]
async fn events_the_filter_hides_still_count() {
    let server = TestServer::start().await;
    let (alice, _alice_id, bob, carol, room) = three_member_room(&server).await;
    let (carol_id, _) = carol.whoami().await;
    let filter = json!({"room": {"timeline": {"not_senders": [carol_id]}}});
    let filtered = |since: &str| {
        let encoded = percent_encoded(&filter);
        format!("/_matrix/client/v3/sync?timeout=0&filter={encoded}&since={since}")
    };
    let t = next(&sync(&alice, None).await);
    say(&bob, &room, "b1", "one").await;
    let (_, got) = alice.get(&filtered(&t)).await;
    assert_eq!(counts(&got, &room), (1, 0), "{got}");
    let t = next(&got);
    say(&carol, &room, "c1", "hidden one").await;
    say(&carol, &room, "c2", "hidden two").await;
    let (_, got) = alice.get(&filtered(&t)).await;
    assert!(got["rooms"]["join"].get(&room).is_none(), "no news: {got}");
    let t = next(&got);
    say(&bob, &room, "b2", "two").await;
    let (_, got) = alice.get(&filtered(&t)).await;
    assert_eq!(counts(&got, &room), (4, 0), "carol's two count: {got}");
}

/// A redacted event does not count (as in Synapse, which drops its push
/// actions), whether the response's timeline holds it or not.
#[tokio::test]
async fn redacted_events_do_not_count() {
    let server = TestServer::start().await;
    let (alice, _alice_id, bob, _carol, room) = three_member_room(&server).await;
    let first = say(&bob, &room, "b1", "oops").await;
    say(&bob, &room, "b2", "two").await;
    say(&bob, &room, "b3", "three").await;
    let (status, body) = bob
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/redact/{first}/r1"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "redact: {body}");
    // Counted afresh with a one-event timeline (the rest is read apart),
    // then again with the default timeline (the memo answers).
    let (status, got) = alice
        .get("/_matrix/client/v3/sync?timeout=0&filter=%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A1%7D%7D%7D")
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(counts(&got, &room), (2, 0), "read apart: {got}");
    let got = sync(&alice, None).await;
    assert_eq!(counts(&got, &room), (2, 0), "timeline holds them: {got}");

    // A fresh process counts with the timeline holding them.
    let (clock, dir) = (server.clock.clone(), server.data_dir.clone());
    let _tmp = server.stop().await;
    let server = TestServer::start_at(&dir, common_api::test_config(), clock).await;
    let alice = server.client().with_token(alice.token.as_deref().unwrap());
    let got = sync(&alice, None).await;
    assert_eq!(
        counts(&got, &room),
        (2, 0),
        "fresh, timeline holds them: {got}"
    );
    server.stop().await;
}

/// A filter as a query parameter value.
fn percent_encoded(filter: &Value) -> String {
    filter
        .to_string()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An initial sync of `c` with filter `filter`.
async fn sync_filtered(c: &Client, filter: &Value) -> Value {
    let encoded = percent_encoded(filter);
    let (status, body) = c
        .get(&format!(
            "/_matrix/client/v3/sync?timeout=0&filter={encoded}"
        ))
        .await;
    assert_eq!(status, 200, "sync: {body}");
    body
}

/// `unread_thread_notifications` of `room`: `(root, notifications,
/// highlights)` per thread listed.
fn thread_counts(body: &Value, room: &str) -> Vec<(String, u64, u64)> {
    let Some(threads) = body["rooms"]["join"][room]
        .get("unread_thread_notifications")
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    threads
        .iter()
        .map(|(root, c)| {
            let n = c["notification_count"]
                .as_u64()
                .expect("notification_count");
            let h = c["highlight_count"].as_u64().expect("highlight_count");
            (root.clone(), n, h)
        })
        .collect()
}

async fn threaded_receipt(c: &Client, room: &str, event: &str, thread: &str) {
    let (status, body) = c
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event}"),
            json!({ "thread_id": thread }),
        )
        .await;
    assert_eq!(status, 200, "receipt: {body}");
}

/// With `unread_thread_notifications` in the timeline filter, threaded
/// events count per thread root and not in the room's (main timeline)
/// counts; a `main` receipt clears the main timeline only, a thread
/// receipt its thread only, an unthreaded receipt both. Without the
/// option, every event counts in the room's counts and no thread counts
/// are sent.
#[tokio::test]
async fn thread_counts_apart_from_the_main_timeline() {
    let server = TestServer::start().await;
    let (alice, alice_id, bob, _carol, room) = three_member_room(&server).await;
    let threads = json!({"room": {"timeline": {"unread_thread_notifications": true}}});
    let plain = json!({"room": {"timeline": {}}});
    let root = say(&bob, &room, "b1", "root").await;
    let reply = |body: &str| {
        json!({"msgtype": "m.text", "body": body,
               "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    };
    let t1 = send(&bob, &room, "b2", reply("t1")).await;
    let t2 = send(&bob, &room, "b3", reply("t2")).await;
    let main = say(&bob, &room, "b4", "main").await;

    let got = sync_filtered(&alice, &threads).await;
    assert_eq!(counts(&got, &room), (2, 0), "root and main: {got}");
    assert_eq!(thread_counts(&got, &room), vec![(root.clone(), 2, 0)]);
    let got = sync_filtered(&alice, &plain).await;
    assert_eq!(counts(&got, &room), (4, 0), "all four: {got}");
    assert!(thread_counts(&got, &room).is_empty(), "{got}");

    // A main-timeline receipt leaves the thread unread.
    threaded_receipt(&alice, &room, &main, "main").await;
    let got = sync_filtered(&alice, &threads).await;
    assert_eq!(counts(&got, &room), (0, 0), "{got}");
    assert_eq!(thread_counts(&got, &room), vec![(root.clone(), 2, 0)]);
    // A thread receipt reads its thread up to it.
    threaded_receipt(&alice, &room, &t1, &root).await;
    let got = sync_filtered(&alice, &threads).await;
    assert_eq!(thread_counts(&got, &room), vec![(root.clone(), 1, 0)]);
    // A mention in the thread highlights there.
    let mut mention = reply("Alice Liddell: look");
    mention["m.mentions"] = json!({"user_ids": [alice_id]});
    let t3 = send(&bob, &room, "b5", mention).await;
    let got = sync_filtered(&alice, &threads).await;
    assert_eq!(counts(&got, &room), (0, 0), "{got}");
    assert_eq!(thread_counts(&got, &room), vec![(root.clone(), 2, 1)]);
    // An unthreaded receipt reads everything up to it.
    receipt(&alice, &room, "m.read", &t2).await;
    let got = sync_filtered(&alice, &threads).await;
    assert_eq!(thread_counts(&got, &room), vec![(root.clone(), 1, 1)]);
    receipt(&alice, &room, "m.read", &t3).await;
    let got = sync_filtered(&alice, &threads).await;
    assert_eq!(counts(&got, &room), (0, 0), "{got}");
    assert!(thread_counts(&got, &room).is_empty(), "{got}");
    server.stop().await;
}

/// An event relating to a thread reply in another way (a reaction, an
/// edit, a reaction to that edit) belongs to the reply's thread and counts
/// there (spec v1.4 "Threading", MSC3771), not in the main timeline; one
/// relating to the root counts in the main timeline. Alice's own rule
/// makes every event notify (by default reactions and edits never do).
#[tokio::test]
async fn reactions_and_edits_of_thread_replies_count_in_their_thread() {
    let server = TestServer::start().await;
    let (alice, _alice_id, bob, _carol, room) = three_member_room(&server).await;
    let (status, body) = alice
        .put(
            "/_matrix/client/v3/pushrules/global/override/everything",
            json!({"conditions": [], "actions": ["notify"]}),
        )
        .await;
    assert_eq!(status, 200, "override rule: {body}");
    let root = say(&bob, &room, "b1", "root").await;
    receipt(&alice, &room, "m.read", &root).await;
    let t1 = send(
        &bob,
        &room,
        "b2",
        json!({"msgtype": "m.text", "body": "t1",
               "m.relates_to": {"rel_type": "m.thread", "event_id": root}}),
    )
    .await;
    let relate = |txn: &'static str, kind: &'static str, content: Value| {
        let (bob, room) = (&bob, &room);
        async move {
            let (status, got) = bob
                .put(
                    &format!("/_matrix/client/v3/rooms/{room}/send/{kind}/{txn}"),
                    content,
                )
                .await;
            assert_eq!(status, 200, "send {kind}: {got}");
            got["event_id"].as_str().expect("event_id").to_owned()
        }
    };
    let annotation = |parent: &str, key: &str| json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": parent, "key": key}});
    relate("b3", "m.reaction", annotation(&t1, "👍")).await;
    let edit = relate(
        "b4",
        "m.room.message",
        json!({"msgtype": "m.text", "body": "* t1 edited",
               "m.new_content": {"msgtype": "m.text", "body": "t1 edited"},
               "m.relates_to": {"rel_type": "m.replace", "event_id": t1}}),
    )
    .await;
    relate("b5", "m.reaction", annotation(&edit, "🎉")).await;
    relate("b6", "m.reaction", annotation(&root, "👀")).await;

    let threads = json!({"room": {"timeline": {"unread_thread_notifications": true}}});
    let got = sync_filtered(&alice, &threads).await;
    assert_eq!(counts(&got, &room), (1, 0), "the root's reaction: {got}");
    assert_eq!(
        thread_counts(&got, &room),
        vec![(root.clone(), 4, 0)],
        "t1, its reaction, its edit, the edit's reaction: {got}"
    );
    // The same when counted afresh (another rule set) with the related
    // events outside the response's timeline: they come from the gap read
    // and their parents from storage.
    let (status, body) = alice
        .put(
            "/_matrix/client/v3/pushrules/global/override/everything_too",
            json!({"conditions": [], "actions": ["notify"]}),
        )
        .await;
    assert_eq!(status, 200, "second override rule: {body}");
    let got = sync_filtered(
        &alice,
        &json!({"room": {"timeline": {"unread_thread_notifications": true, "limit": 1}}}),
    )
    .await;
    assert_eq!(counts(&got, &room), (1, 0), "{got}");
    assert_eq!(
        thread_counts(&got, &room),
        vec![(root.clone(), 4, 0)],
        "{got}"
    );
    server.stop().await;
}
