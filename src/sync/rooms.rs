//! The `rooms` section of `/sync`: `join`, `invite` and `leave`, for the
//! candidate rooms the service found (`docs/sync.md`).
//!
//! Every read is bounded above by the rooms position of `next_batch`
//! ([`Window::upto`]), so what one response holds is exactly the changes in
//! `(since, upto]` and the next response starts after them. Per room:
//!
//! - the user's membership (for an incremental sync, one transaction of
//!   point reads for all candidate rooms) and its event's position (one
//!   read); a membership set after `upto` waits for the next sync;
//! - `join`: timeline (one range read newest first, `limit + 1` entries:
//!   `limited` if the extra one exists; `prev_batch` is the oldest returned
//!   event's position, a cut `/messages` accepts as `from`), state (the
//!   changes between `since` and the timeline's start from one range read
//!   of the state log; the state at the timeline's start on initial,
//!   `full_state` and newly joined rooms), lazy-loaded members, receipts
//!   and typing (`ephemeral`), room account data, and `summary` when the
//!   room's membership changed or the room is new to the client;
//! - `invite`: stripped state, once (when the invite is after `since`);
//! - `leave`: once, the timeline up to the leave and the state before it.
//!
//! Every joined room in the response carries `unread_notifications`
//! (`sync::unread`: the user's push rules over the events after their
//! read receipt, at most `unread::MAX_COUNTED` per room), and with the
//! filter's `unread_thread_notifications` the per-thread counts.
//!
//! Who may import this: `sync::service` and `sync::unread`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use ruma::api::client::sync::sync_events::v3::{
    Ephemeral, InviteState, InvitedRoom, JoinedRoom, LeftRoom, RoomAccountData, RoomSummary, State,
    StateEvents, Timeline,
};
use ruma::events::room::member::MembershipState;
use ruma::serde::Raw;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt};
use serde_json::{Value, json};

use super::Error;
use super::filter::SyncFilter;
use super::unread::{Known, Memos, Rules};
use crate::db::rooms::{Direction, StreamPosition};
use crate::db::transitory;
use crate::service::rooms::MemberRecord;
use crate::service::rooms::{Rooms, Viewer};
use crate::service::transitory::Transitory;

/// How many rooms are assembled concurrently.
const CONCURRENCY: usize = 16;

/// At most this many heroes in a room summary (spec: 5).
const MAX_HEROES: usize = 5;

/// The positions one response covers.
#[derive(Clone, Copy, Debug)]
pub(super) struct Window {
    /// Rooms changes after this are new (`None`: initial sync).
    pub since: Option<StreamPosition>,
    /// Rooms changes at or before this are delivered now.
    pub upto: StreamPosition,
    /// Transitory changes after this are new (`None`: initial sync).
    pub transitory_since: Option<transitory::Position>,
    /// Transitory changes at or before this are delivered now.
    pub transitory_upto: transitory::Position,
    /// Whether every room is sent whole (`full_state`).
    pub full_state: bool,
}

/// What the room assembly needs; cheap to clone (one per room task).
#[derive(Clone)]
pub(super) struct Ctx {
    pub rooms: Arc<Rooms>,
    pub transitory: Arc<Transitory>,
    pub user: OwnedUserId,
    pub device: Option<String>,
    pub filter: Arc<SyncFilter>,
    pub window: Window,
    /// The user's push rules (for `unread_notifications`).
    pub push_rules: Arc<Rules>,
    /// What this process has counted of unread events already.
    pub memos: Arc<Memos>,
}

/// A room the service found something for, and why.
#[derive(Clone, Debug, Default)]
pub(super) struct Candidate {
    /// Room account data changed since the token: `(type, content)`.
    pub account_data: Vec<Value>,
    /// The room's typing set may have changed.
    pub typing: bool,
}

