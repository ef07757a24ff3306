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
//! has ended is it renamed to its content address; only then is the
//! metadata committed. So a crash leaves no half file at a content address,
//! no record pointing at a missing blob, and at most an unreferenced file
//! under `tmp/`. The whole body is never in memory: the multipart writer
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
        }
    }

    /// Over any `object_store` store (an S3-compatible one, a test double).
    pub fn new(store: Arc<dyn ObjectStore>, random: Random) -> Self {
        BlobStore { store, random }
    }

    /// The content address of `sha256`.
    pub fn path(sha256: &str) -> BlobPath {
        let shard = sha256.get(..2).unwrap_or("00");
        BlobPath::from(format!("blobs/{shard}/{sha256}"))
    }

    /// Streams `body` into the store: hashes each chunk while writing it to
    /// a temporary object, fails with [`Error::TooLarge`] as soon as it
    /// passes `max_bytes`, and moves the finished object to its content
    /// address. On any failure the temporary object is removed and nothing
    /// is visible at a content address.
    pub async fn put_stream<S, E>(&self, body: S, max_bytes: u64) -> Result<StoredBlob>
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
        writer.finish().await?;
        let sha256 = hex::encode(hasher.finalize());
        if let Err(e) = self.store.rename(&tmp, &Self::path(&sha256)).await {
            let _ = self.store.delete(&tmp).await;
            return Err(e.into());
        }
        Ok(StoredBlob { sha256, size })
    }

    /// Writes `bytes` (a thumbnail) to its content address.
    pub async fn put_bytes(&self, bytes: Bytes) -> Result<StoredBlob> {
        let size = bytes.len() as u64;
        let chunk: Result<Bytes, std::convert::Infallible> = Ok(bytes);
        self.put_stream(futures::stream::iter([chunk]), size).await
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

    fn random_bytes<const N: usize>(&self) -> [u8; N] {
        let mut bytes = [0u8; N];
        self.random.fill(&mut bytes);
        bytes
    }
}

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
    /// Bounds concurrent thumbnail decoding.
    thumbnailers: Semaphore,
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
        let blob = self
            .blobs
            .put_stream(body, self.config.max_upload_bytes)
            .await?;
        let content = Content {
            size: blob.size,
            content_type: info
                .content_type
                .filter(|t| !t.is_empty() && t.len() <= 255),
            file_name: info.file_name.filter(|n| n.len() <= 255),
            sha256: blob.sha256,
        };
        let now_ms = self.clock.now_ms();
        self.db
            .complete(
                media_id,
                user_id,
                &content,
                now_ms,
                pending,
                self.config.quota_bytes,
            )
            .await?;
        self.uploaded.notify_waiters();
        Ok(())
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
                let blob = self.blobs.put_bytes(bytes).await?;
                ThumbnailRecord {
                    sha256: blob.sha256,
                    size: blob.size,
                    content_type: content_type.to_owned(),
                    width,
                    height,
                }
            }
        };
        self.db.put_thumbnail(key, &record).await?;
        Ok(record)
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
