//! The value and key codec every database shares: records as named-field
//! MessagePack, keys as tuples under a prefix, and [`Corrupt`], the one
//! error for stored bytes that do not decode.
//!
//! Each database's error enum has a `Corrupt { subspace, source }` variant
//! and converts [`Corrupt`] into it (`From<Corrupt>`), so a database module
//! uses these functions directly with `?`; a new database needs nothing
//! more than that conversion.
//!
//! Invariants (the on-disk format; changing them needs a new schema version
//! in every database):
//! - a record is `rmp_serde::to_vec_named`: a map keyed by field name, so
//!   fields can be added with `#[serde(default)]` without a migration;
//! - a key is `prefix ++ pack(tuple)`, where `prefix` is a directory's prefix
//!   (a [`Space`]) or a directory's prefix followed by the packed subspace
//!   tag (a [`Subspace`]).
//!
//! Who may import this: `db::*`. Pure byte work, no I/O.

use foundationdb_tuple::{Subspace, TupleUnpack};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::keys::Space;

/// A stored value or key of a subspace did not decode: the store is corrupt
/// or was written by an incompatible version. Each database's error turns it
/// into its own `Corrupt` variant, which names the database.
#[derive(Debug, thiserror::Error)]
#[error("corrupt value in subspace {subspace}")]
pub struct Corrupt {
    /// The subspace's name in the database's `keys.rs`.
    pub subspace: &'static str,
    /// What failed to decode.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl Corrupt {
    /// A corrupt value of `subspace`, for what failed (an error or a
    /// sentence).
    pub fn new(
        subspace: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Corrupt {
            subspace,
            source: source.into(),
        }
    }
}

/// Encodes a record as named-field MessagePack.
///
/// # Panics
/// Never for the records of `db::*` (plain structs of strings, numbers,
/// options and maps with string keys, which always serialize).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("records always serialize")
}

/// Decodes a MessagePack record of `subspace`.
///
/// Errors: [`Corrupt`] if `bytes` is not a `T`.
pub fn decode<T: DeserializeOwned>(subspace: &'static str, bytes: &[u8]) -> Result<T, Corrupt> {
    rmp_serde::from_slice(bytes).map_err(|e| Corrupt::new(subspace, e))
}

/// A key's prefix: what [`unpack`] strips before decoding the tuple.
pub trait KeyPrefix {
    /// The prefix bytes.
    fn key_prefix(&self) -> &[u8];
}

impl KeyPrefix for Subspace {
    fn key_prefix(&self) -> &[u8] {
        self.bytes()
    }
}

impl KeyPrefix for Space {
    fn key_prefix(&self) -> &[u8] {
        self.prefix()
    }
}

/// Decodes the tuple of a key of `subspace` that lies under `space`.
///
/// Errors: [`Corrupt`] if `key` does not start with the prefix or the rest
/// is not a `T`.
pub fn unpack<'de, T: TupleUnpack<'de>>(
    subspace: &'static str,
    space: &impl KeyPrefix,
    key: &'de [u8],
) -> Result<T, Corrupt> {
    let rest = key
        .strip_prefix(space.key_prefix())
        .ok_or_else(|| Corrupt::new(subspace, "key outside its subspace"))?;
    foundationdb_tuple::unpack(rest).map_err(|e| Corrupt::new(subspace, e))
}
