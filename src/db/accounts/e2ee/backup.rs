//! Server-side key backup (spec: "Server-side key backups"): versions and
//! their room keys, in the `key_backup` directory of the `accounts` database.

use serde_json::Value;

use super::super::{Error, Result, decode, encode, unpack};
use super::{BackupRefused, BackupVersionRecord, E2eeDb, parse_json};
use crate::kv::{self, KeySelector, RangeOption};

/// One backed-up room key.
#[derive(Clone, Debug, PartialEq)]
pub struct RoomKey {
    /// The room.
    pub room_id: String,
    /// The Megolm session.
    pub session_id: String,
    /// The `KeyBackupData` JSON.
    pub data: Value,
}

/// Whether backed-up key `new` should replace `old` (spec: keep the key with
/// `is_verified`, then the lower `first_message_index`, then the lower
/// `forwarded_count`).
fn better(new: &Value, old: &Value) -> bool {
    let verified = |v: &Value| {
        v.get("is_verified")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let index = |v: &Value| {
        v.get("first_message_index")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX)
    };
    let fwd = |v: &Value| {
        v.get("forwarded_count")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX)
    };
    (!verified(new), index(new), fwd(new)) < (!verified(old), index(old), fwd(old))
}

impl E2eeDb {
    /// Creates a new backup version (one more than any version ever
    /// created) and makes it the current one. Returns its number.
    pub async fn create_backup(
        &self,
        user: &str,
        algorithm: &str,
        auth_data: &serde_json::Value,
    ) -> Result<u64> {
        let l = self.l.clone();
        // Safe to run twice: after `commit_unknown_result` (MaybeCommitted),
        // a last version that is exactly the one this call writes (same
        // algorithm and auth_data, no keys, never changed) is taken as the
        // earlier attempt's and returned instead of creating another. A
        // concurrent identical create in that window would be returned too:
        // indistinguishable to the client, which sees one empty backup.
        self.db
            .run(|tx, maybe_committed| {
                let l = l.clone();
                async move {
                    let last_key = l.backup_last.pack(&user);
                    let last = tx
                        .get(&last_key, false)
                        .await?
                        .and_then(|v| v.try_into().ok().map(u64::from_le_bytes))
                        .unwrap_or(0);
                    let record = BackupVersionRecord {
                        algorithm: algorithm.to_owned(),
                        auth_data: auth_data.clone(),
                        etag: 0,
                        count: 0,
                    };
                    if maybe_committed.0
                        && last > 0
                        && version_record(&tx, &l, user, Some(last), false)
                            .await?
                            .is_some_and(|(_, stored)| stored == record)
                    {
                        return Ok(last);
                    }
                    let version = last + 1;
                    tx.set(&last_key, &version.to_le_bytes());
                    tx.set(
                        &l.backup_version.pack(&(user, version as i64)),
                        &encode(&record),
                    );
                    Ok::<_, Error>(version)
                }
            })
            .await
    }

