//! Directory nodes: the metadata keys of one directory, path resolution,
//! the version check and the prefix-in-use checks.
//!
//! A node is `node_subspace[prefix]` for a directory whose contents live at
//! `prefix`; the root node is `node_subspace[node_subspace.key()]`. Under a
//! node, `[SUBDIRS=0][name]` maps each child's name to its prefix and
//! `[b"layer"]` holds the directory's layer. Every read here is a
//! non-snapshot read unless stated, as in the reference implementation, so a
//! transaction that resolved a path conflicts with one that changed it.
//!
//! Who may import this: the directory layer only.

use foundationdb_tuple::{Bytes, Element, Subspace};

use super::{DirectoryError, DirectoryLayer, PARTITION_LAYER, strinc};
use crate::kv::{RangeOption, Transaction};

/// The tuple element under a node that holds its children.
pub(super) const SUBDIRS: i64 = 0;
/// The version this implementation writes: major, minor, patch.
pub(super) const VERSION: [u32; 3] = [1, 0, 0];

/// One directory's node.
#[derive(Clone, Debug)]
pub(super) struct Node {
    /// The directory's content prefix (for the root node: the node subspace's key).
    pub(super) prefix: Vec<u8>,
    /// `node_subspace[prefix]`.
    pub(super) subspace: Subspace,
    /// The directory's layer; empty if none (and for the root).
    pub(super) layer: Vec<u8>,
}

impl Node {
    /// The key under this node that names child `name`.
    pub(super) fn child_key(&self, name: &str) -> Vec<u8> {
        self.subspace.pack(&(SUBDIRS, name))
    }

    /// The key under this node that holds its layer.
    pub(super) fn layer_key(&self) -> Vec<u8> {
        layer_key(&self.subspace)
    }

    /// Whether this is a partition's top node (layer `b"partition"`).
    pub(super) fn is_partition(&self) -> bool {
        self.layer == PARTITION_LAYER
    }
}

fn layer_key(node: &Subspace) -> Vec<u8> {
    node.pack(&Bytes::from(&b"layer"[..]))
}

/// Where a path led: the layer (top or partition) holding its last component,
/// how much of the path exists, and the nodes at the end of the existing part.
pub(super) struct Walk {
    /// The directory layer whose node subspace holds the path's last
    /// component: `self`, or the innermost partition on the path.
    pub(super) dl: DirectoryLayer,
    /// The path relative to `dl`.
    pub(super) rel: Vec<String>,
    /// How many components of `rel` exist.
    pub(super) found: usize,
    /// The deepest existing node: the target if `found == rel.len()`.
    pub(super) node: Node,
    /// The node above `node` in `dl`; `None` if `node` is `dl`'s root.
    pub(super) parent: Option<Node>,
}

impl Walk {
    /// Whether the whole path exists.
    pub(super) fn exists(&self) -> bool {
        self.found == self.rel.len()
    }
}

impl DirectoryLayer {
    /// The root node of this layer.
    pub(super) fn root(&self) -> Node {
        Node {
            prefix: self.node_subspace.bytes().to_vec(),
            subspace: self.root_node.clone(),
            layer: Vec::new(),
        }
    }

    /// The node of the directory whose contents live at `prefix`.
    pub(super) fn node_with_prefix(&self, prefix: &[u8], layer: Vec<u8>) -> Node {
        Node {
            prefix: prefix.to_vec(),
            subspace: self.node_subspace.subspace(&Bytes::from(prefix)),
            layer,
        }
    }

    /// The child `name` of `parent`, with its layer, if it exists.
    pub(super) async fn child(
        &self,
        tx: &Transaction,
        parent: &Node,
        name: &str,
    ) -> Result<Option<Node>, DirectoryError> {
        let Some(prefix) = tx.get(&parent.child_key(name), false).await? else {
            return Ok(None);
        };
        Ok(Some(self.load_node(tx, &prefix).await?))
    }

    /// The node of the directory with `prefix`, with its layer read.
    pub(super) async fn load_node(
        &self,
        tx: &Transaction,
        prefix: &[u8],
    ) -> Result<Node, DirectoryError> {
        let mut node = self.node_with_prefix(prefix, Vec::new());
        node.layer = tx.get(&node.layer_key(), false).await?.unwrap_or_default();
        Ok(node)
    }

    /// The children of `node` as `(name, prefix)`, sorted by name.
    pub(super) async fn children(
        &self,
        tx: &Transaction,
        node: &Node,
    ) -> Result<Vec<(String, Vec<u8>)>, DirectoryError> {
        let subdirs = node.subspace.subspace(&SUBDIRS);
        let (begin, end) = subdirs.range();
        let kvs = tx
            .get_range_all(RangeOption::new(begin, end), false)
            .await?;
        kvs.into_iter()
            .map(|kv| Ok((subdirs.unpack::<String>(&kv.key)?, kv.value)))
            .collect()
    }

