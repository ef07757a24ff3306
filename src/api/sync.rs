//! Syncing (spec: "Syncing", `GET /_matrix/client/v3/sync`).
//!
//! Parses the request (token, timeout, filter by ID or inline JSON,
//! `set_presence`), calls [`crate::sync::SyncService::sync`] and turns its
//! result into the response. Design: `docs/sync.md`.

use axum::Router;
use axum::extract::State;
use ruma::OneTimeKeyAlgorithm;
use ruma::api::client::filter::FilterDefinition;
use ruma::api::client::sync::sync_events::v3;
use ruma::presence::PresenceState;
use ruma::serde::Raw;
use serde_json::Value;

use axum::response::{IntoResponse, Response};
use ruma::api::OutgoingResponseExt;

use super::extract::{Auth, Ruma, RumaResponse};
use super::{ApiError, AppState, route};
use crate::sync;

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    route::<v3::Request, _, _>(r, get_sync)
}

fn raw<T>(value: &Value) -> Raw<T> {
    Raw::from_json(serde_json::value::to_raw_value(value).expect("JSON values serialize"))
}

/// `GET /_matrix/client/v3/sync`: initial and incremental sync with
/// long-polling (`timeout` in ms, capped by `SyncConfig::max_timeout_ms`).
/// Returns `rooms` (join, invite, leave), global `account_data`,
/// `to_device`, `presence`, `device_lists`, `device_one_time_keys_count`
/// and `device_unused_fallback_key_types`.
///
/// Errors: 400 `M_INVALID_PARAM` for a malformed `since`; 404
/// `M_NOT_FOUND` for an unknown filter ID.
async fn get_sync(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<v3::Request>,
) -> Result<Response, ApiError> {
    let definition = match req.filter {
        None => FilterDefinition::default(),
        Some(v3::Filter::FilterDefinition(def)) => def,
        Some(v3::Filter::FilterId(id)) => {
            state.accounts.filter(&authed, &authed.user_id, &id).await?
        }
        Some(_) => FilterDefinition::default(),
    };
    let set_presence = match req.set_presence {
        PresenceState::Offline => None,
        other => Some(other),
    };
    let request = sync::SyncRequest {
        since: req.since,
        timeout: req.timeout.unwrap_or_default(),
        full_state: req.full_state,
        device_id: Some(authed.device_id.to_string()),
        filter: sync::SyncFilter::from_definition(&definition),
        set_presence,
    };
    let found = state
        .sync
        .sync(&state.sync_services(), &authed.user_id, &request)
        .await?;
    let mut response = v3::Response::new(found.next_batch.to_string());
    response.account_data.events = found
        .account_data
        .into_iter()
        .map(|change| {
            raw(&serde_json::json!({ "type": change.event_type, "content": change.content }))
        })
        .collect();
    response.rooms.join = found.rooms.join;
    response.rooms.invite = found.rooms.invite;
    response.rooms.leave = found.rooms.leave;
    response.to_device.events = found.to_device.iter().map(raw).collect();
    response.presence.events = found.presence.iter().map(raw).collect();
    response.device_lists.changed = found.device_lists_changed;
    response.device_lists.left = found.device_lists_left;
    response.device_one_time_keys_count = found
        .one_time_key_counts
        .into_iter()
        .map(|(alg, n)| {
            (
                OneTimeKeyAlgorithm::from(alg),
                ruma::UInt::new_saturating(n),
            )
        })
        .collect();
    response.device_unused_fallback_key_types = found
        .unused_fallback_key_types
        .map(|types| types.into_iter().map(OneTimeKeyAlgorithm::from).collect());
    let Some(game) = found.game else {
        return Ok(RumaResponse(response).into_response());
    };
    // ruma's response has no place for a custom section: add it to the JSON.
    let http = response
        .try_into_http_response::<Vec<u8>>()
        .map_err(|_| ApiError::Internal)?;
    let (parts, body) = http.into_parts();
    let mut json: Value = serde_json::from_slice(&body).map_err(|_| ApiError::Internal)?;
    json["org.myelin.game"] = game;
    let body = serde_json::to_vec(&json).map_err(|_| ApiError::Internal)?;
    Ok(Response::from_parts(parts, axum::body::Body::from(body)))
}
