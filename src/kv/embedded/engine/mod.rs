//! The storage-engine seam: the durable, ordered byte store under the
//! embedded backend's committer (decision 0007).
//!
//! The committer, conflict checking, versions, versionstamps, watches and
//! the 5-second age are the embedded backend's own and shared; an engine
//! only has to
//! - open (or atomically create) its store in a directory and report the
//!   commit version stored with the last batch ([`Store::open`]);
//! - hand out a consistent read view of the last applied batch, with point
//!   reads and forward and reverse range reads, that stays valid (and
//!   unchanged) for as long as a reader holds it ([`Store::view`], [`View`]);
//! - apply one [`Batch`] (sets, clears, range clears) and its commit version
//!   atomically and durably before returning ([`Store::apply`]): after a
//!   crash either all of it or none of it is there.
//!
//! Two engines implement it: `redb` (a copy-on-write B-tree, one fsync per
//! commit; `redb_store`) and `fjall` (an LSM tree with its own write-ahead
//! journal, one journal append and fsync per commit; `fjall_store`). A
//! directory holds one engine's store; opening it with the other engine is
//! refused, never answered with an empty store.
//!
//! Invariant: only the committer thread applies batches, so the view opened
//! right after an apply is exactly the state at that batch's version.
//! Who may import this: the embedded backend's modules (`super`); the rest
//! of the crate names only [`Engine`] (declared in `config`, which sits
//! below `kv`; its methods are here).

mod fjall_store;
mod redb_store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::rangeset::RangeSet;
use super::{EmbeddedOptions, Error, Result};

pub use crate::config::Engine;

impl Engine {
    /// Every engine, for tests that run against each.
    pub const ALL: [Engine; 2] = [Engine::Redb, Engine::Fjall];

    /// The name used in the configuration (`"redb"`, `"fjall"`).
    pub fn name(self) -> &'static str {
        match self {
            Engine::Redb => "redb",
            Engine::Fjall => "fjall",
        }
    }

    /// Where this engine keeps its store inside the database directory.
    fn store_path(self, dir: &Path) -> PathBuf {
        match self {
            Engine::Redb => dir.join("store.redb"),
            Engine::Fjall => dir.join("store.fjall"),
        }
    }

    /// The engine whose store `dir` holds, if any.
    fn detect(dir: &Path) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.store_path(dir).exists())
    }
}

/// An open store, owned by the committer thread.
pub(super) enum Store {
    Redb(redb_store::RedbStore),
    Fjall(fjall_store::FjallStore),
}

impl Store {
    /// Opens `options.engine`'s store in `dir` (creating the directory and
    /// the store if needed); returns it, the commit version stored with its
    /// last batch (0 for a new store), and the store's path.
    ///
    /// Errors: [`Error::Storage`] if the directory cannot be created, holds
    /// the other engine's store, is locked by another process, or is corrupt.
    pub(super) fn open(dir: &Path, options: &EmbeddedOptions) -> Result<(Store, u64, PathBuf)> {
        std::fs::create_dir_all(dir).map_err(Error::storage)?;
        let engine = options.engine;
        if let Some(found) = Engine::detect(dir)
            && found != engine
            && !engine.store_path(dir).exists()
        {
            return Err(Error::storage(std::io::Error::other(format!(
                "{} holds a {} store, the configuration asks for {}",
                dir.display(),
                found.name(),
                engine.name()
            ))));
        }
        let path = engine.store_path(dir);
        let (store, version) = match engine {
            Engine::Redb => {
                let (s, v) = redb_store::RedbStore::open(dir, &path, options)?;
                (Store::Redb(s), v)
            }
            Engine::Fjall => {
                let (s, v) = fjall_store::FjallStore::open(dir, &path, options)?;
                (Store::Fjall(s), v)
            }
        };
        Ok((store, version, path))
    }

    /// A read view of the last applied batch.
    pub(super) fn view(&self) -> Result<View> {
        match self {
            Store::Redb(s) => s.view(),
            Store::Fjall(s) => s.view(),
        }
    }

    /// Applies `batch` and records `version` as the last commit version,
    /// atomically and durably (returns after the fsync).
    pub(super) fn apply(&mut self, batch: &Batch, version: u64) -> Result<()> {
        match self {
            Store::Redb(s) => s.apply(batch, version),
            Store::Fjall(s) => s.apply(batch, version),
        }
    }
}

