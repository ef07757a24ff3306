//! The event cache as a send fills it: a send reads the create,
//! power-levels and sender's member events it authorizes against, and
//! keeps them in its handle's cache, exactly as stored (docs/rooms.md,
//! "Event cache").

mod rooms_common;

use myelin::db::rooms::{RoomsDb, keys};
use myelin::kv;
use myelin::service::rooms::{CreateRoom, Preset};
use serde_json::json;

use rooms_common::{service, user, versions};

/// After one send, its auth events are served by the sending handle even
/// once their records are gone from the store (so they came from its cache),
/// and equal to what was stored: event, room, position and metadata. A new
/// handle, whose cache is empty, no longer finds them.
#[tokio::test]
async fn a_send_caches_its_auth_events_as_stored() {
    for version in versions() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = myelin::db::open_embedded_at(dir.path()).await.unwrap();
        let (rooms, _clock) = service(&dbs);
        let alice = user("alice");
        let (room, _) = rooms
            .create_room(
                &alice,
                CreateRoom {
                    preset: Some(Preset::PrivateChat),
                    room_version: Some(version.clone()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        rooms
            .send_message(
                &alice,
                "ALICEDEV",
                &room,
                "m.room.message",
                "t1",
                json!({"msgtype": "m.text", "body": "hello"}),
            )
            .await
            .unwrap();

        // What the store holds, through a handle of its own.
        let other = RoomsDb::new(&dbs.rooms);
        let state = other.current_state_ids(&room).await.unwrap();
        let auth: Vec<_> = [
            ("m.room.create", ""),
            ("m.room.power_levels", ""),
            ("m.room.member", alice.as_str()),
        ]
        .iter()
        .map(|(t, k)| state[&(t.to_string(), k.to_string())].clone())
        .collect();
        let mut stored = Vec::new();
        for id in &auth {
            stored.push(other.event(id).await.unwrap().expect("stored"));
        }

        let events = dbs.rooms.dirs.space(&keys::EVENTS).clone();
        dbs.rooms
            .db
            .run(|tx, _| {
                let events = events.clone();
                let auth = auth.clone();
                async move {
                    for id in &auth {
                        tx.clear(&events.key(&keys::PDU, &(id.as_str(),)));
                    }
                    Ok::<_, kv::Error>(())
                }
            })
            .await
            .unwrap();

        for (id, want) in auth.iter().zip(&stored) {
            let got = rooms
                .db()
                .event(id)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{version}: {id} not cached by the send"));
            assert_eq!(got.pdu.json(), want.pdu.json(), "{version}: {id}");
            assert_eq!(got.room_id, want.room_id, "{version}: {id}");
            assert_eq!(got.position, want.position, "{version}: {id}");
            assert_eq!(got.meta, want.meta, "{version}: {id}");
            assert_eq!(got.redacted_by, None, "{version}: {id}");
            let fresh = RoomsDb::new(&dbs.rooms);
            assert!(
                fresh.event(id).await.unwrap().is_none(),
                "{version}: {id} is still in the store"
            );
        }
    }
}
