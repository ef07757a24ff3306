//! The media repository on an S3-compatible blob store (issue 20; built
//! with `--features s3`): moto's S3 server (`scripts/install-deps` installs
//! it into `.venv-moto/`) is started on a free loopback port, a bucket is
//! created, and a server with `[media] store = "s3"` round-trips a small and
//! a 50 MiB upload through it; the blob is checked at its content address in
//! the bucket's listing, and no temporary object is left. Without moto the
//! test says so and passes without running, unless `MYELIN_REQUIRE_S3=1`
//! (set by `scripts/test`, so CI fails rather than skips); no traffic leaves
//! the machine either way.
#![cfg(feature = "s3")]
// The deadline for moto to answer is wall-clock time, not the service clock.
#![allow(clippy::disallowed_methods)]

mod common_api;

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use myelin::service::media::{MediaConfig, StoreKind};
use serde_json::Value;
use sha2::{Digest, Sha256};

use common_api::{SERVER_NAME, TestServer};

const BUCKET: &str = "myelin-media-test";

/// A running moto server; killed on drop.
struct Moto {
    child: Child,
    base: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts moto's server, or says why it cannot.
async fn moto() -> Result<Moto, String> {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-moto/bin/moto_server");
    if !bin.exists() {
        return Err(format!(
            "{} is missing (run scripts/install-deps)",
            bin.display()
        ));
    }
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let mut moto = Moto {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if reqwest::get(&moto.base).await.is_ok() {
            return Ok(moto);
        }
        if let Ok(Some(status)) = moto.child.try_wait() {
            return Err(format!("moto_server exited with {status}"));
        }
        if Instant::now() > deadline {
            return Err("moto_server did not answer within 60 s".into());
        }
        // Polling for the listener: moto gives no readiness signal.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn uploads_round_trip_through_an_s3_compatible_store() {
    let moto = match moto().await {
        Ok(moto) => moto,
        Err(why) => {
            if std::env::var_os("MYELIN_REQUIRE_S3").is_some_and(|v| v == "1") {
                panic!("MYELIN_REQUIRE_S3=1, but no S3-compatible server: {why}");
            }
            eprintln!("SKIPPED media_s3: no S3-compatible server: {why}");
            return;
        }
    };
    let http = reqwest::Client::new();
    let created = http
        .put(format!("{}/{BUCKET}", moto.base))
        .send()
        .await
        .expect("create bucket");
    assert!(created.status().is_success(), "create bucket: {created:?}");
    let server = TestServer::start_media(MediaConfig {
        store: StoreKind::S3,
        s3_bucket: Some(BUCKET.into()),
        s3_endpoint: Some(moto.base.clone()),
        s3_region: Some("us-east-1".into()),
        s3_access_key_id: Some("test".into()),
        s3_secret_access_key: Some("test".into()),
        s3_allow_http: true,
        ..MediaConfig::default()
    })
    .await;
    let alice = server.register("alice", "pw-alice-1").await;
    let token = alice.token.clone().expect("token");
    for (len, content_type) in [(1000, "image/png"), (50 * 1024 * 1024, "application/zip")] {
        let content: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
        let answer: Value = http
            .post(format!(
                "{}/_matrix/media/v3/upload?filename=f",
                server.base
            ))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(content.clone())
            .send()
            .await
            .expect("upload")
            .json()
            .await
            .expect("upload answer");
        let uri = answer["content_uri"].as_str().expect("content_uri");
        let id = uri.rsplit('/').next().expect("media ID");
        let got = http
            .get(format!(
                "{}/_matrix/client/v1/media/download/{SERVER_NAME}/{id}",
                server.base
            ))
            .bearer_auth(&token)
            .send()
            .await
            .expect("download");
        assert_eq!(got.status().as_u16(), 200);
        assert_eq!(
            got.headers()["content-type"].to_str().expect("ascii"),
            content_type
        );
        assert!(got.bytes().await.expect("bytes") == content, "bytes differ");
        // The blob is in the bucket at its content address, whole.
        let sha = hex::encode(Sha256::digest(&content));
        let key = format!("blobs/{}/{sha}", &sha[..2]);
        let listing = list(&http, &moto, &key).await;
        assert!(
            listing.contains(&format!("<Key>{key}</Key>"))
                && listing.contains(&format!("<Size>{len}</Size>")),
            "{key} of {len} bytes not in the bucket: {listing}"
        );
    }
    // No temporary object is left in the bucket.
    let listing = list(&http, &moto, "tmp/").await;
    assert!(
        !listing.contains("<Key>"),
        "temporary objects left: {listing}"
    );
}

/// The bucket's listing of keys under `prefix` (moto answers unsigned
/// listings).
async fn list(http: &reqwest::Client, moto: &Moto, prefix: &str) -> String {
    let listing = http
        .get(format!(
            "{}/{BUCKET}?list-type=2&prefix={prefix}",
            moto.base
        ))
        .send()
        .await
        .expect("list the bucket");
    assert_eq!(listing.status().as_u16(), 200);
    listing.text().await.expect("listing")
}
