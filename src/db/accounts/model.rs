//! The records the `accounts` database stores as MessagePack values (see
//! `keys.rs` for which subspace holds which). Plain data: no I/O.
//!
//! Fields are encoded by name (`rmp_serde::to_vec_named`), so adding an
//! optional field with `#[serde(default)]` is a compatible change.

use serde::{Deserialize, Serialize};

/// One local account, keyed by its full user ID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// When the account was created, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Deactivated accounts keep their record (so the ID is never reused) but
    /// have no password, devices or tokens.
    #[serde(default)]
    pub deactivated: bool,
    /// Server administrator flag (set by the operator CLI).
    #[serde(default)]
    pub admin: bool,
}

/// What an access token resolves to: the one read an authenticated request
/// makes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The token's owner, a full user ID.
    pub user_id: String,
    /// The device the token belongs to.
    pub device_id: String,
}

/// One device (one login session) of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Human-readable name, set by the client.
    #[serde(default)]
    pub display_name: Option<String>,
    /// SHA-256 of the device's current access token (32 bytes), so the token
    /// entry can be removed with the device.
    #[serde(with = "serde_bytes_vec")]
    pub token_hash: Vec<u8>,
    /// When the device logged in, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

/// A user-interactive authentication session (`session` in the UIA body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiaSession {
    /// The user the session authenticates, or `None` for registration.
    pub user_id: Option<String>,
    /// When the session was created, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The taker ID of the [`crate::db::accounts::AccountsDb::take_uia_session`]
    /// call that completed the session, `None` while it is open. Kept in
    /// the record (instead of deleting it) so a retry of that call after
    /// `commit_unknown_result` recognises its own take.
    #[serde(default)]
    pub taken_by: Option<u64>,
}

/// A registration token made through the admin API (Synapse's
/// `registration_tokens` row, without `pending`: every Myelin registration
/// completes in one request, so no use is ever pending).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationTokenRecord {
    /// How many registrations may use it; `None`: unlimited.
    pub uses_allowed: Option<u64>,
    /// Registrations completed with it.
    pub completed: u64,
    /// When it stops being valid, milliseconds since the Unix epoch;
    /// `None`: never.
    pub expiry_time: Option<u64>,
}

impl RegistrationTokenRecord {
    /// Whether a registration may use the token at `now_ms`: not expired,
    /// and fewer completed uses than allowed.
    pub fn is_valid(&self, now_ms: u64) -> bool {
        self.uses_allowed.is_none_or(|n| self.completed < n)
            && self.expiry_time.is_none_or(|t| now_ms < t)
    }
}

/// The server's ed25519 signing key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    /// The key version, e.g. `a_Xy12`; the key ID is `ed25519:<version>`.
    pub version: String,
    /// The PKCS#8 v2 document holding the private and public key.
    #[serde(with = "serde_bytes_vec")]
    pub pkcs8: Vec<u8>,
}

/// Serializes a `Vec<u8>` as a MessagePack binary rather than an array.
mod serde_bytes_vec {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
        }
        d.deserialize_bytes(V)
    }
}
