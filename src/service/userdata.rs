//! Per-user data: devices, profiles, account data, filters and push rules,
//! with the spec's access rules (a user reads and writes only their own
//! devices, account data, filters and push rules; profiles are public).

use std::collections::BTreeMap;

use ruma::api::client::device::Device;
use ruma::api::client::filter::FilterDefinition;
use ruma::api::client::uiaa::AuthData;
use ruma::push::{
    Action, AnyPushRule, InsertPushRuleError, NewPushRule, RemovePushRuleError, RuleKind, Ruleset,
};
use ruma::{MilliSecondsSinceUnixEpoch, OwnedDeviceId, RoomId, UInt, UserId};
use serde_json::value::RawValue;

use super::uia::Purpose;
use super::{Accounts, Authed, Error, Result};
use crate::kv::MaybeCommitted;

/// Account-data types the server manages; clients may not set them directly
/// (spec: "Client Config", 405 M_BAD_JSON).
pub const SERVER_MANAGED_ACCOUNT_DATA: &[&str] = &["m.fully_read", "m.push_rules"];

/// The largest a user's whole push rule set may grow, in bytes of JSON: the
/// longest value the store keeps in one transaction
/// ([`crate::db::split::MAX_VALUE_BYTES`]). Synapse keeps one row per rule
/// and sets no limit; Myelin keeps the set as one (split) value, so a rule
/// that would take it past this is refused with 413 M_TOO_LARGE.
pub const MAX_PUSH_RULES_BYTES: usize = crate::db::split::MAX_VALUE_BYTES;

/// Longest display name, in characters (Synapse's bound).
pub const MAX_DISPLAYNAME_CHARS: usize = 256;

/// The longest `avatar_url`, in bytes (Synapse's `MAX_AVATAR_URL_LEN`).
pub const MAX_AVATAR_URL_BYTES: usize = 1_000;

/// The largest a whole profile may be, in bytes of JSON (spec v1.16,
/// "Profiles": the profile must not exceed 64 KiB). A field that would take
/// it past this is refused with 413 M_TOO_LARGE.
pub const MAX_PROFILE_BYTES: usize = 65_536;

/// Why a push-rule change was rejected.
enum RuleReject {
    NotFound(&'static str),
    Invalid(String),
}

impl From<RuleReject> for Error {
    fn from(r: RuleReject) -> Self {
        match r {
            RuleReject::NotFound(what) => Error::NotFound(what.into()),
            RuleReject::Invalid(why) => Error::InvalidParam(why),
        }
    }
}

impl Accounts {
    /// `GET /devices`: the caller's devices.
    pub async fn devices(&self, authed: &Authed) -> Result<Vec<Device>> {
        let devices = self.db.devices(authed.user_id.as_str()).await?;
        Ok(devices
            .into_iter()
            .map(|(id, record)| to_device(id.into(), record))
            .collect())
    }

    /// `GET /devices/{deviceId}`.
    pub async fn device(&self, authed: &Authed, device_id: &OwnedDeviceId) -> Result<Device> {
        let record = self
            .db
            .device(authed.user_id.as_str(), device_id.as_str())
            .await?
            .ok_or_else(|| Error::NotFound("no such device".into()))?;
        Ok(to_device(device_id.clone(), record))
    }

    /// `PUT /devices/{deviceId}`: renames a device of the caller.
    pub async fn update_device(
        &self,
        authed: &Authed,
        device_id: &OwnedDeviceId,
        display_name: Option<&str>,
    ) -> Result<()> {
        super::accounts::check_device_display_name(display_name)?;
        if !self
            .db
            .update_device(authed.user_id.as_str(), device_id.as_str(), display_name)
            .await?
        {
            return Err(Error::NotFound("no such device".into()));
        }
        Ok(())
    }

