//! Myelin's configuration: one documented [`Config`] struct, its defaults in
//! one place ([`Config::default`]), and loading from layered sources.
//!
//! Sources, later ones overriding earlier ones key by key:
//! 1. the defaults;
//! 2. an optional TOML file (`--config FILE`, or `MYELIN_CONFIG`);
//! 3. environment variables `MYELIN_<KEY>`, with `__` between nested keys,
//!    e.g. `MYELIN_SERVER_NAME=example.org` or
//!    `MYELIN_DATABASES__ROOMS__BACKEND=fdb`;
//! 4. command-line flags ([`Overrides`]: `--data`, `--bind`, `--server-name`).
//!
//! Unknown keys are errors (a typo must not silently fall back to a default),
//! except environment variables whose first key is not a key of [`Config`]
//! (so `MYELIN_CONFIG` or `MYELIN_LOG` are left alone). Every error names the
//! offending key. `docs/configuration.md` documents every key; keep it in step.
//!
//! Who may import this: everything. It imports nothing of Myelin's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Dict;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Environment variable prefix of configuration keys.
pub const ENV_PREFIX: &str = "MYELIN_";

/// Directory path under which every database's directories are created,
/// unless configured otherwise (`databases.<name>.root`).
pub const DEFAULT_ROOT: &str = "myelin";

/// Where embedded stores live by default (`data_dir`).
pub const DEFAULT_DATA_DIR: &str = "./data";

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The Matrix server name: the part after `:` in user and room IDs
    /// (Matrix spec, appendices: server name). Default `"localhost"`.
    pub server_name: String,
    /// Address and port the client API listens on. Default `127.0.0.1:8008`.
    pub bind: SocketAddr,
    /// Directory under which embedded databases live by default, each in
    /// `<data_dir>/<database>`. Default `./data`.
    pub data_dir: PathBuf,
    /// Where each logical database lives: one `[databases.<name>]` table
    /// per database (`accounts`, `rooms`, `transitory`, `game`); a database
    /// without one is embedded in `<data_dir>/<name>`.
    #[schemars(with = "BTreeMap<String, DatabaseConfig>")]
    pub databases: DatabasesConfig,
    /// `[server]`: settings of the layers above storage (registration, rate
    /// limits, ...), kept as a raw table here because their types live in
    /// those layers. Read them with [`Config::server_settings`].
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub server: Dict,
    /// `[sync]`: settings of `/sync` (`sync::SyncConfig`), a raw table for
    /// the same reason. Read them with [`Config::sync_settings`].
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub sync: Dict,
    /// `[media]`: settings of the media repository
    /// (`service::media::MediaConfig`), a raw table for the same reason.
    /// Read them with [`Config::media_settings`].
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub media: Dict,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[log]`: log output.
    pub log: LogConfig,
    /// `[health]`: health checks.
    pub health: HealthConfig,
    /// `[shutdown]`: graceful shutdown.
    pub shutdown: ShutdownConfig,
}

/// `[metrics]`: Prometheus metrics, served as `GET /metrics` on a listener
/// of their own (never the client API's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address and port of the metrics listener, e.g. `127.0.0.1:9108`.
    /// Default: none, and metrics are neither recorded nor served.
    pub bind: Option<SocketAddr>,
}

/// `[log]`: log output (to standard error; the level filter is `RUST_LOG`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (one human-readable line per event) or `json` (one JSON
    /// object per line, for log shippers). Default `text`.
    pub format: LogFormat,
}

/// A log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[health]`: the health endpoints (`/_myelin/health/*`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// How long each database has to answer the readiness read, in
    /// milliseconds, before `/_myelin/health/ready` reports it failing.
    /// Default 2000.
    pub ready_timeout_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            ready_timeout_ms: 2000,
        }
    }
}

