//! The per-database notification keys: how a write tells every server
//! process that something sync delivers has changed, and for whom.
//!
//! Each database that sync reads declares [`NOTIFY`], [`WAKE`] and
//! [`WAKE_FLOOR`] in its `meta` directory ([`SUBSPACES`]):
//!
//! - `meta/notify = (1) -> u64 LE`: a change counter. [`bump`] adds 1 to it
//!   (an atomic `Add`: reads nothing, adds no conflict, never makes two
//!   writers conflict); its changes fire the one watch each server process
//!   keeps per database (`sync::notifier`).
//! - `meta/wake = (2, position: versionstamp, kind: int, id: str) -> empty`:
//!   the wake feed. [`bump`] also writes one entry per [`Topic`] the change
//!   concerns, at the commit's versionstamp (`SetVersionstampedKey`, blind).
//!   A watcher that fires reads the entries after the version it last read,
//!   once per process, and wakes only the long-polls interested in those
//!   topics, so a commit costs O(long-polls it concerns), not O(all).
//! - `meta/wake_floor = (3) -> u64 LE`: entries with a commit version at or
//!   below it may have been pruned ([`prune`], an atomic `Max`). A watcher
//!   that last read the feed below the floor cannot know what it missed and
//!   wakes every long-poll of that database.
//!
//! Topics are coarse on purpose: a false wake costs one sync read that finds
//! nothing; a missing topic costs a long-poll its wake-up (it would answer
//! only at its timeout). Hence the invariants:
//! - a transaction that commits a change sync delivers calls [`bump`] in the
//!   same transaction, with every topic whose long-polls may see the change;
//! - the counter's value means nothing, only its changes do;
//! - feed entries are only ever removed below the floor, and the floor only
//!   grows.
//!
//! Which topic to name (what `/sync` reads, `docs/sync.md`):
//!
//! | Change | Topics |
//! |---|---|
//! | event in room R (member event for U also `User(U)`) | `Room(R)` |
//! | receipt or typing in room R | `Room(R)` |
//! | account data of U, to-device message for U | `User(U)` |
//! | presence or device list of U (delivered to users sharing a room) | `Peers(U)` |
//! | game: U's wallet, items, trades, objects written by an admin | `User(U)` |
//!
//! Who may import this: `db::*` (writers), `sync` (the watcher), tests.

use std::borrow::Cow;

use foundationdb_tuple::Versionstamp;

use crate::keys::{Directories, Field, FieldType, Space, SubspaceSpec, ValueEncoding};
use crate::kv::{self, MutationType, RangeOption};

/// `meta/notify`: `(1) -> u64 little-endian`, bumped by every transaction that
/// changes something `/sync` delivers; watched by every server process.
pub const NOTIFY: SubspaceSpec = SubspaceSpec {
    name: "notify",
    tag: 1,
    key: &[],
    value: ValueEncoding::U64Le,
    doc: "Change counter bumped (atomic add) by every write that sync delivers; each server watches it to wake long-polls.",
};

/// `meta/wake`: `(2, position: versionstamp, kind: int, id: str) -> empty`,
/// the topics each commit concerns, read by the watchers to wake only the
/// long-polls interested in them. `kind`: 0 user, 1 room, 2 peers of a user
/// ([`Topic`]).
pub const WAKE: SubspaceSpec = SubspaceSpec {
    name: "wake",
    tag: 2,
    key: &[
        Field {
            name: "position",
            ty: FieldType::Versionstamp,
        },
        Field {
            name: "kind",
            ty: FieldType::Int,
        },
        Field {
            name: "id",
            ty: FieldType::Str,
        },
    ],
    value: ValueEncoding::Empty,
    doc: "Wake feed: who a commit concerns (kind 0 user, 1 room, 2 peers of a user), at its versionstamp; pruned after a minute.",
};

/// `meta/wake_floor`: `(3) -> u64 little-endian`, the highest commit version
/// whose [`WAKE`] entries may have been pruned.
pub const WAKE_FLOOR: SubspaceSpec = SubspaceSpec {
    name: "wake_floor",
    tag: 3,
    key: &[],
    value: ValueEncoding::U64Le,
    doc: "Wake-feed entries at or below this commit version may have been pruned (atomic max).",
};

/// The notification subspaces, as each database's `meta` directory lists
/// them after its schema-version key.
pub const SUBSPACES: [SubspaceSpec; 3] = [NOTIFY, WAKE, WAKE_FLOOR];

