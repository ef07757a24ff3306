//! The Synapse-compatible admin API, `/_synapse/admin/...` (issue 21;
//! `docs/admin-api.md` lists every endpoint, its shapes and where Myelin
//! differs from Synapse).
//!
//! Every route but `server_version` is for admins only: [`AdminAuth`]
//! resolves the access token (none: 401 `M_MISSING_TOKEN`, unknown: 401
//! `M_UNKNOWN_TOKEN`) and checks the account's admin flag (not an admin:
//! 403 `M_FORBIDDEN`). Handlers are thin: parse the path, query
//! ([`GameQuery`], else 400 `M_INVALID_PARAM`) and body ([`GameJson`], the
//! checks every JSON body passes), call one [`crate::service::admin`]
//! function, answer its JSON. Errors map in `api/error.rs`.
//!
//! Beside Synapse's paths, `POST /_myelin/admin/v1/backup` has the running
//! server write a backup ([`crate::backup`]) under `[server] backup_dir`,
//! which `myelin backup create --server` calls (`docs/backup.md`).

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::Auth;
use super::game::{GameJson, GameQuery, PathParam};
use super::{ApiError, AppState};
use crate::service::admin::{
    self, DeleteRoom, NewToken, PutOutcome, PutUser, RoomsQuery, UpdateToken, UsersQuery,
};

/// An authenticated admin.
pub struct AdminAuth;

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Auth(authed) = Auth::from_request_parts(parts, state).await?;
        admin::require_admin(&state.accounts, &authed).await?;
        Ok(AdminAuth)
    }
}

type Answer = Result<Json<Value>, ApiError>;

/// Registers every admin route.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/_synapse/admin/v1/server_version", get(server_version))
        .route("/_synapse/admin/v2/users", get(list_users))
        .route(
            "/_synapse/admin/v2/users/{user_id}",
            get(user).put(put_user),
        )
        .route("/_synapse/admin/v1/deactivate/{user_id}", post(deactivate))
        .route(
            "/_synapse/admin/v1/reset_password/{user_id}",
            post(reset_password),
        )
        .route("/_synapse/admin/v1/whois/{user_id}", get(whois))
        .route(
            "/_synapse/admin/v1/registration_tokens",
            get(registration_tokens),
        )
        .route(
            "/_synapse/admin/v1/registration_tokens/new",
            post(create_registration_token),
        )
        .route(
            "/_synapse/admin/v1/registration_tokens/{token}",
            get(registration_token)
                .put(update_registration_token)
                .delete(delete_registration_token),
        )
        .route("/_synapse/admin/v1/rooms", get(list_rooms))
        .route("/_synapse/admin/v1/rooms/{room_id}", get(room))
        .route(
            "/_synapse/admin/v1/rooms/{room_id}/members",
            get(room_members),
        )
        .route("/_synapse/admin/v1/rooms/{room_id}/state", get(room_state))
        .route("/_synapse/admin/v2/rooms/{room_id}", delete(delete_room))
        .route(
            "/_synapse/admin/v2/rooms/{room_id}/delete_status",
            get(room_delete_status),
        )
        .route(
            "/_synapse/admin/v2/rooms/delete_status/{delete_id}",
            get(delete_status),
        )
        .route("/_myelin/admin/v1/backup", post(create_backup))
}

fn to_json(value: impl serde::Serialize) -> Answer {
    serde_json::to_value(value)
        .map(Json)
        .map_err(|_| ApiError::Internal)
}

/// `GET /_synapse/admin/v1/server_version` (no authentication, as Synapse).
async fn server_version() -> Answer {
    to_json(admin::server_version())
}

/// `GET /_synapse/admin/v2/users?from&limit&name&user_id&deactivated`.
async fn list_users(
    State(s): State<AppState>,
    _: AdminAuth,
    GameQuery(q): GameQuery<UsersQuery>,
) -> Answer {
    to_json(admin::list_users(&s.accounts, &q).await?)
}

/// `GET /_synapse/admin/v2/users/{user_id}`.
async fn user(State(s): State<AppState>, _: AdminAuth, PathParam(id): PathParam) -> Answer {
    to_json(admin::user(&s.accounts, &id).await?)
}

