//! Reads of the `rooms` database: events, state (current and at a stream
//! position), timelines, memberships. Each public method is read-only
//! (read-only transactions never conflict) and no transaction it runs
//! grows with the room (FoundationDB's 5-second rule): reads that can be
//! large (a room's state, members, state log, events by ID) go
//! [`PAGE_KEYS`] keys or [`EVENTS_PER_TRANSACTION`] events per transaction,
//! at one read version where they must be one snapshot
//! ([`crate::kv::Database::read_range_paged`]), or over immutable ranges
//! and records at any version (`state_at`, `events`).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::try_join_all;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};

use super::{
    Error, EventMeta, Layout, MemberRecord, Result, RoomRecord, RoomsDb, StateChange, StoredEvent,
    StreamPosition, decode, decode_event_id, keys, trailing_position, unpack,
};
use crate::events::Pdu;
use crate::kv::{RangeOption, Transaction};

/// A stored event with what storage knows about it.
#[derive(Clone, Debug)]
pub struct StoredPdu {
    /// The event as signed.
    pub pdu: Pdu,
    /// Its room.
    pub room_id: OwnedRoomId,
    /// Its stream position.
    pub position: StreamPosition,
    /// The redaction event that redacts it, if any.
    pub redacted_by: Option<OwnedEventId>,
    /// Its `unsigned` metadata (sending device's txn ID, replaced state).
    pub meta: EventMeta,
}

/// Which way a timeline read goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first (`dir=f`).
    Forward,
    /// Newest first (`dir=b`).
    Backward,
}

/// One timeline entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineEntry {
    /// The event's stream position.
    pub position: StreamPosition,
    /// The event.
    pub event_id: OwnedEventId,
}

/// One state key: `(type, state_key)`.
pub type StateKey = (String, String);

/// Default size of the event cache: the summed length of the cached
/// events' JSON, in bytes.
pub(super) const EVENT_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// What never changes about a committed event: everything of a
/// [`StoredPdu`] but `redacted_by`.
#[derive(Clone, Debug)]
struct Committed {
    pdu: Pdu,
    room_id: OwnedRoomId,
    position: StreamPosition,
    meta: EventMeta,
}

impl Committed {
    /// The event `id` from its `events/pdu` value.
    ///
    /// Errors: [`Error::Corrupt`] if the value does not decode, and the
    /// event's if its JSON is not a PDU.
    fn decode(id: &OwnedEventId, bytes: &[u8]) -> Result<Committed> {
        let (position, stored) = decode_record(id, bytes)?;
        Ok(Committed {
            pdu: Pdu::from_stored(id.clone(), stored.json)?,
            room_id: stored.room_id,
            position,
            meta: stored.meta,
        })
    }
}

/// Weighs a cached event by its JSON length (plus a fixed overhead).
#[derive(Clone)]
struct ByJsonLength;

impl quick_cache::Weighter<OwnedEventId, Arc<Committed>> for ByJsonLength {
    fn weight(&self, id: &OwnedEventId, event: &Arc<Committed>) -> u64 {
        (id.as_str().len() + event.pdu.json().len() + 128) as u64
    }
}

/// A bounded cache of committed events, per [`RoomsDb`] handle.
///
/// Invariant: it holds only events read at a committed version, so every
/// entry is the stored event (the PDU, its room, position and `unsigned`
/// metadata are written once, in the event's own transaction, and never
/// change; only the redaction index does, and it is always read). Entries
/// are added by the reads of this module ([`RoomsDb::event`],
/// [`RoomsDb::events`], [`RoomsDb::state_event`] and what they serve) and by
/// the auth-event reads of a send ([`Layout::load_pdu`]), always from a
/// record read back from the store: a transaction cannot read the
/// versionstamped records it wrote itself (`accessed_unreadable`), so such
/// a record is already committed, whatever becomes of the transaction.
pub(super) struct EventCache(quick_cache::sync::Cache<OwnedEventId, Arc<Committed>, ByJsonLength>);

impl EventCache {
    /// A cache holding about `bytes` of event JSON.
    pub(super) fn new(bytes: u64) -> Self {
        let items = (bytes / 1024).max(16) as usize;
        EventCache(quick_cache::sync::Cache::with_weighter(
            items,
            bytes,
            ByJsonLength,
        ))
    }

