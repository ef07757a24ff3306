//! The key schema of the `rooms` database: the contract between the code
//! that writes it and every reader, tool and older or newer version of Myelin.
//!
//! Every directory lives under `<root>/rooms` (root from
//! `databases.rooms.root`, default `myelin`) and holds keys
//! `prefix ++ pack((tag, fields...))`. [`SPEC`] below is the machine-readable
//! form of this list, from which `myelin keys layout` and
//! `docs/key-layout.md` are generated; keep the two in step. The design and
//! its cost model are in `docs/rooms.md`.
//!
//! Schema version: 2 ([`SCHEMA_VERSION`], stored in `meta/schema_version`;
//! the `meta` rows below are [`crate::db::meta`]'s, the same in every database;
//! Myelin refuses to open a store whose version is newer or older: there is
//! no migration yet). Version 2 folded `events/position` (tag 1) and
//! `events/meta` (tag 3) into `events/pdu`, so that an event is one record
//! (one B-tree leaf to write and one key to read instead of three); those two
//! tags are retired, not reused.
//!
//! | Directory | Tag | Subspace | Key tuple | Value |
//! |-----------|----:|----------|-----------|-------|
//! | `meta` | 0 | `schema_version` | `(0)` | u64 little-endian: the schema version |
//! | `rooms` | 0 | `room` | `(0, room_id: str)` | msgpack `RoomRecord` (version, creator, create event) |
//! | `rooms` | 1 | `state` | `(1, room_id: str, type: str, state_key: str)` | utf-8 event ID: current state |
//! | `rooms` | 2 | `extremity` | `(2, room_id: str, event_id: str)` | u64 little-endian depth: forward extremities |
//! | `rooms` | 3 | `member` | `(3, room_id: str, user_id: str)` | msgpack `MemberRecord` |
//! | `rooms` | 4 | `blocked` | `(4, room_id: str)` | empty: an admin blocked the room |
//! | `rooms` | 5 | `deletion` | `(5, delete_id: str)` | json: an admin room deletion and its status |
//! | `rooms` | 6 | `bump` | `(6, room_id: str)` | 12-byte stream position of the room's latest bump event ([`BUMP_EVENT_TYPES`]) |
//! | `events` | 0 | `pdu` | `(0, event_id: str)` | 12-byte stream position (versionstamp ++ order), then msgpack `StoredEvent` (room, canonical JSON, `unsigned` metadata) |
//! | `events` | 2 | `redaction` | `(2, event_id: str)` | utf-8 ID of the redaction event |
//! | `timeline` | 0 | `stream` | `(0, room_id: str, position: versionstamp)` | utf-8 event ID |
//! | `timeline` | 1 | `topological` | `(1, room_id: str, depth: int, position: versionstamp)` | utf-8 event ID |
//! | `state_log` | 0 | `change` | `(0, room_id: str, position: versionstamp)` | msgpack `StateChange` (type, state key, event) |
//! | `state_log` | 1 | `history` | `(1, room_id: str, type: str, state_key: str, position: versionstamp)` | utf-8 event ID |
//! | `memberships` | 0 | `user_room` | `(0, user_id: str, room_id: str)` | msgpack `MemberRecord` |
//! | `txns` | 0 | `txn` | `(0, user_id: str, device_id: str, room_id: str, txn_id: str)` | utf-8 event ID |
//! | `meta` | 1 | `notify` | `(1)` | u64 little-endian change counter, bumped by every write sync delivers (`db::notify`) |
//! | `meta` | 2 | `wake` | `(2, position: versionstamp, kind: int, id: str)` | empty: a commit concerns this user (0), room (1) or user's peers (2); the watchers' wake feed (`db::notify`) |
//! | `meta` | 3 | `wake_floor` | `(3)` | u64 little-endian: `wake` entries at or below this commit version may be pruned |
//! | `memberships` | 1 | `forgotten` | `(1, user_id: str, room_id: str)` | empty: the user forgot the room |
//! | `aliases` | 0 | `alias` | `(0, alias: str)` | msgpack `AliasRecord` (room, creator) |
//! | `aliases` | 1 | `room_alias` | `(1, room_id: str, alias: str)` | empty: the aliases of a room |
//! | `public_rooms` | 0 | `listed` | `(0, room_id: str)` | empty: the room is in the public directory |
//! | `receipts` | 0 | `log` | `(0, room_id: str, position: versionstamp)` | msgpack `ReceiptRecord`: the latest receipt of each (user, type, thread), by position |
//! | `receipts` | 1 | `latest` | `(1, room_id: str, user_id: str, type: str, thread: str)` | 12 bytes: the position of that receipt's `log` entry |
//! | `relations` | 0 | `child` | `(0, room_id: str, parent: str, rel_type: str, event_type: str, position: versionstamp)` | utf-8 ID of the relating event |
//! | `relations` | 1 | `thread` | `(1, room_id: str, root: str)` | empty: a thread root of the room |
//! | `timeline` | 2 | `changed` | `(2, position: versionstamp, room_id: str)` | empty: the room changed at this position (sync's changed-rooms feed) |
//!
//! A stream position is a tuple versionstamp: the commit's 10-byte
//! versionstamp and a 2-byte order of the event within its transaction
//! (room creation writes several events in one commit). Every key holding a
//! position is written with `SetVersionstampedKey`, and `events/pdu` with
//! `SetVersionstampedValue` (the position is the value's first 12 bytes), so
//! the transaction writing an event cannot read its record back
//! (`accessed_unreadable`): it keeps the PDUs it wrote itself.
//!
//! To add a subspace: declare a `SubspaceSpec` constant (next free tag in its
//! directory), list it in its directory's `subspaces`, add a typed encoder
//! function next to it (as [`meta::schema_version_key`] does), and add a row above.
//! A new directory is a `DirectorySpec` constant listed in [`SPEC`].
//! Changing the meaning or encoding of existing keys requires a new schema
//! version.
//!
//! Who may import this: `db::rooms` and `db` (to open the database), the
//! CLI and tests. Pure byte work.

