//! The server administration service: what the Synapse-compatible admin API
//! (`api::admin`, `docs/admin-api.md`) and `myelin admin ...` both call, so
//! the HTTP and command-line paths cannot drift apart.
//!
//! It owns no storage of its own: accounts are read and changed through
//! [`Accounts`] and the `accounts` database's existing operations (one
//! transaction per change, as there). The shapes are Synapse's (admin API
//! v2 users, v1 whois), so existing admin tools (synapse-admin, Ansible
//! playbooks) read them; where Myelin keeps less than Synapse (guests,
//! threepids, client IPs) the field holds Synapse's empty value.
//!
//! Invariants:
//! - every function checks nothing about the caller: `api::admin` checks
//!   the admin flag ([`require_admin`]) before calling, the CLI runs as the
//!   operator;
//! - only local users are named: another server's user ID is
//!   [`Error::InvalidParam`] (400 `M_INVALID_PARAM`), as Synapse answers.
//!
//! Who may import this: `api` and the CLI.

use std::collections::BTreeMap;

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::accounts::{Accounts, Authed};
use super::rooms::Rooms;
use super::{Error, Result};
use crate::db::accounts::{RegistrationTokenRecord, UserRecord};

/// The most keys one store sample counts per count
/// ([`sample_store_counts`]): a larger count reads as this many.
pub const SAMPLE_CAP: u64 = 10_000_000;

/// Keys per read transaction of a store sample: each page is one snapshot
/// range read, well inside FDB's 5 s and its reply sizes.
const SAMPLE_PAGE: usize = 1_000;

/// How often `myelin serve` samples the stored counts when metrics are on.
pub const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Counts the stored users (deactivated included: their records stay),
/// devices and queued to-device messages, each with paged snapshot range
/// reads (`accounts` `users/user`, `sessions/device`; `transitory`
/// `to_device/inbox`), at most [`SAMPLE_CAP`] each. Read-only: it writes and
/// conflicts with nothing. Pages are separate transactions, so a count
/// taken under writes is approximate (each key is counted at most once).
pub async fn sample_store_counts(
    databases: &crate::db::Databases,
) -> crate::kv::Result<crate::metrics::StoreCounts> {
    use crate::db::{accounts::keys as ak, transitory::keys as tk};
    let accounts = &databases.accounts;
    let users = accounts.space(&ak::USERS).range(&ak::USER, &());
    let devices = accounts.space(&ak::SESSIONS).range(&ak::DEVICE, &());
    let transitory = &databases.transitory;
    let inbox = transitory
        .space(&tk::TO_DEVICE)
        .range(&tk::TO_DEVICE_INBOX, &());
    Ok(crate::metrics::StoreCounts {
        registered_users: count_keys(&accounts.db, users).await?,
        devices: count_keys(&accounts.db, devices).await?,
        to_device_queued: count_keys(&transitory.db, inbox).await?,
    })
}

/// The keys in `[begin, end)`, at most [`SAMPLE_CAP`], read in pages of
/// [`SAMPLE_PAGE`].
async fn count_keys(
    db: &crate::kv::Database,
    (begin, end): (Vec<u8>, Vec<u8>),
) -> crate::kv::Result<u64> {
    let mut count = 0;
    let mut from = begin;
    while count < SAMPLE_CAP {
        let range = crate::kv::RangeOption::new(from.clone(), end.clone()).limit(SAMPLE_PAGE);
        let page = db.read_range(range).await?;
        count += page.len() as u64;
        match page.last() {
            Some(last) if page.len() == SAMPLE_PAGE => {
                from = last.key.clone();
                from.push(0x00);
            }
            _ => break,
        }
    }
    Ok(count.min(SAMPLE_CAP))
}

/// Samples the stored counts into the metrics every `every`, forever (the
/// task ends with the process). A failed sample is logged and the gauges
/// keep their last values.
pub async fn sample_store_gauges(databases: crate::db::Databases, every: std::time::Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match sample_store_counts(&databases).await {
            Ok(counts) => crate::metrics::store_counts(counts),
            Err(e) => tracing::warn!(error = %e, "sampling the stored counts failed"),
        }
    }
}

/// Default page size of the users list (Synapse's).
pub const DEFAULT_USERS_LIMIT: usize = 100;
/// Largest page of the users list accepted.
pub const MAX_USERS_LIMIT: usize = 1_000;

/// Refuses a caller who is not an active admin: 403 `M_FORBIDDEN`
/// ("You are not a server admin", Synapse's text).
pub async fn require_admin(accounts: &Accounts, authed: &Authed) -> Result<()> {
    if accounts.is_admin(authed).await? {
        Ok(())
    } else {
        Err(Error::Forbidden("You are not a server admin".into()))
    }
}

/// `GET /_synapse/admin/v1/server_version`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerVersion {
    /// `myelin <crate version>` (Synapse: its version number).
    pub server_version: String,
}

/// This build's version, as the admin API reports it.
pub fn server_version() -> ServerVersion {
    ServerVersion {
        server_version: format!("myelin {}", env!("CARGO_PKG_VERSION")),
    }
}

/// The query of `GET /_synapse/admin/v2/users` (every field a string in
/// the URL, as Synapse reads them).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct UsersQuery {
    /// Offset into the list ordered by user ID (Synapse: a decimal string,
    /// the `next_token` of the previous page). Default 0.
    pub from: Option<String>,
    /// Page size, 1..=[`MAX_USERS_LIMIT`]; default [`DEFAULT_USERS_LIMIT`].
    pub limit: Option<String>,
    /// Only users whose user ID or display name contains this
    /// (case-insensitive).
    pub name: Option<String>,
    /// Only users whose user ID contains this (Synapse's `user_id`).
    pub user_id: Option<String>,
    /// `true` includes deactivated users (default `false`: excluded).
    pub deactivated: Option<String>,
}