/// `[shutdown]`: graceful shutdown on SIGTERM or SIGINT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long in-flight requests (and their commits) may take to finish
    /// after the signal, in seconds; the process exits then regardless.
    /// Waiting long-polls are answered at once. Default 30.
    pub deadline_secs: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { deadline_secs: 30 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_name: "localhost".to_string(),
            bind: SocketAddr::from(([127, 0, 0, 1], 8008)),
            data_dir: default_data_dir(),
            databases: DatabasesConfig::default(),
            server: Dict::new(),
            sync: Dict::new(),
            media: Dict::new(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
            health: HealthConfig::default(),
            shutdown: ShutdownConfig::default(),
        }
    }
}

/// `[databases]`: where each logical database lives, one
/// `[databases.<name>]` table per database ([`DatabaseConfig`]). A database
/// without a table has the defaults, embedded in `<data_dir>/<name>`.
///
/// The names are the databases' (`db::SPECS`, which this module does not
/// import): `db::validate_config` refuses a table of a database that does
/// not exist, and `myelin` runs it when it loads the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatabasesConfig {
    /// The tables given, by database name.
    tables: BTreeMap<String, DatabaseConfig>,
    /// Where an embedded database without a `path` lives: `<data_dir>/<name>`
    /// (set from [`Config::data_dir`] by [`Config::fill_defaults`]).
    #[serde(skip, default = "default_data_dir")]
    data_dir: PathBuf,
}

impl Default for DatabasesConfig {
    fn default() -> Self {
        DatabasesConfig {
            tables: BTreeMap::new(),
            data_dir: default_data_dir(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}

impl DatabasesConfig {
    /// Database `name`'s configuration: its table, or the defaults if it
    /// has none, with an embedded database's `path` defaulting to
    /// `<data_dir>/<name>`.
    pub fn get(&self, name: &str) -> DatabaseConfig {
        let mut config = self.tables.get(name).cloned().unwrap_or_default();
        if config.backend == Backend::Embedded && config.path.is_none() {
            config.path = Some(self.data_dir.join(name));
        }
        config
    }

    /// Sets database `name`'s table.
    pub fn set(&mut self, name: &str, config: DatabaseConfig) {
        self.tables.insert(name.to_string(), config);
    }

    /// The names of the databases that have a table, in name order.
    pub fn configured(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(String::as_str)
    }
}

/// The default of [`DatabaseConfig::open_timeout_ms`]: 10 seconds.
pub const DEFAULT_OPEN_TIMEOUT_MS: u64 = 10_000;

/// `[databases.<name>]`: one database's backend and location.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Which backend holds the database. Default `embedded`.
    pub backend: Backend,
    /// `embedded` only: the store's directory. Default `<data_dir>/<name>`
    /// (filled in by [`DatabasesConfig::get`]). Databases given the same
    /// path share one store.
    pub path: Option<PathBuf>,
    /// `fdb` only, required: the FoundationDB cluster file.
    pub cluster_file: Option<PathBuf>,
    /// `embedded` only: the store's page cache, in bytes. Default: the
    /// backend's (`EmbeddedOptions::default`, 64 MiB). Databases sharing a
    /// store use the first one's setting.
    pub cache_size_bytes: Option<usize>,
    /// `embedded` only: the storage engine under the store, `"redb"` (the
    /// default, a B-tree file) or `"fjall"` (an LSM tree with a write-ahead
    /// journal; `docs/decisions/0007-lsm-engine.md`). A directory holding
    /// one engine's store is refused by the other. Databases sharing a store
    /// use the first one's setting.
    pub engine: Engine,
    /// How long opening waits for the store to answer one read (the
    /// directory layer's version key), in milliseconds, before it fails
    /// naming the cluster file. Default [`DEFAULT_OPEN_TIMEOUT_MS`]. Matters
    /// for `fdb`, whose client waits for an unreachable cluster.
    pub open_timeout_ms: Option<u64>,
    /// Directory path the database's directories are created under, followed
    /// by the database's name: `root ++ [name] ++ directory`. Default
    /// `["myelin"]`.
    pub root: Vec<String>,
}

/// Which durable store sits under an embedded database
/// (`[databases.<name>] engine`). See `docs/decisions/0007-lsm-engine.md`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// `redb`: a copy-on-write B-tree in one file, `<dir>/store.redb`.
    #[default]
    Redb,
    /// `fjall`: an LSM tree with a write-ahead journal, in the directory
    /// `<dir>/store.fjall`.
    Fjall,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            backend: Backend::Embedded,
            path: None,
            cluster_file: None,
            cache_size_bytes: None,
            engine: Engine::Redb,
            open_timeout_ms: None,
            root: vec![DEFAULT_ROOT.to_string()],
        }
    }
}

