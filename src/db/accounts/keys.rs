//! The key schema of the `accounts` database: the contract between the code
//! that writes it and every reader, tool and older or newer version of Myelin.
//!
//! Every directory lives under `<root>/accounts` (root from
//! `databases.accounts.root`, default `myelin`) and holds keys
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
//! | `users` | 0 | `user` | `(0, user_id: str)` | msgpack `UserRecord` |
//! | `users` | 1 | `password` | `(1, user_id: str)` | utf-8 argon2id PHC string |
//! | `sessions` | 0 | `token` | `(0, token_sha256: bytes)` | msgpack `TokenRecord` (user, device) |
//! | `sessions` | 1 | `device` | `(1, user_id: str, device_id: str)` | msgpack `DeviceRecord` |
//! | `sessions` | 2 | `uia` | `(2, session: str)` | msgpack `UiaSession` |
//! | `sessions` | 3 | `cleanup_owed` | `(3, user_id: str, device_id: str)` | empty: a deleted device's transitory cleanup is still owed |
//! | `profiles` | 0 | `field` | `(0, user_id: str, field: str)` | json value |
//! | `account_data` | 0 | `current` | `(0, user_id: str, room_id: str, type: str)` | 10-byte versionstamp ++ json content |
//! | `account_data` | 1 | `log` | `(1, user_id: str, position: versionstamp)` | msgpack `LogEntry` (room, type, content) |
//! | `filters` | 0 | `filter` | `(0, user_id: str, filter_id: str)` | json filter definition |
//! | `push_rules` | 0 | `ruleset` | `(0, user_id: str)` | json push rule set |
//! | `server` | 0 | `signing_key` | `(0)` | msgpack `SigningKeyRecord` |
//! | `server` | 1 | `registration_token` | `(1, token: str)` | msgpack `RegistrationTokenRecord` (uses allowed, completed, expiry) |
//! | `e2ee` | 0 | `device_keys` | `(0, user_id: str, device_id: str)` | json signed device keys |
//! | `e2ee` | 1 | `one_time_key` | `(1, user_id: str, device_id: str, algorithm: str, key_id: str)` | json one-time key |
//! | `e2ee` | 2 | `fallback_key` | `(2, user_id: str, device_id: str, algorithm: str)` | msgpack `FallbackKeyRecord` |
//! | `e2ee` | 3 | `cross_signing` | `(3, user_id: str, usage: str)` | json cross-signing key (`master`, `self_signing`, `user_signing`) |
//! | `e2ee` | 4 | `signature` | `(4, target_user: str, target_key: str, signer_user: str, signer_key_id: str)` | utf-8 signature |
//! | `e2ee` | 5 | `claim` | `(5, created_ms: int, claim_id: bytes)` | msgpack `ClaimRecord`: the keys one claim handed out, for its retry |
//! | `key_backup` | 0 | `version` | `(0, user_id: str, version: int)` | msgpack `BackupVersionRecord` |
//! | `key_backup` | 1 | `last_version` | `(1, user_id: str)` | u64 little-endian: the highest version ever created |
//! | `key_backup` | 2 | `session` | `(2, user_id: str, version: int, room_id: str, session_id: str)` | json `KeyBackupData` |
//!
//! `room_id` is `""` for global account data. An account-data write sets
//! `current` and appends to `log` in one transaction, both with the commit's
//! versionstamp (`SetVersionstampedValue` / `SetVersionstampedKey`), and clears
//! the `log` entry of the value it replaces: the log holds one entry per
//! (room, type), and changes since a position are one range read of `log`.
//!
//! To add a subspace: declare a `SubspaceSpec` constant (next free tag in its
//! directory), list it in its directory's `subspaces`, add a typed encoder
//! function next to it (as [`meta::schema_version_key`] does), and add a row above.
//! A new directory is a `DirectorySpec` constant listed in [`SPEC`].
//! Changing the meaning or encoding of existing keys requires a new schema
//! version.
//!
//! Who may import this: `db::accounts` and `db` (to open the database), the
//! CLI and tests. Pure byte work.

use crate::db::meta;
use crate::keys::{DatabaseSpec, DirectorySpec, Field, FieldType, SubspaceSpec, ValueEncoding};

/// The key-schema version this code writes and understands.
pub const SCHEMA_VERSION: u32 = 1;

/// The `accounts` database's key schema.
pub static SPEC: DatabaseSpec = DatabaseSpec {
    name: "accounts",
    schema_version: SCHEMA_VERSION,
    doc: "Users, password hashes, access tokens, devices, profiles, account data, filters, push rules and the server's signing key.",
    directories: &[
        meta::DIRECTORY,
        USERS,
        SESSIONS,
        PROFILES,
        ACCOUNT_DATA,
        FILTERS,
        PUSH_RULES,
        SERVER,
        E2EE,
        KEY_BACKUP,
    ],
};

