//! Typing notifications (spec: "Typing Notifications").

use axum::Router;
use axum::extract::State;
use ruma::api::client::typing::create_typing_event::v3 as typing;

use super::extract::{ApiResult, Auth, Ruma, ok};
use super::{AppState, route};

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    route::<typing::Request, _, _>(r, set)
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}`.
async fn set(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<typing::Request>,
) -> ApiResult<typing::Response> {
    let timeout = match req.state {
        typing::Typing::Yes(info) => Some(info.timeout),
        _ => None,
    };
    state
        .transitory
        .set_typing(&authed, &req.room_id, &req.user_id, timeout)
        .await?;
    ok(typing::Response::new())
}
