//! The FoundationDB directory layer, written against the `kv` interface, in
//! FoundationDB's own on-disk format.
//!
//! A directory maps a path of names (`["rooms", "events"]`) to a short
//! key prefix allocated once, so keys stay short and a directory can be
//! renamed without moving data. Because every operation goes through
//! [`crate::kv::Transaction`], the same code runs on every backend, and a
//! directory created here on FoundationDB is opened by FoundationDB's own
//! bindings (`fdb.directory` in Python, `directory` in Go and Java) with the
//! same prefix, and vice versa.
//!
//! ## Format (source: `bindings/python/fdb/directory_impl.py`, `directory/directoryLayer.go`)
//! With node subspace `N` (default raw prefix `\xfe`) and content subspace `C`
//! (default empty), tuple-encoded:
//!
//! | key | value |
//! |-----|-------|
//! | `N[N.key()]` | the root node, `\xfe\x01\xfe\x00` by default |
//! | `root["version"]` | `(1, 0, 0)` as three little-endian `u32` |
//! | `node[0][name]` (`SUBDIRS = 0`) | the child directory's raw prefix |
//! | `N[prefix]["layer"]` | the directory's layer (may be empty) |
//! | `root["hca"][0][start]` | allocator counter, little-endian `i64` (see `hca.rs`) |
//! | `root["hca"][1][n]` | empty: `n` was tried in the current window |
//!
//! where `node = N[prefix]` for a directory with prefix `prefix`. Names are
//! tuple strings, the `"version"`, `"layer"` and `"hca"` suffixes are tuple
//! byte strings. An allocated prefix is `C.key() + pack(n)` for the integer
//! `n` from the high-contention allocator, e.g. `\x15\x07`.
//!
//! A directory whose layer is `b"partition"` is a *partition*: its subtree is
//! a nested directory layer with node subspace `prefix + \xfe` and content
//! subspace `prefix`. Paths through a partition are followed into it, as the
//! reference implementation does; directories cannot move across partitions.
//!
//! ## Invariants
//! - Prefixes never overlap: automatic prefixes come from the allocator and are
//!   checked free; manual prefixes are refused ([`DirectoryError::PrefixInUse`])
//!   if they contain or are contained in any directory's prefix or the node
//!   subspace.
//! - Every operation first checks `root["version"]` and refuses a newer major
//!   version; operations that write initialise it.
//! - Reads of directory metadata are non-snapshot, so a transaction that used
//!   a directory conflicts with one that moved or removed it concurrently.
//!
//! Who may import this: `db` (which opens each database's directories, and
//! lists them for `myelin keys` through [`DirectoryLayer::tree`]).

mod error;
mod hca;
mod node;
mod subspace;

use foundationdb_tuple::Subspace;

pub use error::DirectoryError;
pub use subspace::{DirectoryEntry, DirectorySubspace};

use crate::kv::{RangeOption, Transaction};
use crate::random::Random;
use hca::HighContentionAllocator;
use node::Node;

/// The layer of a directory partition.
pub const PARTITION_LAYER: &[u8] = b"partition";

/// A root of directories: where node metadata goes and where directory
/// contents are allocated. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DirectoryLayer {
    node_subspace: Subspace,
    content_subspace: Subspace,
    root_node: Subspace,
    allocator: HighContentionAllocator,
    /// Absolute path of the partition this layer is the inside of; empty for
    /// a top-level layer.
    path: Vec<String>,
}

impl Default for DirectoryLayer {
    /// FoundationDB's default directory layer: node prefix `\xfe`, content
    /// prefix empty (prefixes are allocated from `\x15\x00` on).
    fn default() -> Self {
        DirectoryLayer::new(b"\xfe", b"")
    }
}

impl DirectoryLayer {
    /// A directory layer with raw node prefix `node_prefix` and raw content
    /// prefix `content_prefix` (FoundationDB's `DirectoryLayer(node_subspace,
    /// content_subspace)`).
    pub fn new(node_prefix: &[u8], content_prefix: &[u8]) -> Self {
        let node_subspace = Subspace::from_bytes(node_prefix.to_vec());
        let root_node = node_subspace.subspace(&foundationdb_tuple::Bytes::from(node_prefix));
        let allocator = HighContentionAllocator::new(
            &root_node.subspace(&foundationdb_tuple::Bytes::from(&b"hca"[..])),
        );
        DirectoryLayer {
            node_subspace,
            content_subspace: Subspace::from_bytes(content_prefix.to_vec()),
            root_node,
            allocator,
            path: Vec::new(),
        }
    }

