//! The `redb` engine: every key in one table of raw bytes (ordered bytewise,
//! as FoundationDB's keys), the last commit version in a second table, one
//! file `<dir>/store.redb`. A commit is one `redb` write transaction with
//! `Durability::Immediate` (its default: one fsync); a view is a `redb` read
//! transaction, an MVCC snapshot that keeps its pages while held.
//!
//! A new store is built as `store.redb.new-<pid>` and linked into place once
//! complete, so a crash while creating never leaves a half-written store (a
//! leftover temporary file is harmless).

use std::path::Path;

use redb::{ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Batch, Pair};
use crate::kv::embedded::EmbeddedOptions;
use crate::kv::{Error, Result};

/// Every key and value of the store.
const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
/// Store metadata: `version` is the last commit version, 8 bytes big-endian.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub(in crate::kv::embedded) struct RedbStore {
    db: redb::Database,
}

/// A `redb` read transaction's data table.
pub(in crate::kv::embedded) struct RedbView {
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

/// Creates an empty store at `path` so that a crash at any moment leaves
/// either no store or a complete one: it is built under a temporary name
/// in the same directory, synced, and linked into place (a hard link fails
/// if another process got there first; then theirs is used), and the
/// directory is synced. A crash part-way leaves only a temporary file,
/// which the next creation replaces.
fn create_store(dir: &Path, path: &Path, options: &EmbeddedOptions) -> Result<()> {
    let tmp = dir.join(format!("store.redb.new-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    {
        let db = redb::Database::builder()
            .set_cache_size(options.cache_size_bytes)
            .create(&tmp)
            .map_err(Error::storage)?;
        let wtx = db.begin_write().map_err(Error::storage)?;
        wtx.open_table(DATA).map_err(Error::storage)?;
        wtx.open_table(META).map_err(Error::storage)?;
        wtx.commit().map_err(Error::storage)?;
    }
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(Error::storage)?;
    match std::fs::hard_link(&tmp, path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::storage(e)),
    }
    std::fs::remove_file(&tmp).map_err(Error::storage)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::storage)?;
    Ok(())
}

/// The stored version, 0 if none.
fn read_version(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<u64> {
    Ok(meta
        .get("version")
        .map_err(Error::storage)?
        .map(|v| u64::from_be_bytes(v.value().try_into().unwrap_or([0; 8])))
        .unwrap_or(0))
}

impl RedbStore {
    /// Opens (creating if needed) the store at `path` in `dir`.
    pub(super) fn open(dir: &Path, path: &Path, options: &EmbeddedOptions) -> Result<(Self, u64)> {
        if !path.exists() {
            create_store(dir, path, options)?;
        }
        let db = redb::Database::builder()
            .set_cache_size(options.cache_size_bytes)
            .create(path)
            .map_err(Error::storage)?;
        let version = {
            let wtx = db.begin_write().map_err(Error::storage)?;
            wtx.open_table(DATA).map_err(Error::storage)?;
            let version = read_version(&wtx.open_table(META).map_err(Error::storage)?)?;
            wtx.commit().map_err(Error::storage)?;
            version
        };
        Ok((RedbStore { db }, version))
    }

    pub(super) fn view(&self) -> Result<super::View> {
        let rtx = self.db.begin_read().map_err(Error::storage)?;
        let table = rtx.open_table(DATA).map_err(Error::storage)?;
        Ok(super::View::Redb(RedbView { table }))
    }

    /// One write transaction: the range clears, then the writes, then the
    /// version; committed with one fsync.
    pub(super) fn apply(&mut self, batch: &Batch, version: u64) -> Result<()> {
        let wtx = self.db.begin_write().map_err(Error::storage)?;
        {
            let mut table = wtx.open_table(DATA).map_err(Error::storage)?;
            for (b, e) in batch.cleared.iter() {
                table
                    .retain_in::<&[u8], _>(b..e, |_, _| false)
                    .map_err(Error::storage)?;
            }
            for (k, v) in &batch.writes {
                match v {
                    Some(v) => table.insert(k.as_slice(), v.as_slice()).map(drop),
                    None => table.remove(k.as_slice()).map(drop),
                }
                .map_err(Error::storage)?;
            }
            let mut meta = wtx.open_table(META).map_err(Error::storage)?;
            meta.insert("version", version.to_be_bytes().as_slice())
                .map_err(Error::storage)?;
        }
        wtx.commit().map_err(Error::storage)
    }
}

impl RedbView {
    pub(super) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .table
            .get(key)
            .map_err(Error::storage)?
            .map(|v| v.value().to_vec()))
    }

    pub(super) fn range<'a>(
        &'a self,
        begin: &[u8],
        end: &[u8],
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<Pair>> + 'a> {
        match self.table.range::<&[u8]>(begin..end) {
            Ok(r) => {
                let it = r.map(|e| {
                    e.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
                        .map_err(Error::storage)
                });
                if reverse {
                    Box::new(it.rev())
                } else {
                    Box::new(it)
                }
            }
            Err(e) => Box::new(std::iter::once(Err(Error::storage(e)))),
        }
    }
}

/// See [`super::advance_version`].
pub(super) fn advance_version(path: &Path, min_version: u64) -> Result<u64> {
    let db = redb::Database::open(path).map_err(Error::storage)?;
    let wtx = db.begin_write().map_err(Error::storage)?;
    let version = {
        let mut meta = wtx.open_table(META).map_err(Error::storage)?;
        let version = read_version(&meta)?.max(min_version);
        meta.insert("version", version.to_be_bytes().as_slice())
            .map_err(Error::storage)?;
        version
    };
    wtx.commit().map_err(Error::storage)?;
    Ok(version)
}
