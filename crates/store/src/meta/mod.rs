//! The embedded metadata database (redb). Every state change is one ACID transaction.
//!
//! Tables (keys are bytes so that listing can seek past a common prefix):
//! - `buckets`: bucket name → [`BucketRecord`]
//! - `objects`: `bucket/key` → [`ObjectRecord`] (bucket names have no `/`, so this sorts by
//!   bucket, then by key in UTF-8 byte order, which is S3's listing order)
//! - `uploads`: upload id → [`UploadRecord`]; `parts`: `upload id/00042` → [`PartRecord`]
//! - `versions`: noncurrent object versions and delete markers of versioned buckets (see
//!   [`versions`])
//! - `blob_refs`: every blob id some record names; `garbage`: blob ids no record names any more,
//!   waiting for their files to be removed. Both change in the same transaction as the records.

mod versions;

use std::path::Path;

use std::sync::{Arc, Mutex, mpsc};

use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Result, StoreError};
use crate::pieces::{IssuedTorrent, StoredPieces, TorrentSources};
use crate::records::{BucketRecord, ObjectRecord, PartRecord, UploadRecord, Versioning};
use versions::VERSIONS;
pub use versions::{ListedVersion, OwnedWhich, VersionListQuery, VersionPage, Which};

const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("buckets");
const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
const PARTS: TableDefinition<&str, &[u8]> = TableDefinition::new("parts");
const BLOB_REFS: TableDefinition<&str, ()> = TableDefinition::new("blob_refs");
const GARBAGE: TableDefinition<&str, ()> = TableDefinition::new("garbage");
const INLINE: TableDefinition<&str, &[u8]> = TableDefinition::new("inline");
/// object version → encoded [`crate::pieces::StoredPieces`]
const PIECES: TableDefinition<&str, &[u8]> = TableDefinition::new("pieces");
/// The format of before: info-hash (hex: v1, and the truncated v2 for v2/hybrid) → the first
/// [`IssuedTorrent`] (JSON). Read, never written: [`TORRENT_SOURCES`] replaced it.
const TORRENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("torrents");
/// `{info-hash}/{object id}` → the [`IssuedTorrent`] (JSON) of that object under that info-hash
/// (see [`crate::pieces::TorrentSources`]).
const TORRENT_SOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("torrent_sources");

/// Conditions a write must meet, checked inside the transaction (`If-Match`, `If-None-Match`).
#[derive(Debug, Clone, Default)]
pub struct WriteCondition {
    /// Overwrite only if the current ETag equals this (unquoted), or any object exists for `*`.
    pub if_match: Option<String>,
    /// With `*`: write only if no object exists under the key.
    pub if_none_match_any: bool,
}

/// A listing request (ListObjects v1/v2 share it).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Only keys strictly after this one (v1 marker, v2 start-after or continuation token).
    pub after: Option<String>,
    pub max_keys: usize,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<(String, ObjectRecord)>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    /// The last key or common prefix on this page: where the next page starts after.
    pub last: Option<String>,
}

/// What a DELETE did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Something was removed or a delete marker added (S3 answers 204 either way).
    pub existed: bool,
    /// The version added (a DELETE without `versionId` in a versioned bucket) or removed was a
    /// delete marker.
    pub delete_marker: bool,
    /// The version id to report: the new delete marker's, or the one named.
    pub version_id: Option<String>,
}

/// The bucket's versioning state, read inside a write; `NoSuchBucket` if it does not exist.
fn bucket_versioning(tx: &WriteTransaction, bucket: &str) -> Result<Option<Versioning>> {
    let buckets = tx.open_table(BUCKETS)?;
    let rec: BucketRecord = match buckets.get(bucket)? {
        Some(v) => decode(v.value())?,
        None => return Err(StoreError::NoSuchBucket),
    };
    Ok(rec.versioning)
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    Ok(serde_json::from_slice(b)?)
}

pub(crate) fn object_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + 1 + key.len());
    k.extend_from_slice(bucket.as_bytes());
    k.push(b'/');
    k.extend_from_slice(key.as_bytes());
    k
}

fn part_key(upload_id: &str, n: u32) -> String {
    format!("{upload_id}/{n:05}")
}

/// The smallest byte string greater than every string that starts with `prefix`.
/// `None` when no such string exists (all 0xff).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut p = prefix.to_vec();
    while let Some(last) = p.pop() {
        if last < 0xff {
            p.push(last + 1);
            return Some(p);
        }
    }
    None
}

