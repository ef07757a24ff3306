//! Matrix PDUs: building, hashing, signing, redacting and authorizing room
//! events for room versions 10, 11 and 12. Pure work: no I/O, no clock.
//!
//! What it owns:
//! - [`Pdu`]: one event in its federation form (the canonical JSON a server
//!   signs and stores) with its event ID and the fields authorization reads.
//!   It implements [`ruma::state_res::Event`], so ruma's authorization rules
//!   run on it directly.
//! - [`build_pdu`]: a [`PduTemplate`] (room version, room, sender, type,
//!   state key, content, `prev_events`, `auth_events`, depth, timestamp) turned
//!   into a signed PDU: content hash (`hashes.sha256`), ed25519 signature of
//!   the redacted event by the server key, and the event ID `$` ++ reference
//!   hash (URL-safe unpadded base64; room versions 4 and later). For room
//!   version 12 the `m.room.create` event carries no `room_id` and the room ID
//!   is `!` ++ its reference hash ([`room_id_of_create`]).
//! - [`redact`]: the redaction algorithm of the event's room version.
//! - [`check_auth`]: the spec's authorization rules (via ruma-state-res)
//!   against the auth events and the state before the event, each in its
//!   redacted form where a redaction applies ([`redacted_pdu`]).
//!
//! Invariants: a [`Pdu`]'s `event_id` is the reference hash of its JSON (for
//! every PDU [`build_pdu`] makes; [`Pdu::from_stored`] trusts the store),
//! and its JSON never contains `event_id` or `unsigned` (room versions 3 and
//! later derive the ID; `unsigned` is per-reader and added when served).
//!
//! Sources: <https://spec.matrix.org/v1.16/server-server-api/#pdus>,
//! <https://spec.matrix.org/v1.16/rooms/v11/>, <https://spec.matrix.org/v1.16/rooms/v12/>,
//! and the appendices on canonical JSON and signing.
//!
//! Who may import this: `db::rooms` (the send transaction builds and checks
//! events), `service::rooms`, and later federation. Never `kv`.

mod build;
mod pdu;
#[cfg(test)]
mod tests;

pub use build::{
    PduTemplate, Signer, build_pdu, check_auth, recompute_event_id, redact, redacted_pdu,
    room_id_of_create,
};
pub use pdu::Pdu;

use ruma::RoomVersionId;
use ruma::room_version_rules::RoomVersionRules;

/// The room versions Myelin creates and serves.
pub const SUPPORTED_ROOM_VERSIONS: [RoomVersionId; 3] =
    [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12];

/// The default room version for new rooms (configurable by callers).
pub const DEFAULT_ROOM_VERSION: RoomVersionId = RoomVersionId::V11;

/// Why an event could not be built, parsed or redacted.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The room version is not one of [`SUPPORTED_ROOM_VERSIONS`].
    #[error("unsupported room version {0}")]
    UnsupportedRoomVersion(RoomVersionId),
    /// The content or a field does not convert to canonical JSON (floats,
    /// integers beyond 2^53).
    #[error("event is not canonical JSON: {0}")]
    NotCanonical(#[from] ruma::CanonicalJsonError),
    /// Hashing or signing failed (e.g. the PDU exceeds 65536 bytes).
    #[error("cannot hash or sign event: {0}")]
    Signing(#[from] ruma::signatures::JsonError),
    /// Redaction failed on a malformed event.
    #[error("cannot redact event: {0}")]
    Redaction(#[from] ruma::canonical_json::CanonicalJsonFieldError),
    /// The stored or built JSON lacks a field or has a wrong type.
    #[error("malformed PDU: {0}")]
    Malformed(String),
}

/// The rules of a supported room version.
///
/// Errors: [`EventError::UnsupportedRoomVersion`] outside versions 10 to 12.
pub fn rules(version: &RoomVersionId) -> Result<RoomVersionRules, EventError> {
    match version {
        RoomVersionId::V10 => Ok(RoomVersionRules::V10),
        RoomVersionId::V11 => Ok(RoomVersionRules::V11),
        RoomVersionId::V12 => Ok(RoomVersionRules::V12),
        other => Err(EventError::UnsupportedRoomVersion(other.clone())),
    }
}
