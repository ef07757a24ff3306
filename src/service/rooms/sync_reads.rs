//! Reads for `/sync` (added by the sync work, `docs/sync.md`): events in
//! the client format without a per-event visibility check (sync decides
//! which state a member may see from the state log), and the stripped
//! state of an invite.
//!
//! Who may import this: `sync`, through [`Rooms`].

use ruma::{OwnedEventId, RoomId};
use serde_json::{Value, json};

use super::{Result, Rooms, Viewer};

/// The state types shown in an invite's stripped state (spec: "Stripped
/// state"), besides the inviter's and the invitee's member events.
const STRIPPED_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.join_rules",
    "m.room.canonical_alias",
    "m.room.encryption",
];

impl Rooms {
    /// **For sync.** The events with these IDs in the client format
    /// (redacted where a redaction applies, with `unsigned`), in the given
    /// order, absent ones left out. No visibility check: the caller reads
    /// only state and timeline positions the viewer may see.
    pub async fn client_events_for_sync(
        &self,
        viewer: Viewer<'_>,
        room_id: &RoomId,
        ids: &[OwnedEventId],
    ) -> Result<Vec<Value>> {
        let mut out = Vec::with_capacity(ids.len());
        for stored in self.db.events(ids).await? {
            out.push(self.client_event(room_id, &stored, viewer).await?);
        }
        Ok(out)
    }

    /// **For sync.** The stripped state of an invite to `room_id` for
    /// `invitee`: create, name, avatar, topic, join rules, canonical alias,
    /// encryption, the inviter's member event and the invite itself, each
    /// `{type, state_key, content, sender}`. One range read of current
    /// state and one event read.
    pub async fn stripped_invite_state(
        &self,
        room_id: &RoomId,
        invitee: &ruma::UserId,
    ) -> Result<Vec<Value>> {
        let state = self.db.current_state_ids(room_id).await?;
        let invite_key = ("m.room.member".to_owned(), invitee.to_string());
        let Some(invite_id) = state.get(&invite_key) else {
            return Ok(Vec::new());
        };
        let invite = self.db.events(std::slice::from_ref(invite_id)).await?;
        let inviter = invite.first().map(|e| e.pdu.sender().to_string());
        let mut ids: Vec<OwnedEventId> = STRIPPED_TYPES
            .iter()
            .filter_map(|t| state.get(&((*t).to_owned(), String::new())).cloned())
            .collect();
        if let Some(inviter) = &inviter
            && let Some(id) = state.get(&("m.room.member".to_owned(), inviter.clone()))
            && id != invite_id
        {
            ids.push(id.clone());
        }
        ids.push(invite_id.clone());
        Ok(self
            .db
            .events(&ids)
            .await?
            .into_iter()
            .map(|e| {
                json!({
                    "type": e.pdu.kind().to_string(),
                    "state_key": e.pdu.state_key().unwrap_or_default(),
                    "content": e.pdu.content_value(),
                    "sender": e.pdu.sender().as_str(),
                })
            })
            .collect())
    }
}
