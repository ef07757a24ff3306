//! Registration tokens made through the admin API (`server/registration_token`).
//!
//! One record per token; [`AccountsDb::create_user_with_token`] counts a
//! use in the transaction that creates the account ([`use_token`]), so the
//! count is exact under concurrent registrations.

use super::layout::Layout;
use super::{AccountsDb, Error, RegistrationTokenRecord, Result};
use super::{decode, encode, range_of, unpack};
use crate::kv::Transaction;

/// Counts one use of `token` in `tx` if it is valid at `now_ms`; `false`
/// (nothing written) if it is unknown, used up or expired. Reads the record
/// with a conflict, so two transactions cannot both take its last use.
pub(super) async fn use_token(
    tx: &Transaction,
    k: &Layout,
    token: &str,
    now_ms: u64,
) -> Result<bool> {
    let key = k.registration_token.pack(&token);
    let Some(raw) = tx.get(&key, false).await? else {
        return Ok(false);
    };
    let mut record: RegistrationTokenRecord = decode("registration_token", &raw)?;
    if !record.is_valid(now_ms) {
        return Ok(false);
    }
    record.completed += 1;
    tx.set(&key, &encode(&record));
    Ok(true)
}

impl AccountsDb {
    /// Stores a new token; `false` (nothing written) if it exists. Safe to
    /// run twice: a retry finds its own record and answers `false`, which
    /// the caller reads as "exists" only when it did not just create it
    /// (`maybe_committed`; see `service::admin`).
    pub async fn create_registration_token(
        &self,
        token: &str,
        record: &RegistrationTokenRecord,
    ) -> Result<bool> {
        let key = self.keys().registration_token.pack(&token);
        let value = encode(record);
        // Safe to run twice: a MaybeCommitted retry that finds this exact record takes it
        // as its own (below).
        self.db
            .run(|tx, maybe_committed| {
                let (key, value) = (key.clone(), value.clone());
                async move {
                    match tx.get(&key, false).await? {
                        // Ours, from an attempt whose commit result was unknown.
                        Some(stored) if maybe_committed.0 && stored == value => Ok(true),
                        Some(_) => Ok(false),
                        None => {
                            tx.set(&key, &value);
                            Ok::<_, Error>(true)
                        }
                    }
                }
            })
            .await
    }

    /// One token's record.
    pub async fn registration_token(&self, token: &str) -> Result<Option<RegistrationTokenRecord>> {
        let key = self.keys().registration_token.pack(&token);
        // Read-only: safe to run any number of times.
        let raw = self
            .db
            .run(|tx, _| super::users::tx_get(tx, key.clone()))
            .await?;
        raw.map(|v| decode("registration_token", &v))
            .transpose()
            .map_err(Into::into)
    }

    /// Every token, in token order.
    pub async fn registration_tokens(&self) -> Result<Vec<(String, RegistrationTokenRecord)>> {
        let space = self.keys().registration_token.clone();
        let kvs = self.db.read_range(range_of(&space)).await?;
        kvs.iter()
            .map(|kv| {
                let (token,): (String,) = unpack("registration_token", &space, &kv.key)?;
                Ok((token, decode("registration_token", &kv.value)?))
            })
            .collect()
    }

    /// Sets `uses_allowed` and `expiry_time` of a token where given (the
    /// outer `Some`; an inner `None` means unlimited / never). Returns the
    /// new record, or `None` if there is no such token. Safe to run twice:
    /// it sets given values.
    pub async fn update_registration_token(
        &self,
        token: &str,
        uses_allowed: Option<Option<u64>>,
        expiry_time: Option<Option<u64>>,
    ) -> Result<Option<RegistrationTokenRecord>> {
        let key = self.keys().registration_token.pack(&token);
        // Safe to run twice: writes fields to the given values.
        self.db
            .run(|tx, _| {
                let key = key.clone();
                async move {
                    let Some(raw) = tx.get(&key, false).await? else {
                        return Ok(None);
                    };
                    let mut record: RegistrationTokenRecord = decode("registration_token", &raw)?;
                    if let Some(uses) = uses_allowed {
                        record.uses_allowed = uses;
                    }
                    if let Some(expiry) = expiry_time {
                        record.expiry_time = expiry;
                    }
                    tx.set(&key, &encode(&record));
                    Ok::<_, Error>(Some(record))
                }
            })
            .await
    }

    /// Deletes a token; `false` if there was none. Safe to run twice (a
    /// retry finds nothing and answers `false`; the caller reports the
    /// first attempt's answer only when the commit is known).
    pub async fn delete_registration_token(&self, token: &str) -> Result<bool> {
        let key = self.keys().registration_token.pack(&token);
        self.db
            .run(|tx, maybe_committed| {
                let key = key.clone();
                async move {
                    let existed = tx.get(&key, false).await?.is_some();
                    tx.clear(&key);
                    Ok::<_, Error>(existed || maybe_committed.0)
                }
            })
            .await
    }
}
