//! The content repository (spec v1.11+, "Content repository"; issue 20,
//! `docs/media.md`): uploads, authenticated downloads and thumbnails, the
//! media config, and the admin quarantine.
//!
//! Uploads do not go through `extract::Ruma` (whose body limit is 4 MB of
//! JSON): the body is streamed to [`crate::service::media::Media`], which
//! cuts it at `[media] max_upload_bytes` (413 `M_TOO_LARGE`). Every response
//! of these routes, errors included, carries the spec's
//! `Content-Security-Policy` sandbox and `Cross-Origin-Resource-Policy:
//! cross-origin` ([`security_headers`]); a download is `inline` only for
//! the spec's safe content types (`ruma`'s `is_safe_inline_content_type`:
//! never SVG or HTML), else `attachment`. The legacy unauthenticated
//! `/_matrix/media/v3/download|thumbnail` answer 404 `M_NOT_FOUND` (media is
//! frozen from day one: spec v1.11). Admins may quarantine a media ID and
//! purge old media (Synapse's `/_synapse/admin/v1/media/...`).
//! `preview_url` is served only with `[media.url_preview] enabled`; off, it
//! answers 404 `M_UNRECOGNIZED` (what Synapse answers with previews
//! disabled), before authentication.
//!
//! Who may import this: `api` (its router).

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use ruma::ServerName;
use ruma::api::client::media::is_safe_inline_content_type;
use ruma::http_headers::{ContentDisposition, ContentDispositionType};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::Auth;
use super::game::GameQuery;
use super::{ApiError, AppState};
use crate::service::media::{Download, Method, UploadInfo};

/// The `Content-Security-Policy` of every media response (the spec's, as
/// Synapse sends it): a document opened from a media URL runs no script,
/// loads nothing, and is sandboxed to an opaque origin.
pub const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

/// Registers every media route (with [`security_headers`] on all of them).
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let media = Router::new()
        .route("/_matrix/media/v3/upload", post(upload))
        .route("/_matrix/media/v1/create", post(create))
        .route(
            "/_matrix/media/v3/upload/{server_name}/{media_id}",
            put(upload_to),
        )
        .route("/_matrix/client/v1/media/config", get(config))
        .route(
            "/_matrix/client/v1/media/download/{server_name}/{media_id}",
            get(download),
        )
        .route(
            "/_matrix/client/v1/media/download/{server_name}/{media_id}/",
            get(download),
        )
        .route(
            "/_matrix/client/v1/media/download/{server_name}/{media_id}/{file_name}",
            get(download),
        )
        .route(
            "/_matrix/client/v1/media/thumbnail/{server_name}/{media_id}",
            get(thumbnail),
        )
        .route("/_matrix/client/v1/media/preview_url", get(preview_url))
        .route(
            "/_synapse/admin/v1/media/quarantine/{server_name}/{media_id}",
            post(quarantine),
        )
        .route("/_synapse/admin/v1/media/delete", post(delete_before));
    let media = ["r0", "v3"].iter().fold(media, |media, version| {
        media
            .route(
                &format!("/_matrix/media/{version}/download/{{server_name}}/{{media_id}}"),
                get(legacy),
            )
            .route(
                &format!(
                    "/_matrix/media/{version}/download/{{server_name}}/{{media_id}}/{{file_name}}"
                ),
                get(legacy),
            )
            .route(
                &format!("/_matrix/media/{version}/thumbnail/{{server_name}}/{{media_id}}"),
                get(legacy),
            )
    });
    router.merge(media.layer(axum::middleware::map_response(security_headers)))
}

/// Adds the sandboxing `Content-Security-Policy`,
/// `Cross-Origin-Resource-Policy: cross-origin` and `X-Content-Type-Options:
/// nosniff` to a media response.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The named path parameters of a request.
struct Params(Vec<(String, String)>);

