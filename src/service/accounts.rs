//! Accounts: registration, login, access tokens, logout, password change,
//! deactivation and the operator's account commands.
//!
//! Invariants:
//! - Checking a password costs one Argon2 verification with the configured
//!   parameters whether or not the account exists or has a password: an
//!   unknown user is verified against a dummy hash made once per process
//!   ([`Accounts::password_verifications`] counts them), so response time does
//!   not tell which accounts exist.
//! - `register_per_ip` counts registrations: `POST /register` only looks at
//!   the bucket and pays once the account is created, so user-interactive
//!   round trips and refused requests cost nothing (as in Synapse).
//!   Availability checks have their own bucket under the same limit.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use ruma::api::client::uiaa::{AuthData, UserIdentifier};
use ruma::{DeviceId, OwnedDeviceId, OwnedServerName, OwnedUserId, ServerName, UserId};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::clock::Clock;
use super::config::ServerConfig;
use super::e2ee::DeviceLifecycle;
use super::ratelimit::{Action, RateLimiter};
use super::uia::Purpose;
use super::{Error, Result, password};
use crate::db::accounts::{AccountsDb, CreateUser, NewDevice, UserRecord};
use crate::random::Random;

/// Longest accepted password, in bytes (Synapse's bound).
pub const MAX_PASSWORD_BYTES: usize = 512;
/// Longest full user ID, in bytes (spec: "User Identifiers").
pub const MAX_USER_ID_BYTES: usize = 255;

/// The accounts service. Shared by every request (`Arc`), stateless apart
/// from the rate limiter's buckets.
pub struct Accounts {
    pub(super) db: AccountsDb,
    /// Inbox deletion and device-list changes after a device comes or goes
    /// (a second transaction, on the `transitory` database).
    pub(super) lifecycle: DeviceLifecycle,
    server_name: OwnedServerName,
    pub(super) config: ServerConfig,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) limiter: RateLimiter,
    /// Tokens, generated IDs, UIA sessions and password salts.
    pub(super) random: Random,
    /// The hash an unknown user's password is verified against (made on
    /// first use with `config.password_hashing`).
    dummy_hash: OnceCell<String>,
    /// Password verifications run so far.
    verifications: AtomicU64,
}

/// The owner of a valid access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authed {
    /// The user.
    pub user_id: OwnedUserId,
    /// The device the token belongs to.
    pub device_id: OwnedDeviceId,
}

/// A successful registration.
#[derive(Clone, Debug)]
pub struct Registered {
    /// The new account.
    pub user_id: OwnedUserId,
    /// The first session, unless `inhibit_login` was set.
    pub session: Option<LoggedIn>,
}

/// A new session: the raw access token is only ever in this value.
#[derive(Clone, Debug)]
pub struct LoggedIn {
    /// The user.
    pub user_id: OwnedUserId,
    /// The device.
    pub device_id: OwnedDeviceId,
    /// The access token to hand to the client.
    pub access_token: String,
}

/// What `POST /register` asks for.
#[derive(Clone, Debug, Default)]
pub struct RegisterParams {
    /// Desired localpart; generated if `None`.
    pub username: Option<String>,
    /// The password, if any.
    pub password: Option<String>,
    /// Desired device ID; generated if `None`.
    pub device_id: Option<OwnedDeviceId>,
    /// Display name of the first device.
    pub initial_device_display_name: Option<String>,
    /// Do not log in; return only the user ID.
    pub inhibit_login: bool,
    /// The user-interactive authentication data.
    pub auth: Option<AuthData>,
}

/// What `POST /login` with `m.login.password` asks for.
#[derive(Clone, Debug, Default)]
pub struct LoginParams {
    /// The user: a localpart or a full user ID.
    pub user: String,
    /// The password.
    pub password: String,
    /// Device to log in as; generated if `None`.
    pub device_id: Option<OwnedDeviceId>,
    /// Display name for a new device.
    pub initial_device_display_name: Option<String>,
}

impl Accounts {
    /// The service over the `accounts` database `db`; `lifecycle` carries a
    /// device's creation and deletion over to the `transitory` database.
    pub fn new(
        db: AccountsDb,
        lifecycle: DeviceLifecycle,
        server_name: OwnedServerName,
        config: ServerConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Accounts {
            db,
            lifecycle,
            server_name,
            limiter: RateLimiter::new(clock.clone()),
            config,
            clock,
            random: Random::default(),
            dummy_hash: OnceCell::new(),
            verifications: AtomicU64::new(0),
        }
    }

