//! Room aliases and directories (spec: "Room aliases", "Listing rooms",
//! "User directory"): `PUT|GET|DELETE /directory/room/{roomAlias}`,
//! `GET|POST /publicRooms`, `GET|PUT /directory/list/room/{roomId}`,
//! `POST /user_directory/search`.

use axum::Router;
use axum::extract::State;
use ruma::api::client::alias::{create_alias, delete_alias, get_alias};
use ruma::api::client::directory::{
    get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility,
};
use ruma::api::client::room::Visibility;
use ruma::api::client::user_directory::search_users;
use ruma::directory::{PublicRoomsChunk, PublicRoomsChunkInit};
use ruma::room::JoinRuleKind;
use ruma::{UInt, uint};

use super::extract::{ApiResult, Auth, Ruma, ok};
use super::{ApiError, AppState, route};
use crate::service::rooms::{PublicRoom, PublicRoomsPage};

/// Default and largest `/publicRooms` page.
const DEFAULT_ROOMS: usize = 100;

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<create_alias::v3::Request, _, _>(r, put_alias);
    let r = route::<get_alias::v3::Request, _, _>(r, resolve_alias);
    let r = route::<delete_alias::v3::Request, _, _>(r, remove_alias);
    let r = route::<get_public_rooms::v3::Request, _, _>(r, public_rooms);
    let r = route::<get_public_rooms_filtered::v3::Request, _, _>(r, public_rooms_filtered);
    let r = route::<get_room_visibility::v3::Request, _, _>(r, get_visibility);
    let r = route::<set_room_visibility::v3::Request, _, _>(r, set_visibility);
    route::<search_users::v3::Request, _, _>(r, search)
}

/// `PUT /_matrix/client/v3/directory/room/{roomAlias}` (spec: "Room
/// aliases"): 409 if the alias exists.
async fn put_alias(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<create_alias::v3::Request>,
) -> ApiResult<create_alias::v3::Response> {
    state
        .rooms
        .create_alias(&authed.user_id, &req.room_alias, &req.room_id)
        .await?;
    ok(create_alias::v3::Response::new())
}

/// `GET /_matrix/client/v3/directory/room/{roomAlias}` (spec: "Room
/// aliases"): local aliases; `servers` is this server.
async fn resolve_alias(
    State(state): State<AppState>,
    Ruma(req): Ruma<get_alias::v3::Request>,
) -> ApiResult<get_alias::v3::Response> {
    let room_id = state.rooms.alias(&req.room_alias).await?;
    let server = state.rooms.server_name().to_owned();
    ok(get_alias::v3::Response::new(room_id, vec![server]))
}

/// `DELETE /_matrix/client/v3/directory/room/{roomAlias}` (spec: "Room
/// aliases"): the alias's creator or a room moderator.
async fn remove_alias(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<delete_alias::v3::Request>,
) -> ApiResult<delete_alias::v3::Response> {
    state
        .rooms
        .delete_alias(&authed.user_id, &req.room_alias)
        .await?;
    ok(delete_alias::v3::Response::new())
}

fn chunk(room: PublicRoom) -> PublicRoomsChunk {
    let mut chunk = PublicRoomsChunk::from(PublicRoomsChunkInit {
        num_joined_members: UInt::new_saturating(room.num_joined_members),
        room_id: room.room_id,
        world_readable: room.world_readable,
        guest_can_join: room.guest_can_join,
    });
    chunk.name = room.name;
    chunk.topic = room.topic;
    chunk.canonical_alias = room.canonical_alias;
    chunk.avatar_url = room.avatar_url.map(Into::into);
    chunk.join_rule = room
        .join_rule
        .as_deref()
        .map_or(JoinRuleKind::Public, JoinRuleKind::from);
    chunk.room_type = room.room_type.map(Into::into);
    chunk
}

fn page_limit(limit: Option<UInt>) -> usize {
    limit.map_or(DEFAULT_ROOMS, |l| {
        usize::try_from(u64::from(l)).unwrap_or(DEFAULT_ROOMS)
    })
}

