//! Profiles, account data (current values and the change log), filters, push
//! rules and the server's signing key.

use std::collections::BTreeMap;

use foundationdb_tuple::{Subspace, Versionstamp};
use serde::{Deserialize, Serialize};

use super::{AccountsDb, Error, Position, Result, SigningKeyRecord};
use super::{decode, encode, range_of, unpack};
use crate::db::notify::Topic;
use crate::db::split;
use crate::kv::{KeySelector, MaybeCommitted, RangeOption};

/// One entry of the account-data change log: the latest value of one
/// (room, type) of a user, changed at `position`.
#[derive(Clone, Debug)]
pub struct AccountDataChange {
    /// When the value was written.
    pub position: Position,
    /// The room, or `None` for global account data.
    pub room_id: Option<String>,
    /// The event type.
    pub event_type: String,
    /// The JSON content (stored text that is not JSON reads as
    /// [`Error::Corrupt`]).
    pub content: serde_json::Value,
}

/// The value of an `account_data_log` entry.
#[derive(Serialize, Deserialize)]
struct LogEntry {
    room_id: Option<String>,
    event_type: String,
    content: String,
}

/// Length of the versionstamp that prefixes a current account-data value.
const STAMP_LEN: usize = 10;

impl AccountsDb {
    /// Every profile field of `user_id`.
    pub async fn profile(&self, user_id: &str) -> Result<BTreeMap<String, serde_json::Value>> {
        let k = self.keys().clone();
        let space = k.profile.subspace(&user_id);
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
                let (_, field): (String, String) = unpack("profile", &k.profile, &kv.key)?;
                let value = serde_json::from_slice(&kv.value).map_err(|e| Error::Corrupt {
                    subspace: "profile",
                    source: Box::new(e),
                })?;
                Ok((field, value))
            })
            .collect()
    }

    /// Sets (or with `None` removes) one profile field of `user_id`.
    pub async fn set_profile_field(
        &self,
        user_id: &str,
        field: &str,
        value: Option<&serde_json::Value>,
    ) -> Result<()> {
        let key = self.keys().profile.pack(&(user_id, field));
        let value = value.map(|v| serde_json::to_vec(v).expect("JSON values serialize"));
        // Safe to run twice: a blind write (or clear) of a fixed value.
        self.db
            .run(|tx, _| {
                match &value {
                    Some(v) => tx.set(&key, v),
                    None => tx.clear(&key),
                }
                async { Ok::<_, Error>(()) }
            })
            .await
    }

    /// The current content of one account-data type of `user_id`, global
    /// (`room_id` `None`) or per room.
    pub async fn account_data(
        &self,
        user_id: &str,
        room_id: Option<&str>,
        event_type: &str,
    ) -> Result<Option<Box<serde_json::value::RawValue>>> {
        let key = self
            .keys()
            .account_data
            .pack(&(user_id, room_id.unwrap_or(""), event_type));
        // Read-only: safe to run any number of times.
        let raw = self
            .db
            .run(|tx, _| {
                let key = key.clone();
                async move { Ok::<_, Error>(split::get(&tx, &key, false).await?) }
            })
            .await?;
        raw.map(|v| raw_json("account_data", v.get(STAMP_LEN..).unwrap_or_default()))
            .transpose()
    }

    /// Sets one account-data type of `user_id`: the current value and a new
    /// change-log entry, both stamped with the commit's versionstamp, in one
    /// transaction that also drops the old value's log entry. Returns the
    /// change's position.
    pub async fn set_account_data(
        &self,
        user_id: &str,
        room_id: Option<&str>,
        event_type: &str,
        content: &serde_json::value::RawValue,
    ) -> Result<Position> {
        let k = self.keys().clone();
        let current_key = k
            .account_data
            .pack(&(user_id, room_id.unwrap_or(""), event_type));
        // Current value: versionstamp placeholder ++ content, split over
        // several keys past FoundationDB's value limit (`db::split`).
        let mut current = vec![0u8; STAMP_LEN];
        current.extend_from_slice(content.get().as_bytes());
        let log_key = k
            .account_data_log
            .pack_with_versionstamp(&(user_id, Versionstamp::incomplete(0)));
        let log_value = encode(&LogEntry {
            room_id: room_id.map(str::to_owned),
            event_type: event_type.to_owned(),
            content: content.get().to_owned(),
        });
        // Safe to run twice: the current value is set to the same content; a retry after
        // commit_unknown_result adds a second versionstamped log entry with that content,
        // so sync may deliver the same account data twice (harmless: clients keep the
        // latest).
        let ((), info) = self
            .db
            .run_committed(|tx, _| {
                let (k, current_key) = (k.clone(), current_key.clone());
                let (current, log_key, log_value) =
                    (current.clone(), log_key.clone(), log_value.clone());
                async move {
                    if let Some(old) = tx.get(&current_key, false).await?
                        && let Some(stamp) = old.get(..STAMP_LEN)
                    {
                        let stamp: [u8; 10] = stamp.try_into().expect("10 bytes");
                        let old_log = Versionstamp::complete(stamp, 0);
                        split::clear(&tx, &k.account_data_log.pack(&(user_id, old_log)));
                    }
                    // Safe to run twice: the writes are the same mutations,
                    // and a second run clears the first's log entry (its
                    // stamp is in the current value it reads) before
                    // writing its own.
                    split::set_versionstamped_value(&tx, &current_key, &current);
                    split::set_versionstamped_key(&tx, &log_key, &log_value);
                    crate::db::notify::bump(&tx, &k.notify, &[Topic::User(user_id)]);
                    Ok::<_, Error>(())
                }
            })
            .await?;
        Ok(Position::from_bytes(
            info.versionstamp
                .expect("a transaction that wrote has a versionstamp"),
        ))
    }

    /// Every account-data change of `user_id` after `since` (all, if `None`),
    /// oldest first, with one range read: the latest value of each (room,
    /// type) changed since then.
    pub async fn account_data_since(
        &self,
        user_id: &str,
        since: Option<Position>,
    ) -> Result<Vec<AccountDataChange>> {
        let k = self.keys().clone();
        let space: Subspace = k.account_data_log.subspace(&user_id);
        let (begin, end) = space.range();
        let begin = match since {
            Some(p) => KeySelector::first_greater_or_equal(split::after_record(
                &space.pack(&Versionstamp::complete(p.to_bytes(), 0)),
            )),
            None => KeySelector::first_greater_or_equal(begin),
        };
        let range = RangeOption {
            begin,
            end: KeySelector::first_greater_or_equal(end),
            limit: None,
            reverse: false,
        };
        // Read-only: safe to run any number of times.
        let kvs = self
            .db
            .run(|tx, _| {
                let range = range.clone();
                async move { tx.get_range_all(range, true).await }
            })
            .await?;
        split::join(kvs)
            .into_iter()
            .map(|kv| {
                let (_, stamp): (String, Versionstamp) =
                    unpack("account_data_log", &k.account_data_log, &kv.key)?;
                let entry: LogEntry = decode("account_data_log", &kv.value)?;
                Ok(AccountDataChange {
                    position: Position::of_versionstamp(&stamp),
                    room_id: entry.room_id,
                    event_type: entry.event_type,
                    content: serde_json::from_str(&entry.content).map_err(|e| Error::Corrupt {
                        subspace: "account_data_log",
                        source: Box::new(e),
                    })?,
                })
            })
            .collect()
    }

    /// Stores a filter definition (JSON) under `filter_id`.
    pub async fn put_filter(&self, user_id: &str, filter_id: &str, json: &[u8]) -> Result<()> {
        let key = self.keys().filter.pack(&(user_id, filter_id));
        // Safe to run twice: a blind write of a fixed value under a caller-chosen ID.
        self.db
            .run(|tx, _| {
                split::set(&tx, &key, json);
                async { Ok::<_, Error>(()) }
            })
            .await
    }

    /// A stored filter definition (JSON).
    pub async fn filter(&self, user_id: &str, filter_id: &str) -> Result<Option<Vec<u8>>> {
        let key = self.keys().filter.pack(&(user_id, filter_id));
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| {
                let key = key.clone();
                async move { Ok::<_, Error>(split::get(&tx, &key, false).await?) }
            })
            .await
    }

    /// The user's stored push rule set (JSON), if they ever changed it.
    pub async fn push_rules(&self, user_id: &str) -> Result<Option<Vec<u8>>> {
        let key = self.keys().push_rules.pack(&user_id);
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| {
                let key = key.clone();
                async move { Ok::<_, Error>(split::get(&tx, &key, false).await?) }
            })
            .await
    }

    /// Read-modify-write of the user's push rule set (JSON): `f` gets the
    /// stored value and whether an earlier attempt may have committed, and
    /// returns the new value, or a rejection `R`, in which case nothing is
    /// written. `f` may run more than once; an attempt commits only when
    /// `f` accepted, so with [`MaybeCommitted`] true an earlier attempt of
    /// this call applied `f` (a removal that finds nothing to remove then
    /// succeeds: the earlier attempt removed it).
    pub async fn update_push_rules<T, R>(
        &self,
        user_id: &str,
        f: impl Fn(Option<&[u8]>, MaybeCommitted) -> std::result::Result<(Vec<u8>, T), R>,
    ) -> Result<std::result::Result<T, R>> {
        let key = self.keys().push_rules.pack(&user_id);
        let f = &f;
        // Safe to run twice when `f` is idempotent (setting a rule, its
        // actions or `enabled`: a second run changes nothing), and for a
        // removal because `f` is told of the earlier attempt: a retry after
        // commit_unknown_result that finds the rule gone succeeds.
        self.db
            .run(|tx, maybe_committed| {
                let key = key.clone();
                async move {
                    let old = split::get(&tx, &key, false).await?;
                    Ok::<_, Error>(match f(old.as_deref(), maybe_committed) {
                        Ok((new, out)) => {
                            split::set(&tx, &key, &new);
                            Ok(out)
                        }
                        Err(r) => Err(r),
                    })
                }
            })
            .await
    }

    /// The server's signing key: the stored one, or else `candidate`, stored
    /// now. Concurrent first starts agree on one key (the loser's transaction
    /// conflicts, retries and reads the winner's).
    pub async fn signing_key_or_insert(
        &self,
        candidate: &SigningKeyRecord,
    ) -> Result<SigningKeyRecord> {
        let key = self.keys().signing_key.pack(&());
        // Safe to run twice: a second run finds the key the first inserted and returns it.
        let raw = self
            .db
            .run(|tx, _| {
                let key = key.clone();
                async move {
                    match tx.get(&key, false).await? {
                        Some(raw) => Ok::<_, Error>(Some(raw)),
                        None => {
                            tx.set(&key, &encode(candidate));
                            Ok(None)
                        }
                    }
                }
            })
            .await?;
        match raw {
            Some(raw) => Ok(decode("signing_key", &raw)?),
            None => Ok(candidate.clone()),
        }
    }
}

fn raw_json(subspace: &'static str, bytes: &[u8]) -> Result<Box<serde_json::value::RawValue>> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::Corrupt {
        subspace,
        source: Box::new(e),
    })?;
    serde_json::value::RawValue::from_string(text.to_owned()).map_err(|e| Error::Corrupt {
        subspace,
        source: Box::new(e),
    })
}
