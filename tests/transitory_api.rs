//! The transitory streams over the real server: typing (with expiry by the
//! injected clock and collection), to-device messages (order, idempotency,
//! bounded batches, exactly-once across restarts between send and
//! acknowledgement), presence (online -> unavailable -> offline), and a
//! logout that fails between its two databases orphaning no inbox.

mod common_api;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use ruma::{RoomId, UserId};
use serde_json::json;

use common_api::{Client, TestServer, assert_error, test_config};

/// Alice creates a public room (over HTTP) and Bob joins it (through the
/// rooms service); returns the room ID.
async fn shared_room(server: &TestServer, alice: &Client, bob: &Client) -> String {
    let (status, body) = alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({"preset": "public_chat"}),
        )
        .await;
    assert_eq!(status, 200, "createRoom: {body}");
    let room = body["room_id"].as_str().expect("room_id").to_owned();
    let bob_id = UserId::parse(bob.whoami().await.0).expect("whoami names a user ID");
    let room_id = RoomId::parse(&room).expect("a valid room ID");
    server
        .state
        .rooms
        .join(&bob_id, &room_id)
        .await
        .expect("join");
    room
}

#[tokio::test]
async fn typing_is_seen_then_expires_on_the_clock_and_is_collected() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw-alice-1").await;
    let bob = server.register("bob", "pw-bob-1").await;
    let carol = server.register("carol", "pw-carol-1").await;
    let room = shared_room(&server, &alice, &bob).await;
    let room_id = RoomId::parse(&room).unwrap();
    let t = &server.state.transitory;

    let path = format!("/_matrix/client/v3/rooms/{room}/typing/@alice:test.local");
    let got = alice
        .put(&path, json!({"typing": true, "timeout": 30_000}))
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    let first = t
        .typing_since(&room_id, None)
        .await
        .unwrap()
        .expect("typing");
    assert_eq!(first.typing.len(), 1);
    assert_eq!(first.typing[0].0, "@alice:test.local");
    // Nothing new after the position just read.
    assert!(
        t.typing_since(&room_id, Some(first.position))
            .await
            .unwrap()
            .is_none()
    );

    // Bad inputs change nothing.
    let other = format!("/_matrix/client/v3/rooms/{room}/typing/@bob:test.local");
    assert_error(
        &alice
            .put(&other, json!({"typing": true, "timeout": 1000}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    let carols = format!("/_matrix/client/v3/rooms/{room}/typing/@carol:test.local");
    assert_error(
        &carol
            .put(&carols, json!({"typing": true, "timeout": 1000}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &alice.put(&path, json!({"typing": "yes"})).await,
        400,
        "M_BAD_JSON",
    );
    assert!(
        t.typing_since(&room_id, Some(first.position))
            .await
            .unwrap()
            .is_none()
    );

    // 29 s later she still types; at 30 s the notice has expired, even
    // before collection; collection records the change for sync.
    server.clock.advance_ms(29_000);
    assert_eq!(
        t.typing_since(&room_id, None)
            .await
            .unwrap()
            .unwrap()
            .typing
            .len(),
        1
    );
    assert_eq!(t.collect().await.unwrap().typing, 0);
    server.clock.advance_ms(1_000);
    let expired = t
        .typing_since(&room_id, Some(myelin::db::transitory::Position::ZERO))
        .await
        .unwrap()
        .unwrap();
    assert!(expired.typing.is_empty());
    assert_eq!(t.collect().await.unwrap().typing, 1);
    let after = t
        .typing_since(&room_id, Some(first.position))
        .await
        .unwrap()
        .expect("a change");
    assert!(after.position > first.position);
    assert!(after.typing.is_empty());
    assert_eq!(
        t.collect().await.unwrap().typing,
        0,
        "nothing left to collect"
    );

    // Timeouts are capped; stopping clears at once.
    let got = alice
        .put(&path, json!({"typing": true, "timeout": 10_000_000}))
        .await;
    assert_eq!(got.0, 200);
    let now = t.typing_since(&room_id, None).await.unwrap().unwrap();
    assert_eq!(
        now.typing[0].1,
        1_700_000_030_000 + t.config().typing_max_timeout_ms
    );
    assert_eq!(alice.put(&path, json!({"typing": false})).await.0, 200);
    let stopped = t
        .typing_since(&room_id, Some(now.position))
        .await
        .unwrap()
        .unwrap();
    assert!(stopped.typing.is_empty());
}

#[tokio::test]
async fn to_device_is_ordered_idempotent_bounded_and_exactly_once_across_restarts() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw-alice-1").await;
    let bob = server.register("bob", "pw-bob-1").await;
    let (bob_id, bob_dev) = bob.whoami().await;
    let bob_uid = UserId::parse(&bob_id).unwrap();

    for i in 0..5 {
        let got = alice
            .put(
                &format!("/_matrix/client/v3/sendToDevice/m.test/txn{i}"),
                json!({"messages": {&bob_id: {&bob_dev: {"n": i}}}}),
            )
            .await;
        assert_eq!(got.0, 200, "{}", got.1);
    }
    // A retried transaction is applied once.
    let again = alice
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/txn0",
            json!({"messages": {&bob_id: {&bob_dev: {"n": 99}}}}),
        )
        .await;
    assert_eq!(again.0, 200);
    // `*` reaches every device of the user, once each.
    let got = alice
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/all",
            json!({"messages": {&bob_id: {"*": {"n": 5}}}}),
        )
        .await;
    assert_eq!(got.0, 200);
    // A content that is not an object is refused and queues nothing.
    assert_error(
        &alice
            .put(
                "/_matrix/client/v3/sendToDevice/m.test/bad",
                json!({"messages": {&bob_id: {&bob_dev: 7}}}),
            )
            .await,
        400,
        "M_BAD_JSON",
    );

    // Bounded batches, in send order.
    let db = server.state.transitory.db().clone();
    let first = db
        .to_device_since(&bob_id, &bob_dev, None, 4)
        .await
        .unwrap();
    assert!(first.more);
    let ns: Vec<_> = first.messages.iter().map(|m| m.content.clone()).collect();
    assert_eq!(
        ns,
        [
            json!({"n": 0}),
            json!({"n": 1}),
            json!({"n": 2}),
            json!({"n": 3})
        ]
    );
    assert!(
        first
            .messages
            .iter()
            .all(|m| m.sender == "@alice:test.local" && m.event_type == "m.test")
    );
    let seen = first.messages[1].position;

    // Restart between send and acknowledgement: nothing is lost.
    drop(db);
    let clock = server.clock.clone();
    server.state.sync.notifier().stop().await;
    let tmp = server.stop().await.expect("temp dir");
    let server = TestServer::start_at(tmp.path(), test_config(), clock.clone()).await;
    let t = &server.state.transitory;
    let batch = t
        .to_device_since(&bob_uid, &bob_dev, Some(seen))
        .await
        .unwrap();
    let ns: Vec<_> = batch.messages.iter().map(|m| m.content.clone()).collect();
    assert_eq!(
        ns,
        [
            json!({"n": 2}),
            json!({"n": 3}),
            json!({"n": 4}),
            json!({"n": 5})
        ]
    );
    assert!(!batch.more);
    let last = batch.messages.last().unwrap().position;

    // Restart again after acknowledging everything: nothing comes twice,
    // and the acknowledged messages are gone from the store.
    let tmp2 = tmp.clone();
    drop(tmp);
    server
        .state
        .transitory
        .to_device_since(&bob_uid, &bob_dev, Some(last))
        .await
        .unwrap();
    server.state.sync.notifier().stop().await;
    server.stop().await;
    let server = TestServer::start_at(tmp2.path(), test_config(), clock).await;
    let t = &server.state.transitory;
    assert!(
        t.to_device_since(&bob_uid, &bob_dev, Some(last))
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    assert!(
        t.db()
            .to_device_since(&bob_id, &bob_dev, None, 100)
            .await
            .unwrap()
            .messages
            .is_empty(),
        "acknowledged messages are deleted"
    );
    drop(tmp2);
}

#[tokio::test]
async fn presence_goes_online_unavailable_offline_on_inactivity() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw-alice-1").await;
    let bob = server.register("bob", "pw-bob-1").await;
    let carol = server.register("carol", "pw-carol-1").await;
    shared_room(&server, &alice, &bob).await;
    let t = &server.state.transitory;
    let path = "/_matrix/client/v3/presence/@alice:test.local/status";

    let got = alice
        .put(path, json!({"presence": "online", "status_msg": "here"}))
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    let got = bob.get(path).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["presence"], "online");
    assert_eq!(got.1["status_msg"], "here");
    assert_eq!(got.1["currently_active"], true);

    // Bad inputs change nothing.
    assert_error(
        &bob.put(path, json!({"presence": "offline"})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(&carol.get(path).await, 403, "M_FORBIDDEN");
    assert_error(
        &alice.put(path, json!({"presence": 3})).await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &alice
            .put(
                path,
                json!({"presence": "online", "status_msg": "x".repeat(2000)}),
            )
            .await,
        400,
        "M_INVALID_PARAM",
    );
    let alice_id = UserId::parse("@alice:test.local").unwrap();
    let start = t
        .presence_since(std::slice::from_ref(&alice_id), None)
        .await
        .unwrap();
    assert_eq!(start.len(), 1);
    let pos = start[0].1;

    let cfg = t.config().clone();
    server.clock.advance_ms(cfg.presence_idle_ms);
    assert_eq!(bob.get(path).await.1["presence"], "unavailable");
    assert_eq!(t.collect().await.unwrap().presence, 1);
    let moved = t
        .presence_since(std::slice::from_ref(&alice_id), Some(pos))
        .await
        .unwrap();
    assert_eq!(moved.len(), 1, "the transition is a change sync delivers");
    assert_eq!(moved[0].2.presence.as_str(), "unavailable");

    server
        .clock
        .advance_ms(cfg.presence_offline_ms - cfg.presence_idle_ms);
    assert_eq!(bob.get(path).await.1["presence"], "offline");
    assert_eq!(t.collect().await.unwrap().presence, 1);
    assert_eq!(t.collect().await.unwrap().presence, 0);

    // Activity (as sync's set_presence) brings her back online.
    t.touch_presence(&alice_id, None).await.unwrap();
    assert_eq!(bob.get(path).await.1["presence"], "online");
}

/// Stored to-device content that is not JSON is reported as the storage
/// layer's `Corrupt` (it was read as `null` before), and the other device's
/// inbox still reads.
#[tokio::test]
async fn corrupt_to_device_content_is_an_error_not_null() {
    let dir = tempfile::tempdir().unwrap();
    let dbs = myelin::db::open_embedded_at(dir.path()).await.unwrap();
    let db = myelin::db::transitory::TransitoryDb::new(&dbs.transitory);
    let messages = [
        (
            "@bob:x".to_owned(),
            "BAD".to_owned(),
            "{not json".to_owned(),
        ),
        (
            "@bob:x".to_owned(),
            "GOOD".to_owned(),
            r#"{"n":1}"#.to_owned(),
        ),
    ];
    db.send_to_device(("@alice:x", "A"), "t1", "m.test", 0, &messages)
        .await
        .unwrap();
    let err = db
        .to_device_since("@bob:x", "BAD", None, 10)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            myelin::db::transitory::Error::Corrupt {
                subspace: "inbox",
                ..
            }
        ),
        "{err:?}"
    );
    let good = db
        .to_device_since("@bob:x", "GOOD", None, 10)
        .await
        .unwrap();
    assert_eq!(good.messages[0].content, json!({"n": 1}));
}

