//! Profiles (spec: "Profiles"): the whole profile and single fields
//! (`displayname`, `avatar_url` and extended fields). Propagating changes into
//! room member events belongs to the rooms API.

use axum::Router;
use axum::extract::State;
use ruma::api::client::profile::{
    delete_profile_field, get_profile, get_profile_field, set_profile_field,
};
use ruma::profile::ProfileFieldValue;

use super::extract::{ApiResult, Auth, Ruma, ok};
use super::{AppState, route};
use crate::service;

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<get_profile::v3::Request, _, _>(r, get_all);
    let r = route::<get_profile_field::v3::Request, _, _>(r, get_field);
    let r = route::<set_profile_field::v3::Request, _, _>(r, set_field);
    route::<delete_profile_field::v3::Request, _, _>(r, delete_field)
}

/// `GET /_matrix/client/v3/profile/{userId}`.
async fn get_all(
    State(state): State<AppState>,
    Ruma(req): Ruma<get_profile::v3::Request>,
) -> ApiResult<get_profile::v3::Response> {
    let mut response = get_profile::v3::Response::new();
    for (field, value) in state.accounts.profile(&req.user_id).await? {
        response.data.set(field, value);
    }
    ok(response)
}

/// `GET /_matrix/client/v3/profile/{userId}/{field}` (`displayname`, `avatar_url`, ...).
async fn get_field(
    State(state): State<AppState>,
    Ruma(req): Ruma<get_profile_field::v3::Request>,
) -> ApiResult<get_profile_field::v3::Response> {
    let field = req.field.as_str();
    let value = state.accounts.profile_field(&req.user_id, field).await?;
    let value =
        ProfileFieldValue::new(field, value).map_err(|e| service::Error::BadJson(e.to_string()))?;
    ok(get_profile_field::v3::Response::new(value))
}

/// `PUT /_matrix/client/v3/profile/{userId}/{field}`: own profile only.
async fn set_field(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<set_profile_field::v3::Request>,
) -> ApiResult<set_profile_field::v3::Response> {
    let field = req.value.field_name();
    let value = req.value.value().into_owned();
    state
        .accounts
        .set_profile_field(&authed, &req.user_id, field.as_str(), Some(value))
        .await?;
    propagate(&state, &authed, field.as_str()).await?;
    ok(set_profile_field::v3::Response::new())
}

/// `DELETE /_matrix/client/v3/profile/{userId}/{field}` (spec v1.16): own profile only.
async fn delete_field(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<delete_profile_field::v3::Request>,
) -> ApiResult<delete_profile_field::v3::Response> {
    state
        .accounts
        .set_profile_field(&authed, &req.user_id, req.field.as_str(), None)
        .await?;
    propagate(&state, &authed, req.field.as_str()).await?;
    ok(delete_profile_field::v3::Response::new())
}

/// A changed `displayname` or `avatar_url` becomes a new member event in
/// every room the user is joined to (spec: "Events on Change of Profile
/// Information").
async fn propagate(
    state: &AppState,
    authed: &service::Authed,
    field: &str,
) -> Result<(), super::ApiError> {
    if matches!(field, "displayname" | "avatar_url") {
        state.rooms.propagate_profile(&authed.user_id).await?;
    }
    Ok(())
}
