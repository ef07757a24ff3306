//! Sync assembly: what `GET /sync` returns for one user since a token, and
//! the long-poll around it (design and cost model: `docs/sync.md`).
//!
//! One call ([`SyncService::sync`]) first, for an incremental sync whose
//! user's circle (joined rooms, peers) this process has cached as of the
//! token, waits before reading at all if the notifier has seen no change
//! naming the user's topics after the token (step 4's wait, with the
//! token's positions as what was read); then loops:
//! 1. take the read version `R` of each database;
//! 2. read what changed since the token, every read bounded above by `R`
//!    (so the response holds exactly the changes in `(since, R]`):
//!    - accounts: global and room account data (one range read of the
//!      user's change log);
//!    - rooms: the rooms changed since the token (one range read of
//!      `timeline/changed`, O(changes), with the user's membership checked
//!      per changed room), then per room timeline, state, receipts
//!      (`sync::rooms`); on an initial or `full_state` sync, every room of
//!      the user;
//!    - transitory: rooms whose typing changed (one range read of
//!      `typing/changed`), to-device messages of the device (acknowledging
//!      those up to `since`), presence and device-list changes of the users
//!      who share a room with the user (per peer one range read; the peer
//!      set is cached per user and recomputed only when a membership in
//!      one of the user's rooms changed), one-time-key counts and unused
//!      fallback key types;
//!    - game: the user's change log after the token's game part, one
//!      range read (`sync::game`: the `org.myelin.game` section);
//! 3. compute `next_batch`: per database the latest of the `since` part and
//!    the position of `R` (accounts: also every change returned; transitory:
//!    not past the last to-device message returned if more are pending);
//! 4. return if this is an initial or `full_state` sync, if something was
//!    found, or if the deadline passed; else register the user's topics
//!    with `R` and wait until the notifier publishes a change naming one of
//!    them past `R` (then go to 1), the deadline, or shutdown.
//!
//! Why `next_batch` is exact: every read returns the changes of the user in
//! `(since, R]` and nothing later, so no change is skipped or repeated. A
//! change committed after `R` wakes the wait and is read by the next
//! iteration (or the next sync).
//!
//! Who may import this: `sync` and, through it, `api`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ruma::presence::PresenceState;
use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use super::filter::SyncFilter;
use super::notifier::{DatabaseId, Listener, Notifier, ReadVersions, TopicKey};
use super::rooms::{self as room_sync, Candidate, Ctx, Window};
use super::token::SyncToken;
use super::unread::Memos;
use super::{Error, SyncConfig};
use crate::db::accounts::{AccountDataChange, AccountsDb};
use crate::db::game::GameDb;
use crate::db::notify::Topic;
use crate::db::rooms::StreamPosition;
use crate::db::{Databases, accounts, rooms, transitory};
use crate::kv;
use crate::service::e2ee::E2ee;
use crate::service::rooms::Rooms;
use crate::service::transitory::Transitory;

pub use ruma::api::client::sync::sync_events::v3::{InvitedRoom, JoinedRoom, LeftRoom};

/// Past this many entries in a changed-rooms feed since the token, sync
/// reads every room of the user instead (cheaper for a long-absent
/// client).
const FEED_LIMIT: usize = 10_000;

/// The circle cache forgets everything past this many users.
const CIRCLE_CACHE_USERS: usize = 100_000;

