//! Room state (spec: "Getting events for a room", "Sending events to a
//! room"): `GET /rooms/{roomId}/state`, `GET|PUT
//! /rooms/{roomId}/state/{eventType}/{stateKey}`, the same without a state
//! key (`/state/{eventType}` and `/state/{eventType}/`, meaning the empty
//! key), and `GET /rooms/{roomId}/aliases`.

use axum::Router;
use axum::extract::{FromRequest, Request, State};
use axum::routing::get;
use ruma::api::IncomingRequest;
use ruma::api::client::room::aliases;
use ruma::api::client::state::{get_state_event_for_key, get_state_events, send_state_event};
use serde_json::Value;

use super::extract::{ApiResult, Auth, Ruma, ok};
use super::rooms::raws;
use super::{ApiError, AppState, route};
use crate::service::rooms::Viewer;

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<get_state_events::v3::Request, _, _>(r, all_state);
    let r = route::<get_state_event_for_key::v3::Request, _, _>(r, get_one);
    let r = route::<send_state_event::v3::Request, _, _>(r, put_one);
    let r = route::<aliases::v3::Request, _, _>(r, room_aliases);
    ["r0", "v3"].into_iter().fold(r, |r, v| {
        let base = format!("/_matrix/client/{v}/rooms/{{room_id}}/state/{{event_type}}");
        r.route(&base, get(get_empty_key).put(put_empty_key))
            .route(&format!("{base}/"), get(get_empty_key).put(put_empty_key))
    })
}

/// A ruma request whose path lacks its trailing state key: parsed with the
/// state key `""`.
struct EmptyKey<T>(T);

impl<T: IncomingRequest + Send + 'static> FromRequest<AppState> for EmptyKey<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        super::extract::parse(req, state, Some(""))
            .await
            .map(EmptyKey)
    }
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state` (spec: "Getting events for
/// a room"): the current state for members, the state at their leave for
/// users who left.
async fn all_state(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_state_events::v3::Request>,
) -> ApiResult<get_state_events::v3::Response> {
    let viewer = Viewer {
        user: &authed.user_id,
        device: Some(authed.device_id.as_str()),
    };
    let events = state.rooms.state(viewer, &req.room_id).await?;
    ok(get_state_events::v3::Response::new(raws(&events)?))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
/// (spec: "Getting events for a room"): the content, or the whole event
/// with `?format=event`.
async fn get_one(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_state_event_for_key::v3::Request>,
) -> ApiResult<get_state_event_for_key::v3::Response> {
    get_state(state, authed, req).await
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}[/]`: the empty
/// state key.
async fn get_empty_key(
    State(state): State<AppState>,
    Auth(authed): Auth,
    EmptyKey(req): EmptyKey<get_state_event_for_key::v3::Request>,
) -> ApiResult<get_state_event_for_key::v3::Response> {
    get_state(state, authed, req).await
}

async fn get_state(
    state: AppState,
    authed: crate::service::Authed,
    req: get_state_event_for_key::v3::Request,
) -> ApiResult<get_state_event_for_key::v3::Response> {
    let viewer = Viewer {
        user: &authed.user_id,
        device: Some(authed.device_id.as_str()),
    };
    let event = state
        .rooms
        .state_event_full(
            viewer,
            &req.room_id,
            &req.event_type.to_string(),
            &req.state_key,
        )
        .await?;
    let body = if req.format == get_state_event_for_key::v3::StateEventFormat::Event {
        event
    } else {
        event["content"].clone()
    };
    let body = serde_json::value::to_raw_value(&body).map_err(|_| ApiError::Internal)?;
    ok(get_state_event_for_key::v3::Response::new(body))
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
/// (spec: "Sending events to a room"). `m.room.canonical_alias` is checked
/// (400 M_BAD_ALIAS for local aliases of other rooms).
async fn put_one(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<send_state_event::v3::Request>,
) -> ApiResult<send_state_event::v3::Response> {
    put_state(state, authed, req).await
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}[/]`: the empty
/// state key.
async fn put_empty_key(
    State(state): State<AppState>,
    Auth(authed): Auth,
    EmptyKey(req): EmptyKey<send_state_event::v3::Request>,
) -> ApiResult<send_state_event::v3::Response> {
    put_state(state, authed, req).await
}

async fn put_state(
    state: AppState,
    authed: crate::service::Authed,
    req: send_state_event::v3::Request,
) -> ApiResult<send_state_event::v3::Response> {
    let content: Value = serde_json::from_str(req.body.json().get())
        .map_err(|e| ApiError::BadJson(e.to_string()))?;
    let sent = state
        .rooms
        .send_state(
            &authed.user_id,
            &req.room_id,
            &req.event_type.to_string(),
            &req.state_key,
            content,
        )
        .await?;
    ok(send_state_event::v3::Response::new(sent.event_id))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/aliases` (spec: "Room aliases"):
/// the room's local aliases.
async fn room_aliases(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<aliases::v3::Request>,
) -> ApiResult<aliases::v3::Response> {
    let list = state
        .rooms
        .room_aliases(&authed.user_id, &req.room_id)
        .await?;
    ok(aliases::v3::Response::new(list))
}
