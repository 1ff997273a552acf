//! The embedded backend: object bytes in blob files under the data dir, metadata in redb.
//!
//! Data path of a PUT: [`Embedded::stage`] receives the body into a fsynced temporary file while
//! hashing it ([`crate::ingest`]); the caller checks the digests (Content-MD5, trailing checksums);
//! [`Embedded::commit_object`] moves the file into the blob tree and commits the object record in
//! one metadata transaction. Until that commit nothing is visible; after it the previous version's
//! blobs are garbage, removed once no reader holds them ([`crate::pins`]).

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::Notify;

use crate::blob::BlobDir;
use crate::digest::{self, ChecksumSelection};
use crate::error::{Result, StoreError};
use crate::ingest::{self, Staged};
use crate::meta::{
    Deleted, ListPage, ListQuery, Meta, OwnedWhich, VersionListQuery, VersionPage, Which,
    WriteCondition,
};
use crate::pins::Pins;
use crate::records::*;
use crate::{INLINE_MAX, MAX_PUT_SIZE, ObjectReader, StoreOptions, now_ns, pieces, sse};

pub(crate) struct Inner {
    meta: Meta,
    pub(crate) blobs: BlobDir,
    pins: Pins,
    gc: Notify,
    min_part_size: u64,
    hash_pieces: bool,
    data_dir: std::path::PathBuf,
    /// SSE-S3 master keys ([`crate::server_keys`]).
    pub(crate) server_keys: Arc<crate::server_keys::ServerKeys>,
}

impl Inner {
    /// Rewrites `bucket-owners.json` (see [`crate::bucket_owners`]); a failure only loses the
    /// CLI's view of ownership until the next bucket change, so it is logged, not returned.
    fn refresh_owner_index(&self) {
        let written = self
            .meta
            .list_buckets()
            .and_then(|buckets| crate::bucket_owners::write(&self.data_dir, &buckets));
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not write the bucket owner index");
        }
    }
}

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Embedded {
    pub(crate) inner: Arc<Inner>,
}

impl Embedded {
    /// Opens (or creates) the store under `opts.data_dir`, removes leftovers of interrupted
    /// writes, and starts the garbage collector and the orphan sweep in the background.
    pub async fn open(opts: StoreOptions) -> Result<Self> {
        let dir = opts.data_dir.clone();
        let data_dir = opts.data_dir.clone();
        let started = SystemTime::now();
        let (meta, blobs, server_keys) = tokio::task::spawn_blocking(
            move || -> Result<(Meta, BlobDir, crate::server_keys::ServerKeys)> {
                std::fs::create_dir_all(&dir)?;
                let blobs = BlobDir::open(&dir)?;
                let meta = Meta::open(&dir.join("meta.redb"))?;
                let keys = crate::server_keys::ServerKeys::load_or_create(&dir)?;
                Ok((meta, blobs, keys))
            },
        )
        .await??;
        let store = Embedded {
            inner: Arc::new(Inner {
                meta,
                blobs,
                pins: Pins::default(),
                gc: Notify::new(),
                min_part_size: opts.min_part_size,
                hash_pieces: opts.hash_pieces,
                data_dir,
                server_keys: Arc::new(server_keys),
            }),
        };
        store
            .blocking(|i| {
                i.refresh_owner_index();
                Ok(())
            })
            .await?;
        store.spawn_gc();
        let sweeper = store.clone();
        tokio::spawn(async move {
            if let Err(e) = sweeper.sweep_orphans(started).await {
                tracing::warn!(error = %e, "orphan blob sweep failed");
            }
        });
        Ok(store)
    }

