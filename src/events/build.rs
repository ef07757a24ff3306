//! Building, signing, redacting and authorizing PDUs.

use std::collections::HashMap;
use std::sync::Arc;

use ruma::canonical_json::to_canonical_value;
use ruma::events::StateEventType;
use ruma::room_version_rules::RedactionRules;
use ruma::signatures::{Ed25519KeyPair, hash_and_sign_event, reference_hash};
use ruma::state_res::{check_state_dependent_auth_rules, check_state_independent_auth_rules};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId,
    OwnedRoomId, OwnedServerName, RoomId, RoomVersionId, UserId,
};

use super::{EventError, Pdu, rules};

/// The server's identity for signing: its name and its ed25519 key.
#[derive(Clone)]
pub struct Signer {
    /// The server name the signature is filed under in `signatures`.
    pub server_name: OwnedServerName,
    /// The signing key (`ed25519:<version>`).
    pub key: Arc<Ed25519KeyPair>,
}

/// Everything a new PDU is made of, before hashing and signing.
#[derive(Clone, Debug)]
pub struct PduTemplate<'a> {
    /// The room's version; decides the redaction algorithm (and so the
    /// signature and event ID) and, for 12, the create event's form.
    pub room_version: &'a RoomVersionId,
    /// The room; `None` only for a room version 12 `m.room.create`.
    pub room_id: Option<&'a RoomId>,
    /// The sender, a user of the signing server.
    pub sender: &'a UserId,
    /// The event type, e.g. `m.room.message`.
    pub event_type: &'a str,
    /// The state key, for state events.
    pub state_key: Option<&'a str>,
    /// The content, a JSON object (canonical JSON: integers within ±2^53,
    /// no floats).
    pub content: &'a serde_json::Value,
    /// For `m.room.redaction` in room version 10: the top-level `redacts`
    /// (versions 11 and later carry it in `content.redacts`, which the
    /// caller puts there).
    pub redacts: Option<&'a EventId>,
    /// The forward extremities this event follows (at most 20).
    pub prev_events: &'a [OwnedEventId],
    /// The state events that authorize it (see
    /// [`ruma::state_res::auth_types_for_event`]).
    pub auth_events: &'a [OwnedEventId],
    /// One more than the largest depth of `prev_events` (1 for the create).
    pub depth: u64,
    /// The sending server's clock at creation.
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
}

/// Builds, hashes and signs a PDU: canonical JSON of the template's fields,
/// `hashes.sha256` (content hash), `signatures.<server>.<key id>` over the
/// redacted event, and the event ID from the reference hash.
///
/// Errors: [`EventError::UnsupportedRoomVersion`], [`EventError::NotCanonical`]
/// (content with floats or out-of-range integers, content not an object),
/// [`EventError::Signing`] (PDU larger than 65536 bytes).
pub fn build_pdu(template: &PduTemplate<'_>, signer: &Signer) -> Result<Pdu, EventError> {
    let rules = rules(template.room_version)?;
    let content = to_canonical_value(template.content)?;
    if !matches!(content, CanonicalJsonValue::Object(_)) {
        return Err(EventError::Malformed("content is not a JSON object".into()));
    }
    let ids = |ids: &[OwnedEventId]| {
        CanonicalJsonValue::Array(
            ids.iter()
                .map(|id| CanonicalJsonValue::String(id.to_string()))
                .collect(),
        )
    };
    let mut object = CanonicalJsonObject::new();
    object.insert("auth_events".into(), ids(template.auth_events));
    object.insert("content".into(), content);
    object.insert("depth".into(), to_canonical_value(template.depth)?);
    object.insert(
        "hashes".into(),
        CanonicalJsonValue::Object(Default::default()),
    );
    object.insert(
        "origin_server_ts".into(),
        to_canonical_value(template.origin_server_ts)?,
    );
    object.insert("prev_events".into(), ids(template.prev_events));
    if let Some(room_id) = template.room_id {
        object.insert("room_id".into(), room_id.as_str().into());
    }
    object.insert("sender".into(), template.sender.as_str().into());
    object.insert(
        "signatures".into(),
        CanonicalJsonValue::Object(Default::default()),
    );
    if let Some(state_key) = template.state_key {
        object.insert("state_key".into(), state_key.into());
    }
    object.insert("type".into(), template.event_type.into());
    if let Some(redacts) = template.redacts {
        object.insert("redacts".into(), redacts.as_str().into());
    }
    hash_and_sign_event(
        signer.server_name.as_str(),
        signer.key.as_ref(),
        &mut object,
        &rules.redaction,
    )?;
    let event_id = event_id_of(&object, template.room_version)?;
    Pdu::from_object(event_id, &object)
}