    /// Replaces the source of access tokens, generated user, device and
    /// filter IDs, UIA sessions and password salts (the operating system's
    /// by default; tests pass a seeded one).
    pub fn with_random(mut self, random: Random) -> Self {
        self.random = random;
        self
    }

    /// The random source (for the signing key's version).
    pub fn random(&self) -> &Random {
        &self.random
    }

    /// How many password verifications (one Argon2 run each) this service
    /// has made since it started, for existing and unknown users alike.
    pub fn password_verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// The injected clock's time, milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// This server's name.
    pub fn server_name(&self) -> &ServerName {
        &self.server_name
    }

    /// The service settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The storage handle (for the signing key and the CLI).
    pub fn db(&self) -> &AccountsDb {
        &self.db
    }

    /// Resolves an access token with one key read.
    ///
    /// Errors: [`Error::UnknownToken`] if no live session has this token.
    pub async fn authenticate(&self, access_token: &str) -> Result<Authed> {
        let record = self
            .db
            .resolve_token(&token_hash(access_token))
            .await?
            .ok_or(Error::UnknownToken)?;
        let user_id = UserId::parse(record.user_id).map_err(|_| Error::UnknownToken)?;
        Ok(Authed {
            user_id,
            device_id: record.device_id.into(),
        })
    }

    /// `GET /register/available`: `Ok` if `username` could be registered now.
    pub async fn check_username_available(&self, username: &str, ip: IpAddr) -> Result<()> {
        self.rate_limit(
            Action::AvailabilityByIp,
            &ip.to_string(),
            self.config.register_per_ip,
        )?;
        let user_id = self.validate_new_localpart(username)?;
        match self.db.user(user_id.as_str()).await? {
            Some(_) => Err(Error::UserInUse),
            None => Ok(()),
        }
    }

    /// `POST /register`: checks the username, runs user-interactive
    /// authentication, then creates the account (and its first device unless
    /// `inhibit_login`) in one transaction.
    ///
    /// Errors: [`Error::LimitExceeded`] once `register_per_ip` registrations
    /// from `ip` used the bucket (only a created account takes a token).
    pub async fn register(&self, params: RegisterParams, ip: IpAddr) -> Result<Registered> {
        let ip = ip.to_string();
        self.limiter
            .peek(Action::RegisterByIp, &ip, self.config.register_per_ip)
            .map_err(|retry_after_ms| Error::LimitExceeded { retry_after_ms })?;
        if !self.config.registration_enabled {
            return Err(Error::Forbidden("registration is disabled".into()));
        }
        let user_id = match &params.username {
            Some(name) => self.validate_new_localpart(name)?,
            None => self.generated_user_id(),
        };
        if self.db.user(user_id.as_str()).await?.is_some() {
            return Err(Error::UserInUse);
        }
        check_password_length(params.password.as_deref())?;
        check_new_device(
            params.device_id.as_deref(),
            params.initial_device_display_name.as_deref(),
        )?;
        self.user_interactive_auth(params.auth.as_ref(), Purpose::Register)
            .await?;
        let hash = match params.password {
            Some(pw) => Some(password::hash(pw, self.config.password_hashing, &self.random).await),
            None => None,
        };
        let session = (!params.inhibit_login).then(|| {
            self.new_session(
                &user_id,
                params.device_id,
                params.initial_device_display_name,
            )
        });
        let now = self.clock.now_ms();
        let created = self
            .db
            .create_user_with_token(
                user_id.as_str(),
                hash.as_deref(),
                now,
                session.as_ref().map(|(_, device)| device),
                self.admin_token_used(params.auth.as_ref()),
            )
            .await?;
        match created {
            CreateUser::Created => {}
            CreateUser::InUse => return Err(Error::UserInUse),
            // Used up or expired between the UIA check and the commit.
            CreateUser::TokenRefused => {
                return Err(Error::Forbidden("invalid registration token".into()));
            }
        }
        self.limiter
            .charge(Action::RegisterByIp, &ip, self.config.register_per_ip);
        if session.is_some() {
            self.lifecycle.device_added(&user_id).await?;
        }
        tracing::info!(%user_id, "registered");
        Ok(Registered {
            user_id,
            session: session.map(|(logged_in, _)| logged_in),
        })
    }

