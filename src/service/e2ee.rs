//! The end-to-end encryption service: device keys, one-time and fallback
//! keys, cross-signing keys and signatures, device-list changes and
//! server-side key backup (spec: "End-to-End Encryption", "Server-side key
//! backups").
//!
//! Long-lived key material is stored in the `accounts` database
//! ([`crate::db::accounts::e2ee`]); each change of a user's device keys or
//! cross-signing keys is then recorded in the `transitory` database's
//! device-list log, which `/keys/changes` and sync read. The two writes are
//! separate transactions (the databases may live on different clusters):
//! the key write commits first, so a crash in between loses only the
//! change record, never keys; the client's next upload records it again.
//!
//! Device lifecycle ([`DeviceLifecycle`]): the accounts service deletes a
//! device together with its E2EE keys in one `accounts` transaction; then, in
//! one transaction on the `transitory` database, it deletes the devices'
//! to-device inboxes and records a device-list change for their owner. A new
//! device (login, registration) records a change the same way. The second
//! step is idempotent (clearing an empty inbox and recording a change again
//! are harmless), so a failed step can simply be retried. So that a crash
//! (or a failure) between the two steps orphans nothing, the `accounts`
//! transaction also writes a "cleanup owed" mark per deleted device
//! (`sessions/cleanup_owed`); the second step clears the marks once it has
//! committed, and [`DeviceLifecycle::finish_owed_cleanups`], run at every
//! start-up, does the second step for every mark left behind.
//! `DeviceLifecycle` holds only the `transitory` handle and the `accounts`
//! storage handle, so [`Accounts`] can own it without a construction cycle
//! (this service holds [`Accounts`]).
//!
//! Own-keys reads (per process, in memory): each device's `/keys/query`
//! naming its own user is noted with a ticket, so a signature upload on the
//! uploader's own keys can be answered after that device re-read them
//! ([`E2ee::wait_for_own_keys_read`]; why: docs/transitory.md). At most
//! 100,000 devices are remembered; past that the record starts afresh.
//!
//! Who may import this: `api`, `sync`, `app`, `service::accounts` (for
//! [`DeviceLifecycle`]), the CLI and tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ruma::api::client::uiaa::AuthData;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedDeviceId, OwnedUserId, UserId};
use serde_json::Value;

use super::uia::Purpose;
use super::{Accounts, Authed, Error, Result};
use crate::db::accounts::AccountsDb;
use crate::db::accounts::e2ee::{
    BackupRefused, BackupVersionRecord, ClaimId, E2eeDb, RoomKey, UploadRefused,
};
use crate::db::rooms::RoomsDb;
use crate::db::transitory::{Position, TransitoryDb};

/// The E2EE service. Shared by every request (`Arc`).
pub struct E2ee {
    db: E2eeDb,
    transitory: TransitoryDb,
    rooms: RoomsDb,
    accounts: Arc<Accounts>,
    own_queries: OwnKeyQueries,
}

/// The entries [`OwnKeyQueries`] keeps before it forgets them all (a
/// forgotten device's next upload is answered without waiting).
const OWN_QUERY_DEVICES: usize = 100_000;

/// Per process: which devices re-read their own user's keys with
/// `/keys/query`, and the newest such read each has had answered, so a
/// signature upload can be answered after the uploader's client has
/// fetched the signature (see [`E2ee::wait_for_own_keys_read`]).
///
/// Reads and uploads are ordered by tickets from one counter: a read takes
/// its ticket before it reads storage, an upload after its write
/// committed, so a read with a later ticket saw the upload.
#[derive(Default)]
struct OwnKeyQueries {
    next_ticket: AtomicU64,
    /// (user, device) -> the largest ticket of an answered own-keys read.
    answered: Mutex<HashMap<(OwnedUserId, OwnedDeviceId), watch::Sender<u64>>>,
}