use crate::db::meta;
use crate::keys::{DatabaseSpec, DirectorySpec, Field, FieldType, SubspaceSpec, ValueEncoding};

/// The key-schema version this code writes and understands.
pub const SCHEMA_VERSION: u32 = 2;

const ROOM_ID: Field = Field {
    name: "room_id",
    ty: FieldType::Str,
};
const USER_ID: Field = Field {
    name: "user_id",
    ty: FieldType::Str,
};
const EVENT_ID: Field = Field {
    name: "event_id",
    ty: FieldType::Str,
};
const TYPE: Field = Field {
    name: "type",
    ty: FieldType::Str,
};
const STATE_KEY: Field = Field {
    name: "state_key",
    ty: FieldType::Str,
};
const POSITION: Field = Field {
    name: "position",
    ty: FieldType::Versionstamp,
};

/// `rooms/room`: `(0, room_id) -> msgpack RoomRecord`.
pub const ROOM: SubspaceSpec = SubspaceSpec {
    name: "room",
    tag: 0,
    key: &[ROOM_ID],
    value: ValueEncoding::MsgPack("RoomRecord"),
    doc: "A room: its version, creator and create event. Never changes after creation.",
};

/// `rooms/state`: `(1, room_id, type, state_key) -> event ID`.
pub const STATE: SubspaceSpec = SubspaceSpec {
    name: "state",
    tag: 1,
    key: &[ROOM_ID, TYPE, STATE_KEY],
    value: ValueEncoding::Utf8,
    doc: "Current room state: the event holding each (type, state_key).",
};

/// `rooms/extremity`: `(2, room_id, event_id) -> u64 depth`.
pub const EXTREMITY: SubspaceSpec = SubspaceSpec {
    name: "extremity",
    tag: 2,
    key: &[ROOM_ID, EVENT_ID],
    value: ValueEncoding::U64Le,
    doc: "Forward extremities of the room DAG (events nothing references yet), with their depth.",
};

/// `rooms/member`: `(3, room_id, user_id) -> msgpack MemberRecord`.
pub const MEMBER: SubspaceSpec = SubspaceSpec {
    name: "member",
    tag: 3,
    key: &[ROOM_ID, USER_ID],
    value: ValueEncoding::MsgPack("MemberRecord"),
    doc: "Current membership of each user in a room, and its event.",
};