/// `$` ++ the reference hash of a hashed and signed event object.
fn event_id_of(
    object: &CanonicalJsonObject,
    version: &RoomVersionId,
) -> Result<OwnedEventId, EventError> {
    let hash = reference_hash(object, &rules(version)?)?;
    OwnedEventId::try_from(format!("${hash}")).map_err(|e| EventError::Malformed(e.to_string()))
}

/// Recomputes a PDU's event ID from its JSON (for checks and tests).
pub fn recompute_event_id(pdu: &Pdu, version: &RoomVersionId) -> Result<OwnedEventId, EventError> {
    event_id_of(&pdu.to_object(), version)
}

/// The room ID a room version 12 `m.room.create` event defines: `!` ++ its
/// reference hash (the event ID with `!` for `$`).
///
/// Errors: [`EventError::Malformed`] if the ID does not parse (never for an
/// event ID made by [`build_pdu`]).
pub fn room_id_of_create(create_event_id: &EventId) -> Result<OwnedRoomId, EventError> {
    RoomId::new_v2(&create_event_id.as_str()[1..]).map_err(|e| EventError::Malformed(e.to_string()))
}

/// The PDU redacted by the algorithm of `version`: content reduced to the
/// keys that version keeps for its type, top-level keys outside the PDU
/// format dropped. The event ID is unchanged (it covers the redacted form).
/// The redaction event itself is the caller's to record (clients get it in
/// their format as `unsigned.redacted_because`).
///
/// Errors: [`EventError::UnsupportedRoomVersion`], [`EventError::Redaction`].
pub fn redact(pdu: &Pdu, version: &RoomVersionId) -> Result<CanonicalJsonObject, EventError> {
    let rules = rules(version)?;
    Ok(ruma::canonical_json::redact(
        pdu.to_object(),
        &rules.redaction,
        None,
    )?)
}

/// The form of `pdu` that authorization reads once a redaction applies to
/// it: the PDU redacted by `rules` (same event ID). The spec's auth rules
/// read auth events as they are after redaction, so a redacted
/// `m.room.power_levels` of room version 10 has lost its `invite` level
/// and a redacted `m.room.join_rules` of version 10 its `allow` list
/// (spec: "Redactions" in each room version; Synapse prunes redacted
/// events when it loads them, auth included).
///
/// Errors: [`EventError::Redaction`], [`EventError::Malformed`].
pub fn redacted_pdu(pdu: &Pdu, rules: &RedactionRules) -> Result<Pdu, EventError> {
    let object = ruma::canonical_json::redact(pdu.to_object(), rules, None)?;
    Pdu::from_object(pdu.event_id().clone(), &object)
}

/// Checks `pdu` against the authorization rules of `version`: its format,
/// the state-independent rules against its `auth_events` (looked up in
/// `auth_events`), and the state-dependent rules against `state`, the room
/// state before the event (`(type, state_key) -> event`). Both hold each
/// event in the form authorization reads: redacted where a redaction
/// applies ([`redacted_pdu`]).
///
/// Returns the rule that failed as text; the caller maps it to M_FORBIDDEN.
pub fn check_auth(
    pdu: &Pdu,
    version: &RoomVersionId,
    auth_events: &HashMap<OwnedEventId, Pdu>,
    state: &HashMap<(StateEventType, String), Pdu>,
) -> Result<(), String> {
    let rules = rules(version).map_err(|e| e.to_string())?;
    ruma::state_res::check_pdu_format(&pdu.to_object(), &rules.event_format)?;
    check_state_independent_auth_rules(&rules.authorization, pdu, |id: &EventId| {
        auth_events.get(id)
    })?;
    check_state_dependent_auth_rules(&rules.authorization, pdu, |kind: &StateEventType, key| {
        state.get(&(kind.clone(), key.to_owned()))
    })
}
