//! The rooms service: the business rules between the HTTP API (and sync)
//! and the `rooms` storage.
//!
//! `api` handlers parse a request, call one method here and map the result;
//! this layer composes events (createRoom presets, membership changes,
//! messages, state, redactions), decides who may read what
//! (history visibility and membership, checked here on the server, see
//! the `visibility` module), and calls [`crate::db::rooms`], whose send transaction
//! builds, signs and authorizes each event with the room version's rules
//! and stores it atomically. It knows nothing of HTTP: failures are
//! [`Error`] values for `api::error` to map to Matrix error codes.
//!
//! The server's name and signing key come from the caller (the key is
//! loaded once per process, from the accounts database, and handed to
//! [`Rooms::open`]). Profiles
//! (display names in member events, the user directory) and the
//! `m.fully_read` marker are read and written through the accounts service
//! ([`Rooms::with_accounts`]): this is where the two databases meet; the
//! storage layers never import each other.
//!
//! Who may import this: `api`, `sync` and `app`.

mod blocked;
mod create;
mod directory;
mod membership;
mod messages;
mod receipts;
mod relations;
mod sync_reads;
mod visibility;

use std::sync::Arc;

use ruma::events::room::member::MembershipState;
use ruma::signatures::Ed25519KeyPair;
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedServerName, RoomId, RoomVersionId,
    UInt, UserId,
};
use serde_json::json;

use crate::db::rooms::{self as store, Append, NewEvent, RoomsDb, TxnKey};
use crate::events::{self, EventError, Signer};
use crate::service::Accounts;
use crate::service::clock::Clock;

pub use crate::db::rooms::{
    Direction, MemberRecord, ReceiptRecord, RelationsOf, Sent, StreamPosition,
};
pub use create::{CreateRoom, MAX_INITIAL_EVENTS, Preset};
pub use directory::{PublicRoom, PublicRoomsPage, UserResult};
pub use messages::{Context, EventFilter, MembersQuery, Messages};
pub use relations::RelationsPage;

/// One page of a paginated read (`/messages`, `/relations`): from cut
/// `from` (the end `dir` starts at if `None`) towards cut `to` (the other
/// end if `None`), at most `limit` events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// Where the page starts.
    pub from: Option<StreamPosition>,
    /// Where reading stops at the latest.
    pub to: Option<StreamPosition>,
    /// Backward (newest first) or forward.
    pub dir: Direction,
    /// Most events in the page.
    pub limit: usize,
}

impl Page {
    /// The exclusive stream bounds `(after, before)` of the page.
    fn bounds(&self) -> (Option<StreamPosition>, Option<StreamPosition>) {
        match self.dir {
            Direction::Backward => (self.to.map(StreamPosition::predecessor), self.from),
            Direction::Forward => (self.from.map(StreamPosition::predecessor), self.to),
        }
    }
}

/// Who is reading: the user, and the device whose request it is (which
/// sees `unsigned.transaction_id` of its own sends). Built from a user
/// alone for reads without a device (sync of another device, tools).
#[derive(Clone, Copy, Debug)]
pub struct Viewer<'a> {
    /// The reading user.
    pub user: &'a UserId,
    /// The reading device, if any.
    pub device: Option<&'a str>,
}

impl<'a> From<&'a UserId> for Viewer<'a> {
    fn from(user: &'a UserId) -> Self {
        Viewer { user, device: None }
    }
}

impl<'a> From<&'a ruma::OwnedUserId> for Viewer<'a> {
    fn from(user: &'a ruma::OwnedUserId) -> Self {
        Viewer { user, device: None }
    }
}