const USER_ID: Field = Field {
    name: "user_id",
    ty: FieldType::Str,
};

/// `users/user`: `(0, user_id) -> msgpack UserRecord`, one per account ever
/// registered (deactivated ones stay, so IDs are never reused).
pub const USER: SubspaceSpec = SubspaceSpec {
    name: "user",
    tag: 0,
    key: &[USER_ID],
    value: ValueEncoding::MsgPack("UserRecord"),
    doc: "One local account: creation time, deactivated and admin flags.",
};

/// `users/password`: `(1, user_id) -> argon2id PHC string`.
pub const PASSWORD: SubspaceSpec = SubspaceSpec {
    name: "password",
    tag: 1,
    key: &[USER_ID],
    value: ValueEncoding::Utf8,
    doc: "The account's password hash (Argon2id, PHC string); absent if it has none or is deactivated.",
};

/// `users`: accounts and password hashes.
pub const USERS: DirectorySpec = DirectorySpec {
    path: &["users"],
    doc: "Local accounts and their password hashes.",
    subspaces: &[USER, PASSWORD],
};

/// `sessions/token`: `(0, sha256(token)) -> msgpack TokenRecord`.
pub const TOKEN: SubspaceSpec = SubspaceSpec {
    name: "token",
    tag: 0,
    key: &[Field {
        name: "token_sha256",
        ty: FieldType::Bytes,
    }],
    value: ValueEncoding::MsgPack("TokenRecord"),
    doc: "An access token, by the SHA-256 of the token (never the token itself): its user and device.",
};

/// `sessions/device`: `(1, user_id, device_id) -> msgpack DeviceRecord`.
pub const DEVICE: SubspaceSpec = SubspaceSpec {
    name: "device",
    tag: 1,
    key: &[
        USER_ID,
        Field {
            name: "device_id",
            ty: FieldType::Str,
        },
    ],
    value: ValueEncoding::MsgPack("DeviceRecord"),
    doc: "A device (login session): display name, creation time and its token's hash.",
};

/// `sessions/uia`: `(2, session) -> msgpack UiaSession`.
pub const UIA: SubspaceSpec = SubspaceSpec {
    name: "uia",
    tag: 2,
    key: &[Field {
        name: "session",
        ty: FieldType::Str,
    }],
    value: ValueEncoding::MsgPack("UiaSession"),
    doc: "A user-interactive authentication session: whom it authenticates and when it began.",
};

/// `sessions/cleanup_owed`: `(3, user_id, device_id) -> empty`.
pub const CLEANUP_OWED: SubspaceSpec = SubspaceSpec {
    name: "cleanup_owed",
    tag: 3,
    key: &[
        USER_ID,
        Field {
            name: "device_id",
            ty: FieldType::Str,
        },
    ],
    value: ValueEncoding::Empty,
    doc: "A deleted device whose to-device inbox (transitory) is still to be deleted and device-list change recorded: written with the deletion, cleared once that is done, swept at start-up.",
};

/// `sessions`: access tokens, devices and UIA sessions.
pub const SESSIONS: DirectorySpec = DirectorySpec {
    path: &["sessions"],
    doc: "Access tokens (by hash), devices, user-interactive auth sessions and the cleanups deleted devices still owe.",
    subspaces: &[TOKEN, DEVICE, UIA, CLEANUP_OWED],
};

/// `profiles/field`: `(0, user_id, field) -> JSON value`.
pub const PROFILE_FIELD: SubspaceSpec = SubspaceSpec {
    name: "field",
    tag: 0,
    key: &[
        USER_ID,
        Field {
            name: "field",
            ty: FieldType::Str,
        },
    ],
    value: ValueEncoding::Json,
    doc: "One profile field (displayname, avatar_url, extended fields).",
};

/// `profiles`: global profiles.
pub const PROFILES: DirectorySpec = DirectorySpec {
    path: &["profiles"],
    doc: "Users' global profiles.",
    subspaces: &[PROFILE_FIELD],
};

/// `account_data/current`: `(0, user_id, room_id, type) -> versionstamp ++ JSON`.
pub const ACCOUNT_DATA_CURRENT: SubspaceSpec = SubspaceSpec {
    name: "current",
    tag: 0,
    key: &[
        USER_ID,
        Field {
            name: "room_id",
            ty: FieldType::Str,
        },
        Field {
            name: "type",
            ty: FieldType::Str,
        },
    ],
    value: ValueEncoding::Raw,
    doc: "Current account data: the 10-byte versionstamp of its write, then the JSON content. room_id is empty for global data.",
};

