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
//! Myelin refuses to open a store whose version is newer).
//!
//! | Directory | Tag | Subspace | Key tuple | Value |
//! |-----------|----:|----------|-----------|-------|
//! | `meta` | 0 | `schema_version` | `(0)` | u64 little-endian: the schema version |
//!
//! To add a subspace: declare a `SubspaceSpec` constant (next free tag in its
//! directory), list it in its directory's `subspaces`, add a typed encoder
//! function next to it (as [`schema_version_key`] does), and add a row above.
//! A new directory is a `DirectorySpec` constant listed in [`SPEC`].
//! Changing the meaning or encoding of existing keys requires a new schema
//! version.
//!
//! Who may import this: `db::transitory` and `db` (to open the database), the
//! CLI and tests. Pure byte work.

use crate::keys::{DatabaseSpec, Directories, DirectorySpec, SubspaceSpec, ValueEncoding};

/// The key-schema version this code writes and understands.
pub const SCHEMA_VERSION: u32 = 1;

/// `meta/schema_version`: `(0) -> u64 little-endian`, the schema version of
/// the store, written at open.
pub const META_SCHEMA_VERSION: SubspaceSpec = SubspaceSpec {
    name: "schema_version",
    tag: 0,
    key: &[],
    value: ValueEncoding::U64Le,
    doc: "The key-schema version of the data in this database.",
};

/// The key of [`META_SCHEMA_VERSION`].
pub fn schema_version_key(dirs: &Directories) -> Vec<u8> {
    dirs.space(&META).key(&META_SCHEMA_VERSION, &())
}

/// `meta`: facts about the database itself.
pub const META: DirectorySpec = DirectorySpec {
    path: &["meta"],
    doc: "Facts about the database itself.",
    subspaces: &[META_SCHEMA_VERSION],
};

/// The `transitory` database's key schema.
pub static SPEC: DatabaseSpec = DatabaseSpec {
    name: "transitory",
    schema_version: SCHEMA_VERSION,
    doc: "Short-lived data: typing notifications, read receipts, presence and to-device messages.",
    directories: &[META],
};
