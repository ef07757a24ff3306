//! `GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]` and
//! `GET /rooms/{roomId}/threads`, over the relation index the send
//! transaction writes (`db::rooms` `relations/*`).
//!
//! Tokens are cuts in the room stream, as for `/messages`. Relating events
//! that were redacted lose their `m.relates_to` and are left out; events
//! the user may not see are left out.
//!
//! Source: <https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv1roomsroomidrelationseventid>,
//! <https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv1roomsroomidthreads>.

use ruma::{OwnedEventId, RoomId};
use serde_json::{Value, json};

use super::visibility::Oracle;
use super::{Page, RelationsOf, Result, Rooms, StreamPosition, Viewer};
use crate::db::rooms::Direction;

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
        Ok(RelationsPage { chunk, next_batch })
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