    /// `POST /login` with `m.login.password`.
    ///
    /// Errors: [`Error::Forbidden`] for an unknown user, a wrong password or a
    /// deactivated account (indistinguishable on purpose, in time too: each
    /// costs one password verification), [`Error::LimitExceeded`] past the
    /// per-IP or per-user limit. A name that cannot be a local user ID is
    /// refused at once (no account could have it).
    pub async fn login(&self, params: LoginParams, ip: IpAddr) -> Result<LoggedIn> {
        self.rate_limit(Action::LoginByIp, &ip.to_string(), self.config.login_per_ip)?;
        check_new_device(
            params.device_id.as_deref(),
            params.initial_device_display_name.as_deref(),
        )?;
        let user_id = self
            .resolve_login_user(&params.user)
            .ok_or_else(|| Error::Forbidden("invalid username or password".into()))?;
        self.rate_limit(
            Action::LoginByUser,
            user_id.as_str(),
            self.config.login_per_user,
        )?;
        if !self.password_matches(&user_id, params.password).await? {
            return Err(Error::Forbidden("invalid username or password".into()));
        }
        let (logged_in, device) = self.new_session(
            &user_id,
            params.device_id,
            params.initial_device_display_name,
        );
        if !self
            .db
            .login_device(user_id.as_str(), &device, self.clock.now_ms())
            .await?
        {
            return Err(Error::Forbidden("invalid username or password".into()));
        }
        self.lifecycle.device_added(&user_id).await?;
        Ok(logged_in)
    }

    /// `POST /logout`: deletes the caller's device, token and E2EE keys (one
    /// `accounts` transaction), then its to-device inbox and records a
    /// device-list change (a second, `transitory` transaction).
    pub async fn logout(&self, authed: &Authed) -> Result<()> {
        let ids = [authed.device_id.to_string()];
        self.db
            .delete_devices(authed.user_id.as_str(), &ids)
            .await?;
        self.lifecycle.devices_deleted(&authed.user_id, &ids).await
    }

    /// `POST /logout/all`: deletes every device of the caller as
    /// [`Accounts::logout`] does one.
    pub async fn logout_all(&self, authed: &Authed) -> Result<()> {
        let deleted = self.db.delete_all_devices(authed.user_id.as_str()).await?;
        self.lifecycle
            .devices_deleted(&authed.user_id, &deleted)
            .await
    }

    /// `POST /account/password`: UIA with the current password, then sets the
    /// new one; unless `logout_devices` is false, every other device is logged
    /// out.
    pub async fn change_password(
        &self,
        authed: &Authed,
        new_password: String,
        logout_devices: bool,
        auth: Option<&AuthData>,
    ) -> Result<()> {
        check_password_length(Some(&new_password))?;
        self.user_interactive_auth(auth, Purpose::User(&authed.user_id))
            .await?;
        let hash = password::hash(new_password, self.config.password_hashing, &self.random).await;
        let keep = authed.device_id.as_str();
        let deleted = self
            .db
            .set_password(authed.user_id.as_str(), &hash, logout_devices, Some(keep))
            .await?
            .ok_or(Error::UserDeactivated)?;
        self.lifecycle
            .devices_deleted(&authed.user_id, &deleted)
            .await
    }

    /// `POST /account/deactivate`: UIA with the password, then deactivates.
    pub async fn deactivate(&self, authed: &Authed, auth: Option<&AuthData>) -> Result<()> {
        self.user_interactive_auth(auth, Purpose::User(&authed.user_id))
            .await?;
        let deleted = self.db.deactivate(authed.user_id.as_str()).await?;
        tracing::info!(user_id = %authed.user_id, "deactivated");
        self.lifecycle
            .devices_deleted(&authed.user_id, &deleted.unwrap_or_default())
            .await
    }

