//! Targeted wake-ups over the real server: every kind of change `/sync`
//! delivers wakes the long-polls it concerns (each names the right topic in
//! the wake feed, `db::notify`), and changes that concern a user do not
//! wake another user's long-poll.
//!
//! A poll that is not woken answers only at its timeout (20 s); each test
//! waits at most half of that for the answer and checks its content.

mod common_api;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use common_api::{Client, TestServer};

/// Long enough that a poll must be woken, not time out.
const LONG_POLL_MS: u64 = 20_000;

async fn ok(got: (u16, Value), what: &str) {
    assert_eq!(got.0, 200, "{what}: {}", got.1);
}

/// `user`'s token now (presence left alone).
async fn token(user: &Client) -> String {
    let (status, body) = user
        .get("/_matrix/client/v3/sync?timeout=0&set_presence=offline")
        .await;
    assert_eq!(status, 200, "{body}");
    body["next_batch"]
        .as_str()
        .expect("next_batch is a string")
        .to_owned()
}

/// Two users sharing a public room, and `user`'s sync position after it.
struct Setup {
    server: TestServer,
    alice: Client,
    bob: Client,
    room: String,
    waits: mpsc::UnboundedReceiver<()>,
}

async fn setup() -> Setup {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let (tx, waits) = mpsc::unbounded_channel();
    server
        .state
        .sync
        .set_after_read_hook(Some(Arc::new(move || {
            let _ = tx.send(());
            Box::pin(async {})
        })));
    Setup {
        server,
        alice,
        bob,
        room,
        waits,
    }
}

impl Setup {
    /// Starts `who`'s long-poll from its current position, waits until it
    /// is waiting, runs `change` and returns the poll's answer.
    async fn woken_by<F>(&mut self, who: &Client, change: F) -> Value
    where
        F: Future<Output = ()>,
    {
        let since = token(who).await;
        let poll = {
            let who = who.clone();
            tokio::spawn(async move {
                who.get(&format!(
                    "/_matrix/client/v3/sync?set_presence=offline&timeout={LONG_POLL_MS}&since={since}"
                ))
                .await
            })
        };
        tokio::time::timeout(Duration::from_secs(30), self.waits.recv())
            .await
            .expect("the poll waits within 30 s")
            .expect("hook installed");
        change.await;
        // A poll that was not woken would still answer at its timeout,
        // with what it then reads: only a wake answers within half of it.
        let (status, body) = tokio::time::timeout(Duration::from_millis(LONG_POLL_MS / 2), poll)
            .await
            .expect("the change woke the poll")
            .expect("the poll answers");
        assert_eq!(status, 200, "{body}");
        body
    }
}

