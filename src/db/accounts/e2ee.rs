//! Storage of end-to-end encryption keys in the `accounts` database: device
//! identity keys, one-time and fallback keys, cross-signing keys, uploaded
//! signatures and server-side key backups (directories `e2ee` and
//! `key_backup` of `keys.rs`).
//!
//! Invariants:
//! - a one-time key is handed to exactly one claimer: the claim reads the
//!   device's first key of the algorithm (a non-snapshot read, so two
//!   concurrent claimers of the same key conflict and one retries) and
//!   clears it in the same transaction; only when none is left does the
//!   claim return the fallback key, marking it used; a claim that takes a
//!   key records what it handed out (`e2ee/claim`, keyed by a per-request
//!   [`ClaimId`]) in the same transaction, so its retry after
//!   `commit_unknown_result` hands out the same keys and takes no other;
//!   those records are cleared by later claims after
//!   [`CLAIM_RECORD_RETENTION_MS`];
//! - a one-time key ID is never silently replaced by other key material;
//! - backup versions only grow (`last_version`), and a backup's `etag`
//!   changes with every change of its keys;
//! - keys are stored as the client uploaded them (JSON text); signatures
//!   added by others live apart and are merged in on read.
//!
//! Who may import this: `service` (through [`E2eeDb`]) and tests.

use std::collections::BTreeMap;

use foundationdb_tuple::Subspace;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::keys;
use super::{Error, Result, decode, encode, range_of, unpack};
use crate::keys::{DirectorySpec, SubspaceSpec};
use crate::kv;

/// `e2ee/fallback_key` value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FallbackKeyRecord {
    /// The key ID (without the algorithm).
    pub key_id: String,
    /// The key as uploaded (JSON).
    pub key: String,
    /// Whether a claim has handed it out.
    pub used: bool,
}

/// `key_backup/version` value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupVersionRecord {
    /// The backup algorithm, e.g. `m.megolm_backup.v1.curve25519-aes-sha2`.
    pub algorithm: String,
    /// The algorithm's `auth_data` (a JSON object), stored as its JSON
    /// text; text that is not JSON reads as [`super::Error::Corrupt`].
    #[serde(with = "crate::db::json_text")]
    pub auth_data: serde_json::Value,
    /// Bumped by every change of the backup's keys.
    pub etag: u64,
    /// How many room keys the backup holds.
    pub count: u64,
}

/// One key a claim hands out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedKey {
    /// `algorithm:key_id`.
    pub key_id: String,
    /// The key (JSON).
    pub key: String,
}

/// `e2ee/claim` value: what one claim handed out, `(user, device, key)`
/// in the order [`E2eeDb::claim`] returns them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ClaimRecord {
    keys: Vec<(String, String, ClaimedKey)>,
}

/// How long a claim's record (`e2ee/claim`) is kept for its retries,
/// in milliseconds: far longer than the retry runner's budget (30 s by
/// default), so a retry always finds it, and short enough that the records
/// left at any time are those of the last few minutes' claims.
pub const CLAIM_RECORD_RETENTION_MS: u64 = 10 * 60 * 1000;

/// One `/keys/claim` request's identity, made by the caller once per
/// request (outside the transaction, so every attempt shares it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimId {
    /// The server's clock at the request, ms since the Unix epoch.
    pub now_ms: u64,
    /// Random, from the server's generator.
    pub id: [u8; 16],
}

/// Why a key upload was refused; nothing was stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UploadRefused {
    /// A one-time key ID already holds different key material.
    #[error("one-time key {0} already exists with different content")]
    OneTimeKeyExists(String),
}

/// Why a backup write was refused; nothing was stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackupRefused {
    /// The version does not exist (or was deleted).
    #[error("unknown backup version")]
    NotFound,
    /// The version is not the current one (M_WRONG_ROOM_KEYS_VERSION).
    #[error("backup version {requested} is not the current version {current}")]
    WrongVersion {
        /// The version asked for.
        requested: u64,
        /// The current version.
        current: u64,
    },
    /// The algorithm of an update differs from the stored one.
    #[error("the algorithm of a backup version cannot change")]
    AlgorithmChanged,
}

/// A handle on the E2EE subspaces of the `accounts` database. Cheap to clone.
#[derive(Clone)]
pub struct E2eeDb {
    db: kv::Database,
    l: std::sync::Arc<Layout>,
}

