//! Users, password hashes, access tokens, devices, UIA sessions and the
//! cleanups deleted devices still owe (`sessions/cleanup_owed`).

use std::collections::BTreeMap;

use foundationdb_tuple::Subspace;

use super::{AccountsDb, DeviceRecord, Error, Result, TokenRecord, UiaSession, UserRecord};
use super::{decode, encode, range_of, unpack};
use crate::kv::Transaction;

/// A device to create with its first access token.
#[derive(Clone, Debug)]
pub struct NewDevice {
    /// The device ID.
    pub device_id: String,
    /// Its display name, if the client gave one.
    pub display_name: Option<String>,
    /// SHA-256 of the new access token.
    pub token_hash: Vec<u8>,
}

/// Outcome of [`AccountsDb::create_user`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateUser {
    /// The account was created (with its device, if one was given).
    Created,
    /// An account with that ID exists (or existed: IDs are never reused).
    InUse,
    /// The registration token is unknown, used up or expired.
    TokenRefused,
}

impl AccountsDb {
    /// Creates `user_id` with an optional password hash and an optional first
    /// device, unless the ID is taken. All or nothing.
    pub async fn create_user(
        &self,
        user_id: &str,
        password_hash: Option<&str>,
        now_ms: u64,
        device: Option<&NewDevice>,
    ) -> Result<CreateUser> {
        self.create_user_with_token(user_id, password_hash, now_ms, device, None)
            .await
    }

    /// As [`AccountsDb::create_user`], and with `registration_token`, uses
    /// that admin-made token in the same transaction: refused
    /// ([`CreateUser::TokenRefused`], nothing written) unless it is valid at
    /// `now_ms`, else its `completed` count goes up by one. The token's
    /// record is read with a conflict, so of racing registrations at most
    /// `uses_allowed` commit. Safe to run twice: a retry after an unknown
    /// commit result finds the user and answers `InUse`, counting nothing.
    pub async fn create_user_with_token(
        &self,
        user_id: &str,
        password_hash: Option<&str>,
        now_ms: u64,
        device: Option<&NewDevice>,
        registration_token: Option<&str>,
    ) -> Result<CreateUser> {
        let k = self.keys().clone();
        // Safe to run twice: after `commit_unknown_result` (MaybeCommitted)
        // a stored account exactly as this call writes it (created at
        // `now_ms`, active, not admin, the same password hash) is taken as
        // the earlier attempt's and reported `Created`, not `InUse`; its
        // token use and device were written in that same transaction.
        self.db
            .run(|tx, maybe_committed| {
                let k = k.clone();
                async move {
                    let user_key = k.user.pack(&user_id);
                    if let Some(raw) = tx.get(&user_key, false).await? {
                        if maybe_committed.0 {
                            let stored: UserRecord = decode("user", &raw)?;
                            let hash = tx.get(&k.password.pack(&user_id), false).await?;
                            if stored.created_ms == now_ms
                                && !stored.deactivated
                                && !stored.admin
                                && hash.as_deref() == password_hash.map(str::as_bytes)
                            {
                                return Ok(CreateUser::Created);
                            }
                        }
                        return Ok(CreateUser::InUse);
                    }
                    if let Some(token) = registration_token
                        && !super::registration_tokens::use_token(&tx, &k, token, now_ms).await?
                    {
                        return Ok(CreateUser::TokenRefused);
                    }
                    let record = UserRecord {
                        created_ms: now_ms,
                        deactivated: false,
                        admin: false,
                    };
                    tx.set(&user_key, &encode(&record));
                    if let Some(hash) = password_hash {
                        tx.set(&k.password.pack(&user_id), hash.as_bytes());
                    }
                    if let Some(device) = device {
                        put_device(&tx, &k, user_id, device, now_ms, None);
                    }
                    Ok::<_, Error>(CreateUser::Created)
                }
            })
            .await
    }

