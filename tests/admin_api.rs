//! The Synapse-compatible admin API over a real server (issue 21 point 2):
//! every endpoint with an admin, a non-admin, no token and bad input, and
//! that refused requests change nothing.

mod common_api;

use serde_json::{Value, json};

use common_api::{Client, TestServer, assert_error};

struct Admin {
    server: TestServer,
    admin: Client,
    alice: Client,
}

async fn setup() -> Admin {
    let server = TestServer::start().await;
    let admin = server.register("admin", "pw-admin-1").await;
    let alice = server.register("alice", "pw-alice-1").await;
    server
        .state
        .accounts
        .set_admin("admin", true)
        .await
        .expect("make the admin");
    Admin {
        server,
        admin,
        alice,
    }
}

const USERS: &str = "/_synapse/admin/v2/users";

fn names(page: &Value) -> Vec<String> {
    page["users"]
        .as_array()
        .expect("users is an array")
        .iter()
        .map(|u| u["name"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test]
async fn server_version_needs_no_token() {
    let t = setup().await;
    let (status, body) = t
        .server
        .client()
        .get("/_synapse/admin/v1/server_version")
        .await;
    assert_eq!(status, 200);
    assert!(
        body["server_version"]
            .as_str()
            .expect("a string")
            .starts_with("myelin ")
    );
}

#[tokio::test]
async fn only_admins_reach_the_admin_api() {
    let t = setup().await;
    let alice_id = t.alice.whoami().await.0;
    let paths = [
        USERS.to_string(),
        format!("{USERS}/{alice_id}"),
        format!("/_synapse/admin/v1/whois/{alice_id}"),
    ];
    for path in &paths {
        assert_error(&t.alice.get(path).await, 403, "M_FORBIDDEN");
        assert_error(&t.server.client().get(path).await, 401, "M_MISSING_TOKEN");
        assert_eq!(t.admin.get(path).await.0, 200, "{path}");
    }
    let deactivate = format!("/_synapse/admin/v1/deactivate/{alice_id}");
    assert_error(
        &t.alice.post(&deactivate, json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    let reset = format!("/_synapse/admin/v1/reset_password/{alice_id}");
    assert_error(
        &t.alice
            .post(&reset, json!({"new_password": "taken-over"}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    let put = format!("{USERS}/@mallory:test.local");
    assert_error(
        &t.alice.put(&put, json!({"admin": true})).await,
        403,
        "M_FORBIDDEN",
    );
    // Nothing changed: alice still logs in with her password, mallory
    // does not exist.
    assert!(t.server.login("alice", "pw-alice-1").await.is_ok());
    assert_error(&t.admin.get(&put).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn users_list_pages_filters_and_counts() {
    let t = setup().await;
    for name in ["carol", "dave", "erin"] {
        t.server.register(name, "pw-some-1").await;
    }
    let (status, page) = t.admin.get(&format!("{USERS}?limit=2")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 5);
    assert_eq!(names(&page), ["@admin:test.local", "@alice:test.local"]);
    assert_eq!(page["next_token"], "2");
    let first = &page["users"][0];
    assert_eq!(first["admin"], true);
    assert_eq!(first["deactivated"], false);
    assert_eq!(first["is_guest"], false);
    assert!(first["creation_ts"].as_u64().expect("a number") > 0);

    let (_, last) = t.admin.get(&format!("{USERS}?from=4&limit=2")).await;
    assert_eq!(names(&last), ["@erin:test.local"]);
    assert!(last.get("next_token").is_none(), "{last}");

    let (_, named) = t.admin.get(&format!("{USERS}?name=ER")).await;
    assert_eq!(names(&named), ["@erin:test.local"]);
    assert_eq!(named["total"], 1);

    // Deactivated users are left out unless asked for.
    let (status, _) = t
        .admin
        .post("/_synapse/admin/v1/deactivate/@dave:test.local", json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, active) = t.admin.get(USERS).await;
    assert!(!names(&active).contains(&"@dave:test.local".to_owned()));
    let (_, all) = t.admin.get(&format!("{USERS}?deactivated=true")).await;
    assert!(names(&all).contains(&"@dave:test.local".to_owned()));

    for bad in [
        "limit=0",
        "limit=x",
        "from=-1",
        "deactivated=yes",
        "limit=100000",
    ] {
        assert_error(
            &t.admin.get(&format!("{USERS}?{bad}")).await,
            400,
            "M_INVALID_PARAM",
        );
    }
}

#[tokio::test]
async fn put_user_creates_then_updates() {
    let t = setup().await;
    let path = format!("{USERS}/@frank:test.local");
    let (status, created) = t
        .admin
        .put(
            &path,
            json!({"password": "pw-frank-1", "displayname": "Frank", "admin": false}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "@frank:test.local");
    assert_eq!(created["displayname"], "Frank");
    assert_eq!(created["threepids"], json!([]));
    let frank = t
        .server
        .login("frank", "pw-frank-1")
        .await
        .expect("frank logs in");

    let (status, updated) = t
        .admin
        .put(&path, json!({"admin": true, "password": "pw-frank-2"}))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["admin"], true);
    // The new password logged every device out (logout_devices defaults to true).
    assert_error(
        &frank.get("/_matrix/client/v3/account/whoami").await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert!(t.server.login("frank", "pw-frank-2").await.is_ok());
    assert_eq!(t.admin.get(&path).await.1, updated);

    // Bad input changes nothing.
    assert_error(
        &t.admin
            .put(&format!("{USERS}/@x:elsewhere"), json!({}))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &t.admin
            .put(&format!("{USERS}/@Bad Name:test.local"), json!({}))
            .await,
        400,
        "M_INVALID_USERNAME",
    );
    assert_error(
        &t.admin.put(&path, json!({"admin": "yes"})).await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &t.admin.put(&path, json!({"nonsense": 1})).await,
        400,
        "M_BAD_JSON",
    );
    assert_eq!(t.admin.get(&path).await.1, updated);

    let (status, gone) = t.admin.put(&path, json!({"deactivated": true})).await;
    assert_eq!(status, 200);
    assert_eq!(gone["deactivated"], true);
    assert_error(
        &t.admin.put(&path, json!({"deactivated": false})).await,
        400,
        "M_INVALID_PARAM",
    );
    assert!(t.server.login("frank", "pw-frank-2").await.is_err());
}

#[tokio::test]
async fn reset_password_and_deactivate() {
    let t = setup().await;
    let reset = "/_synapse/admin/v1/reset_password/@alice:test.local";
    let (status, body) = t
        .admin
        .post(
            reset,
            json!({"new_password": "pw-alice-2", "logout_devices": false}),
        )
        .await;
    assert_eq!((status, body), (200, json!({})));
    // logout_devices false: alice's session lives on.
    assert_eq!(
        t.alice.get("/_matrix/client/v3/account/whoami").await.0,
        200
    );
    assert!(t.server.login("alice", "pw-alice-1").await.is_err());
    assert!(t.server.login("alice", "pw-alice-2").await.is_ok());

    assert_error(&t.admin.post(reset, json!({})).await, 400, "M_BAD_JSON");
    assert_error(
        &t.admin
            .post(
                "/_synapse/admin/v1/reset_password/@nobody:test.local",
                json!({"new_password": "x"}),
            )
            .await,
        404,
        "M_NOT_FOUND",
    );

    let (_, whois) = t
        .admin
        .get("/_synapse/admin/v1/whois/@alice:test.local")
        .await;
    assert_eq!(whois["user_id"], "@alice:test.local");
    // Two devices: the first session and the login above.
    assert_eq!(
        whois["devices"][""]["sessions"].as_array().map(Vec::len),
        Some(2)
    );

    let deactivate = "/_synapse/admin/v1/deactivate/@alice:test.local";
    let (status, body) = t.admin.post(deactivate, json!({"erase": false})).await;
    assert_eq!(status, 200);
    assert_eq!(body["id_server_unbind_result"], "success");
    assert_error(
        &t.alice.get("/_matrix/client/v3/account/whoami").await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert!(t.server.login("alice", "pw-alice-2").await.is_err());
    assert_error(
        &t.admin
            .post(
                "/_synapse/admin/v1/deactivate/@nobody:test.local",
                json!({}),
            )
            .await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn rooms_list_details_members_and_state() {
    let t = setup().await;
    let lobby = t
        .alice
        .create_room(json!({"preset": "public_chat", "name": "Lobby", "room_alias_name": "lobby"}))
        .await;
    let quiet = t.alice.create_room(json!({"name": "Attic"})).await;
    let bob = t.server.register("bob", "pw-bob-1").await;
    bob.join(&lobby).await;
    let (status, page) = t.admin.get("/_synapse/admin/v1/rooms").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total_rooms"], 2);
    assert_eq!(page["offset"], 0);
    // Ordered by name: Attic, Lobby.
    assert_eq!(page["rooms"][0]["room_id"], quiet.as_str());
    let first = &page["rooms"][1];
    assert_eq!(first["name"], "Lobby");
    assert_eq!(first["canonical_alias"], "#lobby:test.local");
    assert_eq!(first["joined_members"], 2);
    assert_eq!(first["creator"], "@alice:test.local");
    assert_eq!(first["join_rules"], "public");

    let (_, by_members) = t
        .admin
        .get("/_synapse/admin/v1/rooms?order_by=joined_members&dir=b&limit=1")
        .await;
    assert_eq!(by_members["rooms"][0]["room_id"], lobby.as_str());
    assert_eq!(by_members["next_batch"], 1);
    let (_, searched) = t
        .admin
        .get("/_synapse/admin/v1/rooms?search_term=attic")
        .await;
    assert_eq!(searched["total_rooms"], 1);
    assert_eq!(searched["rooms"][0]["name"], "Attic");

    let (status, details) = t
        .admin
        .get(&format!("/_synapse/admin/v1/rooms/{lobby}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(details["name"], "Lobby");
    assert_eq!(details["forgotten"], false);
    let (_, members) = t
        .admin
        .get(&format!("/_synapse/admin/v1/rooms/{lobby}/members"))
        .await;
    assert_eq!(members["total"], 2);
    assert_eq!(
        members["members"],
        json!(["@alice:test.local", "@bob:test.local"])
    );
    let (_, state) = t
        .admin
        .get(&format!("/_synapse/admin/v1/rooms/{lobby}/state"))
        .await;
    assert!(
        state["state"]
            .as_array()
            .expect("state")
            .iter()
            .any(|e| e["type"] == "m.room.create")
    );

    for bad in ["order_by=size", "dir=up", "limit=0", "from=x"] {
        assert_error(
            &t.admin
                .get(&format!("/_synapse/admin/v1/rooms?{bad}"))
                .await,
            400,
            "M_INVALID_PARAM",
        );
    }
    assert_error(
        &t.admin
            .get("/_synapse/admin/v1/rooms/!nope:test.local")
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &t.admin.get("/_synapse/admin/v1/rooms/nope").await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &t.alice.get("/_synapse/admin/v1/rooms").await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &t.alice
            .get(&format!("/_synapse/admin/v1/rooms/{lobby}/state"))
            .await,
        403,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn room_delete_with_block_kicks_unlists_and_blocks() {
    let t = setup().await;
    let room = t
        .alice
        .create_room(json!({"preset": "public_chat", "name": "Doomed", "room_alias_name": "doomed", "visibility": "public"}))
        .await;
    let bob = t.server.register("bob", "pw-bob-1").await;
    bob.join(&room).await;
    let path = format!("/_synapse/admin/v2/rooms/{room}");
    assert_error(
        &t.alice.delete(&path, json!({"block": true})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &t.admin
            .delete("/_synapse/admin/v2/rooms/!nope:test.local", json!({}))
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &t.admin
            .delete(&path, json!({"new_room_user_id": "@admin:test.local"}))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &t.admin.delete(&path, json!({"block": "yes"})).await,
        400,
        "M_BAD_JSON",
    );
    // Refusals changed nothing: bob is still joined.
    let (_, members) = t
        .admin
        .get(&format!("/_synapse/admin/v1/rooms/{room}/members"))
        .await;
    assert_eq!(members["total"], 2);

    // Without purge: the room stays, empty (tests/admin_purge.rs purges).
    let (status, answer) = t
        .admin
        .delete(&path, json!({"block": true, "purge": false}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let delete_id = answer["delete_id"].as_str().expect("delete_id").to_owned();
    let (status, by_room) = t.admin.get(&format!("{path}/delete_status")).await;
    assert_eq!(status, 200, "{by_room}");
    let result = &by_room["results"][0];
    assert_eq!(result["delete_id"], delete_id.as_str());
    assert_eq!(result["status"], "complete");
    let mut kicked: Vec<String> =
        serde_json::from_value(result["shutdown_room"]["kicked_users"].clone())
            .expect("kicked users");
    kicked.sort();
    assert_eq!(kicked, ["@alice:test.local", "@bob:test.local"]);
    assert_eq!(
        result["shutdown_room"]["local_aliases"],
        json!(["#doomed:test.local"])
    );
    let (_, by_id) = t
        .admin
        .get(&format!(
            "/_synapse/admin/v2/rooms/delete_status/{delete_id}"
        ))
        .await;
    assert_eq!(&by_id, result);

    // Nobody is left, the alias and the directory entry are gone, and the
    // room cannot be joined again.
    let (_, members) = t
        .admin
        .get(&format!("/_synapse/admin/v1/rooms/{room}/members"))
        .await;
    assert_eq!(members["total"], 0);
    assert_error(
        &bob.get("/_matrix/client/v3/directory/room/%23doomed:test.local")
            .await,
        404,
        "M_NOT_FOUND",
    );
    let (_, public) = bob.get("/_matrix/client/v3/publicRooms").await;
    assert_eq!(public["chunk"], json!([]));
    assert_error(
        &bob.post(&format!("/_matrix/client/v3/rooms/{room}/join"), json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &t.alice
            .post(&format!("/_matrix/client/v3/join/{room}"), json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &t.admin
            .get("/_synapse/admin/v2/rooms/delete_status/nope")
            .await,
        404,
        "M_NOT_FOUND",
    );

    // The status is stored: it outlives a restart.
    let clock = t.server.clock.clone();
    let dir = t.server.data_dir.clone();
    let _tmp = t.server.stop().await;
    let server = TestServer::start_at(&dir, common_api::test_config(), clock).await;
    let admin = server.login("admin", "pw-admin-1").await.expect("admin");
    let (status, again) = admin
        .get(&format!(
            "/_synapse/admin/v2/rooms/delete_status/{delete_id}"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["status"], "complete");
    let bob = server.login("bob", "pw-bob-1").await.expect("bob");
    assert_error(
        &bob.post(&format!("/_matrix/client/v3/rooms/{room}/join"), json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );
}