/// What a change concerns: which long-polls a commit must wake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic<'a> {
    /// A user's own data: account data, to-device messages, their own
    /// membership (invites included).
    User(&'a str),
    /// A room: its events, receipts and typing, seen by its members.
    Room(&'a str),
    /// A user's presence or device list, seen by every user who shares a
    /// room with them.
    Peers(&'a str),
}

impl<'a> Topic<'a> {
    /// The `kind` field of its [`WAKE`] entry.
    pub fn kind(self) -> i64 {
        match self {
            Topic::User(_) => 0,
            Topic::Room(_) => 1,
            Topic::Peers(_) => 2,
        }
    }

    /// The user or room ID.
    pub fn id(self) -> &'a str {
        match self {
            Topic::User(id) | Topic::Room(id) | Topic::Peers(id) => id,
        }
    }

    /// The topic of a [`WAKE`] entry's `kind` and `id`, if `kind` is known.
    pub fn from_parts(kind: i64, id: &'a str) -> Option<Topic<'a>> {
        match kind {
            0 => Some(Topic::User(id)),
            1 => Some(Topic::Room(id)),
            2 => Some(Topic::Peers(id)),
            _ => None,
        }
    }
}

/// A database's notification keys, resolved once at open.
#[derive(Clone, Debug)]
pub struct Keys {
    counter: Vec<u8>,
    floor: Vec<u8>,
    meta: Space,
}

impl Keys {
    /// The keys of a database, or `None` if its schema does not declare
    /// [`SUBSPACES`] in a `meta` directory (its writes cannot wake
    /// long-polls).
    pub fn of(dirs: &Directories) -> Option<Keys> {
        let meta = dirs.spec().directory(&["meta"])?;
        if !SUBSPACES.iter().all(|s| meta.contains(s)) {
            return None;
        }
        let space = dirs.space(meta).clone();
        Some(Keys {
            counter: space.key(&NOTIFY, &()),
            floor: space.key(&WAKE_FLOOR, &()),
            meta: space,
        })
    }

    /// The `meta/notify` key, which the watchers watch.
    pub fn counter(&self) -> &[u8] {
        &self.counter
    }

    /// The `meta/wake_floor` key.
    pub fn floor(&self) -> &[u8] {
        &self.floor
    }

    /// The [`WAKE`] key of `topic` at the complete versionstamp `stamp`.
    pub fn wake_key(&self, stamp: &Versionstamp, topic: Topic<'_>) -> Vec<u8> {
        self.meta.key(&WAKE, &(stamp, topic.kind(), topic.id()))
    }

    /// The range of [`WAKE`] entries with a commit version above `after`
    /// (every entry if `None`).
    pub fn wake_after(&self, after: Option<u64>) -> (Vec<u8>, Vec<u8>) {
        let (begin, end) = self.meta.range(&WAKE, &());
        match after {
            None => (begin, end),
            Some(v) => (self.meta.range(&WAKE, &(last_stamp_of(v),)).1, end),
        }
    }

    /// The range of [`WAKE`] entries with a commit version at or below
    /// `upto`.
    pub fn wake_through(&self, upto: u64) -> (Vec<u8>, Vec<u8>) {
        let (begin, _) = self.meta.range(&WAKE, &());
        (begin, self.meta.range(&WAKE, &(last_stamp_of(upto),)).1)
    }

    /// The commit version and topic of a [`WAKE`] key, or `None` if it is
    /// not one this code can read (callers then wake everyone).
    pub fn decode_wake<'k>(&self, key: &'k [u8]) -> Option<WakeEntry<'k>> {
        let rest = key.strip_prefix(self.meta.prefix())?;
        let (tag, stamp, kind, id): (i64, Versionstamp, i64, Cow<'k, str>) =
            foundationdb_tuple::unpack(rest).ok()?;
        if tag != WAKE.tag {
            return None;
        }
        let version = u64::from_be_bytes(stamp.as_bytes()[..8].try_into().ok()?);
        Topic::from_parts(kind, &id)?;
        Some(WakeEntry { version, kind, id })
    }
}

/// One decoded [`WAKE`] entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WakeEntry<'k> {
    /// The commit version of the change.
    pub version: u64,
    kind: i64,
    id: Cow<'k, str>,
}

impl WakeEntry<'_> {
    /// What the change concerns.
    pub fn topic(&self) -> Topic<'_> {
        Topic::from_parts(self.kind, &self.id).expect("checked when decoded")
    }
}

/// The largest complete versionstamp of commit version `v`: every key of
/// that commit sorts at or before it.
fn last_stamp_of(v: u64) -> Versionstamp {
    let mut bytes = [0xff; 12];
    bytes[..8].copy_from_slice(&v.to_be_bytes());
    Versionstamp::from(bytes)
}

/// Records a change in `tx` that sync delivers: bumps the counter (atomic
/// `Add` of 1) and writes one [`WAKE`] entry per topic at the commit's
/// versionstamp. Blind writes only: no read, no conflict range. Call it in
/// every transaction that changes something sync delivers, naming every
/// topic whose long-polls may see the change (module docs).
pub fn bump(tx: &kv::Transaction, keys: &Keys, topics: &[Topic<'_>]) {
    tx.atomic_op(&keys.counter, &1u64.to_le_bytes(), MutationType::Add);
    for topic in topics {
        let key = keys.meta.versionstamped_key(
            &WAKE,
            &(Versionstamp::incomplete(0), topic.kind(), topic.id()),
        );
        tx.atomic_op(&key, b"", MutationType::SetVersionstampedKey);
    }
}

/// Removes the [`WAKE`] entries with a commit version at or below `upto`
/// and raises the floor to the newest one removed, in one transaction. The
/// entries are found with one reverse read of a single key, so the cost is
/// one range clear whatever their number. Returns the new floor, or `None`
/// if there was nothing to remove.
///
/// Errors: the store's.
pub async fn prune(db: &kv::Database, keys: &Keys, upto: u64) -> kv::Result<Option<u64>> {
    let (begin, end) = keys.wake_through(upto);
    // Safe to run twice: a retry after a commit that applied finds the
    // entries through `upto` gone and returns `None` (the caller only logs
    // errors), and raising the floor is a `Max`, which a second run cannot
    // lower.
    db.run(|tx, _| {
        let (begin, end) = (begin.clone(), end.clone());
        async move {
            let newest = tx
                .get_range_all(
                    RangeOption::new(begin.clone(), end.clone())
                        .limit(1)
                        .reverse(true),
                    true,
                )
                .await?;
            let Some(version) = newest
                .first()
                .and_then(|kv| keys.decode_wake(&kv.key))
                .map(|e| e.version)
            else {
                return Ok(None);
            };
            tx.clear_range(&begin, &keys.wake_through(version).1);
            tx.atomic_op(&keys.floor, &version.to_le_bytes(), MutationType::Max);
            Ok(Some(version))
        }
    })
    .await
}
