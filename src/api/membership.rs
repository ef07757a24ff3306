//! Room membership (spec: "Room membership"): join, knock, leave, invite,
//! kick, ban, unban, forget, and the membership lists (`/joined_rooms`,
//! `/joined_members`, `/members`).

use axum::Router;
use axum::extract::State;
use ruma::RoomOrAliasId;
use ruma::api::client::knock::knock_room;
use ruma::api::client::membership::{
    ban_user, forget_room, get_member_events, invite_user, join_room_by_id,
    join_room_by_id_or_alias, joined_members, joined_rooms, kick_user, leave_room, unban_user,
};
use ruma::events::room::member::MembershipState;

use super::extract::{ApiResult, Auth, Ruma, ok};
use super::rooms::{parse_token, raws};
use super::{ApiError, AppState, route};
use crate::service::rooms::{MembersQuery, Viewer};

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<join_room_by_id::v3::Request, _, _>(r, join_by_id);
    let r = route::<join_room_by_id_or_alias::v3::Request, _, _>(r, join_by_id_or_alias);
    let r = route::<knock_room::v3::Request, _, _>(r, knock);
    let r = route::<leave_room::v3::Request, _, _>(r, leave);
    let r = route::<invite_user::v3::Request, _, _>(r, invite);
    let r = route::<kick_user::v3::Request, _, _>(r, kick);
    let r = route::<ban_user::v3::Request, _, _>(r, ban);
    let r = route::<unban_user::v3::Request, _, _>(r, unban);
    let r = route::<forget_room::v3::Request, _, _>(r, forget);
    let r = route::<joined_rooms::v3::Request, _, _>(r, list_joined_rooms);
    let r = route::<joined_members::v3::Request, _, _>(r, list_joined_members);
    route::<get_member_events::v3::Request, _, _>(r, members)
}

/// `POST /_matrix/client/v3/rooms/{roomId}/join` (spec: "Joining rooms").
async fn join_by_id(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<join_room_by_id::v3::Request>,
) -> ApiResult<join_room_by_id::v3::Response> {
    let room = <&RoomOrAliasId>::from(&*req.room_id);
    let room_id = state
        .rooms
        .join_by(&authed.user_id, room, req.reason.as_deref())
        .await?;
    ok(join_room_by_id::v3::Response::new(room_id))
}

/// `POST /_matrix/client/v3/join/{roomIdOrAlias}` (spec: "Joining rooms"):
/// local aliases only.
async fn join_by_id_or_alias(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<join_room_by_id_or_alias::v3::Request>,
) -> ApiResult<join_room_by_id_or_alias::v3::Response> {
    let room_id = state
        .rooms
        .join_by(
            &authed.user_id,
            &req.room_id_or_alias,
            req.reason.as_deref(),
        )
        .await?;
    ok(join_room_by_id_or_alias::v3::Response::new(room_id))
}

/// `POST /_matrix/client/v3/knock/{roomIdOrAlias}` (spec: "Knocking on
/// rooms"): rooms whose join rule is `knock` or `knock_restricted`.
async fn knock(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<knock_room::v3::Request>,
) -> ApiResult<knock_room::v3::Response> {
    let room_id = state
        .rooms
        .knock(
            &authed.user_id,
            &req.room_id_or_alias,
            req.reason.as_deref(),
        )
        .await?;
    ok(knock_room::v3::Response::new(room_id))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/leave` (spec: "Leaving rooms").
async fn leave(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<leave_room::v3::Request>,
) -> ApiResult<leave_room::v3::Response> {
    state
        .rooms
        .leave_with(&authed.user_id, &req.room_id, req.reason.as_deref())
        .await?;
    ok(leave_room::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/invite` (spec: "Inviting"):
/// Matrix user IDs only (no third-party invites).
async fn invite(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<invite_user::v3::Request>,
) -> ApiResult<invite_user::v3::Response> {
    let invite_user::v3::InvitationRecipient::UserId(invite_user::v3::InviteUserId {
        user_id,
        reason,
        ..
    }) = req.recipient
    else {
        return Err(ApiError::InvalidParam(
            "third-party invites are not supported".into(),
        ));
    };
    state
        .rooms
        .invite(&authed.user_id, &req.room_id, &user_id, reason.as_deref())
        .await?;
    ok(invite_user::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/kick` (spec: "Kicking").
async fn kick(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<kick_user::v3::Request>,
) -> ApiResult<kick_user::v3::Response> {
    state
        .rooms
        .kick(
            &authed.user_id,
            &req.room_id,
            &req.user_id,
            req.reason.as_deref(),
        )
        .await?;
    ok(kick_user::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/ban` (spec: "Banning users").
async fn ban(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<ban_user::v3::Request>,
) -> ApiResult<ban_user::v3::Response> {
    state
        .rooms
        .ban(
            &authed.user_id,
            &req.room_id,
            &req.user_id,
            req.reason.as_deref(),
        )
        .await?;
    ok(ban_user::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/unban` (spec: "Banning users").
async fn unban(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<unban_user::v3::Request>,
) -> ApiResult<unban_user::v3::Response> {
    state
        .rooms
        .unban(
            &authed.user_id,
            &req.room_id,
            &req.user_id,
            req.reason.as_deref(),
        )
        .await?;
    ok(unban_user::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/forget` (spec: "Leaving rooms").
async fn forget(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<forget_room::v3::Request>,
) -> ApiResult<forget_room::v3::Response> {
    state.rooms.forget(&authed.user_id, &req.room_id).await?;
    ok(forget_room::v3::Response::new())
}

/// `GET /_matrix/client/v3/joined_rooms` (spec: "Room membership").
async fn list_joined_rooms(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(_req): Ruma<joined_rooms::v3::Request>,
) -> ApiResult<joined_rooms::v3::Response> {
    let rooms = state.rooms.joined_rooms(&authed.user_id).await?;
    ok(joined_rooms::v3::Response::new(rooms))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/joined_members` (spec: "Room
/// membership").
async fn list_joined_members(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<joined_members::v3::Request>,
) -> ApiResult<joined_members::v3::Response> {
    let members = state
        .rooms
        .joined_members(&authed.user_id, &req.room_id)
        .await?;
    let mut joined = std::collections::BTreeMap::new();
    for (user, name, avatar) in members {
        let mut member = joined_members::v3::RoomMember::new();
        member.display_name = name;
        member.avatar_url = avatar.map(Into::into);
        joined.insert(user, member);
    }
    ok(joined_members::v3::Response::new(joined))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/members` (spec: "Room
/// membership"): `at` (a `/messages` or `/sync` token), `membership`,
/// `not_membership`.
async fn members(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_member_events::v3::Request>,
) -> ApiResult<get_member_events::v3::Response> {
    let query = MembersQuery {
        at: req
            .at
            .as_deref()
            .map(|t| parse_token("at", t))
            .transpose()?,
        membership: req.membership.map(|m| MembershipState::from(m.as_str())),
        not_membership: req
            .not_membership
            .map(|m| MembershipState::from(m.as_str())),
    };
    let viewer = Viewer {
        user: &authed.user_id,
        device: Some(authed.device_id.as_str()),
    };
    let events = state
        .rooms
        .member_events(viewer, &req.room_id, &query)
        .await?;
    ok(get_member_events::v3::Response::new(raws(&events)?))
}