    /// Replaces the source the prefix allocator draws its candidates from
    /// (the operating system's by default; tests pass a seeded one, so the
    /// prefixes new directories get are repeatable). Partitions opened
    /// through this layer use it too.
    pub fn with_random(mut self, random: Random) -> Self {
        self.allocator.random = random;
        self
    }

    /// The layer inside the partition with prefix `prefix` at absolute `path`.
    fn partition(&self, prefix: &[u8], path: Vec<String>) -> Self {
        let mut node_prefix = prefix.to_vec();
        node_prefix.push(0xfe);
        DirectoryLayer {
            path,
            ..DirectoryLayer::new(&node_prefix, prefix)
        }
        .with_random(self.allocator.random.clone())
    }

    fn is_partition(&self) -> bool {
        !self.path.is_empty()
    }

    /// Opens the directory at `path`, creating it and any missing parents if
    /// needed. A given `layer` is recorded on creation and must match an
    /// existing directory's layer (an empty or absent layer matches any).
    ///
    /// Errors: [`DirectoryError::InvalidPath`], [`DirectoryError::LayerMismatch`],
    /// [`DirectoryError::IncompatibleVersion`], [`DirectoryError::Kv`].
    pub async fn create_or_open(
        &self,
        tx: &Transaction,
        path: &[&str],
        layer: Option<&[u8]>,
    ) -> Result<DirectorySubspace, DirectoryError> {
        self.create_or_open_internal(tx, path, layer, None, true, true)
            .await
    }

    /// Opens the existing directory at `path`.
    ///
    /// Errors: [`DirectoryError::NotFound`], and as [`DirectoryLayer::create_or_open`].
    pub async fn open(
        &self,
        tx: &Transaction,
        path: &[&str],
        layer: Option<&[u8]>,
    ) -> Result<DirectorySubspace, DirectoryError> {
        self.create_or_open_internal(tx, path, layer, None, false, true)
            .await
    }

    /// Creates the directory at `path` (and any missing parents), with the
    /// raw `prefix` if given, else an allocated one.
    ///
    /// Errors: [`DirectoryError::AlreadyExists`]; [`DirectoryError::PrefixInUse`]
    /// if `prefix` overlaps another directory's prefix or the node subspace;
    /// [`DirectoryError::InvalidPath`] for a manual prefix inside a partition
    /// (FoundationDB forbids it too); and as [`DirectoryLayer::create_or_open`].
    pub async fn create(
        &self,
        tx: &Transaction,
        path: &[&str],
        layer: Option<&[u8]>,
        prefix: Option<&[u8]>,
    ) -> Result<DirectorySubspace, DirectoryError> {
        self.create_or_open_internal(tx, path, layer, prefix, true, false)
            .await
    }

    /// Whether a directory exists at `path` (the root always does).
    pub async fn exists(&self, tx: &Transaction, path: &[&str]) -> Result<bool, DirectoryError> {
        let path = to_path(path)?;
        self.check_version(tx, false).await?;
        let walk = self.walk(tx, &path).await?;
        if walk.dl.is_partition() {
            walk.dl.check_version(tx, false).await?;
        }
        Ok(walk.exists())
    }

