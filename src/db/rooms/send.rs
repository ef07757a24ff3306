//! The send path: appending an event to a room in one transaction, and
//! creating a room with its initial events, alias and directory listing in
//! one transaction.
//!
//! Conflict design (see `docs/rooms.md`): forward extremities and the room
//! record are snapshot reads; the state keys authorization depends on
//! (create, power levels, join rules, sender's and target's membership, and
//! for a state event the key it replaces) are ordinary reads, so a
//! concurrent change of any of them aborts and retries this send, while two
//! concurrent message sends share nothing in their read sets and both
//! commit, leaving two forward extremities.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use foundationdb_tuple::Versionstamp;
use ruma::events::room::member::MembershipState;
use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::auth_types_for_event;
use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomAliasId,
    RoomId, RoomVersionId, UserId,
};

use super::{
    Error, EventMeta, Layout, MemberRecord, Result, RoomRecord, RoomsDb, StateChange, StoredEvent,
    StreamPosition, decode, decode_event_id, encode, keys, unpack,
};
use crate::db::notify::{self, Topic};
use crate::events::{self, EventError, Pdu, PduTemplate, Signer, build_pdu, check_auth};
use crate::kv::{MutationType, RangeOption, Transaction};

/// At most this many forward extremities (the PDU format's limit) become
/// `prev_events` of a new event: the deepest one and a random sample of the
/// others (drawn from the handle's [`crate::random::Random`]), so
/// concurrent senders that saw the same extremities merge different ones;
/// the rest stay extremities for the next event.
pub const MAX_PREV_EVENTS: usize = 20;

/// Most events [`RoomsDb::append_state_batch`] appends in one transaction.
pub const MAX_BATCH_EVENTS: usize = 1_000;

/// An event to append, as the sender asks for it.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// The event type.
    pub event_type: String,
    /// The state key, for state events.
    pub state_key: Option<String>,
    /// The content (a JSON object). For `m.room.redaction` it holds
    /// `redacts` (room versions 11 and later read it there; for 10 the
    /// top-level field is set from it too).
    pub content: serde_json::Value,
}

/// A room for [`RoomsDb::create_room`] to create: everything its one
/// transaction writes.
#[derive(Clone, Copy, Debug)]
pub struct NewRoom<'a> {
    /// The room version.
    pub version: &'a RoomVersionId,
    /// The room's ID for versions 10 and 11 (the caller makes it unique);
    /// version 12 derives it from the create event and ignores this.
    pub room_id: &'a RoomId,
    /// The creator: the sender of every initial event.
    pub creator: &'a UserId,
    /// The `m.room.create` content; `room_version` (and for version 10
    /// `creator`) are added to it.
    pub create_content: &'a serde_json::Value,
    /// The events after the create event, in order.
    pub initial: &'a [NewEvent],
    /// A local alias to create for the room (createRoom's
    /// `room_alias_name`); the creation fails if it exists.
    pub alias: Option<&'a RoomAliasId>,
    /// Whether to publish the room in the public room directory.
    pub listed: bool,
    /// The events' `origin_server_ts`.
    pub now: MilliSecondsSinceUnixEpoch,
}

/// A client transaction ID, scoped to the sending device and the room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnKey {
    /// The sender.
    pub user_id: OwnedUserId,
    /// The sending device.
    pub device_id: String,
    /// The client's transaction ID.
    pub txn_id: String,
}

/// One event to append, with its sender and time: what [`RoomsDb::send`]
/// authorizes and writes.
#[derive(Clone, Copy, Debug)]
pub struct Append<'a> {
    /// The room.
    pub room_id: &'a RoomId,
    /// The sender.
    pub sender: &'a UserId,
    /// The event.
    pub event: &'a NewEvent,
    /// The client transaction ID, for an idempotent send.
    pub txn: Option<&'a TxnKey>,
    /// The event's `origin_server_ts`.
    pub now: MilliSecondsSinceUnixEpoch,
}

/// What a send did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The event's ID.
    pub event_id: OwnedEventId,
    /// Its stream position.
    pub position: StreamPosition,
    /// Whether the transaction ID had been used: nothing was written and
    /// this is the earlier event.
    pub deduplicated: bool,
}