/// A test seam: runs right before each wait of a long-poll (after its read,
/// or before its first wait when it skipped the read), so tests can commit
/// exactly in the window the lossless rule protects.
pub type AfterReadHook = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The services sync reads through (the server's, shared).
#[derive(Clone)]
pub struct Services {
    /// Rooms: timelines, state, receipts, memberships.
    pub rooms: Arc<Rooms>,
    /// Typing, to-device, presence, device-list records.
    pub transitory: Arc<Transitory>,
    /// One-time-key counts and fallback keys.
    pub e2ee: Arc<E2ee>,
}

/// The parameters of one `/sync` call that this layer uses.
#[derive(Clone, Debug, Default)]
pub struct SyncRequest {
    /// The `since` token, as the client sent it.
    pub since: Option<String>,
    /// How long to wait for news, before the configured cap.
    pub timeout: Duration,
    /// Whether the client asked for full state (returns at once).
    pub full_state: bool,
    /// The requesting device (to-device messages and key counts are per
    /// device); `None` leaves those sections out.
    pub device_id: Option<String>,
    /// The resolved filter.
    pub filter: SyncFilter,
    /// The presence to record for the user (`set_presence`); `None` for
    /// `offline`, which records nothing.
    pub set_presence: Option<PresenceState>,
}

/// The `rooms` section.
#[derive(Debug, Default)]
pub struct RoomsSection {
    /// Joined rooms with news (every joined room on an initial sync).
    pub join: BTreeMap<OwnedRoomId, JoinedRoom>,
    /// New invites.
    pub invite: BTreeMap<OwnedRoomId, InvitedRoom>,
    /// Rooms left since the token (on an initial sync with `include_leave`,
    /// every room left and not forgotten).
    pub leave: BTreeMap<OwnedRoomId, LeftRoom>,
}

/// What one `/sync` call found.
#[derive(Debug, Default)]
pub struct SyncResult {
    /// The token to continue from.
    pub next_batch: SyncToken,
    /// Global account data changed since the token (latest value per type),
    /// oldest first.
    pub account_data: Vec<AccountDataChange>,
    /// The rooms section.
    pub rooms: RoomsSection,
    /// To-device events (`{type, sender, content}`), in send order.
    pub to_device: Vec<Value>,
    /// `m.presence` events of users sharing a room with the user.
    pub presence: Vec<Value>,
    /// Users whose devices or keys changed, or who newly share a room.
    pub device_lists_changed: Vec<OwnedUserId>,
    /// Users who no longer share any room with the user.
    pub device_lists_left: Vec<OwnedUserId>,
    /// The device's unclaimed one-time keys per algorithm.
    pub one_time_key_counts: BTreeMap<String, u64>,
    /// The `org.myelin.game` section, when something of the user's changed
    /// in the `game` database (`sync::game`).
    pub game: Option<Value>,
    /// The algorithms of the device's unused fallback keys (`None` without
    /// a device).
    pub unused_fallback_key_types: Option<Vec<String>>,
}

impl SyncResult {
    /// Whether the result carries news for the client (key counts alone
    /// are not news).
    pub fn has_news(&self) -> bool {
        !self.account_data.is_empty()
            || !self.rooms.join.is_empty()
            || !self.rooms.invite.is_empty()
            || !self.rooms.leave.is_empty()
            || !self.to_device.is_empty()
            || !self.presence.is_empty()
            || !self.device_lists_changed.is_empty()
            || !self.device_lists_left.is_empty()
            || self.game.is_some()
    }
}

/// Longest a timed-out long-poll waits for the notifier to publish each
/// database's newest wake entry before it reads instead (the watcher
/// publishes after one feed read per commit batch, so this is a bound for
/// a watcher held up, not the usual wait).
const QUIET_CATCH_UP: Duration = Duration::from_millis(50);

/// The token of a read at `rvs`: their positions, never before `since`.
fn token_at(rvs: ReadVersions, since: Option<SyncToken>) -> SyncToken {
    let at = SyncToken {
        accounts: accounts::Position::at_read_version(rvs[DatabaseId::Accounts as usize]),
        rooms: rooms::Position::at_read_version(rvs[DatabaseId::Rooms as usize]),
        transitory: transitory::Position::at_read_version(rvs[DatabaseId::Transitory as usize]),
        game: Some(crate::db::Position::<GameDb>::at_read_version(
            rvs[DatabaseId::Game as usize],
        )),
    };
    since.map_or(at, |since| at.max(since))
}

/// Whose changes concern one user: the users sharing a joined room with
/// them (presence, device lists) and the topics their long-polls wait on.
struct Circle {
    /// The users sharing a joined room with the user, and the user; sorted.
    peers: Vec<OwnedUserId>,
    /// `User(user)`, `Room(r)` for each joined room, `Peers(p)` for each
    /// peer; sorted (`Notifier::listen`).
    topics: Vec<TopicKey>,
}

impl Circle {
    /// Reads the user's joined rooms and their members.
    async fn read(notifier: &Notifier, services: &Services, user: &UserId) -> Result<Self, Error> {
        let (rooms, peers) = services.transitory.joined_rooms_and_peers(user).await?;
        let mut topics = vec![notifier.topic_key(Topic::User(user.as_str()))];
        topics.extend(
            rooms
                .iter()
                .map(|r| notifier.topic_key(Topic::Room(r.as_str()))),
        );
        topics.extend(
            peers
                .iter()
                .map(|p| notifier.topic_key(Topic::Peers(p.as_str()))),
        );
        topics.sort_unstable();
        topics.dedup();
        Ok(Circle { peers, topics })
    }
}

/// A user's circle, as of a rooms position.
type CircleEntry = (StreamPosition, Arc<Circle>);

/// The sync service of one server process. Cheap to share (`Arc`).
pub struct SyncService {
    databases: Databases,
    accounts: AccountsDb,
    game: GameDb,
    notifier: Arc<Notifier>,
    config: SyncConfig,
    shutdown: watch::Sender<bool>,
    after_read: Mutex<Option<AfterReadHook>>,
    circles: Mutex<HashMap<OwnedUserId, CircleEntry>>,
    memos: Arc<Memos>,
    /// Reads made ([`SyncService::reads`]).
    reads: AtomicU64,
}

impl SyncService {
    /// The service over opened databases; starts this process's
    /// [`Notifier`]. Must be called within a tokio runtime.
    pub fn new(databases: &Databases, config: SyncConfig) -> Self {
        SyncService {
            databases: databases.clone(),
            accounts: AccountsDb::new(&databases.accounts),
            game: GameDb::new(&databases.game),
            notifier: Notifier::start(databases),
            config,
            shutdown: watch::channel(false).0,
            after_read: Mutex::new(None),
            circles: Mutex::new(HashMap::new()),
            memos: Arc::default(),
            reads: AtomicU64::new(0),
        }
    }

    /// How many reads of a user's changes (step 2 of the module docs) this
    /// process has made, counting neither a long-poll that waited without
    /// reading nor its quiet answer: what a reconnecting or idle client
    /// costs is visible in it.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// This process's notifier.
    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    /// The `accounts` database (sliding sync reads `m.direct` from it).
    pub(super) fn accounts_db(&self) -> &AccountsDb {
        &self.accounts
    }

    /// The settings.
    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    /// Ends every waiting long-poll now (each returns its current, possibly
    /// empty, result) and makes later ones return without waiting. Called
    /// when the server begins a graceful shutdown.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Installs (or with `None` removes) the [`AfterReadHook`]. For tests.
    pub fn set_after_read_hook(&self, hook: Option<AfterReadHook>) {
        *self.after_read.lock().expect("hook lock") = hook;
    }

    /// `GET /sync` for `user_id`: see the module docs.
    ///
    /// Errors: [`Error::InvalidToken`] for a malformed `since`; storage
    /// failures.
    pub async fn sync(
        &self,
        services: &Services,
        user_id: &UserId,
        req: &SyncRequest,
    ) -> Result<SyncResult, Error> {
        let since: Option<SyncToken> = req.since.as_deref().map(str::parse).transpose()?;
        let timeout = req.timeout.min(self.config.max_timeout());
        let deadline = Instant::now() + timeout;
        let mut shutdown = self.shutdown.subscribe();
        if let Some(presence) = &req.set_presence {
            services
                .transitory
                .touch_presence(user_id, Some(presence))
                .await?;
        }
        // A long-poll whose user had nothing since the token (the notifier
        // has seen no change of theirs after it) waits before reading at
        // all: most long-polls arrive right after their previous answer.
        if let Some(since) = since.filter(|_| !req.full_state)
            && let Some(circle) = self.cached_circle(user_id, since)
        {
            let delivered = [
                since.accounts.delivered_through(),
                since.rooms.delivered_through(),
                since.transitory.delivered_through(),
                since
                    .game
                    .unwrap_or(crate::db::Position::<GameDb>::ZERO)
                    .delivered_through(),
            ];
            let news = self.notifier.listen(&circle.topics, delivered);
            if !self.wait_for(&news, deadline, &mut shutdown).await
                && let Some(rvs) = self.quiet_through(&news).await?
            {
                return self
                    .quiet(services, user_id, req, since, rvs, &circle)
                    .await;
            }
        }
        loop {
            let rvs = self.read_versions().await?;
            let (result, circle) = self.read(services, user_id, req, since, rvs).await?;
            if since.is_none() || req.full_state || result.has_news() || Instant::now() >= deadline
            {
                return Ok(result);
            }
            if !self
                .wait(&circle.topics, rvs, deadline, &mut shutdown)
                .await
            {
                return Ok(result);
            }
        }
    }

    /// Waits until a change naming one of `topics` is published past
    /// `read`: `true`, or `false` at the deadline or on shutdown. Runs the
    /// test hook first.
    async fn wait(
        &self,
        topics: &[TopicKey],
        read: ReadVersions,
        deadline: Instant,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let news = self.notifier.listen(topics, read);
        self.wait_for(&news, deadline, &mut *shutdown).await
    }

    /// Runs the test hook, then waits until `news` fires (`true`) or the
    /// deadline or shutdown comes (`false`).
    async fn wait_for(
        &self,
        news: &Listener,
        deadline: Instant,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let hook = self.after_read.lock().expect("hook lock").clone();
        if let Some(hook) = hook {
            hook().await;
        }
        tokio::select! {
            () = news.fired() => true,
            () = tokio::time::sleep_until(deadline) => false,
            _ = shutdown.wait_for(|stopping| *stopping) => false,
        }
    }

    /// After `news` (registered at the token's positions) waited in vain:
    /// read versions at which a read would find nothing new for the user.
    /// They are taken now, so every commit acknowledged before this call is
    /// at or below them (a client still reads its own writes); then, once
    /// the notifier has published each database's newest wake entry (every
    /// commit naming a topic so far), `news`, still registered, has not
    /// fired only if none of them concerned the user. `None` if the watcher
    /// takes longer than [`QUIET_CATCH_UP`] or `news` fired: then the
    /// caller reads.
    async fn quiet_through(&self, news: &Listener) -> Result<Option<ReadVersions>, Error> {
        let rvs = self.read_versions().await?;
        for db in DatabaseId::ALL {
            let newest = self
                .notifier
                .newest_wake(db)
                .await
                .map_err(|e| Error::Storage(e.into()))?;
            let caught_up =
                tokio::time::timeout(QUIET_CATCH_UP, self.notifier.wait_published(db, newest));
            if caught_up.await.is_err() {
                return Ok(None);
            }
        }
        Ok((!news.has_fired()).then_some(rvs))
    }

    /// The answer of a long-poll that timed out with nothing new up to
    /// `rvs` (see [`Self::quiet_through`]): what a read at `rvs` would
    /// return, without reading the rooms: the token at `rvs` and the
    /// device's key counts, which change without waking anyone.
    ///
    /// `circle`, the cached circle the wait listened with, still holds at
    /// the new token: no commit naming its topics (among them every
    /// membership change in the user's rooms, and the user's own) came
    /// after `since`. So its entry is extended to the token, as a read
    /// would have (`Self::circle`), and the client's next long-poll, from
    /// that token, can wait without reading too.
    async fn quiet(
        &self,
        services: &Services,
        user: &UserId,
        req: &SyncRequest,
        since: SyncToken,
        rvs: ReadVersions,
        circle: &Arc<Circle>,
    ) -> Result<SyncResult, Error> {
        let mut result = SyncResult {
            next_batch: token_at(rvs, Some(since)),
            ..SyncResult::default()
        };
        {
            let upto = StreamPosition::end_of_commit(result.next_batch.rooms);
            let mut cache = self.circles.lock().expect("circle cache");
            if let Some((at, cached)) = cache.get_mut(user)
                && Arc::ptr_eq(cached, circle)
            {
                *at = (*at).max(upto);
            }
        }
        if let Some(device) = req.device_id.as_deref() {
            key_counts(services, user, device, &mut result).await?;
        }
        Ok(result)
    }

    /// The user's cached circle if it holds at `since` (its entry was
    /// checked at or after the token's rooms position).
    fn cached_circle(&self, user: &UserId, since: SyncToken) -> Option<Arc<Circle>> {
        let since = StreamPosition::end_of_commit(since.rooms);
        let cache = self.circles.lock().expect("circle cache");
        let (at, circle) = cache.get(user)?;
        (*at >= since).then(|| circle.clone())
    }

    /// One read of everything new in `(since, rvs]`, and the user's circle
    /// (whose changes concern them) as of it: one function per section of
    /// the response, in the order of the module docs' step 2.
    async fn read(
        &self,
        services: &Services,
        user: &UserId,
        req: &SyncRequest,
        since: Option<SyncToken>,
        rvs: ReadVersions,
    ) -> Result<(SyncResult, Arc<Circle>), Error> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let filter = &req.filter;
        let mut next = token_at(rvs, since);
        let window = Window {
            since: since.map(|t| StreamPosition::end_of_commit(t.rooms)),
            upto: StreamPosition::end_of_commit(next.rooms),
            transitory_since: since.map(|t| t.transitory),
            transitory_upto: next.transitory,
            full_state: req.full_state,
        };
        let whole = since.is_none() || req.full_state;

        let mut candidates: BTreeMap<OwnedRoomId, Candidate> = BTreeMap::new();
        let account_data = self
            .account_data(user, filter, since, &mut next, &mut candidates)
            .await?;
        let all_rooms = whole || room_candidates(services, &window, &mut candidates).await?;
        if all_rooms {
            for (room, _) in services.rooms.rooms_of_user(user).await? {
                candidates.entry(room).or_default().typing = true;
            }
        }
        let push_rules = super::unread::parse_rules(
            user,
            self.accounts.push_rules(user.as_str()).await?.as_deref(),
        )?;
        let ctx = Ctx {
            rooms: services.rooms.clone(),
            transitory: services.transitory.clone(),
            user: user.to_owned(),
            device: req.device_id.clone(),
            filter: Arc::new(filter.clone()),
            window,
            push_rules: Arc::new(push_rules),
            memos: self.memos.clone(),
        };
        let outcome = room_sync::assemble(&ctx, candidates, whole).await?;

        let mut result = SyncResult::default();
        if let Some(device) = req.device_id.as_deref() {
            result.to_device = to_device(services, user, device, &window, &mut next).await?;
            key_counts(services, user, device, &mut result).await?;
        }
        let circle = self
            .circle(services, user, &window, filter, &outcome.membership_changed)
            .await?;
        result.presence = presence(services, &circle.peers, &window, filter).await?;
        if window.transitory_since.is_some() {
            (result.device_lists_changed, result.device_lists_left) = device_lists(
                services,
                user,
                &circle.peers,
                &window,
                &outcome.membership_changed,
            )
            .await?;
        }
        // Game: what changed for the user since the token's game part.
        result.game = super::game::section(
            &self.game,
            user.as_str(),
            since.map(|t| t.game),
            rvs[DatabaseId::Game as usize],
        )
        .await?;
        result.next_batch = next;
        result.account_data = account_data;
        result.rooms = RoomsSection {
            join: outcome.join,
            invite: outcome.invite,
            leave: outcome.leave,
        };
        Ok((result, circle))
    }

    /// The global account data changed after `since` (filtered), moving
    /// `next.accounts` past every change returned; room account data
    /// changes become `candidates`.
    async fn account_data(
        &self,
        user: &UserId,
        filter: &SyncFilter,
        since: Option<SyncToken>,
        next: &mut SyncToken,
        candidates: &mut BTreeMap<OwnedRoomId, Candidate>,
    ) -> Result<Vec<AccountDataChange>, Error> {
        let changes = self
            .accounts
            .account_data_since(user.as_str(), since.map(|t| t.accounts))
            .await?;
        if let Some(last) = changes.iter().map(|c| c.position).max() {
            next.accounts = next.accounts.max(last);
        }
        let mut account_data = Vec::new();
        for change in changes {
            match &change.room_id {
                None => {
                    if SyncFilter::allows_type(&filter.account_data, &change.event_type) {
                        account_data.push(change);
                    }
                }
                Some(room) => {
                    let Ok(room) = OwnedRoomId::try_from(room.as_str()) else {
                        continue;
                    };
                    candidates
                        .entry(room)
                        .or_default()
                        .account_data
                        .push(json!({ "type": change.event_type, "content": change.content }));
                }
            }
        }
        Ok(account_data)
    }

    /// The user's [`Circle`]. Cached per user: the entry computed at rooms
    /// position `at` is still right at `window.upto` if `at` is at or after
    /// `window.since` and no membership in the user's rooms changed in the
    /// window (the room assembly saw every such change).
    async fn circle(
        &self,
        services: &Services,
        user: &UserId,
        window: &Window,
        filter: &SyncFilter,
        membership_changed: &BTreeSet<OwnedUserId>,
    ) -> Result<Arc<Circle>, Error> {
        let unfiltered = filter.rooms.is_none() && filter.not_rooms.is_empty();
        if let Some(since) = window.since
            && unfiltered
            && membership_changed.is_empty()
        {
            let mut cache = self.circles.lock().expect("circle cache");
            if let Some((at, circle)) = cache.get_mut(user)
                && *at >= since
            {
                *at = (*at).max(window.upto);
                return Ok(circle.clone());
            }
        }
        let circle = Arc::new(Circle::read(&self.notifier, services, user).await?);
        let mut cache = self.circles.lock().expect("circle cache");
        if cache.len() >= CIRCLE_CACHE_USERS {
            cache.clear();
        }
        cache.insert(user.to_owned(), (window.upto, circle.clone()));
        Ok(circle)
    }

    /// The read version of each database, in [`DatabaseId`] order.
    async fn read_versions(&self) -> Result<ReadVersions, Error> {
        let mut out = [0u64; super::notifier::DATABASES];
        for (slot, handle) in out.iter_mut().zip(self.databases.handles()) {
            *slot = handle
                .db
                .run(|tx, _| async move { tx.get_read_version().await })
                .await
                .map_err(|e: kv::Error| Error::Storage(e.into()))?;
        }
        Ok(out)
    }
}

