//! Backup and restore of every database (issue 21 point 3; `docs/backup.md`).
//!
//! A backup is a directory: `manifest.json` ([`Manifest`]) and chunk files
//! of raw key/value pairs in key order. Each *store* (one embedded
//! directory, which every database configured on it shares) is read at ONE
//! read version through [`kv::embedded::SnapshotReader`], a `redb` MVCC
//! snapshot with no age limit, so a store of any size is read at one
//! version while the server keeps committing. The whole user key space of
//! the store, `[b"", b"\xff")`, is copied: the databases' directories and
//! the directory layer's nodes that name them, so a restore finds every
//! directory at its recorded prefix. The manifest names, per database, its
//! store, read version, schema version, directory path and every
//! directory's prefix; per store, its chunks with their SHA-256.
//!
//! Chunk format: the 8 bytes `MYLBAK01`, then frames of `u32` big-endian
//! key length, key, `u32` big-endian value length, value. A chunk holds
//! about [`CHUNK_TARGET_BYTES`]; the manifest is written last (through a
//! temporary name), so a backup without one is incomplete.
//!
//! Invariants:
//! - [`verify`] reads every chunk: size, SHA-256, frames, pair count, keys
//!   strictly increasing across a store's chunks; [`restore`] runs it
//!   first and writes nothing unless it passes;
//! - a restore writes into empty stores only (unless `force`, which clears
//!   them first), with the same grouping of databases onto stores and the
//!   same directory roots as the source, then raises each store's commit
//!   version to at least the backup's read version, so new commits sort
//!   after every position (versionstamp) the restored data holds.
//!
//! FoundationDB: a transaction lives at most 5 s, so one cannot read a
//! large database at one version; `fdbbackup` is the tool there (see
//! `docs/backup.md`). Both operations refuse an `fdb` database with
//! [`BackupError::Fdb`].
//!
//! Who may import this: `api` (the server-side backup endpoint) and the
//! CLI. It imports `db`, `kv` and `keys` below it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::{self, DbError, Store};
use crate::kv;

/// The version of the backup format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest's file name inside a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// The first 8 bytes of every chunk file.
pub const CHUNK_MAGIC: &[u8; 8] = b"MYLBAK01";
/// About how many bytes of pairs a chunk holds (a chunk ends after the pair
/// that crosses this).
pub const CHUNK_TARGET_BYTES: u64 = 64 << 20;
/// The most bytes of pairs a restore writes in one transaction (well under
/// FoundationDB's 10 MB transaction limit).
pub const RESTORE_BATCH_BYTES: usize = 2 << 20;
/// How many restore transactions are in flight at once (the embedded
/// backend commits them in one batch, one fsync).
pub const RESTORE_IN_FLIGHT: usize = 8;
/// The end of the user key space, as FoundationDB's.
const KEYSPACE_END: &[u8] = b"\xff";

/// What a backup directory holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// The Myelin version that wrote it.
    pub myelin_version: String,
    /// One entry per store read.
    pub stores: Vec<StoreEntry>,
    /// One entry per database, in `db::SPECS` order.
    pub databases: Vec<DatabaseEntry>,
}

/// One store: its key space at one read version, in chunks.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoreEntry {
    /// `store-<n>`, the prefix of its chunk files.
    pub id: String,
    /// The backend (`"embedded"`).
    pub backend: String,
    /// The commit version the whole store was read at.
    pub read_version: u64,
    /// The databases configured on this store.
    pub databases: Vec<String>,
    /// Pairs in all chunks.
    pub pairs: u64,
    /// Bytes of keys and values in all chunks (without framing).
    pub bytes: u64,
    /// The chunks, in key order.
    pub chunks: Vec<ChunkEntry>,
}

/// One chunk file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkEntry {
    /// The file name inside the backup directory.
    pub file: String,
    /// The file's length in bytes.
    pub file_bytes: u64,
    /// Pairs it holds.
    pub pairs: u64,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
}

