//! `unread_notifications` of a joined room in `/sync`: how many events the
//! user has not read yet would notify them, and how many would highlight,
//! by the user's push rules (`docs/sync.md`).
//!
//! Definition (spec, Client-Server API "Receiving notifications", as
//! Synapse computes it): the events after the user's own latest
//! unthreaded or main-timeline `m.read` / `m.read.private` receipt in the
//! room (the later of the two; without one, after the user's current
//! member event), not sent by the user and not redacted (when counted),
//! that the user may see; an event
//! counts in `notification_count` if the actions of the first push rule
//! it matches contain `notify`, and in `highlight_count` if they contain
//! the `highlight` tweak. Rules are evaluated with ruma
//! ([`Ruleset::get_actions`]) in a context of the room's current state: the
//! joined member count, the user's current display name in the room, and
//! the room's power levels (`@room` needs them).
//!
//! Invariant (cost bound): at most [`MAX_COUNTED`] events are read per
//! room and sync besides those the response's timeline holds (and, with
//! thread counts, the parents of related events, see "Threads"); both counts
//! are over at most the [`MAX_COUNTED`] newest unread events, so never
//! above it.
//!
//! ## Memo: each event is evaluated once
//! Evaluating push rules is most of a delivering sync's cost (flattening
//! each event's JSON and matching every rule), and a long-polling client
//! syncs once per message. So the results are kept per process in
//! [`Memos`], per (user, room): where counting started (the receipt or
//! join position), up to where it has counted, and one bit per counted
//! event (notify, highlight) for the newest [`MAX_COUNTED`]. The next sync
//! with the same start, the same push rules (a hash of the stored set) and
//! a later position evaluates only the events after the memo's and shifts
//! them in; anything else (a new receipt, another rule set, an older
//! position, a process that has not seen the room) counts afresh from the
//! start. Events the response's own timeline read already holds are not
//! read again: only the gap between the memo (or the start) and that read
//! is (one range read, usually empty). As in Synapse, whose counts come from push actions computed
//! when an event arrives, each event is evaluated once, against the room's
//! state (member count, display name, power levels) at that time.
//!
//! Reads per room: the user's receipts (one range read and one read each),
//! the receipted events' positions; only with events to evaluate, a
//! timeline page (unless the response's covers them, see above) and the
//! member list, the member and power-levels events.
//!
//! ## Threads (`unread_thread_notifications`)
//! With `room.timeline.unread_thread_notifications: true` in the filter
//! (spec: "Receiving notifications", threaded read receipts), an event in a
//! thread (`content.m.relates_to.rel_type` `m.thread`; the root belongs to
//! the main timeline) counts only in `unread_thread_notifications.<root>`,
//! after the later of the user's unthreaded receipt and their receipt for
//! that thread (and the join); `unread_notifications` then counts the main
//! timeline only: unthreaded events after the later of the unthreaded and
//! `main` receipts. Only threads with a count above zero are listed. The
//! memo keeps, besides the main timeline's bits, the newest
//! [`MAX_COUNTED`] threaded events that notify or highlight with their
//! position and root, so a new thread receipt needs no re-evaluation.
//! Without the option every event counts in `unread_notifications` after
//! the later of the unthreaded and `main` receipts, and thread receipts
//! are ignored. An event relating to an event in a thread in another way
//! (a reaction or an edit of a thread reply: `m.annotation`, `m.replace`)
//! belongs to that thread too (spec v1.4 "Threading", MSC3771), as in
//! Synapse; finding its thread reads its parent (at most
//! [`MAX_RELATION_HOPS`] reads per such event, none for a parent in the
//! same batch), once per event since the memo keeps the result.
//!
//! Who may import this: `sync::rooms` and `sync::service`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use ruma::api::client::sync::sync_events::UnreadNotificationsCount;
use ruma::events::room::member::MembershipState;
use ruma::power_levels::NotificationPowerLevels;
use ruma::push::{PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset};
use ruma::room_version_rules::RoomPowerLevelsRules;
use ruma::serde::Raw;
use ruma::{Int, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId};
use serde_json::Value;

