//! seedbucket's object store: the one place that touches blob files and the metadata database.
//!
//! Data path of a PUT: [`Store::stage`] receives the body into a fsynced temporary file while
//! hashing it ([`ingest`]); the caller checks the digests (Content-MD5, trailing checksums);
//! [`Store::commit_object`] moves the file into the blob tree and commits the object record in one
//! metadata transaction. Until that commit nothing is visible; after it the previous version's
//! blobs are garbage, removed once no reader holds them ([`pins`]).
//!
//! A GET opens an [`ObjectReader`], which pins the version's blobs and streams any byte range.

mod background;
pub mod blob;
mod body_file;
pub mod credentials;
pub mod digest;
mod encrypted;
pub mod error;
pub mod ingest;
pub mod meta;
pub mod pieces;
mod pins;
pub mod records;
pub mod sse;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::Stream;
use tokio::sync::{Notify, mpsc};

pub use crate::blob::BlobDir;
pub use crate::digest::{BodyHasher, ChecksumSelection, Digests};
pub use crate::encrypted::verify_key;
pub use crate::error::{Result, StoreError};
pub use crate::ingest::Staged;
pub use crate::meta::{ListPage, ListQuery, WriteCondition};
pub use crate::records::*;

use crate::blob::ReadSpan;
use crate::meta::Meta;
use crate::pins::{PinGuard, Pins};

/// Largest object a single PUT or part may carry: 5 GiB, as in S3.
pub const MAX_PUT_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Smallest size of every part but the last: 5 MiB, as in S3.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Highest part number.
pub const MAX_PART_NUMBER: u32 = 10_000;
/// Objects up to this size are kept inside the metadata database: one group-committed
/// transaction makes them durable, with no file to create and fsync.
pub const INLINE_MAX: usize = 64 * 1024;

/// Options for [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub data_dir: PathBuf,
    /// Smallest allowed size of a non-last part (S3: 5 MiB).
    pub min_part_size: u64,
    /// Hash torrent pieces while PUT bodies are written (off only to measure what it costs).
    pub hash_pieces: bool,
}

impl StoreOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            min_part_size: MIN_PART_SIZE,
            hash_pieces: true,
        }
    }
}

/// Completed multipart objects hashed at once, at most.
const BACKGROUND_HASH_JOBS: usize = 2;

type HashJob = Arc<tokio::sync::OnceCell<std::result::Result<pieces::StoredPieces, String>>>;

struct Inner {
    meta: Meta,
    /// Lazy piece hashing in progress, by object version.
    hash_jobs: std::sync::Mutex<std::collections::HashMap<String, HashJob>>,
    /// Bounds the hashing of completed multipart objects that runs in the background.
    background_hashing: tokio::sync::Semaphore,
    blobs: BlobDir,
    pins: Pins,
    gc: Notify,
    min_part_size: u64,
    hash_pieces: bool,
}