/// One user of the list, in Synapse's shape (v2 users list, checked
/// against Synapse 1.163: booleans, `creation_ts` in milliseconds).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UserSummary {
    /// The full user ID.
    pub name: String,
    /// Always false: Myelin has no guests.
    pub is_guest: bool,
    /// Whether the account is an admin.
    pub admin: bool,
    /// Always null (no user types).
    pub user_type: Option<String>,
    /// Whether the account is deactivated.
    pub deactivated: bool,
    /// Always false (no erasure).
    pub erased: bool,
    /// Always false (no shadow bans).
    pub shadow_banned: bool,
    /// The display name from the profile, if set.
    pub displayname: Option<String>,
    /// The avatar URL from the profile, if set.
    pub avatar_url: Option<String>,
    /// When the account was created, milliseconds since the Unix epoch.
    pub creation_ts: u64,
    /// Always null: Myelin records no last-seen times.
    pub last_seen_ts: Option<u64>,
    /// Always false (no account locking).
    pub locked: bool,
}

/// `GET /_synapse/admin/v2/users`: one page.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UsersPage {
    /// The users of this page, in user-ID order.
    pub users: Vec<UserSummary>,
    /// The `from` of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// How many users match the filters, on every page.
    pub total: usize,
}

/// `GET /_synapse/admin/v2/users/{user_id}` and the answer of its `PUT`
/// (Synapse's shape; as there, `creation_ts` is in seconds here).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UserDetails {
    /// The full user ID.
    pub name: String,
    /// Whether the account is an admin.
    pub admin: bool,
    /// Whether the account is deactivated.
    pub deactivated: bool,
    /// Always false (no account locking).
    pub locked: bool,
    /// Always false (no shadow bans).
    pub shadow_banned: bool,
    /// When the account was created, seconds since the Unix epoch.
    pub creation_ts: u64,
    /// Always null: no application services.
    pub appservice_id: Option<String>,
    /// Always null (no user types).
    pub user_type: Option<String>,
    /// Always false: Myelin has no guests.
    pub is_guest: bool,
    /// Always false (no suspension).
    pub suspended: bool,
    /// The display name from the profile, if set.
    pub displayname: Option<String>,
    /// The avatar URL from the profile, if set.
    pub avatar_url: Option<String>,
    /// Always empty: Myelin keeps no third-party identifiers.
    pub threepids: Vec<Value>,
    /// Always empty: no SSO.
    pub external_ids: Vec<Value>,
    /// Always false (no erasure).
    pub erased: bool,
    /// Always null: Myelin records no last-seen times.
    pub last_seen_ts: Option<u64>,
}

impl From<UserSummary> for UserDetails {
    fn from(s: UserSummary) -> Self {
        UserDetails {
            name: s.name,
            admin: s.admin,
            deactivated: s.deactivated,
            locked: false,
            shadow_banned: false,
            creation_ts: s.creation_ts / 1000,
            appservice_id: None,
            user_type: None,
            is_guest: false,
            suspended: false,
            displayname: s.displayname,
            avatar_url: s.avatar_url,
            threepids: Vec::new(),
            external_ids: Vec::new(),
            erased: false,
            last_seen_ts: None,
        }
    }
}

/// The body of `PUT /_synapse/admin/v2/users/{user_id}`: every field
/// optional; what is absent is left as it is.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutUser {
    /// A new password (sets it; with `logout_devices`, logs every device out).
    pub password: Option<String>,
    /// With `password`: log out every device (default true).
    pub logout_devices: Option<bool>,
    /// A new display name (the profile field; not sent to rooms).
    pub displayname: Option<String>,
    /// Sets or clears the admin flag.
    pub admin: Option<bool>,
    /// `true` deactivates; `false` on a deactivated account is refused
    /// (Myelin cannot reactivate).
    pub deactivated: Option<bool>,
    /// Synapse's fields Myelin ignores, accepted so tools may send them.
    pub avatar_url: Option<String>,
    /// Ignored (no third-party identifiers).
    pub threepids: Option<Value>,
    /// Ignored (no SSO).
    pub external_ids: Option<Value>,
    /// Ignored (no user types).
    pub user_type: Option<Value>,
    /// Ignored (no account locking).
    pub locked: Option<bool>,
}

/// What `PUT /_synapse/admin/v2/users/{user_id}` did: 201 when created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The account was created.
    Created,
    /// The account existed and was updated.
    Updated,
}

/// `GET /_synapse/admin/v1/whois/{user_id}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Whois {
    /// The user.
    pub user_id: String,
    /// Synapse's shape: one entry keyed `""` whose sessions have the
    /// connections; Myelin has one session per device and records no
    /// client IPs, so each connection list is empty.
    pub devices: std::collections::BTreeMap<String, WhoisDevice>,
}

/// The sessions of [`Whois::devices`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WhoisDevice {
    /// One per device of the user.
    pub sessions: Vec<WhoisSession>,
}

/// One session of [`WhoisDevice`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WhoisSession {
    /// Always empty: no client IPs are recorded.
    pub connections: Vec<Value>,
}

/// Parses a user ID the admin API names and checks it is local.
///
/// Errors: [`Error::InvalidParam`] for a malformed or remote user ID.
pub fn local_user(accounts: &Accounts, user_id: &str) -> Result<OwnedUserId> {
    let id = UserId::parse(user_id)
        .map_err(|e| Error::InvalidParam(format!("invalid user ID {user_id:?}: {e}")))?;
    if id.server_name() != accounts.server_name() {
        return Err(Error::InvalidParam("Can only look up local users".into()));
    }
    Ok(id)
}

