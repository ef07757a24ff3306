//! `myelin media purge --older-than DURATION [--size-gt BYTES]`: deletes old
//! media (records, thumbnails, then the blobs no record references any more)
//! and sweeps what crashes left in the blob store (temporary files and
//! unreferenced blobs untouched for `[media] orphan_grace_ms`), on the same
//! databases and blob store the server uses (`docs/media.md`, "Purge").
//! Safe to run while the server runs, and to run again after an
//! interruption: each step is its own small transaction.

use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;

use super::{CliError, ConfigArgs, print, serve::runtime};
use crate::app::AppConfig;
use crate::db::media::MediaDb;
use crate::random::Random;
use crate::service::media::{BlobStore, Media};
use crate::service::{Clock, SystemClock};

/// Media repository commands.
#[derive(Debug, Subcommand)]
pub enum MediaCommand {
    /// Delete media created longer ago than `--older-than`, then the blobs
    /// no media references and the orphans interrupted uploads left.
    Purge {
        /// Age of the oldest media kept, e.g. `30d`, `12h`, `90m`
        /// (humantime syntax).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: Duration,
        /// Only media larger than this many bytes.
        #[arg(long, value_name = "BYTES")]
        size_gt: Option<u64>,
        /// Configuration sources.
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// Runs a `myelin media` command.
pub async fn run(cmd: MediaCommand) -> Result<(), CliError> {
    match cmd {
        MediaCommand::Purge {
            older_than,
            size_gt,
            config,
        } => {
            let clock = Arc::new(SystemClock);
            let media = open(&config, clock.clone()).await?;
            let older_ms = u64::try_from(older_than.as_millis()).unwrap_or(u64::MAX);
            let before_ms = clock.now_ms().saturating_sub(older_ms);
            let purged = media.purge(before_ms, size_gt).await.map_err(runtime)?;
            let swept = media.sweep_orphans().await.map_err(runtime)?;
            print(&format!(
                "purged {} media ({} bytes) created before {before_ms} ms; deleted {} blobs and {} temporary files\n",
                purged.media,
                purged.media_bytes,
                purged.blobs + swept.blobs,
                swept.temporaries
            ))
        }
    }
}

/// The media service over the configured databases and blob store.
async fn open(args: &ConfigArgs, clock: Arc<SystemClock>) -> Result<Media, CliError> {
    let config = args.load()?;
    let settings = AppConfig::from_config(&config)?;
    let databases = crate::db::open(&config.databases).await?;
    let random = Random::os();
    let blobs = BlobStore::from_config(&settings.media, random.clone()).map_err(runtime)?;
    Ok(Media::new(
        MediaDb::new(&databases.media),
        blobs,
        settings.media,
        settings.server_name,
        clock,
        random,
    ))
}
