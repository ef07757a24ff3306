//! The transitory service: typing, to-device messages, presence and the
//! collection of expired and acknowledged data (design and retention:
//! `docs/transitory.md`).
//!
//! It decides what is allowed (only members type in a room, only the owner
//! sets their presence), turns `*` into a user's devices, applies timeouts
//! read from the injected [`Clock`], and calls [`crate::db::transitory`]
//! for every read and write. Sync calls the `*_since` methods here.
//!
//! Who may import this: `sync`, `app` (which builds it) and tests; `api`
//! reaches it through `App`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ruma::events::room::member::MembershipState;
use ruma::presence::PresenceState;
use ruma::serde::Raw;
use ruma::to_device::DeviceIdOrAllDevices;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use super::clock::Clock;
use super::{Authed, Error, Result};
use crate::db::accounts::AccountsDb;

/// The largest content of one to-device message, in bytes of JSON: 65,536,
/// the size of a whole federation EDU, so a message any device could be sent
/// is never refused later on its way. Past it: 413 M_TOO_LARGE, nothing
/// sent.
pub const MAX_TO_DEVICE_CONTENT_BYTES: usize = 65_536;

/// The most one `sendToDevice` may write, in bytes of content summed over
/// every recipient device (a message to `*` counts once per device): the
/// writes must fit one FoundationDB transaction (10 MB) with room to spare.
/// Past it: 413 M_TOO_LARGE, nothing sent.
pub const MAX_TO_DEVICE_BATCH_BYTES: usize = 4_000_000;
use crate::db::rooms::RoomsDb;
use crate::db::transitory::{Position, PresenceRecord, ToDeviceBatch, TransitoryDb, TypingUpdate};

/// Settings of the transitory streams. Times in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitoryConfig {
    /// The longest a typing notice lasts, whatever timeout the client asks.
    pub typing_max_timeout_ms: u64,
    /// Most to-device messages in one sync response; the rest come next.
    pub to_device_per_sync: usize,
    /// Inactivity after which `online` becomes `unavailable`.
    pub presence_idle_ms: u64,
    /// Inactivity after which a user becomes `offline`.
    pub presence_offline_ms: u64,
    /// Activity refreshes closer together than this are not stored.
    pub presence_refresh_ms: u64,
    /// How long sendToDevice transaction IDs are remembered.
    pub txn_retention_ms: u64,
}

impl Default for TransitoryConfig {
    fn default() -> Self {
        TransitoryConfig {
            typing_max_timeout_ms: 120_000,
            to_device_per_sync: 100,
            presence_idle_ms: 5 * 60_000,
            presence_offline_ms: 30 * 60_000,
            presence_refresh_ms: 60_000,
            txn_retention_ms: 24 * 3_600_000,
        }
    }
}

/// A user's presence as seen now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceView {
    /// The state, after inactivity timeouts.
    pub presence: PresenceState,
    /// The status message.
    pub status_msg: Option<String>,
    /// Milliseconds since the last activity.
    pub last_active_ago_ms: u64,
    /// Whether the user was active within the idle timeout.
    pub currently_active: bool,
}

/// What one collection pass removed or changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Expired typing notices removed.
    pub typing: usize,
    /// Presence records moved to `unavailable` or `offline`.
    pub presence: usize,
    /// Old sendToDevice transaction IDs removed.
    pub txn_ids: usize,
}

/// The transitory service. Shared by every request (`Arc`).
pub struct Transitory {
    db: TransitoryDb,
    accounts: AccountsDb,
    rooms: RoomsDb,
    clock: Arc<dyn Clock>,
    config: TransitoryConfig,
}

/// The state a stored presence has at `now_ms` after inactivity timeouts.
fn effective(config: &TransitoryConfig, record: &PresenceRecord, now_ms: u64) -> String {
    let idle = now_ms.saturating_sub(record.last_active_ms);
    match record.presence.as_str() {
        "online" | "unavailable" if idle >= config.presence_offline_ms => "offline".into(),
        "online" if idle >= config.presence_idle_ms => "unavailable".into(),
        other => other.into(),
    }
}

fn presence_state(s: &str) -> PresenceState {
    PresenceState::from(s)
}

