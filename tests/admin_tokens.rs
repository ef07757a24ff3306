//! Registration tokens (issue 21 point 2): the admin API's token endpoints
//! with an admin, a non-admin and bad input; `m.login.registration_token`
//! registration with `registration_requires_token`; the validity endpoint;
//! expiry on the injected clock; and exact use counting under concurrent
//! registrations.

mod common_api;

use serde_json::{Value, json};

use common_api::{Client, TestServer, assert_error, test_config};

const TOKENS: &str = "/_synapse/admin/v1/registration_tokens";
const VALIDITY: &str = "/_matrix/client/v1/register/m.login.registration_token/validity";

/// A server that requires tokens, with an admin (made by the operator,
/// since registering needs a token).
async fn setup() -> (TestServer, Client) {
    let config = myelin::service::ServerConfig {
        registration_requires_token: true,
        ..test_config()
    };
    let server = TestServer::start_config(config).await;
    let id = server
        .state
        .accounts
        .create_user("admin", Some("pw-admin-1".into()))
        .await
        .expect("create the admin");
    server
        .state
        .accounts
        .set_admin(id.as_str(), true)
        .await
        .expect("make the admin");
    let admin = server
        .login("admin", "pw-admin-1")
        .await
        .expect("admin logs in");
    (server, admin)
}

async fn register(server: &TestServer, name: &str, token: &str) -> (u16, Value) {
    server
        .client()
        .fresh_connections()
        .post(
            "/_matrix/client/v3/register",
            json!({"username": name, "password": "pw-user-1",
                   "auth": {"type": "m.login.registration_token", "token": token}}),
        )
        .await
}

