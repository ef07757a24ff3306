//! Resolved directories: a directory's prefix bytes joined with its
//! [`DirectorySpec`], and the typed packing of keys inside it.
//!
//! A key of subspace `s` in a directory with prefix `p` is
//! `p ++ pack(s.tag) ++ pack(fields)`, where `fields` is a tuple whose elements
//! match `s.key` in number and type. Packing checks this in debug builds
//! (`debug_assert!`), so every test that writes a key also checks the schema.
//!
//! Who may import this: `db::*` (to build keys) and the CLI (to decode them).
//! Pure byte work: nothing here does I/O.

use foundationdb_tuple::{
    Element, TuplePack, Versionstamp, pack_into, pack_into_with_versionstamp,
};

use super::spec::{DatabaseSpec, DirectorySpec, Field, FieldType, SubspaceSpec};

/// One resolved directory: the prefix the directory layer allocated for it
/// and its declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Space {
    prefix: Vec<u8>,
    path: Vec<String>,
    spec: &'static DirectorySpec,
}

impl Space {
    /// A resolved directory. `path` is the full directory path in the store
    /// (root, database name and the spec's relative path), for display.
    pub fn new(prefix: Vec<u8>, path: Vec<String>, spec: &'static DirectorySpec) -> Self {
        Space { prefix, path, spec }
    }

    /// The directory's prefix bytes.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The full directory path in the store.
    pub fn path(&self) -> &[String] {
        &self.path
    }

    /// The directory's declaration.
    pub fn spec(&self) -> &'static DirectorySpec {
        self.spec
    }

    /// The key `prefix ++ pack(sub.tag) ++ pack(fields)`. `fields` is a tuple
    /// (`()`, `(a,)`, `(a, b)`, ...) matching `sub.key`.
    ///
    /// # Panics
    /// In debug builds, if `sub` is not a subspace of this directory or
    /// `fields` does not match `sub.key` in number and types.
    pub fn key(&self, sub: &SubspaceSpec, fields: &impl TuplePack) -> Vec<u8> {
        let mut out = self.subspace_prefix(sub);
        let start = out.len();
        pack_into(fields, &mut out);
        debug_assert_fields(sub, &out[start..], sub.key.len());
        out
    }

    /// The key of a subspace whose fields hold one incomplete versionstamp
    /// ([`Versionstamp::incomplete`]), packed for `SetVersionstampedKey`: the
    /// key followed by the 4-byte little-endian offset of the versionstamp.
    ///
    /// # Panics
    /// If `fields` holds no or several incomplete versionstamps; in debug
    /// builds, on the same mismatches as [`Space::key`].
    pub fn versionstamped_key(&self, sub: &SubspaceSpec, fields: &impl TuplePack) -> Vec<u8> {
        let mut out = self.subspace_prefix(sub);
        let start = out.len();
        pack_into_with_versionstamp(fields, &mut out);
        assert!(
            out.len() >= start + 4,
            "versionstamped key of {} has no incomplete versionstamp",
            sub.name
        );
        debug_assert_fields(sub, &out[start..out.len() - 4], sub.key.len());
        out
    }

    /// The range `[begin, end)` of every key of `sub` whose first fields equal
    /// `prefix_fields` (a tuple of the first `n` fields of `sub.key`; `()` for
    /// the whole subspace). Follows the tuple layer's convention: `begin` is the
    /// packed prefix followed by `\x00`, `end` by `\xff`.
    ///
    /// # Panics
    /// In debug builds, on the same mismatches as [`Space::key`].
    pub fn range(&self, sub: &SubspaceSpec, prefix_fields: &impl TuplePack) -> (Vec<u8>, Vec<u8>) {
        let mut begin = self.subspace_prefix(sub);
        let start = begin.len();
        pack_into(prefix_fields, &mut begin);
        debug_assert_prefix_fields(sub, &begin[start..]);
        let mut end = begin.clone();
        begin.push(0x00);
        end.push(0xff);
        (begin, end)
    }

    /// `prefix ++ pack(sub.tag)`: the bytes every key of `sub` starts with.
    ///
    /// # Panics
    /// In debug builds, if `sub` is not a subspace of this directory.
    pub fn subspace_prefix(&self, sub: &SubspaceSpec) -> Vec<u8> {
        debug_assert!(
            self.spec.contains(sub),
            "subspace {} is not declared in directory {}",
            sub.name,
            self.path.join("/")
        );
        let mut out = self.prefix.clone();
        pack_into(&sub.tag, &mut out);
        out
    }

    /// The range of every key in this directory.
    pub fn all(&self) -> (Vec<u8>, Vec<u8>) {
        let mut begin = self.prefix.clone();
        let mut end = self.prefix.clone();
        begin.push(0x00);
        end.push(0xff);
        (begin, end)
    }
}

