//! The logical databases, what they share, and how they are opened.
//!
//! Myelin keeps its data in several databases, each of which may live on its
//! own store (an embedded directory or a FoundationDB cluster):
//! - [`accounts`]: users, devices, tokens, account data;
//! - [`rooms`]: events, state, timelines;
//! - [`transitory`]: typing, receipts, presence, to-device messages;
//! - [`game`]: storage objects, wallets and ledger, items, trades;
//! - [`media`]: the media repository's metadata (the bytes live in a blob store).
//!
//! Each declares its key schema in its `keys.rs` (a [`DatabaseSpec`]), and
//! [`SPECS`] lists them all: everything that handles "every database"
//! (opening, connecting, configuration checks, `myelin keys`, the generated
//! key-layout doc) iterates that one list. What every database shares lives
//! here once: the `meta` directory and its schema-version check ([`meta`]),
//! the record and key codec with its `Corrupt` error ([`codec`]), JSON
//! stored as text ([`json_text`]), the notification keys ([`notify`]) and
//! the position type, one per database ([`position`]).
//!
//! [`open`] turns a [`DatabasesConfig`] into a [`Databases`]: for each
//! database it opens the store, creates or opens every declared directory
//! under `root ++ [name]` in one transaction, and checks and records the
//! schema version in that same transaction. Databases configured on the
//! same embedded path or the same cluster file share one store handle.
//!
//! Invariants:
//! - a [`Handle`] exists only for a store whose schema version is the
//!   code's, and its directories are resolved once, at open;
//! - the databases never import each other; what spans them lives above
//!   this module.
//!
//! Who may import this: `service`, `sync`, `app`, the CLI and tests.

pub mod accounts;
pub mod codec;
pub mod game;
pub mod json_text;
pub mod leaderboard;
pub mod media;
pub mod meta;
pub mod notify;
pub mod position;
pub mod rooms;
pub mod split;
pub mod transitory;

pub use position::Position;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Backend, ConfigError, DatabaseConfig, DatabasesConfig};
use crate::keys::{Catalog, DatabaseSpec, Directories, DirectorySpec, KnownDirectory, Space};
use crate::kv::{self, TransactError, directory::DirectoryError, directory::DirectoryLayer};
use meta::SchemaMismatch;

/// The databases, in the order accounts, rooms, transitory, game, media: the one list
/// that opening ([`open`]), connecting ([`connect`]), configuration
/// checks ([`validate_config`]), [`Databases::handles`], `myelin keys` and
/// `docs/key-layout.md` iterate. Adding a database is one entry here (see
/// `docs/architecture.md`, "Adding a database"), appended at the end: its
/// position is its index in [`Databases::handles`], which `sync` pairs with
/// its own database order (`sync::DatabaseId`).
pub static SPECS: [&DatabaseSpec; 5] = [
    &accounts::keys::SPEC,
    &rooms::keys::SPEC,
    &transitory::keys::SPEC,
    &game::keys::SPEC,
    &media::keys::SPEC,
];

