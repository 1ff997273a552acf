//! seedbucket's object store: the one place that touches object bytes and metadata.
//!
//! [`Store`] is what the S3 handlers, the webseed and the seeder call. It has two backends, and
//! none of its callers knows which one it talks to:
//! - embedded (the default, [`embedded`]): blob files under the data dir and a redb database;
//! - gateway ([`gateway`]): an existing S3 cluster holds the bytes, a metadata bucket in it the
//!   rest, so that several stateless nodes can serve one cluster.
//!
//! Data path of a PUT: [`Store::stage`] receives the body while hashing it ([`ingest`]) into a
//! fsynced temporary file (embedded) or straight to the backend with its last buffer held back
//! (gateway); the caller checks the digests (Content-MD5, trailing checksums);
//! [`Store::commit_object`] makes it visible. Until that commit nothing is.
//!
//! A GET opens an [`ObjectReader`], which streams any byte range of one object version.

mod background;
pub mod blob;
mod body_file;
pub mod bucket_owners;
pub mod cluster;
pub mod credentials;
pub mod digest;
mod embedded;
mod encrypted;
pub mod error;
mod gateway;
pub mod ingest;
pub mod meta;
pub mod pieces;
mod pins;
mod reader;
mod recent_heads;
pub use recent_heads::RECENT as RECENT_HEADS_REUSED_FOR;
pub mod records;
pub mod server_keys;
pub mod sse;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::Stream;

pub use crate::blob::BlobDir;
pub use crate::digest::{BodyHasher, ChecksumSelection, Digests};
pub use crate::encrypted::verify_key;
pub use crate::error::{Result, StoreError};
pub use crate::gateway::{GatewayOptions, StageTarget};
pub use crate::ingest::Staged;
pub use crate::meta::{
    Deleted, ListPage, ListQuery, ListedVersion, VersionListQuery, VersionPage, Which,
    WriteCondition,
};
pub use crate::reader::ObjectReader;
pub use crate::records::*;

/// How [`Store::stage_encrypted`] encrypts.
#[derive(Debug, Clone, Copy)]
pub enum AtRest<'a> {
    /// SSE-C: with the customer's key.
    Customer(&'a sse::CustomerKey),
    /// SSE-S3: with the server's master key.
    Server,
}

use crate::credentials::AccessKey;
use crate::embedded::Embedded;
use crate::gateway::Gateway;

/// Largest object a single PUT or part may carry: 5 GiB, as in S3.
pub const MAX_PUT_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Smallest size of every part but the last: 5 MiB, as in S3.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Highest part number.
pub const MAX_PART_NUMBER: u32 = 10_000;
/// Objects up to this size are kept inside the metadata database: one group-committed
/// transaction makes them durable, with no file to create and fsync.
pub const INLINE_MAX: usize = 64 * 1024;

