//! Storage of the `rooms` database: events, the room DAG's forward
//! extremities, current state, the state-change log, timelines, memberships
//! and client transaction IDs. Its key schema is in [`keys`]; the design
//! and cost model in `docs/rooms.md`.
//!
//! Every event is appended by one transaction ([`RoomsDb::send`]; room
//! creation appends its initial events, and writes the room's alias and
//! directory listing, in one transaction too) that reads
//! the forward extremities with snapshot reads, reads the state its
//! authorization depends on with ordinary (conflicting) reads, builds,
//! signs and authorizes the PDU ([`crate::events`]), and writes the event,
//! its stream position, timeline entries, extremities and, for state
//! events, current state, the state-change log and memberships. Invariants:
//! - a rejected event writes nothing;
//! - `rooms/state`, `rooms/member` and `memberships/user_room` always agree
//!   with the fold of `state_log` (they are written in the same
//!   transaction);
//! - every stored event has exactly one `events/pdu` record (whose first 12
//!   bytes are its stream position), one `timeline/stream` and one
//!   `timeline/topological` entry, all holding the same stream position;
//! - concurrent message sends never conflict with each other: they share
//!   no key in their read-conflict sets (extremities are read at snapshot
//!   isolation, writes are blind).
//!
//! Who may import this: `db` (to open it), `service` and `sync`; never the
//! other databases. It never imports axum.

mod directory;
pub mod keys;
mod purge;
mod read;
mod receipts;
mod relations;
mod send;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use foundationdb_tuple::Versionstamp;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomVersionId};
use serde::{Deserialize, Serialize};

use crate::db::codec::{Corrupt, decode, encode, unpack};
use crate::events::EventError;
use crate::keys::{Directories, Space};
use crate::kv::{self, TransactError};
use crate::random::Random;

pub use directory::Unname;
pub use purge::{PURGE_PAGE, PurgeStep};
pub use read::{Direction, EVENTS_PER_TRANSACTION, PAGE_KEYS, StoredPdu, TimelineEntry};
pub use receipts::{ReceiptRecord, ReceiptUpdate};
pub use relations::{Relation, RelationsOf};
pub use send::{Append, MAX_BATCH_EVENTS, MAX_PREV_EVENTS, NewEvent, NewRoom, Sent, TxnKey};

/// Errors of the `rooms` storage boundary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key-value store failed (after retries, where retryable).
    #[error(transparent)]
    Kv(#[from] kv::Error),
    /// The room does not exist here.
    #[error("room {0} not found")]
    RoomNotFound(OwnedRoomId),
    /// Room creation was asked to create an alias that exists already;
    /// nothing was stored.
    #[error("room alias {0} is taken")]
    AliasTaken(OwnedRoomAliasId),
    /// The event failed the authorization rules of its room version; nothing
    /// was stored. The text names the failed rule. Maps to M_FORBIDDEN.
    #[error("event not authorized: {0}")]
    NotAuthorized(String),
    /// The event could not be built (content not canonical JSON, too large).
    #[error(transparent)]
    Event(#[from] EventError),
    /// A stored value did not decode: the store is corrupt or was written by
    /// an incompatible version.
    #[error("corrupt value in rooms/{subspace}")]
    Corrupt {
        /// The subspace's name in `keys.rs`.
        subspace: &'static str,
        /// What failed to decode.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether the failure is an authorization refusal (M_FORBIDDEN).
    pub fn is_not_authorized(&self) -> bool {
        matches!(self, Error::NotAuthorized(_))
    }

    fn corrupt(
        subspace: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Corrupt::new(subspace, source).into()
    }
}

impl From<Corrupt> for Error {
    fn from(c: Corrupt) -> Self {
        Error::Corrupt {
            subspace: c.subspace,
            source: c.source,
        }
    }
}

impl TransactError for Error {
    fn as_kv(&self) -> Option<&kv::Error> {
        match self {
            Error::Kv(e) => Some(e),
            _ => None,
        }
    }
}

/// Result of the `rooms` storage boundary.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `rooms/room`: a room's immutable facts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRecord {
    /// The room version (`"10"`, `"11"`, `"12"`).
    pub version: RoomVersionId,
    /// The creator (the create event's sender).
    pub creator: OwnedUserId,
    /// The `m.room.create` event.
    pub create_event_id: OwnedEventId,
}

/// `rooms/member` and `memberships/user_room`: a current membership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// `join`, `invite`, `leave`, `ban` or `knock`, stored as that string
    /// (ruma's serialization), so the record's bytes are those of the
    /// string it replaced.
    pub membership: MembershipState,
    /// The `m.room.member` event that set it.
    pub event_id: OwnedEventId,
}

