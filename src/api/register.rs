//! Registration: `POST /register`, `GET /register/available` and `GET
//! /register/m.login.registration_token/validity`.

use axum::Router;
use axum::extract::State;
use ruma::api::client::account::{
    check_registration_token_validity, get_username_availability, register,
};

use super::extract::{ApiResult, ClientIp, Ruma, ok};
use super::{AppState, route};
use crate::service::{self, RegisterParams};

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<register::v3::Request, _, _>(r, register);
    let r = route::<get_username_availability::v3::Request, _, _>(r, available);
    route::<check_registration_token_validity::v1::Request, _, _>(r, token_validity)
}

/// `GET /_matrix/client/v1/register/m.login.registration_token/validity`
/// (spec: "Token-authenticated registration"): whether a registration
/// could use the token now. 403 `M_FORBIDDEN` when registration is
/// disabled, as Synapse.
async fn token_validity(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Ruma(req): Ruma<check_registration_token_validity::v1::Request>,
) -> ApiResult<check_registration_token_validity::v1::Response> {
    let valid = state
        .accounts
        .registration_token_valid(&req.token, ip)
        .await?;
    ok(check_registration_token_validity::v1::Response::new(valid))
}

/// `POST /_matrix/client/v3/register` (spec: "Account registration"):
/// user-interactive auth with `m.login.dummy` (or
/// `m.login.registration_token` when a token is configured).
async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Ruma(req): Ruma<register::v3::Request>,
) -> ApiResult<register::v3::Response> {
    if req.kind == register::RegistrationKind::Guest {
        return Err(service::Error::GuestAccessForbidden.into());
    }
    let params = RegisterParams {
        username: req.username,
        password: req.password,
        device_id: req.device_id,
        initial_device_display_name: req.initial_device_display_name,
        inhibit_login: req.inhibit_login,
        auth: req.auth,
    };
    let registered = state.accounts.register(params, ip).await?;
    let mut response = register::v3::Response::new(registered.user_id);
    if let Some(session) = registered.session {
        response.access_token = Some(session.access_token);
        response.device_id = Some(session.device_id);
    }
    ok(response)
}

/// `GET /_matrix/client/v3/register/available` (spec: "GET
/// /_matrix/client/v3/register/available").
async fn available(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Ruma(req): Ruma<get_username_availability::v3::Request>,
) -> ApiResult<get_username_availability::v3::Response> {
    state
        .accounts
        .check_username_available(&req.username, ip)
        .await?;
    ok(get_username_availability::v3::Response::new(true))
}
