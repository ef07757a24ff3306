//! The media repository (issue 20; `docs/media.md`): uploads, downloads and
//! thumbnails over the `media` database (the metadata) and a blob store (the
//! bytes).
//!
//! The blob store is [`BlobStore`], over any `object_store::ObjectStore`
//! (the small trait the bytes live behind): the local filesystem under the
//! data directory by default ([`MediaConfig::path`]), or an S3-compatible
//! store (`store = "s3"`, with the `s3` cargo feature; there the temporary
//! object is a multipart upload and the move a copy then a delete). Blobs are
//! content-addressed: `blobs/<first two hex digits>/<sha256 hex>`. An upload
//! streams: each chunk of the body is hashed and written to a temporary
//! object `tmp/<random>` (the local store itself writes it to a staged file
//! `tmp/<random>#<n>` and renames it when complete), and only when the body
//! has ended is it copied (local: hard-linked) to its content address; only
//! then is the metadata committed with the blob's reference, and then the
//! temporary object removed. So a crash leaves no half file at a content
//! address, no record pointing at a missing blob, and at most an
//! unreferenced file under `tmp/` or blob, which a purge's orphan sweep
//! removes. A purge ([`Media::purge`]) deletes records first, then only the
//! blobs no record references (`docs/media.md`, "Purge"). The whole body is never in memory: the multipart writer
//! holds at most a few chunks of [`CHUNK_BYTES`].
//!
//! Invariants:
//! - a media ID matches `[A-Za-z0-9_-]+` ([`valid_media_id`]); this server
//!   generates 24 characters of base64url from 18 random bytes;
//! - no upload is larger than [`MediaConfig::max_upload_bytes`]; the
//!   stream is cut as soon as it passes the limit;
//! - a thumbnail is decoded only after its header's dimensions are checked
//!   against [`MediaConfig::max_thumbnail_pixels`], with `image::Limits`
//!   set, on a blocking thread, at most [`MediaConfig::thumbnail_concurrency`]
//!   at once;
//! - a thumbnail is never larger than its original (no upscaling).
//!
//! Who may import this: `app`, `api`, the CLI and tests.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path as BlobPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use ruma::{OwnedServerName, ServerName};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, Semaphore};

use crate::db::media::{self as db, Content, MediaDb, MediaState, ThumbnailKey, ThumbnailRecord};
use crate::random::Random;
use crate::service::Clock;

pub mod preview;

pub use preview::UrlPreviewConfig;

/// Size of the parts an upload is written in, bytes (the multipart
/// writer's buffer; at most two more parts are being written).
pub const CHUNK_BYTES: usize = 5 * 1024 * 1024;

/// Parts of an upload written concurrently.
const PARTS_IN_FLIGHT: usize = 2;

/// The pre-generated thumbnail sizes (spec: "Thumbnails"): width, height,
/// method. Requests snap to the smallest of their method that is at least
/// as large as asked in both dimensions, else the largest.
pub const THUMBNAIL_SIZES: [(u32, u32, Method); 5] = [
    (32, 32, Method::Crop),
    (96, 96, Method::Crop),
    (320, 240, Method::Scale),
    (640, 480, Method::Scale),
    (800, 600, Method::Scale),
];

/// Where the blobs live.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The local filesystem under [`MediaConfig::path`].
    #[default]
    Local,
    /// An S3-compatible object store ([`MediaConfig::s3_bucket`] and the
    /// other `s3_*` settings; builds with the `s3` cargo feature).
    S3,
}

/// `[media]`: the media repository's settings (`docs/configuration.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Where blobs live: `"local"` (default) or `"s3"`.
    pub store: StoreKind,
    /// `s3`: the bucket (required).
    pub s3_bucket: Option<String>,
    /// `s3`: the endpoint URL of an S3-compatible service (default: AWS's).
    pub s3_endpoint: Option<String>,
    /// `s3`: the region (default: `AWS_REGION` from the environment, else
    /// `us-east-1`).
    pub s3_region: Option<String>,
    /// `s3`: the access key ID (default: `AWS_ACCESS_KEY_ID` from the
    /// environment, or the instance's credentials).
    pub s3_access_key_id: Option<String>,
    /// `s3`: the secret access key (default: `AWS_SECRET_ACCESS_KEY`).
    pub s3_secret_access_key: Option<String>,
    /// `s3`: allow a plain `http://` endpoint (a local test server).
    pub s3_allow_http: bool,
    /// The local store's directory. Default `<data_dir>/media`; unset
    /// programmatically (tests, benchmarks), blobs are kept in memory.
    pub path: Option<PathBuf>,
    /// Largest upload, bytes (413 `M_TOO_LARGE` above). Default 100 MiB.
    pub max_upload_bytes: u64,
    /// Each user's quota of completed upload bytes; none by default.
    pub quota_bytes: Option<u64>,
    /// Pending (created, not uploaded) media IDs a user may hold (429
    /// `M_LIMIT_EXCEEDED` above). Default 10.
    pub max_pending_uploads: u64,
    /// How long a created media ID waits for its upload, ms. Default 24 h.
    pub unused_expiry_ms: u64,
    /// Longest a download waits for a pending upload (`timeout_ms` is
    /// capped to it), ms. Default 20 s, the spec's default `timeout_ms`.
    pub max_download_wait_ms: u64,
    /// Largest original thumbnailed, bytes (above: 413). Default 32 MiB.
    pub max_thumbnail_source_bytes: u64,
    /// Largest original thumbnailed, pixels (width × height, read from the
    /// header before decoding; above: 413). Default 33,554,432 (32 Mpx).
    pub max_thumbnail_pixels: u64,
    /// Thumbnails decoded at once. Default 2.
    pub thumbnail_concurrency: usize,
    /// How long a temporary file or an unreferenced blob must be untouched
    /// before a purge's orphan sweep removes it, ms (an upload in flight
    /// keeps writing its temporary file). Default 1 h.
    pub orphan_grace_ms: u64,
    /// `[media.url_preview]`: `GET /_matrix/client/v1/media/preview_url`,
    /// off by default.
    pub url_preview: UrlPreviewConfig,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            store: StoreKind::Local,
            s3_bucket: None,
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_allow_http: false,
            path: None,
            max_upload_bytes: 100 * 1024 * 1024,
            quota_bytes: None,
            max_pending_uploads: 10,
            unused_expiry_ms: 24 * 60 * 60 * 1000,
            max_download_wait_ms: 20_000,
            max_thumbnail_source_bytes: 32 * 1024 * 1024,
            max_thumbnail_pixels: 32 * 1024 * 1024,
            thumbnail_concurrency: 2,
            orphan_grace_ms: 60 * 60 * 1000,
            url_preview: UrlPreviewConfig::default(),
        }
    }
}