/// The E2EE subspaces keyed by `(user_id, device_id, ...)`: what one
/// device's keys occupy. [`super::AccountsDb`]'s device deletion clears them
/// in the same transaction that deletes the device, so a deleted device never
/// leaves keys behind (spec: "Tracking the device list for a user").
#[derive(Clone, Debug)]
pub struct DeviceKeySpaces {
    device_keys: Subspace,
    otk: Subspace,
    fallback: Subspace,
    signature: Subspace,
}

impl DeviceKeySpaces {
    /// The subspaces in the `accounts` directories `dirs`.
    pub(super) fn from_dirs(dirs: &crate::keys::Directories) -> Self {
        let sub = |spec: &SubspaceSpec| {
            Subspace::from_bytes(dirs.space(&keys::E2EE).subspace_prefix(spec))
        };
        DeviceKeySpaces {
            device_keys: sub(&keys::DEVICE_KEYS),
            otk: sub(&keys::ONE_TIME_KEY),
            fallback: sub(&keys::FALLBACK_KEY),
            signature: sub(&keys::SIGNATURE),
        }
    }

    /// Clears, in `tx`, the device's identity keys, one-time keys, fallback
    /// keys and the signatures others uploaded on its keys. Blind writes
    /// only (no reads), so it adds no conflicts and is safe to repeat.
    pub(super) fn clear(&self, tx: &kv::Transaction, user: &str, device: &str) {
        tx.clear(&self.device_keys.pack(&(user, device)));
        for space in [
            self.otk.subspace(&(user, device)),
            self.fallback.subspace(&(user, device)),
            self.signature.subspace(&(user, device)),
        ] {
            let (b, e) = space.range();
            tx.clear_range(&b, &e);
        }
    }
}

#[derive(Debug)]
struct Layout {
    device_spaces: DeviceKeySpaces,
    device_keys: Subspace,
    otk: Subspace,
    fallback: Subspace,
    cross_signing: Subspace,
    signature: Subspace,
    backup_version: Subspace,
    backup_last: Subspace,
    backup_session: Subspace,
    claim: Subspace,
}

impl E2eeDb {
    /// The E2EE subspaces of the `accounts` database of an opened
    /// [`crate::db::Databases`].
    pub fn new(handle: &crate::db::Handle) -> Self {
        let sub = |dir: &DirectorySpec, spec: &SubspaceSpec| {
            Subspace::from_bytes(handle.dirs.space(dir).subspace_prefix(spec))
        };
        E2eeDb {
            db: handle.db.clone(),
            l: std::sync::Arc::new(Layout {
                device_spaces: DeviceKeySpaces::from_dirs(&handle.dirs),
                device_keys: sub(&keys::E2EE, &keys::DEVICE_KEYS),
                otk: sub(&keys::E2EE, &keys::ONE_TIME_KEY),
                fallback: sub(&keys::E2EE, &keys::FALLBACK_KEY),
                cross_signing: sub(&keys::E2EE, &keys::CROSS_SIGNING),
                signature: sub(&keys::E2EE, &keys::SIGNATURE),
                backup_version: sub(&keys::KEY_BACKUP, &keys::BACKUP_VERSION_INFO),
                backup_last: sub(&keys::KEY_BACKUP, &keys::BACKUP_LAST_VERSION),
                backup_session: sub(&keys::KEY_BACKUP, &keys::BACKUP_SESSION),
                claim: sub(&keys::E2EE, &keys::KEY_CLAIM),
            }),
        }
    }

