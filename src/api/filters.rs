//! Filters (spec: "Filtering"): stored per user, read back by ID.

use axum::Router;
use axum::extract::State;
use ruma::api::client::filter::{create_filter, get_filter};

use super::extract::{ApiResult, Auth, Ruma, ok};
use super::{AppState, route};

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<create_filter::v3::Request, _, _>(r, create);
    route::<get_filter::v3::Request, _, _>(r, get)
}

/// `POST /_matrix/client/v3/user/{userId}/filter`.
async fn create(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<create_filter::v3::Request>,
) -> ApiResult<create_filter::v3::Response> {
    let id = state
        .accounts
        .create_filter(&authed, &req.user_id, &req.filter)
        .await?;
    ok(create_filter::v3::Response::new(id))
}

/// `GET /_matrix/client/v3/user/{userId}/filter/{filterId}`.
async fn get(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_filter::v3::Request>,
) -> ApiResult<get_filter::v3::Response> {
    let filter = state
        .accounts
        .filter(&authed, &req.user_id, &req.filter_id)
        .await?;
    ok(get_filter::v3::Response::new(filter))
}