    /// A point read of the metadata database (one record by its key), run on the calling task:
    /// it takes microseconds from redb's page cache, while handing it to a blocking thread and
    /// back cost two thread wake-ups, the largest share of a small GET's time. Listings and
    /// every write still go through [`Embedded::blocking`] / the committer thread.
    fn point_read<T>(&self, f: impl FnOnce(&Inner) -> Result<T>) -> Result<T> {
        f(&self.inner)
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
            default_sse_s3: false,
            versioning: None,
            lifecycle: Vec::new(),
        };
        self.blocking(move |i| {
            i.meta.create_bucket(&rec)?;
            i.refresh_owner_index();
            Ok(())
        })
        .await
    }

    pub async fn delete_bucket(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.blocking(move |i| {
            i.meta.delete_bucket(&name)?;
            i.refresh_owner_index();
            Ok(())
        })
        .await?;
        self.inner.gc.notify_one();
        Ok(())
    }

    pub async fn bucket(&self, name: &str) -> Result<BucketRecord> {
        let name = name.to_owned();
        self.point_read(move |i| i.meta.bucket(&name))
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

    /// Changes one version's record in place (ACL, tags); see [`Meta::update_object`].
    pub async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        version: &str,
        current_only: bool,
        change: impl FnOnce(&mut ObjectRecord) -> Result<()> + Send + 'static,
    ) -> Result<ObjectRecord> {
        let (bucket, key, version) = (bucket.to_owned(), key.to_owned(), version.to_owned());
        self.blocking(move |i| {
            i.meta
                .update_object(&bucket, &key, &version, current_only, change)
        })
        .await
    }

    pub async fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        self.blocking(|i| i.meta.list_buckets()).await
    }

    pub async fn usage(&self) -> Result<crate::Usage> {
        self.blocking(|i| i.meta.usage()).await
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

    /// Receives a multipart part: like [`Embedded::stage`], always into a file (completion
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
            // Always computed here (`Store` stages embedded bodies `with_md5`).
            etag: staged.digests.md5_hex().unwrap_or_default(),
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
            completed_upload: None,
            versioned: false,
            delete_marker: false,
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
                        .put_object(&bucket, &key, &rec, &cond, Some(data), pieces);
                }
                i.blobs.publish(&staged.id)?;
                staged.disarm();
                match i.meta.put_object(&bucket, &key, &rec, &cond, None, pieces) {
                    Ok(stored) => Ok(stored),
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

    pub async fn head_object_at(
        &self,
        bucket: &str,
        key: &str,
        which: Which<'_>,
    ) -> Result<ObjectRecord> {
        let (bucket, key, which) = (bucket.to_owned(), key.to_owned(), OwnedWhich::of(which));
        self.point_read(move |i| i.meta.object_at(&bucket, &key, which.get()))
    }

    /// The newest version of `bucket/key` when it is a delete marker.
    pub async fn latest_delete_marker(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectRecord>> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.point_read(move |i| i.meta.latest_delete_marker(&bucket, &key))
    }

    /// Looks up one version and pins its blobs so they outlive a concurrent delete.
    pub async fn open_object_at(
        &self,
        bucket: &str,
        key: &str,
        which: Which<'_>,
    ) -> Result<ObjectReader> {
        loop {
            let (b, k, w) = (bucket.to_owned(), key.to_owned(), OwnedWhich::of(which));
            let (rec, inline) =
                self.point_read(move |i| i.meta.object_with_inline(&b, &k, w.get()))?;
            if let Some(data) = inline {
                // Inline bytes are already in hand: nothing to pin.
                let pins = self
                    .inner
                    .pins
                    .pin(Vec::new(), self.inner.clone_notify_target());
                return Ok(ObjectReader::local(
                    rec,
                    self.inner.blobs.clone(),
                    Some(data),
                    pins,
                    self.inner.server_keys.clone(),
                ));
            }
            let guard = self.inner.pins.pin(
                rec.segments.iter().map(|s| s.blob.clone()).collect(),
                self.inner.clone_notify_target(),
            );
            // Re-check after pinning: if the version still exists, the collector has not yet
            // seen its blobs as garbage and will respect the pin.
            let again = if rec.delete_marker {
                true
            } else {
                self.head_object_at(bucket, key, Which::Exact(&rec.version))
                    .await
                    .is_ok()
            };
            if again {
                return Ok(ObjectReader::local(
                    rec,
                    self.inner.blobs.clone(),
                    None,
                    guard,
                    self.inner.server_keys.clone(),
                ));
            }
        }
    }

    pub async fn delete_object(&self, bucket: &str, key: &str, requester: &str) -> Result<Deleted> {
        let (bucket, key, requester) = (bucket.to_owned(), key.to_owned(), requester.to_owned());
        let deleted = self
            .blocking(move |i| i.meta.delete_object(&bucket, &key, &requester))
            .await?;
        self.inner.gc.notify_one();
        Ok(deleted)
    }

    pub async fn delete_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<Deleted> {
        let (bucket, key, id) = (bucket.to_owned(), key.to_owned(), version_id.to_owned());
        let deleted = self
            .blocking(move |i| i.meta.delete_version(&bucket, &key, &id))
            .await?;
        self.inner.gc.notify_one();
        Ok(deleted)
    }

    pub async fn list_versions(&self, bucket: &str, q: VersionListQuery) -> Result<VersionPage> {
        let bucket = bucket.to_owned();
        self.blocking(move |i| i.meta.list_versions(&bucket, &q))
            .await
    }

    pub async fn list_objects(&self, bucket: &str, q: ListQuery) -> Result<ListPage> {
        let bucket = bucket.to_owned();
        self.blocking(move |i| i.meta.list_objects(&bucket, &q))
            .await
    }

    // ---- torrents ----

    /// The piece hashes stored for an object version, if any.
    pub(crate) async fn stored_pieces(
        &self,
        version: &str,
    ) -> Result<Option<pieces::StoredPieces>> {
        let v = version.to_owned();
        self.point_read(move |i| i.meta.pieces(&v))
    }

    pub(crate) async fn put_pieces(
        &self,
        bucket: &str,
        key: &str,
        version: &str,
        stored: &pieces::StoredPieces,
    ) -> Result<()> {
        let (b, k, v, p) = (
            bucket.to_owned(),
            key.to_owned(),
            version.to_owned(),
            stored.clone(),
        );
        // A version replaced meanwhile keeps no hashes; the caller still gets them.
        self.blocking(move |i| i.meta.put_pieces(&b, &k, &v, &p))
            .await
            .map(|_stored| ())
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

    /// Every object recorded under an info-hash (hex, lower case).
    pub async fn torrent_sources(&self, info_hash: &str) -> Result<pieces::TorrentSources> {
        let h = info_hash.to_ascii_lowercase();
        self.point_read(move |i| i.meta.torrent_sources(&h))
    }

    /// Every info-hash (hex) with a recorded source.
    pub async fn issued_info_hashes(&self) -> Result<Vec<String>> {
        self.blocking(|i| i.meta.issued_info_hashes()).await
    }

    // ---- multipart ----

    pub async fn create_upload(&self, rec: UploadRecord) -> Result<UploadRecord> {
        self.blocking(move |i| i.meta.create_upload(&rec).map(|()| rec))
            .await
    }

    pub async fn upload(&self, upload_id: &str) -> Result<UploadRecord> {
        let id = upload_id.to_owned();
        self.point_read(move |i| i.meta.upload(&id))
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
            // Always computed here (`Store` stages embedded bodies `with_md5`).
            etag: staged.digests.md5_hex().unwrap_or_default(),
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
    async fn collect_garbage(&self) -> Result<usize> {
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
pub(crate) fn assemble(
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
        completed_upload: Some(upload.upload_id.clone()),
        versioned: false,
        delete_marker: false,
    })
}
