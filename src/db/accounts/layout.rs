//! The resolved subspaces of the `accounts` database: one
//! [`foundationdb_tuple::Subspace`] per subspace that `keys.rs` declares,
//! built once at open from the directories' prefixes. Keys are
//! `prefix ++ pack((field, ...))` where `prefix` is the directory prefix
//! followed by the packed subspace tag.

use foundationdb_tuple::Subspace;

use super::keys;
use crate::keys::{Directories, DirectorySpec, SubspaceSpec};

/// Every subspace of the `accounts` database, resolved to its key prefix.
#[derive(Clone, Debug)]
pub struct Layout {
    /// `(user_id) -> UserRecord`.
    pub user: Subspace,
    /// `(user_id) -> argon2 PHC string`.
    pub password: Subspace,
    /// `(sha256(token)) -> TokenRecord`.
    pub token: Subspace,
    /// `(user_id, device_id) -> DeviceRecord`.
    pub device: Subspace,
    /// `(session) -> UiaSession`.
    pub uia: Subspace,
    /// `(user_id, device_id) -> ""`: a deleted device's cleanup is owed.
    pub cleanup_owed: Subspace,
    /// `(user_id, field) -> JSON value`.
    pub profile: Subspace,
    /// `(user_id, room_id or "", type) -> versionstamp ++ JSON content`.
    pub account_data: Subspace,
    /// `(user_id, versionstamp) -> AccountDataLogEntry`.
    pub account_data_log: Subspace,
    /// `(user_id, filter_id) -> JSON filter definition`.
    pub filter: Subspace,
    /// `(user_id) -> JSON push rule set`.
    pub push_rules: Subspace,
    /// `() -> SigningKeyRecord`.
    pub signing_key: Subspace,
    /// `(token) -> RegistrationTokenRecord`.
    pub registration_token: Subspace,
    /// The notification keys (`meta/notify`, `meta/wake`), bumped by
    /// writes that sync delivers.
    pub notify: crate::db::notify::Keys,
    /// One device's E2EE key subspaces, cleared with the device.
    pub device_e2ee: super::e2ee::DeviceKeySpaces,
}

impl Layout {
    /// The layout of an opened `accounts` database: each subspace at its
    /// directory's prefix followed by its packed tag, as `keys.rs` declares.
    pub fn from_dirs(dirs: &Directories) -> Self {
        let sub = |dir: &DirectorySpec, spec: &SubspaceSpec| {
            Subspace::from_bytes(dirs.space(dir).subspace_prefix(spec))
        };
        Layout {
            user: sub(&keys::USERS, &keys::USER),
            password: sub(&keys::USERS, &keys::PASSWORD),
            token: sub(&keys::SESSIONS, &keys::TOKEN),
            device: sub(&keys::SESSIONS, &keys::DEVICE),
            uia: sub(&keys::SESSIONS, &keys::UIA),
            cleanup_owed: sub(&keys::SESSIONS, &keys::CLEANUP_OWED),
            profile: sub(&keys::PROFILES, &keys::PROFILE_FIELD),
            account_data: sub(&keys::ACCOUNT_DATA, &keys::ACCOUNT_DATA_CURRENT),
            account_data_log: sub(&keys::ACCOUNT_DATA, &keys::ACCOUNT_DATA_LOG),
            filter: sub(&keys::FILTERS, &keys::FILTER),
            push_rules: sub(&keys::PUSH_RULES, &keys::RULESET),
            signing_key: sub(&keys::SERVER, &keys::SIGNING_KEY),
            registration_token: sub(&keys::SERVER, &keys::REGISTRATION_TOKEN),
            notify: crate::db::notify::Keys::of(dirs)
                .expect("accounts declares the notification keys"),
            device_e2ee: super::e2ee::DeviceKeySpaces::from_dirs(dirs),
        }
    }
}