/// What the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Objects (current versions; delete markers not counted).
    pub objects: u64,
    /// Noncurrent versions (delete markers not counted).
    pub noncurrent_versions: u64,
    /// Bytes of every stored version's content.
    pub bytes: u64,
}

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

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A gateway object (every one is its key's `null` version) if it is the version `which` names.
fn gateway_version(rec: Result<ObjectRecord>, which: Which<'_>) -> Result<ObjectRecord> {
    match which {
        Which::Current => rec,
        Which::VersionId(id) if id == NULL_VERSION_ID => rec.map_err(|e| match e {
            StoreError::NoSuchKey => StoreError::NoSuchVersion,
            e => e,
        }),
        Which::VersionId(_) => rec.and(Err(StoreError::NoSuchVersion)),
        Which::Exact(v) => match rec {
            Ok(r) if r.version == v => Ok(r),
            Ok(_) => Err(StoreError::NoSuchKey),
            Err(e) => Err(e),
        },
    }
}

/// Completed multipart objects hashed at once, at most.
const BACKGROUND_HASH_JOBS: usize = 2;

type HashJob = Arc<tokio::sync::OnceCell<std::result::Result<pieces::StoredPieces, String>>>;

/// Piece hashing made after the fact (objects hashed on their first `?torrent`, completed
/// multipart uploads), the same for both backends.
struct Hashing {
    /// Jobs in progress, by object version: concurrent callers wait on one job.
    jobs: Mutex<HashMap<String, HashJob>>,
    /// Bounds the hashing of completed multipart objects that runs in the background.
    background: tokio::sync::Semaphore,
    enabled: bool,
}

/// Every `Store` method awaits the gateway's future boxed (`Box::pin(g.call(..)).await`): those
/// futures hold the S3 client's and run to about 16 KiB, and a future is as large as the
/// largest one it may await, so unboxed they made every caller that large, embedded mode
/// included (a UDP announce's future was 22 KiB, allocated and copied per datagram; 2.6 KiB
/// boxed). One allocation per backend request is nothing beside its round trip.
#[derive(Clone)]
enum Backend {
    Embedded(Embedded),
    Gateway(Arc<Gateway>),
}

/// The object store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    hashing: Arc<Hashing>,
    /// Leases shared with other gateway nodes (Redis), once set.
    leases: Arc<OnceLock<Arc<dyn cluster::Leases>>>,
    /// Metadata records written here, or by other nodes as their notices say.
    changes: tokio::sync::broadcast::Sender<cluster::MetaChange>,
    /// Object records read within the last second ([`Store::head_object_recent`]).
    recent_heads: Arc<recent_heads::RecentHeads>,
}

/// Changes a slow listener may lag behind before it is told it missed some.
const CHANGES_BUFFERED: usize = 1024;

impl Store {
    fn with(
        backend: Backend,
        hash_pieces: bool,
        changes: tokio::sync::broadcast::Sender<cluster::MetaChange>,
    ) -> Self {
        Self {
            backend,
            hashing: Arc::new(Hashing {
                jobs: Mutex::default(),
                background: tokio::sync::Semaphore::new(BACKGROUND_HASH_JOBS),
                enabled: hash_pieces,
            }),
            leases: Arc::default(),
            changes,
            recent_heads: Arc::default(),
        }
    }

    /// Shares hashing leases with other nodes from now on (set once; later calls are ignored).
    pub fn set_leases(&self, leases: Arc<dyn cluster::Leases>) {
        let _ = self.leases.set(leases);
    }

    /// Every metadata record written from now on: by this node, and by others once
    /// [`Store::apply_remote_change`] reports their notices. Embedded mode sends none.
    pub fn subscribe_changes(&self) -> tokio::sync::broadcast::Receiver<cluster::MetaChange> {
        self.changes.subscribe()
    }

    /// Another node changed the metadata record `key` (empty: anything may have changed):
    /// drops what this node cached of it, then tells this node's listeners.
    pub fn apply_remote_change(&self, key: &str) {
        if let Backend::Gateway(g) = &self.backend {
            g.forget_cached(key);
        }
        let _ = self.changes.send(cluster::MetaChange {
            key: key.to_owned(),
            remote: true,
        });
    }

    /// Opens (or creates) the embedded store under `opts.data_dir`, removes leftovers of
    /// interrupted writes, and starts the garbage collector and the orphan sweep.
    pub async fn open(opts: StoreOptions) -> Result<Self> {
        let hash = opts.hash_pieces;
        let (changes, _) = tokio::sync::broadcast::channel(CHANGES_BUFFERED);
        Ok(Self::with(
            Backend::Embedded(Embedded::open(opts).await?),
            hash,
            changes,
        ))
    }

    /// Connects to an S3 backend (gateway mode) and makes sure its metadata bucket exists.
    pub async fn open_gateway(opts: GatewayOptions) -> Result<Self> {
        let hash = opts.hash_pieces;
        let (changes, _) = tokio::sync::broadcast::channel(CHANGES_BUFFERED);
        Ok(Self::with(
            Backend::Gateway(Gateway::connect(opts, changes.clone()).await?),
            hash,
            changes,
        ))
    }

    /// Whether the bytes live in an S3 backend.
    pub fn is_gateway(&self) -> bool {
        matches!(self.backend, Backend::Gateway(_))
    }