/// Errors of opening and inspecting databases.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The store failed (after retries, where retryable).
    #[error("{database}: {source}")]
    Kv {
        /// The database being opened.
        database: &'static str,
        /// The store's error.
        #[source]
        source: kv::Error,
    },
    /// The store did not answer one read within the configured deadline
    /// (`databases.<name>.open_timeout_ms`): for FoundationDB, the cluster
    /// named by the cluster file is down or unreachable.
    #[error(
        "{database}: the store at {} did not answer a read within {timeout:?} (for FoundationDB: is the cluster this cluster file names up and reachable? `fdbcli -C {} --exec status` tells)",
        location.display(),
        location.display()
    )]
    Unreachable {
        /// The database being opened.
        database: &'static str,
        /// The cluster file (FoundationDB) or directory (embedded).
        location: PathBuf,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// A directory operation failed.
    #[error("{database}: directory layer: {source}")]
    Directory {
        /// The database being opened.
        database: &'static str,
        /// The directory layer's error.
        #[source]
        source: DirectoryError,
    },
    /// The store was written by a newer Myelin with a newer key schema.
    #[error(
        "{database}: store has schema version {found}, newer than {supported}, the newest this build supports"
    )]
    SchemaTooNew {
        /// The database.
        database: &'static str,
        /// The version recorded in the store.
        found: u64,
        /// The version this code writes.
        supported: u32,
    },
    /// The store was written by an older Myelin with an older key schema,
    /// which this build cannot read (there is no migration yet; see the
    /// database's `keys.rs` for what changed).
    #[error(
        "{database}: store has schema version {found}, older than {supported}, the version this build reads and writes (no migration exists: export what you need and start from an empty store)"
    )]
    SchemaTooOld {
        /// The database.
        database: &'static str,
        /// The version recorded in the store.
        found: u64,
        /// The version this code writes.
        supported: u32,
    },
    /// The recorded schema version is not an 8-byte integer.
    #[error("{database}: corrupt schema version value ({len_bytes} bytes, expected 8)")]
    CorruptSchemaVersion {
        /// The database.
        database: &'static str,
        /// Length of the stored value.
        len_bytes: usize,
    },
    /// The configuration asks for FoundationDB but this binary was built
    /// without the `fdb` cargo feature.
    #[error(
        "databases.{database}.backend = \"fdb\", but this build of Myelin lacks the `fdb` feature (rebuild with `--features fdb`)"
    )]
    FdbNotCompiled {
        /// The database.
        database: &'static str,
    },
    /// An `fdb` database without a cluster file (validated configurations
    /// never have this).
    #[error("databases.{database}.cluster_file is required with backend = \"fdb\"")]
    MissingClusterFile {
        /// The database.
        database: &'static str,
    },
    /// The configuration names a database this build does not have
    /// ([`validate_config`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl DbError {
    fn kv(database: &'static str) -> impl FnOnce(kv::Error) -> DbError {
        move |source| DbError::Kv { database, source }
    }

    /// Whether the failure is the store's (I/O, cluster unreachable), as
    /// opposed to the configuration or the store's contents.
    pub fn is_storage(&self) -> bool {
        matches!(self, DbError::Kv { .. } | DbError::Unreachable { .. })
            || matches!(self, DbError::Directory { source, .. } if source.as_kv().is_some())
    }
}

/// The error of the open transaction: a directory failure or a schema check.
#[derive(Debug)]
enum OpenTxError {
    Directory(DirectoryError),
    Schema(SchemaMismatch),
}

impl From<kv::Error> for OpenTxError {
    fn from(e: kv::Error) -> Self {
        OpenTxError::Directory(e.into())
    }
}

impl From<DirectoryError> for OpenTxError {
    fn from(e: DirectoryError) -> Self {
        OpenTxError::Directory(e)
    }
}

impl TransactError for OpenTxError {
    fn as_kv(&self) -> Option<&kv::Error> {
        match self {
            OpenTxError::Directory(e) => e.as_kv(),
            OpenTxError::Schema(_) => None,
        }
    }
}

/// One opened database: its store and its resolved directories. Cheap to
/// clone.
#[derive(Clone)]
pub struct Handle {
    /// The store. Databases configured on the same store share it.
    pub db: kv::Database,
    /// Every directory of the database's spec, resolved to its prefix.
    pub dirs: Arc<Directories>,
    /// The directory path the database lives under: `root ++ [name]`.
    pub path: Vec<String>,
}

impl Handle {
    /// Reads the database's schema version key in a one-shot snapshot read:
    /// whether its store answers a read (the readiness check).
    ///
    /// Errors: the store's.
    pub async fn ping(&self) -> Result<(), DbError> {
        let key = meta::schema_version_key(&self.dirs);
        self.db
            .read(&key)
            .await
            .map(drop)
            .map_err(DbError::kv(self.spec().name))
    }

    /// The database's key schema.
    pub fn spec(&self) -> &'static DatabaseSpec {
        self.dirs.spec()
    }

    /// The resolved directory declared by `dir`.
    ///
    /// # Panics
    /// If `dir` is not a directory of this database.
    pub fn space(&self, dir: &DirectorySpec) -> &Space {
        self.dirs.space(dir)
    }
}

