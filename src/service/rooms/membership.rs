//! Membership changes: join (by ID or alias), leave, invite, kick, ban,
//! unban, knock, forget, and the propagation of profile changes into the
//! member events of a user's joined rooms.
//!
//! Member events of local users carry their `displayname` and
//! `avatar_url`, read through the accounts service (when the service has
//! one) at the time of the change.
//!
//! Source: <https://spec.matrix.org/v1.16/client-server-api/#room-membership>.

use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, RoomId, RoomOrAliasId, UserId};
use serde_json::{Value, json};

use super::{Error, Result, Rooms, Sent};
use crate::db::rooms::{MemberRecord, NewEvent};

/// Whether `membership` still ties the user to the room: joined, invited
/// or knocking (a member event with one of these carries the profile; kick
/// needs one; forget refuses one).
fn has_not_left(membership: &MembershipState) -> bool {
    matches!(
        membership,
        MembershipState::Join | MembershipState::Invite | MembershipState::Knock
    )
}

impl Rooms {
    /// The profile fields member events carry (`displayname`,
    /// `avatar_url`) of a local user; empty without an accounts service or
    /// for unknown users.
    pub(super) async fn member_profile(
        &self,
        user: &UserId,
    ) -> Result<serde_json::Map<String, Value>> {
        let Some(accounts) = &self.accounts else {
            return Ok(Default::default());
        };
        let profile = match accounts.profile(user).await {
            Ok(p) => p,
            Err(crate::service::Error::NotFound(_)) => return Ok(Default::default()),
            Err(e) => return Err(e.into()),
        };
        Ok(profile
            .into_iter()
            .filter(|(k, v)| (k == "displayname" || k == "avatar_url") && v.is_string())
            .collect())
    }

    /// The content of `target`'s member event for `membership`: the
    /// profile (while not left) and the reason.
    async fn member_content(
        &self,
        target: &UserId,
        membership: &MembershipState,
        reason: Option<&str>,
    ) -> Result<Value> {
        let mut content = json!({ "membership": membership });
        if has_not_left(membership) {
            for (k, v) in self.member_profile(target).await? {
                content[k] = v;
            }
        }
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        Ok(content)
    }

    /// Sends `target`'s member event for `membership`. A change the
    /// current member event already made (same sender and content) is
    /// not sent again: the existing event is returned (`deduplicated`),
    /// so a repeated or retried join, leave, kick or ban writes one event.
    pub(super) async fn set_membership(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        membership: MembershipState,
        reason: Option<&str>,
    ) -> Result<Sent> {
        let content = self.member_content(target, &membership, reason).await?;
        self.send_event(
            sender,
            room_id,
            None,
            NewEvent {
                event_type: "m.room.member".into(),
                state_key: Some(target.to_string()),
                content,
            },
        )
        .await
    }

    /// `POST /rooms/{roomId}/join`: joins `user` to the room (allowed by the
    /// join rules, an invite, or an existing join).
    pub async fn join(&self, user: &UserId, room_id: &RoomId) -> Result<Sent> {
        self.refuse_blocked(room_id).await?;
        self.set_membership(user, room_id, user, MembershipState::Join, None)
            .await
    }