    /// The account record of `user_id`, if it exists.
    pub async fn user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        let key = self.keys().user.pack(&user_id);
        // Read-only: safe to run any number of times.
        let raw = self.db.run(|tx, _| tx_get(tx, key.clone())).await?;
        raw.map(|v| decode("user", &v))
            .transpose()
            .map_err(Into::into)
    }

    /// Every account, in user-ID order.
    pub async fn users(&self) -> Result<Vec<(String, UserRecord)>> {
        let space = self.keys().user.clone();
        let kvs = self.db.read_range(range_of(&space)).await?;
        kvs.iter()
            .map(|kv| {
                let (user_id,): (String,) = unpack("user", &space, &kv.key)?;
                Ok((user_id, decode("user", &kv.value)?))
            })
            .collect()
    }

    /// The argon2 hash of `user_id`'s password, if it has one.
    pub async fn password_hash(&self, user_id: &str) -> Result<Option<String>> {
        let key = self.keys().password.pack(&user_id);
        // Read-only: safe to run any number of times.
        let raw = self.db.run(|tx, _| tx_get(tx, key.clone())).await?;
        raw.map(|v| {
            String::from_utf8(v).map_err(|e| Error::Corrupt {
                subspace: "password",
                source: Box::new(e),
            })
        })
        .transpose()
    }

    /// Replaces `user_id`'s password hash; when `logout_devices`, also deletes
    /// every device (with its token and E2EE keys) except `keep_device`.
    /// Returns the deleted device IDs, or `None`, writing nothing, if the
    /// user does not exist or is deactivated.
    pub async fn set_password(
        &self,
        user_id: &str,
        hash: &str,
        logout_devices: bool,
        keep_device: Option<&str>,
    ) -> Result<Option<Vec<String>>> {
        let k = self.keys().clone();
        // Safe to run twice: the password is set to the same hash; a second
        // run finds the devices already deleted and lists none.
        self.db
            .run(|tx, _| {
                let k = k.clone();
                async move {
                    if !is_active(&tx, &k, user_id).await? {
                        return Ok(None);
                    }
                    tx.set(&k.password.pack(&user_id), hash.as_bytes());
                    let mut deleted = Vec::new();
                    if logout_devices {
                        deleted =
                            delete_devices_where(&tx, &k, user_id, |d| Some(d) != keep_device)
                                .await?;
                    }
                    Ok::<_, Error>(Some(deleted))
                }
            })
            .await
    }

    /// Deactivates `user_id`: marks the record, and removes its password,
    /// devices (with their E2EE keys), tokens and profile. Returns the
    /// deleted device IDs, or `None` if there is no such user.
    pub async fn deactivate(&self, user_id: &str) -> Result<Option<Vec<String>>> {
        let k = self.keys().clone();
        // Safe to run twice: a second run writes the same record and clears
        // the same keys; its devices went in the first (it lists none).
        self.db
            .run(|tx, _| {
                let k = k.clone();
                async move {
                    let user_key = k.user.pack(&user_id);
                    let Some(raw) = tx.get(&user_key, false).await? else {
                        return Ok(None);
                    };
                    let mut record: UserRecord = decode("user", &raw)?;
                    record.deactivated = true;
                    tx.set(&user_key, &encode(&record));
                    tx.clear(&k.password.pack(&user_id));
                    let deleted = delete_devices_where(&tx, &k, user_id, |_| true).await?;
                    let (begin, end) = k.profile.subspace(&user_id).range();
                    tx.clear_range(&begin, &end);
                    Ok::<_, Error>(Some(deleted))
                }
            })
            .await
    }

    /// Sets or clears `user_id`'s admin flag. Returns `false` if there is
    /// no such user. Safe to run twice: it sets the flag to a given value.
    pub async fn set_admin(&self, user_id: &str, admin: bool) -> Result<bool> {
        let k = self.keys().clone();
        // Safe to run twice: sets the flag to a fixed value.
        self.db
            .run(|tx, _| {
                let k = k.clone();
                async move {
                    let user_key = k.user.pack(&user_id);
                    let Some(raw) = tx.get(&user_key, false).await? else {
                        return Ok(false);
                    };
                    let mut record: UserRecord = decode("user", &raw)?;
                    record.admin = admin;
                    tx.set(&user_key, &encode(&record));
                    Ok::<_, Error>(true)
                }
            })
            .await
    }

    /// What the token with SHA-256 `token_hash` belongs to: exactly one read.
    pub async fn resolve_token(&self, token_hash: &[u8]) -> Result<Option<TokenRecord>> {
        let key = self.keys().token.pack(&token_hash);
        // Read-only: safe to run any number of times.
        let raw = self.db.run(|tx, _| tx_get(tx, key.clone())).await?;
        raw.map(|v| decode("token", &v))
            .transpose()
            .map_err(Into::into)
    }

    /// Logs `user_id` in on `device`: creates the device, or, if it exists,
    /// replaces its token (keeping its display name unless a new one is
    /// given). Returns `false`, writing nothing, if the user is not active.
    pub async fn login_device(
        &self,
        user_id: &str,
        device: &NewDevice,
        now_ms: u64,
    ) -> Result<bool> {
        let k = self.keys().clone();
        // Safe to run twice: a second run finds the device the first wrote, clears the
        // token it just set and sets the same one again (put_device keeps what it found).
        self.db
            .run(|tx, _| {
                let k = k.clone();
                async move {
                    if !is_active(&tx, &k, user_id).await? {
                        return Ok(false);
                    }
                    let dev_key = k.device.pack(&(user_id, device.device_id.as_str()));
                    let old = match tx.get(&dev_key, false).await? {
                        Some(raw) => Some(decode::<DeviceRecord>("device", &raw)?),
                        None => None,
                    };
                    if let Some(old) = &old {
                        tx.clear(&k.token.pack(&old.token_hash.as_slice()));
                    }
                    put_device(&tx, &k, user_id, device, now_ms, old);
                    Ok::<_, Error>(true)
                }
            })
            .await
    }

    /// The devices of `user_id`, in device-ID order.
    pub async fn devices(&self, user_id: &str) -> Result<Vec<(String, DeviceRecord)>> {
        let k = self.keys().clone();
        let space = k.device.subspace(&user_id);
        // Read-only: safe to run any number of times.
        let kvs = self
            .db
            .run(|tx, _| {
                let range = range_of(&space);
                async move { tx.get_range_all(range, false).await }
            })
            .await?;
        kvs.iter()
            .map(|kv| {
                let (_, device_id): (String, String) = unpack("device", &k.device, &kv.key)?;
                Ok((device_id, decode("device", &kv.value)?))
            })
            .collect()
    }

    /// One device of `user_id`.
    pub async fn device(&self, user_id: &str, device_id: &str) -> Result<Option<DeviceRecord>> {
        let key = self.keys().device.pack(&(user_id, device_id));
        // Read-only: safe to run any number of times.
        let raw = self.db.run(|tx, _| tx_get(tx, key.clone())).await?;
        raw.map(|v| decode("device", &v))
            .transpose()
            .map_err(Into::into)
    }

    /// Sets a device's display name (`None` leaves it unchanged). Returns
    /// `false` if the device does not exist.
    pub async fn update_device(
        &self,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
    ) -> Result<bool> {
        let key = self.keys().device.pack(&(user_id, device_id));
        // Safe to run twice: sets the display name to a fixed value.
        self.db
            .run(|tx, _| {
                let key = key.clone();
                async move {
                    let Some(raw) = tx.get(&key, false).await? else {
                        return Ok(false);
                    };
                    let mut record: DeviceRecord = decode("device", &raw)?;
                    if let Some(name) = display_name {
                        record.display_name = Some(name.to_owned());
                        tx.set(&key, &encode(&record));
                    }
                    Ok::<_, Error>(true)
                }
            })
            .await
    }

    /// Deletes the listed devices of `user_id` with their tokens and E2EE
    /// keys, in one transaction (absent ones are skipped, but any keys stored
    /// under their IDs are still cleared). Returns the IDs that existed.
    pub async fn delete_devices(
        &self,
        user_id: &str,
        device_ids: &[String],
    ) -> Result<Vec<String>> {
        let k = self.keys().clone();
        // Safe to run twice: a second run finds the devices gone and clears nothing more;
        // it lists none, but their owed cleanups were written with the deletion, so nothing
        // is left behind.
        self.db
            .run(|tx, _| {
                let k = k.clone();
                async move {
                    let mut deleted = Vec::new();
                    for device_id in device_ids {
                        let key = k.device.pack(&(user_id, device_id.as_str()));
                        k.device_e2ee.clear(&tx, user_id, device_id);
                        if let Some(raw) = tx.get(&key, false).await? {
                            let record: DeviceRecord = decode("device", &raw)?;
                            tx.clear(&k.token.pack(&record.token_hash.as_slice()));
                            tx.clear(&key);
                            owe_cleanup(&tx, &k, user_id, device_id);
                            deleted.push(device_id.clone());
                        }
                    }
                    Ok::<_, Error>(deleted)
                }
            })
            .await
    }

    /// The owed cleanups of deleted devices (`sessions/cleanup_owed`): up
    /// to `limit` of them, by user, in key order. One range read.
    ///
    /// Errors: the store's; a malformed key is `Corrupt`.
    pub async fn owed_cleanups(&self, limit: usize) -> Result<BTreeMap<String, Vec<String>>> {
        let k = self.keys().clone();
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| {
                let k = k.clone();
                async move {
                    let range = range_of(&k.cleanup_owed).limit(limit);
                    let mut owed: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    for kv in tx.get_range_all(range, true).await? {
                        let (user, device): (String, String) =
                            unpack("cleanup_owed", &k.cleanup_owed, &kv.key)?;
                        owed.entry(user).or_default().push(device);
                    }
                    Ok::<_, Error>(owed)
                }
            })
            .await
    }

    /// Clears the owed-cleanup marks of `devices` of `user_id` once their
    /// cleanup is done. Blind clears: safe to run twice, and a mark that
    /// is not there is no error.
    pub async fn cleanups_done(&self, user_id: &str, devices: &[String]) -> Result<()> {
        let k = self.keys().clone();
        self.db
            .run(|tx, _| {
                for device in devices {
                    tx.clear(&k.cleanup_owed.pack(&(user_id, device.as_str())));
                }
                async { Ok::<_, Error>(()) }
            })
            .await
    }

    /// Deletes every device of `user_id` with its token and E2EE keys.
    /// Returns the deleted device IDs.
    pub async fn delete_all_devices(&self, user_id: &str) -> Result<Vec<String>> {
        let k = self.keys().clone();
        // Safe to run twice: as delete_devices (a second run finds none).
        self.db
            .run(|tx, _| {
                let k = k.clone();
                async move { delete_devices_where(&tx, &k, user_id, |_| true).await }
            })
            .await
    }

    /// Stores a new UIA session.
    pub async fn put_uia_session(&self, session: &str, record: &UiaSession) -> Result<()> {
        let key = self.keys().uia.pack(&session);
        let value = encode(record);
        // Safe to run twice: a blind write of a fixed value.
        self.db
            .run(|tx, _| {
                tx.set(&key, &value);
                async { Ok::<_, Error>(()) }
            })
            .await
    }

    /// A stored UIA session that is still open (not taken).
    pub async fn uia_session(&self, session: &str) -> Result<Option<UiaSession>> {
        let key = self.keys().uia.pack(&session);
        // Read-only: safe to run any number of times.
        let raw = self.db.run(|tx, _| tx_get(tx, key.clone())).await?;
        let record: Option<UiaSession> = raw.map(|v| decode("uia", &v)).transpose()?;
        Ok(record.filter(|s| s.taken_by.is_none()))
    }

    /// Takes an open UIA session for the caller (each session completes
    /// once) and returns it; `None` if there is none or another call took
    /// it. `taker` is a random ID the caller draws once per call, outside
    /// the transaction: the session is marked taken by it in the same
    /// transaction, so the marker is the record itself.
    ///
    /// A taken session stays stored, as an abandoned one does (the UIA
    /// service refuses both: a taken one at once, an open one after its
    /// 30-minute lifetime); sessions are a few dozen bytes each and are not
    /// collected.
    pub async fn take_uia_session(&self, session: &str, taker: u64) -> Result<Option<UiaSession>> {
        let key = self.keys().uia.pack(&session);
        // Safe to run twice: a retry after `commit_unknown_result` whose
        // first attempt committed finds the session marked taken by this
        // call's `taker` and returns it again (a take by another call still
        // answers `None`).
        self.db
            .run(|tx, _| {
                let key = key.clone();
                async move {
                    let Some(raw) = tx.get(&key, false).await? else {
                        return Ok(None);
                    };
                    let mut record: UiaSession = decode("uia", &raw)?;
                    match record.taken_by {
                        None => {
                            record.taken_by = Some(taker);
                            tx.set(&key, &encode(&record));
                            Ok(Some(record))
                        }
                        Some(by) if by == taker => Ok(Some(record)),
                        Some(_) => Ok::<_, Error>(None),
                    }
                }
            })
            .await
    }
}