/// `account_data/log`: `(1, user_id, versionstamp) -> msgpack LogEntry`.
pub const ACCOUNT_DATA_LOG: SubspaceSpec = SubspaceSpec {
    name: "log",
    tag: 1,
    key: &[
        USER_ID,
        Field {
            name: "position",
            ty: FieldType::Versionstamp,
        },
    ],
    value: ValueEncoding::MsgPack("LogEntry"),
    doc: "Account-data change log: the latest write of each (room, type), at its commit versionstamp.",
};

/// `account_data`: current values and the change log sync reads.
pub const ACCOUNT_DATA: DirectorySpec = DirectorySpec {
    path: &["account_data"],
    doc: "Global and per-room account data, and its change log.",
    subspaces: &[ACCOUNT_DATA_CURRENT, ACCOUNT_DATA_LOG],
};

/// `filters/filter`: `(0, user_id, filter_id) -> JSON`.
pub const FILTER: SubspaceSpec = SubspaceSpec {
    name: "filter",
    tag: 0,
    key: &[
        USER_ID,
        Field {
            name: "filter_id",
            ty: FieldType::Str,
        },
    ],
    value: ValueEncoding::Json,
    doc: "A stored sync filter definition.",
};

/// `filters`: sync filters.
pub const FILTERS: DirectorySpec = DirectorySpec {
    path: &["filters"],
    doc: "Users' sync filters.",
    subspaces: &[FILTER],
};

/// `push_rules/ruleset`: `(0, user_id) -> JSON`.
pub const RULESET: SubspaceSpec = SubspaceSpec {
    name: "ruleset",
    tag: 0,
    key: &[USER_ID],
    value: ValueEncoding::Json,
    doc: "A user's push rule set, once they changed it (absent: the server defaults).",
};

/// `push_rules`: users' push rules.
pub const PUSH_RULES: DirectorySpec = DirectorySpec {
    path: &["push_rules"],
    doc: "Users' push rules.",
    subspaces: &[RULESET],
};

/// `server/signing_key`: `(0) -> msgpack SigningKeyRecord`.
pub const SIGNING_KEY: SubspaceSpec = SubspaceSpec {
    name: "signing_key",
    tag: 0,
    key: &[],
    value: ValueEncoding::MsgPack("SigningKeyRecord"),
    doc: "The server's ed25519 signing key (version and PKCS#8 document), created on first start.",
};

/// `server/registration_token`: `(1, token) -> msgpack
/// RegistrationTokenRecord`.
pub const REGISTRATION_TOKEN: SubspaceSpec = SubspaceSpec {
    name: "registration_token",
    tag: 1,
    key: &[Field {
        name: "token",
        ty: FieldType::Str,
    }],
    value: ValueEncoding::MsgPack("RegistrationTokenRecord"),
    doc: "A registration token made through the admin API: uses allowed and completed, expiry time.",
};

/// `server`: server-wide secrets.
pub const SERVER: DirectorySpec = DirectorySpec {
    path: &["server"],
    doc: "Server-wide state shared by every server process.",
    subspaces: &[SIGNING_KEY, REGISTRATION_TOKEN],
};

// ---- End-to-end encryption keys and key backup (storage: `e2ee.rs`) ----

const DEVICE_ID: Field = Field {
    name: "device_id",
    ty: FieldType::Str,
};
const ALGORITHM: Field = Field {
    name: "algorithm",
    ty: FieldType::Str,
};
const BACKUP_VERSION: Field = Field {
    name: "version",
    ty: FieldType::Int,
};

/// `e2ee/device_keys`: `(0, user_id, device_id) -> JSON`.
pub const DEVICE_KEYS: SubspaceSpec = SubspaceSpec {
    name: "device_keys",
    tag: 0,
    key: &[USER_ID, DEVICE_ID],
    value: ValueEncoding::Json,
    doc: "A device's identity keys as uploaded (signed DeviceKeys), without signatures added later by others.",
};

/// `e2ee/one_time_key`: `(1, user_id, device_id, algorithm, key_id) -> JSON`.
pub const ONE_TIME_KEY: SubspaceSpec = SubspaceSpec {
    name: "one_time_key",
    tag: 1,
    key: &[
        USER_ID,
        DEVICE_ID,
        ALGORITHM,
        Field {
            name: "key_id",
            ty: FieldType::Str,
        },
    ],
    value: ValueEncoding::Json,
    doc: "An unclaimed one-time key; a claim removes it in the transaction that returns it.",
};