    /// Operator: creates an account without UIA or rate limits (registration
    /// may be disabled). Errors as `register` for the username.
    pub async fn create_user(
        &self,
        localpart: &str,
        password: Option<String>,
    ) -> Result<OwnedUserId> {
        let user_id = self.validate_new_localpart(localpart)?;
        check_password_length(password.as_deref())?;
        let hash = match password {
            Some(pw) => Some(password::hash(pw, self.config.password_hashing, &self.random).await),
            None => None,
        };
        let now = self.clock.now_ms();
        match self
            .db
            .create_user(user_id.as_str(), hash.as_deref(), now, None)
            .await?
        {
            CreateUser::Created => Ok(user_id),
            CreateUser::InUse => Err(Error::UserInUse),
            // No token was given.
            CreateUser::TokenRefused => Err(Error::Forbidden("invalid registration token".into())),
        }
    }

    /// Operator: sets or clears the admin flag of `user` (a localpart or
    /// user ID). Admins may make the game's server-authoritative calls.
    pub async fn set_admin(&self, user: &str, admin: bool) -> Result<OwnedUserId> {
        let user_id = self
            .resolve_login_user(user)
            .ok_or_else(|| Error::NotFound(format!("no user {user}")))?;
        if !self.db.set_admin(user_id.as_str(), admin).await? {
            return Err(Error::NotFound(format!("no user {user_id}")));
        }
        Ok(user_id)
    }

    /// Whether the authenticated user is an admin: one read of their
    /// account record (so a flag set by the operator applies to the next
    /// request, with no token to renew).
    pub async fn is_admin(&self, authed: &Authed) -> Result<bool> {
        Ok(self
            .db
            .user(authed.user_id.as_str())
            .await?
            .is_some_and(|r| r.admin && !r.deactivated))
    }

    /// Operator: every account with its record.
    pub async fn list_users(&self) -> Result<Vec<(String, UserRecord)>> {
        Ok(self.db.users().await?)
    }

    /// Operator: deactivates `user` (a localpart or user ID).
    pub async fn deactivate_user(&self, user: &str) -> Result<OwnedUserId> {
        let user_id = self
            .resolve_login_user(user)
            .ok_or_else(|| Error::NotFound(format!("no user {user}")))?;
        let Some(deleted) = self.db.deactivate(user_id.as_str()).await? else {
            return Err(Error::NotFound(format!("no user {user_id}")));
        };
        self.lifecycle.devices_deleted(&user_id, &deleted).await?;
        Ok(user_id)
    }

    /// Operator: sets a new password for `user` and logs out all its devices.
    pub async fn reset_password(&self, user: &str, new_password: String) -> Result<OwnedUserId> {
        let user_id = self
            .resolve_login_user(user)
            .ok_or_else(|| Error::NotFound(format!("no user {user}")))?;
        self.set_password_as_operator(&user_id, new_password, true)
            .await?;
        Ok(user_id)
    }

    /// Operator (and the admin API): sets a new password for `user_id`;
    /// with `logout_devices`, every device is logged out.
    ///
    /// Errors: [`Error::InvalidParam`] for a password over
    /// [`MAX_PASSWORD_BYTES`], [`Error::NotFound`] for an unknown or
    /// deactivated account.
    pub async fn set_password_as_operator(
        &self,
        user_id: &UserId,
        new_password: String,
        logout_devices: bool,
    ) -> Result<()> {
        check_password_length(Some(&new_password))?;
        let hash = password::hash(new_password, self.config.password_hashing, &self.random).await;
        let Some(deleted) = self
            .db
            .set_password(user_id.as_str(), &hash, logout_devices, None)
            .await?
        else {
            return Err(Error::NotFound(format!("no active user {user_id}")));
        };
        self.lifecycle.devices_deleted(user_id, &deleted).await
    }