impl Params {
    fn of(raw: &RawPathParams) -> Self {
        Params(
            raw.iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `{server_name}` and `{media_id}` of the path.
    fn media(&self) -> Result<(&ServerName, &str), ApiError> {
        let server_name = self.get("server_name").unwrap_or_default();
        let server_name = <&ServerName>::try_from(server_name)
            .map_err(|e| ApiError::InvalidParam(format!("server name: {e}")))?;
        Ok((server_name, self.get("media_id").unwrap_or_default()))
    }
}

/// `?filename=` of an upload.
#[derive(Deserialize)]
struct UploadQuery {
    filename: Option<String>,
}

/// What the headers of an upload declare.
fn upload_info(headers: &HeaderMap, file_name: Option<String>) -> UploadInfo {
    UploadInfo {
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        file_name,
        content_length: headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
    }
}

/// `POST /_matrix/media/v3/upload?filename=` (spec: "POST
/// /_matrix/media/v3/upload"): `{content_uri}`.
async fn upload(
    State(s): State<AppState>,
    Auth(a): Auth,
    GameQuery(q): GameQuery<UploadQuery>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let info = upload_info(request.headers(), q.filename);
    let body = request.into_body().into_data_stream();
    let content_uri = s.media.upload(a.user_id.as_str(), info, body).await?;
    Ok(Json(json!({ "content_uri": content_uri })))
}

/// `POST /_matrix/media/v1/create` (spec: "POST /_matrix/media/v1/create"):
/// `{content_uri, unused_expires_at}`.
async fn create(State(s): State<AppState>, Auth(a): Auth) -> Result<Json<Value>, ApiError> {
    let created = s.media.create(a.user_id.as_str()).await?;
    Ok(Json(json!({
        "content_uri": created.content_uri,
        "unused_expires_at": created.unused_expires_at,
    })))
}

/// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}?filename=` (spec:
/// "PUT /_matrix/media/v3/upload/{serverName}/{mediaId}"): `{}`.
async fn upload_to(
    State(s): State<AppState>,
    Auth(a): Auth,
    raw: RawPathParams,
    GameQuery(q): GameQuery<UploadQuery>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let params = Params::of(&raw);
    let (server_name, media_id) = params.media()?;
    let info = upload_info(request.headers(), q.filename);
    let body = request.into_body().into_data_stream();
    s.media
        .upload_to(a.user_id.as_str(), server_name, media_id, info, body)
        .await?;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v1/media/config`: `{"m.upload.size": N}`.
async fn config(State(s): State<AppState>, _: Auth) -> Json<Value> {
    Json(json!({ "m.upload.size": s.media.config().max_upload_bytes }))
}

/// `?timeout_ms=&allow_redirect=` of a download.
#[derive(Deserialize)]
struct DownloadQuery {
    timeout_ms: Option<u64>,
}

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]`
/// (spec: "GET /_matrix/client/v1/media/download/..."; also with an empty
/// file name, `.../{mediaId}/`, which matrix-nio sends): the bytes, waiting
/// up to `timeout_ms` for a pending upload (then 504 `M_NOT_YET_UPLOADED`).
async fn download(
    State(s): State<AppState>,
    _: Auth,
    raw: RawPathParams,
    GameQuery(q): GameQuery<DownloadQuery>,
) -> Result<Response, ApiError> {
    let params = Params::of(&raw);
    let (server_name, media_id) = params.media()?;
    let mut download = s
        .media
        .download(server_name, media_id, q.timeout_ms)
        .await?;
    if let Some(name) = params.get("file_name") {
        download.file_name = Some(name.to_owned());
    }
    Ok(serve(download))
}

/// `?width=&height=&method=&animated=&timeout_ms=` of a thumbnail.
#[derive(Deserialize)]
struct ThumbnailQuery {
    width: u32,
    height: u32,
    method: Option<String>,
    timeout_ms: Option<u64>,
}

/// `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}` (spec:
/// "GET /_matrix/client/v1/media/thumbnail/..."): a thumbnail at the
/// nearest pre-generated size. `animated` is accepted and ignored (a still
/// image is always an allowed answer).
async fn thumbnail(
    State(s): State<AppState>,
    _: Auth,
    raw: RawPathParams,
    GameQuery(q): GameQuery<ThumbnailQuery>,
) -> Result<Response, ApiError> {
    let params = Params::of(&raw);
    let (server_name, media_id) = params.media()?;
    let method = match q.method.as_deref() {
        None | Some("scale") => Method::Scale,
        Some("crop") => Method::Crop,
        Some(other) => {
            return Err(ApiError::InvalidParam(format!(
                "method must be crop or scale, not {other:?}"
            )));
        }
    };
    let download = s
        .media
        .thumbnail(
            server_name,
            media_id,
            q.width,
            q.height,
            method,
            q.timeout_ms,
        )
        .await?;
    Ok(serve(download))
}

/// `?url=&ts=` of a URL preview.
#[derive(Deserialize)]
struct PreviewQuery {
    url: Option<String>,
    /// Accepted and ignored: the answer is this hour's (cached per hour of
    /// the server's clock; the spec lets a server answer a newer preview
    /// than asked, and honouring it would let a client bypass the cache).
    #[serde(rename = "ts")]
    _ts: Option<u64>,
}

/// `GET /_matrix/client/v1/media/preview_url?url=&ts=` (spec: "GET
/// /_matrix/client/v1/media/preview_url"): the page's OpenGraph fields,
/// its image stored as media. Off by default: then 404 `M_UNRECOGNIZED`
/// whoever asks.
async fn preview_url(
    State(s): State<AppState>,
    auth: Result<Auth, ApiError>,
    query: Result<GameQuery<PreviewQuery>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    if !s.media.config().url_preview.enabled {
        return Err(ApiError::UnrecognizedPath);
    }
    let Auth(a) = auth?;
    let GameQuery(q) = query?;
    let url = q
        .url
        .ok_or_else(|| crate::service::Error::MissingParam("url is required".into()))?;
    let og = s.media.preview_url(a.user_id.as_str(), &url).await?;
    Ok(Json(Value::Object(og)))
}

/// `POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}`
/// (Synapse's admin API): quarantines a media ID; admins only.
async fn quarantine(
    State(s): State<AppState>,
    Auth(a): Auth,
    raw: RawPathParams,
) -> Result<Json<Value>, ApiError> {
    if !s.accounts.is_admin(&a).await? {
        return Err(crate::service::Error::Forbidden("admins only".into()).into());
    }
    let params = Params::of(&raw);
    let (server_name, media_id) = params.media()?;
    s.media.quarantine(server_name, media_id).await?;
    Ok(Json(json!({})))
}

/// `?before_ts=&size_gt=` of the admin media deletion.
#[derive(Deserialize)]
struct DeleteQuery {
    before_ts: Option<u64>,
    size_gt: Option<u64>,
}

/// `POST /_synapse/admin/v1/media/delete?before_ts=&size_gt=` (Synapse's
/// admin API, "Delete local media by date or size"): deletes this server's
/// media created before `before_ts` (ms; required), larger than `size_gt`
/// bytes if given, then the blobs no media references; admins only.
/// `{"deleted_media": [media IDs], "total": N}`.
async fn delete_before(
    State(s): State<AppState>,
    Auth(a): Auth,
    GameQuery(q): GameQuery<DeleteQuery>,
) -> Result<Json<Value>, ApiError> {
    if !s.accounts.is_admin(&a).await? {
        return Err(crate::service::Error::Forbidden("admins only".into()).into());
    }
    let before_ts = q
        .before_ts
        .ok_or_else(|| ApiError::InvalidParam("before_ts (ms) is required".into()))?;
    let report = s.media.purge(before_ts, q.size_gt).await?;
    Ok(Json(json!({
        "deleted_media": report.media_ids,
        "total": report.media,
    })))
}

/// The legacy unauthenticated download and thumbnail paths: 404
/// `M_NOT_FOUND` for every media ID (spec v1.11: media uploaded after the
/// switch is served only through `/_matrix/client/v1/media`).
async fn legacy() -> Response {
    let body = json!({
        "errcode": "M_NOT_FOUND",
        "error": "unauthenticated media is not served: use /_matrix/client/v1/media",
    });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// A download's response: its bytes streamed, with `Content-Type`,
/// `Content-Length` and `Content-Disposition` (`inline` only for the safe
/// types).
fn serve(download: Download) -> Response {
    let content_type = HeaderValue::from_str(&download.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let essence = download
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let kind = if is_safe_inline_content_type(&essence) {
        ContentDispositionType::Inline
    } else {
        ContentDispositionType::Attachment
    };
    let disposition = ContentDisposition::new(kind).with_filename(download.file_name);
    let disposition = HeaderValue::from_str(&disposition.to_string())
        .unwrap_or(HeaderValue::from_static("attachment"));
    let mut response = Body::from_stream(download.body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(download.size));
    headers.insert(header::CONTENT_DISPOSITION, disposition);
    response
}