/// One database: where it lives in its store.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatabaseEntry {
    /// `accounts`, `rooms`, ...
    pub name: String,
    /// The store entry's `id`.
    pub store: String,
    /// The read version it was read at (its store's).
    pub read_version: u64,
    /// The key-schema version of the code that wrote the backup.
    pub schema_version: u32,
    /// Its directory path, `root ++ [name]`.
    pub path: Vec<String>,
    /// Every directory under it at the read version, with its prefix.
    pub directories: Vec<DirectoryEntry>,
}

/// One directory and its prefix.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// The full path.
    pub path: Vec<String>,
    /// The prefix, hex.
    pub prefix: String,
}

/// What [`verify`] (and [`create`], [`restore`]) report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Stores in the backup.
    pub stores: usize,
    /// Chunk files.
    pub chunks: usize,
    /// Pairs.
    pub pairs: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

/// Errors of backup, verify and restore.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A database lives on FoundationDB.
    #[error(
        "databases.{database} is on FoundationDB: use fdbbackup/fdbrestore (a transaction lives at most 5 s, too short to read a large database at one version; see docs/backup.md)"
    )]
    Fdb {
        /// The database.
        database: String,
    },
    /// The backup directory exists and is not empty.
    #[error("{0} exists and is not empty")]
    DirectoryNotEmpty(PathBuf),
    /// The backup is damaged or not a backup.
    #[error("backup is corrupt: {0}")]
    Corrupt(String),
    /// The backup was written by another format or schema version.
    #[error("backup is incompatible: {0}")]
    Incompatible(String),
    /// The target store holds data and `force` was not given.
    #[error(
        "target store {0} is not empty (restore into empty stores, or pass --force to clear it)"
    )]
    TargetNotEmpty(String),
    /// The target configuration does not match the backup's layout.
    #[error("target does not match the backup: {0}")]
    Layout(String),
    /// Reading or writing files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Kv(#[from] kv::Error),
    /// Opening or reading the databases failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The stores of opened `databases` (a running server's), as
/// [`db::connect`] lists them: one per database, in `db::SPECS` order.
pub fn stores_of(databases: &db::Databases) -> Vec<Store> {
    databases
        .handles()
        .iter()
        .map(|h| Store {
            spec: h.spec(),
            db: h.db.clone(),
            root: h.path[..h.path.len().saturating_sub(1)].to_vec(),
            // Already open: where it lives and how long opening may wait are
            // not needed by a backup (which groups stores by their handle).
            location: std::path::PathBuf::new(),
            open_timeout: std::time::Duration::ZERO,
        })
        .collect()
}

/// The stores of `stores` (one per database, in `db::SPECS` order; shared
/// stores appear once per database), grouped: each embedded store with the
/// databases on it.
fn group(stores: &[Store]) -> Result<Vec<(kv::embedded::Database, Vec<&Store>)>, BackupError> {
    let mut groups: Vec<(kv::embedded::Database, Vec<&Store>)> = Vec::new();
    for store in stores {
        let embedded = store.db.as_embedded().ok_or_else(|| BackupError::Fdb {
            database: store.spec.name.to_owned(),
        })?;
        match groups
            .iter_mut()
            .find(|(db, _)| db.path() == embedded.path())
        {
            Some((_, members)) => members.push(store),
            None => groups.push((embedded.clone(), vec![store])),
        }
    }
    Ok(groups)
}

/// Every store of a backup being taken, each held at its read version
/// ([`snapshot`]); [`Snapshot::write`] writes them out.
pub struct Snapshot {
    stores: Vec<HeldStore>,
    databases: Vec<DatabaseEntry>,
}

struct HeldStore {
    id: String,
    reader: kv::embedded::SnapshotReader,
    databases: Vec<String>,
}

