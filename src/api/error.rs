//! The one place where failures become Matrix error responses: every
//! [`ApiError`] maps to an `errcode` and an HTTP status here, and nowhere
//! else (spec: "Standard error response" and the per-endpoint error lists).
//!
//! | condition | status | errcode |
//! |-----------|-------:|---------|
//! | unknown endpoint / method | 404 / 405 | `M_UNRECOGNIZED` |
//! | body is not JSON / JSON of the wrong shape | 400 | `M_NOT_JSON` / `M_BAD_JSON` |
//! | body over the limit | 413 | `M_TOO_LARGE` |
//! | no access token / unknown token | 401 | `M_MISSING_TOKEN` / `M_UNKNOWN_TOKEN` (`soft_logout: false`) |
//! | user-interactive auth needed | 401 | UIA body (`flows`, `session`, ...) |
//! | not allowed | 403 | `M_FORBIDDEN` |
//! | not found | 404 | `M_NOT_FOUND` |
//! | rooms: alias taken / createRoom alias taken / canonical alias not ours | 409 `M_UNKNOWN` / 400 `M_ROOM_IN_USE` / 400 `M_BAD_ALIAS` |
//! | rate limited | 429 | `M_LIMIT_EXCEEDED` with `retry_after_ms` |
//! | malformed sync `since` token | 400 | `M_INVALID_PARAM` |
//! | key backup: keys written to a version that is not the current one | 403 | `M_WRONG_ROOM_KEYS_VERSION` with `current_version` |
//! | game: storage version condition failed | 409 | `ORG.MYELIN.VERSION_MISMATCH` with `index` |
//! | game: a balance would go below zero | 409 | `ORG.MYELIN.INSUFFICIENT_FUNDS` with `user_id`, `currency`, `balance`, `delta` |
//! | game: an item missing, not the owner's, or too few | 409 | `ORG.MYELIN.INSUFFICIENT_ITEMS` with `item_id`, `held`, `wanted` |
//! | game: the trade is no longer open | 409 | `ORG.MYELIN.TRADE_NOT_OPEN` with `state` |
//! | game: a leaderboard with this ID and another definition exists | 409 | `ORG.MYELIN.LEADERBOARD_EXISTS` |
//! | game: a tournament takes no submission now | 409 | `ORG.MYELIN.TOURNAMENT_NOT_ACTIVE` with `reason` |
//! | game: a tournament window is full | 409 | `ORG.MYELIN.TOURNAMENT_FULL` with `max_size` |
//! | game: a tournament needs a join first | 403 | `ORG.MYELIN.TOURNAMENT_NOT_JOINED` |
//! | game: a record reached `max_num_score` | 409 | `ORG.MYELIN.MAX_NUM_SCORE` with `max_num_score` |
//! | game: write to an admin-only object | 403 | `M_FORBIDDEN` with `index` |
//! | media: unknown, expired or quarantined / another user's media ID | 404 `M_NOT_FOUND` / 403 `M_FORBIDDEN` |
//! | media: already uploaded / not uploaded in time | 409 `M_CANNOT_OVERWRITE_MEDIA` / 504 `M_NOT_YET_UPLOADED` |
//! | media: over the size limit or the quota / too many pending uploads | 413 `M_TOO_LARGE` / 429 `M_LIMIT_EXCEEDED` |
//! | media: cannot thumbnail / image too large to thumbnail | 400 `M_UNKNOWN` / 413 `M_TOO_LARGE` |
//! | URL preview: refused address / page failed / page too large / too many in flight | 403 `M_FORBIDDEN` / 502 `M_UNKNOWN` / 502 `M_TOO_LARGE` / 429 `M_LIMIT_EXCEEDED` |
//! | storage unavailable: the store's time budget or retry limit ran out (FoundationDB `transaction_timed_out`, 1031, e.g. cluster unreachable) | 503 | `M_UNKNOWN`, header `Retry-After` |
//! | storage failure, panic | 500 | `M_UNKNOWN` |

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ruma::api::OutgoingResponseExt;
use ruma::api::error::{
    DeserializationError, ErrorBody, ErrorKind, FromHttpRequestError, LimitExceededErrorData,
    RetryAfter, StandardErrorBody, UnknownTokenErrorData, WrongRoomKeysVersionErrorData,
};