    /// The admin-made registration token `auth` uses, whose use the
    /// account's creation counts (not the configured `registration_token`,
    /// which has no count).
    fn admin_token_used<'a>(&self, auth: Option<&'a AuthData>) -> Option<&'a str> {
        match auth {
            Some(AuthData::RegistrationToken(t))
                if self.config.registration_token.as_deref() != Some(t.token.as_str()) =>
            {
                Some(t.token.as_str())
            }
            _ => None,
        }
    }

    /// Whether `token` would be accepted for registration now: the
    /// configured `registration_token`, or an admin-made token that is
    /// neither used up nor expired (`GET
    /// /_matrix/client/v1/register/m.login.registration_token/validity`).
    ///
    /// Errors: [`Error::Forbidden`] when registration is disabled,
    /// [`Error::LimitExceeded`] past `register_per_ip` (the availability
    /// checks' bucket).
    pub async fn registration_token_valid(&self, token: &str, ip: IpAddr) -> Result<bool> {
        self.rate_limit(
            Action::AvailabilityByIp,
            &ip.to_string(),
            self.config.register_per_ip,
        )?;
        if !self.config.registration_enabled {
            return Err(Error::Forbidden("Registration has been disabled".into()));
        }
        self.token_valid(token).await
    }

    /// Whether `token` admits a registration now (no rate limit).
    pub(super) async fn token_valid(&self, token: &str) -> Result<bool> {
        if self.config.registration_token.as_deref() == Some(token) {
            return Ok(true);
        }
        let now = self.clock.now_ms();
        Ok(self
            .db
            .registration_token(token)
            .await?
            .is_some_and(|r| r.is_valid(now)))
    }

    /// Whether `password` is `user_id`'s password (false for unknown or
    /// deactivated users, who have no hash). Either way one verification
    /// runs: without a hash, against the dummy hash, so an unknown user costs
    /// what a wrong password does.
    pub(super) async fn password_matches(
        &self,
        user_id: &UserId,
        password: String,
    ) -> Result<bool> {
        let stored = self.db.password_hash(user_id.as_str()).await?;
        let has_hash = stored.is_some();
        let stored = match stored {
            Some(stored) => stored,
            None => self.dummy_hash().await.to_owned(),
        };
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let matches = password::verify(password, stored).await;
        Ok(has_hash && matches)
    }

    /// A hash of no one's password with the configured parameters, made once.
    async fn dummy_hash(&self) -> &str {
        self.dummy_hash
            .get_or_init(|| {
                password::hash(String::new(), self.config.password_hashing, &self.random)
            })
            .await
    }

    /// The local user a login identifier names: a full user ID on this server
    /// or a localpart (matched case-insensitively, as registration only
    /// allows lowercase).
    pub(super) fn resolve_login_user(&self, user: &str) -> Option<OwnedUserId> {
        if user.starts_with('@') {
            let id = UserId::parse(user.to_lowercase()).ok()?;
            (id.server_name() == self.server_name).then_some(id)
        } else {
            UserId::parse_with_server_name(user.to_lowercase(), &self.server_name).ok()
        }
    }

    /// The user a UIA `m.id.user` identifier names, if local.
    pub(super) fn resolve_identifier(&self, identifier: &UserIdentifier) -> Option<OwnedUserId> {
        match identifier {
            UserIdentifier::Matrix(id) => self.resolve_login_user(&id.user),
            _ => None,
        }
    }

    /// Takes a token from a rate-limit bucket.
    pub(super) fn rate_limit(
        &self,
        action: Action,
        key: &str,
        limit: super::RateLimit,
    ) -> Result<()> {
        self.limiter
            .check(action, key, limit)
            .map_err(|retry_after_ms| Error::LimitExceeded { retry_after_ms })
    }

    /// Checks a requested localpart against the spec's grammar and returns the
    /// full user ID.
    fn validate_new_localpart(&self, localpart: &str) -> Result<OwnedUserId> {
        validate_localpart(localpart).map_err(|e| Error::InvalidUsername(e.into()))?;
        let user_id = format!("@{localpart}:{}", self.server_name);
        if user_id.len() > MAX_USER_ID_BYTES {
            return Err(Error::InvalidUsername(
                "user ID is longer than 255 bytes".into(),
            ));
        }
        UserId::parse(user_id).map_err(|e| Error::InvalidUsername(e.to_string()))
    }

    /// A fresh random user ID for registrations that give no username.
    fn generated_user_id(&self) -> OwnedUserId {
        let localpart = self.random.lowercase(12);
        UserId::parse_with_server_name(localpart, &self.server_name).expect("valid localpart")
    }

    /// A new access token and device (not yet stored).
    fn new_session(
        &self,
        user_id: &UserId,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
    ) -> (LoggedIn, NewDevice) {
        let device_id = device_id.unwrap_or_else(|| generate_device_id(&self.random));
        let access_token = generate_access_token(&self.random);
        let device = NewDevice {
            device_id: device_id.to_string(),
            display_name,
            token_hash: token_hash(&access_token).to_vec(),
        };
        let logged_in = LoggedIn {
            user_id: user_id.to_owned(),
            device_id,
            access_token,
        };
        (logged_in, device)
    }
}