/// Takes the snapshot a backup writes: for each store of `stores` (from
/// [`db::connect`], or [`stores_of`] a running server) a
/// [`kv::embedded::SnapshotReader`] at its current version, and the
/// catalog of each database on it. Commits go on meanwhile.
///
/// Errors: [`BackupError::Fdb`] for a database on FoundationDB, and the
/// store's failures.
pub async fn snapshot(stores: &[Store]) -> Result<Snapshot, BackupError> {
    let mut held = Vec::new();
    let mut databases = Vec::new();
    for (n, (embedded, members)) in group(stores)?.into_iter().enumerate() {
        let id = format!("store-{n}");
        // The snapshot first: directories are only ever created (at open),
        // so the catalog read just after holds every directory the
        // snapshot's keys live under.
        let reader = embedded.snapshot_reader()?;
        for store in &members {
            let catalog = db::read_catalog(store.spec, &store.db, &store.root).await?;
            let mut path = store.root.clone();
            path.push(store.spec.name.to_owned());
            databases.push(DatabaseEntry {
                name: store.spec.name.to_owned(),
                store: id.clone(),
                read_version: reader.version(),
                schema_version: store.spec.schema_version,
                path,
                directories: catalog
                    .directories()
                    .iter()
                    .map(|d| DirectoryEntry {
                        path: d.path.clone(),
                        prefix: hex::encode(&d.prefix),
                    })
                    .collect(),
            });
        }
        held.push(HeldStore {
            id,
            reader,
            databases: members.iter().map(|s| s.spec.name.to_owned()).collect(),
        });
    }
    let order = |name: &str| db::SPECS.iter().position(|s| s.name == name);
    databases.sort_by_key(|d| order(&d.name));
    Ok(Snapshot {
        stores: held,
        databases,
    })
}

impl Snapshot {
    /// The read version of each store, in the manifest's store order.
    pub fn read_versions(&self) -> Vec<u64> {
        self.stores.iter().map(|s| s.reader.version()).collect()
    }

    /// Every pair of store `index` at its read version: what the backup
    /// holds for it (for tests that compare a restore with its source).
    ///
    /// # Panics
    /// If there is no store `index`.
    pub fn contents(&self, index: usize) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, BackupError> {
        scan_all(&self.stores[index].reader)
    }

    /// Writes the backup into `dir`, which must not exist or be empty: the
    /// chunks of each store (on a blocking thread), then the manifest.
    ///
    /// Errors: [`BackupError::DirectoryNotEmpty`], I/O and store failures.
    pub async fn write(self, dir: &Path) -> Result<(Manifest, Summary), BackupError> {
        if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
            return Err(BackupError::DirectoryNotEmpty(dir.to_path_buf()));
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut manifest = Manifest {
            format_version: FORMAT_VERSION,
            myelin_version: env!("CARGO_PKG_VERSION").to_owned(),
            stores: Vec::new(),
            databases: self.databases,
        };
        for held in self.stores {
            let out = dir.to_path_buf();
            let HeldStore {
                id,
                reader,
                databases,
            } = held;
            let read_version = reader.version();
            let chunk_id = id.clone();
            let (chunks, pairs, bytes) =
                tokio::task::spawn_blocking(move || write_chunks(&reader, &out, &chunk_id))
                    .await
                    .map_err(|e| BackupError::Corrupt(format!("backup task failed: {e}")))??;
            manifest.stores.push(StoreEntry {
                id,
                backend: "embedded".into(),
                read_version,
                databases,
                pairs,
                bytes,
                chunks,
            });
        }
        write_manifest(dir, &manifest)?;
        let summary = summarize(&manifest);
        Ok((manifest, summary))
    }
}

/// Writes a backup of every database of `stores` into `dir`:
/// [`snapshot`], then [`Snapshot::write`].
///
/// Errors: as those two.
pub async fn create(stores: &[Store], dir: &Path) -> Result<(Manifest, Summary), BackupError> {
    snapshot(stores).await?.write(dir).await
}

