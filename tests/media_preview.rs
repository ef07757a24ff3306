//! URL previews (issue 20; `docs/media.md`, "URL previews") over a real
//! server, previewing pages of a test web server on a loopback port: an
//! OpenGraph page with its image stored as media, the `<title>` fallback, a
//! redirect followed; refusals of 127.0.0.1, 10.0.0.1, [::1] and
//! `localhost` without the allow-list (the test server sees no request); a
//! redirect from an allowed server to a refused address; the byte, redirect
//! and time caps; the cap on previews in flight; the cache (one fetch an
//! hour per URL, cleared by a purge); bad URLs; disabled (the default) →
//! 404 `M_UNRECOGNIZED`; no token → 401. No request leaves the machine: refused addresses are
//! refused before connecting.

mod common_api;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use myelin::service::Clock;
use myelin::service::media::{MediaConfig, UrlPreviewConfig};
use serde_json::Value;

use common_api::{Client, SERVER_NAME, TestServer, assert_error};

/// The largest body previewed in these tests, bytes.
const MAX_BYTES: u64 = 20_000;

/// The test web server: where it listens and how many requests it served.
struct Site {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    /// Notified when `/hang` has been asked for.
    hung: Arc<Notify>,
}

impl Site {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn redirect(to: String) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

/// Starts the test web server on 127.0.0.1, port 0.
async fn site() -> Site {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let hung = Arc::new(Notify::new());
    let hang_signal = hung.clone();
    let port = addr.port();
    let app = Router::new()
        .route(
            "/page",
            get(|| async {
                html(
                    r#"<html><head><title>Fallback</title>
                    <meta property="og:title" content="A page">
                    <meta property="og:description" content="What it says">
                    <meta property="og:image" content="/img.png">
                    <meta property="og:image:width" content="9999">
                    </head><body>hi</body></html>"#
                        .to_owned(),
                )
            }),
        )
        .route(
            "/plain",
            get(|| async {
                html(
                    "<html><head><title>Just a title</title>\
                     <meta name=\"description\" content=\"Plain description\"></head></html>"
                        .to_owned(),
                )
            }),
        )
        .route(
            "/img.png",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], png(40, 30)) }),
        )
        .route("/to-page", get(|| async { redirect("/page".into()) }))
        .route(
            "/to-private",
            get(|| async { redirect("http://10.0.0.1/page".into()) }),
        )
        .route(
            "/to-loopback6",
            get(move || async move { redirect(format!("http://[::1]:{port}/page")) }),
        )
        .route("/loop", get(|| async { redirect("/loop".into()) }))
        .route(
            "/to-file",
            get(|| async { redirect("file:///etc/passwd".into()) }),
        )
        .route(
            "/big",
            get(|| async { html("x".repeat(MAX_BYTES as usize + 1)) }),
        )
        .route(
            "/big-chunked",
            get(|| async {
                // No Content-Length: the fetcher must cut the stream itself.
                let chunks = (0..100).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 1000]));
                let mut response = Body::from_stream(futures::stream::iter(chunks)).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/html"),
                );
                response
            }),
        )
        .route(
            "/missing",
            get(|| async { (StatusCode::NOT_FOUND, "no").into_response() }),
        )
        .route(
            "/hang",
            get(move || async move {
                hang_signal.notify_one();
                futures::future::pending::<()>().await;
                "never"
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            hits.clone(),
            |State(hits): State<Arc<AtomicUsize>>,
             request: axum::extract::Request,
             next: axum::middleware::Next| async move {
                hits.fetch_add(1, Ordering::SeqCst);
                next.run(request).await
            },
        ));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Site { addr, hits, hung }
}

/// Previews on, `allow_ips` let through.
fn preview_config(allow_ips: &[&str], timeout_ms: u64) -> UrlPreviewConfig {
    UrlPreviewConfig {
        enabled: true,
        max_bytes: MAX_BYTES,
        timeout_ms,
        max_redirects: 3,
        allow_ips: allow_ips
            .iter()
            .map(|ip| ip.parse().expect("cidr"))
            .collect(),
        ..UrlPreviewConfig::default()
    }
}

/// A server with previews on, `allow_ips` let through.
async fn server(allow_ips: &[&str], timeout_ms: u64) -> TestServer {
    TestServer::start_media(MediaConfig {
        url_preview: preview_config(allow_ips, timeout_ms),
        ..MediaConfig::default()
    })
    .await
}

