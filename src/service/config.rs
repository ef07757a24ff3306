//! Server settings: registration policy, request limits, rate limits and
//! password-hashing cost. Deserialized from the `[server]` table of the
//! config file (and `MYELIN_SERVER__*` variables); every field has a default.
//!
//! Who may import this: `service` (the accounts service holds it) and `app`
//! (which reads it from the configuration); `api` reads its request limits
//! through the accounts service.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Settings of the accounts service.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(default)]
pub struct ServerConfig {
    /// Whether `POST /register` accepts new accounts (the operator CLI always can).
    pub registration_enabled: bool,
    /// If set, registration requires the `m.login.registration_token` stage
    /// with this token instead of `m.login.dummy`.
    pub registration_token: Option<String>,
    /// Registration requires the `m.login.registration_token` stage with a
    /// token made through the admin API (or `registration_token`), as
    /// Synapse's `registration_requires_token`.
    pub registration_requires_token: bool,
    /// Largest accepted request body, in bytes (M_TOO_LARGE above it).
    pub max_request_bytes: usize,
    /// Most requests served at once (in flight); a request beyond it waits
    /// for one to finish. Idle keep-alive connections do not count, a
    /// waiting `/sync` long-poll does. Config key `max_requests_in_flight`;
    /// the old key `max_connections` is accepted as a deprecated alias.
    #[serde(alias = "max_connections")]
    pub max_requests_in_flight: usize,
    /// Base URL advertised in `/.well-known/matrix/client`; defaults to
    /// `https://<server_name>`.
    pub public_base_url: Option<String>,
    /// Rate limit of login attempts per client IP address.
    pub login_per_ip: RateLimit,
    /// Rate limit of login attempts per target account.
    pub login_per_user: RateLimit,
    /// Rate limit of registrations (accounts created) per client IP;
    /// availability checks have their own bucket under the same limit.
    pub register_per_ip: RateLimit,
    /// Argon2id cost of new password hashes.
    pub password_hashing: PasswordHashing,
    /// The directory `POST /_myelin/admin/v1/backup` writes backups under
    /// (each in a named subdirectory; `docs/backup.md`). None: the endpoint
    /// is refused (403).
    pub backup_dir: Option<std::path::PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            registration_enabled: true,
            registration_token: None,
            registration_requires_token: false,
            max_request_bytes: 1 << 20,
            max_requests_in_flight: 4096,
            public_base_url: None,
            // Synapse's defaults (rc_login.address, rc_login.account, rc_registration).
            login_per_ip: RateLimit {
                per_second: 0.17,
                burst: 3,
            },
            login_per_user: RateLimit {
                per_second: 0.17,
                burst: 3,
            },
            register_per_ip: RateLimit {
                per_second: 0.17,
                burst: 3,
            },
            password_hashing: PasswordHashing::default(),
            backup_dir: None,
        }
    }
}

/// A token bucket: `burst` actions at once, refilled at `per_second`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct RateLimit {
    /// Actions regained per second.
    pub per_second: f64,
    /// Most actions allowed in a burst.
    pub burst: u32,
}

impl RateLimit {
    /// A limit that never triggers in practice (for tests and trusted setups).
    pub const UNLIMITED: RateLimit = RateLimit {
        per_second: 1e9,
        burst: u32::MAX,
    };
}

/// Argon2id parameters of new password hashes (old hashes keep theirs).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(default)]
pub struct PasswordHashing {
    /// Memory cost, in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism.
    pub parallelism: u32,
}

impl Default for PasswordHashing {
    /// OWASP's recommended Argon2id setting (19 MiB, 2 passes, 1 lane).
    fn default() -> Self {
        PasswordHashing {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl PasswordHashing {
    /// The cheapest valid setting, for tests only.
    pub const FAST_INSECURE: PasswordHashing = PasswordHashing {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_requests_in_flight_also_reads_its_deprecated_name() {
        let new: ServerConfig =
            serde_json::from_value(serde_json::json!({"max_requests_in_flight": 7})).unwrap();
        let old: ServerConfig =
            serde_json::from_value(serde_json::json!({"max_connections": 9})).unwrap();
        assert_eq!(new.max_requests_in_flight, 7);
        assert_eq!(old.max_requests_in_flight, 9);
        assert_eq!(ServerConfig::default().max_requests_in_flight, 4096);
        let both = serde_json::json!({"max_requests_in_flight": 7, "max_connections": 9});
        let err = serde_json::from_value::<ServerConfig>(both).unwrap_err();
        assert!(err.to_string().contains("duplicate field"), "{err}");
    }
}
