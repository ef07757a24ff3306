//! Simplified sliding sync (MSC4186,
//! `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`):
//! lists of the user's rooms ordered by activity, room subscriptions and
//! the extensions, built on the `/sync` service (design, costs and what is
//! not served: `docs/sliding-sync.md`).
//!
//! A `pos` is `"<generation>.<sync token>"`: the connection's answer
//! counter and the `/sync` token the answer was read at. The connection's
//! record (`db::transitory::ConnectionRecord`, keyed by user, device and
//! `conn_id`) holds the rooms sent as of its last two generations, so any
//! server process continues any connection, and a resent `pos` (the answer
//! was lost) is answered again from what the client really has: the same
//! changes, or a correct newer answer. Invariants:
//!
//! - a room is sent whole (`initial: true`) exactly when the connection's
//!   sent set (as of the `pos` generation) lacks it, or has it with a lower
//!   timeline limit (expanded timeline); otherwise only its changes since
//!   the `pos` token are sent;
//! - a sent room that changes while outside every range and subscription
//!   leaves the sent set, so it is sent whole when it comes back into view;
//! - `to_device` messages are acknowledged exactly as by `/sync`: a request
//!   whose `since` (or, without one, whose `pos`) is at or after a message
//!   deletes it; a message is never deleted before an answer carried it;
//! - an answer that leaves the sent set as it was (the steady state of a
//!   long-poll: new events in rooms already sent) writes nothing: its `pos`
//!   keeps the request's generation with the new token, which names the
//!   same sent set, so one durable commit per answer is saved. The record
//!   is still rewritten when its `used_ms` is older than
//!   [`USED_REFRESH_MS`], so expiry and the per-device LRU lag by at most
//!   that.
//!
//! Who may import this: `sync` (re-exported) and, through it, `api`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use ruma::api::client::sync::sync_events::v5;
use ruma::api::client::sync::sync_events::v5::request::ListFilters;
use ruma::events::room::member::MembershipState;
use ruma::presence::PresenceState;
use ruma::serde::Raw;
use ruma::{OneTimeKeyAlgorithm, OwnedMxcUri, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId};
use serde_json::Value;

use super::filter::{MAX_TIMELINE_LIMIT, SyncFilter};
use super::service::{JoinedRoom, SyncResult};
use super::{Services, SyncRequest, SyncService, SyncToken};
use crate::db::rooms::{MemberRecord, StreamPosition};
use crate::db::transitory::{self, ConnectionRecord, SentRooms};

/// At most this many rooms are read concurrently for their bump stamp.
const CONCURRENCY: usize = 16;

/// At most this many rooms are remembered as sent per generation (a room
/// past it is sent whole again when next in view: heavier, never wrong).
/// Bounds the connection record to about 30 kB.
pub const MAX_SENT_ROOMS: usize = 500;

/// The longest `conn_id` accepted, in bytes.
pub const MAX_CONN_ID_BYTES: usize = 100;

/// An answer that changes nothing in the connection record still rewrites
/// it when its `used_ms` is older than this (ms): the record's last use, for
/// expiry and the per-device LRU, is then at most this stale.
pub const USED_REFRESH_MS: u64 = 60_000;

/// Settings of sliding sync: the `[sync.sliding]` table of the
/// configuration file. Missing keys take the defaults.
#[derive(
    Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct SlidingConfig {
    /// A connection unused for this long (ms) is forgotten: its `pos`
    /// answers `M_UNKNOWN_POS`. Default 7 days.
    pub connection_expiry_ms: u64,
    /// At most this many connections per device; opening one more forgets
    /// the least recently used.
    pub max_connections_per_device: usize,
    /// At most this many lists per request.
    pub max_lists: usize,
    /// At most this many ranges per list.
    pub max_ranges: usize,
    /// At most this many rooms in one range.
    pub max_range_rooms: u64,
    /// At most this many room subscriptions per request.
    pub max_room_subscriptions: usize,
}

impl Default for SlidingConfig {
    fn default() -> Self {
        SlidingConfig {
            connection_expiry_ms: 7 * 24 * 3600 * 1000,
            max_connections_per_device: 10,
            max_lists: 16,
            max_ranges: 8,
            max_range_rooms: 1000,
            max_room_subscriptions: 200,
        }
    }
}

/// Why a sliding-sync request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `pos` is malformed, of another connection, superseded or expired
    /// (400 `M_UNKNOWN_POS`: the client starts the connection afresh).
    #[error("unknown position")]
    UnknownPos,
    /// The request is over a bound or malformed (400 `M_INVALID_PARAM`).
    #[error("{0}")]
    InvalidParam(String),
    /// A read failed.
    #[error(transparent)]
    Sync(#[from] super::Error),
}

impl From<transitory::Error> for Error {
    fn from(e: transitory::Error) -> Self {
        Error::Sync(e.into())
    }
}

impl From<crate::service::rooms::Error> for Error {
    fn from(e: crate::service::rooms::Error) -> Self {
        Error::Sync(e.into())
    }
}

impl From<crate::service::Error> for Error {
    fn from(e: crate::service::Error) -> Self {
        Error::Sync(e.into())
    }
}

impl From<crate::db::rooms::Error> for Error {
    fn from(e: crate::db::rooms::Error) -> Self {
        Error::Sync(e.into())
    }
}

/// A parsed `pos`: the connection generation and the `/sync` token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    /// The generation of the answer that carried it.
    pub generation: u64,
    /// The token the answer was read at.
    pub token: SyncToken,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.generation, self.token)
    }
}

impl std::str::FromStr for Pos {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let (generation, token) = s.split_once('.').ok_or(Error::UnknownPos)?;
        Ok(Pos {
            generation: generation.parse().map_err(|_| Error::UnknownPos)?,
            token: token.parse().map_err(|_| Error::UnknownPos)?,
        })
    }
}

/// The most spaces or tags one list's extra filters may name.
pub const MAX_FILTER_ENTRIES: usize = 100;