use crate::db;
use crate::service;
use crate::service::e2ee::BackupError;
use crate::sync;

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The service refused or failed.
    #[error(transparent)]
    Service(#[from] service::Error),
    /// The rooms service refused or failed.
    #[error(transparent)]
    Rooms(#[from] service::rooms::Error),
    /// The game service refused or failed.
    #[error(transparent)]
    Game(#[from] service::game::Error),
    /// The media repository refused or failed.
    #[error(transparent)]
    Media(#[from] service::media::Error),
    /// No route has this path.
    #[error("unrecognized endpoint")]
    UnrecognizedPath,
    /// The path exists but not with this method.
    #[error("method not allowed")]
    UnrecognizedMethod,
    /// The body is not valid JSON.
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not what the endpoint takes.
    #[error("bad JSON: {0}")]
    BadJson(String),
    /// A path or query parameter is malformed.
    #[error("invalid parameter: {0}")]
    InvalidParam(String),
    /// The body is larger than the configured limit.
    #[error("request body is larger than {limit_bytes} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit_bytes: usize,
    },
    /// One field of the request (an event type or state key in the path)
    /// is over its size limit (413 M_TOO_LARGE, as Synapse answers).
    #[error("{0}")]
    FieldTooLarge(String),
    /// The request needs an access token and has none.
    #[error("missing access token")]
    MissingToken,
    /// A login type or identifier this server does not offer.
    #[error("{0}")]
    UnknownLoginType(String),
    /// Keys were written to a backup version that is not the current one.
    #[error("backup version is not the current version")]
    WrongRoomKeysVersion {
        /// The current backup version.
        current_version: String,
    },
    /// A handler panicked or the body could not be read.
    #[error("internal error")]
    Internal,
}

impl From<BackupError> for ApiError {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::Service(e) => ApiError::Service(e),
            BackupError::WrongVersion { current_version } => {
                ApiError::WrongRoomKeysVersion { current_version }
            }
        }
    }
}

impl From<sync::Error> for ApiError {
    fn from(e: sync::Error) -> Self {
        match e {
            sync::Error::InvalidToken(e) => ApiError::InvalidParam(format!("since: {e}")),
            sync::Error::Storage(e) => ApiError::Service(e.into()),
            sync::Error::Rooms(e) => ApiError::Rooms(e),
            sync::Error::Service(e) => ApiError::Service(e),
            sync::Error::Game(e) => ApiError::Game(e.into()),
        }
    }
}

impl ApiError {
    /// Classifies a ruma request-parsing failure.
    pub fn from_request_error(e: FromHttpRequestError) -> Self {
        match e {
            FromHttpRequestError::Deserialization(DeserializationError::Json(e))
                if e.is_syntax() || e.is_eof() =>
            {
                ApiError::NotJson(e.to_string())
            }
            FromHttpRequestError::Deserialization(DeserializationError::Json(e)) => {
                ApiError::BadJson(e.to_string())
            }
            FromHttpRequestError::Deserialization(e) => ApiError::InvalidParam(e.to_string()),
            FromHttpRequestError::MethodMismatch { .. } => ApiError::UnrecognizedMethod,
            other => ApiError::BadJson(other.to_string()),
        }
    }

    /// Whether this is the store being unavailable for now (its time budget
    /// or retry limit ran out; [`db::is_unavailable`]), whichever service
    /// reported it: answered with 503 and [`RETRY_AFTER_SECS`].
    fn is_unavailable(&self) -> bool {
        use service::Error as S;
        fn service(e: &S) -> bool {
            match e {
                S::Storage(e) => db::is_unavailable(e),
                S::TransitoryStorage(e) => db::is_unavailable(e),
                S::RoomsStorage(e) => db::is_unavailable(e),
                _ => false,
            }
        }
        match self {
            ApiError::Service(e) => service(e),
            ApiError::Rooms(service::rooms::Error::Storage(e)) => db::is_unavailable(e),
            ApiError::Rooms(service::rooms::Error::Accounts(e)) => service(e),
            ApiError::Game(service::game::Error::Db(e)) => db::is_unavailable(e),
            ApiError::Game(service::game::Error::Accounts(e)) => service(e),
            _ => false,
        }
    }