/// `rooms/blocked`: `(4, room_id) -> ()`.
pub const BLOCKED: SubspaceSpec = SubspaceSpec {
    name: "blocked",
    tag: 4,
    key: &[ROOM_ID],
    value: ValueEncoding::Empty,
    doc: "A room an admin blocked (admin API room delete with `block`): no one may join it.",
};

/// `rooms/deletion`: `(5, delete_id) -> json deletion status`.
pub const DELETION: SubspaceSpec = SubspaceSpec {
    name: "deletion",
    tag: 5,
    key: &[Field {
        name: "delete_id",
        ty: FieldType::Str,
    }],
    value: ValueEncoding::Json,
    doc: "An admin API room deletion job and its status (Synapse's delete_status shape).",
};

/// `rooms/bump`: `(6, room_id) -> 12-byte stream position`.
pub const BUMP: SubspaceSpec = SubspaceSpec {
    name: "bump",
    tag: 6,
    key: &[ROOM_ID],
    value: ValueEncoding::Position,
    doc: "The stream position of the room's latest bump event (message, encrypted, sticker, create, call invite, poll start, beacon info): sliding sync's room order and `bump_stamp`. Rooms whose last bump predates the key have none (readers fall back to the latest event).",
};

/// The event types that move a room up a sliding-sync room list and set
/// its `bump_stamp` (MSC4186's "bump event types", the set Synapse uses:
/// `SLIDING_SYNC_DEFAULT_BUMP_EVENT_TYPES`). Membership, name, topic and
/// other state changes, reactions, edits and redactions do not bump.
pub const BUMP_EVENT_TYPES: [&str; 7] = [
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "m.beacon_info",
];

/// `rooms`: per-room current facts.
pub const ROOMS: DirectorySpec = DirectorySpec {
    path: &["rooms"],
    doc: "Rooms: version, current state, forward extremities, current members and the latest bump.",
    subspaces: &[ROOM, STATE, EXTREMITY, MEMBER, BLOCKED, DELETION, BUMP],
};

/// `events/pdu`: `(0, event_id) -> position (12 bytes) ++ msgpack StoredEvent`.
pub const PDU: SubspaceSpec = SubspaceSpec {
    name: "pdu",
    tag: 0,
    key: &[EVENT_ID],
    value: ValueEncoding::PositionThenMsgPack("StoredEvent"),
    doc: "An accepted event: its stream position (10-byte commit versionstamp, 2-byte big-endian order in the commit), then its room, its signed canonical JSON (without event_id and unsigned) and what `unsigned` needs (sending device and txn ID, the state event replaced).",
};

/// `events/redaction`: `(2, event_id) -> redaction event ID`.
pub const REDACTION: SubspaceSpec = SubspaceSpec {
    name: "redaction",
    tag: 2,
    key: &[EVENT_ID],
    value: ValueEncoding::Utf8,
    doc: "The redaction that redacts an event; readers serve the event redacted.",
};

/// `events`: events by ID.
pub const EVENTS: DirectorySpec = DirectorySpec {
    path: &["events"],
    doc: "Events by ID: the PDU with its stream position, and its redaction.",
    subspaces: &[PDU, REDACTION],
};

/// `timeline/stream`: `(0, room_id, position) -> event ID`.
pub const STREAM: SubspaceSpec = SubspaceSpec {
    name: "stream",
    tag: 0,
    key: &[ROOM_ID, POSITION],
    value: ValueEncoding::Utf8,
    doc: "The room timeline in stream order (commit order).",
};

/// `timeline/topological`: `(1, room_id, depth, position) -> event ID`.
pub const TOPOLOGICAL: SubspaceSpec = SubspaceSpec {
    name: "topological",
    tag: 1,
    key: &[
        ROOM_ID,
        Field {
            name: "depth",
            ty: FieldType::Int,
        },
        POSITION,
    ],
    value: ValueEncoding::Utf8,
    doc: "The room timeline in topological order (depth, then stream position).",
};

/// `timeline`: the room timelines.
pub const TIMELINE: DirectorySpec = DirectorySpec {
    path: &["timeline"],
    doc: "Room timelines in stream and topological order.",
    subspaces: &[STREAM, TOPOLOGICAL, CHANGED],
};

