//! Password hashing with Argon2id (PHC string format, salt from the OS RNG).
//! Hashing and verifying are CPU-bound and run on tokio's blocking pool.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;

use super::config::PasswordHashing;

/// Hashes `password` with `cost`, returning the PHC string.
pub async fn hash(password: String, cost: PasswordHashing) -> String {
    tokio::task::spawn_blocking(move || hash_blocking(&password, cost))
        .await
        .expect("hashing task does not panic")
}

fn hash_blocking(password: &str, cost: PasswordHashing) -> String {
    let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
        .expect("PasswordHashing holds valid Argon2 parameters");
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16-byte salt encodes");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .expect("hashing with valid parameters succeeds")
        .to_string()
}

/// Whether `password` matches the PHC string `stored` (parameters are read
/// from the string). A malformed `stored` never matches.
pub async fn verify(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .expect("verifying task does not panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_verifies_and_salts() {
        let cost = PasswordHashing::FAST_INSECURE;
        let a = hash("hunter2".into(), cost).await;
        let b = hash("hunter2".into(), cost).await;
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "salted");
        assert!(verify("hunter2".into(), a.clone()).await);
        assert!(!verify("hunter3".into(), a).await);
        assert!(!verify("hunter2".into(), "not a hash".into()).await);
    }
}