    /// Stores a device's uploads in one transaction: its device keys (if
    /// given), one-time keys and fallback keys (`(algorithm, key_id, JSON)`;
    /// a new fallback key of an algorithm replaces the old one and is
    /// unused). Returns whether the device keys changed and the device's
    /// one-time key counts per algorithm afterwards.
    ///
    /// Refused (nothing stored): a one-time key ID that already holds
    /// different content.
    pub async fn upload(
        &self,
        user: &str,
        device: &str,
        device_keys: Option<&str>,
        one_time_keys: &[(String, String, String)],
        fallback_keys: &[(String, String, String)],
    ) -> Result<Result<(bool, BTreeMap<String, u64>), UploadRefused>> {
        let l = self.l.clone();
        // Safe to run twice: keys are written under their own IDs and a
        // second run finds them identical, writing nothing. After
        // `commit_unknown_result` (MaybeCommitted) it reports the device keys
        // changed whenever it was given some, since the first attempt may
        // have changed them and the caller marks the device list changed on
        // that (marking twice is harmless, missing it is not).
        self.db
            .run(|tx, maybe_committed| {
                let l = l.clone();
                async move {
                    let mut changed = false;
                    if let Some(new) = device_keys {
                        let key = l.device_keys.pack(&(user, device));
                        let old = tx.get(&key, false).await?;
                        if old.as_deref() != Some(new.as_bytes()) {
                            tx.set(&key, new.as_bytes());
                            changed = true;
                        }
                    }
                    for (alg, id, json) in one_time_keys {
                        let key = l.otk.pack(&(user, device, alg.as_str(), id.as_str()));
                        match tx.get(&key, false).await? {
                            Some(old) if !same_json(&old, json) => {
                                return Ok(Err(UploadRefused::OneTimeKeyExists(format!(
                                    "{alg}:{id}"
                                ))));
                            }
                            Some(_) => {}
                            None => tx.set(&key, json.as_bytes()),
                        }
                    }
                    for (alg, id, json) in fallback_keys {
                        let key = l.fallback.pack(&(user, device, alg.as_str()));
                        let record = FallbackKeyRecord {
                            key_id: id.clone(),
                            key: json.clone(),
                            used: false,
                        };
                        let old = tx.get(&key, false).await?;
                        let same = old
                            .map(|v| decode::<FallbackKeyRecord>("fallback_key", &v))
                            .transpose()?
                            .is_some_and(|o| o.key_id == record.key_id && o.key == record.key);
                        if !same {
                            tx.set(&key, &encode(&record));
                        }
                    }
                    let counts = otk_counts(&tx, &l, user, device).await?;
                    let changed = changed || (maybe_committed.0 && device_keys.is_some());
                    Ok::<_, Error>(Ok((changed, counts)))
                }
            })
            .await
    }

