//! The tournament API over a real server (issue 18): creation and its
//! errors, the listing by category with a cursor, the window rules of a
//! submission (before the start, without a join, past `max_num_score`,
//! past `duration`, after the end) under the injected clock, record reads
//! under `/tournaments`, a join in `/sync`, and the join cap under
//! concurrent joins.

mod common_api;

use myelin::service::Clock;
use serde_json::{Value, json};

use common_api::{Client, TestServer, assert_error, sync_now};

const P: &str = "/_myelin/game/v1";

#[track_caller]
fn ok(got: (u16, Value)) -> Value {
    assert_eq!(got.0, 200, "{}", got.1);
    got.1
}

async fn server_with_admin() -> (TestServer, Client) {
    let server = TestServer::start().await;
    let admin = server.register("admin", "pw-admin-1").await;
    server
        .state
        .accounts
        .set_admin("admin", true)
        .await
        .expect("make admin");
    (server, admin)
}

#[tokio::test]
async fn a_submission_follows_the_window_the_join_and_max_num_score() {
    let (server, admin) = server_with_admin().await;
    let alice = server.register("alice", "pw-alice-1").await;
    let now_s = server.clock.now_ms() / 1000;
    let t = ok(admin
        .post(
            &format!("{P}/tournaments"),
            json!({
                "id": "cup", "category": 3, "title": "Cup", "description": "weekly",
                "start_time": now_s + 60, "end_time": now_s + 3600, "duration": 600,
                "max_num_score": 2, "join_required": true, "operator": "incr",
            }),
        )
        .await);
    assert_eq!(t["category"], 3);
    assert_eq!(t["join_required"], true);
    // The read is the create answer plus `size`: no joins yet.
    let mut read = ok(alice.get(&format!("{P}/tournaments/cup")).await);
    assert_eq!(
        read.as_object_mut().and_then(|r| r.remove("size")),
        Some(json!(0))
    );
    assert_eq!(read, t);
    let records = format!("{P}/tournaments/cup/records");
    let not_active = |got: &(u16, Value), reason: &str| {
        assert_error(got, 409, "ORG.MYELIN.TOURNAMENT_NOT_ACTIVE");
        assert_eq!(got.1["reason"], reason);
    };
    not_active(
        &alice.post(&records, json!({"score": 1})).await,
        "not_started",
    );
    let (since, _) = sync_now(&alice, None).await;
    // A join before the start is for the first window.
    let joined = ok(alice
        .post(&format!("{P}/tournaments/cup/join"), json!({}))
        .await);
    assert_eq!(joined["joined"], true);
    // Her sync carries the join.
    let (_, body) = sync_now(&alice, Some(&since)).await;
    assert_eq!(
        body["org.myelin.game"]["tournaments"],
        json!([{"id": "cup", "expiry": 0, "joined": true}])
    );
    server.clock.advance_ms(60_000);
    let bob = server.register("bob", "pw-bob-1").await;
    assert_error(
        &bob.post(&records, json!({"score": 1})).await,
        403,
        "ORG.MYELIN.TOURNAMENT_NOT_JOINED",
    );
    ok(alice.post(&records, json!({"score": 4})).await);
    let second = ok(alice.post(&records, json!({"score": 5})).await);
    assert_eq!(
        (second["score"].as_i64(), second["num_score"].as_u64()),
        (Some(9), Some(2))
    );
    let third = alice.post(&records, json!({"score": 6})).await;
    assert_error(&third, 409, "ORG.MYELIN.MAX_NUM_SCORE");
    assert_eq!(third.1["max_num_score"], 2);
    // The refused third submission wrote nothing.
    let alice_id = alice.whoami().await.0;
    let mine = ok(alice.get(&format!("{records}/{alice_id}")).await);
    assert_eq!(
        (mine["score"].as_i64(), mine["num_score"].as_u64()),
        (Some(9), Some(2))
    );
    let page = ok(alice.get(&records).await);
    assert_eq!(page["records"].as_array().map(Vec::len), Some(1));
    let around = ok(alice.get(&format!("{records}/around/{alice_id}")).await);
    assert_eq!(around["records"][0]["rank"], 1);
    // Past the duration the window takes nothing; past the end neither,
    // and nobody joins.
    ok(bob
        .post(&format!("{P}/tournaments/cup/join"), json!({}))
        .await);
    server.clock.advance_ms(600_000);
    not_active(
        &bob.post(&records, json!({"score": 1})).await,
        "window_closed",
    );
    server.clock.advance_ms(3_600_000);
    not_active(&bob.post(&records, json!({"score": 1})).await, "ended");
    let late = server.register("carol", "pw-carol-1").await;
    not_active(
        &late
            .post(&format!("{P}/tournaments/cup/join"), json!({}))
            .await,
        "ended",
    );
}