/// The assembled `rooms` section and what it implies for device lists.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Joined rooms with news.
    pub join: BTreeMap<OwnedRoomId, JoinedRoom>,
    /// New invites.
    pub invite: BTreeMap<OwnedRoomId, InvitedRoom>,
    /// Rooms left (or been kicked or banned from) since the token.
    pub leave: BTreeMap<OwnedRoomId, LeftRoom>,
    /// Users whose membership in one of the user's rooms changed in the
    /// window (everyone in a room the user joined or left).
    pub membership_changed: BTreeSet<OwnedUserId>,
}

enum Part {
    Join(Box<JoinedRoom>),
    Invite(InvitedRoom),
    Leave(Box<LeftRoom>),
}

fn raw<T>(value: &Value) -> Raw<T> {
    Raw::from_json(serde_json::value::to_raw_value(value).expect("JSON values serialize"))
}

/// Assembles the candidate rooms, [`CONCURRENCY`] at a time. With
/// `spread` (an initial or `full_state` sync, whose candidates are the
/// user's own rooms, each with a full section to build), each room is its
/// own tokio task, so a large response is built on every core. An
/// incremental sync's candidates are every room that changed, most of
/// them dropped after one membership read: those stay on the caller's task.
pub(super) async fn assemble(
    ctx: &Ctx,
    candidates: BTreeMap<OwnedRoomId, Candidate>,
    spread: bool,
) -> Result<Outcome, Error> {
    let wanted = candidates
        .into_iter()
        .filter(|(room, _)| ctx.filter.allows_room(room));
    let parts: Vec<_> = if !spread {
        // One transaction finds the user's membership in every candidate;
        // the rooms they are not in stop here.
        let wanted: Vec<(OwnedRoomId, Candidate)> = wanted.collect();
        let ids: Vec<&RoomId> = wanted.iter().map(|(r, _)| r.as_ref()).collect();
        let members = ctx.rooms.db().memberships(&ctx.user, &ids).await?;
        let mine = wanted
            .into_iter()
            .zip(members)
            .filter_map(|((room, c), m)| Some((room, c, m?)));
        futures::stream::iter(mine)
            .map(|(room, c, member)| async move {
                let part = room_part(ctx, &room, &c, member).await?;
                Ok::<_, Error>((room, part))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?
    } else {
        futures::stream::iter(wanted)
            .map(|(room, c)| {
                let ctx = ctx.clone();
                let task = tokio::spawn(async move {
                    let part = one_room(&ctx, &room, &c).await?;
                    Ok::<_, Error>((room, part))
                });
                async move {
                    match task.await {
                        Ok(part) => part,
                        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                        // Cancelled: only when the runtime shuts down.
                        Err(e) => {
                            Err(crate::db::rooms::Error::Kv(crate::kv::Error::storage(e)).into())
                        }
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?
    };
    let mut out = Outcome::default();
    for (room, part) in parts {
        let Some((part, changed)) = part else {
            continue;
        };
        out.membership_changed.extend(changed);
        match part {
            Part::Join(j) => {
                out.join.insert(room, *j);
            }
            Part::Invite(i) => {
                out.invite.insert(room, i);
            }
            Part::Leave(l) => {
                out.leave.insert(room, *l);
            }
        }
    }
    Ok(out)
}

/// One room: `None` if it has nothing for this response.
async fn one_room(
    ctx: &Ctx,
    room: &RoomId,
    candidate: &Candidate,
) -> Result<Option<(Part, BTreeSet<OwnedUserId>)>, Error> {
    match ctx.rooms.db().membership(room, &ctx.user).await? {
        Some(member) => room_part(ctx, room, candidate, member).await,
        None => Ok(None),
    }
}

/// One room where the user's current membership is `member`.
async fn room_part(
    ctx: &Ctx,
    room: &RoomId,
    candidate: &Candidate,
    member: MemberRecord,
) -> Result<Option<(Part, BTreeSet<OwnedUserId>)>, Error> {
    let db = ctx.rooms.db();
    let w = ctx.window;
    let Some(member_pos) = db.position(&member.event_id).await? else {
        return Ok(None);
    };
    if member_pos > w.upto {
        // Set after this response's position: the next sync sends it.
        return Ok(None);
    }
    let changed_since = |p: StreamPosition| w.since.is_none_or(|s| p > s);
    let initial = w.since.is_none();
    match member.membership {
        MembershipState::Join => {
            let new_join = !initial
                && changed_since(member_pos)
                && previous_membership(ctx, &member.event_id).await? != Some(MembershipState::Join);
            let full = initial || w.full_state || new_join;
            let (joined, changed) =
                joined_room(ctx, room, candidate, full, (&member.event_id, member_pos)).await?;
            let mut changed = changed;
            if new_join {
                changed.extend(db.members(room).await?.into_iter().map(|(u, _)| u));
            }
            Ok(joined.map(|j| (Part::Join(Box::new(j)), changed)))
        }
        MembershipState::Invite if changed_since(member_pos) => {
            let events = ctx.rooms.stripped_invite_state(room, &ctx.user).await?;
            let state = InviteState::from(events.iter().map(raw).collect::<Vec<_>>());
            Ok(Some((
                Part::Invite(InvitedRoom::from(state)),
                BTreeSet::new(),
            )))
        }
        MembershipState::Leave | MembershipState::Ban => {
            let wanted = if initial || w.full_state {
                ctx.filter.include_leave
                    && !ctx
                        .rooms
                        .forgotten_rooms(&ctx.user)
                        .await?
                        .iter()
                        .any(|r| r == room)
            } else {
                changed_since(member_pos)
            };
            if !wanted {
                return Ok(None);
            }
            let left = left_room(ctx, room, candidate, member_pos).await?;
            let changed = db
                .members(room)
                .await?
                .into_iter()
                .map(|(u, _)| u)
                .collect();
            Ok(Some((Part::Leave(Box::new(left)), changed)))
        }
        _ => Ok(None),
    }
}

/// The membership the user had before the member event `event_id`.
async fn previous_membership(
    ctx: &Ctx,
    event_id: &OwnedEventId,
) -> Result<Option<MembershipState>, Error> {
    let db = ctx.rooms.db();
    let Some(event) = db.event(event_id).await? else {
        return Ok(None);
    };
    let Some(replaced) = event.meta.replaces_state else {
        return Ok(None);
    };
    Ok(db.event(&replaced).await?.and_then(|e| {
        e.pdu.content_value()["membership"]
            .as_str()
            .map(MembershipState::from)
    }))
}

/// A timeline read: the section, the oldest returned event's position, the
/// senders of the returned events, and every visible event read (before
/// the filter) with the range they cover.
struct TimelineRead {
    timeline: Timeline,
    oldest: Option<StreamPosition>,
    senders: BTreeSet<String>,
    /// Oldest first: every visible event after `covers_after` (`None`: all).
    events: Vec<(StreamPosition, Value)>,
    covers_after: Option<StreamPosition>,
}

/// The newest `limit` visible events with `after < p < before`.
async fn read_timeline(
    ctx: &Ctx,
    room: &RoomId,
    after: Option<StreamPosition>,
    before: StreamPosition,
) -> Result<TimelineRead, Error> {
    let limit = ctx.filter.timeline_limit;
    let viewer = Viewer {
        user: &ctx.user,
        device: ctx.device.as_deref(),
    };
    let page = if limit == 0 {
        None
    } else {
        Some(
            ctx.rooms
                .timeline(
                    viewer,
                    room,
                    after,
                    Some(before),
                    Direction::Backward,
                    limit + 1,
                )
                .await?,
        )
    };
    let mut timeline = Timeline::new();
    let Some(page) = page else {
        // A zero limit: say whether anything was left out.
        timeline.limited = !ctx
            .rooms
            .db()
            .timeline(room, after, Some(before), Direction::Backward, 1)
            .await?
            .is_empty();
        return Ok(TimelineRead {
            timeline,
            oldest: None,
            senders: BTreeSet::new(),
            events: Vec::new(),
            covers_after: Some(before),
        });
    };
    timeline.limited = page.next.is_some();
    let mut events: Vec<(StreamPosition, Value)> = page.events.into_iter().take(limit).collect();
    events.reverse();
    let oldest = events.first().map(|(p, _)| *p);
    let mut senders = BTreeSet::new();
    let mut shown: Vec<Value> = Vec::new();
    for (_, event) in &events {
        if SyncFilter::allows_event(&ctx.filter.timeline, event) {
            if let Some(s) = event["sender"].as_str() {
                senders.insert(s.to_owned());
            }
            shown.push(event.clone());
        }
    }
    // Bundled aggregations on what the client gets (`events` stays as
    // read: unread counting evaluates push rules over it).
    ctx.rooms
        .bundle_aggregations(viewer, room, &mut shown)
        .await?;
    timeline.events.extend(shown.iter().map(raw));
    timeline.prev_batch = oldest.map(|p| p.to_string());
    let covers_after = match (timeline.limited, oldest) {
        (false, _) => after,
        (true, Some(oldest)) => Some(oldest.predecessor()),
        (true, None) => Some(before),
    };
    Ok(TimelineRead {
        timeline,
        oldest,
        senders,
        events,
        covers_after,
    })
}

/// The `state` section before a timeline starting at `oldest` (or at
/// `upto` if empty): the whole state there if `full`, else the changes
/// since the window's start; plus every user whose membership changed in
/// the window up to `upto`.
async fn read_state(
    ctx: &Ctx,
    room: &RoomId,
    full: bool,
    oldest: Option<StreamPosition>,
    upto: StreamPosition,
    senders: &BTreeSet<String>,
) -> Result<(Vec<Value>, BTreeSet<OwnedUserId>), Error> {
    let db = ctx.rooms.db();
    let boundary = oldest.map_or(upto, StreamPosition::predecessor);
    let mut changed = BTreeSet::new();
    let mut ids: BTreeMap<(String, String), OwnedEventId> = if full {
        db.state_at(room, boundary).await?
    } else {
        let since = ctx.window.since.unwrap_or(StreamPosition::MIN);
        let mut delta = BTreeMap::new();
        for (pos, change) in db.state_changes(room, since, upto).await? {
            if change.kind == "m.room.member"
                && let Ok(u) = OwnedUserId::try_from(change.state_key.as_str())
            {
                changed.insert(u);
            }
            if pos <= boundary {
                delta.insert((change.kind, change.state_key), change.event_id);
            }
        }
        delta
    };
    if ctx.filter.lazy_load_members {
        let mut wanted: BTreeSet<String> = senders.clone();
        wanted.insert(ctx.user.to_string());
        ids.retain(|(kind, key), _| kind != "m.room.member" || wanted.contains(key));
        if !full {
            for sender in &wanted {
                let key = ("m.room.member".to_owned(), sender.clone());
                if ids.contains_key(&key) {
                    continue;
                }
                let history = db.state_history(room, "m.room.member", sender).await?;
                if let Some((_, id)) = history.iter().rev().find(|(p, _)| *p <= boundary) {
                    ids.insert(key, id.clone());
                }
            }
        }
    }
    let ids: Vec<OwnedEventId> = ids.into_values().collect();
    let viewer = Viewer {
        user: &ctx.user,
        device: ctx.device.as_deref(),
    };
    let events = ctx
        .rooms
        .client_events_for_sync(viewer, room, &ids)
        .await?
        .into_iter()
        .filter(|e| SyncFilter::allows_event(&ctx.filter.state, e))
        .collect();
    Ok((events, changed))
}

fn state_section(events: &[Value]) -> State {
    State::Before(StateEvents::from(
        events.iter().map(raw).collect::<Vec<_>>(),
    ))
}

fn account_data_section(ctx: &Ctx, candidate: &Candidate) -> RoomAccountData {
    let mut out = RoomAccountData::new();
    out.events = candidate
        .account_data
        .iter()
        .filter(|e| {
            SyncFilter::allows_type(
                &ctx.filter.room_account_data,
                e["type"].as_str().unwrap_or_default(),
            )
        })
        .map(raw)
        .collect();
    out
}

async fn joined_room(
    ctx: &Ctx,
    room: &RoomId,
    candidate: &Candidate,
    full: bool,
    (member_event, member_pos): (&OwnedEventId, StreamPosition),
) -> Result<(Option<JoinedRoom>, BTreeSet<OwnedUserId>), Error> {
    let w = ctx.window;
    let after = if full { None } else { w.since };
    let read = read_timeline(ctx, room, after, w.upto).await?;
    let (state, changed) = read_state(ctx, room, full, read.oldest, w.upto, &read.senders).await?;
    let mut joined = JoinedRoom::new();
    joined.state = state_section(&state);
    joined.account_data = account_data_section(ctx, candidate);
    // Ephemeral: receipts (rooms stream) and typing (transitory stream).
    let mut ephemeral = Vec::new();
    if let Some((event, _)) = ctx
        .rooms
        .receipt_event(&ctx.user, room, after, Some(w.upto))
        .await?
    {
        ephemeral.push(event);
    }
    if full || candidate.typing {
        let since = if full { None } else { w.transitory_since };
        if let Some(update) = ctx.transitory.typing_since(room, since).await?
            && update.position <= w.transitory_upto
        {
            let users: Vec<&str> = update.typing.iter().map(|(u, _)| u.as_str()).collect();
            ephemeral.push(json!({ "type": "m.typing", "content": { "user_ids": users } }));
        }
    }
    joined.ephemeral = Ephemeral::new();
    joined.ephemeral.events = ephemeral
        .iter()
        .filter(|e| SyncFilter::allows_event(&ctx.filter.ephemeral, e))
        .map(raw)
        .collect();
    if full || !changed.is_empty() {
        joined.summary = summary(ctx, room).await?;
    }
    let has_news = !read.timeline.events.is_empty()
        || read.timeline.limited
        || !state.is_empty()
        || !joined.account_data.events.is_empty()
        || !joined.ephemeral.events.is_empty()
        || !changed.is_empty();
    joined.timeline = read.timeline;
    if !(full || has_news) {
        return Ok((None, changed));
    }
    let known = Known {
        covers_after: read.covers_after,
        events: &read.events,
    };
    let counts =
        super::unread::unread_notifications(ctx, room, member_event, member_pos, known).await?;
    joined.unread_notifications = counts.room;
    joined.unread_thread_notifications = counts.threads;
    Ok((Some(joined), changed))
}

async fn summary(ctx: &Ctx, room: &RoomId) -> Result<RoomSummary, Error> {
    let members = ctx.rooms.db().members(room).await?;
    let count = |m: MembershipState| members.iter().filter(|(_, r)| r.membership == m).count();
    let mut summary = RoomSummary::new();
    summary.joined_member_count = Some(UInt::new_saturating(count(MembershipState::Join) as u64));
    summary.invited_member_count =
        Some(UInt::new_saturating(count(MembershipState::Invite) as u64));
    summary.heroes = members
        .iter()
        .filter(|(u, r)| {
            *u != ctx.user
                && matches!(
                    r.membership,
                    MembershipState::Join | MembershipState::Invite
                )
        })
        .map(|(u, _)| u.clone())
        .take(MAX_HEROES)
        .collect();
    Ok(summary)
}

async fn left_room(
    ctx: &Ctx,
    room: &RoomId,
    candidate: &Candidate,
    leave_pos: StreamPosition,
) -> Result<LeftRoom, Error> {
    let w = ctx.window;
    let full = w.since.is_none() || w.full_state;
    let after = if full { None } else { w.since };
    let before = leave_pos.successor().min(w.upto);
    let read = read_timeline(ctx, room, after, before).await?;
    let (state, _) = read_state(ctx, room, full, read.oldest, leave_pos, &read.senders).await?;
    let mut left = LeftRoom::new();
    left.state = state_section(&state);
    left.timeline = read.timeline;
    left.account_data = account_data_section(ctx, candidate);
    Ok(left)
}