    /// The device's unclaimed one-time keys per algorithm (one range read).
    pub async fn one_time_key_counts(
        &self,
        user: &str,
        device: &str,
    ) -> Result<BTreeMap<String, u64>> {
        let l = self.l.clone();
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| {
                let l = l.clone();
                async move { otk_counts(&tx, &l, user, device).await }
            })
            .await
    }

    /// The algorithms of the device's fallback keys not yet handed out (one
    /// range read).
    pub async fn unused_fallback_key_types(&self, user: &str, device: &str) -> Result<Vec<String>> {
        let space = self.l.fallback.subspace(&(user, device));
        let kvs = self.db.read_range(range_of(&space)).await?;
        let mut out = Vec::new();
        for kv in &kvs {
            let alg: String = unpack("fallback_key", &space, &kv.key)?;
            if !decode::<FallbackKeyRecord>("fallback_key", &kv.value)?.used {
                out.push(alg);
            }
        }
        Ok(out)
    }

    /// Claims one key per `(user, device, algorithm)` in one transaction:
    /// the device's first one-time key of the algorithm (removed), else its
    /// fallback key (marked used, handed out again on later claims, as the
    /// spec allows), else nothing. Concurrent claims never return the same
    /// one-time key.
    ///
    /// A claim that removes or marks a key also records, in the same
    /// transaction, what it handed out under `claim` (`e2ee/claim`), and
    /// clears the records of claims older than
    /// [`CLAIM_RECORD_RETENTION_MS`] (a blind range clear: no reads, no
    /// conflicts), so the records never outgrow a few minutes' claims.
    pub async fn claim(
        &self,
        claim: ClaimId,
        wanted: &[(String, String, String)],
    ) -> Result<Vec<(String, String, ClaimedKey)>> {
        let l = self.l.clone();
        let record_key = l.claim.pack(&(claim.now_ms as i64, claim.id.as_slice()));
        let (expired_begin, _) = l.claim.range();
        let expired_end = l
            .claim
            .pack(&(claim.now_ms.saturating_sub(CLAIM_RECORD_RETENTION_MS) as i64,));
        // Safe to run twice: a retry after `commit_unknown_result`
        // (MaybeCommitted) first reads this claim's record, written in the
        // same transaction as the clears: if the earlier attempt committed,
        // it returns the keys that attempt took (and removes no second key);
        // otherwise it claims afresh.
        self.db
            .run(|tx, maybe_committed| {
                let l = l.clone();
                let (record_key, expired_begin, expired_end) =
                    (&record_key, &expired_begin, &expired_end);
                async move {
                    if maybe_committed.0
                        && let Some(raw) = crate::db::split::get(&tx, record_key, false).await?
                    {
                        return Ok(decode::<ClaimRecord>("claim", &raw)?.keys);
                    }
                    let mut out = Vec::new();
                    // Every device's first one-time key is read at once, not
                    // one device after another (on FoundationDB each read is
                    // a round trip). A tuple repeated in `wanted` reads again
                    // after its first claim, which sees that claim's clear.
                    let space_of = |(user, device, alg): &(String, String, String)| {
                        l.otk
                            .subspace(&(user.as_str(), device.as_str(), alg.as_str()))
                    };
                    let firsts = futures::future::try_join_all(wanted.iter().map(|w| {
                        let range = range_of(&space_of(w)).limit(1);
                        let tx = &tx;
                        async move { tx.get_range_all(range, false).await }
                    }))
                    .await?;
                    let mut taken = std::collections::HashSet::new();
                    let mut wrote = false;
                    for ((user, device, alg), first) in wanted.iter().zip(firsts) {
                        let (u, d, a) = (user.as_str(), device.as_str(), alg.as_str());
                        let space = l.otk.subspace(&(u, d, a));
                        let first = match first.into_iter().next() {
                            Some(kv) if taken.contains(&kv.key) => tx
                                .get_range_all(range_of(&space).limit(1), false)
                                .await?
                                .into_iter()
                                .next(),
                            first => first,
                        };
                        if let Some(kv) = first {
                            taken.insert(kv.key.clone());
                            let id: String = unpack("one_time_key", &space, &kv.key)?;
                            tx.clear(&kv.key);
                            wrote = true;
                            let key = String::from_utf8_lossy(&kv.value).into_owned();
                            let claimed = ClaimedKey {
                                key_id: format!("{alg}:{id}"),
                                key,
                            };
                            out.push((user.clone(), device.clone(), claimed));
                            continue;
                        }
                        let fkey = l.fallback.pack(&(u, d, a));
                        if let Some(raw) = tx.get(&fkey, false).await? {
                            let mut record: FallbackKeyRecord = decode("fallback_key", &raw)?;
                            let claimed = ClaimedKey {
                                key_id: format!("{alg}:{}", record.key_id),
                                key: record.key.clone(),
                            };
                            if !record.used {
                                record.used = true;
                                tx.set(&fkey, &encode(&record));
                                wrote = true;
                            }
                            out.push((user.clone(), device.clone(), claimed));
                        }
                    }
                    if !wrote {
                        // Nothing removed or marked: read-only, and a retry
                        // hands out the same keys.
                        return Ok(out);
                    }
                    let record = ClaimRecord { keys: out };
                    crate::db::split::set(&tx, record_key, &encode(&record));
                    tx.clear_range(expired_begin, expired_end);
                    Ok::<_, Error>(record.keys)
                }
            })
            .await
    }

    /// The device keys of `user` (of `devices` only, if given), each with
    /// the signatures uploaded by others merged into its `signatures`.
    pub async fn device_keys(
        &self,
        user: &str,
        devices: Option<&[String]>,
    ) -> Result<Vec<(String, Value)>> {
        let l = self.l.clone();
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| {
                let l = l.clone();
                async move {
                    let kvs = match devices {
                        None => {
                            let range = range_of(&l.device_keys.subspace(&user));
                            tx.get_range_all(range, true).await?
                        }
                        Some(ds) => {
                            // Read at once, not one device after another.
                            let found = futures::future::try_join_all(ds.iter().map(|d| {
                                let key = l.device_keys.pack(&(user, d.as_str()));
                                let tx = &tx;
                                async move {
                                    let value = tx.get(&key, true).await?;
                                    Ok::<_, kv::Error>(
                                        value.map(|value| kv::KeyValue { key, value }),
                                    )
                                }
                            }))
                            .await?;
                            found.into_iter().flatten().collect()
                        }
                    };
                    let (tx, l) = (&tx, &l);
                    let out = futures::future::try_join_all(kvs.into_iter().map(|kv| async move {
                        let (_, device): (String, String) =
                            unpack("device_keys", &l.device_keys, &kv.key)?;
                        let mut json = parse_json("device_keys", &kv.value)?;
                        merge_signatures(tx, l, user, &device, &mut json).await?;
                        Ok::<_, Error>((device, json))
                    }))
                    .await?;
                    Ok::<_, Error>(out)
                }
            })
            .await
    }

    /// Removes a device's keys (device keys, one-time and fallback keys and
    /// signatures on it) in a transaction of its own. Device deletion in
    /// [`super::AccountsDb`] already does this inside its own transaction
    /// (through [`DeviceKeySpaces`]); this is for repairs and tests.
    pub async fn delete_device(&self, user: &str, device: &str) -> Result<()> {
        let spaces = self.l.device_spaces.clone();
        // Safe to run twice: range clears.
        self.db
            .run(|tx, _| {
                spaces.clear(&tx, user, device);
                async { Ok::<_, Error>(()) }
            })
            .await
    }

    /// The user's cross-signing keys by usage (`master`, `self_signing`,
    /// `user_signing`), with signatures uploaded later merged in.
    pub async fn cross_signing_keys(&self, user: &str) -> Result<BTreeMap<String, Value>> {
        let l = self.l.clone();
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| {
                let l = l.clone();
                async move {
                    let space = l.cross_signing.subspace(&user);
                    let kvs = tx.get_range_all(range_of(&space), true).await?;
                    let mut out = BTreeMap::new();
                    for kv in kvs {
                        let usage: String = unpack("cross_signing", &space, &kv.key)?;
                        let mut json = parse_json("cross_signing", &kv.value)?;
                        for public in public_keys(&json) {
                            merge_signatures(&tx, &l, user, &public, &mut json).await?;
                        }
                        out.insert(usage, json);
                    }
                    Ok::<_, Error>(out)
                }
            })
            .await
    }

    /// Stores cross-signing keys `(usage, JSON)` of `user` in one transaction.
    pub async fn set_cross_signing_keys(
        &self,
        user: &str,
        keys: &[(String, String)],
    ) -> Result<()> {
        let l = self.l.clone();
        // Safe to run twice: blind writes of fixed values.
        self.db
            .run(|tx, _| {
                for (usage, json) in keys {
                    tx.set(
                        &l.cross_signing.pack(&(user, usage.as_str())),
                        json.as_bytes(),
                    );
                }
                async { Ok::<_, Error>(()) }
            })
            .await
    }

    /// Stores signatures `(target_user, target_key, signer_user,
    /// signer_key_id, signature)` in one transaction.
    pub async fn add_signatures(
        &self,
        entries: &[(String, String, String, String, String)],
    ) -> Result<()> {
        let l = self.l.clone();
        // Safe to run twice: blind writes of fixed values.
        self.db
            .run(|tx, _| {
                for (tu, tk, su, sk, sig) in entries {
                    let key =
                        l.signature
                            .pack(&(tu.as_str(), tk.as_str(), su.as_str(), sk.as_str()));
                    tx.set(&key, sig.as_bytes());
                }
                async { Ok::<_, Error>(()) }
            })
            .await
    }
}

