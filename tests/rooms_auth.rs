//! Authorization through the rooms service, on every supported room
//! version: join rules, invites, power levels, bans, state events by
//! unprivileged users. A rejected event is M_FORBIDDEN and stores nothing.

mod rooms_common;

use myelin::service::rooms::{CreateRoom, Direction, Error, Preset, Rooms};
use ruma::{OwnedRoomId, RoomVersionId, UserId};
use serde_json::json;

use rooms_common::{open, user, versions};

async fn create(
    rooms: &Rooms,
    creator: &UserId,
    version: &RoomVersionId,
    preset: Preset,
) -> OwnedRoomId {
    rooms
        .create_room(
            creator,
            CreateRoom {
                preset: Some(preset),
                name: Some("test".into()),
                room_version: Some(version.clone()),
                ..Default::default()
            },
        )
        .await
        .expect("the room is created")
        .0
}

async fn timeline_len(rooms: &Rooms, who: &UserId, room: &OwnedRoomId) -> usize {
    rooms
        .timeline(who, room, None, None, Direction::Forward, 1000)
        .await
        .expect("the timeline reads")
        .events
        .len()
}

fn forbidden<T: std::fmt::Debug>(r: Result<T, Error>, what: &str) {
    match r {
        Err(Error::Forbidden(_)) => {}
        other => panic!("{what}: expected Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn invite_only_rooms_need_an_invite_and_only_members_invite() {
    let dir = tempfile::tempdir().unwrap();
    let (rooms, _) = open(dir.path()).await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    for version in versions() {
        let room = create(&rooms, &alice, &version, Preset::PrivateChat).await;
        let before = timeline_len(&rooms, &alice, &room).await;
        forbidden(rooms.join(&bob, &room).await, "join without invite");
        forbidden(
            rooms.invite(&carol, &room, &bob, None).await,
            "invite by non-member",
        );
        assert_eq!(
            timeline_len(&rooms, &alice, &room).await,
            before,
            "{version}: nothing stored"
        );
        rooms.invite(&alice, &room, &bob, None).await.unwrap();
        rooms.join(&bob, &room).await.unwrap();
        assert_eq!(rooms.joined_rooms(&bob).await.unwrap(), vec![room.clone()]);
        rooms.leave(&bob, &room).await.unwrap();
        assert!(rooms.joined_rooms(&bob).await.unwrap().is_empty());
        forbidden(
            rooms.join(&bob, &room).await,
            "rejoin after leaving an invite-only room",
        );
    }
}

#[tokio::test]
async fn public_rooms_are_open_but_sending_needs_membership() {
    let dir = tempfile::tempdir().unwrap();
    let (rooms, _) = open(dir.path()).await;
    let (alice, bob) = (user("alice"), user("bob"));
    for version in versions() {
        let room = create(&rooms, &alice, &version, Preset::PublicChat).await;
        let msg = json!({"msgtype": "m.text", "body": "hi"});
        forbidden(
            rooms
                .send_message(&bob, "DEV", &room, "m.room.message", "t1", msg.clone())
                .await,
            "message by non-member",
        );
        rooms.join(&bob, &room).await.unwrap();
        rooms
            .send_message(&bob, "DEV", &room, "m.room.message", "t1", msg)
            .await
            .unwrap();
        // Public-chat invites need power 50.
        forbidden(
            rooms.invite(&bob, &room, &user("carol"), None).await,
            "invite below the invite level",
        );
    }
}

#[tokio::test]
async fn state_events_need_the_power_level() {
    let dir = tempfile::tempdir().unwrap();
    let (rooms, _) = open(dir.path()).await;
    let (alice, bob) = (user("alice"), user("bob"));
    for version in versions() {
        let room = create(&rooms, &alice, &version, Preset::PublicChat).await;
        rooms.join(&bob, &room).await.unwrap();
        forbidden(
            rooms
                .send_state(&bob, &room, "m.room.name", "", json!({"name": "bob's"}))
                .await,
            "name by power 0",
        );
        forbidden(
            rooms
                .send_state(
                    &bob,
                    &room,
                    "m.room.power_levels",
                    "",
                    json!({"users": {bob.as_str(): 100}}),
                )
                .await,
            "power levels by power 0",
        );
        assert_eq!(
            rooms
                .state_event(&alice, &room, "m.room.name", "")
                .await
                .unwrap(),
            json!({"name": "test"})
        );
        // Alice grants bob 50: he may now rename but not change power levels.
        let mut pl = rooms
            .state_event(&alice, &room, "m.room.power_levels", "")
            .await
            .unwrap();
        pl["users"][bob.as_str()] = 50.into();
        rooms
            .send_state(&alice, &room, "m.room.power_levels", "", pl.clone())
            .await
            .unwrap();
        rooms
            .send_state(&bob, &room, "m.room.name", "", json!({"name": "bob's"}))
            .await
            .unwrap();
        pl["users"][bob.as_str()] = 100.into();
        forbidden(
            rooms
                .send_state(&bob, &room, "m.room.power_levels", "", pl)
                .await,
            "raising oneself above one's level",
        );
        // State keys naming another user are theirs alone.
        forbidden(
            rooms
                .send_state(&bob, &room, "org.example.x", alice.as_str(), json!({}))
                .await,
            "state key of another user",
        );
        assert_eq!(
            rooms
                .state_event(&bob, &room, "m.room.name", "")
                .await
                .unwrap(),
            json!({"name": "bob's"})
        );
    }
}

#[tokio::test]
async fn bans_kicks_and_unbans() {
    let dir = tempfile::tempdir().unwrap();
    let (rooms, _) = open(dir.path()).await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    for version in versions() {
        let room = create(&rooms, &alice, &version, Preset::PublicChat).await;
        rooms.join(&bob, &room).await.unwrap();
        rooms.join(&carol, &room).await.unwrap();
        forbidden(
            rooms.kick(&bob, &room, &carol, None).await,
            "kick by power 0",
        );
        forbidden(rooms.ban(&bob, &room, &carol, None).await, "ban by power 0");
        forbidden(
            rooms.ban(&bob, &room, &alice, None).await,
            "ban of a higher user",
        );
        rooms
            .kick(&alice, &room, &carol, Some("bye"))
            .await
            .unwrap();
        rooms.join(&carol, &room).await.unwrap();
        rooms.ban(&alice, &room, &bob, None).await.unwrap();
        forbidden(rooms.join(&bob, &room).await, "join while banned");
        forbidden(
            rooms
                .send_message(
                    &bob,
                    "D",
                    &room,
                    "m.room.message",
                    "x",
                    json!({"body": "x"}),
                )
                .await,
            "message while banned",
        );
        forbidden(
            rooms.unban(&carol, &room, &bob, None).await,
            "unban by power 0",
        );
        rooms.unban(&alice, &room, &bob, None).await.unwrap();
        assert!(matches!(
            rooms.unban(&alice, &room, &bob, None).await,
            Err(Error::Forbidden(_))
        ));
        rooms.join(&bob, &room).await.unwrap();
    }
}

#[tokio::test]
async fn trusted_private_chat_invitees_share_the_creators_power() {
    let dir = tempfile::tempdir().unwrap();
    let (rooms, _) = open(dir.path()).await;
    let (alice, bob) = (user("alice"), user("bob"));
    for version in versions() {
        let (room, sent) = rooms
            .create_room(
                &alice,
                CreateRoom {
                    preset: Some(Preset::TrustedPrivateChat),
                    invite: vec![bob.clone()],
                    is_direct: true,
                    room_version: Some(version.clone()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        // create, join, power levels, join rules, history visibility,
        // guest access, invite.
        assert_eq!(sent.len(), 7, "{version}");
        rooms.join(&bob, &room).await.unwrap();
        rooms
            .send_state(&bob, &room, "m.room.topic", "", json!({"topic": "ours"}))
            .await
            .unwrap();
        rooms
            .send_state(
                &bob,
                &room,
                "m.room.history_visibility",
                "",
                json!({"history_visibility": "joined"}),
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn unsupported_versions_and_bad_content_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (rooms, _) = open(dir.path()).await;
    let alice = user("alice");
    let err = rooms
        .create_room(
            &alice,
            CreateRoom {
                room_version: Some(RoomVersionId::V9),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnsupportedRoomVersion(_)), "{err:?}");
    let room = create(&rooms, &alice, &RoomVersionId::V11, Preset::PrivateChat).await;
    let err = rooms
        .send_message(&alice, "D", &room, "m.room.message", "f", json!({"x": 1.5}))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadJson(_)), "{err:?}");
    let err = rooms
        .send_message(
            &alice,
            "D",
            &room,
            "m.room.message",
            "n",
            json!("not an object"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadJson(_)), "{err:?}");
    let err = rooms
        .send_message(
            &alice,
            "D",
            ruma::room_id!("!nope:example.org"),
            "m.room.message",
            "n",
            json!({}),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
}

/// The auth rules read auth events redacted: a redacted room version 10
/// `m.room.power_levels` has lost its `invite` level (version 10's
/// redaction keeps only ban, events, events_default, kick, redact,
/// state_default, users and users_default), so the default 0 applies and a
/// user at level 0 may invite; versions 11 and 12 keep `invite`, so the
/// same invite stays refused. Sending the same power levels again restores
/// the level (it is not taken for unchanged state).
#[tokio::test]
async fn authorization_reads_redacted_power_levels() {
    let dir = tempfile::tempdir().unwrap();
    let (rooms, _) = open(dir.path()).await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    for version in versions() {
        let room = create(&rooms, &alice, &version, Preset::PublicChat).await;
        rooms.join(&bob, &room).await.unwrap();
        let mut levels = rooms
            .state_event(&alice, &room, "m.room.power_levels", "")
            .await
            .unwrap();
        levels["invite"] = json!(50);
        let pl = rooms
            .send_state(&alice, &room, "m.room.power_levels", "", levels.clone())
            .await
            .unwrap()
            .event_id;
        forbidden(
            rooms.invite(&bob, &room, &carol, None).await,
            "invite below the invite level",
        );
        rooms
            .redact(&alice, "DEV", &room, &pl, "redact-pl", None)
            .await
            .unwrap();
        let after = rooms.invite(&bob, &room, &carol, None).await;
        if version == RoomVersionId::V10 {
            after.expect("v10: the redacted power levels have no invite level");
            rooms.leave(&carol, &room).await.unwrap();
        } else {
            forbidden(after, "v11+: redaction keeps the invite level");
        }
        let restored = rooms
            .send_state(&alice, &room, "m.room.power_levels", "", levels)
            .await
            .unwrap();
        assert!(
            !restored.deduplicated,
            "{version}: a redacted event is not unchanged state"
        );
        assert_ne!(restored.event_id, pl);
        forbidden(
            rooms.invite(&bob, &room, &carol, None).await,
            "invite after the level is restored",
        );
    }
}

/// Redacting the create event (its sender may) leaves the room usable: the
/// redacted create event keeps what the auth rules read (`creator` in room
/// version 10, all content from 11).
#[tokio::test]
async fn a_redacted_create_event_still_authorizes() {
    let dir = tempfile::tempdir().unwrap();
    let (rooms, _) = open(dir.path()).await;
    let (alice, bob) = (user("alice"), user("bob"));
    for version in versions() {
        let room = create(&rooms, &alice, &version, Preset::PublicChat).await;
        let create_event = rooms
            .state_event_full(&alice, &room, "m.room.create", "")
            .await
            .unwrap()["event_id"]
            .as_str()
            .expect("the create event's ID")
            .to_owned();
        let create_event = ruma::OwnedEventId::try_from(create_event).unwrap();
        rooms
            .redact(&alice, "DEV", &room, &create_event, "redact-create", None)
            .await
            .unwrap();
        rooms
            .join(&bob, &room)
            .await
            .expect("a join after the redaction");
        rooms
            .send_state(
                &alice,
                &room,
                "m.room.topic",
                "",
                json!({"topic": "still here"}),
            )
            .await
            .expect("a state event after the redaction");
    }
}
