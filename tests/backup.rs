//! Backup and restore (issue 21 point 3): a backup taken while clients keep
//! writing restores to a store equal to the source at the backup's read
//! version, on which a restarted server serves logins and syncs; a damaged
//! chunk is found by verify and refused by restore; a non-empty target is
//! refused unless forced.

mod common_api;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use myelin::backup::{self, BackupError};
use myelin::kv::embedded::{Database, EmbeddedOptions};
use myelin::service::ManualClock;
use serde_json::{Value, json};
use tokio::sync::Notify;

use common_api::{TestServer, test_config};

/// The message bodies of `room`'s timeline as `client` reads it, oldest
/// first.
async fn bodies(client: &common_api::Client, room: &str) -> Vec<String> {
    let (status, page) = client
        .get(&format!(
            "/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1000"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    let mut bodies: Vec<String> = page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().expect("body").to_owned())
        .collect();
    bodies.reverse();
    bodies
}

/// The whole store in `dir`, read at its current version.
fn store_contents(dir: &std::path::Path) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let db = Database::open(dir, EmbeddedOptions::default()).expect("open the store");
    let reader = db.snapshot_reader().expect("reader");
    let all = backup::scan_all(&reader).expect("scan");
    drop(reader);
    db.shutdown();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_restores_the_snapshot_and_serves() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (src, out, dst) = (
        tmp.path().join("src"),
        tmp.path().join("backup"),
        tmp.path().join("dst"),
    );
    let clock = ManualClock::new(1_700_000_000_000);
    let server = TestServer::start_at(&src, test_config(), clock.clone()).await;
    let alice = server.register("alice", "pw-alice-1").await;
    let bob = server.register("bob", "pw-bob-1").await;
    let room = alice
        .create_room(json!({"preset": "public_chat", "name": "Lobby"}))
        .await;
    bob.join(&room).await;
    for i in 0..20 {
        alice
            .say(&room, &format!("before-{i}"), &format!("before {i}"))
            .await;
    }

    // The load: bob sends and new users register until told to stop.
    let sent = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(Notify::new());
    let stop = Arc::new(tokio::sync::Notify::new());
    let load = {
        let (bob, room, sent, progress, stop) = (
            bob.clone(),
            room.clone(),
            sent.clone(),
            progress.clone(),
            stop.clone(),
        );
        let server_client = server.client();
        tokio::spawn(async move {
            let stopped = stop.notified();
            tokio::pin!(stopped);
            for i in 0.. {
                let step = async {
                    bob.say(&room, &format!("load-{i}"), &format!("load {i}"))
                        .await;
                    let (status, _) = server_client
                        .post(
                            "/_matrix/client/v3/register",
                            json!({"username": format!("load{i}"), "password": "pw-load-1",
                                   "auth": {"type": "m.login.dummy"}}),
                        )
                        .await;
                    assert_eq!(status, 200);
                };
                tokio::select! {
                    () = &mut stopped => break,
                    () = step => {}
                }
                sent.fetch_add(1, Ordering::SeqCst);
                progress.notify_one();
            }
        })
    };
    // The backup starts once the load runs, and the load goes on after.
    while sent.load(Ordering::SeqCst) < 3 {
        progress.notified().await;
    }
    let stores = backup::stores_of(&server.state.databases);
    let snapshot = backup::snapshot(&stores).await.expect("snapshot");
    let read_version = snapshot.read_versions()[0];
    let expected = snapshot.contents(0).expect("source at the read version");
    let sent_at_snapshot = sent.load(Ordering::SeqCst);
    let (manifest, summary) = snapshot.write(&out).await.expect("write the backup");
    let after = sent.load(Ordering::SeqCst);
    while sent.load(Ordering::SeqCst) < after + 3 {
        progress.notified().await;
    }
    stop.notify_one();
    load.await.expect("load task");
    drop(stores);
    assert_eq!(manifest.stores.len(), 1, "one shared embedded store");
    assert_eq!(manifest.databases.len(), myelin::db::SPECS.len());
    assert!(
        manifest
            .databases
            .iter()
            .all(|d| d.read_version == read_version)
    );
    assert_eq!(summary.pairs, expected.len() as u64);
    // The source moved on after the snapshot.
    let source_now = server
        .state
        .databases
        .accounts
        .db
        .as_embedded()
        .expect("embedded")
        .last_version();
    assert!(source_now > read_version);

    assert_eq!(backup::verify(&out).expect("verify").pairs, summary.pairs);
    let targets = myelin::db::connect(&myelin::db::embedded_config(&dst)).expect("target");
    backup::restore(targets, &out, false)
        .await
        .expect("restore");
    let restored = store_contents(&dst);
    assert_eq!(restored.len(), expected.len());
    assert!(
        restored == expected,
        "the restore equals the source at the read version"
    );

    // A server on the restored store: logins, the room's history up to the
    // backup, and new messages after it.
    server.stop().await;
    let server = TestServer::start_at(&dst, test_config(), clock).await;
    let alice = server
        .login("alice", "pw-alice-1")
        .await
        .expect("alice logs in on the restore");
    let history = bodies(&alice, &room).await;
    let before: Vec<String> = (0..20).map(|i| format!("before {i}")).collect();
    assert_eq!(history[..20], before[..]);
    let loaded = history.len() - 20;
    assert!(
        (sent_at_snapshot..=sent_at_snapshot + 1).contains(&loaded),
        "{loaded} load messages in the backup, {sent_at_snapshot} acknowledged at the snapshot"
    );
    let (status, sync) = alice.get("/_matrix/client/v3/sync").await;
    assert_eq!(status, 200, "{sync}");
    let since = sync["next_batch"].as_str().expect("next_batch").to_owned();
    assert!(sync["rooms"]["join"][&room].is_object(), "{sync}");
    alice.say(&room, "after-1", "after the restore").await;
    let (status, next) = alice
        .get(&format!("/_matrix/client/v3/sync?since={since}&timeout=0"))
        .await;
    assert_eq!(status, 200);
    let timeline: Vec<&Value> = next["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .expect("the new message syncs")
        .iter()
        .collect();
    assert_eq!(
        timeline.last().expect("an event")["content"]["body"],
        "after the restore"
    );
    assert_eq!(
        bodies(&alice, &room).await.last().map(String::as_str),
        Some("after the restore"),
        "new events sort after the restored ones"
    );
    server.stop().await;
}

#[tokio::test]
async fn damaged_chunks_and_full_targets_are_refused() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (src, out, dst) = (
        tmp.path().join("src"),
        tmp.path().join("backup"),
        tmp.path().join("dst"),
    );
    let server =
        TestServer::start_at(&src, test_config(), ManualClock::new(1_700_000_000_000)).await;
    server.register("alice", "pw-alice-1").await;
    server.stop().await;

    // The server is stopped: the stores are opened directly.
    let stores = myelin::db::connect(&myelin::db::embedded_config(&src)).expect("source");
    backup::create(&stores, &out).await.expect("backup");
    assert!(matches!(
        backup::create(&stores, &out).await,
        Err(BackupError::DirectoryNotEmpty(_))
    ));
    drop(stores);

    // A full target is refused, then cleared with force.
    let full = myelin::db::connect(&myelin::db::embedded_config(&src)).expect("full target");
    assert!(matches!(
        backup::restore(full, &out, false).await,
        Err(BackupError::TargetNotEmpty(_))
    ));
    let full = myelin::db::connect(&myelin::db::embedded_config(&src)).expect("full target");
    backup::restore(full, &out, true)
        .await
        .expect("forced restore");

    // One flipped byte in a chunk.
    let manifest = backup::read_manifest(&out).expect("manifest");
    let chunk = out.join(&manifest.stores[0].chunks[0].file);
    let mut bytes = std::fs::read(&chunk).expect("read chunk");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&chunk, &bytes).expect("write chunk");
    let err = backup::verify(&out).expect_err("verify finds the damage");
    assert!(matches!(err, BackupError::Corrupt(_)), "{err}");
    let targets = myelin::db::connect(&myelin::db::embedded_config(&dst)).expect("target");
    let err = backup::restore(targets, &out, false)
        .await
        .expect_err("restore refuses");
    assert!(matches!(err, BackupError::Corrupt(_)), "{err}");
    assert!(store_contents(&dst).is_empty(), "nothing was written");

    // A truncated chunk and a missing manifest.
    bytes[middle] ^= 0x01;
    std::fs::write(&chunk, &bytes[..bytes.len() - 3]).expect("truncate");
    assert!(matches!(backup::verify(&out), Err(BackupError::Corrupt(_))));
    std::fs::remove_file(out.join(backup::MANIFEST)).expect("remove manifest");
    assert!(matches!(backup::verify(&out), Err(BackupError::Corrupt(_))));
}

