//! The media repository over a real server on the local blob store (issue
//! 20): uploads and downloads of bytes and headers (small and 50 MiB),
//! create then upload then download, the waiting download, every error, the
//! safety headers, thumbnails' sizes and the never-upscale rule, and a bomb
//! image refused from its header.

mod common_api;

use std::io::Cursor;
use std::time::Duration;

use myelin::service::Clock;
use myelin::service::media::MediaConfig;
use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};

use common_api::{Client, SERVER_NAME, TestServer, assert_error};

const CSP: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

/// A raw answer: status, headers, body bytes.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header"))
            .unwrap_or("")
    }

    fn json(&self) -> (u16, Value) {
        (
            self.status,
            serde_json::from_slice(&self.body).unwrap_or(Value::Null),
        )
    }
}

/// Sends `method path` with `body` and `content_type` as `client` (its
/// token, if any).
async fn send(
    server: &TestServer,
    client: &Client,
    method: Method,
    path: &str,
    body: Vec<u8>,
    content_type: Option<&str>,
) -> Answer {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let mut req = http.request(method, format!("{}{path}", server.base));
    if let Some(token) = &client.token {
        req = req.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        req = req.header("content-type", content_type);
    }
    let resp = req.body(body).send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body").to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

async fn upload(
    server: &TestServer,
    client: &Client,
    bytes: &[u8],
    content_type: &str,
    file_name: &str,
) -> String {
    let path = format!("/_matrix/media/v3/upload?filename={file_name}");
    let answer = send(
        server,
        client,
        Method::POST,
        &path,
        bytes.to_vec(),
        Some(content_type),
    )
    .await;
    let (status, body) = answer.json();
    assert_eq!(status, 200, "upload: {body}");
    let uri = body["content_uri"].as_str().expect("content_uri");
    uri.strip_prefix(&format!("mxc://{SERVER_NAME}/"))
        .expect("mxc URI of this server")
        .to_owned()
}

/// `POST /create` as `client`; the new media ID.
async fn create(server: &TestServer, client: &Client) -> String {
    let created = send(
        server,
        client,
        Method::POST,
        "/_matrix/media/v1/create",
        Vec::new(),
        None,
    )
    .await;
    let (status, body) = created.json();
    assert_eq!(status, 200, "create: {body}");
    let uri = body["content_uri"].as_str().expect("content_uri");
    uri.rsplit('/').next().expect("media ID").to_owned()
}

async fn download(server: &TestServer, client: &Client, media_id: &str) -> Answer {
    let path = format!("/_matrix/client/v1/media/download/{SERVER_NAME}/{media_id}");
    send(server, client, Method::GET, &path, Vec::new(), None).await
}

fn assert_safety_headers(answer: &Answer) {
    assert_eq!(answer.header("content-security-policy"), CSP);
    assert_eq!(
        answer.header("cross-origin-resource-policy"),
        "cross-origin"
    );
}

/// Deterministic bytes that do not compress.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block: [u8; 32] = Sha256::digest([seed]).into();
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha256::digest(block).into();
    }
    out.truncate(len);
    out
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("encode png");
    out
}

#[tokio::test]
async fn small_upload_round_trips_bytes_and_headers() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw-alice-1").await;
    let bob = server.register("bob", "pw-bob-1").await;
    let content = png(3, 2);
    let id = upload(&server, &alice, &content, "image/png", "cat.png").await;
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "{id}"
    );
    // Any user may download.
    let got = download(&server, &bob, &id).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, content);
    assert_eq!(got.header("content-type"), "image/png");
    assert_eq!(got.header("content-length"), content.len().to_string());
    assert_eq!(
        got.header("content-disposition"),
        "inline; filename=cat.png"
    );
    assert_safety_headers(&got);
    // An empty file name (matrix-nio's path) is no file name.
    let path = format!("/_matrix/client/v1/media/download/{SERVER_NAME}/{id}/");
    let got = send(&server, &bob, Method::GET, &path, Vec::new(), None).await;
    assert_eq!(got.body, content);
    assert_eq!(
        got.header("content-disposition"),
        "inline; filename=cat.png"
    );
    // The file name in the path is the one answered.
    let path = format!("/_matrix/client/v1/media/download/{SERVER_NAME}/{id}/dog.png");
    let got = send(&server, &bob, Method::GET, &path, Vec::new(), None).await;
    assert_eq!(got.body, content);
    assert_eq!(
        got.header("content-disposition"),
        "inline; filename=dog.png"
    );
}

