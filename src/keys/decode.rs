//! Decoding raw keys and values back into their schema: database, directory,
//! subspace, named fields and the decoded value. Used by `myelin keys decode`
//! and `myelin keys scan`, and by golden tests that dump a store.
//!
//! Decoding never fails and never panics: a key outside every known directory,
//! with an unknown tag or with fields that do not match the spec decodes as
//! its raw tuple elements (or, if it is not a tuple at all, as escaped bytes),
//! and a value that does not match its encoding is shown as escaped bytes with
//! the reason.
//!
//! Who may import this: `db` (which builds the [`Catalog`] of opened
//! stores), the CLI and tests. Pure byte work, no I/O.

use std::fmt;

use foundationdb_tuple::Element;

use super::bytes::printable;
use super::space::{Directories, check_fields};
use super::spec::{DirectorySpec, SubspaceSpec, ValueEncoding};

/// One directory the decoder knows about: a declared one (with its spec) or
/// one found in the store's directory tree that no spec declares.
#[derive(Clone, Debug)]
pub struct KnownDirectory {
    /// The database the directory belongs to, if known.
    pub database: Option<&'static str>,
    /// The full directory path in the store.
    pub path: Vec<String>,
    /// The directory's prefix.
    pub prefix: Vec<u8>,
    /// The declaration, for declared directories.
    pub spec: Option<&'static DirectorySpec>,
}

/// The directories a decoder resolves keys against.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    dirs: Vec<KnownDirectory>,
}

impl Catalog {
    /// An empty catalog: every key decodes as raw tuple elements.
    pub fn new() -> Self {
        Catalog::default()
    }

    /// Adds every declared directory of one database.
    pub fn add_database(&mut self, dirs: &Directories) {
        for space in dirs.spaces() {
            self.add(KnownDirectory {
                database: Some(dirs.spec().name),
                path: space.path().to_vec(),
                prefix: space.prefix().to_vec(),
                spec: Some(space.spec()),
            });
        }
    }

    /// Adds one directory, unless a directory with the same prefix is known.
    pub fn add(&mut self, dir: KnownDirectory) {
        if !self.dirs.iter().any(|d| d.prefix == dir.prefix) {
            self.dirs.push(dir);
        }
    }

    /// The known directories.
    pub fn directories(&self) -> &[KnownDirectory] {
        &self.dirs
    }

    /// Decodes one key and, if given, its value.
    pub fn decode(&self, key: &[u8], value: Option<&[u8]>) -> Decoded {
        let dir = self
            .dirs
            .iter()
            .filter(|d| !d.prefix.is_empty() && key.starts_with(&d.prefix))
            .max_by_key(|d| d.prefix.len());
        let rest = dir.map_or(key, |d| &key[d.prefix.len()..]);
        // A continuation chunk of a split value (`keys::split`): its head's
        // fields, then the chunk's index.
        let chunk = match foundationdb_tuple::unpack::<Vec<Element<'_>>>(rest) {
            Ok(_) => None,
            Err(_) => super::split::parse_continuation(rest)
                .filter(|(head, _)| foundationdb_tuple::unpack::<Vec<Element<'_>>>(head).is_ok()),
        };
        let rest = chunk.map_or(rest, |(head, _)| head);
        let sub = dir
            .and_then(|d| d.spec)
            .and_then(|spec| match_subspace(spec, rest));
        let mut fields = match (sub, foundationdb_tuple::unpack::<Vec<Element<'_>>>(rest)) {
            (Some(sub), Ok(elements)) => elements
                .iter()
                .skip(1)
                .zip(sub.key)
                .map(|(e, f)| (f.name.to_string(), render_element(e)))
                .collect(),
            (None, Ok(elements)) => elements
                .iter()
                .enumerate()
                .map(|(i, e)| (format!("#{i}"), render_element(e)))
                .collect(),
            (_, Err(e)) => vec![("raw".to_string(), format!("{} ({e})", printable(rest)))],
        };
        if let Some((_, index)) = chunk {
            fields.push(("split_chunk".to_string(), index.to_string()));
        }
        Decoded {
            database: dir.and_then(|d| d.database),
            directory: dir.map(|d| d.path.clone()),
            prefix: dir.map(|d| d.prefix.clone()).unwrap_or_default(),
            subspace: sub.map(|s| (s.name, s.tag)),
            fields,
            value: value.map(|v| match sub {
                Some(sub) if chunk.is_none() => decode_value(sub.value, v),
                _ => printable(v),
            }),
        }
    }
}

/// A decoded key (and value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The database, if the key lies in a directory of a known database.
    pub database: Option<&'static str>,
    /// The full path of the directory holding the key, if any.
    pub directory: Option<Vec<String>>,
    /// That directory's prefix (empty if none).
    pub prefix: Vec<u8>,
    /// The subspace's name and tag, if the key matches one.
    pub subspace: Option<(&'static str, i64)>,
    /// `(name, rendered value)` of each key field after the tag; raw tuple
    /// elements are named `#0`, `#1`, ... (the tag included), and a key that is
    /// not a tuple is one field named `raw`.
    pub fields: Vec<(String, String)>,
    /// The rendered value: JSON for msgpack and JSON values, decimal for
    /// integers, hex for versionstamps, escaped bytes otherwise.
    pub value: Option<String>,
}

