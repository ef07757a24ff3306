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
//! ## Byte format (version 2)
//! ```text
//! offset  0      1 .. 11         11 .. 21      21 .. 31          31 .. 41
//!         0x02   accounts (10)   rooms (10)    transitory (10)   game (10)
//! ```
//! 41 bytes, encoded as unpadded base64url (RFC 4648 section 5): 55
//! characters from `[A-Za-z0-9_-]`, safe in a URL query without escaping.
//! The first byte is the format version. Versionstamps persist across
//! restarts, so tokens stay valid as long as the stores do.
//!
//! Version 1 (31 bytes, 42 characters: `0x01`, then accounts, rooms and
//! transitory) came before the `game` database and still parses: its
//! missing `game` part is `None`, which sync reads as "the game changes
//! before this sync are not owed": the first sync from such a token answers
//! no `org.myelin.game` section for older changes and returns a version-2
//! token positioned at the read. Every other version, length or alphabet is
//! rejected with [`TokenError`].
//!
//! Who may import this: `sync`, `api` (which reads tokens in `/keys/changes`
//! and as `/messages` bounds, through `sync::SyncToken`) and tests.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::db::game::GameDb;
use crate::db::{Position, accounts, rooms, transitory};

/// The format version this code writes (it also reads
/// [`FORMAT_VERSION_1`]).
pub const FORMAT_VERSION: u8 = 2;

/// The format before the `game` database: three positions.
pub const FORMAT_VERSION_1: u8 = 1;

/// Length of an encoded token's bytes: the version and four positions.
pub const TOKEN_BYTES: usize = 1 + 4 * 10;

/// Length of a version-1 token's bytes: the version and three positions.
pub const TOKEN_BYTES_V1: usize = 1 + 3 * 10;

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
    /// Position in the `game` database (wallets, items, trades, storage);
    /// `None` only in a token parsed from format version 1, which predates
    /// it (module docs).
    pub game: Option<Position<GameDb>>,
}

/// Why a token string is not a valid token. Maps to 400 `M_INVALID_PARAM`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not unpadded base64url.
    #[error("sync token is not base64url")]
    NotBase64,
    /// Decodes to the wrong number of bytes for its version.
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
        out[31..41].copy_from_slice(&self.game.unwrap_or(Position::ZERO).to_bytes());
        out
    }

    /// Parses a token's bytes.
    ///
    /// Errors: [`TokenError::BadLength`], [`TokenError::UnknownVersion`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TokenError> {
        let len = match bytes.first() {
            Some(&FORMAT_VERSION) => TOKEN_BYTES,
            Some(&FORMAT_VERSION_1) => TOKEN_BYTES_V1,
            Some(&v) if bytes.len() == TOKEN_BYTES || bytes.len() == TOKEN_BYTES_V1 => {
                return Err(TokenError::UnknownVersion(v));
            }
            _ => TOKEN_BYTES,
        };
        if bytes.len() != len {
            return Err(TokenError::BadLength {
                len_bytes: bytes.len(),
            });
        }
        fn part<D>(bytes: &[u8], at: usize) -> Position<D> {
            Position::from_bytes(bytes[at..at + 10].try_into().expect("10 bytes"))
        }
        Ok(SyncToken {
            accounts: part(bytes, 1),
            rooms: part(bytes, 11),
            transitory: part(bytes, 21),
            game: (len == TOKEN_BYTES).then(|| part(bytes, 31)),
        })
    }

    /// Each part the later of `self`'s and `other`'s (compared per database).
    pub fn max(self, other: SyncToken) -> SyncToken {
        SyncToken {
            accounts: self.accounts.max(other.accounts),
            rooms: self.rooms.max(other.rooms),
            transitory: self.transitory.max(other.transitory),
            game: self.game.max(other.game),
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
        // Bound the work before decoding: a valid token is 55 characters.
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
            game: Some(Position::from_bytes([9; 10])),
        }
    }

    #[test]
    fn bytes_follow_the_documented_layout() {
        let bytes = sample().to_bytes();
        let expected: [u8; TOKEN_BYTES] = [
            2, // format version
            0, 0, 0, 0, 0, 0, 0, 7, 0, 1, // accounts
            1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, // rooms
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // transitory
            9, 9, 9, 9, 9, 9, 9, 9, 9, 9, // game
        ];
        assert_eq!(bytes, expected);
        let text = sample().to_string();
        assert_eq!(text.len(), 55);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(
            text,
            "AgAAAAAAAAAHAAEBAgMEBQYHCP__AAAAAAAAAAAAAAkJCQkJCQkJCQk"
        );
    }

    #[test]
    fn a_version_1_token_still_parses_without_a_game_part() {
        // Written by the code before the game database: 31 bytes.
        let text = "AQAAAAAAAAAHAAEBAgMEBQYHCP__AAAAAAAAAAAAAA";
        let token: SyncToken = text.parse().expect("a version-1 token");
        assert_eq!(token.accounts, sample().accounts);
        assert_eq!(token.rooms, sample().rooms);
        assert_eq!(token.transitory, Position::ZERO);
        assert_eq!(token.game, None);
        // Written back, it is a version-2 token.
        let again = token.to_string();
        assert_eq!(again.len(), 55);
        assert_eq!(
            again.parse::<SyncToken>().expect("a version-2 token").game,
            Some(Position::ZERO)
        );
        // A version-1 byte with a version-2 length is refused.
        let mut bytes = sample().to_bytes();
        bytes[0] = FORMAT_VERSION_1;
        assert_eq!(
            SyncToken::from_bytes(&bytes),
            Err(TokenError::BadLength { len_bytes: 41 })
        );
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
        let mut v3 = sample().to_bytes();
        v3[0] = 3;
        assert_eq!(
            URL_SAFE_NO_PAD.encode(v3).parse::<SyncToken>(),
            Err(TokenError::UnknownVersion(3))
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
                game: Some(Position::from_bytes(rng.random())),
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