#[tokio::test]
async fn token_endpoints_create_read_update_delete() {
    let (server, admin) = setup().await;
    let (status, made) = admin
        .post(
            &format!("{TOKENS}/new"),
            json!({"token": "abcd", "uses_allowed": 2}),
        )
        .await;
    assert_eq!(status, 200, "{made}");
    assert_eq!(
        made,
        json!({"token": "abcd", "uses_allowed": 2, "pending": 0, "completed": 0, "expiry_time": null})
    );
    let (_, generated) = admin.post(&format!("{TOKENS}/new"), json!({})).await;
    let token = generated["token"].as_str().expect("a token");
    assert_eq!(token.len(), 16);
    assert_eq!(generated["uses_allowed"], Value::Null);
    let (_, short) = admin
        .post(&format!("{TOKENS}/new"), json!({"length": 5}))
        .await;
    assert_eq!(short["token"].as_str().map(str::len), Some(5));

    let (_, list) = admin.get(TOKENS).await;
    assert_eq!(
        list["registration_tokens"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(admin.get(&format!("{TOKENS}/abcd")).await.1, made);

    let (status, updated) = admin
        .put(
            &format!("{TOKENS}/abcd"),
            json!({"uses_allowed": null, "expiry_time": 1_900_000_000_000u64}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(updated["uses_allowed"], Value::Null);
    assert_eq!(updated["expiry_time"], 1_900_000_000_000u64);
    // A field left out is unchanged.
    let (_, same) = admin.put(&format!("{TOKENS}/abcd"), json!({})).await;
    assert_eq!(same, updated);

    let bad = [
        json!({"token": "abcd"}),
        json!({"token": "a b"}),
        json!({"token": "x".repeat(65)}),
        json!({"uses_allowed": -1}),
        json!({"uses_allowed": 1.5}),
        json!({"expiry_time": 5}),
        json!({"length": 0}),
        json!({"length": 65}),
    ];
    for body in bad {
        assert_error(
            &admin.post(&format!("{TOKENS}/new"), body.clone()).await,
            400,
            "M_INVALID_PARAM",
        );
    }
    assert_error(
        &admin
            .post(&format!("{TOKENS}/new"), json!({"nonsense": 1}))
            .await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &admin
            .put(&format!("{TOKENS}/abcd"), json!({"uses_allowed": "x"}))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &admin.get(&format!("{TOKENS}?valid=maybe")).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_eq!(
        admin.get(&format!("{TOKENS}/abcd")).await.1,
        updated,
        "refusals changed nothing"
    );

    // Non-admins and the unauthenticated.
    let alice = {
        register(&server, "alice", "abcd").await;
        server.login("alice", "pw-user-1").await.expect("alice")
    };
    assert_error(&alice.get(TOKENS).await, 403, "M_FORBIDDEN");
    assert_error(
        &alice.post(&format!("{TOKENS}/new"), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &alice.delete(&format!("{TOKENS}/abcd"), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(&server.client().get(TOKENS).await, 401, "M_MISSING_TOKEN");

    let (status, _) = admin.delete(&format!("{TOKENS}/abcd"), json!({})).await;
    assert_eq!(status, 200);
    assert_error(
        &admin.get(&format!("{TOKENS}/abcd")).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &admin.delete(&format!("{TOKENS}/abcd"), json!({})).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &admin
            .put(&format!("{TOKENS}/abcd"), json!({"uses_allowed": 1}))
            .await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn registration_needs_a_valid_token_and_counts_its_use() {
    let (server, admin) = setup().await;
    // Without auth: the flow names the token stage.
    let (status, flows) = server
        .client()
        .post(
            "/_matrix/client/v3/register",
            json!({"username": "bob", "password": "pw-1"}),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(flows["flows"][0]["stages"][0], "m.login.registration_token");
    let (status, _) = register(&server, "bob", "unknown").await;
    assert_eq!(status, 401);

    let now = myelin::service::Clock::now_ms(&server.clock);
    admin
        .post(
            &format!("{TOKENS}/new"),
            json!({"token": "soon", "uses_allowed": 5, "expiry_time": now + 1_000}),
        )
        .await;
    let validity = |token: &str| {
        let client = server.client();
        let path = format!("{VALIDITY}?token={token}");
        async move { client.get(&path).await }
    };
    assert_eq!(validity("soon").await, (200, json!({"valid": true})));
    assert_eq!(validity("unknown").await, (200, json!({"valid": false})));

    assert_eq!(register(&server, "bob", "soon").await.0, 200);
    assert_eq!(admin.get(&format!("{TOKENS}/soon")).await.1["completed"], 1);
    assert!(server.login("bob", "pw-user-1").await.is_ok());

    server.clock.advance_ms(1_000);
    assert_eq!(validity("soon").await, (200, json!({"valid": false})));
    assert_eq!(register(&server, "carol", "soon").await.0, 401);
    assert_eq!(admin.get(&format!("{TOKENS}/soon")).await.1["completed"], 1);
    let (_, valid) = admin.get(&format!("{TOKENS}?valid=true")).await;
    assert_eq!(valid["registration_tokens"], json!([]));
    let (_, invalid) = admin.get(&format!("{TOKENS}?valid=false")).await;
    assert_eq!(invalid["registration_tokens"][0]["token"], "soon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_never_overuse_a_token() {
    let (server, admin) = setup().await;
    const ALLOWED: u64 = 3;
    const RACERS: usize = 16;
    admin
        .post(
            &format!("{TOKENS}/new"),
            json!({"token": "few", "uses_allowed": ALLOWED}),
        )
        .await;
    let server = std::sync::Arc::new(server);
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(RACERS));
    let racers: Vec<_> = (0..RACERS)
        .map(|i| {
            let (server, start) = (server.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                register(&server, &format!("racer{i}"), "few").await.0
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for racer in racers {
        statuses.push(racer.await.expect("racer"));
    }
    let created = statuses.iter().filter(|&&s| s == 200).count();
    assert_eq!(created as u64, ALLOWED, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [200, 401, 403].contains(s)),
        "{statuses:?}"
    );
    let (_, token) = admin.get(&format!("{TOKENS}/few")).await;
    assert_eq!(token["completed"], ALLOWED);
    let (_, users) = admin.get("/_synapse/admin/v2/users?limit=100").await;
    assert_eq!(users["total"], 1 + ALLOWED, "{users}");
}
