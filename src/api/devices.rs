//! Device management (spec: "Device management").

use axum::Router;
use axum::extract::State;
use ruma::api::client::device::{
    delete_device, delete_devices, get_device, get_devices, update_device,
};

use super::extract::{ApiResult, Auth, Ruma, ok};
use super::{AppState, route};

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<get_devices::v3::Request, _, _>(r, list);
    let r = route::<get_device::v3::Request, _, _>(r, get);
    let r = route::<update_device::v3::Request, _, _>(r, update);
    let r = route::<delete_device::v3::Request, _, _>(r, delete);
    route::<delete_devices::v3::Request, _, _>(r, delete_many)
}

/// `GET /_matrix/client/v3/devices`.
async fn list(
    State(state): State<AppState>,
    Auth(authed): Auth,
    _: Ruma<get_devices::v3::Request>,
) -> ApiResult<get_devices::v3::Response> {
    ok(get_devices::v3::Response::new(
        state.accounts.devices(&authed).await?,
    ))
}

/// `GET /_matrix/client/v3/devices/{deviceId}`.
async fn get(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_device::v3::Request>,
) -> ApiResult<get_device::v3::Response> {
    ok(get_device::v3::Response::new(
        state.accounts.device(&authed, &req.device_id).await?,
    ))
}

/// `PUT /_matrix/client/v3/devices/{deviceId}`: renames a device.
async fn update(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<update_device::v3::Request>,
) -> ApiResult<update_device::v3::Response> {
    state
        .accounts
        .update_device(&authed, &req.device_id, req.display_name.as_deref())
        .await?;
    ok(update_device::v3::Response::new())
}

/// `DELETE /_matrix/client/v3/devices/{deviceId}`: UIA with the password.
async fn delete(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<delete_device::v3::Request>,
) -> ApiResult<delete_device::v3::Response> {
    state
        .accounts
        .delete_devices(&authed, &[req.device_id], req.auth.as_ref())
        .await?;
    ok(delete_device::v3::Response::new())
}

/// `POST /_matrix/client/v3/delete_devices`: UIA with the password.
async fn delete_many(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<delete_devices::v3::Request>,
) -> ApiResult<delete_devices::v3::Response> {
    state
        .accounts
        .delete_devices(&authed, &req.devices, req.auth.as_ref())
        .await?;
    ok(delete_devices::v3::Response::new())
}