/// List filters that ruma's MSC4186 types do not carry (MSC3575's
/// `spaces`, `tags` and `not_tags`), read from the request body by the
/// endpoint with [`extra_filters`]. Each is ignored when empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct ExtraFilters {
    /// Only rooms named by an `m.space.child` state event (with a non-empty
    /// `via`) of one of these spaces: one level, no subspaces; a space the
    /// user is not joined to names none.
    #[serde(default)]
    pub spaces: Vec<OwnedRoomId>,
    /// Only rooms with at least one of these tags (`m.tag` room account
    /// data of the user).
    #[serde(default)]
    pub tags: Vec<String>,
    /// No room with any of these tags (takes priority over `tags`).
    #[serde(default)]
    pub not_tags: Vec<String>,
}

/// List name → its [`ExtraFilters`] (lists without any are absent).
pub type ExtraListFilters = BTreeMap<String, ExtraFilters>;

/// Reads the [`ExtraFilters`] of each list of a request body (JSON, already
/// accepted by ruma's parser).
///
/// Errors: [`Error::InvalidParam`] when `spaces`, `tags` or `not_tags` is
/// not a list of room IDs / strings, or names more than
/// [`MAX_FILTER_ENTRIES`].
pub fn extra_filters(body: &[u8]) -> Result<ExtraListFilters, Error> {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        lists: BTreeMap<String, List>,
    }
    #[derive(serde::Deserialize)]
    struct List {
        #[serde(default)]
        filters: Option<ExtraFilters>,
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ExtraListFilters::new());
    }
    let body: Body = serde_json::from_slice(body)
        .map_err(|e| Error::InvalidParam(format!("list filters: {e}")))?;
    let mut out = ExtraListFilters::new();
    for (name, list) in body.lists {
        let Some(f) = list.filters else { continue };
        if [f.spaces.len(), f.tags.len(), f.not_tags.len()]
            .iter()
            .any(|n| *n > MAX_FILTER_ENTRIES)
        {
            return Err(Error::InvalidParam(format!(
                "list {name}: more than {MAX_FILTER_ENTRIES} spaces or tags"
            )));
        }
        if f != ExtraFilters::default() {
            out.insert(name, f);
        }
    }
    Ok(out)
}

/// A transitory position as a `to_device.next_batch` string (20 hex digits).
fn position_string(p: transitory::Position) -> String {
    p.to_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses [`position_string`]'s form; `None` for anything else.
fn parse_position(s: &str) -> Option<transitory::Position> {
    let mut bytes = [0u8; crate::db::position::POSITION_BYTES];
    if s.len() != bytes.len() * 2 || !s.is_ascii() {
        return None;
    }
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(transitory::Position::from_bytes(bytes))
}

/// A room of the user as the lists see it.
#[derive(Clone, Debug)]
struct Entry {
    room: OwnedRoomId,
    membership: MembershipState,
    /// The commit version of the room's latest bump event
    /// (`RoomsDb::bump_position`; the invite's, for an invite): the list
    /// order, newest first, and `bump_stamp`.
    bump: u64,
    /// The room's type (`m.room.create`'s `type`) and whether it has
    /// `m.room.encryption`: read only when a list filters on them.
    attributes: Option<(Option<String>, bool)>,
    /// The room's tags (`m.tag` room account data): read only when a list
    /// filters on tags.
    tags: Option<BTreeSet<String>>,
}

/// What one room needs in this answer, and why it is in view.
#[derive(Clone, Debug)]
struct Wanted {
    timeline_limit: usize,
    required_state: Vec<(String, String)>,
    /// The lists whose ranges hold the room.
    lists: BTreeSet<String>,
    /// Whether a room subscription names it.
    subscribed: bool,
}

impl Wanted {
    fn new(timeline_limit: usize) -> Self {
        Wanted {
            timeline_limit,
            required_state: Vec::new(),
            lists: BTreeSet::new(),
            subscribed: false,
        }
    }
}

/// A room-scoped extension's `lists` and `rooms` (MSC4186; absent means
/// `["*"]`, as in Synapse), read once per request into sets, so checking a
/// room costs lookups, not a scan of the request's (client-sized) arrays.
struct Scope<'a> {
    /// `None`: every list (`"*"` or absent); else the lists named.
    lists: Option<BTreeSet<&'a str>>,
    /// `None`: every subscription (`"*"` or absent); else the rooms named.
    rooms: Option<BTreeSet<&'a RoomId>>,
}

impl<'a> Scope<'a> {
    fn new(
        lists: Option<&'a [String]>,
        rooms: Option<&'a [v5::request::ExtensionRoomConfig]>,
    ) -> Self {
        let lists = lists
            .filter(|names| !names.iter().any(|n| n == "*"))
            .map(|names| names.iter().map(String::as_str).collect());
        let rooms = rooms
            .filter(|configs| {
                !configs
                    .iter()
                    .any(|c| matches!(c, v5::request::ExtensionRoomConfig::AllSubscribed))
            })
            .map(|configs| {
                configs
                    .iter()
                    .filter_map(|c| match c {
                        v5::request::ExtensionRoomConfig::Room(id) => Some(&**id),
                        _ => None,
                    })
                    .collect()
            });
        Scope { lists, rooms }
    }

    /// Whether the extension covers this room in view: a named list holds
    /// it in range, or a room subscription holds it and `rooms` names it.
    fn covers(&self, room: &RoomId, wanted: &Wanted) -> bool {
        let by_list = match &self.lists {
            None => !wanted.lists.is_empty(),
            Some(names) => wanted.lists.iter().any(|l| names.contains(l.as_str())),
        };
        let by_subscription =
            wanted.subscribed && self.rooms.as_ref().is_none_or(|rooms| rooms.contains(room));
        by_list || by_subscription
    }
}

/// The commit version of a rooms stream position (a `bump_stamp`).
fn stamp(p: StreamPosition) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&p.0[..8]);
    u64::from_be_bytes(v)
}

fn uint(n: u64) -> UInt {
    UInt::new_saturating(n)
}

