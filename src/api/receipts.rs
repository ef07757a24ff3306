//! Receipts and read markers (spec: "Receipts", "Fully read markers"):
//! `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}` and
//! `POST /rooms/{roomId}/read_markers`. Sync delivers the receipts as
//! `m.receipt` ephemeral events (`Rooms::receipt_event`).

use axum::Router;
use axum::extract::State;
use ruma::api::client::read_marker::set_read_marker;
use ruma::api::client::receipt::create_receipt;

use super::extract::{ApiResult, Auth, Ruma, ok};
use super::{ApiError, AppState, route};

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<create_receipt::v3::Request, _, _>(r, receipt);
    route::<set_read_marker::v3::Request, _, _>(r, read_markers)
}

/// `POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}`
/// (spec: "Receipts"): `m.read`, `m.read.private` (with `thread_id`), and
/// `m.fully_read` (the read marker; no `thread_id`).
async fn receipt(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<create_receipt::v3::Request>,
) -> ApiResult<create_receipt::v3::Response> {
    let receipt_type = req.receipt_type.to_string();
    let thread = req.thread.as_str();
    if receipt_type == "m.fully_read" {
        if thread.is_some() {
            return Err(ApiError::InvalidParam(
                "m.fully_read takes no thread_id".into(),
            ));
        }
        state
            .rooms
            .set_fully_read(&authed.user_id, &req.room_id, &req.event_id)
            .await?;
    } else {
        state
            .rooms
            .receipt(
                &authed.user_id,
                &req.room_id,
                &receipt_type,
                &req.event_id,
                thread,
            )
            .await?;
    }
    ok(create_receipt::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/read_markers` (spec: "Fully
/// read markers"): `m.fully_read`, `m.read`, `m.read.private`.
async fn read_markers(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<set_read_marker::v3::Request>,
) -> ApiResult<set_read_marker::v3::Response> {
    state
        .rooms
        .set_read_markers(
            &authed.user_id,
            &req.room_id,
            req.fully_read.as_ref(),
            req.read_receipt.as_ref(),
            req.private_read_receipt.as_ref(),
        )
        .await?;
    ok(set_read_marker::v3::Response::new())
}
