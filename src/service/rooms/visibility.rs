//! Reads with server-side visibility: who may see which events and state.
//!
//! An event at stream position `p` is visible to user `u` if
//! (<https://spec.matrix.org/v1.16/client-server-api/#server-behaviour-5>):
//! - `m.room.history_visibility` at `p` is `world_readable`; or
//! - `u`'s membership at `p` is `join`; or
//! - it is `invited` and `u`'s membership at `p` is `invite` (or `join`); or
//! - it is `shared` and `u` joined the room at `p` or later; or
//! - it is `u`'s own membership event.
//!
//! "At `p`" means after every event up to and including `p`. The histories
//! of the two state keys involved are read once per request
//! ([`Oracle`], two range reads of `state_log/history` plus the few events
//! they name), then every event of a page is judged in memory.

use std::collections::BTreeMap;

use ruma::events::room::history_visibility::HistoryVisibility;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedEventId, RoomId, UserId};

use super::{Error, Result, Rooms, StreamPosition, TimelinePage, Viewer};
use crate::db::rooms::{Direction, RoomsDb, StoredPdu};
use crate::events;

/// What decides visibility in one room for one user.
pub(super) struct Oracle {
    visibility: Vec<(StreamPosition, HistoryVisibility)>,
    membership: Vec<(StreamPosition, MembershipState)>,
}

/// The value in force at `p`, from a history sorted by position.
fn at<T>(history: &[(StreamPosition, T)], p: StreamPosition) -> Option<&T> {
    history
        .iter()
        .take_while(|(pos, _)| *pos <= p)
        .last()
        .map(|(_, v)| v)
}

impl Oracle {
    pub(super) async fn load(db: &RoomsDb, room_id: &RoomId, user: &UserId) -> Result<Oracle> {
        let field = |db: &RoomsDb, kind: &'static str, key: String, field: &'static str| {
            let db = db.clone();
            let room_id = room_id.to_owned();
            async move {
                let history = db.state_history(&room_id, kind, &key).await?;
                let ids: Vec<OwnedEventId> = history.iter().map(|(_, id)| id.clone()).collect();
                let events = db.events(&ids).await?;
                Ok::<_, Error>(
                    history
                        .iter()
                        .zip(events)
                        .map(|((pos, _), e)| {
                            let value = e.pdu.content_value()[field]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned();
                            (*pos, value)
                        })
                        .collect::<Vec<(StreamPosition, String)>>(),
                )
            }
        };
        let (visibility, membership) = futures::try_join!(
            field(
                db,
                "m.room.history_visibility",
                String::new(),
                "history_visibility"
            ),
            field(db, "m.room.member", user.to_string(), "membership"),
        )?;
        // A missing or unknown value is kept as ruma's custom variant, which
        // no rule below grants anything.
        Ok(Oracle {
            visibility: (visibility.into_iter())
                .map(|(pos, v)| (pos, HistoryVisibility::from(v.as_str())))
                .collect(),
            membership: (membership.into_iter())
                .map(|(pos, m)| (pos, MembershipState::from(m.as_str())))
                .collect(),
        })
    }

    /// Whether `user` may see `event`, at position `p`.
    pub(super) fn allows(&self, user: &UserId, event: &StoredPdu) -> bool {
        let p = event.position;
        if event.pdu.kind().to_string() == "m.room.member"
            && event.pdu.state_key() == Some(user.as_str())
        {
            return true;
        }
        let visibility = at(&self.visibility, p).unwrap_or(&HistoryVisibility::Shared);
        let membership = at(&self.membership, p);
        match (visibility, membership) {
            (HistoryVisibility::WorldReadable, _) | (_, Some(MembershipState::Join)) => true,
            (HistoryVisibility::Invited, Some(MembershipState::Invite)) => true,
            (HistoryVisibility::Shared, _) => self
                .membership
                .iter()
                .any(|(pos, m)| *pos >= p && *m == MembershipState::Join),
            _ => false,
        }
    }

    /// The user's current membership.
    pub(super) fn current_membership(&self) -> Option<&MembershipState> {
        self.membership.last().map(|(_, m)| m)
    }

    /// Where the user's membership last changed.
    pub(super) fn last_change(&self) -> Option<StreamPosition> {
        self.membership.last().map(|(p, _)| *p)
    }

    pub(super) fn world_readable_now(&self) -> bool {
        self.visibility.last().map(|(_, v)| v) == Some(&HistoryVisibility::WorldReadable)
    }
}

