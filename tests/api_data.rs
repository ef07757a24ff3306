//! Devices, profiles, account data (and its change log), filters and push
//! rules, against the real server on 127.0.0.1:0.

mod common_api;

use std::sync::atomic::Ordering;

use common_api::{TestServer, assert_error};
use serde_json::json;

const ME: &str = "@hana:test.local";

#[tokio::test]
async fn devices_list_get_rename_delete() {
    let server = TestServer::start().await;
    let hana = server.register("hana", "pw").await;
    let (_, this_device) = hana.whoami().await;
    let (_, body) = server
        .client()
        .post("/_matrix/client/v3/login", json!({"type": "m.login.password", "user": "hana", "password": "pw", "device_id": "TABLET"}))
        .await;
    let tablet = server
        .client()
        .with_token(body["access_token"].as_str().unwrap());

    let (status, body) = hana.get("/_matrix/client/v3/devices").await;
    assert_eq!(status, 200);
    assert_eq!(body["devices"].as_array().unwrap().len(), 2, "{body}");

    assert_eq!(
        hana.put(
            "/_matrix/client/v3/devices/TABLET",
            json!({"display_name": "Tab"})
        )
        .await
        .0,
        200
    );
    let (status, body) = hana.get("/_matrix/client/v3/devices/TABLET").await;
    assert_eq!((status, body["display_name"].clone()), (200, json!("Tab")));
    assert_error(
        &hana.get("/_matrix/client/v3/devices/NOPE").await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &hana
            .put(
                "/_matrix/client/v3/devices/NOPE",
                json!({"display_name": "x"}),
            )
            .await,
        404,
        "M_NOT_FOUND",
    );

    // Deleting needs UIA; without it nothing is deleted.
    let (status, body) = hana
        .delete("/_matrix/client/v3/devices/TABLET", json!({}))
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(tablet.whoami().await.1, "TABLET");
    let auth = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "hana"}, "password": "pw", "session": body["session"]});
    assert_eq!(
        hana.delete("/_matrix/client/v3/devices/TABLET", json!({"auth": auth}))
            .await
            .0,
        200
    );
    assert_error(
        &tablet.get("/_matrix/client/v3/account/whoami").await,
        401,
        "M_UNKNOWN_TOKEN",
    );

    // delete_devices, including the caller's own device.
    let (status, body) = hana
        .post(
            "/_matrix/client/v3/delete_devices",
            json!({"devices": [this_device]}),
        )
        .await;
    assert_eq!(status, 401);
    let auth = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "hana"}, "password": "pw", "session": body["session"]});
    assert_eq!(
        hana.post(
            "/_matrix/client/v3/delete_devices",
            json!({"devices": [this_device], "auth": auth})
        )
        .await
        .0,
        200
    );
    assert_error(
        &hana.get("/_matrix/client/v3/devices").await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    server.stop().await;
}

