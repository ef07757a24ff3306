//! The key schema of the `transitory` database: the contract between the code
//! that writes it and every reader, tool and older or newer version of Myelin.
//!
//! Every directory lives under `<root>/transitory` (root from
//! `databases.transitory.root`, default `myelin`) and holds keys
//! `prefix ++ pack((tag, fields...))`. [`SPEC`] below is the machine-readable
//! form of this list, from which `myelin keys layout` and
//! `docs/key-layout.md` are generated; keep the two in step.
//!
//! Schema version: 1 ([`SCHEMA_VERSION`], stored in `meta/schema_version`;
//! the `meta` rows below are [`crate::db::meta`]'s, the same in every database;
//! Myelin refuses to open a store whose version is newer or older).
//!
//! | Directory | Tag | Subspace | Key tuple | Value |
//! |-----------|----:|----------|-----------|-------|
//! | `meta` | 0 | `schema_version` | `(0)` | u64 little-endian: the schema version |
//! | `meta` | 1 | `notify` | `(1)` | u64 little-endian change counter, bumped by every write sync delivers (`db::notify`) |
//! | `meta` | 2 | `wake` | `(2, position: versionstamp, kind: int, id: str)` | empty: a commit concerns this user (0), room (1) or user's peers (2); the watchers' wake feed (`db::notify`) |
//! | `meta` | 3 | `wake_floor` | `(3)` | u64 little-endian: `wake` entries at or below this commit version may be pruned |
//! | `to_device` | 0 | `inbox` | `(0, user_id: str, device_id: str, position: versionstamp)` | msgpack `ToDeviceRecord` |
//! | `to_device` | 1 | `txn` | `(1, user_id: str, device_id: str, txn_id: str)` | u64 little-endian: sent at (ms) |
//! | `to_device` | 2 | `txn_expiry` | `(2, sent_ms: int, user_id: str, device_id: str, txn_id: str)` | empty |
//! | `typing` | 0 | `current` | `(0, room_id: str, user_id: str)` | u64 little-endian: expires at (ms) |
//! | `typing` | 1 | `log` | `(1, room_id: str, position: versionstamp)` | empty: the room's typing set changed |
//! | `typing` | 2 | `changed` | `(2, position: versionstamp, room_id: str)` | empty: the room's latest typing change, by position (sync's feed) |
//! | `presence` | 0 | `current` | `(0, user_id: str)` | msgpack `PresenceRecord` |
//! | `presence` | 1 | `log` | `(1, user_id: str, position: versionstamp)` | empty: the user's presence changed |
//! | `device_lists` | 0 | `log` | `(0, user_id: str, position: versionstamp)` | empty: the user's devices or keys changed |
//! | `sliding_sync` | 0 | `connection` | `(0, user_id: str, device_id: str, conn_id: str)` | msgpack `ConnectionRecord`: a sliding-sync connection's generation, last use and rooms sent (`docs/sliding-sync.md`) |
//!
//! Every `log` and `inbox` key ends in the commit's versionstamp (written with
//! `SetVersionstampedKey`), so "changes since position P" is one range read
//! starting after `P` and writers never conflict with each other. Retention
//! is in `docs/transitory.md`.
//!
//! To add a subspace: declare a `SubspaceSpec` constant (next free tag in its
//! directory), list it in its directory's `subspaces`, add a typed encoder
//! function next to it (as [`meta::schema_version_key`] does), and add a row above.
//! A new directory is a `DirectorySpec` constant listed in [`SPEC`].
//! Changing the meaning or encoding of existing keys requires a new schema
//! version.
//!
//! Who may import this: `db::transitory` and `db` (to open the database), the
//! CLI and tests. Pure byte work.

use crate::db::meta;
use crate::keys::{DatabaseSpec, DirectorySpec, Field, FieldType, SubspaceSpec, ValueEncoding};

/// The key-schema version this code writes and understands.
pub const SCHEMA_VERSION: u32 = 1;

/// The `transitory` database's key schema.
pub static SPEC: DatabaseSpec = DatabaseSpec {
    name: "transitory",
    schema_version: SCHEMA_VERSION,
    doc: "Short-lived data: to-device messages, typing notifications, presence, device-list change records and sliding-sync connections.",
    directories: &[
        meta::DIRECTORY,
        TO_DEVICE,
        TYPING,
        PRESENCE,
        DEVICE_LISTS,
        SLIDING_SYNC,
    ],
};

const USER_ID: Field = Field {
    name: "user_id",
    ty: FieldType::Str,
};
const DEVICE_ID: Field = Field {
    name: "device_id",
    ty: FieldType::Str,
};
const ROOM_ID: Field = Field {
    name: "room_id",
    ty: FieldType::Str,
};
const POSITION: Field = Field {
    name: "position",
    ty: FieldType::Versionstamp,
};
const TXN_ID: Field = Field {
    name: "txn_id",
    ty: FieldType::Str,
};

/// `to_device/inbox`: `(0, user_id, device_id, versionstamp) -> msgpack
/// ToDeviceRecord`, one pending message of a recipient device, in send order.
pub const TO_DEVICE_INBOX: SubspaceSpec = SubspaceSpec {
    name: "inbox",
    tag: 0,
    key: &[USER_ID, DEVICE_ID, POSITION],
    value: ValueEncoding::MsgPack("ToDeviceRecord"),
    doc: "A to-device message waiting for its recipient device, at the versionstamp of its send; removed once the device's sync acknowledges it.",
};

/// `to_device/txn`: `(1, sender user, sender device, txn_id) -> u64 sent_ms`.
pub const TO_DEVICE_TXN: SubspaceSpec = SubspaceSpec {
    name: "txn",
    tag: 1,
    key: &[USER_ID, DEVICE_ID, TXN_ID],
    value: ValueEncoding::U64Le,
    doc: "A sendToDevice transaction already applied (idempotency), with when it was sent (ms).",
};