/// The sender's power level and the level `action` needs (`redact`, `ban`,
/// ...; `default` if unset), from current state (the power levels event
/// redacted if a redaction applies, as the auth rules read it). Room creators of room
/// version 12 rank above every level.
pub(super) async fn power(
    db: &RoomsDb,
    room_id: &RoomId,
    user: &UserId,
    action: &str,
    default: i64,
) -> Result<(i64, i64)> {
    let room = db
        .room(room_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("room {room_id} not found")))?;
    let rules = events::rules(&room.version)?;
    if rules.authorization.explicitly_privilege_room_creators {
        let create = db.event(&room.create_event_id).await?;
        let content = create.map(|c| c.pdu.content_value()).unwrap_or_default();
        let additional = content["additional_creators"]
            .as_array()
            .is_some_and(|a| a.iter().any(|u| u.as_str() == Some(user.as_str())));
        if room.creator == user || additional {
            return Ok((i64::MAX, default));
        }
    }
    let Some(pl) = db.state_event(room_id, "m.room.power_levels", "").await? else {
        let level = if room.creator == user { 100 } else { 0 };
        return Ok((level, default));
    };
    // As the auth rules read it: a redacted power levels event keeps only
    // the levels its room version's redaction keeps.
    let pdu = match pl.redacted_by {
        Some(_) => events::redacted_pdu(&pl.pdu, &rules.redaction)?,
        None => pl.pdu,
    };
    let content = pdu.content_value();
    let level = content["users"][user.as_str()]
        .as_i64()
        .or_else(|| content["users_default"].as_i64())
        .unwrap_or(0);
    let needed = content[action].as_i64().unwrap_or(default);
    Ok((level, needed))
}