pub(super) async fn tx_get(tx: Transaction, key: Vec<u8>) -> Result<Option<Vec<u8>>> {
    Ok(tx.get(&key, false).await?)
}

/// Whether `user_id` exists and is not deactivated (adds a read conflict on
/// the record, so a concurrent deactivation aborts the caller).
async fn is_active(tx: &Transaction, k: &super::Layout, user_id: &str) -> Result<bool> {
    match tx.get(&k.user.pack(&user_id), false).await? {
        Some(raw) => Ok(!decode::<UserRecord>("user", &raw)?.deactivated),
        None => Ok(false),
    }
}

/// Writes a device and its token entry. `old` is the record being replaced.
fn put_device(
    tx: &Transaction,
    k: &super::Layout,
    user_id: &str,
    device: &NewDevice,
    now_ms: u64,
    old: Option<DeviceRecord>,
) {
    let record = DeviceRecord {
        display_name: device
            .display_name
            .clone()
            .or_else(|| old.as_ref().and_then(|o| o.display_name.clone())),
        token_hash: device.token_hash.clone(),
        created_ms: old.map_or(now_ms, |o| o.created_ms),
    };
    let token = TokenRecord {
        user_id: user_id.to_owned(),
        device_id: device.device_id.clone(),
    };
    tx.set(
        &k.device.pack(&(user_id, device.device_id.as_str())),
        &encode(&record),
    );
    tx.set(
        &k.token.pack(&device.token_hash.as_slice()),
        &encode(&token),
    );
}

