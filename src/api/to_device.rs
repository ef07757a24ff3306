//! Send-to-device messaging (spec: "Send-to-Device messaging").

use axum::Router;
use axum::extract::State;
use ruma::api::client::to_device::send_event_to_device::v3 as send;

use super::extract::{ApiResult, Auth, Ruma, ok};
use super::{AppState, route};

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    route::<send::Request, _, _>(r, send_to_device)
}

/// `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}`: idempotent
/// per (device, txnId).
async fn send_to_device(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<send::Request>,
) -> ApiResult<send::Response> {
    state
        .transitory
        .send_to_device(
            &authed,
            &req.event_type.to_string(),
            req.txn_id.as_str(),
            &req.messages,
        )
        .await?;
    ok(send::Response::new())
}
