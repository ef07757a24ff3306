//! The `rooms/bump` key (`docs/sliding-sync.md`, "Order"): only the bump
//! event types (`keys::BUMP_EVENT_TYPES`) move a room's bump position, a
//! purge removes it, and a room without the key (a store written before it
//! existed) falls back to its latest event of any type.

mod rooms_common;

use myelin::db::rooms::{PurgeStep, RoomsDb, keys};
use myelin::kv;
use serde_json::json;

use myelin::db::Databases;
use myelin::service::rooms::Rooms;
use ruma::{OwnedRoomId, OwnedUserId};
use tempfile::TempDir;

use rooms_common::{private_room, service, user, versions};

/// A fresh store with Alice's private room in it.
async fn one_room() -> (TempDir, Databases, Rooms, RoomsDb, OwnedUserId, OwnedRoomId) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dbs = myelin::db::open_embedded_at(dir.path())
        .await
        .expect("the embedded store opens");
    let (rooms, _clock) = service(&dbs);
    let db = RoomsDb::new(&dbs.rooms);
    let alice = user("alice");
    let room = private_room(&rooms, &alice, &versions()[0]).await;
    (dir, dbs, rooms, db, alice, room)
}

#[tokio::test]
async fn only_bump_events_move_a_rooms_bump_position() {
    let (_dir, _dbs, rooms, db, alice, room) = one_room().await;

    // The create event is a bump: a new room's position is its create's.
    let state = db.current_state_ids(&room).await.unwrap();
    let create = &state[&("m.room.create".to_owned(), String::new())];
    let created = db.bump_position(&room).await.unwrap();
    assert_eq!(created, db.position(create).await.unwrap());
    assert!(
        db.latest_position(&room).await.unwrap() > created,
        "createRoom's later events (power levels, join rules...) did not bump"
    );

    // A message bumps.
    let message = rooms
        .send_message(
            &alice,
            "DEV",
            &room,
            "m.room.message",
            "t1",
            json!({"msgtype": "m.text", "body": "hello"}),
        )
        .await
        .unwrap();
    assert_eq!(
        db.bump_position(&room).await.unwrap(),
        Some(message.position)
    );

    // A topic change, a reaction and a custom event do not.
    rooms
        .send_state(&alice, &room, "m.room.topic", "", json!({"topic": "t"}))
        .await
        .unwrap();
    let reaction = json!({"m.relates_to": {
        "rel_type": "m.annotation", "event_id": message.event_id, "key": "+1"
    }});
    rooms
        .send_message(&alice, "DEV", &room, "m.reaction", "t2", reaction)
        .await
        .unwrap();
    let custom = rooms
        .send_message(&alice, "DEV", &room, "org.example.ping", "t3", json!({}))
        .await
        .unwrap();
    assert_eq!(
        db.latest_position(&room).await.unwrap(),
        Some(custom.position)
    );
    assert_eq!(
        db.bump_position(&room).await.unwrap(),
        Some(message.position),
        "still the message's position"
    );

    // Each other bump type bumps.
    for (i, kind) in keys::BUMP_EVENT_TYPES.iter().enumerate() {
        if *kind == "m.room.create" || *kind == "m.beacon_info" {
            continue; // createRoom's own; a state event (below)
        }
        let sent = rooms
            .send_message(&alice, "DEV", &room, kind, &format!("b{i}"), json!({}))
            .await
            .unwrap();
        assert_eq!(
            db.bump_position(&room).await.unwrap(),
            Some(sent.position),
            "{kind}"
        );
    }
    let beacon = rooms
        .send_state(&alice, &room, "m.beacon_info", alice.as_str(), json!({}))
        .await
        .unwrap();
    assert_eq!(
        db.bump_position(&room).await.unwrap(),
        Some(beacon.position)
    );
}

#[tokio::test]
async fn a_room_without_the_key_falls_back_to_its_latest_event_and_a_purge_removes_it() {
    let (_dir, dbs, rooms, db, alice, room) = one_room().await;
    rooms
        .send_state(&alice, &room, "m.room.topic", "", json!({"topic": "t"}))
        .await
        .unwrap();

    // As a store written before the key existed: no `rooms/bump`.
    let space = dbs.rooms.dirs.space(&keys::ROOMS).clone();
    let key = space.key(&keys::BUMP, &(room.as_str(),));
    let clear = || {
        let key = key.clone();
        dbs.rooms.db.run(move |tx, _| {
            let key = key.clone();
            // A blind clear: safe to run twice.
            async move {
                tx.clear(&key);
                Ok::<_, kv::Error>(())
            }
        })
    };
    assert!(dbs.rooms.db.read(&key).await.unwrap().is_some());
    clear().await.unwrap();
    let latest = db.latest_position(&room).await.unwrap();
    assert!(latest.is_some());
    assert_eq!(db.bump_position(&room).await.unwrap(), latest);

    // The next bump writes the key again.
    let message = rooms
        .send_message(&alice, "DEV", &room, "m.room.message", "t1", json!({}))
        .await
        .unwrap();
    assert_eq!(
        dbs.rooms.db.read(&key).await.unwrap().map(|v| v.len()),
        Some(12)
    );
    assert_eq!(
        db.bump_position(&room).await.unwrap(),
        Some(message.position)
    );

    // A purge leaves no bump key behind.
    while db.purge_page(&room, "purge-1", 100).await.unwrap() == PurgeStep::More {}
    assert_eq!(dbs.rooms.db.read(&key).await.unwrap(), None);
    assert_eq!(db.bump_position(&room).await.unwrap(), None);
}
