//! Request extractors and the response wrapper that connect axum to ruma.
//!
//! - [`Ruma<T>`] reads the body (bounded by `max_request_bytes`, else
//!   M_TOO_LARGE), takes the path parameters in order and parses the request
//!   with ruma's `IncomingRequest::try_from_http_request`;
//! - [`Auth`] resolves the access token (`Authorization: Bearer`, or the
//!   deprecated `access_token` query parameter) with one database read;
//! - [`ClientIp`] is the peer address, for rate limits;
//! - [`RumaResponse<T>`] serializes a ruma response type.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use ruma::api::{IncomingRequest, IncomingRequestExt, OutgoingResponse, OutgoingResponseExt};

use super::{ApiError, AppState};
use crate::service::Authed;

/// A request parsed into ruma's type for its endpoint.
pub struct Ruma<T>(pub T);

impl<T: IncomingRequest + Send> FromRequest<AppState> for Ruma<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit_bytes = state.accounts.config().max_request_bytes;
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
        let args: Vec<String> = params.iter().map(|(_, v)| v.to_owned()).collect();
        let bytes = axum::body::to_bytes(body, limit_bytes)
            .await
            .map_err(|_| ApiError::TooLarge { limit_bytes })?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // An empty body reads as `{}`, as Synapse does: clients such as
        // matrix-nio send bodiless `POST /join/{room}` and `/leave`.
        let body: &[u8] = if bytes.is_empty() {
            b"{}"
        } else {
            bytes.as_ref()
        };
        let request = axum::http::Request::from_parts(parts, body);
        T::try_from_http_request(request, &args)
            .map(Ruma)
            .map_err(ApiError::from_request_error)
    }
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
