//! [`Pdu`]: one event in federation form, with the parsed fields that
//! authorization and storage read.

use ruma::events::TimelineEventType;
use ruma::{
    CanonicalJsonObject, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId,
    RoomId, UInt, UserId,
};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::EventError;

/// One PDU: its event ID, its canonical JSON (no `event_id`, no `unsigned`)
/// and the fields read by authorization, storage and the client format.
#[derive(Clone, Debug)]
pub struct Pdu {
    event_id: OwnedEventId,
    json: String,
    fields: Fields,
}

/// The parsed fields of a PDU.
#[derive(Clone, Debug, Deserialize)]
struct Fields {
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    kind: TimelineEventType,
    content: Box<RawValue>,
    state_key: Option<String>,
    #[serde(default)]
    prev_events: Vec<OwnedEventId>,
    #[serde(default)]
    auth_events: Vec<OwnedEventId>,
    redacts: Option<OwnedEventId>,
    depth: UInt,
}

impl Pdu {
    /// A PDU from its stored form: the event ID and the canonical JSON text
    /// written by [`super::build_pdu`]. The ID is trusted, not recomputed.
    ///
    /// Errors: [`EventError::Malformed`] if a required field is missing or
    /// mistyped.
    pub fn from_stored(event_id: OwnedEventId, json: String) -> Result<Pdu, EventError> {
        let fields: Fields =
            serde_json::from_str(&json).map_err(|e| EventError::Malformed(e.to_string()))?;
        Ok(Pdu {
            event_id,
            json,
            fields,
        })
    }

    /// A PDU from a canonical JSON object and its event ID.
    pub(super) fn from_object(
        event_id: OwnedEventId,
        object: &CanonicalJsonObject,
    ) -> Result<Pdu, EventError> {
        let json =
            serde_json::to_string(object).map_err(|e| EventError::Malformed(e.to_string()))?;
        Pdu::from_stored(event_id, json)
    }

    /// The event ID, `$` ++ reference hash.
    pub fn event_id(&self) -> &OwnedEventId {
        &self.event_id
    }

    /// The canonical JSON text of the PDU, as signed and stored.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The PDU as a canonical JSON object.
    pub fn to_object(&self) -> CanonicalJsonObject {
        serde_json::from_str(&self.json).expect("a Pdu's JSON is a canonical JSON object")
    }

    /// The `room_id` field; `None` only for a room version 12 `m.room.create`.
    pub fn room_id_field(&self) -> Option<&RoomId> {
        self.fields.room_id.as_deref()
    }

    /// The sender.
    pub fn sender(&self) -> &UserId {
        &self.fields.sender
    }

    /// The event type.
    pub fn kind(&self) -> &TimelineEventType {
        &self.fields.kind
    }

    /// The state key, for state events.
    pub fn state_key(&self) -> Option<&str> {
        self.fields.state_key.as_deref()
    }

    /// The content, as raw JSON.
    pub fn content(&self) -> &RawValue {
        &self.fields.content
    }

    /// The content, parsed.
    pub fn content_value(&self) -> serde_json::Value {
        serde_json::from_str(self.fields.content.get()).expect("content is JSON")
    }

    /// The depth: one more than the largest depth among `prev_events`.
    pub fn depth(&self) -> u64 {
        self.fields.depth.into()
    }

    /// `origin_server_ts`, milliseconds since the Unix epoch.
    pub fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.fields.origin_server_ts
    }

    /// The events this one follows in the room DAG.
    pub fn prev_events(&self) -> &[OwnedEventId] {
        &self.fields.prev_events
    }

    /// The state events that authorize this one.
    pub fn auth_events(&self) -> &[OwnedEventId] {
        &self.fields.auth_events
    }

    /// The event an `m.room.redaction` redacts: `content.redacts` (room
    /// version 11 and later) or the top-level `redacts` (earlier versions).
    pub fn redacts(&self) -> Option<OwnedEventId> {
        if let Some(id) = &self.fields.redacts {
            return Some(id.clone());
        }
        #[derive(Deserialize)]
        struct Redacts {
            redacts: Option<OwnedEventId>,
        }
        serde_json::from_str::<Redacts>(self.fields.content.get())
            .ok()
            .and_then(|r| r.redacts)
    }

    /// The event in the client-server API's format (`ClientEvent`, without
    /// `unsigned`): `content`, `event_id`, `origin_server_ts`, `room_id`,
    /// `sender`, `state_key` (state events), `type`, and for a redaction
    /// `redacts` top-level in every room version: from version 11 it lives
    /// in the content, and servers copy it out for clients that read only
    /// the top level (spec: room version 11, "Client considerations";
    /// matrix-js-sdk applies a live redaction only with it, matrix-nio
    /// refuses the event without it). `room_id` is the caller's, since a
    /// room version 12 create event has none.
    pub fn to_client_event(&self, room_id: &RoomId) -> serde_json::Value {
        let mut out = serde_json::json!({
            "content": self.content_value(),
            "event_id": self.event_id,
            "origin_server_ts": self.fields.origin_server_ts,
            "room_id": room_id,
            "sender": self.fields.sender,
            "type": self.fields.kind,
        });
        if let Some(key) = &self.fields.state_key {
            out["state_key"] = key.clone().into();
        }
        if self.fields.kind == TimelineEventType::RoomRedaction
            && let Some(redacts) = self.redacts()
        {
            out["redacts"] = redacts.as_str().into();
        }
        out
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }

    fn room_id(&self) -> Option<&RoomId> {
        self.fields.room_id.as_deref()
    }

    fn sender(&self) -> &UserId {
        &self.fields.sender
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.fields.origin_server_ts
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.fields.kind
    }

    fn content(&self) -> &RawValue {
        &self.fields.content
    }

    fn state_key(&self) -> Option<&str> {
        self.fields.state_key.as_deref()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.fields.prev_events.iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.fields.auth_events.iter())
    }

    fn redacts(&self) -> Option<&Self::Id> {
        self.fields.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        // Rejected events are never stored, so every stored event is accepted.
        false
    }
}
