//! One logical change, one transaction per database: each test injects a
//! failure where a change used to be split between transactions (the
//! embedded store's fault hooks: a commit that fails as if the server
//! crashed just before it, or one that reports `commit_unknown_result`
//! although it committed) and checks that the store holds all of the
//! change or none of it, and that a retry does not turn success into an
//! error.

mod rooms_common;

use std::sync::atomic::Ordering;

use myelin::db::Databases;
use myelin::kv::embedded::Faults;
use myelin::service::rooms::{CreateRoom, Error, Rooms};
use ruma::{OwnedRoomAliasId, RoomVersionId};

use rooms_common::{service, user, versions};

async fn open(dir: &std::path::Path) -> (Databases, Rooms) {
    let dbs = myelin::db::open_embedded_at(dir)
        .await
        .expect("the embedded store opens");
    let (rooms, _) = service(&dbs);
    (dbs, rooms)
}

fn faults(dbs: &Databases) -> &Faults {
    dbs.rooms.db.as_embedded().expect("embedded store").faults()
}

fn public_with_alias(version: &RoomVersionId, alias_name: &str) -> CreateRoom {
    CreateRoom {
        public: true,
        room_alias_name: Some(alias_name.into()),
        name: Some("lobby".into()),
        room_version: Some(version.clone()),
        ..Default::default()
    }
}

fn alias(name: &str) -> OwnedRoomAliasId {
    format!("#{name}:example.org")
        .try_into()
        .expect("a valid alias")
}

/// createRoom used to commit the room, then the alias, then the listing:
/// a failure of the second or third commit left a room without its alias
/// or an unlisted public room (and the client was told it failed). Now
/// whichever commit fails, the room, its alias and its listing are all
/// there or none is.
#[tokio::test]
async fn create_room_keeps_room_alias_and_listing_together() {
    for version in versions() {
        for countdown in 1..=3 {
            let dir = tempfile::tempdir().unwrap();
            let (dbs, rooms) = open(dir.path()).await;
            let alice = user("alice");
            faults(&dbs)
                .fail_commit_countdown
                .store(countdown, Ordering::SeqCst);
            let result = rooms
                .create_room(&alice, public_with_alias(&version, "lobby"))
                .await;
            faults(&dbs)
                .fail_commit_countdown
                .store(0, Ordering::SeqCst);
            let what = format!("{version}, commit {countdown} fails");

            let joined = rooms.joined_rooms(&alice).await.unwrap();
            let aliased = rooms.db().alias(&alias("lobby")).await.unwrap();
            let listed = rooms.db().listed_rooms(None, 10).await.unwrap();
            match result {
                Ok((room, _)) => {
                    assert_eq!(joined, vec![room.clone()], "{what}");
                    assert_eq!(aliased.map(|a| a.room_id), Some(room.clone()), "{what}");
                    assert_eq!(listed, vec![room], "{what}");
                }
                Err(e) => {
                    assert!(matches!(e, Error::Storage(_)), "{what}: {e:?}");
                    assert!(joined.is_empty(), "{what}: a room was left: {joined:?}");
                    assert!(aliased.is_none(), "{what}: an alias was left");
                    assert!(listed.is_empty(), "{what}: a listing was left");
                }
            }
            // The injected failure hit the creation itself.
            if countdown == 1 {
                assert!(rooms.joined_rooms(&alice).await.unwrap().is_empty());
            }
        }
    }
}

/// An alias claimed between createRoom's start and its commit refuses the
/// whole creation: no room is left behind that the client was told failed.
/// Concurrent creations with one alias: exactly one succeeds, and exactly
/// one room exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creations_with_one_alias_leave_one_room() {
    let dir = tempfile::tempdir().unwrap();
    let (_dbs, rooms) = open(dir.path()).await;
    let creators: Vec<_> = (0..8).map(|i| user(&format!("u{i}"))).collect();
    let tasks: Vec<_> = creators
        .iter()
        .map(|who| {
            let (rooms, who) = (rooms.clone(), who.clone());
            tokio::spawn(async move {
                let req = public_with_alias(&RoomVersionId::V11, "contested");
                rooms.create_room(&who, req).await
            })
        })
        .collect();
    let mut won = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok((room, _)) => won.push(room),
            Err(Error::RoomInUse(a)) => assert_eq!(a, "#contested:example.org"),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(won.len(), 1, "one creation wins the alias");
    let mut rooms_left = Vec::new();
    for who in &creators {
        rooms_left.extend(rooms.joined_rooms(who).await.unwrap());
    }
    assert_eq!(rooms_left, won, "the losers left no room");
    let record = rooms.db().alias(&alias("contested")).await.unwrap();
    assert_eq!(record.map(|r| r.room_id), Some(won[0].clone()));
    assert_eq!(rooms.db().listed_rooms(None, 10).await.unwrap(), won);
}