impl Rooms {
    /// An event in the client format, redacted if a redaction applies, with
    /// `unsigned`: `age` (from the service clock), `transaction_id` (only
    /// for the sending device), and for state events that replaced another
    /// `replaces_state`, `prev_content` and `prev_sender`.
    pub(super) async fn client_event(
        &self,
        room_id: &RoomId,
        stored: &StoredPdu,
        viewer: Viewer<'_>,
    ) -> Result<serde_json::Value> {
        let mut out = match &stored.redacted_by {
            None => stored.pdu.to_client_event(room_id),
            Some(redaction_id) => {
                let room = self
                    .db
                    .room(room_id)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("room {room_id} not found")))?;
                let because = self.db.event(redaction_id).await?.map(|r| r.pdu);
                let json = {
                    // The redaction algorithm records the redaction in
                    // `unsigned` in the federation format; clients get it
                    // in theirs, below.
                    let mut obj = events::redact(&stored.pdu, &room.version)?;
                    obj.remove("unsigned");
                    serde_json::to_string(&obj).map_err(|e| Error::BadJson(e.to_string()))?
                };
                let pdu = events::Pdu::from_stored(stored.pdu.event_id().clone(), json)?;
                let mut out = pdu.to_client_event(room_id);
                if let Some(because) = &because {
                    out["unsigned"] =
                        serde_json::json!({"redacted_because": because.to_client_event(room_id)});
                }
                out
            }
        };
        if !out["unsigned"].is_object() {
            out["unsigned"] = serde_json::json!({});
        }
        let unsigned = &mut out["unsigned"];
        let ts = u64::from(stored.pdu.origin_server_ts().0);
        unsigned["age"] = self.clock.now_ms().saturating_sub(ts).into();
        if let Some((device, txn_id)) = &stored.meta.txn
            && stored.pdu.sender() == viewer.user
            && viewer.device == Some(device.as_str())
        {
            unsigned["transaction_id"] = txn_id.as_str().into();
        }
        if let Some(replaced) = &stored.meta.replaces_state {
            unsigned["replaces_state"] = replaced.as_str().into();
            if let Some(prev) = self.db.event(replaced).await? {
                unsigned["prev_sender"] = prev.pdu.sender().as_str().into();
                if prev.redacted_by.is_none() {
                    unsigned["prev_content"] = prev.pdu.content_value();
                }
            }
        }
        Ok(out)
    }

    /// `GET /rooms/{roomId}/event/{eventId}`: the event, if `user` may see
    /// it, with its bundled aggregations (`Rooms::bundle_aggregations`).
    ///
    /// Errors: [`Error::NotFound`] if it does not exist in this room or is
    /// not visible to `user` (the two are not told apart).
    pub async fn event<'a>(
        &self,
        viewer: impl Into<Viewer<'a>>,
        room_id: &RoomId,
        event_id: &OwnedEventId,
    ) -> Result<serde_json::Value> {
        let viewer = viewer.into();
        let user = viewer.user;
        let not_found = || Error::NotFound(format!("event {event_id} not found"));
        let stored = self
            .db
            .event(event_id)
            .await?
            .filter(|e| e.room_id == room_id)
            .ok_or_else(not_found)?;
        let oracle = Oracle::load(&self.db, room_id, user).await?;
        if !oracle.allows(user, &stored) {
            return Err(not_found());
        }
        let mut event = [self.client_event(room_id, &stored, viewer).await?];
        self.bundle_aggregations(viewer, room_id, &mut event)
            .await?;
        let [event] = event;
        Ok(event)
    }

    /// The state `user` may see: the current state while joined (or if the
    /// room is world-readable), the state when they left for a user who
    /// left or was banned.
    pub(super) async fn visible_state_ids(
        &self,
        user: &UserId,
        room_id: &RoomId,
    ) -> Result<BTreeMap<(String, String), OwnedEventId>> {
        if self.db.room(room_id).await?.is_none() {
            return Err(Error::NotFound(format!("room {room_id} not found")));
        }
        let oracle = Oracle::load(&self.db, room_id, user).await?;
        match oracle.current_membership() {
            Some(MembershipState::Join) => Ok(self.db.current_state_ids(room_id).await?),
            _ if oracle.world_readable_now() => Ok(self.db.current_state_ids(room_id).await?),
            Some(MembershipState::Leave | MembershipState::Ban) => {
                let at = oracle.last_change().expect("a membership has a position");
                Ok(self.db.state_at(room_id, at).await?)
            }
            _ => Err(Error::Forbidden(format!("{user} is not in room {room_id}"))),
        }
    }

    /// `GET /rooms/{roomId}/state`: the state events `user` may see.
    pub async fn state<'a>(
        &self,
        viewer: impl Into<Viewer<'a>>,
        room_id: &RoomId,
    ) -> Result<Vec<serde_json::Value>> {
        let viewer = viewer.into();
        let ids: Vec<OwnedEventId> = self
            .visible_state_ids(viewer.user, room_id)
            .await?
            .into_values()
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for stored in self.db.events(&ids).await? {
            out.push(self.client_event(room_id, &stored, viewer).await?);
        }
        Ok(out)
    }

    /// `GET /rooms/{roomId}/state/{eventType}/{stateKey}`: the content of one
    /// state event `user` may see.
    ///
    /// Errors: [`Error::Forbidden`] if `user` may not see the room's state,
    /// [`Error::NotFound`] if there is no such state.
    pub async fn state_event(
        &self,
        user: &UserId,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
    ) -> Result<serde_json::Value> {
        let event = self
            .state_event_full(user, room_id, event_type, state_key)
            .await?;
        Ok(event["content"].clone())
    }

    /// The same state event in the client format
    /// (`?format=event`).
    ///
    /// Errors: as [`Rooms::state_event`].
    pub async fn state_event_full<'a>(
        &self,
        viewer: impl Into<Viewer<'a>>,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
    ) -> Result<serde_json::Value> {
        let viewer = viewer.into();
        let state = self.visible_state_ids(viewer.user, room_id).await?;
        let id = state
            .get(&(event_type.to_owned(), state_key.to_owned()))
            .ok_or_else(|| {
                Error::NotFound(format!("no {event_type} state with key {state_key:?}"))
            })?;
        let stored = self
            .db
            .event(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("event {id} not found")))?;
        self.client_event(room_id, &stored, viewer).await
    }

    /// The room timeline between two stream positions (both exclusive), in
    /// either direction, keeping only the events `user` may see: what
    /// `/messages` and sync read. At most `limit` events are read.
    ///
    /// Errors: [`Error::Forbidden`] if `user` never had a membership in the
    /// room and it is not world-readable.
    pub async fn timeline<'a>(
        &self,
        viewer: impl Into<Viewer<'a>>,
        room_id: &RoomId,
        after: Option<StreamPosition>,
        before: Option<StreamPosition>,
        dir: Direction,
        limit: usize,
    ) -> Result<TimelinePage> {
        let viewer = viewer.into();
        let user = viewer.user;
        if self.db.room(room_id).await?.is_none() {
            return Err(Error::NotFound(format!("room {room_id} not found")));
        }
        let oracle = Oracle::load(&self.db, room_id, user).await?;
        if oracle.current_membership().is_none() && !oracle.world_readable_now() {
            return Err(Error::Forbidden(format!("{user} is not in room {room_id}")));
        }
        let entries = self.db.timeline(room_id, after, before, dir, limit).await?;
        let next = (entries.len() == limit)
            .then(|| entries.last().map(|e| e.position))
            .flatten();
        let ids: Vec<OwnedEventId> = entries.into_iter().map(|e| e.event_id).collect();
        let mut events = Vec::with_capacity(ids.len());
        for stored in self.db.events(&ids).await? {
            if oracle.allows(user, &stored) {
                events.push((
                    stored.position,
                    self.client_event(room_id, &stored, viewer).await?,
                ));
            }
        }
        Ok(TimelinePage { events, next })
    }

    /// `GET /rooms/{roomId}/joined_members` and `/members` (current): every
    /// membership of the room, if `user` may see its state.
    pub async fn members(
        &self,
        user: &UserId,
        room_id: &RoomId,
    ) -> Result<Vec<(ruma::OwnedUserId, super::MemberRecord)>> {
        self.visible_state_ids(user, room_id).await?;
        Ok(self.db.members(room_id).await?)
    }
}