use super::Error;
use super::rooms::Ctx;
use crate::db::rooms::{Direction, StreamPosition};

/// At most this many unread events are evaluated per room and sync, and
/// counted (the counts are capped at it).
pub const MAX_COUNTED: usize = 100;

/// The memo forgets everything past this many (user, room) entries.
const MEMO_ENTRIES: usize = 200_000;

/// The receipt types that mark the room read.
const READ_TYPES: [&str; 2] = ["m.read", "m.read.private"];

/// A user's push rules for one sync, and a tag that changes when they do.
pub(super) struct Rules {
    set: Ruleset,
    tag: u64,
}

/// What one room's counting has reached (module docs).
#[derive(Clone, Debug)]
struct Memo {
    rules: u64,
    /// Main-timeline (or, without thread counts, every) event counts after
    /// this.
    start: StreamPosition,
    /// With thread counts: threaded events count after this (the join or
    /// the unthreaded receipt, at or before `start`).
    thread_start: Option<StreamPosition>,
    through: StreamPosition,
    /// Bit 0 is the newest counted event; at most [`MAX_COUNTED`] bits.
    notify: u128,
    highlight: u128,
    /// With thread counts: the newest threaded events (oldest first, at
    /// most [`MAX_COUNTED`]) that notify or highlight.
    threaded: VecDeque<Threaded>,
}

/// A threaded event that notifies or highlights.
#[derive(Clone, Debug)]
struct Threaded {
    position: StreamPosition,
    root: OwnedEventId,
    notify: bool,
    highlight: bool,
}

/// A room's counts: the room's (main timeline's, with thread counts) and,
/// with thread counts, each thread's with a count above zero.
#[derive(Debug, Default)]
pub(super) struct Counts {
    pub room: UnreadNotificationsCount,
    pub threads: BTreeMap<OwnedEventId, UnreadNotificationsCount>,
}

fn count(notify: u32, highlight: u32) -> UnreadNotificationsCount {
    let mut counts = UnreadNotificationsCount::new();
    counts.notification_count = Some(UInt::from(notify));
    counts.highlight_count = Some(UInt::from(highlight));
    counts
}

impl Memo {
    const MASK: u128 = (1 << MAX_COUNTED) - 1;

    fn push(&mut self, notify: bool, highlight: bool) {
        self.notify = ((self.notify << 1) | u128::from(notify)) & Self::MASK;
        self.highlight = ((self.highlight << 1) | u128::from(highlight)) & Self::MASK;
    }

    fn push_threaded(&mut self, event: Threaded) {
        if event.notify || event.highlight {
            self.threaded.push_back(event);
            if self.threaded.len() > MAX_COUNTED {
                self.threaded.pop_front();
            }
        }
    }

    /// The counts; a thread's events count after its receipt in
    /// `thread_read` (if any).
    fn counts(&self, thread_read: &HashMap<OwnedEventId, StreamPosition>) -> Counts {
        let mut threads: BTreeMap<OwnedEventId, (u32, u32)> = BTreeMap::new();
        for t in &self.threaded {
            if thread_read
                .get(&t.root)
                .is_some_and(|read| t.position <= *read)
            {
                continue;
            }
            let entry = threads.entry(t.root.clone()).or_default();
            entry.0 += u32::from(t.notify);
            entry.1 += u32::from(t.highlight);
        }
        Counts {
            room: count(self.notify.count_ones(), self.highlight.count_ones()),
            threads: threads
                .into_iter()
                .map(|(root, (n, h))| (root, count(n, h)))
                .collect(),
        }
    }
}

/// How many relations other than `m.thread` [`thread_of`] follows from an
/// event towards a thread (a reaction to an edit of a thread reply is two).
const MAX_RELATION_HOPS: usize = 3;

/// Where an event's `m.relates_to` points: the thread root of an
/// `m.thread` child, or the parent of any other relation.
enum RelatesTo {
    Thread(OwnedEventId),
    Parent(OwnedEventId),
}