/// The rooms an incremental sync looks at, from the changed-rooms feeds of
/// `rooms` (events, receipts) and `transitory` (typing) in the window, added
/// to `candidates`. `true` if a feed holds more than [`FEED_LIMIT`]
/// entries: then the caller looks at every room of the user instead.
async fn room_candidates(
    services: &Services,
    window: &Window,
    candidates: &mut BTreeMap<OwnedRoomId, Candidate>,
) -> Result<bool, Error> {
    let Some(since) = window.since else {
        return Ok(true);
    };
    let mut all_rooms = false;
    match services
        .rooms
        .db()
        .changed_rooms(since, window.upto, FEED_LIMIT)
        .await?
    {
        Some(changed) => {
            for room in changed.into_keys() {
                candidates.entry(room).or_default();
            }
        }
        None => all_rooms = true,
    }
    let t_since = window.transitory_since.unwrap_or_default();
    match services
        .transitory
        .db()
        .typing_changed_rooms(t_since, window.transitory_upto, FEED_LIMIT)
        .await?
    {
        Some(rooms) => {
            for (room, _) in rooms {
                if let Ok(room) = OwnedRoomId::try_from(room) {
                    candidates.entry(room).or_default().typing = true;
                }
            }
        }
        None => all_rooms = true,
    }
    Ok(all_rooms)
}