    /// Its counters, for the metrics (`myelin_cache_*{cache="events"}`).
    pub(super) fn sample(&self) -> crate::metrics::CacheSample {
        crate::metrics::CacheSample {
            hits: self.0.hits(),
            misses: self.0.misses(),
            entries: self.0.len() as u64,
            bytes: self.0.weight(),
        }
    }
}

impl Layout {
    /// The PDU stored under `id`, at snapshot isolation (events are
    /// immutable). Served from `written` (the events `tx` wrote itself,
    /// whose versionstamped records it cannot read back) or the event cache
    /// when they hold `id`. A record read from the store is committed (the
    /// only uncommitted records `tx` could see are its own, and those are
    /// unreadable), so it fills the cache: a send authorizes against the
    /// same create, power-levels and member events every time.
    pub(super) async fn load_pdu(
        &self,
        tx: &Transaction,
        id: &OwnedEventId,
        written: &[Pdu],
    ) -> Result<Option<Pdu>> {
        if let Some(pdu) = written.iter().find(|pdu| pdu.event_id() == id) {
            return Ok(Some(pdu.clone()));
        }
        if let Some(cached) = self.cache.0.get(id) {
            return Ok(Some(cached.pdu.clone()));
        }
        let Some(bytes) = tx
            .get(&self.events.key(&keys::PDU, &(id.as_str(),)), true)
            .await?
        else {
            return Ok(None);
        };
        let committed = Committed::decode(id, &bytes)?;
        let pdu = committed.pdu.clone();
        self.cache.0.insert(id.clone(), Arc::new(committed));
        Ok(Some(pdu))
    }

    /// The stored event `id` with its position, redaction and metadata: two
    /// point reads (`events/pdu`, `events/redaction`), one when the event
    /// is cached. Only for read-only transactions: it fills the event cache.
    async fn load_stored(&self, tx: &Transaction, id: &OwnedEventId) -> Result<Option<StoredPdu>> {
        let red_key = self.events.key(&keys::REDACTION, &(id.as_str(),));
        if let Some(cached) = self.cache.0.get(id) {
            let red = tx.get(&red_key, true).await?;
            let cached = Committed::clone(&cached);
            return Ok(Some(StoredPdu {
                pdu: cached.pdu,
                room_id: cached.room_id,
                position: cached.position,
                redacted_by: red.map(|r| decode_event_id("redaction", &r)).transpose()?,
                meta: cached.meta,
            }));
        }
        let key = self.events.key(&keys::PDU, &(id.as_str(),));
        let (bytes, red) = futures::try_join!(tx.get(&key, true), tx.get(&red_key, true))?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let committed = Committed::decode(id, &bytes)?;
        self.cache.0.insert(id.clone(), Arc::new(committed.clone()));
        Ok(Some(StoredPdu {
            pdu: committed.pdu,
            room_id: committed.room_id,
            position: committed.position,
            redacted_by: red.map(|r| decode_event_id("redaction", &r)).transpose()?,
            meta: committed.meta,
        }))
    }
}

/// Most keys one transaction of a paged read reads: a 1,000-key page of
/// state or log entries is ~100 kB, milliseconds on FoundationDB.
pub const PAGE_KEYS: usize = 1_000;

/// Most events one transaction of [`RoomsDb::events`] reads (two point
/// reads each).
pub const EVENTS_PER_TRANSACTION: usize = 256;

/// How many batches of [`RoomsDb::events`] are read at once.
const CONCURRENT_EVENT_BATCHES: usize = 4;

/// The last stream position a commit at or below read version `version`
/// can have: `version` (8 bytes, big-endian), then all ones for the batch
/// order and the event order.
fn end_of_version(version: u64) -> StreamPosition {
    let mut out = [0xff; 12];
    out[..8].copy_from_slice(&version.to_be_bytes());
    StreamPosition(out)
}

/// One `state_log/change` entry.
///
/// Errors: [`Error::Corrupt`] if the key or value does not decode.
fn decode_change(kv: &crate::kv::KeyValue) -> Result<(StreamPosition, StateChange)> {
    Ok((
        trailing_position("change", &kv.key)?,
        decode("change", &kv.value)?,
    ))
}

/// Splits an `events/pdu` value: the 12-byte stream position, then the
/// msgpack [`StoredEvent`].
///
/// Errors: [`Error::Corrupt`] if the value is shorter than a position or the
/// record does not decode.
fn decode_record(id: &OwnedEventId, bytes: &[u8]) -> Result<(StreamPosition, StoredEvent)> {
    let (position, record) = split_position(id, bytes)?;
    Ok((position, decode("pdu", record)?))
}

