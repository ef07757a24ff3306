//! The `media` database: the media repository's metadata. Its key schema is
//! in [`keys`]; the design (states, the blob store, the safety rules) in
//! `docs/media.md`. The bytes are not here: they live in the blob store
//! (`service::media`), addressed by the SHA-256 this database records.
//!
//! A media ID is in one of three states ([`MediaState`]): `pending`
//! (created with `POST /_matrix/media/v1/create`, no bytes yet, with an
//! expiry), `complete` (bytes uploaded, [`MediaRecord::content`] set) or
//! `quarantined` (downloads answer 404). Each public method is one
//! transaction run through [`kv::Database::run`]. Invariants:
//! - a media ID's content is written once: a second upload is refused
//!   ([`Error::CannotOverwrite`]), so a content URI always means the same
//!   bytes;
//! - a user's `users/usage` is the sum of the sizes of their completed
//!   uploads, changed only in the transaction that completes (or purges) one,
//!   which reads it with a conflict range and checks the quota;
//! - a user's `users/pending` holds exactly their pending media IDs that
//!   have not been cleared; expired ones are cleared by the next create of
//!   that user and never counted;
//! - `media/by_created` has one entry per record, written and cleared with it;
//! - `blobs/refs` has an entry `(sha256, media_id)` for the content and for
//!   every thumbnail of each record, written in the transaction that
//!   records them and cleared in the one that deletes the record; a blob
//!   with no entry is unreferenced and may be deleted;
//! - `blobs/doomed` lists blobs found unreferenced; a purge claims one
//!   (value -1) only while it has no reference, and no reference is added
//!   to a claimed blob (the upload fails with [`Error::BlobDeleting`]), so a
//!   blob is deleted from the store only while no record names it;
//! - a rejected request writes nothing (errors return before any write).
//!
//! It also holds the URL preview cache (`previews/cache`): answers by hour
//! and URL hash, cleared by purges a whole hour range at a time.
//!
//! Who may import this: `db`, `service`, the CLI and tests; never the other
//! databases.

pub mod keys;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::db::codec::{Corrupt, decode, encode, unpack};
use crate::keys::Space;
use crate::kv::{self, RangeOption, TransactError};

/// Errors of the `media` storage boundary. The API maps each to an errcode
/// in `api/error.rs`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key-value store failed (after retries, where retryable).
    #[error(transparent)]
    Kv(#[from] kv::Error),
    /// A stored value did not decode.
    #[error("corrupt value in media/{subspace}")]
    Corrupt {
        /// The subspace's name in `keys.rs`.
        subspace: &'static str,
        /// What failed to decode.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No such media ID (or a pending one that expired).
    #[error("media not found")]
    NotFound,
    /// The media ID was created by another user.
    #[error("media ID belongs to another user")]
    NotUploader,
    /// The media ID already has its content.
    #[error("media ID already has content")]
    CannotOverwrite,
    /// The media ID already exists (a random ID collided, or was reused).
    #[error("media ID already exists")]
    Exists,
    /// The user has `max` pending uploads already.
    #[error("too many pending uploads (at most {max})")]
    TooManyPending {
        /// The cap.
        max: u64,
    },
    /// The blob is being deleted by a purge (claimed in `blobs/doomed`):
    /// the upload must not reference it.
    #[error("the blob is being deleted by a purge; upload again")]
    BlobDeleting,
    /// The upload would take the user past their quota.
    #[error("upload quota exceeded: {usage} of {quota} bytes used, upload is {size} bytes")]
    QuotaExceeded {
        /// Bytes used before this upload.
        usage: u64,
        /// The quota, bytes.
        quota: u64,
        /// This upload's size, bytes.
        size: u64,
    },
}

impl TransactError for Error {
    fn as_kv(&self) -> Option<&kv::Error> {
        match self {
            Error::Kv(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Corrupt> for Error {
    fn from(e: Corrupt) -> Self {
        Error::Corrupt {
            subspace: e.subspace,
            source: e.source,
        }
    }
}

/// Result of the `media` storage boundary.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a media ID is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaState {
    /// Created, no content yet.
    Pending,
    /// Content uploaded.
    Complete,
    /// Withdrawn by an admin: downloads answer 404.
    Quarantined,
}

/// The content of an uploaded media ID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// Size, bytes.
    pub size: u64,
    /// The `Content-Type` it was uploaded with, if any.
    pub content_type: Option<String>,
    /// The file name it was uploaded with, if any.
    pub file_name: Option<String>,
    /// SHA-256 of the bytes, lowercase hex: the blob's address.
    pub sha256: String,
}

/// `media/record`: one media ID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRecord {
    /// Who created (or uploaded) it.
    pub uploader: String,
    /// Its state.
    pub state: MediaState,
    /// When it was created, ms since the epoch.
    pub created_ms: u64,
    /// When a pending media ID expires unused, ms since the epoch.
    pub expires_ms: Option<u64>,
    /// The content, once uploaded.
    pub content: Option<Content>,
}

impl MediaRecord {
    /// Whether a pending media ID is past its expiry at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.state == MediaState::Pending && self.expires_ms.is_some_and(|e| e <= now_ms)
    }
}

/// `media/thumbnail`: a generated thumbnail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThumbnailRecord {
    /// SHA-256 of the thumbnail's bytes, lowercase hex: its blob's address.
    pub sha256: String,
    /// Size, bytes.
    pub size: u64,
    /// Its content type (`image/png` or `image/jpeg`).
    pub content_type: String,
    /// Its real width, pixels.
    pub width: u32,
    /// Its real height, pixels.
    pub height: u32,
}