#[tokio::test]
async fn fifty_mib_round_trips_on_the_local_store() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw-alice-1").await;
    let content = bytes(50 * 1024 * 1024, 7);
    let id = upload(&server, &alice, &content, "application/zip", "big.zip").await;
    let got = download(&server, &alice, &id).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), content.len());
    assert!(got.body == content, "the bytes differ");
    assert_eq!(
        got.header("content-disposition"),
        "attachment; filename=big.zip"
    );
    // The blob is at its content address, and no temporary file is left.
    let sha = hex::encode(Sha256::digest(&content));
    let blob = server
        .data_dir
        .join("blobs/blobs")
        .join(&sha[..2])
        .join(&sha);
    assert_eq!(
        std::fs::metadata(&blob).expect("blob").len(),
        content.len() as u64
    );
    let tmp = server.data_dir.join("blobs/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[tokio::test]
async fn only_safe_types_are_inline() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw-alice-1").await;
    for (content_type, disposition) in [
        ("image/png", "inline"),
        ("text/plain; charset=utf-8", "inline"),
        ("image/svg+xml", "attachment"),
        ("text/html", "attachment"),
        ("text/html; charset=utf-8", "attachment"),
        ("application/javascript", "attachment"),
    ] {
        let id = upload(&server, &alice, b"<svg onload=alert(1)>", content_type, "x").await;
        let got = download(&server, &alice, &id).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("content-type"), content_type);
        assert_eq!(
            got.header("content-disposition"),
            format!("{disposition}; filename=x"),
            "{content_type}"
        );
        assert_safety_headers(&got);
    }
    // No content type: served as octet-stream, as an attachment.
    let answer = send(
        &server,
        &alice,
        Method::POST,
        "/_matrix/media/v3/upload",
        b"raw".to_vec(),
        None,
    )
    .await;
    let uri = answer.json().1["content_uri"]
        .as_str()
        .expect("uri")
        .to_owned();
    let id = uri.rsplit('/').next().expect("id");
    let got = download(&server, &alice, id).await;
    assert_eq!(got.header("content-type"), "application/octet-stream");
    assert_eq!(got.header("content-disposition"), "attachment");
}