/// One simplified sliding sync request of `user`'s `device`: see the module
/// docs. `sync` is the process's sync service (its long-poll and reads).
///
/// Errors: [`Error::UnknownPos`] for an unknown, foreign, superseded or
/// expired `pos`; [`Error::InvalidParam`] past a bound of
/// [`SlidingConfig`]; storage failures.
pub async fn sliding_sync(
    sync: &SyncService,
    services: &Services,
    user: &UserId,
    device: &str,
    req: &v5::Request,
    extra: &ExtraListFilters,
) -> Result<v5::Response, Error> {
    let config = &sync.config().sliding;
    check_bounds(config, req)?;
    let conn_id = req.conn_id.as_deref().unwrap_or("");
    let now = services.transitory.now_ms();
    let tdb = services.transitory.db();

    // The connection and what the client has as of `pos`, and when the
    // record was last written.
    let (pos, base, used_ms) = match req.pos.as_deref() {
        None => (None, SentRooms::new(), None),
        Some(pos) => {
            let pos: Pos = pos.parse()?;
            let record = tdb
                .sliding_connection(user.as_str(), device, conn_id)
                .await?
                .ok_or(Error::UnknownPos)?;
            if now.saturating_sub(record.used_ms) > config.connection_expiry_ms {
                tdb.delete_sliding_connection(user.as_str(), device, conn_id)
                    .await?;
                return Err(Error::UnknownPos);
            }
            let base = if pos.generation == record.generation {
                record.sent
            } else if pos.generation + 1 == record.generation
                && let Some(previous) = record.previous
            {
                previous
            } else {
                return Err(Error::UnknownPos);
            };
            (Some(pos), base, Some(record.used_ms))
        }
    };

    let to_device_on = req.extensions.to_device.enabled == Some(true);
    let e2ee_on = req.extensions.e2ee.enabled == Some(true);
    let max_limit = req
        .lists
        .values()
        .map(|l| l.room_details.timeline_limit)
        .chain(req.room_subscriptions.values().map(|s| s.timeline_limit))
        .max()
        .map_or(0, |n| usize::try_from(u64::from(n)).unwrap_or(usize::MAX))
        .min(MAX_TIMELINE_LIMIT);
    let direct = dm_rooms(sync, user).await?;

    // Before waiting: if some room in view must be sent whole (new range,
    // raised timeline limit, first request), answer at once.
    let mut order = ordered_rooms(sync, services, user, req, extra, None).await?;
    let mut filters = FilterContext::read(services, req, extra, direct, &order).await?;
    let mut view = in_view(req, &order, &filters);
    let pending_whole = view
        .iter()
        .any(|(room, w)| needs_whole(&base, room, w.timeline_limit));

    let mut since = pos.map(|p| p.token);
    if let Some(since) = since.as_mut()
        && to_device_on
        && let Some(acked) = req
            .extensions
            .to_device
            .since
            .as_deref()
            .and_then(parse_position)
    {
        // The client's own acknowledgement of to-device messages.
        since.transitory = acked;
    }
    let timeout = if pos.is_none() || pending_whole {
        Duration::ZERO
    } else {
        req.timeout.unwrap_or_default()
    };
    let set_presence = match &req.set_presence {
        PresenceState::Offline => None,
        other => Some(other.clone()),
    };
    let mut filter = SyncFilter {
        timeline_limit: max_limit,
        lazy_load_members: true,
        ..SyncFilter::default()
    };
    if since.is_none() {
        // A fresh connection reads only the rooms in view.
        filter.rooms = Some(view.keys().cloned().collect());
    }
    let found = sync
        .sync(
            services,
            user,
            &SyncRequest {
                since: since.map(|t| t.to_string()),
                timeout,
                full_state: false,
                device_id: to_device_on.then(|| device.to_owned()),
                filter,
                set_presence,
            },
        )
        .await?;
    if since.is_some() && found.has_news() && !timeout.is_zero() {
        // The wait may have moved rooms: order again, reading only the
        // rooms that changed. Without a wait the order was read just
        // before the `/sync` read, the same two-read window as a whole
        // room's: a room that moved in between is in `found`, so if the
        // order left it out of view it leaves the sent set and is sent
        // whole by the next answer (nothing is lost).
        let changed: BTreeSet<&OwnedRoomId> = found
            .rooms
            .join
            .keys()
            .chain(found.rooms.invite.keys())
            .chain(found.rooms.leave.keys())
            .collect();
        order = ordered_rooms(sync, services, user, req, extra, Some((&order, &changed))).await?;
        filters = FilterContext::read(
            services,
            req,
            extra,
            std::mem::take(&mut filters.direct),
            &order,
        )
        .await?;
        view = in_view(req, &order, &filters);
    }

    // Rooms to send whole: read them as an initial sync of just them.
    let whole_rooms: Vec<OwnedRoomId> = view
        .iter()
        .filter(|(room, w)| needs_whole(&base, room, w.timeline_limit))
        .map(|(room, _)| room.clone())
        .collect();
    let whole = if since.is_none() || whole_rooms.is_empty() {
        None
    } else {
        let filter = SyncFilter {
            timeline_limit: max_limit,
            lazy_load_members: true,
            rooms: Some(whole_rooms.clone()),
            ..SyncFilter::default()
        };
        Some(
            sync.sync(
                services,
                user,
                &SyncRequest {
                    filter,
                    ..SyncRequest::default()
                },
            )
            .await?,
        )
    };

    let bumps: BTreeMap<OwnedRoomId, u64> =
        order.iter().map(|e| (e.room.clone(), e.bump)).collect();
    let mut response = v5::Response::new(String::new());
    for (name, list) in &req.lists {
        let count = order
            .iter()
            .filter(|e| filters.passes(name, list.filters.as_ref(), e))
            .count();
        let mut out = v5::response::List::default();
        out.count = uint(count as u64);
        response.lists.insert(name.clone(), out);
    }

    let mut sent = base.clone();
    let mut found = found;
    let whole_set: BTreeSet<&OwnedRoomId> = whole_rooms.iter().collect();
    let mut room_account_data = BTreeMap::new();
    let mut receipts = BTreeMap::new();
    let mut typing = BTreeMap::new();
    let mut whole = whole;
    for (room, wanted) in &view {
        let is_whole = whole_set.contains(room);
        // A whole room comes from the whole read, unless this is a fresh
        // connection, whose one read was of the rooms in view only.
        let source = match whole.as_mut() {
            Some(w) if is_whole => w,
            _ => &mut found,
        };
        let Some(mut built) = build_room(services, user, room, wanted, source, is_whole).await?
        else {
            continue;
        };
        built.room.bump_stamp = bumps.get(room).map(|b| uint(*b));
        built.room.is_dm = Some(filters.direct.contains(room));
        collect_ephemeral(
            &built,
            room,
            &mut room_account_data,
            &mut receipts,
            &mut typing,
        );
        response.rooms.insert(room.clone(), built.room);
        sent.insert(room.to_string(), wanted.timeline_limit as u32);
    }
    // Leaves, kicks and bans of rooms out of view; rooms that changed out
    // of view leave the sent set (sent whole when back in view).
    let leaves: Vec<OwnedRoomId> = found.rooms.leave.keys().cloned().collect();
    for room in leaves {
        if response.rooms.contains_key(&room) {
            continue;
        }
        let was_sent = base.contains_key(room.as_str());
        let wanted = Wanted::new(max_limit);
        let forced = left_by_other(found.rooms.leave.get(&room), user);
        if (was_sent || forced)
            && let Some(built) =
                build_room(services, user, &room, &wanted, &mut found, false).await?
        {
            response.rooms.insert(room.clone(), built.room);
        }
        sent.remove(room.as_str());
    }
    for room in found.rooms.join.keys().chain(found.rooms.invite.keys()) {
        if !view.contains_key(room) {
            sent.remove(room.as_str());
        }
    }
    while sent.len() > MAX_SENT_ROOMS {
        let Some(last) = sent.keys().next_back().cloned() else {
            break;
        };
        sent.remove(&last);
    }

    // Extensions.
    if to_device_on {
        let mut td = v5::response::ToDevice::default();
        td.next_batch = position_string(found.next_batch.transitory);
        td.events = found
            .to_device
            .iter()
            .map(|v| Raw::from_json(to_raw(v)))
            .collect();
        response.extensions.to_device = Some(td);
    }
    if e2ee_on {
        let e2ee = &mut response.extensions.e2ee;
        e2ee.device_lists.changed = std::mem::take(&mut found.device_lists_changed);
        e2ee.device_lists.left = std::mem::take(&mut found.device_lists_left);
        let (counts, fallback) = if to_device_on {
            (
                std::mem::take(&mut found.one_time_key_counts),
                found.unused_fallback_key_types.take().unwrap_or_default(),
            )
        } else {
            (
                services.e2ee.one_time_key_counts(user, device).await?,
                services
                    .e2ee
                    .unused_fallback_key_types(user, device)
                    .await?,
            )
        };
        e2ee.device_one_time_keys_count = counts
            .into_iter()
            .map(|(alg, n)| (OneTimeKeyAlgorithm::from(alg), uint(n)))
            .collect();
        e2ee.device_unused_fallback_key_types = Some(
            fallback
                .into_iter()
                .map(OneTimeKeyAlgorithm::from)
                .collect(),
        );
    }
    // Room-scoped extensions cover the rooms their `lists`/`rooms` name.
    let ext = &req.extensions;
    let covered = |scope: &Scope<'_>, room: &OwnedRoomId| {
        view.get(room).is_some_and(|w| scope.covers(room, w))
    };
    let scope = Scope::new(
        ext.account_data.lists.as_deref(),
        ext.account_data.rooms.as_deref(),
    );
    room_account_data.retain(|room, _| covered(&scope, room));
    let scope = Scope::new(ext.receipts.lists.as_deref(), ext.receipts.rooms.as_deref());
    receipts.retain(|room, _| covered(&scope, room));
    let scope = Scope::new(ext.typing.lists.as_deref(), ext.typing.rooms.as_deref());
    typing.retain(|room, _| covered(&scope, room));
    if req.extensions.account_data.enabled == Some(true) {
        let ad = &mut response.extensions.account_data;
        ad.global = found
            .account_data
            .iter()
            .map(|c| {
                Raw::from_json(to_raw(
                    &serde_json::json!({ "type": c.event_type, "content": c.content }),
                ))
            })
            .collect();
        ad.rooms = room_account_data;
    }
    if req.extensions.receipts.enabled == Some(true) {
        response.extensions.receipts.rooms = receipts;
    }
    if req.extensions.typing.enabled == Some(true) {
        response.extensions.typing.rooms = typing;
    }

    // The client's sent set is unchanged: the request's generation names it
    // still, so nothing is written (the module's invariants).
    if let (Some(pos), Some(used_ms)) = (pos, used_ms)
        && sent == base
        && now.saturating_sub(used_ms) < USED_REFRESH_MS
    {
        response.pos = Pos {
            generation: pos.generation,
            token: found.next_batch,
        }
        .to_string();
        return Ok(response);
    }
    // Store the connection's new generation, then answer.
    let generation = pos.map_or(1, |p| p.generation + 1);
    let record = ConnectionRecord {
        generation,
        used_ms: now,
        sent,
        previous: pos.map(|_| base),
    };
    tdb.put_sliding_connection(
        user.as_str(),
        device,
        conn_id,
        &record,
        config.max_connections_per_device.max(1),
    )
    .await?;
    response.pos = Pos {
        generation,
        token: found.next_batch,
    }
    .to_string();
    Ok(response)
}