/// Records, in the transaction that deletes device `device_id` of
/// `user_id`, that its cleanup in the `transitory` database (inbox,
/// device-list change) is owed, until [`AccountsDb::cleanups_done`].
fn owe_cleanup(tx: &Transaction, k: &super::Layout, user_id: &str, device_id: &str) {
    tx.set(&k.cleanup_owed.pack(&(user_id, device_id)), b"");
}

/// Deletes the devices of `user_id` whose ID passes `pred`, with their
/// tokens and E2EE keys. Returns the deleted IDs.
async fn delete_devices_where(
    tx: &Transaction,
    k: &super::Layout,
    user_id: &str,
    pred: impl Fn(&str) -> bool,
) -> Result<Vec<String>> {
    let space: Subspace = k.device.subspace(&user_id);
    let kvs = tx.get_range_all(range_of(&space), false).await?;
    let mut deleted = Vec::new();
    for kv in kvs {
        let (_, device_id): (String, String) = unpack("device", &k.device, &kv.key)?;
        if pred(&device_id) {
            let record: DeviceRecord = decode("device", &kv.value)?;
            tx.clear(&k.token.pack(&record.token_hash.as_slice()));
            tx.clear(&kv.key);
            k.device_e2ee.clear(tx, user_id, &device_id);
            owe_cleanup(tx, k, user_id, &device_id);
            deleted.push(device_id);
        }
    }
    Ok(deleted)
}