/// The `to_device` section: the device's messages in the window, in send
/// order (`{type, sender, content}`). If more are pending than one sync
/// carries, `next.transitory` stops at the last one returned.
async fn to_device(
    services: &Services,
    user: &UserId,
    device: &str,
    window: &Window,
    next: &mut SyncToken,
) -> Result<Vec<Value>, Error> {
    let batch = services
        .transitory
        .to_device_since(user, device, window.transitory_since)
        .await?;
    let mut to_device = Vec::new();
    let mut last = None;
    let mut cut = false;
    for m in &batch.messages {
        if m.position > window.transitory_upto {
            cut = true;
            break;
        }
        to_device.push(json!({
            "type": m.event_type,
            "sender": m.sender,
            "content": m.content,
        }));
        last = Some(m.position);
    }
    if batch.more
        && !cut
        && let Some(last) = last
    {
        next.transitory = last;
    }
    Ok(to_device)
}

/// The device's one-time key counts and unused fallback key types, into
/// `result` (they change without waking anyone, so every answer has them).
async fn key_counts(
    services: &Services,
    user: &UserId,
    device: &str,
    result: &mut SyncResult,
) -> Result<(), Error> {
    result.one_time_key_counts = services.e2ee.one_time_key_counts(user, device).await?;
    result.unused_fallback_key_types = Some(
        services
            .e2ee
            .unused_fallback_key_types(user, device)
            .await?,
    );
    Ok(())
}

