//! The game API over a real server (issue 17): every endpoint's answers
//! and errors, and that rejected requests change nothing.

mod common_api;

use serde_json::{Value, json};

use common_api::{Client, assert_error};

const P: &str = "/_myelin/game/v1";

type Game = common_api::AdminAliceBob;

async fn game() -> Game {
    common_api::admin_alice_bob().await
}

async fn uid(c: &Client) -> String {
    c.whoami().await.0
}

fn path(p: &str) -> String {
    format!("{P}{p}")
}

async fn put_objects(c: &Client, objects: Value) -> (u16, Value) {
    c.put(&path("/storage"), json!({ "objects": objects }))
        .await
}

async fn read_saves(c: &Client, owner: &str, keys: &[&str]) -> (u16, Value) {
    let ids: Vec<Value> = keys
        .iter()
        .map(|k| json!({"collection": "saves", "key": k, "owner": owner}))
        .collect();
    c.post(&path("/storage/read"), json!({ "object_ids": ids }))
        .await
}

async fn list_saves(c: &Client, query: &str) -> (u16, Value) {
    c.get(&path(&format!("/storage/saves?{query}"))).await
}

async fn ok(got: (u16, Value)) -> Value {
    assert_eq!(got.0, 200, "{}", got.1);
    got.1
}

#[tokio::test]
async fn storage_writes_reads_lists_and_deletes_with_versions_and_permissions() {
    let g = game().await;
    let alice_id = uid(&g.alice).await;
    let put = |objects: Value| put_objects(&g.alice, objects);
    let acks = ok(put(json!([
        {"collection": "saves", "key": "slot1", "value": {"level": 3}, "version": "*"},
        {"collection": "saves", "key": "slot2", "value": {"level": 1}, "permission_read": 2},
    ]))
    .await)
    .await;
    assert_eq!(acks["acks"][0]["owner"], alice_id);
    let v1 = acks["acks"][0]["version"]
        .as_str()
        .expect("game test step")
        .to_owned();
    // A create-only write of an existing object: 409 with the index, and
    // the batch's other object is not written.
    let got = put(json!([
        {"collection": "saves", "key": "slot3", "value": {}},
        {"collection": "saves", "key": "slot1", "value": {}, "version": "*"},
    ]))
    .await;
    assert_error(&got, 409, "ORG.MYELIN.VERSION_MISMATCH");
    assert_eq!(got.1["index"], 1);
    let objects = ok(read_saves(&g.alice, &alice_id, &["slot1", "slot2", "slot3"]).await).await;
    assert_eq!(
        objects["objects"].as_array().expect("game test step").len(),
        2
    );
    assert_eq!(objects["objects"][0]["value"], json!({"level": 3}));
    assert_eq!(objects["objects"][0]["version"], v1.as_str());
    assert_eq!(objects["objects"][0]["permission_read"], 1);
    // Bob sees only the public one.
    let objects = ok(read_saves(&g.bob, &alice_id, &["slot1", "slot2"]).await).await;
    assert_eq!(
        objects["objects"].as_array().expect("game test step").len(),
        1
    );
    assert_eq!(objects["objects"][0]["key"], "slot2");
    // If-match with the right version succeeds.
    let acks = ok(put(
        json!([{"collection": "saves", "key": "slot1", "value": {"level": 4}, "version": v1}]),
    )
    .await)
    .await;
    assert_ne!(acks["acks"][0]["version"], v1.as_str());
    // Listing: Alice sees both, Bob only the public one, pages by cursor.
    let page = ok(list_saves(&g.alice, "limit=1").await).await;
    assert_eq!(page["objects"].as_array().expect("game test step").len(), 1);
    let cursor = page["next_cursor"]
        .as_str()
        .expect("game test step")
        .to_owned();
    let page2 = ok(list_saves(&g.alice, &format!("limit=1&cursor={cursor}")).await).await;
    assert_eq!(page2["objects"][0]["key"], "slot2");
    let page = ok(list_saves(&g.bob, &format!("owner={alice_id}")).await).await;
    assert_eq!(page["objects"].as_array().expect("game test step").len(), 1);
    assert!(page["next_cursor"].is_null());
    assert_error(&list_saves(&g.bob, "limit=0").await, 400, "M_INVALID_PARAM");
    assert_error(
        &list_saves(&g.bob, "cursor=zzz").await,
        400,
        "M_INVALID_PARAM",
    );
    // Delete with a stale version: 409; with none: gone.
    let got = g
        .alice
        .post(
            &path("/storage/delete"),
            json!({"object_ids": [{"collection": "saves", "key": "slot1", "version": v1}]}),
        )
        .await;
    assert_error(&got, 409, "ORG.MYELIN.VERSION_MISMATCH");
    ok(g.alice
        .post(
            &path("/storage/delete"),
            json!({"object_ids": [{"collection": "saves", "key": "slot1"}]}),
        )
        .await)
    .await;
    let objects = ok(read_saves(&g.alice, &alice_id, &["slot1"]).await).await;
    assert!(
        objects["objects"]
            .as_array()
            .expect("game test step")
            .is_empty()
    );
}

