//! End-to-end encryption key endpoints (spec: "Key management API",
//! "Cross-signing").

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use ruma::api::client::keys::{
    claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures, upload_signing_keys,
};
use ruma::serde::Raw;
use ruma::{OwnedDeviceId, OwnedOneTimeKeyId, OwnedUserId, UInt};

use super::extract::{ApiResult, Auth, Ruma, ok};
use super::{ApiError, AppState, route};
use crate::sync::notifier::DatabaseId;

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = route::<upload_keys::v3::Request, _, _>(r, upload);
    let r = route::<get_keys::v3::Request, _, _>(r, query);
    let r = route::<claim_keys::v3::Request, _, _>(r, claim);
    let r = route::<get_key_changes::v3::Request, _, _>(r, changes);
    let r = route::<upload_signing_keys::v3::Request, _, _>(r, device_signing);
    route::<upload_signatures::v3::Request, _, _>(r, signatures)
}

fn raw<T>(v: &serde_json::Value) -> Result<Raw<T>, ApiError> {
    Raw::from_json_string(v.to_string()).map_err(|_| ApiError::Internal)
}

/// `(algorithm, key name, JSON)` of uploaded one-time or fallback keys.
fn key_list<T>(keys: &BTreeMap<OwnedOneTimeKeyId, Raw<T>>) -> Vec<(String, String, String)> {
    keys.iter()
        .map(|(id, k)| {
            (
                id.algorithm().to_string(),
                id.key_name().to_string(),
                k.json().get().to_owned(),
            )
        })
        .collect()
}

/// `POST /_matrix/client/v3/keys/upload`.
async fn upload(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<upload_keys::v3::Request>,
) -> ApiResult<upload_keys::v3::Response> {
    let counts = state
        .e2ee
        .upload_keys(
            &authed,
            req.device_keys.as_ref().map(|d| d.json().get()),
            &key_list(&req.one_time_keys),
            &key_list(&req.fallback_keys),
        )
        .await?;
    let counts = counts
        .into_iter()
        .map(|(alg, n)| (alg.as_str().into(), UInt::new_saturating(n)))
        .collect();
    ok(upload_keys::v3::Response::new(counts))
}

/// `POST /_matrix/client/v3/keys/query`.
async fn query(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_keys::v3::Request>,
) -> ApiResult<get_keys::v3::Response> {
    let server = state.accounts.server_name().to_owned();
    let (local, remote): (BTreeMap<_, _>, BTreeMap<_, _>) = req
        .device_keys
        .into_iter()
        .partition(|(u, _)| u.server_name() == server);
    let found = state.e2ee.query_keys(&authed, &local).await?;
    let mut resp = get_keys::v3::Response::new();
    for (user, devices) in found.device_keys {
        let mut per = BTreeMap::new();
        for (d, json) in devices {
            per.insert(d, raw(&json)?);
        }
        resp.device_keys.insert(user, per);
    }
    for (user, k) in found.master_keys {
        resp.master_keys.insert(user, raw(&k)?);
    }
    for (user, k) in found.self_signing_keys {
        resp.self_signing_keys.insert(user, raw(&k)?);
    }
    for (user, k) in found.user_signing_keys {
        resp.user_signing_keys.insert(user, raw(&k)?);
    }
    for user in remote.keys() {
        resp.failures.insert(
            user.server_name().to_string(),
            serde_json::json!({"error": "federation is not supported"}),
        );
    }
    ok(resp)
}

/// `POST /_matrix/client/v3/keys/claim`.
async fn claim(
    State(state): State<AppState>,
    Auth(_authed): Auth,
    Ruma(req): Ruma<claim_keys::v3::Request>,
) -> ApiResult<claim_keys::v3::Response> {
    let wanted: Vec<(String, String, String)> = req
        .one_time_keys
        .iter()
        .flat_map(|(u, ds)| {
            ds.iter()
                .map(move |(d, alg)| (u.to_string(), d.to_string(), alg.to_string()))
        })
        .collect();
    let claimed = state.e2ee.claim_keys(&wanted).await?;
    let mut out: BTreeMap<OwnedUserId, claim_keys::v3::OneTimeKeys> = BTreeMap::new();
    for (user, devices) in claimed {
        let user = OwnedUserId::try_from(user).map_err(|_| ApiError::Internal)?;
        let per = out.entry(user).or_default();
        for (device, keys) in devices {
            let mut ks = BTreeMap::new();
            for (id, json) in keys {
                let id = OwnedOneTimeKeyId::try_from(id).map_err(|_| ApiError::Internal)?;
                let key = Raw::from_json_string(json).map_err(|_| ApiError::Internal)?;
                ks.insert(id, key);
            }
            per.insert(OwnedDeviceId::from(device), ks);
        }
    }
    ok(claim_keys::v3::Response::new(out))
}

