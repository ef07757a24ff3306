//! Which forward extremities a send names as `prev_events` when a room has
//! more than `MAX_PREV_EVENTS`: the deepest, then a sample of the others
//! drawn from the handle's injected random source, so a seeded source
//! makes the choice repeatable.

mod rooms_common;

use std::sync::Arc;

use myelin::db::Databases;
use myelin::db::rooms::{MAX_PREV_EVENTS, RoomsDb, keys};
use myelin::kv;
use myelin::random::Random;
use myelin::service::ManualClock;
use myelin::service::rooms::Rooms;
use ruma::OwnedEventId;
use serde_json::json;

use rooms_common::{key, private_room, user, versions};

/// Extremities added beside the room's own, more than a send may name.
const EXTRA: usize = MAX_PREV_EVENTS + 4;

/// In a fresh store: creates a room, sends a message, adds `EXTRA` shallower
/// forward extremities by hand, then sends once more through a rooms handle
/// seeded with `seed`. Returns the message's ID and the second send's
/// `prev_events`.
async fn prev_events_of_a_send(
    version: &ruma::RoomVersionId,
    seed: u64,
) -> (OwnedEventId, Vec<OwnedEventId>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dbs: Databases = myelin::db::open_embedded_at(dir.path())
        .await
        .expect("the embedded store opens");
    let rooms = Rooms::new(
        RoomsDb::from_dirs(dbs.rooms.db.clone(), &dbs.rooms.dirs, Random::seeded(seed)),
        "example.org".try_into().expect("a valid server name"),
        key(),
        Arc::new(ManualClock::new(1_700_000_000_000)),
    );
    let alice = user("alice");
    let room = private_room(&rooms, &alice, version).await;
    let body = json!({"msgtype": "m.text", "body": "hello"});
    let first = rooms
        .send_message(&alice, "D", &room, "m.room.message", "t1", body.clone())
        .await
        .expect("the message is sent");

    // Extremities at depth 1, below the message: only the sample names them.
    let space = dbs.rooms.dirs.space(&keys::ROOMS).clone();
    let room_key = room.to_string();
    dbs.rooms
        .db
        .run(|tx, _| {
            let (space, room_key) = (space.clone(), room_key.clone());
            async move {
                for i in 0..EXTRA {
                    let id = format!("$extra{i:02}");
                    tx.set(
                        &space.key(&keys::EXTREMITY, &(room_key.as_str(), id.as_str())),
                        &1u64.to_le_bytes(),
                    );
                }
                Ok::<_, kv::Error>(())
            }
        })
        .await
        .expect("the extremities are written");

    let second = rooms
        .send_message(&alice, "D", &room, "m.room.message", "t2", body)
        .await
        .expect("the message is sent");
    let event = rooms
        .db()
        .event(&second.event_id)
        .await
        .expect("the event reads")
        .expect("the event is stored");
    (first.event_id, event.pdu.prev_events().to_vec())
}

#[tokio::test]
async fn a_seeded_source_samples_the_same_prev_events() {
    for version in versions() {
        let (deepest, a) = prev_events_of_a_send(&version, 11).await;
        let (_, b) = prev_events_of_a_send(&version, 11).await;
        let (_, c) = prev_events_of_a_send(&version, 12).await;
        assert_eq!(a.len(), MAX_PREV_EVENTS, "{version}");
        assert_eq!(a[0], deepest, "{version}: the deepest comes first");
        assert!(
            a[1..].iter().all(|id| id.as_str().starts_with("$extra")),
            "{version}: {a:?}"
        );
        // The room ID, and so the message's ID, may differ between stores
        // (room versions before 12 draw it); the sample of the hand-made
        // extremities may not.
        assert_eq!(a[1..], b[1..], "{version}: same seed, same sample");
        assert_ne!(a[1..], c[1..], "{version}: another seed, another sample");
    }
}