    /// The status and Matrix error kind of this failure (UIA aside).
    fn status_and_kind(&self) -> (StatusCode, ErrorKind) {
        use service::Error as S;
        match self {
            ApiError::Service(e) => match e {
                S::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorKind::Forbidden),
                S::NotFound(_) => (StatusCode::NOT_FOUND, ErrorKind::NotFound),
                S::UserInUse => (StatusCode::BAD_REQUEST, ErrorKind::UserInUse),
                S::InvalidUsername(_) => (StatusCode::BAD_REQUEST, ErrorKind::InvalidUsername),
                S::InvalidParam(_) => (StatusCode::BAD_REQUEST, ErrorKind::InvalidParam),
                S::MissingParam(_) => (StatusCode::BAD_REQUEST, ErrorKind::MissingParam),
                S::BadJson(_) => (StatusCode::BAD_REQUEST, ErrorKind::BadJson),
                S::ServerManagedAccountData(_) => {
                    (StatusCode::METHOD_NOT_ALLOWED, ErrorKind::BadJson)
                }
                S::UnknownToken => (StatusCode::UNAUTHORIZED, unknown_token()),
                S::UserDeactivated => (StatusCode::FORBIDDEN, ErrorKind::UserDeactivated),
                S::GuestAccessForbidden => (StatusCode::FORBIDDEN, ErrorKind::GuestAccessForbidden),
                S::LimitExceeded { retry_after_ms } => {
                    let mut data = LimitExceededErrorData::new();
                    data.retry_after =
                        Some(RetryAfter::Delay(Duration::from_millis(*retry_after_ms)));
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        ErrorKind::LimitExceeded(data),
                    )
                }
                S::AuthRequired(_) => (StatusCode::UNAUTHORIZED, ErrorKind::Unauthorized),
                S::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge),
                S::Storage(_) | S::TransitoryStorage(_) | S::RoomsStorage(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Unknown)
                }
            },
            ApiError::Rooms(e) => rooms_status_and_kind(e),
            // Answered by `game_response` (custom errcodes, extra fields);
            // the status is the same.
            ApiError::Game(e) => (game_error(e).0, ErrorKind::Unknown),
            ApiError::Media(e) => media_status_and_kind(e),
            ApiError::UnrecognizedPath => (StatusCode::NOT_FOUND, ErrorKind::Unrecognized),
            ApiError::UnrecognizedMethod => {
                (StatusCode::METHOD_NOT_ALLOWED, ErrorKind::Unrecognized)
            }
            ApiError::NotJson(_) => (StatusCode::BAD_REQUEST, ErrorKind::NotJson),
            ApiError::BadJson(_) => (StatusCode::BAD_REQUEST, ErrorKind::BadJson),
            ApiError::InvalidParam(_) => (StatusCode::BAD_REQUEST, ErrorKind::InvalidParam),
            ApiError::TooLarge { .. } | ApiError::FieldTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge)
            }
            ApiError::MissingToken => (StatusCode::UNAUTHORIZED, ErrorKind::MissingToken),
            ApiError::UnknownLoginType(_) => (StatusCode::BAD_REQUEST, ErrorKind::Unknown),
            ApiError::WrongRoomKeysVersion { current_version } => (
                StatusCode::FORBIDDEN,
                ErrorKind::WrongRoomKeysVersion(WrongRoomKeysVersionErrorData::new(
                    current_version.clone(),
                )),
            ),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Unknown),
        }
    }
}

/// The status and Matrix error kind of a rooms service failure.
fn rooms_status_and_kind(e: &service::rooms::Error) -> (StatusCode, ErrorKind) {
    use service::rooms::Error as R;
    match e {
        R::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorKind::Forbidden),
        R::NotFound(_) => (StatusCode::NOT_FOUND, ErrorKind::NotFound),
        R::InvalidParam(_) => (StatusCode::BAD_REQUEST, ErrorKind::InvalidParam),
        R::BadJson(_) => (StatusCode::BAD_REQUEST, ErrorKind::BadJson),
        R::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge),
        R::UnsupportedRoomVersion(_) => {
            (StatusCode::BAD_REQUEST, ErrorKind::UnsupportedRoomVersion)
        }
        R::AliasInUse(_) => (StatusCode::CONFLICT, ErrorKind::Unknown),
        R::RoomInUse(_) => (StatusCode::BAD_REQUEST, ErrorKind::RoomInUse),
        R::BadAlias(_) => (StatusCode::BAD_REQUEST, ErrorKind::BadAlias),
        R::Accounts(_) | R::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Unknown),
    }
}