/// Why a media request failed. `api::error` maps each to an errcode.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The metadata store failed.
    #[error(transparent)]
    Db(db::Error),
    /// The blob store failed.
    #[error("blob store: {0}")]
    Blob(#[from] object_store::Error),
    /// The blob store is configured wrongly (at start).
    #[error("[media]: {0}")]
    Config(String),
    /// No such media (unknown, another server's, expired or quarantined;
    /// 404 `M_NOT_FOUND`).
    #[error("{0}")]
    NotFound(&'static str),
    /// Not the caller's media ID (403 `M_FORBIDDEN`).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The media ID already has content (409 `M_CANNOT_OVERWRITE_MEDIA`).
    #[error("media already uploaded")]
    CannotOverwrite,
    /// The upload is over the size limit (413 `M_TOO_LARGE`).
    #[error("upload is larger than {limit_bytes} bytes")]
    TooLarge {
        /// The limit, bytes.
        limit_bytes: u64,
    },
    /// The upload would exceed the user's quota (413 `M_TOO_LARGE`).
    #[error("upload quota of {quota} bytes exceeded")]
    QuotaExceeded {
        /// The quota, bytes.
        quota: u64,
    },
    /// Too many pending uploads (429 `M_LIMIT_EXCEEDED`).
    #[error("too many pending uploads (at most {max})")]
    TooManyPending {
        /// The cap.
        max: u64,
    },
    /// The media ID has no content yet (504 `M_NOT_YET_UPLOADED`).
    #[error("media not yet uploaded")]
    NotYetUploaded,
    /// A parameter is malformed (400 `M_INVALID_PARAM`).
    #[error("{0}")]
    InvalidParam(String),
    /// The request body could not be read (400 `M_UNKNOWN`).
    #[error("reading the upload: {0}")]
    Body(String),
    /// The media cannot be thumbnailed (not an image of a supported
    /// format, or undecodable; 400 `M_UNKNOWN`).
    #[error("cannot thumbnail: {0}")]
    Thumbnail(String),
    /// The image is too large to thumbnail (413 `M_TOO_LARGE`).
    #[error("image too large to thumbnail: {0}")]
    ThumbnailTooLarge(String),
    /// A URL preview would connect to a refused address (loopback,
    /// private, ...; 403 `M_FORBIDDEN`).
    #[error("URL preview refused: {0}")]
    PreviewRefused(String),
    /// A URL preview's page failed: connection, status, redirects or time
    /// (502 `M_UNKNOWN`).
    #[error("URL preview failed: {0}")]
    PreviewUpstream(String),
    /// As many URL previews as `[media.url_preview] concurrency` are in
    /// flight (429 `M_LIMIT_EXCEEDED`).
    #[error("too many URL previews in flight; try again later")]
    PreviewBusy,
    /// A URL preview's page or image is over `max_bytes` (502
    /// `M_TOO_LARGE`, as Synapse answers).
    #[error("URL preview: the page is larger than {limit_bytes} bytes")]
    PreviewTooLarge {
        /// The limit, bytes.
        limit_bytes: u64,
    },
}

impl From<db::Error> for Error {
    fn from(e: db::Error) -> Self {
        match e {
            db::Error::NotFound => Error::NotFound("media not found"),
            db::Error::NotUploader => Error::Forbidden("media ID belongs to another user"),
            db::Error::CannotOverwrite => Error::CannotOverwrite,
            db::Error::TooManyPending { max } => Error::TooManyPending { max },
            db::Error::QuotaExceeded { quota, .. } => Error::QuotaExceeded { quota },
            other => Error::Db(other),
        }
    }
}

impl Error {
    /// Whether the failure is the server's (storage), not the request's.
    pub fn is_internal(&self) -> bool {
        matches!(self, Error::Db(_) | Error::Blob(_) | Error::Config(_))
    }
}

/// Result of the media service.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether `media_id` is a media ID this server could have made:
/// `[A-Za-z0-9_-]`, 1 to 255 characters.
pub fn valid_media_id(media_id: &str) -> bool {
    !media_id.is_empty()
        && media_id.len() <= 255
        && media_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The thumbnailing method (spec: `method=crop|scale`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Exactly the size, cropped to fill it.
    Crop,
    /// Within the size, aspect kept.
    Scale,
}

impl Method {
    /// As stored and in the query: `crop` or `scale`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Crop => "crop",
            Method::Scale => "scale",
        }
    }
}

