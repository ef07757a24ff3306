//! The four streams of the `transitory` database: to-device messages,
//! typing, presence and device-list changes (see the module docs of
//! [`super`] for their invariants).

use foundationdb_tuple::Versionstamp;
use serde::{Deserialize, Serialize};

use super::{Error, Position, Result, TransitoryDb};
use super::{after, decode, encode, position_of, replace_log_entry, replace_typing_log, unpack};
use crate::db::notify::{self, Topic};
use crate::kv::{MutationType, RangeOption};

/// The value of a `to_device/inbox` entry, as written: the content is the
/// sender's JSON text, kept as sent.
#[derive(Serialize)]
struct ToDeviceRecord<'a> {
    sender: &'a str,
    event_type: &'a str,
    content: &'a str,
}

/// The value of a `to_device/inbox` entry, as read: the content parsed
/// (text that is not JSON reads as [`Error::Corrupt`]).
#[derive(Deserialize)]
struct StoredToDevice {
    sender: String,
    event_type: String,
    #[serde(deserialize_with = "crate::db::json_text::deserialize")]
    content: serde_json::Value,
}

/// One to-device message as delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToDeviceMessage {
    /// The commit versionstamp of its send.
    pub position: Position,
    /// The sending user.
    pub sender: String,
    /// The event type.
    pub event_type: String,
    /// The JSON content.
    pub content: serde_json::Value,
}

/// What [`TransitoryDb::to_device_since`] returns.
#[derive(Clone, Debug, Default)]
pub struct ToDeviceBatch {
    /// Pending messages after `since`, in send order, at most `limit`.
    pub messages: Vec<ToDeviceMessage>,
    /// Whether more messages are pending after the last one returned. When
    /// true, the caller's next position must not pass the last message's
    /// position, so the rest come with the next sync.
    pub more: bool,
}

/// Who types in a room, and since when the set is as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypingUpdate {
    /// The position of the room's latest typing change.
    pub position: Position,
    /// The users typing, with when their typing expires (ms since the epoch).
    pub typing: Vec<(String, u64)>,
}

/// A user's stored presence (`presence/current`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceRecord {
    /// `online`, `unavailable` or `offline`.
    pub presence: String,
    /// The status message, if any.
    #[serde(default)]
    pub status_msg: Option<String>,
    /// The last user activity (a sync, a presence set, a message), ms since
    /// the epoch.
    pub last_active_ms: u64,
}

impl TransitoryDb {
    // ---- to-device -----------------------------------------------------