    /// `DELETE /devices/{deviceId}` and `POST /delete_devices`: UIA with the
    /// password, then deletes the devices (unknown IDs are ignored) with their
    /// access tokens and E2EE keys in one `accounts` transaction, then, in a
    /// second (`transitory`) transaction, their to-device inboxes, recording a
    /// device-list change. The second step runs for every requested ID, so a
    /// client retrying after a failure between the two completes it.
    pub async fn delete_devices(
        &self,
        authed: &Authed,
        device_ids: &[OwnedDeviceId],
        auth: Option<&AuthData>,
    ) -> Result<()> {
        self.user_interactive_auth(auth, Purpose::User(&authed.user_id))
            .await?;
        let ids: Vec<String> = device_ids.iter().map(ToString::to_string).collect();
        self.db
            .delete_devices(authed.user_id.as_str(), &ids)
            .await?;
        self.lifecycle.devices_deleted(&authed.user_id, &ids).await
    }

    /// `GET /profile/{userId}`: every profile field of a local user.
    ///
    /// Errors: [`Error::NotFound`] if the user does not exist here.
    pub async fn profile(&self, user_id: &UserId) -> Result<BTreeMap<String, serde_json::Value>> {
        if user_id.server_name() != self.server_name()
            || self.db.user(user_id.as_str()).await?.is_none()
        {
            return Err(Error::NotFound("no such user".into()));
        }
        Ok(self.db.profile(user_id.as_str()).await?)
    }

    /// `GET /profile/{userId}/{field}`.
    pub async fn profile_field(&self, user_id: &UserId, field: &str) -> Result<serde_json::Value> {
        self.profile(user_id)
            .await?
            .remove(field)
            .ok_or_else(|| Error::NotFound(format!("profile field {field} is not set")))
    }

    /// `PUT`/`DELETE /profile/{userId}/{field}`: sets (or with `None` removes)
    /// a field of the caller's own profile.
    pub async fn set_profile_field(
        &self,
        authed: &Authed,
        user_id: &UserId,
        field: &str,
        value: Option<serde_json::Value>,
    ) -> Result<()> {
        if authed.user_id != user_id {
            return Err(Error::Forbidden(
                "cannot change another user's profile".into(),
            ));
        }
        if let Some(serde_json::Value::String(name)) = &value
            && field == "displayname"
            && name.chars().count() > MAX_DISPLAYNAME_CHARS
        {
            return Err(Error::InvalidParam(format!(
                "displayname is longer than {MAX_DISPLAYNAME_CHARS} characters"
            )));
        }
        if let Some(serde_json::Value::String(url)) = &value
            && field == "avatar_url"
            && url.len() > MAX_AVATAR_URL_BYTES
        {
            return Err(Error::InvalidParam(format!(
                "avatar_url is longer than {MAX_AVATAR_URL_BYTES} bytes"
            )));
        }
        if let Some(value) = &value {
            let mut profile = self.profile(user_id).await?;
            profile.insert(field.to_owned(), value.clone());
            let size = serde_json::to_vec(&profile).map_or(usize::MAX, |json| json.len());
            if size > MAX_PROFILE_BYTES {
                return Err(Error::TooLarge(format!(
                    "the profile would be {size} bytes of JSON, over the limit of {MAX_PROFILE_BYTES}"
                )));
            }
        }
        self.db
            .set_profile_field(user_id.as_str(), field, value.as_ref())
            .await?;
        Ok(())
    }

    /// `GET /user/{userId}[/rooms/{roomId}]/account_data/{type}`.
    pub async fn account_data(
        &self,
        authed: &Authed,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        event_type: &str,
    ) -> Result<Box<RawValue>> {
        if authed.user_id != user_id {
            return Err(Error::Forbidden(
                "cannot read another user's account data".into(),
            ));
        }
        self.db
            .account_data(user_id.as_str(), room_id.map(RoomId::as_str), event_type)
            .await?
            .ok_or_else(|| Error::NotFound("account data not found".into()))
    }

