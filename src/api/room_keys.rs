//! Server-side key backup (spec: "Server-side key backups").
//!
//! Failures are the usual [`ApiError`]s, among them 403
//! `M_WRONG_ROOM_KEYS_VERSION` (with `current_version`) when keys are
//! written to a version that is not the current one (mapped in
//! `api/error.rs`, like every other).

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use ruma::api::client::backup::{
    RoomKeyBackup, add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session,
    create_backup_version, delete_backup_keys, delete_backup_keys_for_room,
    delete_backup_keys_for_session, delete_backup_version, get_backup_info, get_backup_keys,
    get_backup_keys_for_room, get_backup_keys_for_session, get_latest_backup_info,
    update_backup_version,
};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, UInt};
use serde_json::{Value, json};

use super::extract::{Auth, Ruma, RumaResponse};
use super::{ApiError, AppState, route};

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<create_backup_version::v3::Request, _, _>(r, create);
    let r = route::<get_latest_backup_info::v3::Request, _, _>(r, latest);
    let r = route::<get_backup_info::v3::Request, _, _>(r, info);
    let r = route::<update_backup_version::v3::Request, _, _>(r, update);
    let r = route::<delete_backup_version::v3::Request, _, _>(r, delete);
    let r = route::<add_backup_keys::v3::Request, _, _>(r, put_all);
    let r = route::<add_backup_keys_for_room::v3::Request, _, _>(r, put_room);
    let r = route::<add_backup_keys_for_session::v3::Request, _, _>(r, put_session);
    let r = route::<get_backup_keys::v3::Request, _, _>(r, get_all);
    let r = route::<get_backup_keys_for_room::v3::Request, _, _>(r, get_room);
    let r = route::<get_backup_keys_for_session::v3::Request, _, _>(r, get_session);
    let r = route::<delete_backup_keys::v3::Request, _, _>(r, del_all);
    let r = route::<delete_backup_keys_for_room::v3::Request, _, _>(r, del_room);
    route::<delete_backup_keys_for_session::v3::Request, _, _>(r, del_session)
}

type Res<T> = Result<RumaResponse<T>, ApiError>;

fn bad(e: impl std::fmt::Display) -> ApiError {
    crate::service::Error::BadJson(e.to_string()).into()
}

/// `(algorithm, auth_data JSON)` of a `BackupAlgorithm` body.
fn algorithm<T>(raw: &Raw<T>) -> Result<(String, Value), ApiError> {
    let v: Value = serde_json::from_str(raw.json().get()).map_err(bad)?;
    let alg = v
        .get("algorithm")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("missing algorithm"))?;
    let auth = v
        .get("auth_data")
        .filter(|a| a.is_object())
        .ok_or_else(|| bad("auth_data must be an object"))?;
    Ok((alg.to_owned(), auth.clone()))
}

fn raw_of<T>(v: Value) -> Result<Raw<T>, ApiError> {
    Raw::from_json_string(v.to_string()).map_err(bad)
}

fn keys_of<T>(
    room: &str,
    sessions: &BTreeMap<String, Raw<T>>,
) -> Result<Vec<(String, String, Value)>, ApiError> {
    sessions
        .iter()
        .map(|(s, k)| {
            let v: Value = serde_json::from_str(k.json().get()).map_err(bad)?;
            Ok((room.to_owned(), s.clone(), v))
        })
        .collect()
}

fn count(n: u64) -> UInt {
    UInt::new_saturating(n)
}

async fn create(
    State(s): State<AppState>,
    Auth(a): Auth,
    Ruma(req): Ruma<create_backup_version::v3::Request>,
) -> Res<create_backup_version::v3::Response> {
    let (alg, auth) = algorithm(&req.algorithm)?;
    let v = s.e2ee.create_backup(&a, &alg, &auth).await?;
    Ok(RumaResponse(create_backup_version::v3::Response::new(v)))
}

async fn version_info(
    s: &AppState,
    a: &crate::service::Authed,
    version: Option<&str>,
) -> Result<(Value, UInt, String, String), ApiError> {
    let (v, rec) = s.e2ee.backup(a, version).await?;
    let alg = json!({"algorithm": rec.algorithm, "auth_data": rec.auth_data});
    Ok((alg, count(rec.count), rec.etag.to_string(), v))
}

async fn latest(
    State(s): State<AppState>,
    Auth(a): Auth,
    _: Ruma<get_latest_backup_info::v3::Request>,
) -> Res<get_latest_backup_info::v3::Response> {
    let (alg, n, etag, v) = version_info(&s, &a, None).await?;
    Ok(RumaResponse(get_latest_backup_info::v3::Response::new(
        raw_of(alg)?,
        n,
        etag,
        v,
    )))
}

async fn info(
    State(s): State<AppState>,
    Auth(a): Auth,
    Ruma(req): Ruma<get_backup_info::v3::Request>,
) -> Res<get_backup_info::v3::Response> {
    let (alg, n, etag, v) = version_info(&s, &a, Some(&req.version)).await?;
    Ok(RumaResponse(get_backup_info::v3::Response::new(
        raw_of(alg)?,
        n,
        etag,
        v,
    )))
}

async fn update(
    State(s): State<AppState>,
    Auth(a): Auth,
    Ruma(req): Ruma<update_backup_version::v3::Request>,
) -> Res<update_backup_version::v3::Response> {
    let (alg, auth) = algorithm(&req.algorithm)?;
    s.e2ee.update_backup(&a, &req.version, &alg, &auth).await?;
    Ok(RumaResponse(update_backup_version::v3::Response::new()))
}

