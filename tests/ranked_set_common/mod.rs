//! Shared set-up of the ranked set tests: an embedded store in a temporary
//! directory, a set at a raw prefix, and a dump of the set's keys.

#![allow(dead_code)]

use foundationdb_tuple::Subspace;
use myelin::kv::ranked_set::RankedSet;
use myelin::kv::{Database, KeyValue, RangeOption, embedded};

/// An empty embedded store (kept while the directory lives).
pub fn store() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = embedded::Database::open(dir.path(), Default::default()).expect("open store");
    (dir, store.into())
}

/// A ranked set under the raw key prefix `prefix`.
pub fn set_at(prefix: &[u8]) -> RankedSet {
    RankedSet::new(Subspace::from_bytes(prefix.to_vec())).expect("prefix fits")
}

/// Every key of the set with the set's prefix removed, and its value.
pub async fn dump(db: &Database, set: &RankedSet) -> Vec<KeyValue> {
    let (begin, end) = set.subspace().range();
    let prefix = set.subspace().bytes().len();
    db.read_range(RangeOption::new(begin, end))
        .await
        .expect("scan")
        .into_iter()
        .map(|kv| KeyValue {
            key: kv.key[prefix..].to_vec(),
            value: kv.value,
        })
        .collect()
}