fn to_raw(v: &Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(v).expect("JSON values serialize")
}

/// Rejects a request past a bound of `config`.
fn check_bounds(config: &SlidingConfig, req: &v5::Request) -> Result<(), Error> {
    let bad = |m: String| Err(Error::InvalidParam(m));
    if req.conn_id.as_deref().map_or(0, str::len) > MAX_CONN_ID_BYTES {
        return bad(format!("conn_id is over {MAX_CONN_ID_BYTES} bytes"));
    }
    if req.lists.len() > config.max_lists {
        return bad(format!("more than {} lists", config.max_lists));
    }
    if req.room_subscriptions.len() > config.max_room_subscriptions {
        return bad(format!(
            "more than {} room subscriptions",
            config.max_room_subscriptions
        ));
    }
    for (name, list) in &req.lists {
        if list.ranges.len() > config.max_ranges {
            return bad(format!(
                "list {name}: more than {} ranges",
                config.max_ranges
            ));
        }
        for (start, end) in &list.ranges {
            let (start, end) = (u64::from(*start), u64::from(*end));
            if start > end || end - start >= config.max_range_rooms {
                return bad(format!(
                    "list {name}: range [{start}, {end}] is reversed or over {} rooms",
                    config.max_range_rooms
                ));
            }
        }
    }
    Ok(())
}