/// The longest device ID a client may choose, in bytes: the spec's bound on
/// identifiers in keys (a device ID is part of several).
pub const MAX_DEVICE_ID_BYTES: usize = 255;

/// The longest device display name, in characters (Synapse's
/// `MAX_DEVICE_DISPLAY_NAME_LEN`).
pub const MAX_DEVICE_DISPLAY_NAME_CHARS: usize = 100;

/// Checks a device a client names at login or registration: its ID within
/// [`MAX_DEVICE_ID_BYTES`] (400 M_INVALID_PARAM) and its display name within
/// [`check_device_display_name`]'s limit.
pub fn check_new_device(device_id: Option<&DeviceId>, display_name: Option<&str>) -> Result<()> {
    if let Some(id) = device_id
        && id.as_str().len() > MAX_DEVICE_ID_BYTES
    {
        return Err(Error::InvalidParam(format!(
            "device_id is longer than {MAX_DEVICE_ID_BYTES} bytes"
        )));
    }
    check_device_display_name(display_name)
}

/// A device display name of at most [`MAX_DEVICE_DISPLAY_NAME_CHARS`], else
/// 413 M_TOO_LARGE (Synapse answers M_TOO_LARGE with status 400).
pub fn check_device_display_name(display_name: Option<&str>) -> Result<()> {
    match display_name {
        Some(name) if name.chars().count() > MAX_DEVICE_DISPLAY_NAME_CHARS => {
            Err(Error::TooLarge(format!(
                "device display name is longer than {MAX_DEVICE_DISPLAY_NAME_CHARS} characters"
            )))
        }
        _ => Ok(()),
    }
}

/// Checks a localpart for registration: non-empty, only `a-z 0-9 . _ = - / +`
/// (spec: "User Identifiers"), and not starting with `_` (reserved for
/// application services, as in Synapse).
pub fn validate_localpart(localpart: &str) -> Result<(), &'static str> {
    if localpart.is_empty() {
        return Err("username must not be empty");
    }
    if !localpart
        .bytes()
        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'))
    {
        return Err("username may only contain a-z, 0-9, '.', '_', '=', '-', '/' and '+'");
    }
    if localpart.starts_with('_') {
        return Err("usernames starting with '_' are reserved");
    }
    Ok(())
}

fn check_password_length(password: Option<&str>) -> Result<()> {
    match password {
        Some(pw) if pw.len() > MAX_PASSWORD_BYTES => Err(Error::InvalidParam(format!(
            "password is longer than {MAX_PASSWORD_BYTES} bytes"
        ))),
        _ => Ok(()),
    }
}

/// A new access token: `myl_` and 256 bits from `random` in unpadded
/// base64url.
pub fn generate_access_token(random: &Random) -> String {
    let mut bytes = [0u8; 32];
    random.fill(&mut bytes);
    format!(
        "myl_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The stored form of an access token: its SHA-256.
pub fn token_hash(access_token: &str) -> [u8; 32] {
    Sha256::digest(access_token.as_bytes()).into()
}

/// A new device ID: 10 random uppercase letters (as Synapse).
fn generate_device_id(random: &Random) -> OwnedDeviceId {
    random.uppercase(10).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localpart_grammar() {
        assert!(validate_localpart("alice.b_c=d-e/f+g9").is_ok());
        assert!(validate_localpart("").is_err());
        assert!(validate_localpart("Alice").is_err());
        assert!(validate_localpart("al ice").is_err());
        assert!(validate_localpart("_bridge").is_err());
        assert!(validate_localpart("ali:ce").is_err());
    }

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let random = Random::os();
        let a = generate_access_token(&random);
        let b = generate_access_token(&random);
        assert_ne!(a, b);
        // 32 bytes in unpadded base64 are 43 characters.
        assert_eq!(a.len(), 4 + 43);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), token_hash(&b));
    }

    #[test]
    fn tokens_and_device_ids_come_from_the_injected_source() {
        let (a, b) = (Random::seeded(4), Random::seeded(4));
        assert_eq!(generate_access_token(&a), generate_access_token(&b));
        assert_eq!(generate_device_id(&a), generate_device_id(&b));
        let other = Random::seeded(5);
        assert_ne!(generate_access_token(&a), generate_access_token(&other));
        assert!(
            generate_device_id(&other)
                .as_str()
                .bytes()
                .all(|c| c.is_ascii_uppercase())
        );
    }
}
