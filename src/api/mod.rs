//! The Matrix Client-Server HTTP API (spec v1.x), on axum.
//!
//! Shape after mini-redis: [`serve`] takes an already-bound listener, the
//! shared [`AppState`] (the services, wired in `app`) and a shutdown future, so tests bind `127.0.0.1:0` and
//! stop the server cleanly. On shutdown the server stops accepting, lets
//! in-flight requests finish and closes idle connections.
//!
//! The router is built from ruma's endpoint metadata: each handler is
//! registered on every stable path (`r0` and `v3`) and the method that ruma's
//! request type declares (`route`), so paths are never spelled twice.
//! Handlers are thin: parse with [`extract::Ruma`], authenticate with
//! [`extract::Auth`], call [`crate::service`], wrap the ruma response.
//! Failures of every kind become Matrix JSON errors in [`error`], the one
//! place `errcode`s are chosen.
//!
//! Middleware, outermost first: request metrics (`myelin_http_*`, by
//! axum's route template written `/rooms/:room_id/...`; a no-op unless
//! metrics are on), panic catching (500 M_UNKNOWN, logged with its
//! location and counted: [`panics::count`]), request tracing, CORS as the
//! spec requires for browser clients (any origin; the methods and headers
//! of spec section "Web Browser Clients"), and a global bound on requests
//! in flight.
//!
//! Besides the Matrix API: the health endpoints ([`health`]) on the client
//! listener, and `GET /metrics` on a listener of its own ([`ServeOptions`];
//! never the client port).
//!
//! Who may import this: the CLI (`serve`) and tests. It never touches `kv`.

mod account_data;
mod admin;
mod body;
mod devices;
mod directory;
mod discovery;
mod e2ee_keys;
pub mod error;
pub mod extract;
mod filters;
pub mod game;
pub mod health;
pub mod leaderboard;
mod media;
mod membership;
mod messages;
pub mod panics;
mod presence;
mod profile;
mod push_rules;
mod receipts;
mod register;
mod room_keys;
mod room_state;
mod rooms;
mod session;
mod sliding_sync;
mod sync;
mod to_device;
mod typing;

use std::future::Future;
use std::net::SocketAddr;

use axum::extract::{MatchedPath, Request};
use axum::handler::Handler;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{MethodFilter, get, on};
use axum::serve::ListenerExt;
use axum::{Extension, Router};
use ruma::api::IncomingRequest;
use ruma::api::path_builder::PathBuilder;
use tower_http::cors::{Any, CorsLayer};
use tower_http::trace::TraceLayer;

pub use error::ApiError;

/// What every handler shares: the process's services, built once by
/// [`crate::app::App::open`]. Cheap to clone.
pub type AppState = crate::app::App;

/// The application: every route, the fallbacks and the middleware, with
/// the default readiness deadline.
pub fn router(state: AppState) -> Router {
    router_with(state, health::ReadyTimeout::default())
}

/// [`router`] with readiness reads bounded by `ready_timeout`.
pub fn router_with(state: AppState, ready_timeout: health::ReadyTimeout) -> Router {
    let max_in_flight = state.accounts.config().max_requests_in_flight.max(1);
    let routes = Router::new();
    let routes = discovery::routes(routes);
    let routes = register::routes(routes);
    let routes = session::routes(routes);
    let routes = devices::routes(routes);
    let routes = profile::routes(routes);
    let routes = account_data::routes(routes);
    let routes = filters::routes(routes);
    let routes = push_rules::routes(routes);
    let routes = sync::routes(routes);
    let routes = sliding_sync::routes(routes);
    let routes = typing::routes(routes);
    let routes = to_device::routes(routes);
    let routes = presence::routes(routes);
    let routes = e2ee_keys::routes(routes);
    let routes = room_keys::routes(routes);
    let routes = rooms::routes(routes);
    let routes = membership::routes(routes);
    let routes = room_state::routes(routes);
    let routes = messages::routes(routes);
    let routes = directory::routes(routes);
    let routes = receipts::routes(routes);
    let routes = game::routes(routes);
    // Leaderboards and tournaments (issue 18).
    let routes = leaderboard::routes(routes);
    let routes = media::routes(routes);
    let routes = health::routes(routes);
    let routes = admin::routes(routes);
    routes
        .fallback(|| async { ApiError::UnrecognizedPath })
        .method_not_allowed_fallback(|| async { ApiError::UnrecognizedMethod })
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            max_in_flight,
        ))
        .layer(cors())
        .layer(TraceLayer::new_for_http())
        .layer(panics::layer())
        .layer(axum::middleware::from_fn(record_request))
        .layer(Extension(ready_timeout))
        .with_state(state)
}

