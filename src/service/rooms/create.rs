//! `POST /createRoom`: the initial events of a room, per preset, in the
//! order the spec lists them, written in one transaction with the room's
//! alias and its public directory listing.
//!
//! Source: <https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3createroom>.

use ruma::{
    OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, RoomVersionId, UserId,
};
use serde_json::{Value, json};

use super::{Error, Result, Rooms, Sent};
use crate::db::rooms::{self as store, NewEvent, NewRoom};
use crate::events;

/// The most `initial_state` events and invites one createRoom may ask for
/// together: each becomes an event written, signed and authorized in the
/// room-creation transaction, which must stay within FoundationDB's 10 MB
/// and 5 s (docs/limits.md). Past it: [`Error::TooLarge`] (413
/// M_TOO_LARGE), nothing written. Synapse sets no such limit, but a
/// request near it takes Synapse minutes.
pub const MAX_INITIAL_EVENTS: usize = 1_000;

/// A createRoom preset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// Invite-only, history shared with members, guests may join.
    PrivateChat,
    /// Like private chat, and invitees get the creator's power.
    TrustedPrivateChat,
    /// Anyone may join, history shared with members, no guests.
    PublicChat,
}

/// The parameters of `POST /createRoom` the rooms database acts on.
#[derive(Clone, Debug, Default)]
pub struct CreateRoom {
    /// The preset; default `public_chat` if `public` else `private_chat`.
    pub preset: Option<Preset>,
    /// `visibility: public`: the default preset is `public_chat` and the
    /// room is published in the public room directory.
    pub public: bool,
    /// `room_alias_name`: the local part of an alias `#name:server` created
    /// for the room and set as its `m.room.canonical_alias`.
    pub room_alias_name: Option<String>,
    /// `m.room.name`.
    pub name: Option<String>,
    /// `m.room.topic`.
    pub topic: Option<String>,
    /// Users to invite.
    pub invite: Vec<OwnedUserId>,
    /// Extra state events `(type, state_key, content)`, after the preset's.
    pub initial_state: Vec<(String, String, Value)>,
    /// The room version; the service's default if `None`.
    pub room_version: Option<RoomVersionId>,
    /// Extra keys of the `m.room.create` content.
    pub creation_content: Option<Value>,
    /// Keys merged over the default `m.room.power_levels` content.
    pub power_level_content_override: Option<Value>,
    /// Whether the invites are for a direct chat.
    pub is_direct: bool,
}

fn state(event_type: &str, state_key: &str, content: Value) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        state_key: Some(state_key.into()),
        content,
    }
}

impl Rooms {
    /// `POST /createRoom`: creates the room, its initial events, its alias
    /// (`room_alias_name`) and its directory listing (`visibility: public`)
    /// in one transaction; returns the room ID and the events sent (create
    /// first).
    ///
    /// Errors (nothing stored in each case): [`Error::UnsupportedRoomVersion`],
    /// [`Error::Forbidden`] if an initial event fails authorization,
    /// [`Error::RoomInUse`] if the alias exists, [`Error::BadJson`],
    /// [`Error::InvalidParam`] for an invalid alias name, [`Error::TooLarge`]
    /// past [`MAX_INITIAL_EVENTS`].
    pub async fn create_room(
        &self,
        creator: &UserId,
        req: CreateRoom,
    ) -> Result<(OwnedRoomId, Vec<Sent>)> {
        if req.initial_state.len() + req.invite.len() > MAX_INITIAL_EVENTS {
            return Err(Error::TooLarge);
        }
        let version = req
            .room_version
            .clone()
            .unwrap_or_else(|| self.default_version.clone());
        let rules = events::rules(&version)?;
        let plan = Plan {
            req: &req,
            creator,
            preset: req.preset.unwrap_or(if req.public {
                Preset::PublicChat
            } else {
                Preset::PrivateChat
            }),
            v12: rules.authorization.explicitly_privilege_room_creators,
        };
        let create_content = plan.create_content()?;
        let power_levels = plan.power_levels()?;
        let alias = req
            .room_alias_name
            .as_deref()
            .map(|name| self.local_alias(name))
            .transpose()?;
        let events = self
            .initial_events(&plan, power_levels, alias.as_deref())
            .await?;

        let room_id = RoomId::new_v1(&self.signer.server_name);
        // One transaction: the room, its alias and its listing commit
        // together or not at all (an alias claimed concurrently refuses
        // the whole creation).
        let (room_id, sent) = self
            .db
            .create_room(
                &self.signer,
                &NewRoom {
                    version: &version,
                    room_id: &room_id,
                    creator,
                    create_content: &create_content,
                    initial: &events,
                    alias: alias.as_deref(),
                    listed: req.public,
                    now: self.now(),
                },
            )
            .await
            .map_err(|e| match e {
                store::Error::AliasTaken(alias) => Error::RoomInUse(alias.to_string()),
                other => other.into(),
            })?;
        Ok((room_id, sent))
    }

