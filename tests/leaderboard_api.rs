//! The leaderboard API over a real server (issue 18): every operator on
//! ascending and descending boards, ties, deletes, reset windows under the
//! injected clock, authority, every error (and that it writes nothing),
//! cursors visiting each record once, ranks equal to a brute-force sort of
//! 10,000 records written by concurrent HTTP clients, and `/sync` carrying
//! the caller's own record changes (an initial sync: the caller's current
//! records and joins, bounded).

mod common_api;

use std::collections::BTreeMap;

use myelin::service::Clock;
use serde_json::{Value, json};

use common_api::{Client, assert_error, sync_now};

const P: &str = "/_myelin/game/v1";

type Game = common_api::AdminAliceBob;

async fn game() -> Game {
    common_api::admin_alice_bob().await
}

async fn uid(c: &Client) -> String {
    c.whoami().await.0
}

#[track_caller]
fn ok(got: (u16, Value)) -> Value {
    assert_eq!(got.0, 200, "{}", got.1);
    got.1
}

async fn create(admin: &Client, body: Value) -> Value {
    ok(admin.post(&format!("{P}/leaderboards"), body).await)
}

async fn submit(c: &Client, board: &str, body: Value) -> (u16, Value) {
    c.post(&format!("{P}/leaderboards/{board}/records"), body)
        .await
}

async fn list(c: &Client, board: &str, query: &str) -> (u16, Value) {
    c.get(&format!("{P}/leaderboards/{board}/records?{query}"))
        .await
}

