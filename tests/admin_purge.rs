//! Room purge (issue 21 point 2, `DELETE /_synapse/admin/v2/rooms/{room_id}`
//! with `purge`): after the delete no key of the room is left in the
//! `rooms` database (a raw scan of every key), other rooms are untouched,
//! the purged room answers as Synapse's does, and a purge stopped between
//! pages (the server stopped) is finished by running the delete again.

mod common_api;

use std::collections::BTreeSet;

use myelin::db::rooms::PurgeStep;
use myelin::kv::{KeyValue, RangeOption};
use ruma::RoomId;
use serde_json::{Value, json};

use common_api::{Client, TestServer, assert_error, test_config};

/// Every key and value of the `rooms` database.
async fn scan(server: &TestServer) -> Vec<KeyValue> {
    server
        .state
        .rooms
        .db()
        .kv()
        .read_range(RangeOption::new(vec![0x00], vec![0xff]))
        .await
        .expect("scan the rooms database")
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The keys that name `room`.
fn keys_of(kvs: &[KeyValue], room: &str) -> BTreeSet<Vec<u8>> {
    kvs.iter()
        .filter(|kv| contains(&kv.key, room))
        .map(|kv| kv.key.clone())
        .collect()
}

/// The event IDs of `room`'s timeline as `client` sees it.
async fn event_ids(client: &Client, room: &str) -> Vec<String> {
    let (status, page) = client
        .get(&format!(
            "/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1000"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

type Setup = common_api::AdminAliceBob;

async fn setup() -> Setup {
    common_api::admin_alice_bob().await
}

/// A room with history of every kind the `rooms` database indexes:
/// members, messages, a redaction, a reaction, a thread reply, a receipt,
/// an alias and a directory entry. Returns its ID and its event IDs.
async fn busy_room(t: &Setup, alias: &str, messages: usize) -> (String, Vec<String>) {
    let room = t
        .alice
        .create_room(json!({"preset": "public_chat", "name": "Busy", "room_alias_name": alias, "visibility": "public"}))
        .await;
    t.bob.join(&room).await;
    let mut sent = Vec::new();
    for i in 0..messages {
        let sender = if i % 2 == 0 { &t.alice } else { &t.bob };
        sent.push(
            sender
                .say(&room, &format!("m{i}"), &format!("hello {i}"))
                .await,
        );
    }
    let first = sent[0].clone();
    let (status, body) = t
        .alice
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/redact/{}/r1", sent[1]),
            json!({"reason": "oops"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = t
        .bob
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.reaction/re1"),
            json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": first, "key": "+1"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = t
        .bob
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/th1"),
            json!({"msgtype": "m.text", "body": "in a thread",
                   "m.relates_to": {"rel_type": "m.thread", "event_id": first}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = t
        .alice
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{first}"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ids = event_ids(&t.alice, &room).await;
    (room, ids)
}

/// Asserts that no key of the `rooms` database names `room` (except its
/// block mark, when `blocked`) and that no key or value holds one of its
/// event IDs.
fn assert_gone(kvs: &[KeyValue], room: &str, events: &[String], blocked: bool) {
    let left = keys_of(kvs, room);
    assert!(
        left.len() <= usize::from(blocked),
        "{} keys of {room} left: {:?}",
        left.len(),
        left.iter()
            .map(|k| String::from_utf8_lossy(k))
            .collect::<Vec<_>>()
    );
    for id in events {
        for kv in kvs {
            assert!(
                !contains(&kv.key, id) && !contains(&kv.value, id),
                "{id} left in {}",
                String::from_utf8_lossy(&kv.key)
            );
        }
    }
}

#[tokio::test]
async fn purge_leaves_no_key_of_the_room_and_other_rooms_untouched() {
    let t = setup().await;
    let (doomed, doomed_events) = busy_room(&t, "doomed", 6).await;
    let (kept, kept_events) = busy_room(&t, "kept", 4).await;
    let before = scan(&t.server).await;
    assert!(keys_of(&before, &doomed).len() > 20);
    let kept_keys = keys_of(&before, &kept);

    let path = format!("/_synapse/admin/v2/rooms/{doomed}");
    // A non-admin purges nothing.
    assert_error(
        &t.alice.delete(&path, json!({"purge": true})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(scan(&t.server).await.len(), before.len());

    let (status, answer) = t.admin.delete(&path, json!({})).await;
    assert_eq!(status, 200, "{answer}");
    let delete_id = answer["delete_id"].as_str().expect("delete_id").to_owned();
    let (status, result) = t
        .admin
        .get(&format!(
            "/_synapse/admin/v2/rooms/delete_status/{delete_id}"
        ))
        .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["status"], "complete", "{result}");
    assert_eq!(result["purge"]["phase"], "done", "{result}");
    assert_eq!(result["purge"]["members_removed"], 2, "{result}");
    assert!(
        result["purge"]["events_removed"].as_u64().expect("a count") >= doomed_events.len() as u64
    );

    let after = scan(&t.server).await;
    assert_gone(&after, &doomed, &doomed_events, false);
    // The other room keeps every key and its history.
    let still = keys_of(&after, &kept);
    assert!(
        kept_keys.is_subset(&still),
        "keys of the other room went missing"
    );
    assert_eq!(event_ids(&t.alice, &kept).await, kept_events);

    // The purged room is unknown (Synapse answers a former member's
    // `/messages` 403; Myelin 404, as for any unknown room).
    assert_error(
        &t.admin
            .get(&format!("/_synapse/admin/v1/rooms/{doomed}"))
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &t.bob
            .get(&format!("/_matrix/client/v3/rooms/{doomed}/messages?dir=b"))
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &t.bob
            .get("/_matrix/client/v3/directory/room/%23doomed:test.local")
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(&t.admin.delete(&path, json!({})).await, 404, "M_NOT_FOUND");
    // Its former members sync without it.
    for client in [&t.alice, &t.bob] {
        let (status, body) = client.get("/_matrix/client/v3/sync").await;
        assert_eq!(status, 200, "{body}");
        assert!(body["rooms"]["join"].get(&doomed).is_none(), "{body}");
        assert!(body["rooms"]["join"].get(&kept).is_some(), "{body}");
    }
    // A retry of a send of the purged room finds no transaction ID (it
    // would answer the purged event): the room is unknown.
    assert_error(
        &t.alice
            .put(
                &format!("/_matrix/client/v3/rooms/{doomed}/send/m.room.message/m0"),
                json!({"msgtype": "m.text", "body": "hello 0"}),
            )
            .await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn a_purge_stopped_between_pages_is_finished_by_a_rerun() {
    let t = setup().await;
    let (room, events) = busy_room(&t, "halfway", 12).await;
    let path = format!("/_synapse/admin/v2/rooms/{room}");
    // Shut the room down without purging, then run two small pages of the
    // purge by hand and stop the server: a crash between pages.
    let (status, answer) = t
        .admin
        .delete(&path, json!({"purge": false, "block": true}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let delete_id = answer["delete_id"].as_str().expect("delete_id").to_owned();
    let room_id = <&RoomId>::try_from(room.as_str()).expect("room ID");
    for _ in 0..2 {
        let step = t
            .server
            .state
            .rooms
            .db()
            .purge_page(room_id, &delete_id, 4)
            .await
            .expect("a page");
        assert_eq!(step, PurgeStep::More);
    }
    let (_, status) = t
        .admin
        .get(&format!(
            "/_synapse/admin/v2/rooms/delete_status/{delete_id}"
        ))
        .await;
    assert_eq!(status["purge"]["pages"], 2, "{status}");
    assert_eq!(status["purge"]["events_removed"], 8, "{status}");
    assert_eq!(status["purge"]["phase"], "events", "{status}");
    // Half purged: the room still exists, so the purge can be found again.
    assert_eq!(
        t.admin
            .get(&format!("/_synapse/admin/v1/rooms/{room}"))
            .await
            .0,
        200
    );

    let clock = t.server.clock.clone();
    let dir = t.server.data_dir.clone();
    let _tmp = t.server.stop().await;
    let server = TestServer::start_at(&dir, test_config(), clock).await;
    let admin = server.login("admin", "pw-admin-1").await.expect("admin");
    let (status, answer) = admin.delete(&path, json!({"block": true})).await;
    assert_eq!(status, 200, "{answer}");
    let rerun = answer["delete_id"].as_str().expect("delete_id").to_owned();
    let (_, done) = admin
        .get(&format!("/_synapse/admin/v2/rooms/delete_status/{rerun}"))
        .await;
    assert_eq!(done["status"], "complete", "{done}");
    assert_eq!(done["purge"]["phase"], "done", "{done}");
    assert_gone(&scan(&server).await, &room, &events, true);
    // Blocked and purged: joining is refused.
    let bob = server.login("bob", "pw-bob-1").await.expect("bob");
    assert_error(
        &bob.post(&format!("/_matrix/client/v3/rooms/{room}/join"), json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    let (_, by_room) = admin.get(&format!("{path}/delete_status")).await;
    let statuses: Vec<&Value> = by_room["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(statuses.len(), 2, "{by_room}");
}