fn release<'t>(garbage: &mut Table<'t, &'static str, ()>, blobs: &[String]) -> Result<()> {
    for b in blobs {
        garbage.insert(b.as_str(), ())?;
    }
    Ok(())
}

/// One write job of a group commit: runs inside the shared transaction and returns the
/// continuation that reports the outcome once the commit is known.
type Job =
    Box<dyn FnOnce(&WriteTransaction) -> (bool, Box<dyn FnOnce(Option<&str>) + Send>) + Send>;

/// redb page cache size.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Most jobs one transaction carries.
const MAX_BATCH: usize = 256;

/// Handle to the metadata database.
///
/// Reads open their own read transaction. Writes go to one committer thread that runs every job
/// waiting at that moment in a single transaction and commits it with one fsync (group commit):
/// concurrent PUTs share the cost of durability. A job checks its preconditions before it
/// mutates anything, so a job that fails leaves the shared transaction as it found it.
pub struct Meta {
    db: Arc<Database>,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
}

impl Meta {
    pub fn open(path: &Path) -> Result<Self> {
        // A bounded page cache: memory stays flat however much is written.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        let tx = db.begin_write()?;
        {
            tx.open_table(BUCKETS)?;
            tx.open_table(OBJECTS)?;
            tx.open_table(UPLOADS)?;
            tx.open_table(PARTS)?;
            tx.open_table(BLOB_REFS)?;
            tx.open_table(GARBAGE)?;
            tx.open_table(INLINE)?;
            tx.open_table(PIECES)?;
            tx.open_table(TORRENTS)?;
            tx.open_table(TORRENT_SOURCES)?;
            tx.open_table(VERSIONS)?;
        }
        tx.commit()?;
        let db = Arc::new(db);
        let (send, recv) = mpsc::channel::<Job>();
        let committer_db = db.clone();
        std::thread::Builder::new()
            .name("meta-commit".into())
            .spawn(move || run_committer(&committer_db, &recv))?;
        Ok(Self {
            db,
            jobs: Mutex::new(Some(send)),
        })
    }

