//! The server's ed25519 signing key: generated on the first start, stored in
//! the `accounts` database, and loaded by every later start (and by every
//! server process sharing the database), so the key survives restarts.
//!
//! A process loads it once (`app::App::open`) and shares the key pair with
//! whatever signs ([`SigningKey::shared_pair`]: the rooms service).
//!
//! Who may import this: `service`, and the layers above it.

use std::sync::Arc;

use base64::Engine;
use ruma::signatures::Ed25519KeyPair;

use crate::db::accounts::{AccountsDb, SigningKeyRecord};
use crate::random::Random;

/// The loaded signing key.
pub struct SigningKey {
    pair: Arc<Ed25519KeyPair>,
}

/// Why the signing key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] crate::db::accounts::Error),
    /// The stored key does not parse.
    #[error("stored signing key is invalid")]
    Invalid(#[source] ruma::signatures::Ed25519KeyPairParseError),
}

impl SigningKey {
    /// Loads the stored key, or generates and stores one if there is none.
    /// A new key's version (`a_` and 6 letters) is drawn from `random`; the
    /// key pair itself from ruma's `Ed25519KeyPair::generate`, which takes
    /// the operating system's randomness.
    pub async fn load_or_create(db: &AccountsDb, random: &Random) -> Result<Self, SigningKeyError> {
        let version = random.lowercase(6);
        let candidate = SigningKeyRecord {
            version: format!("a_{version}"),
            pkcs8: Ed25519KeyPair::generate().to_vec(),
        };
        let record = db.signing_key_or_insert(&candidate).await?;
        let pair = Ed25519KeyPair::from_der(&record.pkcs8, record.version)
            .map_err(SigningKeyError::Invalid)?;
        Ok(SigningKey {
            pair: Arc::new(pair),
        })
    }

    /// The key ID, `ed25519:<version>`.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.pair.version())
    }

    /// The public key in unpadded standard base64, as the federation key API
    /// publishes it.
    pub fn public_key_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.pair.public_key())
    }

    /// The key pair, for signing.
    pub fn pair(&self) -> &Ed25519KeyPair {
        &self.pair
    }

    /// The key pair, shared (it cannot be cloned), for a signer that
    /// outlives this borrow.
    pub fn shared_pair(&self) -> Arc<Ed25519KeyPair> {
        self.pair.clone()
    }
}