fn summarize(manifest: &Manifest) -> Summary {
    Summary {
        stores: manifest.stores.len(),
        chunks: manifest.stores.iter().map(|s| s.chunks.len()).sum(),
        pairs: manifest.stores.iter().map(|s| s.pairs).sum(),
        bytes: manifest.stores.iter().map(|s| s.bytes).sum(),
    }
}

/// A chunk file being written: its writer, hash and counts.
struct ChunkWriter {
    file: String,
    out: BufWriter<File>,
    hash: Sha256,
    file_bytes: u64,
    pairs: u64,
    data_bytes: u64,
}

impl ChunkWriter {
    fn create(dir: &Path, file: String) -> Result<Self, BackupError> {
        let path = dir.join(&file);
        let out = File::create_new(&path).map_err(io(&path))?;
        let mut w = ChunkWriter {
            file,
            out: BufWriter::with_capacity(1 << 20, out),
            hash: Sha256::new(),
            file_bytes: 0,
            pairs: 0,
            data_bytes: 0,
        };
        w.put(CHUNK_MAGIC)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        self.hash.update(bytes);
        self.file_bytes += bytes.len() as u64;
        self.out.write_all(bytes).map_err(|source| BackupError::Io {
            path: PathBuf::from(&self.file),
            source,
        })
    }

    fn pair(&mut self, key: &[u8], value: &[u8]) -> Result<(), BackupError> {
        // Keys are at most 10 kB and values 100 kB: both fit a u32.
        self.put(&(key.len() as u32).to_be_bytes())?;
        self.put(key)?;
        self.put(&(value.len() as u32).to_be_bytes())?;
        self.put(value)?;
        self.pairs += 1;
        self.data_bytes += (key.len() + value.len()) as u64;
        Ok(())
    }