/// Why a rooms service call failed. Each variant is one Matrix error
/// condition.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not allowed: an authorization rule failed, or the user may not see
    /// or do this (M_FORBIDDEN).
    #[error("{0}")]
    Forbidden(String),
    /// The room or event does not exist, or the user may not see it
    /// (M_NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// A parameter has an invalid value (M_INVALID_PARAM).
    #[error("{0}")]
    InvalidParam(String),
    /// The content is not valid canonical JSON or not an object (M_BAD_JSON).
    #[error("{0}")]
    BadJson(String),
    /// The event would exceed 65536 bytes (M_TOO_LARGE).
    #[error("event too large")]
    TooLarge,
    /// The requested room version is not supported
    /// (M_UNSUPPORTED_ROOM_VERSION).
    #[error("unsupported room version {0}")]
    UnsupportedRoomVersion(String),
    /// The room alias exists already (409 M_UNKNOWN for `PUT
    /// /directory/room`, 400 M_ROOM_IN_USE for createRoom's
    /// `room_alias_name`).
    #[error("room alias {0} is taken")]
    AliasInUse(String),
    /// An `m.room.canonical_alias` names an alias that does not point to
    /// the room (400 M_BAD_ALIAS).
    #[error("{0}")]
    BadAlias(String),
    /// createRoom's `room_alias_name` is taken (400 M_ROOM_IN_USE).
    #[error("room alias {0} is taken")]
    RoomInUse(String),
    /// A profile read through the accounts service failed.
    #[error(transparent)]
    Accounts(Box<crate::service::Error>),
    /// The storage failed.
    #[error(transparent)]
    Storage(store::Error),
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::NotAuthorized(why) => Error::Forbidden(why),
            store::Error::RoomNotFound(room) => Error::NotFound(format!("room {room} not found")),
            store::Error::Event(e) => e.into(),
            other => Error::Storage(other),
        }
    }
}

impl From<EventError> for Error {
    fn from(e: EventError) -> Self {
        match e {
            EventError::UnsupportedRoomVersion(v) => Error::UnsupportedRoomVersion(v.to_string()),
            EventError::Signing(ruma::signatures::JsonError::PduTooLarge) => Error::TooLarge,
            other => Error::BadJson(other.to_string()),
        }
    }
}

/// Result of a rooms service call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One page of a room timeline, as `/messages` and sync need it.
#[derive(Clone, Debug)]
pub struct TimelinePage {
    /// The visible events in the order read, each with its stream position,
    /// in the client-server format.
    pub events: Vec<(StreamPosition, serde_json::Value)>,
    /// Where the next page starts (exclusive), if the read filled its limit.
    pub next: Option<StreamPosition>,
}

impl From<crate::service::Error> for Error {
    fn from(e: crate::service::Error) -> Self {
        Error::Accounts(Box::new(e))
    }
}

/// The rooms service. Cheap to clone.
#[derive(Clone)]
pub struct Rooms {
    db: RoomsDb,
    signer: Signer,
    clock: Arc<dyn Clock>,
    default_version: RoomVersionId,
    accounts: Option<Arc<Accounts>>,
}

impl Rooms {
    /// The service over `db`, signing as `server_name` with `key` (owned,
    /// or shared with other signers).
    pub fn new(
        db: RoomsDb,
        server_name: OwnedServerName,
        key: impl Into<Arc<Ed25519KeyPair>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Rooms {
            db,
            signer: Signer {
                server_name,
                key: key.into(),
            },
            clock,
            default_version: events::DEFAULT_ROOM_VERSION,
            accounts: None,
        }
    }

    /// The service over opened `databases`, signing as the accounts
    /// service's server with `signing_key` (loaded once per process, by the
    /// caller), with profiles and markers through `accounts`.
    pub fn open(
        databases: &crate::db::Databases,
        accounts: Arc<Accounts>,
        signing_key: &crate::service::SigningKey,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let server_name = accounts.server_name().to_owned();
        Rooms::new(
            RoomsDb::new(&databases.rooms),
            server_name,
            signing_key.shared_pair(),
            clock,
        )
        .with_accounts(accounts)
    }

    /// The same service reading profiles and writing `m.fully_read`
    /// through `accounts`.
    pub fn with_accounts(mut self, accounts: Arc<Accounts>) -> Self {
        self.accounts = Some(accounts);
        self
    }

    /// The server's name.
    pub fn server_name(&self) -> &ruma::ServerName {
        &self.signer.server_name
    }

    /// The same service creating rooms of `version` by default.
    ///
    /// Errors: [`Error::UnsupportedRoomVersion`] outside versions 10 to 12.
    pub fn with_default_version(mut self, version: RoomVersionId) -> Result<Self> {
        events::rules(&version)?;
        self.default_version = version;
        Ok(self)
    }

    /// The default room version for new rooms.
    pub fn default_version(&self) -> &RoomVersionId {
        &self.default_version
    }