/// `timeline/changed`: `(2, position, room_id) -> ()`. Written (for sync)
/// by every event send and every receipt, in the same transaction: "which
/// rooms changed after P" is one range read (`docs/sync.md`).
pub const CHANGED: SubspaceSpec = SubspaceSpec {
    name: "changed",
    tag: 2,
    key: &[POSITION, ROOM_ID],
    value: ValueEncoding::Empty,
    doc: "Every change of every room (event or receipt) by stream position: the rooms changed since a sync token in one range read.",
};

/// `state_log/change`: `(0, room_id, position) -> msgpack StateChange`.
pub const STATE_CHANGE: SubspaceSpec = SubspaceSpec {
    name: "change",
    tag: 0,
    key: &[ROOM_ID, POSITION],
    value: ValueEncoding::MsgPack("StateChange"),
    doc: "Every accepted state event of a room in stream order: the state-change log.",
};

/// `state_log/history`: `(1, room_id, type, state_key, position) -> event ID`.
pub const STATE_HISTORY: SubspaceSpec = SubspaceSpec {
    name: "history",
    tag: 1,
    key: &[ROOM_ID, TYPE, STATE_KEY, POSITION],
    value: ValueEncoding::Utf8,
    doc: "The same log by (type, state_key): the state of one key at a position is one reverse read.",
};

/// `state_log`: state history, for state at any event.
pub const STATE_LOG: DirectorySpec = DirectorySpec {
    path: &["state_log"],
    doc: "Room state changes by stream position, for state at any event and sync's state deltas.",
    subspaces: &[STATE_CHANGE, STATE_HISTORY],
};

/// `memberships/user_room`: `(0, user_id, room_id) -> msgpack MemberRecord`.
pub const USER_ROOM: SubspaceSpec = SubspaceSpec {
    name: "user_room",
    tag: 0,
    key: &[USER_ID, ROOM_ID],
    value: ValueEncoding::MsgPack("MemberRecord"),
    doc: "A user's current membership in each room they ever had one in: rooms of a user in one read.",
};

/// `memberships`: memberships by user.
pub const MEMBERSHIPS: DirectorySpec = DirectorySpec {
    path: &["memberships"],
    doc: "Memberships by user.",
    subspaces: &[USER_ROOM, FORGOTTEN],
};

/// `memberships/forgotten`: `(1, user_id, room_id) -> ()`.
pub const FORGOTTEN: SubspaceSpec = SubspaceSpec {
    name: "forgotten",
    tag: 1,
    key: &[USER_ID, ROOM_ID],
    value: ValueEncoding::Empty,
    doc: "A room the user left and forgot (`/forget`); cleared by the user's next membership event.",
};

/// `aliases/alias`: `(0, alias) -> msgpack AliasRecord`.
pub const ALIAS: SubspaceSpec = SubspaceSpec {
    name: "alias",
    tag: 0,
    key: &[Field {
        name: "alias",
        ty: FieldType::Str,
    }],
    value: ValueEncoding::MsgPack("AliasRecord"),
    doc: "A local room alias: its room and who created it.",
};

/// `aliases/room_alias`: `(1, room_id, alias) -> ()`.
pub const ROOM_ALIAS: SubspaceSpec = SubspaceSpec {
    name: "room_alias",
    tag: 1,
    key: &[
        ROOM_ID,
        Field {
            name: "alias",
            ty: FieldType::Str,
        },
    ],
    value: ValueEncoding::Empty,
    doc: "The local aliases of a room, in one range read.",
};

/// `aliases`: room aliases.
pub const ALIASES: DirectorySpec = DirectorySpec {
    path: &["aliases"],
    doc: "Local room aliases, both ways.",
    subspaces: &[ALIAS, ROOM_ALIAS],
};

/// `public_rooms/listed`: `(0, room_id) -> ()`.
pub const LISTED: SubspaceSpec = SubspaceSpec {
    name: "listed",
    tag: 0,
    key: &[ROOM_ID],
    value: ValueEncoding::Empty,
    doc: "A room published in the public room directory.",
};

