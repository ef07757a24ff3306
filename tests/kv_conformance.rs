//! The `kv` conformance suite: one set of tests, run against every available
//! backend (see `tests/common/mod.rs`: always the embedded store; FoundationDB
//! with `--features fdb` and `FDB_CLUSTER_FILE` set).
//!
//! Each test states one promise of the `kv` interface (the invariants listed in
//! `src/kv/mod.rs` and FoundationDB's documented behaviour) and can fail. The
//! FoundationDB backend may report errors either as the matching `kv::Error`
//! variant or as the raw FoundationDB error, so tests compare error codes.
//!
//! - `isolation`: lost updates, phantoms, snapshot and read-only transactions,
//!   explicit conflict ranges, commit versions, gap-free visibility, paged
//!   range reads at one snapshot under concurrent writes;
//! - `mutations`: atomic operations and versionstamps;
//! - `reads`: read-your-writes, key selectors and ranges against a model;
//! - `watches`: when watches fire, cancellation;
//! - `limits`: size and age limits, the retry runner, idempotent retries.

mod common;

#[path = "kv_conformance/isolation.rs"]
mod isolation;
#[path = "kv_conformance/limits.rs"]
mod limits;
#[path = "kv_conformance/mutations.rs"]
mod mutations;
#[path = "kv_conformance/reads.rs"]
mod reads;
#[path = "kv_conformance/watches.rs"]
mod watches;

use myelin::kv::{CommitInfo, Result};

/// Asserts that `result` failed with FoundationDB error `code`.
#[track_caller]
fn assert_code(result: Result<CommitInfo>, code: i32) {
    match result {
        Ok(info) => panic!("expected error {code}, committed {info:?}"),
        Err(e) => assert_eq!(e.code(), Some(code), "{e:?}"),
    }
}

/// A `SetVersionstampedValue` parameter: `prefix`, a 10-byte placeholder for
/// the versionstamp, and the placeholder's offset (4 bytes, little-endian).
fn versionstamped_value(prefix: &[u8]) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.extend_from_slice(&[0; 10]);
    v.extend_from_slice(&(prefix.len() as u32).to_le_bytes());
    v
}
