//! Push rules (spec: "Push Rules: API"): the server-default rule set plus the
//! user's changes. Evaluating rules belongs to the notifications work.

use axum::Router;
use axum::extract::State;
use ruma::api::client::push::{
    delete_pushrule, get_pushrule, get_pushrule_actions, get_pushrule_enabled, get_pushrules_all,
    get_pushrules_global_scope, set_pushrule, set_pushrule_actions, set_pushrule_enabled,
};

use super::extract::{ApiResult, Auth, Ruma, ok};
use super::{AppState, route};

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<get_pushrules_all::v3::Request, _, _>(r, get_all);
    let r = route::<get_pushrules_global_scope::v3::Request, _, _>(r, get_global);
    let r = route::<get_pushrule::v3::Request, _, _>(r, get_rule);
    let r = route::<set_pushrule::v3::Request, _, _>(r, set_rule);
    let r = route::<delete_pushrule::v3::Request, _, _>(r, delete_rule);
    let r = route::<get_pushrule_enabled::v3::Request, _, _>(r, get_enabled);
    let r = route::<set_pushrule_enabled::v3::Request, _, _>(r, set_enabled);
    let r = route::<get_pushrule_actions::v3::Request, _, _>(r, get_actions);
    route::<set_pushrule_actions::v3::Request, _, _>(r, set_actions)
}

/// `GET /_matrix/client/v3/pushrules/`.
async fn get_all(
    State(state): State<AppState>,
    Auth(authed): Auth,
    _: Ruma<get_pushrules_all::v3::Request>,
) -> ApiResult<get_pushrules_all::v3::Response> {
    ok(get_pushrules_all::v3::Response::new(
        state.accounts.push_rules(&authed).await?,
    ))
}

/// `GET /_matrix/client/v3/pushrules/global/`.
async fn get_global(
    State(state): State<AppState>,
    Auth(authed): Auth,
    _: Ruma<get_pushrules_global_scope::v3::Request>,
) -> ApiResult<get_pushrules_global_scope::v3::Response> {
    ok(get_pushrules_global_scope::v3::Response::new(
        state.accounts.push_rules(&authed).await?,
    ))
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`.
async fn get_rule(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_pushrule::v3::Request>,
) -> ApiResult<get_pushrule::v3::Response> {
    let rule = state
        .accounts
        .push_rule(&authed, req.kind, &req.rule_id)
        .await?;
    ok(get_pushrule::v3::Response::new(rule.into()))
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`.
async fn set_rule(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<set_pushrule::v3::Request>,
) -> ApiResult<set_pushrule::v3::Response> {
    state
        .accounts
        .set_push_rule(
            &authed,
            req.rule,
            req.after.as_deref(),
            req.before.as_deref(),
        )
        .await?;
    ok(set_pushrule::v3::Response::new())
}

/// `DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`.
async fn delete_rule(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<delete_pushrule::v3::Request>,
) -> ApiResult<delete_pushrule::v3::Response> {
    state
        .accounts
        .delete_push_rule(&authed, req.kind, &req.rule_id)
        .await?;
    ok(delete_pushrule::v3::Response::new())
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`.
async fn get_enabled(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_pushrule_enabled::v3::Request>,
) -> ApiResult<get_pushrule_enabled::v3::Response> {
    let rule = state
        .accounts
        .push_rule(&authed, req.kind, &req.rule_id)
        .await?;
    ok(get_pushrule_enabled::v3::Response::new(rule.enabled()))
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`.
async fn set_enabled(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<set_pushrule_enabled::v3::Request>,
) -> ApiResult<set_pushrule_enabled::v3::Response> {
    state
        .accounts
        .set_push_rule_enabled(&authed, req.kind, &req.rule_id, req.enabled)
        .await?;
    ok(set_pushrule_enabled::v3::Response::new())
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`.
async fn get_actions(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_pushrule_actions::v3::Request>,
) -> ApiResult<get_pushrule_actions::v3::Response> {
    let rule = state
        .accounts
        .push_rule(&authed, req.kind, &req.rule_id)
        .await?;
    ok(get_pushrule_actions::v3::Response::new(
        rule.actions().to_vec(),
    ))
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`.
async fn set_actions(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<set_pushrule_actions::v3::Request>,
) -> ApiResult<set_pushrule_actions::v3::Response> {
    state
        .accounts
        .set_push_rule_actions(&authed, req.kind, &req.rule_id, req.actions)
        .await?;
    ok(set_pushrule_actions::v3::Response::new())
}