/// `GET /_matrix/client/v3/keys/changes?from=&to=`: both are sync tokens.
async fn changes(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<get_key_changes::v3::Request>,
) -> ApiResult<get_key_changes::v3::Response> {
    let parse = |t: &str| {
        t.parse::<crate::sync::SyncToken>()
            .map(|t| t.transitory)
            .map_err(|e| ApiError::InvalidParam(format!("not a sync token: {e}")))
    };
    let (from, to) = (parse(&req.from)?, parse(&req.to)?);
    let changed = state
        .e2ee
        .device_list_changes(&authed.user_id, Some(from), Some(to))
        .await?;
    ok(get_key_changes::v3::Response::new(changed, Vec::new()))
}

/// `POST /_matrix/client/v3/keys/device_signing/upload` (UIA when replacing
/// a master key).
async fn device_signing(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<upload_signing_keys::v3::Request>,
) -> ApiResult<upload_signing_keys::v3::Response> {
    let mut keys = Vec::new();
    for (usage, key) in [
        ("master", &req.master_key),
        ("self_signing", &req.self_signing_key),
        ("user_signing", &req.user_signing_key),
    ] {
        if let Some(k) = key {
            keys.push((usage.to_owned(), k.json().get().to_owned()));
        }
    }
    if keys.is_empty() {
        return Err(ApiError::Service(crate::service::Error::MissingParam(
            "no cross-signing key given".into(),
        )));
    }
    let changed_at = state
        .e2ee
        .upload_signing_keys(&authed, req.auth.as_ref(), &keys)
        .await?;
    wake_before_answering(&state, changed_at).await;
    ok(upload_signing_keys::v3::Response::new())
}

/// `POST /_matrix/client/v3/keys/signatures/upload`.
async fn signatures(
    State(state): State<AppState>,
    Auth(authed): Auth,
    Ruma(req): Ruma<upload_signatures::v3::Request>,
) -> ApiResult<upload_signatures::v3::Response> {
    let mut signed = Vec::new();
    for (user, keys) in &req.signed_keys {
        for (key_id, object) in keys.iter() {
            let value: serde_json::Value =
                serde_json::from_str(object.get()).map_err(|e| ApiError::BadJson(e.to_string()))?;
            signed.push((user.clone(), key_id.to_owned(), value));
        }
    }
    let uploaded = state.e2ee.upload_signatures(&authed, &signed).await?;
    if let Some(changed_at) = uploaded.changed_at {
        wake_before_answering(&state, changed_at).await;
    }
    if let Some(ticket) = uploaded.own_ticket
        && !state
            .e2ee
            .wait_for_own_keys_read(&authed, ticket, OWN_KEYS_READ_WAIT)
            .await
    {
        tracing::debug!("the uploader did not re-read its own keys within 2 s; answering anyway");
    }
    let failures = uploaded.failures;
    let mut resp = upload_signatures::v3::Response::new();
    for (user, per) in failures {
        let mut map = BTreeMap::new();
        for (key_id, reason) in per {
            let failure = serde_json::from_value(serde_json::json!({
                "errcode": "M_INVALID_SIGNATURE",
                "error": reason,
            }))
            .map_err(|_| ApiError::Internal)?;
            map.insert(key_id, failure);
        }
        resp.failures.insert(user, map);
    }
    ok(resp)
}

/// How long a signature upload on the uploader's own keys waits for the
/// uploader's client to re-read them (`E2ee::wait_for_own_keys_read`): its
/// sync answers with the change within milliseconds, and its `/keys/query`
/// follows.
const OWN_KEYS_READ_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long an upload waits for this process's sync notifier to publish
/// its device-list change ([`wake_before_answering`]); the notifier
/// publishes within milliseconds unless it is backing off after a storage
/// error.
const WAKE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Waits (at most [`WAKE_WAIT`]) until this process's sync notifier has
/// published the device-list change at `changed_at`, so the uploader's
/// long-poll is woken with it before the upload is answered, as Synapse
/// wakes its syncs within the request. matrix-js-sdk's Rust crypto learns
/// of its own new cross-signing signatures only from a `/keys/query` that
/// the sync's `device_lists.changed` triggers, and reads the device's trust
/// right after `bootstrapCrossSigning` returns: answered first, it saw its
/// own device as not cross-signed in most runs (issue 22). Long-polls in
/// other processes are woken by their own notifier as usual.
async fn wake_before_answering(state: &AppState, changed_at: crate::db::transitory::Position) {
    let published = state
        .sync
        .notifier()
        .wait_published(DatabaseId::Transitory, changed_at.version());
    if tokio::time::timeout(WAKE_WAIT, published).await.is_err() {
        tracing::warn!("the device-list change was not published within 1 s; answering anyway");
    }
}