/// The pre-generated size a request for `width` × `height` by `method`
/// snaps to: the smallest of that method covering both dimensions, else
/// the largest of that method.
pub fn snap(width: u32, height: u32, method: Method) -> (u32, u32) {
    let mut sizes = THUMBNAIL_SIZES.iter().filter(|(_, _, m)| *m == method);
    sizes
        .clone()
        .find(|(w, h, _)| *w >= width && *h >= height)
        .or_else(|| sizes.next_back())
        .map(|(w, h, _)| (*w, *h))
        .unwrap_or((width, height))
}

/// What a download or thumbnail answers: the headers' facts and the bytes.
pub struct Download {
    /// The content type (`application/octet-stream` when unknown).
    pub content_type: String,
    /// The file name it was uploaded with, if any.
    pub file_name: Option<String>,
    /// Size, bytes.
    pub size: u64,
    /// The bytes, streamed from the blob store.
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

/// A created media ID.
#[derive(Clone, Debug)]
pub struct Created {
    /// `mxc://<server>/<media_id>`.
    pub content_uri: String,
    /// When it expires unused, ms since the epoch.
    pub unused_expires_at: u64,
}

/// What an upload declares beside its body.
#[derive(Clone, Debug, Default)]
pub struct UploadInfo {
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The `filename` query parameter, if any.
    pub file_name: Option<String>,
    /// The `Content-Length` header, if any (checked against the limits
    /// before reading).
    pub content_length: Option<u64>,
}

/// A blob written to its content address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlob {
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Size, bytes.
    pub size: u64,
}

/// Content-addressed blobs over an `object_store` store.
#[derive(Clone, Debug)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    random: Random,
    /// The local store's directory (its staged `#` files are invisible to
    /// `object_store`'s listing, so the orphan sweep walks it itself).
    local_root: Option<PathBuf>,
}

/// A blob streamed to a temporary object, not yet at its content address
/// ([`BlobStore::stage`]).
#[derive(Debug)]
pub struct Staged {
    tmp: BlobPath,
    /// SHA-256 and size of the bytes.
    pub blob: StoredBlob,
}

/// What a purge or an orphan sweep removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Media IDs deleted (records with their thumbnails).
    pub media: u64,
    /// Their IDs (a purge's; empty for an orphan sweep).
    pub media_ids: Vec<String>,
    /// Bytes of the deleted media IDs' content.
    pub media_bytes: u64,
    /// Blobs deleted from the blob store (no record referenced them).
    pub blobs: u64,
    /// Temporary files of interrupted uploads removed.
    pub temporaries: u64,
}