enum Outcome {
    New(OwnedEventId),
    Existing(OwnedEventId),
}

impl RoomsDb {
    /// Appends one event to its room, authorized against the current state,
    /// in one transaction. With a `txn`, a repeat of the same (user, device,
    /// transaction ID) returns the first event and writes nothing, also
    /// across restarts. `attempts`, if given, counts transaction attempts
    /// (for contention measurements).
    ///
    /// Errors: [`Error::RoomNotFound`], [`Error::NotAuthorized`] (nothing
    /// stored), [`Error::Event`], and the store's.
    pub async fn send(
        &self,
        signer: &Signer,
        append: &Append<'_>,
        attempts: Option<&AtomicU32>,
    ) -> Result<Sent> {
        let (room_id, txn) = (append.room_id, append.txn);
        // Safe to run twice with a `txn`: a retry after an attempt that
        // committed finds the transaction ID and returns that event. Without
        // one (state and membership changes through the service), a state
        // event the current state already holds (same sender and content:
        // `unchanged_state`) is not sent again, so a retried join, leave,
        // kick, ban, invite, state change or profile update finds its first
        // attempt's event and writes nothing.
        let (outcome, info) = self
            .db
            .run_committed(|tx, _| async move {
                if let Some(n) = attempts {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                let txn_key = txn.map(|t| {
                    self.layout.txns.key(
                        &keys::TXN,
                        &(
                            t.user_id.as_str(),
                            t.device_id.as_str(),
                            room_id.as_str(),
                            t.txn_id.as_str(),
                        ),
                    )
                });
                if let Some(key) = &txn_key
                    && let Some(id) = tx.get(key, false).await?
                {
                    return Ok::<_, Error>(Outcome::Existing(decode_event_id("txn", &id)?));
                }
                let room = self
                    .room_in(&tx, room_id)
                    .await?
                    .ok_or_else(|| Error::RoomNotFound(room_id.to_owned()))?;
                if let Some(existing) = self.layout.unchanged_state(&tx, append).await? {
                    if let Some(key) = &txn_key {
                        tx.set(key, existing.as_bytes());
                    }
                    return Ok(Outcome::Existing(existing));
                }
                let pdu = self
                    .layout
                    .append(&tx, signer, &room, append, 0, &[])
                    .await?;
                if let Some(key) = &txn_key {
                    tx.set(key, pdu.event_id().as_bytes());
                }
                Ok(Outcome::New(pdu.event_id().clone()))
            })
            .await?;
        if matches!(outcome, Outcome::New(_)) {
            crate::metrics::event_persisted(&append.event.event_type);
        }
        match outcome {
            Outcome::New(event_id) => Ok(Sent {
                event_id,
                position: committed_position(info.versionstamp, 0)?,
                deduplicated: false,
            }),
            Outcome::Existing(event_id) => {
                let position = self.position(&event_id).await?.ok_or_else(|| {
                    Error::corrupt("txn", format!("{event_id} has no stream position"))
                })?;
                Ok(Sent {
                    event_id,
                    position,
                    deduplicated: true,
                })
            }
        }
    }

    /// Appends `events`, all state events by `sender`, to `room_id` in one
    /// transaction, each authorized against the state the ones before made
    /// (as [`RoomsDb::create_room`] writes its initial events). For
    /// imports, benchmarks and tests that build large rooms: one
    /// transaction per batch instead of one per event, and no client
    /// transaction IDs. At most [`MAX_BATCH_EVENTS`] events, so the
    /// transaction stays far within FoundationDB's 10 MB and 5 s (each
    /// event writes about 2 kB, and builds, signs and authorizes in well
    /// under a millisecond optimized). Returns the events' IDs in order.
    ///
    /// Errors: [`Error::Event`] (`Malformed`) for a batch that is too long
    /// or holds an event without a state key, [`Error::RoomNotFound`],
    /// [`Error::NotAuthorized`] naming the first rejected event (nothing
    /// stored in each case), and the store's.
    pub async fn append_state_batch(
        &self,
        signer: &Signer,
        room_id: &RoomId,
        sender: &UserId,
        events: &[NewEvent],
        now: MilliSecondsSinceUnixEpoch,
    ) -> Result<Vec<OwnedEventId>> {
        if events.len() > MAX_BATCH_EVENTS || events.iter().any(|e| e.state_key.is_none()) {
            return Err(EventError::Malformed(format!(
                "a batch holds at most {MAX_BATCH_EVENTS} events, all state events"
            ))
            .into());
        }
        // Safe to run twice: after `commit_unknown_result`
        // (MaybeCommitted) each event whose state key already holds that
        // content by `sender` (`unchanged_state`, as a retried single send
        // finds it) is not appended again and its current event's ID is
        // returned, so a retry of a batch that committed appends nothing.
        // Keys this attempt wrote itself are not checked (their events are
        // unreadable until commit, and they are new either way).
        self.db
            .run(|tx, maybe_committed| async move {
                let record = self
                    .room_in(&tx, room_id)
                    .await?
                    .ok_or_else(|| Error::RoomNotFound(room_id.to_owned()))?;
                let mut written: Vec<Pdu> = Vec::with_capacity(events.len());
                let mut written_keys = std::collections::HashSet::new();
                let mut ids = Vec::with_capacity(events.len());
                for event in events {
                    let append = Append {
                        room_id,
                        sender,
                        event,
                        txn: None,
                        now,
                    };
                    let state = (event.event_type.as_str(), event.state_key.as_deref());
                    if maybe_committed.0
                        && !written_keys.contains(&state)
                        && let Some(existing) = self.layout.unchanged_state(&tx, &append).await?
                    {
                        ids.push(existing);
                        continue;
                    }
                    let order = u16::try_from(written.len()).expect("at most MAX_BATCH_EVENTS");
                    let pdu = self
                        .layout
                        .append(&tx, signer, &record, &append, order, &written)
                        .await
                        .map_err(|e| naming(event, e))?;
                    written_keys.insert(state);
                    ids.push(pdu.event_id().clone());
                    written.push(pdu);
                }
                Ok(ids)
            })
            .await
    }

    /// Creates a room in one transaction: its `m.room.create` event (with
    /// `create_content`, to which `room_version` and, for version 10,
    /// `creator` are added), then the `initial` events in order, all by the
    /// creator, each authorized against the state the previous ones made;
    /// and, if asked, the room's alias and its public directory listing. A
    /// room therefore never exists without the alias or listing it was
    /// created with, and a refused creation leaves nothing.
    ///
    /// Errors: [`Error::AliasTaken`], [`Error::NotAuthorized`] naming the
    /// first rejected event, [`Error::Event`] (nothing stored in each
    /// case), and the store's.
    pub async fn create_room(
        &self,
        signer: &Signer,
        room: &NewRoom<'_>,
    ) -> Result<(OwnedRoomId, Vec<Sent>)> {
        let v12 = events::rules(room.version)?
            .authorization
            .room_create_event_id_as_room_id;
        let mut content = room.create_content.clone();
        content["room_version"] = room.version.as_str().into();
        if *room.version == RoomVersionId::V10 {
            content["creator"] = room.creator.as_str().into();
        }
        let content = &content;
        // Safe to run twice: every attempt builds the same create event (the
        // room ID, content and timestamp are fixed outside the closure and
        // ed25519 signatures are deterministic), so after
        // `commit_unknown_result` a retry that finds the room record naming
        // that event knows the earlier attempt committed, and with it the
        // whole creation (one transaction), and reports it as done.
        let (created, info) = self
            .db
            .run_committed(|tx, maybe_committed| async move {
                let create = build_pdu(
                    &PduTemplate {
                        room_version: room.version,
                        room_id: (!v12).then_some(room.room_id),
                        sender: room.creator,
                        event_type: "m.room.create",
                        state_key: Some(""),
                        content,
                        redacts: None,
                        prev_events: &[],
                        auth_events: &[],
                        depth: 1,
                        origin_server_ts: room.now,
                    },
                    signer,
                )?;
                check_auth(&create, room.version, &HashMap::new(), &HashMap::new())
                    .map_err(|e| Error::NotAuthorized(format!("m.room.create: {e}")))?;
                let room_id = if v12 {
                    events::room_id_of_create(create.event_id())?
                } else {
                    room.room_id.to_owned()
                };
                let room_key = self.layout.rooms.key(&keys::ROOM, &(room_id.as_str(),));
                if let Some(existing) = tx.get(&room_key, false).await? {
                    let existing: RoomRecord = decode("room", &existing)?;
                    if maybe_committed.0 && existing.create_event_id == *create.event_id() {
                        return Ok(Created::Earlier(room_id));
                    }
                    return Err(Error::NotAuthorized(format!(
                        "room {room_id} already exists"
                    )));
                }
                if let Some(alias) = room.alias
                    && self.layout.alias_in(&tx, alias).await?.is_some()
                {
                    return Err(Error::AliasTaken(alias.to_owned()));
                }
                let record = RoomRecord {
                    version: room.version.clone(),
                    creator: room.creator.to_owned(),
                    create_event_id: create.event_id().clone(),
                };
                tx.set(&room_key, &encode(&record));
                let ids = self
                    .layout
                    .write_initial_events(&tx, signer, &room_id, &record, create, room)
                    .await?;
                if let Some(alias) = room.alias {
                    self.layout.put_alias(&tx, alias, &room_id, room.creator);
                }
                if room.listed {
                    self.layout.set_listed(&tx, &room_id, true);
                }
                Ok(Created::Now(room_id, ids))
            })
            .await?;
        match created {
            Created::Now(room_id, ids) => {
                let sent = ids
                    .into_iter()
                    .enumerate()
                    .map(|(i, event_id)| {
                        Ok(Sent {
                            event_id,
                            position: committed_position(info.versionstamp, i as u16)?,
                            deduplicated: false,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((room_id, sent))
            }
            Created::Earlier(room_id) => {
                // The creation commit wrote the room's first events.
                let count = room.initial.len() + 1;
                let entries = self
                    .timeline(&room_id, None, None, super::Direction::Forward, count)
                    .await?;
                if entries.len() != count {
                    return Err(Error::corrupt(
                        "stream",
                        format!("{room_id} lacks its initial events"),
                    ));
                }
                let sent = entries
                    .into_iter()
                    .map(|e| Sent {
                        event_id: e.event_id,
                        position: e.position,
                        deduplicated: false,
                    })
                    .collect();
                Ok((room_id, sent))
            }
        }
    }

    /// The room record, read at snapshot isolation (it never changes).
    pub(super) async fn room_in(
        &self,
        tx: &Transaction,
        room_id: &RoomId,
    ) -> Result<Option<RoomRecord>> {
        let key = self.layout.rooms.key(&keys::ROOM, &(room_id.as_str(),));
        tx.get(&key, true)
            .await?
            .map(|v| decode("room", &v))
            .transpose()
            .map_err(Into::into)
    }
}

/// What a room creation's transaction did.
enum Created {
    /// Created the room, writing these events (create first).
    Now(OwnedRoomId, Vec<OwnedEventId>),
    /// Found that an earlier attempt (`commit_unknown_result`) created it.
    Earlier(OwnedRoomId),
}

/// What an event is authorized against ([`Layout::auth_state`]).
struct AuthState {
    /// The state events authorization reads, by (type, state key).
    state: HashMap<(StateEventType, String), Pdu>,
    /// The same events by ID.
    by_id: HashMap<OwnedEventId, Pdu>,
    /// The new event's `auth_events`.
    auth_events: Vec<OwnedEventId>,
    /// For a state event, the current event of its (type, state key).
    replaces_state: Option<OwnedEventId>,
}

/// `e` with a refusal naming `event` (its type and state key), for the
/// transactions that append several events.
fn naming(event: &NewEvent, e: Error) -> Error {
    match e {
        Error::NotAuthorized(why) => {
            Error::NotAuthorized(format!("{} {:?}: {why}", event.event_type, event.state_key))
        }
        other => other,
    }
}

/// The 12 bytes of a stream position written with
/// `SetVersionstampedValue` at offset 0: 10 bytes the commit fills with its
/// versionstamp, then the event's order in the commit (big-endian).
fn position_placeholder(order: u16) -> Vec<u8> {
    let mut value = vec![0u8; 10];
    value.extend_from_slice(&order.to_be_bytes());
    value
}

/// The stream position of event `order` of a commit.
fn committed_position(stamp: Option<[u8; 10]>, order: u16) -> Result<StreamPosition> {
    let stamp =
        stamp.ok_or_else(|| Error::corrupt("events", "a commit that wrote events has no stamp"))?;
    Ok(StreamPosition::new(stamp, order))
}

impl Layout {
    /// Writes a new room's create event and then appends its initial
    /// events, each authorized against the state the ones before made.
    /// Returns the IDs of all of them, create first.
    async fn write_initial_events(
        &self,
        tx: &Transaction,
        signer: &Signer,
        room_id: &RoomId,
        record: &RoomRecord,
        create: Pdu,
        room: &NewRoom<'_>,
    ) -> Result<Vec<OwnedEventId>> {
        self.write_event(tx, room_id, &create, &[], 0, &EventMeta::default());
        // The events this transaction wrote: their records are
        // versionstamped, so unreadable until it commits.
        let mut written = vec![create];
        for (i, event) in room.initial.iter().enumerate() {
            let order = u16::try_from(i + 1).expect("fewer than 65535 initial events");
            let append = Append {
                room_id,
                sender: room.creator,
                event,
                txn: None,
                now: room.now,
            };
            let pdu = self
                .append(tx, signer, record, &append, order, &written)
                .await
                .map_err(|e| naming(event, e))?;
            written.push(pdu);
        }
        Ok(written.iter().map(|pdu| pdu.event_id().clone()).collect())
    }

    /// Builds, authorizes and writes one event after the room's current
    /// forward extremities, as event `order` of the transaction. `written`
    /// holds the events `tx` has already written (their records cannot be
    /// read back before the commit).
    pub(super) async fn append(
        &self,
        tx: &Transaction,
        signer: &Signer,
        room: &RoomRecord,
        append: &Append<'_>,
        order: u16,
        written: &[Pdu],
    ) -> Result<Pdu> {
        let Append {
            room_id,
            sender,
            event,
            txn,
            now,
        } = *append;
        let rules = events::rules(&room.version)?;
        let (prev_events, depth) = self.prev_events(tx, room_id).await?;
        let auth = self.auth_state(tx, append, &rules, written).await?;
        let meta = EventMeta {
            txn: txn.map(|t| (t.device_id.clone(), t.txn_id.clone())),
            replaces_state: auth.replaces_state,
        };
        let redacts = if rules.redaction.keep_room_redaction_redacts {
            None
        } else {
            event
                .content
                .get("redacts")
                .and_then(|r| r.as_str())
                .and_then(|r| <&EventId>::try_from(r).ok())
        };
        let pdu = build_pdu(
            &PduTemplate {
                room_version: &room.version,
                room_id: Some(room_id),
                sender,
                event_type: &event.event_type,
                state_key: event.state_key.as_deref(),
                content: &event.content,
                redacts,
                prev_events: &prev_events,
                auth_events: &auth.auth_events,
                depth,
                origin_server_ts: now,
            },
            signer,
        )?;
        check_auth(&pdu, &room.version, &auth.by_id, &auth.state).map_err(Error::NotAuthorized)?;
        self.write_event(tx, room_id, &pdu, &prev_events, order, &meta);
        Ok(pdu)
    }

    /// The current state event that makes `append`'s event a no-op, if
    /// any: a state event whose (type, state key) already holds an
    /// unredacted event by the same sender with the same content. That
    /// includes every membership change (a repeated join, leave, kick, ban,
    /// invite or knock changes nothing; Synapse answers it with the
    /// existing event too). The read conflicts, so a concurrent change of
    /// that state retries this send, and 16 parallel joins (or leaves) by
    /// one user make one event.
    async fn unchanged_state(
        &self,
        tx: &Transaction,
        append: &Append<'_>,
    ) -> Result<Option<OwnedEventId>> {
        let event = append.event;
        let Some(state_key) = &event.state_key else {
            return Ok(None);
        };
        let key = self.state_key(append.room_id, &event.event_type, state_key);
        let Some(id) = tx.get(&key, false).await? else {
            return Ok(None);
        };
        let id = decode_event_id("state", &id)?;
        let Some(current) = self.load_pdu(tx, &id, &[]).await? else {
            return Ok(None);
        };
        // A redacted event no longer holds its content: sending that
        // content again restores it.
        let same = current.sender() == append.sender
            && current.content_value() == event.content
            && !self.is_redacted(tx, &id).await?;
        Ok(same.then_some(id))
    }

    /// The new event's `prev_events` and depth: the room's forward
    /// extremities, the deepest first and at most [`MAX_PREV_EVENTS`].
    async fn prev_events(
        &self,
        tx: &Transaction,
        room_id: &RoomId,
    ) -> Result<(Vec<OwnedEventId>, u64)> {
        // Forward extremities at snapshot isolation: a concurrent send that
        // adds or removes one does not conflict with this one.
        let (begin, end) = self.rooms.range(&keys::EXTREMITY, &(room_id.as_str(),));
        let mut extremities = Vec::new();
        for kv in tx.get_range_all(RangeOption::new(begin, end), true).await? {
            let (_, _, id): (i64, String, String) = unpack("extremity", &self.rooms, &kv.key)?;
            let depth = u64::from_le_bytes(
                kv.value
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::corrupt("extremity", "depth is not 8 bytes"))?,
            );
            let id = OwnedEventId::try_from(id).map_err(|e| Error::corrupt("extremity", e))?;
            extremities.push((depth, id));
        }
        if extremities.is_empty() {
            return Err(Error::corrupt("extremity", format!("{room_id} has none")));
        }
        extremities.sort_by(|a, b| b.cmp(a));
        if extremities.len() > MAX_PREV_EVENTS {
            use rand::seq::SliceRandom;
            self.random.with(|rng| extremities[1..].shuffle(rng));
            extremities.truncate(MAX_PREV_EVENTS);
        }
        let depth = extremities[0].0 + 1;
        let prev_events: Vec<OwnedEventId> = extremities.into_iter().map(|(_, id)| id).collect();
        Ok((prev_events, depth))
    }

    /// The state `append`'s event is authorized against, with conflicting
    /// reads (a concurrent change of any of it aborts and retries this
    /// send): the auth events its type needs and the create event, and for
    /// a state event the event it replaces.
    async fn auth_state(
        &self,
        tx: &Transaction,
        append: &Append<'_>,
        rules: &RoomVersionRules,
        written: &[Pdu],
    ) -> Result<AuthState> {
        let Append {
            room_id,
            sender,
            event,
            ..
        } = *append;
        // The state authorization depends on, with conflicting reads.
        let kind = TimelineEventType::from(event.event_type.as_str());
        let content_raw = serde_json::value::to_raw_value(&event.content)
            .map_err(|e| events::EventError::Malformed(e.to_string()))?;
        let auth_types = auth_types_for_event(
            &kind,
            sender,
            event.state_key.as_deref(),
            &content_raw,
            &rules.authorization,
        )
        .map_err(Error::NotAuthorized)?;
        let mut state = HashMap::new();
        let mut by_id = HashMap::new();
        let mut auth_events = Vec::new();
        let create_key = (StateEventType::RoomCreate, String::new());
        let mut wanted: Vec<(StateEventType, String, bool)> =
            auth_types.into_iter().map(|(t, k)| (t, k, true)).collect();
        if !wanted
            .iter()
            .any(|(t, k, _)| (t, k) == (&create_key.0, &create_key.1))
        {
            wanted.push((create_key.0.clone(), create_key.1.clone(), false));
        }
        let mut replaces_state = None;
        if let Some(state_key) = &event.state_key {
            // A conflicting read: same-key state writes serialize. Its value
            // is the `replaces_state` of the new event.
            let key = self.state_key(room_id, &event.event_type, state_key);
            replaces_state = tx
                .get(&key, false)
                .await?
                .map(|id| decode_event_id("state", &id))
                .transpose()?;
        }
        for (kind, state_key, is_auth) in wanted {
            let key = self.state_key(room_id, &kind.to_string(), &state_key);
            // The create event never changes: no conflict needed.
            let snapshot = kind == StateEventType::RoomCreate;
            let Some(id) = tx.get(&key, snapshot).await? else {
                continue;
            };
            let id = decode_event_id("state", &id)?;
            let pdu = self
                .load_pdu(tx, &id, written)
                .await?
                .ok_or_else(|| Error::corrupt("state", format!("{id} is not stored")))?;
            let pdu = self.auth_form(tx, pdu, rules).await?;
            if is_auth {
                auth_events.push(id.clone());
            }
            by_id.insert(id, pdu.clone());
            state.insert((kind, state_key), pdu);
        }

        Ok(AuthState {
            state,
            by_id,
            auth_events,
            replaces_state,
        })
    }

    /// `pdu` as authorization reads it: redacted by the room version's
    /// algorithm if a redaction names it. The redaction index is read with
    /// a conflicting read, so a redaction of an auth event committed
    /// concurrently retries this send against the redacted form.
    async fn auth_form(&self, tx: &Transaction, pdu: Pdu, rules: &RoomVersionRules) -> Result<Pdu> {
        if self.is_redacted(tx, pdu.event_id()).await? {
            Ok(events::redacted_pdu(&pdu, &rules.redaction)?)
        } else {
            Ok(pdu)
        }
    }

    /// Whether a redaction names event `id` (`events/redaction`), with a
    /// conflicting read.
    async fn is_redacted(&self, tx: &Transaction, id: &EventId) -> Result<bool> {
        let key = self.events.key(&keys::REDACTION, &(id.as_str(),));
        Ok(tx.get(&key, false).await?.is_some())
    }

    /// `rooms/state` key of `(room, type, state_key)`.
    pub(super) fn state_key(&self, room_id: &RoomId, kind: &str, state_key: &str) -> Vec<u8> {
        self.rooms
            .key(&keys::STATE, &(room_id.as_str(), kind, state_key))
    }

    /// Writes an accepted event: the PDU, its position, timeline entries,
    /// extremities, and for state events current state, the state log and
    /// memberships, the `unsigned` metadata, the relation index and, for a
    /// bump event, the room's `rooms/bump` position. Blind writes only;
    /// bumps `meta/notify` and names the room (and a member event's target)
    /// in `meta/wake` so sync wakes their long-polls.
    fn write_event(
        &self,
        tx: &Transaction,
        room_id: &RoomId,
        pdu: &Pdu,
        prev_events: &[OwnedEventId],
        order: u16,
        meta: &EventMeta,
    ) {
        let room = room_id.as_str();
        match pdu.state_key() {
            // A member event also concerns its target, who may not be in
            // the room yet (an invite) or any more (a kick).
            Some(target) if *pdu.kind() == TimelineEventType::RoomMember => {
                notify::bump(tx, &self.notify, &[Topic::Room(room), Topic::User(target)]);
            }
            _ => notify::bump(tx, &self.notify, &[Topic::Room(room)]),
        }
        self.index_relation(tx, room_id, pdu, order);
        self.write_record(tx, room_id, pdu, order, meta);
        let stamp = Versionstamp::incomplete(order);
        self.write_timeline(tx, room_id, pdu, prev_events, &stamp);
        if keys::BUMP_EVENT_TYPES.contains(&pdu.kind().to_string().as_str()) {
            // Sliding sync's room order: the position, then the offset of
            // the stamp. A blind write: concurrent bumps of one room never
            // conflict, and within one commit the later order is written
            // last.
            let mut value = position_placeholder(order);
            value.extend_from_slice(&0u32.to_le_bytes());
            tx.atomic_op(
                &self.rooms.key(&keys::BUMP, &(room,)),
                &value,
                MutationType::SetVersionstampedValue,
            );
        }
        if let Some(state_key) = pdu.state_key() {
            self.write_state(tx, room_id, pdu, state_key, &stamp);
        }
    }

    /// `events/pdu` (the position the commit fills, then the record) and,
    /// for a redaction, `events/redaction`.
    fn write_record(
        &self,
        tx: &Transaction,
        room_id: &RoomId,
        pdu: &Pdu,
        order: u16,
        meta: &EventMeta,
    ) {
        let id = pdu.event_id().as_str();
        let stored = StoredEvent {
            room_id: room_id.to_owned(),
            json: pdu.json().to_owned(),
            meta: meta.clone(),
        };
        // `events/pdu`: the position, the record, and the little-endian
        // offset of the stamp.
        let mut value = position_placeholder(order);
        value.extend_from_slice(&encode(&stored));
        value.extend_from_slice(&0u32.to_le_bytes());
        tx.atomic_op(
            &self.events.key(&keys::PDU, &(id,)),
            &value,
            MutationType::SetVersionstampedValue,
        );
        if let Some(redacts) = pdu.redacts() {
            tx.set(
                &self.events.key(&keys::REDACTION, &(redacts.as_str(),)),
                id.as_bytes(),
            );
        }
    }

    /// The timeline entries (`stream`, `changed`, `topological`) at the
    /// commit's position, and the event as the one forward extremity in
    /// place of its `prev_events`.
    fn write_timeline(
        &self,
        tx: &Transaction,
        room_id: &RoomId,
        pdu: &Pdu,
        prev_events: &[OwnedEventId],
        stamp: &Versionstamp,
    ) {
        let (room, id) = (room_id.as_str(), pdu.event_id().as_str());
        let vs_set = |key: Vec<u8>, value: &[u8]| {
            tx.atomic_op(&key, value, MutationType::SetVersionstampedKey)
        };
        vs_set(
            self.timeline
                .versionstamped_key(&keys::STREAM, &(room, stamp)),
            id.as_bytes(),
        );
        // Sync's changed-rooms feed (docs/sync.md).
        vs_set(
            self.timeline
                .versionstamped_key(&keys::CHANGED, &(stamp, room)),
            b"",
        );
        let depth = i64::try_from(pdu.depth()).unwrap_or(i64::MAX);
        vs_set(
            self.timeline
                .versionstamped_key(&keys::TOPOLOGICAL, &(room, depth, stamp)),
            id.as_bytes(),
        );
        for prev in prev_events {
            tx.clear(&self.rooms.key(&keys::EXTREMITY, &(room, prev.as_str())));
        }
        tx.set(
            &self.rooms.key(&keys::EXTREMITY, &(room, id)),
            &pdu.depth().to_le_bytes(),
        );
    }

    /// For a state event: current state, the state log and history, and
    /// for a member event the membership in both directions (clearing a
    /// forgotten mark).
    fn write_state(
        &self,
        tx: &Transaction,
        room_id: &RoomId,
        pdu: &Pdu,
        state_key: &str,
        stamp: &Versionstamp,
    ) {
        let (room, id) = (room_id.as_str(), pdu.event_id().as_str());
        let vs_set = |key: Vec<u8>, value: &[u8]| {
            tx.atomic_op(&key, value, MutationType::SetVersionstampedKey)
        };
        let kind = pdu.kind().to_string();
        tx.set(&self.state_key(room_id, &kind, state_key), id.as_bytes());
        let change = StateChange {
            kind: kind.clone(),
            state_key: state_key.to_owned(),
            event_id: pdu.event_id().clone(),
        };
        vs_set(
            self.state_log
                .versionstamped_key(&keys::STATE_CHANGE, &(room, stamp)),
            &encode(&change),
        );
        vs_set(
            self.state_log.versionstamped_key(
                &keys::STATE_HISTORY,
                &(room, kind.as_str(), state_key, stamp),
            ),
            id.as_bytes(),
        );
        if *pdu.kind() == TimelineEventType::RoomMember {
            let membership = MembershipState::from(
                pdu.content_value()
                    .get("membership")
                    .and_then(|m| m.as_str())
                    .unwrap_or_default(),
            );
            let record = encode(&MemberRecord {
                membership,
                event_id: pdu.event_id().clone(),
            });
            tx.set(&self.rooms.key(&keys::MEMBER, &(room, state_key)), &record);
            tx.set(
                &self.memberships.key(&keys::USER_ROOM, &(state_key, room)),
                &record,
            );
            tx.clear(&self.memberships.key(&keys::FORGOTTEN, &(state_key, room)));
        }
    }
}