#[tokio::test]
async fn profiles() {
    let server = TestServer::start().await;
    let hana = server.register("hana", "pw").await;
    let anon = server.client();
    let path = format!("/_matrix/client/v3/profile/{ME}");
    assert_error(
        &anon.get(&format!("{path}/displayname")).await,
        404,
        "M_NOT_FOUND",
    );
    assert_eq!(
        hana.put(
            &format!("{path}/displayname"),
            json!({"displayname": "Hana"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        hana.put(
            &format!("{path}/avatar_url"),
            json!({"avatar_url": "mxc://test.local/abc"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        anon.get(&format!("{path}/displayname")).await,
        (200, json!({"displayname": "Hana"}))
    );
    assert_eq!(
        anon.get(&path).await,
        (
            200,
            json!({"displayname": "Hana", "avatar_url": "mxc://test.local/abc"})
        )
    );
    // Invalid values change nothing.
    let too_long = "x".repeat(300);
    assert_error(
        &hana
            .put(
                &format!("{path}/displayname"),
                json!({"displayname": too_long}),
            )
            .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &hana
            .put(&format!("{path}/avatar_url"), json!({"avatar_url": 5}))
            .await,
        400,
        "M_BAD_JSON",
    );
    assert_eq!(
        anon.get(&format!("{path}/displayname")).await.1["displayname"],
        "Hana"
    );
    // Unknown users and remote users have no profile here.
    assert_error(
        &anon
            .get("/_matrix/client/v3/profile/@nobody:test.local")
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &anon
            .get("/_matrix/client/v3/profile/@hana:elsewhere.org")
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &anon
            .put(&format!("{path}/displayname"), json!({"displayname": "x"}))
            .await,
        401,
        "M_MISSING_TOKEN",
    );
    server.stop().await;
}

#[tokio::test]
async fn account_data_global_and_per_room_with_change_log() {
    let server = TestServer::start().await;
    let hana = server.register("hana", "pw").await;
    let global = format!("/_matrix/client/v3/user/{ME}/account_data/org.example.cfg");
    let room =
        format!("/_matrix/client/v3/user/{ME}/rooms/!r:test.local/account_data/org.example.cfg");
    assert_error(&hana.get(&global).await, 404, "M_NOT_FOUND");
    assert_eq!(hana.put(&global, json!({"a": 1})).await.0, 200);
    assert_eq!(hana.put(&room, json!({"b": 2})).await.0, 200);
    assert_eq!(hana.get(&global).await, (200, json!({"a": 1})));
    assert_eq!(hana.get(&room).await, (200, json!({"b": 2})));
    // Not an object, server-managed types, bad room IDs: refused, nothing written.
    assert_error(&hana.put(&global, json!([1, 2])).await, 400, "M_BAD_JSON");
    let managed = format!("/_matrix/client/v3/user/{ME}/account_data/m.push_rules");
    assert_error(&hana.put(&managed, json!({})).await, 405, "M_BAD_JSON");
    let bad_room = format!("/_matrix/client/v3/user/{ME}/rooms/not-a-room/account_data/x");
    assert_eq!(hana.put(&bad_room, json!({})).await.0, 400);
    assert_eq!(hana.get(&global).await, (200, json!({"a": 1})));

    // The change log: one range read gives the latest value of each changed
    // (room, type) since a position, once.
    let db = server.state.accounts.db();
    let all = db.account_data_since(ME, None).await.unwrap();
    assert_eq!(all.len(), 2);
    let after_first = all[0].position;
    assert_eq!(hana.put(&global, json!({"a": 3})).await.0, 200);
    let changes = db.account_data_since(ME, Some(after_first)).await.unwrap();
    let summary: Vec<(Option<String>, String)> = changes
        .iter()
        .map(|c| (c.room_id.clone(), c.content.to_string()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Some("!r:test.local".into()), r#"{"b":2}"#.into()),
            (None, r#"{"a":3}"#.into())
        ]
    );
    assert!(changes[1].position > changes[0].position);
    assert!(
        db.account_data_since(ME, Some(changes[1].position))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        db.account_data_since(ME, None).await.unwrap().len(),
        2,
        "old log entry replaced"
    );
    server.stop().await;
}

#[tokio::test]
async fn filters() {
    let server = TestServer::start().await;
    let hana = server.register("hana", "pw").await;
    let filter = json!({"room": {"timeline": {"limit": 10}}, "event_fields": ["content.body"]});
    let (status, body) = hana
        .post(
            &format!("/_matrix/client/v3/user/{ME}/filter"),
            filter.clone(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["filter_id"].as_str().unwrap();
    let (status, got) = hana
        .get(&format!("/_matrix/client/v3/user/{ME}/filter/{id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["room"]["timeline"]["limit"], 10);
    assert_eq!(got["event_fields"], json!(["content.body"]));
    assert_error(
        &hana
            .get(&format!("/_matrix/client/v3/user/{ME}/filter/nope"))
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &hana
            .post(
                &format!("/_matrix/client/v3/user/{ME}/filter"),
                json!({"room": {"timeline": {"limit": "ten"}}}),
            )
            .await,
        400,
        "M_BAD_JSON",
    );
    let other = server.register("ivan", "pw").await;
    assert_error(
        &other
            .get(&format!("/_matrix/client/v3/user/{ME}/filter/{id}"))
            .await,
        403,
        "M_FORBIDDEN",
    );
    server.stop().await;
}

/// `DELETE /pushrules/...` retried after `commit_unknown_result` (the
/// embedded store applies the commit and reports it may not have): the
/// retry finds the rule gone and must answer 200 for the deletion that
/// happened, not 404; a rule that never existed still answers 404.
#[tokio::test]
async fn deleting_a_push_rule_survives_commit_unknown_result() {
    let server = TestServer::start().await;
    let hana = server.register("hana", "pw").await;
    let rule = "/_matrix/client/v3/pushrules/global/room/!r:test.local";
    assert_eq!(hana.put(rule, json!({"actions": ["notify"]})).await.0, 200);
    let faults = server
        .state
        .databases
        .accounts
        .db
        .as_embedded()
        .expect("embedded store")
        .faults();
    faults.commit_unknown_result.store(1, Ordering::SeqCst);
    assert_eq!(hana.delete(rule, json!({})).await, (200, json!({})));
    assert_eq!(faults.commit_unknown_result.load(Ordering::SeqCst), 0);
    assert_error(&hana.get(rule).await, 404, "M_NOT_FOUND");
    assert_error(&hana.delete(rule, json!({})).await, 404, "M_NOT_FOUND");
    let never = "/_matrix/client/v3/pushrules/global/room/!never:test.local";
    assert_error(&hana.delete(never, json!({})).await, 404, "M_NOT_FOUND");
    server.stop().await;
}

#[tokio::test]
async fn push_rules() {
    let server = TestServer::start().await;
    let hana = server.register("hana", "pw").await;
    let (status, body) = hana.get("/_matrix/client/v3/pushrules/").await;
    assert_eq!(status, 200);
    let overrides = body["global"]["override"].as_array().unwrap();
    assert!(
        overrides
            .iter()
            .any(|r| r["rule_id"] == ".m.rule.master" && r["default"] == true),
        "{body}"
    );
    let (status, global) = hana.get("/_matrix/client/v3/pushrules/global/").await;
    assert_eq!((status, &global), (200, &body["global"]));

    let rule = "/_matrix/client/v3/pushrules/global/room/!r:test.local";
    assert_error(&hana.get(rule).await, 404, "M_NOT_FOUND");
    assert_eq!(hana.put(rule, json!({"actions": ["notify"]})).await.0, 200);
    let (status, got) = hana.get(rule).await;
    assert_eq!(
        (status, got["actions"].clone(), got["enabled"].clone()),
        (200, json!(["notify"]), json!(true))
    );
    assert_eq!(
        hana.put(&format!("{rule}/enabled"), json!({"enabled": false}))
            .await
            .0,
        200
    );
    assert_eq!(
        hana.get(&format!("{rule}/enabled")).await,
        (200, json!({"enabled": false}))
    );
    assert_eq!(
        hana.put(&format!("{rule}/actions"), json!({"actions": []}))
            .await
            .0,
        200
    );
    assert_eq!(
        hana.get(&format!("{rule}/actions")).await,
        (200, json!({"actions": []}))
    );
    // Server-default rules can be disabled but not deleted or replaced.
    let master = "/_matrix/client/v3/pushrules/global/override/.m.rule.master";
    assert_eq!(
        hana.put(&format!("{master}/enabled"), json!({"enabled": true}))
            .await
            .0,
        200
    );
    assert_eq!(
        hana.get(&format!("{master}/enabled")).await.1["enabled"],
        true
    );
    assert_error(
        &hana.delete(master, json!({})).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &hana
            .put(master, json!({"actions": [], "conditions": []}))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    // Unknown before/after rules and unknown rules.
    let other = "/_matrix/client/v3/pushrules/global/room/!s:test.local?before=nope";
    assert_error(
        &hana.put(other, json!({"actions": []})).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &hana
            .put(
                "/_matrix/client/v3/pushrules/global/room/!x:test.local/enabled",
                json!({"enabled": true}),
            )
            .await,
        404,
        "M_NOT_FOUND",
    );
    // Delete.
    assert_eq!(hana.delete(rule, json!({})).await.0, 200);
    assert_error(&hana.get(rule).await, 404, "M_NOT_FOUND");
    assert_error(&hana.delete(rule, json!({})).await, 404, "M_NOT_FOUND");
    // Another user still has the defaults only.
    let ivan = server.register("ivan", "pw").await;
    let (_, theirs) = ivan.get("/_matrix/client/v3/pushrules/").await;
    assert!(
        theirs["global"]["room"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "{theirs}"
    );
    server.stop().await;
}