/// `GET /_synapse/admin/v2/users`: filters, then pages, the accounts in
/// user-ID order. Reads every account record (one range read) and the
/// profile of each candidate when `name` is given, else of the page only.
///
/// Errors: [`Error::InvalidParam`] for a `from` or `limit` that is not a
/// number in range, or a `deactivated` that is not `true`/`false`.
pub async fn list_users(accounts: &Accounts, query: &UsersQuery) -> Result<UsersPage> {
    let from = parse_number(query.from.as_deref(), "from", 0, usize::MAX)?;
    let limit = parse_number(
        query.limit.as_deref(),
        "limit",
        DEFAULT_USERS_LIMIT,
        MAX_USERS_LIMIT,
    )?;
    if limit == 0 {
        return Err(Error::InvalidParam("limit must be at least 1".into()));
    }
    let deactivated = parse_bool(query.deactivated.as_deref(), "deactivated")?.unwrap_or(false);
    let name = query.name.as_deref().map(str::to_lowercase);
    let mut matching = Vec::new();
    for (user_id, record) in accounts.db().users().await? {
        if record.deactivated && !deactivated {
            continue;
        }
        if let Some(part) = &query.user_id
            && !user_id.contains(part.as_str())
        {
            continue;
        }
        let known = match &name {
            None => None,
            Some(name) => {
                let found = summary(accounts, &user_id, &record).await?;
                let display = found.displayname.as_deref().unwrap_or("").to_lowercase();
                if !user_id.to_lowercase().contains(name) && !display.contains(name) {
                    continue;
                }
                Some(found)
            }
        };
        matching.push((user_id, record, known));
    }
    let total = matching.len();
    let mut users = Vec::new();
    for (user_id, record, known) in matching.into_iter().skip(from).take(limit) {
        users.push(match known {
            Some(known) => known,
            None => summary(accounts, &user_id, &record).await?,
        });
    }
    let end = from.saturating_add(users.len());
    Ok(UsersPage {
        next_token: (end < total).then(|| end.to_string()),
        users,
        total,
    })
}

/// `GET /_synapse/admin/v2/users/{user_id}`.
///
/// Errors: [`Error::NotFound`] ("User not found") for an unknown account,
/// [`Error::InvalidParam`] for a remote or malformed user ID.
pub async fn user(accounts: &Accounts, user_id: &str) -> Result<UserDetails> {
    let user_id = local_user(accounts, user_id)?;
    let record = accounts
        .db()
        .user(user_id.as_str())
        .await?
        .ok_or_else(|| Error::NotFound("User not found".into()))?;
    Ok(summary(accounts, user_id.as_str(), &record).await?.into())
}

/// `PUT /_synapse/admin/v2/users/{user_id}`: creates the account if it does
/// not exist (no UIA, no rate limit, registration may be disabled), then
/// applies each given field, each in its own transaction, in the order
/// password, display name, admin, deactivation; a retried request applies
/// the same values again (every step is idempotent).
///
/// Errors: [`Error::InvalidParam`] for a remote user ID, a password over the
/// limit or `deactivated: false` on a deactivated account;
/// [`Error::InvalidUsername`] for a localpart registration refuses.
pub async fn put_user(
    accounts: &Accounts,
    user_id: &str,
    body: PutUser,
) -> Result<(PutOutcome, UserDetails)> {
    let user_id = local_user(accounts, user_id)?;
    let existing = accounts.db().user(user_id.as_str()).await?;
    if body.deactivated == Some(false) && existing.as_ref().is_some_and(|r| r.deactivated) {
        return Err(Error::InvalidParam(
            "Myelin cannot reactivate a deactivated account".into(),
        ));
    }
    let outcome = match existing {
        Some(_) => {
            if let Some(password) = body.password {
                accounts
                    .set_password_as_operator(
                        &user_id,
                        password,
                        body.logout_devices.unwrap_or(true),
                    )
                    .await?;
            }
            PutOutcome::Updated
        }
        None => {
            match accounts
                .create_user(user_id.localpart(), body.password)
                .await
            {
                // A retry whose first attempt created the account.
                Ok(_) | Err(Error::UserInUse) => {}
                Err(e) => return Err(e),
            }
            PutOutcome::Created
        }
    };
    if let Some(name) = &body.displayname {
        accounts
            .db()
            .set_profile_field(
                user_id.as_str(),
                "displayname",
                Some(&Value::String(name.clone())),
            )
            .await?;
    }
    if let Some(admin) = body.admin {
        accounts.set_admin(user_id.as_str(), admin).await?;
    }
    if body.deactivated == Some(true) {
        accounts.deactivate_user(user_id.as_str()).await?;
    }
    Ok((outcome, user(accounts, user_id.as_str()).await?))
}

/// `POST /_synapse/admin/v1/deactivate/{user_id}`: logs every device out,
/// removes the password and marks the account deactivated (idempotent:
/// deactivating a deactivated account succeeds).
///
/// Errors: [`Error::NotFound`] for an unknown account,
/// [`Error::InvalidParam`] for a remote user ID.
pub async fn deactivate(accounts: &Accounts, user_id: &str) -> Result<OwnedUserId> {
    let user_id = local_user(accounts, user_id)?;
    accounts.deactivate_user(user_id.as_str()).await
}