    /// Follows `path` from this layer's root as far as it exists, entering
    /// partitions on the way (a partition that is the last component is not
    /// entered: it is a node of the enclosing layer).
    pub(super) async fn walk(
        &self,
        tx: &Transaction,
        path: &[String],
    ) -> Result<Walk, DirectoryError> {
        let mut walk = Walk {
            dl: self.clone(),
            rel: path.to_vec(),
            found: 0,
            node: self.root(),
            parent: None,
        };
        let mut start = 0;
        for (i, name) in path.iter().enumerate() {
            let Some(child) = walk.dl.child(tx, &walk.node, name).await? else {
                break;
            };
            if child.is_partition() && i + 1 < path.len() {
                let abs = self.path.iter().chain(&path[..=i]).cloned().collect();
                walk.dl = walk.dl.partition(&child.prefix, abs);
                walk.node = walk.dl.root();
                walk.parent = None;
                start = i + 1;
                walk.found = 0;
            } else {
                walk.parent = Some(std::mem::replace(&mut walk.node, child));
                walk.found = i + 1 - start;
            }
        }
        walk.rel = path[start..].to_vec();
        Ok(walk)
    }

    /// Checks the format version at `root_node[b"version"]`; with
    /// `write_access`, also writes it if absent.
    ///
    /// Errors: [`DirectoryError::IncompatibleVersion`] for a newer major
    /// version, or a newer minor version when writing.
    pub(super) async fn check_version(
        &self,
        tx: &Transaction,
        write_access: bool,
    ) -> Result<(), DirectoryError> {
        let key = self.version_key();
        let Some(value) = tx.get(&key, false).await? else {
            if write_access {
                tx.set(&key, &encode_version(VERSION));
            }
            return Ok(());
        };
        let found = decode_version(&value)?;
        if found[0] > VERSION[0] || (write_access && found[1] > VERSION[1]) {
            return Err(DirectoryError::IncompatibleVersion {
                found,
                supported: VERSION,
            });
        }
        Ok(())
    }

    /// `root_node[b"version"]`: the key of the layer's format version, which
    /// every directory operation reads. `db::open` reads it to check that a
    /// store answers within a deadline.
    pub fn version_key(&self) -> Vec<u8> {
        self.root_node.pack(&Bytes::from(&b"version"[..]))
    }

    /// Whether `prefix` neither contains nor is contained in the prefix of
    /// any directory of this layer (or the node subspace).
    pub(super) async fn is_prefix_free(
        &self,
        tx: &Transaction,
        prefix: &[u8],
        snapshot: bool,
    ) -> Result<bool, DirectoryError> {
        if prefix.is_empty() || self.node_containing_key(tx, prefix, snapshot).await? {
            return Ok(false);
        }
        let begin = self.node_subspace.pack(&Bytes::from(prefix));
        let end = self.node_subspace.pack(&Bytes::from(strinc(prefix)));
        let chunk = tx
            .get_range(&RangeOption::new(begin, end).limit(1), snapshot)
            .await?;
        Ok(chunk.kvs.is_empty())
    }

    /// Whether some directory's prefix (or the node subspace) is a prefix of `key`.
    async fn node_containing_key(
        &self,
        tx: &Transaction,
        key: &[u8],
        snapshot: bool,
    ) -> Result<bool, DirectoryError> {
        if key.starts_with(self.node_subspace.bytes()) {
            return Ok(true);
        }
        let begin = self.node_subspace.range().0;
        let mut end = self.node_subspace.pack(&Bytes::from(key));
        end.push(0);
        let chunk = tx
            .get_range(
                &RangeOption::new(begin, end).limit(1).reverse(true),
                snapshot,
            )
            .await?;
        let Some(kv) = chunk.kvs.first() else {
            return Ok(false);
        };
        let tuple: Vec<Element> = self.node_subspace.unpack(&kv.key)?;
        match tuple.first() {
            Some(Element::Bytes(prev)) => Ok(key.starts_with(prev)),
            _ => Err(DirectoryError::Malformed(
                "node key does not start with a prefix",
            )),
        }
    }
}

/// The version value: three little-endian `u32`.
pub(super) fn encode_version(v: [u32; 3]) -> [u8; 12] {
    let mut out = [0; 12];
    for (chunk, part) in out.chunks_exact_mut(4).zip(v) {
        chunk.copy_from_slice(&part.to_le_bytes());
    }
    out
}

fn decode_version(value: &[u8]) -> Result<[u32; 3], DirectoryError> {
    if value.len() != 12 {
        return Err(DirectoryError::Malformed("version is not 12 bytes"));
    }
    let mut out = [0; 3];
    for (part, chunk) in out.iter_mut().zip(value.chunks_exact(4)) {
        *part = u32::from_le_bytes(chunk.try_into().expect("4-byte chunk"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_round_trips_as_little_endian() {
        let bytes = encode_version([1, 2, 3]);
        assert_eq!(bytes, *b"\x01\0\0\0\x02\0\0\0\x03\0\0\0");
        assert_eq!(decode_version(&bytes).unwrap(), [1, 2, 3]);
        assert!(matches!(
            decode_version(b"\x01\0\0\0"),
            Err(DirectoryError::Malformed(_))
        ));
    }

    #[test]
    fn node_keys_have_the_reference_layout() {
        let dl = DirectoryLayer::default();
        let root = dl.root();
        assert_eq!(root.subspace.bytes(), b"\xfe\x01\xfe\x00");
        assert_eq!(root.child_key("a"), b"\xfe\x01\xfe\x00\x14\x02a\x00");
        assert_eq!(dl.version_key(), b"\xfe\x01\xfe\x00\x01version\x00");
        let node = dl.node_with_prefix(b"\x15\x00", Vec::new());
        assert_eq!(node.layer_key(), b"\xfe\x01\x15\x00\xff\x00\x01layer\x00");
    }
}