    /// Applies one `sendToDevice` transaction of `sender` (`sender_device`,
    /// `txn_id`): appends each `(user, device, content)` to its device's
    /// inbox at the commit's versionstamp, and records the transaction ID,
    /// unless it was already applied. Returns whether it was applied now
    /// (`false` for a retried transaction, which changes nothing).
    ///
    /// Each recipient device must appear at most once (the caller resolves
    /// `*`), so a device's messages have distinct positions.
    pub async fn send_to_device(
        &self,
        sender: (&str, &str),
        txn_id: &str,
        event_type: &str,
        now_ms: u64,
        messages: &[(String, String, String)],
    ) -> Result<bool> {
        let l = self.layout.clone();
        let txn_key = l.txn.pack(&(sender.0, sender.1, txn_id));
        let expiry_key = l
            .txn_expiry
            .pack(&(now_ms as i64, sender.0, sender.1, txn_id));
        let entries: Vec<(Vec<u8>, Vec<u8>)> = messages
            .iter()
            .map(|(user, device, content)| {
                let key = l.inbox.pack_with_versionstamp(&(
                    user.as_str(),
                    device.as_str(),
                    Versionstamp::incomplete(0),
                ));
                let value = encode(&ToDeviceRecord {
                    sender: sender.0,
                    event_type,
                    content,
                });
                (key, value)
            })
            .collect();
        let mut users: Vec<&str> = messages.iter().map(|(user, _, _)| user.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        let recipients: &[Topic<'_>] = &users.into_iter().map(Topic::User).collect::<Vec<_>>();
        // Safe to run twice: the transaction-ID record is written in the
        // same transaction as the messages, so a retry after
        // `commit_unknown_result` that committed finds it and appends
        // nothing (answering `false`, which the caller treats as success).
        self.db
            .run(|tx, _| {
                let (l, txn_key, expiry_key, entries) =
                    (l.clone(), txn_key.clone(), expiry_key.clone(), &entries);
                async move {
                    if tx.get(&txn_key, false).await?.is_some() {
                        return Ok::<_, Error>(false);
                    }
                    tx.set(&txn_key, &now_ms.to_le_bytes());
                    tx.set(&expiry_key, &[]);
                    for (key, value) in entries {
                        tx.atomic_op(key, value, MutationType::SetVersionstampedKey);
                    }
                    if !entries.is_empty() {
                        notify::bump(&tx, &l.notify, recipients);
                    }
                    Ok(true)
                }
            })
            .await
    }

    /// The to-device messages of `user`'s `device` after `since` (all if
    /// `None`), oldest first, at most `limit`, with one range read of the
    /// device's inbox `(user, device, versionstamp)`. In the same
    /// transaction it deletes every message at or before `since`: the
    /// device's sync acknowledged them by presenting `since`. Whether there
    /// is one is a one-key read first, so a sync with nothing to
    /// acknowledge stays read-only (no commit).
    ///
    /// The reads are snapshot reads and the deletion a blind range clear,
    /// so the transaction never conflicts with senders; a message committed
    /// after its read version is simply left for the next sync.
    pub async fn to_device_since(
        &self,
        user: &str,
        device: &str,
        since: Option<Position>,
        limit: usize,
    ) -> Result<ToDeviceBatch> {
        let l = self.layout.clone();
        let space = l.inbox.subspace(&(user, device));
        let range = after(&space, since, Some(limit + 1));
        let ack = since.map(|p| {
            let (begin, _) = space.range();
            let mut end = space.pack(&Versionstamp::complete(p.to_bytes(), 0xffff));
            end.push(0x00);
            (begin, end)
        });
        // Safe to run twice: clearing the acknowledged messages again
        // clears nothing more (the range ends at `since`), and the read
        // returns the messages after `since`, which the first run left.
        let kvs = self
            .db
            .run(|tx, _| {
                let (range, ack) = (range.clone(), ack.clone());
                async move {
                    // Clear only if something is acknowledged: an empty
                    // clear is still a write, and one commit per sync.
                    if let Some((begin, end)) = &ack {
                        let acked = RangeOption::new(begin.clone(), end.clone()).limit(1);
                        if !tx.get_range_all(acked, true).await?.is_empty() {
                            tx.clear_range(begin, end);
                        }
                    }
                    Ok::<_, Error>(tx.get_range_all(range, true).await?)
                }
            })
            .await?;
        let more = kvs.len() > limit;
        let messages = kvs
            .iter()
            .take(limit)
            .map(|kv| {
                let stamp: Versionstamp = unpack("inbox", &space, &kv.key)?;
                let record: StoredToDevice = decode("inbox", &kv.value)?;
                Ok(ToDeviceMessage {
                    position: position_of(&stamp),
                    sender: record.sender,
                    event_type: record.event_type,
                    content: record.content,
                })
            })
            .collect::<Result<_>>()?;
        Ok(ToDeviceBatch { messages, more })
    }

    /// After `devices` of `user` were deleted, in one transaction: deletes
    /// each one's pending to-device messages (nobody will acknowledge them)
    /// and records one device-list change for `user`, as
    /// [`TransitoryDb::mark_device_lists_changed`] does. Returns the
    /// commit's position.
    pub async fn devices_deleted(&self, user: &str, devices: &[String]) -> Result<Position> {
        let l = self.layout.clone();
        // Safe to run twice: clearing an inbox that is already empty does
        // nothing, and a second device-list record replaces the first (a
        // client told of one change more re-reads the user's keys).
        let ((), info) = self
            .db
            .run_committed(|tx, _| {
                let l = l.clone();
                async move {
                    for device in devices {
                        let (begin, end) = l.inbox.subspace(&(user, device.as_str())).range();
                        tx.clear_range(&begin, &end);
                    }
                    replace_log_entry(&tx, &l.device_list_log.subspace(&user));
                    notify::bump(&tx, &l.notify, &[Topic::Peers(user)]);
                    Ok::<_, Error>(())
                }
            })
            .await?;
        Ok(Position::from_bytes(
            info.versionstamp.expect("a transaction that wrote"),
        ))
    }

    /// Collects up to `limit` transaction-ID records sent before
    /// `before_ms`, oldest first; returns how many it removed. A retry of
    /// such an old transaction would be applied again.
    pub async fn collect_txn_ids(&self, before_ms: u64, limit: usize) -> Result<usize> {
        let l = self.layout.clone();
        let (begin, _) = l.txn_expiry.range();
        let end = l.txn_expiry.pack(&(before_ms as i64,));
        // Safe to run twice: a retry re-reads the expired records; those the
        // first run removed are gone, so it removes (and counts) only
        // others that are expired too, which the collector would remove next.
        self.db
            .run(|tx, _| {
                let (l, begin, end) = (l.clone(), begin.clone(), end.clone());
                async move {
                    let range = RangeOption::new(begin, end).limit(limit);
                    let kvs = tx.get_range_all(range, false).await?;
                    for kv in &kvs {
                        let (_, user, device, txn): (i64, String, String, String) =
                            unpack("txn_expiry", &l.txn_expiry, &kv.key)?;
                        tx.clear(&kv.key);
                        tx.clear(&l.txn.pack(&(user, device, txn)));
                    }
                    Ok::<_, Error>(kvs.len())
                }
            })
            .await
    }

    // ---- typing ----------------------------------------------------------

    /// Sets `user` typing in `room` until `until_ms`, or (with `None`) not
    /// typing; records the room's change at the commit's versionstamp.
    /// Stopping when not typing changes nothing.
    pub async fn set_typing(&self, room: &str, user: &str, until_ms: Option<u64>) -> Result<()> {
        let l = self.layout.clone();
        let key = l.typing.pack(&(room, user));
        let log = l.typing_log.subspace(&room);
        // Safe to run twice: setting the same expiry again stores the same
        // value, and a retried stop finds the entry gone and returns early;
        // a retried start records one more typing change of the room, so a
        // client re-reads the same typing set.
        self.db
            .run(|tx, _| {
                let (l, key, log) = (l.clone(), key.clone(), log.clone());
                async move {
                    match until_ms {
                        Some(until) => tx.set(&key, &until.to_le_bytes()),
                        None => {
                            if tx.get(&key, false).await?.is_none() {
                                return Ok(());
                            }
                            tx.clear(&key);
                        }
                    }
                    replace_typing_log(&tx, &log, &l.typing_changed, room).await?;
                    notify::bump(&tx, &l.notify, &[Topic::Room(room)]);
                    Ok::<_, Error>(())
                }
            })
            .await
    }

    /// The typing set of `room` if it changed after `since` (always, if
    /// `None` and anyone types): one range read of the room's log
    /// `(room, versionstamp)` and one of its current set, at one snapshot.
    /// Entries expired at `now_ms` but not yet collected are left out.
    pub async fn typing_since(
        &self,
        room: &str,
        since: Option<Position>,
        now_ms: u64,
    ) -> Result<Option<TypingUpdate>> {
        let l = self.layout.clone();
        let log = l.typing_log.subspace(&room);
        let current = l.typing.subspace(&room);
        let (log_range, cur_range) = (after(&log, since, Some(1)), after(&current, None, None));
        // Read-only: safe to run any number of times.
        let (changed, kvs) = self
            .db
            .run(|tx, _| {
                let (log_range, cur_range) = (log_range.clone(), cur_range.clone());
                async move {
                    let changed = tx.get_range_all(log_range, true).await?;
                    let kvs = tx.get_range_all(cur_range, true).await?;
                    Ok::<_, Error>((changed, kvs))
                }
            })
            .await?;
        let Some(entry) = changed.first() else {
            return Ok(None);
        };
        let stamp: Versionstamp = unpack("typing_log", &log, &entry.key)?;
        let mut typing = Vec::new();
        for kv in &kvs {
            let user: String = unpack("typing", &current, &kv.key)?;
            let until = u64_value("typing", &kv.value)?;
            if until > now_ms {
                typing.push((user, until));
            }
        }
        if since.is_none() && typing.is_empty() {
            return Ok(None);
        }
        Ok(Some(TypingUpdate {
            position: position_of(&stamp),
            typing,
        }))
    }

    /// Removes up to `limit` typing entries expired at `now_ms`, recording a
    /// change in each room concerned (so sync delivers the shorter set).
    /// Returns how many it removed. Each removal re-checks the entry in its
    /// transaction, so a user who typed again meanwhile is left alone.
    pub async fn collect_typing(&self, now_ms: u64, limit: usize) -> Result<usize> {
        let l = self.layout.clone();
        let (begin, end) = l.typing.range();
        // Safe to run twice: each removal re-checks the entry's expiry, so a
        // retry finds the entries the first run removed gone and removes
        // only others that are expired too.
        self.db
            .run(|tx, _| {
                let (l, begin, end) = (l.clone(), begin.clone(), end.clone());
                async move {
                    let mut removed = 0;
                    let mut rooms = std::collections::BTreeSet::new();
                    let kvs = tx
                        .get_range_all(RangeOption::new(begin, end), false)
                        .await?;
                    for kv in &kvs {
                        if removed == limit {
                            break;
                        }
                        if u64_value("typing", &kv.value)? <= now_ms {
                            let (room, _): (String, String) = unpack("typing", &l.typing, &kv.key)?;
                            tx.clear(&kv.key);
                            rooms.insert(room);
                            removed += 1;
                        }
                    }
                    for room in &rooms {
                        let log = l.typing_log.subspace(&room.as_str());
                        replace_typing_log(&tx, &log, &l.typing_changed, room).await?;
                    }
                    if removed > 0 {
                        let topics: Vec<Topic<'_>> =
                            rooms.iter().map(|r| Topic::Room(r.as_str())).collect();
                        notify::bump(&tx, &l.notify, &topics);
                    }
                    Ok::<_, Error>(removed)
                }
            })
            .await
    }

    // ---- presence --------------------------------------------------------

    /// A user's stored presence.
    pub async fn presence(&self, user: &str) -> Result<Option<PresenceRecord>> {
        let key = self.layout.presence.pack(&user);
        // Read-only: safe to run any number of times.
        let raw = self
            .db
            .run(|tx, _| {
                let key = key.clone();
                async move { Ok::<_, Error>(tx.get(&key, false).await?) }
            })
            .await?;
        raw.map(|v| decode("presence", &v))
            .transpose()
            .map_err(Into::into)
    }

    /// Read-modify-write of a user's presence: `f` gets the stored record
    /// and returns the new one, or `None` to change nothing. A change is
    /// recorded in the user's log at the commit's versionstamp when
    /// `visible(old, new)` says sync must deliver it (a bare activity
    /// refresh is stored silently). Returns the record stored afterwards.
    pub async fn update_presence(
        &self,
        user: &str,
        f: impl Fn(Option<&PresenceRecord>) -> Option<PresenceRecord>,
        visible: impl Fn(Option<&PresenceRecord>, &PresenceRecord) -> bool,
    ) -> Result<Option<PresenceRecord>> {
        let l = self.layout.clone();
        let key = l.presence.pack(&user);
        let log = l.presence_log.subspace(&user);
        let (f, visible) = (&f, &visible);
        // Safe to run twice: `f` computes the new record from the stored
        // one (with the caller's fixed `now`), so a retry after a commit
        // that applied sees that record and stores the same one or nothing;
        // at most it records one more presence change, which delivers the
        // same presence again.
        self.db
            .run(|tx, _| {
                let (l, key, log) = (l.clone(), key.clone(), log.clone());
                async move {
                    let old = match tx.get(&key, false).await? {
                        Some(v) => Some(decode::<PresenceRecord>("presence", &v)?),
                        None => None,
                    };
                    let Some(new) = f(old.as_ref()) else {
                        return Ok::<_, Error>(old);
                    };
                    tx.set(&key, &encode(&new));
                    if visible(old.as_ref(), &new) {
                        replace_log_entry(&tx, &log);
                        notify::bump(&tx, &l.notify, &[Topic::Peers(user)]);
                    }
                    Ok(Some(new))
                }
            })
            .await
    }

    /// The presence of each of `users` whose presence changed after `since`
    /// (every user with a presence, if `None`): per user one range read of
    /// its log `(user, versionstamp)` and one key read, all in one snapshot.
    pub async fn presence_since(
        &self,
        users: &[String],
        since: Option<Position>,
    ) -> Result<Vec<(String, Position, PresenceRecord)>> {
        let l = self.layout.clone();
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| {
                let l = l.clone();
                async move {
                    let mut out = Vec::new();
                    for user in users {
                        let log = l.presence_log.subspace(&user.as_str());
                        let hit = tx.get_range_all(after(&log, since, Some(1)), true).await?;
                        let Some(entry) = hit.first() else { continue };
                        let stamp: Versionstamp = unpack("presence_log", &log, &entry.key)?;
                        let Some(raw) = tx.get(&l.presence.pack(&user.as_str()), true).await?
                        else {
                            continue;
                        };
                        out.push((user.clone(), position_of(&stamp), decode("presence", &raw)?));
                    }
                    Ok::<_, Error>(out)
                }
            })
            .await
    }

    /// Every user with a stored presence and their record, up to `limit`,
    /// starting after `after_user` (for the collector's paging).
    pub async fn presence_page(
        &self,
        after_user: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, PresenceRecord)>> {
        let l = self.layout.clone();
        let (begin, end) = l.presence.range();
        let begin = match after_user {
            Some(u) => {
                let mut k = l.presence.pack(&u);
                k.push(0x00);
                k
            }
            None => begin,
        };
        // Read-only: safe to run any number of times.
        let kvs = self
            .db
            .run(|tx, _| {
                let range = RangeOption::new(begin.clone(), end.clone()).limit(limit);
                async move { Ok::<_, Error>(tx.get_range_all(range, true).await?) }
            })
            .await?;
        kvs.iter()
            .map(|kv| {
                let user: String = unpack("presence", &l.presence, &kv.key)?;
                Ok((user, decode("presence", &kv.value)?))
            })
            .collect()
    }

    // ---- device lists ----------------------------------------------------

    /// Records that the devices or E2EE keys of each of `users` changed, at
    /// the commit's versionstamp (only the latest record per user is kept).
    /// Returns the commit's position.
    pub async fn mark_device_lists_changed(&self, users: &[&str]) -> Result<Position> {
        let l = self.layout.clone();
        // Safe to run twice: each user's log keeps only its latest record,
        // so a retry replaces the first run's record with one at its own
        // commit (a client told of one change more re-reads the user's keys).
        let ((), info) = self
            .db
            .run_committed(|tx, _| {
                let l = l.clone();
                async move {
                    for user in users {
                        replace_log_entry(&tx, &l.device_list_log.subspace(user));
                    }
                    let topics: Vec<Topic<'_>> = users.iter().map(|u| Topic::Peers(u)).collect();
                    notify::bump(&tx, &l.notify, &topics);
                    Ok::<_, Error>(())
                }
            })
            .await?;
        Ok(Position::from_bytes(
            info.versionstamp.expect("a transaction that wrote"),
        ))
    }

    /// Which of `users` had a device-list change after `since` and at or
    /// before `upto` (no upper bound if `None`), with its position: per
    /// user one range read of its log `(user, versionstamp)`, in one
    /// snapshot.
    pub async fn device_lists_changed(
        &self,
        users: &[String],
        since: Option<Position>,
        upto: Option<Position>,
    ) -> Result<Vec<(String, Position)>> {
        let l = self.layout.clone();
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| {
                let l = l.clone();
                async move {
                    let mut out = Vec::new();
                    for user in users {
                        let log = l.device_list_log.subspace(&user.as_str());
                        let hits = tx.get_range_all(after(&log, since, Some(1)), true).await?;
                        let Some(entry) = hits.first() else { continue };
                        let stamp: Versionstamp = unpack("device_list_log", &log, &entry.key)?;
                        let pos = position_of(&stamp);
                        if upto.is_none_or(|u| pos <= u) {
                            out.push((user.clone(), pos));
                        }
                    }
                    Ok::<_, Error>(out)
                }
            })
            .await
    }
}