/// The object store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Store {
    /// Opens (or creates) the store under `opts.data_dir`, removes leftovers of interrupted
    /// writes, and starts the garbage collector and the orphan sweep in the background.
    pub async fn open(opts: StoreOptions) -> Result<Self> {
        let dir = opts.data_dir.clone();
        let started = SystemTime::now();
        let (meta, blobs) = tokio::task::spawn_blocking(move || -> Result<(Meta, BlobDir)> {
            std::fs::create_dir_all(&dir)?;
            let blobs = BlobDir::open(&dir)?;
            let meta = Meta::open(&dir.join("meta.redb"))?;
            Ok((meta, blobs))
        })
        .await??;
        let store = Store {
            inner: Arc::new(Inner {
                meta,
                hash_jobs: Default::default(),
                background_hashing: tokio::sync::Semaphore::new(BACKGROUND_HASH_JOBS),
                blobs,
                pins: Pins::default(),
                gc: Notify::new(),
                min_part_size: opts.min_part_size,
                hash_pieces: opts.hash_pieces,
            }),
        };
        store.spawn_gc();
        let sweeper = store.clone();
        tokio::spawn(async move {
            if let Err(e) = sweeper.sweep_orphans(started).await {
                tracing::warn!(error = %e, "orphan blob sweep failed");
            }
        });
        Ok(store)
    }

    pub fn data_dir(&self) -> &Path {
        self.inner.blobs_root()
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner)).await?
    }

    // ---- buckets ----

    pub async fn create_bucket(&self, name: &str, owner: &str, acl: Vec<Grant>) -> Result<()> {
        let rec = BucketRecord {
            name: name.to_owned(),
            owner: owner.to_owned(),
            created_ns: now_ns(),
            acl,
            policy: None,
            cors: Vec::new(),
        };
        self.blocking(move |i| i.meta.create_bucket(&rec)).await
    }

    pub async fn delete_bucket(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.blocking(move |i| i.meta.delete_bucket(&name)).await?;
        self.inner.gc.notify_one();
        Ok(())
    }

    pub async fn bucket(&self, name: &str) -> Result<BucketRecord> {
        let name = name.to_owned();
        self.blocking(move |i| i.meta.bucket(&name)).await
    }

    /// Changes a bucket's record in one transaction (ACL, policy, CORS); returns the new record.
    pub async fn update_bucket(
        &self,
        name: &str,
        change: impl FnOnce(&mut BucketRecord) -> Result<()> + Send + 'static,
    ) -> Result<BucketRecord> {
        let name = name.to_owned();
        self.blocking(move |i| i.meta.update_bucket(&name, change))
            .await
    }

    /// Changes the current object's record in place (ACL, tags), if its version is still
    /// `version`; the bytes and the version id stay the same. Returns the new record.
    pub async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        version: &str,
        change: impl FnOnce(&mut ObjectRecord) -> Result<()> + Send + 'static,
    ) -> Result<ObjectRecord> {
        let (bucket, key, version) = (bucket.to_owned(), key.to_owned(), version.to_owned());
        self.blocking(move |i| i.meta.update_object(&bucket, &key, &version, change))
            .await
    }

    pub async fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        self.blocking(|i| i.meta.list_buckets()).await
    }

    // ---- objects ----

    /// Receives an object body, computing MD5 and the selected checksums. Bodies up to
    /// [`INLINE_MAX`] bytes are kept for the metadata database; larger ones go to a file.
    pub async fn stage<S, E>(
        &self,
        body: S,
        expected_size: Option<u64>,
        checksums: ChecksumSelection,
    ) -> Result<Staged>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let blobs = &self.inner.blobs;
        ingest::stage(
            blobs,
            body,
            expected_size,
            MAX_PUT_SIZE,
            INLINE_MAX,
            checksums,
            self.inner.hash_pieces,
        )
        .await
    }

    /// Receives a multipart part: like [`Store::stage`], always into a file (completion
    /// references part files).
    pub async fn stage_part<S, E>(
        &self,
        body: S,
        expected_size: Option<u64>,
        checksums: ChecksumSelection,
    ) -> Result<Staged>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        ingest::stage(
            &self.inner.blobs,
            body,
            expected_size,
            MAX_PUT_SIZE,
            0,
            checksums,
            false,
        )
        .await
    }

    /// Publishes a staged body as the object `bucket/key`.
    pub async fn commit_object(
        &self,
        staged: Staged,
        bucket: &str,
        key: &str,
        attributes: ObjectAttributes,
        checksums: Checksums,
        cond: WriteCondition,
    ) -> Result<ObjectRecord> {
        let rec = ObjectRecord {
            version: uuid::Uuid::new_v4().simple().to_string(),
            size: staged.plain_size,
            etag: staged.digests.md5_hex(),
            last_modified_ns: now_ns(),
            attributes,
            checksums,
            segments: vec![Segment {
                blob: staged.id.clone(),
                len: staged.size,
                inline: staged.inline().is_some(),
                sse: staged.sse.clone(),
            }],
            parts_count: None,
        };
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let out = self
            .blocking(move |i| {
                let mut staged = staged;
                let pieces = staged.pieces.as_ref().map(|h| {
                    let created_ns = rec.last_modified_ns;
                    pieces::StoredPieces {
                        hashes: h.clone(),
                        created_ns,
                    }
                    .encode()
                });
                if let Some(data) = staged.inline() {
                    let data = data.clone();
                    return i
                        .meta
                        .put_object(&bucket, &key, &rec, &cond, Some(data), pieces)
                        .map(|()| rec);
                }
                i.blobs.publish(&staged.id)?;
                staged.disarm();
                match i.meta.put_object(&bucket, &key, &rec, &cond, None, pieces) {
                    Ok(()) => Ok(rec),
                    Err(e) => {
                        let _ = i.blobs.remove(&staged.id);
                        Err(e)
                    }
                }
            })
            .await?;
        self.inner.gc.notify_one();
        Ok(out)
    }

    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectRecord> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.blocking(move |i| i.meta.object(&bucket, &key)).await
    }

    /// Looks up the object and pins its blobs so they outlive a concurrent overwrite.
    pub async fn open_object(&self, bucket: &str, key: &str) -> Result<ObjectReader> {
        loop {
            let (b, k) = (bucket.to_owned(), key.to_owned());
            let (rec, inline) = self
                .blocking(move |i| i.meta.object_with_inline(&b, &k))
                .await?;
            if let Some(data) = inline {
                // Inline bytes are already in hand: nothing to pin.
                return Ok(ObjectReader {
                    record: rec,
                    blobs: self.inner.blobs.clone(),
                    inline: Some(data),
                    _pins: self
                        .inner
                        .pins
                        .pin(Vec::new(), self.inner.clone_notify_target()),
                    files: std::sync::OnceLock::new(),
                });
            }
            let guard = self.inner.pins.pin(
                rec.segments.iter().map(|s| s.blob.clone()).collect(),
                self.inner.clone_notify_target(),
            );
            // Re-check after pinning: if the version is still current, the collector has not
            // yet seen its blobs as garbage and will respect the pin.
            let again = self.head_object(bucket, key).await?;
            if again.version == rec.version {
                return Ok(ObjectReader {
                    record: rec,
                    blobs: self.inner.blobs.clone(),
                    inline: None,
                    _pins: guard,
                    files: std::sync::OnceLock::new(),
                });
            }
        }
    }

    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<bool> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let existed = self
            .blocking(move |i| i.meta.delete_object(&bucket, &key))
            .await?;
        self.inner.gc.notify_one();
        Ok(existed)
    }

    pub async fn list_objects(&self, bucket: &str, q: ListQuery) -> Result<ListPage> {
        let bucket = bucket.to_owned();
        self.blocking(move |i| i.meta.list_objects(&bucket, &q))
            .await
    }

    // ---- torrents ----

    /// The piece hashes of the current version of `bucket/key`: stored ones when the PUT made
    /// them with the piece length the size rule gives, else made now by reading the object once
    /// (concurrent callers for one version wait on the same job) and kept.
    pub async fn pieces_of(
        &self,
        rec: &ObjectRecord,
        bucket: &str,
        key: &str,
    ) -> Result<pieces::StoredPieces> {
        let want = seedbucket_torrent::piece_length_for(rec.size);
        let version = rec.version.clone();
        let v = version.clone();
        if let Some(p) = self.blocking(move |i| i.meta.pieces(&v)).await?
            && p.hashes.piece_length == want
            && p.hashes.v1_pieces.is_some()
            && p.hashes.v2_layer.is_some()
        {
            return Ok(p);
        }
        let cell = {
            let mut jobs = self
                .inner
                .hash_jobs
                .lock()
                .map_err(|_| StoreError::Db("hash job table poisoned".into()))?;
            jobs.entry(version.clone()).or_default().clone()
        };
        let result = cell
            .get_or_init(|| async {
                let made = self.hash_now(bucket, key, &version, want).await;
                made.map_err(|e| e.to_string())
            })
            .await
            .clone();
        if let Ok(mut jobs) = self.inner.hash_jobs.lock() {
            jobs.remove(&version);
        }
        result.map_err(StoreError::Db)
    }

    async fn hash_now(
        &self,
        bucket: &str,
        key: &str,
        version: &str,
        piece_length: u64,
    ) -> Result<pieces::StoredPieces> {
        let reader = self.open_object(bucket, key).await?;
        if reader.record.version != version {
            return Err(StoreError::NoSuchKey);
        }
        let size = reader.record.size;
        let mut rx = reader.stream(0, size);
        // SHA-1 and SHA-256 on a low-priority thread each, as during a PUT.
        let workers = ingest::PieceWorkers::start(piece_length)?;
        while let Some(chunk) = rx.recv().await {
            if !workers.send(&chunk?).await {
                break;
            }
        }
        let hashes = workers.finish().await?;
        if hashes.length != size {
            return Err(StoreError::Corrupt(
                "object shorter than its record while hashing".into(),
            ));
        }
        let stored = pieces::StoredPieces {
            hashes,
            created_ns: now_ns(),
        };
        let (b, k, v, p) = (
            bucket.to_owned(),
            key.to_owned(),
            version.to_owned(),
            stored.clone(),
        );
        self.blocking(move |i| i.meta.put_pieces(&b, &k, &v, &p))
            .await?;
        Ok(stored)
    }

    /// Starts making the piece hashes of `bucket/key` (version `rec`) in the background, so that
    /// its first `?torrent` finds them: for objects whose bytes were not hashed on the way in,
    /// such as completed multipart uploads. At most [`BACKGROUND_HASH_JOBS`] run at once; a
    /// `?torrent` that comes first makes them itself and the queued job then finds them stored.
    pub fn hash_in_background(&self, rec: ObjectRecord, bucket: String, key: String) {
        // SSE-C objects get no torrent: their stored bytes are ciphertext.
        if !self.inner.hash_pieces || rec.is_sse_c() {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = store.inner.background_hashing.acquire().await else {
                return;
            };
            // A version deleted or replaced meanwhile is simply not hashed.
            if let Err(e) = store.pieces_of(&rec, &bucket, &key).await {
                tracing::debug!(%bucket, %key, error = %e, "background piece hashing skipped");
            }
        });
    }

    /// Records an issued torrent under its info-hashes (hex).
    pub async fn issue_torrent(
        &self,
        hashes: Vec<String>,
        rec: pieces::IssuedTorrent,
    ) -> Result<()> {
        self.blocking(move |i| i.meta.issue_torrent(&hashes, &rec))
            .await
    }

    /// The torrent issued under an info-hash (hex, lower case).
    pub async fn torrent(&self, info_hash: &str) -> Result<Option<pieces::IssuedTorrent>> {
        let h = info_hash.to_ascii_lowercase();
        self.blocking(move |i| i.meta.torrent(&h)).await
    }

    // ---- multipart ----

    pub async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        attributes: ObjectAttributes,
        checksum_algorithm: Option<String>,
        sse_key_check: Option<sse::SseParams>,
    ) -> Result<UploadRecord> {
        let initiated_ns = now_ns();
        let rec = UploadRecord {
            // Sortable by creation time, unguessable after that.
            upload_id: format!("{:016x}{}", initiated_ns, uuid::Uuid::new_v4().simple()),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            initiated_ns,
            attributes,
            checksum_algorithm,
            sse_key_check,
        };
        self.blocking(move |i| i.meta.create_upload(&rec).map(|()| rec))
            .await
    }

    pub async fn upload(&self, upload_id: &str) -> Result<UploadRecord> {
        let id = upload_id.to_owned();
        self.blocking(move |i| i.meta.upload(&id)).await
    }

    pub async fn commit_part(
        &self,
        staged: Staged,
        upload_id: &str,
        part_number: u32,
        checksums: Checksums,
    ) -> Result<PartRecord> {
        let part = PartRecord {
            part_number,
            blob: staged.id.clone(),
            size: staged.plain_size,
            etag: staged.digests.md5_hex(),
            last_modified_ns: now_ns(),
            checksums,
            sse: staged.sse.clone(),
        };
        if staged.inline().is_some() {
            return Err(StoreError::Corrupt(
                "a part must be staged to a file".into(),
            ));
        }
        let id = upload_id.to_owned();
        let out = self
            .blocking(move |i| {
                let mut staged = staged;
                i.blobs.publish(&staged.id)?;
                staged.disarm();
                match i.meta.put_part(&id, &part) {
                    Ok(()) => Ok(part),
                    Err(e) => {
                        let _ = i.blobs.remove(&staged.id);
                        Err(e)
                    }
                }
            })
            .await?;
        self.inner.gc.notify_one();
        Ok(out)
    }

    pub async fn list_parts(&self, upload_id: &str) -> Result<Vec<PartRecord>> {
        let id = upload_id.to_owned();
        self.blocking(move |i| i.meta.list_parts(&id)).await
    }

    pub async fn list_uploads(&self, bucket: &str) -> Result<Vec<UploadRecord>> {
        let bucket = bucket.to_owned();
        self.blocking(move |i| i.meta.list_uploads(&bucket)).await
    }

    pub async fn abort_upload(&self, upload_id: &str) -> Result<()> {
        let id = upload_id.to_owned();
        self.blocking(move |i| i.meta.abort_upload(&id)).await?;
        self.inner.gc.notify_one();
        Ok(())
    }

    /// Completes a multipart upload from the listed `(part number, ETag)` pairs. The object is
    /// the parts' concatenation by reference: no byte is copied.
    pub async fn complete_upload(
        &self,
        upload_id: &str,
        requested: Vec<(u32, String)>,
        cond: WriteCondition,
    ) -> Result<ObjectRecord> {
        let id = upload_id.to_owned();
        let out = self
            .blocking(move |i| {
                let min = i.min_part_size;
                i.meta.complete_upload(&id, &cond, move |upload, stored| {
                    assemble(upload, stored, &requested, min)
                })
            })
            .await?;
        self.inner.gc.notify_one();
        Ok(out)
    }

    // ---- garbage ----

    fn spawn_gc(&self) {
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = store.collect_garbage().await {
                    tracing::warn!(error = %e, "garbage collection failed");
                }
                store.inner.gc.notified().await;
            }
        });
    }

    /// Removes the files of released blobs that no reader holds.
    pub async fn collect_garbage(&self) -> Result<usize> {
        self.blocking(|i| {
            let garbage = i.meta.garbage()?;
            let mut gone = Vec::new();
            for id in garbage {
                if i.pins.is_pinned(&id) {
                    continue;
                }
                i.blobs.remove(&id)?;
                gone.push(id);
            }
            i.meta.forget_blobs(&gone)?;
            Ok(gone.len())
        })
        .await
    }

    /// Removes blob files that no record names and that predate this process: the leftovers of
    /// a crash between publishing a file and committing its record.
    async fn sweep_orphans(&self, started: SystemTime) -> Result<()> {
        let removed = self
            .blocking(move |i| {
                let on_disk = i.blobs.list_older_than(started)?;
                let orphans = i.meta.unreferenced(on_disk)?;
                for id in &orphans {
                    i.blobs.remove(id)?;
                }
                Ok(orphans.len())
            })
            .await?;
        if removed > 0 {
            tracing::info!(removed, "removed orphan blob files");
        }
        Ok(())
    }
}

