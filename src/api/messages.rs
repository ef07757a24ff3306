//! Room history (spec: "Getting events for a room", "Relationships",
//! "Threading"): `GET /rooms/{roomId}/messages`, `/context/{eventId}`,
//! `/relations/{eventId}[/{relType}[/{eventType}]]` and `/threads`.
//!
//! Tokens: every token these endpoints return is a rooms stream position
//! (24 hex digits, a cut in the room's stream: see
//! `service::rooms::messages`); `from`/`to`/`at` also accept `/sync`
//! tokens (`next_batch`, `prev_batch`), read through their rooms position
//! ([`super::rooms::parse_token`]).

use axum::Router;
use axum::extract::State;
use ruma::api::Direction as RumaDirection;
use ruma::api::client::context::get_context;
use ruma::api::client::filter::{LazyLoadOptions, RoomEventFilter, UrlFilter};
use ruma::api::client::message::get_message_events;
use ruma::api::client::relations::{
    get_relating_events, get_relating_events_with_rel_type,
    get_relating_events_with_rel_type_and_event_type,
};
use ruma::api::client::threads::get_threads;
use ruma::{OwnedRoomId, UInt};

use super::extract::{ApiResult, Auth, Ruma, ok};
use super::rooms::{parse_token, raw, raws};
use super::{ApiError, AppState, route};
use crate::service::Authed;
use crate::service::rooms::{Direction, EventFilter, Page, RelationsOf, RelationsPage, Viewer};

/// Largest page a client may ask for.
const MAX_LIMIT: usize = 1000;

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<get_message_events::v3::Request, _, _>(r, messages);
    let r = route::<get_context::v3::Request, _, _>(r, context);
    let r = route::<get_relating_events::v1::Request, _, _>(r, relations);
    let r = route::<get_relating_events_with_rel_type::v1::Request, _, _>(r, relations_of_type);
    let r = route::<get_relating_events_with_rel_type_and_event_type::v1::Request, _, _>(
        r,
        relations_of_type_and_event_type,
    );
    route::<get_threads::v1::Request, _, _>(r, threads)
}

fn viewer(authed: &Authed) -> Viewer<'_> {
    Viewer {
        user: &authed.user_id,
        device: Some(authed.device_id.as_str()),
    }
}

fn direction(dir: RumaDirection) -> Direction {
    match dir {
        RumaDirection::Forward => Direction::Forward,
        _ => Direction::Backward,
    }
}

fn limit(limit: Option<UInt>, default: usize) -> usize {
    limit
        .map_or(default, |l| {
            usize::try_from(u64::from(l)).unwrap_or(MAX_LIMIT)
        })
        .min(MAX_LIMIT)
}

/// The server-applied part of a client's `RoomEventFilter`.
fn event_filter(filter: &RoomEventFilter) -> EventFilter {
    EventFilter {
        types: filter.types.clone(),
        not_types: filter.not_types.clone(),
        senders: filter.senders.clone(),
        not_senders: filter.not_senders.clone(),
        contains_url: filter
            .url_filter
            .as_ref()
            .map(|u| *u == UrlFilter::EventsWithUrl),
        lazy_load_members: matches!(filter.lazy_load_options, LazyLoadOptions::Enabled { .. }),
    }
}

/// `GET /_matrix/client/v3/rooms/{roomId}/messages` (spec: "Getting events
/// for a room"): `dir` b/f, `from`/`to` tokens, `limit` (default 10),
/// `filter` (types, not_types, senders, not_senders, contains_url,
/// lazy_load_members). `end` is omitted when nothing more is readable.
async fn messages(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_message_events::v3::Request>,
) -> ApiResult<get_message_events::v3::Response> {
    let page = page(
        req.from.as_deref(),
        req.to.as_deref(),
        req.dir,
        limit(Some(req.limit), 10),
    )?;
    let page = state
        .rooms
        .messages(
            viewer(&authed),
            &req.room_id,
            page,
            &event_filter(&req.filter),
        )
        .await?;
    let mut response = get_message_events::v3::Response::new();
    response.start = page.start.to_string();
    response.end = page.end.map(|e| e.to_string());
    response.chunk = raws(&page.chunk)?;
    response.state = raws(&page.state)?;
    ok(response)
}