/// The key of a thumbnail: media ID and the pre-generated size it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThumbnailKey {
    /// The media ID.
    pub media_id: String,
    /// Requested (snapped) width, pixels.
    pub width: u32,
    /// Requested (snapped) height, pixels.
    pub height: u32,
    /// `crop` or `scale`.
    pub method: &'static str,
}

/// A quota check: the user's limit of completed upload bytes.
pub type Quota = Option<u64>;

/// Every directory of the `media` database, resolved.
#[derive(Debug)]
struct Layout {
    media: Space,
    users: Space,
    blobs: Space,
    previews: Space,
}

/// What [`MediaDb::delete`] removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// The record.
    pub record: MediaRecord,
    /// Its thumbnails' records.
    pub thumbnails: Vec<ThumbnailRecord>,
    /// Blobs (SHA-256) that no record references any more, now listed in
    /// `blobs/doomed` for [`MediaDb::claim_doomed`].
    pub doomed: Vec<String>,
}

/// The value of a `blobs/doomed` entry a purge has claimed.
const CLAIMED: i64 = -1;

/// A handle on the `media` database. Cheap to clone.
#[derive(Clone)]
pub struct MediaDb {
    db: kv::Database,
    layout: Arc<Layout>,
}

fn le(value: &[u8], subspace: &'static str) -> Result<i64> {
    let bytes: [u8; 8] = value
        .try_into()
        .map_err(|_| Corrupt::new(subspace, "not 8 bytes"))?;
    Ok(i64::from_le_bytes(bytes))
}

impl MediaDb {
    /// The `media` database of an opened [`crate::db::Databases`].
    pub fn new(handle: &crate::db::Handle) -> Self {
        MediaDb {
            db: handle.db.clone(),
            layout: Arc::new(Layout {
                media: handle.dirs.space(&keys::MEDIA).clone(),
                users: handle.dirs.space(&keys::USERS).clone(),
                blobs: handle.dirs.space(&keys::BLOBS).clone(),
                previews: handle.dirs.space(&keys::PREVIEWS).clone(),
            }),
        }
    }

    fn record_key(&self, media_id: &str) -> Vec<u8> {
        self.layout.media.key(&keys::RECORD, &(media_id,))
    }

    fn by_created_key(&self, created_ms: u64, media_id: &str) -> Vec<u8> {
        self.layout
            .media
            .key(&keys::BY_CREATED, &(created_ms as i64, media_id))
    }

    fn usage_key(&self, user_id: &str) -> Vec<u8> {
        self.layout.users.key(&keys::USAGE, &(user_id,))
    }

