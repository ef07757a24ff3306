//! FoundationDB's 5-second rule for large rooms and backups (issue 24,
//! point 4): every read a request makes of a room's whole state, state log,
//! members or events, and of a whole backup version, runs in transactions
//! whose work does not grow with the data. The embedded store counts the
//! most keys any one transaction read (`embedded::Costs`); the tests build
//! data several pages larger than one transaction's bound and assert that
//! count stays under the bound, while the answers stay complete.
//!
//! The room has a few thousand state events (not 50,000: each is a real,
//! signed and authorized send, and the machine is shared); the bound is
//! per transaction and independent of the count, which is what is shown.

mod rooms_common;

use std::sync::atomic::Ordering;

use futures::future::try_join_all;
use myelin::db::accounts::e2ee::E2eeDb;
use myelin::db::rooms::{PAGE_KEYS, StreamPosition};
use ruma::RoomVersionId;
use serde_json::json;

/// State events sent into the room: well over two pages.
const STATE_EVENTS: usize = 2_600;
/// Concurrent senders (state sends of different keys do not conflict).
const SENDERS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whole_room_reads_stay_within_one_page_per_transaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dbs = myelin::db::open_embedded_at(dir.path())
        .await
        .expect("open");
    let (rooms, _clock) = rooms_common::service(&dbs);
    let alice = rooms_common::user("alice");
    let room = rooms_common::private_room(&rooms, &alice, &RoomVersionId::V11).await;
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