impl Inner {
    fn blobs_root(&self) -> &Path {
        self.blobs.root()
    }

    fn clone_notify_target(self: &Arc<Self>) -> Arc<dyn Fn() + Send + Sync> {
        let weak = Arc::downgrade(self);
        Arc::new(move || {
            if let Some(inner) = weak.upgrade() {
                inner.gc.notify_one();
            }
        })
    }
}

/// Validates the requested part list against the stored parts and builds the object record.
fn assemble(
    upload: &UploadRecord,
    stored: &[PartRecord],
    requested: &[(u32, String)],
    min_part_size: u64,
) -> Result<ObjectRecord> {
    if requested.is_empty() {
        return Err(StoreError::InvalidPart(
            "you must specify at least one part".into(),
        ));
    }
    let mut chosen: Vec<&PartRecord> = Vec::with_capacity(requested.len());
    let mut last_number = 0u32;
    for (n, etag) in requested {
        if *n <= last_number {
            return Err(StoreError::InvalidPartOrder);
        }
        last_number = *n;
        let want = etag.trim().trim_matches('"');
        let part = stored
            .iter()
            .find(|p| p.part_number == *n)
            .filter(|p| p.etag == want)
            .ok_or_else(|| {
                StoreError::InvalidPart(format!(
                    "part {n} could not be found or its ETag does not match"
                ))
            })?;
        chosen.push(part);
    }
    if let Some((_, all_but_last)) = chosen.split_last()
        && all_but_last.iter().any(|p| p.size < min_part_size)
    {
        return Err(StoreError::EntityTooSmall);
    }
    let etags: Vec<&str> = chosen.iter().map(|p| p.etag.as_str()).collect();
    let etag = digest::multipart_etag(&etags)
        .ok_or_else(|| StoreError::Corrupt("part ETag is not hex MD5".into()))?;
    let sums: Vec<&Checksums> = chosen.iter().map(|p| &p.checksums).collect();
    Ok(ObjectRecord {
        version: uuid::Uuid::new_v4().simple().to_string(),
        size: chosen.iter().map(|p| p.size).sum(),
        etag,
        last_modified_ns: now_ns(),
        attributes: upload.attributes.clone(),
        checksums: digest::composite_checksums(&sums),
        segments: chosen
            .iter()
            .map(|p| Segment {
                blob: p.blob.clone(),
                len: match p.sse {
                    Some(_) => sse::ciphertext_len(p.size),
                    None => p.size,
                },
                inline: false,
                sse: p.sse.clone(),
            })
            .collect(),
        parts_count: u32::try_from(chosen.len()).ok(),
    })
}

