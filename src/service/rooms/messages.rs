//! `/messages`, `/context` and `/members`: timeline pages between tokens,
//! filtered, with lazy-loaded members, and membership lists at a token.
//!
//! Tokens are *cuts* in the room stream: a [`StreamPosition`] `c` splits
//! the events into those before it (`position < c`) and those at or after
//! it. Paginating backwards from `c` returns events `< c`, newest first,
//! and the `end` cut is the position of the oldest event read; forwards
//! returns events `>= c`, oldest first, and `end` is the successor of the
//! newest event read. `to` bounds the other side the same way. So a client
//! can turn around at any token and never sees an event twice or misses
//! one. The API layer turns token strings into cuts (it also accepts
//! sync's `prev_batch`).
//!
//! Source: <https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3roomsroomidmessages>.

use std::collections::BTreeSet;

use ruma::events::room::member::MembershipState;
use ruma::{OwnedEventId, OwnedUserId, RoomId};
use serde_json::Value;

use super::visibility::Oracle;
use super::{Error, Page, Result, Rooms, StreamPosition, Viewer};
use crate::db::rooms::Direction;

/// At most this many timeline reads per `/messages` call, so a filter that
/// matches nothing cannot scan a whole room in one request (the client
/// continues from `end`).
const MAX_BATCHES: usize = 20;

/// The part of a `RoomEventFilter` the server applies to `/messages` and
/// `/context`. Type patterns may end in `*` (prefix match).
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Only these event types (all if `None`).
    pub types: Option<Vec<String>>,
    /// Never these event types.
    pub not_types: Vec<String>,
    /// Only events from these senders (all if `None`).
    pub senders: Option<Vec<OwnedUserId>>,
    /// Never events from these senders.
    pub not_senders: Vec<OwnedUserId>,
    /// Only events whose content has (`true`) or lacks (`false`) a `url`.
    pub contains_url: Option<bool>,
    /// Return in `state` only the member events of the senders of the
    /// returned events.
    pub lazy_load_members: bool,
}

fn type_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

impl EventFilter {
    /// Whether a client-format event passes the filter.
    pub fn matches(&self, event: &Value) -> bool {
        let kind = event["type"].as_str().unwrap_or_default();
        let sender = event["sender"].as_str().unwrap_or_default();
        if let Some(types) = &self.types
            && !types.iter().any(|t| type_matches(t, kind))
        {
            return false;
        }
        if self.not_types.iter().any(|t| type_matches(t, kind)) {
            return false;
        }
        if let Some(senders) = &self.senders
            && !senders.iter().any(|s| s == sender)
        {
            return false;
        }
        if self.not_senders.iter().any(|s| s == sender) {
            return false;
        }
        if let Some(want) = self.contains_url
            && event["content"].get("url").is_some() != want
        {
            return false;
        }
        true
    }
}

/// A `/messages` page.
#[derive(Clone, Debug)]
pub struct Messages {
    /// The events, in the requested direction, client format.
    pub chunk: Vec<Value>,
    /// The cut the page starts at (the `from` cut, or the room's end/start).
    pub start: StreamPosition,
    /// The cut to continue from, `None` if nothing more is readable.
    pub end: Option<StreamPosition>,
    /// Member events of the chunk's senders (with `lazy_load_members`).
    pub state: Vec<Value>,
}

/// A `/context` answer.
#[derive(Clone, Debug)]
pub struct Context {
    /// The event itself.
    pub event: Value,
    /// Events before it, newest first.
    pub events_before: Vec<Value>,
    /// Events after it, oldest first.
    pub events_after: Vec<Value>,
    /// Cut before `events_before` (continue backwards from here).
    pub start: StreamPosition,
    /// Cut after `events_after` (continue forwards from here).
    pub end: StreamPosition,
    /// The room state at the event (only the senders' member events with
    /// lazy loading).
    pub state: Vec<Value>,
}

/// `/members` parameters.
#[derive(Clone, Debug, Default)]
pub struct MembersQuery {
    /// The cut to read the memberships at (current if `None`).
    pub at: Option<StreamPosition>,
    /// Only this membership.
    pub membership: Option<MembershipState>,
    /// Not this membership.
    pub not_membership: Option<MembershipState>,
}

