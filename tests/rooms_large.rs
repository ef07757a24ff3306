//! FoundationDB's 5-second rule for large rooms and backups (issue 24,
//! point 4): every read a request makes of a room's whole state, state log,
//! members or events, and of a whole backup version, runs in transactions
//! whose work does not grow with the data. The embedded store counts the
//! most keys any one transaction read (`embedded::Costs`); the tests build
//! data several pages larger than one transaction's bound and assert that
//! count stays under the bound, while the answers stay complete.
//!
//! The first room has a few thousand state events, each a real, signed
//! and authorized send through the service; the bound is per transaction
//! and independent of the count, which is what is shown. The second is the
//! issue's large room, built cheaply: its state events are real (signed and
//! authorized) but appended in batches of [`BATCH`] per transaction at the
//! db level ([`RoomsDb::append_state_batch`]), and the requests are then
//! real HTTP requests to the server. Its size is
//! [`LARGE_ROOM_DEFAULT`] (10,000) state events, or
//! `MYELIN_LARGE_ROOM_STATE_EVENTS` (50,000 is the issue's; docs/rooms.md).
//!
//! [`RoomsDb::append_state_batch`]: myelin::db::rooms::RoomsDb::append_state_batch

mod common_api;
mod rooms_common;

use std::sync::atomic::Ordering;

use futures::future::try_join_all;
use futures::{StreamExt, TryStreamExt};
use myelin::db::accounts::e2ee::E2eeDb;
use myelin::db::rooms::{Direction, NewEvent, PAGE_KEYS, StreamPosition};
use ruma::RoomVersionId;
use serde_json::json;

/// State events of the large room unless `MYELIN_LARGE_ROOM_STATE_EVENTS`
/// says otherwise: ten pages. The 50,000 takes about 100 s in a
/// debug build on the shared 2-core machine (building the room is nearly
/// all of it, about 1 ms an event), too long for every CI run; set
/// `MYELIN_LARGE_ROOM_STATE_EVENTS=50000` to run it.
const LARGE_ROOM_DEFAULT: usize = 10_000;
/// State events per transaction when building the large room.
const BATCH: usize = 500;
/// Batches written at once (different state keys do not conflict).
const BATCH_WRITERS: usize = 4;

/// State events sent into the room: well over two pages.
const STATE_EVENTS: usize = 2_600;
/// Concurrent senders (state sends of different keys do not conflict).
const SENDERS: usize = 16;