impl Transitory {
    /// The service over opened databases.
    pub fn new(
        databases: &crate::db::Databases,
        clock: Arc<dyn Clock>,
        config: TransitoryConfig,
    ) -> Self {
        Transitory {
            db: TransitoryDb::new(&databases.transitory),
            accounts: AccountsDb::new(&databases.accounts),
            rooms: RoomsDb::new(&databases.rooms),
            clock,
            config,
        }
    }

    /// The time now (ms since the epoch), from the injected clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The storage handle.
    pub fn db(&self) -> &TransitoryDb {
        &self.db
    }

    /// The rooms storage this service checks memberships in.
    pub fn rooms_db(&self) -> &RoomsDb {
        &self.rooms
    }

    /// The settings.
    pub fn config(&self) -> &TransitoryConfig {
        &self.config
    }

    // ---- typing ----------------------------------------------------------

    /// `PUT /rooms/{roomId}/typing/{userId}`: `timeout` `Some` to start
    /// typing (capped at `typing_max_timeout_ms`), `None` to stop.
    ///
    /// Errors: [`Error::Forbidden`] for another user's typing or a room the
    /// user has not joined.
    pub async fn set_typing(
        &self,
        authed: &Authed,
        room_id: &RoomId,
        user_id: &UserId,
        timeout: Option<Duration>,
    ) -> Result<()> {
        if user_id != authed.user_id {
            return Err(Error::Forbidden("cannot set another user's typing".into()));
        }
        let member = self.rooms.membership(room_id, user_id).await?;
        if member.is_none_or(|m| m.membership != MembershipState::Join) {
            return Err(Error::Forbidden("you are not joined to this room".into()));
        }
        let until = timeout.map(|t| {
            let ms = (t.as_millis() as u64).min(self.config.typing_max_timeout_ms);
            self.clock.now_ms().saturating_add(ms)
        });
        self.db
            .set_typing(room_id.as_str(), user_id.as_str(), until)
            .await?;
        Ok(())
    }

    /// For sync: the users typing in `room_id` if the set changed after
    /// `since` (one range read of the room's typing log, one of its set).
    /// Typing already expired by the clock is left out.
    pub async fn typing_since(
        &self,
        room_id: &RoomId,
        since: Option<Position>,
    ) -> Result<Option<TypingUpdate>> {
        Ok(self
            .db
            .typing_since(room_id.as_str(), since, self.clock.now_ms())
            .await?)
    }

    // ---- to-device -------------------------------------------------------

    /// `PUT /sendToDevice/{eventType}/{txnId}`: queues each message for its
    /// device (all the user's devices for `*`; an explicit device wins over
    /// `*`), once per (sender device, `txn_id`). Unknown devices and remote
    /// users are skipped, as the spec allows.
    ///
    /// Errors: [`Error::BadJson`] if a content is not a JSON object.
    pub async fn send_to_device<T>(
        &self,
        authed: &Authed,
        event_type: &str,
        txn_id: &str,
        messages: &BTreeMap<OwnedUserId, BTreeMap<DeviceIdOrAllDevices, Raw<T>>>,
    ) -> Result<()> {
        let mut out: BTreeMap<(String, String), String> = BTreeMap::new();
        for (user, per_device) in messages {
            for raw in per_device.values() {
                if !raw.json().get().trim_start().starts_with('{') {
                    return Err(Error::BadJson(
                        "to-device content must be a JSON object".into(),
                    ));
                }
                if raw.json().get().len() > MAX_TO_DEVICE_CONTENT_BYTES {
                    return Err(Error::TooLarge(format!(
                        "a to-device message's content is over {MAX_TO_DEVICE_CONTENT_BYTES} bytes"
                    )));
                }
            }
            let devices: Vec<String> = self
                .accounts
                .devices(user.as_str())
                .await?
                .into_iter()
                .map(|(d, _)| d)
                .collect();
            if let Some(all) = per_device.get(&DeviceIdOrAllDevices::AllDevices) {
                for d in &devices {
                    out.insert((user.to_string(), d.clone()), all.json().get().to_owned());
                }
            }
            for (target, raw) in per_device {
                if let DeviceIdOrAllDevices::DeviceId(d) = target
                    && devices.iter().any(|x| x == d.as_str())
                {
                    out.insert(
                        (user.to_string(), d.to_string()),
                        raw.json().get().to_owned(),
                    );
                }
            }
        }
        let total: usize = out.values().map(String::len).sum();
        if total > MAX_TO_DEVICE_BATCH_BYTES {
            return Err(Error::TooLarge(format!(
                "the messages come to {total} bytes over all recipient devices, over the limit of {MAX_TO_DEVICE_BATCH_BYTES}"
            )));
        }
        let list: Vec<(String, String, String)> =
            out.into_iter().map(|((u, d), c)| (u, d, c)).collect();
        self.db
            .send_to_device(
                (authed.user_id.as_str(), authed.device_id.as_str()),
                txn_id,
                event_type,
                self.clock.now_ms(),
                &list,
            )
            .await?;
        Ok(())
    }

