//! `GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]` and
//! `GET /rooms/{roomId}/threads`, over the relation index the send
//! transaction writes (`db::rooms` `relations/*`).
//!
//! Tokens are cuts in the room stream, as for `/messages`. Relating events
//! that were redacted lose their `m.relates_to` and are left out; events
//! the user may not see are left out.
//!
//! Also the bundled aggregations ([`Rooms::bundle_aggregations`]): the
//! `unsigned.m.relations` of events served in `/sync` timelines,
//! `/messages`, `/context`, `/event` and `/relations`: `m.replace` (the
//! latest valid edit, whole), `m.thread` (`latest_event`, `count`,
//! `current_user_participated`) and `m.reference` (`chunk` of event IDs).
//! Cost bound: one range read per non-state, unredacted event served (its
//! children, reactions left out: `db::rooms` `aggregated_children`), and
//! for an event with such children one batch read of at most
//! [`MAX_BUNDLED_READS`] of them per relation type, newest first.
//!
//! Source: <https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv1roomsroomidrelationseventid>,
//! <https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv1roomsroomidthreads>,
//! <https://spec.matrix.org/v1.16/client-server-api/#aggregations-of-child-events>.

use std::collections::HashMap;

use ruma::{OwnedEventId, RoomId};
use serde_json::{Map, Value, json};

use super::visibility::Oracle;
use super::{Page, RelationsOf, Result, Rooms, StreamPosition, Viewer};
use crate::db::rooms::{Direction, Relation, StoredPdu};

/// At most this many children of one relation type (edits, references,
/// thread replies) are read per event when bundling aggregations, newest
/// first. Past it: the latest edit is chosen among the newest this many
/// (by stream position), `m.reference` lists this many, and a thread's
/// `count` takes the replies not read as visible and unredacted (their
/// senders do not count towards `current_user_participated`).
pub const MAX_BUNDLED_READS: usize = 100;

/// A page of relating events or thread roots.
#[derive(Clone, Debug, Default)]
pub struct RelationsPage {
    /// The events, client format.
    pub chunk: Vec<Value>,
    /// The cut to continue from, if more may follow.
    pub next_batch: Option<StreamPosition>,
}

