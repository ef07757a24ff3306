//! Benchmark of incremental `/sync` cost against the number of rooms a user
//! is in (issue 5: "O(changes since the token), not O(rooms joined)").
//!
//! Group `sync/incremental_one_new_event`: a user joined to `N` rooms
//! (`N` = 1 and 1,000, each room created by the user in the embedded
//! store); each iteration sends one message into one of the user's rooms
//! (not measured), then measures one incremental sync (the service call
//! `SyncService::sync`, no HTTP) from the token taken before the send. The
//! sync must return exactly that one room.
//!
//! Group `sync/push_rules`: one evaluation of the server-default push
//! rules (ruma's `Ruleset::get_actions`, what `unread_notifications` does
//! once per unread event) on a plain message in a three-member room: the
//! cost a first (cold) initial sync pays per unread event.
//!
//! Run: `cargo bench --bench sync`. Results: `docs/performance.md` ("Criterion benches").

// A benchmark times what it measures (`iter_custom`): it owns its clock.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use myelin::api::AppState;
use myelin::app::{App, AppConfig};
use myelin::service::rooms::CreateRoom;
use myelin::service::{ManualClock, ServerConfig};
use myelin::sync::{Services, SyncRequest};
use ruma::{OwnedRoomId, OwnedUserId};
use tokio::runtime::Runtime;

struct Setup {
    state: AppState,
    services: Services,
    user: OwnedUserId,
    rooms: Vec<OwnedRoomId>,
    _tmp: tempfile::TempDir,
}

async fn setup(rooms: usize) -> Setup {
    let tmp = tempfile::tempdir().expect("temp dir");
    let databases = myelin::db::open_embedded_at(tmp.path())
        .await
        .expect("open store");
    let config = AppConfig {
        server_name: "bench.local".try_into().expect("server name"),
        server: ServerConfig::default(),
        sync: Default::default(),
        media: Default::default(),
    };
    let state = App::open(
        &databases,
        config,
        Arc::new(ManualClock::new(1_700_000_000_000)),
    )
    .await
    .expect("state");
    let user: OwnedUserId = "@bench:bench.local".try_into().expect("user id");
    let mut ids = Vec::with_capacity(rooms);
    for _ in 0..rooms {
        let (room, _) = state
            .rooms
            .create_room(&user, CreateRoom::default())
            .await
            .expect("create room");
        ids.push(room);
    }
    let services = state.sync_services();
    Setup {
        state,
        services,
        user,
        rooms: ids,
        _tmp: tmp,
    }
}

fn incremental(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("sync/incremental_one_new_event");
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(10));
    for rooms in [1usize, 1_000] {
        let s = rt.block_on(setup(rooms));
        // Warm the per-user peer cache the way a client's first sync does.
        let first = rt
            .block_on(
                s.state
                    .sync
                    .sync(&s.services, &s.user, &SyncRequest::default()),
            )
            .expect("initial sync");
        let mut since = first.next_batch.to_string();
        let mut n = 0u64;
        group.bench_function(format!("{rooms}_rooms"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let room = &s.rooms[(n as usize * 7919) % s.rooms.len()];
                    rt.block_on(s.state.rooms.send_message(
                        &s.user,
                        "DEV",
                        room,
                        "m.room.message",
                        &format!("t{n}"),
                        serde_json::json!({"msgtype": "m.text", "body": "hi"}),
                    ))
                    .expect("send");
                    let req = SyncRequest {
                        since: Some(since.clone()),
                        device_id: Some("DEV".into()),
                        set_presence: None,
                        ..SyncRequest::default()
                    };
                    let start = Instant::now();
                    let got = rt
                        .block_on(s.state.sync.sync(&s.services, &s.user, &req))
                        .expect("sync");
                    total += start.elapsed();
                    assert_eq!(got.rooms.join.len(), 1, "exactly the room with the event");
                    since = got.next_batch.to_string();
                }
                total
            })
        });
    }
    group.finish();
}

fn push_rules(c: &mut Criterion) {
    use ruma::push::{PushConditionRoomCtx, Ruleset};
    use ruma::serde::Raw;
    let rt = Runtime::new().expect("runtime");
    let user: OwnedUserId = "@alice:bench.local".try_into().expect("user id");
    let rules = Ruleset::server_default(&user);
    let room: OwnedRoomId = "!room:bench.local".try_into().expect("room id");
    let ctx = PushConditionRoomCtx::new(room.clone(), 3u32.into(), user, "Alice".into());
    let event = serde_json::json!({
        "type": "m.room.message",
        "room_id": room,
        "sender": "@bob:bench.local",
        "event_id": "$abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "origin_server_ts": 1_700_000_000_000u64,
        "content": {"msgtype": "m.text", "body": "hello there, how are things?"},
        "unsigned": {"age": 1234},
    });
    let raw: Raw<serde_json::Value> =
        Raw::from_json(serde_json::value::to_raw_value(&event).expect("json"));
    c.bench_function("sync/push_rules/server_default_message", |b| {
        b.iter(|| {
            let actions = rt.block_on(rules.get_actions(&raw, &ctx));
            assert!(actions.iter().any(|a| a.should_notify()));
        })
    });
}

/// Runs every group (what `criterion_main!` expands to, written out so the
/// crate has no undocumented public function).
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    incremental(&mut criterion);
    push_rules(&mut criterion);
    criterion.final_summary();
}