/// `events/pdu`: a stored event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The room (stored because a room version 12 create event has no
    /// `room_id` field).
    pub room_id: OwnedRoomId,
    /// The signed canonical JSON, without `event_id` and `unsigned`.
    pub json: String,
    /// What `unsigned` needs that the PDU does not hold; left out of the
    /// record when empty.
    #[serde(default, skip_serializing_if = "EventMeta::is_empty")]
    pub meta: EventMeta,
}

/// `state_log/change`: one state change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    /// The event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The state key.
    pub state_key: String,
    /// The state event.
    pub event_id: OwnedEventId,
}

/// What the client format's `unsigned` needs that the PDU does not hold,
/// part of the event's `events/pdu` record (written once, in the event's
/// send transaction).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMeta {
    /// The sending device and its transaction ID (shown as
    /// `unsigned.transaction_id` to that device only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<(String, String)>,
    /// For a state event, the state event it replaced (`replaces_state`,
    /// and the source of `prev_content`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces_state: Option<OwnedEventId>,
}

impl EventMeta {
    /// Whether no field is set (the record then leaves it out).
    pub fn is_empty(&self) -> bool {
        self.txn.is_none() && self.replaces_state.is_none()
    }
}

/// `aliases/alias`: a local room alias.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasRecord {
    /// The room it names.
    pub room_id: OwnedRoomId,
    /// Who created it (may delete it without power).
    pub creator: OwnedUserId,
}

/// A position in the `rooms` database: a commit versionstamp of its store,
/// the `rooms` part of a sync token. An event's place inside a commit is a
/// [`StreamPosition`].
pub type Position = crate::db::Position<RoomsDb>;

/// A position in the rooms stream: the commit versionstamp of the event's
/// transaction and the event's order within it ([`Position`] plus two
/// bytes, so an event position is not a commit position). Totally ordered, byte-wise;
/// formats as 24 lowercase hex digits (what sync and `/messages` compose
/// into their tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamPosition(pub [u8; 12]);

impl StreamPosition {
    /// The smallest position (before every event).
    pub const MIN: StreamPosition = StreamPosition([0; 12]);

    /// The position of event `order` of the commit with `versionstamp`.
    pub fn new(versionstamp: [u8; 10], order: u16) -> Self {
        let mut out = [0; 12];
        out[..10].copy_from_slice(&versionstamp);
        out[10..].copy_from_slice(&order.to_be_bytes());
        StreamPosition(out)
    }

    /// The last stream position of the commit at `position`: a sync
    /// token's rooms part ("every commit up to this one") as an inclusive
    /// upper bound.
    pub fn end_of_commit(position: Position) -> Self {
        StreamPosition::new(position.to_bytes(), u16::MAX)
    }

    /// The next position (saturating), to turn an inclusive bound into an
    /// exclusive one.
    pub fn successor(self) -> Self {
        let n = u128::from_be_bytes({
            let mut b = [0; 16];
            b[4..].copy_from_slice(&self.0);
            b
        });
        let n = (n + 1).min((1u128 << 96) - 1);
        let mut out = [0; 12];
        out.copy_from_slice(&n.to_be_bytes()[4..]);
        StreamPosition(out)
    }

    /// The previous position (saturating at [`StreamPosition::MIN`]).
    pub fn predecessor(self) -> Self {
        let n = u128::from_be_bytes({
            let mut b = [0; 16];
            b[4..].copy_from_slice(&self.0);
            b
        });
        let mut out = [0; 12];
        out.copy_from_slice(&n.saturating_sub(1).to_be_bytes()[4..]);
        StreamPosition(out)
    }

    /// As a complete tuple versionstamp, for keys.
    pub(crate) fn to_tuple(self) -> Versionstamp {
        Versionstamp::from(self.0)
    }
}

