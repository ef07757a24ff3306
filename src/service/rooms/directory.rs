//! Room aliases (with `m.room.canonical_alias` checks), the public room
//! directory and the user directory.
//!
//! - Aliases are local: `#name:<this server>`; creating one needs a join in
//!   the room; deleting needs to be its creator or to have the power to
//!   send `m.room.canonical_alias`. A deleted alias is also removed from
//!   the room's canonical alias event.
//! - `/publicRooms` lists the rooms published with createRoom's
//!   `visibility: public` or `PUT /directory/list/room`, in room-ID order;
//!   the `since` token is the last room ID of the previous page.
//! - `/user_directory/search` searches the users who share a joined room
//!   with the searcher or are joined to a published room, by user ID and
//!   display name (case-insensitive substring). Cost: one member read per
//!   such room; fine for thousands of rooms, to be replaced by an index
//!   when it is not.
//!
//! Source: <https://spec.matrix.org/v1.16/client-server-api/#room-aliases>,
//! <https://spec.matrix.org/v1.16/client-server-api/#listing-rooms>,
//! <https://spec.matrix.org/v1.16/client-server-api/#user-directory>.

use std::collections::{BTreeMap, BTreeSet};

use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, UserId};
use serde_json::Value;

use super::{Error, Result, Rooms, Viewer};
use crate::db::rooms::Unname;

/// At most this many listed rooms are scanned per `/publicRooms` call with
/// a filter (the client continues with `next_batch`).
const MAX_SCAN: usize = 1000;

/// One room of the public directory (`PublicRoomsChunk`).
#[derive(Clone, Debug, PartialEq)]
pub struct PublicRoom {
    /// The room.
    pub room_id: OwnedRoomId,
    /// `m.room.name`.
    pub name: Option<String>,
    /// `m.room.topic`.
    pub topic: Option<String>,
    /// `m.room.canonical_alias`'s `alias`.
    pub canonical_alias: Option<OwnedRoomAliasId>,
    /// `m.room.avatar`'s `url`.
    pub avatar_url: Option<String>,
    /// Joined members.
    pub num_joined_members: u64,
    /// `history_visibility == world_readable`.
    pub world_readable: bool,
    /// `guest_access == can_join`.
    pub guest_can_join: bool,
    /// `m.room.join_rules`'s `join_rule`.
    pub join_rule: Option<String>,
    /// The create event's `type`.
    pub room_type: Option<String>,
}

/// A `/publicRooms` page.
#[derive(Clone, Debug, Default)]
pub struct PublicRoomsPage {
    /// The rooms.
    pub chunk: Vec<PublicRoom>,
    /// Token of the next page.
    pub next_batch: Option<String>,
    /// Listed rooms in total (before filtering).
    pub total: u64,
}

/// One user directory result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserResult {
    /// The user.
    pub user_id: OwnedUserId,
    /// Their display name.
    pub display_name: Option<String>,
    /// Their avatar.
    pub avatar_url: Option<String>,
}

impl Rooms {
    fn check_local_alias(&self, alias: &RoomAliasId) -> Result<()> {
        if alias.server_name() != self.signer.server_name {
            return Err(Error::InvalidParam(format!(
                "alias {alias} is not on this server"
            )));
        }
        Ok(())
    }

    /// `PUT /directory/room/{roomAlias}`.
    ///
    /// Errors: [`Error::AliasInUse`], [`Error::InvalidParam`] for a
    /// foreign alias, [`Error::NotFound`] for an unknown room,
    /// [`Error::Forbidden`] if the user is not joined.
    pub async fn create_alias(
        &self,
        user: &UserId,
        alias: &RoomAliasId,
        room_id: &RoomId,
    ) -> Result<()> {
        self.check_local_alias(alias)?;
        if self.db.room(room_id).await?.is_none() {
            return Err(Error::NotFound(format!("room {room_id} not found")));
        }
        self.refuse_blocked(room_id).await?;
        let joined = self.db.membership(room_id, user).await?;
        if joined.map(|m| m.membership) != Some(MembershipState::Join) {
            return Err(Error::Forbidden(format!("{user} is not in {room_id}")));
        }
        if !self.db.create_alias(alias, room_id, user).await? {
            return Err(Error::AliasInUse(alias.to_string()));
        }
        Ok(())
    }

    /// `GET /directory/room/{roomAlias}`: the room and the servers to join
    /// through (this one).
    ///
    /// Errors: [`Error::NotFound`].
    pub async fn alias(&self, alias: &RoomAliasId) -> Result<OwnedRoomId> {
        Ok(self
            .db
            .alias(alias)
            .await?
            .ok_or_else(|| Error::NotFound(format!("room alias {alias} not found")))?
            .room_id)
    }