/// The opened databases: one [`Handle`] per entry of [`SPECS`], with a
/// named field for each for callers' convenience.
#[derive(Clone)]
pub struct Databases {
    /// Users, devices, tokens, account data.
    pub accounts: Handle,
    /// Events, state, timelines.
    pub rooms: Handle,
    /// Typing, receipts, presence, to-device messages.
    pub transitory: Handle,
    /// Storage objects, wallets, items, trades.
    pub game: Handle,
    /// The media repository's metadata.
    pub media: Handle,
    /// Every handle, in [`SPECS`] order.
    all: Vec<Handle>,
}

impl Databases {
    /// Names the handles of `all` (in [`SPECS`] order).
    fn from_handles(all: Vec<Handle>) -> Self {
        let named = |spec: &DatabaseSpec| {
            all.iter()
                .find(|h| h.spec() == spec)
                .expect("every database in SPECS is opened")
                .clone()
        };
        Databases {
            accounts: named(&accounts::keys::SPEC),
            rooms: named(&rooms::keys::SPEC),
            transitory: named(&transitory::keys::SPEC),
            game: named(&game::keys::SPEC),
            media: named(&media::keys::SPEC),
            all,
        }
    }

    /// Every handle, in [`SPECS`] order (accounts, rooms, transitory, game,
    /// media).
    pub fn handles(&self) -> &[Handle] {
        &self.all
    }
}

/// Opens every database of [`SPECS`] as configured: opens (or connects
/// to) each store, creates or opens every directory and records the schema
/// version.
///
/// Errors: [`DbError::Config`] for a configured database that does not
/// exist, [`DbError::SchemaTooNew`] for a store written by a newer Myelin,
/// [`DbError::SchemaTooOld`] for one written by an older Myelin whose key
/// schema differs,
/// [`DbError::FdbNotCompiled`] for an `fdb` database in a build without the
/// feature, and the store's and directory layer's failures.
pub async fn open(config: &DatabasesConfig) -> Result<Databases, DbError> {
    let mut all = Vec::with_capacity(SPECS.len());
    for store in connect(config)? {
        check_answers(&store).await?;
        all.push(open_database(store).await?);
    }
    Ok(Databases::from_handles(all))
}

/// Whether `store`'s database is the store being unavailable for now: the
/// retry runner's time budget or retry limit ran out (`kv::Error::is_unavailable`;
/// on FoundationDB, `transaction_timed_out`). For `api`, which answers it
/// with 503 and `Retry-After` and does not see `kv`.
pub fn is_unavailable<E: TransactError>(e: &E) -> bool {
    e.as_kv().is_some_and(kv::Error::is_unavailable)
}

/// Reads the directory layer's version key from `store` with the store's
/// open deadline as the retry runner's whole budget (on FoundationDB, the
/// transaction's `Timeout` option), so that an unreachable cluster fails the
/// open with [`DbError::Unreachable`] naming its cluster file instead of
/// hanging: FoundationDB's client connects lazily and waits for a cluster
/// that does not answer (see `src/kv/fdb.rs`, `Database::open`).
async fn check_answers(store: &Store) -> Result<(), DbError> {
    let retry = kv::RetryOptions {
        timeout: Some(store.open_timeout),
        ..store.db.retry_options().clone()
    };
    let db = store.db.clone().with_retry_options(retry);
    let key = DirectoryLayer::default().version_key();
    match db.read(&key).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_unavailable() => Err(DbError::Unreachable {
            database: store.spec.name,
            location: store.location.clone(),
            timeout: store.open_timeout,
        }),
        Err(source) => Err(DbError::Kv {
            database: store.spec.name,
            source,
        }),
    }
}

/// Opens every database in one embedded store at `dir`, under the default
/// root. For tests and tools.
pub async fn open_embedded_at(dir: &Path) -> Result<Databases, DbError> {
    open(&embedded_config(dir)).await
}

/// Every database of [`SPECS`] embedded in one store at `dir` (they share
/// it), under the default root. For tests and tools.
pub fn embedded_config(dir: &Path) -> DatabasesConfig {
    let mut config = DatabasesConfig::default();
    for spec in SPECS {
        config.set(
            spec.name,
            DatabaseConfig {
                path: Some(dir.to_path_buf()),
                ..DatabaseConfig::default()
            },
        );
    }
    config
}

