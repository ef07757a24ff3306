//! What directory operations return: an opened directory
//! ([`DirectorySubspace`]) and a listing row ([`DirectoryEntry`]).
//!
//! Pure values, no I/O: a `DirectorySubspace` is a tuple subspace at the
//! directory's prefix plus the path and layer it was opened with. It stays
//! valid after a `move_to` (the prefix never changes) and must not be used
//! after a `remove`.
//!
//! Who may import this: anything that uses directories (`db::*`, the CLI).

use foundationdb_tuple::{Subspace, TuplePack, TupleUnpack};

use super::DirectoryError;

/// An opened directory: its contents are the keys that start with
/// [`DirectorySubspace::prefix`], usually tuple-encoded with
/// [`DirectorySubspace::pack`].
///
/// A directory with layer `b"partition"` is a directory partition: its
/// prefix holds a whole nested directory layer, so its own subspace must not
/// be used for keys (FoundationDB's bindings refuse to pack into it); open
/// directories inside it instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectorySubspace {
    path: Vec<String>,
    layer: Vec<u8>,
    subspace: Subspace,
}

impl DirectorySubspace {
    pub(super) fn new(path: Vec<String>, prefix: &[u8], layer: Vec<u8>) -> Self {
        DirectorySubspace {
            path,
            layer,
            subspace: Subspace::from_bytes(prefix.to_vec()),
        }
    }

    /// The absolute path the directory was opened (or moved to) with.
    pub fn path(&self) -> &[String] {
        &self.path
    }

    /// The directory's layer; empty if none was given at creation.
    pub fn layer(&self) -> &[u8] {
        &self.layer
    }

    /// The raw prefix of every key of the directory's contents.
    pub fn prefix(&self) -> &[u8] {
        self.subspace.bytes()
    }

    /// The contents as a tuple subspace.
    pub fn subspace(&self) -> &Subspace {
        &self.subspace
    }

    /// The key `prefix + pack(t)`.
    pub fn pack<T: TuplePack>(&self, t: &T) -> Vec<u8> {
        self.subspace.pack(t)
    }

    /// Decodes a key of this directory back into a tuple.
    ///
    /// Errors: [`DirectoryError::Tuple`] if the key does not start with the
    /// prefix or the rest is not an encoding of `T`.
    pub fn unpack<'de, T: TupleUnpack<'de>>(&self, key: &'de [u8]) -> Result<T, DirectoryError> {
        Ok(self.subspace.unpack(key)?)
    }

    /// The range `[prefix + \x00, prefix + \xff)` of every tuple-encoded key
    /// of the directory, as FoundationDB's `Subspace.range()`. (A key equal to
    /// the bare prefix, or starting with `prefix + \xff`, is not a tuple key
    /// and falls outside it; [`super::DirectoryLayer::remove`] clears those too.)
    pub fn range(&self) -> (Vec<u8>, Vec<u8>) {
        self.subspace.range()
    }
}

/// One directory as listed by [`super::DirectoryLayer::tree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// Absolute path.
    pub path: Vec<String>,
    /// Raw content prefix.
    pub prefix: Vec<u8>,
    /// Layer; empty if none.
    pub layer: Vec<u8>,
}