/// `PUT /_synapse/admin/v2/users/{user_id}`: 201 when created, else 200.
async fn put_user(
    State(s): State<AppState>,
    _: AdminAuth,
    PathParam(id): PathParam,
    GameJson(body): GameJson<PutUser>,
) -> Result<impl IntoResponse, ApiError> {
    let (outcome, details) = admin::put_user(&s.accounts, &id, body).await?;
    let status = match outcome {
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Updated => StatusCode::OK,
    };
    Ok((status, to_json(details)?))
}

/// `POST /_synapse/admin/v1/deactivate/{user_id}`. The body (Synapse's
/// `{"erase": bool}`, or none) is not read: Myelin does not erase
/// (`docs/admin-api.md`).
async fn deactivate(State(s): State<AppState>, _: AdminAuth, PathParam(id): PathParam) -> Answer {
    admin::deactivate(&s.accounts, &id).await?;
    Ok(Json(json!({ "id_server_unbind_result": "success" })))
}

/// The body of `POST /_synapse/admin/v1/reset_password/{user_id}`.
#[derive(Deserialize)]
struct ResetBody {
    new_password: String,
    #[serde(default = "yes")]
    logout_devices: bool,
}

fn yes() -> bool {
    true
}

/// `POST /_synapse/admin/v1/reset_password/{user_id}`.
async fn reset_password(
    State(s): State<AppState>,
    _: AdminAuth,
    PathParam(id): PathParam,
    GameJson(body): GameJson<ResetBody>,
) -> Answer {
    admin::reset_password(&s.accounts, &id, body.new_password, body.logout_devices).await?;
    Ok(Json(json!({})))
}

/// `GET /_synapse/admin/v1/whois/{user_id}`.
async fn whois(State(s): State<AppState>, _: AdminAuth, PathParam(id): PathParam) -> Answer {
    to_json(admin::whois(&s.accounts, &id).await?)
}

/// `GET /_synapse/admin/v1/rooms?from&limit&order_by&dir&search_term`.
async fn list_rooms(
    State(s): State<AppState>,
    _: AdminAuth,
    GameQuery(q): GameQuery<RoomsQuery>,
) -> Answer {
    to_json(admin::list_rooms(&s.rooms, &q).await?)
}

/// `GET /_synapse/admin/v1/rooms/{room_id}`.
async fn room(State(s): State<AppState>, _: AdminAuth, PathParam(id): PathParam) -> Answer {
    to_json(admin::room(&s.rooms, &id).await?)
}

/// `GET /_synapse/admin/v1/rooms/{room_id}/members`.
async fn room_members(State(s): State<AppState>, _: AdminAuth, PathParam(id): PathParam) -> Answer {
    Ok(Json(admin::room_members(&s.rooms, &id).await?))
}

/// `GET /_synapse/admin/v1/rooms/{room_id}/state`.
async fn room_state(State(s): State<AppState>, _: AdminAuth, PathParam(id): PathParam) -> Answer {
    Ok(Json(admin::room_state(&s.rooms, &id).await?))
}

/// `DELETE /_synapse/admin/v2/rooms/{room_id}`: `{"delete_id": "..."}`.
async fn delete_room(
    State(s): State<AppState>,
    _: AdminAuth,
    PathParam(id): PathParam,
    GameJson(body): GameJson<DeleteRoom>,
) -> Answer {
    let delete_id = admin::delete_room(&s.accounts, &s.rooms, &id, body).await?;
    Ok(Json(json!({ "delete_id": delete_id })))
}

/// `GET /_synapse/admin/v2/rooms/{room_id}/delete_status`.
async fn room_delete_status(
    State(s): State<AppState>,
    _: AdminAuth,
    PathParam(id): PathParam,
) -> Answer {
    Ok(Json(admin::room_delete_status(&s.rooms, &id).await?))
}

