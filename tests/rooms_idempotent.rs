//! A state change the room already holds is not sent again: a repeated
//! join, leave, kick or ban, or a state event with the same sender and
//! content, answers with the existing event and writes nothing (as Synapse
//! does). So parallel joins (or leaves) by one user make one event, and a
//! join, leave or kick retried after `commit_unknown_result` (it committed,
//! the server was told it might not have) makes no second one.

mod rooms_common;

use std::sync::atomic::Ordering;

use myelin::db::Databases;
use myelin::service::rooms::{Direction, Error, Rooms, Sent};
use ruma::{OwnedEventId, OwnedRoomId, RoomVersionId, UserId};
use serde_json::json;

use rooms_common::{public_room, service, user, versions};

/// The `m.room.member` events of `who` in the room's timeline, as
/// `(event ID, membership)`.
async fn member_events(
    rooms: &Rooms,
    viewer: &UserId,
    room: &OwnedRoomId,
    who: &UserId,
) -> Vec<(String, String)> {
    let page = rooms
        .timeline(viewer, room, None, None, Direction::Forward, 1_000)
        .await
        .expect("timeline");
    page.events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e["type"] == "m.room.member" && e["state_key"] == who.as_str())
        .map(|e| {
            (
                e["event_id"].as_str().expect("event_id").to_owned(),
                e["content"]["membership"]
                    .as_str()
                    .expect("membership")
                    .to_owned(),
            )
        })
        .collect()
}

/// A rooms service over fresh embedded databases (kept for their faults).
async fn open_rooms() -> (tempfile::TempDir, Databases, Rooms) {
    let dir = tempfile::tempdir().expect("temp dir");
    let dbs = myelin::db::open_embedded_at(dir.path())
        .await
        .expect("open");
    let (rooms, _) = service(&dbs);
    (dir, dbs, rooms)
}

/// Runs `op` 16 times at once; the distinct event IDs they answered.
async fn sixteen_at_once<F, Fut>(op: F) -> Vec<OwnedEventId>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Sent, Error>> + Send + 'static,
{
    let tasks: Vec<_> = (0..16).map(|_| tokio::spawn(op())).collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.expect("task").expect("the change").event_id);
    }
    ids.dedup();
    ids
}

#[tokio::test]
async fn a_repeated_join_returns_the_existing_event() {
    for version in versions() {
        let (_dir, _dbs, rooms) = open_rooms().await;
        let (alice, bob) = (user("alice"), user("bob"));
        let room = public_room(&rooms, &alice, version.clone()).await;
        let first = rooms.join(&bob, &room).await.expect("join");
        let again = rooms.join(&bob, &room).await.expect("join again");
        assert_eq!(again.event_id, first.event_id, "{version}");
        assert_eq!(
            member_events(&rooms, &alice, &room, &bob).await,
            vec![(first.event_id.to_string(), "join".to_owned())],
            "{version}"
        );
        // After a leave, a join is a change again.
        let left = rooms.leave(&bob, &room).await.expect("leave");
        let back = rooms.join(&bob, &room).await.expect("join after leaving");
        assert_ne!(back.event_id, first.event_id);
        assert_ne!(back.event_id, left.event_id);
    }
}

#[tokio::test]
async fn sixteen_parallel_joins_make_one_join_event() {
    let (_dir, _dbs, rooms) = open_rooms().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let room = public_room(&rooms, &alice, RoomVersionId::V11).await;
    let ids = sixteen_at_once(|| {
        let (rooms, bob, room) = (rooms.clone(), bob.clone(), room.clone());
        async move { rooms.join(&bob, &room).await }
    })
    .await;
    assert_eq!(
        ids.len(),
        1,
        "every join answered with the one event: {ids:?}"
    );
    assert_eq!(
        member_events(&rooms, &alice, &room, &bob).await,
        vec![(ids[0].to_string(), "join".to_owned())]
    );
}

#[tokio::test]
async fn a_join_retried_after_an_unknown_commit_result_makes_one_event() {
    let (_dir, dbs, rooms) = open_rooms().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let room = public_room(&rooms, &alice, RoomVersionId::V11).await;
    let faults = dbs.rooms.db.as_embedded().expect("embedded").faults();
    faults.commit_unknown_result.store(1, Ordering::SeqCst);
    let sent = rooms.join(&bob, &room).await.expect("join");
    assert_eq!(
        faults.commit_unknown_result.load(Ordering::SeqCst),
        0,
        "the fault fired"
    );
    assert_eq!(
        member_events(&rooms, &alice, &room, &bob).await,
        vec![(sent.event_id.to_string(), "join".to_owned())]
    );
}