    // ---- gateway mode: keys and the shared secret live in the metadata bucket ----

    /// Gateway mode: the access keys in the metadata bucket (`None` in embedded mode, where
    /// they are in the data dir's `keys.json`).
    pub async fn shared_keys(&self) -> Result<Option<Vec<AccessKey>>> {
        match &self.backend {
            Backend::Embedded(_) => Ok(None),
            Backend::Gateway(g) => Box::pin(g.load_keys()).await.map(Some),
        }
    }

    /// Gateway mode: replaces the access keys in the metadata bucket.
    pub async fn save_shared_keys(&self, keys: &[AccessKey]) -> Result<()> {
        match &self.backend {
            Backend::Embedded(_) => Err(StoreError::NotSupported(
                "embedded mode keeps its keys in the data dir".into(),
            )),
            Backend::Gateway(g) => Box::pin(g.save_keys(keys)).await,
        }
    }

    /// Gateway mode: the token secret every node shares (`None` in embedded mode).
    pub async fn shared_secret(&self) -> Result<Option<Vec<u8>>> {
        match &self.backend {
            Backend::Embedded(_) => Ok(None),
            Backend::Gateway(g) => Box::pin(g.server_secret()).await.map(Some),
        }
    }

    /// Gateway mode: who owns backend buckets that seedbucket has no record of (the root key).
    pub fn set_default_owner(&self, user_id: &str) {
        if let Backend::Gateway(g) = &self.backend {
            g.set_default_owner(user_id);
        }
    }

    // ---- buckets ----

    pub async fn create_bucket(&self, name: &str, owner: &str, acl: Vec<Grant>) -> Result<()> {
        match &self.backend {
            Backend::Embedded(e) => e.create_bucket(name, owner, acl).await,
            Backend::Gateway(g) => {
                Box::pin(g.create_bucket(BucketRecord {
                    name: name.to_owned(),
                    owner: owner.to_owned(),
                    created_ns: now_ns(),
                    acl,
                    policy: None,
                    cors: Vec::new(),
                    default_sse_s3: false,
                    versioning: None,
                    lifecycle: Vec::new(),
                }))
                .await
            }
        }
    }

    pub async fn delete_bucket(&self, name: &str) -> Result<()> {
        match &self.backend {
            Backend::Embedded(e) => e.delete_bucket(name).await,
            Backend::Gateway(g) => Box::pin(g.delete_bucket(name)).await,
        }
    }

    pub async fn bucket(&self, name: &str) -> Result<BucketRecord> {
        match &self.backend {
            Backend::Embedded(e) => e.bucket(name).await,
            Backend::Gateway(g) => Box::pin(g.bucket(name)).await,
        }
    }

    /// Changes a bucket's record (ACL, policy, CORS); returns the new record.
    pub async fn update_bucket(
        &self,
        name: &str,
        change: impl FnOnce(&mut BucketRecord) -> Result<()> + Send + 'static,
    ) -> Result<BucketRecord> {
        match &self.backend {
            Backend::Embedded(e) => e.update_bucket(name, change).await,
            Backend::Gateway(g) => Box::pin(g.update_bucket(name, change)).await,
        }
    }