    /// `DELETE /directory/room/{roomAlias}`: allowed to the alias's creator
    /// and to users who may send `m.room.canonical_alias`.
    ///
    /// Errors: [`Error::NotFound`], [`Error::Forbidden`].
    pub async fn delete_alias(&self, user: &UserId, alias: &RoomAliasId) -> Result<()> {
        let record = self
            .db
            .alias(alias)
            .await?
            .ok_or_else(|| Error::NotFound(format!("room alias {alias} not found")))?;
        if record.creator != user {
            let (level, needed) =
                super::visibility::power(&self.db, &record.room_id, user, "state_default", 50)
                    .await?;
            if level < needed {
                return Err(Error::Forbidden(
                    "only the alias's creator or a room moderator may delete it".into(),
                ));
            }
        }
        // One transaction: the alias goes, and with it its mention in the
        // canonical alias event (unless the deleter may not send that
        // event; the alias goes all the same).
        let unname = Unname {
            signer: &self.signer,
            sender: user,
            now: self.now(),
        };
        self.db.delete_alias(alias, Some(unname)).await?;
        Ok(())
    }

    /// `GET /rooms/{roomId}/aliases`: the room's local aliases, for users
    /// who may see its state.
    pub async fn room_aliases<'a>(
        &self,
        viewer: impl Into<Viewer<'a>>,
        room_id: &RoomId,
    ) -> Result<Vec<OwnedRoomAliasId>> {
        self.visible_state_ids(viewer.into().user, room_id).await?;
        Ok(self.db.room_aliases(room_id).await?)
    }

    /// Checks an `m.room.canonical_alias` content: every alias must be
    /// valid and, if local, point to `room_id` (spec: 400 M_BAD_ALIAS).
    pub(super) async fn check_canonical_alias(
        &self,
        room_id: &RoomId,
        content: &Value,
    ) -> Result<()> {
        let mut aliases = Vec::new();
        if let Some(a) = content.get("alias").filter(|a| !a.is_null()) {
            aliases.push(a);
        }
        if let Some(alts) = content.get("alt_aliases") {
            let alts = alts
                .as_array()
                .ok_or_else(|| Error::BadJson("alt_aliases must be an array".into()))?;
            aliases.extend(alts);
        }
        for alias in aliases {
            let alias = alias
                .as_str()
                .and_then(|a| <&RoomAliasId>::try_from(a).ok())
                .ok_or_else(|| Error::InvalidParam(format!("{alias} is not a room alias")))?;
            if alias.server_name() == self.signer.server_name
                && self.db.alias(alias).await?.map(|r| r.room_id).as_deref() != Some(room_id)
            {
                return Err(Error::BadAlias(format!(
                    "{alias} does not point to {room_id}"
                )));
            }
        }
        Ok(())
    }

    /// `PUT /directory/list/room/{roomId}`: publishes (`true`) or
    /// unpublishes the room; needs the power to send state.
    pub async fn set_listed(&self, user: &UserId, room_id: &RoomId, listed: bool) -> Result<()> {
        if self.db.room(room_id).await?.is_none() {
            return Err(Error::NotFound(format!("room {room_id} not found")));
        }
        let joined = self.db.membership(room_id, user).await?;
        let (level, needed) =
            super::visibility::power(&self.db, room_id, user, "state_default", 50).await?;
        if joined.map(|m| m.membership) != Some(MembershipState::Join) || level < needed {
            return Err(Error::Forbidden(
                "only room moderators may publish the room".into(),
            ));
        }
        Ok(self.db.set_listed(room_id, listed).await?)
    }

    /// `GET /directory/list/room/{roomId}`: whether the room is published.
    pub async fn is_listed(&self, room_id: &RoomId) -> Result<bool> {
        if self.db.room(room_id).await?.is_none() {
            return Err(Error::NotFound(format!("room {room_id} not found")));
        }
        Ok(self.db.is_listed(room_id).await?)
    }

    /// The directory entry of a room, from its current state.
    async fn public_room(&self, room_id: &RoomId) -> Result<PublicRoom> {
        let state = self.db.current_state_ids(room_id).await?;
        let wanted = [
            "m.room.name",
            "m.room.topic",
            "m.room.canonical_alias",
            "m.room.avatar",
            "m.room.history_visibility",
            "m.room.guest_access",
            "m.room.join_rules",
            "m.room.create",
        ];
        let ids: Vec<_> = wanted
            .iter()
            .filter_map(|t| state.get(&((*t).to_owned(), String::new())).cloned())
            .collect();
        let mut by_type = BTreeMap::new();
        for e in self.db.events(&ids).await? {
            if e.redacted_by.is_none() {
                by_type.insert(e.pdu.kind().to_string(), e.pdu.content_value());
            }
        }
        let field = |t: &str, f: &str| {
            by_type
                .get(t)
                .and_then(|c| c[f].as_str())
                .map(str::to_owned)
        };
        let joined = self
            .db
            .members(room_id)
            .await?
            .iter()
            .filter(|(_, m)| m.membership == MembershipState::Join)
            .count();
        Ok(PublicRoom {
            room_id: room_id.to_owned(),
            name: field("m.room.name", "name"),
            topic: field("m.room.topic", "topic"),
            canonical_alias: field("m.room.canonical_alias", "alias")
                .and_then(|a| OwnedRoomAliasId::try_from(a).ok()),
            avatar_url: field("m.room.avatar", "url"),
            num_joined_members: joined as u64,
            world_readable: field("m.room.history_visibility", "history_visibility").as_deref()
                == Some("world_readable"),
            guest_can_join: field("m.room.guest_access", "guest_access").as_deref()
                == Some("can_join"),
            join_rule: field("m.room.join_rules", "join_rule"),
            room_type: field("m.room.create", "type"),
        })
    }

    /// `GET|POST /publicRooms`: published rooms after `since`, at most
    /// `limit`, whose name, topic, alias or ID contains `search`
    /// (case-insensitive).
    ///
    /// Errors: [`Error::InvalidParam`] for a malformed `since`.
    pub async fn public_rooms(
        &self,
        since: Option<&str>,
        limit: usize,
        search: Option<&str>,
    ) -> Result<PublicRoomsPage> {
        let mut after = since
            .map(|s| {
                OwnedRoomId::try_from(s)
                    .map_err(|_| Error::InvalidParam(format!("invalid since token {s:?}")))
            })
            .transpose()?;
        let search = search
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty());
        let limit = limit.clamp(1, 500);
        let mut page = PublicRoomsPage {
            total: self.db.listed_rooms(None, usize::MAX).await?.len() as u64,
            ..Default::default()
        };
        let mut scanned = 0;
        loop {
            let rooms = self.db.listed_rooms(after.as_deref(), limit + 1).await?;
            let more = rooms.len() > limit;
            for room_id in rooms.into_iter().take(limit) {
                scanned += 1;
                after = Some(room_id.clone());
                let room = self.public_room(&room_id).await?;
                let hay = [
                    room.name.as_deref(),
                    room.topic.as_deref(),
                    room.canonical_alias.as_ref().map(|a| a.as_str()),
                    Some(room.room_id.as_str()),
                ];
                if search.as_ref().is_none_or(|s| {
                    hay.iter()
                        .flatten()
                        .any(|h| h.to_lowercase().contains(s.as_str()))
                }) {
                    page.chunk.push(room);
                    if page.chunk.len() == limit {
                        break;
                    }
                }
            }
            let full = page.chunk.len() == limit;
            if full || !more || scanned >= MAX_SCAN {
                if more || (full && self.db.listed_rooms(after.as_deref(), 1).await?.len() == 1) {
                    page.next_batch = after.map(|r| r.to_string());
                }
                return Ok(page);
            }
        }
    }

    /// `POST /user_directory/search`: users sharing a joined room with
    /// `searcher` or joined to a published room, whose ID or display name
    /// contains `term` (case-insensitive); at most `limit`, and whether
    /// more matched.
    pub async fn search_users(
        &self,
        searcher: &UserId,
        term: &str,
        limit: usize,
    ) -> Result<(Vec<UserResult>, bool)> {
        let term = term.to_lowercase();
        let mut rooms: BTreeSet<OwnedRoomId> =
            self.joined_rooms(searcher).await?.into_iter().collect();
        rooms.extend(self.db.listed_rooms(None, MAX_SCAN).await?);
        let mut candidates: BTreeMap<OwnedUserId, (Option<String>, Option<String>)> =
            BTreeMap::new();
        for room_id in rooms {
            let joined: Vec<_> = self
                .db
                .members(&room_id)
                .await?
                .into_iter()
                .filter(|(_, m)| m.membership == MembershipState::Join)
                .collect();
            let ids: Vec<_> = joined.iter().map(|(_, m)| m.event_id.clone()).collect();
            for e in self.db.events(&ids).await? {
                let Some(user) = e
                    .pdu
                    .state_key()
                    .and_then(|u| OwnedUserId::try_from(u).ok())
                else {
                    continue;
                };
                let c = e.pdu.content_value();
                candidates.entry(user).or_insert((
                    c["displayname"].as_str().map(str::to_owned),
                    c["avatar_url"].as_str().map(str::to_owned),
                ));
            }
        }
        let mut results: Vec<UserResult> = candidates
            .into_iter()
            .filter(|(user, (name, _))| {
                user.as_str().to_lowercase().contains(&term)
                    || name
                        .as_ref()
                        .is_some_and(|n| n.to_lowercase().contains(&term))
            })
            .map(|(user_id, (display_name, avatar_url))| UserResult {
                user_id,
                display_name,
                avatar_url,
            })
            .collect();
        let limited = results.len() > limit;
        results.truncate(limit);
        Ok((results, limited))
    }
}
