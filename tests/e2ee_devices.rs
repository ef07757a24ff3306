//! Device lifecycle and end-to-end encryption over the real server: a device
//! that goes away (deletion with UIA, logout, logout of all devices, a
//! password change logging out the other devices, deactivation) takes its
//! keys and its to-device inbox with it, and users sharing a room with its
//! owner (and the owner) see the owner in `device_lists.changed` on their
//! next incremental sync; a new login shows up there too (spec: "Tracking
//! the device list for a user").

mod common_api;

use ruma::{RoomId, UserId};
use serde_json::{Value, json};

use common_api::{Client, TestServer, assert_error};

const ALICE_PW: &str = "pw-alice-1";

fn device_keys(user: &str, device: &str) -> Value {
    json!({
        "user_id": user,
        "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{device}"): "curvekey",
            format!("ed25519:{device}"): "edkey",
        },
        "signatures": {user: {format!("ed25519:{device}"): "selfsig"}},
    })
}

fn password_auth() -> Value {
    json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "alice"},
        "password": ALICE_PW,
    })
}

/// Logs alice in as `device` and returns the new client.
async fn login(server: &TestServer, device: &str) -> Client {
    let (status, body) = server
        .client()
        .post(
            "/_matrix/client/v3/login",
            json!({"type": "m.login.password",
                   "identifier": {"type": "m.id.user", "user": "alice"},
                   "password": ALICE_PW, "device_id": device}),
        )
        .await;
    assert_eq!(status, 200, "login: {body}");
    server
        .client()
        .with_token(body["access_token"].as_str().expect("token"))
}

/// Alice and Bob, sharing a room alice created (bob joined through the
/// rooms service). Returns (alice's first client, bob, alice's user ID).
async fn alice_and_bob(server: &TestServer) -> (Client, Client, String) {
    let alice = server.register("alice", ALICE_PW).await;
    let bob = server.register("bob", "pw-bob-1").await;
    let (status, body) = alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({"preset": "public_chat"}),
        )
        .await;
    assert_eq!(status, 200, "createRoom: {body}");
    let room = RoomId::parse(body["room_id"].as_str().expect("room_id is a string"))
        .expect("room_id is an ID");
    let bob_id = UserId::parse(bob.whoami().await.0).expect("whoami names a user ID");
    server.state.rooms.join(&bob_id, &room).await.expect("join");
    let alice_id = alice.whoami().await.0;
    (alice, bob, alice_id)
}

/// Gives `client`'s device keys, 3 one-time keys and a fallback key, and
/// queues a to-device message from `sender` to it; checks all are there.
async fn equip(server: &TestServer, client: &Client, sender: &Client) {
    let (user, device) = client.whoami().await;
    let got = client
        .post(
            "/_matrix/client/v3/keys/upload",
            json!({"device_keys": device_keys(&user, &device),
                   "one_time_keys": {
                       "signed_curve25519:k1": {"key": "one"},
                       "signed_curve25519:k2": {"key": "two"},
                       "signed_curve25519:k3": {"key": "three"}},
                   "fallback_keys": {"signed_curve25519:fb": {"key": "fb", "fallback": true}}}),
        )
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["one_time_key_counts"]["signed_curve25519"], 3);
    let got = sender
        .put(
            &format!("/_matrix/client/v3/sendToDevice/m.test/to-{device}"),
            json!({"messages": {&user: {&device: {"hello": device}}}}),
        )
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(inbox_len(server, &user, &device).await, 1);
    assert!(queried_devices(sender, &user).await.contains(&device));
}

/// Messages waiting in the device's to-device inbox (read without
/// acknowledging).
async fn inbox_len(server: &TestServer, user: &str, device: &str) -> usize {
    server
        .state
        .transitory
        .db()
        .to_device_since(user, device, None, 100)
        .await
        .expect("inbox")
        .messages
        .len()
}