/// `(owner, score, subscore, rank)` of a listing's records.
fn rows(page: &Value) -> Vec<(String, i64, i64, u64)> {
    page["records"]
        .as_array()
        .expect("records array")
        .iter()
        .map(|r| {
            (
                r["owner"].as_str().expect("owner").to_owned(),
                r["score"].as_i64().expect("score"),
                r["subscore"].as_i64().expect("subscore"),
                r["rank"].as_u64().expect("rank"),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_operator_on_ascending_and_descending_boards() {
    let g = game().await;
    // (sort, operator, submissions, (score, subscore) after each).
    type Case = (
        &'static str,
        &'static str,
        &'static [(i64, i64)],
        &'static [(i64, i64)],
    );
    let cases: &[Case] = &[
        (
            "desc",
            "best",
            &[(10, 0), (5, 9), (10, 1), (15, 0)],
            &[(10, 0), (10, 0), (10, 1), (15, 0)],
        ),
        (
            "asc",
            "best",
            &[(10, 0), (15, 0), (10, -1), (3, 5)],
            &[(10, 0), (10, 0), (10, -1), (3, 5)],
        ),
        ("desc", "set", &[(10, 1), (4, 0)], &[(10, 1), (4, 0)]),
        ("asc", "set", &[(10, 1), (40, 0)], &[(10, 1), (40, 0)]),
        ("desc", "incr", &[(10, 1), (5, 2)], &[(10, 1), (15, 3)]),
        ("asc", "incr", &[(10, 1), (-3, 0)], &[(10, 1), (7, 1)]),
        ("desc", "decr", &[(3, 0), (10, 5)], &[(0, 0), (0, 0)]),
        ("asc", "decr", &[(-10, -2), (4, 1)], &[(10, 2), (6, 1)]),
    ];
    let alice = uid(&g.alice).await;
    for (sort, op, submissions, want) in cases {
        let board = format!("{sort}-{op}");
        create(&g.admin, json!({"id": board, "sort": sort, "operator": op})).await;
        for (i, ((score, subscore), (ws, wss))) in submissions.iter().zip(*want).enumerate() {
            let got = ok(submit(
                &g.alice,
                &board,
                json!({"score": score, "subscore": subscore}),
            )
            .await);
            assert_eq!(
                (got["score"].as_i64(), got["subscore"].as_i64()),
                (Some(*ws), Some(*wss)),
                "{board} #{i}"
            );
            assert_eq!(got["num_score"], i as u64 + 1, "{board}");
            assert_eq!(got["owner"], alice.as_str());
            assert_eq!(got["rank"], 1);
        }
    }
    // A submission's operator overrides the board's.
    let got = ok(submit(
        &g.alice,
        "desc-best",
        json!({"score": 1, "operator": "set"}),
    )
    .await);
    assert_eq!(got["score"], 1);
}

#[tokio::test]
async fn ties_go_to_subscore_then_owner_and_a_delete_moves_ranks_up() {
    let g = game().await;
    let (alice, bob) = (uid(&g.alice).await, uid(&g.bob).await);
    for sort in ["desc", "asc"] {
        let board = format!("ties-{sort}");
        create(&g.admin, json!({"id": board, "sort": sort})).await;
        ok(submit(&g.bob, &board, json!({"score": 5, "subscore": 1})).await);
        ok(submit(&g.alice, &board, json!({"score": 5, "subscore": 1})).await);
        ok(submit(&g.admin, &board, json!({"score": 5, "subscore": 2})).await);
        let page = ok(list(&g.alice, &board, "").await);
        let owners: Vec<String> = rows(&page).into_iter().map(|r| r.0).collect();
        let admin = uid(&g.admin).await;
        // Equal score and subscore: owner ascending (alice < bob), on both
        // directions; the subscore follows the board's direction.
        let want = if sort == "desc" {
            vec![admin.clone(), alice.clone(), bob.clone()]
        } else {
            vec![alice.clone(), bob.clone(), admin.clone()]
        };
        assert_eq!(owners, want, "{sort}");
        assert_eq!(
            rows(&page).iter().map(|r| r.3).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        // Alice deletes her record: Bob moves up at once.
        let bob_before = ok(g
            .bob
            .get(&format!("{P}/leaderboards/{board}/records/{bob}"))
            .await);
        ok(g.alice
            .delete(&format!("{P}/leaderboards/{board}/records"), json!({}))
            .await);
        let bob_after = ok(g
            .bob
            .get(&format!("{P}/leaderboards/{board}/records/{bob}"))
            .await);
        assert_eq!(
            bob_after["rank"].as_u64(),
            bob_before["rank"].as_u64().map(|r| r - 1)
        );
        assert_error(
            &g.alice
                .get(&format!("{P}/leaderboards/{board}/records/{alice}"))
                .await,
            404,
            "M_NOT_FOUND",
        );
        // A second delete finds nothing.
        assert_error(
            &g.alice
                .delete(&format!("{P}/leaderboards/{board}/records"), json!({}))
                .await,
            404,
            "M_NOT_FOUND",
        );
    }
}

#[tokio::test]
async fn a_reset_opens_a_new_window_and_the_old_one_reads_back_unchanged() {
    let g = game().await;
    let alice = uid(&g.alice).await;
    let board = create(
        &g.admin,
        json!({"id": "daily", "reset": "0 0 * * *", "operator": "incr"}),
    )
    .await;
    let first_expiry = board["next_reset"].as_u64().expect("next_reset");
    let now = g.server.clock.now_ms();
    assert!(first_expiry > now && first_expiry - now <= 86_400_000);
    let got = ok(submit(&g.alice, "daily", json!({"score": 7})).await);
    assert_eq!(got["expiry"], first_expiry);
    ok(submit(&g.bob, "daily", json!({"score": 9})).await);
    let old = ok(list(&g.alice, "daily", "").await);
    // The day turns: writes go to a new window.
    g.server.clock.advance_ms(first_expiry - now);
    let got = ok(submit(&g.alice, "daily", json!({"score": 1})).await);
    assert_eq!(got["score"], 1, "incr starts again in the new window");
    assert_eq!(got["num_score"], 1);
    assert_eq!(got["expiry"], first_expiry + 86_400_000);
    let current = ok(list(&g.alice, "daily", "").await);
    assert_eq!(rows(&current), vec![(alice.clone(), 1, 0, 1)]);
    let past = ok(list(&g.alice, "daily", &format!("expiry={first_expiry}")).await);
    assert_eq!(past["records"], old["records"]);
    assert_eq!(past["expiry"], first_expiry);
    let mine = ok(g
        .alice
        .get(&format!(
            "{P}/leaderboards/daily/records/{alice}?expiry={first_expiry}"
        ))
        .await);
    assert_eq!(
        (mine["score"].as_i64(), mine["rank"].as_u64()),
        (Some(7), Some(2))
    );
}

#[tokio::test]
async fn authority_and_every_error_writes_nothing() {
    let g = game().await;
    let (alice, bob) = (uid(&g.alice).await, uid(&g.bob).await);
    let lb = |p: &str| format!("{P}/leaderboards{p}");
    // Only admins create and delete.
    assert_error(
        &g.alice.post(&lb(""), json!({"id": "x"})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(&g.alice.get(&lb("/x")).await, 404, "M_NOT_FOUND");
    create(&g.admin, json!({"id": "open", "metadata": {"season": 1}})).await;
    assert_error(
        &g.alice.delete(&lb("/open"), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    // The same definition again is fine; another one is a conflict.
    let again = create(&g.admin, json!({"id": "open", "metadata": {"season": 1}})).await;
    assert_eq!(again["metadata"], json!({"season": 1}));
    assert_error(
        &g.admin
            .post(&lb(""), json!({"id": "open", "sort": "asc"}))
            .await,
        409,
        "ORG.MYELIN.LEADERBOARD_EXISTS",
    );
    // Bad definitions.
    let long = "x".repeat(129);
    let bad_creates = [
        (json!({"id": long}), 400, "M_INVALID_PARAM"),
        (json!({"id": ""}), 400, "M_INVALID_PARAM"),
        (json!({"id": "b", "sort": "sideways"}), 400, "M_BAD_JSON"),
        (json!({"id": "b", "operator": "max"}), 400, "M_BAD_JSON"),
        (
            json!({"id": "b", "reset": "every day"}),
            400,
            "M_INVALID_PARAM",
        ),
        (
            json!({"id": "b", "reset": "0 0 30 2 *"}),
            400,
            "M_INVALID_PARAM",
        ),
        (json!({"id": "b", "metadata": [1]}), 400, "M_BAD_JSON"),
        (
            json!({"id": "b", "metadata": {"x": "y".repeat(17_000)}}),
            413,
            "M_TOO_LARGE",
        ),
    ];
    for (body, status, errcode) in bad_creates {
        assert_error(&g.admin.post(&lb(""), body.clone()).await, status, errcode);
    }
    assert_error(&g.alice.get(&lb("/b")).await, 404, "M_NOT_FOUND");
    // Authoritative: clients may not submit; admins submit naming the owner.
    create(&g.admin, json!({"id": "auth", "authoritative": true})).await;
    assert_error(
        &submit(&g.alice, "auth", json!({"score": 1})).await,
        403,
        "M_FORBIDDEN",
    );
    let got = ok(submit(&g.admin, "auth", json!({"score": 3, "owner": alice})).await);
    assert_eq!(got["owner"], alice.as_str());
    // Nor delete their record there.
    assert_error(
        &g.alice.delete(&lb("/auth/records"), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    let kept = ok(g.alice.get(&lb(&format!("/auth/records/{alice}"))).await);
    assert_eq!(kept["score"], 3);
    // A client may not name another owner.
    assert_error(
        &submit(&g.alice, "open", json!({"score": 1, "owner": bob})).await,
        403,
        "M_FORBIDDEN",
    );
    // Bad submissions.
    let bad_submits = [
        (json!({"subscore": 1}), 400, "M_BAD_JSON"),
        (json!({"score": "1"}), 400, "M_BAD_JSON"),
        (json!({"score": 1e30}), 400, "M_BAD_JSON"),
        (json!({"score": 1, "metadata": "text"}), 400, "M_BAD_JSON"),
        (
            json!({"score": 1, "metadata": {"x": "y".repeat(17_000)}}),
            413,
            "M_TOO_LARGE",
        ),
        (json!({"score": 1, "operator": "max"}), 400, "M_BAD_JSON"),
        (
            json!({"score": 1, "owner": "not a user"}),
            400,
            "M_INVALID_PARAM",
        ),
    ];
    for (body, status, errcode) in bad_submits {
        assert_error(
            &submit(&g.alice, "open", body.clone()).await,
            status,
            errcode,
        );
    }
    assert_error(
        &submit(&g.alice, "nope", json!({"score": 1})).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &submit(&g.alice, &long, json!({"score": 1})).await,
        400,
        "M_INVALID_PARAM",
    );
    // Nothing was written by any of them.
    let page = ok(list(&g.alice, "open", "").await);
    assert_eq!(page["records"], json!([]));
    assert_eq!(page["next_cursor"], Value::Null);
    // Bad reads.
    ok(submit(&g.alice, "open", json!({"score": 1})).await);
    for query in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "cursor=%21%21",
        "expiry=-1",
        "owner_ids=nobody",
    ] {
        assert_error(&list(&g.alice, "open", query).await, 400, "M_INVALID_PARAM");
    }
    let many: Vec<String> = (0..101).map(|i| format!("@u{i}:localhost")).collect();
    assert_error(
        &list(&g.alice, "open", &format!("owner_ids={}", many.join(","))).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(&list(&g.alice, "nope", "").await, 404, "M_NOT_FOUND");
    assert_error(
        &g.alice.get(&lb("/open/records/nobody")).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &g.alice.get(&lb(&format!("/open/records/{bob}"))).await,
        404,
        "M_NOT_FOUND",
    );
    for query in ["limit=0", "limit=1001"] {
        assert_error(
            &g.alice
                .get(&lb(&format!("/open/records/around/{alice}?{query}")))
                .await,
            400,
            "M_INVALID_PARAM",
        );
    }
    assert_error(
        &g.alice
            .get(&lb(&format!("/open/records/around/{bob}")))
            .await,
        404,
        "M_NOT_FOUND",
    );
    // owner_ids: repeated or comma-separated; owners without a record are left out.
    let page = ok(list(
        &g.alice,
        "open",
        &format!("owner_ids={alice}&owner_ids={bob}"),
    )
    .await);
    assert_eq!(page["owner_records"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["owner_records"][0]["owner"], alice.as_str());
    // Deleting the board deletes its records; a new board of that ID is empty.
    ok(g.admin.delete(&lb("/open"), json!({})).await);
    assert_error(&g.alice.get(&lb("/open")).await, 404, "M_NOT_FOUND");
    assert_error(
        &g.admin.delete(&lb("/open"), json!({})).await,
        404,
        "M_NOT_FOUND",
    );
    create(&g.admin, json!({"id": "open"})).await;
    assert_eq!(ok(list(&g.alice, "open", "").await)["records"], json!([]));
}

#[tokio::test]
async fn cursors_visit_each_record_exactly_once_both_ways() {
    let g = game().await;
    create(&g.admin, json!({"id": "c", "authoritative": true})).await;
    let mut want = Vec::new();
    for i in 0..57i64 {
        let owner = format!("@p{i:02}:localhost");
        ok(submit(&g.admin, "c", json!({"score": i % 7, "owner": owner})).await);
        want.push((-(i % 7), owner));
    }
    want.sort();
    let want: Vec<String> = want.into_iter().map(|(_, o)| o).collect();
    let mut seen = Vec::new();
    let mut query = "limit=10".to_owned();
    let mut pages = Vec::new();
    loop {
        let page = ok(list(&g.alice, "c", &query).await);
        for (i, r) in rows(&page).into_iter().enumerate() {
            assert_eq!(r.3 as usize, seen.len() + 1, "rank of #{i}");
            seen.push(r.0);
        }
        pages.push(page.clone());
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("limit=10&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, want);
    assert_eq!(pages.len(), 6);
    assert_eq!(pages[0]["prev_cursor"], Value::Null);
    // Backwards from the last page with prev_cursor.
    let mut back = Vec::new();
    let mut page = pages[5].clone();
    while let Some(c) = page["prev_cursor"].as_str() {
        page = ok(list(&g.alice, "c", &format!("limit=10&cursor={c}")).await);
        let mut owners: Vec<String> = rows(&page).into_iter().map(|r| r.0).collect();
        owners.extend(back);
        back = owners;
    }
    let tail: Vec<String> = rows(&pages[5]).into_iter().map(|r| r.0).collect();
    back.extend(tail);
    assert_eq!(back, want);
    // Around an owner: centred, and full near the ends.
    let around = ok(g
        .alice
        .get(&format!(
            "{P}/leaderboards/c/records/around/{}?limit=5",
            want[20]
        ))
        .await);
    assert_eq!(
        rows(&around).into_iter().map(|r| r.0).collect::<Vec<_>>(),
        want[18..23].to_vec()
    );
    let around = ok(g
        .alice
        .get(&format!(
            "{P}/leaderboards/c/records/around/{}?limit=5",
            want[0]
        ))
        .await);
    assert_eq!(rows(&around).len(), 5);
    assert_eq!(rows(&around)[0].3, 1);
}

/// A board of 10,000 records: most loaded at the db level
/// (`GameDb::load_records`; HTTP setup of all of them takes over a minute
/// in a debug build), then
/// `WRITERS` concurrent HTTP clients race: new owners, and new scores for
/// owners already on the board (`best` on a descending board, so the
/// outcome does not depend on their order). Every page read back over
/// HTTP: ranks equal a sort of the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranks_equal_a_brute_force_sort_of_10000_records_from_concurrent_writers() {
    const OWNERS: usize = 10_000;
    const SET_UP: usize = 8_500;
    const RACED: usize = 2_500;
    const WRITERS: usize = 8;
    let g = game().await;
    create(&g.admin, json!({"id": "big", "authoritative": true})).await;
    let rng = myelin::random::Random::seeded(18);
    let mut best: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let draw = |owner: String, best: &mut BTreeMap<String, (i64, i64)>| {
        let (score, subscore) = (rng.range(0..2_000i64), rng.range(0..3i64));
        let b = best.entry(owner.clone()).or_insert((score, subscore));
        *b = (*b).max((score, subscore));
        (owner, score, subscore)
    };
    let owner = |i: usize| format!("@player{i}:localhost");
    let setup: Vec<(String, i64, i64)> = (0..SET_UP).map(|i| draw(owner(i), &mut best)).collect();
    let loaded = g
        .server
        .state
        .game
        .db()
        .load_records("big", &setup, g.server.clock.now_ms())
        .await
        .expect("load the board");
    assert_eq!(loaded, SET_UP as u64);
    // The race: the remaining owners, and as many again already on the board.
    let mut plan: Vec<Vec<(String, i64, i64)>> = vec![Vec::new(); WRITERS];
    for k in 0..RACED {
        let who = if k < OWNERS - SET_UP {
            owner(SET_UP + k)
        } else {
            owner(rng.range(0..OWNERS))
        };
        plan[rng.range(0..WRITERS)].push(draw(who, &mut best));
    }
    let mut tasks = Vec::new();
    for writes in plan {
        let admin = g.admin.clone();
        tasks.push(tokio::spawn(async move {
            for (owner, score, subscore) in writes {
                let got = submit(
                    &admin,
                    "big",
                    json!({"score": score, "subscore": subscore, "owner": owner}),
                )
                .await;
                assert_eq!(got.0, 200, "{}", got.1);
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let mut want: Vec<((i64, i64), String)> = best
        .into_iter()
        .map(|(o, (s, ss))| ((-s, -ss), o))
        .collect();
    want.sort();
    let mut got = Vec::new();
    let mut query = "limit=1000".to_owned();
    loop {
        let page = ok(list(&g.alice, "big", &query).await);
        got.extend(rows(&page));
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("limit=1000&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(got.len(), OWNERS);
    for (i, (((s, ss), owner), row)) in want.iter().zip(&got).enumerate() {
        assert_eq!(row, &(owner.clone(), -s, -ss, i as u64 + 1));
    }
    // Single reads agree with the sort too.
    for i in [0, 1, 4_999, OWNERS - 1] {
        let owner = &want[i].1;
        let r = ok(g
            .alice
            .get(&format!("{P}/leaderboards/big/records/{owner}"))
            .await);
        assert_eq!(r["rank"], i as u64 + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_carries_own_record_changes_and_wakes_a_long_poll() {
    let g = game().await;
    create(&g.admin, json!({"id": "s"})).await;
    let (since, _) = sync_now(&g.alice, None).await;
    // A long poll (20 s) is woken by Alice's own submission.
    let poll = {
        let alice = g.alice.clone();
        let since = since.clone();
        tokio::spawn(async move {
            alice
                .get(&format!(
                    "/_matrix/client/v3/sync?set_presence=offline&timeout=20000&since={since}"
                ))
                .await
        })
    };
    ok(submit(&g.bob, "s", json!({"score": 50})).await);
    ok(submit(&g.alice, "s", json!({"score": 10, "subscore": 2})).await);
    let woke = ok(poll.await.expect("poll"));
    let mut section = woke["org.myelin.game"].clone();
    let mut since = woke["next_batch"].as_str().expect("next_batch").to_owned();
    if section["leaderboards"].is_null() {
        // Woken by something else first: the next sync has it.
        let (next, body) = sync_now(&g.alice, Some(&since)).await;
        section = body["org.myelin.game"].clone();
        since = next;
    }
    assert_eq!(
        section["leaderboards"],
        json!([{"id": "s", "expiry": 0, "score": 10, "subscore": 2, "num_score": 1, "rank": 2}])
    );
    // Bob's submission is not Alice's change; nothing more is pushed.
    ok(submit(&g.bob, "s", json!({"score": 70})).await);
    let (since, body) = sync_now(&g.alice, Some(&since)).await;
    assert!(body["org.myelin.game"]["leaderboards"].is_null(), "{body}");
    // Her delete is.
    ok(g.alice
        .delete(&format!("{P}/leaderboards/s/records"), json!({}))
        .await);
    let (_, body) = sync_now(&g.alice, Some(&since)).await;
    assert_eq!(
        body["org.myelin.game"]["leaderboards"],
        json!([{"id": "s", "expiry": 0, "deleted": true}])
    );
}

/// An initial sync carries the caller's current records (with ranks) and
/// tournament joins; what was deleted since is left out; past
/// `MAX_OWNED` boards the list stops and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initial_sync_carries_own_records_and_joins_bounded() {
    let g = game().await;
    create(&g.admin, json!({"id": "a"})).await;
    create(&g.admin, json!({"id": "b", "sort": "asc"})).await;
    ok(g.admin
        .post(&format!("{P}/tournaments"), json!({"id": "cup"}))
        .await);
    ok(submit(&g.bob, "a", json!({"score": 50})).await);
    ok(submit(&g.alice, "a", json!({"score": 10, "subscore": 2})).await);
    ok(submit(&g.alice, "b", json!({"score": 5})).await);
    ok(submit(&g.alice, "b", json!({"score": 3})).await);
    ok(g.alice
        .post(&format!("{P}/tournaments/cup/join"), json!({}))
        .await);
    let initial = |c: &Client| {
        let c = c.clone();
        async move { sync_now(&c, None).await.1["org.myelin.game"].clone() }
    };
    let section = initial(&g.alice).await;
    assert_eq!(
        section["leaderboards"],
        json!([
            {"id": "a", "expiry": 0, "score": 10, "subscore": 2, "num_score": 1, "rank": 2},
            {"id": "b", "expiry": 0, "score": 3, "subscore": 0, "num_score": 2, "rank": 1},
        ])
    );
    assert_eq!(
        section["tournaments"],
        json!([{"id": "cup", "expiry": 0, "joined": true}])
    );
    assert!(section.get("leaderboards_limited").is_none(), "{section}");
    let bob = initial(&g.bob).await;
    assert_eq!(bob["leaderboards"][0]["rank"], 1, "{bob}");
    assert_eq!(bob["leaderboards"].as_array().map(Vec::len), Some(1));
    assert!(bob.get("tournaments").is_none(), "{bob}");

    // Her delete on `b`, and board `a` deleted and made again (empty):
    // neither record is listed any more.
    ok(g.alice
        .delete(&format!("{P}/leaderboards/b/records"), json!({}))
        .await);
    ok(g.admin
        .delete(&format!("{P}/leaderboards/a"), json!({}))
        .await);
    create(&g.admin, json!({"id": "a"})).await;
    let section = initial(&g.alice).await;
    assert!(section.get("leaderboards").is_none(), "{section}");
    assert_eq!(section["tournaments"][0]["id"], "cup");

    // Records on MAX_OWNED more boards (through the database, for speed).
    let game = g.server.state.game.db();
    let alice = uid(&g.alice).await;
    let admin = myelin::db::game::Actor {
        user_id: uid(&g.admin).await,
        admin: true,
    };
    let now = g.server.clock.now_ms();
    let template = game.board("a").await.expect("board a");
    for i in 0..MAX_OWNED {
        let id = format!("z{i:03}");
        game.create_board(&id, &template).await.expect("create");
        let s = myelin::db::game::ScoreSubmission {
            owner: alice.clone(),
            score: i as i64,
            subscore: 0,
            metadata: None,
            operator: None,
            id: i as u64,
        };
        game.submit_scores(&admin, &id, &[s], now)
            .await
            .expect("submit");
    }
    // Board IDs in order: `a` (left behind by the delete, skipped), `cup`,
    // `z000`...: the first MAX_OWNED entries are read.
    let section = initial(&g.alice).await;
    assert_eq!(section["leaderboards_limited"], true, "{section}");
    let listed = section["leaderboards"].as_array().expect("records");
    assert_eq!(listed.len(), MAX_OWNED - 2);
    assert_eq!(listed[0]["id"], "z000");
    assert_eq!(
        listed[MAX_OWNED - 3]["id"],
        format!("z{:03}", MAX_OWNED - 3)
    );
    assert_eq!(section["tournaments"][0]["id"], "cup");
}

/// `src/sync/game.rs`'s `MAX_OWNED`.
const MAX_OWNED: usize = 100;