/// A creation whose commit reports `commit_unknown_result` although it
/// committed is retried; the retry recognises its own room instead of
/// refusing it as "already exists", and reports the events it wrote.
#[tokio::test]
async fn create_room_retried_after_unknown_result_reports_the_room() {
    for version in versions() {
        let dir = tempfile::tempdir().unwrap();
        let (dbs, rooms) = open(dir.path()).await;
        let alice = user("alice");
        faults(&dbs)
            .commit_unknown_result
            .store(1, Ordering::SeqCst);
        let (room, sent) = rooms
            .create_room(&alice, public_with_alias(&version, "again"))
            .await
            .unwrap_or_else(|e| panic!("{version}: {e:?}"));
        assert_eq!(faults(&dbs).commit_unknown_result.load(Ordering::SeqCst), 0);
        assert_eq!(
            rooms.joined_rooms(&alice).await.unwrap(),
            vec![room.clone()]
        );
        let stored = rooms
            .db()
            .timeline(
                &room,
                None,
                None,
                myelin::db::rooms::Direction::Forward,
                100,
            )
            .await
            .unwrap();
        let stored: Vec<_> = stored
            .into_iter()
            .map(|e| (e.event_id, e.position))
            .collect();
        let reported: Vec<_> = sent.into_iter().map(|s| (s.event_id, s.position)).collect();
        assert_eq!(reported, stored, "{version}");
        assert_eq!(
            rooms
                .db()
                .alias(&alias("again"))
                .await
                .unwrap()
                .map(|a| a.room_id),
            Some(room)
        );
    }
}

/// `PUT /directory/room/{alias}` retried after `commit_unknown_result`
/// succeeds: the retry finds the alias it wrote, not someone else's.
#[tokio::test]
async fn create_alias_retried_after_unknown_result_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (dbs, rooms) = open(dir.path()).await;
    let alice = user("alice");
    let (room, _) = rooms
        .create_room(&alice, CreateRoom::default())
        .await
        .unwrap();
    faults(&dbs)
        .commit_unknown_result
        .store(1, Ordering::SeqCst);
    rooms
        .create_alias(&alice, &alias("mine"), &room)
        .await
        .unwrap();
    assert_eq!(faults(&dbs).commit_unknown_result.load(Ordering::SeqCst), 0);
    // A second request for the same alias is still refused.
    let again = rooms.create_alias(&alice, &alias("mine"), &room).await;
    assert!(matches!(again, Err(Error::AliasInUse(_))), "{again:?}");
}

/// `/read_markers` with `m.read` and `m.read.private` used to set them in
/// two transactions: a failure of the second left one receipt moved and
/// the other not. Now they move together.
#[tokio::test]
async fn read_markers_set_both_receipts_or_neither() {
    for countdown in 1..=2 {
        let dir = tempfile::tempdir().unwrap();
        let (dbs, rooms) = open(dir.path()).await;
        let alice = user("alice");
        let (room, sent) = rooms
            .create_room(&alice, CreateRoom::default())
            .await
            .unwrap();
        let event = &sent.last().unwrap().event_id;
        faults(&dbs)
            .fail_commit_countdown
            .store(countdown, Ordering::SeqCst);
        let result = rooms
            .set_read_markers(&alice, &room, None, Some(event), Some(event))
            .await;
        faults(&dbs)
            .fail_commit_countdown
            .store(0, Ordering::SeqCst);
        let stored = rooms.db().receipts_since(&room, None, None).await.unwrap();
        let mut types: Vec<_> = stored
            .iter()
            .map(|(_, r)| r.receipt_type.as_str())
            .collect();
        types.sort();
        match result {
            Ok(()) => assert_eq!(types, ["m.read", "m.read.private"], "commit {countdown}"),
            Err(e) => assert!(
                types.is_empty(),
                "commit {countdown} ({e:?}) left {types:?}"
            ),
        }
        if countdown == 1 {
            assert!(types.is_empty(), "the failure hit the receipts");
        }
    }
}

