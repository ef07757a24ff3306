//! Rooms (spec: "Rooms", "Events"): `POST /createRoom`, sending message
//! events, redactions, and fetching one event. Thin handlers over
//! [`crate::service::rooms::Rooms`]; shared helpers for the other room
//! areas (JSON to ruma `Raw`, stream tokens).

use axum::Router;
use axum::extract::State;
use ruma::api::client::message::send_message_event;
use ruma::api::client::redact::redact_event;
use ruma::api::client::room::{Visibility, create_room, get_room_event};
use ruma::serde::Raw;
use serde_json::Value;

use super::extract::{ApiResult, Auth, Ruma, ok};
use super::{ApiError, AppState, route};
use crate::service::rooms::{CreateRoom, Preset, StreamPosition, Viewer};

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<create_room::v3::Request, _, _>(r, create);
    let r = route::<send_message_event::v3::Request, _, _>(r, send);
    let r = route::<redact_event::v3::Request, _, _>(r, redact);
    route::<get_room_event::v3::Request, _, _>(r, event)
}

/// A JSON value as a ruma `Raw` of any event type.
pub(super) fn raw<T>(value: &Value) -> Result<Raw<T>, ApiError> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|_| ApiError::Internal)
}

/// JSON values as ruma `Raw`s.
pub(super) fn raws<T>(values: &[Value]) -> Result<Vec<Raw<T>>, ApiError> {
    values.iter().map(raw).collect()
}

/// Parses a pagination token into a stream cut. Accepted forms:
/// - a rooms stream position, 24 lowercase hex digits (what `/messages`,
///   `/context`, `/relations` and `/threads` return): the cut before that
///   position;
/// - a `/sync` token (`next_batch` / `prev_batch`, 42 base64url
///   characters): the cut after every rooms commit up to its rooms
///   position.
pub(super) fn parse_token(name: &str, token: &str) -> Result<StreamPosition, ApiError> {
    if let Ok(position) = token.parse::<StreamPosition>() {
        return Ok(position);
    }
    let sync: crate::sync::SyncToken = token
        .parse()
        .map_err(|_| ApiError::InvalidParam(format!("{name}: invalid token {token:?}")))?;
    Ok(StreamPosition::end_of_commit(sync.rooms))
}

/// `POST /_matrix/client/v3/createRoom` (spec: "Creation"): every field but
/// `invite_3pid`; `room_alias_name` creates the alias and the canonical
/// alias event; `visibility: public` publishes the room.
async fn create(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<create_room::v3::Request>,
) -> ApiResult<create_room::v3::Response> {
    let preset = match req.preset.as_ref().map(|p| p.as_str()) {
        None => None,
        Some("private_chat") => Some(Preset::PrivateChat),
        Some("trusted_private_chat") => Some(Preset::TrustedPrivateChat),
        Some("public_chat") => Some(Preset::PublicChat),
        Some(other) => return Err(ApiError::InvalidParam(format!("unknown preset {other}"))),
    };
    let json = |raw: &str| -> Result<Value, ApiError> {
        serde_json::from_str(raw).map_err(|e| ApiError::BadJson(e.to_string()))
    };
    let mut initial_state = Vec::with_capacity(req.initial_state.len());
    for event in &req.initial_state {
        let event = json(event.json().get())?;
        let kind = event["type"]
            .as_str()
            .ok_or_else(|| ApiError::BadJson("initial_state event without type".into()))?;
        let state_key = event["state_key"].as_str().unwrap_or_default();
        initial_state.push((
            kind.to_owned(),
            state_key.to_owned(),
            event["content"].clone(),
        ));
    }
    let params = CreateRoom {
        preset,
        public: req.visibility == Visibility::Public,
        room_alias_name: req.room_alias_name,
        name: req.name,
        topic: req.topic,
        invite: req.invite,
        initial_state,
        room_version: req.room_version,
        creation_content: req
            .creation_content
            .as_ref()
            .map(|c| json(c.json().get()))
            .transpose()?,
        power_level_content_override: req
            .power_level_content_override
            .as_ref()
            .map(|c| json(c.json().get()))
            .transpose()?,
        is_direct: req.is_direct,
    };
    let (room_id, _) = state.rooms.create_room(&authed.user_id, params).await?;
    ok(create_room::v3::Response::new(room_id))
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}` (spec:
/// "Sending events to a room"): idempotent per device and transaction ID.
async fn send(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<send_message_event::v3::Request>,
) -> ApiResult<send_message_event::v3::Response> {
    let content: Value = serde_json::from_str(req.body.json().get())
        .map_err(|e| ApiError::BadJson(e.to_string()))?;
    let sent = state
        .rooms
        .send_message(
            &authed.user_id,
            authed.device_id.as_str(),
            &req.room_id,
            &req.event_type.to_string(),
            req.txn_id.as_str(),
            content,
        )
        .await?;
    ok(send_message_event::v3::Response::new(sent.event_id))
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}` (spec:
/// "Redactions").
async fn redact(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<redact_event::v3::Request>,
) -> ApiResult<redact_event::v3::Response> {
    let sent = state
        .rooms
        .redact(
            &authed.user_id,
            authed.device_id.as_str(),
            &req.room_id,
            &req.event_id,
            req.txn_id.as_str(),
            req.reason.as_deref(),
        )
        .await?;
    ok(redact_event::v3::Response::new(sent.event_id))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}` (spec: "Getting
/// events for a room"): 404 M_NOT_FOUND also for events the user may not
/// see.
async fn event(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_room_event::v3::Request>,
) -> ApiResult<get_room_event::v3::Response> {
    let viewer = Viewer {
        user: &authed.user_id,
        device: Some(authed.device_id.as_str()),
    };
    let event = state
        .rooms
        .event(viewer, &req.room_id, &req.event_id)
        .await?;
    ok(get_room_event::v3::Response::new(raw(&event)?))
}