    fn finish(self, dir: &Path) -> Result<ChunkEntry, BackupError> {
        let path = dir.join(&self.file);
        let file = self.out.into_inner().map_err(|e| BackupError::Io {
            path: path.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io(&path))?;
        Ok(ChunkEntry {
            file: self.file,
            file_bytes: self.file_bytes,
            pairs: self.pairs,
            sha256: hex::encode(self.hash.finalize()),
        })
    }
}

/// Scans the whole user key space of `reader` into chunk files
/// `<id>-<n>.chunk`. Returns the chunks, pairs and bytes of keys and values.
fn write_chunks(
    reader: &kv::embedded::SnapshotReader,
    dir: &Path,
    id: &str,
) -> Result<(Vec<ChunkEntry>, u64, u64), BackupError> {
    let mut chunks = Vec::new();
    let (mut pairs, mut bytes) = (0u64, 0u64);
    let mut current = ChunkWriter::create(dir, format!("{id}-{:05}.chunk", 0))?;
    let mut failed = None;
    reader.scan(b"", KEYSPACE_END, |key, value| {
        let step = (|| {
            if current.data_bytes >= CHUNK_TARGET_BYTES {
                let next = ChunkWriter::create(dir, format!("{id}-{:05}.chunk", chunks.len() + 1))?;
                let done = std::mem::replace(&mut current, next);
                chunks.push(done.finish(dir)?);
            }
            current.pair(key, value)
        })();
        match step {
            Ok(()) => {
                pairs += 1;
                bytes += (key.len() + value.len()) as u64;
                true
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    chunks.push(current.finish(dir)?);
    Ok((chunks, pairs, bytes))
}

fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let tmp = dir.join(format!("{MANIFEST}.tmp"));
    let text = serde_json::to_vec_pretty(manifest).expect("the manifest serializes");
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(&text).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    let path = dir.join(MANIFEST);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Reads and checks the manifest of the backup in `dir`.
///
/// Errors: [`BackupError::Corrupt`] if it is missing or does not parse,
/// [`BackupError::Incompatible`] for another format version.
pub fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).map_err(|e| {
        BackupError::Corrupt(format!(
            "{}: {e} (an incomplete backup has no manifest)",
            path.display()
        ))
    })?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| BackupError::Corrupt(format!("{}: {e}", path.display())))?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(BackupError::Incompatible(format!(
            "format version {}, this build reads {FORMAT_VERSION}",
            manifest.format_version
        )));
    }
    Ok(manifest)
}

/// Reads one chunk file: checks its magic, length, SHA-256 and framing,
/// and calls `visit` with each pair in order.
fn read_chunk(
    dir: &Path,
    chunk: &ChunkEntry,
    mut visit: impl FnMut(Vec<u8>, Vec<u8>) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    if chunk.file.contains('/') || chunk.file.contains('\\') || chunk.file.starts_with('.') {
        return Err(BackupError::Corrupt(format!(
            "bad chunk name {:?}",
            chunk.file
        )));
    }
    let path = dir.join(&chunk.file);
    let corrupt = |what: &str| BackupError::Corrupt(format!("{}: {what}", chunk.file));
    let file = File::open(&path).map_err(io(&path))?;
    let mut input = HashingReader {
        inner: BufReader::with_capacity(1 << 20, file),
        hash: Sha256::new(),
        bytes: 0,
    };
    let mut magic = [0u8; 8];
    input
        .read_exact(&mut magic)
        .map_err(|_| corrupt("shorter than its header"))?;
    if &magic != CHUNK_MAGIC {
        return Err(corrupt("not a Myelin backup chunk"));
    }
    let mut pairs = 0u64;
    while let Some(key) =
        read_field(&mut input, kv::limits::KEY_SIZE_BYTES).map_err(|e| corrupt(&e))?
    {
        let value = read_field(&mut input, kv::limits::VALUE_SIZE_BYTES)
            .map_err(|e| corrupt(&e))?
            .ok_or_else(|| corrupt("ends after a key"))?;
        pairs += 1;
        visit(key, value)?;
    }
    if input.bytes != chunk.file_bytes {
        return Err(corrupt(&format!(
            "{} bytes, the manifest says {}",
            input.bytes, chunk.file_bytes
        )));
    }
    if hex::encode(input.hash.finalize()) != chunk.sha256 {
        return Err(corrupt("SHA-256 does not match the manifest"));
    }
    if pairs != chunk.pairs {
        return Err(corrupt(&format!(
            "{pairs} pairs, the manifest says {}",
            chunk.pairs
        )));
    }
    Ok(())
}

/// A reader that hashes and counts what it reads.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// One length-prefixed field, or `None` at a clean end of file.
fn read_field(input: &mut impl Read, max: usize) -> Result<Option<Vec<u8>>, String> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match input.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err("ends inside a length".into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(format!("a field of {len} bytes, over the limit of {max}"));
    }
    let mut field = vec![0u8; len];
    input
        .read_exact(&mut field)
        .map_err(|_| "ends inside a field".to_string())?;
    Ok(Some(field))
}

/// Reads every chunk of `store`, checking it, and calls `visit` with each
/// pair; keys must increase strictly across the store's chunks.
fn read_store(
    dir: &Path,
    store: &StoreEntry,
    mut visit: impl FnMut(Vec<u8>, Vec<u8>) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    let mut last: Option<Vec<u8>> = None;
    let (mut pairs, mut bytes) = (0u64, 0u64);
    for chunk in &store.chunks {
        read_chunk(dir, chunk, |key, value| {
            if key.as_slice() >= KEYSPACE_END || last.as_ref().is_some_and(|l| *l >= key) {
                return Err(BackupError::Corrupt(format!(
                    "{}: keys out of order",
                    chunk.file
                )));
            }
            pairs += 1;
            bytes += (key.len() + value.len()) as u64;
            last = Some(key.clone());
            visit(key, value)
        })?;
    }
    if (pairs, bytes) != (store.pairs, store.bytes) {
        return Err(BackupError::Corrupt(format!(
            "{}: {pairs} pairs of {bytes} bytes, the manifest says {} of {}",
            store.id, store.pairs, store.bytes
        )));
    }
    Ok(())
}

