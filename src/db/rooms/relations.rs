//! The relation index: `content.m.relates_to` of every event, written in the
//! event's send transaction (`relations/child`), and the thread roots of a
//! room (`relations/thread`, set by the first `m.thread` child).
//!
//! Reads: the children of one parent are one range read of
//! `(room, parent)` (narrowed to a relation type, or a relation type and
//! event type, when given), sorted by stream position in memory; cost
//! O(children of the parent). Thread roots are one range read of the
//! room's roots.
//!
//! Source: <https://spec.matrix.org/v1.16/client-server-api/#forming-relationships-between-events>.

use ruma::{OwnedEventId, RoomId};

use super::{
    Direction, Layout, Result, RoomsDb, StreamPosition, decode_event_id, keys, trailing_position,
    unpack,
};
use crate::events::Pdu;
use crate::kv::{MutationType, RangeOption, Transaction};

use foundationdb_tuple::Versionstamp;

/// One event relating to a parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    /// The relating (child) event.
    pub event_id: OwnedEventId,
    /// Its stream position.
    pub position: StreamPosition,
    /// `m.relates_to.rel_type` (`m.annotation`, `m.thread`, `m.replace`, ...).
    pub rel_type: String,
    /// The child's event type.
    pub event_type: String,
}

/// `(rel_type, parent)` of an event's `m.relates_to`, if it has one with both.
pub(super) fn relates_to(pdu: &Pdu) -> Option<(String, String)> {
    let content = pdu.content_value();
    let rel = content.get("m.relates_to")?;
    let rel_type = rel.get("rel_type")?.as_str()?;
    let parent = rel.get("event_id")?.as_str()?;
    Some((rel_type.to_owned(), parent.to_owned()))
}

impl Layout {
    /// Indexes `pdu`'s relation, if it has one (blind writes).
    pub(super) fn index_relation(&self, tx: &Transaction, room_id: &RoomId, pdu: &Pdu, order: u16) {
        let Some((rel_type, parent)) = relates_to(pdu) else {
            return;
        };
        let room = room_id.as_str();
        let kind = pdu.kind().to_string();
        let stamp = Versionstamp::incomplete(order);
        tx.atomic_op(
            &self.relations.versionstamped_key(
                &keys::RELATION,
                &(
                    room,
                    parent.as_str(),
                    rel_type.as_str(),
                    kind.as_str(),
                    &stamp,
                ),
            ),
            pdu.event_id().as_bytes(),
            MutationType::SetVersionstampedKey,
        );
        if rel_type == "m.thread" {
            tx.set(
                &self.relations.key(&keys::THREAD, &(room, parent.as_str())),
                b"",
            );
        }
    }
}

/// Which relations of an event to read: those of `parent`, optionally only
/// of `rel_type` (and then optionally only of `event_type`).
#[derive(Clone, Copy, Debug)]
pub struct RelationsOf<'a> {
    /// The event related to.
    pub parent: &'a OwnedEventId,
    /// Only this relation type (`m.thread`, `m.annotation`, ...).
    pub rel_type: Option<&'a str>,
    /// With `rel_type`: only relating events of this type.
    pub event_type: Option<&'a str>,
}

impl RoomsDb {
    /// The events relating to `of.parent` in `room_id` (see
    /// [`RelationsOf`]), with `after < position < before`, oldest first or
    /// newest first, at most `limit`. One range read of the parent's
    /// children.
    pub async fn relations(
        &self,
        room_id: &RoomId,
        of: &RelationsOf<'_>,
        after: Option<StreamPosition>,
        before: Option<StreamPosition>,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<Relation>> {
        let RelationsOf {
            parent,
            rel_type,
            event_type,
        } = *of;
        let space = &self.layout.relations;
        let (room, parent_s) = (room_id.as_str(), parent.as_str());
        let (begin, end) = match (rel_type, event_type) {
            (Some(r), Some(t)) => space.range(&keys::RELATION, &(room, parent_s, r, t)),
            (Some(r), None) => space.range(&keys::RELATION, &(room, parent_s, r)),
            _ => space.range(&keys::RELATION, &(room, parent_s)),
        };
        let mut out = self.children(begin, end).await?;
        out.retain(|r| {
            !(after.is_some_and(|a| r.position <= a) || before.is_some_and(|b| r.position >= b))
        });
        if dir == Direction::Backward {
            out.reverse();
        }
        out.truncate(limit);
        Ok(out)
    }

    /// The children of `parent` in `room_id` that bundled aggregations
    /// read, newest first: those whose relation type sorts at or after
    /// `m.reference` (`m.reference`, `m.replace`, `m.thread`, and custom
    /// types that sort after them), so `m.annotation` (reactions, usually
    /// most of an event's children) is left out. One range read.
    pub async fn aggregated_children(
        &self,
        room_id: &RoomId,
        parent: &OwnedEventId,
    ) -> Result<Vec<Relation>> {
        let space = &self.layout.relations;
        let (room, parent) = (room_id.as_str(), parent.as_str());
        let (begin, _) = space.range(&keys::RELATION, &(room, parent, "m.reference"));
        let (_, end) = space.range(&keys::RELATION, &(room, parent));
        let mut out = self.children(begin, end).await?;
        out.reverse();
        Ok(out)
    }

    /// The relations stored in `begin..end` of `relations/child`, oldest
    /// first. One range read.
    async fn children(&self, begin: Vec<u8>, end: Vec<u8>) -> Result<Vec<Relation>> {
        let space = &self.layout.relations;
        let kvs = self.db.read_range(RangeOption::new(begin, end)).await?;
        let mut out = Vec::with_capacity(kvs.len());
        for kv in &kvs {
            let (_, _, _, rel_type, event_type, _): (
                i64,
                String,
                String,
                String,
                String,
                Versionstamp,
            ) = unpack("child", space, &kv.key)?;
            out.push(Relation {
                event_id: decode_event_id("child", &kv.value)?,
                position: trailing_position("child", &kv.key)?,
                rel_type,
                event_type,
            });
        }
        out.sort_by_key(|r| r.position);
        Ok(out)
    }

    /// The thread roots of a room (unordered). One range read.
    pub async fn thread_roots(&self, room_id: &RoomId) -> Result<Vec<OwnedEventId>> {
        let space = &self.layout.relations;
        let (begin, end) = space.range(&keys::THREAD, &(room_id.as_str(),));
        let kvs = self.db.read_range(RangeOption::new(begin, end)).await?;
        kvs.iter()
            .map(|kv| {
                let (_, _, root): (i64, String, String) = unpack("thread", space, &kv.key)?;
                OwnedEventId::try_from(root).map_err(|e| super::Error::corrupt("thread", e))
            })
            .collect()
    }
}