/// The stream position at the head of an `events/pdu` value, and the rest.
///
/// Errors: [`Error::Corrupt`] if the value is shorter than a position.
fn split_position<'a>(id: &OwnedEventId, bytes: &'a [u8]) -> Result<(StreamPosition, &'a [u8])> {
    let (position, rest) = bytes
        .split_first_chunk::<12>()
        .ok_or_else(|| Error::corrupt("pdu", format!("{id}: no stream position")))?;
    Ok((StreamPosition(*position), rest))
}

/// A `rooms/bump` value: a 12-byte stream position.
fn decode_bump(room_id: &RoomId, bytes: &[u8]) -> Result<StreamPosition> {
    let position = <[u8; 12]>::try_from(bytes)
        .map_err(|_| Error::corrupt("bump", format!("{room_id}: {} bytes", bytes.len())))?;
    Ok(StreamPosition(position))
}

impl RoomsDb {
    /// The room's record, or `None` if it does not exist here.
    pub async fn room(&self, room_id: &RoomId) -> Result<Option<RoomRecord>> {
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| async move { self.room_in(&tx, room_id).await })
            .await
    }

    /// The event with this ID, or `None`.
    pub async fn event(&self, event_id: &OwnedEventId) -> Result<Option<StoredPdu>> {
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| async move { self.layout.load_stored(&tx, event_id).await })
            .await
    }

    /// The events with these IDs (absent ones left out), in the given order.
    /// Read in batches of [`EVENTS_PER_TRANSACTION`] IDs, each batch one
    /// read-only transaction of concurrent point reads, at most
    /// `CONCURRENT_EVENT_BATCHES` (4) batches at a time: no transaction grows
    /// with the number of IDs (a room's whole state can be 50,000 events).
    /// Safe across transactions because an event never changes once stored;
    /// only its redaction can appear between two batches, and each event is
    /// read with its own redaction state.
    pub async fn events(&self, ids: &[OwnedEventId]) -> Result<Vec<StoredPdu>> {
        use futures::{StreamExt, TryStreamExt};
        let reads: Vec<_> = ids
            .chunks(EVENTS_PER_TRANSACTION)
            .map(|batch| self.events_batch(batch))
            .collect();
        let batches: Vec<Vec<Option<StoredPdu>>> = futures::stream::iter(reads)
            .buffered(CONCURRENT_EVENT_BATCHES)
            .try_collect()
            .await?;
        Ok(batches.into_iter().flatten().flatten().collect())
    }

    /// One batch of [`RoomsDb::events`]: concurrent point reads in one
    /// read-only transaction (safe to run any number of times).
    async fn events_batch(&self, batch: &[OwnedEventId]) -> Result<Vec<Option<StoredPdu>>> {
        self.db
            .run(|tx, _| async move {
                try_join_all(batch.iter().map(|id| self.layout.load_stored(&tx, id))).await
            })
            .await
    }

    /// The stream position of an event: the first 12 bytes of its
    /// `events/pdu` record (from the event cache when it holds the event).
    pub async fn position(&self, event_id: &OwnedEventId) -> Result<Option<StreamPosition>> {
        if let Some(cached) = self.layout.cache.0.get(event_id) {
            return Ok(Some(cached.position));
        }
        let key = self.layout.events.key(&keys::PDU, &(event_id.as_str(),));
        let value = self.db.read(&key);
        value
            .await?
            .map(|bytes| Ok(split_position(event_id, &bytes)?.0))
            .transpose()
    }

    /// The current state of a room: `(type, state_key) -> event ID`. One
    /// consistent range read, [`PAGE_KEYS`] keys per transaction, all at one
    /// read version ([`crate::kv::Database::read_range_paged`]).
    pub async fn current_state_ids(
        &self,
        room_id: &RoomId,
    ) -> Result<BTreeMap<StateKey, OwnedEventId>> {
        let (begin, end) = self.layout.rooms.range(&keys::STATE, &(room_id.as_str(),));
        let kvs = self
            .db
            .read_range_paged(RangeOption::new(begin, end), PAGE_KEYS)
            .await?;
        kvs.iter()
            .map(|kv| {
                let (_, _, kind, state_key): (i64, String, String, String) =
                    unpack("state", &self.layout.rooms, &kv.key)?;
                Ok(((kind, state_key), decode_event_id("state", &kv.value)?))
            })
            .collect()
    }

    /// The current state event of `(type, state_key)`, if any.
    pub async fn state_event(
        &self,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
    ) -> Result<Option<StoredPdu>> {
        let key = self.layout.state_key(room_id, kind, state_key);
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| {
                let key = key.clone();
                async move {
                    match tx.get(&key, true).await? {
                        None => Ok(None),
                        Some(id) => {
                            let id = decode_event_id("state", &id)?;
                            self.layout.load_stored(&tx, &id).await
                        }
                    }
                }
            })
            .await
    }

    /// Every change of one state key, oldest first: `(position, event ID)`.
    /// One range read; the state of that key at a position is the last
    /// entry at or before it.
    pub async fn state_history(
        &self,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
    ) -> Result<Vec<(StreamPosition, OwnedEventId)>> {
        let (begin, end) = self
            .layout
            .state_log
            .range(&keys::STATE_HISTORY, &(room_id.as_str(), kind, state_key));
        let kvs = self.db.read_range(RangeOption::new(begin, end)).await?;
        kvs.iter()
            .map(|kv| {
                Ok((
                    trailing_position("history", &kv.key)?,
                    decode_event_id("history", &kv.value)?,
                ))
            })
            .collect()
    }

    /// The state changes of a room with `after < position <= up_to`, in
    /// stream order: what incremental sync sends as the state delta. One
    /// consistent range read, [`PAGE_KEYS`] keys per transaction, all at one
    /// read version ([`crate::kv::Database::read_range_paged`]).
    pub async fn state_changes(
        &self,
        room_id: &RoomId,
        after: StreamPosition,
        up_to: StreamPosition,
    ) -> Result<Vec<(StreamPosition, StateChange)>> {
        let range = self.state_change_range(room_id, after, up_to);
        let kvs = self.db.read_range_paged(range, PAGE_KEYS).await?;
        kvs.iter().map(decode_change).collect()
    }

    /// The `state_log/change` keys of a room with `after < position <= up_to`.
    fn state_change_range(
        &self,
        room_id: &RoomId,
        after: StreamPosition,
        up_to: StreamPosition,
    ) -> RangeOption {
        let space = &self.layout.state_log;
        let mut begin = space.key(&keys::STATE_CHANGE, &(room_id.as_str(), after.to_tuple()));
        begin.push(0);
        let mut end = space.key(&keys::STATE_CHANGE, &(room_id.as_str(), up_to.to_tuple()));
        end.push(0);
        RangeOption::new(begin, end)
    }

    /// The room state after every event at or before `at`: the fold of the
    /// state-change log up to `at`, read [`PAGE_KEYS`] entries per
    /// transaction with no time limit on the whole (see `docs/rooms.md`,
    /// "State at any event"). The log up to the present is immutable: an
    /// entry's key is its commit's versionstamp, so every later commit adds
    /// entries above the read version of a transaction that started before
    /// it. So `at` is first clamped to the last position of the current
    /// read version, and the pages below it, each its own transaction at
    /// whatever version, read one unchanging range.
    pub async fn state_at(
        &self,
        room_id: &RoomId,
        at: StreamPosition,
    ) -> Result<BTreeMap<StateKey, OwnedEventId>> {
        // Read-only: safe to run any number of times.
        let now = self
            .db
            .run(|tx, _| async move { tx.get_read_version().await })
            .await?;
        let at = at.min(end_of_version(now));
        let mut state = BTreeMap::new();
        let mut next = Some(self.state_change_range(room_id, StreamPosition::MIN, at));
        while let Some(range) = next {
            let (page, rest) = self.db.read_page(&range, PAGE_KEYS).await?;
            for kv in &page {
                let (_, change) = decode_change(kv)?;
                state.insert((change.kind, change.state_key), change.event_id);
            }
            next = rest;
        }
        Ok(state)
    }

    /// Timeline entries with `after < position < before` (either bound
    /// optional), oldest first ([`Direction::Forward`]) or newest first
    /// ([`Direction::Backward`]), at most `limit`. Both bounds are
    /// exclusive, so the next page is `after = last.position` (forward) or
    /// `before = last.position` (backward). One range read.
    pub async fn timeline(
        &self,
        room_id: &RoomId,
        after: Option<StreamPosition>,
        before: Option<StreamPosition>,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<TimelineEntry>> {
        let space = &self.layout.timeline;
        let (all_begin, all_end) = space.range(&keys::STREAM, &(room_id.as_str(),));
        let begin = match after {
            Some(p) => {
                let mut k = space.key(&keys::STREAM, &(room_id.as_str(), p.to_tuple()));
                k.push(0);
                k
            }
            None => all_begin,
        };
        let end = match before {
            Some(p) => space.key(&keys::STREAM, &(room_id.as_str(), p.to_tuple())),
            None => all_end,
        };
        if begin >= end || limit == 0 {
            return Ok(Vec::new());
        }
        let kvs = self
            .db
            .read_range(
                RangeOption::new(begin.clone(), end.clone())
                    .limit(limit)
                    .reverse(dir == Direction::Backward),
            )
            .await?;
        kvs.iter()
            .map(|kv| {
                Ok(TimelineEntry {
                    position: trailing_position("stream", &kv.key)?,
                    event_id: decode_event_id("stream", &kv.value)?,
                })
            })
            .collect()
    }

    /// The latest stream position of a room, or `None` if it has no events.
    pub async fn latest_position(&self, room_id: &RoomId) -> Result<Option<StreamPosition>> {
        Ok(self
            .timeline(room_id, None, None, Direction::Backward, 1)
            .await?
            .pop()
            .map(|e| e.position))
    }

    /// The position that orders the room in sliding sync's room lists (its
    /// `bump_stamp`): that of its latest bump event (`keys::BUMP_EVENT_TYPES`,
    /// the `rooms/bump` key), or `None` if it has no events. A room whose
    /// last bump predates the key (a store written before it existed) has
    /// none: its latest event of any type stands in, as every event counted
    /// before. One read; two for such a room.
    pub async fn bump_position(&self, room_id: &RoomId) -> Result<Option<StreamPosition>> {
        let rooms = [room_id.to_owned()];
        Ok(self.bump_positions(&rooms).await?.pop().flatten())
    }

    /// [`Self::bump_position`] of many rooms, in request order: the
    /// `rooms/bump` keys read concurrently, [`PAGE_KEYS`] rooms per
    /// read-only transaction (one read version each; safe to run any number
    /// of times), then the latest event of each room without one.
    pub async fn bump_positions(
        &self,
        rooms: &[OwnedRoomId],
    ) -> Result<Vec<Option<StreamPosition>>> {
        let mut out = Vec::with_capacity(rooms.len());
        for page in rooms.chunks(PAGE_KEYS) {
            let values = self
                .db
                .run(|tx, _| async move {
                    try_join_all(page.iter().map(|room| {
                        let key = self.layout.rooms.key(&keys::BUMP, &(room.as_str(),));
                        let tx = &tx;
                        async move { tx.get(&key, false).await }
                    }))
                    .await
                })
                .await?;
            for (room, value) in page.iter().zip(values) {
                out.push(match value {
                    Some(bytes) => Some(decode_bump(room, &bytes)?),
                    None => self.latest_position(room).await?,
                });
            }
        }
        Ok(out)
    }

    /// Current memberships of a room, by user. One consistent range read,
    /// [`PAGE_KEYS`] keys per transaction, all at one read version
    /// ([`crate::kv::Database::read_range_paged`]).
    pub async fn members(&self, room_id: &RoomId) -> Result<Vec<(OwnedUserId, MemberRecord)>> {
        let (begin, end) = self.layout.rooms.range(&keys::MEMBER, &(room_id.as_str(),));
        let kvs = self
            .db
            .read_range_paged(RangeOption::new(begin, end), PAGE_KEYS)
            .await?;
        kvs.iter()
            .map(|kv| {
                let (_, _, user): (i64, String, String) =
                    unpack("member", &self.layout.rooms, &kv.key)?;
                let user = OwnedUserId::try_from(user).map_err(|e| Error::corrupt("member", e))?;
                Ok((user, decode("member", &kv.value)?))
            })
            .collect()
    }

    /// A user's current membership in a room, if any. One key read.
    pub async fn membership(
        &self,
        room_id: &RoomId,
        user: &UserId,
    ) -> Result<Option<MemberRecord>> {
        let key = self
            .layout
            .rooms
            .key(&keys::MEMBER, &(room_id.as_str(), user.as_str()));
        let value = self.db.read(&key).await?;
        value
            .map(|v| decode("member", &v))
            .transpose()
            .map_err(Into::into)
    }

    /// A user's current membership in each of `rooms` (`None` where they
    /// have none), in order: one transaction of point reads, what sync uses
    /// to drop the changed rooms a user is not in.
    pub async fn memberships(
        &self,
        user: &UserId,
        rooms: &[&RoomId],
    ) -> Result<Vec<Option<MemberRecord>>> {
        let keys: Vec<Vec<u8>> = rooms
            .iter()
            .map(|r| {
                self.layout
                    .rooms
                    .key(&keys::MEMBER, &(r.as_str(), user.as_str()))
            })
            .collect();
        // Read-only: safe to run any number of times.
        let values = self
            .db
            .run(|tx, _| {
                let keys = &keys;
                async move { try_join_all(keys.iter().map(|k| tx.get(k, true))).await }
            })
            .await?;
        values
            .into_iter()
            .map(|v| v.map(|v| decode("member", &v)).transpose())
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// Every room a user has a membership in, with it. One range read.
    pub async fn rooms_of_user(&self, user: &UserId) -> Result<Vec<(OwnedRoomId, MemberRecord)>> {
        let (begin, end) = self
            .layout
            .memberships
            .range(&keys::USER_ROOM, &(user.as_str(),));
        let kvs = self.db.read_range(RangeOption::new(begin, end)).await?;
        kvs.iter()
            .map(|kv| {
                let (_, _, room): (i64, String, String) =
                    unpack("user_room", &self.layout.memberships, &kv.key)?;
                let room =
                    OwnedRoomId::try_from(room).map_err(|e| Error::corrupt("user_room", e))?;
                Ok((room, decode("user_room", &kv.value)?))
            })
            .collect()
    }

    /// The room's forward extremities and their depths.
    pub async fn forward_extremities(&self, room_id: &RoomId) -> Result<Vec<(OwnedEventId, u64)>> {
        let (begin, end) = self
            .layout
            .rooms
            .range(&keys::EXTREMITY, &(room_id.as_str(),));
        let kvs = self.db.read_range(RangeOption::new(begin, end)).await?;
        kvs.iter()
            .map(|kv| {
                let (_, _, id): (i64, String, String) =
                    unpack("extremity", &self.layout.rooms, &kv.key)?;
                let id = OwnedEventId::try_from(id).map_err(|e| Error::corrupt("extremity", e))?;
                let depth = <[u8; 8]>::try_from(kv.value.as_slice())
                    .map(u64::from_le_bytes)
                    .map_err(|_| Error::corrupt("extremity", "depth is not 8 bytes"))?;
                Ok((id, depth))
            })
            .collect()
    }
}

// ---- for sync (added by the sync work; docs/sync.md) ----------------------

impl RoomsDb {
    /// **For sync.** The rooms changed (an event or a receipt) at positions
    /// `after < p <= up_to`, each with the latest such position, from one
    /// range read of `timeline/changed` of at most `limit` entries. Returns
    /// `None` if more than `limit` entries lie in the range (the caller
    /// then falls back to the user's room list).
    pub async fn changed_rooms(
        &self,
        after: StreamPosition,
        up_to: StreamPosition,
        limit: usize,
    ) -> Result<Option<BTreeMap<OwnedRoomId, StreamPosition>>> {
        let space = &self.layout.timeline;
        // Keys are (position, room): start after every key of `after`,
        // end after every key of `up_to`.
        let (_, begin) = space.range(&keys::CHANGED, &(after.to_tuple(),));
        let (_, end) = space.range(&keys::CHANGED, &(up_to.to_tuple(),));
        if begin >= end {
            return Ok(Some(BTreeMap::new()));
        }
        let kvs = self
            .db
            .read_range(RangeOption::new(begin, end).limit(limit + 1))
            .await?;
        if kvs.len() > limit {
            return Ok(None);
        }
        let mut out = BTreeMap::new();
        for kv in &kvs {
            let (_, stamp, room): (i64, foundationdb_tuple::Versionstamp, String) =
                unpack("changed", space, &kv.key)?;
            let room = OwnedRoomId::try_from(room).map_err(|e| Error::corrupt("changed", e))?;
            let bytes: [u8; 12] = stamp
                .as_bytes()
                .as_slice()
                .try_into()
                .map_err(|_| Error::corrupt("changed", "short versionstamp"))?;
            out.insert(room, StreamPosition(bytes));
        }
        Ok(Some(out))
    }
}