impl BlobStore {
    /// Blobs in the local directory `root` (created if missing), written
    /// with fsync so a committed record's blob survives a crash.
    ///
    /// Errors: the directory cannot be created or opened.
    pub fn local(root: &std::path::Path, random: Random) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| {
            Error::Blob(object_store::Error::Generic {
                store: "local",
                source: Box::new(e),
            })
        })?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(root)?.with_fsync(true);
        Ok(BlobStore {
            store: Arc::new(store),
            random,
            local_root: Some(root.to_owned()),
        })
    }

    /// The store `config` names: `local` in [`MediaConfig::path`] (in
    /// memory when it is unset), or `s3`.
    ///
    /// Errors: [`Error::Config`] for `s3` without a bucket or in a build
    /// without the `s3` feature; the local directory cannot be created.
    pub fn from_config(config: &MediaConfig, random: Random) -> Result<Self> {
        match (config.store, &config.path) {
            (StoreKind::Local, Some(path)) => Self::local(path, random),
            (StoreKind::Local, None) => Ok(Self::memory(random)),
            (StoreKind::S3, _) => Self::s3(config, random),
        }
    }

    #[cfg(feature = "s3")]
    fn s3(config: &MediaConfig, random: Random) -> Result<Self> {
        use object_store::aws::AmazonS3Builder;
        let bucket = config
            .s3_bucket
            .as_deref()
            .ok_or_else(|| Error::Config("store = \"s3\" needs s3_bucket".into()))?;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_allow_http(config.s3_allow_http);
        if let Some(endpoint) = &config.s3_endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &config.s3_region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &config.s3_access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.s3_secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        Ok(BlobStore {
            store: Arc::new(builder.build()?),
            random,
            local_root: None,
        })
    }

    #[cfg(not(feature = "s3"))]
    fn s3(_: &MediaConfig, _: Random) -> Result<Self> {
        Err(Error::Config(
            "store = \"s3\", but this build of Myelin lacks the `s3` feature (rebuild with `--features s3`)".into(),
        ))
    }

    /// Blobs in memory (tests and benchmarks without a data directory).
    pub fn memory(random: Random) -> Self {
        BlobStore {
            store: Arc::new(object_store::memory::InMemory::new()),
            random,
            local_root: None,
        }
    }

    /// Over any `object_store` store (an S3-compatible one, a test double).
    pub fn new(store: Arc<dyn ObjectStore>, random: Random) -> Self {
        BlobStore {
            store,
            random,
            local_root: None,
        }
    }

    /// The content address of `sha256`.
    pub fn path(sha256: &str) -> BlobPath {
        let shard = sha256.get(..2).unwrap_or("00");
        BlobPath::from(format!("blobs/{shard}/{sha256}"))
    }

    /// Streams `body` into a temporary object, hashing each chunk; fails
    /// with [`Error::TooLarge`] as soon as it passes `max_bytes`. On any
    /// failure the temporary object is removed. Then [`BlobStore::publish`]
    /// copies it to its content address, the record is committed, and
    /// [`BlobStore::settle`] removes it.
    pub async fn stage<S, E>(&self, body: S, max_bytes: u64) -> Result<Staged>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let tmp = BlobPath::from(format!("tmp/{}", hex::encode(self.random_bytes::<16>())));
        let upload = self.store.put_multipart(&tmp).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK_BYTES);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = std::pin::pin!(body);
        let failure = loop {
            let chunk = match body.next().await {
                None => break None,
                Some(Err(e)) => break Some(Error::Body(e.to_string())),
                Some(Ok(chunk)) => chunk,
            };
            size += chunk.len() as u64;
            if size > max_bytes {
                break Some(Error::TooLarge {
                    limit_bytes: max_bytes,
                });
            }
            hasher.update(&chunk);
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                break Some(e.into());
            }
            writer.put(chunk);
        };
        if let Some(e) = failure {
            let _ = writer.abort().await;
            return Err(e);
        }
        if let Err(e) = writer.finish().await {
            let _ = self.store.delete(&tmp).await;
            return Err(e.into());
        }
        let sha256 = hex::encode(hasher.finalize());
        Ok(Staged {
            tmp,
            blob: StoredBlob { sha256, size },
        })
    }

    /// Stages `bytes` (a thumbnail), like [`BlobStore::stage`].
    pub async fn stage_bytes(&self, bytes: Bytes) -> Result<Staged> {
        let size = bytes.len() as u64;
        let chunk: Result<Bytes, std::convert::Infallible> = Ok(bytes);
        self.stage(futures::stream::iter([chunk]), size).await
    }

    /// Copies a staged blob to its content address (local: a hard link; S3:
    /// a server-side copy), keeping the temporary object until
    /// [`BlobStore::settle`], so the bytes survive a purge that deletes the
    /// address before the record naming it is committed.
    pub async fn publish(&self, staged: &Staged) -> Result<()> {
        self.store
            .copy(&staged.tmp, &Self::path(&staged.blob.sha256))
            .await?;
        Ok(())
    }

    /// After the record naming a staged blob is committed (so no purge can
    /// delete it any more): puts it back at its address if a purge deleted
    /// it before the commit, then removes the temporary object.
    pub async fn settle(&self, staged: Staged) -> Result<()> {
        let address = Self::path(&staged.blob.sha256);
        if let Err(object_store::Error::NotFound { .. }) = self.store.head(&address).await {
            self.store.copy(&staged.tmp, &address).await?;
        }
        self.discard(staged).await;
        Ok(())
    }

    /// Removes a staged blob's temporary object (best effort: a leftover is
    /// removed by [`BlobStore::sweep_temporaries`]).
    pub async fn discard(&self, staged: Staged) {
        if let Err(e) = self.store.delete(&staged.tmp).await {
            tracing::warn!(error = %e, tmp = %staged.tmp, "temporary blob left for the orphan sweep");
        }
    }

    /// Removes temporary objects of uploads last written before
    /// `before_ms` (ms since the epoch): interrupted uploads (a crash, a
    /// dropped connection) and the local store's staged `#` files. Returns
    /// how many were removed. S3 multipart uploads never completed are not
    /// listed by S3 at all (a bucket lifecycle rule aborts them).
    pub async fn sweep_temporaries(&self, before_ms: u64) -> Result<u64> {
        let mut removed = 0;
        let mut listing = self.store.list(Some(&BlobPath::from("tmp")));
        let mut old = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            if meta.last_modified.timestamp_millis() < before_ms as i64 {
                old.push(meta.location);
            }
        }
        for location in old {
            match self.store.delete(&location).await {
                Ok(()) => removed += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(root) = &self.local_root {
            let root = root.clone();
            removed += tokio::task::spawn_blocking(move || sweep_staged_files(&root, before_ms))
                .await
                .map_err(|e| Error::Config(format!("orphan sweep failed: {e}")))?
                .map_err(|e| {
                    Error::Blob(object_store::Error::Generic {
                        store: "local",
                        source: Box::new(e),
                    })
                })?;
        }
        Ok(removed)
    }

    /// The SHA-256 of every blob last written before `before_ms`, in pages
    /// handed to `each` (the orphan sweep checks each against the records).
    pub async fn blobs_before(&self, before_ms: u64) -> BoxStream<'static, Result<String>> {
        self.store
            .list(Some(&BlobPath::from("blobs")))
            .map_err(Error::from)
            .try_filter_map(move |meta| async move {
                let old = meta.last_modified.timestamp_millis() < before_ms as i64;
                let sha = meta.location.filename().map(str::to_owned);
                Ok(sha.filter(|sha| {
                    old && sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())
                }))
            })
            .boxed()
    }

    /// The bytes of blob `sha256`, streamed.
    ///
    /// Errors: the store's (`NotFound` if there is no such blob).
    pub async fn get(&self, sha256: &str) -> Result<BoxStream<'static, std::io::Result<Bytes>>> {
        let got = self.store.get(&Self::path(sha256)).await?;
        Ok(got.into_stream().map_err(std::io::Error::other).boxed())
    }

    /// The bytes of blob `sha256`, whole (for thumbnailing: callers bound
    /// the size first).
    pub async fn get_bytes(&self, sha256: &str) -> Result<Bytes> {
        Ok(self.store.get(&Self::path(sha256)).await?.bytes().await?)
    }

    /// Removes blob `sha256` (nothing if it does not exist).
    pub async fn delete(&self, sha256: &str) -> Result<()> {
        match self.store.delete(&Self::path(sha256)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether blob `sha256` is in the store.
    pub async fn exists(&self, sha256: &str) -> Result<bool> {
        match self.store.head(&Self::path(sha256)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn random_bytes<const N: usize>(&self) -> [u8; N] {
        let mut bytes = [0u8; N];
        self.random.fill(&mut bytes);
        bytes
    }
}

/// Removes the local store's files last modified before `before_ms` under
/// `tmp/` (whole temporary files and staged parts) and its staged `#`
/// files under `blobs/` (a copy interrupted by a crash). Returns how many.
fn sweep_staged_files(root: &std::path::Path, before_ms: u64) -> std::io::Result<u64> {
    let cutoff = std::time::UNIX_EPOCH + Duration::from_millis(before_ms);
    let mut removed = 0;
    let mut dirs = vec![(root.join("tmp"), true), (root.join("blobs"), false)];
    while let Some((dir, all)) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                dirs.push((entry.path(), all));
                continue;
            }
            let staged = all || entry.file_name().to_string_lossy().contains('#');
            if staged && meta.modified()? < cutoff {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(removed)
}

/// How often, and how long apart, an upload whose blob a purge is deleting
/// retries its commit (the purge deletes one blob between its claim and
/// its finish, milliseconds apart).
const BLOB_DELETING_RETRIES: u32 = 50;
const BLOB_DELETING_WAIT: Duration = Duration::from_millis(100);

/// Media IDs deleted, and doomed blobs swept, per page of a purge.
const PURGE_PAGE: usize = 100;

/// The media service. Cheap to share (`Arc`).
pub struct Media {
    db: MediaDb,
    blobs: BlobStore,
    config: MediaConfig,
    server_name: OwnedServerName,
    clock: Arc<dyn Clock>,
    random: Random,
    /// Woken whenever an upload completes in this process (waiting
    /// downloads re-read their record).
    uploaded: Notify,
    /// Downloads waiting for an upload now.
    waiting: std::sync::atomic::AtomicUsize,
    /// Bounds concurrent thumbnail decoding (and URL preview parsing).
    thumbnailers: Semaphore,
    /// Fetches URL previews.
    previewer: preview::Previewer,
}

/// How often a waiting download re-reads its record even without a wake
/// from this process (an upload may complete on another server process).
const WAIT_RECHECK: Duration = Duration::from_secs(1);

impl Media {
    /// The service over `db` and `blobs`.
    pub fn new(
        db: MediaDb,
        blobs: BlobStore,
        config: MediaConfig,
        server_name: OwnedServerName,
        clock: Arc<dyn Clock>,
        random: Random,
    ) -> Self {
        let permits = config.thumbnail_concurrency.max(1);
        let previewer = preview::Previewer::new(config.url_preview.clone());
        Media {
            db,
            blobs,
            config,
            server_name,
            clock,
            random,
            uploaded: Notify::new(),
            waiting: Default::default(),
            thumbnailers: Semaphore::new(permits),
            previewer,
        }
    }

    /// The settings.
    pub fn config(&self) -> &MediaConfig {
        &self.config
    }

    /// The metadata database.
    pub fn db(&self) -> &MediaDb {
        &self.db
    }

    /// The blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// How many downloads are waiting for a pending upload right now.
    pub fn waiting_downloads(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn new_media_id(&self) -> String {
        use base64::Engine;
        let mut bytes = [0u8; 18];
        self.random.fill(&mut bytes);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn content_uri(&self, media_id: &str) -> String {
        format!("mxc://{}/{media_id}", self.server_name)
    }

    /// Refuses an upload whose declared length, or the user's usage, is
    /// already over the limits, before any byte is read.
    async fn precheck(&self, user_id: &str, info: &UploadInfo) -> Result<()> {
        let limit_bytes = self.config.max_upload_bytes;
        if info.content_length.is_some_and(|n| n > limit_bytes) {
            return Err(Error::TooLarge { limit_bytes });
        }
        if let Some(quota) = self.config.quota_bytes {
            let usage = self.db.usage(user_id).await?;
            if usage.saturating_add(info.content_length.unwrap_or(1)) > quota {
                return Err(Error::QuotaExceeded { quota });
            }
        }
        Ok(())
    }

    /// Streams `body` to the blob store and records it as `media_id`'s.
    async fn store<S, E>(
        &self,
        user_id: &str,
        media_id: &str,
        info: UploadInfo,
        body: S,
        pending: bool,
    ) -> Result<()>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let staged = self.blobs.stage(body, self.config.max_upload_bytes).await?;
        let blob = staged.blob.clone();
        let content = Content {
            size: blob.size,
            content_type: info
                .content_type
                .filter(|t| !t.is_empty() && t.len() <= 255),
            file_name: info.file_name.filter(|n| n.len() <= 255),
            sha256: blob.sha256,
        };
        let now_ms = self.clock.now_ms();
        self.record_staged(staged, || {
            self.db.complete(
                media_id,
                user_id,
                &content,
                now_ms,
                pending,
                self.config.quota_bytes,
            )
        })
        .await?;
        self.uploaded.notify_waiters();
        Ok(())
    }

    /// Publishes `staged` at its content address and runs `record` (the
    /// transaction that references it), retrying while a purge is deleting
    /// the same bytes' blob; then settles or discards the temporary object.
    /// A refused record leaves the published blob unreferenced: it is
    /// listed in `blobs/doomed` for the next purge.
    async fn record_staged<F, Fut, T>(&self, staged: Staged, record: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = db::Result<T>>,
    {
        let mut attempts = 0;
        let outcome = loop {
            if let Err(e) = self.blobs.publish(&staged).await {
                break Err(e);
            }
            match record().await {
                Err(db::Error::BlobDeleting) if attempts < BLOB_DELETING_RETRIES => {
                    attempts += 1;
                    tokio::time::sleep(BLOB_DELETING_WAIT).await;
                }
                other => break other.map_err(Error::from),
            }
        };
        match outcome {
            Ok(value) => {
                if let Err(e) = self.blobs.settle(staged).await {
                    tracing::error!(error = %e, "settling an uploaded blob failed");
                }
                Ok(value)
            }
            Err(e) => {
                let sha256 = staged.blob.sha256.clone();
                self.blobs.discard(staged).await;
                if let Err(e) = self
                    .db
                    .doom_if_unreferenced(&sha256, self.clock.now_ms())
                    .await
                {
                    tracing::warn!(error = %e, "an unreferenced blob is left for the orphan sweep");
                }
                Err(e)
            }
        }
    }

    /// `POST /_matrix/media/v3/upload`: stores `body` under a new media ID
    /// and returns its content URI.
    ///
    /// Errors: [`Error::TooLarge`], [`Error::QuotaExceeded`],
    /// [`Error::Body`], storage failures.
    pub async fn upload<S, E>(&self, user_id: &str, info: UploadInfo, body: S) -> Result<String>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        self.precheck(user_id, &info).await?;
        let media_id = self.new_media_id();
        self.store(user_id, &media_id, info, body, false).await?;
        Ok(self.content_uri(&media_id))
    }

    /// `POST /_matrix/media/v1/create`: a pending media ID for `user_id`.
    ///
    /// Errors: [`Error::TooManyPending`], storage failures.
    pub async fn create(&self, user_id: &str) -> Result<Created> {
        let media_id = self.new_media_id();
        let now_ms = self.clock.now_ms();
        let expires_ms = now_ms.saturating_add(self.config.unused_expiry_ms);
        self.db
            .create_pending(
                &media_id,
                user_id,
                now_ms,
                expires_ms,
                self.config.max_pending_uploads,
            )
            .await?;
        Ok(Created {
            content_uri: self.content_uri(&media_id),
            unused_expires_at: expires_ms,
        })
    }

    /// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`: uploads the
    /// content of a pending media ID of `user_id`.
    ///
    /// Errors: [`Error::NotFound`] (unknown, another server's, expired),
    /// [`Error::Forbidden`] (another user's), [`Error::CannotOverwrite`],
    /// and those of [`Media::upload`].
    pub async fn upload_to<S, E>(
        &self,
        user_id: &str,
        server_name: &ServerName,
        media_id: &str,
        info: UploadInfo,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        self.check_local(server_name, media_id)?;
        // Checked before reading the body, and again by the completing
        // transaction.
        let record = self
            .db
            .get(media_id)
            .await?
            .ok_or(Error::NotFound("media not found"))?;
        if record.uploader != user_id {
            return Err(Error::Forbidden("media ID belongs to another user"));
        }
        if record.state != MediaState::Pending {
            return Err(Error::CannotOverwrite);
        }
        if record.expired(self.clock.now_ms()) {
            return Err(Error::NotFound("media ID expired"));
        }
        self.precheck(user_id, &info).await?;
        self.store(user_id, media_id, info, body, true).await
    }

    fn check_local(&self, server_name: &ServerName, media_id: &str) -> Result<()> {
        if server_name != self.server_name || !valid_media_id(media_id) {
            return Err(Error::NotFound("media not found"));
        }
        Ok(())
    }

    /// The content of `media_id`, waiting up to `timeout_ms` (capped at
    /// [`MediaConfig::max_download_wait_ms`]) for a pending upload.
    async fn content(
        &self,
        server_name: &ServerName,
        media_id: &str,
        timeout_ms: Option<u64>,
    ) -> Result<Content> {
        self.check_local(server_name, media_id)?;
        let wait = timeout_ms
            .unwrap_or(self.config.max_download_wait_ms)
            .min(self.config.max_download_wait_ms);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
        loop {
            let woken = self.uploaded.notified();
            let record = self
                .db
                .get(media_id)
                .await?
                .ok_or(Error::NotFound("media not found"))?;
            match record.state {
                MediaState::Quarantined => return Err(Error::NotFound("media not found")),
                MediaState::Complete => {
                    return record.content.ok_or(Error::NotFound("media not found"));
                }
                MediaState::Pending if record.expired(self.clock.now_ms()) => {
                    return Err(Error::NotFound("media ID expired"));
                }
                MediaState::Pending => {}
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::NotYetUploaded);
            }
            let nap = (deadline - now).min(WAIT_RECHECK);
            self.waiting
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = tokio::time::timeout(nap, woken).await;
            self.waiting
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// `GET /_matrix/client/v1/media/download/...`: the content of
    /// `media_id`.
    ///
    /// Errors: [`Error::NotFound`] (unknown, another server's, expired,
    /// quarantined), [`Error::NotYetUploaded`], storage failures.
    pub async fn download(
        &self,
        server_name: &ServerName,
        media_id: &str,
        timeout_ms: Option<u64>,
    ) -> Result<Download> {
        let content = self.content(server_name, media_id, timeout_ms).await?;
        let body = self.blobs.get(&content.sha256).await?;
        Ok(Download {
            content_type: content
                .content_type
                .unwrap_or_else(|| "application/octet-stream".to_owned()),
            file_name: content.file_name,
            size: content.size,
            body,
        })
    }

    /// `GET /_matrix/client/v1/media/thumbnail/...`: a thumbnail of
    /// `media_id` at the pre-generated size `width` × `height` by `method`
    /// snaps to, generated on first request and stored as derived media.
    /// An original no larger than that size is served as is.
    ///
    /// Errors: those of [`Media::download`], [`Error::InvalidParam`] (zero
    /// size), [`Error::Thumbnail`] (not a supported image),
    /// [`Error::ThumbnailTooLarge`].
    pub async fn thumbnail(
        &self,
        server_name: &ServerName,
        media_id: &str,
        width: u32,
        height: u32,
        method: Method,
        timeout_ms: Option<u64>,
    ) -> Result<Download> {
        if width == 0 || height == 0 {
            return Err(Error::InvalidParam(
                "width and height must be positive".into(),
            ));
        }
        let content = self.content(server_name, media_id, timeout_ms).await?;
        let (width, height) = snap(width, height, method);
        let key = ThumbnailKey {
            media_id: media_id.to_owned(),
            width,
            height,
            method: method.as_str(),
        };
        let record = match self.db.thumbnail(&key).await? {
            Some(record) => record,
            None => self.generate(&content, &key, method).await?,
        };
        let body = self.blobs.get(&record.sha256).await?;
        Ok(Download {
            content_type: record.content_type,
            file_name: None,
            size: record.size,
            body,
        })
    }

    /// Generates, stores and records the thumbnail `key` of `content`.
    async fn generate(
        &self,
        content: &Content,
        key: &ThumbnailKey,
        method: Method,
    ) -> Result<ThumbnailRecord> {
        if content.size > self.config.max_thumbnail_source_bytes {
            return Err(Error::ThumbnailTooLarge(format!(
                "{} bytes, at most {} are thumbnailed",
                content.size, self.config.max_thumbnail_source_bytes
            )));
        }
        let _permit = self
            .thumbnailers
            .acquire()
            .await
            .map_err(|_| Error::Thumbnail("shutting down".into()))?;
        let original = self.blobs.get_bytes(&content.sha256).await?;
        let max_pixels = self.config.max_thumbnail_pixels;
        let (width, height) = (key.width, key.height);
        let made = tokio::task::spawn_blocking(move || {
            make_thumbnail(&original, width, height, method, max_pixels)
        })
        .await
        .map_err(|e| Error::Thumbnail(format!("thumbnailer failed: {e}")))??;
        let record = match made {
            Thumbnail::Original { width, height } => ThumbnailRecord {
                sha256: content.sha256.clone(),
                size: content.size,
                content_type: content
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".into()),
                width,
                height,
            },
            Thumbnail::Encoded {
                bytes,
                content_type,
                width,
                height,
            } => {
                let staged = self.blobs.stage_bytes(bytes).await?;
                let record = ThumbnailRecord {
                    sha256: staged.blob.sha256.clone(),
                    size: staged.blob.size,
                    content_type: content_type.to_owned(),
                    width,
                    height,
                };
                if !self
                    .record_staged(staged, || self.db.put_thumbnail(key, &record))
                    .await?
                {
                    return Err(Error::NotFound("media not found"));
                }
                return Ok(record);
            }
        };
        if !self.db.put_thumbnail(key, &record).await? {
            return Err(Error::NotFound("media not found"));
        }
        Ok(record)
    }

    /// Deletes every media ID created before `before_ms` (ms since the
    /// epoch), only those with content larger than `size_gt` bytes if
    /// given, then deletes the blobs no record references any more
    /// ([`Media::sweep_doomed`]); first it clears the cached URL previews
    /// of every hour begun before `before_ms`. Paged: one small transaction per media ID
    /// and per blob, so no transaction grows with the data; an interrupted
    /// purge is finished by running it again.
    ///
    /// Errors: storage failures (what was deleted stays deleted).
    pub async fn purge(&self, before_ms: u64, size_gt: Option<u64>) -> Result<PurgeReport> {
        let mut report = PurgeReport::default();
        // Cached URL previews of the hours that began before the cutoff go
        // first: none may name an image media ID deleted below.
        let hours = before_ms.div_ceil(preview::HOUR_MS);
        self.db.clear_previews_before(hours).await?;
        let mut cursor = None;
        loop {
            let page = self
                .db
                .created_before(before_ms, cursor.as_ref(), PURGE_PAGE)
                .await?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            for (_, media_id) in &page {
                if let Some(size_gt) = size_gt {
                    let size = self
                        .db
                        .get(media_id)
                        .await?
                        .and_then(|r| r.content)
                        .map(|c| c.size);
                    if size.is_none_or(|size| size <= size_gt) {
                        continue;
                    }
                }
                if let Some(deleted) = self.db.delete(media_id, self.clock.now_ms()).await? {
                    report.media += 1;
                    report.media_ids.push(media_id.clone());
                    report.media_bytes += deleted.record.content.map_or(0, |c| c.size);
                }
            }
            cursor = Some(last);
        }
        report.blobs = self.sweep_doomed().await?;
        Ok(report)
    }

    /// Deletes from the blob store every blob listed in `blobs/doomed`
    /// that still has no reference: claim (no upload may reference it
    /// meanwhile), delete, finish; each step safe to run twice. Returns how
    /// many were deleted.
    ///
    /// Errors: storage failures (the rest stays listed for the next run).
    pub async fn sweep_doomed(&self) -> Result<u64> {
        let mut deleted = 0;
        let mut cursor: Option<String> = None;
        loop {
            let page = self.db.doomed(cursor.as_deref(), PURGE_PAGE).await?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            for sha256 in &page {
                if self.db.claim_doomed(sha256).await? {
                    self.blobs.delete(sha256).await?;
                    self.db.finish_doomed(sha256).await?;
                    deleted += 1;
                }
            }
            cursor = Some(last);
        }
        Ok(deleted)
    }

    /// Removes what crashes and refused uploads leave in the blob store,
    /// untouched for [`MediaConfig::orphan_grace_ms`]: temporary files, and
    /// blobs no record references (listed in `blobs/doomed`, then swept).
    /// Lists the whole blob store: run it with a purge, not per request.
    ///
    /// Errors: storage failures.
    pub async fn sweep_orphans(&self) -> Result<PurgeReport> {
        let now_ms = self.clock.now_ms();
        let before_ms = now_ms.saturating_sub(self.config.orphan_grace_ms);
        let mut report = PurgeReport {
            temporaries: self.blobs.sweep_temporaries(before_ms).await?,
            ..PurgeReport::default()
        };
        let mut old = self.blobs.blobs_before(before_ms).await;
        while let Some(sha256) = old.next().await {
            self.db.doom_if_unreferenced(&sha256?, now_ms).await?;
        }
        report.blobs = self.sweep_doomed().await?;
        Ok(report)
    }

    /// Admin: quarantines `media_id` (downloads then answer 404).
    ///
    /// Errors: [`Error::NotFound`] for an unknown ID, storage failures.
    pub async fn quarantine(&self, server_name: &ServerName, media_id: &str) -> Result<()> {
        self.check_local(server_name, media_id)?;
        if self.db.quarantine(media_id).await? {
            Ok(())
        } else {
            Err(Error::NotFound("media not found"))
        }
    }
}

/// A generated thumbnail, or the original when it already fits.
enum Thumbnail {
    Original {
        width: u32,
        height: u32,
    },
    Encoded {
        bytes: Bytes,
        content_type: &'static str,
        width: u32,
        height: u32,
    },
}

/// Decodes `original` and makes its `width` × `height` thumbnail by
/// `method`, refusing images over `max_pixels` from their header alone.
/// Never upscales: an original that fits is answered as itself.
fn make_thumbnail(
    original: &[u8],
    width: u32,
    height: u32,
    method: Method,
    max_pixels: u64,
) -> Result<Thumbnail> {
    use image::{ImageFormat, ImageReader, Limits};
    let unsupported = |e: &dyn std::fmt::Display| Error::Thumbnail(e.to_string());
    let reader = ImageReader::new(Cursor::new(original))
        .with_guessed_format()
        .map_err(|e| unsupported(&e))?;
    let format = reader
        .format()
        .filter(|f| {
            matches!(
                f,
                ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP
            )
        })
        .ok_or_else(|| Error::Thumbnail("not a PNG, JPEG, GIF or WebP image".into()))?;
    let (ow, oh) = reader.into_dimensions().map_err(|e| unsupported(&e))?;
    if u64::from(ow) * u64::from(oh) > max_pixels {
        return Err(Error::ThumbnailTooLarge(format!(
            "{ow}×{oh} pixels, at most {max_pixels} are decoded"
        )));
    }
    if ow <= width && oh <= height {
        return Ok(Thumbnail::Original {
            width: ow,
            height: oh,
        });
    }
    let mut reader = ImageReader::with_format(Cursor::new(original), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(ow);
    limits.max_image_height = Some(oh);
    // The decoded image (at most 8 bytes a pixel: 16-bit RGBA) and as much
    // again for the decoder's own buffers.
    limits.max_alloc = Some(max_pixels.saturating_mul(16));
    reader.limits(limits);
    let image = reader.decode().map_err(|e| unsupported(&e))?;
    let filter = image::imageops::FilterType::Triangle;
    let thumb = match method {
        Method::Crop => image.resize_to_fill(width.min(ow), height.min(oh), filter),
        Method::Scale => image.resize(width, height, filter),
    };
    let (content_type, out_format) = if format == ImageFormat::Jpeg {
        ("image/jpeg", ImageFormat::Jpeg)
    } else {
        ("image/png", ImageFormat::Png)
    };
    let thumb = if out_format == ImageFormat::Jpeg {
        image::DynamicImage::ImageRgb8(thumb.to_rgb8())
    } else {
        thumb
    };
    let mut bytes = Vec::new();
    thumb
        .write_to(&mut Cursor::new(&mut bytes), out_format)
        .map_err(|e| unsupported(&e))?;
    Ok(Thumbnail::Encoded {
        bytes: Bytes::from(bytes),
        content_type,
        width: thumb.width(),
        height: thumb.height(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ids_are_checked() {
        assert!(valid_media_id("abc-DEF_123"));
        for bad in ["", "a/b", "a.b", "..", "a b", "é", &"a".repeat(256)] {
            assert!(!valid_media_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn requests_snap_to_the_smallest_size_covering_them() {
        assert_eq!(snap(1, 1, Method::Crop), (32, 32));
        assert_eq!(snap(32, 33, Method::Crop), (96, 96));
        assert_eq!(snap(500, 500, Method::Crop), (96, 96));
        assert_eq!(snap(100, 100, Method::Scale), (320, 240));
        assert_eq!(snap(321, 10, Method::Scale), (640, 480));
        assert_eq!(snap(2000, 2000, Method::Scale), (800, 600));
    }
}