/// The local server only: another `server` is M_INVALID_PARAM (no
/// federation yet).
fn check_server(state: &AppState, server: Option<&ruma::ServerName>) -> Result<(), ApiError> {
    match server {
        Some(s) if s != state.rooms.server_name() => Err(ApiError::InvalidParam(format!(
            "cannot list the rooms of {s}"
        ))),
        _ => Ok(()),
    }
}

/// `GET /_matrix/client/v3/publicRooms` (spec: "Listing rooms"): `limit`,
/// `since` (opaque), no authentication needed.
async fn public_rooms(
    State(state): State<AppState>,
    Ruma(req): Ruma<get_public_rooms::v3::Request>,
) -> ApiResult<get_public_rooms::v3::Response> {
    check_server(&state, req.server.as_deref())?;
    let page = state
        .rooms
        .public_rooms(req.since.as_deref(), page_limit(req.limit), None)
        .await?;
    let (chunk, next, total) = response_parts(page);
    let mut response = get_public_rooms::v3::Response::new(chunk);
    response.next_batch = next;
    response.total_room_count_estimate = Some(total);
    ok(response)
}

fn response_parts(page: PublicRoomsPage) -> (Vec<PublicRoomsChunk>, Option<String>, UInt) {
    (
        page.chunk.into_iter().map(chunk).collect(),
        page.next_batch,
        UInt::new_saturating(page.total),
    )
}

/// `POST /_matrix/client/v3/publicRooms` (spec: "Listing rooms"): also
/// `filter.generic_search_term` (name, topic, alias or ID).
async fn public_rooms_filtered(
    State(state): State<AppState>,
    Auth(_authed): Auth,
    Ruma(req): Ruma<get_public_rooms_filtered::v3::Request>,
) -> ApiResult<get_public_rooms_filtered::v3::Response> {
    check_server(&state, req.server.as_deref())?;
    let page = state
        .rooms
        .public_rooms(
            req.since.as_deref(),
            page_limit(req.limit),
            req.filter.generic_search_term.as_deref(),
        )
        .await?;
    let (chunk, next, total) = response_parts(page);
    let mut response = get_public_rooms_filtered::v3::Response::new();
    response.chunk = chunk;
    response.next_batch = next;
    response.total_room_count_estimate = Some(total);
    ok(response)
}

/// `GET /_matrix/client/v3/directory/list/room/{roomId}` (spec: "Listing
/// rooms").
async fn get_visibility(
    State(state): State<AppState>,
    Ruma(req): Ruma<get_room_visibility::v3::Request>,
) -> ApiResult<get_room_visibility::v3::Response> {
    let listed = state.rooms.is_listed(&req.room_id).await?;
    let visibility = if listed {
        Visibility::Public
    } else {
        Visibility::Private
    };
    ok(get_room_visibility::v3::Response::new(visibility))
}

/// `PUT /_matrix/client/v3/directory/list/room/{roomId}` (spec: "Listing
/// rooms"): room moderators only.
async fn set_visibility(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<set_room_visibility::v3::Request>,
) -> ApiResult<set_room_visibility::v3::Response> {
    let listed = match req.visibility {
        Visibility::Public => true,
        Visibility::Private => false,
        _ => return Err(ApiError::InvalidParam("unknown visibility".into())),
    };
    state
        .rooms
        .set_listed(&authed.user_id, &req.room_id, listed)
        .await?;
    ok(set_room_visibility::v3::Response::new())
}

/// `POST /_matrix/client/v3/user_directory/search` (spec: "User
/// directory"): users sharing a room with the searcher or in a published
/// room; `limit` defaults to 10.
async fn search(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<search_users::v3::Request>,
) -> ApiResult<search_users::v3::Response> {
    let limit = usize::try_from(u64::from(req.limit.min(uint!(1000)))).unwrap_or(10);
    let (results, limited) = state
        .rooms
        .search_users(&authed.user_id, &req.search_term, limit)
        .await?;
    let results = results
        .into_iter()
        .map(|r| {
            let mut user = search_users::v3::User::new(r.user_id);
            user.display_name = r.display_name;
            user.avatar_url = r.avatar_url.map(Into::into);
            user
        })
        .collect();
    ok(search_users::v3::Response::new(results, limited))
}