    /// The backup version `version`, or the current (highest existing) one
    /// if `None`.
    pub async fn backup(
        &self,
        user: &str,
        version: Option<u64>,
    ) -> Result<Option<(u64, BackupVersionRecord)>> {
        let l = self.l.clone();
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| {
                let l = l.clone();
                async move { version_record(&tx, &l, user, version, false).await }
            })
            .await
    }

    /// Replaces the `auth_data` of a version (its algorithm must not change).
    pub async fn update_backup(
        &self,
        user: &str,
        version: u64,
        algorithm: &str,
        auth_data: &serde_json::Value,
    ) -> Result<Result<(), BackupRefused>> {
        let l = self.l.clone();
        // Safe to run twice: sets auth_data to a fixed value.
        self.db
            .run(|tx, _| {
                let l = l.clone();
                async move {
                    let Some((_, mut record)) =
                        version_record(&tx, &l, user, Some(version), false).await?
                    else {
                        return Ok::<_, Error>(Err(BackupRefused::NotFound));
                    };
                    if record.algorithm != algorithm {
                        return Ok(Err(BackupRefused::AlgorithmChanged));
                    }
                    record.auth_data = auth_data.clone();
                    tx.set(
                        &l.backup_version.pack(&(user, version as i64)),
                        &encode(&record),
                    );
                    Ok(Ok(()))
                }
            })
            .await
    }

    /// Deletes a version and its keys. Returns whether it existed.
    pub async fn delete_backup(&self, user: &str, version: u64) -> Result<bool> {
        let l = self.l.clone();
        // Safe to run twice: a second run finds the version gone and answers false (the
        // first deleted it).
        self.db
            .run(|tx, _| {
                let l = l.clone();
                async move {
                    let key = l.backup_version.pack(&(user, version as i64));
                    if tx.get(&key, false).await?.is_none() {
                        return Ok::<_, Error>(false);
                    }
                    tx.clear(&key);
                    let (b, e) = l.backup_session.subspace(&(user, version as i64)).range();
                    tx.clear_range(&b, &e);
                    Ok(true)
                }
            })
            .await
    }

    /// Stores room keys `(room_id, session_id, KeyBackupData)` in the
    /// current version `version`, keeping a stored key that is better.
    /// Returns the version's key count and etag afterwards.
    pub async fn put_backup_keys(
        &self,
        user: &str,
        version: u64,
        keys: &[(String, String, Value)],
    ) -> Result<Result<(u64, u64), BackupRefused>> {
        let l = self.l.clone();
        // Safe to run twice: a second run compares with the keys the first stored, finds
        // them no better, counts nothing new and leaves the etag.
        self.db
            .run(|tx, _| {
                let l = l.clone();
                async move {
                    let mut record = match current_checked(&tx, &l, user, version).await? {
                        Ok(r) => r,
                        Err(refused) => return Ok::<_, Error>(Err(refused)),
                    };
                    let mut changed = false;
                    let packed: Vec<Vec<u8>> = keys
                        .iter()
                        .map(|(room, session, _)| {
                            l.backup_session.pack(&(
                                user,
                                version as i64,
                                room.as_str(),
                                session.as_str(),
                            ))
                        })
                        .collect();
                    // Every stored key is read at once, not one after another
                    // (on FoundationDB each read is a round trip); a key named
                    // twice in the request compares with what this request
                    // chose for it.
                    let stored =
                        futures::future::try_join_all(packed.iter().map(|key| tx.get(key, false)))
                            .await?;
                    let mut now: std::collections::HashMap<&[u8], Option<Value>> =
                        std::collections::HashMap::new();
                    for (((_, _, data), key), stored) in keys.iter().zip(&packed).zip(stored) {
                        let current = match now.remove(key.as_slice()) {
                            Some(current) => current,
                            None => stored.map(|old| parse_json("session", &old)).transpose()?,
                        };
                        let replace = match &current {
                            Some(old) => better(data, old),
                            None => {
                                record.count += 1;
                                true
                            }
                        };
                        if replace {
                            tx.set(key, data.to_string().as_bytes());
                            now.insert(key, Some(data.clone()));
                            changed = true;
                        } else {
                            now.insert(key, current);
                        }
                    }
                    if changed {
                        record.etag += 1;
                        tx.set(
                            &l.backup_version.pack(&(user, version as i64)),
                            &encode(&record),
                        );
                    }
                    Ok(Ok((record.count, record.etag)))
                }
            })
            .await
    }

    /// The keys of a version: all, one room's, or one session's. `None` if
    /// the version does not exist. A version's keys are read at one read
    /// version, [`BACKUP_PAGE_KEYS`] per transaction
    /// ([`kv::Database::read_range_paged`]), so no transaction grows with
    /// the backup; the version is checked after them, so a version deleted
    /// meanwhile answers `None` (its numbers are never reused, so keys read
    /// before it was checked are its own).
    pub async fn backup_keys(
        &self,
        user: &str,
        version: u64,
        room: Option<&str>,
        session: Option<&str>,
    ) -> Result<Option<Vec<RoomKey>>> {
        let l = &self.l;
        let range = session_range(l, user, version, room, session);
        let kvs = self.db.read_range_paged(range, BACKUP_PAGE_KEYS).await?;
        // Read-only: safe to run any number of times.
        let exists = self
            .db
            .run(|tx, _| async move {
                Ok::<_, Error>(
                    version_record(&tx, l, user, Some(version), true)
                        .await?
                        .is_some(),
                )
            })
            .await?;
        if !exists {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(kvs.len());
        for kv in kvs {
            let (_, _, room_id, session_id): (String, i64, String, String) =
                unpack("session", &l.backup_session, &kv.key)?;
            out.push(RoomKey {
                room_id,
                session_id,
                data: parse_json("session", &kv.value)?,
            });
        }
        Ok(Some(out))
    }

    /// Deletes keys of the current version `version`: all, one room's, or
    /// one session's. Returns the key count and etag afterwards.
    ///
    /// The whole version is one transaction that reads none of its keys (a
    /// range clear). One room's keys are deleted [`BACKUP_PAGE_KEYS`] at a
    /// time, one transaction per page, each reading the page it clears (so
    /// the count drops by exactly what was there), until a page comes back
    /// short: no transaction grows with the backup. Every step is safe to
    /// run twice: a retry after `commit_unknown_result` re-reads the range
    /// with a conflict, finds the keys its first attempt cleared gone and
    /// subtracts nothing for them; the steps together delete what the
    /// request named, and a key put between two steps is deleted or kept
    /// as if the put came before or after the whole request.
    pub async fn delete_backup_keys(
        &self,
        user: &str,
        version: u64,
        room: Option<&str>,
        session: Option<&str>,
    ) -> Result<Result<(u64, u64), BackupRefused>> {
        let l = &self.l;
        if room.is_none() {
            return self.delete_version_keys(user, version).await;
        }
        let range = session_range(l, user, version, room, session);
        loop {
            // Safe to run twice: see the method's docs (each step re-reads its page).
            let step = self
                .db
                .run(|tx, _| {
                    let range = range.clone();
                    async move {
                        let Some((_, mut record)) =
                            version_record(&tx, l, user, Some(version), false).await?
                        else {
                            return Ok::<_, Error>(Err(BackupRefused::NotFound));
                        };
                        let page = tx
                            .get_range_all(range.clone().limit(BACKUP_PAGE_KEYS), false)
                            .await?;
                        if let Some(last) = page.last() {
                            let mut end = last.key.clone();
                            end.push(0);
                            let begin = page[0].key.clone();
                            tx.clear_range(&begin, &end);
                            record.count = record.count.saturating_sub(page.len() as u64);
                            record.etag += 1;
                            tx.set(
                                &l.backup_version.pack(&(user, version as i64)),
                                &encode(&record),
                            );
                        }
                        let done = page.len() < BACKUP_PAGE_KEYS;
                        Ok(Ok((record.count, record.etag, done)))
                    }
                })
                .await?;
            match step {
                Err(refused) => return Ok(Err(refused)),
                Ok((count, etag, true)) => return Ok(Ok((count, etag))),
                Ok((_, _, false)) => {}
            }
        }
    }

    /// Deletes every key of version `version` without reading them (a read
    /// of every key would grow with the backup past FDB's 5 s).
    async fn delete_version_keys(
        &self,
        user: &str,
        version: u64,
    ) -> Result<Result<(u64, u64), BackupRefused>> {
        let l = &self.l;
        // Safe to run twice: the second run finds count 0 and writes nothing.
        self.db
            .run(|tx, _| async move {
                let mut record = match version_record(&tx, l, user, Some(version), false).await? {
                    Some((_, r)) => r,
                    None => return Ok::<_, Error>(Err(BackupRefused::NotFound)),
                };
                let v = version as i64;
                if record.count > 0 {
                    let (b, e) = l.backup_session.subspace(&(user, v)).range();
                    tx.clear_range(&b, &e);
                    record.count = 0;
                    record.etag += 1;
                    tx.set(&l.backup_version.pack(&(user, v)), &encode(&record));
                }
                Ok(Ok((record.count, record.etag)))
            })
            .await
    }
}

