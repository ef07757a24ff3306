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
//!   file's `server_name`, `[server]` and `[sync]` ([`AppConfig::from_config`]).
//!
//! Who may import this: `api`, the CLI, tests and benchmarks.

use std::sync::Arc;

use ruma::OwnedServerName;

use crate::config::{Config, ConfigError};
use crate::db::Databases;
use crate::db::accounts::AccountsDb;
use crate::service::e2ee::{DeviceLifecycle, E2ee};
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
}

impl AppConfig {
    /// The settings of a loaded configuration.
    ///
    /// Errors: [`ConfigError::Invalid`] naming the key, for a `[server]` or
    /// `[sync]` value that does not deserialize or a bad `server_name`.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let server_name = OwnedServerName::try_from(config.server_name.as_str()).map_err(|e| {
            ConfigError::Invalid {
                key: "server_name".into(),
                reason: e.to_string(),
            }
        })?;
        Ok(AppConfig {
            server_name,
            server: config.server_settings()?,
            sync: config.sync_settings()?,
        })
    }
}

/// Every service of one server process. Cheap to clone.
#[derive(Clone)]
pub struct App {
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
    /// The opened databases (for the server-side backup, `crate::backup`).
    pub databases: Databases,
}

impl App {
    /// Builds every service over opened `databases`: loads (or, on the first
    /// start, creates and stores) the signing key, and starts this process's
    /// sync notifier. Must be called within a tokio runtime.
    ///
    /// Errors: the storage's, or a stored signing key that does not parse.
    pub async fn open(
        databases: &Databases,
        config: AppConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, SigningKeyError> {
        let accounts = Arc::new(Accounts::new(
            AccountsDb::new(&databases.accounts),
            DeviceLifecycle::new(databases),
            config.server_name,
            config.server,
            clock.clone(),
        ));
        let signing_key =
            Arc::new(SigningKey::load_or_create(accounts.db(), accounts.random()).await?);
        let transitory = Transitory::new(databases, clock.clone(), Default::default());
        let e2ee = E2ee::new(databases, accounts.clone());
        let game = crate::service::game::Game::new(databases, accounts.clone(), clock.clone());
        let rooms = Rooms::open(databases, accounts.clone(), &signing_key, clock);
        Ok(App {
            transitory: Arc::new(transitory),
            e2ee: Arc::new(e2ee),
            rooms: Arc::new(rooms),
            game: Arc::new(game),
            accounts,
            signing_key,
            sync: Arc::new(SyncService::new(databases, config.sync)),
            databases: databases.clone(),
        })
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
             [sync]\nmax_timeout_ms = 1234\n",
        );
        let app_config = AppConfig::from_config(&config).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let databases = crate::db::open_embedded_at(dir.path()).await.unwrap();
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let app = App::open(&databases, app_config, clock).await.unwrap();
        assert_eq!(app.sync.config().max_timeout_ms, 1234);
        assert!(!app.accounts.config().registration_enabled);
        assert_eq!(app.accounts.server_name().as_str(), "example.org");
        assert_eq!(app.rooms.server_name().as_str(), "example.org");
        app.sync.notifier().stop().await;
    }

    #[test]
    fn a_bad_sync_value_names_its_key() {
        let err = AppConfig::from_config(&config("[sync]\nmax_timeout_ms = \"soon\"")).unwrap_err();
        assert!(err.to_string().contains("sync.max_timeout_ms"), "{err}");
        let err = AppConfig::from_config(&config("[sync]\nmax_timeout = 5")).unwrap_err();
        assert!(err.to_string().contains("max_timeout"), "{err}");
    }
}