/// Checks the backup in `dir`: the manifest, and every chunk's length,
/// SHA-256, framing, pair count and key order; and that every database of
/// the manifest names a store of it.
///
/// Errors: [`BackupError::Corrupt`] naming the first damage found,
/// [`BackupError::Incompatible`], I/O failures.
pub fn verify(dir: &Path) -> Result<Summary, BackupError> {
    let manifest = read_manifest(dir)?;
    for database in &manifest.databases {
        let store = manifest.stores.iter().find(|s| s.id == database.store);
        if !store.is_some_and(|s| s.databases.contains(&database.name)) {
            return Err(BackupError::Corrupt(format!(
                "database {} names no store holding it",
                database.name
            )));
        }
    }
    for store in &manifest.stores {
        read_store(dir, store, |_, _| Ok(()))?;
    }
    Ok(summarize(&manifest))
}

/// Restores the backup in `dir` into `stores` (from [`db::connect`] on the
/// target configuration; consumed, as each store is closed at the end to
/// raise its commit version). Verifies the whole backup first; then, for
/// each store of the backup, finds the target store holding the same
/// databases, checks it is empty (or clears it with `force`), writes every
/// pair in transactions of at most [`RESTORE_BATCH_BYTES`], and raises its
/// commit version to the backup's read version.
///
/// Errors: as [`verify`]; [`BackupError::Fdb`];
/// [`BackupError::Incompatible`] for another schema version;
/// [`BackupError::Layout`] when the target groups the databases onto
/// stores differently or puts them under another root;
/// [`BackupError::TargetNotEmpty`]; store and I/O failures.
pub async fn restore(stores: Vec<Store>, dir: &Path, force: bool) -> Result<Summary, BackupError> {
    let summary = {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || verify(&dir))
            .await
            .map_err(|e| BackupError::Corrupt(format!("verify task failed: {e}")))??
    };
    let manifest = read_manifest(dir)?;
    check_compatible(&manifest, &stores)?;
    let groups = group(&stores)?;
    let mut plan = Vec::new();
    for entry in &manifest.stores {
        let mut wanted = entry.databases.clone();
        wanted.sort();
        let target = groups.iter().find(|(_, members)| {
            let mut names: Vec<String> = members.iter().map(|s| s.spec.name.to_owned()).collect();
            names.sort();
            names == wanted
        });
        let Some((embedded, _)) = target else {
            return Err(BackupError::Layout(format!(
                "the backup has {} on one store; configure the target the same way",
                entry.databases.join(", ")
            )));
        };
        plan.push((entry, embedded.clone()));
    }
    if plan.len() != groups.len() {
        return Err(BackupError::Layout(
            "the target has stores the backup does not".into(),
        ));
    }
    for (entry, embedded) in &plan {
        prepare_target(embedded, force).await?;
        write_store(embedded, dir, entry).await?;
    }
    // Close every store (all handles: `stores` and the groups), then raise
    // each one's commit version past the data's positions.
    let targets: Vec<(PathBuf, u64)> = plan
        .iter()
        .map(|(entry, embedded)| {
            let file = embedded.path();
            (
                file.parent().unwrap_or(file).to_path_buf(),
                entry.read_version,
            )
        })
        .collect();
    for (_, embedded) in &plan {
        embedded.shutdown();
    }
    drop(plan);
    drop(groups);
    drop(stores);
    for (store_dir, read_version) in targets {
        kv::embedded::advance_version(&store_dir, read_version)?;
    }
    Ok(summary)
}