    /// The room an ID or alias names. Aliases are resolved locally only.
    ///
    /// Errors: [`Error::NotFound`] for an unknown alias.
    pub async fn resolve_room(&self, room: &RoomOrAliasId) -> Result<OwnedRoomId> {
        match <&RoomId>::try_from(room) {
            Ok(id) => Ok(id.to_owned()),
            Err(alias) => {
                let record = self
                    .db
                    .alias(alias)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("room alias {alias} not found")))?;
                Ok(record.room_id)
            }
        }
    }

    /// `POST /join/{roomIdOrAlias}` and `/rooms/{roomId}/join` with a
    /// reason: joins and returns the room's ID.
    pub async fn join_by(
        &self,
        user: &UserId,
        room: &RoomOrAliasId,
        reason: Option<&str>,
    ) -> Result<OwnedRoomId> {
        let room_id = self.resolve_room(room).await?;
        self.refuse_blocked(&room_id).await?;
        self.set_membership(user, &room_id, user, MembershipState::Join, reason)
            .await?;
        Ok(room_id)
    }

    /// `POST /knock/{roomIdOrAlias}`: asks to join a room whose join rule is
    /// `knock` or `knock_restricted` (room versions 7 and later, so every
    /// version served here); the authorization rules refuse other rooms.
    pub async fn knock(
        &self,
        user: &UserId,
        room: &RoomOrAliasId,
        reason: Option<&str>,
    ) -> Result<OwnedRoomId> {
        let room_id = self.resolve_room(room).await?;
        self.set_membership(user, &room_id, user, MembershipState::Knock, reason)
            .await?;
        Ok(room_id)
    }

    /// `POST /rooms/{roomId}/leave`: leaves the room, or rejects an invite
    /// (or withdraws a knock).
    pub async fn leave(&self, user: &UserId, room_id: &RoomId) -> Result<Sent> {
        self.set_membership(user, room_id, user, MembershipState::Leave, None)
            .await
    }

    /// `POST /rooms/{roomId}/leave` with a reason.
    pub async fn leave_with(
        &self,
        user: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<Sent> {
        self.set_membership(user, room_id, user, MembershipState::Leave, reason)
            .await
    }

    /// `POST /rooms/{roomId}/invite`.
    pub async fn invite(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<Sent> {
        self.set_membership(sender, room_id, target, MembershipState::Invite, reason)
            .await
    }

    /// `POST /rooms/{roomId}/kick`: sets `target`'s membership to `leave`.
    ///
    /// A repeat of the same kick (same sender and reason) returns the
    /// first kick's event.
    ///
    /// Errors: [`Error::Forbidden`] if `target` is not in the room (joined,
    /// invited or knocking) and was not kicked so already, besides the
    /// authorization rules.
    pub async fn kick(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<Sent> {
        let current = self.db.membership(room_id, target).await?;
        let in_room = current
            .as_ref()
            .is_some_and(|m| has_not_left(&m.membership));
        if !in_room && !self.kicked_so(sender, target, current, reason).await? {
            return Err(Error::Forbidden(format!("{target} is not in the room")));
        }
        self.set_membership(sender, room_id, target, MembershipState::Leave, reason)
            .await
    }

    /// Whether `current` (the target's membership) is a kick of `target`
    /// by `sender` with `reason`: the kick a repeat would make.
    async fn kicked_so(
        &self,
        sender: &UserId,
        target: &UserId,
        current: Option<MemberRecord>,
        reason: Option<&str>,
    ) -> Result<bool> {
        let Some(current) = current.filter(|m| m.membership == MembershipState::Leave) else {
            return Ok(false);
        };
        let Some(event) = self.db.event(&current.event_id).await? else {
            return Ok(false);
        };
        let content = self
            .member_content(target, &MembershipState::Leave, reason)
            .await?;
        Ok(event.pdu.sender() == sender
            && event.redacted_by.is_none()
            && event.pdu.content_value() == content)
    }

    /// `POST /rooms/{roomId}/ban`.
    pub async fn ban(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<Sent> {
        self.set_membership(sender, room_id, target, MembershipState::Ban, reason)
            .await
    }

    /// `POST /rooms/{roomId}/unban`: sets a banned user's membership to
    /// `leave`.
    ///
    /// Errors: [`Error::Forbidden`] if `target` is not banned.
    pub async fn unban(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<Sent> {
        let current = self.db.membership(room_id, target).await?;
        if current.map(|m| m.membership) != Some(MembershipState::Ban) {
            return Err(Error::Forbidden(format!("{target} is not banned")));
        }
        self.set_membership(sender, room_id, target, MembershipState::Leave, reason)
            .await
    }

    /// `POST /rooms/{roomId}/forget`: the user no longer wants the room in
    /// their room lists (sync leaves it out) until their next membership
    /// change. History stays (other members still see it).
    ///
    /// Errors: [`Error::InvalidParam`] while joined, invited or knocking
    /// (spec: "the user has not left the room"), [`Error::NotFound`] if the
    /// user never had a membership in the room.
    pub async fn forget(&self, user: &UserId, room_id: &RoomId) -> Result<()> {
        match self.db.membership(room_id, user).await? {
            None => Err(Error::NotFound(format!("{user} was never in {room_id}"))),
            Some(m) if has_not_left(&m.membership) => Err(Error::InvalidParam(format!(
                "{user} has not left {room_id}"
            ))),
            Some(_) => Ok(self.db.forget(user, room_id).await?),
        }
    }

    /// The rooms `user` forgot (sync leaves them out of `leave`).
    pub async fn forgotten_rooms(&self, user: &UserId) -> Result<Vec<OwnedRoomId>> {
        Ok(self.db.forgotten_rooms(user).await?)
    }

    /// After a profile change: sends a new `join` member event with the
    /// current `displayname` and `avatar_url` into every room `user` is
    /// joined to (one transaction per room). Rooms where the event is
    /// refused are skipped. Returns the events sent.
    ///
    /// Errors: the storage's (reading the user's rooms).
    pub async fn propagate_profile(&self, user: &UserId) -> Result<Vec<Sent>> {
        let mut sent = Vec::new();
        for room_id in self.joined_rooms(user).await? {
            match self.join(user, &room_id).await {
                Ok(s) => sent.push(s),
                Err(Error::Forbidden(why)) => {
                    tracing::warn!(%user, %room_id, %why, "profile change not propagated");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }
}