#[tokio::test]
async fn the_same_state_twice_is_one_event_and_new_content_is_another() {
    let (_dir, _dbs, rooms) = open_rooms().await;
    let alice = user("alice");
    let room = public_room(&rooms, &alice, RoomVersionId::V11).await;
    let topic = |t: &str| json!({"topic": t});
    let first = rooms
        .send_state(&alice, &room, "m.room.topic", "", topic("a"))
        .await
        .expect("topic");
    let same = rooms
        .send_state(&alice, &room, "m.room.topic", "", topic("a"))
        .await
        .expect("same topic");
    assert_eq!(same.event_id, first.event_id);
    let other = rooms
        .send_state(&alice, &room, "m.room.topic", "", topic("b"))
        .await
        .expect("new topic");
    assert_ne!(other.event_id, first.event_id);
    let back = rooms
        .send_state(&alice, &room, "m.room.topic", "", topic("a"))
        .await
        .expect("topic back to a");
    assert_ne!(back.event_id, first.event_id, "a is new again after b");
}

#[tokio::test]
async fn sixteen_parallel_leaves_make_one_leave_event() {
    let (_dir, _dbs, rooms) = open_rooms().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let room = public_room(&rooms, &alice, RoomVersionId::V11).await;
    let joined = rooms.join(&bob, &room).await.expect("join").event_id;
    let ids = sixteen_at_once(|| {
        let (rooms, bob, room) = (rooms.clone(), bob.clone(), room.clone());
        async move { rooms.leave(&bob, &room).await }
    })
    .await;
    assert_eq!(ids.len(), 1, "every leave answered with one event: {ids:?}");
    assert_eq!(
        member_events(&rooms, &alice, &room, &bob).await,
        vec![
            (joined.to_string(), "join".to_owned()),
            (ids[0].to_string(), "leave".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_repeated_kick_or_ban_returns_the_existing_event() {
    for version in versions() {
        let (_dir, _dbs, rooms) = open_rooms().await;
        let (alice, bob) = (user("alice"), user("bob"));
        let room = public_room(&rooms, &alice, version.clone()).await;
        let joined = rooms.join(&bob, &room).await.expect("join").event_id;
        let kick = rooms
            .kick(&alice, &room, &bob, Some("spam"))
            .await
            .expect("kick");
        let again = rooms
            .kick(&alice, &room, &bob, Some("spam"))
            .await
            .expect("the same kick again");
        assert_eq!(again.event_id, kick.event_id, "{version}");
        assert!(again.deduplicated);
        // Another reason is another kick, of a user no longer in the room.
        let other = rooms.kick(&alice, &room, &bob, Some("other")).await;
        assert!(
            matches!(other, Err(Error::Forbidden(_))),
            "{version}: {other:?}"
        );
        let ban = rooms.ban(&alice, &room, &bob, None).await.expect("ban");
        let again = rooms
            .ban(&alice, &room, &bob, None)
            .await
            .expect("ban again");
        assert_eq!(again.event_id, ban.event_id, "{version}");
        assert_eq!(
            member_events(&rooms, &alice, &room, &bob).await,
            vec![
                (joined.to_string(), "join".to_owned()),
                (kick.event_id.to_string(), "leave".to_owned()),
                (ban.event_id.to_string(), "ban".to_owned())
            ],
            "{version}"
        );
    }
}

#[tokio::test]
async fn a_leave_or_kick_retried_after_an_unknown_commit_result_makes_one_event() {
    let (_dir, dbs, rooms) = open_rooms().await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let room = public_room(&rooms, &alice, RoomVersionId::V11).await;
    rooms.join(&bob, &room).await.expect("join");
    rooms.join(&carol, &room).await.expect("join");
    let faults = dbs.rooms.db.as_embedded().expect("embedded").faults();
    faults.commit_unknown_result.store(1, Ordering::SeqCst);
    // The retry used to be refused: a left user may not leave.
    let left = rooms.leave(&bob, &room).await.expect("leave");
    assert_eq!(faults.commit_unknown_result.load(Ordering::SeqCst), 0);
    faults.commit_unknown_result.store(1, Ordering::SeqCst);
    // The retry used to write a second kick.
    let kicked = rooms.kick(&alice, &room, &carol, None).await.expect("kick");
    assert_eq!(faults.commit_unknown_result.load(Ordering::SeqCst), 0);
    let memberships =
        |events: Vec<(String, String)>| events.into_iter().map(|(_, m)| m).collect::<Vec<_>>();
    let bobs = member_events(&rooms, &alice, &room, &bob).await;
    assert_eq!(
        bobs.last().map(|(id, _)| id.clone()),
        Some(left.event_id.to_string())
    );
    assert_eq!(memberships(bobs), vec!["join", "leave"]);
    let carols = member_events(&rooms, &alice, &room, &carol).await;
    assert_eq!(
        carols.last().map(|(id, _)| id.clone()),
        Some(kicked.event_id.to_string())
    );
    assert_eq!(memberships(carols), vec!["join", "leave"]);
}
