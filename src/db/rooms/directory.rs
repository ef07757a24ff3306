//! Room aliases (`aliases/*`), the public room directory
//! (`public_rooms/listed`) and forgotten rooms (`memberships/forgotten`).
//!
//! An alias is written in both directions in one transaction; creating one
//! reads its `alias` key with a conflict, so two concurrent creations of
//! the same alias cannot both succeed. Deleting one also drops it from the
//! room's canonical alias event in the same transaction.

use ruma::{OwnedRoomAliasId, OwnedRoomId, RoomAliasId, RoomId, UserId};

use ruma::MilliSecondsSinceUnixEpoch;
use serde_json::Value;

use super::{
    AliasRecord, Append, Error, Layout, NewEvent, Result, RoomsDb, decode, decode_event_id, encode,
    keys, unpack,
};
use crate::events::Signer;
use crate::kv::{RangeOption, Transaction};

/// Who drops a deleted alias from the room's canonical alias event
/// ([`RoomsDb::delete_alias`]), and when.
#[derive(Clone, Copy)]
pub struct Unname<'a> {
    /// The server's signing key.
    pub signer: &'a Signer,
    /// The user deleting the alias: the new event's sender.
    pub sender: &'a UserId,
    /// The new event's `origin_server_ts`.
    pub now: MilliSecondsSinceUnixEpoch,
}

impl RoomsDb {
    /// Creates `alias` for `room_id`. Returns `false` (and writes nothing)
    /// if the alias exists already.
    ///
    /// Errors: the store's.
    pub async fn create_alias(
        &self,
        alias: &RoomAliasId,
        room_id: &RoomId,
        creator: &UserId,
    ) -> Result<bool> {
        // Safe to run twice: a retry after `commit_unknown_result` that
        // finds the alias as this call would have written it reports
        // success (the earlier attempt committed, or someone made the same
        // mapping; either way the caller's request holds).
        self.db
            .run(|tx, maybe_committed| async move {
                if let Some(record) = self.layout.alias_in(&tx, alias).await? {
                    return Ok::<_, Error>(
                        maybe_committed.0 && record.room_id == room_id && record.creator == creator,
                    );
                }
                self.layout.put_alias(&tx, alias, room_id, creator);
                Ok(true)
            })
            .await
    }