#[tokio::test]
async fn create_then_upload_then_download() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw-alice-1").await;
    let bob = server.register("bob", "pw-bob-1").await;
    let created = send(
        &server,
        &alice,
        Method::POST,
        "/_matrix/media/v1/create",
        Vec::new(),
        None,
    )
    .await;
    let (status, body) = created.json();
    assert_eq!(status, 200, "{body}");
    let expires = body["unused_expires_at"].as_u64().expect("expiry");
    assert_eq!(expires, 1_700_000_000_000 + 24 * 3600 * 1000);
    let id = body["content_uri"]
        .as_str()
        .and_then(|u| u.rsplit('/').next())
        .expect("id")
        .to_owned();
    let put_path = format!("/_matrix/media/v3/upload/{SERVER_NAME}/{id}?filename=n.txt");
    // Another user may not upload to it.
    let got = send(
        &server,
        &bob,
        Method::PUT,
        &put_path,
        b"x".to_vec(),
        Some("text/plain"),
    )
    .await;
    assert_error(&got.json(), 403, "M_FORBIDDEN");
    let got = send(
        &server,
        &alice,
        Method::PUT,
        &put_path,
        b"note".to_vec(),
        Some("text/plain"),
    )
    .await;
    assert_eq!(got.json(), (200, serde_json::json!({})));
    assert_safety_headers(&got);
    let got = send(
        &server,
        &alice,
        Method::PUT,
        &put_path,
        b"again".to_vec(),
        Some("text/plain"),
    )
    .await;
    assert_error(&got.json(), 409, "M_CANNOT_OVERWRITE_MEDIA");
    let got = download(&server, &bob, &id).await;
    assert_eq!(got.body, b"note");
    assert_eq!(got.header("content-disposition"), "inline; filename=n.txt");
    // Unknown media IDs and other servers' are not found.
    let unknown = format!("/_matrix/media/v3/upload/{SERVER_NAME}/nope");
    let got = send(&server, &alice, Method::PUT, &unknown, b"x".to_vec(), None).await;
    assert_error(&got.json(), 404, "M_NOT_FOUND");
    let other = format!("/_matrix/media/v3/upload/other.example/{id}");
    let got = send(&server, &alice, Method::PUT, &other, b"x".to_vec(), None).await;
    assert_error(&got.json(), 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn a_created_media_id_expires_unused() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw-alice-1").await;
    let id = create(&server, &alice).await;
    server.clock.advance_ms(24 * 3600 * 1000);
    let put_path = format!("/_matrix/media/v3/upload/{SERVER_NAME}/{id}");
    let got = send(
        &server,
        &alice,
        Method::PUT,
        &put_path,
        b"late".to_vec(),
        None,
    )
    .await;
    assert_error(&got.json(), 404, "M_NOT_FOUND");
    let got = download(&server, &alice, &id).await;
    assert_error(&got.json(), 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn pending_uploads_are_capped() {
    let server = TestServer::start_media(MediaConfig {
        max_pending_uploads: 2,
        ..MediaConfig::default()
    })
    .await;
    let alice = server.register("alice", "pw-alice-1").await;
    let create = || {
        send(
            &server,
            &alice,
            Method::POST,
            "/_matrix/media/v1/create",
            Vec::new(),
            None,
        )
    };
    assert_eq!(create().await.status, 200);
    assert_eq!(create().await.status, 200);
    assert_error(&create().await.json(), 429, "M_LIMIT_EXCEEDED");
}

#[tokio::test]
async fn a_download_waits_for_the_upload() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw-alice-1").await;
    let id = create(&server, &alice).await;
    // Nothing uploaded within the timeout: 504 M_NOT_YET_UPLOADED.
    let path = format!("/_matrix/client/v1/media/download/{SERVER_NAME}/{id}?timeout_ms=50");
    let got = send(&server, &alice, Method::GET, &path, Vec::new(), None).await;
    assert_error(&got.json(), 504, "M_NOT_YET_UPLOADED");
    assert_safety_headers(&got);
    // A download waiting with a long timeout is answered by the upload.
    let path = format!("/_matrix/client/v1/media/download/{SERVER_NAME}/{id}?timeout_ms=20000");
    let waiting = send(&server, &alice, Method::GET, &path, Vec::new(), None);
    let put_path = format!("/_matrix/media/v3/upload/{SERVER_NAME}/{id}");
    let uploading = async {
        // The upload starts once the download is waiting on its record.
        while server.state.media.waiting_downloads() == 0 {
            tokio::task::yield_now().await;
        }
        send(
            &server,
            &alice,
            Method::PUT,
            &put_path,
            b"late bytes".to_vec(),
            None,
        )
        .await
    };
    let (got, put) = tokio::join!(waiting, uploading);
    assert_eq!(put.status, 200);
    assert_eq!(got.status, 200);
    assert_eq!(got.body, b"late bytes");
}

/// Posts `chunks` chunks of `chunk_len` bytes as a chunked upload (no
/// `Content-Length`) over a raw connection; returns the status.
async fn chunked_upload_status(
    server: &TestServer,
    token: &str,
    chunks: usize,
    chunk_len: usize,
) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!(
        "POST /_matrix/media/v3/upload HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..chunks {
        request.extend_from_slice(format!("{chunk_len:x}\r\n").as_bytes());
        request.extend_from_slice(&bytes(chunk_len, 2));
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading everything.
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let head = String::from_utf8_lossy(&answer);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line")
}

#[tokio::test]
async fn limits_and_quota_answer_413() {
    let server = TestServer::start_media(MediaConfig {
        max_upload_bytes: 1000,
        quota_bytes: Some(1500),
        ..MediaConfig::default()
    })
    .await;
    let alice = server.register("alice", "pw-alice-1").await;
    let (status, body) = alice.get("/_matrix/client/v1/media/config").await;
    assert_eq!(status, 200);
    assert_eq!(body["m.upload.size"], 1000);
    let post = |len: usize| {
        send(
            &server,
            &alice,
            Method::POST,
            "/_matrix/media/v3/upload",
            bytes(len, 1),
            Some("application/octet-stream"),
        )
    };
    assert_error(&post(1001).await.json(), 413, "M_TOO_LARGE");
    // A chunked body without Content-Length is cut at the limit too.
    let token = alice.token.as_deref().expect("token");
    assert_eq!(chunked_upload_status(&server, token, 20, 100).await, 413);
    assert_eq!(chunked_upload_status(&server, token, 5, 100).await, 200);
    // 500 of 1500 used: 1000 more fits, exactly.
    assert_eq!(post(1000).await.status, 200);
    assert_error(&post(1000).await.json(), 413, "M_TOO_LARGE");
    assert_error(&post(1).await.json(), 413, "M_TOO_LARGE");
    let usage = server.state.media.db().usage("@alice:test.local").await;
    assert_eq!(usage.expect("usage"), 1500);
}

#[tokio::test]
async fn every_media_endpoint_needs_a_token() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw-alice-1").await;
    let id = upload(&server, &alice, b"x", "text/plain", "x").await;
    let anonymous = server.client();
    for (method, path) in [
        (Method::POST, "/_matrix/media/v3/upload".to_owned()),
        (Method::POST, "/_matrix/media/v1/create".to_owned()),
        (
            Method::PUT,
            format!("/_matrix/media/v3/upload/{SERVER_NAME}/{id}"),
        ),
        (Method::GET, "/_matrix/client/v1/media/config".to_owned()),
        (
            Method::GET,
            format!("/_matrix/client/v1/media/download/{SERVER_NAME}/{id}"),
        ),
        (
            Method::GET,
            format!("/_matrix/client/v1/media/thumbnail/{SERVER_NAME}/{id}?width=32&height=32"),
        ),
    ] {
        let got = send(&server, &anonymous, method, &path, b"x".to_vec(), None).await;
        assert_error(&got.json(), 401, "M_MISSING_TOKEN");
        assert_safety_headers(&got);
    }
}