    /// The storage handle (for sync and tools).
    pub fn db(&self) -> &RoomsDb {
        &self.db
    }

    /// The server's event signer, for tools and tests that write events at
    /// the db level ([`RoomsDb::append_state_batch`]).
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    fn now(&self) -> MilliSecondsSinceUnixEpoch {
        MilliSecondsSinceUnixEpoch(UInt::new_saturating(self.clock.now_ms()))
    }

    async fn send_event(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        txn: Option<&TxnKey>,
        event: NewEvent,
    ) -> Result<Sent> {
        if !event.content.is_object() {
            return Err(Error::BadJson("content must be a JSON object".into()));
        }
        Ok(self
            .db
            .send(
                &self.signer,
                &Append {
                    room_id,
                    sender,
                    event: &event,
                    txn,
                    now: self.now(),
                },
                None,
            )
            .await?)
    }

    /// `PUT /rooms/{roomId}/send/{eventType}/{txnId}`: sends a message
    /// event. Idempotent per (sender, device, txn_id): a repeat returns the
    /// first event (`deduplicated`), also after a restart.
    pub async fn send_message(
        &self,
        sender: &UserId,
        device_id: &str,
        room_id: &RoomId,
        event_type: &str,
        txn_id: &str,
        content: serde_json::Value,
    ) -> Result<Sent> {
        let txn = TxnKey {
            user_id: sender.to_owned(),
            device_id: device_id.to_owned(),
            txn_id: txn_id.to_owned(),
        };
        self.send_event(
            sender,
            room_id,
            Some(&txn),
            NewEvent {
                event_type: event_type.to_owned(),
                state_key: None,
                content,
            },
        )
        .await
    }

    /// `PUT /rooms/{roomId}/state/{eventType}/{stateKey}`.
    pub async fn send_state(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
        content: serde_json::Value,
    ) -> Result<Sent> {
        if event_type == "m.room.member" || event_type == "m.room.create" {
            return Err(Error::InvalidParam(format!(
                "{event_type} is set through the membership endpoints or createRoom"
            )));
        }
        if event_type == "m.room.canonical_alias" {
            self.check_canonical_alias(room_id, &content).await?;
        }
        self.send_event(
            sender,
            room_id,
            None,
            NewEvent {
                event_type: event_type.to_owned(),
                state_key: Some(state_key.to_owned()),
                content,
            },
        )
        .await
    }

    /// `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`: allowed to the
    /// event's sender and to users at the `redact` power level.
    pub async fn redact(
        &self,
        sender: &UserId,
        device_id: &str,
        room_id: &RoomId,
        event_id: &OwnedEventId,
        txn_id: &str,
        reason: Option<&str>,
    ) -> Result<Sent> {
        let target = self
            .db
            .event(event_id)
            .await?
            .filter(|e| e.room_id == room_id)
            .ok_or_else(|| Error::NotFound(format!("event {event_id} not found")))?;
        if target.pdu.sender() != sender {
            let (level, needed) =
                visibility::power(&self.db, room_id, sender, "redact", 50).await?;
            if level < needed {
                return Err(Error::Forbidden(
                    "you may only redact your own events at your power level".into(),
                ));
            }
        }
        let mut content = json!({ "redacts": event_id });
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        let txn = TxnKey {
            user_id: sender.to_owned(),
            device_id: device_id.to_owned(),
            txn_id: txn_id.to_owned(),
        };
        self.send_event(
            sender,
            room_id,
            Some(&txn),
            NewEvent {
                event_type: "m.room.redaction".into(),
                state_key: None,
                content,
            },
        )
        .await
    }

    /// `GET /joined_rooms`: the rooms `user` is joined to. One range read.
    pub async fn joined_rooms(&self, user: &UserId) -> Result<Vec<OwnedRoomId>> {
        Ok(self
            .db
            .rooms_of_user(user)
            .await?
            .into_iter()
            .filter(|(_, m)| m.membership == MembershipState::Join)
            .map(|(room, _)| room)
            .collect())
    }

    /// Every room `user` has a membership in, with it (for sync).
    pub async fn rooms_of_user(&self, user: &UserId) -> Result<Vec<(OwnedRoomId, MemberRecord)>> {
        Ok(self.db.rooms_of_user(user).await?)
    }
}