    /// Runs `f` in a write transaction shared with other concurrent writers; returns once the
    /// transaction is durably committed (or failed).
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = mpsc::sync_channel::<Result<T>>(1);
        let job: Job = Box::new(move |tx| {
            let result = f(tx);
            // Only storage-level failures poison the shared transaction.
            let poisons = matches!(
                result,
                Err(StoreError::Db(_) | StoreError::Io(_) | StoreError::Corrupt(_))
            );
            let finish = Box::new(move |commit_error: Option<&str>| {
                let out = match (result, commit_error) {
                    (Err(e), _) => Err(e),
                    (Ok(_), Some(msg)) => Err(StoreError::Db(msg.to_owned())),
                    (Ok(v), None) => Ok(v),
                };
                let _ = reply.send(out);
            });
            (poisons, finish as Box<dyn FnOnce(Option<&str>) + Send>)
        });
        let sender = self
            .jobs
            .lock()
            .ok()
            .and_then(|g| g.clone())
            .ok_or_else(|| StoreError::Db("the metadata committer has stopped".into()))?;
        sender
            .send(job)
            .map_err(|_| StoreError::Db("the metadata committer has stopped".into()))?;
        answer
            .recv()
            .map_err(|_| StoreError::Db("the metadata committer dropped a job".into()))?
    }

    // ---- buckets ----

    pub fn create_bucket(&self, rec: &BucketRecord) -> Result<()> {
        let rec = rec.clone();
        self.write(move |tx| {
            let rec = &rec;
            {
                let mut t = tx.open_table(BUCKETS)?;
                if let Some(existing) = t.get(rec.name.as_str())? {
                    let existing: BucketRecord = decode(existing.value())?;
                    return Err(if existing.owner == rec.owner {
                        StoreError::BucketAlreadyOwnedByYou
                    } else {
                        StoreError::BucketAlreadyExists
                    });
                }
                t.insert(rec.name.as_str(), encode(rec)?.as_slice())?;
            }
            Ok(())
        })
    }

    /// Deletes an empty bucket; in-progress uploads in it are aborted.
    pub fn delete_bucket(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write(move |tx| {
            let name = name.as_str();
            {
                let mut buckets = tx.open_table(BUCKETS)?;
                if buckets.get(name)?.is_none() {
                    return Err(StoreError::NoSuchBucket);
                }
                let objects = tx.open_table(OBJECTS)?;
                let start = object_key(name, "");
                if let Some(first) = objects.range(start.as_slice()..)?.next() {
                    let (k, _) = first?;
                    if k.value().starts_with(&start) {
                        return Err(StoreError::BucketNotEmpty);
                    }
                }
                if versions::bucket_has_versions(&tx.open_table(VERSIONS)?, name)? {
                    return Err(StoreError::BucketNotEmpty);
                }
                let mut uploads = tx.open_table(UPLOADS)?;
                let mut doomed = Vec::new();
                for entry in uploads.iter()? {
                    let (k, v) = entry?;
                    let rec: UploadRecord = decode(v.value())?;
                    if rec.bucket == name {
                        doomed.push(k.value().to_owned());
                    }
                }
                let mut parts = tx.open_table(PARTS)?;
                let mut garbage = tx.open_table(GARBAGE)?;
                for id in doomed {
                    uploads.remove(id.as_str())?;
                    let released = remove_parts(&mut parts, &id)?;
                    release(&mut garbage, &released)?;
                }
                buckets.remove(name)?;
            }
            Ok(())
        })
    }

    pub fn update_bucket(
        &self,
        name: &str,
        change: impl FnOnce(&mut BucketRecord) -> Result<()> + Send + 'static,
    ) -> Result<BucketRecord> {
        let name = name.to_owned();
        self.write(move |tx| {
            let mut t = tx.open_table(BUCKETS)?;
            let mut rec: BucketRecord = match t.get(name.as_str())? {
                Some(v) => decode(v.value())?,
                None => return Err(StoreError::NoSuchBucket),
            };
            change(&mut rec)?;
            t.insert(name.as_str(), encode(&rec)?.as_slice())?;
            Ok(rec)
        })
    }

    /// Changes one version's record in place (ACL, tags): the current object's when
    /// `current_only`, else the version with internal id `version` wherever it is. With
    /// `current_only`, a current object that is no longer `version` is a [`StoreError::Conflict`]
    /// (replaced since the caller looked: the caller looks again, as S3 applies such changes to
    /// the newest version).
    pub fn update_object(
        &self,
        bucket: &str,
        key: &str,
        version: &str,
        current_only: bool,
        change: impl FnOnce(&mut ObjectRecord) -> Result<()> + Send + 'static,
    ) -> Result<ObjectRecord> {
        let (bucket, key, version) = (bucket.to_owned(), key.to_owned(), version.to_owned());
        self.write(move |tx| {
            if tx.open_table(BUCKETS)?.get(bucket.as_str())?.is_none() {
                return Err(StoreError::NoSuchBucket);
            }
            let mut objects = tx.open_table(OBJECTS)?;
            let k = object_key(&bucket, &key);
            let current: Option<ObjectRecord> = match objects.get(k.as_slice())? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            };
            match current {
                Some(mut rec) if rec.version == version => {
                    change(&mut rec)?;
                    objects.insert(k.as_slice(), encode(&rec)?.as_slice())?;
                    Ok(rec)
                }
                Some(_) if current_only => Err(StoreError::Conflict),
                None if current_only => Err(StoreError::NoSuchKey),
                _ => {
                    drop(objects);
                    versions::update_version(tx, &bucket, &key, &version, change)?
                        .ok_or(StoreError::NoSuchVersion)
                }
            }
        })
    }

    pub fn bucket(&self, name: &str) -> Result<BucketRecord> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(BUCKETS)?;
        let v = t.get(name)?.ok_or(StoreError::NoSuchBucket)?;
        decode(v.value())
    }

    pub fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(BUCKETS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (_, v) = entry?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    /// What is stored: a scan of the metadata (no object file is read); each record is decoded
    /// only for its size.
    pub fn usage(&self) -> Result<crate::Usage> {
        #[derive(serde::Deserialize)]
        struct Sized {
            size: u64,
            #[serde(default)]
            delete_marker: bool,
        }
        let tx = self.db.begin_read()?;
        let mut usage = crate::Usage::default();
        for entry in tx.open_table(OBJECTS)?.iter()? {
            let (_, v) = entry?;
            let rec: Sized = decode(v.value())?;
            usage.objects += 1;
            usage.bytes += rec.size;
        }
        for entry in tx.open_table(VERSIONS)?.iter()? {
            let (_, v) = entry?;
            let rec: Sized = decode(v.value())?;
            if !rec.delete_marker {
                usage.noncurrent_versions += 1;
                usage.bytes += rec.size;
            }
        }
        Ok(usage)
    }

    // ---- objects ----

    pub fn object(&self, bucket: &str, key: &str) -> Result<ObjectRecord> {
        self.object_at(bucket, key, Which::Current)
    }

    /// One version of an object (see [`Which`]).
    pub fn object_at(&self, bucket: &str, key: &str, which: Which<'_>) -> Result<ObjectRecord> {
        let tx = self.db.begin_read()?;
        if tx.open_table(BUCKETS)?.get(bucket)?.is_none() {
            return Err(StoreError::NoSuchBucket);
        }
        let objects = tx.open_table(OBJECTS)?;
        let versions = tx.open_table(VERSIONS)?;
        versions::find(&objects, &versions, bucket, key, which)?.ok_or_else(|| which.missing())
    }

    /// The newest version of `bucket/key` when it is a delete marker (a GET without `versionId`
    /// then answers 404 naming the marker).
    pub fn latest_delete_marker(&self, bucket: &str, key: &str) -> Result<Option<ObjectRecord>> {
        let tx = self.db.begin_read()?;
        if tx
            .open_table(OBJECTS)?
            .get(object_key(bucket, key).as_slice())?
            .is_some()
        {
            return Ok(None);
        }
        let versions = tx.open_table(VERSIONS)?;
        Ok(versions::older_versions(&versions, bucket, key)?
            .into_iter()
            .next()
            .map(|(_, r)| r)
            .filter(|r| r.delete_marker))
    }

    /// One version's record and, for an inline object, its bytes, read in one transaction.
    pub fn object_with_inline(
        &self,
        bucket: &str,
        key: &str,
        which: Which<'_>,
    ) -> Result<(ObjectRecord, Option<bytes::Bytes>)> {
        let tx = self.db.begin_read()?;
        if tx.open_table(BUCKETS)?.get(bucket)?.is_none() {
            return Err(StoreError::NoSuchBucket);
        }
        let objects = tx.open_table(OBJECTS)?;
        let versions = tx.open_table(VERSIONS)?;
        let rec = versions::find(&objects, &versions, bucket, key, which)?
            .ok_or_else(|| which.missing())?;
        let inline = match rec.segments.first() {
            Some(seg) if seg.inline => {
                let table = tx.open_table(INLINE)?;
                let data = table.get(seg.blob.as_str())?.ok_or_else(|| {
                    StoreError::Corrupt(format!("inline blob {} is missing", seg.blob))
                })?;
                Some(bytes::Bytes::copy_from_slice(data.value()))
            }
            _ => None,
        };
        Ok((rec, inline))
    }

    /// Makes `rec` the newest version of `bucket/key` (as the bucket's versioning says: in a
    /// bucket that never had versioning, the previous object's blobs become garbage in the same
    /// transaction). Returns the record as stored (version id and order set).
    pub fn put_object(
        &self,
        bucket: &str,
        key: &str,
        rec: &ObjectRecord,
        cond: &WriteCondition,
        inline: Option<bytes::Bytes>,
        pieces: Option<Vec<u8>>,
    ) -> Result<ObjectRecord> {
        let (bucket, key, rec, cond) =
            (bucket.to_owned(), key.to_owned(), rec.clone(), cond.clone());
        self.write(move |tx| {
            let (bucket, key, mut rec, cond) = (bucket.as_str(), key.as_str(), rec, &cond);
            let versioning = bucket_versioning(tx, bucket)?;
            versions::install(tx, versioning, bucket, key, &mut rec, cond)?;
            let mut refs = tx.open_table(BLOB_REFS)?;
            for s in &rec.segments {
                refs.insert(s.blob.as_str(), ())?;
            }
            if let (Some(data), Some(seg)) = (&inline, rec.segments.first()) {
                tx.open_table(INLINE)?
                    .insert(seg.blob.as_str(), data.as_ref())?;
            }
            if let Some(p) = &pieces {
                tx.open_table(PIECES)?
                    .insert(rec.version.as_str(), p.as_slice())?;
            }
            Ok(rec)
        })
    }

    /// Deletes `bucket/key` without naming a version: removes the object in a bucket that never
    /// had versioning, else adds a delete marker made by `requester` (see [`Deleted`]).
    pub fn delete_object(&self, bucket: &str, key: &str, requester: &str) -> Result<Deleted> {
        let (bucket, key, requester) = (bucket.to_owned(), key.to_owned(), requester.to_owned());
        self.write(move |tx| {
            let (bucket, key) = (bucket.as_str(), key.as_str());
            let Some(versioning) = bucket_versioning(tx, bucket)? else {
                let removed: Option<ObjectRecord> = match tx
                    .open_table(OBJECTS)?
                    .remove(object_key(bucket, key).as_slice())?
                {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
                let existed = removed.is_some();
                versions::forget_versions(tx, removed.into_iter().collect())?;
                return Ok(Deleted {
                    existed,
                    ..Deleted::default()
                });
            };
            let mut marker = ObjectRecord::delete_marker(&requester, crate::now_ns());
            versions::install(
                tx,
                Some(versioning),
                bucket,
                key,
                &mut marker,
                &WriteCondition::default(),
            )?;
            Ok(Deleted {
                existed: true,
                delete_marker: true,
                version_id: Some(marker.version_id().to_owned()),
            })
        })
    }

    /// Removes one version for good (DELETE with `versionId`). Deleting a version that does not
    /// exist succeeds, as in S3.
    pub fn delete_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<Deleted> {
        let (bucket, key, version_id) = (bucket.to_owned(), key.to_owned(), version_id.to_owned());
        self.write(move |tx| {
            if tx.open_table(BUCKETS)?.get(bucket.as_str())?.is_none() {
                return Err(StoreError::NoSuchBucket);
            }
            let removed = versions::remove_version(tx, &bucket, &key, &version_id)?;
            Ok(Deleted {
                existed: removed.is_some(),
                delete_marker: removed.is_some_and(|r| r.delete_marker),
                version_id: Some(version_id),
            })
        })
    }

    pub fn list_objects(&self, bucket: &str, q: &ListQuery) -> Result<ListPage> {
        let tx = self.db.begin_read()?;
        if tx.open_table(BUCKETS)?.get(bucket)?.is_none() {
            return Err(StoreError::NoSuchBucket);
        }
        let t = tx.open_table(OBJECTS)?;
        let base = object_key(bucket, "");
        let full_prefix = object_key(bucket, &q.prefix);
        let delimiter = q.delimiter.as_deref().filter(|d| !d.is_empty());
        let mut page = ListPage::default();
        if q.max_keys == 0 {
            return Ok(page);
        }
        // Cursor: the first key to consider, and whether it is itself excluded.
        let mut cursor = full_prefix.clone();
        let mut exclusive: Option<Vec<u8>> = None;
        if let Some(after) = &q.after {
            let a = object_key(bucket, after);
            if a >= cursor {
                cursor = a.clone();
                exclusive = Some(a);
            }
        }
        let mut count = 0usize;
        'outer: loop {
            let mut reseek: Option<Vec<u8>> = None;
            for entry in t.range(cursor.as_slice()..)? {
                let (k, v) = entry?;
                let kb = k.value();
                if !kb.starts_with(&full_prefix) {
                    break 'outer;
                }
                if exclusive.as_deref() == Some(kb) {
                    continue;
                }
                let key = std::str::from_utf8(&kb[base.len()..])
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let after_prefix = &key[q.prefix.len()..];
                let common = delimiter.and_then(|d| {
                    after_prefix
                        .find(d)
                        .map(|pos| &key[..q.prefix.len() + pos + d.len()])
                });
                // A continuation inside a common prefix must not repeat that prefix.
                if let (Some(cp), Some(after)) = (common, &q.after)
                    && after.as_str() >= cp
                    && after.starts_with(cp)
                {
                    reseek = prefix_successor(&object_key(bucket, cp));
                    if reseek.is_none() {
                        break 'outer;
                    }
                    break;
                }
                if count == q.max_keys {
                    page.is_truncated = true;
                    break 'outer;
                }
                count += 1;
                if let Some(cp) = common {
                    page.common_prefixes.push(cp.to_owned());
                    page.last = Some(cp.to_owned());
                    reseek = prefix_successor(&object_key(bucket, cp));
                    if reseek.is_none() {
                        break 'outer;
                    }
                    break;
                }
                page.objects.push((key.to_owned(), decode(v.value())?));
                page.last = Some(key.to_owned());
            }
            match reseek {
                Some(next) => {
                    cursor = next;
                    exclusive = None;
                }
                None => break,
            }
        }
        Ok(page)
    }

    pub fn list_versions(&self, bucket: &str, q: &VersionListQuery) -> Result<VersionPage> {
        let tx = self.db.begin_read()?;
        if tx.open_table(BUCKETS)?.get(bucket)?.is_none() {
            return Err(StoreError::NoSuchBucket);
        }
        let objects = tx.open_table(OBJECTS)?;
        let versions = tx.open_table(VERSIONS)?;
        versions::list(&objects, &versions, bucket, q)
    }

    // ---- multipart ----

    pub fn create_upload(&self, rec: &UploadRecord) -> Result<()> {
        let rec = rec.clone();
        self.write(move |tx| {
            let rec = &rec;
            {
                if tx.open_table(BUCKETS)?.get(rec.bucket.as_str())?.is_none() {
                    return Err(StoreError::NoSuchBucket);
                }
                tx.open_table(UPLOADS)?
                    .insert(rec.upload_id.as_str(), encode(rec)?.as_slice())?;
            }
            Ok(())
        })
    }

    pub fn upload(&self, upload_id: &str) -> Result<UploadRecord> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(UPLOADS)?;
        let v = t.get(upload_id)?.ok_or(StoreError::NoSuchUpload)?;
        decode(v.value())
    }

    /// Records a part, replacing (and releasing) an earlier upload of the same number.
    pub fn put_part(&self, upload_id: &str, part: &PartRecord) -> Result<()> {
        let (upload_id, part) = (upload_id.to_owned(), part.clone());
        self.write(move |tx| {
            let (upload_id, part) = (upload_id.as_str(), &part);
            {
                if tx.open_table(UPLOADS)?.get(upload_id)?.is_none() {
                    return Err(StoreError::NoSuchUpload);
                }
                let mut parts = tx.open_table(PARTS)?;
                let k = part_key(upload_id, part.part_number);
                let previous: Option<PartRecord> = match parts.get(k.as_str())? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
                parts.insert(k.as_str(), encode(part)?.as_slice())?;
                tx.open_table(BLOB_REFS)?.insert(part.blob.as_str(), ())?;
                if let Some(prev) = previous {
                    release(&mut tx.open_table(GARBAGE)?, &[prev.blob])?;
                }
            }
            Ok(())
        })
    }

    pub fn list_parts(&self, upload_id: &str) -> Result<Vec<PartRecord>> {
        let tx = self.db.begin_read()?;
        if tx.open_table(UPLOADS)?.get(upload_id)?.is_none() {
            return Err(StoreError::NoSuchUpload);
        }
        let parts = tx.open_table(PARTS)?;
        read_parts(&parts, upload_id)
    }

    pub fn list_uploads(&self, bucket: &str) -> Result<Vec<UploadRecord>> {
        let tx = self.db.begin_read()?;
        if tx.open_table(BUCKETS)?.get(bucket)?.is_none() {
            return Err(StoreError::NoSuchBucket);
        }
        let t = tx.open_table(UPLOADS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (_, v) = entry?;
            let rec: UploadRecord = decode(v.value())?;
            if rec.bucket == bucket {
                out.push(rec);
            }
        }
        out.sort_by(|a, b| {
            (a.key.as_str(), a.initiated_ns, a.upload_id.as_str()).cmp(&(
                b.key.as_str(),
                b.initiated_ns,
                b.upload_id.as_str(),
            ))
        });
        Ok(out)
    }

    pub fn abort_upload(&self, upload_id: &str) -> Result<()> {
        let upload_id = upload_id.to_owned();
        self.write(move |tx| {
            let upload_id = upload_id.as_str();
            {
                if tx.open_table(UPLOADS)?.remove(upload_id)?.is_none() {
                    return Err(StoreError::NoSuchUpload);
                }
                let released = remove_parts(&mut tx.open_table(PARTS)?, upload_id)?;
                release(&mut tx.open_table(GARBAGE)?, &released)?;
            }
            Ok(())
        })
    }

    /// Completes an upload: `build` receives the upload and its stored parts and returns the
    /// object record (validation happens there); the record is committed, the upload removed,
    /// parts it does not use released, all in one transaction.
    pub fn complete_upload(
        &self,
        upload_id: &str,
        cond: &WriteCondition,
        build: impl FnOnce(&UploadRecord, &[PartRecord]) -> Result<ObjectRecord> + Send + 'static,
    ) -> Result<ObjectRecord> {
        let (upload_id, cond) = (upload_id.to_owned(), cond.clone());
        self.write(move |tx| {
            let (upload_id, cond) = (upload_id.as_str(), &cond);
            let upload: UploadRecord = match tx.open_table(UPLOADS)?.get(upload_id)? {
                Some(v) => decode(v.value())?,
                None => return Err(StoreError::NoSuchUpload),
            };
            let versioning = bucket_versioning(tx, &upload.bucket)?;
            let stored = read_parts(&tx.open_table(PARTS)?, upload_id)?;
            let mut rec = build(&upload, &stored)?;
            // Checks the condition before it changes anything.
            versions::install(tx, versioning, &upload.bucket, &upload.key, &mut rec, cond)?;
            tx.open_table(UPLOADS)?.remove(upload_id)?;
            let all_parts = remove_parts(&mut tx.open_table(PARTS)?, upload_id)?;
            let used: std::collections::HashSet<&str> =
                rec.segments.iter().map(|s| s.blob.as_str()).collect();
            let released: Vec<String> = all_parts
                .into_iter()
                .filter(|b| !used.contains(b.as_str()))
                .collect();
            release(&mut tx.open_table(GARBAGE)?, &released)?;
            Ok(rec)
        })
    }

    // ---- torrents ----

    /// The stored piece hashes of an object version.
    pub fn pieces(&self, version: &str) -> Result<Option<StoredPieces>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(PIECES)?;
        let out = match t.get(version)? {
            Some(v) => Some(StoredPieces::decode(v.value())?),
            None => None,
        };
        Ok(out)
    }

    /// Keeps lazily made piece hashes, if `bucket/key` still has that version.
    pub fn put_pieces(
        &self,
        bucket: &str,
        key: &str,
        version: &str,
        pieces: &StoredPieces,
    ) -> Result<bool> {
        let (bucket, key, version, bytes) = (
            bucket.to_owned(),
            key.to_owned(),
            version.to_owned(),
            pieces.encode(),
        );
        self.write(move |tx| {
            let found = versions::find(
                &tx.open_table(OBJECTS)?,
                &tx.open_table(VERSIONS)?,
                &bucket,
                &key,
                Which::Exact(&version),
            )?;
            if found.is_none() {
                return Ok(false);
            }
            tx.open_table(PIECES)?
                .insert(version.as_str(), bytes.as_slice())?;
            Ok(true)
        })
    }

    /// Records an issued torrent under each of its info-hashes (hex), as the source of those
    /// info-hashes for its object (replacing that object's earlier record, if any).
    pub fn issue_torrent(&self, hashes: &[String], rec: &IssuedTorrent) -> Result<()> {
        let id = rec.object_id();
        let keys: Vec<String> = hashes.iter().map(|h| format!("{h}/{id}")).collect();
        let value = serde_json::to_vec(rec)?;
        let read = self.db.begin_read()?;
        let t = read.open_table(TORRENT_SOURCES)?;
        let mut unchanged = true;
        for k in &keys {
            unchanged &= t
                .get(k.as_str())?
                .is_some_and(|v| v.value() == value.as_slice());
        }
        if unchanged {
            return Ok(());
        }
        self.write(move |tx| {
            let mut t = tx.open_table(TORRENT_SOURCES)?;
            for k in &keys {
                t.insert(k.as_str(), value.as_slice())?;
            }
            Ok(())
        })
    }

    /// Every object recorded under this info-hash (hex, lower case), with a record of the
    /// format of before if there is one.
    pub fn torrent_sources(&self, info_hash: &str) -> Result<TorrentSources> {
        let tx = self.db.begin_read()?;
        let mut records = Vec::new();
        let t = tx.open_table(TORRENT_SOURCES)?;
        // `0` follows `/`: the range holds exactly the keys `{info_hash}/…`.
        let (from, to) = (format!("{info_hash}/"), format!("{info_hash}0"));
        for entry in t.range(from.as_str()..to.as_str())? {
            records.push(decode(entry?.1.value())?);
        }
        let t = tx.open_table(TORRENTS)?;
        let legacy = match t.get(info_hash)? {
            Some(v) => Some(decode(v.value())?),
            None => None,
        };
        Ok(TorrentSources::new(records, legacy))
    }

    /// Every info-hash (hex) with a recorded source, in order, each once.
    pub fn issued_info_hashes(&self) -> Result<Vec<String>> {
        let tx = self.db.begin_read()?;
        let mut out: Vec<String> = Vec::new();
        let t = tx.open_table(TORRENT_SOURCES)?;
        for entry in t.iter()? {
            let key = entry?.0;
            let hash = key.value().split('/').next().unwrap_or_default();
            if out.last().map(String::as_str) != Some(hash) {
                out.push(hash.to_owned());
            }
        }
        let t = tx.open_table(TORRENTS)?;
        for entry in t.iter()? {
            out.push(entry?.0.value().to_owned());
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    // ---- blob bookkeeping ----

    pub fn garbage(&self) -> Result<Vec<String>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(GARBAGE)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            out.push(entry?.0.value().to_owned());
        }
        Ok(out)
    }

    /// Forgets blobs whose files are gone.
    pub fn forget_blobs(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        self.write(move |tx| {
            {
                let mut garbage = tx.open_table(GARBAGE)?;
                let mut refs = tx.open_table(BLOB_REFS)?;
                for id in ids {
                    garbage.remove(id.as_str())?;
                    refs.remove(id.as_str())?;
                }
            }
            Ok(())
        })
    }

    /// Of `ids`, those that no record has ever named (or that were forgotten): orphans.
    pub fn unreferenced(&self, ids: Vec<String>) -> Result<Vec<String>> {
        let tx = self.db.begin_read()?;
        let refs = tx.open_table(BLOB_REFS)?;
        let mut out = Vec::new();
        for id in ids {
            if refs.get(id.as_str())?.is_none() {
                out.push(id);
            }
        }
        Ok(out)
    }
}