/// The backup's schema versions and roots match the target's.
fn check_compatible(manifest: &Manifest, stores: &[Store]) -> Result<(), BackupError> {
    for store in stores {
        let Some(entry) = manifest
            .databases
            .iter()
            .find(|d| d.name == store.spec.name)
        else {
            return Err(BackupError::Layout(format!(
                "the backup has no database {}",
                store.spec.name
            )));
        };
        if entry.schema_version != store.spec.schema_version {
            return Err(BackupError::Incompatible(format!(
                "{} has schema version {}, this build reads {}",
                entry.name, entry.schema_version, store.spec.schema_version
            )));
        }
        let mut path = store.root.clone();
        path.push(store.spec.name.to_owned());
        if entry.path != path {
            return Err(BackupError::Layout(format!(
                "{} lives under {:?} in the backup, the target's root puts it under {path:?}",
                entry.name, entry.path
            )));
        }
    }
    Ok(())
}

/// Refuses a store holding data, or clears it with `force`.
async fn prepare_target(embedded: &kv::embedded::Database, force: bool) -> Result<(), BackupError> {
    let db: kv::Database = embedded.clone().into();
    // Safe to run twice: a read, or a clear of the whole key space.
    let holds_data = db
        .run(|tx, _| async move {
            let mut range = kv::RangeOption::new(b"".to_vec(), KEYSPACE_END.to_vec());
            range.limit = Some(1);
            let chunk = tx.get_range(&range, true).await?;
            if !chunk.kvs.is_empty() && force {
                tx.clear_range(b"", KEYSPACE_END);
            }
            Ok::<_, kv::Error>(!chunk.kvs.is_empty())
        })
        .await?;
    if holds_data && !force {
        return Err(BackupError::TargetNotEmpty(
            embedded.path().display().to_string(),
        ));
    }
    Ok(())
}

/// Writes every pair of `entry` into `embedded`, [`RESTORE_IN_FLIGHT`]
/// transactions at a time. The chunks are read on a blocking thread and
/// handed over in batches.
async fn write_store(
    embedded: &kv::embedded::Database,
    dir: &Path,
    entry: &StoreEntry,
) -> Result<(), BackupError> {
    let (batches, receiver) =
        tokio::sync::mpsc::channel::<Vec<(Vec<u8>, Vec<u8>)>>(RESTORE_IN_FLIGHT);
    let reader = {
        let dir = dir.to_path_buf();
        let entry = entry.clone();
        tokio::task::spawn_blocking(move || {
            let mut batch = Vec::new();
            let mut size = 0usize;
            read_store(&dir, &entry, |key, value| {
                size += key.len() + value.len();
                batch.push((key, value));
                if size >= RESTORE_BATCH_BYTES {
                    size = 0;
                    let full = std::mem::take(&mut batch);
                    if batches.blocking_send(full).is_err() {
                        return Err(BackupError::Corrupt("restore stopped".into()));
                    }
                }
                Ok(())
            })?;
            if !batch.is_empty() {
                let _ = batches.blocking_send(batch);
            }
            Ok::<_, BackupError>(())
        })
    };
    let db: kv::Database = embedded.clone().into();
    let written = tokio_stream_from(receiver)
        .map(|batch| {
            let db = db.clone();
            async move {
                // Safe to run twice: blind sets of the same pairs.
                db.run(|tx, _| {
                    for (key, value) in &batch {
                        tx.set(key, value);
                    }
                    async { Ok::<_, kv::Error>(()) }
                })
                .await
            }
        })
        .buffer_unordered(RESTORE_IN_FLIGHT)
        .fold(
            Ok(()),
            |acc: Result<(), kv::Error>, r| async move { acc.and(r) },
        )
        .await;
    let read = reader
        .await
        .map_err(|e| BackupError::Corrupt(format!("restore reader failed: {e}")))?;
    read?;
    written?;
    Ok(())
}

/// The receiver as a stream.
fn tokio_stream_from<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// Every pair of the user key space as `reader` sees it: for tests that
/// compare a source store at a backup's read version with its restore.
pub fn scan_all(
    reader: &kv::embedded::SnapshotReader,
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, BackupError> {
    let mut all = BTreeMap::new();
    reader.scan(b"", KEYSPACE_END, |k, v| {
        all.insert(k.to_vec(), v.to_vec());
        true
    })?;
    Ok(all)
}