/// Decodes an 8-byte little-endian value of `subspace`.
fn u64_value(subspace: &'static str, bytes: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| Error::Corrupt {
        subspace,
        source: format!("{} bytes, expected 8", bytes.len()).into(),
    })?;
    Ok(u64::from_le_bytes(arr))
}

// ---- for sync (added by the sync work; docs/sync.md) ----------------------

impl TransitoryDb {
    /// **For sync.** The rooms whose typing set changed after `since` and at
    /// or before `up_to`, each with its latest change: one range read of
    /// `typing/changed` of at most `limit` entries; `None` if more lie in
    /// the range (the caller then asks each room).
    pub async fn typing_changed_rooms(
        &self,
        since: Position,
        up_to: Position,
        limit: usize,
    ) -> Result<Option<Vec<(String, Position)>>> {
        let l = self.layout.clone();
        let after_all_of = |p: Position| {
            l.typing_changed
                .subspace(&Versionstamp::complete(p.to_bytes(), 0xffff))
                .range()
        };
        let (begin, end) = (after_all_of(since), after_all_of(up_to));
        // Read-only: safe to run any number of times.
        let kvs = self
            .db
            .run(|tx, _| {
                let range = RangeOption::new(begin.1.clone(), end.1.clone()).limit(limit + 1);
                async move { Ok::<_, Error>(tx.get_range_all(range, true).await?) }
            })
            .await?;
        if kvs.len() > limit {
            return Ok(None);
        }
        kvs.iter()
            .map(|kv| {
                let (stamp, room): (Versionstamp, String) =
                    unpack("typing_changed", &l.typing_changed, &kv.key)?;
                Ok((room, position_of(&stamp)))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}
