//! Discovery endpoints, error mapping (unknown endpoints and methods, JSON
//! errors, body limits, missing and unknown tokens), CORS, and graceful
//! shutdown, against the real server on 127.0.0.1:0.

mod common_api;

use common_api::{TestServer, assert_error, test_config};
use myelin::service::ServerConfig;
use serde_json::json;

#[tokio::test]
async fn discovery_endpoints() {
    let server = TestServer::start().await;
    let c = server.client();

    let (status, body) = c.get("/_matrix/client/versions").await;
    assert_eq!(status, 200);
    let versions: Vec<&str> = body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(versions.contains(&"v1.11"), "{body}");

    let (status, body) = c.get("/.well-known/matrix/client").await;
    assert_eq!(status, 200);
    assert_eq!(body["m.homeserver"]["base_url"], "https://test.local");

    let (status, body) = c.get("/_matrix/client/v3/capabilities").await;
    assert_eq!(status, 200, "{body}");
    // `m.change_password` defaults to enabled; ruma omits it when it is.
    assert_ne!(body["capabilities"]["m.change_password"]["enabled"], false);
    assert_eq!(body["capabilities"]["m.room_versions"]["default"], "11");

    let (status, body) = c.get("/_matrix/client/v3/login").await;
    assert_eq!(status, 200);
    assert_eq!(body["flows"], json!([{"type": "m.login.password"}]));

    // r0 paths are served too.
    assert_eq!(c.get("/_matrix/client/r0/login").await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn unknown_endpoints_and_methods_are_unrecognized() {
    let server = TestServer::start().await;
    let c = server.client();
    assert_error(
        &c.get("/_matrix/client/v3/no_such_thing").await,
        404,
        "M_UNRECOGNIZED",
    );
    assert_error(&c.get("/nothing").await, 404, "M_UNRECOGNIZED");
    // `/login` exists for GET and POST, not PUT.
    assert_error(
        &c.put("/_matrix/client/v3/login", json!({})).await,
        405,
        "M_UNRECOGNIZED",
    );
    server.stop().await;
}

#[tokio::test]
async fn malformed_bodies_are_not_json_or_bad_json() {
    let server = TestServer::start().await;
    let c = server.client();
    assert_error(
        &c.post_raw("/_matrix/client/v3/login", b"{not json".to_vec())
            .await,
        400,
        "M_NOT_JSON",
    );
    assert_error(
        &c.post(
            "/_matrix/client/v3/login",
            json!({"type": "m.login.password", "password": 5}),
        )
        .await,
        400,
        "M_BAD_JSON",
    );
    server.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_too_large() {
    let config = ServerConfig {
        max_request_bytes: 1024,
        ..test_config()
    };
    let server = TestServer::start_config(config).await;
    let big = json!({"username": "a".repeat(4096), "auth": {"type": "m.login.dummy"}});
    assert_error(
        &server
            .client()
            .post("/_matrix/client/v3/register", big)
            .await,
        413,
        "M_TOO_LARGE",
    );
    // Nothing was registered.
    assert!(server.state.accounts.list_users().await.unwrap().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn missing_and_unknown_tokens() {
    let server = TestServer::start().await;
    let c = server.client();
    assert_error(
        &c.get("/_matrix/client/v3/account/whoami").await,
        401,
        "M_MISSING_TOKEN",
    );
    let bogus = c.clone().with_token("myl_not_a_real_token");
    let got = bogus.get("/_matrix/client/v3/account/whoami").await;
    assert_error(&got, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(got.1["soft_logout"], false);
    // The deprecated query parameter works too.
    let alice = server.register("alice", "pw-alice").await;
    let token = alice.token.clone().unwrap();
    let (status, body) = c
        .get(&format!(
            "/_matrix/client/v3/account/whoami?access_token={token}"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@alice:test.local");
    server.stop().await;
}

#[tokio::test]
async fn cors_preflight_and_headers() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let resp = http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/_matrix/client/v3/login", server.base),
        )
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let methods = h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    for m in ["GET", "POST", "PUT", "DELETE", "OPTIONS"] {
        assert!(methods.contains(m), "{methods}");
    }
    let headers = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for name in ["x-requested-with", "content-type", "authorization"] {
        assert!(headers.contains(name), "{headers}");
    }
    let resp = http
        .get(format!("{}/_matrix/client/versions", server.base))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_drains_and_stops_accepting() {
    let server = TestServer::start().await;
    let base = server.base.clone();
    let c = server.client();
    assert_eq!(c.get("/_matrix/client/versions").await.0, 200);
    server.stop().await;
    let refused = reqwest::Client::new()
        .get(format!("{base}/_matrix/client/versions"))
        .send()
        .await;
    assert!(refused.is_err(), "server still answering after shutdown");
}

#[test]
fn accounts_layout_is_listed_by_myelin_keys_layout() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_myelin"))
        .args(["keys", "layout"])
        .output()
        .expect("run myelin keys layout");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "sessions",
        "token_sha256",
        "account_data",
        "position: versionstamp",
        "signing_key",
        "push_rules",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}
