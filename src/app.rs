//! The application: every service of one server process, built once over
//! the opened databases. This is the one place services are wired together,
//! so `api` only routes (its `AppState` is an [`App`]) and `cli` only loads
//! the configuration, opens the databases and calls [`App::open`].
//!
//! It sits above `sync` because it builds the sync service beside the
//! services of `service`, which `sync` reads through.
//!
//! Invariants:
//! - the server's signing key is loaded (or, on the first start, created)
//!   once per [`App::open`] and shared with every signer;
//! - every setting comes from [`AppConfig`], read from the configuration
//!   file's `server_name`, `data_dir`, `[server]`, `[sync]` and `[media]`
//!   ([`AppConfig::from_config`]).
//!
//! Who may import this: `api`, the CLI, tests and benchmarks.

use std::sync::Arc;

use ruma::OwnedServerName;

use crate::config::{Config, ConfigError};
use crate::db::Databases;
use crate::db::accounts::AccountsDb;
use crate::db::media::MediaDb;
use crate::service::e2ee::{DeviceLifecycle, E2ee};
use crate::service::media::{BlobStore, Media, MediaConfig};
use crate::service::rooms::Rooms;
use crate::service::signing::SigningKeyError;
use crate::service::transitory::Transitory;
use crate::service::{Accounts, Clock, ServerConfig, SigningKey};
use crate::sync::{SyncConfig, SyncService};

/// What the services are configured with.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// The Matrix server name (`server_name`).
    pub server_name: OwnedServerName,
    /// The service layer's settings (`[server]`).
    pub server: ServerConfig,
    /// Sync's settings (`[sync]`).
    pub sync: SyncConfig,
    /// The media repository's settings (`[media]`; its `path` defaults to
    /// `<data_dir>/blobs`).
    pub media: MediaConfig,
}

/// Why the services could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The signing key could not be loaded or created.
    #[error(transparent)]
    SigningKey(#[from] SigningKeyError),
    /// The media blob store could not be opened.
    #[error("media store: {0}")]
    Media(#[from] crate::service::media::Error),
}

impl AppConfig {
    /// The settings of a loaded configuration.
    ///
    /// Errors: [`ConfigError::Invalid`] naming the key, for a `[server]`,
    /// `[sync]` or `[media]` value that does not deserialize or a bad
    /// `server_name`.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let server_name = OwnedServerName::try_from(config.server_name.as_str()).map_err(|e| {
            ConfigError::Invalid {
                key: "server_name".into(),
                reason: e.to_string(),
            }
        })?;
        let mut media: MediaConfig = config.media_settings()?;
        if media.path.is_none() {
            media.path = Some(config.data_dir.join("blobs"));
        }
        Ok(AppConfig {
            server_name,
            server: config.server_settings()?,
            sync: config.sync_settings()?,
            media,
        })
    }
}

/// Every service of one server process: a shared [`AppServices`], so a
/// clone (axum clones the state for each extractor and middleware of every
/// request) is one reference-count increment, not one per service and
/// database handle.
#[derive(Clone)]
pub struct App(Arc<AppServices>);

impl std::ops::Deref for App {
    type Target = AppServices;

    fn deref(&self) -> &AppServices {
        &self.0
    }
}

/// The services behind an [`App`].
pub struct AppServices {
    /// Accounts, devices, tokens, profiles, account data.
    pub accounts: Arc<Accounts>,
    /// The server's signing key.
    pub signing_key: Arc<SigningKey>,
    /// The sync service (and this process's notifier).
    pub sync: Arc<SyncService>,
    /// Typing, to-device messages and presence.
    pub transitory: Arc<Transitory>,
    /// End-to-end encryption keys and key backup.
    pub e2ee: Arc<E2ee>,
    /// Rooms: events, state, membership, directory.
    pub rooms: Arc<Rooms>,
    /// Game: storage objects, wallets, items, trades.
    pub game: Arc<crate::service::game::Game>,
    /// The media repository: uploads, downloads, thumbnails.
    pub media: Arc<Media>,
    /// The opened databases, for the readiness check
    /// ([`crate::db::Handle::ping`]) and the server-side backup
    /// (`crate::backup`).
    pub databases: Databases,
}

