//! A store that does not answer in time (issue 24, point 1): the retry
//! runner's budget ends every transaction with `transaction_timed_out`
//! (1031), opening fails within its deadline naming the store, and the API
//! answers 503 with `Retry-After` instead of 500 or a hang.
//!
//! On FoundationDB the budget is the transaction's `Timeout` option
//! (<https://apple.github.io/foundationdb/api-c.html#c.FDBTransactionOption>,
//! "timeout": the transaction is cancelled once it elapses); these tests run
//! the same runner on the embedded backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use myelin::api::error::{ApiError, RETRY_AFTER_SECS};
use myelin::config::DatabaseConfig;
use myelin::db::{self, DbError};
use myelin::kv::{self, Error, RetryOptions};
use myelin::service;

#[tokio::test]
async fn open_fails_within_its_deadline_naming_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = db::embedded_config(dir.path());
    config.set(
        "rooms",
        DatabaseConfig {
            path: Some(dir.path().to_path_buf()),
            // No time at all: the one read cannot finish in it.
            open_timeout_ms: Some(0),
            ..DatabaseConfig::default()
        },
    );
    let err = db::open(&config)
        .await
        .err()
        .expect("a zero deadline fails the open");
    match &err {
        DbError::Unreachable {
            database,
            location,
            timeout,
        } => {
            assert_eq!(*database, "rooms");
            assert_eq!(location, &std::path::absolute(dir.path()).expect("abs"));
            assert_eq!(*timeout, Duration::ZERO);
        }
        other => panic!("expected Unreachable, got {other}"),
    }
    assert!(err.is_storage());
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );

    // The default deadline is ample for a store that answers.
    config.set(
        "rooms",
        DatabaseConfig {
            path: Some(dir.path().to_path_buf()),
            ..DatabaseConfig::default()
        },
    );
    db::open(&config).await.expect("opens");
}

#[tokio::test]
async fn the_runner_budget_ends_in_an_unavailable_timeout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = kv::embedded::Database::open(dir.path(), Default::default()).expect("open");
    let db = kv::Database::from(store).with_retry_options(RetryOptions {
        timeout: Some(Duration::from_millis(30)),
        retry_limit: None,
        ..RetryOptions::default()
    });
    let attempts = Arc::new(AtomicU32::new(0));
    let err = db
        .run(|_tx, _| {
            attempts.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(Error::Conflict) }
        })
        .await
        .expect_err("never commits");
    assert!(
        matches!(err, Error::TimedOut(t) if t == Duration::from_millis(30)),
        "{err:?}"
    );
    assert_eq!(err.code(), Some(1031));
    assert!(err.is_unavailable());
    assert!(attempts.load(Ordering::SeqCst) >= 1);

    // Errors of the request or the data are not "unavailable".
    assert!(!Error::InvertedRange.is_unavailable());
    assert!(!Error::Conflict.is_unavailable());
}

fn accounts(e: Error) -> ApiError {
    ApiError::Service(service::Error::Storage(db::accounts::Error::Kv(e)))
}

#[test]
fn an_unavailable_store_is_503_with_retry_after() {
    let unavailable = [
        accounts(Error::TimedOut(Duration::from_secs(30))),
        accounts(Error::RetryLimitReached {
            limit: 100,
            last: Box::new(Error::Conflict),
        }),
        ApiError::Service(service::Error::RoomsStorage(db::rooms::Error::Kv(
            Error::TimedOut(Duration::from_secs(30)),
        ))),
        ApiError::Rooms(service::rooms::Error::Storage(db::rooms::Error::Kv(
            Error::TimedOut(Duration::from_secs(30)),
        ))),
        ApiError::Game(service::game::Error::Db(db::game::Error::Kv(
            Error::TimedOut(Duration::from_secs(30)),
        ))),
    ];
    for e in unavailable {
        let label = format!("{e:?}");
        let response = e.into_response();
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{label}"
        );
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .expect("Retry-After");
        assert_eq!(
            retry_after.to_str().expect("ascii"),
            RETRY_AFTER_SECS.to_string()
        );
    }
    // Other storage failures stay 500.
    let response = accounts(Error::Closed).into_response();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.headers().get(header::RETRY_AFTER).is_none());
}