#[tokio::test]
async fn storage_refuses_bad_shapes_large_values_and_foreign_or_locked_objects() {
    let g = game().await;
    let alice_id = uid(&g.alice).await;
    assert_error(
        &put_objects(
            &g.alice,
            json!([{"collection": "c", "key": "k", "value": [1]}]),
        )
        .await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &put_objects(&g.alice, json!([{"collection": "c", "value": {}}])).await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &put_objects(
            &g.alice,
            json!([{"collection": "x".repeat(129), "key": "k", "value": {}}]),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &put_objects(
            &g.alice,
            json!([{"collection": "c", "key": "k", "value": {}, "permission_read": 3}]),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &put_objects(&g.alice, json!([])).await,
        400,
        "M_INVALID_PARAM",
    );
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"collection": "c", "key": format!("k{i}"), "value": {}}))
        .collect();
    assert_error(
        &put_objects(&g.alice, Value::Array(many)).await,
        400,
        "M_INVALID_PARAM",
    );
    let big = json!({"blob": "x".repeat(64 * 1024)});
    assert_error(
        &put_objects(
            &g.alice,
            json!([{"collection": "c", "key": "k", "value": big}]),
        )
        .await,
        413,
        "M_TOO_LARGE",
    );
    let got = g
        .alice
        .post_raw(&path("/storage/read"), b"{not json".to_vec())
        .await;
    assert_error(&got, 400, "M_NOT_JSON");
    // A client may not name another owner.
    let bob_id = uid(&g.bob).await;
    assert_error(
        &put_objects(
            &g.alice,
            json!([{"collection": "c", "key": "k", "value": {}, "owner": bob_id}]),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    // An admin locks one of Alice's objects; Alice cannot change it.
    ok(put_objects(&g.admin, json!([{"collection": "c", "key": "locked", "value": {"v": 1}, "owner": alice_id, "permission_write": 0}])).await).await;
    let got = put_objects(
        &g.alice,
        json!([{"collection": "c", "key": "locked", "value": {"v": 2}}]),
    )
    .await;
    assert_error(&got, 403, "M_FORBIDDEN");
    assert_eq!(got.1["index"], 0);
    // System objects (owner null) by an admin, readable when public.
    ok(put_objects(&g.admin, json!([{"collection": "config", "key": "motd", "value": {"m": "hi"}, "owner": null, "permission_read": 2}])).await).await;
    let objects = ok(g
        .bob
        .post(
            &path("/storage/read"),
            json!({"object_ids": [{"collection": "config", "key": "motd", "owner": null}]}),
        )
        .await)
    .await;
    assert_eq!(objects["objects"][0]["value"], json!({"m": "hi"}));
    assert!(objects["objects"][0]["owner"].is_null());
    let objects = ok(g
        .alice
        .post(
            &path("/storage/read"),
            json!({"object_ids": [{"collection": "c", "key": "locked", "owner": alice_id}]}),
        )
        .await)
    .await;
    assert_eq!(objects["objects"][0]["value"], json!({"v": 1}));
}

#[tokio::test]
async fn wallets_are_admin_updated_never_negative_idempotent_and_ledgered() {
    let g = game().await;
    let alice_id = uid(&g.alice).await;
    let update = |c: &Client, body: Value| {
        let c = c.clone();
        async move { c.post(&path("/wallets/update"), body).await }
    };
    let body = json!({"updates": [{"user_id": alice_id, "changeset": {"gold": 120, "gems": 5}, "metadata": {"why": "quest"}}], "idempotency_key": "q1"});
    assert_error(&update(&g.alice, body.clone()).await, 403, "M_FORBIDDEN");
    let first = ok(update(&g.admin, body.clone()).await).await;
    assert_eq!(
        first["results"][0]["balances"],
        json!({"gold": 120, "gems": 5})
    );
    assert_eq!(
        first["results"][0]["previous"],
        json!({"gold": 0, "gems": 0})
    );
    let again = ok(update(&g.admin, body).await).await;
    assert_eq!(again, first);
    let got = update(
        &g.admin,
        json!({"updates": [{"user_id": alice_id, "changeset": {"gems": 1, "gold": -200}}]}),
    )
    .await;
    assert_error(&got, 409, "ORG.MYELIN.INSUFFICIENT_FUNDS");
    assert_eq!(
        (got.1["user_id"].as_str(), got.1["currency"].as_str()),
        (Some(alice_id.as_str()), Some("gold"))
    );
    assert_eq!(
        (got.1["balance"].as_i64(), got.1["delta"].as_i64()),
        (Some(120), Some(-200))
    );
    assert_eq!(
        ok(g.alice.get(&path("/wallet")).await).await,
        json!({"balances": {"gold": 120, "gems": 5}})
    );
    assert_error(
        &update(
            &g.admin,
            json!({"updates": [{"user_id": "nobody", "changeset": {"gold": 1}}]}),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &update(
            &g.admin,
            json!({"updates": [{"user_id": alice_id, "changeset": {"gold": "x"}}]}),
        )
        .await,
        400,
        "M_BAD_JSON",
    );
    ok(update(
        &g.admin,
        json!({"updates": [{"user_id": alice_id, "changeset": {"gold": -20}}]}),
    )
    .await)
    .await;
    let ledger = ok(g.alice.get(&path("/wallet/ledger?limit=1")).await).await;
    assert_eq!(ledger["entries"][0]["changeset"], json!({"gold": -20}));
    let cursor = ledger["next_cursor"]
        .as_str()
        .expect("game test step")
        .to_owned();
    let older = ok(g
        .alice
        .get(&path(&format!("/wallet/ledger?cursor={cursor}")))
        .await)
    .await;
    assert_eq!(
        older["entries"].as_array().expect("game test step").len(),
        1
    );
    assert_eq!(older["entries"][0]["metadata"], json!({"why": "quest"}));
    assert!(older["next_cursor"].is_null());
}

/// Grants `n` swords to `user`; returns their IDs.
async fn grant(g: &Game, user: &str, n: usize) -> Vec<String> {
    let items: Vec<Value> = (0..n)
        .map(|_| json!({"type": "sword", "quantity": 1, "metadata": {"dmg": 3}}))
        .collect();
    let got = ok(g
        .admin
        .post(
            &path("/items/grant"),
            json!({"user_id": user, "items": items}),
        )
        .await)
    .await;
    got["item_ids"]
        .as_array()
        .expect("game test step")
        .iter()
        .map(|v| v.as_str().expect("game test step").to_owned())
        .collect()
}

#[tokio::test]
async fn items_are_granted_listed_and_consumed() {
    let g = game().await;
    let alice_id = uid(&g.alice).await;
    assert_error(
        &g.alice
            .post(
                &path("/items/grant"),
                json!({"user_id": alice_id, "items": [{"type": "x"}]}),
            )
            .await,
        403,
        "M_FORBIDDEN",
    );
    let got = ok(g.admin.post(&path("/items/grant"), json!({"user_id": alice_id, "items": [{"type": "potion", "quantity": 3}], "idempotency_key": "g"})).await).await;
    let again = ok(g.admin.post(&path("/items/grant"), json!({"user_id": alice_id, "items": [{"type": "potion", "quantity": 3}], "idempotency_key": "g"})).await).await;
    assert_eq!(got, again);
    let id = got["item_ids"][0]
        .as_str()
        .expect("game test step")
        .to_owned();
    let inv = ok(g.alice.get(&path("/inventory")).await).await;
    assert_eq!(
        inv["items"],
        json!([{"item_id": id, "type": "potion", "quantity": 3, "metadata": {}}])
    );
    let got = g
        .alice
        .post(
            &path("/items/consume"),
            json!({"item_id": id, "quantity": 4}),
        )
        .await;
    assert_error(&got, 409, "ORG.MYELIN.INSUFFICIENT_ITEMS");
    assert_eq!(
        (got.1["held"].as_u64(), got.1["wanted"].as_u64()),
        (Some(3), Some(4))
    );
    assert_error(
        &g.bob
            .post(&path("/items/consume"), json!({"item_id": id}))
            .await,
        409,
        "ORG.MYELIN.INSUFFICIENT_ITEMS",
    );
    assert_eq!(
        ok(g.alice
            .post(
                &path("/items/consume"),
                json!({"item_id": id, "quantity": 2})
            )
            .await)
        .await["quantity"],
        1
    );
    assert_eq!(
        ok(g.alice
            .post(&path("/items/consume"), json!({"item_id": id}))
            .await)
        .await["quantity"],
        0
    );
    assert_eq!(
        ok(g.alice.get(&path("/inventory")).await).await["items"],
        json!([])
    );
}

#[tokio::test]
async fn a_trade_executes_once_or_leaves_everything_in_place() {
    let g = game().await;
    let (alice_id, bob_id) = (uid(&g.alice).await, uid(&g.bob).await);
    let sword = grant(&g, &alice_id, 1).await.remove(0);
    ok(g.admin
        .post(
            &path("/wallets/update"),
            json!({"updates": [{"user_id": bob_id, "changeset": {"gold": 10}}]}),
        )
        .await)
    .await;
    let offer = json!({"counterparty": bob_id, "give": {"items": [sword]}, "take": {"currency": {"gold": 30}}});
    // Bob does not have 30 gold: the offer is refused at once.
    assert_error(
        &g.alice.post(&path("/trades"), offer.clone()).await,
        409,
        "ORG.MYELIN.INSUFFICIENT_FUNDS",
    );
    ok(g.admin
        .post(
            &path("/wallets/update"),
            json!({"updates": [{"user_id": bob_id, "changeset": {"gold": 40}}]}),
        )
        .await)
    .await;
    let trade_id = ok(g.alice.post(&path("/trades"), offer).await).await["trade_id"]
        .as_str()
        .expect("game test step")
        .to_owned();
    let open = ok(g.bob.get(&path("/trades?state=open")).await).await;
    assert_eq!(open["trades"][0]["trade_id"], trade_id.as_str());
    assert_eq!(open["trades"][0]["state"], "open");
    assert_error(
        &g.alice
            .post(&path(&format!("/trades/{trade_id}/accept")), json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    // Bob spends his gold: the accept fails, nothing moves, the trade stays open.
    ok(g.admin
        .post(
            &path("/wallets/update"),
            json!({"updates": [{"user_id": bob_id, "changeset": {"gold": -45}}]}),
        )
        .await)
    .await;
    let got = g
        .bob
        .post(&path(&format!("/trades/{trade_id}/accept")), json!({}))
        .await;
    assert_error(&got, 409, "ORG.MYELIN.INSUFFICIENT_FUNDS");
    assert_eq!(
        ok(g.bob.get(&path(&format!("/trades/{trade_id}"))).await).await["state"],
        "open"
    );
    assert_eq!(
        ok(g.alice.get(&path("/inventory")).await).await["items"][0]["item_id"],
        sword.as_str()
    );
    ok(g.admin
        .post(
            &path("/wallets/update"),
            json!({"updates": [{"user_id": bob_id, "changeset": {"gold": 25}}]}),
        )
        .await)
    .await;
    let done = ok(g
        .bob
        .post(&path(&format!("/trades/{trade_id}/accept")), json!({}))
        .await)
    .await;
    assert_eq!(done["state"], "completed");
    let again = ok(g
        .bob
        .post(&path(&format!("/trades/{trade_id}/accept")), json!({}))
        .await)
    .await;
    assert_eq!(again, done);
    assert_eq!(
        ok(g.bob.get(&path("/inventory")).await).await["items"][0]["item_id"],
        sword.as_str()
    );
    assert_eq!(
        ok(g.alice.get(&path("/wallet")).await).await["balances"],
        json!({"gold": 30})
    );
    assert_eq!(
        ok(g.bob.get(&path("/wallet")).await).await["balances"],
        json!({"gold": 0})
    );
    let ledger = ok(g.alice.get(&path("/wallet/ledger")).await).await;
    assert_eq!(ledger["entries"][0]["trade_id"], trade_id.as_str());
    assert_error(
        &g.alice
            .post(&path(&format!("/trades/{trade_id}/cancel")), json!({}))
            .await,
        409,
        "ORG.MYELIN.TRADE_NOT_OPEN",
    );
    let admin_view = g.admin.get(&path(&format!("/trades/{trade_id}"))).await;
    assert_eq!(admin_view.0, 200);
    assert_error(&g.bob.get(&path("/trades/nope")).await, 404, "M_NOT_FOUND");
    assert_error(
        &g.bob.get(&path("/trades?state=weird")).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &g.alice
            .post(
                &path("/trades"),
                json!({"counterparty": alice_id, "give": {"currency": {"gold": 1}}}),
            )
            .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &g.alice
            .post(
                &path("/trades"),
                json!({"counterparty": bob_id, "give": {"currency": {"gold": -1}}}),
            )
            .await,
        400,
        "M_INVALID_PARAM",
    );
}

#[tokio::test]
async fn a_server_transaction_is_all_or_nothing_and_idempotent() {
    let g = game().await;
    let (alice_id, bob_id) = (uid(&g.alice).await, uid(&g.bob).await);
    let sword = grant(&g, &alice_id, 1).await.remove(0);
    let body = |gold: i64, key: &str| {
        json!({
            "idempotency_key": key,
            "wallets": [{"user_id": alice_id, "changeset": {"gold": gold}}],
            "items": {"transfer": [{"item_id": sword, "to": bob_id}], "grant": [{"user_id": bob_id, "items": [{"type": "shield"}]}]},
            "storage": {"write": [{"collection": "quests", "key": "q1", "value": {"done": true}, "owner": alice_id}]},
        })
    };
    assert_error(
        &g.alice.post(&path("/transactions"), body(5, "t0")).await,
        403,
        "M_FORBIDDEN",
    );
    // Alice has no gold: nothing of the transaction applies.
    assert_error(
        &g.admin.post(&path("/transactions"), body(-5, "t1")).await,
        409,
        "ORG.MYELIN.INSUFFICIENT_FUNDS",
    );
    assert_eq!(
        ok(g.bob.get(&path("/inventory")).await).await["items"],
        json!([])
    );
    let read = json!({"object_ids": [{"collection": "quests", "key": "q1", "owner": alice_id}]});
    assert_eq!(
        ok(g.alice.post(&path("/storage/read"), read.clone()).await).await["objects"],
        json!([])
    );
    let first = ok(g.admin.post(&path("/transactions"), body(5, "t2")).await).await;
    assert_eq!(first["wallets"][0]["balances"], json!({"gold": 5}));
    assert_eq!(
        first["item_ids"].as_array().expect("game test step").len(),
        1
    );
    let version = first["acks"][0]["version"].clone();
    let again = ok(g.admin.post(&path("/transactions"), body(5, "t2")).await).await;
    assert_eq!(again, first);
    assert_eq!(
        ok(g.alice.get(&path("/wallet")).await).await["balances"],
        json!({"gold": 5})
    );
    assert_eq!(
        ok(g.bob.get(&path("/inventory")).await).await["items"]
            .as_array()
            .expect("game test step")
            .len(),
        2
    );
    assert_eq!(
        ok(g.alice.post(&path("/storage/read"), read).await).await["objects"][0]["version"],
        version
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_if_match_writing_one_object_lose_no_update() {
    let g = game().await;
    let alice_id = uid(&g.alice).await;
    let acks = ok(put_objects(
        &g.alice,
        json!([{"collection": "hot", "key": "k", "value": {"writes": 0}}]),
    )
    .await)
    .await;
    let mut version = acks["acks"][0]["version"]
        .as_str()
        .expect("game test step")
        .to_owned();
    // Each round, 32 clients read the same version and write n + 1 with
    // it as the condition: exactly one may succeed per version.
    for round in 1..=3 {
        let writers: Vec<_> = (0..32)
            .map(|i| {
                let (alice, version) = (g.alice.clone(), version.clone());
                tokio::spawn(async move {
                    let w = json!([{"collection": "hot", "key": "k", "value": {"writes": round, "by": i}, "version": version}]);
                    put_objects(&alice, w).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for w in writers {
            let got = w.await.expect("game test step");
            match got.0 {
                200 => winners.push(
                    got.1["acks"][0]["version"]
                        .as_str()
                        .expect("game test step")
                        .to_owned(),
                ),
                _ => assert_error(&got, 409, "ORG.MYELIN.VERSION_MISMATCH"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: one success per version");
        let read = ok(read_objects_of(&g.alice, "hot", &alice_id, "k").await).await;
        assert_eq!(read["objects"][0]["version"], winners[0].as_str());
        assert_eq!(read["objects"][0]["value"]["writes"], round);
        version = winners.remove(0);
    }
}

async fn read_objects_of(c: &Client, collection: &str, owner: &str, key: &str) -> (u16, Value) {
    c.post(
        &path("/storage/read"),
        json!({"object_ids": [{"collection": collection, "key": key, "owner": owner}]}),
    )
    .await
}