    fn pending_key(&self, user_id: &str, media_id: &str) -> Vec<u8> {
        self.layout.users.key(&keys::PENDING, &(user_id, media_id))
    }

    fn ref_key(&self, sha256: &str, media_id: &str) -> Vec<u8> {
        self.layout.blobs.key(&keys::REFS, &(sha256, media_id))
    }

    fn doomed_key(&self, sha256: &str) -> Vec<u8> {
        self.layout.blobs.key(&keys::DOOMED, &(sha256,))
    }

    /// Up to `limit` references to `sha256`.
    async fn refs(&self, tx: &kv::Transaction, sha256: &str, limit: usize) -> Result<Vec<Vec<u8>>> {
        let (begin, end) = self.layout.blobs.range(&keys::REFS, &(sha256,));
        let mut range = RangeOption::new(begin, end);
        range.limit = Some(limit);
        Ok(tx
            .get_range_all(range, false)
            .await?
            .into_iter()
            .map(|e| e.key)
            .collect())
    }

    async fn read_doomed(&self, tx: &kv::Transaction, sha256: &str) -> Result<Option<i64>> {
        tx.get(&self.doomed_key(sha256), false)
            .await?
            .map(|v| le(&v, "doomed"))
            .transpose()
    }

    /// Adds the reference `(sha256, media_id)`, taking the blob back from
    /// `blobs/doomed` if it was found unreferenced but not claimed yet.
    /// Errors: [`Error::BlobDeleting`] if a purge has claimed it (nothing
    /// written).
    async fn add_ref(&self, tx: &kv::Transaction, sha256: &str, media_id: &str) -> Result<()> {
        match self.read_doomed(tx, sha256).await? {
            Some(CLAIMED) => return Err(Error::BlobDeleting),
            Some(_) => tx.clear(&self.doomed_key(sha256)),
            None => {}
        }
        tx.set(&self.ref_key(sha256, media_id), &[]);
        Ok(())
    }

    async fn read_record(tx: &kv::Transaction, key: &[u8]) -> Result<Option<MediaRecord>> {
        tx.get(key, false)
            .await?
            .map(|v| decode("record", &v).map_err(Error::from))
            .transpose()
    }

    async fn read_usage(tx: &kv::Transaction, key: &[u8]) -> Result<u64> {
        Ok(match tx.get(key, false).await? {
            Some(v) => le(&v, "usage")?.max(0) as u64,
            None => 0,
        })
    }