impl App {
    /// Builds every service over opened `databases`: loads (or, on the first
    /// start, creates and stores) the signing key, and starts this process's
    /// sync notifier. Must be called within a tokio runtime.
    ///
    /// Errors: the storage's, a stored signing key that does not parse, or
    /// a media blob store that cannot be opened as configured.
    pub async fn open(
        databases: &Databases,
        config: AppConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        let lifecycle = DeviceLifecycle::new(databases);
        // Devices deleted just before a crash may still owe their to-device
        // inbox's deletion (docs/accounts.md, "Logout").
        match lifecycle.finish_owed_cleanups().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(devices = n, "finished deleted devices' cleanup"),
            Err(e) => {
                tracing::warn!(error = %e, "deleted devices' cleanup left for the next start")
            }
        }
        let accounts = Arc::new(Accounts::new(
            AccountsDb::new(&databases.accounts),
            lifecycle,
            config.server_name.clone(),
            config.server,
            clock.clone(),
        ));
        let signing_key =
            Arc::new(SigningKey::load_or_create(accounts.db(), accounts.random()).await?);
        let transitory = Transitory::new(databases, clock.clone(), Default::default());
        let e2ee = E2ee::new(databases, accounts.clone());
        let game = crate::service::game::Game::new(databases, accounts.clone(), clock.clone());
        let random = accounts.random().clone();
        let blobs = BlobStore::from_config(&config.media, random.clone())?;
        let media = Media::new(
            MediaDb::new(&databases.media),
            blobs,
            config.media,
            config.server_name.clone(),
            clock.clone(),
            random,
        );
        let rooms = Rooms::open(databases, accounts.clone(), &signing_key, clock);
        Ok(App(Arc::new(AppServices {
            transitory: Arc::new(transitory),
            e2ee: Arc::new(e2ee),
            rooms: Arc::new(rooms),
            game: Arc::new(game),
            media: Arc::new(media),
            accounts,
            signing_key,
            sync: Arc::new(SyncService::new(databases, config.sync)),
            databases: databases.clone(),
        })))
    }

    /// The services `/sync` reads through.
    pub fn sync_services(&self) -> crate::sync::Services {
        crate::sync::Services {
            rooms: self.rooms.clone(),
            transitory: self.transitory.clone(),
            e2ee: self.e2ee.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format, Serialized, Toml};

    use super::*;
    use crate::service::ManualClock;

    fn config(toml: &str) -> Config {
        Config::from_figment(
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml)),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn the_config_files_settings_reach_the_services() {
        let config = config(
            "server_name = \"example.org\"\n\
             [server]\nregistration_enabled = false\n\
             [sync]\nmax_timeout_ms = 1234\n\
             [media]\nmax_upload_bytes = 777\n",
        );
        let mut app_config = AppConfig::from_config(&config).unwrap();
        assert_eq!(app_config.media.path, Some(config.data_dir.join("blobs")));
        let dir = tempfile::tempdir().unwrap();
        app_config.media.path = Some(dir.path().join("blobs"));
        let databases = crate::db::open_embedded_at(dir.path()).await.unwrap();
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let app = App::open(&databases, app_config, clock).await.unwrap();
        assert_eq!(app.sync.config().max_timeout_ms, 1234);
        assert!(!app.accounts.config().registration_enabled);
        assert_eq!(app.accounts.server_name().as_str(), "example.org");
        assert_eq!(app.rooms.server_name().as_str(), "example.org");
        assert_eq!(app.media.config().max_upload_bytes, 777);
        app.sync.notifier().stop().await;
    }

    #[test]
    fn a_bad_sync_value_names_its_key() {
        let err = AppConfig::from_config(&config("[sync]\nmax_timeout_ms = \"soon\"")).unwrap_err();
        assert!(err.to_string().contains("sync.max_timeout_ms"), "{err}");
        let err = AppConfig::from_config(&config("[sync]\nmax_timeout = 5")).unwrap_err();
        assert!(err.to_string().contains("max_timeout"), "{err}");
        let err = AppConfig::from_config(&config("[media]\nquota = 5")).unwrap_err();
        assert!(err.to_string().contains("quota"), "{err}");
    }
}