/// `POST /_synapse/admin/v1/reset_password/{user_id}`: sets the password;
/// with `logout_devices` (default true) every device is logged out.
///
/// Errors: [`Error::NotFound`] for an unknown or deactivated account,
/// [`Error::InvalidParam`] for a remote user ID or a password over the
/// limit.
pub async fn reset_password(
    accounts: &Accounts,
    user_id: &str,
    new_password: String,
    logout_devices: bool,
) -> Result<OwnedUserId> {
    let user_id = local_user(accounts, user_id)?;
    accounts
        .set_password_as_operator(&user_id, new_password, logout_devices)
        .await?;
    Ok(user_id)
}

/// `GET /_synapse/admin/v1/whois/{user_id}`: one session per device.
///
/// Errors: [`Error::NotFound`] for an unknown account,
/// [`Error::InvalidParam`] for a remote user ID.
pub async fn whois(accounts: &Accounts, user_id: &str) -> Result<Whois> {
    let user_id = local_user(accounts, user_id)?;
    if accounts.db().user(user_id.as_str()).await?.is_none() {
        return Err(Error::NotFound("User not found".into()));
    }
    let sessions = accounts
        .db()
        .devices(user_id.as_str())
        .await?
        .into_iter()
        .map(|_| WhoisSession {
            connections: Vec::new(),
        })
        .collect();
    Ok(Whois {
        user_id: user_id.to_string(),
        devices: [(String::new(), WhoisDevice { sessions })].into(),
    })
}

/// Longest registration token, in characters (Synapse's).
pub const MAX_TOKEN_CHARS: usize = 64;
/// Length of a generated registration token (Synapse's default).
pub const DEFAULT_TOKEN_LENGTH: usize = 16;

/// A registration token in Synapse's admin shape.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegistrationToken {
    /// The token.
    pub token: String,
    /// Registrations allowed; null: unlimited.
    pub uses_allowed: Option<u64>,
    /// Always 0: every Myelin registration completes in one request.
    pub pending: u64,
    /// Registrations completed with it.
    pub completed: u64,
    /// Expiry, milliseconds since the Unix epoch; null: never.
    pub expiry_time: Option<u64>,
}

impl RegistrationToken {
    fn from_record(token: String, r: RegistrationTokenRecord) -> Self {
        RegistrationToken {
            token,
            uses_allowed: r.uses_allowed,
            pending: 0,
            completed: r.completed,
            expiry_time: r.expiry_time,
        }
    }
}

/// The body of `POST /_synapse/admin/v1/registration_tokens/new`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// The token; generated when absent.
    pub token: Option<String>,
    /// Registrations allowed (null or absent: unlimited).
    #[serde(default)]
    pub uses_allowed: Option<Value>,
    /// Expiry in ms since the epoch (null or absent: never).
    #[serde(default)]
    pub expiry_time: Option<Value>,
    /// Length of a generated token, 1..=64 (default 16).
    #[serde(default)]
    pub length: Option<Value>,
}

/// The body of `PUT /_synapse/admin/v1/registration_tokens/{token}`: a
/// field absent is unchanged, `null` is unlimited / never.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateToken {
    /// New uses allowed.
    #[serde(default, deserialize_with = "present")]
    pub uses_allowed: Option<Value>,
    /// New expiry time.
    #[serde(default, deserialize_with = "present")]
    pub expiry_time: Option<Value>,
}

/// A field that is present, `null` included, is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A non-negative integer or `null` (Synapse's checks and messages).
fn optional_count(value: Option<&Value>, name: &str) -> Result<Option<u64>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            Error::InvalidParam(format!("{name} must be a non-negative integer or null"))
        }),
    }
}

/// A random token of `length` characters of `A-Z a-z 0-9 . _ ~ -`
/// (Synapse's alphabet).
fn generate_token(random: &crate::random::Random, length: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-";
    (0..length)
        .map(|_| char::from(ALPHABET[random.range(0..ALPHABET.len())]))
        .collect()
}

/// Checks a token's characters (`A-Z a-z 0-9 . _ ~ -`) and length.
fn check_token(token: &str) -> Result<()> {
    if token.is_empty() || token.chars().count() > MAX_TOKEN_CHARS {
        return Err(Error::InvalidParam(format!(
            "token must be 1 to {MAX_TOKEN_CHARS} characters"
        )));
    }
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
    {
        return Err(Error::InvalidParam(
            "token must consist only of A-Z, a-z, 0-9, '.', '_', '~' and '-'".into(),
        ));
    }
    Ok(())
}

/// `GET /_synapse/admin/v1/registration_tokens?valid=`: every token in
/// token order; `valid=true` only those a registration could use now,
/// `false` only the others.
///
/// Errors: [`Error::InvalidParam`] for a `valid` that is not a boolean.
pub async fn registration_tokens(
    accounts: &Accounts,
    valid: Option<&str>,
) -> Result<Vec<RegistrationToken>> {
    let valid = parse_bool(valid, "valid")?;
    let now = accounts.now_ms();
    Ok(accounts
        .db()
        .registration_tokens()
        .await?
        .into_iter()
        .filter(|(_, r)| valid.is_none_or(|v| r.is_valid(now) == v))
        .map(|(t, r)| RegistrationToken::from_record(t, r))
        .collect())
}

/// `GET /_synapse/admin/v1/registration_tokens/{token}`.
///
/// Errors: [`Error::NotFound`] for an unknown token.
pub async fn registration_token(accounts: &Accounts, token: &str) -> Result<RegistrationToken> {
    let record = accounts
        .db()
        .registration_token(token)
        .await?
        .ok_or_else(|| Error::NotFound(format!("No such registration token: {token}")))?;
    Ok(RegistrationToken::from_record(token.to_owned(), record))
}

