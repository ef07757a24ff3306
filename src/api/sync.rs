//! Syncing (spec: "Syncing", `GET /_matrix/client/v3/sync`).

use axum::Router;
use axum::extract::State;
use ruma::api::client::sync::sync_events::v3;
use ruma::serde::Raw;

use super::extract::{ApiResult, Auth, Ruma, ok};
use super::{ApiError, AppState, route};
use crate::sync;

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    route::<v3::Request, _, _>(r, get_sync)
}

/// `GET /_matrix/client/v3/sync`: initial and incremental sync with
/// long-polling (`timeout` in ms, capped by `SyncConfig::max_timeout_ms`).
/// `filter` (id or inline JSON) and `set_presence` are accepted and not yet
/// applied. Returns global `account_data`; the room, to-device, presence and
/// device-list sections are empty until their stores feed sync.
async fn get_sync(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<v3::Request>,
) -> ApiResult<v3::Response> {
    let request = sync::SyncRequest {
        since: req.since,
        timeout: req.timeout.unwrap_or_default(),
        full_state: req.full_state,
    };
    let found = state
        .sync
        .sync(authed.user_id.as_str(), &request)
        .await
        .map_err(|e| match e {
            sync::Error::InvalidToken(e) => ApiError::InvalidParam(format!("since: {e}")),
            sync::Error::Storage(e) => ApiError::Service(e.into()),
        })?;
    let mut response = v3::Response::new(found.next_batch.to_string());
    response.account_data.events = found
        .account_data
        .into_iter()
        .map(|change| {
            let event = serde_json::json!({
                "type": change.event_type,
                "content": change.content,
            });
            Raw::from_json(serde_json::value::to_raw_value(&event).expect("JSON values serialize"))
        })
        .collect();
    ok(response)
}
