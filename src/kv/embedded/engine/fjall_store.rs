//! The `fjall` engine: an LSM tree (pure Rust) in the directory
//! `<dir>/store.fjall`, every key in the keyspace `data` (ordered bytewise,
//! as FoundationDB's keys), the last commit version in the keyspace `meta`.
//!
//! A commit is one `fjall` write batch across both keyspaces: appended to
//! fjall's write-ahead journal as one unit (recovery drops a batch whose
//! end marker is missing, so a batch is all or nothing) and fsynced
//! (`PersistMode::SyncAll`) before it is applied to the memtables and
//! becomes visible. A view is a `fjall` snapshot: a sequence number below
//! which reads see exactly the batches applied so far; holding it keeps
//! the older versions of the entries it sees from being compacted away.
//!
//! fjall has no range deletion in a write batch: a range clear becomes one
//! tombstone per key the range holds at commit (read from the current
//! state, which only the committer changes). Its cost grows with the keys
//! cleared (decision 0007).
//!
//! A new store is built in `store.fjall.new-<pid>` and renamed into place
//! once complete, so a crash while creating never leaves a half-made store.

use std::path::Path;

use fjall::{KeyspaceCreateOptions, PersistMode, Readable};

use super::{Batch, Pair};
use crate::kv::embedded::EmbeddedOptions;
use crate::kv::{Error, Result};

/// The keyspace of every key and value.
const DATA: &str = "data";
/// The keyspace of `version` (8 bytes big-endian).
const META: &str = "meta";

pub(in crate::kv::embedded) struct FjallStore {
    db: fjall::Database,
    data: fjall::Keyspace,
    meta: fjall::Keyspace,
}

/// A `fjall` snapshot of the data keyspace.
pub(in crate::kv::embedded) struct FjallView {
    snap: fjall::Snapshot,
    data: fjall::Keyspace,
}

fn open_db(path: &Path, options: &EmbeddedOptions) -> Result<fjall::Database> {
    fjall::Database::builder(path)
        .cache_size(options.cache_size_bytes as u64)
        // Batches say their own durability (`SyncAll`).
        .manual_journal_persist(true)
        .open()
        .map_err(Error::storage)
}

fn keyspaces(db: &fjall::Database) -> Result<(fjall::Keyspace, fjall::Keyspace)> {
    let data = db
        .keyspace(DATA, KeyspaceCreateOptions::default)
        .map_err(Error::storage)?;
    let meta = db
        .keyspace(META, KeyspaceCreateOptions::default)
        .map_err(Error::storage)?;
    Ok((data, meta))
}

fn read_version(meta: &fjall::Keyspace) -> Result<u64> {
    Ok(meta
        .get("version")
        .map_err(Error::storage)?
        .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])))
        .unwrap_or(0))
}

/// Creates an empty store at `path`: built in a temporary directory next
/// to it, synced, closed and renamed into place (if another process got
/// there first its store is kept), then the parent directory is synced.
fn create_store(dir: &Path, path: &Path, options: &EmbeddedOptions) -> Result<()> {
    let tmp = dir.join(format!("store.fjall.new-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(Error::storage)?;
    }
    {
        let db = open_db(&tmp, options)?;
        keyspaces(&db)?;
        db.persist(PersistMode::SyncAll).map_err(Error::storage)?;
    }
    std::fs::File::open(&tmp)
        .and_then(|d| d.sync_all())
        .map_err(Error::storage)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        if !path.exists() {
            return Err(Error::storage(e));
        }
        std::fs::remove_dir_all(&tmp).map_err(Error::storage)?;
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::storage)
}

impl FjallStore {
    /// Opens (creating if needed) the store at `path` in `dir`.
    pub(super) fn open(dir: &Path, path: &Path, options: &EmbeddedOptions) -> Result<(Self, u64)> {
        if !path.exists() {
            create_store(dir, path, options)?;
        }
        let db = open_db(path, options)?;
        let (data, meta) = keyspaces(&db)?;
        let version = read_version(&meta)?;
        Ok((FjallStore { db, data, meta }, version))
    }

    pub(super) fn view(&self) -> Result<super::View> {
        Ok(super::View::Fjall(FjallView {
            snap: self.db.snapshot(),
            data: self.data.clone(),
        }))
    }

    /// One journal batch: a tombstone for each key the cleared ranges hold
    /// now (unless the batch writes it: one entry per key and batch), the
    /// writes, the version; fsynced before it is applied.
    pub(super) fn apply(&mut self, batch: &Batch, version: u64) -> Result<()> {
        let mut wb = self.db.batch().durability(Some(PersistMode::SyncAll));
        if batch.cleared.iter().next().is_some() {
            let snap = self.db.snapshot();
            for (b, e) in batch.cleared.iter() {
                for guard in snap.range(&self.data, b..e) {
                    let key = guard.key().map_err(Error::storage)?;
                    if !batch.writes.contains_key(key.as_ref()) {
                        wb.remove(&self.data, key);
                    }
                }
            }
        }
        for (k, v) in &batch.writes {
            match v {
                Some(v) => wb.insert(&self.data, k.as_slice(), v.as_slice()),
                None => wb.remove(&self.data, k.as_slice()),
            }
        }
        wb.insert(&self.meta, "version", version.to_be_bytes().as_slice());
        wb.commit().map_err(Error::storage)
    }
}

impl FjallView {
    pub(super) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .snap
            .get(&self.data, key)
            .map_err(Error::storage)?
            .map(|v| v.to_vec()))
    }

    pub(super) fn range<'a>(
        &'a self,
        begin: &[u8],
        end: &[u8],
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<Pair>> + 'a> {
        let it = self.snap.range(&self.data, begin..end).map(|g| {
            g.into_inner()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(Error::storage)
        });
        if reverse {
            Box::new(it.rev())
        } else {
            Box::new(it)
        }
    }
}

/// See [`super::advance_version`].
pub(super) fn advance_version(path: &Path, min_version: u64) -> Result<u64> {
    let db = open_db(path, &EmbeddedOptions::default())?;
    let (_, meta) = keyspaces(&db)?;
    let version = read_version(&meta)?.max(min_version);
    let mut wb = db.batch().durability(Some(PersistMode::SyncAll));
    wb.insert(&meta, "version", version.to_be_bytes().as_slice());
    wb.commit().map_err(Error::storage)?;
    Ok(version)
}