/// Checks that every `[databases.<name>]` table names a database of
/// [`SPECS`], so a misspelt name is an error instead of a table nobody
/// reads.
///
/// Errors: [`ConfigError::Invalid`] naming the key and the known databases.
pub fn validate_config(config: &DatabasesConfig) -> Result<(), ConfigError> {
    for name in config.configured() {
        if !SPECS.iter().any(|spec| spec.name == name) {
            let known: Vec<&str> = SPECS.iter().map(|spec| spec.name).collect();
            return Err(ConfigError::Invalid {
                key: format!("databases.{name}"),
                reason: format!("no such database (known: {})", known.join(", ")),
            });
        }
    }
    Ok(())
}

/// One database's store, connected but not opened: what inspection tools
/// need to read its directory tree.
#[derive(Clone)]
pub struct Store {
    /// The database's key schema.
    pub spec: &'static DatabaseSpec,
    /// The store (shared by databases configured on the same store).
    pub db: kv::Database,
    /// The configured root; the database lives under `root ++ [name]`.
    pub root: Vec<String>,
    /// Where the store is: the embedded directory or the cluster file.
    pub location: PathBuf,
    /// How long [`open`] waits for the store to answer one read
    /// (`databases.<name>.open_timeout_ms`).
    pub open_timeout: Duration,
}

/// Opens the store of every database of [`SPECS`] without touching its
/// directories, in [`SPECS`] order. Databases configured on the same store
/// share the handle (the first one's settings, such as the cache size,
/// apply). For inspection tools, which read the directory tree
/// ([`read_catalog`]) instead of creating it, and for [`open`].
///
/// Errors: [`DbError::Config`] for a configured database that does not
/// exist, and the store's failures.
pub fn connect(config: &DatabasesConfig) -> Result<Vec<Store>, DbError> {
    validate_config(config)?;
    let mut stores = Stores::default();
    SPECS
        .iter()
        .map(|&spec| {
            let db = config.get(spec.name);
            let (store, location) = stores.connect(spec.name, &db)?;
            let open_timeout_ms = db
                .open_timeout_ms
                .unwrap_or(crate::config::DEFAULT_OPEN_TIMEOUT_MS);
            Ok(Store {
                spec,
                db: store.with_name(spec.name),
                root: db.root,
                location,
                open_timeout: Duration::from_millis(open_timeout_ms),
            })
        })
        .collect()
}

/// The directories of database `spec` as they exist in `db` under
/// `root ++ [name]`, read without creating anything: declared directories
/// with their spec, others (left by another version, or created by hand)
/// without. Empty if the database was never opened on this store.
pub async fn read_catalog(
    spec: &'static DatabaseSpec,
    db: &kv::Database,
    root: &[String],
) -> Result<Catalog, DbError> {
    let base = database_path(root, spec.name);
    // Read-only (it creates nothing): safe to run any number of times.
    let entries = db
        .run(|tx, _| {
            let base = base.clone();
            async move {
                let layer = DirectoryLayer::default();
                let path: Vec<&str> = base.iter().map(String::as_str).collect();
                if !layer.exists(&tx, &path).await? {
                    return Ok(Vec::new());
                }
                layer.tree(&tx, &path).await
            }
        })
        .await
        .map_err(|source| DbError::Directory {
            database: spec.name,
            source,
        })?;
    let mut catalog = Catalog::new();
    for entry in entries {
        let relative: Vec<&str> = entry.path[base.len()..]
            .iter()
            .map(String::as_str)
            .collect();
        catalog.add(KnownDirectory {
            database: Some(spec.name),
            spec: spec.directory(&relative),
            path: entry.path,
            prefix: entry.prefix,
        });
    }
    Ok(catalog)
}

/// `root ++ [name]`.
fn database_path(root: &[String], name: &str) -> Vec<String> {
    let mut path = root.to_vec();
    path.push(name.to_string());
    path
}