    /// For sync: the to-device messages of `user`'s `device` after `since`,
    /// at most `to_device_per_sync`, deleting those at or before `since`
    /// (acknowledged) in the same transaction. See
    /// [`TransitoryDb::to_device_since`].
    pub async fn to_device_since(
        &self,
        user: &UserId,
        device: &str,
        since: Option<Position>,
    ) -> Result<ToDeviceBatch> {
        Ok(self
            .db
            .to_device_since(user.as_str(), device, since, self.config.to_device_per_sync)
            .await?)
    }

    // ---- presence --------------------------------------------------------

    /// `PUT /presence/{userId}/status`.
    ///
    /// Errors: [`Error::Forbidden`] for another user's presence;
    /// [`Error::InvalidParam`] for an over-long status message.
    pub async fn set_presence(
        &self,
        authed: &Authed,
        user_id: &UserId,
        presence: &PresenceState,
        status_msg: Option<&str>,
    ) -> Result<()> {
        if user_id != authed.user_id {
            return Err(Error::Forbidden(
                "cannot set another user's presence".into(),
            ));
        }
        if status_msg.is_some_and(|m| m.len() > 1024) {
            return Err(Error::InvalidParam(
                "status_msg is longer than 1024 bytes".into(),
            ));
        }
        let now = self.clock.now_ms();
        let state = presence.as_str().to_owned();
        let msg = status_msg.map(str::to_owned);
        self.db
            .update_presence(
                user_id.as_str(),
                |_| {
                    Some(PresenceRecord {
                        presence: state.clone(),
                        status_msg: msg.clone(),
                        last_active_ms: now,
                    })
                },
                |_, _| true,
            )
            .await?;
        Ok(())
    }

    /// For sync's `set_presence` (and other activity): records activity of
    /// `user` now, and sets the state to `presence` if given (default
    /// `online`). Stores nothing if nothing visible changed and the last
    /// refresh is recent.
    pub async fn touch_presence(
        &self,
        user: &UserId,
        presence: Option<&PresenceState>,
    ) -> Result<()> {
        let now = self.clock.now_ms();
        let config = &self.config;
        let wanted = presence.map_or("online", |p| p.as_str()).to_owned();
        self.db
            .update_presence(
                user.as_str(),
                |old| {
                    let new = PresenceRecord {
                        presence: wanted.clone(),
                        status_msg: old.and_then(|o| o.status_msg.clone()),
                        last_active_ms: now,
                    };
                    match old {
                        Some(o)
                            if effective(config, o, now) == new.presence
                                && now.saturating_sub(o.last_active_ms)
                                    < config.presence_refresh_ms =>
                        {
                            None
                        }
                        _ => Some(new),
                    }
                },
                |old, new| old.is_none_or(|o| effective(config, o, now) != new.presence),
            )
            .await?;
        Ok(())
    }

    /// `GET /presence/{userId}/status`: the user's presence now.
    ///
    /// Errors: [`Error::Forbidden`] unless it is the caller or a user who
    /// shares a room with them; [`Error::NotFound`] for a user with no
    /// presence.
    pub async fn presence(&self, authed: &Authed, user_id: &UserId) -> Result<PresenceView> {
        if user_id != authed.user_id && !self.share_a_room(&authed.user_id, user_id).await? {
            return Err(Error::Forbidden(
                "you do not share a room with this user".into(),
            ));
        }
        let record = self
            .db
            .presence(user_id.as_str())
            .await?
            .ok_or_else(|| Error::NotFound("no presence for this user".into()))?;
        Ok(self.view(&record))
    }

    /// The view of a stored record at the clock's time.
    pub fn view(&self, record: &PresenceRecord) -> PresenceView {
        let now = self.clock.now_ms();
        let ago = now.saturating_sub(record.last_active_ms);
        PresenceView {
            presence: presence_state(&effective(&self.config, record, now)),
            status_msg: record.status_msg.clone(),
            last_active_ago_ms: ago,
            currently_active: ago < self.config.presence_idle_ms && record.presence == "online",
        }
    }

