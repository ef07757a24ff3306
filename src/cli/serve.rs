//! `myelin serve`: loads the configuration, opens the databases, builds the
//! services ([`App::open`], which loads or on the first start creates the
//! signing key), binds the listener (and, with `[metrics] bind`, the
//! metrics listener, turning metrics recording on and sampling the stored
//! counts every minute) and serves the client
//! API until SIGINT or SIGTERM. Then it stops accepting, answers waiting
//! long-polls at once with their current token, lets in-flight requests
//! (and so their commits) finish for up to `[shutdown] deadline_secs`, and
//! exits.

use std::sync::Arc;
use std::time::Duration;

use super::{CliError, ServeArgs};
use crate::api::{self, ServeOptions, health::ReadyTimeout};
use crate::app::{App, AppConfig};
use crate::service::SystemClock;

/// Runs the server until a shutdown signal.
pub async fn run(args: ServeArgs) -> Result<(), CliError> {
    let config = args.load_config()?;
    let app_config = AppConfig::from_config(&config)?;
    let databases = crate::db::open(&config.databases).await?;
    let state = App::open(&databases, app_config, Arc::new(SystemClock))
        .await
        .map_err(runtime)?;
    tracing::info!(
        server_name = %config.server_name,
        key_id = %state.signing_key.key_id(),
        "signing key loaded"
    );
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(runtime)?;
    let metrics = match config.metrics.bind {
        Some(addr) => {
            crate::metrics::enable();
            tokio::spawn(crate::service::admin::sample_store_gauges(
                databases.clone(),
                crate::service::admin::SAMPLE_EVERY,
            ));
            Some(tokio::net::TcpListener::bind(addr).await.map_err(runtime)?)
        }
        None => None,
    };
    let options = ServeOptions {
        metrics,
        ready_timeout: ReadyTimeout(Duration::from_millis(config.health.ready_timeout_ms)),
    };
    let signalled = Arc::new(tokio::sync::Notify::new());
    let stop = {
        let signalled = signalled.clone();
        async move { signalled.notified().await }
    };
    let served = api::serve_with(listener, state, stop, options);
    tokio::pin!(served);
    let result = tokio::select! {
        result = &mut served => result,
        () = shutdown_signal() => {
            signalled.notify_one();
            let deadline = Duration::from_secs(config.shutdown.deadline_secs);
            match tokio::time::timeout(deadline, &mut served).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(
                        deadline_secs = config.shutdown.deadline_secs,
                        "requests still in flight at the shutdown deadline; exiting"
                    );
                    Ok(())
                }
            }
        }
    };
    result.map_err(runtime)?;
    tracing::info!("server stopped");
    Ok(())
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT: shutting down"),
        () = term => tracing::info!("SIGTERM: shutting down"),
    }
}

/// Wraps a run-time failure.
pub(super) fn runtime(e: impl std::error::Error + Send + Sync + 'static) -> CliError {
    CliError::Runtime(Box::new(e))
}
