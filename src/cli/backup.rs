//! `myelin backup create | verify | restore` (`docs/backup.md`): the
//! commands over [`crate::backup`].
//!
//! `create` opens the stores directly, so the server must be stopped (an
//! embedded store is locked by the process that has it open); with
//! `--server URL` it asks the running server to write the backup under its
//! `[backup] dir` instead. `restore` writes into the stores the
//! configuration names, which must be empty unless `--force`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Subcommand;

use super::{CliError, ConfigArgs, print, serve::runtime};
use crate::backup::{self, BackupError, Summary};

/// Backup commands.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Write a backup of every database into DIR (which must not exist or
    /// be empty), each store read at one version.
    Create {
        /// The backup directory; with `--server`, a name under the server's
        /// `[backup] dir`.
        dir: PathBuf,
        /// Ask the running server at this URL (admin token in
        /// `$MYELIN_ADMIN_TOKEN`) instead of opening the stores.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// An admin's access token for `--server`.
        #[arg(long, env = "MYELIN_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Configuration sources.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Check a backup: manifest, chunk checksums, framing and key order.
    Verify {
        /// The backup directory.
        dir: PathBuf,
    },
    /// Restore a backup into the configured (empty) stores.
    Restore {
        /// The backup directory.
        dir: PathBuf,
        /// Clear stores that hold data first.
        #[arg(long)]
        force: bool,
        /// Configuration sources (they name the target).
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// Runs a `myelin backup` command.
// A command's stopwatch for the MB/s it reports (not service logic).
#[allow(clippy::disallowed_methods)]
pub async fn run(cmd: BackupCommand) -> Result<(), CliError> {
    let started = Instant::now();
    let (what, summary) = match cmd {
        BackupCommand::Create {
            dir,
            server: Some(url),
            token,
            ..
        } => return create_on_server(&url, token, &dir).await,
        BackupCommand::Create {
            dir,
            server: None,
            config,
            ..
        } => {
            let config = config.load()?;
            let stores = crate::db::connect(&config.databases)?;
            let (_, summary) = backup::create(&stores, &dir).await.map_err(backup_error)?;
            ("backed up", summary)
        }
        BackupCommand::Verify { dir } => {
            let summary = tokio::task::spawn_blocking(move || backup::verify(&dir))
                .await
                .map_err(runtime)?
                .map_err(backup_error)?;
            ("verified", summary)
        }
        BackupCommand::Restore { dir, force, config } => {
            let config = config.load()?;
            let stores = crate::db::connect(&config.databases)?;
            let summary = backup::restore(stores, &dir, force)
                .await
                .map_err(backup_error)?;
            ("restored", summary)
        }
    };
    print(&report(what, &summary, started.elapsed().as_secs_f64()))
}

/// One line: counts and throughput.
fn report(what: &str, s: &Summary, seconds: f64) -> String {
    let mb = s.bytes as f64 / 1e6;
    format!(
        "{what} {} pairs, {mb:.1} MB of keys and values, {} stores, {} chunks in {seconds:.2} s ({:.1} MB/s)\n",
        s.pairs,
        s.stores,
        s.chunks,
        mb / seconds.max(1e-9)
    )
}

/// A damaged or mismatched backup, or a non-empty target, is the user's
/// input; store and I/O failures are run-time errors.
fn backup_error(e: BackupError) -> CliError {
    match e {
        BackupError::Kv(_) | BackupError::Db(_) | BackupError::Io { .. } => runtime(e),
        other => CliError::BadInput(other.to_string()),
    }
}

/// `create --server URL NAME`: `POST /_myelin/admin/v1/backup`.
async fn create_on_server(
    url: &str,
    token: Option<String>,
    dir: &std::path::Path,
) -> Result<(), CliError> {
    let token = token.ok_or_else(|| {
        CliError::BadInput("--server needs an admin token (--token or MYELIN_ADMIN_TOKEN)".into())
    })?;
    let name = dir
        .to_str()
        .ok_or_else(|| CliError::BadInput("the name must be UTF-8".into()))?;
    let response = reqwest::Client::new()
        .post(format!(
            "{}/_myelin/admin/v1/backup",
            url.trim_end_matches('/')
        ))
        .bearer_auth(token)
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .map_err(runtime)?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.map_err(runtime)?;
    if !status.is_success() {
        return Err(CliError::Runtime(
            format!("the server answered {status}: {body}").into(),
        ));
    }
    print(&format!("{body}\n"))
}