async fn preview(client: &Client, url: &str) -> (u16, Value) {
    let url: String = url::form_urlencoded::byte_serialize(url.as_bytes()).collect();
    client
        .get(&format!(
            "/_matrix/client/v1/media/preview_url?url={url}&ts=1"
        ))
        .await
}

#[tokio::test]
async fn a_page_previews_with_its_image_stored_as_media() {
    let site = site().await;
    let server = server(&["127.0.0.1/32"], 10_000).await;
    let alice = server.register("alice", "pw-alice-1").await;
    let (status, og) = preview(&alice, &site.url("/page")).await;
    assert_eq!(status, 200, "{og}");
    assert_eq!(og["og:title"], "A page");
    assert_eq!(og["og:description"], "What it says");
    assert_eq!(og["og:image:type"], "image/png");
    // The real dimensions, not the page's claim.
    assert_eq!(og["og:image:width"], 40);
    assert_eq!(og["og:image:height"], 30);
    let image = png(40, 30);
    assert_eq!(og["matrix:image:size"], image.len());
    let mxc = og["og:image"].as_str().expect("og:image");
    let media_id = mxc
        .strip_prefix(&format!("mxc://{SERVER_NAME}/"))
        .expect("an mxc URI of this server");
    let http = reqwest::Client::new();
    let downloaded = http
        .get(format!(
            "{}/_matrix/client/v1/media/download/{SERVER_NAME}/{media_id}",
            server.base
        ))
        .bearer_auth(alice.token.as_deref().expect("token"))
        .send()
        .await
        .expect("download");
    assert_eq!(downloaded.status(), 200);
    assert_eq!(downloaded.bytes().await.expect("bytes").to_vec(), image);

    // A redirect within the allowed server is followed.
    let (status, og) = preview(&alice, &site.url("/to-page")).await;
    assert_eq!(status, 200, "{og}");
    assert_eq!(og["og:title"], "A page");
    // Without OpenGraph: the title and the meta description.
    let (status, og) = preview(&alice, &site.url("/plain")).await;
    assert_eq!(status, 200, "{og}");
    assert_eq!(og["og:title"], "Just a title");
    assert_eq!(og["og:description"], "Plain description");
    assert!(og.get("og:image").is_none());
    // An image URL previews as the image.
    let (status, og) = preview(&alice, &site.url("/img.png")).await;
    assert_eq!(status, 200, "{og}");
    assert_eq!(og["og:image:width"], 40);
    assert!(og["og:image"].as_str().expect("mxc").starts_with("mxc://"));
}

#[tokio::test]
async fn internal_addresses_are_refused_before_connecting() {
    let site = site().await;
    let server = server(&[], 10_000).await;
    let alice = server.register("alice", "pw-alice-1").await;
    let port = site.addr.port();
    for url in [
        site.url("/page"),
        "http://10.0.0.1/page".to_owned(),
        format!("http://[::1]:{port}/page"),
        format!("http://[::ffff:127.0.0.1]:{port}/page"),
        // A name is checked on the addresses it resolves to.
        format!("http://localhost:{port}/page"),
    ] {
        let got = preview(&alice, &url).await;
        assert_error(&got, 403, "M_FORBIDDEN");
    }
    assert_eq!(site.hits.load(Ordering::SeqCst), 0, "nothing was fetched");
}