    /// `PUT /user/{userId}[/rooms/{roomId}]/account_data/{type}`: the content
    /// must be a JSON object; server-managed types are refused.
    pub async fn set_account_data(
        &self,
        authed: &Authed,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        event_type: &str,
        content: &RawValue,
    ) -> Result<()> {
        if authed.user_id != user_id {
            return Err(Error::Forbidden(
                "cannot add account data for another user".into(),
            ));
        }
        if SERVER_MANAGED_ACCOUNT_DATA.contains(&event_type) {
            return Err(Error::ServerManagedAccountData(event_type.to_owned()));
        }
        if !matches!(
            serde_json::from_str::<serde_json::Value>(content.get()),
            Ok(serde_json::Value::Object(_))
        ) {
            return Err(Error::BadJson(
                "account data content must be a JSON object".into(),
            ));
        }
        self.db
            .set_account_data(
                user_id.as_str(),
                room_id.map(RoomId::as_str),
                event_type,
                content,
            )
            .await?;
        Ok(())
    }

    /// `POST /user/{userId}/filter`: stores a filter, returning its ID.
    pub async fn create_filter(
        &self,
        authed: &Authed,
        user_id: &UserId,
        filter: &FilterDefinition,
    ) -> Result<String> {
        if authed.user_id != user_id {
            return Err(Error::Forbidden(
                "cannot create filters for another user".into(),
            ));
        }
        let json = serde_json::to_vec(filter).expect("filters serialize");
        let filter_id = self.random.lowercase(12);
        self.db
            .put_filter(user_id.as_str(), &filter_id, &json)
            .await?;
        Ok(filter_id)
    }

    /// `GET /user/{userId}/filter/{filterId}`.
    pub async fn filter(
        &self,
        authed: &Authed,
        user_id: &UserId,
        filter_id: &str,
    ) -> Result<FilterDefinition> {
        if authed.user_id != user_id {
            return Err(Error::Forbidden(
                "cannot read another user's filters".into(),
            ));
        }
        let json = self
            .db
            .filter(user_id.as_str(), filter_id)
            .await?
            .ok_or_else(|| Error::NotFound("no such filter".into()))?;
        serde_json::from_slice(&json).map_err(|e| {
            Error::Storage(crate::db::accounts::Error::Corrupt {
                subspace: "filter",
                source: Box::new(e),
            })
        })
    }

    /// `GET /pushrules/`: the caller's rule set (the server defaults until
    /// they change something).
    pub async fn push_rules(&self, authed: &Authed) -> Result<Ruleset> {
        let stored = self.db.push_rules(authed.user_id.as_str()).await?;
        self.parse_ruleset(&authed.user_id, stored.as_deref())
    }

    /// `GET /pushrules/global/{kind}/{ruleId}`.
    pub async fn push_rule(
        &self,
        authed: &Authed,
        kind: RuleKind,
        rule_id: &str,
    ) -> Result<AnyPushRule> {
        let rules = self.push_rules(authed).await?;
        rules
            .get(kind, rule_id)
            .map(|r| r.to_owned())
            .ok_or_else(|| Error::NotFound("no such push rule".into()))
    }

    /// `PUT /pushrules/global/{kind}/{ruleId}`: adds or replaces a user rule.
    pub async fn set_push_rule(
        &self,
        authed: &Authed,
        rule: NewPushRule,
        after: Option<&str>,
        before: Option<&str>,
    ) -> Result<()> {
        self.modify_rules(authed, |rules, _| {
            rules
                .insert(rule.clone(), after, before)
                .map_err(|e| match e {
                    InsertPushRuleError::UnknownRuleId => {
                        RuleReject::NotFound("no such before/after rule")
                    }
                    other => RuleReject::Invalid(other.to_string()),
                })
        })
        .await
    }