    /// The alias `#name:server` of `room_alias_name`.
    fn local_alias(&self, name: &str) -> Result<OwnedRoomAliasId> {
        OwnedRoomAliasId::try_from(format!("#{name}:{}", self.signer.server_name))
            .map_err(|e| Error::InvalidParam(format!("invalid room_alias_name: {e}")))
    }

    /// The events after `m.room.create`, in the order the spec lists them:
    /// the creator's join, power levels, canonical alias, join rules,
    /// history visibility, guest access, `initial_state`, name, topic,
    /// invites.
    async fn initial_events(
        &self,
        plan: &Plan<'_>,
        power_levels: Value,
        alias: Option<&RoomAliasId>,
    ) -> Result<Vec<NewEvent>> {
        let req = plan.req;
        let mut creator_member = json!({"membership": "join"});
        for (k, v) in self.member_profile(plan.creator).await? {
            creator_member[k] = v;
        }
        let mut events = vec![state(
            "m.room.member",
            plan.creator.as_str(),
            creator_member,
        )];
        events.push(state("m.room.power_levels", "", power_levels));
        if let Some(alias) = alias {
            events.push(state(
                "m.room.canonical_alias",
                "",
                json!({ "alias": alias }),
            ));
        }
        let (join_rule, guests) = match plan.preset {
            Preset::PublicChat => ("public", "forbidden"),
            Preset::PrivateChat | Preset::TrustedPrivateChat => ("invite", "can_join"),
        };
        events.push(state(
            "m.room.join_rules",
            "",
            json!({"join_rule": join_rule}),
        ));
        events.push(state(
            "m.room.history_visibility",
            "",
            json!({"history_visibility": "shared"}),
        ));
        events.push(state(
            "m.room.guest_access",
            "",
            json!({"guest_access": guests}),
        ));
        for (event_type, state_key, content) in &req.initial_state {
            events.push(state(event_type, state_key, content.clone()));
        }
        if let Some(name) = &req.name {
            events.push(state("m.room.name", "", json!({"name": name})));
        }
        if let Some(topic) = &req.topic {
            events.push(state("m.room.topic", "", json!({"topic": topic})));
        }
        for user in &req.invite {
            let mut content = json!({"membership": "invite"});
            for (k, v) in self.member_profile(user).await? {
                content[k] = v;
            }
            if req.is_direct {
                content["is_direct"] = true.into();
            }
            events.push(state("m.room.member", user.as_str(), content));
        }
        if events.iter().any(|e| !e.content.is_object()) {
            return Err(Error::BadJson("state content must be objects".into()));
        }
        Ok(events)
    }
}

/// A createRoom request with what its events depend on resolved.
struct Plan<'a> {
    req: &'a CreateRoom,
    creator: &'a UserId,
    preset: Preset,
    /// Room version 12's rules: creators are privileged by the create
    /// event, not by power levels.
    v12: bool,
}

impl Plan<'_> {
    fn trusted(&self) -> bool {
        self.preset == Preset::TrustedPrivateChat
    }

    /// The `m.room.create` content: `creation_content`, and for a trusted
    /// private chat in version 12 the invitees as `additional_creators`.
    fn create_content(&self) -> Result<Value> {
        let req = self.req;
        let mut content = match &req.creation_content {
            Some(Value::Object(map)) => Value::Object(map.clone()),
            Some(_) => return Err(Error::BadJson("creation_content must be an object".into())),
            None => json!({}),
        };
        if self.v12 && self.trusted() && !req.invite.is_empty() {
            content["additional_creators"] = json!(req.invite);
        }
        Ok(content)
    }

    /// The `m.room.power_levels` content: the defaults, the creator (and in
    /// a trusted private chat the invitees) at 100 before version 12, then
    /// `power_level_content_override` merged over it.
    fn power_levels(&self) -> Result<Value> {
        let req = self.req;
        let mut users = serde_json::Map::new();
        if !self.v12 {
            users.insert(self.creator.to_string(), 100.into());
            if self.trusted() {
                for user in &req.invite {
                    users.insert(user.to_string(), 100.into());
                }
            }
        }
        let mut power_levels = json!({
            "users": users,
            "users_default": 0,
            "events": {
                "m.room.name": 50,
                "m.room.power_levels": 100,
                "m.room.history_visibility": 100,
                "m.room.canonical_alias": 50,
                "m.room.avatar": 50,
                "m.room.tombstone": 100,
                "m.room.server_acl": 100,
                "m.room.encryption": 100,
            },
            "events_default": 0,
            "state_default": 50,
            "ban": 50,
            "kick": 50,
            "redact": 50,
            "invite": if self.preset == Preset::PublicChat { 50 } else { 0 },
        });
        match &req.power_level_content_override {
            Some(Value::Object(over)) => {
                for (k, v) in over {
                    power_levels[k] = v.clone();
                }
            }
            Some(_) => {
                return Err(Error::BadJson(
                    "power_level_content_override must be an object".into(),
                ));
            }
            None => {}
        }
        Ok(power_levels)
    }
}