impl Decoded {
    /// The key's fields as one line: `name=value name=value`, or `()` if none.
    pub fn fields_line(&self) -> String {
        if self.fields.is_empty() {
            return "()".to_string();
        }
        let parts: Vec<String> = self
            .fields
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        parts.join(" ")
    }
}

impl fmt::Display for Decoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "database:  {}", self.database.unwrap_or("(unknown)"))?;
        match &self.directory {
            Some(path) => writeln!(
                f,
                "directory: {} (prefix {})",
                path.join("/"),
                printable(&self.prefix)
            )?,
            None => writeln!(f, "directory: (none)")?,
        }
        match self.subspace {
            Some((name, tag)) => writeln!(f, "subspace:  {name} (tag {tag})")?,
            None => writeln!(f, "subspace:  (unknown)")?,
        }
        writeln!(f, "fields:    {}", self.fields_line())?;
        if let Some(value) = &self.value {
            writeln!(f, "value:     {value}")?;
        }
        Ok(())
    }
}

/// The subspace `rest` (a key with its directory prefix removed) belongs to:
/// its first element is the subspace's tag and its fields match the spec.
fn match_subspace(spec: &'static DirectorySpec, rest: &[u8]) -> Option<&'static SubspaceSpec> {
    let elements: Vec<Element<'_>> = foundationdb_tuple::unpack(rest).ok()?;
    let tag = elements.first()?.as_i64()?;
    let sub = spec.subspace_by_tag(tag)?;
    let tag_len = foundationdb_tuple::pack(&tag).len();
    check_fields(sub, &rest[tag_len..], sub.key.len()).ok()?;
    Some(sub)
}

/// One tuple element for display: strings JSON-quoted, bytes FDB-escaped in
/// `b"..."`, versionstamps as hex.
pub fn render_element(e: &Element<'_>) -> String {
    match e {
        Element::Nil => "nil".to_string(),
        Element::Bytes(b) => format!("b\"{}\"", printable(b)),
        Element::String(s) => serde_json::Value::from(s.as_ref()).to_string(),
        Element::Tuple(items) => {
            let parts: Vec<String> = items.iter().map(render_element).collect();
            format!("({})", parts.join(", "))
        }
        Element::Int(i) => i.to_string(),
        Element::Float(x) => x.to_string(),
        Element::Double(x) => x.to_string(),
        Element::Bool(b) => b.to_string(),
        Element::Uuid(u) => u.to_string(),
        Element::Versionstamp(v) => format!("vs:{}", hex::encode(v.as_bytes())),
    }
}

/// Renders a value of the given encoding; a value that does not decode is
/// shown escaped, with the reason.
pub fn decode_value(encoding: ValueEncoding, v: &[u8]) -> String {
    let invalid = |why: &str| format!("<{why}> {}", printable(v));
    match encoding {
        ValueEncoding::Empty if v.is_empty() => "(empty)".to_string(),
        ValueEncoding::Empty => invalid("expected empty"),
        ValueEncoding::MsgPack(_) => match rmp_serde::from_slice::<serde_json::Value>(v) {
            Ok(json) => json.to_string(),
            Err(e) => invalid(&format!("msgpack: {e}")),
        },
        ValueEncoding::Json => match serde_json::from_slice::<serde_json::Value>(v) {
            Ok(json) => json.to_string(),
            Err(e) => invalid(&format!("json: {e}")),
        },
        ValueEncoding::U64Le => match <[u8; 8]>::try_from(v) {
            Ok(b) => u64::from_le_bytes(b).to_string(),
            Err(_) => invalid("expected 8 bytes"),
        },
        ValueEncoding::I64Le => match <[u8; 8]>::try_from(v) {
            Ok(b) => i64::from_le_bytes(b).to_string(),
            Err(_) => invalid("expected 8 bytes"),
        },
        ValueEncoding::Raw => format!("b\"{}\"", printable(v)),
        ValueEncoding::Versionstamp if v.len() == 10 => format!("vs:{}", hex::encode(v)),
        ValueEncoding::Versionstamp => invalid("expected 10 bytes"),
        ValueEncoding::Utf8 => match std::str::from_utf8(v) {
            Ok(s) => serde_json::Value::from(s).to_string(),
            Err(_) => invalid("not utf-8"),
        },
        ValueEncoding::Position if v.len() == 12 => format!("vs:{}", hex::encode(v)),
        ValueEncoding::Position => invalid("expected 12 bytes"),
        ValueEncoding::PositionThenMsgPack(_) if v.len() < 12 => {
            invalid("expected a 12-byte position first")
        }
        ValueEncoding::PositionThenMsgPack(_) => {
            let (position, rest) = v.split_at(12);
            match rmp_serde::from_slice::<serde_json::Value>(rest) {
                Ok(json) => format!("vs:{} {json}", hex::encode(position)),
                Err(e) => invalid(&format!("msgpack after the position: {e}")),
            }
        }
    }
}