fn ephemeral_types(body: &Value, room: &str) -> Vec<String> {
    body["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["type"].as_str().expect("type is a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn room_events_receipts_and_typing_wake_the_rooms_members() {
    let mut s = setup().await;
    let (alice, bob, room) = (s.alice.clone(), s.bob.clone(), s.room.clone());
    let got = s
        .woken_by(&bob, async {
            alice.say(&room, "m1", "hello").await;
        })
        .await;
    let events = &got["rooms"]["join"][&room]["timeline"]["events"];
    assert_eq!(events.as_array().map(Vec::len), Some(1), "{got}");

    let event = alice.say(&room, "m2", "read me").await;
    let got = s
        .woken_by(&bob, async {
            let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event}");
            ok(alice.post(&path, json!({})).await, "receipt").await;
        })
        .await;
    assert_eq!(ephemeral_types(&got, &room), ["m.receipt"], "{got}");

    let (alice_id, _) = alice.whoami().await;
    let got = s
        .woken_by(&bob, async {
            let path = format!("/_matrix/client/v3/rooms/{room}/typing/{alice_id}");
            let body = json!({"typing": true, "timeout": 30000});
            ok(alice.put(&path, body).await, "typing").await;
        })
        .await;
    assert_eq!(ephemeral_types(&got, &room), ["m.typing"], "{got}");
    s.server.stop().await;
}

#[tokio::test]
async fn an_invite_wakes_the_invitee_who_is_in_no_shared_room_yet() {
    let mut s = setup().await;
    let alice = s.alice.clone();
    let carol = s.server.register("carol", "pw").await;
    let (carol_id, _) = carol.whoami().await;
    let other = alice.create_room(json!({})).await;
    let got = s
        .woken_by(&carol, async {
            let path = format!("/_matrix/client/v3/rooms/{other}/invite");
            ok(
                alice.post(&path, json!({"user_id": carol_id})).await,
                "invite",
            )
            .await;
        })
        .await;
    assert!(got["rooms"]["invite"][&other].is_object(), "{got}");
    s.server.stop().await;
}

#[tokio::test]
async fn a_kick_wakes_the_user_it_removes() {
    let mut s = setup().await;
    let (alice, bob, room) = (s.alice.clone(), s.bob.clone(), s.room.clone());
    let (bob_id, _) = bob.whoami().await;
    let got = s
        .woken_by(&bob, async {
            let path = format!("/_matrix/client/v3/rooms/{room}/kick");
            ok(alice.post(&path, json!({"user_id": bob_id})).await, "kick").await;
        })
        .await;
    assert!(got["rooms"]["leave"][&room].is_object(), "{got}");
    s.server.stop().await;
}

#[tokio::test]
async fn account_data_and_to_device_wake_their_user() {
    let mut s = setup().await;
    let (alice, bob, room) = (s.alice.clone(), s.bob.clone(), s.room.clone());
    let (bob_id, bob_dev) = bob.whoami().await;
    // Bob's other session writes his account data.
    let bob_elsewhere = s.server.client().with_token(&{
        let (status, body) = s
            .server
            .client()
            .post(
                "/_matrix/client/v3/login",
                json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"}, "password": "pw"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    });
    let got = s
        .woken_by(&bob, async {
            let path = format!("/_matrix/client/v3/user/{bob_id}/account_data/org.example.a");
            ok(
                bob_elsewhere.put(&path, json!({"a": 1})).await,
                "account data",
            )
            .await;
        })
        .await;
    assert_eq!(got["account_data"]["events"][0]["type"], "org.example.a");

    let got = s
        .woken_by(&bob, async {
            let path =
                format!("/_matrix/client/v3/user/{bob_id}/rooms/{room}/account_data/org.example.r");
            ok(
                bob_elsewhere.put(&path, json!({"r": 1})).await,
                "room account data",
            )
            .await;
        })
        .await;
    assert_eq!(
        got["rooms"]["join"][&room]["account_data"]["events"][0]["type"], "org.example.r",
        "{got}"
    );

    let got = s
        .woken_by(&bob, async {
            let body = json!({"messages": {&bob_id: {&bob_dev: {"n": 1}}}});
            let path = "/_matrix/client/v3/sendToDevice/org.example.ping/t1";
            ok(alice.put(path, body).await, "to-device").await;
        })
        .await;
    assert_eq!(got["to_device"]["events"][0]["type"], "org.example.ping");
    s.server.stop().await;
}

#[tokio::test]
async fn presence_and_device_keys_wake_the_users_sharing_a_room() {
    let mut s = setup().await;
    let alice = s.alice.clone();
    let bob = s.bob.clone();
    let (alice_id, alice_dev) = alice.whoami().await;
    let got = s
        .woken_by(&bob, async {
            let path = format!("/_matrix/client/v3/presence/{alice_id}/status");
            ok(
                alice.put(&path, json!({"presence": "online"})).await,
                "presence",
            )
            .await;
        })
        .await;
    assert_eq!(got["presence"]["events"][0]["sender"], alice_id.as_str());

    let got = s
        .woken_by(&bob, async {
            let keys = json!({"device_keys": {
                "user_id": alice_id, "device_id": alice_dev,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
                "keys": {format!("curve25519:{alice_dev}"): "c", format!("ed25519:{alice_dev}"): "e"},
                "signatures": {&alice_id: {format!("ed25519:{alice_dev}"): "s"}},
            }});
            ok(alice.post("/_matrix/client/v3/keys/upload", keys).await, "keys").await;
        })
        .await;
    assert_eq!(got["device_lists"]["changed"], json!([alice_id]), "{got}");
    s.server.stop().await;
}

#[tokio::test]
async fn changes_for_someone_else_do_not_wake_a_poll() {
    let mut s = setup().await;
    let (alice, bob) = (s.alice.clone(), s.bob.clone());
    // Carol shares no room with bob.
    let carol = s.server.register("carol", "pw").await;
    let (carol_id, carol_dev) = carol.whoami().await;
    let apart = carol.create_room(json!({})).await;
    let since = token(&bob).await;
    let poll = {
        let bob = bob.clone();
        tokio::spawn(async move {
            bob.get(&format!(
                "/_matrix/client/v3/sync?set_presence=offline&timeout=1500&since={since}"
            ))
            .await
        })
    };
    s.waits.recv().await.expect("the poll waits");
    carol.say(&apart, "c1", "not for bob").await;
    let path = format!("/_matrix/client/v3/presence/{carol_id}/status");
    ok(
        carol.put(&path, json!({"presence": "online"})).await,
        "presence",
    )
    .await;
    let body = json!({"messages": {&carol_id: {&carol_dev: {"n": 1}}}});
    ok(
        alice
            .put("/_matrix/client/v3/sendToDevice/org.example.x/t1", body)
            .await,
        "to-device",
    )
    .await;
    let path = format!("/_matrix/client/v3/user/{carol_id}/account_data/org.example.a");
    ok(carol.put(&path, json!({"a": 1})).await, "account data").await;
    let (status, got) = poll.await.unwrap();
    assert_eq!(status, 200);
    assert!(
        s.waits.try_recv().is_err(),
        "none of carol's changes made bob's poll read again"
    );
    assert!(
        got["rooms"]["join"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "{got}"
    );
    assert!(
        got["presence"]["events"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{got}"
    );
    s.server.stop().await;
}

/// The event IDs of `room`'s timeline in a sync answer.
fn timeline_ids(got: &Value, room: &str) -> Vec<String> {
    got["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect()
}

/// A long-poll that times out with nothing new answers without reading the
/// rooms (`SyncService::quiet`): its answer must still be what a read would
/// give (empty, with the device's key counts) and its token must lose
/// nothing committed after it.
#[tokio::test]
async fn a_timed_out_long_poll_answers_empty_with_key_counts_and_loses_nothing() {
    let s = setup().await;
    let otks: serde_json::Map<String, Value> = (0..3)
        .map(|i| {
            (
                format!("signed_curve25519:k{i}"),
                json!({"key": format!("k{i}")}),
            )
        })
        .collect();
    ok(
        s.alice
            .post(
                "/_matrix/client/v3/keys/upload",
                json!({"one_time_keys": otks}),
            )
            .await,
        "key upload",
    )
    .await;
    let since = token(&s.alice).await;
    let started = tokio::time::Instant::now();
    let (status, quiet) = s
        .alice
        .get(&format!(
            "/_matrix/client/v3/sync?set_presence=offline&timeout=300&since={since}"
        ))
        .await;
    assert_eq!(status, 200, "{quiet}");
    assert!(started.elapsed() >= Duration::from_millis(250), "waited");
    assert!(
        quiet["rooms"]["join"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "{quiet}"
    );
    assert_eq!(
        quiet["device_one_time_keys_count"]["signed_curve25519"], 3,
        "{quiet}"
    );
    let next = quiet["next_batch"].as_str().unwrap();
    let event = s
        .bob
        .say(&s.room, "after-quiet", "after the quiet answer")
        .await;
    let (status, got) = s
        .alice
        .get(&format!(
            "/_matrix/client/v3/sync?set_presence=offline&timeout=0&since={next}"
        ))
        .await;
    assert_eq!(status, 200, "{got}");
    assert!(timeline_ids(&got, &s.room).contains(&event), "{got}");
    s.server.stop().await;
}

/// Long-polls that time out one after the other, each from the token of
/// the one before, answer without reading the rooms: the quiet answer
/// keeps the user's cached circle valid at its new token (nothing naming
/// its topics came in between), so the next long-poll waits at once. A
/// reconnect storm or an idle client costs no reads that way. And the
/// shortcut loses nothing: a room the user joins afterwards wakes the next
/// long-poll, and that room's messages wake the one after it.
#[tokio::test]
async fn quiet_long_polls_in_a_row_read_nothing_and_a_later_join_still_wakes() {
    let mut s = setup().await;
    let quiet_poll = |since: String| {
        let alice = s.alice.clone();
        async move {
            let (status, body) = alice
                .get(&format!(
                    "/_matrix/client/v3/sync?set_presence=offline&timeout=200&since={since}"
                ))
                .await;
            assert_eq!(status, 200, "{body}");
            assert!(
                body["rooms"]["join"]
                    .as_object()
                    .is_none_or(|m| m.is_empty()),
                "{body}"
            );
            body["next_batch"].as_str().unwrap().to_owned()
        }
    };
    // Commits that concern someone else move every token on.
    let carol = s.server.register("carol", "pw").await;
    let elsewhere = carol.create_room(json!({"preset": "private_chat"})).await;
    let mut since = token(&s.alice).await;
    let reads = s.server.state.sync.reads();
    for round in 0..3 {
        carol
            .say(&elsewhere, &format!("c{round}"), "not for alice")
            .await;
        let next = quiet_poll(since.clone()).await;
        assert_ne!(next, since, "round {round}: the token moved on");
        since = next;
    }
    assert_eq!(s.server.state.sync.reads(), reads, "quiet answers only");

    let room2 = s.bob.create_room(json!({"preset": "public_chat"})).await;
    let poll = |since: String| {
        let alice = s.alice.clone();
        tokio::spawn(async move {
            alice
                .get(&format!(
                    "/_matrix/client/v3/sync?set_presence=offline&timeout={LONG_POLL_MS}&since={since}"
                ))
                .await
        })
    };
    // The quiet polls' waits are in the channel: only a wait after this
    // counts.
    while s.waits.try_recv().is_ok() {}
    let joined = poll(since);
    s.waits.recv().await.expect("hook installed");
    s.alice.join(&room2).await;
    let (status, got) = tokio::time::timeout(Duration::from_millis(LONG_POLL_MS / 2), joined)
        .await
        .expect("the join woke the poll")
        .unwrap();
    assert_eq!(status, 200, "{got}");
    assert!(got["rooms"]["join"][&room2].is_object(), "{got}");
    while s.waits.try_recv().is_ok() {}
    let said = poll(got["next_batch"].as_str().unwrap().to_owned());
    s.waits.recv().await.expect("hook installed");
    let event = s.bob.say(&room2, "in-room2", "hello").await;
    let (status, got) = tokio::time::timeout(Duration::from_millis(LONG_POLL_MS / 2), said)
        .await
        .expect("the message in the new room woke the poll")
        .unwrap();
    assert_eq!(status, 200, "{got}");
    assert!(timeline_ids(&got, &room2).contains(&event), "{got}");
    s.server.stop().await;
}

/// A user's own message is in a sync made right after sending it, even
/// with `timeout=0` from a token whose circle is cached (the quiet answer
/// first waits until the notifier has published every commit so far).
/// In-process the watcher usually publishes before the next request
/// arrives, so this fails only if the quiet answer is taken while the
/// watcher is behind; twenty rounds give that race room.
#[tokio::test]
async fn a_sync_right_after_a_send_sees_it() {
    let s = setup().await;
    for round in 0..20 {
        let since = token(&s.alice).await;
        let event = s.alice.say(&s.room, &format!("own-{round}"), "mine").await;
        let (status, got) = s
            .alice
            .get(&format!(
                "/_matrix/client/v3/sync?set_presence=offline&timeout=0&since={since}"
            ))
            .await;
        assert_eq!(status, 200, "{got}");
        assert!(
            timeline_ids(&got, &s.room).contains(&event),
            "round {round}: {got}"
        );
    }
    s.server.stop().await;
}
