//! The key schema of the `media` database: the contract between the code
//! that writes it and every reader, tool and older or newer version of Myelin.
//!
//! Every directory lives under `<root>/media` (root from
//! `databases.media.root`, default `myelin`) and holds keys
//! `prefix ++ pack((tag, fields...))`. [`SPEC`] below is the machine-readable
//! form of this list, from which `myelin keys layout` and
//! `docs/key-layout.md` are generated; keep the two in step. The design
//! (states, the blob store, the safety rules) is `docs/media.md`. The bytes
//! themselves are not here: they live in the blob store, addressed by their
//! SHA-256.
//!
//! Schema version: 1 ([`SCHEMA_VERSION`], stored in `meta/schema_version`;
//! the `meta` rows below are [`crate::db::meta`]'s, the same in every
//! database).
//!
//! | Directory | Tag | Subspace | Key tuple | Value |
//! |-----------|----:|----------|-----------|-------|
//! | `meta` | 0 | `schema_version` | `(0)` | u64 little-endian |
//! | `meta` | 1 | `notify` | `(1)` | u64 little-endian change counter (`db::notify`, unused) |
//! | `meta` | 2 | `wake` | `(2, position, kind, id)` | empty (`db::notify`, unused) |
//! | `meta` | 3 | `wake_floor` | `(3)` | u64 little-endian (`db::notify`, unused) |
//! | `media` | 0 | `record` | `(0, media_id: str)` | msgpack `MediaRecord` |
//! | `media` | 1 | `thumbnail` | `(1, media_id: str, width: int, height: int, method: str)` | msgpack `ThumbnailRecord` |
//! | `media` | 2 | `by_created` | `(2, created_ms: int, media_id: str)` | empty |
//! | `users` | 0 | `usage` | `(0, user_id: str)` | i64 little-endian bytes of completed uploads |
//! | `users` | 1 | `pending` | `(1, user_id: str, media_id: str)` | i64 little-endian expiry (ms) |
//! | `blobs` | 0 | `refs` | `(0, sha256: str, media_id: str)` | empty |
//! | `blobs` | 1 | `doomed` | `(1, sha256: str)` | i64 little-endian: when found unreferenced (ms), or -1 while being deleted |
//! | `previews` | 0 | `cache` | `(0, hour: int, url_sha256: str)` | JSON: a URL preview's answer |
//!
//! Only media of this server are stored, so the key is the media ID alone
//! (the server name is this server's).
//!
//! To add a subspace: declare a `SubspaceSpec` constant (next free tag in its
//! directory), list it in its directory's `subspaces`, add an encoder where
//! the database builds its keys, and add a row above. Changing the meaning
//! or encoding of existing keys requires a new schema version.
//!
//! Who may import this: `db::media` and `db` (to open the database), the CLI
//! and tests. Pure byte work.

use crate::db::meta;
use crate::keys::{DatabaseSpec, DirectorySpec, Field, FieldType, SubspaceSpec, ValueEncoding};

/// The key-schema version this code writes and understands.
pub const SCHEMA_VERSION: u32 = 1;

/// The `media` database's key schema.
pub static SPEC: DatabaseSpec = DatabaseSpec {
    name: "media",
    schema_version: SCHEMA_VERSION,
    doc: "The media repository's metadata: each upload (uploader, size, content type, file name, SHA-256, state), its thumbnails, each user's quota usage and pending uploads, and the URL preview cache. The bytes live in the blob store.",
    directories: &[meta::DIRECTORY, MEDIA, USERS, BLOBS, PREVIEWS],
};

const fn field(name: &'static str, ty: FieldType) -> Field {
    Field { name, ty }
}

const MEDIA_ID: Field = field("media_id", FieldType::Str);
const USER_ID: Field = field("user_id", FieldType::Str);

/// `media/record`: `(0, media_id) -> msgpack MediaRecord`.
pub const RECORD: SubspaceSpec = SubspaceSpec {
    name: "record",
    tag: 0,
    key: &[MEDIA_ID],
    value: ValueEncoding::MsgPack("MediaRecord"),
    doc: "One media ID: uploader, state (pending, complete, quarantined), created and expiry times (ms), and once uploaded its size, content type, file name and SHA-256 (the blob's address).",
};