/// Records a request in the `myelin_http_*` metrics: in flight while it
/// runs, then counted by route template and status with its latency.
async fn record_request(request: Request, next: Next) -> Response {
    if !crate::metrics::enabled() {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| route_label(p.as_str()));
    let method = request.method().clone();
    let started = tokio::time::Instant::now();
    let in_flight = crate::metrics::http_in_flight();
    let response = next.run(request).await;
    drop(in_flight);
    crate::metrics::http_request(
        method.as_str(),
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// A route template as a metrics label: axum's `{param}` written `:param`
/// (`/rooms/:room_id/send/...`), since braces inside label values trip
/// some text-format parsers.
fn route_label(template: &str) -> String {
    template.replace('{', ":").replace('}', "")
}

/// What [`serve_with`] adds to [`serve`].
#[derive(Debug, Default)]
pub struct ServeOptions {
    /// Where to serve `GET /metrics` (the OpenMetrics text of
    /// [`crate::metrics::encode`]), if anywhere. Never the client listener.
    pub metrics: Option<tokio::net::TcpListener>,
    /// How long each database has to answer the readiness read.
    pub ready_timeout: health::ReadyTimeout,
}

/// Serves the API on `listener` until `shutdown` resolves, then stops
/// accepting, drains in-flight requests and returns.
///
/// Errors: the listener's I/O errors.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, shutdown, ServeOptions::default()).await
}

/// [`serve`], with the metrics listener and readiness deadline of
/// `options`. On shutdown waiting long-polls are answered at once
/// (`SyncService::begin_shutdown`), the metrics listener stops with the
/// client one.
///
/// Errors: the listeners' I/O errors.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    let stopping = stop_flag();
    let metrics = options.metrics.map(|listener| {
        let stopped = stopping.subscribe();
        tokio::spawn(serve_metrics(listener, stopped))
    });
    let sync = state.sync.clone();
    let collector = (state.transitory.clone()).spawn_collector(std::time::Duration::from_secs(1));
    let shutdown = async move {
        shutdown.await;
        sync.begin_shutdown();
        stopping.send_replace(true);
    };
    let app = router_with(state, options.ready_timeout);
    tracing::info!(addr = ?listener.local_addr().ok(), "serving the client API");
    // TCP_NODELAY on every connection: a streamed body (media downloads and
    // thumbnails) goes out in more than one write, and with Nagle's
    // algorithm the second small write waits for the client's delayed ACK
    // of the first (40 ms on Linux): a cached 96x96 thumbnail took 42 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    collector.abort();
    let _ = collector.await;
    if let Some(metrics) = metrics {
        match metrics.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "the metrics listener failed"),
            Err(e) => tracing::warn!(error = %e, "the metrics listener task failed"),
            Ok(Ok(())) => {}
        }
    }
    served
}

/// A flag the client server raises when it begins shutting down.
fn stop_flag() -> tokio::sync::watch::Sender<bool> {
    tokio::sync::watch::channel(false).0
}

/// Serves `GET /metrics` on `listener` until `stopping` turns true.
async fn serve_metrics(
    listener: tokio::net::TcpListener,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new().route(
        "/metrics",
        get(|| async {
            (
                [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                crate::metrics::encode(),
            )
        }),
    );
    tracing::info!(addr = ?listener.local_addr().ok(), "serving metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        })
        .await
}

/// CORS for browser clients (spec: "Web Browser Clients").
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::HeaderName::from_static("x-requested-with"),
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
        ])
}

/// Registers `handler` for ruma endpoint `R`: its method on every stable path,
/// and records each in [`registered_routes`].
fn route<R, H, T>(router: Router<AppState>, handler: H) -> Router<AppState>
where
    R: IncomingRequest,
    H: Handler<T, AppState>,
    T: 'static,
{
    let method = MethodFilter::try_from(R::METHOD).expect("Matrix endpoints use standard methods");
    R::PATH_BUILDER
        .all_paths()
        .filter(|path| !path.contains("/unstable/"))
        .fold(router, |router, path| {
            record_route(&R::METHOD, path);
            router.route(path, on(method, handler.clone()))
        })
}

/// Every (method, path template) registered through ruma metadata.
static ROUTES: std::sync::Mutex<std::collections::BTreeSet<(String, String)>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn record_route(method: &Method, path: &str) {
    ROUTES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert((method.to_string(), path.to_owned()));
}

/// The `(method, path template)` of every ruma endpoint [`router`] has
/// registered in this process, sorted (path templates in axum's syntax,
/// `/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}`). Empty
/// until [`router`] has run once. For tests that must reach every route
/// (the no-5xx fuzz test) without a hand-kept list.
pub fn registered_routes() -> Vec<(String, String)> {
    ROUTES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .cloned()
        .collect()
}
