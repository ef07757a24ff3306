//! Server discovery: supported versions, `.well-known`, capabilities and the
//! login flows.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use ruma::RoomVersionId;
use ruma::api::client::discovery::get_capabilities::v3::{
    Capabilities, ChangePasswordCapability, RoomVersionStability, RoomVersionsCapability,
};
use ruma::api::client::discovery::{discover_homeserver, get_capabilities, get_supported_versions};
use ruma::api::client::session::get_login_types::{self, v3::LoginType, v3::PasswordLoginType};

use super::extract::{ApiResult, Ruma, ok};
use super::{AppState, route};

/// The spec versions this server implements.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10",
    "v1.11",
];

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<get_supported_versions::Request, _, _>(r, versions);
    let r = route::<discover_homeserver::Request, _, _>(r, well_known);
    let r = route::<get_capabilities::v3::Request, _, _>(r, capabilities);
    route::<get_login_types::v3::Request, _, _>(r, login_types)
}

/// `GET /_matrix/client/versions` (spec: "GET /_matrix/client/versions").
async fn versions(
    _: Ruma<get_supported_versions::Request>,
) -> ApiResult<get_supported_versions::Response> {
    let mut response = get_supported_versions::Response::new(
        SUPPORTED_VERSIONS.iter().map(|v| (*v).to_owned()).collect(),
    );
    response.unstable_features =
        BTreeMap::from([("org.matrix.simplified_msc3575".to_owned(), true)]);
    ok(response)
}

/// `GET /.well-known/matrix/client` (spec: "GET /.well-known/matrix/client").
async fn well_known(
    State(state): State<AppState>,
    _: Ruma<discover_homeserver::Request>,
) -> ApiResult<discover_homeserver::Response> {
    let config = state.accounts.config();
    let base_url = config
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("https://{}", state.accounts.server_name()));
    ok(discover_homeserver::Response::new(
        discover_homeserver::HomeserverInfo::new(base_url),
    ))
}

/// `GET /_matrix/client/v3/capabilities` (spec: "GET /_matrix/client/v3/capabilities").
async fn capabilities(
    _: Ruma<get_capabilities::v3::Request>,
) -> ApiResult<get_capabilities::v3::Response> {
    let mut caps = Capabilities::new();
    caps.change_password = ChangePasswordCapability::new(true);
    let available = [RoomVersionId::V10, RoomVersionId::V11]
        .into_iter()
        .map(|v| (v, RoomVersionStability::Stable))
        .collect();
    caps.room_versions = RoomVersionsCapability::new(RoomVersionId::V11, available);
    ok(get_capabilities::v3::Response::new(caps))
}

/// `GET /_matrix/client/v3/login` (spec: "GET /_matrix/client/v3/login").
async fn login_types(
    _: Ruma<get_login_types::v3::Request>,
) -> ApiResult<get_login_types::v3::Response> {
    ok(get_login_types::v3::Response::new(vec![
        LoginType::Password(PasswordLoginType::new()),
    ]))
}