/// The `presence` section: `m.presence` events of `peers` whose presence
/// changed in the window, filtered.
async fn presence(
    services: &Services,
    peers: &[OwnedUserId],
    window: &Window,
    filter: &SyncFilter,
) -> Result<Vec<Value>, Error> {
    let mut presence = Vec::new();
    for (peer, position, view) in services
        .transitory
        .presence_since(peers, window.transitory_since)
        .await?
    {
        if position > window.transitory_upto {
            continue;
        }
        let mut content = json!({
            "presence": view.presence.as_str(),
            "last_active_ago": view.last_active_ago_ms,
            "currently_active": view.currently_active,
        });
        if let Some(msg) = view.status_msg {
            content["status_msg"] = msg.into();
        }
        let event = json!({ "type": "m.presence", "sender": peer, "content": content });
        if SyncFilter::allows_event(&filter.presence, &event) {
            presence.push(event);
        }
    }
    Ok(presence)
}

/// The `device_lists` section of an incremental sync: `(changed, left)`.
/// Changed: `peers` whose devices or keys changed in the window, and users
/// whose membership changed who still share a room with `user`; left: those
/// who no longer do.
async fn device_lists(
    services: &Services,
    user: &UserId,
    peers: &[OwnedUserId],
    window: &Window,
    membership_changed: &BTreeSet<OwnedUserId>,
) -> Result<(Vec<OwnedUserId>, Vec<OwnedUserId>), Error> {
    let (mut changed, mut left) = (BTreeSet::new(), BTreeSet::new());
    let names: Vec<String> = peers.iter().map(|u| u.to_string()).collect();
    for (u, _) in services
        .transitory
        .db()
        .device_lists_changed(
            &names,
            window.transitory_since,
            Some(window.transitory_upto),
        )
        .await?
    {
        if let Ok(u) = OwnedUserId::try_from(u) {
            changed.insert(u);
        }
    }
    for u in membership_changed {
        if u == user {
            continue;
        }
        if peers.binary_search(u).is_ok() {
            changed.insert(u.clone());
        } else {
            left.insert(u.clone());
        }
    }
    Ok((changed.into_iter().collect(), left.into_iter().collect()))
}
