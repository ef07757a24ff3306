//! Registration, login, logout, whoami, password change, deactivation, token
//! security, persistence across a restart, and rate limiting with the
//! injected clock, against the real server on 127.0.0.1:0.

mod common_api;

use common_api::{TestServer, assert_error, test_config};
use myelin::service::{RateLimit, ServerConfig};
use serde_json::{Value, json};

const REGISTER: &str = "/_matrix/client/v3/register";
const LOGIN: &str = "/_matrix/client/v3/login";

fn password_login(user: &str, password: &str) -> Value {
    json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
    })
}

fn password_auth(user: &str, password: &str, session: Option<&str>) -> Value {
    let mut auth = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
    });
    if let Some(s) = session {
        auth["session"] = s.into();
    }
    auth
}

#[tokio::test]
async fn register_runs_uia_then_creates_account_and_device() {
    let server = TestServer::start().await;
    let c = server.client();
    // Without auth: 401 with the dummy flow and a session.
    let (status, body) = c
        .post(REGISTER, json!({"username": "alice", "password": "pw"}))
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["flows"], json!([{"stages": ["m.login.dummy"]}]));
    let session = body["session"].as_str().unwrap().to_owned();
    assert!(
        server.state.accounts.list_users().await.unwrap().is_empty(),
        "UIA step created nothing"
    );
    // With the session and a device.
    let (status, body) = c
        .post(
            REGISTER,
            json!({
                "username": "alice", "password": "pw",
                "device_id": "ALICEPHONE", "initial_device_display_name": "Alice's phone",
                "auth": {"type": "m.login.dummy", "session": session},
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@alice:test.local");
    assert_eq!(body["device_id"], "ALICEPHONE");
    let token = body["access_token"].as_str().unwrap();
    assert!(token.len() >= 43, "at least 256 bits");
    let alice = c.clone().with_token(token);
    assert_eq!(
        alice.whoami().await,
        ("@alice:test.local".into(), "ALICEPHONE".into())
    );
    let (_, dev) = alice.get("/_matrix/client/v3/devices/ALICEPHONE").await;
    assert_eq!(dev["display_name"], "Alice's phone");
    // The session is used up.
    let again = c
        .post(
            REGISTER,
            json!({"username": "alice2", "auth": {"type": "m.login.dummy", "session": session}}),
        )
        .await;
    assert_error(&again, 403, "M_FORBIDDEN");
    server.stop().await;
}

#[tokio::test]
async fn register_username_rules_and_availability() {
    let server = TestServer::start().await;
    let c = server.client();
    let dummy = json!({"type": "m.login.dummy"});
    for bad in ["Alice", "al ice", "_bridge", "a:b", ""] {
        let got = c
            .post(
                REGISTER,
                json!({"username": bad, "password": "x", "auth": dummy}),
            )
            .await;
        assert_error(&got, 400, "M_INVALID_USERNAME");
    }
    let long = "a".repeat(250);
    assert_error(
        &c.post(REGISTER, json!({"username": long, "auth": dummy}))
            .await,
        400,
        "M_INVALID_USERNAME",
    );

    let (status, body) = c
        .get("/_matrix/client/v3/register/available?username=bob")
        .await;
    assert_eq!((status, body["available"].clone()), (200, json!(true)));
    server.register("bob", "pw").await;
    assert_error(
        &c.get("/_matrix/client/v3/register/available?username=bob")
            .await,
        400,
        "M_USER_IN_USE",
    );
    assert_error(
        &c.get("/_matrix/client/v3/register/available?username=B%20b")
            .await,
        400,
        "M_INVALID_USERNAME",
    );
    assert_error(
        &c.post(REGISTER, json!({"username": "bob", "auth": dummy}))
            .await,
        400,
        "M_USER_IN_USE",
    );

    // No username: one is generated. inhibit_login: no token.
    let (status, body) = c
        .post(
            REGISTER,
            json!({"password": "pw", "inhibit_login": true, "auth": dummy}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["user_id"].as_str().unwrap().ends_with(":test.local"));
    assert!(
        body["access_token"].is_null() && body["device_id"].is_null(),
        "{body}"
    );
    // Guests are not supported.
    assert_error(
        &c.post(&format!("{REGISTER}?kind=guest"), json!({})).await,
        403,
        "M_GUEST_ACCESS_FORBIDDEN",
    );
    server.stop().await;
}

#[tokio::test]
async fn registration_can_be_disabled_or_require_a_token() {
    let server = TestServer::start_config(ServerConfig {
        registration_enabled: false,
        ..test_config()
    })
    .await;
    let got = server
        .client()
        .post(
            REGISTER,
            json!({"username": "x", "auth": {"type": "m.login.dummy"}}),
        )
        .await;
    assert_error(&got, 403, "M_FORBIDDEN");
    server.stop().await;

    let config = ServerConfig {
        registration_token: Some("sesame".into()),
        ..test_config()
    };
    let server = TestServer::start_config(config).await;
    let c = server.client();
    let (status, body) = c
        .post(REGISTER, json!({"username": "x", "password": "p"}))
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        body["flows"],
        json!([{"stages": ["m.login.registration_token"]}])
    );
    let session = body["session"].as_str().unwrap();
    // The dummy stage is not offered.
    let got = c
        .post(
            REGISTER,
            json!({"username": "x", "auth": {"type": "m.login.dummy"}}),
        )
        .await;
    assert_eq!(got.0, 401, "{}", got.1);
    assert_eq!(got.1["errcode"], "M_UNRECOGNIZED");
    let got = c
        .post(REGISTER, json!({"username": "x", "auth": {"type": "m.login.registration_token", "token": "nope", "session": session}}))
        .await;
    assert_eq!(
        (got.0, got.1["errcode"].clone()),
        (401, json!("M_FORBIDDEN"))
    );
    assert!(server.state.accounts.list_users().await.unwrap().is_empty());
    let (status, body) = c
        .post(REGISTER, json!({"username": "x", "password": "p", "auth": {"type": "m.login.registration_token", "token": "sesame", "session": session}}))
        .await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn login_logout_and_whoami() {
    let server = TestServer::start().await;
    let c = server.client();
    server.register("carol", "secret").await;

    // m.id.user with a localpart, a full ID, and the legacy `user` field.
    let (status, body) = c.post(LOGIN, password_login("carol", "secret")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@carol:test.local");
    let t1 = body["access_token"].as_str().unwrap().to_owned();
    let (status, body) = c
        .post(LOGIN, json!({"type": "m.login.password", "user": "@carol:test.local", "password": "secret", "device_id": "LAPTOP"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["device_id"], "LAPTOP");
    let t2 = body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(t1, t2);

    // Wrong password, unknown user, other server, unsupported type.
    assert_error(
        &c.post(LOGIN, password_login("carol", "wrong")).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &c.post(LOGIN, password_login("nobody", "secret")).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &c.post(LOGIN, password_login("@carol:elsewhere.org", "secret"))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &c.post(LOGIN, json!({"type": "m.login.token", "token": "x"}))
            .await,
        400,
        "M_UNKNOWN",
    );

    // Logging in again on LAPTOP replaces its token.
    let (_, body) = c
        .post(LOGIN, json!({"type": "m.login.password", "user": "carol", "password": "secret", "device_id": "LAPTOP"}))
        .await;
    let t3 = body["access_token"].as_str().unwrap().to_owned();
    assert_error(
        &c.clone()
            .with_token(&t2)
            .get("/_matrix/client/v3/account/whoami")
            .await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    let laptop = c.clone().with_token(&t3);
    assert_eq!(laptop.whoami().await.1, "LAPTOP");

    // Logout invalidates at once and deletes the device.
    let (status, _) = laptop.post("/_matrix/client/v3/logout", json!({})).await;
    assert_eq!(status, 200);
    assert_error(
        &laptop.get("/_matrix/client/v3/account/whoami").await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    let first = c.clone().with_token(&t1);
    let (_, devices) = first.get("/_matrix/client/v3/devices").await;
    let ids: Vec<&str> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&"LAPTOP"), "{ids:?}");

    // logout/all ends every session.
    let (_, body) = c.post(LOGIN, password_login("carol", "secret")).await;
    let other = c.clone().with_token(body["access_token"].as_str().unwrap());
    assert_eq!(
        first
            .post("/_matrix/client/v3/logout/all", json!({}))
            .await
            .0,
        200
    );
    assert_error(
        &first.get("/_matrix/client/v3/account/whoami").await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        &other.get("/_matrix/client/v3/account/whoami").await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    server.stop().await;
}

#[tokio::test]
async fn tokens_only_ever_act_as_their_owner() {
    let server = TestServer::start().await;
    let a = server.register("usera", "pa").await;
    let b = server.register("userb", "pb").await;
    assert_eq!(a.whoami().await.0, "@usera:test.local");
    assert_eq!(b.whoami().await.0, "@userb:test.local");
    // A cannot write B's account data, filters or profile, nor read B's data.
    let path = "/_matrix/client/v3/user/@userb:test.local/account_data/m.test";
    assert_error(&a.put(path, json!({"x": 1})).await, 403, "M_FORBIDDEN");
    assert_error(&a.get(path).await, 403, "M_FORBIDDEN");
    assert_error(
        &a.post(
            "/_matrix/client/v3/user/@userb:test.local/filter",
            json!({}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &a.put(
            "/_matrix/client/v3/profile/@userb:test.local/displayname",
            json!({"displayname": "pwned"}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    // A cannot see or delete B's devices.
    let (_, b_device) = b.whoami().await;
    assert_error(
        &a.get(&format!("/_matrix/client/v3/devices/{b_device}"))
            .await,
        404,
        "M_NOT_FOUND",
    );
    let (status, _) = a
        .delete(
            &format!("/_matrix/client/v3/devices/{b_device}"),
            json!({"auth": password_auth("usera", "pa", None)}),
        )
        .await;
    assert_eq!(
        status, 200,
        "deleting an unknown device of one's own is a no-op"
    );
    assert_eq!(b.whoami().await.1, b_device, "B's device survives");
    // UIA with B's password on A's session fails.
    let got = a
        .post(
            "/_matrix/client/v3/account/deactivate",
            json!({"auth": password_auth("userb", "pb", None)}),
        )
        .await;
    assert_eq!(
        (got.0, got.1["errcode"].clone()),
        (401, json!("M_FORBIDDEN")),
        "{}",
        got.1
    );
    assert_eq!(b.whoami().await.0, "@userb:test.local");
    assert_eq!(a.whoami().await.0, "@usera:test.local");
    // Tokens are stored only as hashes: the raw token appears nowhere in the store.
    let token = a.token.clone().unwrap();
    let kv = server.state.accounts.db().kv().clone();
    let all = kv
        .run(|tx, _| async move {
            tx.get_range_all(
                myelin::kv::RangeOption::new(b"".to_vec(), b"\xff".to_vec()),
                true,
            )
            .await
        })
        .await
        .unwrap();
    assert!(!all.is_empty());
    for pair in &all {
        assert!(!contains(&pair.key, token.as_bytes()) && !contains(&pair.value, token.as_bytes()));
    }
    server.stop().await;
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn change_password_with_uia() {
    let server = TestServer::start().await;
    let c = server.client();
    let dave = server.register("dave", "old").await;
    let (_, body) = c.post(LOGIN, password_login("dave", "old")).await;
    let other = c.clone().with_token(body["access_token"].as_str().unwrap());
    let path = "/_matrix/client/v3/account/password";

    let (status, body) = dave.post(path, json!({"new_password": "new"})).await;
    assert_eq!(status, 401);
    assert_eq!(body["flows"], json!([{"stages": ["m.login.password"]}]));
    let session = body["session"].as_str().unwrap().to_owned();
    // Wrong current password: 401 again with an error, nothing changes.
    let (status, body) = dave
        .post(
            path,
            json!({"new_password": "new", "auth": password_auth("dave", "bad", Some(&session))}),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].clone()),
        (401, json!("M_FORBIDDEN")),
        "{body}"
    );
    assert_eq!(body["session"], session.as_str());
    assert_eq!(c.post(LOGIN, password_login("dave", "old")).await.0, 200);
    // Right password: changed, other devices logged out, this one kept.
    let (status, body) = dave
        .post(
            path,
            json!({"new_password": "new", "auth": password_auth("dave", "old", Some(&session))}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_error(
        &c.post(LOGIN, password_login("dave", "old")).await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(c.post(LOGIN, password_login("dave", "new")).await.0, 200);
    assert_error(
        &other.get("/_matrix/client/v3/account/whoami").await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_eq!(dave.whoami().await.0, "@dave:test.local");

    // logout_devices: false keeps the others.
    let (_, body) = c.post(LOGIN, password_login("dave", "new")).await;
    let kept = c.clone().with_token(body["access_token"].as_str().unwrap());
    let body = json!({"new_password": "newer", "logout_devices": false, "auth": password_auth("dave", "new", None)});
    assert_eq!(dave.post(path, body).await.0, 200);
    assert_eq!(kept.whoami().await.0, "@dave:test.local");
    server.stop().await;
}

#[tokio::test]
async fn deactivated_users_cannot_log_in() {
    let server = TestServer::start().await;
    let c = server.client();
    let erin = server.register("erin", "pw").await;
    erin.put(
        "/_matrix/client/v3/profile/@erin:test.local/displayname",
        json!({"displayname": "Erin"}),
    )
    .await;
    let path = "/_matrix/client/v3/account/deactivate";
    let (status, body) = erin.post(path, json!({})).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = erin
        .post(path, json!({"auth": password_auth("erin", "pw", None)}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id_server_unbind_result"], "no-support");
    assert_error(
        &erin.get("/_matrix/client/v3/account/whoami").await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        &c.post(LOGIN, password_login("erin", "pw")).await,
        403,
        "M_FORBIDDEN",
    );
    // The ID is never reused, and the profile is gone.
    let got = c
        .post(
            REGISTER,
            json!({"username": "erin", "auth": {"type": "m.login.dummy"}}),
        )
        .await;
    assert_error(&got, 400, "M_USER_IN_USE");
    let (status, body) = c.get("/_matrix/client/v3/profile/@erin:test.local").await;
    assert_eq!((status, body.get("displayname")), (200, None), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn state_and_signing_key_survive_a_restart() {
    let server = TestServer::start().await;
    let frank = server.register("frank", "pw").await;
    let key_id = server.state.signing_key.key_id();
    let public = server.state.signing_key.public_key_base64();
    frank
        .put(
            "/_matrix/client/v3/user/@frank:test.local/account_data/m.x",
            json!({"v": 1}),
        )
        .await;
    let (clock, dir) = (server.clock.clone(), server.data_dir.clone());
    let tmp = server.stop().await;

    let server = TestServer::start_at(&dir, test_config(), clock).await;
    assert_eq!(server.state.signing_key.key_id(), key_id);
    assert_eq!(server.state.signing_key.public_key_base64(), public);
    let frank = server.client().with_token(frank.token.as_deref().unwrap());
    assert_eq!(frank.whoami().await.0, "@frank:test.local");
    let (status, body) = frank
        .get("/_matrix/client/v3/user/@frank:test.local/account_data/m.x")
        .await;
    assert_eq!((status, body), (200, json!({"v": 1})));
    assert_eq!(
        server
            .client()
            .post(LOGIN, password_login("frank", "pw"))
            .await
            .0,
        200
    );
    server.stop().await;
    drop(tmp);
}

#[tokio::test]
async fn login_and_registration_are_rate_limited() {
    let limit = RateLimit {
        per_second: 0.5,
        burst: 2,
    };
    let config = ServerConfig {
        login_per_ip: limit,
        register_per_ip: limit,
        ..test_config()
    };
    let server = TestServer::start_config(config).await;
    let c = server.client();
    server.register("gina", "pw").await; // 1 of 2 registrations
    // Availability checks have their own bucket under the same limit.
    for name in ["x", "y"] {
        let path = format!("/_matrix/client/v3/register/available?username={name}");
        assert_eq!(c.get(&path).await.0, 200);
    }
    let got = c
        .get("/_matrix/client/v3/register/available?username=z")
        .await;
    assert_error(&got, 429, "M_LIMIT_EXCEEDED");
    assert_eq!(got.1["retry_after_ms"], 2000);
    server.register("gina2", "pw").await; // 2 of 2 registrations
    let got = c
        .post(
            REGISTER,
            json!({"username": "gina3", "auth": {"type": "m.login.dummy"}}),
        )
        .await;
    assert_error(&got, 429, "M_LIMIT_EXCEEDED");

    assert_eq!(c.post(LOGIN, password_login("gina", "pw")).await.0, 200);
    assert_error(
        &c.post(LOGIN, password_login("gina", "wrong")).await,
        403,
        "M_FORBIDDEN",
    );
    let got = c.post(LOGIN, password_login("gina", "pw")).await;
    assert_error(&got, 429, "M_LIMIT_EXCEEDED");
    // A limited request changes nothing: still exactly 2 devices? (1 from
    // registration, 1 from the first login).
    let gina = server.client().with_token(&{
        server.clock.advance_ms(2000);
        let (_, body) = c.post(LOGIN, password_login("gina", "pw")).await;
        body["access_token"]
            .as_str()
            .expect("allowed after the wait")
            .to_owned()
    });
    let (_, devices) = gina.get("/_matrix/client/v3/devices").await;
    assert_eq!(devices["devices"].as_array().unwrap().len(), 3, "{devices}");
    server.stop().await;
}

/// Synapse's `rc_registration` default: three registrations, then 429.
/// Round trips of user-interactive auth and refused requests take nothing.
#[tokio::test]
async fn registration_limit_counts_accounts_not_uia_round_trips() {
    let config = ServerConfig {
        register_per_ip: ServerConfig::default().register_per_ip,
        ..test_config()
    };
    assert_eq!(config.register_per_ip.burst, 3);
    let server = TestServer::start_config(config).await;
    let c = server.client();
    let started = |name: &str| json!({"username": name, "password": "pw"});
    // UIA round trips that never complete cost nothing.
    for _ in 0..5 {
        assert_eq!(c.post(REGISTER, started("idle")).await.0, 401);
    }
    for i in 0..3 {
        let name = format!("reg{i}");
        // As clients do: a first request for the flows, then the stage.
        let (status, body) = c.post(REGISTER, started(&name)).await;
        assert_eq!(status, 401, "{body}");
        let session = body["session"].as_str().expect("session").to_owned();
        let mut request = started(&name);
        request["auth"] = json!({"type": "m.login.dummy", "session": session});
        let (status, body) = c.post(REGISTER, request).await;
        assert_eq!(status, 200, "registration {i}: {body}");
        if i < 2 {
            // A name already taken is refused and costs nothing.
            let mut again = started(&name);
            again["auth"] = json!({"type": "m.login.dummy"});
            assert_error(&c.post(REGISTER, again).await, 400, "M_USER_IN_USE");
        }
    }
    let got = c.post(REGISTER, started("reg3")).await;
    assert_error(&got, 429, "M_LIMIT_EXCEEDED");
    // A token is back after 1 / 0.17 s.
    server.clock.advance_ms(6000);
    let mut request = started("reg3");
    request["auth"] = json!({"type": "m.login.dummy"});
    assert_eq!(c.post(REGISTER, request).await.0, 200);
    server.stop().await;
}

/// A login for an unknown user, a user without a password or a deactivated
/// one runs the same single password verification as a wrong password, so
/// response time does not tell which accounts exist.
#[tokio::test]
async fn unknown_user_login_costs_one_verification_like_a_wrong_password() {
    let server = TestServer::start().await;
    let c = server.client();
    let accounts = server.state.accounts.clone();
    server.register("hana", "pw").await;
    let (status, body) = c
        .post(
            REGISTER,
            json!({"username": "nopw", "auth": {"type": "m.login.dummy"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ivy = server.register("ivy", "pw").await;
    let (status, body) = ivy
        .post(
            "/_matrix/client/v3/account/deactivate",
            json!({"auth": password_auth("ivy", "pw", None)}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let mut cases = vec![
        ("hana", "pw", 200),
        ("hana", "wrong", 403),
        ("nobody", "pw", 403),
        ("@nobody:test.local", "", 403),
        ("nopw", "", 403),
        ("ivy", "pw", 403),
    ];
    for (user, password, status) in cases.drain(..) {
        let before = accounts.password_verifications();
        let got = c.post(LOGIN, password_login(user, password)).await;
        assert_eq!(got.0, status, "{user}: {}", got.1);
        assert_eq!(
            accounts.password_verifications() - before,
            1,
            "login as {user} verifies one password"
        );
    }
    server.stop().await;
}