/// `GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}` (spec:
/// "Getting events for a room"): `limit` (default 10) events around the
/// event, half before and half after, and the state at the event.
async fn context(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_context::v3::Request>,
) -> ApiResult<get_context::v3::Response> {
    let context = state
        .rooms
        .context(
            viewer(&authed),
            &req.room_id,
            &req.event_id,
            limit(Some(req.limit), 10),
            &event_filter(&req.filter),
        )
        .await?;
    let mut response = get_context::v3::Response::new();
    response.start = Some(context.start.to_string());
    response.end = Some(context.end.to_string());
    response.event = Some(raw(&context.event)?);
    response.events_before = raws(&context.events_before)?;
    response.events_after = raws(&context.events_after)?;
    response.state = raws(&context.state)?;
    ok(response)
}

/// The page a request's `from` and `to` tokens, `dir` and limit ask for.
///
/// Errors: M_INVALID_PARAM for a token that does not parse.
fn page(
    from: Option<&str>,
    to: Option<&str>,
    dir: RumaDirection,
    limit: usize,
) -> Result<Page, ApiError> {
    Ok(Page {
        from: from.map(|t| parse_token("from", t)).transpose()?,
        to: to.map(|t| parse_token("to", t)).transpose()?,
        dir: direction(dir),
        limit,
    })
}

/// The common part of the three `/relations` endpoints.
async fn relating(
    state: &AppState,
    authed: &Authed,
    room_id: &OwnedRoomId,
    of: RelationsOf<'_>,
    page: Page,
) -> Result<RelationsPage, ApiError> {
    Ok(state
        .rooms
        .relations(viewer(authed), room_id, &of, page)
        .await?)
}

macro_rules! relations_response {
    ($module:ident, $page:expr) => {{
        let page = $page;
        let mut response = $module::v1::Response::new(raws(&page.chunk)?);
        response.next_batch = page.next_batch.map(|p| p.to_string());
        ok(response)
    }};
}

/// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}` (spec:
/// "Relationships"): every event relating to the event, newest first by
/// default.
async fn relations(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_relating_events::v1::Request>,
) -> ApiResult<get_relating_events::v1::Response> {
    let page = relating(
        &state,
        &authed,
        &req.room_id,
        RelationsOf {
            parent: &req.event_id,
            rel_type: None,
            event_type: None,
        },
        page(
            req.from.as_deref(),
            req.to.as_deref(),
            req.dir,
            limit(req.limit, 50),
        )?,
    )
    .await?;
    relations_response!(get_relating_events, page)
}

/// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}`
/// (spec: "Relationships").
async fn relations_of_type(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_relating_events_with_rel_type::v1::Request>,
) -> ApiResult<get_relating_events_with_rel_type::v1::Response> {
    let rel_type = req.rel_type.to_string();
    let page = relating(
        &state,
        &authed,
        &req.room_id,
        RelationsOf {
            parent: &req.event_id,
            rel_type: Some(&rel_type),
            event_type: None,
        },
        page(
            req.from.as_deref(),
            req.to.as_deref(),
            req.dir,
            limit(req.limit, 50),
        )?,
    )
    .await?;
    relations_response!(get_relating_events_with_rel_type, page)
}

/// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}`
/// (spec: "Relationships").
async fn relations_of_type_and_event_type(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_relating_events_with_rel_type_and_event_type::v1::Request>,
) -> ApiResult<get_relating_events_with_rel_type_and_event_type::v1::Response> {
    let rel_type = req.rel_type.to_string();
    let event_type = req.event_type.to_string();
    let page = relating(
        &state,
        &authed,
        &req.room_id,
        RelationsOf {
            parent: &req.event_id,
            rel_type: Some(&rel_type),
            event_type: Some(&event_type),
        },
        page(
            req.from.as_deref(),
            req.to.as_deref(),
            req.dir,
            limit(req.limit, 50),
        )?,
    )
    .await?;
    relations_response!(get_relating_events_with_rel_type_and_event_type, page)
}

/// `GET /_matrix/client/v1/rooms/{roomId}/threads` (spec: "Threading"):
/// thread roots, newest root first, with their `m.thread` summary;
/// `include=participated` keeps the user's threads.
async fn threads(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_threads::v1::Request>,
) -> ApiResult<get_threads::v1::Response> {
    let from = req
        .from
        .as_deref()
        .map(|t| parse_token("from", t))
        .transpose()?;
    let participated = req.include == get_threads::v1::IncludeThreads::Participated;
    let page = state
        .rooms
        .threads(
            viewer(&authed),
            &req.room_id,
            from,
            limit(req.limit, 50),
            participated,
        )
        .await?;
    let mut response = get_threads::v1::Response::new(raws(&page.chunk)?);
    response.next_batch = page.next_batch.map(|p| p.to_string());
    ok(response)
}