impl Rooms {
    /// `GET /rooms/{roomId}/messages`: up to `page.limit` visible events
    /// passing `filter` from cut `page.from` (the live end backwards / the
    /// room start forwards if `None`) towards cut `page.to`.
    ///
    /// Errors: [`Error::NotFound`] for an unknown room, [`Error::Forbidden`]
    /// if the user never had a membership and the room is not
    /// world-readable.
    pub async fn messages<'a>(
        &self,
        viewer: impl Into<Viewer<'a>>,
        room_id: &RoomId,
        page: Page,
        filter: &EventFilter,
    ) -> Result<Messages> {
        let viewer = viewer.into();
        let Page {
            from, dir, limit, ..
        } = page;
        let (mut after, mut before) = page.bounds();
        let start = match (from, dir) {
            (Some(c), _) => c,
            (None, Direction::Forward) => StreamPosition::MIN,
            (None, Direction::Backward) => self
                .db
                .latest_position(room_id)
                .await?
                .map_or(StreamPosition::MIN, StreamPosition::successor),
        };
        let cut_after = |p: StreamPosition| match dir {
            Direction::Backward => p,
            Direction::Forward => p.successor(),
        };
        let mut chunk = Vec::new();
        let mut end = None;
        let batch = limit.clamp(1, 1000);
        for round in 0..MAX_BATCHES {
            let page = self
                .timeline(viewer, room_id, after, before, dir, batch)
                .await?;
            let mut full = false;
            for (position, event) in page.events {
                if filter.matches(&event) {
                    chunk.push(event);
                    if chunk.len() == limit {
                        end = Some(cut_after(position));
                        full = true;
                        break;
                    }
                }
            }
            if full || limit == 0 {
                break;
            }
            let Some(next) = page.next else {
                break; // the room's history is exhausted
            };
            match dir {
                Direction::Backward => before = Some(next),
                Direction::Forward => after = Some(next),
            }
            if round + 1 == MAX_BATCHES {
                end = Some(cut_after(next));
            }
        }
        self.bundle_aggregations(viewer, room_id, &mut chunk)
            .await?;
        let state = if filter.lazy_load_members {
            self.member_events_of(viewer, room_id, &chunk).await?
        } else {
            Vec::new()
        };
        Ok(Messages {
            chunk,
            start,
            end,
            state,
        })
    }

    /// The current (visible) member events of the senders of `events`.
    async fn member_events_of(
        &self,
        viewer: Viewer<'_>,
        room_id: &RoomId,
        events: &[Value],
    ) -> Result<Vec<Value>> {
        let senders: BTreeSet<&str> = events.iter().filter_map(|e| e["sender"].as_str()).collect();
        if senders.is_empty() {
            return Ok(Vec::new());
        }
        let state = self.visible_state_ids(viewer.user, room_id).await?;
        let ids: Vec<OwnedEventId> = senders
            .into_iter()
            .filter_map(|s| state.get(&("m.room.member".to_owned(), s.to_owned())))
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for stored in self.db.events(&ids).await? {
            out.push(self.client_event(room_id, &stored, viewer).await?);
        }
        Ok(out)
    }

    /// `GET /rooms/{roomId}/context/{eventId}`: the event, up to `limit`
    /// visible events around it (half before, half after) passing
    /// `filter`, and the state at the event.
    ///
    /// Errors: [`Error::NotFound`] if the event is not in the room or not
    /// visible to the user.
    pub async fn context<'a>(
        &self,
        viewer: impl Into<Viewer<'a>>,
        room_id: &RoomId,
        event_id: &OwnedEventId,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<Context> {
        let viewer = viewer.into();
        let event = self.event(viewer, room_id, event_id).await?;
        let position = self
            .db
            .position(event_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("event {event_id} not found")))?;
        let before_limit = limit / 2;
        let after_limit = limit - before_limit;
        let no_lazy = EventFilter {
            lazy_load_members: false,
            ..filter.clone()
        };
        let before = self
            .messages(
                viewer,
                room_id,
                Page {
                    from: Some(position),
                    to: None,
                    dir: Direction::Backward,
                    limit: before_limit,
                },
                &no_lazy,
            )
            .await?;
        let after = self
            .messages(
                viewer,
                room_id,
                Page {
                    from: Some(position.successor()),
                    to: None,
                    dir: Direction::Forward,
                    limit: after_limit,
                },
                &no_lazy,
            )
            .await?;
        let start = before.end.unwrap_or(StreamPosition::MIN);
        // Without a further page, every later event was read: the cut
        // after the room's latest event is where to continue.
        let end = match after.end {
            Some(e) => e,
            None => self
                .db
                .latest_position(room_id)
                .await?
                .map_or(position, |l| l.max(position))
                .successor(),
        };
        let state = if filter.lazy_load_members {
            let mut all = before.chunk.clone();
            all.push(event.clone());
            all.extend(after.chunk.iter().cloned());
            self.member_events_of(viewer, room_id, &all).await?
        } else {
            let ids: Vec<OwnedEventId> = self
                .db
                .state_at(room_id, position)
                .await?
                .into_values()
                .collect();
            let mut out = Vec::with_capacity(ids.len());
            for stored in self.db.events(&ids).await? {
                out.push(self.client_event(room_id, &stored, viewer).await?);
            }
            out
        };
        Ok(Context {
            event,
            events_before: before.chunk,
            events_after: after.chunk,
            start,
            end,
            state,
        })
    }

    /// `GET /rooms/{roomId}/members`: the member events of the room at cut
    /// `at` (or now), filtered by membership. A user who left sees the
    /// memberships at their leave at the latest.
    ///
    /// Errors: [`Error::Forbidden`] if the user may not see the room's
    /// state, [`Error::NotFound`] for an unknown room.
    pub async fn member_events<'a>(
        &self,
        viewer: impl Into<Viewer<'a>>,
        room_id: &RoomId,
        query: &MembersQuery,
    ) -> Result<Vec<Value>> {
        let viewer = viewer.into();
        let current = self.visible_state_ids(viewer.user, room_id).await?;
        let state = match query.at {
            None => current,
            Some(cut) => {
                let oracle = Oracle::load(&self.db, room_id, viewer.user).await?;
                let mut at = cut.predecessor();
                if oracle.current_membership() != Some(&MembershipState::Join)
                    && !oracle.world_readable_now()
                {
                    at = at.min(oracle.last_change().unwrap_or(StreamPosition::MIN));
                }
                self.db.state_at(room_id, at).await?
            }
        };
        let ids: Vec<OwnedEventId> = state
            .into_iter()
            .filter(|((kind, _), _)| kind == "m.room.member")
            .map(|(_, id)| id)
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for stored in self.db.events(&ids).await? {
            let membership = MembershipState::from(
                stored.pdu.content_value()["membership"]
                    .as_str()
                    .unwrap_or_default(),
            );
            if query.membership.as_ref().is_some_and(|m| *m != membership)
                || query.not_membership.as_ref() == Some(&membership)
            {
                continue;
            }
            out.push(self.client_event(room_id, &stored, viewer).await?);
        }
        Ok(out)
    }

    /// `GET /rooms/{roomId}/joined_members`: the joined users with their
    /// member event's `displayname` and `avatar_url`.
    ///
    /// Errors: as [`Rooms::member_events`].
    pub async fn joined_members<'a>(
        &self,
        viewer: impl Into<Viewer<'a>>,
        room_id: &RoomId,
    ) -> Result<Vec<(OwnedUserId, Option<String>, Option<String>)>> {
        let viewer = viewer.into();
        let query = MembersQuery {
            membership: Some(MembershipState::Join),
            ..Default::default()
        };
        let events = self.member_events(viewer, room_id, &query).await?;
        Ok(events
            .into_iter()
            .filter_map(|e| {
                let user = OwnedUserId::try_from(e["state_key"].as_str()?).ok()?;
                let name = e["content"]["displayname"].as_str().map(str::to_owned);
                let avatar = e["content"]["avatar_url"].as_str().map(str::to_owned);
                Some((user, name, avatar))
            })
            .collect())
    }
}
