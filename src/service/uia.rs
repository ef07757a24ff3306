//! User-interactive authentication (spec: "User-Interactive Authentication
//! API"). Every flow Myelin offers has a single stage, so one request with a
//! valid `auth` completes it; sessions are stored in the `accounts` database
//! (any server process can continue one) and expire after
//! [`UIA_SESSION_TTL_MS`]. A session completes once: the request that
//! completes it takes it in one transaction, marked with a random ID drawn
//! per request, so a retry after `commit_unknown_result` finds its own
//! mark, and a concurrent second use of the session is refused.
//!
//! Registration asks for `m.login.registration_token` when a
//! `registration_token` is configured or `registration_requires_token` is
//! set (Synapse's name); the configured token and the admin API's tokens
//! (neither used up nor expired) pass. The use of an admin token is counted
//! when the account is created, in the same transaction.

use base64::Engine;
use ruma::UserId;
use ruma::api::client::uiaa::{AuthData, AuthFlow, AuthType, UiaaInfo};
use ruma::api::error::{ErrorKind, StandardErrorBody};

use super::ratelimit::Action;
use super::{Accounts, Error, Result};
use crate::db::accounts::UiaSession;

/// How long a UIA session stays valid, in milliseconds.
pub const UIA_SESSION_TTL_MS: u64 = 30 * 60 * 1000;

/// What a UIA protects.
#[derive(Clone, Copy, Debug)]
pub(super) enum Purpose<'a> {
    /// Registration of a new account.
    Register,
    /// An action of an existing, authenticated user.
    User(&'a UserId),
}

impl Accounts {
    /// The flows offered for `purpose`.
    fn flows(&self, purpose: Purpose<'_>) -> Vec<AuthFlow> {
        let stage = match purpose {
            Purpose::Register
                if self.config.registration_token.is_some()
                    || self.config.registration_requires_token =>
            {
                AuthType::RegistrationToken
            }
            Purpose::Register => AuthType::Dummy,
            Purpose::User(_) => AuthType::Password,
        };
        vec![AuthFlow::new(vec![stage])]
    }

    /// Runs UIA: `Ok` once `auth` completes a flow; otherwise
    /// [`Error::AuthRequired`] with the flows, a session and, after a failed
    /// attempt, the reason.
    pub(super) async fn user_interactive_auth(
        &self,
        auth: Option<&AuthData>,
        purpose: Purpose<'_>,
    ) -> Result<()> {
        let owner = match purpose {
            Purpose::Register => None,
            Purpose::User(user_id) => Some(user_id.to_string()),
        };
        let Some(auth) = auth else {
            let session = self.new_uia_session(owner).await?;
            return Err(self.auth_required(purpose, session, None));
        };
        let session = auth.session().map(str::to_owned);
        if let Some(session) = &session {
            let now = self.clock.now_ms();
            let valid = self.db.uia_session(session).await?.is_some_and(|s| {
                s.user_id == owner && now.saturating_sub(s.created_ms) < UIA_SESSION_TTL_MS
            });
            if !valid {
                return Err(Error::Forbidden("unknown or expired UIA session".into()));
            }
        }
        let flows = self.flows(purpose);
        let offered = |t: AuthType| flows.iter().any(|f| f.stages == [t.clone()]);
        let failure = match (auth, purpose) {
            (AuthData::Dummy(_), _) if offered(AuthType::Dummy) => None,
            (AuthData::RegistrationToken(t), _) if offered(AuthType::RegistrationToken) => {
                (!self.token_valid(&t.token).await?)
                    .then_some((ErrorKind::Forbidden, "invalid registration token"))
            }
            (AuthData::Password(p), Purpose::User(user_id)) if offered(AuthType::Password) => {
                self.rate_limit(
                    Action::LoginByUser,
                    user_id.as_str(),
                    self.config.login_per_user,
                )?;
                let names_user = self.resolve_identifier(&p.identifier).as_deref() == Some(user_id);
                if names_user && self.password_matches(user_id, p.password.clone()).await? {
                    None
                } else {
                    Some((ErrorKind::Forbidden, "invalid password"))
                }
            }
            _ => Some((ErrorKind::Unrecognized, "unsupported authentication type")),
        };
        match failure {
            None => {
                if let Some(session) = &session {
                    // Drawn once per request, so a retried take of this
                    // request finds its own mark (`take_uia_session`).
                    let taker = self.random.range(0..u64::MAX);
                    if self.db.take_uia_session(session, taker).await?.is_none() {
                        // A concurrent request completed it first.
                        return Err(Error::Forbidden("unknown or expired UIA session".into()));
                    }
                }
                Ok(())
            }
            Some((kind, message)) => {
                let session = match session {
                    Some(s) => s,
                    None => self.new_uia_session(owner).await?,
                };
                let error = StandardErrorBody::new(kind, message.to_owned());
                Err(self.auth_required(purpose, session, Some(error)))
            }
        }
    }

    async fn new_uia_session(&self, user_id: Option<String>) -> Result<String> {
        let mut bytes = [0u8; 18];
        self.random.fill(&mut bytes);
        let session = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let record = UiaSession {
            user_id,
            created_ms: self.clock.now_ms(),
            taken_by: None,
        };
        self.db.put_uia_session(&session, &record).await?;
        Ok(session)
    }

    fn auth_required(
        &self,
        purpose: Purpose<'_>,
        session: String,
        error: Option<StandardErrorBody>,
    ) -> Error {
        let mut info = UiaaInfo::new(self.flows(purpose));
        info.session = Some(session);
        info.auth_error = error.map(Box::new);
        Error::AuthRequired(Box::new(info))
    }
}
