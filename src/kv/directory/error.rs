//! Errors of the directory layer.
//!
//! One enum, [`DirectoryError`], for every directory operation. Storage
//! failures keep the `kv` error whole in [`DirectoryError::Kv`], so the retry
//! runner ([`crate::kv::Database::run`]) still sees conflicts and retries them;
//! everything else is a caller error or a metadata problem and is never retried.
//!
//! The variants correspond to the `ValueError`s and `Exception`s raised by
//! FoundationDB's reference implementation
//! (`bindings/python/fdb/directory_impl.py`).

use crate::kv;

/// A failed directory operation.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// `create` found a directory at the path already, or `move_to` found one
    /// at the destination.
    #[error("directory {0:?} already exists")]
    AlreadyExists(Vec<String>),
    /// The directory (or, for `create` and `move_to`, its parent) does not exist.
    #[error("directory {0:?} does not exist")]
    NotFound(Vec<String>),
    /// The directory was created with a different layer than the one asked for.
    #[error("directory {path:?} has layer {found:?}, not {requested:?}")]
    LayerMismatch {
        /// The directory.
        path: Vec<String>,
        /// The layer the caller asked for.
        requested: Vec<u8>,
        /// The layer stored with the directory.
        found: Vec<u8>,
    },
    /// The stored directory format (`root_node["version"]`) is newer than this
    /// implementation supports: a newer major version, or a newer minor version
    /// for an operation that writes.
    #[error("directory format {found:?} is not supported by this directory layer {supported:?}")]
    IncompatibleVersion {
        /// Major, minor and patch version stored in the database.
        found: [u32; 3],
        /// The version this implementation writes.
        supported: [u32; 3],
    },
    /// A manual prefix overlaps an existing directory's prefix (or the node
    /// subspace), or the allocator chose a prefix that already holds keys or
    /// overlaps a manually chosen prefix.
    #[error("the prefix is already in use")]
    PrefixInUse,
    /// The root directory cannot be created, opened, moved or removed.
    #[error("the root directory cannot be modified")]
    CannotModifyRoot,
    /// The path is not usable: empty where a directory is needed, or with an
    /// empty name.
    #[error("invalid directory path: {0}")]
    InvalidPath(&'static str),
    /// `move_to` into the directory's own subtree.
    #[error("a directory cannot be moved into itself or its own subtree")]
    BadMove,
    /// `move_to` across a directory partition boundary.
    #[error("a directory cannot be moved between partitions")]
    CannotMoveBetweenPartitions,
    /// Directory metadata that does not have the reference format (a version
    /// value that is not 12 bytes, an allocator counter that is not 8 bytes, a
    /// node key that is not a tuple).
    #[error("malformed directory metadata: {0}")]
    Malformed(&'static str),
    /// A key did not decode as a tuple under the directory's prefix.
    #[error("tuple decoding failed: {0}")]
    Tuple(#[source] foundationdb_tuple::PackError),
    /// The storage operation failed; retryable if the `kv` error is.
    #[error(transparent)]
    Kv(#[from] kv::Error),
}

impl From<foundationdb_tuple::PackError> for DirectoryError {
    fn from(e: foundationdb_tuple::PackError) -> Self {
        DirectoryError::Tuple(e)
    }
}

impl kv::TransactError for DirectoryError {
    fn as_kv(&self) -> Option<&kv::Error> {
        match self {
            DirectoryError::Kv(e) => Some(e),
            _ => None,
        }
    }
}