/// `to_device/txn_expiry`: `(2, sent_ms, user, device, txn_id) -> empty`,
/// the index the collector walks to drop old `txn` entries in time order.
pub const TO_DEVICE_TXN_EXPIRY: SubspaceSpec = SubspaceSpec {
    name: "txn_expiry",
    tag: 2,
    key: &[
        Field {
            name: "sent_ms",
            ty: FieldType::Int,
        },
        USER_ID,
        DEVICE_ID,
        TXN_ID,
    ],
    value: ValueEncoding::Empty,
    doc: "The txn entries in time order, for their collection.",
};

/// `to_device`: pending to-device messages and applied transaction IDs.
pub const TO_DEVICE: DirectorySpec = DirectorySpec {
    path: &["to_device"],
    doc: "To-device messages per recipient device, and sendToDevice transaction IDs.",
    subspaces: &[TO_DEVICE_INBOX, TO_DEVICE_TXN, TO_DEVICE_TXN_EXPIRY],
};

/// `typing/current`: `(0, room_id, user_id) -> u64 expires_ms`.
pub const TYPING_CURRENT: SubspaceSpec = SubspaceSpec {
    name: "current",
    tag: 0,
    key: &[ROOM_ID, USER_ID],
    value: ValueEncoding::U64Le,
    doc: "A user typing in a room, until the given time (ms since the epoch).",
};

/// `typing/log`: `(1, room_id, versionstamp) -> empty`.
pub const TYPING_LOG: SubspaceSpec = SubspaceSpec {
    name: "log",
    tag: 1,
    key: &[ROOM_ID, POSITION],
    value: ValueEncoding::Empty,
    doc: "The room's typing set changed at this versionstamp (start, stop or expiry); only the latest entry per room is kept.",
};

/// `typing`: who types where, and when each room's set changed.
pub const TYPING: DirectorySpec = DirectorySpec {
    path: &["typing"],
    doc: "Typing notifications per room and their change positions.",
    subspaces: &[TYPING_CURRENT, TYPING_LOG, TYPING_CHANGED],
};

/// `typing/changed`: `(2, versionstamp, room_id) -> empty`: the same latest
/// change per room as `typing/log`, ordered by position across rooms, so
/// sync finds the rooms whose typing changed since a token in one range
/// read (`docs/sync.md`). Written with `typing/log`, which says which entry
/// to clear.
pub const TYPING_CHANGED: SubspaceSpec = SubspaceSpec {
    name: "changed",
    tag: 2,
    key: &[POSITION, ROOM_ID],
    value: ValueEncoding::Empty,
    doc: "Each room's latest typing change, ordered by versionstamp across rooms: rooms whose typing changed since a sync token in one range read.",
};

/// `presence/current`: `(0, user_id) -> msgpack PresenceRecord`.
pub const PRESENCE_CURRENT: SubspaceSpec = SubspaceSpec {
    name: "current",
    tag: 0,
    key: &[USER_ID],
    value: ValueEncoding::MsgPack("PresenceRecord"),
    doc: "A user's presence as last set or derived: state, status message, last activity (ms) and the versionstamp of the change.",
};

/// `presence/log`: `(1, user_id, versionstamp) -> empty`.
pub const PRESENCE_LOG: SubspaceSpec = SubspaceSpec {
    name: "log",
    tag: 1,
    key: &[USER_ID, POSITION],
    value: ValueEncoding::Empty,
    doc: "The user's presence changed at this versionstamp; only the latest entry per user is kept.",
};

/// `presence`: users' presence and when it changed.
pub const PRESENCE: DirectorySpec = DirectorySpec {
    path: &["presence"],
    doc: "Users' presence and its change positions.",
    subspaces: &[PRESENCE_CURRENT, PRESENCE_LOG],
};

/// `device_lists/log`: `(0, user_id, versionstamp) -> empty`.
pub const DEVICE_LIST_LOG: SubspaceSpec = SubspaceSpec {
    name: "log",
    tag: 0,
    key: &[USER_ID, POSITION],
    value: ValueEncoding::Empty,
    doc: "The user's device list or keys changed at this versionstamp; only the latest entry per user is kept, and entries older than the retention are collected.",
};

/// `device_lists`: when each user's devices or E2EE keys changed.
pub const DEVICE_LISTS: DirectorySpec = DirectorySpec {
    path: &["device_lists"],
    doc: "Device-list change records (for /keys/changes and sync device_lists).",
    subspaces: &[DEVICE_LIST_LOG],
};

/// `sliding_sync/connection`: `(0, user_id, device_id, conn_id) -> msgpack
/// ConnectionRecord`, one simplified sliding sync (MSC4186) connection.
pub const SLIDING_CONNECTION: SubspaceSpec = SubspaceSpec {
    name: "connection",
    tag: 0,
    key: &[
        USER_ID,
        DEVICE_ID,
        Field {
            name: "conn_id",
            ty: FieldType::Str,
        },
    ],
    value: ValueEncoding::MsgPack("ConnectionRecord"),
    doc: "A sliding-sync connection: its generation, when it was last used (ms) and the rooms sent at its last two generations; expires after the configured idle time.",
};

/// `sliding_sync`: simplified sliding sync connections (`docs/sliding-sync.md`).
pub const SLIDING_SYNC: DirectorySpec = DirectorySpec {
    path: &["sliding_sync"],
    doc: "Simplified sliding sync (MSC4186) connection state per user, device and conn_id.",
    subspaces: &[SLIDING_CONNECTION],
};