impl OwnKeyQueries {
    fn ticket(&self) -> u64 {
        self.next_ticket.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn answered(&self, authed: &Authed, ticket: u64) {
        let mut map = self.answered.lock().expect("own key queries");
        if map.len() >= OWN_QUERY_DEVICES {
            map.clear();
        }
        map.entry((authed.user_id.clone(), authed.device_id.clone()))
            .or_insert_with(|| watch::channel(0).0)
            .send_modify(|t| *t = (*t).max(ticket));
    }

    fn watch(&self, authed: &Authed) -> Option<watch::Receiver<u64>> {
        let map = self.answered.lock().expect("own key queries");
        map.get(&(authed.user_id.clone(), authed.device_id.clone()))
            .map(watch::Sender::subscribe)
    }
}

/// What `/keys/query` finds for the local users asked about.
#[derive(Debug, Default)]
pub struct QueryResult {
    /// user -> device -> device keys (JSON).
    pub device_keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Value>>,
    /// user -> master key.
    pub master_keys: BTreeMap<OwnedUserId, Value>,
    /// user -> self-signing key.
    pub self_signing_keys: BTreeMap<OwnedUserId, Value>,
    /// The caller's own user-signing key.
    pub user_signing_keys: BTreeMap<OwnedUserId, Value>,
}

/// The largest one key object may be, in bytes of JSON: a device's keys, a
/// one-time or fallback key, a cross-signing key, a signed object in a
/// signature upload, a backup's `auth_data` or one backed-up session. Real
/// ones are under 2 KB; 65,536 is the size of a whole federation EDU, which
/// device keys must fit on their way to other servers. Past it: 413
/// M_TOO_LARGE, nothing stored.
pub const MAX_KEY_OBJECT_BYTES: usize = 65_536;

/// The longest key ID part (algorithm or key ID of `algorithm:key_id`, a
/// backed-up room or session ID), in bytes: the spec's bound on identifiers
/// in keys. Past it: 400 M_INVALID_PARAM.
pub const MAX_KEY_ID_BYTES: usize = 255;

/// Refuses a key object over [`MAX_KEY_OBJECT_BYTES`].
fn check_key_object(what: &str, len_bytes: usize) -> Result<()> {
    if len_bytes > MAX_KEY_OBJECT_BYTES {
        return Err(Error::TooLarge(format!(
            "{what} is {len_bytes} bytes, over the limit of {MAX_KEY_OBJECT_BYTES}"
        )));
    }
    Ok(())
}

/// Refuses an identifier over [`MAX_KEY_ID_BYTES`].
fn check_key_id(what: &str, id: &str) -> Result<()> {
    if id.len() > MAX_KEY_ID_BYTES {
        return Err(Error::InvalidParam(format!(
            "{what} is longer than {MAX_KEY_ID_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Checks one uploaded signature `sig` by key `sig_key` (`ed25519:<id>`)
/// over the stored key object `stored` (its canonical JSON without
/// `signatures` and `unsigned`, spec appendix "Signing JSON"), with the
/// signer's key from `signer_keys`. The reason it fails, as the `failures`
/// entry says it.
fn verify_signature(
    stored: &Value,
    signer_keys: &BTreeMap<String, Vec<u8>>,
    sig_key: &str,
    sig: &Value,
) -> std::result::Result<(), &'static str> {
    let public = signer_keys
        .get(sig_key)
        .ok_or("signed with a key the uploader does not have")?;
    let signature = sig
        .as_str()
        .and_then(|s| STANDARD_NO_PAD.decode(s.trim_end_matches('=')).ok())
        .ok_or("signature is not base64")?;
    let object = match ruma::canonical_json::to_canonical_value(stored) {
        Ok(ruma::CanonicalJsonValue::Object(object)) => object,
        _ => return Err("the signed key is not canonical JSON"),
    };
    let canonical = ruma::signatures::to_canonical_json_string_for_signing(&object)
        .map_err(|_| "the signed key is not canonical JSON")?;
    ruma::signatures::verify_canonical_json_bytes(
        &ruma::SigningKeyAlgorithm::Ed25519,
        public,
        &signature,
        canonical.as_bytes(),
    )
    .map_err(|_| "invalid signature")
}

/// `token` escaped for a JSON pointer (RFC 6901: `~` as `~0`, `/` as `~1`).
fn json_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Why a backup request failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Any other failure.
    #[error(transparent)]
    Service(#[from] Error),
    /// The version is not the current one (M_WRONG_ROOM_KEYS_VERSION).
    #[error("backup version is not the current version {current_version}")]
    WrongVersion {
        /// The current version.
        current_version: String,
    },
}

impl From<BackupRefused> for BackupError {
    fn from(r: BackupRefused) -> Self {
        match r {
            BackupRefused::NotFound => Error::NotFound("unknown backup version".into()).into(),
            BackupRefused::WrongVersion { current, .. } => BackupError::WrongVersion {
                current_version: current.to_string(),
            },
            BackupRefused::AlgorithmChanged => {
                Error::InvalidParam("the algorithm of a backup version cannot change".into()).into()
            }
        }
    }
}

impl From<crate::db::accounts::Error> for BackupError {
    fn from(e: crate::db::accounts::Error) -> Self {
        BackupError::Service(e.into())
    }
}

fn parse_version(v: &str) -> Result<u64> {
    v.parse()
        .map_err(|_| Error::NotFound(format!("unknown backup version {v:?}")))
}

/// What [`E2ee::upload_signatures`] did.
#[derive(Debug)]
pub struct SignaturesUploaded {
    /// Why each refused object was refused, by user and key ID.
    pub failures: BTreeMap<OwnedUserId, BTreeMap<String, String>>,
    /// The position of the device-list change recorded for the signed
    /// users, if any signature was new.
    pub changed_at: Option<Position>,
    /// With a new signature on the uploader's own keys: the upload's ticket
    /// for [`E2ee::wait_for_own_keys_read`].
    pub own_ticket: Option<u64>,
}

/// What follows a device's creation or deletion outside the `accounts`
/// database: its to-device inbox and its owner's device-list change record
/// (spec: "Tracking the device list for a user", "Send-to-Device
/// messaging"). Owned by [`Accounts`]; cheap to clone.
#[derive(Clone)]
pub struct DeviceLifecycle {
    transitory: TransitoryDb,
    accounts: AccountsDb,
}

/// At most this many owed cleanups are read per pass of
/// [`DeviceLifecycle::finish_owed_cleanups`].
const OWED_CLEANUPS_PER_PASS: usize = 1000;

impl DeviceLifecycle {
    /// The follow-ups over the `transitory` database of opened databases
    /// (and the `accounts` database, for the owed-cleanup marks).
    pub fn new(databases: &crate::db::Databases) -> Self {
        DeviceLifecycle {
            transitory: TransitoryDb::new(&databases.transitory),
            accounts: AccountsDb::new(&databases.accounts),
        }
    }

    /// Does the cleanup every deleted device still owes (a crash or a
    /// failure came between its `accounts` deletion and the `transitory`
    /// step): the step of [`DeviceLifecycle::devices_deleted`] per user,
    /// then the marks cleared; in passes of at most 1000 marks until none is
    /// left. Returns how many devices it cleaned up. Run at start-up; safe
    /// beside a running server (every step is idempotent).
    ///
    /// Errors: either storage's (the marks that remain are done by the
    /// next run).
    pub async fn finish_owed_cleanups(&self) -> Result<usize> {
        let mut done = 0;
        loop {
            let owed = self.accounts.owed_cleanups(OWED_CLEANUPS_PER_PASS).await?;
            if owed.is_empty() {
                return Ok(done);
            }
            for (user, devices) in owed {
                self.transitory.devices_deleted(&user, &devices).await?;
                self.accounts.cleanups_done(&user, &devices).await?;
                done += devices.len();
            }
        }
    }

    /// After `devices` of `user` were deleted (their keys went with them, in
    /// the `accounts` transaction that already committed): deletes each
    /// device's to-device inbox and records one device-list change for
    /// `user`, which every user sharing a room with them (and they
    /// themselves) then sees in `device_lists.changed`, in one `transitory`
    /// transaction; then clears the devices' owed-cleanup marks (an
    /// `accounts` transaction). Nothing for an empty list. Idempotent: safe
    /// to repeat after a failure, and a failure leaves the marks for
    /// [`DeviceLifecycle::finish_owed_cleanups`]. Once the `transitory`
    /// step committed the cleanup is done: a failure to clear the marks is
    /// only logged (the next start-up repeats the harmless step and clears
    /// them).
    ///
    /// Errors: the `transitory` storage's.
    pub async fn devices_deleted(&self, user: &UserId, devices: &[String]) -> Result<()> {
        if devices.is_empty() {
            return Ok(());
        }
        self.transitory
            .devices_deleted(user.as_str(), devices)
            .await?;
        if let Err(e) = self.accounts.cleanups_done(user.as_str(), devices).await {
            tracing::warn!(%user, error = %e, "cleanup marks left for the next start-up");
        }
        Ok(())
    }

    /// After a device of `user` was created (login, registration): records a
    /// device-list change for `user`. Idempotent.
    ///
    /// Errors: the `transitory` storage's.
    pub async fn device_added(&self, user: &UserId) -> Result<()> {
        self.transitory
            .mark_device_lists_changed(&[user.as_str()])
            .await?;
        Ok(())
    }
}

impl E2ee {
    /// The service over opened databases; UIA through `accounts`.
    pub fn new(databases: &crate::db::Databases, accounts: Arc<Accounts>) -> Self {
        E2ee {
            db: E2eeDb::new(&databases.accounts),
            transitory: TransitoryDb::new(&databases.transitory),
            rooms: RoomsDb::new(&databases.rooms),
            accounts,
            own_queries: OwnKeyQueries::default(),
        }
    }

    /// The storage handle.
    pub fn db(&self) -> &E2eeDb {
        &self.db
    }

    async fn mark_changed(&self, users: &[&str]) -> Result<Position> {
        Ok(self.transitory.mark_device_lists_changed(users).await?)
    }

    /// `POST /keys/upload`: the device's identity keys (whose `user_id` and
    /// `device_id` must be the caller's), one-time keys and fallback keys
    /// (JSON objects keyed `algorithm:key_id`). Returns the one-time key
    /// counts afterwards.
    ///
    /// Errors: [`Error::InvalidParam`] for keys of another user or device,
    /// malformed keys, or a one-time key ID reused with other content.
    pub async fn upload_keys(
        &self,
        authed: &Authed,
        device_keys: Option<&str>,
        one_time_keys: &[(String, String, String)],
        fallback_keys: &[(String, String, String)],
    ) -> Result<BTreeMap<String, u64>> {
        if let Some(dk) = device_keys {
            check_key_object("device_keys", dk.len())?;
            let v: Value = serde_json::from_str(dk)
                .map_err(|e| Error::BadJson(format!("device_keys: {e}")))?;
            if v.get("user_id").and_then(Value::as_str) != Some(authed.user_id.as_str())
                || v.get("device_id").and_then(Value::as_str) != Some(authed.device_id.as_str())
            {
                return Err(Error::InvalidParam(
                    "device_keys must name the caller's user_id and device_id".into(),
                ));
            }
            if !v.get("keys").is_some_and(Value::is_object)
                || !v.get("algorithms").is_some_and(Value::is_array)
            {
                return Err(Error::BadJson(
                    "device_keys needs keys and algorithms".into(),
                ));
            }
        }
        for (alg, id, json) in one_time_keys.iter().chain(fallback_keys) {
            check_key_id("a key's algorithm", alg)?;
            check_key_id("a key ID", id)?;
            check_key_object(&format!("key {alg}:{id}"), json.len())?;
            let ok =
                serde_json::from_str::<Value>(json).is_ok_and(|v| v.is_object() || v.is_string());
            if !ok || alg.is_empty() || id.is_empty() {
                return Err(Error::BadJson(format!("malformed key {alg}:{id}")));
            }
        }
        let (changed, counts) = self
            .db
            .upload(
                authed.user_id.as_str(),
                authed.device_id.as_str(),
                device_keys,
                one_time_keys,
                fallback_keys,
            )
            .await?
            .map_err(|UploadRefused::OneTimeKeyExists(id)| {
                Error::InvalidParam(format!("one-time key {id} already exists"))
            })?;
        if changed {
            self.mark_changed(&[authed.user_id.as_str()]).await?;
        }
        Ok(counts)
    }

    /// `POST /keys/query` for local users: each user's device keys (all
    /// devices if the list is empty), master and self-signing keys, and the
    /// caller's own user-signing key.
    pub async fn query_keys(
        &self,
        authed: &Authed,
        wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> Result<QueryResult> {
        // Taken before any read (see `OwnKeyQueries`).
        let own = wanted
            .contains_key(&authed.user_id)
            .then(|| self.own_queries.ticket());
        let mut out = QueryResult::default();
        for (user, devices) in wanted {
            let ds: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
            let filter = (!ds.is_empty()).then_some(ds.as_slice());
            let found = self.db.device_keys(user.as_str(), filter).await?;
            let per = out.device_keys.entry(user.clone()).or_default();
            for (d, json) in found {
                per.insert(d.into(), json);
            }
            let mut cross = self.db.cross_signing_keys(user.as_str()).await?;
            if let Some(k) = cross.remove("master") {
                out.master_keys.insert(user.clone(), k);
            }
            if let Some(k) = cross.remove("self_signing") {
                out.self_signing_keys.insert(user.clone(), k);
            }
            if user == &authed.user_id
                && let Some(k) = cross.remove("user_signing")
            {
                out.user_signing_keys.insert(user.clone(), k);
            }
        }
        if let Some(ticket) = own {
            self.own_queries.answered(authed, ticket);
        }
        Ok(out)
    }

    /// After a signature upload by `authed` that signed their own keys
    /// (`SignaturesUploaded::own_ticket`): waits, at most `bound`, until
    /// this device's client has re-read its own user's keys with a
    /// `/keys/query` that saw the upload, and says whether it did.
    /// Returns `true` at once for a device that never queried its own
    /// keys through this process (a client that does not track its device
    /// list would wait in vain).
    ///
    /// Why: matrix-js-sdk's Rust crypto learns of its own device's new
    /// cross-signing signature only from that `/keys/query` (which the
    /// sync's `device_lists.changed` triggers) and reads the device's trust
    /// the moment `bootstrapCrossSigning` returns, that is right after
    /// this upload's answer (issue 22, docs/transitory.md).
    pub async fn wait_for_own_keys_read(
        &self,
        authed: &Authed,
        own_ticket: u64,
        bound: Duration,
    ) -> bool {
        let Some(mut rx) = self.own_queries.watch(authed) else {
            return true;
        };
        tokio::time::timeout(bound, rx.wait_for(|t| *t > own_ticket))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// `POST /keys/claim`: one key per (user, device, algorithm), atomically
    /// (see [`E2eeDb::claim`]). Returns user -> device -> `alg:id` -> key.
    pub async fn claim_keys(
        &self,
        wanted: &[(String, String, String)],
    ) -> Result<BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>> {
        let mut id = [0u8; 16];
        self.accounts.random.fill(&mut id);
        let claim = ClaimId {
            now_ms: self.accounts.clock.now_ms(),
            id,
        };
        let claimed = self.db.claim(claim, wanted).await?;
        let mut out: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>> = BTreeMap::new();
        for (user, device, key) in claimed {
            out.entry(user)
                .or_default()
                .entry(device)
                .or_default()
                .insert(key.key_id, key.key);
        }
        Ok(out)
    }

    /// `GET /keys/changes` and sync's `device_lists.changed`: the users who
    /// share a room with `user` (and `user` itself) whose device lists
    /// changed after `since` and at or before `upto`.
    pub async fn device_list_changes(
        &self,
        user: &UserId,
        since: Option<Position>,
        upto: Option<Position>,
    ) -> Result<Vec<OwnedUserId>> {
        let peers = self.room_peers(user).await?;
        let names: Vec<String> = peers.iter().map(|u| u.to_string()).collect();
        let changed = self
            .transitory
            .device_lists_changed(&names, since, upto)
            .await?;
        Ok(changed
            .into_iter()
            .filter_map(|(u, _)| UserId::parse(u).ok())
            .collect())
    }

    async fn room_peers(&self, user: &UserId) -> Result<Vec<OwnedUserId>> {
        let mut peers = std::collections::BTreeSet::new();
        peers.insert(user.to_owned());
        for (room, m) in self.rooms.rooms_of_user(user).await? {
            if m.membership != MembershipState::Join {
                continue;
            }
            for (member, rec) in self.rooms.members(&room).await? {
                if rec.membership == MembershipState::Join {
                    peers.insert(member);
                }
            }
        }
        Ok(peers.into_iter().collect())
    }

    /// For sync: the device's unclaimed one-time keys per algorithm.
    pub async fn one_time_key_counts(
        &self,
        user: &UserId,
        device: &str,
    ) -> Result<BTreeMap<String, u64>> {
        Ok(self.db.one_time_key_counts(user.as_str(), device).await?)
    }

    /// For sync: the algorithms of the device's unused fallback keys.
    pub async fn unused_fallback_key_types(
        &self,
        user: &UserId,
        device: &str,
    ) -> Result<Vec<String>> {
        Ok(self
            .db
            .unused_fallback_key_types(user.as_str(), device)
            .await?)
    }

    /// `POST /keys/device_signing/upload`: stores the caller's cross-signing
    /// keys (`(usage, JSON)`). UIA (password) is required when it replaces
    /// an existing, different master key (spec v1.11: first upload needs
    /// none).
    ///
    /// Returns the position of the device-list change it records for the
    /// caller (`transitory`), which the caller's own client must see in
    /// its sync before it trusts the new keys.
    ///
    /// Errors: [`Error::AuthRequired`]; [`Error::InvalidParam`] for keys of
    /// another user, of the wrong usage, or without exactly one key.
    pub async fn upload_signing_keys(
        &self,
        authed: &Authed,
        auth: Option<&AuthData>,
        keys: &[(String, String)],
    ) -> Result<Position> {
        for (usage, json) in keys {
            check_key_object(&format!("the {usage} key"), json.len())?;
            let v: Value = serde_json::from_str(json)
                .map_err(|e| Error::BadJson(format!("{usage} key: {e}")))?;
            let usages = v.get("usage").and_then(Value::as_array);
            let ok = v.get("user_id").and_then(Value::as_str) == Some(authed.user_id.as_str())
                && usages.is_some_and(|u| u.iter().any(|x| x.as_str() == Some(usage)))
                && v.get("keys")
                    .and_then(Value::as_object)
                    .is_some_and(|k| k.len() == 1);
            if !ok {
                return Err(Error::InvalidParam(format!(
                    "{usage} key must be the caller's, have usage {usage} and exactly one key"
                )));
            }
        }
        let existing = self.db.cross_signing_keys(authed.user_id.as_str()).await?;
        let replaces_master = existing.get("master").is_some_and(|old| {
            keys.iter().any(|(u, j)| {
                u == "master"
                    && serde_json::from_str::<Value>(j)
                        .ok()
                        .and_then(|v| v.get("keys").cloned())
                        != old.get("keys").cloned()
            })
        });
        let has_master = existing.contains_key("master") || keys.iter().any(|(u, _)| u == "master");
        if !has_master {
            return Err(Error::InvalidParam("a master key is required first".into()));
        }
        if replaces_master {
            self.accounts
                .user_interactive_auth(auth, Purpose::User(&authed.user_id))
                .await?;
        }
        self.db
            .set_cross_signing_keys(authed.user_id.as_str(), keys)
            .await?;
        self.mark_changed(&[authed.user_id.as_str()]).await
    }

    /// `POST /keys/signatures/upload`: stores the caller's signatures on
    /// device keys (key ID = device ID) and cross-signing keys (key ID = the
    /// public key). Each new signature is verified first, over the stored
    /// key object, with the caller's key it names (one of their devices'
    /// or cross-signing keys; spec "Cross-signing"): an object with any
    /// signature that does not verify fails whole. Returns failures per
    /// user and key ID (the others are stored) and, if any signature was
    /// new, the position of the device-list change recorded for the signed
    /// users (their clients, the uploader's own among them, re-query the
    /// keys when their sync shows it).
    pub async fn upload_signatures(
        &self,
        authed: &Authed,
        signed: &[(OwnedUserId, String, Value)],
    ) -> Result<SignaturesUploaded> {
        let mut failures: BTreeMap<OwnedUserId, BTreeMap<String, String>> = BTreeMap::new();
        let mut entries = Vec::new();
        let mut touched = Vec::new();
        for (_, key_id, object) in signed {
            check_key_id("a signed key ID", key_id)?;
            let len = serde_json::to_vec(object).map_or(usize::MAX, |json| json.len());
            check_key_object(&format!("the signed object {key_id}"), len)?;
        }
        let signer_keys = self.signing_keys_of(&authed.user_id).await?;
        for (user, key_id, object) in signed {
            let stored = self.signed_target(user, key_id).await?;
            let uploader = authed.user_id.as_str();
            let sigs = object
                .get("signatures")
                .and_then(|s| s.get(uploader))
                .and_then(Value::as_object);
            // Only signatures the store does not hold yet are new; the
            // object a client uploads carries the old ones too.
            let is_new = |sig_key: &str, sig: &Value| {
                stored.as_ref().is_none_or(|stored| {
                    stored.pointer(&format!(
                        "/signatures/{}/{}",
                        json_pointer(uploader),
                        json_pointer(sig_key)
                    )) != Some(sig)
                })
            };
            let reason = match (&stored, sigs) {
                (None, _) => Some("unknown key"),
                (Some(_), None) => Some("no signature by the uploader"),
                (Some(stored), Some(sigs)) => sigs
                    .iter()
                    .filter(|(sig_key, sig)| is_new(sig_key, sig))
                    .find_map(|(sig_key, sig)| {
                        verify_signature(stored, &signer_keys, sig_key, sig).err()
                    }),
            };
            if let Some(reason) = reason {
                failures
                    .entry(user.clone())
                    .or_default()
                    .insert(key_id.clone(), reason.to_owned());
                continue;
            }
            for (sig_key, sig) in sigs.into_iter().flatten() {
                if is_new(sig_key, sig)
                    && let Some(sig) = sig.as_str()
                {
                    entries.push((
                        user.to_string(),
                        key_id.clone(),
                        authed.user_id.to_string(),
                        sig_key.clone(),
                        sig.to_owned(),
                    ));
                }
            }
            touched.push(user.to_string());
        }
        let (mut changed_at, mut own_ticket) = (None, None);
        if !entries.is_empty() {
            self.db.add_signatures(&entries).await?;
            // After the write committed (see `OwnKeyQueries`).
            if touched.iter().any(|u| *u == authed.user_id.as_str()) {
                own_ticket = Some(self.own_queries.ticket());
            }
            touched.sort();
            touched.dedup();
            let users: Vec<&str> = touched.iter().map(String::as_str).collect();
            changed_at = Some(self.mark_changed(&users).await?);
        }
        Ok(SignaturesUploaded {
            failures,
            changed_at,
            own_ticket,
        })
    }

    /// The ed25519 public keys `user` signs with, by key ID
    /// (`ed25519:<device ID>` for each device, `ed25519:<public key>` for each
    /// cross-signing key), decoded from unpadded base64.
    async fn signing_keys_of(&self, user: &UserId) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut out = BTreeMap::new();
        let devices = self.db.device_keys(user.as_str(), None).await?;
        let cross = self.db.cross_signing_keys(user.as_str()).await?;
        for keys in devices.iter().map(|(_, v)| v).chain(cross.values()) {
            for (id, key) in keys
                .get("keys")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if let (Some(("ed25519", _)), Some(key)) = (id.split_once(':'), key.as_str())
                    && let Ok(bytes) = STANDARD_NO_PAD.decode(key.trim_end_matches('='))
                {
                    out.insert(id.clone(), bytes);
                }
            }
        }
        Ok(out)
    }

    /// The stored key object a signature upload names: `user`'s device
    /// keys for device `key_id`, or the cross-signing key whose public key
    /// is `key_id`.
    async fn signed_target(&self, user: &UserId, key_id: &str) -> Result<Option<Value>> {
        let device = self
            .db
            .device_keys(user.as_str(), Some(&[key_id.to_owned()]))
            .await?;
        if let Some((_, keys)) = device.into_iter().next() {
            return Ok(Some(keys));
        }
        let cross = self.db.cross_signing_keys(user.as_str()).await?;
        Ok(cross.into_values().find(|k| {
            crate::db::accounts::e2ee::public_keys(k)
                .iter()
                .any(|p| p == key_id)
        }))
    }

    // ---- key backup ------------------------------------------------------

    /// `POST /room_keys/version`: returns the new version.
    pub async fn create_backup(
        &self,
        authed: &Authed,
        algorithm: &str,
        auth_data: &serde_json::Value,
    ) -> Result<String> {
        // The stored text (`db::json_text`) is this compact JSON.
        check_key_object("auth_data", auth_data.to_string().len())?;
        let v = self
            .db
            .create_backup(authed.user_id.as_str(), algorithm, auth_data)
            .await?;
        Ok(v.to_string())
    }

    /// `GET /room_keys/version[/{version}]`: the version's record.
    ///
    /// Errors: [`Error::NotFound`].
    pub async fn backup(
        &self,
        authed: &Authed,
        version: Option<&str>,
    ) -> Result<(String, BackupVersionRecord)> {
        let v = version.map(parse_version).transpose()?;
        let (v, record) = self
            .db
            .backup(authed.user_id.as_str(), v)
            .await?
            .ok_or_else(|| Error::NotFound("no backup version".into()))?;
        Ok((v.to_string(), record))
    }

    /// `PUT /room_keys/version/{version}`.
    pub async fn update_backup(
        &self,
        authed: &Authed,
        version: &str,
        algorithm: &str,
        auth_data: &serde_json::Value,
    ) -> Result<(), BackupError> {
        // The stored text (`db::json_text`) is this compact JSON.
        check_key_object("auth_data", auth_data.to_string().len())?;
        let v = parse_version(version)?;
        self.db
            .update_backup(authed.user_id.as_str(), v, algorithm, auth_data)
            .await??;
        Ok(())
    }

    /// `DELETE /room_keys/version/{version}`.
    pub async fn delete_backup(&self, authed: &Authed, version: &str) -> Result<()> {
        let v = parse_version(version)?;
        if !self.db.delete_backup(authed.user_id.as_str(), v).await? {
            return Err(Error::NotFound("unknown backup version".into()));
        }
        Ok(())
    }

    /// `PUT /room_keys/keys[...]`: returns `(count, etag)`.
    pub async fn put_backup_keys(
        &self,
        authed: &Authed,
        version: &str,
        keys: &[(String, String, Value)],
    ) -> Result<(u64, String), BackupError> {
        for (room, session, data) in keys {
            check_key_id("a room ID", room)?;
            check_key_id("a session ID", session)?;
            let len = serde_json::to_vec(data).map_or(usize::MAX, |json| json.len());
            check_key_object(&format!("session {session}"), len)?;
        }
        let v = parse_version(version)?;
        let (count, etag) = self
            .db
            .put_backup_keys(authed.user_id.as_str(), v, keys)
            .await??;
        Ok((count, etag.to_string()))
    }

    /// `GET /room_keys/keys[...]`.
    pub async fn backup_keys(
        &self,
        authed: &Authed,
        version: &str,
        room: Option<&str>,
        session: Option<&str>,
    ) -> Result<Vec<RoomKey>> {
        let v = parse_version(version)?;
        self.db
            .backup_keys(authed.user_id.as_str(), v, room, session)
            .await?
            .ok_or_else(|| Error::NotFound("unknown backup version".into()))
    }

    /// `DELETE /room_keys/keys[...]`: returns `(count, etag)`.
    pub async fn delete_backup_keys(
        &self,
        authed: &Authed,
        version: &str,
        room: Option<&str>,
        session: Option<&str>,
    ) -> Result<(u64, String), BackupError> {
        let v = parse_version(version)?;
        let (count, etag) = self
            .db
            .delete_backup_keys(authed.user_id.as_str(), v, room, session)
            .await??;
        Ok((count, etag.to_string()))
    }
}