#[tokio::test]
async fn creation_errors_and_the_listing_by_category() {
    let (server, admin) = server_with_admin().await;
    let alice = server.register("alice", "pw-alice-1").await;
    let create = |body: Value| {
        let admin = admin.clone();
        async move { admin.post(&format!("{P}/tournaments"), body).await }
    };
    assert_error(
        &alice
            .post(&format!("{P}/tournaments"), json!({"id": "t"}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    let now_s = server.clock.now_ms() / 1000;
    for (body, status, errcode) in [
        (json!({"id": "t", "category": 128}), 400, "M_INVALID_PARAM"),
        (json!({"id": "t", "category": -1}), 400, "M_BAD_JSON"),
        (
            json!({"id": "t", "start_time": now_s, "end_time": now_s}),
            400,
            "M_INVALID_PARAM",
        ),
        (
            json!({"id": "t", "title": "x".repeat(300)}),
            413,
            "M_TOO_LARGE",
        ),
        (json!({"id": "t", "max_size": -3}), 400, "M_BAD_JSON"),
    ] {
        assert_error(&create(body.clone()).await, status, errcode);
    }
    assert_error(
        &alice.get(&format!("{P}/tournaments/t")).await,
        404,
        "M_NOT_FOUND",
    );
    // Reading or joining a plain leaderboard as a tournament, or nothing: 404.
    ok(admin
        .post(&format!("{P}/leaderboards"), json!({"id": "plain"}))
        .await);
    assert_error(
        &alice.get(&format!("{P}/tournaments/plain")).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &alice
            .post(&format!("{P}/tournaments/plain/join"), json!({}))
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &alice
            .post(&format!("{P}/tournaments/none/join"), json!({}))
            .await,
        404,
        "M_NOT_FOUND",
    );
    // Seven tournaments over categories 1, 2 and 5.
    let mut want = Vec::new();
    for (i, category) in [5u8, 1, 2, 5, 1, 2, 5].into_iter().enumerate() {
        let id = format!("t{i}");
        ok(create(json!({"id": id, "category": category})).await);
        want.push((category, id));
    }
    want.sort();
    let list = |query: String| {
        let alice = alice.clone();
        async move { alice.get(&format!("{P}/tournaments?{query}")).await }
    };
    let mut seen = Vec::new();
    let mut query = "category_start=1&category_end=2&limit=3".to_owned();
    loop {
        let page = ok(list(query.clone()).await);
        for t in page["tournaments"].as_array().expect("tournaments") {
            seen.push((
                t["category"].as_u64().expect("category") as u8,
                t["id"].as_str().expect("id").to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("category_start=1&category_end=2&limit=3&cursor={c}"),
            None => break,
        }
    }
    let in_range: Vec<(u8, String)> = want.iter().filter(|(c, _)| *c <= 2).cloned().collect();
    assert_eq!(seen, in_range);
    let all = ok(list(String::new()).await);
    assert_eq!(all["tournaments"].as_array().map(Vec::len), Some(7));
    for query in [
        "category_start=3&category_end=2",
        "category_end=200",
        "limit=0",
        "cursor=zz",
    ] {
        assert_error(&list(query.to_owned()).await, 400, "M_INVALID_PARAM");
    }
}

/// The join counters' total of tournament `id`'s only window.
async fn joins(server: &TestServer, id: &str) -> u64 {
    server
        .state
        .game
        .db()
        .join_count(id, 0)
        .await
        .expect("join count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_stop_at_max_size() {
    const JOINERS: usize = 24;
    const MAX_SIZE: u64 = 7;
    let (server, admin) = server_with_admin().await;
    ok(admin
        .post(
            &format!("{P}/tournaments"),
            json!({"id": "small", "max_size": MAX_SIZE}),
        )
        .await);
    let mut clients = Vec::new();
    for i in 0..JOINERS {
        clients.push(server.register(&format!("player{i}"), "pw-player-1").await);
    }
    let mut tasks = Vec::new();
    for c in clients.clone() {
        tasks.push(tokio::spawn(async move {
            c.post(&format!("{P}/tournaments/small/join"), json!({}))
                .await
        }));
    }
    let mut joined = 0;
    let mut full = 0;
    for t in tasks {
        let got = t.await.expect("joiner");
        match got.0 {
            200 => {
                assert_eq!(got.1["joined"], true);
                joined += 1;
            }
            _ => {
                assert_error(&got, 409, "ORG.MYELIN.TOURNAMENT_FULL");
                assert_eq!(got.1["max_size"], MAX_SIZE);
                full += 1;
            }
        }
    }
    assert_eq!((joined, full), (MAX_SIZE, JOINERS as u64 - MAX_SIZE));
    assert_eq!(joins(&server, "small").await, MAX_SIZE);
    // Joining again: a joined player is told so, the others are still
    // refused, and the count does not move.
    let mut again = 0;
    for c in &clients {
        let got = c
            .post(&format!("{P}/tournaments/small/join"), json!({}))
            .await;
        if got.0 == 200 {
            assert_eq!(got.1["joined"], false);
            again += 1;
        } else {
            assert_error(&got, 409, "ORG.MYELIN.TOURNAMENT_FULL");
        }
    }
    assert_eq!(again, MAX_SIZE);
    assert_eq!(joins(&server, "small").await, MAX_SIZE);
    // The read and the listing say the same as the counters.
    let read = ok(admin.get(&format!("{P}/tournaments/small")).await);
    assert_eq!(read["size"], MAX_SIZE);
    let listed = ok(admin.get(&format!("{P}/tournaments")).await);
    assert_eq!(listed["tournaments"][0]["size"], MAX_SIZE, "{listed}");
}

/// `size` counts the joins of the current window for a tournament without
/// `max_size` too (each join counted once), in the read and the listing;
/// a new window starts at 0 and the old one keeps its count.
#[tokio::test]
async fn size_counts_the_current_windows_joins() {
    let (server, admin) = server_with_admin().await;
    let t = ok(admin
        .post(
            &format!("{P}/tournaments"),
            json!({"id": "open", "category": 5, "reset": "0 * * * *"}),
        )
        .await);
    assert!(
        t.get("size").is_none(),
        "the create answer has no size: {t}"
    );
    let size = |path: &'static str| {
        let admin = admin.clone();
        async move { ok(admin.get(&format!("{P}{path}")).await) }
    };
    assert_eq!(size("/tournaments/open").await["size"], 0);
    let mut expiry = None;
    for i in 0..3 {
        let c = server.register(&format!("joiner{i}"), "pw-joiner-1").await;
        for first in [true, false] {
            let got = ok(c
                .post(&format!("{P}/tournaments/open/join"), json!({}))
                .await);
            assert_eq!(got["joined"], first);
            expiry = got["expiry"].as_u64();
        }
    }
    assert_eq!(size("/tournaments/open").await["size"], 3);
    let listed = size("/tournaments?category_start=5&category_end=5").await;
    assert_eq!(listed["tournaments"][0]["id"], "open");
    assert_eq!(listed["tournaments"][0]["size"], 3);
    // The next window has no joins yet; the last one's count stays.
    server.clock.advance_ms(3_600_000);
    assert_eq!(size("/tournaments/open").await["size"], 0);
    let expiry = expiry.expect("a join's expiry");
    assert_eq!(
        server
            .state
            .game
            .db()
            .join_count("open", expiry)
            .await
            .expect("join count"),
        3
    );
}