    /// `DELETE /pushrules/global/{kind}/{ruleId}`.
    pub async fn delete_push_rule(
        &self,
        authed: &Authed,
        kind: RuleKind,
        rule_id: &str,
    ) -> Result<()> {
        self.modify_rules(authed, |rules, maybe_committed| {
            match rules.remove(kind.clone(), rule_id) {
                Ok(()) => Ok(()),
                // A retry after `commit_unknown_result`: the attempt that may
                // have committed removed the rule (an attempt commits only
                // after a removal), so it is gone as asked. Writes the rule
                // set unchanged.
                Err(RemovePushRuleError::NotFound) if maybe_committed.0 => Ok(()),
                Err(RemovePushRuleError::NotFound) => {
                    Err(RuleReject::NotFound("no such push rule"))
                }
                Err(other) => Err(RuleReject::Invalid(other.to_string())),
            }
        })
        .await
    }

    /// `PUT /pushrules/global/{kind}/{ruleId}/enabled`.
    pub async fn set_push_rule_enabled(
        &self,
        authed: &Authed,
        kind: RuleKind,
        rule_id: &str,
        enabled: bool,
    ) -> Result<()> {
        self.modify_rules(authed, |rules, _| {
            rules
                .set_enabled(kind.clone(), rule_id, enabled)
                .map_err(|_| RuleReject::NotFound("no such push rule"))
        })
        .await
    }

    /// `PUT /pushrules/global/{kind}/{ruleId}/actions`.
    pub async fn set_push_rule_actions(
        &self,
        authed: &Authed,
        kind: RuleKind,
        rule_id: &str,
        actions: Vec<Action>,
    ) -> Result<()> {
        self.modify_rules(authed, |rules, _| {
            rules
                .set_actions(kind.clone(), rule_id, actions.clone())
                .map_err(|_| RuleReject::NotFound("no such push rule"))
        })
        .await
    }

    /// Applies `change` to the caller's rule set in one transaction; a
    /// rejected change writes nothing. `change` may run more than once, and
    /// is told whether an earlier attempt may have committed
    /// ([`crate::db::accounts::AccountsDb::update_push_rules`]).
    async fn modify_rules(
        &self,
        authed: &Authed,
        change: impl Fn(&mut Ruleset, MaybeCommitted) -> Result<(), RuleReject>,
    ) -> Result<()> {
        let user_id = &authed.user_id;
        let outcome = self
            .db
            .update_push_rules(user_id.as_str(), |stored, maybe_committed| {
                let mut rules = self.parse_ruleset(user_id, stored).map_err(Err)?;
                change(&mut rules, maybe_committed).map_err(Ok)?;
                let bytes = serde_json::to_vec(&rules).expect("rule sets serialize");
                if bytes.len() > MAX_PUSH_RULES_BYTES {
                    return Err(Err(Error::TooLarge(format!(
                        "the push rule set would be {} bytes, over the limit of {MAX_PUSH_RULES_BYTES}",
                        bytes.len()
                    ))));
                }
                Ok((bytes, ()))
            })
            .await?;
        match outcome {
            Ok(()) => Ok(()),
            Err(Ok(reject)) => Err(reject.into()),
            Err(Err(e)) => Err(e),
        }
    }

    fn parse_ruleset(&self, user_id: &UserId, stored: Option<&[u8]>) -> Result<Ruleset> {
        match stored {
            None => Ok(Ruleset::server_default(user_id)),
            Some(json) => serde_json::from_slice(json).map_err(|e| {
                Error::Storage(crate::db::accounts::Error::Corrupt {
                    subspace: "push_rules",
                    source: Box::new(e),
                })
            }),
        }
    }
}

fn to_device(device_id: OwnedDeviceId, record: crate::db::accounts::DeviceRecord) -> Device {
    let mut device = Device::new(device_id);
    device.display_name = record.display_name;
    device.last_seen_ts = UInt::new(record.created_ms).map(MilliSecondsSinceUnixEpoch);
    device
}
