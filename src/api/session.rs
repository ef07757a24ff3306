//! Sessions: login, logout, whoami, password change and deactivation.

use axum::Router;
use axum::extract::State;
use ruma::api::client::account::{ThirdPartyIdRemovalStatus, change_password, deactivate, whoami};
use ruma::api::client::session::{login, logout, logout_all};
use ruma::api::client::uiaa::UserIdentifier;

use super::extract::{ApiResult, Auth, ClientIp, Ruma, ok};
use super::{ApiError, AppState, route};
use crate::service::LoginParams;

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<login::v3::Request, _, _>(r, login);
    let r = route::<logout::v3::Request, _, _>(r, logout);
    let r = route::<logout_all::v3::Request, _, _>(r, logout_all);
    let r = route::<whoami::v3::Request, _, _>(r, whoami);
    let r = route::<change_password::v3::Request, _, _>(r, change_password);
    route::<deactivate::v3::Request, _, _>(r, deactivate)
}

/// `POST /_matrix/client/v3/login` (spec: "Login"): `m.login.password` with
/// an `m.id.user` identifier or the legacy `user` field.
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Ruma(req): Ruma<login::v3::Request>,
) -> ApiResult<login::v3::Response> {
    let login::v3::LoginInfo::Password(info) = req.login_info else {
        return Err(ApiError::UnknownLoginType("unsupported login type".into()));
    };
    #[allow(deprecated)] // the legacy `user` field is still part of the spec
    let user = match (info.identifier, info.user) {
        (Some(UserIdentifier::Matrix(id)), _) => id.user,
        (None, Some(user)) => user,
        (Some(_), _) => {
            return Err(ApiError::UnknownLoginType(
                "unsupported identifier type".into(),
            ));
        }
        (None, None) => return Err(ApiError::BadJson("missing identifier".into())),
    };
    let params = LoginParams {
        user,
        password: info.password,
        device_id: req.device_id,
        initial_device_display_name: req.initial_device_display_name,
    };
    let session = state.accounts.login(params, ip).await?;
    let mut response =
        login::v3::Response::new(session.user_id, session.access_token, session.device_id);
    #[allow(deprecated)] // still returned by Synapse for old clients
    {
        response.home_server = Some(state.accounts.server_name().to_owned());
    }
    ok(response)
}

/// `POST /_matrix/client/v3/logout` (spec: "POST /_matrix/client/v3/logout").
async fn logout(
    State(state): State<AppState>,
    Auth(authed): Auth,
    _: Ruma<logout::v3::Request>,
) -> ApiResult<logout::v3::Response> {
    state.accounts.logout(&authed).await?;
    ok(logout::v3::Response::new())
}

/// `POST /_matrix/client/v3/logout/all` (spec: "POST /_matrix/client/v3/logout/all").
async fn logout_all(
    State(state): State<AppState>,
    Auth(authed): Auth,
    _: Ruma<logout_all::v3::Request>,
) -> ApiResult<logout_all::v3::Response> {
    state.accounts.logout_all(&authed).await?;
    ok(logout_all::v3::Response::new())
}

/// `GET /_matrix/client/v3/account/whoami` (spec: "GET /_matrix/client/v3/account/whoami").
async fn whoami(
    Auth(authed): Auth,
    _: Ruma<whoami::v3::Request>,
) -> ApiResult<whoami::v3::Response> {
    let mut response = whoami::v3::Response::new(authed.user_id, false);
    response.device_id = Some(authed.device_id);
    ok(response)
}

/// `POST /_matrix/client/v3/account/password` (spec: "POST
/// /_matrix/client/v3/account/password"): UIA with the current password.
async fn change_password(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<change_password::v3::Request>,
) -> ApiResult<change_password::v3::Response> {
    state
        .accounts
        .change_password(
            &authed,
            req.new_password,
            req.logout_devices,
            req.auth.as_ref(),
        )
        .await?;
    ok(change_password::v3::Response::new())
}

/// `POST /_matrix/client/v3/account/deactivate` (spec: "POST
/// /_matrix/client/v3/account/deactivate"): UIA with the password.
async fn deactivate(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<deactivate::v3::Request>,
) -> ApiResult<deactivate::v3::Response> {
    state
        .accounts
        .deactivate(&authed, req.auth.as_ref())
        .await?;
    ok(deactivate::v3::Response::new(
        ThirdPartyIdRemovalStatus::NoSupport,
    ))
}