impl fmt::Display for StreamPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A string that is not 24 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("invalid stream position {0:?}")]
pub struct ParsePositionError(String);

impl FromStr for StreamPosition {
    type Err = ParsePositionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s).map_err(|_| ParsePositionError(s.to_owned()))?;
        let arr: [u8; 12] = bytes
            .try_into()
            .map_err(|_| ParsePositionError(s.to_owned()))?;
        Ok(StreamPosition(arr))
    }
}

/// The resolved directories of the `rooms` database.
struct Layout {
    rooms: Space,
    events: Space,
    timeline: Space,
    state_log: Space,
    memberships: Space,
    txns: Space,
    aliases: Space,
    public_rooms: Space,
    receipts: Space,
    relations: Space,
    /// The notification keys (`meta/notify`, `meta/wake`), bumped by
    /// every write sync delivers.
    notify: crate::db::notify::Keys,
    /// Committed events by ID (`read::EventCache`).
    cache: read::EventCache,
    /// Which forward extremities beyond the deepest a send names.
    random: Random,
}

impl crate::metrics::CacheStats for Layout {
    fn sample(&self) -> crate::metrics::CacheSample {
        self.cache.sample()
    }
}

/// A handle on the `rooms` database. Cheap to clone.
#[derive(Clone)]
pub struct RoomsDb {
    db: kv::Database,
    layout: Arc<Layout>,
}

impl RoomsDb {
    /// The `rooms` database of an opened [`crate::db::Databases`].
    pub fn new(handle: &crate::db::Handle) -> Self {
        RoomsDb::from_dirs(handle.db.clone(), &handle.dirs, Random::default())
    }

    /// The `rooms` database on `db` with resolved `dirs`; a send that finds
    /// more forward extremities than [`MAX_PREV_EVENTS`] samples them from
    /// `random` (tests pass a seeded one).
    pub fn from_dirs(db: kv::Database, dirs: &Directories, random: Random) -> Self {
        let layout = Arc::new(Layout {
            rooms: dirs.space(&keys::ROOMS).clone(),
            events: dirs.space(&keys::EVENTS).clone(),
            timeline: dirs.space(&keys::TIMELINE).clone(),
            state_log: dirs.space(&keys::STATE_LOG).clone(),
            memberships: dirs.space(&keys::MEMBERSHIPS).clone(),
            txns: dirs.space(&keys::TXNS).clone(),
            aliases: dirs.space(&keys::ALIASES).clone(),
            public_rooms: dirs.space(&keys::PUBLIC_ROOMS).clone(),
            receipts: dirs.space(&keys::RECEIPTS).clone(),
            relations: dirs.space(&keys::RELATIONS).clone(),
            notify: crate::db::notify::Keys::of(dirs)
                .expect("rooms declares the notification keys"),
            cache: read::EventCache::new(read::EVENT_CACHE_BYTES),
            random,
        });
        // The event cache's counters are exported as `myelin_cache_*{cache="events"}`.
        crate::metrics::register_cache("events", Arc::downgrade(&layout) as _);
        RoomsDb { db, layout }
    }

    /// The underlying key-value database.
    pub fn kv(&self) -> &kv::Database {
        &self.db
    }
}

/// Decodes a UTF-8 event ID value of `subspace`.
fn decode_event_id(subspace: &'static str, bytes: &[u8]) -> Result<OwnedEventId> {
    std::str::from_utf8(bytes)
        .map_err(|e| Error::corrupt(subspace, e))
        .and_then(|s| OwnedEventId::try_from(s).map_err(|e| Error::corrupt(subspace, e)))
}

/// The last tuple element of a key, which must be a versionstamp.
fn trailing_position(subspace: &'static str, key: &[u8]) -> Result<StreamPosition> {
    // A packed complete versionstamp is 0x33 followed by 12 bytes.
    if key.len() >= 13 && key[key.len() - 13] == 0x33 {
        let mut out = [0; 12];
        out.copy_from_slice(&key[key.len() - 12..]);
        Ok(StreamPosition(out))
    } else {
        Err(Error::corrupt(
            subspace,
            "key does not end in a versionstamp",
        ))
    }
}