/// `media/thumbnail`: `(1, media_id, width, height, method) -> msgpack
/// ThumbnailRecord`.
pub const THUMBNAIL: SubspaceSpec = SubspaceSpec {
    name: "thumbnail",
    tag: 1,
    key: &[
        MEDIA_ID,
        field("width", FieldType::Int),
        field("height", FieldType::Int),
        field("method", FieldType::Str),
    ],
    value: ValueEncoding::MsgPack("ThumbnailRecord"),
    doc: "A generated thumbnail of a media ID at one of the pre-generated sizes (method crop or scale): its blob's SHA-256, size, content type and real dimensions.",
};

/// `media/by_created`: `(2, created_ms, media_id) -> empty`.
pub const BY_CREATED: SubspaceSpec = SubspaceSpec {
    name: "by_created",
    tag: 2,
    key: &[field("created_ms", FieldType::Int), MEDIA_ID],
    value: ValueEncoding::Empty,
    doc: "Every media ID by creation time (ms), for purging old media; written and cleared with its record.",
};

/// `media`: the records, their thumbnails and the creation index.
pub const MEDIA: DirectorySpec = DirectorySpec {
    path: &["media"],
    doc: "Media records by media ID, their thumbnails, and media IDs by creation time.",
    subspaces: &[RECORD, THUMBNAIL, BY_CREATED],
};

/// `users/usage`: `(0, user_id) -> i64 LE`.
pub const USAGE: SubspaceSpec = SubspaceSpec {
    name: "usage",
    tag: 0,
    key: &[USER_ID],
    value: ValueEncoding::I64Le,
    doc: "Bytes of the user's completed uploads (their quota usage); read and checked by each upload's completing transaction.",
};

/// `users/pending`: `(1, user_id, media_id) -> i64 LE expiry`.
pub const PENDING: SubspaceSpec = SubspaceSpec {
    name: "pending",
    tag: 1,
    key: &[USER_ID, MEDIA_ID],
    value: ValueEncoding::I64Le,
    doc: "A media ID the user created and has not uploaded yet, with its expiry (ms); counted against the pending-upload cap, cleared by the upload or when found expired.",
};

/// `users`: per-user quota usage and pending uploads.
pub const USERS: DirectorySpec = DirectorySpec {
    path: &["users"],
    doc: "Each user's quota usage and pending (created, not uploaded) media IDs.",
    subspaces: &[USAGE, PENDING],
};

const SHA256: Field = field("sha256", FieldType::Str);

/// `blobs/refs`: `(0, sha256, media_id) -> empty`.
pub const REFS: SubspaceSpec = SubspaceSpec {
    name: "refs",
    tag: 0,
    key: &[SHA256, MEDIA_ID],
    value: ValueEncoding::Empty,
    doc: "A blob (by SHA-256, lowercase hex) that a media ID's content or one of its thumbnails names; written with the record that names it, cleared when the media ID is deleted. A blob with no entry here may be deleted.",
};

/// `blobs/doomed`: `(1, sha256) -> i64 LE`.
pub const DOOMED: SubspaceSpec = SubspaceSpec {
    name: "doomed",
    tag: 1,
    key: &[SHA256],
    value: ValueEncoding::I64Le,
    doc: "A blob found unreferenced (by a purge or an orphan sweep), with when (ms), awaiting deletion from the blob store; -1 while a purge deletes it (an upload naming it then fails rather than reference a blob about to vanish). Cleared when deleted, or when a new reference appears first.",
};

/// `blobs`: which media IDs reference each blob, and blobs to delete.
pub const BLOBS: DirectorySpec = DirectorySpec {
    path: &["blobs"],
    doc: "References from media IDs to blobs (content-addressed, so shared by identical uploads) and the blobs awaiting deletion.",
    subspaces: &[REFS, DOOMED],
};

/// `previews/cache`: `(0, hour, url_sha256) -> JSON`.
pub const PREVIEW_CACHE: SubspaceSpec = SubspaceSpec {
    name: "cache",
    tag: 0,
    key: &[
        field("hour", FieldType::Int),
        field("url_sha256", FieldType::Str),
    ],
    value: ValueEncoding::Json,
    doc: "A URL preview's answer (its OpenGraph JSON object, at most 64 KiB), by the hour it was fetched in (ms since the epoch / 3,600,000) and the SHA-256 (lowercase hex) of the URL; served for the rest of that hour. Ordered by hour so a purge clears every hour before its cutoff with one range clear.",
};

/// `previews`: the URL preview cache.
pub const PREVIEWS: DirectorySpec = DirectorySpec {
    path: &["previews"],
    doc: "URL previews fetched this hour (and earlier hours, until a purge clears them).",
    subspaces: &[PREVIEW_CACHE],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_is_well_formed() {
        SPEC.check().unwrap();
    }
}
