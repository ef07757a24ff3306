//! Benchmarks of the media repository (issue 20; targets in
//! `docs/performance.md`) over a real server (`myelin::api::serve`) on
//! `127.0.0.1:0`, the local blob store in a temporary directory, through
//! loopback HTTP with `reqwest`:
//!
//! - `media/upload_100mib`, `media/download_100mib`: one upload (`POST
//!   /_matrix/media/v3/upload`) and one download of a 100 MiB file
//!   (throughput in bytes: criterion prints MiB/s; target ≥ 200 MiB/s);
//! - `media/thumbnail_96_crop_4000x3000_jpeg`: the first 96×96 `crop`
//!   thumbnail of a freshly uploaded 4,000×3,000 JPEG (decoding, resizing,
//!   encoding and storing it; the upload is not timed; target ≤ 150 ms);
//! - `media/thumbnail_cached`: the same thumbnail served again from the
//!   store (target ≤ 2 ms p50).
//!
//! Under `cargo bench` (which passes `--bench`) the sizes are the targets'.
//! `cargo test --all-targets` (or `cargo test --bench media`) runs each
//! benchmark once, unoptimized, as a smoke test: there the file is 1 MiB and
//! the JPEG 400×300, so CI's debug build stays quick.
//!
//! Run: `cargo bench --bench media` (add `-- <filter>`, e.g. `-- thumbnail`).

// A benchmark owns its stopwatch.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use myelin::app::{App, AppConfig};
use myelin::service::media::MediaConfig;
use myelin::service::{ManualClock, PasswordHashing, RateLimit, ServerConfig};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

/// Whether `cargo bench` runs this (it passes `--bench`), not a smoke test.
fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The uploaded file: 100 MiB measuring, 1 MiB as a smoke test.
fn file_bytes() -> usize {
    if measuring() {
        100 * 1024 * 1024
    } else {
        1024 * 1024
    }
}

/// The thumbnailed JPEG: 4,000 × 3,000 measuring, 400 × 300 as a smoke test.
fn jpeg_size() -> (u32, u32) {
    if measuring() {
        (4_000, 3_000)
    } else {
        (400, 300)
    }
}

/// A running server, its base URL and a logged-in user's token.
struct Server {
    base: String,
    token: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let databases = myelin::db::open_embedded_at(dir.path())
        .await
        .expect("open store");
    let config = AppConfig {
        server_name: "bench.local".try_into().expect("server name"),
        server: ServerConfig {
            register_per_ip: RateLimit::UNLIMITED,
            login_per_ip: RateLimit::UNLIMITED,
            login_per_user: RateLimit::UNLIMITED,
            password_hashing: PasswordHashing::FAST_INSECURE,
            ..ServerConfig::default()
        },
        sync: Default::default(),
        media: MediaConfig {
            path: Some(dir.path().join("blobs")),
            max_upload_bytes: 128 * 1024 * 1024,
            ..MediaConfig::default()
        },
    };
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let state = App::open(&databases, config, clock).await.expect("state");
    drop(databases);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(myelin::api::serve(
        listener,
        state,
        futures::future::pending(),
    ));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client");
    let registered: Value = http
        .post(format!("{base}/_matrix/client/v3/register"))
        .json(&json!({
            "username": "bench",
            "password": "pw-bench-1",
            "auth": {"type": "m.login.dummy"},
        }))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("register answer");
    let token = registered["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    Server {
        base,
        token,
        http,
        _dir: dir,
    }
}

impl Server {
    /// Uploads `bytes` as `content_type`; the media ID.
    async fn upload(&self, bytes: bytes::Bytes, content_type: &str) -> String {
        let answer: Value = self
            .http
            .post(format!("{}/_matrix/media/v3/upload", self.base))
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .expect("upload")
            .error_for_status()
            .expect("upload status")
            .json()
            .await
            .expect("upload answer");
        let uri = answer["content_uri"].as_str().expect("content_uri");
        uri.rsplit('/').next().expect("media ID").to_owned()
    }

    /// GETs `path` and reads the whole body; its length.
    async fn get(&self, path: &str) -> usize {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("get")
            .error_for_status()
            .expect("status");
        response.bytes().await.expect("body").len()
    }
}

/// Bytes that do not compress: a simple xorshift stream.
fn file(len: usize) -> bytes::Bytes {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out.into()
}

/// A photo-like JPEG (smooth gradients with some texture) of `width` ×
/// `height`.
fn jpeg(width: u32, height: u32) -> bytes::Bytes {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        let texture = ((x * 7 + y * 13) % 17) as u8;
        image::Rgb([
            (x * 255 / width) as u8 ^ texture,
            (y * 255 / height) as u8,
            ((x + y) % 256) as u8,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode jpeg");
    out.into_inner().into()
}

fn benches(c: &mut Criterion, rt: &Runtime) {
    let server = rt.block_on(start());
    let len = file_bytes();
    let bytes = file(len);
    let mut group = c.benchmark_group("media");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(len as u64));
    group.bench_function("upload_100mib", |b| {
        b.to_async(rt)
            .iter(|| server.upload(bytes.clone(), "application/octet-stream"));
    });
    let media_id = rt.block_on(server.upload(bytes.clone(), "application/octet-stream"));
    let path = format!("/_matrix/client/v1/media/download/bench.local/{media_id}");
    group.bench_function("download_100mib", |b| {
        b.to_async(rt).iter(|| async {
            assert_eq!(server.get(&path).await, len);
        });
    });

    group.throughput(Throughput::Elements(1));
    let (width, height) = jpeg_size();
    let photo = jpeg(width, height);
    group.bench_function("thumbnail_96_crop_4000x3000_jpeg", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let (server, photo) = (&server, photo.clone());
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // A new media ID each time: its thumbnail is not made yet.
                    let id = server.upload(photo.clone(), "image/jpeg").await;
                    let path = format!(
                        "/_matrix/client/v1/media/thumbnail/bench.local/{id}?width=96&height=96&method=crop"
                    );
                    let started = Instant::now();
                    assert!(server.get(&path).await > 0);
                    total += started.elapsed();
                }
                total
            }
        });
    });
    let id = rt.block_on(server.upload(photo.clone(), "image/jpeg"));
    let path = format!(
        "/_matrix/client/v1/media/thumbnail/bench.local/{id}?width=96&height=96&method=crop"
    );
    rt.block_on(server.get(&path));
    group.bench_function("thumbnail_cached", |b| {
        b.to_async(rt).iter(|| async {
            assert!(server.get(&path).await > 0);
        });
    });
    group.finish();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &rt);
    c.final_summary();
}