/// A storage backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The in-process backend (`kv::embedded`), durable in a local directory.
    #[default]
    Embedded,
    /// A FoundationDB cluster (needs the `fdb` cargo feature).
    Fdb,
}

/// Settings given on the command line, applied over every other source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Overrides {
    /// `--data DIR`: `data_dir`.
    #[serde(rename = "data_dir", skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--bind ADDR:PORT`: `bind`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    /// `--server-name NAME`: `server_name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file given does not exist (figment would silently skip it).
    #[error("config file {} does not exist", .0.display())]
    MissingFile(PathBuf),
    /// A source could not be read or parsed, or a key has the wrong type or
    /// is unknown. The message names the key and the source.
    #[error("invalid configuration: {0}")]
    Load(#[source] Box<figment::Error>),
    /// A key has a value of the right type that is still not acceptable.
    #[error("invalid configuration: {key}: {reason}")]
    Invalid {
        /// The dotted key, e.g. `databases.rooms.cluster_file`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Config {
    /// Loads the configuration from the defaults, the TOML file `file` (if
    /// any), `MYELIN_*` environment variables and `overrides`, then fills in
    /// derived defaults and validates.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        if let Some(file) = file
            && !file.exists()
        {
            return Err(ConfigError::MissingFile(file.to_path_buf()));
        }
        Config::from_figment(Config::figment(file, overrides))
    }

    /// The layered sources of [`Config::load`], for callers that add their own.
    pub fn figment(file: Option<&Path>, overrides: &Overrides) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            .merge(env_provider())
            .merge(Serialized::defaults(overrides))
    }

    /// Extracts, fills in derived defaults and validates.
    pub fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))?;
        config.fill_defaults();
        config.validate()?;
        Ok(config)
    }

    /// Makes `<data_dir>/<name>` the path of every embedded database
    /// without one ([`DatabasesConfig::get`]).
    pub fn fill_defaults(&mut self) {
        self.databases.data_dir = self.data_dir.clone();
    }

    /// The `[server]` table as `T`, with `T`'s defaults for missing keys if
    /// `T` is `#[serde(default)]`. Errors name the key (`server.<key>`).
    pub fn server_settings<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        table_settings("server", &self.server)
    }

    /// The `[sync]` table as `T`, with `T`'s defaults for missing keys if
    /// `T` is `#[serde(default)]`. Errors name the key (`sync.<key>`).
    pub fn sync_settings<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        table_settings("sync", &self.sync)
    }

    /// The `[media]` table as `T`, like [`Config::sync_settings`]. Errors
    /// name the key (`media.<key>`).
    pub fn media_settings<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        table_settings("media", &self.media)
    }

    /// Checks values that deserialize but are not acceptable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            key: key.to_string(),
            reason,
        };
        if let Err(e) = <&ruma::ServerName>::try_from(self.server_name.as_str()) {
            return Err(invalid(
                "server_name",
                format!(
                    "{:?} is not a valid Matrix server name ({e})",
                    self.server_name
                ),
            ));
        }
        if self.metrics.bind.is_some() && self.metrics.bind == Some(self.bind) {
            return Err(invalid(
                "metrics.bind",
                "must differ from bind: metrics are never served on the client port".into(),
            ));
        }
        for (name, db) in &self.databases.tables {
            let key = |field: &str| format!("databases.{name}.{field}");
            match db.backend {
                Backend::Embedded if db.cluster_file.is_some() => {
                    return Err(invalid(
                        &key("cluster_file"),
                        "only valid with backend = \"fdb\"".into(),
                    ));
                }
                Backend::Fdb if db.cluster_file.is_none() => {
                    return Err(invalid(
                        &key("cluster_file"),
                        "required with backend = \"fdb\"".into(),
                    ));
                }
                Backend::Fdb if db.path.is_some() => {
                    return Err(invalid(
                        &key("path"),
                        "only valid with backend = \"embedded\"".into(),
                    ));
                }
                _ => {}
            }
            if db.root.iter().any(String::is_empty) {
                return Err(invalid(
                    &key("root"),
                    "path elements must not be empty".into(),
                ));
            }
        }
        Ok(())
    }
}