/// An open object version: its record, and its blobs pinned against removal.
pub struct ObjectReader {
    pub record: ObjectRecord,
    blobs: BlobDir,
    inline: Option<Bytes>,
    _pins: PinGuard,
    /// The segments' files, opened on the first [`ObjectReader::read_at`].
    files: std::sync::OnceLock<Vec<std::fs::File>>,
}

impl ObjectReader {
    /// Reads `len` stored bytes at `offset` (blocking: call it from a blocking thread). For
    /// random access by the seeder, which keeps one reader (and its pins) per served version.
    pub fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        use std::os::unix::fs::FileExt as _;
        let end = offset
            .checked_add(len as u64)
            .filter(|&e| e <= self.record.segments.iter().map(|s| s.len).sum::<u64>())
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "read past the end")
            })?;
        if let Some(data) = &self.inline {
            let lo = usize::try_from(offset).map_err(std::io::Error::other)?;
            return Ok(data.slice(lo..lo + len));
        }
        let files = match self.files.get() {
            Some(f) => f,
            None => {
                let opened = self
                    .record
                    .segments
                    .iter()
                    .map(|seg| std::fs::File::open(self.blobs.path(&seg.blob)))
                    .collect::<std::io::Result<Vec<_>>>()?;
                self.files.get_or_init(|| opened)
            }
        };
        let mut out = vec![0u8; len];
        let mut filled = 0usize;
        let mut seg_start = 0u64;
        for (seg, file) in self.record.segments.iter().zip(files) {
            let seg_end = seg_start + seg.len;
            let lo = offset.max(seg_start);
            let hi = end.min(seg_end);
            if lo < hi {
                let n = usize::try_from(hi - lo).map_err(std::io::Error::other)?;
                file.read_exact_at(&mut out[filled..filled + n], lo - seg_start)?;
                filled += n;
            }
            seg_start = seg_end;
        }
        Ok(Bytes::from(out))
    }

    /// Streams bytes `[start, end)` of the object. The caller validates the range.
    /// The pins travel with the stream: the blobs stay until the last byte is read.
    pub fn stream(self, start: u64, end: u64) -> mpsc::Receiver<std::io::Result<Bytes>> {
        if let Some(data) = &self.inline {
            let (tx, rx) = mpsc::channel(1);
            let lo = usize::try_from(start).unwrap_or(usize::MAX).min(data.len());
            let hi = usize::try_from(end)
                .unwrap_or(usize::MAX)
                .min(data.len())
                .max(lo);
            if hi > lo {
                let _ = tx.try_send(Ok(data.slice(lo..hi)));
            }
            return rx;
        }
        let mut spans = Vec::new();
        let mut seg_start = 0u64;
        for seg in &self.record.segments {
            let seg_end = seg_start + seg.len;
            let lo = start.max(seg_start);
            let hi = end.min(seg_end);
            if lo < hi {
                spans.push(ReadSpan {
                    path: self.blobs.path(&seg.blob),
                    offset: lo - seg_start,
                    len: hi - lo,
                });
            }
            seg_start = seg_end;
        }
        blob::stream_spans(spans, self._pins)
    }
}