impl Rooms {
    /// The events relating to `of.parent` (see [`RelationsOf`]), from cut
    /// `page.from` towards cut `page.to`, newest first (`Backward`, the
    /// default) or oldest first, at most `page.limit`.
    ///
    /// Errors: [`super::Error::NotFound`] if the parent is not a visible
    /// event of the room.
    pub async fn relations<'a>(
        &self,
        viewer: impl Into<Viewer<'a>>,
        room_id: &RoomId,
        of: &RelationsOf<'_>,
        page: Page,
    ) -> Result<RelationsPage> {
        let viewer = viewer.into();
        self.event(viewer, room_id, of.parent).await?;
        let (after, before) = page.bounds();
        let dir = page.dir;
        let limit = page.limit.clamp(1, 1000);
        let children = self
            .db
            .relations(room_id, of, after, before, dir, limit + 1)
            .await?;
        let next_batch = (children.len() > limit).then(|| {
            let last = children[limit - 1].position;
            match dir {
                Direction::Backward => last,
                Direction::Forward => last.successor(),
            }
        });
        let ids: Vec<OwnedEventId> = children
            .into_iter()
            .take(limit)
            .map(|r| r.event_id)
            .collect();
        let oracle = Oracle::load(&self.db, room_id, viewer.user).await?;
        let mut chunk = Vec::with_capacity(ids.len());
        for stored in self.db.events(&ids).await? {
            if stored.redacted_by.is_none() && oracle.allows(viewer.user, &stored) {
                chunk.push(self.client_event(room_id, &stored, viewer).await?);
            }
        }
        self.bundle_aggregations(viewer, room_id, &mut chunk)
            .await?;
        Ok(RelationsPage { chunk, next_batch })
    }

    /// Adds the bundled aggregations (spec v1.16 "Aggregations of child
    /// events") to `events`, client-format events of `room_id` served to
    /// `viewer`, in `unsigned.m.relations` (kept beside any already
    /// there), counting only children the viewer may see that are not
    /// redacted:
    /// - `m.replace`: the latest edit (greatest `origin_server_ts`, then
    ///   event ID), whole, in the client format; an edit counts if it has
    ///   the original's sender and type, no state key and an object
    ///   `m.new_content` (spec "Validity of replacement events"); an edit
    ///   is never itself edited, so edits get none;
    /// - `m.thread`: `latest_event` (the newest reply, client format),
    ///   `count` (the replies), `current_user_participated` (the viewer
    ///   sent the root or a reply);
    /// - `m.reference`: `chunk`, the referencing events' IDs, oldest first.
    ///
    /// State events and redacted events get none (as in Synapse). Reads:
    /// see the module docs.
    pub async fn bundle_aggregations(
        &self,
        viewer: Viewer<'_>,
        room_id: &RoomId,
        events: &mut [Value],
    ) -> Result<()> {
        let mut oracle = None;
        for event in events.iter_mut() {
            if event.get("state_key").is_some()
                || event["unsigned"].get("redacted_because").is_some()
            {
                continue;
            }
            let Some(id) = event["event_id"]
                .as_str()
                .and_then(|id| OwnedEventId::try_from(id).ok())
            else {
                continue;
            };
            let children = self.db.aggregated_children(room_id, &id).await?;
            if children.is_empty() {
                continue;
            }
            if oracle.is_none() {
                oracle = Some(Oracle::load(&self.db, room_id, viewer.user).await?);
            }
            let Some(oracle) = &oracle else {
                continue;
            };
            let relations = self
                .aggregate(viewer, room_id, event, children, oracle)
                .await?;
            if relations.is_empty() {
                continue;
            }
            if !event["unsigned"].is_object() {
                event["unsigned"] = json!({});
            }
            let bundled = &mut event["unsigned"]["m.relations"];
            if !bundled.is_object() {
                *bundled = json!({});
            }
            if let Some(bundled) = bundled.as_object_mut() {
                bundled.extend(relations);
            }
        }
        Ok(())
    }

    /// The bundled aggregations of `event` from its `children` (newest
    /// first), see [`Rooms::bundle_aggregations`]. One batch read of the
    /// children it needs.
    async fn aggregate(
        &self,
        viewer: Viewer<'_>,
        room_id: &RoomId,
        event: &Value,
        children: Vec<Relation>,
        oracle: &Oracle,
    ) -> Result<Map<String, Value>> {
        let kind = event["type"].as_str().unwrap_or_default();
        let sender = event["sender"].as_str().unwrap_or_default();
        let is_edit = event["content"]["m.relates_to"]["rel_type"].as_str() == Some("m.replace");
        let (mut edits, mut references, mut replies) = (Vec::new(), Vec::new(), Vec::new());
        let mut replies_total = 0usize;
        for child in children {
            match child.rel_type.as_str() {
                "m.replace"
                    if !is_edit && child.event_type == kind && edits.len() < MAX_BUNDLED_READS =>
                {
                    edits.push(child.event_id);
                }
                "m.reference" if references.len() < MAX_BUNDLED_READS => {
                    references.push(child.event_id);
                }
                "m.thread" => {
                    replies_total += 1;
                    if replies.len() < MAX_BUNDLED_READS {
                        replies.push(child.event_id);
                    }
                }
                _ => {}
            }
        }
        let wanted: Vec<OwnedEventId> = edits
            .iter()
            .chain(&references)
            .chain(&replies)
            .cloned()
            .collect();
        let mut read: HashMap<OwnedEventId, StoredPdu> = HashMap::new();
        for stored in self.db.events(&wanted).await? {
            if stored.redacted_by.is_none()
                && stored.room_id == room_id
                && oracle.allows(viewer.user, &stored)
            {
                read.insert(stored.pdu.event_id().clone(), stored);
            }
        }
        let mut out = Map::new();
        let latest_edit = edits
            .iter()
            .filter_map(|id| read.get(id))
            .filter(|e| {
                e.pdu.sender().as_str() == sender
                    && e.pdu.state_key().is_none()
                    && e.pdu.content_value()["m.new_content"].is_object()
            })
            .max_by(|a, b| {
                (a.pdu.origin_server_ts(), a.pdu.event_id())
                    .cmp(&(b.pdu.origin_server_ts(), b.pdu.event_id()))
            });
        if let Some(edit) = latest_edit {
            out.insert(
                "m.replace".into(),
                self.client_event(room_id, edit, viewer).await?,
            );
        }
        let shown: Vec<&StoredPdu> = replies.iter().filter_map(|id| read.get(id)).collect();
        if let Some(latest) = shown.first() {
            let hidden = replies.len() - shown.len();
            let participated = sender == viewer.user.as_str()
                || shown.iter().any(|r| r.pdu.sender() == viewer.user);
            out.insert(
                "m.thread".into(),
                json!({
                    "latest_event": self.client_event(room_id, latest, viewer).await?,
                    "count": replies_total - hidden,
                    "current_user_participated": participated,
                }),
            );
        }
        let chunk: Vec<Value> = references
            .iter()
            .rev()
            .filter(|id| read.contains_key(*id))
            .map(|id| json!({ "event_id": id }))
            .collect();
        if !chunk.is_empty() {
            out.insert("m.reference".into(), json!({ "chunk": chunk }));
        }
        Ok(out)
    }

    /// The thread roots of a room the user may see, newest root first,
    /// before cut `from`, at most `limit`; with `participated`, only
    /// threads the user started or replied in. Each root carries
    /// `unsigned.m.relations.m.thread` (`latest_event`, `count`,
    /// `current_user_participated`).
    pub async fn threads<'a>(
        &self,
        viewer: impl Into<Viewer<'a>>,
        room_id: &RoomId,
        from: Option<StreamPosition>,
        limit: usize,
        participated: bool,
    ) -> Result<RelationsPage> {
        let viewer = viewer.into();
        let oracle = Oracle::load(&self.db, room_id, viewer.user).await?;
        if self.db.room(room_id).await?.is_none() {
            return Err(super::Error::NotFound(format!("room {room_id} not found")));
        }
        if oracle.current_membership().is_none() && !oracle.world_readable_now() {
            return Err(super::Error::Forbidden(format!(
                "{} is not in room {room_id}",
                viewer.user
            )));
        }
        let roots = self.db.thread_roots(room_id).await?;
        let mut roots = self.db.events(&roots).await?;
        roots.retain(|r| from.is_none_or(|c| r.position < c));
        roots.sort_by_key(|r| std::cmp::Reverse(r.position));
        let limit = limit.clamp(1, 1000);
        let mut page = RelationsPage::default();
        let mut last_included = None;
        for root in roots {
            if page.chunk.len() == limit {
                // Roots before the last one returned come next.
                page.next_batch = last_included;
                break;
            }
            if !oracle.allows(viewer.user, &root) {
                continue;
            }
            let replies = self
                .db
                .relations(
                    room_id,
                    &RelationsOf {
                        parent: root.pdu.event_id(),
                        rel_type: Some("m.thread"),
                        event_type: None,
                    },
                    None,
                    None,
                    Direction::Backward,
                    usize::MAX,
                )
                .await?;
            let reply_ids: Vec<OwnedEventId> = replies.into_iter().map(|r| r.event_id).collect();
            let replies: Vec<_> = self
                .db
                .events(&reply_ids)
                .await?
                .into_iter()
                .filter(|r| r.redacted_by.is_none() && oracle.allows(viewer.user, r))
                .collect();
            let took_part = root.pdu.sender() == viewer.user
                || replies.iter().any(|r| r.pdu.sender() == viewer.user);
            if participated && !took_part {
                continue;
            }
            let mut event = self.client_event(room_id, &root, viewer).await?;
            if let Some(latest) = replies.first() {
                event["unsigned"]["m.relations"]["m.thread"] = json!({
                    "latest_event": self.client_event(room_id, latest, viewer).await?,
                    "count": replies.len(),
                    "current_user_participated": took_part,
                });
            }
            page.chunk.push(event);
            last_included = Some(root.position);
        }
        Ok(page)
    }
}