/// A raw table of the configuration, `[name]`, as `T`. Errors name the key
/// (`name.<key>`).
fn table_settings<T: DeserializeOwned>(name: &str, table: &Dict) -> Result<T, ConfigError> {
    let mut root = Dict::new();
    root.insert(name.to_string(), table.clone().into());
    Figment::from(Serialized::defaults(root))
        .extract::<BTreeMap<String, T>>()
        .map_err(|e| ConfigError::Invalid {
            key: e.path.join("."),
            reason: e.kind.to_string(),
        })?
        .remove(name)
        .ok_or_else(|| ConfigError::Invalid {
            key: name.to_string(),
            reason: "missing table".into(),
        })
}

/// `MYELIN_*` variables whose first key is a key of [`Config`].
fn env_provider() -> Env {
    const TOP_LEVEL: [&str; 11] = [
        "server_name",
        "bind",
        "data_dir",
        "databases",
        "server",
        "sync",
        "media",
        "metrics",
        "log",
        "health",
        "shutdown",
    ];
    Env::prefixed(ENV_PREFIX).split("__").filter(|key| {
        let first = key.as_str().split('.').next().unwrap_or_default();
        TOP_LEVEL.iter().any(|k| first.eq_ignore_ascii_case(k))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_toml(toml: &str) -> Result<Config, ConfigError> {
        Config::from_figment(
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml)),
        )
    }

    #[test]
    fn defaults_put_every_database_embedded_under_data() {
        let config = load_toml("").unwrap();
        assert_eq!(config.server_name, "localhost");
        assert_eq!(config.bind.to_string(), "127.0.0.1:8008");
        assert_eq!(config.databases.configured().count(), 0);
        for name in ["accounts", "rooms", "transitory", "any"] {
            let db = config.databases.get(name);
            assert_eq!(db.backend, Backend::Embedded);
            assert_eq!(db.path, Some(Path::new("./data").join(name)));
            assert_eq!(db.root, vec!["myelin".to_string()]);
        }
    }

    #[test]
    fn file_sets_nested_database_keys() {
        let config = load_toml(
            r#"
            server_name = "example.org"
            data_dir = "/var/lib/myelin"
            [databases.rooms]
            backend = "fdb"
            cluster_file = "/etc/foundationdb/fdb.cluster"
            root = ["prod", "myelin"]
            [databases.transitory]
            path = "/fast/transitory"
            "#,
        )
        .unwrap();
        assert_eq!(config.server_name, "example.org");
        let rooms = config.databases.get("rooms");
        assert_eq!(rooms.backend, Backend::Fdb);
        assert_eq!(rooms.path, None);
        assert_eq!(rooms.root, vec!["prod".to_string(), "myelin".into()]);
        assert_eq!(
            config.databases.get("accounts").path,
            Some(PathBuf::from("/var/lib/myelin/accounts"))
        );
        assert_eq!(
            config.databases.get("transitory").path,
            Some(PathBuf::from("/fast/transitory"))
        );
    }

    #[test]
    fn overrides_win_over_the_file() {
        let overrides = Overrides {
            data_dir: Some("/tmp/x".into()),
            bind: Some("0.0.0.0:1".parse().unwrap()),
            server_name: None,
        };
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("data_dir = \"/a\"\nserver_name = \"a.org\""))
            .merge(Serialized::defaults(&overrides));
        let config = Config::from_figment(figment).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.bind.port(), 1);
        assert_eq!(config.server_name, "a.org");
    }

    #[test]
    fn errors_name_the_key() {
        let err = load_toml("[databases.rooms]\nbackend = \"fbd\"").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("databases.rooms.backend"), "{msg}");

        let err = load_toml("[databases.rooms]\nbakend = \"fdb\"").unwrap_err();
        assert!(err.to_string().contains("bakend"), "{err}");

        let err = load_toml("[databases.rooms]\nbackend = \"fdb\"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: databases.rooms.cluster_file: required with backend = \"fdb\""
        );

        let err = load_toml("bind = \"nowhere\"").unwrap_err();
        assert!(err.to_string().contains("bind"), "{err}");

        let err = load_toml("server_name = \"bad name\"").unwrap_err();
        assert!(err.to_string().contains("server_name"), "{err}");
    }

    #[test]
    fn server_table_is_read_by_the_layer_that_owns_it() {
        #[derive(Debug, Deserialize, PartialEq)]
        #[serde(default)]
        struct Settings {
            registration_enabled: bool,
            burst: u32,
        }
        impl Default for Settings {
            fn default() -> Self {
                Settings {
                    registration_enabled: true,
                    burst: 3,
                }
            }
        }
        let config = load_toml("[server]\nregistration_enabled = false").unwrap();
        let settings: Settings = config.server_settings().unwrap();
        assert_eq!(
            settings,
            Settings {
                registration_enabled: false,
                burst: 3
            }
        );
        let config = load_toml("[server]\nburst = \"many\"").unwrap();
        let err = config.server_settings::<Settings>().unwrap_err();
        assert!(err.to_string().contains("server.burst"), "{err}");
    }

    #[test]
    fn the_documented_example_loads() {
        let doc = include_str!("../docs/configuration.md");
        let start = doc.find("```toml\n").expect("an example") + "```toml\n".len();
        let example = &doc[start..start + doc[start..].find("```").unwrap()];
        let config = load_toml(example).unwrap();
        assert_eq!(config.server_name, "example.org");
        assert_eq!(config.databases.get("rooms").backend, Backend::Fdb);
        assert_eq!(
            config.databases.get("accounts").path,
            Some(PathBuf::from("/var/lib/myelin/accounts"))
        );
    }

    #[test]
    fn sync_table_is_read_like_the_server_table() {
        #[derive(Debug, Deserialize, PartialEq)]
        #[serde(default)]
        struct Settings {
            max_timeout_ms: u64,
        }
        impl Default for Settings {
            fn default() -> Self {
                Settings { max_timeout_ms: 7 }
            }
        }
        let config = load_toml("").unwrap();
        let settings: Settings = config.sync_settings().unwrap();
        assert_eq!(settings, Settings { max_timeout_ms: 7 });
        let config = load_toml("[sync]\nmax_timeout_ms = 1234").unwrap();
        let settings: Settings = config.sync_settings().unwrap();
        assert_eq!(settings.max_timeout_ms, 1234);
        let config = load_toml("[sync]\nmax_timeout_ms = \"long\"").unwrap();
        let err = config.sync_settings::<Settings>().unwrap_err();
        assert!(err.to_string().contains("sync.max_timeout_ms"), "{err}");
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let err = Config::load(
            Some(Path::new("/nonexistent/myelin.toml")),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)), "{err}");
    }
}