/// `POST /_synapse/admin/v1/registration_tokens/new`.
///
/// Errors: [`Error::InvalidParam`] for a token with other characters or
/// over 64, a token that exists, a negative or non-integer
/// `uses_allowed`, `expiry_time` (or one in the past) or `length`.
pub async fn create_registration_token(
    accounts: &Accounts,
    body: NewToken,
) -> Result<RegistrationToken> {
    let uses_allowed = optional_count(body.uses_allowed.as_ref(), "uses_allowed")?;
    let expiry_time = optional_count(body.expiry_time.as_ref(), "expiry_time")?;
    if expiry_time.is_some_and(|t| t < accounts.now_ms()) {
        return Err(Error::InvalidParam(
            "expiry_time must not be in the past".into(),
        ));
    }
    let token = match body.token {
        Some(token) => {
            if body.length.is_some() {
                return Err(Error::InvalidParam("give token or length, not both".into()));
            }
            check_token(&token)?;
            token
        }
        None => {
            let length = match optional_count(body.length.as_ref(), "length")? {
                None => DEFAULT_TOKEN_LENGTH,
                Some(n @ 1..=64) => n as usize,
                Some(_) => {
                    return Err(Error::InvalidParam(format!(
                        "length must be an integer from 1 to {MAX_TOKEN_CHARS}"
                    )));
                }
            };
            generate_token(accounts.random(), length)
        }
    };
    let record = RegistrationTokenRecord {
        uses_allowed,
        completed: 0,
        expiry_time,
    };
    if !accounts
        .db()
        .create_registration_token(&token, &record)
        .await?
    {
        return Err(Error::InvalidParam(format!(
            "Token already exists: {token}"
        )));
    }
    Ok(RegistrationToken::from_record(token, record))
}

/// `PUT /_synapse/admin/v1/registration_tokens/{token}`.
///
/// Errors: [`Error::NotFound`] for an unknown token,
/// [`Error::InvalidParam`] for values as in creation.
pub async fn update_registration_token(
    accounts: &Accounts,
    token: &str,
    body: UpdateToken,
) -> Result<RegistrationToken> {
    let uses = body
        .uses_allowed
        .as_ref()
        .map(|v| optional_count(Some(v), "uses_allowed"))
        .transpose()?;
    let expiry = body
        .expiry_time
        .as_ref()
        .map(|v| optional_count(Some(v), "expiry_time"))
        .transpose()?;
    let record = accounts
        .db()
        .update_registration_token(token, uses, expiry)
        .await?
        .ok_or_else(|| Error::NotFound(format!("No such registration token: {token}")))?;
    Ok(RegistrationToken::from_record(token.to_owned(), record))
}

/// `DELETE /_synapse/admin/v1/registration_tokens/{token}`.
///
/// Errors: [`Error::NotFound`] for an unknown token.
pub async fn delete_registration_token(accounts: &Accounts, token: &str) -> Result<()> {
    if accounts.db().delete_registration_token(token).await? {
        Ok(())
    } else {
        Err(Error::NotFound(format!(
            "No such registration token: {token}"
        )))
    }
}

/// Default page size of the rooms list (Synapse's).
pub const DEFAULT_ROOMS_LIMIT: usize = 100;

/// The query of `GET /_synapse/admin/v1/rooms`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RoomsQuery {
    /// Offset (decimal), default 0.
    pub from: Option<String>,
    /// Page size, 1..=1000, default 100.
    pub limit: Option<String>,
    /// `name` (default), `canonical_alias`, `joined_members`,
    /// `joined_local_members`, `version`, `creator`, `encryption`,
    /// `federatable`, `public`, `join_rules`, `guest_access`,
    /// `history_visibility` or `state_events`.
    pub order_by: Option<String>,
    /// `f` (default) or `b`.
    pub dir: Option<String>,
    /// Only rooms whose name, canonical alias or ID contains this
    /// (case-insensitive).
    pub search_term: Option<String>,
}

/// One room of the list, in Synapse's shape.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RoomSummary {
    /// The room ID.
    pub room_id: String,
    /// `m.room.name`, if set.
    pub name: Option<String>,
    /// `m.room.canonical_alias`, if set.
    pub canonical_alias: Option<String>,
    /// Members whose membership is `join`.
    pub joined_members: u64,
    /// The same (every member is local).
    pub joined_local_members: u64,
    /// The room version.
    pub version: String,
    /// The creator.
    pub creator: String,
    /// The `m.room.encryption` algorithm, if any.
    pub encryption: Option<String>,
    /// `m.federate` of the create event (default true).
    pub federatable: bool,
    /// Whether the room is in the public room directory.
    pub public: bool,
    /// `m.room.join_rules`' rule.
    pub join_rules: Option<String>,
    /// `m.room.guest_access`, if set.
    pub guest_access: Option<String>,
    /// `m.room.history_visibility`, if set.
    pub history_visibility: Option<String>,
    /// Current state events.
    pub state_events: u64,
    /// The create event's `type`, if any.
    pub room_type: Option<String>,
}

/// `GET /_synapse/admin/v1/rooms`: one page.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RoomsPage {
    /// The `from` of this page.
    pub offset: usize,
    /// The rooms.
    pub rooms: Vec<RoomSummary>,
    /// Rooms matching `search_term`.
    pub total_rooms: usize,
    /// The `from` of the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_batch: Option<usize>,
    /// The `from` of the previous page; absent on the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_batch: Option<usize>,
}

/// `GET /_synapse/admin/v1/rooms/{room_id}`: the list's fields and more.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RoomDetails {
    /// The list's fields.
    #[serde(flatten)]
    pub summary: RoomSummary,
    /// `m.room.avatar`'s URL, if set.
    pub avatar: Option<String>,
    /// `m.room.topic`, if set.
    pub topic: Option<String>,
    /// Always false (no per-server forgetting).
    pub forgotten: bool,
}

