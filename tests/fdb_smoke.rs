//! The db-level smoke test of a live FoundationDB cluster (issue 24, point
//! 7): every database on the cluster named by `FDB_CLUSTER_FILE`, under a
//! fresh directory root `["myelin-test", "<unix seconds>-<random>"]`, then
//! register, create a room, send, sync through the real HTTP API, and remove
//! the root. Roots that a crashed run left behind, older than an hour, are
//! swept first. Run by `FDB_CLUSTER_FILE=... scripts/test` (built with
//! `--features fdb`); without the feature or the variable it says so and
//! passes without touching anything.

mod common;
mod common_api;

use std::time::Duration;

use common_api::{TestServer, test_config};
use myelin::config::{Backend, DatabaseConfig, DatabasesConfig};
use myelin::db;
use myelin::kv::{self, directory::DirectoryLayer};
use myelin::service::ManualClock;
use serde_json::json;

/// The directory every smoke test's root goes under.
const TEST_ROOT: &str = "myelin-test";
/// Roots older than this are a crashed run's, and swept.
const STALE: Duration = Duration::from_secs(3600);

/// Removes every root under [`TEST_ROOT`] dated more than [`STALE`] ago.
async fn sweep_stale_roots(store: &kv::Database) {
    let cutoff = common::unix_seconds().saturating_sub(STALE.as_secs());
    // Safe to run twice: removing a removed directory is a no-op.
    let swept = store
        .run(|tx, _| async move {
            let layer = DirectoryLayer::default();
            if !layer.exists(&tx, &[TEST_ROOT]).await? {
                return Ok(0);
            }
            let mut swept = 0;
            for name in layer.list(&tx, &[TEST_ROOT]).await? {
                let dated = name.split('-').next().and_then(|s| s.parse::<u64>().ok());
                if dated.is_some_and(|secs| secs < cutoff) {
                    layer.remove(&tx, &[TEST_ROOT, &name]).await?;
                    swept += 1;
                }
            }
            Ok::<_, kv::directory::DirectoryError>(swept)
        })
        .await
        .expect("sweep stale test roots");
    if swept > 0 {
        eprintln!("fdb smoke: swept {swept} stale test roots");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_create_send_sync_on_a_live_cluster() {
    let Some(cluster_file) = std::env::var_os("FDB_CLUSTER_FILE") else {
        eprintln!("fdb smoke: skipped (FDB_CLUSTER_FILE unset)");
        return;
    };
    if !cfg!(feature = "fdb") {
        eprintln!("fdb smoke: skipped (built without the `fdb` feature)");
        return;
    }
    let name = format!(
        "{}-{}",
        common::unix_seconds(),
        myelin::random::Random::os().lowercase(12)
    );
    let mut config = DatabasesConfig::default();
    for spec in db::SPECS {
        config.set(
            spec.name,
            DatabaseConfig {
                backend: Backend::Fdb,
                cluster_file: Some(cluster_file.clone().into()),
                root: vec![TEST_ROOT.to_owned(), name.clone()],
                ..DatabaseConfig::default()
            },
        );
    }
    let databases = db::open(&config)
        .await
        .expect("open every database on the cluster");
    let store = databases.accounts.db.clone();
    sweep_stale_roots(&store).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_on(
        databases,
        dir.path(),
        test_config(),
        ManualClock::new(1_700_000_000_000),
    )
    .await;
    let outcome = tokio::spawn({
        let alice = server.register("alice", "secret-password").await;
        async move {
            let room = alice.create_room(json!({ "name": "smoke" })).await;
            let event = alice.say(&room, "txn1", "hello, cluster").await;
            let (status, sync) = alice.get("/_matrix/client/v3/sync").await;
            assert_eq!(status, 200, "{sync}");
            let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
            let ids: Vec<&str> = timeline
                .as_array()
                .expect("timeline events")
                .iter()
                .filter_map(|e| e["event_id"].as_str())
                .collect();
            assert!(ids.contains(&event.as_str()), "{timeline}");
        }
    })
    .await;
    server.stop().await;

    // Removed whatever the test did.
    let removed = store
        .run(|tx, _| {
            let name = name.clone();
            async move {
                DirectoryLayer::default()
                    .remove(&tx, &[TEST_ROOT, &name])
                    .await
            }
        })
        .await
        .expect("remove the test root");
    assert!(removed, "the test root existed");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}
