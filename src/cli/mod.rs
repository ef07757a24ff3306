//! The `myelin` command line: argument structs (clap derive) shared by every
//! subcommand, and dispatch. One file per subcommand.
//!
//! - `myelin serve`: run the server ([`ServeArgs`]);
//! - `myelin keys layout | decode | scan`: inspect key schemas and stored keys
//!   ([`keys`]);
//! - `myelin user ...`: operator account commands ([`user`]);
//! - `myelin game verify`: check balances against the ledger ([`game`]);
//! - `myelin config example | check FILE`: the commented reference
//!   configuration, and a file checker ([`config`]).
//! - `myelin backup create | verify | restore` ([`backup`]);
//! - `myelin admin users | rooms | registration-tokens ...`: the admin API's
//!   operations ([`admin`]).
//! - `myelin media purge`: delete old media and orphaned blobs ([`media`]).
//!
//! Configuration flags common to every command that touches a store live in
//! [`ConfigArgs`] (`--config FILE`, `--data DIR`); `serve` adds `--bind` and
//! `--server-name`. They become [`Overrides`] applied over the file and the
//! environment by [`Config::load`].
//!
//! Exit codes: 0 on success, 1 when a command fails at run time (store, I/O)
//! or a check finds the data inconsistent,
//! 2 for bad input (as clap does for bad arguments) and for commands not yet
//! available.
//!
//! Who may import this: `main.rs` only. The CLI sits at the top of the crate
//! and may import every layer.

pub mod admin;
pub mod backup;
pub mod config;
pub mod game;
pub mod keys;
pub mod media;
pub mod serve;
pub mod user;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError, Overrides};
use crate::db::DbError;

/// `myelin`: a Matrix homeserver-style data service on FoundationDB.
#[derive(Debug, Parser)]
#[command(name = "myelin", version, about)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The log format the command's configuration asks for (`[log]
    /// format`): `serve`'s, read from its configuration sources; text for
    /// every other command, and when the configuration does not load (the
    /// command then reports why).
    pub fn log_format(&self) -> crate::config::LogFormat {
        match &self.command {
            Command::Serve(args) => args
                .load_config()
                .map(|config| config.log.format)
                .unwrap_or_default(),
            _ => crate::config::LogFormat::Text,
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Inspect key layouts and the keys of a store.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Operator account commands: create, list, deactivate, reset-password.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Load-test a Matrix homeserver over the Client-Server API.
    Bench(crate::bench::BenchArgs),
    /// Game operator commands: verify.
    #[command(subcommand)]
    Game(game::GameCommand),
    /// Configuration: print the commented example, check a file.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Backup and restore of every database.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// The admin API's operations: users, rooms, registration tokens.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// The media repository: purge old media and orphaned blobs.
    #[command(subcommand)]
    Media(media::MediaCommand),
}

/// Where the configuration comes from: `--config FILE` and `--data DIR`,
/// applied over the defaults and `MYELIN_*` environment variables.
#[derive(Clone, Debug, Default, Args)]
pub struct ConfigArgs {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, short = 'c', env = "MYELIN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded databases (`data_dir`; default ./data).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

impl ConfigArgs {
    /// Whether a configuration file or data directory was given.
    pub fn is_given(&self) -> bool {
        self.config.is_some() || self.data.is_some()
    }

    /// Loads the configuration with `--data` applied and any further
    /// `overrides`, and checks that every `[databases.<name>]` table names a
    /// database that exists ([`crate::db::validate_config`]).
    pub fn load_with(&self, mut overrides: Overrides) -> Result<Config, ConfigError> {
        if self.data.is_some() {
            overrides.data_dir = self.data.clone();
        }
        let config = Config::load(self.config.as_deref(), &overrides)?;
        crate::db::validate_config(&config.databases)?;
        Ok(config)
    }

    /// Loads the configuration with `--data` applied.
    pub fn load(&self) -> Result<Config, ConfigError> {
        self.load_with(Overrides::default())
    }
}

/// `myelin serve`: run the server.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Configuration sources.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Address and port to listen on (`bind`; default 127.0.0.1:8008).
    #[arg(long, value_name = "ADDR:PORT")]
    pub bind: Option<SocketAddr>,
    /// The Matrix server name (`server_name`; default localhost).
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
}

impl ServeArgs {
    /// Loads the configuration with every flag of `serve` applied.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        self.config.load_with(Overrides {
            data_dir: None,
            bind: self.bind,
            server_name: self.server_name.clone(),
        })
    }
}

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A database could not be opened or read.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The arguments are well-formed but unacceptable (a key that does not
    /// parse, an unknown directory or subspace).
    #[error("{0}")]
    BadInput(String),
    /// The server or an account operation failed at run time.
    #[error("{0}")]
    Runtime(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),
    /// A check found the stored data inconsistent.
    #[error("{0}")]
    Inconsistent(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::BadInput(_) | CliError::Config(_) => 2,
            CliError::Db(_)
            | CliError::Output(_)
            | CliError::Runtime(_)
            | CliError::Inconsistent(_) => 1,
        }
    }
}

/// Runs a parsed command line, printing errors (with their sources) to
/// standard error, and returns the exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::User(cmd) => user::run(cmd).await,
        Command::Keys(cmd) => keys::run(cmd).await,
        Command::Game(cmd) => game::run(cmd).await,
        Command::Config(cmd) => config::run(cmd).await,
        Command::Backup(cmd) => backup::run(cmd).await,
        Command::Admin(cmd) => admin::run(cmd).await,
        Command::Media(cmd) => media::run(cmd).await,
        Command::Bench(args) => crate::bench::run(args)
            .await
            .map_err(|e| CliError::Runtime(Box::new(e))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut message = format!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                let text = s.to_string();
                if !message.contains(&text) {
                    message.push_str(&format!("\n  caused by: {text}"));
                }
                source = s.source();
            }
            eprintln!("{message}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Writes `text` to standard output; a closed pipe (`| head`) is not an
/// error.
pub(crate) fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(CliError::Output),
    }
}
