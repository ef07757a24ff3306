//! The `meta` directory every database declares: facts about the database
//! itself, the same in each.
//!
//! | Tag | Subspace | Key tuple | Value |
//! |----:|----------|-----------|-------|
//! | 0 | `schema_version` | `(0)` | u64 little-endian: the key-schema version of the store |
//! | 1 | `notify` | `(1)` | u64 little-endian change counter ([`crate::db::notify`]) |
//! | 2 | `wake` | `(2, position: versionstamp, kind: int, id: str)` | empty: the wake feed ([`crate::db::notify`]) |
//! | 3 | `wake_floor` | `(3)` | u64 little-endian: the wake feed's pruning floor ([`crate::db::notify`]) |
//!
//! A database lists [`DIRECTORY`] first among its `DatabaseSpec`
//! directories, and `db::open` checks and records its schema version with
//! [`check_schema_version`] in the transaction that opens its directories.
//!
//! Invariants:
//! - the recorded version is written once, by the first open of an empty
//!   store, and never rewritten: a store whose version differs from the
//!   code's (newer or older; there is no migration) is refused and left as
//!   it was;
//! - the layout above is the same in every database, so a tool that knows
//!   one `meta` knows them all.
//!
//! Who may import this: `db` (to open databases), each database's `keys.rs`
//! (to list [`DIRECTORY`]) and tests.

use crate::keys::{Directories, DirectorySpec, SubspaceSpec, ValueEncoding};
use crate::kv;

/// `meta/schema_version`: `(0) -> u64 little-endian`, the schema version of
/// the store, written at open.
pub const SCHEMA_VERSION: SubspaceSpec = SubspaceSpec {
    name: "schema_version",
    tag: 0,
    key: &[],
    value: ValueEncoding::U64Le,
    doc: "The key-schema version of the data in this database.",
};

/// `meta`: facts about the database itself: its schema version and its
/// notification keys.
pub const DIRECTORY: DirectorySpec = DirectorySpec {
    path: &["meta"],
    doc: "Facts about the database itself.",
    subspaces: &[
        SCHEMA_VERSION,
        crate::db::notify::NOTIFY,
        crate::db::notify::WAKE,
        crate::db::notify::WAKE_FLOOR,
    ],
};

/// The key of [`SCHEMA_VERSION`] in a database whose directories are
/// `dirs`.
///
/// # Panics
/// If the database does not declare [`DIRECTORY`].
pub fn schema_version_key(dirs: &Directories) -> Vec<u8> {
    dirs.space(&DIRECTORY).key(&SCHEMA_VERSION, &())
}

/// Why a store's recorded schema version was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SchemaMismatch {
    /// Written by a newer Myelin: the recorded version.
    TooNew(u64),
    /// Written by an older Myelin: the recorded version.
    TooOld(u64),
    /// The recorded value is not 8 bytes: its length in bytes.
    Corrupt(usize),
}

/// Reads the schema version recorded in `dirs`' database and compares it
/// with `supported`; records `supported` if none is recorded yet. Run inside
/// the transaction that opens the database's directories.
///
/// Safe to run twice: it writes only when nothing is recorded, and writes
/// the same value each time.
///
/// Errors: the store's (outer), or the mismatch (inner), in which case
/// nothing was written.
pub async fn check_schema_version(
    tx: &kv::Transaction,
    dirs: &Directories,
    supported: u32,
) -> Result<Result<(), SchemaMismatch>, kv::Error> {
    let key = schema_version_key(dirs);
    let supported = u64::from(supported);
    Ok(match tx.get(&key, false).await? {
        None => {
            tx.set(&key, &supported.to_le_bytes());
            Ok(())
        }
        Some(v) => match <[u8; 8]>::try_from(v.as_slice()).map(u64::from_le_bytes) {
            Err(_) => Err(SchemaMismatch::Corrupt(v.len())),
            Ok(found) if found > supported => Err(SchemaMismatch::TooNew(found)),
            Ok(found) if found < supported => Err(SchemaMismatch::TooOld(found)),
            Ok(_) => Ok(()),
        },
    })
}