/// The current state of `room_id` as `(type, state_key) -> content`.
async fn current_state(
    rooms: &Rooms,
    room_id: &RoomId,
) -> Result<BTreeMap<(String, String), (Value, Value)>> {
    let ids = rooms.db().current_state_ids(room_id).await?;
    let events = rooms
        .db()
        .events(&ids.values().cloned().collect::<Vec<_>>())
        .await?;
    Ok(events
        .into_iter()
        .filter_map(|e| {
            let key = (e.pdu.kind().to_string(), e.pdu.state_key()?.to_owned());
            Some((key, (e.pdu.content_value(), e.pdu.to_client_event(room_id))))
        })
        .collect())
}

/// The details of one room from its record and current state.
async fn room_details(
    rooms: &Rooms,
    room_id: &RoomId,
    record: &crate::db::rooms::RoomRecord,
) -> Result<RoomDetails> {
    let state = current_state(rooms, room_id).await?;
    let field = |kind: &str, name: &str| {
        state
            .get(&(kind.to_owned(), String::new()))
            .and_then(|(content, _)| content.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let joined = state
        .iter()
        .filter(|((kind, _), (content, _))| {
            kind == "m.room.member"
                && content.get("membership").and_then(Value::as_str) == Some("join")
        })
        .count() as u64;
    let create = state.get(&("m.room.create".to_owned(), String::new()));
    let federatable = create
        .and_then(|(c, _)| c.get("m.federate"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Ok(RoomDetails {
        summary: RoomSummary {
            room_id: room_id.to_string(),
            name: field("m.room.name", "name"),
            canonical_alias: field("m.room.canonical_alias", "alias"),
            joined_members: joined,
            joined_local_members: joined,
            version: record.version.to_string(),
            creator: record.creator.to_string(),
            encryption: field("m.room.encryption", "algorithm"),
            federatable,
            public: rooms.db().is_listed(room_id).await?,
            join_rules: field("m.room.join_rules", "join_rule"),
            guest_access: field("m.room.guest_access", "guest_access"),
            history_visibility: field("m.room.history_visibility", "history_visibility"),
            state_events: state.len() as u64,
            room_type: field("m.room.create", "type"),
        },
        avatar: field("m.room.avatar", "url"),
        topic: field("m.room.topic", "topic"),
        forgotten: false,
    })
}

/// `GET /_synapse/admin/v1/rooms`: every room's summary (the current state
/// of each is read), filtered, ordered and paged.
///
/// Errors: [`Error::InvalidParam`] for a bad `from`, `limit`, `order_by`
/// or `dir`.
pub async fn list_rooms(rooms: &Rooms, query: &RoomsQuery) -> Result<RoomsPage> {
    let from = parse_number(query.from.as_deref(), "from", 0, usize::MAX)?;
    let limit = parse_number(
        query.limit.as_deref(),
        "limit",
        DEFAULT_ROOMS_LIMIT,
        MAX_USERS_LIMIT,
    )?;
    if limit == 0 {
        return Err(Error::InvalidParam("limit must be at least 1".into()));
    }
    let backwards = match query.dir.as_deref() {
        None | Some("f") => false,
        Some("b") => true,
        Some(_) => return Err(Error::InvalidParam("dir must be f or b".into())),
    };
    let order_by = query.order_by.as_deref().unwrap_or("name");
    let key = |r: &RoomSummary| -> Value {
        match order_by {
            "name" => json_of(&r.name),
            "canonical_alias" => json_of(&r.canonical_alias),
            "joined_members" => r.joined_members.into(),
            "joined_local_members" => r.joined_local_members.into(),
            "version" => r.version.clone().into(),
            "creator" => r.creator.clone().into(),
            "encryption" => json_of(&r.encryption),
            "federatable" => r.federatable.into(),
            "public" => r.public.into(),
            "join_rules" => json_of(&r.join_rules),
            "guest_access" => json_of(&r.guest_access),
            "history_visibility" => json_of(&r.history_visibility),
            "state_events" => r.state_events.into(),
            _ => Value::Null,
        }
    };
    const ORDERS: &[&str] = &[
        "name",
        "canonical_alias",
        "joined_members",
        "joined_local_members",
        "version",
        "creator",
        "encryption",
        "federatable",
        "public",
        "join_rules",
        "guest_access",
        "history_visibility",
        "state_events",
    ];
    if !ORDERS.contains(&order_by) {
        return Err(Error::InvalidParam(format!(
            "unknown order_by {order_by:?}"
        )));
    }
    let term = query.search_term.as_deref().map(str::to_lowercase);
    let mut all = Vec::new();
    for (room_id, record) in rooms.db().all_rooms().await? {
        let summary = room_details(rooms, &room_id, &record).await?.summary;
        if let Some(term) = &term {
            let hay = [
                Some(summary.room_id.as_str()),
                summary.name.as_deref(),
                summary.canonical_alias.as_deref(),
            ];
            if !hay
                .iter()
                .flatten()
                .any(|h| h.to_lowercase().contains(term.as_str()))
            {
                continue;
            }
        }
        all.push(summary);
    }
    all.sort_by(|a, b| compare_json(&key(a), &key(b)).then_with(|| a.room_id.cmp(&b.room_id)));
    if backwards {
        all.reverse();
    }
    let total_rooms = all.len();
    let page: Vec<RoomSummary> = all.into_iter().skip(from).take(limit).collect();
    let end = from.saturating_add(page.len());
    Ok(RoomsPage {
        offset: from,
        next_batch: (end < total_rooms).then_some(end),
        prev_batch: (from > 0).then(|| from.saturating_sub(limit)),
        rooms: page,
        total_rooms,
    })
}

fn json_of(v: &Option<String>) -> Value {
    v.clone().map_or(Value::Null, Value::String)
}

/// Orders null first, then numbers, booleans and strings by value.
fn compare_json(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Number(x), Value::Number(y)) => x.as_u64().cmp(&y.as_u64()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// Parses a room ID of the admin API.
fn room_id(raw: &str) -> Result<OwnedRoomId> {
    RoomId::parse(raw).map_err(|e| Error::InvalidParam(format!("invalid room ID {raw:?}: {e}")))
}

/// The record of a room, or 404 "Room not found".
async fn room_record(rooms: &Rooms, room_id: &RoomId) -> Result<crate::db::rooms::RoomRecord> {
    rooms
        .db()
        .room(room_id)
        .await?
        .ok_or_else(|| Error::NotFound("Room not found".into()))
}

/// `GET /_synapse/admin/v1/rooms/{room_id}`.
///
/// Errors: [`Error::InvalidParam`] for a malformed room ID,
/// [`Error::NotFound`] for an unknown room.
pub async fn room(rooms: &Rooms, raw_room_id: &str) -> Result<RoomDetails> {
    let room_id = room_id(raw_room_id)?;
    let record = room_record(rooms, &room_id).await?;
    room_details(rooms, &room_id, &record).await
}

/// `GET /_synapse/admin/v1/rooms/{room_id}/members`: the joined members'
/// user IDs and their count, `{"members": [...], "total": n}`.
///
/// Errors: as [`room`].
pub async fn room_members(rooms: &Rooms, raw_room_id: &str) -> Result<Value> {
    let room_id = room_id(raw_room_id)?;
    room_record(rooms, &room_id).await?;
    let members: Vec<String> = rooms
        .db()
        .members(&room_id)
        .await?
        .into_iter()
        .filter(|(_, m)| m.membership == ruma::events::room::member::MembershipState::Join)
        .map(|(user, _)| user.to_string())
        .collect();
    Ok(serde_json::json!({ "total": members.len(), "members": members }))
}

/// `GET /_synapse/admin/v1/rooms/{room_id}/state`: the current state
/// events in client format, `{"state": [...]}`.
///
/// Errors: as [`room`].
pub async fn room_state(rooms: &Rooms, raw_room_id: &str) -> Result<Value> {
    let room_id = room_id(raw_room_id)?;
    room_record(rooms, &room_id).await?;
    let state: Vec<Value> = current_state(rooms, &room_id)
        .await?
        .into_values()
        .map(|(_, event)| event)
        .collect();
    Ok(serde_json::json!({ "state": state }))
}

/// The body of `DELETE /_synapse/admin/v2/rooms/{room_id}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRoom {
    /// Block the room: nobody may join it again, by ID or alias.
    #[serde(default)]
    pub block: bool,
    /// Remove every key of the room from the `rooms` database after the
    /// members are kicked (default true, as Synapse).
    #[serde(default = "default_true")]
    pub purge: bool,
    /// Refused when given: Myelin makes no replacement room.
    pub new_room_user_id: Option<String>,
    /// Ignored (no replacement room).
    pub room_name: Option<String>,
    /// Ignored (no replacement room).
    pub message: Option<String>,
    /// Ignored: members are always kicked before a purge.
    #[serde(default)]
    pub force_purge: bool,
}

fn default_true() -> bool {
    true
}

/// `DELETE /_synapse/admin/v2/rooms/{room_id}`: shuts the room down, as a
/// job whose status is stored in the `rooms` database (so
/// `delete_status` survives a restart): with `block`, the room is blocked
/// first; every joined, invited or knocking member then leaves (their own
/// leave event, so no power level is needed); every local alias is
/// deleted; the room leaves the public directory. With `purge` (the
/// default), the status becomes `purging` and every key of the room is
/// then removed from the `rooms` database in pages
/// ([`crate::db::rooms::RoomsDb::purge_page`], progress under `purge` in
/// the status), the room record last: the room is then unknown (404). The
/// job runs before the answer (`status` is `complete`, or `failed` with the
/// error); a crash part-way leaves `shutting_down` or `purging`, and the
/// request may be repeated (each step is idempotent; a purge resumes where
/// it stopped). Returns the `delete_id`.
///
/// Errors: [`Error::InvalidParam`] for a malformed room ID or a
/// `new_room_user_id`, [`Error::NotFound`] for an unknown room.
pub async fn delete_room(
    accounts: &Accounts,
    rooms: &Rooms,
    raw_room_id: &str,
    body: DeleteRoom,
) -> Result<String> {
    let room_id = room_id(raw_room_id)?;
    if body.new_room_user_id.is_some() {
        return Err(Error::InvalidParam(
            "new_room_user_id is not supported: Myelin makes no replacement room".into(),
        ));
    }
    room_record(rooms, &room_id).await?;
    let delete_id = generate_token(accounts.random(), 16);
    let status = |status: &str, shutdown: Value| {
        serde_json::json!({
            "delete_id": delete_id,
            "room_id": room_id.as_str(),
            "status": status,
            "shutdown_room": shutdown,
        })
    };
    let empty = serde_json::json!({
        "kicked_users": [], "failed_to_kick_users": [], "local_aliases": [], "new_room_id": null,
    });
    rooms
        .db()
        .put_deletion(&delete_id, &status("shutting_down", empty))
        .await?;
    let mut outcome = shut_down(rooms, &room_id, body.block).await;
    if body.purge
        && let Ok(shutdown) = &outcome
    {
        rooms
            .db()
            .put_deletion(&delete_id, &status("purging", shutdown.clone()))
            .await?;
        if let Err(e) = purge(rooms, &room_id, &delete_id).await {
            outcome = Err(e);
        }
    }
    // The purge's progress, kept in the final status.
    let progress = delete_status(rooms, &delete_id)
        .await
        .ok()
        .and_then(|s| s.get("purge").cloned());
    let done = match &outcome {
        Ok(shutdown) => status("complete", shutdown.clone()),
        Err(e) => {
            let mut failed = status("failed", Value::Null);
            failed["error"] = Value::String(e.to_string());
            failed
        }
    };
    let mut done = done;
    if let Some(progress) = progress {
        done["purge"] = progress;
    }
    rooms.db().put_deletion(&delete_id, &done).await?;
    outcome.map(|_| delete_id)
}

/// Purges `room_id` page by page until it is gone, recording progress in
/// deletion `delete_id`'s status.
async fn purge(rooms: &Rooms, room_id: &RoomId, delete_id: &str) -> Result<()> {
    use crate::db::rooms::{PURGE_PAGE, PurgeStep};
    while rooms
        .db()
        .purge_page(room_id, delete_id, PURGE_PAGE)
        .await?
        == PurgeStep::More
    {}
    Ok(())
}

/// The steps of [`delete_room`]; the `shutdown_room` object.
async fn shut_down(rooms: &Rooms, room_id: &RoomId, block: bool) -> Result<Value> {
    use ruma::events::room::member::MembershipState as M;
    if block {
        rooms.db().set_blocked(room_id, true).await?;
    }
    let (mut kicked, mut failed) = (Vec::new(), Vec::new());
    for (user, member) in rooms.db().members(room_id).await? {
        if matches!(member.membership, M::Join | M::Invite | M::Knock) {
            match rooms.leave(&user, room_id).await {
                Ok(_) => kicked.push(user.to_string()),
                Err(e) => {
                    tracing::warn!(%user, %room_id, error = %e, "room delete: leave failed");
                    failed.push(user.to_string());
                }
            }
        }
    }
    let mut aliases = Vec::new();
    for alias in rooms.db().room_aliases(room_id).await? {
        rooms.db().delete_alias(&alias, None).await?;
        aliases.push(alias.to_string());
    }
    rooms.db().set_listed(room_id, false).await?;
    Ok(serde_json::json!({
        "kicked_users": kicked,
        "failed_to_kick_users": failed,
        "local_aliases": aliases,
        "new_room_id": null,
    }))
}

/// `GET /_synapse/admin/v2/rooms/{room_id}/delete_status`:
/// `{"results": [status, ...]}`.
///
/// Errors: [`Error::InvalidParam`] for a malformed room ID,
/// [`Error::NotFound`] when the room has no deletion.
pub async fn room_delete_status(rooms: &Rooms, raw_room_id: &str) -> Result<Value> {
    let room_id = room_id(raw_room_id)?;
    let results: Vec<Value> = rooms
        .db()
        .deletions()
        .await?
        .into_iter()
        .filter(|d| d["room_id"] == room_id.as_str())
        .collect();
    if results.is_empty() {
        return Err(Error::NotFound(format!(
            "No delete task for room_id '{room_id}' found"
        )));
    }
    Ok(serde_json::json!({ "results": results }))
}

/// `GET /_synapse/admin/v2/rooms/delete_status/{delete_id}`.
///
/// Errors: [`Error::NotFound`] for an unknown delete ID.
pub async fn delete_status(rooms: &Rooms, delete_id: &str) -> Result<Value> {
    rooms
        .db()
        .deletions()
        .await?
        .into_iter()
        .find(|d| d["delete_id"] == delete_id)
        .ok_or_else(|| Error::NotFound(format!("delete id '{delete_id}' not found")))
}

/// The list entry of one account, with its profile (one read).
async fn summary(accounts: &Accounts, user_id: &str, record: &UserRecord) -> Result<UserSummary> {
    let profile = accounts.db().profile(user_id).await?;
    let text = |field: &str| {
        profile
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(UserSummary {
        name: user_id.to_owned(),
        is_guest: false,
        admin: record.admin,
        user_type: None,
        deactivated: record.deactivated,
        erased: false,
        shadow_banned: false,
        displayname: text("displayname"),
        avatar_url: text("avatar_url"),
        creation_ts: record.created_ms,
        last_seen_ts: None,
        locked: false,
    })
}

/// A decimal query parameter: `default` when absent, at most `max`.
fn parse_number(raw: Option<&str>, name: &str, default: usize, max: usize) -> Result<usize> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.parse::<usize>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(Error::InvalidParam(format!(
            "{name} must be a number from 0 to {max}"
        ))),
    }
}

/// A `true`/`false` query parameter.
fn parse_bool(raw: Option<&str>, name: &str) -> Result<Option<bool>> {
    match raw {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(Error::InvalidParam(format!("{name} must be true or false"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_bools_are_checked() {
        assert_eq!(parse_number(None, "limit", 100, 1000).ok(), Some(100));
        assert_eq!(parse_number(Some("7"), "limit", 100, 1000).ok(), Some(7));
        assert!(parse_number(Some("1001"), "limit", 100, 1000).is_err());
        assert!(parse_number(Some("-1"), "from", 0, usize::MAX).is_err());
        assert!(parse_number(Some("x"), "from", 0, usize::MAX).is_err());
        assert_eq!(parse_bool(Some("true"), "d").ok(), Some(Some(true)));
        assert!(parse_bool(Some("1"), "d").is_err());
    }
}