/// Every resolved directory of one database, in the order of its spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directories {
    spec: &'static DatabaseSpec,
    spaces: Vec<Space>,
}

impl Directories {
    /// The resolved directories of `spec`.
    ///
    /// # Panics
    /// If `spaces` does not hold exactly one space per directory of `spec`, in
    /// the spec's order.
    pub fn new(spec: &'static DatabaseSpec, spaces: Vec<Space>) -> Self {
        assert_eq!(
            spaces.len(),
            spec.directories.len(),
            "one space per directory"
        );
        for (space, dir) in spaces.iter().zip(spec.directories) {
            assert_eq!(space.spec, dir, "spaces in spec order");
        }
        Directories { spec, spaces }
    }

    /// The database's declaration.
    pub fn spec(&self) -> &'static DatabaseSpec {
        self.spec
    }

    /// The resolved directory declared by `dir`.
    ///
    /// # Panics
    /// If `dir` is not a directory of this database (a programming error: the
    /// encoder of one database was handed another database's directories).
    pub fn space(&self, dir: &DirectorySpec) -> &Space {
        self.spaces
            .iter()
            .find(|s| s.spec == dir)
            .unwrap_or_else(|| panic!("{} has no directory {:?}", self.spec.name, dir.path))
    }

    /// Every resolved directory.
    pub fn spaces(&self) -> &[Space] {
        &self.spaces
    }
}

/// A [`Versionstamp`] to pack into a key with [`Space::versionstamped_key`]:
/// incomplete, with the given user version (order within the transaction).
pub fn incomplete_versionstamp(user_version: u16) -> Versionstamp {
    Versionstamp::incomplete(user_version)
}

/// Whether `element` is a value of tuple type `ty`.
pub fn element_matches(element: &Element<'_>, ty: FieldType) -> bool {
    matches!(
        (element, ty),
        (Element::String(_), FieldType::Str)
            | (Element::Int(_), FieldType::Int)
            | (Element::Bytes(_), FieldType::Bytes)
            | (Element::Bool(_), FieldType::Bool)
            | (Element::Versionstamp(_), FieldType::Versionstamp)
            | (Element::Uuid(_), FieldType::Uuid)
    )
}

/// Checks packed `fields` against the first `n` fields of `sub.key`, returning
/// what is wrong.
pub(crate) fn check_fields(sub: &SubspaceSpec, packed: &[u8], n: usize) -> Result<(), String> {
    let elements: Vec<Element<'_>> = foundationdb_tuple::unpack(packed)
        .map_err(|e| format!("{}: key fields do not unpack: {e}", sub.name))?;
    if elements.len() != n {
        return Err(format!(
            "{}: {} key fields given, {} expected",
            sub.name,
            elements.len(),
            n
        ));
    }
    let fields: &[Field] = &sub.key[..n];
    for (element, field) in elements.iter().zip(fields) {
        if !element_matches(element, field.ty) {
            return Err(format!(
                "{}: field {} is {element:?}, expected {}",
                sub.name,
                field.name,
                field.ty.name()
            ));
        }
    }
    Ok(())
}

fn debug_assert_fields(sub: &SubspaceSpec, packed: &[u8], n: usize) {
    if cfg!(debug_assertions)
        && let Err(e) = check_fields(sub, packed, n)
    {
        panic!("{e}");
    }
}

fn debug_assert_prefix_fields(sub: &SubspaceSpec, packed: &[u8]) {
    if cfg!(debug_assertions) {
        let n = foundationdb_tuple::unpack::<Vec<Element<'_>>>(packed).map_or(0, |e| e.len());
        if n > sub.key.len() {
            panic!(
                "{}: {n} prefix fields given, {} in the key",
                sub.name,
                sub.key.len()
            );
        }
        debug_assert_fields(sub, packed, n);
    }
}
