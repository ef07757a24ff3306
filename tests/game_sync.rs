//! The game database in `/sync` over the real server (issue 17): two
//! players long-poll `/sync` while one accepts the other's trade; both
//! polls are woken by the commit (not their timeout) and carry the
//! completed trade and the new balances in `org.myelin.game`. Also: a
//! token of the format before the game database still works.

mod common_api;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use common_api::{Client, TestServer, sync_now};

/// Long enough that a poll must be woken, not time out.
const LONG_POLL_MS: u64 = 20_000;

const P: &str = "/_myelin/game/v1";

async fn ok(got: (u16, Value)) -> Value {
    assert_eq!(got.0, 200, "{}", got.1);
    got.1
}

fn poll(user: &Client, since: &str) -> tokio::task::JoinHandle<(u16, Value)> {
    let (user, since) = (user.clone(), since.to_owned());
    tokio::spawn(async move {
        user.get(&format!(
            "/_matrix/client/v3/sync?set_presence=offline&timeout={LONG_POLL_MS}&since={since}"
        ))
        .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_players_long_polling_see_their_trade_complete() {
    let server = TestServer::start().await;
    let admin = server.register("admin", "pw").await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    server
        .state
        .accounts
        .set_admin("admin", true)
        .await
        .expect("game test step");
    let (alice_id, bob_id) = (alice.whoami().await.0, bob.whoami().await.0);
    let granted = ok(admin
        .post(
            &format!("{P}/items/grant"),
            json!({"user_id": alice_id, "items": [{"type": "sword"}]}),
        )
        .await)
    .await;
    let sword = granted["item_ids"][0]
        .as_str()
        .expect("game test step")
        .to_owned();
    ok(admin
        .post(
            &format!("{P}/wallets/update"),
            json!({"updates": [{"user_id": bob_id, "changeset": {"gold": 50}}]}),
        )
        .await)
    .await;
    // Initial syncs carry the wallet (Bob) and nothing for Alice's empty wallet.
    let (alice_token, body) = sync_now(&alice, None).await;
    assert!(body.get("org.myelin.game").is_none(), "{body}");
    let (bob_token, body) = sync_now(&bob, None).await;
    assert_eq!(
        body["org.myelin.game"]["wallet"]["balances"],
        json!({"gold": 50})
    );

    // The offer reaches Bob's sync.
    let offer = json!({"counterparty": bob_id, "give": {"items": [sword]}, "take": {"currency": {"gold": 30}}});
    let trade_id = ok(alice.post(&format!("{P}/trades"), offer).await).await["trade_id"]
        .as_str()
        .expect("game test step")
        .to_owned();
    let (bob_token, body) = sync_now(&bob, Some(&bob_token)).await;
    assert_eq!(
        body["org.myelin.game"]["trades"][0]["trade_id"],
        trade_id.as_str()
    );
    assert_eq!(body["org.myelin.game"]["trades"][0]["state"], "open");
    let (alice_token, _) = sync_now(&alice, Some(&alice_token)).await;

    // Both long-poll; once both wait, Bob accepts.
    let (tx, mut waits) = mpsc::unbounded_channel();
    server
        .state
        .sync
        .set_after_read_hook(Some(Arc::new(move || {
            let _ = tx.send(());
            Box::pin(async {})
        })));
    let alice_poll = poll(&alice, &alice_token);
    let bob_poll = poll(&bob, &bob_token);
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(30), waits.recv())
            .await
            .expect("the polls wait within 30 s")
            .expect("hook installed");
    }
    let done = ok(bob
        .post(&format!("{P}/trades/{trade_id}/accept"), json!({}))
        .await)
    .await;
    assert_eq!(done["state"], "completed");
    // A poll not woken would answer only at its timeout: both answer
    // within half of it.
    for (who, poll, gold) in [("alice", alice_poll, 30), ("bob", bob_poll, 20)] {
        let (status, body) = tokio::time::timeout(Duration::from_millis(LONG_POLL_MS / 2), poll)
            .await
            .unwrap_or_else(|_| panic!("the accept woke {who}'s poll"))
            .expect("game test step");
        assert_eq!(status, 200, "{body}");
        let game = &body["org.myelin.game"];
        assert_eq!(
            game["trades"][0]["trade_id"],
            trade_id.as_str(),
            "{who}: {body}"
        );
        assert_eq!(game["trades"][0]["state"], "completed", "{who}");
        assert_eq!(game["wallet"]["balances"]["gold"], gold, "{who}");
        assert_eq!(game["inventory_changed"], true, "{who}");
    }
    assert_eq!(
        ok(bob.get(&format!("{P}/inventory")).await).await["items"][0]["item_id"],
        sword.as_str()
    );
}

#[tokio::test]
async fn an_admin_write_to_a_players_object_reaches_their_sync() {
    let server = TestServer::start().await;
    let admin = server.register("admin", "pw").await;
    let alice = server.register("alice", "pw").await;
    server
        .state
        .accounts
        .set_admin("admin", true)
        .await
        .expect("game test step");
    let alice_id = alice.whoami().await.0;
    let (token, _) = sync_now(&alice, None).await;
    let acks = ok(admin
        .put(&format!("{P}/storage"), json!({"objects": [{"collection": "mail", "key": "m1", "value": {"gift": 1}, "owner": alice_id}]}))
        .await)
    .await;
    let (_, body) = sync_now(&alice, Some(&token)).await;
    assert_eq!(
        body["org.myelin.game"]["storage"],
        json!([{"collection": "mail", "key": "m1", "version": acks["acks"][0]["version"]}])
    );
    // Her own writes are not echoed back.
    let (token, _) = sync_now(&alice, Some(&token)).await;
    ok(alice
        .put(
            &format!("{P}/storage"),
            json!({"objects": [{"collection": "mail", "key": "m2", "value": {}}]}),
        )
        .await)
    .await;
    let (_, body) = sync_now(&alice, Some(&token)).await;
    assert!(body.get("org.myelin.game").is_none(), "{body}");
}

#[tokio::test]
async fn a_token_from_before_the_game_database_still_syncs() {
    let server = TestServer::start().await;
    let admin = server.register("admin", "pw").await;
    let alice = server.register("alice", "pw").await;
    server
        .state
        .accounts
        .set_admin("admin", true)
        .await
        .expect("game test step");
    let alice_id = alice.whoami().await.0;
    let (token, _) = sync_now(&alice, None).await;
    // The same positions in the version-1 format: no game part.
    let mut bytes = URL_SAFE_NO_PAD.decode(&token).expect("game test step");
    assert_eq!((bytes[0], bytes.len()), (2, 41));
    bytes.truncate(31);
    bytes[0] = 1;
    let old = URL_SAFE_NO_PAD.encode(&bytes);
    ok(admin
        .post(
            &format!("{P}/wallets/update"),
            json!({"updates": [{"user_id": alice_id, "changeset": {"gold": 5}}]}),
        )
        .await)
    .await;
    // No game changes are owed to a version-1 token; the answer is a
    // version-2 token, from which later changes arrive.
    let (next, body) = sync_now(&alice, Some(&old)).await;
    assert!(body.get("org.myelin.game").is_none(), "{body}");
    assert_eq!(
        URL_SAFE_NO_PAD.decode(&next).expect("game test step").len(),
        41
    );
    ok(admin
        .post(
            &format!("{P}/wallets/update"),
            json!({"updates": [{"user_id": alice_id, "changeset": {"gold": 5}}]}),
        )
        .await)
    .await;
    let (_, body) = sync_now(&alice, Some(&next)).await;
    assert_eq!(
        body["org.myelin.game"]["wallet"]["balances"],
        json!({"gold": 10})
    );
}