/// The devices whose cleanup is still owed, by user.
async fn owed_cleanups(server: &TestServer) -> BTreeMap<String, Vec<String>> {
    server
        .state
        .accounts
        .db()
        .owed_cleanups(10)
        .await
        .expect("the marks read")
}

/// A logout whose second step (the to-device inbox, in `transitory`) fails
/// after the first (the device, in `accounts`) committed, as a crash there
/// would: the inbox is left, with a cleanup-owed mark; the next start
/// deletes it and clears the mark.
#[tokio::test]
async fn a_logout_cut_between_its_databases_orphans_no_inbox() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw-alice-1").await;
    let bob = server.register("bob", "pw-bob-1").await;
    let (bob_id, bob_dev) = bob.whoami().await;
    let got = alice
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/t1",
            json!({"messages": {&bob_id: {&bob_dev: {"n": 1}}}}),
        )
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    let inbox_len = |server: &TestServer| {
        let (db, user, device) = (
            server.state.transitory.db().clone(),
            bob_id.clone(),
            bob_dev.clone(),
        );
        async move {
            db.to_device_since(&user, &device, None, 10)
                .await
                .expect("inbox reads")
                .messages
                .len()
        }
    };
    assert_eq!(inbox_len(&server).await, 1);

    let faults = server
        .state
        .transitory
        .db()
        .kv()
        .as_embedded()
        .expect("embedded store")
        .faults();
    // The databases share the one embedded store: its first writing
    // transaction from here is the logout's in `accounts`, the second the
    // one in `transitory`, which fails.
    faults.fail_commit_countdown.store(2, Ordering::SeqCst);
    let (status, _) = bob.post("/_matrix/client/v3/logout", json!({})).await;
    assert_eq!(status, 500, "the injected failure");
    assert_eq!(faults.fail_commit_countdown.load(Ordering::SeqCst), 0);
    // The device is gone, its inbox not: the mark says so.
    assert_eq!(bob.get("/_matrix/client/v3/account/whoami").await.0, 401);
    assert_eq!(inbox_len(&server).await, 1, "orphaned until the sweep");
    let owed = owed_cleanups(&server).await;
    assert_eq!(owed.get(&bob_id), Some(&vec![bob_dev.clone()]));

    let (clock, dir) = (server.clock.clone(), server.data_dir.clone());
    let _tmp = server.stop().await;
    let server = TestServer::start_at(&dir, test_config(), clock).await;
    assert_eq!(inbox_len(&server).await, 0, "deleted at start-up");
    let owed = owed_cleanups(&server).await;
    assert!(owed.is_empty(), "{owed:?}");
    // A logout that completes leaves no mark.
    let carol = server.register("carol", "pw-carol-1").await;
    assert_eq!(
        carol.post("/_matrix/client/v3/logout", json!({})).await.0,
        200
    );
    let owed = owed_cleanups(&server).await;
    assert!(owed.is_empty(), "{owed:?}");
    server.stop().await;
}
