//! The resolved subspaces of the `accounts` database: one
//! [`foundationdb_tuple::Subspace`] per subspace that `keys.rs` declares,
//! built once at open from the directories' prefixes. Keys are
//! `prefix ++ pack((field, ...))` where `prefix` is the directory prefix
//! followed by the packed subspace tag.

use foundationdb_tuple::Subspace;

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
}

impl Layout {
    /// The layout with every subspace at `dir_prefix(directory) ++ pack(tag)`,
    /// given a function that yields each directory's raw prefix.
    pub fn from_directories(dir: impl Fn(&str) -> Vec<u8>) -> Self {
        let sub = |d: &str, tag: i64| Subspace::from_bytes(dir(d)).subspace(&tag);
        Layout {
            user: sub("users", 0),
            password: sub("users", 1),
            token: sub("sessions", 0),
            device: sub("sessions", 1),
            uia: sub("sessions", 2),
            profile: sub("profiles", 0),
            account_data: sub("account_data", 0),
            account_data_log: sub("account_data", 1),
            filter: sub("filters", 0),
            push_rules: sub("push_rules", 0),
            signing_key: sub("server", 0),
        }
    }

    /// A layout under a plain tuple prefix `(root, directory)`, for tests that
    /// run without the directory layer.
    pub fn under_prefix(root: &[u8]) -> Self {
        Layout::from_directories(|d| Subspace::from_bytes(root.to_vec()).pack(&d))
    }
}
