//! Golden test of the stored layout: a small scripted room (room version
//! 12, so the room ID is derived and every event ID is reproducible with
//! the fixed key and clock), dumped key by key through the schema decoder
//! and compared with `tests/rooms_golden/layout.txt`. Versionstamps vary
//! per run and are numbered in commit order (`vs:#commit.order`).
//!
//! Regenerate after an intended layout change with
//! `MYELIN_UPDATE_GOLDEN=1 cargo test --test rooms_layout`.

mod rooms_common;

use std::collections::BTreeMap;
use std::sync::Arc;

use myelin::db::rooms::RoomsDb;
use myelin::keys::Catalog;
use myelin::kv::RangeOption;
use myelin::service::ManualClock;
use myelin::service::rooms::{CreateRoom, Preset, Rooms};
use ruma::RoomVersionId;
use serde_json::json;

use rooms_common::{key, user};

const GOLDEN: &str = "tests/rooms_golden/layout.txt";

/// Replaces every `vs:<24 hex digits>` by `vs:#<commit>.<order>`, commits
/// numbered in increasing versionstamp order.
fn normalise(dump: &str) -> String {
    let mut stamps = BTreeMap::new();
    let mut rest = dump;
    while let Some(i) = rest.find("vs:") {
        let hex = &rest[i + 3..(i + 3 + 24).min(rest.len())];
        if hex.len() == 24 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            stamps.insert(hex[..20].to_owned(), 0);
        }
        rest = &rest[i + 3..];
    }
    for (n, v) in stamps.values_mut().enumerate() {
        *v = n + 1;
    }
    let mut out = dump.to_owned();
    for (commit, n) in &stamps {
        for order in 0..16u16 {
            let full = format!("vs:{commit}{}", hex::encode(order.to_be_bytes()));
            out = out.replace(&full, &format!("vs:#{n}.{order}"));
        }
    }
    out
}

#[tokio::test]
async fn scripted_room_layout_matches_the_golden_dump() {
    let dir = tempfile::tempdir().unwrap();
    let dbs = myelin::db::open_embedded_at(dir.path()).await.unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let rooms = Rooms::new(
        RoomsDb::new(&dbs.rooms),
        "example.org".try_into().unwrap(),
        key(),
        Arc::new(clock.clone()),
    );
    let (alice, bob) = (user("alice"), user("bob"));
    let (room, _) = rooms
        .create_room(
            &alice,
            CreateRoom {
                preset: Some(Preset::PrivateChat),
                name: Some("Golden".into()),
                invite: vec![bob.clone()],
                room_version: Some(RoomVersionId::V12),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    clock.advance_ms(1000);
    rooms.join(&bob, &room).await.unwrap();
    clock.advance_ms(1000);
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
    clock.advance_ms(1000);
    rooms
        .send_state(
            &alice,
            &room,
            "m.room.topic",
            "",
            json!({"topic": "golden things"}),
        )
        .await
        .unwrap();
    clock.advance_ms(1000);
    rooms.leave(&bob, &room).await.unwrap();

    let mut catalog = Catalog::new();
    catalog.add_database(&dbs.rooms.dirs);
    let db = dbs.rooms.db.clone();
    let mut dump = String::new();
    for space in dbs.rooms.dirs.spaces() {
        let (begin, end) = space.all();
        let kvs = db
            .run(|tx, _| {
                let range = RangeOption::new(begin.clone(), end.clone());
                async move { tx.get_range_all(range, true).await }
            })
            .await
            .unwrap();
        for kv in kvs {
            let d = catalog.decode(&kv.key, Some(&kv.value));
            let (sub, _) = d
                .subspace
                .expect("every key belongs to a declared subspace");
            let value = d.value.clone().unwrap_or_default();
            dump.push_str(&format!(
                "{}/{sub} {} = {value}\n",
                space.spec().path.join("/"),
                d.fields_line()
            ));
        }
    }
    let dump = normalise(&dump);
    if std::env::var_os("MYELIN_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all("tests/rooms_golden").unwrap();
        std::fs::write(GOLDEN, &dump).unwrap();
    }
    let expected = std::fs::read_to_string(GOLDEN)
        .expect("golden file exists (MYELIN_UPDATE_GOLDEN=1 writes it)");
    if dump != expected {
        for (i, (a, b)) in dump.lines().zip(expected.lines()).enumerate() {
            if a != b {
                panic!("line {}:\n got: {a}\nwant: {b}", i + 1);
            }
        }
        panic!(
            "dump has {} lines, golden {}",
            dump.lines().count(),
            expected.lines().count()
        );
    }
}
