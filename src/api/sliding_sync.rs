//! Simplified sliding sync (MSC4186):
//! `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`.
//!
//! Parses the request with ruma's `unstable-msc4186` types (`pos`,
//! `timeout`, `set_presence` in the query; `conn_id`, `lists`,
//! `room_subscriptions`, `extensions` in the body), reads the list filters
//! ruma's types lack (`spaces`, `tags`, `not_tags`:
//! [`crate::sync::sliding::extra_filters`]) from the same body, calls
//! [`crate::sync::sliding::sliding_sync`] and answers its response (never
//! echoing `txn_id`). Design: `docs/sliding-sync.md`.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ruma::api::client::sync::sync_events::v5;

use super::extract::{Auth, MAX_REQUEST_BYTES_CEILING, RumaResponse};
use super::{ApiError, AppState};
use crate::sync::sliding;

/// The endpoint's path (ruma declares it only as unstable, which
/// [`super::route`] skips).
const PATH: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    super::record_route(&axum::http::Method::POST, PATH);
    r.route(PATH, post(sliding_sync))
}

/// `POST .../org.matrix.simplified_msc3575/sync`: the lists, subscribed
/// rooms and extensions changed since `pos` (all of them without one),
/// long-polling up to `timeout` ms (capped by `SyncConfig::max_timeout_ms`).
///
/// The body is read once: ruma parses it (the one parsing path,
/// `extract::parse`) and [`sliding::extra_filters`] reads the filters
/// ruma's types drop.
///
/// Errors: 400 `M_UNKNOWN_POS` for an unknown, foreign, superseded or
/// expired `pos`; 400 `M_INVALID_PARAM` past a bound (`[sync.sliding]`) or
/// for malformed `spaces`/`tags`/`not_tags`; 413 `M_TOO_LARGE` for a body
/// over `max_request_bytes`.
async fn sliding_sync(
    State(state): State<AppState>,
    Auth(authed): Auth,
    request: Request,
) -> Result<Response, ApiError> {
    let limit_bytes = state
        .accounts
        .config()
        .max_request_bytes
        .min(MAX_REQUEST_BYTES_CEILING);
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, limit_bytes)
        .await
        .map_err(|_| ApiError::TooLarge { limit_bytes })?;
    let req: v5::Request = super::extract::parse(
        Request::from_parts(parts, Body::from(bytes.clone())),
        &state,
        None,
    )
    .await?;
    let found = match sliding::extra_filters(&bytes) {
        Ok(extra) => {
            sliding::sliding_sync(
                &state.sync,
                &state.sync_services(),
                &authed.user_id,
                authed.device_id.as_str(),
                &req,
                &extra,
            )
            .await
        }
        Err(e) => Err(e),
    };
    match found {
        Ok(response) => Ok(RumaResponse(response).into_response()),
        Err(sliding::Error::UnknownPos) => Ok((
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({
                "errcode": "M_UNKNOWN_POS",
                "error": "Unknown position: start the connection afresh",
            })),
        )
            .into_response()),
        Err(sliding::Error::InvalidParam(m)) => Err(ApiError::InvalidParam(m)),
        Err(sliding::Error::Sync(e)) => Err(e.into()),
    }
}
