//! Presence (spec: "Presence").

use axum::Router;
use axum::extract::State;
use ruma::api::client::presence::{get_presence, set_presence};

use super::extract::{ApiResult, Auth, Ruma, ok};
use super::{AppState, route};

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<get_presence::v3::Request, _, _>(r, get);
    route::<set_presence::v3::Request, _, _>(r, set)
}

/// `GET /_matrix/client/v3/presence/{userId}/status`.
async fn get(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_presence::v3::Request>,
) -> ApiResult<get_presence::v3::Response> {
    let view = state.transitory.presence(&authed, &req.user_id).await?;
    let mut resp = get_presence::v3::Response::new(view.presence);
    resp.status_msg = view.status_msg;
    resp.currently_active = Some(view.currently_active);
    resp.last_active_ago = Some(std::time::Duration::from_millis(view.last_active_ago_ms));
    ok(resp)
}

/// `PUT /_matrix/client/v3/presence/{userId}/status`.
async fn set(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<set_presence::v3::Request>,
) -> ApiResult<set_presence::v3::Response> {
    state
        .transitory
        .set_presence(
            &authed,
            &req.user_id,
            &req.presence,
            req.status_msg.as_deref(),
        )
        .await?;
    ok(set_presence::v3::Response::new())
}