/// The relation of an event's `content` (client format or the PDU's).
fn relates_to(content: &Value) -> Option<RelatesTo> {
    let relates = &content["m.relates_to"];
    let target = OwnedEventId::try_from(relates["event_id"].as_str()?).ok()?;
    match relates["rel_type"].as_str()? {
        "m.thread" => Some(RelatesTo::Thread(target)),
        _ => Some(RelatesTo::Parent(target)),
    }
}

/// The thread a client-format event of `room` belongs to (spec v1.4
/// "Threading", MSC3771/MSC3773): an `m.thread` child belongs to its
/// root's thread; an event relating to an event in a thread in another
/// way (`m.annotation`, `m.replace`, ...) belongs to that thread too; the
/// root and everything relating to it belong to the main timeline. Follows
/// at most [`MAX_RELATION_HOPS`] such relations; a parent among `batch`
/// (the events being counted, by ID) is not read again, any other is one
/// read (a parent in another room, or unknown, ends the walk: main
/// timeline).
async fn thread_of(
    ctx: &Ctx,
    room: &RoomId,
    event: &Value,
    batch: &HashMap<&str, &Value>,
) -> Result<Option<OwnedEventId>, Error> {
    let mut relation = relates_to(&event["content"]);
    for _ in 0..MAX_RELATION_HOPS {
        let parent = match relation {
            None => return Ok(None),
            Some(RelatesTo::Thread(root)) => return Ok(Some(root)),
            Some(RelatesTo::Parent(parent)) => parent,
        };
        relation = match batch.get(parent.as_str()) {
            Some(parent) => relates_to(&parent["content"]),
            None => match ctx.rooms.db().event(&parent).await? {
                Some(stored) if stored.room_id == room => relates_to(&stored.pdu.content_value()),
                _ => None,
            },
        };
    }
    Ok(match relation {
        Some(RelatesTo::Thread(root)) => Some(root),
        _ => None,
    })
}

/// The per-process memo of unread counting, per user and room.
#[derive(Default)]
pub(super) struct Memos(Mutex<MemoMap>);

/// The memo entries by user and room, and how many there are.
#[derive(Default)]
struct MemoMap {
    by_user: HashMap<OwnedUserId, HashMap<OwnedRoomId, Memo>>,
    len: usize,
}

impl Memos {
    fn get(&self, user: &UserId, room: &RoomId) -> Option<Memo> {
        let map = self.0.lock().expect("unread memo");
        map.by_user.get(user)?.get(room).cloned()
    }

    fn put(&self, user: &UserId, room: &RoomId, memo: Memo) {
        let mut map = self.0.lock().expect("unread memo");
        if map.len >= MEMO_ENTRIES {
            *map = MemoMap::default();
        }
        let rooms = map.by_user.entry(user.to_owned()).or_default();
        if rooms.insert(room.to_owned(), memo).is_none() {
            map.len += 1;
        }
    }
}

/// What the response already read of the room's timeline: every visible
/// event with `covers_after < position < upto` (`None`: from the room's
/// start), oldest first.
pub(super) struct Known<'a> {
    pub covers_after: Option<StreamPosition>,
    pub events: &'a [(StreamPosition, Value)],
}