    /// The names of the subdirectories of `path` (`[]` for the root), sorted
    /// by their UTF-8 bytes.
    ///
    /// Errors: [`DirectoryError::NotFound`].
    pub async fn list(
        &self,
        tx: &Transaction,
        path: &[&str],
    ) -> Result<Vec<String>, DirectoryError> {
        let (dl, node) = self.existing_for_listing(tx, path).await?;
        Ok(dl
            .children(tx, &node)
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// Moves the directory at `old_path` to `new_path`, whose parent must
    /// exist. The prefix and contents do not change.
    ///
    /// Errors: [`DirectoryError::CannotModifyRoot`] if either path is empty;
    /// [`DirectoryError::BadMove`] into its own subtree;
    /// [`DirectoryError::NotFound`] for a missing source or destination parent;
    /// [`DirectoryError::AlreadyExists`] if the destination exists;
    /// [`DirectoryError::CannotMoveBetweenPartitions`].
    pub async fn move_to(
        &self,
        tx: &Transaction,
        old_path: &[&str],
        new_path: &[&str],
    ) -> Result<DirectorySubspace, DirectoryError> {
        let old_path = to_path(old_path)?;
        let new_path = to_path(new_path)?;
        if old_path.is_empty() || new_path.is_empty() {
            return Err(DirectoryError::CannotModifyRoot);
        }
        if new_path.starts_with(&old_path) {
            return Err(DirectoryError::BadMove);
        }
        self.check_version(tx, true).await?;
        let old = self.walk(tx, &old_path).await?;
        let new = self.walk(tx, &new_path).await?;
        if !old.exists() {
            return Err(DirectoryError::NotFound(old_path));
        }
        if old.dl.path != new.dl.path {
            return Err(DirectoryError::CannotMoveBetweenPartitions);
        }
        if new.dl.is_partition() {
            new.dl.check_version(tx, true).await?;
        }
        if new.exists() {
            return Err(DirectoryError::AlreadyExists(new_path));
        }
        if new.found + 1 < new.rel.len() {
            return Err(DirectoryError::NotFound(
                new_path[..new_path.len() - 1].to_vec(),
            ));
        }
        let (new_parent, new_name) = (&new.node, last(&new.rel));
        tx.set(&new_parent.child_key(new_name), &old.node.prefix);
        let old_parent = old.parent.as_ref().expect("a non-root node has a parent");
        tx.clear(&old_parent.child_key(last(&old.rel)));
        Ok(DirectorySubspace::new(
            new_path,
            &old.node.prefix,
            old.node.layer,
        ))
    }

    /// Removes the directory at `path`, its contents and all its
    /// subdirectories. Returns `false` if there was no such directory
    /// (FoundationDB's `remove_if_exists`).
    ///
    /// Errors: [`DirectoryError::CannotModifyRoot`] for the empty path.
    pub async fn remove(&self, tx: &Transaction, path: &[&str]) -> Result<bool, DirectoryError> {
        let path = to_path(path)?;
        if path.is_empty() {
            return Err(DirectoryError::CannotModifyRoot);
        }
        self.check_version(tx, true).await?;
        let walk = self.walk(tx, &path).await?;
        if walk.dl.is_partition() {
            walk.dl.check_version(tx, true).await?;
        }
        if !walk.exists() {
            return Ok(false);
        }
        let mut stack = vec![walk.node.clone()];
        while let Some(node) = stack.pop() {
            for (_, prefix) in walk.dl.children(tx, &node).await? {
                stack.push(walk.dl.node_with_prefix(&prefix, Vec::new()));
            }
            tx.clear_range(&node.prefix, &strinc(&node.prefix));
            let (begin, end) = node.subspace.range();
            tx.clear_range(&begin, &end);
        }
        let parent = walk.parent.as_ref().expect("a non-root node has a parent");
        tx.clear(&parent.child_key(last(&walk.rel)));
        Ok(true)
    }

    /// Every directory under `path` (not `path` itself), recursively and
    /// depth-first, siblings sorted by name, with its absolute path, raw
    /// prefix and layer. Partitions are listed, then entered.
    ///
    /// Errors: [`DirectoryError::NotFound`].
    pub async fn tree(
        &self,
        tx: &Transaction,
        path: &[&str],
    ) -> Result<Vec<DirectoryEntry>, DirectoryError> {
        let (dl, node) = self.existing_for_listing(tx, path).await?;
        let mut out = Vec::new();
        let mut stack = vec![(dl, node, to_path(path)?)];
        while let Some((dl, node, node_path)) = stack.pop() {
            for (name, prefix) in dl.children(tx, &node).await? {
                let child = dl.load_node(tx, &prefix).await?;
                let mut child_path = node_path.clone();
                child_path.push(name);
                out.push(DirectoryEntry {
                    path: self.absolute(&child_path),
                    prefix,
                    layer: child.layer.clone(),
                });
                if child.is_partition() {
                    let inner = dl.partition(&child.prefix, self.absolute(&child_path));
                    let root = inner.root();
                    stack.push((inner, root, child_path));
                } else {
                    stack.push((dl.clone(), child, child_path));
                }
            }
        }
        sort_depth_first(&mut out);
        Ok(out)
    }

    /// The layer and node whose children `list` and `tree` show for `path`:
    /// the node itself, or the inside of a partition.
    async fn existing_for_listing(
        &self,
        tx: &Transaction,
        path: &[&str],
    ) -> Result<(DirectoryLayer, Node), DirectoryError> {
        let path = to_path(path)?;
        self.check_version(tx, false).await?;
        let walk = self.walk(tx, &path).await?;
        if walk.dl.is_partition() {
            walk.dl.check_version(tx, false).await?;
        }
        if !walk.exists() {
            return Err(DirectoryError::NotFound(path));
        }
        if walk.node.is_partition() {
            let inner = walk.dl.partition(&walk.node.prefix, self.absolute(&path));
            let root = inner.root();
            return Ok((inner, root));
        }
        Ok((walk.dl, walk.node))
    }

    async fn create_or_open_internal(
        &self,
        tx: &Transaction,
        path: &[&str],
        layer: Option<&[u8]>,
        prefix: Option<&[u8]>,
        allow_create: bool,
        allow_open: bool,
    ) -> Result<DirectorySubspace, DirectoryError> {
        let path = to_path(path)?;
        if path.is_empty() {
            return Err(DirectoryError::InvalidPath(
                "the root directory cannot be opened",
            ));
        }
        let layer = layer.unwrap_or_default();
        self.check_version(tx, false).await?;
        let walk = self.walk(tx, &path).await?;
        let dl = &walk.dl;
        if dl.is_partition() {
            dl.check_version(tx, false).await?;
        }
        if walk.exists() {
            if !allow_open {
                return Err(DirectoryError::AlreadyExists(path));
            }
            if !layer.is_empty() && walk.node.layer != layer {
                return Err(DirectoryError::LayerMismatch {
                    path,
                    requested: layer.to_vec(),
                    found: walk.node.layer,
                });
            }
            return Ok(DirectorySubspace::new(
                self.absolute(&path),
                &walk.node.prefix,
                walk.node.layer,
            ));
        }
        if !allow_create {
            return Err(DirectoryError::NotFound(path));
        }
        if prefix.is_some() && dl.is_partition() {
            return Err(DirectoryError::InvalidPath(
                "a manual prefix cannot be given inside a partition",
            ));
        }
        dl.check_version(tx, true).await?;
        let missing = &walk.rel[walk.found..];
        let mut parent = walk.node.clone();
        for (i, name) in missing.iter().enumerate() {
            let leaf = i + 1 == missing.len();
            let node_layer = if leaf { layer.to_vec() } else { Vec::new() };
            let node = match prefix.filter(|_| leaf) {
                Some(manual) => {
                    if !dl.is_prefix_free(tx, manual, false).await? {
                        return Err(DirectoryError::PrefixInUse);
                    }
                    dl.node_with_prefix(manual, node_layer)
                }
                None => {
                    let allocated = dl.allocate_prefix(tx).await?;
                    dl.node_with_prefix(&allocated, node_layer)
                }
            };
            tx.set(&parent.child_key(name), &node.prefix);
            tx.set(&node.layer_key(), &node.layer);
            parent = node;
        }
        Ok(DirectorySubspace::new(
            self.absolute(&path),
            &parent.prefix,
            parent.layer,
        ))
    }

    /// A fresh prefix from the allocator, checked to hold no keys (a
    /// non-snapshot read of its range) and to overlap no manual prefix.
    async fn allocate_prefix(&self, tx: &Transaction) -> Result<Vec<u8>, DirectoryError> {
        let mut prefix = self.content_subspace.bytes().to_vec();
        prefix.extend(self.allocator.allocate(tx).await?);
        let used = tx
            .get_range(
                &RangeOption::new(prefix.clone(), strinc(&prefix)).limit(1),
                false,
            )
            .await?;
        if !used.kvs.is_empty() || !self.is_prefix_free(tx, &prefix, true).await? {
            return Err(DirectoryError::PrefixInUse);
        }
        Ok(prefix)
    }

    /// `path` (relative to this layer) as an absolute path.
    fn absolute(&self, path: &[String]) -> Vec<String> {
        self.path.iter().chain(path).cloned().collect()
    }
}

/// Orders entries depth-first with siblings by name: a parent's path is a
/// prefix of its descendants' paths, so lexicographic order on the path
/// (name by name, each by its UTF-8 bytes, as tuple strings sort) is exactly
/// the pre-order walk.
fn sort_depth_first(entries: &mut [DirectoryEntry]) {
    entries.sort_by(|a, b| a.path.cmp(&b.path));
}

/// Owned names of `path`, refusing empty names.
fn to_path(path: &[&str]) -> Result<Vec<String>, DirectoryError> {
    if path.iter().any(|name| name.is_empty()) {
        return Err(DirectoryError::InvalidPath("a directory name is empty"));
    }
    Ok(path.iter().map(|name| name.to_string()).collect())
}

fn last(path: &[String]) -> &str {
    path.last().map(String::as_str).expect("non-empty path")
}

/// The first key after every key that starts with `prefix`; `\xff` for an
/// empty or all-`\xff` prefix.
fn strinc(prefix: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    while let Some(&b) = out.last() {
        if b == 0xff {
            out.pop();
        } else {
            *out.last_mut().expect("non-empty") += 1;
            return out;
        }
    }
    vec![0xff]
}
