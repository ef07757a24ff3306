//! 32 concurrent senders into one room: every send succeeds, retries stay
//! bounded (message sends share no read-conflict key), the DAG keeps
//! several forward extremities while sends overlap and the next event
//! merges them. The retries measured are printed and recorded in
//! `docs/rooms.md`.

mod rooms_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use myelin::db::rooms::{Append, Direction, NewEvent};
use myelin::events::Signer;
use myelin::service::rooms::{CreateRoom, Preset};
use ruma::{MilliSecondsSinceUnixEpoch, RoomVersionId, UInt};
use serde_json::json;

use rooms_common::{key, open, user};

const SENDERS: usize = 32;
const PER_SENDER: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_senders_succeed_with_bounded_retries() {
    let dir = tempfile::tempdir().unwrap();
    let (rooms, _) = open(dir.path()).await;
    let alice = user("alice");
    let (room, _) = rooms
        .create_room(
            &alice,
            CreateRoom {
                preset: Some(Preset::PublicChat),
                room_version: Some(RoomVersionId::V11),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let senders: Vec<_> = (0..SENDERS).map(|i| user(&format!("u{i}"))).collect();
    for s in &senders {
        rooms.join(s, &room).await.unwrap();
    }
    let signer = Signer {
        server_name: "example.org".try_into().unwrap(),
        key: Arc::new(key()),
    };
    let attempts = Arc::new(AtomicU32::new(0));
    let start = Arc::new(tokio::sync::Barrier::new(SENDERS));
    let mut tasks = Vec::new();
    for (i, sender) in senders.iter().cloned().enumerate() {
        let db = rooms.db().clone();
        let (signer, attempts, start, room) = (
            signer.clone(),
            attempts.clone(),
            start.clone(),
            room.clone(),
        );
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut ids = Vec::new();
            for n in 0..PER_SENDER {
                let event = NewEvent {
                    event_type: "m.room.message".into(),
                    state_key: None,
                    content: json!({"msgtype": "m.text", "body": format!("{i}/{n}")}),
                };
                let now = MilliSecondsSinceUnixEpoch(UInt::new(1_700_000_000_000).unwrap());
                let sent = db
                    .send(
                        &signer,
                        &Append {
                            room_id: &room,
                            sender: &sender,
                            event: &event,
                            txn: None,
                            now,
                        },
                        Some(&attempts),
                    )
                    .await
                    .expect("every concurrent send succeeds");
                ids.push(sent.event_id);
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let events = SENDERS * PER_SENDER;
    let attempts = attempts.load(Ordering::Relaxed) as usize;
    let retries = attempts - events;
    println!(
        "{SENDERS} senders x {PER_SENDER} events: {attempts} attempts, {retries} retries, {:.3} retries/event",
        retries as f64 / events as f64
    );
    assert_eq!(all.len(), events);
    // Message sends never read what other message sends write, so no
    // attempt should conflict; allow a little slack for the backend.
    assert!(
        retries as f64 / events as f64 <= 0.1,
        "{retries} retries for {events} events"
    );

    // Every event is in the timeline once, in stream order.
    let timeline = rooms
        .db()
        .timeline(&room, None, None, Direction::Forward, 10_000)
        .await
        .unwrap();
    for id in &all {
        assert_eq!(timeline.iter().filter(|e| &e.event_id == id).count(), 1);
    }
    assert!(timeline.windows(2).all(|w| w[0].position < w[1].position));

    // Every extremity left is a real event, and repeated sends merge them.
    let mut extremities = rooms.db().forward_extremities(&room).await.unwrap();
    println!("forward extremities after the burst: {}", extremities.len());
    // Each send merges up to 20 extremities (a random sample beyond the
    // deepest) and adds one, so the width stays near the number of sends in
    // flight.
    assert!(
        extremities.len() <= 2 * SENDERS,
        "{} extremities",
        extremities.len()
    );
    for round in 0..(SENDERS * PER_SENDER / 19 + 1) {
        if extremities.len() == 1 {
            break;
        }
        let sent = rooms
            .send_message(
                &alice,
                "D",
                &room,
                "m.room.message",
                &format!("merge{round}"),
                json!({"body": "merge"}),
            )
            .await
            .unwrap();
        let event = rooms.db().event(&sent.event_id).await.unwrap().unwrap();
        assert_eq!(event.pdu.prev_events().len(), extremities.len().min(20));
        extremities = rooms.db().forward_extremities(&room).await.unwrap();
    }
    assert_eq!(extremities.len(), 1);
}