/// `public_rooms`: the public room directory.
pub const PUBLIC_ROOMS: DirectorySpec = DirectorySpec {
    path: &["public_rooms"],
    doc: "The public room directory (`/publicRooms`).",
    subspaces: &[LISTED],
};

/// `receipts/log`: `(0, room_id, position) -> msgpack ReceiptRecord`.
pub const RECEIPT_LOG: SubspaceSpec = SubspaceSpec {
    name: "log",
    tag: 0,
    key: &[ROOM_ID, POSITION],
    value: ValueEncoding::MsgPack("ReceiptRecord"),
    doc: "The latest receipt of each (user, type, thread) of a room, keyed by the position it was set at: receipts since P in one range read.",
};

/// `receipts/latest`: `(1, room_id, user_id, type, thread) -> position`.
pub const RECEIPT_LATEST: SubspaceSpec = SubspaceSpec {
    name: "latest",
    tag: 1,
    key: &[
        ROOM_ID,
        USER_ID,
        TYPE,
        Field {
            name: "thread",
            ty: FieldType::Str,
        },
    ],
    value: ValueEncoding::Raw,
    doc: "Where the `log` entry of a (user, type, thread) receipt is (12 bytes), so a new receipt clears the old entry.",
};

/// `receipts`: read receipts.
pub const RECEIPTS: DirectorySpec = DirectorySpec {
    path: &["receipts"],
    doc: "Read receipts (m.read, m.read.private), for `/receipt`, `/read_markers` and sync.",
    subspaces: &[RECEIPT_LOG, RECEIPT_LATEST],
};

/// `relations/child`: `(0, room_id, parent, rel_type, event_type, position) -> event ID`.
pub const RELATION: SubspaceSpec = SubspaceSpec {
    name: "child",
    tag: 0,
    key: &[
        ROOM_ID,
        Field {
            name: "parent",
            ty: FieldType::Str,
        },
        Field {
            name: "rel_type",
            ty: FieldType::Str,
        },
        TYPE,
        POSITION,
    ],
    value: ValueEncoding::Utf8,
    doc: "Events relating to a parent (`m.relates_to`), by relation type, event type and position.",
};

/// `relations/thread`: `(1, room_id, root) -> ()`.
pub const THREAD: SubspaceSpec = SubspaceSpec {
    name: "thread",
    tag: 1,
    key: &[
        ROOM_ID,
        Field {
            name: "root",
            ty: FieldType::Str,
        },
    ],
    value: ValueEncoding::Empty,
    doc: "The thread roots of a room (events with an `m.thread` child).",
};

/// `relations`: the `m.relates_to` index, written in the send transaction.
pub const RELATIONS: DirectorySpec = DirectorySpec {
    path: &["relations"],
    doc: "Event relations and thread roots.",
    subspaces: &[RELATION, THREAD],
};

/// `txns/txn`: `(0, user_id, device_id, room_id, txn_id) -> event ID`. The
/// room is part of the scope: the spec scopes a transaction ID to the
/// device and the request path.
pub const TXN: SubspaceSpec = SubspaceSpec {
    name: "txn",
    tag: 0,
    key: &[
        USER_ID,
        Field {
            name: "device_id",
            ty: FieldType::Str,
        },
        ROOM_ID,
        Field {
            name: "txn_id",
            ty: FieldType::Str,
        },
    ],
    value: ValueEncoding::Utf8,
    doc: "A client transaction ID and the event it sent: repeats return the same event.",
};

/// `txns`: client transaction IDs.
pub const TXNS: DirectorySpec = DirectorySpec {
    path: &["txns"],
    doc: "Client transaction IDs per device, for idempotent sends.",
    subspaces: &[TXN],
};

/// The `rooms` database's key schema.
pub static SPEC: DatabaseSpec = DatabaseSpec {
    name: "rooms",
    schema_version: SCHEMA_VERSION,
    doc: "Rooms: events, the room graph, room state, timelines and membership.",
    directories: &[
        meta::DIRECTORY,
        ROOMS,
        EVENTS,
        TIMELINE,
        STATE_LOG,
        MEMBERSHIPS,
        TXNS,
        ALIASES,
        PUBLIC_ROOMS,
        RECEIPTS,
        RELATIONS,
    ],
};
