//! Panics in request handlers: each one that reaches the API's panic
//! catcher (the outermost middleware, which answers 500 `M_UNKNOWN`) is
//! logged at error level with its message and source location, and
//! counted in one process-wide counter, [`count`], which the metrics
//! endpoint exports as `myelin_http_panics_total` (`layer` names it to
//! `metrics`).
//!
//! The location comes from a panic hook installed once by `layer`: it
//! records the location of each panic in a thread-local slot, then calls
//! the hook that was there before (so the usual message is still printed);
//! the catcher runs on the thread that panicked, right after the unwind,
//! and takes the slot. Panics caught elsewhere (ruma's parsers, inside
//! `extract`, become 400) leave a slot the next panic overwrites.
//!
//! Invariant: [`count`] only grows, by one per handler panic answered 500.
//!
//! Who may import this: `api` (its router) and whoever exports metrics
//! (through [`count`]).

use std::any::Any;
use std::cell::RefCell;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;

use super::ApiError;

/// Handler panics since the process started.
static PANICS: AtomicU64 = AtomicU64::new(0);

/// Installs the location-recording hook once per process.
static HOOK: Once = Once::new();

thread_local! {
    /// Where the latest panic on this thread happened, `file:line:column`.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// How many request handlers have panicked in this process (each answered
/// 500 `M_UNKNOWN`). Monotonic; exported as the `myelin_http_panics_total`
/// metric.
pub fn count() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// The panic-catching middleware of the router: a panic becomes a 500
/// `M_UNKNOWN`, logged with its location and counted.
pub(super) fn layer() -> CatchPanicLayer<fn(Box<dyn Any + Send + 'static>) -> Response> {
    install_hook();
    crate::metrics::set_panic_counter(count);
    CatchPanicLayer::custom(caught as fn(Box<dyn Any + Send + 'static>) -> Response)
}

fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            LOCATION.with(|slot| *slot.borrow_mut() = location);
            previous(info);
        }));
    });
}

/// A caught panic: its message and where it happened.
#[derive(Debug, PartialEq, Eq)]
struct Report {
    message: String,
    location: String,
}

/// The report of a panic caught on this thread just now, with `payload`.
fn report(payload: &(dyn Any + Send)) -> Report {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_owned()
    };
    let location = LOCATION
        .with(|slot| slot.borrow_mut().take())
        .unwrap_or_else(|| "unknown".to_owned());
    Report { message, location }
}

fn caught(payload: Box<dyn Any + Send + 'static>) -> Response {
    PANICS.fetch_add(1, Ordering::Relaxed);
    let Report { message, location } = report(payload.as_ref());
    tracing::error!(%location, panic = %message, "a request handler panicked");
    ApiError::Internal.into_response()
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[test]
    fn a_report_names_the_message_and_the_location() {
        install_hook();
        let line = line!() + 1;
        let payload = std::panic::catch_unwind(|| panic!("boom {}", 7)).expect_err("it panics");
        let got = report(payload.as_ref());
        assert_eq!(got.message, "boom 7");
        assert!(
            got.location.starts_with(&format!("{}:{line}:", file!())),
            "{got:?}"
        );
        // The slot is taken: a later report without a panic knows nothing.
        assert_eq!(report(&"x").location, "unknown");
    }

    #[tokio::test]
    async fn a_handler_panic_is_a_500_and_counted() {
        async fn boom() -> &'static str {
            panic!("handler bug")
        }
        let app = Router::new().route("/boom", get(boom)).layer(layer());
        let before = count();
        let response = app
            .oneshot(
                Request::get("/boom")
                    .body(Body::empty())
                    .expect("a request"),
            )
            .await
            .expect("an answer");
        assert_eq!(response.status(), 500);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("the body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(json["errcode"], "M_UNKNOWN");
        assert_eq!(count() - before, 1);
        // The metrics endpoint exports the same count.
        crate::metrics::enable();
        let text = crate::metrics::encode();
        let exported = text
            .lines()
            .find_map(|l| l.strip_prefix("myelin_http_panics_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no panic counter in {text}"));
        assert!(exported > before, "{exported} <= {before}");
    }
}