/// `e2ee/fallback_key`: `(2, user_id, device_id, algorithm) -> msgpack FallbackKeyRecord`.
pub const FALLBACK_KEY: SubspaceSpec = SubspaceSpec {
    name: "fallback_key",
    tag: 2,
    key: &[USER_ID, DEVICE_ID, ALGORITHM],
    value: ValueEncoding::MsgPack("FallbackKeyRecord"),
    doc: "A device's fallback key for one algorithm: key ID, JSON key and whether it was handed out.",
};

/// `e2ee/cross_signing`: `(3, user_id, usage) -> JSON`.
pub const CROSS_SIGNING: SubspaceSpec = SubspaceSpec {
    name: "cross_signing",
    tag: 3,
    key: &[
        USER_ID,
        Field {
            name: "usage",
            ty: FieldType::Str,
        },
    ],
    value: ValueEncoding::Json,
    doc: "A cross-signing key (usage master, self_signing or user_signing) as uploaded.",
};

/// `e2ee/signature`: `(4, target_user, target_key, signer_user, signer_key_id) -> signature`.
pub const SIGNATURE: SubspaceSpec = SubspaceSpec {
    name: "signature",
    tag: 4,
    key: &[
        Field {
            name: "target_user",
            ty: FieldType::Str,
        },
        Field {
            name: "target_key",
            ty: FieldType::Str,
        },
        Field {
            name: "signer_user",
            ty: FieldType::Str,
        },
        Field {
            name: "signer_key_id",
            ty: FieldType::Str,
        },
    ],
    value: ValueEncoding::Utf8,
    doc: "A signature uploaded with /keys/signatures/upload on a device key (target_key = device ID) or a cross-signing key (target_key = its public key).",
};

/// `e2ee/claim`: `(5, created_ms, claim_id) -> msgpack ClaimRecord`.
pub const KEY_CLAIM: SubspaceSpec = SubspaceSpec {
    name: "claim",
    tag: 5,
    key: &[
        Field {
            name: "created_ms",
            ty: FieldType::Int,
        },
        Field {
            name: "claim_id",
            ty: FieldType::Bytes,
        },
    ],
    value: ValueEncoding::MsgPack("ClaimRecord"),
    doc: "What one /keys/claim request handed out, written with the claim so a retry after commit_unknown_result returns the same keys; cleared by later claims once older than the retention (10 minutes).",
};

/// `e2ee`: device keys, one-time and fallback keys, cross-signing keys and signatures.
pub const E2EE: DirectorySpec = DirectorySpec {
    path: &["e2ee"],
    doc: "End-to-end encryption keys of users and devices.",
    subspaces: &[
        DEVICE_KEYS,
        ONE_TIME_KEY,
        FALLBACK_KEY,
        CROSS_SIGNING,
        SIGNATURE,
        KEY_CLAIM,
    ],
};

/// `key_backup/version`: `(0, user_id, version) -> msgpack BackupVersionRecord`.
pub const BACKUP_VERSION_INFO: SubspaceSpec = SubspaceSpec {
    name: "version",
    tag: 0,
    key: &[USER_ID, BACKUP_VERSION],
    value: ValueEncoding::MsgPack("BackupVersionRecord"),
    doc: "A server-side key backup version: algorithm, auth_data and its etag counter.",
};

/// `key_backup/last_version`: `(1, user_id) -> u64 little-endian`.
pub const BACKUP_LAST_VERSION: SubspaceSpec = SubspaceSpec {
    name: "last_version",
    tag: 1,
    key: &[USER_ID],
    value: ValueEncoding::U64Le,
    doc: "The highest backup version ever created for the user (versions are never reused).",
};

/// `key_backup/session`: `(2, user_id, version, room_id, session_id) -> JSON`.
pub const BACKUP_SESSION: SubspaceSpec = SubspaceSpec {
    name: "session",
    tag: 2,
    key: &[
        USER_ID,
        BACKUP_VERSION,
        Field {
            name: "room_id",
            ty: FieldType::Str,
        },
        Field {
            name: "session_id",
            ty: FieldType::Str,
        },
    ],
    value: ValueEncoding::Json,
    doc: "One backed-up room key (KeyBackupData).",
};

/// `key_backup`: server-side backups of room keys.
pub const KEY_BACKUP: DirectorySpec = DirectorySpec {
    path: &["key_backup"],
    doc: "Server-side key backup versions and their room keys.",
    subspaces: &[BACKUP_VERSION_INFO, BACKUP_LAST_VERSION, BACKUP_SESSION],
};