#[tokio::test]
async fn legacy_paths_and_bad_ids_are_not_found() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw-alice-1").await;
    let id = upload(&server, &alice, b"x", "text/plain", "x").await;
    for version in ["v3", "r0"] {
        for path in [
            format!("/_matrix/media/{version}/download/{SERVER_NAME}/{id}"),
            format!("/_matrix/media/{version}/download/{SERVER_NAME}/{id}/x.txt"),
            format!("/_matrix/media/{version}/thumbnail/{SERVER_NAME}/{id}?width=32&height=32"),
        ] {
            // Authenticated or not, the bytes are not served there.
            assert_error(&alice.get(&path).await, 404, "M_NOT_FOUND");
            assert_error(&server.client().get(&path).await, 404, "M_NOT_FOUND");
        }
    }
    for bad in ["a.b", "a%2Fb", "%C3%A9", "a%20b"] {
        let got = download(&server, &alice, bad).await;
        assert_error(&got.json(), 404, "M_NOT_FOUND");
    }
    let got = download(&server, &alice, "unknownid").await;
    assert_error(&got.json(), 404, "M_NOT_FOUND");
    // Previews are off by default (tests/media_preview.rs has them on).
    let got = alice
        .get("/_matrix/client/v1/media/preview_url?url=http://127.0.0.1/")
        .await;
    assert_error(&got, 404, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn quarantined_media_is_not_found() {
    let server = TestServer::start().await;
    let admin = server.register("admin", "pw-admin-1").await;
    let alice = server.register("alice", "pw-alice-1").await;
    server
        .state
        .accounts
        .set_admin("admin", true)
        .await
        .expect("make admin");
    let id = upload(&server, &alice, b"bad", "text/plain", "x").await;
    let path = format!("/_synapse/admin/v1/media/quarantine/{SERVER_NAME}/{id}");
    assert_error(
        &alice.post(&path, serde_json::json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(download(&server, &alice, &id).await.status, 200);
    assert_eq!(admin.post(&path, serde_json::json!({})).await.0, 200);
    assert_error(
        &download(&server, &alice, &id).await.json(),
        404,
        "M_NOT_FOUND",
    );
    let unknown = format!("/_synapse/admin/v1/media/quarantine/{SERVER_NAME}/nope");
    assert_error(
        &admin.post(&unknown, serde_json::json!({})).await,
        404,
        "M_NOT_FOUND",
    );
}

async fn thumbnail(
    server: &TestServer,
    client: &Client,
    id: &str,
    width: u32,
    height: u32,
    method: &str,
) -> Answer {
    let path = format!(
        "/_matrix/client/v1/media/thumbnail/{SERVER_NAME}/{id}?width={width}&height={height}&method={method}"
    );
    send(server, client, Method::GET, &path, Vec::new(), None).await
}

fn dimensions(answer: &Answer) -> (u32, u32) {
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    let image = image::load_from_memory(&answer.body).expect("thumbnail decodes");
    (image.width(), image.height())
}

#[tokio::test]
async fn thumbnails_snap_crop_scale_and_never_upscale() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw-alice-1").await;
    let original = png(400, 300);
    let id = upload(&server, &alice, &original, "image/png", "p.png").await;
    for (w, h, method, want) in [
        (32, 32, "crop", (32, 32)),
        (20, 10, "crop", (32, 32)),
        (50, 50, "crop", (96, 96)),
        (96, 96, "crop", (96, 96)),
        (320, 240, "scale", (320, 240)),
        (100, 100, "scale", (320, 240)),
        // 640×480 would be an upscale of 400×300: the original is served.
        (640, 480, "scale", (400, 300)),
        (5000, 5000, "scale", (400, 300)),
    ] {
        let got = thumbnail(&server, &alice, &id, w, h, method).await;
        assert_eq!(dimensions(&got), want, "{w}×{h} {method}");
        assert_safety_headers(&got);
        // The second request is served from the stored thumbnail, the same bytes.
        let again = thumbnail(&server, &alice, &id, w, h, method).await;
        assert_eq!(again.body, got.body);
    }
    let got = thumbnail(&server, &alice, &id, 5000, 5000, "scale").await;
    assert_eq!(got.body, original, "an original that fits is served as is");
    // Scale keeps the aspect ratio: a 300×400 portrait fits 320×240 as 180×240.
    let portrait = upload(&server, &alice, &png(300, 400), "image/png", "q.png").await;
    let got = thumbnail(&server, &alice, &portrait, 320, 240, "scale").await;
    assert_eq!(dimensions(&got), (180, 240));
    // Crop never upscales a side smaller than asked.
    let thin = upload(&server, &alice, &png(50, 200), "image/png", "t.png").await;
    let got = thumbnail(&server, &alice, &thin, 96, 96, "crop").await;
    assert_eq!(dimensions(&got), (50, 96));
    // Bad parameters and media that is not an image.
    let got = thumbnail(&server, &alice, &id, 32, 32, "stretch").await;
    assert_error(&got.json(), 400, "M_INVALID_PARAM");
    let got = thumbnail(&server, &alice, &id, 0, 32, "crop").await;
    assert_error(&got.json(), 400, "M_INVALID_PARAM");
    let text = upload(&server, &alice, b"not an image", "image/png", "n.png").await;
    let got = thumbnail(&server, &alice, &text, 32, 32, "crop").await;
    assert_error(&got.json(), 400, "M_UNKNOWN");
}

/// A PNG whose header claims `width` × `height` pixels, with one tiny
/// (truncated) data chunk: what a decompression bomb looks like before
/// decoding.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x03, 0x00]);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[tokio::test]
async fn a_bomb_image_uploads_but_is_not_thumbnailed() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw-alice-1").await;
    let bomb = png_claiming(30_000, 30_000);
    let reader = image::ImageReader::new(Cursor::new(&bomb))
        .with_guessed_format()
        .expect("guess");
    assert_eq!(reader.into_dimensions().expect("header"), (30_000, 30_000));
    let id = upload(&server, &alice, &bomb, "image/png", "bomb.png").await;
    let got = thumbnail(&server, &alice, &id, 32, 32, "crop").await;
    assert_error(&got.json(), 413, "M_TOO_LARGE");
    // The upload itself is served.
    assert_eq!(download(&server, &alice, &id).await.body, bomb);
}

/// The file of blob `sha256` in the local store of `server`.
fn blob_file(server: &TestServer, sha256: &str) -> std::path::PathBuf {
    server
        .data_dir
        .join("blobs/blobs")
        .join(&sha256[..2])
        .join(sha256)
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn purge_removes_old_media_and_keeps_new_media_and_shared_blobs() {
    let server = TestServer::start().await;
    let admin = server.register("admin", "pw-admin-1").await;
    let alice = server.register("alice", "pw-alice-1").await;
    server
        .state
        .accounts
        .set_admin("admin", true)
        .await
        .expect("make admin");
    let shared = bytes(1000, 1);
    let old = upload(&server, &alice, &shared, "application/zip", "a").await;
    let picture = png(400, 300);
    let old_picture = upload(&server, &alice, &picture, "image/png", "p.png").await;
    let thumb = thumbnail(&server, &alice, &old_picture, 96, 96, "crop").await;
    assert_eq!(thumb.status, 200);
    let thumb_sha = sha(&thumb.body);
    assert!(blob_file(&server, &thumb_sha).exists());
    let cutoff = server.clock.now_ms() + 1;
    server.clock.advance_ms(10 * 24 * 3600 * 1000);
    // The same bytes again, uploaded after the cutoff: one blob, two media.
    let new = upload(&server, &alice, &shared, "application/zip", "b").await;

    let path = format!("/_synapse/admin/v1/media/delete?before_ts={cutoff}");
    assert_error(
        &alice.post(&path, serde_json::json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &admin
            .post("/_synapse/admin/v1/media/delete", serde_json::json!({}))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    let (status, body) = admin.post(&path, serde_json::json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 2, "{body}");
    let mut deleted: Vec<&str> = body["deleted_media"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v.as_str().expect("ID"))
        .collect();
    deleted.sort();
    let mut expected = vec![old.as_str(), old_picture.as_str()];
    expected.sort();
    assert_eq!(deleted, expected);
    for id in [&old, &old_picture] {
        assert_error(
            &download(&server, &alice, id).await.json(),
            404,
            "M_NOT_FOUND",
        );
    }
    // The picture's blob and its thumbnail's are gone; the shared blob
    // stays, still named by the new media.
    assert!(!blob_file(&server, &sha(&picture)).exists());
    assert!(!blob_file(&server, &thumb_sha).exists());
    assert!(blob_file(&server, &sha(&shared)).exists());
    let got = download(&server, &alice, &new).await;
    assert_eq!(got.status, 200);
    assert!(got.body == shared, "shared bytes intact");

    // Purging it too removes the blob. A second purge finds nothing.
    let all = format!(
        "/_synapse/admin/v1/media/delete?before_ts={}",
        server.clock.now_ms() + 1
    );
    assert_eq!(admin.post(&all, serde_json::json!({})).await.1["total"], 1);
    assert!(!blob_file(&server, &sha(&shared)).exists());
    assert_eq!(admin.post(&all, serde_json::json!({})).await.1["total"], 0);
    // Size filter: only media larger than size_gt go.
    let small = upload(&server, &alice, b"tiny", "text/plain", "s").await;
    let large = upload(&server, &alice, &bytes(5000, 2), "text/plain", "l").await;
    let sized = format!(
        "/_synapse/admin/v1/media/delete?before_ts={}&size_gt=100",
        server.clock.now_ms() + 1
    );
    let (_, body) = admin.post(&sized, serde_json::json!({})).await;
    assert_eq!(body["deleted_media"], serde_json::json!([large]));
    assert_eq!(download(&server, &alice, &small).await.status, 200);
}

/// Sets a file's modification time to `ms` since the epoch (an orphan left
/// long ago, on the server's clock).
fn age(path: &std::path::Path, ms: u64) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    file.set_modified(std::time::UNIX_EPOCH + Duration::from_millis(ms))
        .expect("set mtime");
}

#[tokio::test]
async fn a_purge_interrupted_after_the_metadata_finishes_and_orphans_are_swept() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw-alice-1").await;
    let content = bytes(3000, 3);
    let id = upload(&server, &alice, &content, "text/plain", "x").await;
    let file = blob_file(&server, &sha(&content));
    assert!(file.exists());
    // A crash between the metadata transaction and the blob deletion: the
    // record is gone (nothing visible), the blob still on disk.
    let now = server.clock.now_ms();
    let deleted = server
        .state
        .media
        .db()
        .delete(&id, now)
        .await
        .expect("delete")
        .expect("existed");
    assert_eq!(deleted.doomed, vec![sha(&content)]);
    assert_error(
        &download(&server, &alice, &id).await.json(),
        404,
        "M_NOT_FOUND",
    );
    assert!(file.exists());
    // The rerun finishes it.
    let report = server.state.media.purge(0, None).await.expect("purge");
    assert_eq!((report.media, report.blobs), (0, 1));
    assert!(!file.exists());

    // What crashes leave in the store: temporary files, staged parts, a
    // staged copy, and a blob no record names; and one upload in flight.
    let root = server.data_dir.join("blobs");
    let orphan_sha = "cd".repeat(32);
    let orphans = [
        root.join("tmp/0123abcd"),
        root.join("tmp/4567ef01#1"),
        root.join(format!("blobs/cd/{orphan_sha}#2")),
        root.join(format!("blobs/cd/{orphan_sha}")),
    ];
    let in_flight = root.join("tmp/89abcdef#1");
    let kept = upload(&server, &alice, &bytes(100, 4), "text/plain", "k").await;
    let long_ago = server.clock.now_ms() - 2 * 3600 * 1000;
    for path in orphans.iter().chain([&in_flight]) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(path, b"left by a crash").expect("write");
    }
    for path in &orphans {
        age(path, long_ago);
    }
    age(&in_flight, server.clock.now_ms() - 60 * 1000);
    let report = server.state.media.sweep_orphans().await.expect("sweep");
    assert_eq!((report.temporaries, report.blobs), (3, 1), "{report:?}");
    for path in &orphans {
        assert!(!path.exists(), "{} left", path.display());
    }
    assert!(in_flight.exists(), "an upload in flight is kept");
    assert_eq!(download(&server, &alice, &kept).await.status, 200);
    // Safe to run twice.
    let again = server.state.media.sweep_orphans().await.expect("sweep");
    assert_eq!((again.temporaries, again.blobs), (0, 0));
}