#[tokio::test]
async fn a_redirect_to_a_refused_address_is_refused() {
    let site = site().await;
    let server = server(&["127.0.0.1/32"], 10_000).await;
    let alice = server.register("alice", "pw-alice-1").await;
    for path in ["/to-private", "/to-loopback6"] {
        let got = preview(&alice, &site.url(path)).await;
        assert_error(&got, 403, "M_FORBIDDEN");
    }
    // Only the two redirecting pages were fetched, not their targets.
    assert_eq!(site.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn bytes_redirects_time_and_failures_are_capped() {
    let site = site().await;
    let server = server(&["127.0.0.1/32"], 2_000).await;
    let alice = server.register("alice", "pw-alice-1").await;
    assert_error(
        &preview(&alice, &site.url("/big")).await,
        502,
        "M_TOO_LARGE",
    );
    assert_error(
        &preview(&alice, &site.url("/big-chunked")).await,
        502,
        "M_TOO_LARGE",
    );
    assert_error(&preview(&alice, &site.url("/loop")).await, 502, "M_UNKNOWN");
    assert_error(
        &preview(&alice, &site.url("/to-file")).await,
        502,
        "M_UNKNOWN",
    );
    assert_error(
        &preview(&alice, &site.url("/missing")).await,
        502,
        "M_UNKNOWN",
    );
    assert_error(&preview(&alice, &site.url("/hang")).await, 502, "M_UNKNOWN");
    // A closed port on an allowed address: the connection fails.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    assert_error(
        &preview(&alice, &format!("http://127.0.0.1:{closed}/")).await,
        502,
        "M_UNKNOWN",
    );
}

#[tokio::test]
async fn bad_urls_are_invalid_params() {
    let server = server(&[], 10_000).await;
    let alice = server.register("alice", "pw-alice-1").await;
    for url in [
        "not a url",
        "ftp://127.0.0.1/x",
        "file:///etc/passwd",
        "/relative",
    ] {
        assert_error(&preview(&alice, url).await, 400, "M_INVALID_PARAM");
    }
    assert_error(
        &alice.get("/_matrix/client/v1/media/preview_url").await,
        400,
        "M_MISSING_PARAM",
    );
}

#[tokio::test]
async fn disabled_is_unrecognized_and_enabled_needs_a_token() {
    let site = site().await;
    let off = TestServer::start().await;
    let alice = off.register("alice", "pw-alice-1").await;
    assert_error(
        &preview(&alice, &site.url("/page")).await,
        404,
        "M_UNRECOGNIZED",
    );
    assert_error(
        &preview(&off.client(), &site.url("/page")).await,
        404,
        "M_UNRECOGNIZED",
    );
    let on = server(&["127.0.0.1/32"], 10_000).await;
    assert_error(
        &preview(&on.client(), &site.url("/page")).await,
        401,
        "M_MISSING_TOKEN",
    );
    assert_eq!(site.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn previews_in_flight_are_capped() {
    let site = site().await;
    let server = TestServer::start_media(MediaConfig {
        url_preview: UrlPreviewConfig {
            concurrency: 1,
            ..preview_config(&["127.0.0.1/32"], 2_000)
        },
        ..MediaConfig::default()
    })
    .await;
    let alice = server.register("alice", "pw-alice-1").await;
    let hanging = {
        let (alice, url) = (alice.clone(), site.url("/hang"));
        tokio::spawn(async move { preview(&alice, &url).await })
    };
    // The one permitted preview is waiting on /hang: another is refused.
    site.hung.notified().await;
    let got = preview(&alice, &site.url("/page")).await;
    assert_error(&got, 429, "M_LIMIT_EXCEEDED");
    // Once the first has timed out, previews are served again.
    assert_error(&hanging.await.expect("task"), 502, "M_UNKNOWN");
    let (status, og) = preview(&alice, &site.url("/page")).await;
    assert_eq!(status, 200, "{og}");
}

#[tokio::test]
async fn a_preview_is_cached_for_the_hour_until_a_purge() {
    let site = site().await;
    let server = server(&["127.0.0.1/32"], 10_000).await;
    let alice = server.register("alice", "pw-alice-1").await;
    let bob = server.register("bob", "pw-bob-1").await;
    let url = site.url("/page");
    let (status, first) = preview(&alice, &url).await;
    assert_eq!(status, 200, "{first}");
    // The page and its image.
    assert_eq!(site.hits.load(Ordering::SeqCst), 2);
    // Anyone asking in the same hour gets the cached answer, image included.
    let (status, again) = preview(&bob, &url).await;
    assert_eq!((status, &again), (200, &first));
    assert_eq!(site.hits.load(Ordering::SeqCst), 2);
    // The next hour fetches anew.
    server.clock.advance_ms(60 * 60 * 1000);
    let (status, next_hour) = preview(&bob, &url).await;
    assert_eq!(status, 200, "{next_hour}");
    assert_eq!(site.hits.load(Ordering::SeqCst), 4);
    assert_eq!(next_hour["og:title"], "A page");
    // A purge of everything so far clears the cache with the images.
    let now = server.clock.now_ms();
    let report = server
        .state
        .media
        .purge(now + 1, None)
        .await
        .expect("purge");
    assert_eq!(report.media, 2, "both stored images");
    let (status, after_purge) = preview(&alice, &url).await;
    assert_eq!(status, 200, "{after_purge}");
    assert_eq!(site.hits.load(Ordering::SeqCst), 6);
    assert_ne!(after_purge["og:image"], next_hour["og:image"]);
}