/// `GET /_synapse/admin/v2/rooms/delete_status/{delete_id}`.
async fn delete_status(
    State(s): State<AppState>,
    _: AdminAuth,
    PathParam(id): PathParam,
) -> Answer {
    Ok(Json(admin::delete_status(&s.rooms, &id).await?))
}

/// `?valid=` of the token list.
#[derive(Deserialize)]
struct ValidQuery {
    valid: Option<String>,
}

/// `GET /_synapse/admin/v1/registration_tokens`.
async fn registration_tokens(
    State(s): State<AppState>,
    _: AdminAuth,
    GameQuery(q): GameQuery<ValidQuery>,
) -> Answer {
    let tokens = admin::registration_tokens(&s.accounts, q.valid.as_deref()).await?;
    Ok(Json(json!({ "registration_tokens": tokens })))
}

/// `POST /_synapse/admin/v1/registration_tokens/new`.
async fn create_registration_token(
    State(s): State<AppState>,
    _: AdminAuth,
    GameJson(body): GameJson<NewToken>,
) -> Answer {
    to_json(admin::create_registration_token(&s.accounts, body).await?)
}

/// `GET /_synapse/admin/v1/registration_tokens/{token}`.
async fn registration_token(
    State(s): State<AppState>,
    _: AdminAuth,
    PathParam(token): PathParam,
) -> Answer {
    to_json(admin::registration_token(&s.accounts, &token).await?)
}

/// `PUT /_synapse/admin/v1/registration_tokens/{token}`.
async fn update_registration_token(
    State(s): State<AppState>,
    _: AdminAuth,
    PathParam(token): PathParam,
    GameJson(body): GameJson<UpdateToken>,
) -> Answer {
    to_json(admin::update_registration_token(&s.accounts, &token, body).await?)
}

/// `DELETE /_synapse/admin/v1/registration_tokens/{token}`.
async fn delete_registration_token(
    State(s): State<AppState>,
    _: AdminAuth,
    PathParam(token): PathParam,
) -> Answer {
    admin::delete_registration_token(&s.accounts, &token).await?;
    Ok(Json(json!({})))
}

/// The body of `POST /_myelin/admin/v1/backup`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupBody {
    /// The backup's directory name under `[server] backup_dir`.
    name: String,
}

/// `POST /_myelin/admin/v1/backup`: writes a backup of every database
/// under `[server] backup_dir` while the server keeps serving
/// (`docs/backup.md`). 403 `M_FORBIDDEN` without a configured directory;
/// 400 `M_INVALID_PARAM` for a name that is not one path component of
/// `A-Z a-z 0-9 . _ -` (not starting with `.`) or names an existing,
/// non-empty directory.
async fn create_backup(
    State(s): State<AppState>,
    _: AdminAuth,
    GameJson(body): GameJson<BackupBody>,
) -> Answer {
    let Some(root) = s.accounts.config().backup_dir.clone() else {
        return Err(crate::service::Error::Forbidden(
            "no backup directory is configured ([server] backup_dir)".into(),
        )
        .into());
    };
    let name = &body.name;
    let valid = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        return Err(ApiError::InvalidParam(
            "name must be one path component of A-Z a-z 0-9 . _ - (not starting with .)".into(),
        ));
    }
    let dir = root.join(name);
    let stores = crate::backup::stores_of(&s.databases);
    match crate::backup::create(&stores, &dir).await {
        Ok((manifest, summary)) => Ok(Json(json!({
            "name": name,
            "read_versions": manifest.stores.iter().map(|s| s.read_version).collect::<Vec<_>>(),
            "pairs": summary.pairs,
            "bytes": summary.bytes,
            "chunks": summary.chunks,
        }))),
        Err(crate::backup::BackupError::DirectoryNotEmpty(_)) => Err(ApiError::InvalidParam(
            format!("backup {name} exists already"),
        )),
        Err(crate::backup::BackupError::Fdb { database }) => Err(crate::service::Error::Forbidden(
            format!("databases.{database} is on FoundationDB: use fdbbackup"),
        )
        .into()),
        Err(e) => {
            tracing::error!(error = %e, "backup failed");
            Err(ApiError::Internal)
        }
    }
}
