//! Health endpoints for load balancers and orchestrators (not Matrix):
//!
//! - `GET /_myelin/health/live`: 200 `{"status":"live"}` while the process
//!   serves HTTP at all;
//! - `GET /_myelin/health/ready`: 200 `{"status":"ready","databases":{..}}`
//!   when every database answers a snapshot read of its schema version
//!   within the configured deadline (`[health] ready_timeout_ms`), else 503
//!   with `"status":"unavailable"`, the failing databases named in
//!   `"failing"` and each database's result under `"databases"`. After a
//!   shutdown signal the listener stops accepting, so probes fail to
//!   connect and a balancer stops sending new work.
//!
//! Who may import this: `api` only.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Map, Value, json};

use super::AppState;

/// How long each database has to answer the readiness read.
#[derive(Clone, Copy, Debug)]
pub struct ReadyTimeout(pub Duration);

impl Default for ReadyTimeout {
    fn default() -> Self {
        ReadyTimeout(Duration::from_secs(2))
    }
}

/// Adds the health routes.
pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/_myelin/health/live", get(live))
        .route("/_myelin/health/ready", get(ready))
}

async fn live() -> Json<Value> {
    Json(json!({ "status": "live" }))
}

async fn ready(
    State(state): State<AppState>,
    timeout: Option<Extension<ReadyTimeout>>,
) -> Response {
    let timeout = timeout.map(|Extension(t)| t).unwrap_or_default().0;
    let checks = state.databases.handles().iter().map(|handle| async move {
        let name = handle.spec().name;
        let result = match tokio::time::timeout(timeout, handle.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        };
        (name, result)
    });
    let results = futures::future::join_all(checks).await;
    let mut databases = Map::new();
    let mut failing = Vec::new();
    for (name, result) in results {
        let value = match result {
            Ok(()) => json!({ "ok": true }),
            Err(error) => {
                failing.push(name);
                json!({ "ok": false, "error": error })
            }
        };
        databases.insert(name.to_owned(), value);
    }
    if failing.is_empty() {
        Json(json!({ "status": "ready", "databases": databases })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "failing": failing, "databases": databases })),
        )
            .into_response()
    }
}