/// The counts of `room` for `ctx.user`, whose current member event
/// `member_event` is at `joined_at`, as of `ctx.window.upto`; per thread
/// if the filter asks (`unread_thread_notifications`, module docs).
pub(super) async fn unread_notifications(
    ctx: &Ctx,
    room: &RoomId,
    member_event: &OwnedEventId,
    joined_at: StreamPosition,
    known: Known<'_>,
) -> Result<Counts, Error> {
    let db = ctx.rooms.db();
    let upto = ctx.window.upto;
    let by_thread = ctx.filter.unread_thread_notifications;
    // Where reading starts: the latest receipt's event, else the join;
    // threads start at the unthreaded receipt and their own.
    let (mut start, mut thread_start) = (joined_at, joined_at);
    let mut thread_read: HashMap<OwnedEventId, StreamPosition> = HashMap::new();
    for (set_at, receipt) in db.own_receipts(room, &ctx.user).await? {
        if set_at > upto || !READ_TYPES.contains(&receipt.receipt_type.as_str()) {
            continue;
        }
        let thread = receipt.thread.as_str();
        let root = match thread {
            "" | "main" => None,
            _ if by_thread => match OwnedEventId::try_from(thread) {
                Ok(root) => Some(root),
                Err(_) => continue,
            },
            _ => continue,
        };
        let Some(p) = db.position(&receipt.event_id).await? else {
            continue;
        };
        match root {
            Some(root) => {
                let read = thread_read.entry(root).or_insert(p);
                *read = (*read).max(p);
            }
            None => {
                start = start.max(p);
                if thread.is_empty() {
                    thread_start = thread_start.max(p);
                }
            }
        }
    }
    let thread_start = by_thread.then_some(thread_start);
    let rules = ctx.push_rules.tag;
    let mut memo = ctx
        .memos
        .get(&ctx.user, room)
        .filter(|m| {
            m.rules == rules
                && m.start == start
                && m.thread_start == thread_start
                && m.through <= upto
        })
        .unwrap_or(Memo {
            rules,
            start,
            thread_start,
            through: thread_start.unwrap_or(start),
            notify: 0,
            highlight: 0,
            threaded: VecDeque::new(),
        });
    let from = memo.through;
    if from >= upto {
        return Ok(memo.counts(&thread_read));
    }
    // The response's timeline read holds every event after `covers_after`;
    // what lies between `from` and it (usually nothing: the memo stopped at
    // the last response holding this room, and a room with events since
    // would have been in one) is read here, one range read. Every event
    // after the user's current join is visible to them (all history
    // visibilities show a member what happens while they are joined), so
    // the gap needs no visibility check.
    let gap_events: Vec<(StreamPosition, Value)> = match known.covers_after.filter(|c| *c > from) {
        Some(c) => {
            let entries = db
                .timeline(
                    room,
                    Some(from),
                    Some(c.successor()),
                    Direction::Backward,
                    MAX_COUNTED,
                )
                .await?;
            if entries.len() == MAX_COUNTED {
                // Perhaps more than one pass reads: the newest replace the
                // rest.
                memo.notify = 0;
                memo.highlight = 0;
                memo.threaded.clear();
            }
            let ids: Vec<OwnedEventId> = entries.into_iter().rev().map(|e| e.event_id).collect();
            // Only what push rules read: the client format without
            // `unsigned`.
            if ids.is_empty() {
                Vec::new()
            } else {
                db.events(&ids)
                    .await?
                    .iter()
                    .filter(|e| e.redacted_by.is_none())
                    .map(|e| (e.position, e.pdu.to_client_event(room)))
                    .collect()
            }
        }
        None => Vec::new(),
    };
    let mut events: Vec<&(StreamPosition, Value)> = gap_events.iter().collect();
    events.extend(known.events.iter().filter(|(p, _)| *p > from));
    // Each unread event with its thread root (with thread counts); an
    // unthreaded one only after the main timeline's start.
    let batch: HashMap<&str, &Value> = if by_thread {
        events
            .iter()
            .filter_map(|(_, e)| Some((e["event_id"].as_str()?, e)))
            .collect()
    } else {
        HashMap::new()
    };
    let mut unread: Vec<(StreamPosition, &Value, Option<OwnedEventId>)> = Vec::new();
    for (p, e) in events.iter().copied() {
        if e["sender"].as_str() == Some(ctx.user.as_str())
            || e["unsigned"].get("redacted_because").is_some()
        {
            continue;
        }
        let root = match by_thread {
            true => thread_of(ctx, room, e, &batch).await?,
            false => None,
        };
        if root.is_some() || *p > start {
            unread.push((*p, e, root));
        }
    }
    if !unread.is_empty() {
        let push_ctx = room_ctx(ctx, room, member_event).await?;
        for (position, event, root) in unread {
            let raw: Raw<Value> = Raw::from_json(
                serde_json::value::to_raw_value(event).expect("JSON values serialize"),
            );
            let actions = ctx.push_rules.set.get_actions(&raw, &push_ctx).await;
            let notify = actions.iter().any(|a| a.should_notify());
            let highlight = actions.iter().any(|a| a.is_highlight());
            match root {
                Some(root) => memo.push_threaded(Threaded {
                    position,
                    root,
                    notify,
                    highlight,
                }),
                None => memo.push(notify, highlight),
            }
        }
    }
    memo.through = upto;
    let counts = memo.counts(&thread_read);
    ctx.memos.put(&ctx.user, room, memo);
    Ok(counts)
}