/// A fresh embedded store, the rooms service over it, and a private room
/// of `alice`'s (version 11).
async fn alice_in_a_private_room() -> (
    tempfile::TempDir,
    myelin::db::Databases,
    myelin::service::rooms::Rooms,
    ruma::OwnedUserId,
    ruma::OwnedRoomId,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let dbs = myelin::db::open_embedded_at(dir.path())
        .await
        .expect("open");
    let (rooms, _clock) = rooms_common::service(&dbs);
    let alice = rooms_common::user("alice");
    let room = rooms_common::private_room(&rooms, &alice, &RoomVersionId::V11).await;
    (dir, dbs, rooms, alice, room)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whole_room_reads_stay_within_one_page_per_transaction() {
    let (_dir, dbs, rooms, alice, room) = alice_in_a_private_room().await;
    let per_sender = STATE_EVENTS / SENDERS;
    try_join_all((0..SENDERS).map(|s| {
        let (rooms, alice, room) = (&rooms, &alice, &room);
        async move {
            for i in 0..per_sender {
                rooms
                    .send_state(
                        alice,
                        room,
                        "org.example.big",
                        &format!("k{s:02}-{i:04}"),
                        json!({ "i": i }),
                    )
                    .await?;
            }
            Ok::<_, myelin::service::rooms::Error>(())
        }
    }))
    .await
    .expect("state sends");
    let sent = per_sender * SENDERS;
    let db = rooms.db();
    let costs = dbs.rooms.db.as_embedded().expect("embedded").costs();
    let bound = PAGE_KEYS as u64 + 16;
    let within = |what: &str| {
        let read = costs.max_keys_read.load(Ordering::SeqCst);
        assert!(
            read <= bound,
            "{what}: one transaction read {read} keys (bound {bound})"
        );
        assert!(read > 0, "{what}: counted");
        costs.reset();
    };

    costs.reset();
    let current = db.current_state_ids(&room).await.expect("current state");
    within("current state");
    assert!(current.len() > sent, "{} entries", current.len());

    let latest = db
        .latest_position(&room)
        .await
        .expect("latest")
        .expect("some");
    costs.reset();
    let at = db.state_at(&room, latest).await.expect("state at");
    within("state at the latest event");
    assert_eq!(at, current, "the fold of the log is the current state");

    costs.reset();
    let future = db
        .state_at(&room, StreamPosition([0xff; 12]))
        .await
        .expect("state at a position beyond the store");
    within("state at a future position");
    assert_eq!(future, current);

    costs.reset();
    let changes = db
        .state_changes(&room, StreamPosition::MIN, latest)
        .await
        .expect("state changes");
    within("state changes");
    assert_eq!(changes.len(), current.len(), "one change per key");

    costs.reset();
    let ids: Vec<_> = current.values().cloned().collect();
    let events = db.events(&ids).await.expect("events");
    within("the events of the whole state");
    assert_eq!(events.len(), ids.len());
    assert!(
        events
            .iter()
            .zip(&ids)
            .all(|(e, id)| e.pdu.event_id() == id),
        "in the order asked"
    );

    costs.reset();
    let members = db.members(&room).await.expect("members");
    within("members");
    assert_eq!(members.len(), 1);
}

#[tokio::test]
async fn whole_backup_reads_and_room_deletes_stay_within_one_page() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dbs = myelin::db::open_embedded_at(dir.path())
        .await
        .expect("open");
    let e2ee = E2eeDb::new(&dbs.accounts);
    let user = "@a:x";
    let version = e2ee
        .create_backup(user, "m.megolm_backup.v1.curve25519-aes-sha2", &json!({}))
        .await
        .expect("create");
    let keys_in_room = 2_500;
    for chunk in 0..keys_in_room / 250 {
        let keys: Vec<_> = (0..250)
            .map(|i| {
                (
                    "!big:x".to_owned(),
                    format!("s{chunk:03}-{i:03}"),
                    json!({
                        "first_message_index": 1,
                        "forwarded_count": 0,
                        "is_verified": false,
                        "session_data": { "ciphertext": "c" },
                    }),
                )
            })
            .collect();
        e2ee.put_backup_keys(user, version, &keys)
            .await
            .expect("put")
            .expect("current version");
    }
    let costs = dbs.accounts.db.as_embedded().expect("embedded").costs();
    let bound = myelin::db::accounts::e2ee::BACKUP_PAGE_KEYS as u64 + 8;

    costs.reset();
    let all = e2ee
        .backup_keys(user, version, None, None)
        .await
        .expect("read")
        .expect("version exists");
    assert_eq!(all.len(), keys_in_room);
    let read = costs.max_keys_read.load(Ordering::SeqCst);
    assert!(
        read <= bound,
        "a whole-version read read {read} keys in one transaction"
    );

    costs.reset();
    let (count, _) = e2ee
        .delete_backup_keys(user, version, Some("!big:x"), None)
        .await
        .expect("delete")
        .expect("version exists");
    assert_eq!(count, 0, "every key of the room is gone and counted");
    let read = costs.max_keys_read.load(Ordering::SeqCst);
    assert!(
        read <= bound,
        "a room's delete read {read} keys in one transaction"
    );
    let left = e2ee
        .backup_keys(user, version, Some("!big:x"), None)
        .await
        .expect("read")
        .expect("version exists");
    assert!(left.is_empty());
}