/// Logout (and every device deletion) clears the deleted devices'
/// to-device inboxes and records the owner's device-list change: this used
/// to take one `transitory` transaction per inbox and one more for the
/// change, so a failure in between left some inboxes and no change record.
#[tokio::test]
async fn deleted_devices_lose_their_inboxes_and_record_the_change_together() {
    use myelin::db::transitory::TransitoryDb;
    use myelin::service::e2ee::DeviceLifecycle;
    let who = "@alice:example.org";
    let devices = ["PHONE".to_owned(), "LAPTOP".to_owned()];
    for countdown in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let dbs = myelin::db::open_embedded_at(dir.path()).await.unwrap();
        let transitory = TransitoryDb::new(&dbs.transitory);
        let to_both: Vec<_> = devices
            .iter()
            .map(|d| (who.to_owned(), d.clone(), "{}".to_owned()))
            .collect();
        transitory
            .send_to_device(("@bob:example.org", "B"), "t1", "m.test", 1, &to_both)
            .await
            .unwrap();
        let before = transitory
            .device_lists_changed(&[who.to_owned()], None, None)
            .await
            .unwrap();
        let alice: &ruma::UserId = who.try_into().unwrap();
        faults(&dbs)
            .fail_commit_countdown
            .store(countdown, Ordering::SeqCst);
        let result = DeviceLifecycle::new(&dbs)
            .devices_deleted(alice, &devices)
            .await;
        faults(&dbs)
            .fail_commit_countdown
            .store(0, Ordering::SeqCst);
        let mut pending = Vec::new();
        for d in &devices {
            let batch = transitory.to_device_since(who, d, None, 10).await.unwrap();
            pending.push(batch.messages.len());
        }
        let after = transitory
            .device_lists_changed(&[who.to_owned()], None, None)
            .await
            .unwrap();
        let what = format!("commit {countdown}");
        match result {
            Ok(()) => {
                assert_eq!(pending, [0, 0], "{what}");
                assert_ne!(after, before, "{what}: the change is recorded");
            }
            Err(e) => {
                assert_eq!(pending, [1, 1], "{what} ({e:?}): inboxes half cleared");
                assert_eq!(after, before, "{what}: a change recorded anyway");
            }
        }
        if countdown == 1 {
            assert_eq!(pending, [1, 1], "the failure hit the deletion");
        }
    }
}

/// Deleting an alias used to commit the deletion, then a new canonical
/// alias event without it: a failure in between left the room's canonical
/// alias naming an alias that no longer exists. Now both go together.
#[tokio::test]
async fn deleting_an_alias_drops_it_from_the_canonical_alias_in_the_same_commit() {
    for countdown in 1..=2 {
        let dir = tempfile::tempdir().unwrap();
        let (dbs, rooms) = open(dir.path()).await;
        let alice = user("alice");
        let (room, _) = rooms
            .create_room(&alice, public_with_alias(&RoomVersionId::V11, "gone"))
            .await
            .unwrap();
        faults(&dbs)
            .fail_commit_countdown
            .store(countdown, Ordering::SeqCst);
        let result = rooms.delete_alias(&alice, &alias("gone")).await;
        faults(&dbs)
            .fail_commit_countdown
            .store(0, Ordering::SeqCst);
        let exists = rooms.db().alias(&alias("gone")).await.unwrap().is_some();
        let canonical = rooms
            .db()
            .state_event(&room, "m.room.canonical_alias", "")
            .await
            .unwrap()
            .expect("createRoom set one")
            .pdu
            .content_value();
        let named = canonical["alias"] == "#gone:example.org";
        let what = format!("commit {countdown}: {result:?}");
        assert_eq!(
            exists, named,
            "{what}: alias exists {exists}, named {named}"
        );
        assert_eq!(result.is_ok(), !exists, "{what}");
        if countdown == 1 {
            assert!(exists, "the failure hit the deletion");
        }
    }
}