    /// For sync: the presence of each of `users` that changed after `since`,
    /// with its change position (per user one range read of its log).
    pub async fn presence_since(
        &self,
        users: &[OwnedUserId],
        since: Option<Position>,
    ) -> Result<Vec<(OwnedUserId, Position, PresenceView)>> {
        let names: Vec<String> = users.iter().map(|u| u.to_string()).collect();
        let found = self.db.presence_since(&names, since).await?;
        Ok(found
            .into_iter()
            .filter_map(|(u, pos, rec)| Some((UserId::parse(u).ok()?, pos, self.view(&rec))))
            .collect())
    }

    /// Every user who shares a joined room with `user` (including `user`).
    pub async fn room_peers(&self, user: &UserId) -> Result<Vec<OwnedUserId>> {
        Ok(self.joined_rooms_and_peers(user).await?.1)
    }

    /// The rooms `user` has joined, and every user who shares one of them
    /// with `user` (including `user`), both sorted: one range read of the
    /// user's memberships and one of each joined room's members.
    pub async fn joined_rooms_and_peers(
        &self,
        user: &UserId,
    ) -> Result<(Vec<OwnedRoomId>, Vec<OwnedUserId>)> {
        let mut peers = std::collections::BTreeSet::new();
        peers.insert(user.to_owned());
        let mut joined = Vec::new();
        for (room, m) in self.rooms.rooms_of_user(user).await? {
            if m.membership != MembershipState::Join {
                continue;
            }
            for (member, rec) in self.rooms.members(&room).await? {
                if rec.membership == MembershipState::Join {
                    peers.insert(member);
                }
            }
            joined.push(room);
        }
        joined.sort();
        Ok((joined, peers.into_iter().collect()))
    }

    async fn share_a_room(&self, a: &UserId, b: &UserId) -> Result<bool> {
        let rooms = self.rooms.rooms_of_user(a).await?;
        for (room, m) in rooms {
            if m.membership == MembershipState::Join
                && self
                    .rooms
                    .membership(&room, b)
                    .await?
                    .is_some_and(|m| m.membership == MembershipState::Join)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    // ---- collection ------------------------------------------------------

    /// One collection pass at the clock's time: removes expired typing,
    /// moves inactive users' presence to `unavailable` / `offline`, and
    /// forgets old sendToDevice transaction IDs. Each step is its own
    /// transaction that re-checks what it changes, so it never races with
    /// writers or readers: a reader sees the data before or after, both
    /// consistent. Acknowledged to-device messages are removed by the
    /// acknowledging read itself ([`Transitory::to_device_since`]).
    pub async fn collect(&self) -> Result<Collected> {
        const BATCH: usize = 1000;
        let now = self.clock.now_ms();
        let mut out = Collected::default();
        loop {
            let n = self.db.collect_typing(now, BATCH).await?;
            out.typing += n;
            if n < BATCH {
                break;
            }
        }
        let mut after: Option<String> = None;
        loop {
            let page = self.db.presence_page(after.as_deref(), BATCH).await?;
            for (user, record) in &page {
                let target = effective(&self.config, record, now);
                if target == record.presence {
                    continue;
                }
                let config = &self.config;
                let changed = self
                    .db
                    .update_presence(
                        user,
                        |old| {
                            let old = old?;
                            let target = effective(config, old, now);
                            (target != old.presence).then(|| PresenceRecord {
                                presence: target,
                                ..old.clone()
                            })
                        },
                        |_, _| true,
                    )
                    .await?;
                if changed.is_some_and(|c| c.presence == target) {
                    out.presence += 1;
                }
            }
            if page.len() < BATCH {
                break;
            }
            after = page.last().map(|(u, _)| u.clone());
        }
        let before = now.saturating_sub(self.config.txn_retention_ms);
        loop {
            let n = self.db.collect_txn_ids(before, BATCH).await?;
            out.txn_ids += n;
            if n < BATCH {
                break;
            }
        }
        Ok(out)
    }

    /// Runs [`Transitory::collect`] every `every` until the returned task is
    /// aborted. Failures are logged and retried at the next tick.
    pub fn spawn_collector(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.collect().await {
                    tracing::warn!(error = %e, "transitory collection failed");
                }
            }
        })
    }
}