/// Most backup keys one transaction reads or deletes: ~1,000 × ~500 bytes
/// of `KeyBackupData`, half a megabyte.
pub const BACKUP_PAGE_KEYS: usize = 1_000;

/// The `key_backup/session` keys of a version: all, one room's, or one
/// session's (that exact key, not a prefix of others).
fn session_range(
    l: &super::Layout,
    user: &str,
    version: u64,
    room: Option<&str>,
    session: Option<&str>,
) -> RangeOption {
    let v = version as i64;
    match (room, session) {
        (Some(r), Some(s)) => {
            let k = l.backup_session.pack(&(user, v, r, s));
            let mut end = k.clone();
            end.push(0);
            RangeOption::new(k, end)
        }
        (Some(r), None) => {
            let (b, e) = l.backup_session.subspace(&(user, v, r)).range();
            RangeOption::new(b, e)
        }
        _ => {
            let (b, e) = l.backup_session.subspace(&(user, v)).range();
            RangeOption::new(b, e)
        }
    }
}

/// The record of `version`, or of the highest existing version if `None`.
async fn version_record(
    tx: &kv::Transaction,
    l: &super::Layout,
    user: &str,
    version: Option<u64>,
    snapshot: bool,
) -> Result<Option<(u64, BackupVersionRecord)>> {
    match version {
        Some(v) => {
            let raw = tx
                .get(&l.backup_version.pack(&(user, v as i64)), snapshot)
                .await?;
            raw.map(|r| Ok((v, decode("version", &r)?))).transpose()
        }
        None => {
            let space = l.backup_version.subspace(&user);
            let (b, e) = space.range();
            let range = RangeOption {
                begin: KeySelector::first_greater_or_equal(b),
                end: KeySelector::first_greater_or_equal(e),
                limit: Some(1),
                reverse: true,
            };
            let kvs = tx.get_range_all(range, snapshot).await?;
            let Some(kv) = kvs.first() else {
                return Ok(None);
            };
            let v: i64 = unpack("version", &space, &kv.key)?;
            Ok(Some((v as u64, decode("version", &kv.value)?)))
        }
    }
}

/// The record of `version` if it is the current version.
async fn current_checked(
    tx: &kv::Transaction,
    l: &super::Layout,
    user: &str,
    version: u64,
) -> Result<Result<BackupVersionRecord, BackupRefused>> {
    match version_record(tx, l, user, None, false).await? {
        None => Ok(Err(BackupRefused::NotFound)),
        Some((current, record)) if current == version => Ok(Ok(record)),
        Some((current, _)) => {
            let exists = version_record(tx, l, user, Some(version), false)
                .await?
                .is_some();
            Ok(Err(if exists {
                BackupRefused::WrongVersion {
                    requested: version,
                    current,
                }
            } else {
                BackupRefused::NotFound
            }))
        }
    }
}
