//! Timelines, visibility, transaction IDs and redaction through the rooms
//! service on the embedded backend.

mod rooms_common;

use myelin::service::rooms::{CreateRoom, Direction, Error, Preset, Rooms, StreamPosition};
use ruma::{OwnedEventId, OwnedRoomId, RoomVersionId, UserId};
use serde_json::json;

use rooms_common::{open, public_room, user, versions};

async fn say(
    rooms: &Rooms,
    who: &UserId,
    room: &OwnedRoomId,
    body: &str,
) -> (OwnedEventId, StreamPosition) {
    let sent = rooms
        .send_message(
            who,
            "DEV",
            room,
            "m.room.message",
            body,
            json!({"msgtype": "m.text", "body": body}),
        )
        .await
        .expect("the message is sent");
    (sent.event_id, sent.position)
}

fn bodies(events: &[(StreamPosition, serde_json::Value)]) -> Vec<String> {
    events
        .iter()
        .filter(|(_, e)| e["type"] == "m.room.message")
        .map(|(_, e)| {
            e["content"]["body"]
                .as_str()
                .unwrap_or("<redacted>")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn timeline_pages_in_both_directions_with_exclusive_positions() {
    let dir = tempfile::tempdir().unwrap();
    let (rooms, _) = open(dir.path()).await;
    let alice = user("alice");
    let room = public_room(&rooms, &alice, RoomVersionId::V11).await;
    let mut sent = Vec::new();
    for i in 0..10 {
        sent.push(say(&rooms, &alice, &room, &format!("m{i}")).await);
    }
    assert!(
        sent.windows(2).all(|w| w[0].1 < w[1].1),
        "positions increase"
    );

    // Forward from the first message, pages of 4.
    let mut after = Some(sent[0].1);
    let mut seen = Vec::new();
    loop {
        let page = rooms
            .timeline(&alice, &room, after, None, Direction::Forward, 4)
            .await
            .unwrap();
        seen.extend(bodies(&page.events));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (1..10).map(|i| format!("m{i}")).collect::<Vec<_>>());

    // Backward from the last message (exclusive), pages of 3, down to m2.
    let mut before = Some(sent[9].1);
    let mut seen = Vec::new();
    loop {
        let page = rooms
            .timeline(
                &alice,
                &room,
                Some(sent[1].1),
                before,
                Direction::Backward,
                3,
            )
            .await
            .unwrap();
        seen.extend(bodies(&page.events));
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen,
        (2..9).rev().map(|i| format!("m{i}")).collect::<Vec<_>>()
    );

    // Positions reported with events are the ones the sends returned, and
    // round-trip through their token form.
    let page = rooms
        .timeline(
            &alice,
            &room,
            Some(sent[4].1),
            Some(sent[6].1),
            Direction::Forward,
            10,
        )
        .await
        .unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].0, sent[5].1);
    assert_eq!(page.events[0].1["event_id"], sent[5].0.as_str());
    let token = sent[5].1.to_string();
    assert_eq!(token.len(), 24);
    assert_eq!(token.parse::<StreamPosition>().unwrap(), sent[5].1);
}

#[tokio::test]
async fn a_user_who_left_cannot_read_later_events() {
    let dir = tempfile::tempdir().unwrap();
    let (rooms, _) = open(dir.path()).await;
    let (alice, bob) = (user("alice"), user("bob"));
    for version in versions() {
        let room = public_room(&rooms, &alice, version.clone()).await;
        let (early, _) = say(&rooms, &alice, &room, "before bob").await;
        rooms.join(&bob, &room).await.unwrap();
        let (during, _) = say(&rooms, &alice, &room, "with bob").await;
        let leave = rooms.leave(&bob, &room).await.unwrap();
        let (after, _) = say(&rooms, &alice, &room, "after bob").await;
        rooms
            .send_state(
                &alice,
                &room,
                "m.room.topic",
                "",
                json!({"topic": "secret"}),
            )
            .await
            .unwrap();

        // shared: history before his join is visible; after his leave not.
        rooms.event(&bob, &room, &early).await.unwrap();
        rooms.event(&bob, &room, &during).await.unwrap();
        rooms.event(&bob, &room, &leave.event_id).await.unwrap();
        assert!(
            matches!(
                rooms.event(&bob, &room, &after).await,
                Err(Error::NotFound(_))
            ),
            "{version}"
        );
        let page = rooms
            .timeline(&bob, &room, None, None, Direction::Forward, 100)
            .await
            .unwrap();
        assert_eq!(
            bodies(&page.events),
            ["before bob", "with bob"],
            "{version}"
        );
        // His view of the state is frozen at his leave.
        assert!(matches!(
            rooms.state_event(&bob, &room, "m.room.topic", "").await,
            Err(Error::NotFound(_))
        ));
        let state = rooms.state(&bob, &room).await.unwrap();
        assert!(state.iter().all(|e| e["type"] != "m.room.topic"));
        assert_eq!(
            rooms
                .state_event(&alice, &room, "m.room.topic", "")
                .await
                .unwrap(),
            json!({"topic": "secret"})
        );
    }
}

#[tokio::test]
async fn non_members_cannot_read_a_private_room() {
    let dir = tempfile::tempdir().unwrap();
    let (rooms, _) = open(dir.path()).await;
    let (alice, eve) = (user("alice"), user("eve"));
    for version in versions() {
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
        let (msg, _) = say(&rooms, &alice, &room, "private").await;
        assert!(matches!(
            rooms.event(&eve, &room, &msg).await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            rooms
                .timeline(&eve, &room, None, None, Direction::Backward, 10)
                .await,
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(
            rooms.state(&eve, &room).await,
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(
            rooms.members(&eve, &room).await,
            Err(Error::Forbidden(_))
        ));
        // joined visibility: an invitee sees nothing from before the invite.
        rooms
            .send_state(
                &alice,
                &room,
                "m.room.history_visibility",
                "",
                json!({"history_visibility": "joined"}),
            )
            .await
            .unwrap();
        let (hidden, _) = say(&rooms, &alice, &room, "before eve").await;
        rooms.invite(&alice, &room, &eve, None).await.unwrap();
        rooms.join(&eve, &room).await.unwrap();
        let (shown, _) = say(&rooms, &alice, &room, "to eve").await;
        assert!(
            rooms.event(&eve, &room, &hidden).await.is_err(),
            "{version}"
        );
        rooms.event(&eve, &room, &shown).await.unwrap();
        // world_readable: anyone may read.
        rooms
            .send_state(
                &alice,
                &room,
                "m.room.history_visibility",
                "",
                json!({"history_visibility": "world_readable"}),
            )
            .await
            .unwrap();
        let (open_msg, _) = say(&rooms, &alice, &room, "for all").await;
        rooms
            .event(&user("stranger"), &room, &open_msg)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn transaction_ids_are_idempotent_across_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let alice = user("alice");
    let (room, first) = {
        let (rooms, _) = open(dir.path()).await;
        let room = public_room(&rooms, &alice, RoomVersionId::V11).await;
        let first = rooms
            .send_message(
                &alice,
                "PHONE",
                &room,
                "m.room.message",
                "txn1",
                json!({"body": "once"}),
            )
            .await
            .unwrap();
        assert!(!first.deduplicated);
        let again = rooms
            .send_message(
                &alice,
                "PHONE",
                &room,
                "m.room.message",
                "txn1",
                json!({"body": "once"}),
            )
            .await
            .unwrap();
        assert_eq!(
            (again.event_id.clone(), again.position, again.deduplicated),
            (first.event_id.clone(), first.position, true)
        );
        (room, first)
    };
    // The embedded store is closed when its last handle drops.
    tokio::task::yield_now().await;
    let (rooms, _) = open(dir.path()).await;
    let again = rooms
        .send_message(
            &alice,
            "PHONE",
            &room,
            "m.room.message",
            "txn1",
            json!({"body": "once"}),
        )
        .await
        .unwrap();
    assert_eq!(again.event_id, first.event_id);
    assert_eq!(again.position, first.position);
    assert!(again.deduplicated);
    // Another device with the same transaction ID sends a new event.
    let other = rooms
        .send_message(
            &alice,
            "LAPTOP",
            &room,
            "m.room.message",
            "txn1",
            json!({"body": "once"}),
        )
        .await
        .unwrap();
    assert_ne!(other.event_id, first.event_id);
    let page = rooms
        .timeline(&alice, &room, None, None, Direction::Forward, 100)
        .await
        .unwrap();
    assert_eq!(bodies(&page.events), ["once", "once"]);
}

#[tokio::test]
async fn redaction_follows_the_room_version() {
    let dir = tempfile::tempdir().unwrap();
    let (rooms, _) = open(dir.path()).await;
    let (alice, bob) = (user("alice"), user("bob"));
    for version in versions() {
        let room = public_room(&rooms, &alice, version.clone()).await;
        rooms.join(&bob, &room).await.unwrap();
        let (msg, _) = say(&rooms, &bob, &room, "oops").await;
        let (alices, _) = say(&rooms, &alice, &room, "mine").await;
        // Bob may redact his own event but not alice's (redact level 50).
        assert!(matches!(
            rooms.redact(&bob, "DEV", &room, &alices, "r0", None).await,
            Err(Error::Forbidden(_))
        ));
        let redaction = rooms
            .redact(&bob, "DEV", &room, &msg, "r1", Some("typo"))
            .await
            .unwrap();
        let event = rooms.event(&alice, &room, &msg).await.unwrap();
        assert_eq!(event["content"], json!({}), "{version}");
        // `redacted_because` is the redaction in the client format, as
        // clients parse it: no federation fields.
        let because = &event["unsigned"]["redacted_because"];
        assert_eq!(because["event_id"], redaction.event_id.as_str());
        assert_eq!(because["type"], "m.room.redaction");
        assert_eq!(because["sender"], bob.as_str());
        assert_eq!(because["redacts"], msg.as_str(), "{version}");
        for federation_only in [
            "auth_events",
            "prev_events",
            "hashes",
            "signatures",
            "depth",
        ] {
            assert!(
                because.get(federation_only).is_none(),
                "{version}: redacted_because has {federation_only}: {because}"
            );
        }
        let r = rooms
            .event(&alice, &room, &redaction.event_id)
            .await
            .unwrap();
        // Every version serves `redacts` top-level: from v11 it lives in
        // the content, and servers copy it out for older clients (spec:
        // room version 11, "Client considerations").
        assert_eq!(r["redacts"], msg.as_str(), "{version}: top-level redacts");
        if version != RoomVersionId::V10 {
            assert_eq!(
                r["content"]["redacts"],
                msg.as_str(),
                "{version}: redacts in content"
            );
        }
        // Redacting power levels keeps what the version keeps.
        let pl = rooms
            .db()
            .state_event(&room, "m.room.power_levels", "")
            .await
            .unwrap()
            .unwrap();
        rooms
            .redact(&alice, "DEV", &room, pl.pdu.event_id(), "r2", None)
            .await
            .unwrap();
        let content = rooms
            .state_event(&alice, &room, "m.room.power_levels", "")
            .await
            .unwrap();
        assert_eq!(
            content.get("invite").is_some(),
            version != RoomVersionId::V10,
            "{version}: {content}"
        );
        assert!(content.get("users").is_some());
    }
}