/// The status and Matrix error kind of a media failure.
fn media_status_and_kind(e: &service::media::Error) -> (StatusCode, ErrorKind) {
    use service::media::Error as M;
    match e {
        M::NotFound(_) => (StatusCode::NOT_FOUND, ErrorKind::NotFound),
        M::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorKind::Forbidden),
        M::CannotOverwrite => (StatusCode::CONFLICT, ErrorKind::CannotOverwriteMedia),
        M::NotYetUploaded => (StatusCode::GATEWAY_TIMEOUT, ErrorKind::NotYetUploaded),
        M::TooLarge { .. } | M::QuotaExceeded { .. } | M::ThumbnailTooLarge(_) => {
            (StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge)
        }
        M::TooManyPending { .. } | M::PreviewBusy => (
            StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::LimitExceeded(LimitExceededErrorData::new()),
        ),
        M::InvalidParam(_) => (StatusCode::BAD_REQUEST, ErrorKind::InvalidParam),
        M::Body(_) | M::Thumbnail(_) => (StatusCode::BAD_REQUEST, ErrorKind::Unknown),
        M::PreviewRefused(_) => (StatusCode::FORBIDDEN, ErrorKind::Forbidden),
        M::PreviewUpstream(_) => (StatusCode::BAD_GATEWAY, ErrorKind::Unknown),
        M::PreviewTooLarge { .. } => (StatusCode::BAD_GATEWAY, ErrorKind::TooLarge),
        M::Db(_) | M::Blob(_) | M::Config(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Unknown)
        }
    }
}