    /// If the room's current `m.room.canonical_alias` event names `alias`,
    /// appends one without it, sent by `unname.sender`; an unauthorized
    /// sender sends nothing (and the caller's transaction goes on).
    async fn unname_alias(
        &self,
        tx: &Transaction,
        room_id: &RoomId,
        alias: &RoomAliasId,
        unname: Unname<'_>,
    ) -> Result<()> {
        let key = self.layout.state_key(room_id, "m.room.canonical_alias", "");
        let Some(id) = tx.get(&key, false).await? else {
            return Ok(());
        };
        let id = decode_event_id("state", &id)?;
        let current = self
            .layout
            .load_pdu(tx, &id, &[])
            .await?
            .ok_or_else(|| Error::corrupt("state", format!("{id} is not stored")))?;
        let Some(content) = without_alias(current.content_value(), alias) else {
            return Ok(());
        };
        let room = self
            .room_in(tx, room_id)
            .await?
            .ok_or_else(|| Error::RoomNotFound(room_id.to_owned()))?;
        let event = NewEvent {
            event_type: "m.room.canonical_alias".into(),
            state_key: Some(String::new()),
            content,
        };
        let append = Append {
            room_id,
            sender: unname.sender,
            event: &event,
            txn: None,
            now: unname.now,
        };
        match self
            .layout
            .append(tx, unname.signer, &room, &append, 0, &[])
            .await
        {
            Ok(_) | Err(Error::NotAuthorized(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The record of `alias`, if it exists.
    pub async fn alias(&self, alias: &RoomAliasId) -> Result<Option<AliasRecord>> {
        let key = self.layout.aliases.key(&keys::ALIAS, &(alias.as_str(),));
        let value = self.db.read(&key).await?;
        value
            .map(|v| decode("alias", &v))
            .transpose()
            .map_err(Into::into)
    }

    /// Deletes `alias` (both directions) and, with `unname`, in the same
    /// transaction drops it from the room's `m.room.canonical_alias` event
    /// (`alias` and `alt_aliases`) by sending a new one as `unname.sender`,
    /// if the current one names it; if that event is not authorized (the
    /// deleter may lack the power) the alias is deleted all the same.
    /// Returns the record the alias had, or `None` if it did not exist.
    ///
    /// Errors: the store's.
    pub async fn delete_alias(
        &self,
        alias: &RoomAliasId,
        unname: Option<Unname<'_>>,
    ) -> Result<Option<AliasRecord>> {
        let space = &self.layout.aliases;
        let key = space.key(&keys::ALIAS, &(alias.as_str(),));
        let key = &key;
        // Safe to run twice: a retry after an attempt that committed finds
        // no alias and does nothing (the canonical alias event went with
        // the deletion, in the same transaction).
        self.db
            .run(|tx, _| async move {
                let Some(value) = tx.get(key, false).await? else {
                    return Ok(None);
                };
                let record: AliasRecord = decode("alias", &value)?;
                tx.clear(key);
                tx.clear(&space.key(
                    &keys::ROOM_ALIAS,
                    &(record.room_id.as_str(), alias.as_str()),
                ));
                if let Some(unname) = unname {
                    self.unname_alias(&tx, &record.room_id, alias, unname)
                        .await?;
                }
                Ok(Some(record))
            })
            .await
    }

    /// The local aliases of a room. One range read.
    pub async fn room_aliases(&self, room_id: &RoomId) -> Result<Vec<OwnedRoomAliasId>> {
        let space = &self.layout.aliases;
        let (begin, end) = space.range(&keys::ROOM_ALIAS, &(room_id.as_str(),));
        let kvs = self.db.read_range(RangeOption::new(begin, end)).await?;
        kvs.iter()
            .map(|kv| {
                let (_, _, alias): (i64, String, String) = unpack("room_alias", space, &kv.key)?;
                OwnedRoomAliasId::try_from(alias).map_err(|e| Error::corrupt("room_alias", e))
            })
            .collect()
    }

    /// Lists (`true`) or unlists a room in the public directory.
    pub async fn set_listed(&self, room_id: &RoomId, listed: bool) -> Result<()> {
        // Safe to run twice: a blind set or clear of one key.
        self.db
            .run(|tx, _| async move {
                self.layout.set_listed(&tx, room_id, listed);
                Ok::<_, Error>(())
            })
            .await
    }

    /// Whether a room is in the public directory.
    pub async fn is_listed(&self, room_id: &RoomId) -> Result<bool> {
        let key = self
            .layout
            .public_rooms
            .key(&keys::LISTED, &(room_id.as_str(),));
        let value = self.db.read(&key).await?;
        Ok(value.is_some())
    }

    /// Blocks (or unblocks) `room_id`: a blocked room cannot be joined.
    /// Safe to run twice: it sets a given value.
    pub async fn set_blocked(&self, room_id: &RoomId, blocked: bool) -> Result<()> {
        let key = self.layout.rooms.key(&keys::BLOCKED, &(room_id.as_str(),));
        self.db
            .run(|tx, _| {
                if blocked {
                    tx.set(&key, b"");
                } else {
                    tx.clear(&key);
                }
                async { Ok(()) }
            })
            .await
    }

    /// Whether an admin blocked `room_id`. One read.
    pub async fn is_blocked(&self, room_id: &RoomId) -> Result<bool> {
        let key = self.layout.rooms.key(&keys::BLOCKED, &(room_id.as_str(),));
        Ok(self.db.read(&key).await?.is_some())
    }

    /// Stores the status of room deletion `delete_id` (replacing it).
    /// Safe to run twice: it sets a given value.
    pub async fn put_deletion(&self, delete_id: &str, status: &Value) -> Result<()> {
        let key = self.layout.rooms.key(&keys::DELETION, &(delete_id,));
        let value = serde_json::to_vec(status).expect("JSON values serialize");
        self.db
            .run(|tx, _| {
                tx.set(&key, &value);
                async { Ok(()) }
            })
            .await
    }

    /// Every room deletion's status, in delete ID order. One range read.
    pub async fn deletions(&self) -> Result<Vec<Value>> {
        let (begin, end) = self.layout.rooms.range(&keys::DELETION, &());
        let kvs = self.db.read_range(RangeOption::new(begin, end)).await?;
        kvs.iter()
            .map(|kv| serde_json::from_slice(&kv.value).map_err(|e| Error::corrupt("deletion", e)))
            .collect()
    }

    /// Every room of this server, in room ID order, with its record (for
    /// the admin API's room list). One range read.
    pub async fn all_rooms(&self) -> Result<Vec<(OwnedRoomId, super::RoomRecord)>> {
        let space = &self.layout.rooms;
        let (begin, end) = space.range(&keys::ROOM, &());
        let kvs = self.db.read_range(RangeOption::new(begin, end)).await?;
        kvs.iter()
            .map(|kv| {
                let (_, room): (i64, String) = unpack("room", space, &kv.key)?;
                let room = OwnedRoomId::try_from(room).map_err(|e| Error::corrupt("room", e))?;
                Ok((room, decode("room", &kv.value)?))
            })
            .collect()
    }

    /// The rooms in the public directory, in room ID order, after
    /// `after` (exclusive), at most `limit`. One range read.
    pub async fn listed_rooms(
        &self,
        after: Option<&RoomId>,
        limit: usize,
    ) -> Result<Vec<OwnedRoomId>> {
        let space = &self.layout.public_rooms;
        let (mut begin, end) = space.range(&keys::LISTED, &());
        if let Some(after) = after {
            begin = space.key(&keys::LISTED, &(after.as_str(),));
            begin.push(0);
        }
        if begin >= end || limit == 0 {
            return Ok(Vec::new());
        }
        let kvs = self
            .db
            .read_range(RangeOption::new(begin, end).limit(limit))
            .await?;
        kvs.iter()
            .map(|kv| {
                let (_, room): (i64, String) = unpack("listed", space, &kv.key)?;
                OwnedRoomId::try_from(room).map_err(|e| Error::corrupt("listed", e))
            })
            .collect()
    }

    /// Marks a room as forgotten by `user` (`/forget`); the user's next
    /// membership event in it clears the mark.
    pub async fn forget(&self, user: &UserId, room_id: &RoomId) -> Result<()> {
        let key = self
            .layout
            .memberships
            .key(&keys::FORGOTTEN, &(user.as_str(), room_id.as_str()));
        // Safe to run twice: a blind set of one key to a fixed value.
        self.db
            .run(|tx, _| {
                let key = key.clone();
                async move {
                    tx.set(&key, b"");
                    Ok::<_, Error>(())
                }
            })
            .await
    }

    /// The rooms `user` has forgotten. One range read.
    pub async fn forgotten_rooms(&self, user: &UserId) -> Result<Vec<OwnedRoomId>> {
        let space = &self.layout.memberships;
        let (begin, end) = space.range(&keys::FORGOTTEN, &(user.as_str(),));
        let kvs = self.db.read_range(RangeOption::new(begin, end)).await?;
        kvs.iter()
            .map(|kv| {
                let (_, _, room): (i64, String, String) = unpack("forgotten", space, &kv.key)?;
                OwnedRoomId::try_from(room).map_err(|e| Error::corrupt("forgotten", e))
            })
            .collect()
    }
}

impl Layout {
    /// The record of `alias`, with a conflicting read: two transactions
    /// that both find it free and create it cannot both commit.
    pub(super) async fn alias_in(
        &self,
        tx: &Transaction,
        alias: &RoomAliasId,
    ) -> Result<Option<AliasRecord>> {
        let key = self.aliases.key(&keys::ALIAS, &(alias.as_str(),));
        tx.get(&key, false)
            .await?
            .map(|v| decode("alias", &v))
            .transpose()
            .map_err(Into::into)
    }

    /// Writes `alias` for `room_id` in both directions (blind writes; the
    /// caller checked [`Layout::alias_in`] in the same transaction).
    pub(super) fn put_alias(
        &self,
        tx: &Transaction,
        alias: &RoomAliasId,
        room_id: &RoomId,
        creator: &UserId,
    ) {
        let record = AliasRecord {
            room_id: room_id.to_owned(),
            creator: creator.to_owned(),
        };
        tx.set(
            &self.aliases.key(&keys::ALIAS, &(alias.as_str(),)),
            &encode(&record),
        );
        tx.set(
            &self
                .aliases
                .key(&keys::ROOM_ALIAS, &(room_id.as_str(), alias.as_str())),
            b"",
        );
    }

    /// Lists (`true`) or unlists `room_id` in the public directory (a
    /// blind write).
    pub(super) fn set_listed(&self, tx: &Transaction, room_id: &RoomId, listed: bool) {
        let key = self.public_rooms.key(&keys::LISTED, &(room_id.as_str(),));
        if listed {
            tx.set(&key, b"");
        } else {
            tx.clear(&key);
        }
    }
}

/// `content` of a canonical alias event without `alias` (in `alias` or
/// `alt_aliases`), or `None` if it does not name it.
fn without_alias(mut content: Value, alias: &RoomAliasId) -> Option<Value> {
    let mut changed = false;
    if content["alias"].as_str() == Some(alias.as_str()) {
        content.as_object_mut().map(|o| o.remove("alias"));
        changed = true;
    }
    if let Some(alts) = content["alt_aliases"].as_array_mut() {
        let before = alts.len();
        alts.retain(|a| a.as_str() != Some(alias.as_str()));
        changed |= alts.len() != before;
    }
    changed.then_some(content)
}