async fn delete(
    State(s): State<AppState>,
    Auth(a): Auth,
    Ruma(req): Ruma<delete_backup_version::v3::Request>,
) -> Res<delete_backup_version::v3::Response> {
    s.e2ee.delete_backup(&a, &req.version).await?;
    Ok(RumaResponse(delete_backup_version::v3::Response::new()))
}

async fn put_all(
    State(s): State<AppState>,
    Auth(a): Auth,
    Ruma(req): Ruma<add_backup_keys::v3::Request>,
) -> Res<add_backup_keys::v3::Response> {
    let mut keys = Vec::new();
    for (room, backup) in &req.rooms {
        keys.extend(keys_of(room.as_str(), &backup.sessions)?);
    }
    let (n, etag) = s.e2ee.put_backup_keys(&a, &req.version, &keys).await?;
    Ok(RumaResponse(add_backup_keys::v3::Response::new(
        etag,
        count(n),
    )))
}

async fn put_room(
    State(s): State<AppState>,
    Auth(a): Auth,
    Ruma(req): Ruma<add_backup_keys_for_room::v3::Request>,
) -> Res<add_backup_keys_for_room::v3::Response> {
    let keys = keys_of(req.room_id.as_str(), &req.sessions)?;
    let (n, etag) = s.e2ee.put_backup_keys(&a, &req.version, &keys).await?;
    Ok(RumaResponse(add_backup_keys_for_room::v3::Response::new(
        etag,
        count(n),
    )))
}

async fn put_session(
    State(s): State<AppState>,
    Auth(a): Auth,
    Ruma(req): Ruma<add_backup_keys_for_session::v3::Request>,
) -> Res<add_backup_keys_for_session::v3::Response> {
    let v: Value = serde_json::from_str(req.session_data.json().get()).map_err(bad)?;
    let keys = [(req.room_id.to_string(), req.session_id.clone(), v)];
    let (n, etag) = s.e2ee.put_backup_keys(&a, &req.version, &keys).await?;
    Ok(RumaResponse(
        add_backup_keys_for_session::v3::Response::new(etag, count(n)),
    ))
}

async fn get_all(
    State(s): State<AppState>,
    Auth(a): Auth,
    Ruma(req): Ruma<get_backup_keys::v3::Request>,
) -> Res<get_backup_keys::v3::Response> {
    let keys = s.e2ee.backup_keys(&a, &req.version, None, None).await?;
    let mut rooms: BTreeMap<OwnedRoomId, BTreeMap<String, _>> = BTreeMap::new();
    for k in keys {
        let room = OwnedRoomId::try_from(k.room_id).map_err(bad)?;
        rooms
            .entry(room)
            .or_default()
            .insert(k.session_id, raw_of(k.data)?);
    }
    let rooms = rooms
        .into_iter()
        .map(|(r, s)| (r, RoomKeyBackup::new(s)))
        .collect();
    Ok(RumaResponse(get_backup_keys::v3::Response::new(rooms)))
}

async fn get_room(
    State(s): State<AppState>,
    Auth(a): Auth,
    Ruma(req): Ruma<get_backup_keys_for_room::v3::Request>,
) -> Res<get_backup_keys_for_room::v3::Response> {
    let keys = s
        .e2ee
        .backup_keys(&a, &req.version, Some(req.room_id.as_str()), None)
        .await?;
    let mut sessions = BTreeMap::new();
    for k in keys {
        sessions.insert(k.session_id, raw_of(k.data)?);
    }
    Ok(RumaResponse(get_backup_keys_for_room::v3::Response::new(
        sessions,
    )))
}

async fn get_session(
    State(s): State<AppState>,
    Auth(a): Auth,
    Ruma(req): Ruma<get_backup_keys_for_session::v3::Request>,
) -> Res<get_backup_keys_for_session::v3::Response> {
    let keys = s
        .e2ee
        .backup_keys(
            &a,
            &req.version,
            Some(req.room_id.as_str()),
            Some(&req.session_id),
        )
        .await?;
    let key = keys.into_iter().next().ok_or_else(|| {
        ApiError::from(crate::service::Error::NotFound(
            "no such session in the backup".into(),
        ))
    })?;
    Ok(RumaResponse(
        get_backup_keys_for_session::v3::Response::new(raw_of(key.data)?),
    ))
}

async fn del_all(
    State(s): State<AppState>,
    Auth(a): Auth,
    Ruma(req): Ruma<delete_backup_keys::v3::Request>,
) -> Res<delete_backup_keys::v3::Response> {
    let (n, etag) = s
        .e2ee
        .delete_backup_keys(&a, &req.version, None, None)
        .await?;
    Ok(RumaResponse(delete_backup_keys::v3::Response::new(
        etag,
        count(n),
    )))
}

async fn del_room(
    State(s): State<AppState>,
    Auth(a): Auth,
    Ruma(req): Ruma<delete_backup_keys_for_room::v3::Request>,
) -> Res<delete_backup_keys_for_room::v3::Response> {
    let (n, etag) = s
        .e2ee
        .delete_backup_keys(&a, &req.version, Some(req.room_id.as_str()), None)
        .await?;
    Ok(RumaResponse(
        delete_backup_keys_for_room::v3::Response::new(etag, count(n)),
    ))
}

async fn del_session(
    State(s): State<AppState>,
    Auth(a): Auth,
    Ruma(req): Ruma<delete_backup_keys_for_session::v3::Request>,
) -> Res<delete_backup_keys_for_session::v3::Response> {
    let (n, etag) = s
        .e2ee
        .delete_backup_keys(
            &a,
            &req.version,
            Some(req.room_id.as_str()),
            Some(&req.session_id),
        )
        .await?;
    Ok(RumaResponse(
        delete_backup_keys_for_session::v3::Response::new(etag, count(n)),
    ))
}