/// The large room ([`LARGE_ROOM_DEFAULT`] state events, 50,000 with
/// `MYELIN_LARGE_ROOM_STATE_EVENTS=50000`). `/state`,
/// `/members`, an initial `/sync`, `/messages` and a send all answer, and
/// none of their transactions on the rooms database reads more than one
/// page of keys or writes more than a send's few dozen: their work does not
/// grow with the room. The embedded store fails any transaction older than
/// FoundationDB's 5 seconds (`transaction_too_old`); a request whose
/// transaction outgrew that would fail every retry the same way and answer
/// 503 when the runner's budget ends, so the 200s are the budget kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_room_answers_within_budget() {
    let size = std::env::var("MYELIN_LARGE_ROOM_STATE_EVENTS")
        .ok()
        .map(|v| {
            v.parse::<usize>()
                .expect("MYELIN_LARGE_ROOM_STATE_EVENTS is a number")
        })
        .unwrap_or(LARGE_ROOM_DEFAULT);
    let server = common_api::TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let (user, _) = alice.whoami().await;
    let room = alice.create_room(json!({})).await;
    let rooms = &server.state.rooms;
    let room_id = ruma::OwnedRoomId::try_from(room.as_str()).expect("room ID");
    let sender = ruma::OwnedUserId::try_from(user.as_str()).expect("user ID");
    let now = ruma::MilliSecondsSinceUnixEpoch::now();
    let batches: Vec<Vec<NewEvent>> = (0..size)
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(|chunk| {
            chunk
                .iter()
                .map(|i| NewEvent {
                    event_type: "org.example.big".into(),
                    state_key: Some(format!("k{i:06}")),
                    content: json!({ "i": i }),
                })
                .collect()
        })
        .collect();
    futures::stream::iter(&batches)
        .map(|batch| {
            rooms
                .db()
                .append_state_batch(rooms.signer(), &room_id, &sender, batch, now)
        })
        .buffer_unordered(BATCH_WRITERS)
        .try_collect::<Vec<_>>()
        .await
        .expect("the large room is built");

    let costs = server
        .state
        .databases
        .rooms
        .db
        .as_embedded()
        .expect("embedded")
        .costs();
    let bound = PAGE_KEYS as u64 + 16;
    let within = |what: &str| {
        let read = costs.max_keys_read.load(Ordering::SeqCst);
        let written = costs.max_mutations.load(Ordering::SeqCst);
        assert!(
            read <= bound,
            "{what}: one transaction read {read} keys (bound {bound})"
        );
        assert!(
            written <= 64,
            "{what}: one transaction wrote {written} mutations"
        );
        costs.reset();
    };

    costs.reset();
    let (status, state) = alice
        .get(&format!("/_matrix/client/v3/rooms/{room}/state"))
        .await;
    assert_eq!(status, 200, "/state");
    within("/state");
    let state = state.as_array().expect("an array of state events");
    assert!(state.len() > size, "{} state events", state.len());

    let (status, members) = alice
        .get(&format!("/_matrix/client/v3/rooms/{room}/members"))
        .await;
    assert_eq!(status, 200, "/members");
    within("/members");
    assert_eq!(members["chunk"].as_array().map(Vec::len), Some(1));

    let (_, sync) = common_api::sync_now(&alice, None).await;
    within("an initial /sync");
    let joined = &sync["rooms"]["join"][room.as_str()];
    assert!(joined.is_object(), "the room is in the sync");

    let (status, messages) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=10"
        ))
        .await;
    assert_eq!(status, 200, "/messages");
    within("/messages");
    assert_eq!(messages["chunk"].as_array().map(Vec::len), Some(10));

    alice.say(&room, "after", "still answering").await;
    within("a send");
    server.stop().await;
}

/// A batch retried after `commit_unknown_result` (it committed) appends
/// nothing again: the retry finds each state key holding its event's
/// content and returns those events; a batch with a message is refused.
#[tokio::test]
async fn a_state_batch_retried_after_commit_unknown_result_appends_once() {
    let (_dir, dbs, rooms, alice, room) = alice_in_a_private_room().await;
    let db = rooms.db();
    let count = || async {
        db.timeline(&room, None, None, Direction::Forward, 1_000)
            .await
            .expect("timeline")
            .len()
    };
    let before = count().await;
    let batch: Vec<NewEvent> = (0..3)
        .map(|i| NewEvent {
            event_type: "org.example.big".into(),
            state_key: Some(format!("k{i}")),
            content: json!({ "i": i }),
        })
        .collect();
    let now = ruma::MilliSecondsSinceUnixEpoch::now();
    let faults = dbs.rooms.db.as_embedded().expect("embedded").faults();
    faults.commit_unknown_result.store(1, Ordering::SeqCst);
    let ids = db
        .append_state_batch(rooms.signer(), &room, &alice, &batch, now)
        .await
        .expect("batch");
    assert_eq!(faults.commit_unknown_result.load(Ordering::SeqCst), 0);
    assert_eq!(ids.len(), 3);
    assert_eq!(count().await, before + 3, "each event appended once");
    let state = db.current_state_ids(&room).await.expect("state");
    for (i, id) in ids.iter().enumerate() {
        let key = ("org.example.big".into(), format!("k{i}"));
        assert_eq!(state.get(&key), Some(id), "{key:?}");
    }
    let message = NewEvent {
        event_type: "m.room.message".into(),
        state_key: None,
        content: json!({ "body": "hi" }),
    };
    assert!(
        db.append_state_batch(rooms.signer(), &room, &alice, &[message], now)
            .await
            .is_err()
    );
    assert_eq!(count().await, before + 3);
}