async fn otk_counts(
    tx: &kv::Transaction,
    l: &Layout,
    user: &str,
    device: &str,
) -> Result<BTreeMap<String, u64>> {
    let space = l.otk.subspace(&(user, device));
    let kvs = tx.get_range_all(range_of(&space), true).await?;
    let mut counts = BTreeMap::new();
    for kv in kvs {
        let (alg, _): (String, String) = unpack("one_time_key", &space, &kv.key)?;
        *counts.entry(alg).or_insert(0) += 1;
    }
    Ok(counts)
}

/// Merges stored signatures on `(user, target)` into `json.signatures`.
async fn merge_signatures(
    tx: &kv::Transaction,
    l: &Layout,
    user: &str,
    target: &str,
    json: &mut Value,
) -> Result<()> {
    let space = l.signature.subspace(&(user, target));
    let kvs = tx.get_range_all(range_of(&space), true).await?;
    if kvs.is_empty() {
        return Ok(());
    }
    let Some(obj) = json.as_object_mut() else {
        return Ok(());
    };
    let sigs = obj
        .entry("signatures")
        .or_insert_with(|| Value::Object(Default::default()));
    for kv in kvs {
        let (signer, key_id): (String, String) = unpack("signature", &space, &kv.key)?;
        let sig = String::from_utf8_lossy(&kv.value).into_owned();
        if let Some(map) = sigs.as_object_mut() {
            let per = map
                .entry(signer)
                .or_insert_with(|| Value::Object(Default::default()));
            if let Some(per) = per.as_object_mut() {
                per.insert(key_id, Value::String(sig));
            }
        }
    }
    Ok(())
}

/// The unprefixed public keys of a cross-signing key's `keys` map
/// (`ed25519:<pub>` -> `<pub>`).
pub fn public_keys(json: &Value) -> Vec<String> {
    json.get("keys")
        .and_then(Value::as_object)
        .map(|m| {
            m.keys()
                .map(|k| k.split_once(':').map_or(k.as_str(), |(_, p)| p).to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn same_json(stored: &[u8], new: &str) -> bool {
    match (
        serde_json::from_slice::<Value>(stored),
        serde_json::from_str::<Value>(new),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => stored == new.as_bytes(),
    }
}

fn parse_json(subspace: &'static str, bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        subspace,
        source: Box::new(e),
    })
}

mod backup;
pub use backup::{BACKUP_PAGE_KEYS, RoomKey};
