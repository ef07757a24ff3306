//! Request extractors and the response wrapper that connect axum to ruma.
//!
//! - [`Ruma<T>`] reads the body (bounded by `max_request_bytes`, else
//!   M_TOO_LARGE), checks it is one well-formed JSON value
//!   (`api::body`), takes the path parameters in order and parses the
//!   request with ruma's `IncomingRequest::try_from_http_request`
//!   (`parse`, which every extractor of a ruma request goes through);
//! - [`Auth`] resolves the access token (`Authorization: Bearer`, or the
//!   deprecated `access_token` query parameter) with one database read;
//! - [`ClientIp`] is the peer address, for rate limits;
//! - [`RumaResponse<T>`] serializes a ruma response type.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use ruma::api::{IncomingRequest, IncomingRequestExt, OutgoingResponse, OutgoingResponseExt};

use super::body::check_json;
use super::{ApiError, AppState};
use crate::service::Authed;

/// A request parsed into ruma's type for its endpoint.
pub struct Ruma<T>(pub T);

impl<T: IncomingRequest + Send + 'static> FromRequest<AppState> for Ruma<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        parse(req, state, None).await.map(Ruma)
    }
}

/// Reads and parses a request into ruma's type `T`: the one path every
/// body takes. `extra_arg`, if given, is appended to the path parameters
/// (for routes whose path lacks a trailing parameter that ruma's path has).
///
/// In order: a declared or actual body over `max_request_bytes` is
/// M_TOO_LARGE; a non-empty body of any method but `GET`/`HEAD` must pass
/// [`check_json`] (one JSON value, no duplicate keys, bounded depth); an
/// empty body reads as `{}`, as Synapse does (matrix-nio sends bodiless
/// `POST /join/{room}` and `/leave`); [`precheck`] refuses bodies ruma is
/// known to mishandle; a panic inside ruma's parser becomes 400 M_BAD_JSON,
/// logged as an upstream bug.
pub(super) async fn parse<T: IncomingRequest + 'static>(
    req: Request,
    state: &AppState,
    extra_arg: Option<&str>,
) -> Result<T, ApiError> {
    let limit_bytes = state
        .accounts
        .config()
        .max_request_bytes
        .min(MAX_REQUEST_BYTES_CEILING);
    let (mut parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit_bytes as u64) {
        return Err(ApiError::TooLarge { limit_bytes });
    }
    let params = RawPathParams::from_request_parts(&mut parts, state)
        .await
        .map_err(|e| ApiError::InvalidParam(e.body_text()))?;
    for (name, value) in params.iter() {
        check_path_param(name, value)?;
    }
    let mut args: Vec<String> = params.iter().map(|(_, v)| v.to_owned()).collect();
    args.extend(extra_arg.map(str::to_owned));
    let bytes = axum::body::to_bytes(body, limit_bytes)
        .await
        .map_err(|_| ApiError::TooLarge { limit_bytes })?;
    let body: &[u8] = if bytes.is_empty() {
        b"{}"
    } else {
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            check_json(&bytes)?;
        }
        bytes.as_ref()
    };
    precheck::<T>(body)?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let request = axum::http::Request::from_parts(parts, body);
    // ruma's parsers are not supposed to panic, but some do on input they
    // do not expect (see `precheck`); a panic there is the client's bad
    // input meeting an upstream bug, so it is a 400, not a 500.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        T::try_from_http_request(request, &args)
    })) {
        Ok(parsed) => parsed.map_err(ApiError::from_request_error),
        Err(_) => {
            tracing::error!(
                endpoint = std::any::type_name::<T>(),
                "ruma panicked parsing a request body (upstream bug; the panic message above names its location)"
            );
            Err(ApiError::BadJson(
                "the request body is not what this endpoint takes".into(),
            ))
        }
    }
}

/// The most a request body may be, whatever `max_request_bytes` says:
/// 4,000,000 bytes. Every value a request stores must fit, with the rest of
/// its writes, in one FoundationDB transaction (10,000,000 bytes), and the
/// store splits values up to exactly this size (`db::split::MAX_VALUE_BYTES`,
/// equal by a test).
pub const MAX_REQUEST_BYTES_CEILING: usize = 4_000_000;