/// The device IDs `/keys/query` returns for `user`.
async fn queried_devices(c: &Client, user: &str) -> Vec<String> {
    let got = c
        .post(
            "/_matrix/client/v3/keys/query",
            json!({"device_keys": {user: []}}),
        )
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    got.1["device_keys"][user]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// A fresh sync position of `c`.
async fn position(c: &Client) -> String {
    let got = c.get("/_matrix/client/v3/sync?timeout=0").await;
    assert_eq!(got.0, 200, "{}", got.1);
    got.1["next_batch"].as_str().expect("next_batch").to_owned()
}

/// `device_lists.changed` of `c`'s incremental sync since `since`.
async fn changed_since(c: &Client, since: &str) -> Vec<String> {
    let got = c
        .get(&format!("/_matrix/client/v3/sync?since={since}&timeout=0"))
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    got.1["device_lists"]["changed"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| {
                    v.as_str()
                        .expect("a one-time key algorithm is a string")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Everything a gone device leaves behind is gone, and bob saw the change.
async fn assert_gone(server: &TestServer, bob: &Client, since: &str, user: &str, device: &str) {
    assert!(
        changed_since(bob, since).await.contains(&user.to_owned()),
        "bob sees {user}'s device list change"
    );
    assert!(
        !queried_devices(bob, user)
            .await
            .contains(&device.to_owned()),
        "/keys/query no longer returns {device}"
    );
    let got = bob
        .post(
            "/_matrix/client/v3/keys/claim",
            json!({"one_time_keys": {user: {device: "signed_curve25519"}}}),
        )
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    let claimed = &got.1["one_time_keys"][user][device];
    assert!(
        claimed.is_null() || claimed.as_object().is_some_and(|m| m.is_empty()),
        "no one-time or fallback key of {device} can be claimed: {claimed}"
    );
    assert_eq!(inbox_len(server, user, device).await, 0, "inbox deleted");
    let u = UserId::parse(user).expect("a valid user ID");
    let e2ee = &server.state.e2ee;
    assert!(
        e2ee.one_time_key_counts(&u, device)
            .await
            .expect("one-time key counts read")
            .is_empty()
    );
    assert!(
        e2ee.unused_fallback_key_types(&u, device)
            .await
            .expect("fallback key types read")
            .is_empty()
    );
}

#[tokio::test]
async fn deleting_a_device_with_uia_removes_its_keys_and_inbox_and_peers_see_it() {
    let server = TestServer::start().await;
    let (alice, bob, alice_id) = alice_and_bob(&server).await;
    let phone = login(&server, "PHONE").await;
    equip(&server, &phone, &bob).await;
    let kept = alice.whoami().await.1;
    equip(&server, &alice, &bob).await;
    let bob_since = position(&bob).await;
    let alice_since = position(&alice).await;

    // Without UIA nothing is deleted.
    let got = alice
        .delete("/_matrix/client/v3/devices/PHONE", json!({}))
        .await;
    assert_eq!(got.0, 401, "{}", got.1);
    assert!(
        queried_devices(&bob, &alice_id)
            .await
            .contains(&"PHONE".into())
    );
    assert_eq!(inbox_len(&server, &alice_id, "PHONE").await, 1);

    let got = alice
        .delete(
            "/_matrix/client/v3/devices/PHONE",
            json!({"auth": password_auth()}),
        )
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_gone(&server, &bob, &bob_since, &alice_id, "PHONE").await;
    // The other device keeps its keys and inbox (until its own sync
    // acknowledges the message).
    assert_eq!(queried_devices(&bob, &alice_id).await, vec![kept.clone()]);
    assert_eq!(inbox_len(&server, &alice_id, &kept).await, 1);
    assert!(
        changed_since(&alice, &alice_since)
            .await
            .contains(&alice_id),
        "alice sees her own device list change"
    );
    assert_error(
        &phone.get("/_matrix/client/v3/account/whoami").await,
        401,
        "M_UNKNOWN_TOKEN",
    );

    // POST /delete_devices does the same.
    let tablet = login(&server, "TABLET").await;
    equip(&server, &tablet, &bob).await;
    let bob_since = position(&bob).await;
    let got = alice
        .post(
            "/_matrix/client/v3/delete_devices",
            json!({"devices": ["TABLET"], "auth": password_auth()}),
        )
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_gone(&server, &bob, &bob_since, &alice_id, "TABLET").await;
    server.stop().await;
}

#[tokio::test]
async fn logout_logout_all_and_password_change_remove_keys_and_inboxes() {
    let server = TestServer::start().await;
    let (alice, bob, alice_id) = alice_and_bob(&server).await;

    // Logout of one device.
    let phone = login(&server, "PHONE").await;
    equip(&server, &phone, &bob).await;
    let bob_since = position(&bob).await;
    let got = phone.post("/_matrix/client/v3/logout", json!({})).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_gone(&server, &bob, &bob_since, &alice_id, "PHONE").await;

    // A password change logs out every other device.
    let laptop = login(&server, "LAPTOP").await;
    equip(&server, &laptop, &bob).await;
    let kept = alice.whoami().await.1;
    let bob_since = position(&bob).await;
    let got = alice
        .post(
            "/_matrix/client/v3/account/password",
            json!({"new_password": ALICE_PW, "auth": password_auth()}),
        )
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_gone(&server, &bob, &bob_since, &alice_id, "LAPTOP").await;
    assert_eq!(alice.whoami().await.1, kept, "the caller's device stays");

    // Logout of all devices.
    let tablet = login(&server, "TABLET").await;
    equip(&server, &tablet, &bob).await;
    equip(&server, &alice, &bob).await;
    let bob_since = position(&bob).await;
    let got = tablet
        .post("/_matrix/client/v3/logout/all", json!({}))
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_gone(&server, &bob, &bob_since, &alice_id, "TABLET").await;
    assert_gone(&server, &bob, &bob_since, &alice_id, &kept).await;
    assert!(queried_devices(&bob, &alice_id).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn deactivation_removes_every_device_s_keys_and_inbox() {
    let server = TestServer::start().await;
    let (alice, bob, alice_id) = alice_and_bob(&server).await;
    let phone = login(&server, "PHONE").await;
    equip(&server, &phone, &bob).await;
    let bob_since = position(&bob).await;
    let got = alice
        .post(
            "/_matrix/client/v3/account/deactivate",
            json!({"auth": password_auth()}),
        )
        .await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_gone(&server, &bob, &bob_since, &alice_id, "PHONE").await;
    assert!(queried_devices(&bob, &alice_id).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_new_login_is_a_device_list_change_for_peers() {
    let server = TestServer::start().await;
    let (_alice, bob, alice_id) = alice_and_bob(&server).await;
    let bob_since = position(&bob).await;
    assert!(
        changed_since(&bob, &bob_since).await.is_empty(),
        "no change yet"
    );
    let _phone = login(&server, "PHONE").await;
    assert_eq!(changed_since(&bob, &bob_since).await, [alice_id]);
    server.stop().await;
}