/// Whether `room` must be sent whole: not sent on the connection yet, or
/// sent with a lower timeline limit.
fn needs_whole(base: &SentRooms, room: &RoomId, limit: usize) -> bool {
    base.get(room.as_str())
        .is_none_or(|sent| (*sent as usize) < limit)
}

/// The rooms of `m.direct` (global account data).
async fn dm_rooms(sync: &SyncService, user: &UserId) -> Result<BTreeSet<OwnedRoomId>, Error> {
    let raw = sync
        .accounts_db()
        .account_data(user.as_str(), None, "m.direct")
        .await
        .map_err(super::Error::Storage)?;
    let mut out = BTreeSet::new();
    let Some(raw) = raw else {
        return Ok(out);
    };
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(raw.get()) else {
        return Ok(out);
    };
    for rooms in map.values() {
        for room in rooms.as_array().into_iter().flatten() {
            if let Some(room) = room.as_str().and_then(|r| OwnedRoomId::try_from(r).ok()) {
                out.insert(room);
            }
        }
    }
    Ok(out)
}

/// The user's joined and invited rooms, newest bump first (ties by room
/// ID). One membership range read, the joined rooms' `rooms/bump` keys in
/// one transaction per 1,000 rooms, and one position read per invite; two
/// state reads more per room when a list filters on a room attribute, and
/// one account data read more when a list filters on tags.
///
/// With `previous` (the order read earlier in this request, and the rooms
/// the `/sync` read since found changed), a room with the same membership
/// that did not change keeps its entry unread: any bump, state or
/// membership change of a room since the request's token makes `/sync`
/// report it. Tags are account data, not room events, so with a tag filter
/// every room is read again.
async fn ordered_rooms(
    sync: &SyncService,
    services: &Services,
    user: &UserId,
    req: &v5::Request,
    extra: &ExtraListFilters,
    previous: Option<(&[Entry], &BTreeSet<&OwnedRoomId>)>,
) -> Result<Vec<Entry>, Error> {
    let attributes = needs_attributes(req);
    let tags = extra
        .values()
        .any(|f| !f.tags.is_empty() || !f.not_tags.is_empty());
    let rooms: Vec<(OwnedRoomId, MemberRecord)> = services
        .rooms
        .rooms_of_user(user)
        .await?
        .into_iter()
        .filter(|(_, m)| {
            matches!(
                m.membership,
                MembershipState::Join | MembershipState::Invite
            )
        })
        .collect();
    let kept: BTreeMap<&OwnedRoomId, &Entry> = match previous {
        Some((entries, changed)) if !tags => entries
            .iter()
            .filter(|e| !changed.contains(&e.room))
            .map(|e| (&e.room, e))
            .collect(),
        _ => BTreeMap::new(),
    };
    let keep = |room: &OwnedRoomId, member: &MemberRecord| {
        kept.get(room)
            .filter(|e| e.membership == member.membership)
            .map(|e| (*e).clone())
    };
    let db = services.rooms.db();
    let to_read: Vec<OwnedRoomId> = rooms
        .iter()
        .filter(|(room, m)| m.membership == MembershipState::Join && keep(room, m).is_none())
        .map(|(room, _)| room.clone())
        .collect();
    let bumps: BTreeMap<&OwnedRoomId, Option<StreamPosition>> = to_read
        .iter()
        .zip(db.bump_positions(&to_read).await?)
        .collect();
    let accounts = sync.accounts_db();
    let mut entries: Vec<Entry> = futures::stream::iter(rooms)
        .map(|(room, member)| {
            let bump = bumps.get(&room).copied();
            let kept = keep(&room, &member);
            async move {
                if let Some(entry) = kept {
                    return Ok(entry);
                }
                let at = match bump {
                    Some(at) => at,
                    None => db.position(&member.event_id).await?,
                };
                let attributes = if attributes {
                    let create = db.state_event(&room, "m.room.create", "").await?;
                    let room_type = create
                        .and_then(|c| c.pdu.content_value()["type"].as_str().map(str::to_owned));
                    let encrypted = db
                        .state_event(&room, "m.room.encryption", "")
                        .await?
                        .is_some();
                    Some((room_type, encrypted))
                } else {
                    None
                };
                let tags = if tags {
                    let raw = accounts
                        .account_data(user.as_str(), Some(room.as_str()), "m.tag")
                        .await
                        .map_err(super::Error::Storage)?;
                    Some(tag_names(raw.as_deref()))
                } else {
                    None
                };
                Ok::<_, Error>(Entry {
                    room,
                    membership: member.membership,
                    bump: at.map_or(0, stamp),
                    attributes,
                    tags,
                })
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    entries.sort_by(|a, b| b.bump.cmp(&a.bump).then_with(|| a.room.cmp(&b.room)));
    Ok(entries)
}

/// The tag names of an `m.tag` room account data content (`{"tags":
/// {name: {...}}}`); anything else has none.
fn tag_names(raw: Option<&serde_json::value::RawValue>) -> BTreeSet<String> {
    raw.and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
        .and_then(|v| v.get("tags").and_then(Value::as_object).cloned())
        .map(|tags| tags.keys().cloned().collect())
        .unwrap_or_default()
}

/// What the list filters read besides a room's [`Entry`]: the user's DMs,
/// the lists' [`ExtraFilters`], and the children of each list's spaces.
struct FilterContext<'a> {
    direct: BTreeSet<OwnedRoomId>,
    extra: &'a ExtraListFilters,
    /// List name → the rooms named by `m.space.child` in its `spaces` (one
    /// level; only spaces the user is joined to); lists without `spaces`
    /// are absent.
    children: BTreeMap<String, BTreeSet<OwnedRoomId>>,
}

impl<'a> FilterContext<'a> {
    /// Reads the children of the spaces the lists name: one state range
    /// read per space the user is joined to, and one event read per child.
    async fn read(
        services: &Services,
        req: &v5::Request,
        extra: &'a ExtraListFilters,
        direct: BTreeSet<OwnedRoomId>,
        order: &[Entry],
    ) -> Result<Self, Error> {
        let joined: BTreeSet<&OwnedRoomId> = order
            .iter()
            .filter(|e| e.membership == MembershipState::Join)
            .map(|e| &e.room)
            .collect();
        let db = services.rooms.db();
        let mut of_space: BTreeMap<&OwnedRoomId, BTreeSet<OwnedRoomId>> = BTreeMap::new();
        let mut children = BTreeMap::new();
        for name in req.lists.keys() {
            let Some(f) = extra.get(name).filter(|f| !f.spaces.is_empty()) else {
                continue;
            };
            let mut rooms = BTreeSet::new();
            for space in f.spaces.iter().filter(|s| joined.contains(s)) {
                if !of_space.contains_key(space) {
                    let mut found = BTreeSet::new();
                    for ((kind, key), _) in db.current_state_ids(space).await? {
                        if kind != "m.space.child" {
                            continue;
                        }
                        // A child event without `via` is a removed child
                        // (MSC1772).
                        let live = db.state_event(space, &kind, &key).await?.is_some_and(|e| {
                            e.pdu.content_value()["via"]
                                .as_array()
                                .is_some_and(|v| !v.is_empty())
                        });
                        if live && let Ok(child) = OwnedRoomId::try_from(key) {
                            found.insert(child);
                        }
                    }
                    of_space.insert(space, found);
                }
                rooms.extend(of_space[space].iter().cloned());
            }
            children.insert(name.clone(), rooms);
        }
        Ok(FilterContext {
            direct,
            extra,
            children,
        })
    }

    /// Whether a room passes list `name`'s filters (`is_dm`, `is_invite`,
    /// `is_encrypted`, `room_types`, `not_room_types`, and the extra
    /// `spaces`, `tags`, `not_tags`, the last taking priority over `tags`).
    fn passes(&self, name: &str, filters: Option<&ListFilters>, e: &Entry) -> bool {
        if let Some(children) = self.children.get(name)
            && !children.contains(&e.room)
        {
            return false;
        }
        if let Some(extra) = self.extra.get(name) {
            let tags = e.tags.as_ref();
            let has = |t: &String| tags.is_some_and(|tags| tags.contains(t));
            if extra.not_tags.iter().any(has) {
                return false;
            }
            if !extra.tags.is_empty() && !extra.tags.iter().any(has) {
                return false;
            }
        }
        passes(filters, e, &self.direct)
    }
}

/// Whether a room passes a list's ruma-typed filters (`is_dm`,
/// `is_invite`, `is_encrypted`, `room_types`, `not_room_types`).
fn passes(filters: Option<&ListFilters>, e: &Entry, direct: &BTreeSet<OwnedRoomId>) -> bool {
    let Some(f) = filters else {
        return true;
    };
    if let Some(dm) = f.is_dm
        && dm != direct.contains(&e.room)
    {
        return false;
    }
    if let Some(invite) = f.is_invite
        && invite != (e.membership == MembershipState::Invite)
    {
        return false;
    }
    let (room_type, encrypted) = match &e.attributes {
        Some((t, enc)) => (t.as_deref(), *enc),
        None => (None, false),
    };
    if let Some(want) = f.is_encrypted
        && want != encrypted
    {
        return false;
    }
    let is = |filter: &ruma::directory::RoomTypeFilter| filter.as_str() == room_type;
    if !f.room_types.is_empty() && !f.room_types.iter().any(is) {
        return false;
    }
    !f.not_room_types.iter().any(is)
}

/// Whether some list filters on a room attribute (`is_encrypted`,
/// `room_types`, `not_room_types`), which costs two state reads per room.
fn needs_attributes(req: &v5::Request) -> bool {
    req.lists.values().any(|l| {
        l.filters.as_ref().is_some_and(|f| {
            f.is_encrypted.is_some() || !f.room_types.is_empty() || !f.not_room_types.is_empty()
        })
    })
}

/// The rooms in view: in a range of a list, or subscribed (and the user's),
/// with the largest timeline limit and every `required_state` pair asked.
fn in_view(
    req: &v5::Request,
    order: &[Entry],
    filters: &FilterContext<'_>,
) -> BTreeMap<OwnedRoomId, Wanted> {
    let mut view: BTreeMap<OwnedRoomId, Wanted> = BTreeMap::new();
    let mut want = |room: &OwnedRoomId,
                    list: Option<&str>,
                    limit: UInt,
                    state: &[(ruma::events::StateEventType, String)]| {
        let limit = usize::try_from(u64::from(limit))
            .unwrap_or(usize::MAX)
            .min(MAX_TIMELINE_LIMIT);
        let w = view.entry(room.clone()).or_insert_with(|| Wanted::new(0));
        match list {
            Some(name) => {
                w.lists.insert(name.to_owned());
            }
            None => w.subscribed = true,
        }
        w.timeline_limit = w.timeline_limit.max(limit);
        for (t, k) in state {
            let pair = (t.to_string(), k.clone());
            if !w.required_state.contains(&pair) {
                w.required_state.push(pair);
            }
        }
    };
    for (name, list) in &req.lists {
        let matching: Vec<&Entry> = order
            .iter()
            .filter(|e| filters.passes(name, list.filters.as_ref(), e))
            .collect();
        for (start, end) in &list.ranges {
            let start = usize::try_from(u64::from(*start)).unwrap_or(usize::MAX);
            let end = usize::try_from(u64::from(*end)).unwrap_or(usize::MAX);
            for e in matching
                .iter()
                .skip(start)
                .take(end.saturating_sub(start) + 1)
            {
                want(
                    &e.room,
                    Some(name),
                    list.room_details.timeline_limit,
                    &list.room_details.required_state,
                );
            }
        }
    }
    for (room, sub) in &req.room_subscriptions {
        if order.iter().any(|e| &e.room == room) {
            want(room, None, sub.timeline_limit, &sub.required_state);
        }
    }
    view
}

/// A built room and the ephemeral parts that go to extensions.
struct Built {
    room: v5::response::Room,
    account_data: Vec<Raw<ruma::events::AnyRoomAccountDataEvent>>,
    ephemeral: Vec<Raw<ruma::events::AnySyncEphemeralRoomEvent>>,
}

/// Moves a built room's account data, receipts and typing into the
/// extensions' maps.
fn collect_ephemeral(
    built: &Built,
    room: &OwnedRoomId,
    account_data: &mut BTreeMap<OwnedRoomId, Vec<Raw<ruma::events::AnyRoomAccountDataEvent>>>,
    receipts: &mut BTreeMap<OwnedRoomId, Raw<ruma::events::receipt::SyncReceiptEvent>>,
    typing: &mut BTreeMap<OwnedRoomId, Raw<ruma::events::typing::SyncTypingEvent>>,
) {
    if !built.account_data.is_empty() {
        account_data.insert(room.clone(), built.account_data.clone());
    }
    for e in &built.ephemeral {
        match e.get_field::<String>("type").ok().flatten().as_deref() {
            Some("m.receipt") => {
                receipts.insert(room.clone(), Raw::from_json(e.json().to_owned()));
            }
            Some("m.typing") => {
                typing.insert(room.clone(), Raw::from_json(e.json().to_owned()));
            }
            _ => {}
        }
    }
}

/// Whether the user's leave in `left` was someone else's doing (a kick or
/// a ban), which is sent even for a room the connection never sent.
fn left_by_other(left: Option<&super::service::LeftRoom>, user: &UserId) -> bool {
    let Some(left) = left else {
        return false;
    };
    left.timeline.events.iter().any(|e| {
        let field = |name: &str| e.get_field::<String>(name).ok().flatten();
        field("type").as_deref() == Some("m.room.member")
            && field("state_key").as_deref() == Some(user.as_str())
            && field("sender").as_deref() != Some(user.as_str())
    })
}

/// Whether a state event `(type, state_key)` is asked for by `wanted`
/// (`*` for any type or key, `$ME` for the user's own key, `$LAZY` for the
/// member events of the timeline's senders).
fn state_wanted(
    wanted: &[(String, String)],
    ty: &str,
    key: &str,
    user: &UserId,
    senders: &BTreeSet<String>,
) -> bool {
    wanted.iter().any(|(t, k)| {
        (t == "*" || t == ty)
            && (k == "*"
                || k == key
                || (k == "$ME" && key == user.as_str())
                || (k == "$LAZY" && ty == "m.room.member" && senders.contains(key)))
    })
}

/// One room of the answer from the `/sync` result `found` (taken out of
/// it): `None` if `found` has nothing of it. A `whole` room gets its
/// current required state, name, avatar and heroes read afresh and
/// `initial: true`; otherwise only its changes.
async fn build_room(
    services: &Services,
    user: &UserId,
    room: &OwnedRoomId,
    wanted: &Wanted,
    found: &mut SyncResult,
    whole: bool,
) -> Result<Option<Built>, Error> {
    let mut out = v5::response::Room::new();
    if let Some(invited) = found.rooms.invite.remove(room) {
        for e in &invited.invite_state.events {
            let field = |name: &str| e.get_field::<String>(name).ok().flatten();
            if field("type").as_deref() == Some("m.room.name") {
                out.name = e
                    .get_field::<Value>("content")
                    .ok()
                    .flatten()
                    .and_then(|c| c["name"].as_str().map(str::to_owned));
            }
        }
        out.invite_state = Some(invited.invite_state.events);
        out.initial = Some(true);
        return Ok(Some(Built {
            room: out,
            account_data: Vec::new(),
            ephemeral: Vec::new(),
        }));
    }
    if let Some(left) = found.rooms.leave.remove(room) {
        out.timeline = left.timeline.events;
        out.limited = left.timeline.limited;
        out.prev_batch = left.timeline.prev_batch;
        out.num_live = Some(uint(out.timeline.len() as u64));
        let state = match left.state {
            ruma::api::client::sync::sync_events::v3::State::Before(s) => s.events,
            ruma::api::client::sync::sync_events::v3::State::After(s) => s.events,
            _ => Vec::new(),
        };
        out.required_state = state
            .into_iter()
            .map(|e| Raw::from_json(e.into_json()))
            .collect();
        return Ok(Some(Built {
            room: out,
            account_data: Vec::new(),
            ephemeral: Vec::new(),
        }));
    }
    let joined: JoinedRoom = match found.rooms.join.remove(room) {
        Some(j) => j,
        None if whole => JoinedRoom::new(),
        None => return Ok(None),
    };
    let senders: BTreeSet<String> = joined
        .timeline
        .events
        .iter()
        .filter_map(|e| e.get_field::<String>("sender").ok().flatten())
        .collect();
    let mut state: Vec<Value> = Vec::new();
    if whole {
        state = services.rooms.state(user, room).await?;
        out.initial = Some(true);
        out.num_live = Some(uint(0));
    } else {
        let changes = match &joined.state {
            ruma::api::client::sync::sync_events::v3::State::Before(s) => s.events.clone(),
            ruma::api::client::sync::sync_events::v3::State::After(s) => s.events.clone(),
            _ => Vec::new(),
        };
        for e in &changes {
            if let Ok(v) = serde_json::from_str::<Value>(e.json().get()) {
                state.push(v);
            }
        }
        for e in &joined.timeline.events {
            if let Ok(v) = serde_json::from_str::<Value>(e.json().get())
                && v.get("state_key").is_some()
            {
                state.push(v);
            }
        }
        out.num_live = Some(uint(joined.timeline.events.len() as u64));
    }
    for v in &state {
        let ty = v["type"].as_str().unwrap_or_default();
        let key = v["state_key"].as_str().unwrap_or_default();
        match (ty, key) {
            ("m.room.name", "") => {
                out.name = v["content"]["name"].as_str().map(str::to_owned);
            }
            ("m.room.avatar", "") => {
                out.avatar = match v["content"]["url"]
                    .as_str()
                    .map(|u| OwnedMxcUri::from(u.to_owned()))
                {
                    Some(url) => ruma::JsOption::Some(url),
                    None => ruma::JsOption::Null,
                };
            }
            _ => {}
        }
        if state_wanted(&wanted.required_state, ty, key, user, &senders) {
            out.required_state.push(Raw::from_json(to_raw(v)));
        }
    }
    let summary = &joined.summary;
    if !summary.heroes.is_empty() && out.name.is_none() {
        out.heroes = Some(
            summary
                .heroes
                .iter()
                .map(|u: &OwnedUserId| {
                    let mut hero = v5::response::Hero::new(u.clone());
                    if let Some(member) = state
                        .iter()
                        .find(|v| v["type"] == "m.room.member" && v["state_key"] == u.as_str())
                    {
                        hero.name = member["content"]["displayname"].as_str().map(str::to_owned);
                    }
                    hero
                })
                .collect(),
        );
    }
    out.joined_count = summary.joined_member_count;
    out.invited_count = summary.invited_member_count;
    out.unread_notifications = joined.unread_notifications;
    out.timeline = joined.timeline.events;
    out.limited = joined.timeline.limited;
    out.prev_batch = joined.timeline.prev_batch;
    Ok(Some(Built {
        room: out,
        account_data: joined.account_data.events,
        ephemeral: joined.ephemeral.events,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pos_reads_back_and_anything_else_is_unknown() {
        let pos = Pos {
            generation: 42,
            token: SyncToken {
                game: Some(crate::db::Position::ZERO),
                ..SyncToken::default()
            },
        };
        assert_eq!(pos.to_string().parse::<Pos>().expect("reads back"), pos);
        for bad in ["", "42", "x.y", "42.", ".abc", "-1.AAAA", "42.not-a-token"] {
            assert!(
                matches!(bad.parse::<Pos>(), Err(Error::UnknownPos)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_to_device_position_reads_back_and_junk_is_refused() {
        let p = transitory::Position::from_bytes([1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xfe]);
        let s = position_string(p);
        assert_eq!(s, "0102030405060708fffe");
        assert_eq!(parse_position(&s), Some(p));
        for bad in [
            "",
            "0102",
            "0102030405060708fffeff",
            "zz02030405060708fffe",
            "é102030405060708fff",
        ] {
            assert_eq!(parse_position(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn required_state_matches_exact_wildcards_me_and_lazy() {
        let me = ruma::user_id!("@me:x");
        let senders: BTreeSet<String> = ["@bob:x".to_owned()].into();
        let w = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(t, k)| ((*t).to_owned(), (*k).to_owned()))
                .collect()
        };
        let exact = w(&[("m.room.name", "")]);
        assert!(state_wanted(&exact, "m.room.name", "", me, &senders));
        assert!(!state_wanted(&exact, "m.room.topic", "", me, &senders));
        let all = w(&[("*", "*")]);
        assert!(state_wanted(&all, "m.room.topic", "", me, &senders));
        let mine = w(&[("m.room.member", "$ME")]);
        assert!(state_wanted(&mine, "m.room.member", "@me:x", me, &senders));
        assert!(!state_wanted(
            &mine,
            "m.room.member",
            "@bob:x",
            me,
            &senders
        ));
        let lazy = w(&[("m.room.member", "$LAZY")]);
        assert!(state_wanted(&lazy, "m.room.member", "@bob:x", me, &senders));
        assert!(!state_wanted(
            &lazy,
            "m.room.member",
            "@carol:x",
            me,
            &senders
        ));
        let any_key = w(&[("m.room.member", "*")]);
        assert!(state_wanted(
            &any_key,
            "m.room.member",
            "@carol:x",
            me,
            &senders
        ));
    }

    #[test]
    fn a_room_is_whole_when_unsent_or_sent_with_a_lower_limit() {
        let room = ruma::room_id!("!r:x");
        let mut sent = SentRooms::new();
        assert!(needs_whole(&sent, room, 1));
        sent.insert(room.to_string(), 5);
        assert!(!needs_whole(&sent, room, 5));
        assert!(!needs_whole(&sent, room, 1));
        assert!(needs_whole(&sent, room, 6));
    }

    #[test]
    fn the_sliding_table_of_sync_is_read_with_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("myelin.toml");
        std::fs::write(&path, "[sync.sliding]\nconnection_expiry_ms = 1000\n").expect("write");
        let config = crate::config::Config::load(Some(&path), &Default::default()).expect("loads");
        let sync: super::super::SyncConfig = config.sync_settings().expect("reads");
        assert_eq!(sync.sliding.connection_expiry_ms, 1000);
        assert_eq!(sync.sliding.max_lists, SlidingConfig::default().max_lists);
        std::fs::write(&path, "[sync.sliding]\nmax_listz = 3\n").expect("write");
        let config = crate::config::Config::load(Some(&path), &Default::default()).expect("loads");
        assert!(config.sync_settings::<super::super::SyncConfig>().is_err());
    }
}
