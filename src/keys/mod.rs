//! Key schemas: tuple packing into directory subspaces, decoding, and the
//! generated key layout. Pure byte work: nothing here does I/O.
//!
//! Each logical database declares its layout once, as a static
//! [`DatabaseSpec`] in its `keys.rs` (the schema contract): directories, each
//! with subspaces, each with a tag (the first tuple element), named typed key
//! fields and a value encoding. Everything else is derived from those specs:
//! - encoding: a [`Space`] (a resolved directory prefix and its
//!   [`DirectorySpec`]) packs `prefix ++ pack(tag) ++ pack(fields)` and checks
//!   the fields against the spec in debug builds;
//! - decoding: a [`Catalog`] of resolved directories names the database,
//!   directory, subspace and fields of any key, and decodes its value;
//! - documentation: [`layout::text`] (`myelin keys layout`) and
//!   [`layout::markdown`] (`docs/key-layout.md`, checked by a test).
//!
//! Keys are packed with the `foundationdb-tuple` crate, so they are byte for
//! byte the keys any FoundationDB tuple binding would produce.
//!
//! Who may import this: `db` and `db::*` (to build and open key spaces) and
//! the CLI (`myelin keys`). It imports nothing of Myelin's.

pub mod bytes;
pub mod decode;
pub mod layout;
mod space;
mod spec;
pub mod split;

pub use bytes::{ParseBytesError, parse_bytes, printable};
pub use decode::{Catalog, Decoded, KnownDirectory};
pub use space::{Directories, Space, element_matches, incomplete_versionstamp};
pub use spec::{DatabaseSpec, DirectorySpec, Field, FieldType, SubspaceSpec, ValueEncoding};

#[cfg(test)]
mod tests;
