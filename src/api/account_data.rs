//! Client config / account data (spec: "Client Config"), global and per room.

use axum::Router;
use axum::extract::State;
use ruma::api::client::config::{
    get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data,
};
use ruma::serde::Raw;

use super::extract::{ApiResult, Auth, Ruma, ok};
use super::{AppState, route};

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<get_global_account_data::v3::Request, _, _>(r, get_global);
    let r = route::<set_global_account_data::v3::Request, _, _>(r, set_global);
    let r = route::<get_room_account_data::v3::Request, _, _>(r, get_room);
    route::<set_room_account_data::v3::Request, _, _>(r, set_room)
}

/// `GET /_matrix/client/v3/user/{userId}/account_data/{type}`.
async fn get_global(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_global_account_data::v3::Request>,
) -> ApiResult<get_global_account_data::v3::Response> {
    let content = state
        .accounts
        .account_data(&authed, &req.user_id, None, &req.event_type.to_string())
        .await?;
    ok(get_global_account_data::v3::Response::new(Raw::from_json(
        content,
    )))
}

/// `PUT /_matrix/client/v3/user/{userId}/account_data/{type}`.
async fn set_global(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<set_global_account_data::v3::Request>,
) -> ApiResult<set_global_account_data::v3::Response> {
    state
        .accounts
        .set_account_data(
            &authed,
            &req.user_id,
            None,
            &req.event_type.to_string(),
            req.data.json(),
        )
        .await?;
    ok(set_global_account_data::v3::Response::new())
}

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`.
async fn get_room(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_room_account_data::v3::Request>,
) -> ApiResult<get_room_account_data::v3::Response> {
    let content = state
        .accounts
        .account_data(
            &authed,
            &req.user_id,
            Some(&req.room_id),
            &req.event_type.to_string(),
        )
        .await?;
    ok(get_room_account_data::v3::Response::new(Raw::from_json(
        content,
    )))
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`.
async fn set_room(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<set_room_account_data::v3::Request>,
) -> ApiResult<set_room_account_data::v3::Response> {
    state
        .accounts
        .set_account_data(
            &authed,
            &req.user_id,
            Some(&req.room_id),
            &req.event_type.to_string(),
            req.data.json(),
        )
        .await?;
    ok(set_room_account_data::v3::Response::new())
}
