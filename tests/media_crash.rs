//! A crash during an upload leaves no visible partial media (issue 20).
//!
//! A real `myelin serve` is started over a temporary data directory; a
//! client creates a media ID and starts uploading 8 MiB to it, sends 6 MiB,
//! and once the server has written part of it to the blob store's `tmp/`
//! the server is killed with SIGKILL. After a restart over the same data:
//! the media ID is still pending (a download answers 504
//! `M_NOT_YET_UPLOADED`), nothing is at any content address, and the full
//! upload then succeeds and downloads whole.
// The deadlines for a child process to answer are wall-clock time, not the
// service clock.
#![allow(clippy::disallowed_methods)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const SERVER_NAME: &str = "crash.local";
const CONFIG: &str = r#"
[server]
register_per_ip = { per_second = 1000000.0, burst = 1000000 }
password_hashing = { memory_kib = 8, iterations = 1, parallelism = 1 }
"#;
/// Longest wait for the server to answer or to write the partial upload.
const TIMEOUT: Duration = Duration::from_secs(60);

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    async fn start(data: &Path, config: &Path) -> Server {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_myelin"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--data")
            .arg(data)
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--server-name")
            .arg(SERVER_NAME)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn myelin serve");
        let mut server = Server { child, port };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let url = format!("{}/_matrix/client/versions", server.base());
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
            {
                return server;
            }
            if let Some(status) = server.child.try_wait().expect("try_wait") {
                panic!("myelin serve exited with {status}");
            }
            assert!(Instant::now() < deadline, "myelin serve did not answer");
            // Polling for the listener: there is no readiness signal to wait on.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every file under `dir`, recursively (none if it does not exist).
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push((path, len));
        }
    }
    out
}

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn sigkill_during_an_upload_leaves_no_visible_partial_media() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, config) = (dir.path().join("data"), dir.path().join("myelin.toml"));
    std::fs::write(&config, CONFIG).expect("config");
    let mut server = Server::start(&data, &config).await;
    let http = reqwest::Client::new();
    let registered: Value = http
        .post(format!("{}/_matrix/client/v3/register", server.base()))
        .json(&json!({"username": "alice", "password": "pw-alice-1", "auth": {"type": "m.login.dummy"}}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("register body");
    let token = registered["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let created: Value = http
        .post(format!("{}/_matrix/media/v1/create", server.base()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("create body");
    let uri = created["content_uri"].as_str().expect("content_uri");
    let media_id = uri.rsplit('/').next().expect("media ID").to_owned();
    let full = body(8 * 1024 * 1024);

    // Send 6 of 8 MiB, wait until part of it is in the store, kill.
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    let head = format!(
        "PUT /_matrix/media/v3/upload/{SERVER_NAME}/{media_id} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        full.len()
    );
    conn.write_all(head.as_bytes()).await.expect("head");
    conn.write_all(&full[..6 * 1024 * 1024])
        .await
        .expect("first 6 MiB");
    let blobs = data.join("blobs");
    let deadline = Instant::now() + TIMEOUT;
    while !files(&blobs.join("tmp")).iter().any(|(_, len)| *len > 0) {
        assert!(Instant::now() < deadline, "no partial upload was written");
        // Polling the directory: the server gives no signal mid-upload.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    drop(conn);
    assert!(
        files(&blobs.join("blobs")).is_empty(),
        "a blob is visible at a content address: {:?}",
        files(&blobs.join("blobs"))
    );

    // After a restart the media ID is still pending, with no content.
    let server = Server::start(&data, &config).await;
    let url = format!(
        "{}/_matrix/client/v1/media/download/{SERVER_NAME}/{media_id}?timeout_ms=0",
        server.base()
    );
    let got = http
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("download");
    assert_eq!(got.status().as_u16(), 504);
    let got: Value = got.json().await.expect("error body");
    assert_eq!(got["errcode"], "M_NOT_YET_UPLOADED");
    assert!(files(&blobs.join("blobs")).is_empty());

    // The whole upload then succeeds and downloads whole.
    let put = http
        .put(format!(
            "{}/_matrix/media/v3/upload/{SERVER_NAME}/{media_id}",
            server.base()
        ))
        .bearer_auth(&token)
        .body(full.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(put.status().as_u16(), 200);
    let got = http
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("download");
    assert_eq!(got.status().as_u16(), 200);
    assert!(got.bytes().await.expect("bytes") == full, "bytes differ");
    assert_eq!(files(&blobs.join("blobs")).len(), 1);
}