fn run_committer(db: &Database, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let tx = match db.begin_write() {
            Ok(tx) => tx,
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, "cannot begin a metadata transaction");
                // Each job reports the failure without running.
                drop(batch);
                continue;
            }
        };
        let mut finishers = Vec::with_capacity(batch.len());
        let mut poisoned = false;
        for job in batch {
            let (poisons, finish) = job(&tx);
            poisoned |= poisons;
            finishers.push(finish);
        }
        let outcome = if poisoned {
            let _ = tx.abort();
            Some("a storage error aborted the metadata transaction".to_owned())
        } else {
            tx.commit().err().map(|e| e.to_string())
        };
        if let Some(msg) = &outcome {
            tracing::error!(error = %msg, "metadata transaction failed");
        }
        for finish in finishers {
            finish(outcome.as_deref());
        }
    }
}

fn check_condition(current: Option<&ObjectRecord>, cond: &WriteCondition) -> Result<()> {
    if cond.if_none_match_any && current.is_some() {
        return Err(StoreError::PreconditionFailed);
    }
    if let Some(want) = &cond.if_match {
        match current {
            None => return Err(StoreError::NoSuchKey),
            Some(cur) if want != "*" && *want != cur.etag => {
                return Err(StoreError::PreconditionFailed);
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn read_parts(
    parts: &impl ReadableTable<&'static str, &'static [u8]>,
    upload_id: &str,
) -> Result<Vec<PartRecord>> {
    let start = format!("{upload_id}/");
    let mut out = Vec::new();
    for entry in parts.range(start.as_str()..)? {
        let (k, v) = entry?;
        if !k.value().starts_with(&start) {
            break;
        }
        out.push(decode(v.value())?);
    }
    Ok(out)
}

/// Removes every part of an upload, returning their blob ids.
fn remove_parts(
    parts: &mut Table<'_, &'static str, &'static [u8]>,
    upload_id: &str,
) -> Result<Vec<String>> {
    let stored = read_parts(parts, upload_id)?;
    let mut blobs = Vec::with_capacity(stored.len());
    for p in stored {
        parts.remove(part_key(upload_id, p.part_number).as_str())?;
        blobs.push(p.blob);
    }
    Ok(blobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor() {
        assert_eq!(prefix_successor(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_successor(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(&[0xff]), None);
    }

    fn issued(bucket: &str, version: &str) -> IssuedTorrent {
        IssuedTorrent {
            bucket: bucket.into(),
            key: "m/weights.bin".into(),
            version: version.into(),
            name: "weights.bin".into(),
            format: "v1".into(),
            private: false,
            info_hash: "ab".repeat(20),
            created_ns: 1,
        }
    }

    #[test]
    fn every_object_of_an_info_hash_is_kept_and_old_records_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(&dir.path().join("meta.redb")).unwrap();
        let ih = "ab".repeat(20);
        // A record of the format of before: the first object that issued the info-hash.
        let tx = meta.db.begin_write().unwrap();
        tx.open_table(TORRENTS)
            .unwrap()
            .insert(
                ih.as_str(),
                encode(&issued("first", "v1")).unwrap().as_slice(),
            )
            .unwrap();
        tx.commit().unwrap();
        let got = meta.torrent_sources(&ih).unwrap();
        assert_eq!(got.records, vec![issued("first", "v1")]);
        meta.issue_torrent(std::slice::from_ref(&ih), &issued("second", "x"))
            .unwrap();
        meta.issue_torrent(std::slice::from_ref(&ih), &issued("first", "v2"))
            .unwrap();
        let got = meta.torrent_sources(&ih).unwrap();
        assert_eq!(got.records.len(), 2);
        assert_eq!(got.of_object(None), Some(&issued("first", "v2")));
        let second = crate::pieces::object_id("second", "m/weights.bin");
        assert_eq!(got.of_object(Some(&second)), Some(&issued("second", "x")));
        assert!(meta.torrent_sources(&"cd".repeat(20)).unwrap().is_empty());
    }
}