    /// The record of `media_id`, if any.
    pub async fn get(&self, media_id: &str) -> Result<Option<MediaRecord>> {
        let key = self.record_key(media_id);
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| {
                let key = key.clone();
                async move { Self::read_record(&tx, &key).await }
            })
            .await
    }

    /// Bytes of `user_id`'s completed uploads.
    pub async fn usage(&self, user_id: &str) -> Result<u64> {
        let key = self.usage_key(user_id);
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| {
                let key = key.clone();
                async move { Self::read_usage(&tx, &key).await }
            })
            .await
    }

    /// Creates pending `media_id` for `user_id`, expiring at `expires_ms`,
    /// unless the user has `max_pending` unexpired pending uploads. Clears
    /// the user's expired pending entries on the way.
    ///
    /// Errors: [`Error::TooManyPending`], [`Error::Exists`] if the ID is
    /// taken by another record.
    pub async fn create_pending(
        &self,
        media_id: &str,
        user_id: &str,
        now_ms: u64,
        expires_ms: u64,
        max_pending: u64,
    ) -> Result<()> {
        let record_key = self.record_key(media_id);
        let (begin, end) = self.layout.users.range(&keys::PENDING, &(user_id,));
        let record = MediaRecord {
            uploader: user_id.to_owned(),
            state: MediaState::Pending,
            created_ms: now_ms,
            expires_ms: Some(expires_ms),
            content: None,
        };
        // Safe to run twice: if a first attempt committed, the record is
        // found as ours and nothing more is written; the count skips our
        // own entry.
        self.db
            .run(|tx, _| {
                let (record_key, begin, end, record) = (
                    record_key.clone(),
                    begin.clone(),
                    end.clone(),
                    record.clone(),
                );
                async move {
                    if let Some(existing) = Self::read_record(&tx, &record_key).await? {
                        return if existing == record {
                            Ok(())
                        } else {
                            Err(Error::Exists)
                        };
                    }
                    let entries = tx
                        .get_range_all(RangeOption::new(begin, end), false)
                        .await?;
                    let mut live = 0u64;
                    for entry in entries {
                        let expires = le(&entry.value, "pending")?;
                        if expires <= now_ms as i64 {
                            tx.clear(&entry.key);
                        } else {
                            live += 1;
                        }
                    }
                    if live >= max_pending {
                        return Err(Error::TooManyPending { max: max_pending });
                    }
                    tx.set(&record_key, &encode(&record));
                    tx.set(&self.by_created_key(now_ms, media_id), &[]);
                    tx.set(
                        &self.pending_key(user_id, media_id),
                        &(expires_ms as i64).to_le_bytes(),
                    );
                    Ok(())
                }
            })
            .await
    }

    /// Records `content` as `media_id`'s, uploaded by `user_id` at `now_ms`:
    /// for a pending media ID of theirs (`create` then `PUT`), or a new one
    /// (`POST upload`, `pending` false). Adds the size to the user's usage
    /// after checking `quota`.
    ///
    /// Errors: [`Error::NotFound`] (unknown or expired pending ID),
    /// [`Error::NotUploader`], [`Error::CannotOverwrite`], [`Error::Exists`]
    /// (a new ID that exists), [`Error::QuotaExceeded`],
    /// [`Error::BlobDeleting`] (a purge is deleting the same bytes' blob).
    pub async fn complete(
        &self,
        media_id: &str,
        user_id: &str,
        content: &Content,
        now_ms: u64,
        pending: bool,
        quota: Quota,
    ) -> Result<()> {
        let record_key = self.record_key(media_id);
        let usage_key = self.usage_key(user_id);
        let pending_key = self.pending_key(user_id, media_id);
        // Safe to run twice: a first attempt that committed left the record
        // complete with this very content by this user, which is answered as
        // success without writing again.
        self.db
            .run(|tx, _| {
                let (record_key, usage_key, pending_key) =
                    (record_key.clone(), usage_key.clone(), pending_key.clone());
                async move {
                    let existing = Self::read_record(&tx, &record_key).await?;
                    let created_ms = match (&existing, pending) {
                        (Some(r), _)
                            if r.uploader == user_id
                                && r.state == MediaState::Complete
                                && r.content.as_ref() == Some(content) =>
                        {
                            return Ok(());
                        }
                        (Some(_), false) => return Err(Error::Exists),
                        (None, false) => now_ms,
                        (None, true) => return Err(Error::NotFound),
                        (Some(r), true) => {
                            if r.uploader != user_id {
                                return Err(Error::NotUploader);
                            }
                            if r.state != MediaState::Pending {
                                return Err(Error::CannotOverwrite);
                            }
                            if r.expired(now_ms) {
                                return Err(Error::NotFound);
                            }
                            r.created_ms
                        }
                    };
                    let usage = Self::read_usage(&tx, &usage_key).await?;
                    if let Some(quota) = quota
                        && usage.saturating_add(content.size) > quota
                    {
                        return Err(Error::QuotaExceeded {
                            usage,
                            quota,
                            size: content.size,
                        });
                    }
                    // The first write: it may still refuse (a claimed blob).
                    self.add_ref(&tx, &content.sha256, media_id).await?;
                    let record = MediaRecord {
                        uploader: user_id.to_owned(),
                        state: MediaState::Complete,
                        created_ms,
                        expires_ms: None,
                        content: Some(content.clone()),
                    };
                    tx.set(&record_key, &encode(&record));
                    if existing.is_none() {
                        tx.set(&self.by_created_key(created_ms, media_id), &[]);
                    }
                    tx.clear(&pending_key);
                    let usage = usage.saturating_add(content.size) as i64;
                    tx.set(&usage_key, &usage.to_le_bytes());
                    Ok(())
                }
            })
            .await
    }

    /// Marks `media_id` quarantined (downloads then answer 404). Returns
    /// whether it exists.
    pub async fn quarantine(&self, media_id: &str) -> Result<bool> {
        let key = self.record_key(media_id);
        // Safe to run twice: setting the state again changes nothing.
        self.db
            .run(|tx, _| {
                let key = key.clone();
                async move {
                    let Some(mut record) = Self::read_record(&tx, &key).await? else {
                        return Ok(false);
                    };
                    record.state = MediaState::Quarantined;
                    tx.set(&key, &encode(&record));
                    Ok(true)
                }
            })
            .await
    }

    /// The thumbnail recorded for `key`, if any.
    pub async fn thumbnail(&self, key: &ThumbnailKey) -> Result<Option<ThumbnailRecord>> {
        let key = self.thumbnail_key(key);
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| {
                let key = key.clone();
                async move {
                    tx.get(&key, false)
                        .await?
                        .map(|v| decode("thumbnail", &v).map_err(Error::from))
                        .transpose()
                }
            })
            .await
    }

    /// Records `record` as the thumbnail for `key`, with its blob's
    /// reference, if the media ID still has a record (else writes nothing
    /// and returns false: it was deleted meanwhile).
    ///
    /// Errors: [`Error::BlobDeleting`] (the thumbnail's blob is claimed by a
    /// purge).
    pub async fn put_thumbnail(
        &self,
        key: &ThumbnailKey,
        record: &ThumbnailRecord,
    ) -> Result<bool> {
        let media_id = key.media_id.clone();
        let record_key = self.record_key(&media_id);
        let key = self.thumbnail_key(key);
        let value = encode(record);
        // Safe to run twice: the same reference and value are written again.
        self.db
            .run(|tx, _| {
                let (key, value, record_key) = (key.clone(), value.clone(), record_key.clone());
                let media_id = media_id.clone();
                async move {
                    if Self::read_record(&tx, &record_key).await?.is_none() {
                        return Ok(false);
                    }
                    self.add_ref(&tx, &record.sha256, &media_id).await?;
                    tx.set(&key, &value);
                    Ok(true)
                }
            })
            .await
    }

    fn thumbnail_key(&self, key: &ThumbnailKey) -> Vec<u8> {
        self.layout.media.key(
            &keys::THUMBNAIL,
            &(
                key.media_id.as_str(),
                i64::from(key.width),
                i64::from(key.height),
                key.method,
            ),
        )
    }

    /// Up to `limit` media IDs created before `before_ms`, oldest first,
    /// with their creation times; after `after` (a previous page's last
    /// entry) if given.
    pub async fn created_before(
        &self,
        before_ms: u64,
        after: Option<&(u64, String)>,
        limit: usize,
    ) -> Result<Vec<(u64, String)>> {
        let begin = match after {
            None => self.layout.media.range(&keys::BY_CREATED, &()).0,
            // The first key after the cursor's.
            Some((ms, id)) => {
                let mut key = self.by_created_key(*ms, id);
                key.push(0);
                key
            }
        };
        let end = self.by_created_key(before_ms, "");
        let space = self.layout.media.clone();
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| {
                let (begin, end, space) = (begin.clone(), end.clone(), space.clone());
                async move {
                    let mut range = RangeOption::new(begin, end);
                    range.limit = Some(limit);
                    let entries = tx.get_range_all(range, true).await?;
                    entries
                        .iter()
                        .map(|e| {
                            unpack::<(i64, i64, String)>("by_created", &space, &e.key)
                                .map(|(_, ms, id)| (ms.max(0) as u64, id))
                                .map_err(Error::from)
                        })
                        .collect()
                }
            })
            .await
    }

    /// Deletes `media_id`'s record, its thumbnails' records, its creation
    /// index entry, any pending entry and its blob references, and
    /// subtracts its size from its uploader's usage. Each blob left with no
    /// reference is listed in `blobs/doomed` (found at `now_ms`) in the same
    /// transaction, so a crash before the blob store is swept loses no
    /// blob to delete. Returns what was deleted, or None if there was no
    /// record. One transaction of bounded size (at most five thumbnails).
    pub async fn delete(&self, media_id: &str, now_ms: u64) -> Result<Option<Deleted>> {
        let record_key = self.record_key(media_id);
        let (tb, te) = self.layout.media.range(&keys::THUMBNAIL, &(media_id,));
        // Safe to run twice: a second attempt finds no record and returns
        // None (the first one's doomed entries stay for the sweep).
        self.db
            .run(|tx, _| {
                let (record_key, tb, te) = (record_key.clone(), tb.clone(), te.clone());
                async move {
                    let Some(record) = Self::read_record(&tx, &record_key).await? else {
                        return Ok(None);
                    };
                    let thumbs = tx
                        .get_range_all(RangeOption::new(tb.clone(), te.clone()), false)
                        .await?
                        .iter()
                        .map(|e| decode::<ThumbnailRecord>("thumbnail", &e.value))
                        .collect::<Result<Vec<_>, Corrupt>>()?;
                    let mut shas: Vec<String> = record
                        .content
                        .iter()
                        .map(|c| c.sha256.clone())
                        .chain(thumbs.iter().map(|t| t.sha256.clone()))
                        .collect();
                    shas.sort();
                    shas.dedup();
                    let mut doomed = Vec::new();
                    for sha in shas {
                        let own = self.ref_key(&sha, media_id);
                        let others = self.refs(&tx, &sha, 2).await?;
                        tx.clear(&own);
                        if others.iter().all(|k| *k == own)
                            && self.read_doomed(&tx, &sha).await?.is_none()
                        {
                            tx.set(&self.doomed_key(&sha), &(now_ms as i64).to_le_bytes());
                            doomed.push(sha);
                        }
                    }
                    tx.clear_range(&tb, &te);
                    tx.clear(&record_key);
                    tx.clear(&self.by_created_key(record.created_ms, media_id));
                    tx.clear(&self.pending_key(&record.uploader, media_id));
                    if let Some(content) = &record.content {
                        let usage_key = self.usage_key(&record.uploader);
                        let usage = Self::read_usage(&tx, &usage_key).await?;
                        let usage = usage.saturating_sub(content.size) as i64;
                        tx.set(&usage_key, &usage.to_le_bytes());
                    }
                    Ok(Some(Deleted {
                        record,
                        thumbnails: thumbs,
                        doomed,
                    }))
                }
            })
            .await
    }

    fn preview_key(&self, hour: u64, url_sha256: &str) -> Vec<u8> {
        self.layout
            .previews
            .key(&keys::PREVIEW_CACHE, &(hour as i64, url_sha256))
    }

    /// The URL preview cached for the URL with SHA-256 `url_sha256` in
    /// `hour` (ms since the epoch / 3,600,000), if any: its JSON text.
    pub async fn cached_preview(&self, hour: u64, url_sha256: &str) -> Result<Option<String>> {
        let key = self.preview_key(hour, url_sha256);
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| {
                let key = key.clone();
                async move {
                    tx.get(&key, false)
                        .await?
                        .map(|v| {
                            String::from_utf8(v.to_vec())
                                .map_err(|_| Corrupt::new("preview cache", "not UTF-8").into())
                        })
                        .transpose()
                }
            })
            .await
    }

    /// Caches `json` (a preview's answer; the caller keeps it well under
    /// the 100 kB value limit) for the URL with SHA-256 `url_sha256` in
    /// `hour`.
    pub async fn cache_preview(&self, hour: u64, url_sha256: &str, json: &str) -> Result<()> {
        let key = self.preview_key(hour, url_sha256);
        // Safe to run twice: the same value is written again.
        self.db
            .run(|tx, _| {
                let key = key.clone();
                async move {
                    tx.set(&key, json.as_bytes());
                    Ok(())
                }
            })
            .await
    }

    /// Clears every cached URL preview of an hour before `hour`: one range
    /// clear, whatever the number of entries.
    pub async fn clear_previews_before(&self, hour: u64) -> Result<()> {
        let begin = self.layout.previews.range(&keys::PREVIEW_CACHE, &()).0;
        // Every key of `hour` and later sorts at or after `(hour,)`'s begin.
        let end = (self.layout.previews)
            .range(&keys::PREVIEW_CACHE, &(hour as i64,))
            .0;
        // Safe to run twice: clearing a cleared range changes nothing.
        self.db
            .run(|tx, _| {
                let (begin, end) = (begin.clone(), end.clone());
                async move {
                    tx.clear_range(&begin, &end);
                    Ok(())
                }
            })
            .await
    }

    /// Up to `limit` blobs (SHA-256) listed in `blobs/doomed`, after
    /// `after` if given, in order.
    pub async fn doomed(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let (mut begin, end) = self.layout.blobs.range(&keys::DOOMED, &());
        if let Some(after) = after {
            begin = self.doomed_key(after);
            begin.push(0);
        }
        let space = self.layout.blobs.clone();
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| {
                let (begin, end, space) = (begin.clone(), end.clone(), space.clone());
                async move {
                    let mut range = RangeOption::new(begin, end);
                    range.limit = Some(limit);
                    let entries = tx.get_range_all(range, true).await?;
                    entries
                        .iter()
                        .map(|e| {
                            unpack::<(i64, String)>("doomed", &space, &e.key)
                                .map(|(_, sha)| sha)
                                .map_err(Error::from)
                        })
                        .collect()
                }
            })
            .await
    }

    /// Claims doomed blob `sha256` for deletion: true if it is listed in
    /// `blobs/doomed` and has no reference (it is then marked claimed, and
    /// no upload may reference it until [`MediaDb::finish_doomed`]); false,
    /// and the entry is cleared, if a reference appeared; false if it is
    /// not listed.
    pub async fn claim_doomed(&self, sha256: &str) -> Result<bool> {
        let key = self.doomed_key(sha256);
        // Safe to run twice: a claimed entry with no reference is claimed
        // again (the same write); a cleared one stays cleared.
        self.db
            .run(|tx, _| {
                let key = key.clone();
                async move {
                    if self.read_doomed(&tx, sha256).await?.is_none() {
                        return Ok(false);
                    }
                    if !self.refs(&tx, sha256, 1).await?.is_empty() {
                        tx.clear(&key);
                        return Ok(false);
                    }
                    tx.set(&key, &CLAIMED.to_le_bytes());
                    Ok(true)
                }
            })
            .await
    }

    /// Clears doomed blob `sha256`'s entry once it is deleted from the
    /// blob store.
    pub async fn finish_doomed(&self, sha256: &str) -> Result<()> {
        let key = self.doomed_key(sha256);
        // Safe to run twice: clearing a cleared key changes nothing.
        self.db
            .run(|tx, _| {
                let key = key.clone();
                async move {
                    tx.clear(&key);
                    Ok(())
                }
            })
            .await
    }

    /// Lists blob `sha256` in `blobs/doomed` (found at `now_ms`) if no
    /// record references it and it is not listed yet (an orphan found in
    /// the blob store). Returns whether it was listed now.
    pub async fn doom_if_unreferenced(&self, sha256: &str, now_ms: u64) -> Result<bool> {
        let key = self.doomed_key(sha256);
        // Safe to run twice: a second attempt finds the entry and writes
        // nothing.
        self.db
            .run(|tx, _| {
                let key = key.clone();
                async move {
                    if !self.refs(&tx, sha256, 1).await?.is_empty()
                        || self.read_doomed(&tx, sha256).await?.is_some()
                    {
                        return Ok(false);
                    }
                    tx.set(&key, &(now_ms as i64).to_le_bytes());
                    Ok(true)
                }
            })
            .await
    }

    /// Whether any record references blob `sha256`.
    pub async fn referenced(&self, sha256: &str) -> Result<bool> {
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| async move { Ok(!self.refs(&tx, sha256, 1).await?.is_empty()) })
            .await
    }
}

#[cfg(test)]
mod tests;
