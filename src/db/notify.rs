//! The per-database notification key: how a write tells every server process
//! that something sync delivers has changed.
//!
//! Each database that sync reads declares [`NOTIFY`] in its `meta` directory:
//! one key, `meta/notify = (1) -> u64 little-endian`, a counter. Every
//! transaction that changes something `/sync` delivers calls [`bump`] on it
//! before committing. `bump` is an atomic `Add`, so it reads nothing, never
//! adds a conflict and never makes two writers conflict with each other; it
//! only changes the key's value, which is what fires FoundationDB watches.
//!
//! Each server process runs one watcher per database on this key
//! (`sync::notifier`), so the cost of waking long-polls is one watch per
//! database per process, whatever the number of long-polls.
//!
//! Invariants:
//! - a transaction that commits a change sync delivers also bumps the key of
//!   its database, in the same transaction (else long-polls wake only at
//!   their timeout);
//! - the counter's value means nothing; only its changes do.
//!
//! Who may import this: `db::*` (writers), `sync` (the watcher), tests.

use crate::keys::{Directories, SubspaceSpec, ValueEncoding};
use crate::kv::{self, MutationType};

/// `meta/notify`: `(1) -> u64 little-endian`, bumped by every transaction that
/// changes something `/sync` delivers; watched by every server process.
pub const NOTIFY: SubspaceSpec = SubspaceSpec {
    name: "notify",
    tag: 1,
    key: &[],
    value: ValueEncoding::U64Le,
    doc: "Change counter bumped (atomic add) by every write that sync delivers; each server watches it to wake long-polls.",
};

/// The notification key of a database, or `None` if its schema does not
/// declare [`NOTIFY`] in a `meta` directory (its writes cannot wake
/// long-polls yet).
pub fn key(dirs: &Directories) -> Option<Vec<u8>> {
    let meta = dirs.spec().directory(&["meta"])?;
    meta.contains(&NOTIFY)
        .then(|| dirs.space(meta).key(&NOTIFY, &()))
}

/// Bumps the notification key `key` (from [`key`]) inside `tx`: an atomic
/// `Add` of 1, which adds no read conflict and never conflicts with other
/// bumps. Call it in every transaction that changes something sync delivers.
pub fn bump(tx: &kv::Transaction, key: &[u8]) {
    tx.atomic_op(key, &1u64.to_le_bytes(), MutationType::Add);
}