/// The status, errcode and extra body fields of a game failure.
fn game_error(e: &service::game::Error) -> (StatusCode, &'static str, serde_json::Value) {
    use crate::db::game::Error as D;
    use serde_json::json;
    use service::game::Error as G;
    let none = json!({});
    match e {
        G::Forbidden(_) => (StatusCode::FORBIDDEN, "M_FORBIDDEN", none),
        G::NotFound(_) => (StatusCode::NOT_FOUND, "M_NOT_FOUND", none),
        G::InvalidParam(_) => (StatusCode::BAD_REQUEST, "M_INVALID_PARAM", none),
        G::BadJson(_) => (StatusCode::BAD_REQUEST, "M_BAD_JSON", none),
        G::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE", none),
        G::Accounts(_) => (StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", none),
        G::Db(d) => match d {
            D::VersionMismatch { index } => (
                StatusCode::CONFLICT,
                "ORG.MYELIN.VERSION_MISMATCH",
                json!({ "index": index }),
            ),
            D::PermissionDenied { index } => (
                StatusCode::FORBIDDEN,
                "M_FORBIDDEN",
                json!({ "index": index }),
            ),
            D::InsufficientFunds {
                user_id,
                currency,
                balance,
                delta,
            } => (
                StatusCode::CONFLICT,
                "ORG.MYELIN.INSUFFICIENT_FUNDS",
                json!({ "user_id": user_id, "currency": currency, "balance": balance, "delta": delta }),
            ),
            D::InsufficientItems {
                item_id,
                held,
                wanted,
            } => (
                StatusCode::CONFLICT,
                "ORG.MYELIN.INSUFFICIENT_ITEMS",
                json!({ "item_id": item_id, "held": held, "wanted": wanted }),
            ),
            D::TradeNotOpen(state) => (
                StatusCode::CONFLICT,
                "ORG.MYELIN.TRADE_NOT_OPEN",
                json!({ "state": state.as_str() }),
            ),
            D::BalanceOverflow { .. } => (StatusCode::BAD_REQUEST, "M_INVALID_PARAM", none),
            D::TradeNotFound => (StatusCode::NOT_FOUND, "M_NOT_FOUND", none),
            D::NotAllowed(_) => (StatusCode::FORBIDDEN, "M_FORBIDDEN", none),
            D::BoardNotFound => (StatusCode::NOT_FOUND, "M_NOT_FOUND", none),
            D::BoardExists => (StatusCode::CONFLICT, "ORG.MYELIN.LEADERBOARD_EXISTS", none),
            D::TournamentNotActive(reason) => (
                StatusCode::CONFLICT,
                "ORG.MYELIN.TOURNAMENT_NOT_ACTIVE",
                json!({ "reason": reason }),
            ),
            D::TournamentFull { max_size } => (
                StatusCode::CONFLICT,
                "ORG.MYELIN.TOURNAMENT_FULL",
                json!({ "max_size": max_size }),
            ),
            D::NotJoined => (
                StatusCode::FORBIDDEN,
                "ORG.MYELIN.TOURNAMENT_NOT_JOINED",
                none,
            ),
            D::Leaderboard(l) => {
                use crate::db::leaderboard::LeaderboardError as L;
                match l {
                    L::MaxNumScore(max) => (
                        StatusCode::CONFLICT,
                        "ORG.MYELIN.MAX_NUM_SCORE",
                        json!({ "max_num_score": max }),
                    ),
                    L::BadOwner | L::BadReset(_) | L::BadCursor | L::BadLimit => {
                        (StatusCode::BAD_REQUEST, "M_INVALID_PARAM", none)
                    }
                    L::Malformed(_) | L::RankedSet(_) => {
                        (StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", none)
                    }
                }
            }
            D::Kv(_) | D::Corrupt { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", none),
        },
    }
}

/// A game failure's response: `errcode`, `error` and its extra fields.
fn game_response(e: &service::game::Error) -> Response {
    let (status, errcode, extra) = game_error(e);
    let message = if status.is_server_error() {
        tracing::error!(error = %e, source = ?std::error::Error::source(e), "request failed");
        "internal server error".to_owned()
    } else {
        e.to_string()
    };
    let mut body = serde_json::json!({ "errcode": errcode, "error": message });
    if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    (status, axum::Json(body)).into_response()
}

fn unknown_token() -> ErrorKind {
    // `soft_logout` is false: a revoked token never comes back.
    ErrorKind::UnknownToken(UnknownTokenErrorData::new())
}

/// The `Retry-After` of a 503 for an unavailable store, in seconds: about
/// the retry runner's one-second backoff cap, long enough for a cluster to
/// recover from a recovery or a conflict storm.
pub const RETRY_AFTER_SECS: u64 = 1;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.is_unavailable() {
            tracing::warn!(error = %self, "storage unavailable; answering 503");
            let body = StandardErrorBody::new(
                ErrorKind::Unknown,
                "storage temporarily unavailable, retry later".to_owned(),
            );
            let error = ruma::api::error::Error::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorBody::Standard(body),
            );
            let mut response = match error.try_into_http_response::<Vec<u8>>() {
                Ok(response) => response.map(axum::body::Body::from).into_response(),
                Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            };
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            return response;
        }
        if let ApiError::Service(service::Error::AuthRequired(info)) = &self {
            let body = serde_json::to_vec(info).expect("UIA info serializes");
            return (
                StatusCode::UNAUTHORIZED,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response();
        }
        if let ApiError::Game(e) = &self {
            return game_response(e);
        }
        let (status, kind) = self.status_and_kind();
        let message = if status.is_server_error() {
            tracing::error!(error = %self, source = ?std::error::Error::source(&self), "request failed");
            "internal server error".to_owned()
        } else {
            self.to_string()
        };
        let is_unknown_token = matches!(kind, ErrorKind::UnknownToken(_));
        let mut body = ErrorBody::Standard(StandardErrorBody::new(kind, message));
        if is_unknown_token
            && let ErrorBody::Standard(standard) = &body
            && let Ok(serde_json::Value::Object(mut map)) = serde_json::to_value(standard)
        {
            // ruma omits `soft_logout: false`; spell it out so clients know
            // the session is gone for good.
            map.entry("soft_logout").or_insert(false.into());
            body = ErrorBody::Json(serde_json::Value::Object(map));
        }
        let error = ruma::api::error::Error::new(status, body);
        match error.try_into_http_response::<Vec<u8>>() {
            Ok(response) => response.map(axum::body::Body::from).into_response(),
            Err(_) => status.into_response(),
        }
    }
}
