//! Key-schema declarations: the static data each logical database uses to
//! describe its directories, subspaces, tuple key shapes and value encodings.
//!
//! A database's `keys.rs` declares one [`DatabaseSpec`]; that value is the single
//! source of truth for encoding ([`super::Space::key`]), decoding
//! ([`super::decode`]), `myelin keys layout` and `docs/key-layout.md`
//! ([`super::layout`]).
//!
//! Invariants (checked by [`DatabaseSpec::check`], which the tests of every
//! database run):
//! - directory paths are unique and non-empty within a database;
//! - subspace names and tags are unique within a directory, and tags are in
//!   `0..=255` so they pack to at most 2 bytes (tag 0 packs to 1 byte, `\x14`;
//!   tags 1 to 255 to 2 bytes, `\x15` and the tag);
//! - a [`FieldType::Versionstamp`] key field appears at most once per key.

use std::fmt;

/// One logical database (`accounts`, `rooms` or `transitory`): its name, the
/// version of its key schema, and its directories.
#[derive(Debug, PartialEq, Eq)]
pub struct DatabaseSpec {
    /// The database's name, also the directory under the configured root
    /// (e.g. `"accounts"` in `["myelin", "accounts", "meta"]`).
    pub name: &'static str,
    /// The key-schema version this code writes and understands. A store whose
    /// recorded version is newer is refused at open.
    pub schema_version: u32,
    /// One paragraph on what the database holds.
    pub doc: &'static str,
    /// The database's directories.
    pub directories: &'static [DirectorySpec],
}

/// One FoundationDB directory of a database, with the subspaces inside it.
#[derive(Debug, PartialEq, Eq)]
pub struct DirectorySpec {
    /// Path relative to the database's root directory, e.g. `&["users"]`.
    pub path: &'static [&'static str],
    /// What the directory holds.
    pub doc: &'static str,
    /// The subspaces, each a distinct first tuple element (its tag).
    pub subspaces: &'static [SubspaceSpec],
}

/// One subspace: the keys `prefix ++ pack((tag, key fields...))` of a directory,
/// all holding values of one encoding.
#[derive(Debug, PartialEq, Eq)]
pub struct SubspaceSpec {
    /// Name used in tools and docs, e.g. `"schema_version"`.
    pub name: &'static str,
    /// The first tuple element of every key: a small integer (`0..=255`).
    pub tag: i64,
    /// The remaining tuple elements of a key, in order.
    pub key: &'static [Field],
    /// How values are encoded.
    pub value: ValueEncoding,
    /// What a key/value pair means.
    pub doc: &'static str,
}

/// One named element of a key tuple.
#[derive(Debug, PartialEq, Eq)]
pub struct Field {
    /// The field's name, e.g. `"user_id"`.
    pub name: &'static str,
    /// The tuple type it packs as.
    pub ty: FieldType,
}

/// The tuple-layer type of a key field (typecodes from the FoundationDB tuple
/// specification, <https://github.com/apple/foundationdb/blob/main/design/tuple.md>).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// Unicode string, typecode `0x02`.
    Str,
    /// Integer, typecodes `0x0c..=0x1c` (`i64` range).
    Int,
    /// Byte string, typecode `0x01`.
    Bytes,
    /// Boolean, typecodes `0x26` (false) and `0x27` (true).
    Bool,
    /// 96-bit versionstamp, typecode `0x33`: 10 bytes of commit versionstamp and
    /// a 2-byte user version, all big-endian.
    Versionstamp,
    /// 128-bit UUID, typecode `0x30`.
    Uuid,
}

impl FieldType {
    /// The name used in layouts and docs.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Str => "str",
            FieldType::Int => "int",
            FieldType::Bytes => "bytes",
            FieldType::Bool => "bool",
            FieldType::Versionstamp => "versionstamp",
            FieldType::Uuid => "uuid",
        }
    }
}