/// Raises the last commit version of the store in `dir` (whichever engine
/// made it) to at least `min_version` and returns it. The store must not
/// be open: both engines lock it.
///
/// Errors: [`Error::Storage`] if there is no store in `dir`, it is open or
/// it cannot be written.
pub(super) fn advance_version(dir: &Path, min_version: u64) -> Result<u64> {
    match Engine::detect(dir) {
        Some(Engine::Redb) => {
            redb_store::advance_version(&Engine::Redb.store_path(dir), min_version)
        }
        Some(Engine::Fjall) => {
            fjall_store::advance_version(&Engine::Fjall.store_path(dir), min_version)
        }
        None => Err(Error::storage(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no store in {}", dir.display()),
        ))),
    }
}

/// A pair read from a view.
pub(super) type Pair = (Vec<u8>, Vec<u8>);

/// A consistent read view of one commit version. Holding it keeps that
/// version readable (redb keeps its pages, fjall its older entries).
pub(super) enum View {
    Redb(redb_store::RedbView),
    Fjall(fjall_store::FjallView),
    /// The store was shut down: every read fails with [`Error::Closed`].
    Closed,
}

impl View {
    /// The value of `key`.
    pub(super) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self {
            View::Redb(v) => v.get(key),
            View::Fjall(v) => v.get(key),
            View::Closed => Err(Error::Closed),
        }
    }

    /// The pairs of `[begin, end)` in key order, or in reverse.
    pub(super) fn range<'a>(
        &'a self,
        begin: &[u8],
        end: &[u8],
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<Pair>> + 'a> {
        if begin >= end {
            return Box::new(std::iter::empty());
        }
        match self {
            View::Redb(v) => v.range(begin, end, reverse),
            View::Fjall(v) => v.range(begin, end, reverse),
            View::Closed => Box::new(std::iter::once(Err(Error::Closed))),
        }
    }
}

/// The writes of one commit batch as the committer builds it: the final
/// value of each written key (`None`: cleared) and the cleared ranges.
///
/// Invariant: a key in `writes` was written after every clear of a range
/// holding it (a range clear drops the entries it covers), so the batch's
/// effect is "clear `cleared`, then apply `writes`", and reading through it
/// ([`Batch::get`]) sees the batch's earlier mutations.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub(super) cleared: RangeSet,
}

impl Batch {
    /// Sets `key` to `value`.
    pub(super) fn set(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    /// Clears `key`.
    pub(super) fn clear(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// Clears `[begin, end)`.
    pub(super) fn clear_range(&mut self, begin: &[u8], end: &[u8]) {
        if begin >= end {
            return;
        }
        let covered: Vec<Vec<u8>> = self
            .writes
            .range::<[u8], _>((
                std::ops::Bound::Included(begin),
                std::ops::Bound::Excluded(end),
            ))
            .map(|(k, _)| k.clone())
            .collect();
        for k in covered {
            self.writes.remove(&k);
        }
        self.cleared.insert(begin, end);
    }

    /// The value of `key` after the batch so far, over `view`.
    pub(super) fn get(&self, view: &View, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None if self.cleared.contains(key) => Ok(None),
            None => view.get(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_its_own_writes_and_a_later_set_survives_a_range_clear() {
        let mut b = Batch::default();
        b.set(b"a".to_vec(), b"1".to_vec());
        b.set(b"c".to_vec(), b"3".to_vec());
        b.clear_range(b"b", b"d");
        b.set(b"cc".to_vec(), b"4".to_vec());
        let view = View::Closed;
        assert_eq!(b.get(&view, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(b.get(&view, b"c").unwrap(), None, "cleared by the range");
        assert_eq!(b.get(&view, b"cc").unwrap(), Some(b"4".to_vec()));
        assert!(b.get(&view, b"z").is_err(), "falls through to the view");
        assert!(!b.writes.contains_key(b"c".as_slice()));
    }

    #[test]
    fn a_directory_holding_one_engines_store_is_refused_by_the_other() {
        let dir = tempfile::tempdir().unwrap();
        for (made, asked) in [(Engine::Redb, Engine::Fjall), (Engine::Fjall, Engine::Redb)] {
            let sub = dir.path().join(made.name());
            let opts = EmbeddedOptions {
                engine: made,
                ..Default::default()
            };
            let (store, _, _) = Store::open(&sub, &opts).expect("creates");
            drop(store);
            let opts = EmbeddedOptions {
                engine: asked,
                ..Default::default()
            };
            let err = Store::open(&sub, &opts).err().expect("refused");
            assert!(err.to_string().contains(made.name()), "{err}");
            assert!(!asked.store_path(&sub).exists(), "nothing created");
        }
    }
}