/// The push-rule context of `room` for `ctx.user` (current state).
async fn room_ctx(
    ctx: &Ctx,
    room: &RoomId,
    member_event: &OwnedEventId,
) -> Result<PushConditionRoomCtx, Error> {
    let db = ctx.rooms.db();
    let joined = db
        .members(room)
        .await?
        .iter()
        .filter(|(_, m)| m.membership == MembershipState::Join)
        .count();
    let display_name = db
        .event(member_event)
        .await?
        .and_then(|e| {
            e.pdu.content_value()["displayname"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let push_ctx = PushConditionRoomCtx::new(
        room.to_owned(),
        UInt::new_saturating(joined as u64),
        ctx.user.to_owned(),
        display_name,
    );
    let Some(record) = db.room(room).await? else {
        return Ok(push_ctx);
    };
    let content = db
        .state_event(room, "m.room.power_levels", "")
        .await?
        .map(|e| e.pdu.content_value())
        .unwrap_or(Value::Null);
    let users: BTreeMap<OwnedUserId, Int> = content
        .get("users")
        .and_then(|u| serde_json::from_value(u.clone()).ok())
        .unwrap_or_default();
    let users_default = content
        .get("users_default")
        .and_then(|u| serde_json::from_value(u.clone()).ok())
        .unwrap_or_default();
    let notifications: NotificationPowerLevels = content
        .get("notifications")
        .and_then(|n| serde_json::from_value(n.clone()).ok())
        .unwrap_or_default();
    let rules = match record.version.rules() {
        Some(r) => RoomPowerLevelsRules::new(&r.authorization, [record.creator]),
        None => return Ok(push_ctx),
    };
    Ok(push_ctx.with_power_levels(PushConditionPowerLevelsCtx::new(
        users,
        users_default,
        notifications,
        rules,
    )))
}

/// The user's push rules: the stored set, else the server defaults.
///
/// Errors: a stored set that is not a rule set is `Corrupt`.
pub(super) fn parse_rules(user: &UserId, stored: Option<&[u8]>) -> Result<Rules, Error> {
    let mut hasher = DefaultHasher::new();
    stored.hash(&mut hasher);
    let set = match stored {
        None => Ruleset::server_default(user),
        Some(json) => serde_json::from_slice(json).map_err(|e| {
            Error::Storage(crate::db::accounts::Error::Corrupt {
                subspace: "push_rules",
                source: Box::new(e),
            })
        })?,
    };
    Ok(Rules {
        set,
        tag: hasher.finish(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memo_counts_the_newest_events_it_was_given() {
        let mut memo = Memo {
            rules: 0,
            start: StreamPosition::MIN,
            thread_start: None,
            through: StreamPosition::MIN,
            notify: 0,
            highlight: 0,
            threaded: VecDeque::new(),
        };
        for i in 0..MAX_COUNTED + 30 {
            // The oldest 30 notify and highlight; of the rest every other.
            memo.push(i < 30 || i % 2 == 0, i < 30);
        }
        let counts = memo.counts(&HashMap::new()).room;
        assert_eq!(counts.notification_count, Some(UInt::from(50u32)));
        assert_eq!(counts.highlight_count, Some(UInt::from(0u32)));
    }
}