/// How the values of a subspace are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueEncoding {
    /// Always empty: the key is the data.
    Empty,
    /// MessagePack (`rmp_serde`, struct fields as a map) of the named Rust type.
    MsgPack(&'static str),
    /// UTF-8 JSON text.
    Json,
    /// 8-byte little-endian unsigned integer, the format of FoundationDB's
    /// atomic `Add` (counters).
    U64Le,
    /// 8-byte little-endian signed integer.
    I64Le,
    /// Opaque bytes.
    Raw,
    /// A 10-byte commit versionstamp (set with `SetVersionstampedValue`).
    Versionstamp,
    /// UTF-8 text.
    Utf8,
    /// A 12-byte stream position (10-byte commit versionstamp, 2-byte
    /// big-endian order in the commit; the value is written with
    /// `SetVersionstampedValue`), then MessagePack of the named Rust type.
    PositionThenMsgPack(&'static str),
    /// A 12-byte stream position alone (10-byte commit versionstamp, 2-byte
    /// big-endian order in the commit), written with
    /// `SetVersionstampedValue`.
    Position,
}

impl fmt::Display for ValueEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueEncoding::Empty => f.write_str("empty"),
            ValueEncoding::MsgPack(ty) => write!(f, "msgpack {ty}"),
            ValueEncoding::Json => f.write_str("json"),
            ValueEncoding::U64Le => f.write_str("u64 little-endian"),
            ValueEncoding::I64Le => f.write_str("i64 little-endian"),
            ValueEncoding::Raw => f.write_str("raw bytes"),
            ValueEncoding::Versionstamp => f.write_str("versionstamp (10 bytes)"),
            ValueEncoding::Utf8 => f.write_str("utf-8 text"),
            ValueEncoding::PositionThenMsgPack(ty) => {
                write!(f, "12-byte stream position, then msgpack {ty}")
            }
            ValueEncoding::Position => f.write_str("12-byte stream position"),
        }
    }
}

impl DatabaseSpec {
    /// The directory declared at `path` (relative to the database root).
    pub fn directory(&self, path: &[&str]) -> Option<&'static DirectorySpec> {
        // `self` is always a `'static` spec in practice, but the signature keeps
        // `&self` ergonomic; look the entry up in the static slice.
        self.directories.iter().find(|d| d.path == path)
    }

    /// Checks the invariants listed in the module docs, returning every
    /// violation found.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        for (i, dir) in self.directories.iter().enumerate() {
            let path = dir.path.join("/");
            if dir.path.is_empty() || dir.path.iter().any(|p| p.is_empty()) {
                errors.push(format!("{}: directory {i} has an empty path", self.name));
            }
            if self.directories[..i].iter().any(|d| d.path == dir.path) {
                errors.push(format!("{}: directory {path} declared twice", self.name));
            }
            for (j, sub) in dir.subspaces.iter().enumerate() {
                let at = format!("{}/{path}/{}", self.name, sub.name);
                if !(0..=255).contains(&sub.tag) {
                    errors.push(format!("{at}: tag {} is outside 0..=255", sub.tag));
                }
                for other in &dir.subspaces[..j] {
                    if other.tag == sub.tag {
                        errors.push(format!("{at}: tag {} also used by {}", sub.tag, other.name));
                    }
                    if other.name == sub.name {
                        errors.push(format!("{at}: name used twice"));
                    }
                }
                let stamps = sub.key.iter().filter(|f| f.ty == FieldType::Versionstamp);
                if stamps.count() > 1 {
                    errors.push(format!("{at}: more than one versionstamp field"));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

impl DirectorySpec {
    /// The subspace with this tag.
    pub fn subspace_by_tag(&self, tag: i64) -> Option<&SubspaceSpec> {
        self.subspaces.iter().find(|s| s.tag == tag)
    }

    /// The subspace with this name.
    pub fn subspace_by_name(&self, name: &str) -> Option<&SubspaceSpec> {
        self.subspaces.iter().find(|s| s.name == name)
    }

    /// Whether `sub` is one of this directory's subspaces.
    pub fn contains(&self, sub: &SubspaceSpec) -> bool {
        self.subspaces.iter().any(|s| s == sub)
    }
}

impl SubspaceSpec {
    /// The key's tuple shape for layouts, e.g. `(1, user_id: str)`.
    pub fn shape(&self) -> String {
        let mut out = format!("({}", self.tag);
        for field in self.key {
            out.push_str(&format!(", {}: {}", field.name, field.ty.name()));
        }
        out.push(')');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SubspaceSpec = SubspaceSpec {
        name: "a",
        tag: 1,
        key: &[
            Field {
                name: "x",
                ty: FieldType::Str,
            },
            Field {
                name: "v",
                ty: FieldType::Versionstamp,
            },
        ],
        value: ValueEncoding::Empty,
        doc: "",
    };

    #[test]
    fn shape_lists_tag_and_fields() {
        assert_eq!(A.shape(), "(1, x: str, v: versionstamp)");
    }

    #[test]
    fn check_reports_duplicate_tags_and_bad_tags() {
        static BAD: DatabaseSpec = DatabaseSpec {
            name: "bad",
            schema_version: 1,
            doc: "",
            directories: &[DirectorySpec {
                path: &["d"],
                doc: "",
                subspaces: &[
                    A,
                    SubspaceSpec {
                        name: "b",
                        tag: 1,
                        ..A
                    },
                    SubspaceSpec {
                        name: "c",
                        tag: 256,
                        ..A
                    },
                ],
            }],
        };
        let errors = BAD.check().unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("tag 1 also used by a"));
        assert!(errors[1].contains("outside 0..=255"));
    }
}