/// Creates or opens every directory of `store`'s database under
/// `root ++ [name]` and checks and records the schema version
/// ([`meta::check_schema_version`]), in one transaction.
async fn open_database(store: Store) -> Result<Handle, DbError> {
    let Store { spec, db, root, .. } = store;
    let base = database_path(&root, spec.name);
    // Safe to run twice: create_or_open finds what a first attempt created,
    // and the schema version is written only where none is recorded.
    let dirs = db
        .run(|tx, _| {
            let base = base.clone();
            async move {
                let layer = DirectoryLayer::default();
                let mut spaces = Vec::with_capacity(spec.directories.len());
                for dir in spec.directories {
                    let path: Vec<&str> = base
                        .iter()
                        .map(String::as_str)
                        .chain(dir.path.iter().copied())
                        .collect();
                    let sub = layer.create_or_open(&tx, &path, None).await?;
                    spaces.push(Space::new(sub.prefix().to_vec(), sub.path().to_vec(), dir));
                }
                let dirs = Directories::new(spec, spaces);
                meta::check_schema_version(&tx, &dirs, spec.schema_version)
                    .await?
                    .map_err(OpenTxError::Schema)?;
                Ok(dirs)
            }
        })
        .await
        .map_err(|e| match e {
            OpenTxError::Directory(DirectoryError::Kv(source)) => DbError::Kv {
                database: spec.name,
                source,
            },
            OpenTxError::Directory(source) => DbError::Directory {
                database: spec.name,
                source,
            },
            OpenTxError::Schema(SchemaMismatch::TooNew(found)) => DbError::SchemaTooNew {
                database: spec.name,
                found,
                supported: spec.schema_version,
            },
            OpenTxError::Schema(SchemaMismatch::TooOld(found)) => DbError::SchemaTooOld {
                database: spec.name,
                found,
                supported: spec.schema_version,
            },
            OpenTxError::Schema(SchemaMismatch::Corrupt(len_bytes)) => {
                DbError::CorruptSchemaVersion {
                    database: spec.name,
                    len_bytes,
                }
            }
        })?;
    tracing::debug!(database = spec.name, backend = db.backend_name(), path = ?base, "opened database");
    Ok(Handle {
        db,
        dirs: Arc::new(dirs),
        path: base,
    })
}

/// Stores opened so far, so databases configured on the same embedded path
/// or cluster file share one handle.
#[derive(Default)]
struct Stores {
    open: Vec<(Backend, PathBuf, kv::Database)>,
}

impl Stores {
    fn connect(
        &mut self,
        name: &'static str,
        config: &DatabaseConfig,
    ) -> Result<(kv::Database, PathBuf), DbError> {
        let location = match config.backend {
            Backend::Embedded => config
                .path
                .clone()
                .unwrap_or_else(|| Path::new(crate::config::DEFAULT_DATA_DIR).join(name)),
            Backend::Fdb => config
                .cluster_file
                .clone()
                .ok_or(DbError::MissingClusterFile { database: name })?,
        };
        let location = std::path::absolute(&location).unwrap_or(location);
        if let Some((_, _, db)) = self
            .open
            .iter()
            .find(|(b, l, _)| *b == config.backend && *l == location)
        {
            return Ok((db.clone(), location));
        }
        let db: kv::Database = match config.backend {
            Backend::Embedded => kv::embedded::Database::open(&location, embedded_options(config))
                .map_err(DbError::kv(name))?
                .into(),
            Backend::Fdb => open_fdb(name, &location)?,
        };
        self.open
            .push((config.backend, location.clone(), db.clone()));
        Ok((db, location))
    }
}

/// The embedded store's options: the defaults, with the configured cache
/// and engine.
fn embedded_options(config: &DatabaseConfig) -> kv::embedded::EmbeddedOptions {
    let mut options = kv::embedded::EmbeddedOptions {
        engine: config.engine,
        ..Default::default()
    };
    if let Some(bytes) = config.cache_size_bytes {
        options.cache_size_bytes = bytes;
    }
    options
}

#[cfg(feature = "fdb")]
fn open_fdb(name: &'static str, cluster_file: &Path) -> Result<kv::Database, DbError> {
    Ok(kv::fdb::Database::open(Some(cluster_file))
        .map_err(DbError::kv(name))?
        .into())
}

#[cfg(not(feature = "fdb"))]
fn open_fdb(name: &'static str, _cluster_file: &Path) -> Result<kv::Database, DbError> {
    Err(DbError::FdbNotCompiled { database: name })
}

#[cfg(test)]
mod tests;