/// The longest path parameter, in bytes (after percent-decoding): the
/// spec's limit on user IDs, room IDs, aliases, event types and state keys
/// (spec: "Size limits" of "Room Events"), applied to every identifier in
/// a path (device, transaction, filter and session IDs, account-data types,
/// backup versions), so none can grow a key towards FoundationDB's
/// 10,000-byte limit.
pub const MAX_PATH_PARAM_BYTES: usize = 255;

/// Refuses a path parameter over [`MAX_PATH_PARAM_BYTES`]: 413 M_TOO_LARGE
/// for an event type or state key (Synapse's answer for an event whose
/// `type` or `state_key` is over the limit), 400 M_INVALID_PARAM for every
/// other identifier.
fn check_path_param(name: &str, value: &str) -> Result<(), ApiError> {
    if value.len() <= MAX_PATH_PARAM_BYTES {
        return Ok(());
    }
    let message = format!(
        "`{name}` is {} bytes, over the limit of {MAX_PATH_PARAM_BYTES}",
        value.len()
    );
    if matches!(name, "event_type" | "state_key") {
        Err(ApiError::FieldTooLarge(message))
    } else {
        Err(ApiError::InvalidParam(message))
    }
}

/// Refuses, before ruma parses them, bodies that ruma mishandles:
///
/// - `POST /login` without a string `type`: ruma-client-api 0.25's
///   `LoginInfo` indexes the body's map with `data["type"]`, which panics
///   when the key is absent (upstream bug, recorded in docs/limits.md).
///   400 M_BAD_JSON, as Synapse answers.
/// - `POST /createRoom` with a `room_version` that is not a valid room
///   version identifier: ruma fails the whole body (M_BAD_JSON), where the
///   spec and Synapse answer 400 M_UNSUPPORTED_ROOM_VERSION for a string
///   (and M_BAD_JSON for a non-string).
fn precheck<T: 'static>(body: &[u8]) -> Result<(), ApiError> {
    use std::any::TypeId;
    let is = |id: TypeId| TypeId::of::<T>() == id;
    let login = is(TypeId::of::<ruma::api::client::session::login::v3::Request>());
    let create_room = is(TypeId::of::<
        ruma::api::client::room::create_room::v3::Request,
    >());
    if !login && !create_room {
        return Ok(());
    }
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(body) else {
        return Ok(()); // ruma reports a non-object body itself
    };
    if login && !object.get("type").is_some_and(serde_json::Value::is_string) {
        return Err(ApiError::BadJson(
            "`type` must be a login type string".into(),
        ));
    }
    if create_room {
        match object.get("room_version") {
            Some(serde_json::Value::String(version))
                if ruma::RoomVersionId::try_from(version.as_str()).is_err() =>
            {
                return Err(ApiError::Rooms(
                    crate::service::rooms::Error::UnsupportedRoomVersion(version.clone()),
                ));
            }
            None | Some(serde_json::Value::String(_)) => {}
            Some(_) => return Err(ApiError::BadJson("`room_version` must be a string".into())),
        }
    }
    Ok(())
}

/// The owner of the request's access token. Rejects with M_MISSING_TOKEN or
/// M_UNKNOWN_TOKEN.
pub struct Auth(pub Authed);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = access_token(parts).ok_or(ApiError::MissingToken)?;
        Ok(Auth(state.accounts.authenticate(&token).await?))
    }
}

/// The access token of a request: the `Authorization: Bearer` header, or the
/// `access_token` query parameter (deprecated in spec v1.11, still accepted).
fn access_token(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        return value.strip_prefix("Bearer ").map(|t| t.trim().to_owned());
    }
    #[derive(serde::Deserialize)]
    struct TokenQuery {
        access_token: Option<String>,
    }
    axum::extract::Query::<TokenQuery>::try_from_uri(&parts.uri)
        .ok()?
        .0
        .access_token
}

/// The client's IP address (the TCP peer; proxies are not trusted).
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        Ok(ClientIp(ip))
    }
}

/// A ruma response type, serialized as the endpoint defines.
pub struct RumaResponse<T>(pub T);

impl<T: OutgoingResponse> IntoResponse for RumaResponse<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<Vec<u8>>() {
            Ok(response) => response.map(axum::body::Body::from),
            Err(e) => {
                tracing::error!(error = %e, "response serialization failed");
                ApiError::Internal.into_response()
            }
        }
    }
}

/// What handlers return.
pub type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

/// Wraps a ruma response.
pub fn ok<T>(response: T) -> ApiResult<T> {
    Ok(RumaResponse(response))
}
