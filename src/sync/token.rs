//! Sync position tokens: the `next_batch` / `since` strings of `/sync`.
//!
//! A token holds one position per database, each a 10-byte FoundationDB
//! versionstamp of that database's store (8-byte big-endian commit version,
//! 2-byte big-endian order within the batch). Parts are compared only with
//! positions of the same database: the databases may sit on different
//! clusters whose versions are unrelated.
//!
//! A position `p` means "every change of this database with a versionstamp
//! `<= p` has been delivered". A read version `rv` ("everything visible now")
//! becomes the position `rv ++ ff ff` ([`Position::at_read_version`]), which
//! sorts after every versionstamp of a commit at or before `rv` and before
//! every later one. Each part has its database's type
//! ([`crate::db::Position`]`<D>`), so the compiler refuses a comparison
//! across databases.
//!
//! ## Byte format (version 1)
//! ```text
//! offset  0      1 .. 11         11 .. 21      21 .. 31
//!         0x01   accounts (10)   rooms (10)    transitory (10)
//! ```
//! 31 bytes, encoded as unpadded base64url (RFC 4648 section 5): 42
//! characters from `[A-Za-z0-9_-]`, safe in a URL query without escaping.
//! The first byte is the format version; a parser rejects every other
//! version, length or alphabet with [`TokenError`]. Versionstamps persist
//! across restarts, so tokens stay valid as long as the stores do.
//!
//! Who may import this: `sync`, `api` (which reads tokens in `/keys/changes`
//! and as `/messages` bounds, through `sync::SyncToken`) and tests.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::db::{Position, accounts, rooms, transitory};

/// The format version this code writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// Length of an encoded token's bytes: the version and three positions.
pub const TOKEN_BYTES: usize = 1 + 3 * 10;

/// A complete sync position: one [`Position`] per database.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SyncToken {
    /// Position in the `accounts` database (account data).
    pub accounts: accounts::Position,
    /// Position in the `rooms` database (events, state).
    pub rooms: rooms::Position,
    /// Position in the `transitory` database (to-device, receipts, typing,
    /// presence).
    pub transitory: transitory::Position,
}

/// Why a token string is not a valid token. Maps to 400 `M_INVALID_PARAM`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not unpadded base64url.
    #[error("sync token is not base64url")]
    NotBase64,
    /// Decodes to the wrong number of bytes.
    #[error("sync token has {len_bytes} bytes, expected {TOKEN_BYTES}")]
    BadLength {
        /// The decoded length.
        len_bytes: usize,
    },
    /// A format version this code does not read.
    #[error("sync token has format version {0}, expected {FORMAT_VERSION}")]
    UnknownVersion(u8),
}

impl SyncToken {
    /// The token's bytes (see the module docs for the layout).
    pub fn to_bytes(&self) -> [u8; TOKEN_BYTES] {
        let mut out = [0u8; TOKEN_BYTES];
        out[0] = FORMAT_VERSION;
        out[1..11].copy_from_slice(&self.accounts.to_bytes());
        out[11..21].copy_from_slice(&self.rooms.to_bytes());
        out[21..31].copy_from_slice(&self.transitory.to_bytes());
        out
    }

    /// Parses a token's bytes.
    ///
    /// Errors: [`TokenError::BadLength`], [`TokenError::UnknownVersion`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TokenError> {
        if bytes.len() != TOKEN_BYTES {
            return Err(TokenError::BadLength {
                len_bytes: bytes.len(),
            });
        }
        if bytes[0] != FORMAT_VERSION {
            return Err(TokenError::UnknownVersion(bytes[0]));
        }
        fn part<D>(bytes: &[u8], at: usize) -> Position<D> {
            Position::from_bytes(bytes[at..at + 10].try_into().expect("10 bytes"))
        }
        Ok(SyncToken {
            accounts: part(bytes, 1),
            rooms: part(bytes, 11),
            transitory: part(bytes, 21),
        })
    }

    /// Each part the later of `self`'s and `other`'s (compared per database).
    pub fn max(self, other: SyncToken) -> SyncToken {
        SyncToken {
            accounts: self.accounts.max(other.accounts),
            rooms: self.rooms.max(other.rooms),
            transitory: self.transitory.max(other.transitory),
        }
    }
}

impl fmt::Display for SyncToken {
    /// The unpadded base64url string of [`SyncToken::to_bytes`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.to_bytes()))
    }
}

impl FromStr for SyncToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, TokenError> {
        // Bound the work before decoding: a valid token is 42 characters.
        if s.len() > 2 * TOKEN_BYTES {
            return Err(TokenError::BadLength {
                len_bytes: s.len() * 3 / 4,
            });
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| TokenError::NotBase64)?;
        SyncToken::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    fn sample() -> SyncToken {
        SyncToken {
            accounts: Position::from_bytes([0, 0, 0, 0, 0, 0, 0, 7, 0, 1]),
            rooms: Position::at_read_version(0x0102_0304_0506_0708),
            transitory: Position::ZERO,
        }
    }

    #[test]
    fn bytes_follow_the_documented_layout() {
        let bytes = sample().to_bytes();
        let expected: [u8; TOKEN_BYTES] = [
            1, // format version
            0, 0, 0, 0, 0, 0, 0, 7, 0, 1, // accounts
            1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, // rooms
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // transitory
        ];
        assert_eq!(bytes, expected);
        let text = sample().to_string();
        assert_eq!(text.len(), 42);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(text, "AQAAAAAAAAAHAAEBAgMEBQYHCP__AAAAAAAAAAAAAA");
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let good = sample().to_string();
        assert_eq!(
            "not base64!".parse::<SyncToken>(),
            Err(TokenError::NotBase64)
        );
        assert_eq!(
            format!("{good}=").parse::<SyncToken>(),
            Err(TokenError::NotBase64)
        );
        assert_eq!(
            good[..40].parse::<SyncToken>(),
            Err(TokenError::BadLength { len_bytes: 30 })
        );
        assert_eq!(
            "".parse::<SyncToken>(),
            Err(TokenError::BadLength { len_bytes: 0 })
        );
        let mut v2 = sample().to_bytes();
        v2[0] = 2;
        assert_eq!(
            URL_SAFE_NO_PAD.encode(v2).parse::<SyncToken>(),
            Err(TokenError::UnknownVersion(2))
        );
        assert!(matches!(
            "A".repeat(10_000).parse::<SyncToken>(),
            Err(TokenError::BadLength { .. })
        ));
    }

    #[test]
    fn round_trips_random_tokens() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for _ in 0..10_000 {
            let token = SyncToken {
                accounts: Position::from_bytes(rng.random()),
                rooms: Position::from_bytes(rng.random()),
                transitory: Position::from_bytes(rng.random()),
            };
            let text = token.to_string();
            assert_eq!(text.parse::<SyncToken>(), Ok(token), "{text}");
            assert_eq!(SyncToken::from_bytes(&token.to_bytes()), Ok(token));
        }
    }

    #[test]
    fn random_strings_never_panic_and_only_valid_ones_parse() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        const ALPHABET: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/!";
        for _ in 0..10_000 {
            let len = rng.random_range(0..64);
            let s: String = (0..len)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect();
            if let Ok(token) = s.parse::<SyncToken>() {
                assert_eq!(token.to_string(), s, "only canonical strings parse");
            }
        }
    }
}
