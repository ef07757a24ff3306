//! The services: the business rules between the HTTP API and the databases,
//! one service per area: [`accounts`] (registration, login, tokens, devices,
//! profiles and account data through `userdata`), [`e2ee`] (device keys,
//! cross-signing, key backup), [`rooms`] (rooms, events, membership,
//! directory) and [`transitory`] (typing, to-device, presence), with what
//! they share: the injected [`Clock`], [`ServerConfig`], password hashing,
//! rate limits, user-interactive authentication and the server's
//! [`SigningKey`].
//!
//! `api` handlers parse a request, call one method here and map the result;
//! this layer decides what is allowed (username grammar, user-interactive
//! authentication, who may read or write what, rate limits), generates access
//! tokens and device IDs, hashes passwords, and calls the databases
//! ([`crate::db`]) for every read and write; logic that spans databases lives
//! here, never in `db`. It knows nothing of HTTP: failures are [`Error`]
//! values (and `rooms::Error`) that `api::error` maps to Matrix error codes in
//! one place.
//!
//! Access tokens ([`accounts`]) are 256 random bits (base64url, prefixed
//! `myl_`); only their SHA-256 is stored, and resolving one is a single key
//! read with no cache, so logout and deactivation take effect at once on every
//! server process.
//!
//! Who may import this: `sync`, `app`, `api` and `cli`. It imports `db`,
//! `events` and `kv`'s types below it, never `sync`, `app` or `api`.

pub mod accounts;
pub mod admin;
pub mod clock;
pub mod config;
pub mod e2ee;
pub mod game;
pub mod media;
pub mod password;
pub mod ratelimit;
pub mod rooms;
pub mod signing;
pub mod transitory;
mod uia;
mod userdata;

use ruma::api::client::uiaa::UiaaInfo;

pub use accounts::{Accounts, Authed, LoggedIn, LoginParams, RegisterParams, Registered};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{PasswordHashing, RateLimit, ServerConfig};
pub use signing::SigningKey;

/// Why a service call failed. Each variant is one Matrix error condition;
/// `api::error` holds the mapping to `errcode` and HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller may not do this (M_FORBIDDEN).
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist (M_NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// The requested user ID is taken (M_USER_IN_USE).
    #[error("user ID already taken")]
    UserInUse,
    /// The requested user ID breaks the spec's grammar (M_INVALID_USERNAME).
    #[error("{0}")]
    InvalidUsername(String),
    /// A parameter has an invalid value (M_INVALID_PARAM).
    #[error("{0}")]
    InvalidParam(String),
    /// A parameter is missing (M_MISSING_PARAM).
    #[error("{0}")]
    MissingParam(String),
    /// The JSON body is well-formed but not what the endpoint takes (M_BAD_JSON).
    #[error("{0}")]
    BadJson(String),
    /// The account-data type is managed by the server (405 M_BAD_JSON).
    #[error("account data type {0} is managed by the server")]
    ServerManagedAccountData(String),
    /// The access token is unknown, expired or revoked (M_UNKNOWN_TOKEN).
    #[error("unknown access token")]
    UnknownToken,
    /// The account is deactivated (M_USER_DEACTIVATED).
    #[error("user deactivated")]
    UserDeactivated,
    /// Guest access is not offered (M_GUEST_ACCESS_FORBIDDEN).
    #[error("guest access is not supported")]
    GuestAccessForbidden,
    /// Too many requests (M_LIMIT_EXCEEDED); retry after this many milliseconds.
    #[error("rate limited; retry after {retry_after_ms} ms")]
    LimitExceeded {
        /// How long to wait, in milliseconds.
        retry_after_ms: u64,
    },
    /// The request, or a value it would store, is over a size limit
    /// (413 M_TOO_LARGE); docs/limits.md lists each limit.
    #[error("{0}")]
    TooLarge(String),
    /// User-interactive authentication must be (re)done: 401 with this body.
    #[error("user-interactive authentication required")]
    AuthRequired(Box<UiaaInfo>),
    /// The accounts database failed.
    #[error(transparent)]
    Storage(#[from] crate::db::accounts::Error),
    /// The transitory database failed.
    #[error(transparent)]
    TransitoryStorage(#[from] crate::db::transitory::Error),
    /// A read of the rooms database made outside the rooms service failed.
    #[error(transparent)]
    RoomsStorage(#[from] crate::db::rooms::Error),
}

/// Result of a service call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