    /// Changes one version's record in place (ACL, tags); the bytes and the version id stay the
    /// same. With `current_only`, only if the current object is still `version` (else
    /// [`StoreError::Conflict`]); otherwise the version `version` wherever it is. Returns the
    /// new record.
    pub async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        version: &str,
        current_only: bool,
        change: impl FnOnce(&mut ObjectRecord) -> Result<()> + Send + 'static,
    ) -> Result<ObjectRecord> {
        let updated = match &self.backend {
            Backend::Embedded(e) => {
                e.update_object(bucket, key, version, current_only, change)
                    .await
            }
            Backend::Gateway(g) => Box::pin(g.update_object(bucket, key, version, change)).await,
        };
        self.recent_heads.wrote();
        updated
    }

    pub async fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        match &self.backend {
            Backend::Embedded(e) => e.list_buckets().await,
            Backend::Gateway(g) => Box::pin(g.list_buckets()).await,
        }
    }

    /// Objects and bytes stored (a scan of the metadata). `None` in gateway mode: the cluster
    /// knows, and counting would mean listing all of it.
    pub async fn usage(&self) -> Result<Option<Usage>> {
        match &self.backend {
            Backend::Embedded(e) => e.usage().await.map(Some),
            Backend::Gateway(_) => Ok(None),
        }
    }

    // ---- objects ----

    /// Receives a body for `target` (an object, or a part), computing MD5, the selected
    /// checksums and (for objects of declared size) the torrent piece hashes. Nothing is
    /// visible until [`Store::commit_object`] / [`Store::commit_part`].
    pub async fn stage<S, E>(
        &self,
        target: StageTarget<'_>,
        body: S,
        expected_size: Option<u64>,
        checksums: ChecksumSelection,
    ) -> Result<Staged>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        match &self.backend {
            Backend::Embedded(e) => match target {
                StageTarget::Object { .. } => {
                    e.stage(body, expected_size, checksums.with_md5()).await
                }
                StageTarget::Part { .. } => {
                    e.stage_part(body, expected_size, checksums.with_md5())
                        .await
                }
            },
            Backend::Gateway(g) => Box::pin(g.stage(target, body, expected_size, checksums)).await,
        }
    }

    /// Like [`Store::stage`], encrypting at rest: with the customer's key (SSE-C, embedded mode
    /// only) or with the server's current master key (SSE-S3; gateway mode stages as is and the
    /// backend encrypts, asked by the object's or the upload's `sse_s3` attribute). Returns the
    /// staged body and the digests of the plaintext.
    pub async fn stage_encrypted<S, E>(
        &self,
        target: StageTarget<'_>,
        body: S,
        expected_plain_size: Option<u64>,
        checksums: ChecksumSelection,
        with: AtRest<'_>,
    ) -> Result<(Staged, Digests)>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let part = matches!(target, StageTarget::Part { .. });
        match (&self.backend, with) {
            (Backend::Embedded(e), AtRest::Customer(key)) => {
                e.stage_encrypted(body, expected_plain_size, checksums.with_md5(), key, part)
                    .await
            }
            (Backend::Embedded(e), AtRest::Server) => {
                let (id, key) = e.inner.server_keys.current();
                let (id, key) = (id.to_owned(), key.clone());
                let (mut staged, digests) = e
                    .stage_encrypted(body, expected_plain_size, checksums.with_md5(), &key, part)
                    .await?;
                if let Some(params) = staged.sse.as_mut() {
                    params.server_key = Some(id);
                }
                Ok((staged, digests))
            }
            (Backend::Gateway(_), AtRest::Customer(_)) => Err(StoreError::NotSupported(
                "SSE-C is not available in gateway mode".into(),
            )),
            (Backend::Gateway(_), AtRest::Server) => {
                let staged = self
                    .stage(target, body, expected_plain_size, checksums)
                    .await?;
                let digests = staged.digests.clone();
                Ok((staged, digests))
            }
        }
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
        let committed = match &self.backend {
            Backend::Embedded(e) => {
                e.commit_object(staged, bucket, key, attributes, checksums, cond)
                    .await
            }
            Backend::Gateway(g) => {
                Box::pin(g.commit_object(staged, bucket, key, attributes, checksums, cond)).await
            }
        };
        self.recent_heads.wrote();
        committed
    }

    /// Copies `source` to `bucket/key` inside the backend, without the bytes passing through
    /// this node (gateway mode; the copy gets the source's piece hashes, same bytes). `None`
    /// when the backend cannot: the caller then streams the copy through [`Store::stage`].
    pub async fn copy_in_backend(
        &self,
        source: &ObjectReader,
        bucket: &str,
        key: &str,
        attributes: ObjectAttributes,
        checksums: Checksums,
    ) -> Result<Option<ObjectRecord>> {
        let copied = match &self.backend {
            Backend::Embedded(_) => Ok(None),
            Backend::Gateway(g) => {
                Box::pin(g.copy_object(source, bucket, key, attributes, checksums)).await
            }
        };
        self.recent_heads.wrote();
        copied
    }

    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectRecord> {
        match &self.backend {
            Backend::Embedded(e) => e.head_object_at(bucket, key, Which::Current).await,
            Backend::Gateway(g) => Box::pin(g.head_object(bucket, key)).await,
        }
    }

    /// One version of an object (see [`Which`]); a version id may name a delete marker. In
    /// gateway mode every object is its key's `null` version.
    pub async fn head_object_at(
        &self,
        bucket: &str,
        key: &str,
        which: Which<'_>,
    ) -> Result<ObjectRecord> {
        match &self.backend {
            Backend::Embedded(e) => e.head_object_at(bucket, key, which).await,
            // An issued torrent's version is looked up on every announce: a record read within
            // the last second will do, as for the current version.
            Backend::Gateway(_) if matches!(which, Which::Exact(_)) => {
                let rec = Box::pin(self.head_object_recent(bucket, key)).await;
                gateway_version(rec.map(Arc::unwrap_or_clone), which)
            }
            Backend::Gateway(_) => {
                let rec = self.head_object(bucket, key).await;
                gateway_version(rec, which)
            }
        }
    }

    /// The newest version of `bucket/key` when it is a delete marker (never in gateway mode).
    pub async fn latest_delete_marker(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectRecord>> {
        match &self.backend {
            Backend::Embedded(e) => e.latest_delete_marker(bucket, key).await,
            Backend::Gateway(_) => Ok(None),
        }
    }

    /// Object writes through this node so far: an answer worked out from
    /// [`Store::head_object_recent`] records still holds while this has not moved (and for as
    /// long as those records are reused).
    pub fn object_writes(&self) -> u64 {
        self.recent_heads.generation()
    }

    /// [`Store::head_object`], or the same answer if it was read less than 1 s ago and no
    /// object was written through this node since: for checks made on every request that can
    /// accept that staleness (the tracker's). In embedded mode every write goes through this
    /// node, so the answer is never stale there; it only spares a database read per announce.
    /// Shared: the same record may answer many announces.
    pub async fn head_object_recent(&self, bucket: &str, key: &str) -> Result<Arc<ObjectRecord>> {
        if let Some(rec) = self.recent_heads.get(bucket, key) {
            return Ok(rec);
        }
        let generation = self.recent_heads.generation();
        let rec = Arc::new(self.head_object(bucket, key).await?);
        self.recent_heads
            .put(generation, bucket, key, Arc::clone(&rec));
        Ok(rec)
    }

    /// Opens the current version of `bucket/key` for reading.
    pub async fn open_object(&self, bucket: &str, key: &str) -> Result<ObjectReader> {
        self.open_object_at(bucket, key, Which::Current).await
    }

    /// Opens one version of `bucket/key` for reading (a delete marker opens with no bytes).
    pub async fn open_object_at(
        &self,
        bucket: &str,
        key: &str,
        which: Which<'_>,
    ) -> Result<ObjectReader> {
        match &self.backend {
            Backend::Embedded(e) => e.open_object_at(bucket, key, which).await,
            Backend::Gateway(g) => {
                let reader = Box::pin(g.open_object(bucket, key)).await?;
                gateway_version(Ok(reader.record.clone()), which)?;
                Ok(reader)
            }
        }
    }

    /// Deletes `bucket/key` without naming a version: the object goes, or, in a versioned
    /// bucket, a delete marker made by `requester` becomes its newest version.
    pub async fn delete_object(&self, bucket: &str, key: &str, requester: &str) -> Result<Deleted> {
        let deleted = match &self.backend {
            Backend::Embedded(e) => e.delete_object(bucket, key, requester).await,
            Backend::Gateway(g) => {
                Box::pin(g.delete_object(bucket, key))
                    .await
                    .map(|existed| Deleted {
                        existed,
                        ..Deleted::default()
                    })
            }
        };
        self.recent_heads.wrote();
        deleted
    }

    /// Removes one version for good; a version that does not exist is no error (as in S3).
    pub async fn delete_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<Deleted> {
        let deleted = match &self.backend {
            Backend::Embedded(e) => e.delete_version(bucket, key, version_id).await,
            Backend::Gateway(g) if version_id == NULL_VERSION_ID => {
                g.delete_object(bucket, key).await.map(|existed| Deleted {
                    existed,
                    delete_marker: false,
                    version_id: Some(version_id.to_owned()),
                })
            }
            Backend::Gateway(_) => Ok(Deleted {
                version_id: Some(version_id.to_owned()),
                ..Deleted::default()
            }),
        };
        self.recent_heads.wrote();
        deleted
    }

    /// ListObjectVersions. In gateway mode each object is listed as its key's `null` version.
    pub async fn list_versions(&self, bucket: &str, q: VersionListQuery) -> Result<VersionPage> {
        match &self.backend {
            Backend::Embedded(e) => e.list_versions(bucket, q).await,
            Backend::Gateway(g) => {
                let page = Box::pin(g.list_objects(
                    bucket,
                    ListQuery {
                        prefix: q.prefix,
                        delimiter: q.delimiter,
                        after: q.key_marker,
                        max_keys: q.max_keys,
                    },
                ))
                .await?;
                let last_is_version = page
                    .objects
                    .last()
                    .is_some_and(|(k, _)| page.last.as_deref() == Some(k.as_str()));
                Ok(VersionPage {
                    next_key_marker: page.last.filter(|_| page.is_truncated),
                    next_version_id_marker: (page.is_truncated && last_is_version)
                        .then(|| NULL_VERSION_ID.to_owned()),
                    is_truncated: page.is_truncated,
                    common_prefixes: page.common_prefixes,
                    versions: page
                        .objects
                        .into_iter()
                        .map(|(key, record)| ListedVersion {
                            key,
                            record,
                            is_latest: true,
                        })
                        .collect(),
                })
            }
        }
    }

    pub async fn list_objects(&self, bucket: &str, q: ListQuery) -> Result<ListPage> {
        match &self.backend {
            Backend::Embedded(e) => e.list_objects(bucket, q).await,
            Backend::Gateway(g) => Box::pin(g.list_objects(bucket, q)).await,
        }
    }

    // ---- torrents ----

    /// The piece hashes stored for this version, if any (never made here).
    pub async fn stored_pieces(
        &self,
        rec: &ObjectRecord,
        bucket: &str,
        key: &str,
    ) -> Result<Option<pieces::StoredPieces>> {
        match &self.backend {
            Backend::Embedded(e) => e.stored_pieces(&rec.version).await,
            Backend::Gateway(g) => Box::pin(g.stored_pieces(bucket, key, &rec.version)).await,
        }
    }

    async fn put_pieces(
        &self,
        bucket: &str,
        key: &str,
        version: &str,
        stored: &pieces::StoredPieces,
    ) -> Result<()> {
        match &self.backend {
            Backend::Embedded(e) => e.put_pieces(bucket, key, version, stored).await,
            Backend::Gateway(g) => Box::pin(g.put_pieces(bucket, key, version, stored)).await,
        }
    }

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
        if let Some(p) = self.stored_pieces(rec, bucket, key).await?
            && p.hashes.piece_length == want
            && p.hashes.v1_pieces.is_some()
            && p.hashes.v2_layer.is_some()
        {
            return Ok(p);
        }
        let job = format!("{bucket}/{key}\0{}", rec.version);
        let cell = {
            let mut jobs = self
                .hashing
                .jobs
                .lock()
                .map_err(|_| StoreError::Db("hash job table poisoned".into()))?;
            jobs.entry(job.clone()).or_default().clone()
        };
        let result = cell
            .get_or_init(|| async {
                let made = self.hash_once(rec, bucket, key, want).await;
                made.map_err(|e| e.to_string())
            })
            .await
            .clone();
        if let Ok(mut jobs) = self.hashing.jobs.lock() {
            jobs.remove(&job);
        }
        result.map_err(StoreError::Db)
    }

    /// The piece hashes made by this node, or with other gateway nodes sharing leases, by
    /// whichever node takes the object's lease first while the others wait for its result. A
    /// node that cannot reach the lease service hashes the object itself.
    async fn hash_once(
        &self,
        rec: &ObjectRecord,
        bucket: &str,
        key: &str,
        piece_length: u64,
    ) -> Result<pieces::StoredPieces> {
        let Some(leases) = self.leases.get().cloned() else {
            return self.hash_now(bucket, key, &rec.version, piece_length).await;
        };
        let name = {
            use sha2::Digest;
            let id = sha2::Sha256::digest(format!("{bucket}/{key}\0{}", rec.version));
            format!("hash:{}", hex::encode(&id[..16]))
        };
        let holder = uuid::Uuid::new_v4().to_string();
        let usable = |p: &pieces::StoredPieces| {
            p.hashes.piece_length == piece_length
                && p.hashes.v1_pieces.is_some()
                && p.hashes.v2_layer.is_some()
        };
        let waiting_since = Instant::now();
        loop {
            match leases
                .try_take(&name, &holder, cluster::HASH_LEASE_TTL)
                .await
            {
                Ok(true) => break,
                Ok(false) => {
                    tokio::time::sleep(cluster::HASH_WAIT_POLL).await;
                    if let Some(p) = self.stored_pieces_fresh(rec, bucket, key).await?
                        && usable(&p)
                    {
                        tracing::debug!(%bucket, %key, waited_ms = waiting_since.elapsed().as_millis() as u64, "piece hashes made by another node");
                        return Ok(p);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no hashing lease (the lease service is unreachable); hashing here");
                    return self.hash_now(bucket, key, &rec.version, piece_length).await;
                }
            }
        }
        // Another node may have finished just before this one took the lease.
        if let Some(p) = self.stored_pieces_fresh(rec, bucket, key).await?
            && usable(&p)
        {
            leases.release(&name, &holder).await;
            return Ok(p);
        }
        let renewing = {
            let (leases, name, holder) = (leases.clone(), name.clone(), holder.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(cluster::HASH_LEASE_TTL / 3).await;
                    if !matches!(
                        leases.renew(&name, &holder, cluster::HASH_LEASE_TTL).await,
                        Ok(true)
                    ) {
                        tracing::warn!(lease = %name, "hashing lease lost; another node may hash too");
                        return;
                    }
                }
            })
        };
        let made = self.hash_now(bucket, key, &rec.version, piece_length).await;
        renewing.abort();
        leases.release(&name, &holder).await;
        made
    }

    /// The stored piece hashes, read past any cache (another node may have just written them).
    async fn stored_pieces_fresh(
        &self,
        rec: &ObjectRecord,
        bucket: &str,
        key: &str,
    ) -> Result<Option<pieces::StoredPieces>> {
        if let Backend::Gateway(g) = &self.backend {
            g.forget_pieces(bucket, key, &rec.version);
        }
        self.stored_pieces(rec, bucket, key).await
    }

    async fn hash_now(
        &self,
        bucket: &str,
        key: &str,
        version: &str,
        piece_length: u64,
    ) -> Result<pieces::StoredPieces> {
        let reader = self
            .open_object_at(bucket, key, Which::Exact(version))
            .await?;
        let size = reader.record.size;
        tracing::info!(%bucket, %key, size, "hashing object for its torrent");
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
        self.put_pieces(bucket, key, version, &stored).await?;
        Ok(stored)
    }

    /// Starts making the piece hashes of `bucket/key` (version `rec`) in the background, so that
    /// its first `?torrent` finds them: for objects whose bytes were not hashed on the way in,
    /// such as completed multipart uploads. At most [`BACKGROUND_HASH_JOBS`] run at once; a
    /// `?torrent` that comes first makes them itself and the queued job then finds them stored.
    pub fn hash_in_background(&self, rec: ObjectRecord, bucket: String, key: String) {
        // SSE-C objects get no torrent: their stored bytes are ciphertext.
        if !self.hashing.enabled || rec.is_sse_c() {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = store.hashing.background.acquire().await else {
                return;
            };
            // A version deleted or replaced meanwhile is simply not hashed.
            if let Err(e) = store.pieces_of(&rec, &bucket, &key).await {
                tracing::debug!(%bucket, %key, error = %e, "background piece hashing skipped");
            }
        });
    }

    /// Records an issued torrent under its info-hashes (hex), as their source for its object.
    pub async fn issue_torrent(
        &self,
        hashes: Vec<String>,
        rec: pieces::IssuedTorrent,
    ) -> Result<()> {
        match &self.backend {
            Backend::Embedded(e) => e.issue_torrent(hashes, rec).await,
            Backend::Gateway(g) => Box::pin(g.issue_torrent(hashes, rec)).await,
        }
    }

    /// Every object recorded as a source of an info-hash (hex).
    pub async fn torrent_sources(&self, info_hash: &str) -> Result<pieces::TorrentSources> {
        let h = info_hash.to_ascii_lowercase();
        match &self.backend {
            Backend::Embedded(e) => e.torrent_sources(&h).await,
            Backend::Gateway(g) => Box::pin(g.torrent_sources(&h)).await,
        }
    }

    /// Every info-hash (hex) with a recorded source. A full scan (of the embedded table, or
    /// one listing of the metadata bucket): for rebuilding an index, not for every request.
    pub async fn issued_info_hashes(&self) -> Result<Vec<String>> {
        match &self.backend {
            Backend::Embedded(e) => e.issued_info_hashes().await,
            Backend::Gateway(g) => Box::pin(g.issued_info_hashes()).await,
        }
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
        match &self.backend {
            Backend::Embedded(e) => e.create_upload(rec).await,
            Backend::Gateway(g) => Box::pin(g.create_upload(rec)).await,
        }
    }

    pub async fn upload(&self, upload_id: &str) -> Result<UploadRecord> {
        match &self.backend {
            Backend::Embedded(e) => e.upload(upload_id).await,
            Backend::Gateway(g) => Box::pin(g.upload(upload_id)).await,
        }
    }

    pub async fn commit_part(
        &self,
        staged: Staged,
        upload_id: &str,
        part_number: u32,
        checksums: Checksums,
    ) -> Result<PartRecord> {
        match &self.backend {
            Backend::Embedded(e) => {
                e.commit_part(staged, upload_id, part_number, checksums)
                    .await
            }
            Backend::Gateway(g) => {
                Box::pin(g.commit_part(staged, upload_id, part_number, checksums)).await
            }
        }
    }

    pub async fn list_parts(&self, upload_id: &str) -> Result<Vec<PartRecord>> {
        match &self.backend {
            Backend::Embedded(e) => e.list_parts(upload_id).await,
            Backend::Gateway(g) => Box::pin(g.list_parts(upload_id)).await,
        }
    }

    pub async fn list_uploads(&self, bucket: &str) -> Result<Vec<UploadRecord>> {
        match &self.backend {
            Backend::Embedded(e) => e.list_uploads(bucket).await,
            Backend::Gateway(g) => Box::pin(g.list_uploads(bucket)).await,
        }
    }

    pub async fn abort_upload(&self, upload_id: &str) -> Result<()> {
        match &self.backend {
            Backend::Embedded(e) => e.abort_upload(upload_id).await,
            Backend::Gateway(g) => Box::pin(g.abort_upload(upload_id)).await,
        }
    }

    /// Completes a multipart upload from the listed `(part number, ETag)` pairs.
    pub async fn complete_upload(
        &self,
        upload_id: &str,
        requested: Vec<(u32, String)>,
        cond: WriteCondition,
    ) -> Result<ObjectRecord> {
        let completed = match &self.backend {
            Backend::Embedded(e) => e.complete_upload(upload_id, requested, cond).await,
            Backend::Gateway(g) => Box::pin(g.complete_upload(upload_id, requested, cond)).await,
        };
        self.recent_heads.wrote();
        completed
    }
}