#[tokio::test]
async fn the_running_server_writes_backups_under_its_directory_only() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("backups");
    let config = myelin::service::ServerConfig {
        backup_dir: Some(root.clone()),
        ..test_config()
    };
    let server = TestServer::start_config(config).await;
    let admin = server.register("admin", "pw-admin-1").await;
    let alice = server.register("alice", "pw-alice-1").await;
    server
        .state
        .accounts
        .set_admin("admin", true)
        .await
        .expect("make the admin");
    const PATH: &str = "/_myelin/admin/v1/backup";
    common_api::assert_error(
        &alice.post(PATH, json!({"name": "b1"})).await,
        403,
        "M_FORBIDDEN",
    );
    for bad in ["", "../escape", ".hidden", "a/b", "x y"] {
        common_api::assert_error(
            &admin.post(PATH, json!({"name": bad})).await,
            400,
            "M_INVALID_PARAM",
        );
    }
    assert!(!root.exists(), "refused requests write nothing");
    let (status, body) = admin.post(PATH, json!({"name": "b1"})).await;
    assert_eq!(status, 200, "{body}");
    let verified = backup::verify(&root.join("b1")).expect("the backup verifies");
    assert_eq!(body["pairs"], verified.pairs);
    common_api::assert_error(
        &admin.post(PATH, json!({"name": "b1"})).await,
        400,
        "M_INVALID_PARAM",
    );

    // No directory configured: refused.
    let plain = TestServer::start().await;
    let admin = plain.register("admin", "pw-admin-1").await;
    plain
        .state
        .accounts
        .set_admin("admin", true)
        .await
        .expect("make the admin");
    common_api::assert_error(
        &admin.post(PATH, json!({"name": "b1"})).await,
        403,
        "M_FORBIDDEN",
    );
}
