//! The S3 gateway backend: object bytes live in an existing S3-compatible cluster (AWS S3, R2,
//! Ceph RGW, MinIO, Garage, another seedbucket); everything else seedbucket needs lives in one
//! metadata bucket of that cluster ([`meta_bucket`]). A node keeps nothing of its own, so any
//! number of nodes can serve the same backend.
//!
//! Mapping:
//! - buckets map one to one; a backend bucket without a record is owned by the root key;
//! - an object's version is its backend ETag: a torrent names it, and every read made for a
//!   torrent carries `If-Match` with it, so a change in the backend is noticed on the next read;
//! - PUT bodies stream to the backend while they are hashed, with the last buffer held back
//!   until the body is verified ([`upload`]); multipart uploads are backend multipart uploads;
//! - the owner, ACL, tags and checksums of an object sit beside it in the metadata bucket,
//!   keyed by its ETag, written before the object becomes visible.

mod meta_bucket;
pub(crate) mod remote;
mod upload;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::credentials::AccessKey;
use crate::digest::ChecksumSelection;
use crate::error::{Result, StoreError};
use crate::ingest::{self, Destination, Staged, StagedBody};
use crate::meta::{ListPage, ListQuery, WriteCondition};
use crate::pieces::{IssuedTorrent, StoredPieces, TorrentSources};
use crate::records::*;
use crate::{INLINE_MAX, MAX_PUT_SIZE, ObjectReader, now_ns};

use meta_bucket::MetaBucket;
use remote::BlockCache;
pub(crate) use remote::RemoteSource;
pub(crate) use upload::{PendingUpload, RemoteBody};

/// Options of the S3 gateway backend.
#[derive(Clone)]
pub struct GatewayOptions {
    /// The backend's S3 endpoint, e.g. `https://s3.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    pub region: String,
    /// Path-style requests (`endpoint/bucket/key`): MinIO, Garage, Ceph, seedbucket.
    pub path_style: bool,
    /// The service credential seedbucket uses for every backend request.
    pub access_key: String,
    pub secret_key: String,
    /// The bucket holding seedbucket's own records; created at start if missing.
    pub meta_bucket: String,
    /// Bytes of recently served object blocks kept for the seeder and the webseed.
    pub piece_cache_bytes: u64,
    /// How long a node trusts its cached copy of a record written by another node.
    pub cache_ttl: Duration,
    pub hash_pieces: bool,
    pub min_part_size: u64,
}

impl std::fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayOptions")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("meta_bucket", &self.meta_bucket)
            .finish_non_exhaustive()
    }
}

/// What a held-back backend request is for.
pub enum StageTarget<'a> {
    /// PutObject or CopyObject: the object and the headers stored with it.
    Object {
        bucket: &'a str,
        key: &'a str,
        attributes: &'a ObjectAttributes,
    },
    /// UploadPart or UploadPartCopy.
    Part {
        upload: &'a UploadRecord,
        part_number: u32,
    },
}

/// The owner, ACL, tags and checksums of one object version (its backend ETag).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sidecar {
    etag: String,
    owner: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    acl: Vec<Grant>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    checksums: Checksums,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parts_count: Option<u32>,
    /// Sizes of the parts of a multipart object, in order (GetObject `partNumber`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    part_sizes: Vec<u64>,
    /// The upload that made a multipart object ([`ObjectRecord::completed_upload`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    completed_upload: Option<String>,
}

/// A multipart upload: our record and the backend's upload id.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GatewayUpload {
    #[serde(flatten)]
    record: UploadRecord,
    backend_upload_id: String,
}

/// What the backend says of an object (HEAD or a listing entry).
struct RemoteHead {
    etag: String,
    size: u64,
    last_modified_ns: i64,
    headers: StoredHeaders,
    user_metadata: BTreeMap<String, String>,
    /// The backend encrypts it with its own key (SSE-S3).
    sse_s3: bool,
}

/// A function that starts the backend request `$request` (PutObject or UploadPart) with a
/// streamed body of `$len` bytes whose last buffer is held back ([`upload`]); the request
/// answers the backend's ETag.
macro_rules! held_back_request {
    ($request:expr, $len:expr) => {{
        let (request, len) = ($request, $len);
        move || {
            upload::held_back(move |body| async move {
                request
                    .body(ByteStream::from_body_1_x(body))
                    .content_length(len)
                    // The body is streamed once: sign the headers, not the payload.
                    .customize()
                    .disable_payload_signing()
                    .send()
                    .await
                    .map(|o| unquote(o.e_tag()))
                    .map_err(backend_error)
            })
        }
    }};
}

/// Time allowed for one small backend call (HEAD, a metadata record, a listing page).
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs a small backend call with [`CALL_TIMEOUT`]; a slow backend answers 503.
async fn timed<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable("backend call timed out".into())))
}

/// Maps a backend answer to a store error. Details (which may name the backend's address) go
/// to the log through [`StoreError::Unavailable`], never to clients.
pub(crate) fn backend_error<E>(e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::fmt::Debug,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().map(str::to_owned);
    match (code.as_deref(), status) {
        (Some("NoSuchBucket"), _) => StoreError::NoSuchBucket,
        (Some("NoSuchKey" | "NotFound"), _) | (None, Some(404)) => StoreError::NoSuchKey,
        (Some("NoSuchUpload"), _) => StoreError::NoSuchUpload,
        (Some("PreconditionFailed"), _) | (_, Some(412)) => StoreError::PreconditionFailed,
        (Some("BucketAlreadyExists"), _) => StoreError::BucketAlreadyExists,
        (Some("BucketAlreadyOwnedByYou"), _) => StoreError::BucketAlreadyOwnedByYou,
        (Some("BucketNotEmpty"), _) => StoreError::BucketNotEmpty,
        (Some("InvalidPart"), _) => StoreError::InvalidPart(
            e.message()
                .unwrap_or("one or more of the specified parts could not be found")
                .to_owned(),
        ),
        (Some("InvalidPartOrder"), _) => StoreError::InvalidPartOrder,
        (Some("EntityTooSmall"), _) => StoreError::EntityTooSmall,
        (Some("SlowDown"), _) | (_, Some(429)) => StoreError::SlowDown,
        _ => StoreError::Unavailable(format!("code {code:?}, status {status:?}: {e:?}")),
    }
}

/// SSE-S3 asked of the backend: it encrypts with its own key.
fn sse_s3(a: &ObjectAttributes) -> Option<aws_sdk_s3::types::ServerSideEncryption> {
    a.sse_s3
        .then_some(aws_sdk_s3::types::ServerSideEncryption::Aes256)
}

fn unquote(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_owned()
}

fn quote(etag: &str) -> String {
    if etag == "*" {
        return etag.to_owned();
    }
    format!("\"{etag}\"")
}

fn ns_of(t: Option<&DateTime>) -> i64 {
    t.and_then(|t| i64::try_from(t.as_nanos()).ok())
        .unwrap_or(0)
}

/// Where an object's records live in the metadata bucket: one folder per key (hashed, so any
/// key length fits), one record per version.
fn object_folder(bucket: &str, key: &str) -> String {
    format!(
        "objects/{bucket}/{}",
        hex::encode(sha2::Sha256::digest(key.as_bytes()))
    )
}

fn sidecar_key(bucket: &str, key: &str, etag: &str) -> String {
    format!("{}/{etag}.json", object_folder(bucket, key))
}

fn pieces_key(bucket: &str, key: &str, etag: &str) -> String {
    format!("{}/{etag}.pieces", object_folder(bucket, key))
}

fn bucket_key(bucket: &str) -> String {
    format!("buckets/{bucket}.json")
}

fn upload_key(id: &str) -> String {
    format!("uploads/{id}.json")
}

fn part_key(id: &str, n: u32) -> String {
    format!("uploads/{id}/{n:05}.json")
}

/// The record of the format of before: one per info-hash, the first object that issued it.
fn legacy_torrent_key(info_hash: &str) -> String {
    format!("torrents/{info_hash}.json")
}

/// The folder of the sources of an info-hash: `{object id}.json` per object.
fn torrent_sources_folder(info_hash: &str) -> String {
    format!("torrents/{info_hash}/")
}

/// What a CopyObject source key keeps unescaped (`x-amz-copy-source` is URL-encoded).
const COPY_SOURCE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

const KEYS: &str = "keys.json";
const SERVER_SECRET: &str = "server.secret";

pub(crate) struct Gateway {
    client: Client,
    meta: MetaBucket,
    pub(crate) cache: BlockCache,
    opts: GatewayOptions,
    /// Bucket existence as the backend last said it.
    buckets_seen: Mutex<HashMap<String, (Instant, bool)>>,
    /// The root key's user id: the owner of backend buckets that have no record.
    default_owner: RwLock<String>,
}

/// Objects from this size on are not MD5-hashed by the gateway (unless the client sent
/// Content-MD5): the backend's ETag is theirs.
const MD5_LEFT_TO_BACKEND_FROM: u64 = 8 * 1024 * 1024;

impl Gateway {
    /// Connects to the backend and makes sure the metadata bucket exists.
    /// `changes` hears of every record this node writes to the metadata bucket.
    pub(crate) async fn connect(
        opts: GatewayOptions,
        changes: tokio::sync::broadcast::Sender<crate::cluster::MetaChange>,
    ) -> Result<Arc<Self>> {
        use aws_sdk_s3::config::{
            BehaviorVersion, Credentials, Region, RequestChecksumCalculation,
            ResponseChecksumValidation, timeout::TimeoutConfig,
        };
        let credentials = Credentials::new(
            opts.access_key.clone(),
            opts.secret_key.clone(),
            None,
            None,
            "seedbucket-gateway",
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(opts.endpoint.trim_end_matches('/'))
            .region(Region::new(opts.region.clone()))
            .force_path_style(opts.path_style)
            .credentials_provider(credentials)
            // Only the connection has a deadline here: a 5 GiB upload may take minutes. Small
            // calls have their own (`timed`).
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .build(),
            )
            // seedbucket computes and checks every checksum itself; the backend need not
            // understand aws-chunked trailers.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        let client = Client::from_conf(config);
        let gateway = Arc::new(Self {
            meta: MetaBucket::new(
                client.clone(),
                opts.meta_bucket.clone(),
                opts.cache_ttl,
                changes,
            ),
            cache: BlockCache::new(opts.piece_cache_bytes),
            client,
            opts,
            buckets_seen: Mutex::default(),
            default_owner: RwLock::new(String::new()),
        });
        gateway.ensure_meta_bucket().await?;
        Ok(gateway)
    }

    async fn ensure_meta_bucket(&self) -> Result<()> {
        let name = &self.opts.meta_bucket;
        let head = timed(async {
            self.client
                .head_bucket()
                .bucket(name)
                .send()
                .await
                .map_err(backend_error)
        })
        .await;
        match head {
            Ok(_) => Ok(()),
            Err(StoreError::NoSuchKey | StoreError::NoSuchBucket) => {
                match timed(async { self.create_backend_bucket(name).await }).await {
                    Ok(()) | Err(StoreError::BucketAlreadyOwnedByYou) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn create_backend_bucket(&self, name: &str) -> Result<()> {
        use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
        let mut req = self.client.create_bucket().bucket(name);
        if self.opts.region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.opts.region.as_str()))
                    .build(),
            );
        }
        req.send().await.map_err(backend_error)?;
        Ok(())
    }

    pub(crate) fn set_default_owner(&self, user_id: &str) {
        if let Ok(mut o) = self.default_owner.write() {
            *o = user_id.to_owned();
        }
    }

    fn default_owner(&self) -> String {
        self.default_owner
            .read()
            .map(|o| o.clone())
            .unwrap_or_default()
    }

    // ---- keys and the server secret ----

    pub(crate) async fn load_keys(&self) -> Result<Vec<AccessKey>> {
        match timed(self.meta.get_fresh(KEYS)).await? {
            Some(b) => crate::credentials::decode_keys(&b),
            None => Ok(Vec::new()),
        }
    }

    pub(crate) async fn save_keys(&self, keys: &[AccessKey]) -> Result<()> {
        timed(
            self.meta
                .put(KEYS, Bytes::from(crate::credentials::encode_keys(keys)?)),
        )
        .await
    }

    /// The secret shared by every node (token MACs), made by the first node that starts.
    pub(crate) async fn server_secret(&self) -> Result<Vec<u8>> {
        let parse = |b: &[u8]| {
            hex::decode(String::from_utf8_lossy(b).trim())
                .map_err(|_| StoreError::Corrupt("server.secret is not hex".into()))
        };
        if let Some(b) = timed(self.meta.get_fresh(SERVER_SECRET)).await? {
            return parse(&b);
        }
        let secret: [u8; 32] = rand::random();
        timed(
            self.meta
                .put(SERVER_SECRET, Bytes::from(hex::encode(secret))),
        )
        .await?;
        // Two nodes starting at once: the last write wins, and both read it back.
        tokio::time::sleep(Duration::from_millis(200)).await;
        match timed(self.meta.get_fresh(SERVER_SECRET)).await? {
            Some(b) => parse(&b),
            None => Ok(secret.to_vec()),
        }
    }

    // ---- buckets ----

    async fn bucket_exists(&self, name: &str) -> Result<bool> {
        if name == self.opts.meta_bucket {
            return Ok(false);
        }
        if let Ok(seen) = self.buckets_seen.lock()
            && let Some((at, exists)) = seen.get(name)
            && at.elapsed() < self.opts.cache_ttl
        {
            return Ok(*exists);
        }
        let head = timed(async {
            self.client
                .head_bucket()
                .bucket(name)
                .send()
                .await
                .map_err(backend_error)
        })
        .await;
        let exists = match head {
            Ok(_) => true,
            Err(StoreError::NoSuchKey | StoreError::NoSuchBucket) => false,
            Err(e) => return Err(e),
        };
        self.note_bucket(name, exists);
        Ok(exists)
    }

    fn note_bucket(&self, name: &str, exists: bool) {
        if let Ok(mut seen) = self.buckets_seen.lock() {
            if seen.len() > 100_000 {
                seen.clear();
            }
            seen.insert(name.to_owned(), (Instant::now(), exists));
        }
    }

    fn unrecorded_bucket(&self, name: &str) -> BucketRecord {
        BucketRecord {
            name: name.to_owned(),
            owner: self.default_owner(),
            created_ns: 0,
            acl: Vec::new(),
            policy: None,
            cors: Vec::new(),
            default_sse_s3: false,
            versioning: None,
            lifecycle: Vec::new(),
        }
    }

    pub(crate) async fn bucket(&self, name: &str) -> Result<BucketRecord> {
        if !self.bucket_exists(name).await? {
            return Err(StoreError::NoSuchBucket);
        }
        Ok(timed(self.meta.get_json::<BucketRecord>(&bucket_key(name)))
            .await?
            .unwrap_or_else(|| self.unrecorded_bucket(name)))
    }

    pub(crate) async fn create_bucket(&self, rec: BucketRecord) -> Result<()> {
        // A bucket already in the backend (with a record or not) is someone's already.
        self.buckets_seen
            .lock()
            .map(|mut s| s.remove(&rec.name))
            .ok();
        match self.bucket(&rec.name).await {
            Ok(existing) => {
                return Err(if existing.owner == rec.owner {
                    StoreError::BucketAlreadyOwnedByYou
                } else {
                    StoreError::BucketAlreadyExists
                });
            }
            Err(StoreError::NoSuchBucket) if rec.name != self.opts.meta_bucket => {}
            Err(StoreError::NoSuchBucket) => return Err(StoreError::BucketAlreadyExists),
            Err(e) => return Err(e),
        }
        timed(self.meta.put_json(&bucket_key(&rec.name), &rec)).await?;
        match timed(self.create_backend_bucket(&rec.name)).await {
            Ok(()) => {}
            Err(StoreError::BucketAlreadyOwnedByYou) => {}
            Err(e) => {
                let _ = self.meta.delete(&bucket_key(&rec.name)).await;
                return Err(e);
            }
        }
        self.note_bucket(&rec.name, true);
        Ok(())
    }

    pub(crate) async fn delete_bucket(&self, name: &str) -> Result<()> {
        self.bucket(name).await?;
        timed(async {
            self.client
                .delete_bucket()
                .bucket(name)
                .send()
                .await
                .map_err(backend_error)
        })
        .await?;
        self.note_bucket(name, false);
        for upload in self.list_uploads(name).await? {
            let _ = self.forget_upload(&upload.upload_id).await;
        }
        timed(self.meta.delete(&bucket_key(name))).await
    }

    pub(crate) async fn update_bucket(
        &self,
        name: &str,
        change: impl FnOnce(&mut BucketRecord) -> Result<()>,
    ) -> Result<BucketRecord> {
        if !self.bucket_exists(name).await? {
            return Err(StoreError::NoSuchBucket);
        }
        let key = bucket_key(name);
        self.meta.forget(&key);
        let mut rec = timed(self.meta.get_json::<BucketRecord>(&key))
            .await?
            .unwrap_or_else(|| self.unrecorded_bucket(name));
        change(&mut rec)?;
        timed(self.meta.put_json(&key, &rec)).await?;
        Ok(rec)
    }

    pub(crate) async fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        let out = timed(async {
            self.client
                .list_buckets()
                .send()
                .await
                .map_err(backend_error)
        })
        .await?;
        let names: Vec<String> = out
            .buckets()
            .iter()
            .filter_map(|b| b.name().map(str::to_owned))
            .filter(|n| *n != self.opts.meta_bucket)
            .collect();
        let records = futures::stream::iter(names)
            .map(|name| async move {
                self.note_bucket(&name, true);
                let rec = timed(self.meta.get_json::<BucketRecord>(&bucket_key(&name))).await?;
                Ok::<_, StoreError>(rec.unwrap_or_else(|| self.unrecorded_bucket(&name)))
            })
            .buffered(16)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(records)
    }

    // ---- objects ----

    async fn sidecar(&self, bucket: &str, key: &str, etag: &str) -> Result<Option<Sidecar>> {
        timed(
            self.meta
                .get_json::<Sidecar>(&sidecar_key(bucket, key, etag)),
        )
        .await
    }

    async fn record_of(&self, bucket: &str, key: &str, head: RemoteHead) -> Result<ObjectRecord> {
        let side = self.sidecar(bucket, key, &head.etag).await?;
        let (owner, acl, tags, checksums, parts_count, part_sizes, completed_upload) = match side {
            Some(s) => (
                s.owner,
                s.acl,
                s.tags,
                s.checksums,
                s.parts_count,
                s.part_sizes,
                s.completed_upload,
            ),
            None => (
                self.bucket(bucket).await?.owner,
                Vec::new(),
                BTreeMap::new(),
                Checksums::default(),
                // A multipart ETag says how many parts the object has.
                head.etag.rsplit_once('-').and_then(|(_, n)| n.parse().ok()),
                Vec::new(),
                None,
            ),
        };
        Ok(ObjectRecord {
            version: head.etag.clone(),
            size: head.size,
            etag: head.etag,
            last_modified_ns: head.last_modified_ns,
            attributes: ObjectAttributes {
                headers: head.headers,
                user_metadata: head.user_metadata,
                owner,
                acl,
                tags,
                sse_s3: head.sse_s3,
            },
            checksums,
            // Byte runs without blobs: only their lengths matter, for `partNumber`.
            segments: part_sizes
                .into_iter()
                .map(|len| Segment {
                    blob: String::new(),
                    len,
                    inline: false,
                    sse: None,
                })
                .collect(),
            parts_count,
            versioned: false,
            delete_marker: false,
            completed_upload,
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<RemoteHead> {
        let o = timed(async {
            self.client
                .head_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(backend_error)
        })
        .await?;
        Ok(RemoteHead {
            etag: unquote(o.e_tag()),
            size: o
                .content_length()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            last_modified_ns: ns_of(o.last_modified()),
            headers: StoredHeaders {
                content_type: o.content_type().map(str::to_owned),
                content_encoding: o.content_encoding().map(str::to_owned),
                content_disposition: o.content_disposition().map(str::to_owned),
                content_language: o.content_language().map(str::to_owned),
                cache_control: o.cache_control().map(str::to_owned),
                expires: o.expires_string().map(str::to_owned),
            },
            user_metadata: o
                .metadata()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            sse_s3: o.server_side_encryption()
                == Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256),
        })
    }

    pub(crate) async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectRecord> {
        if !self.bucket_exists(bucket).await? {
            return Err(StoreError::NoSuchBucket);
        }
        let head = self.head(bucket, key).await?;
        self.record_of(bucket, key, head).await
    }

    pub(crate) async fn open_object(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectReader> {
        let rec = self.head_object(bucket, key).await?;
        let source = RemoteSource::new(self.clone(), bucket, key, &rec.etag, rec.size);
        Ok(ObjectReader::remote(rec, source))
    }

    /// Bytes `[start, end)` of the version `etag` (a changed object fails with
    /// `PreconditionFailed`).
    pub(crate) async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
        start: u64,
        end: u64,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let out = timed(async {
            self.client
                .get_object()
                .bucket(bucket)
                .key(key)
                .if_match(quote(etag))
                .range(format!("bytes={}-{}", start, end.saturating_sub(1)))
                .send()
                .await
                .map_err(backend_error)
        })
        .await?;
        let body = futures::stream::unfold(out.body, |mut body| async move {
            body.next().await.map(|chunk| {
                (
                    chunk.map_err(|e| {
                        StoreError::Unavailable(format!("reading from the backend: {e}"))
                    }),
                    body,
                )
            })
        });
        Ok(body.boxed())
    }

    /// Removes the records of an object version (after it was replaced or deleted).
    async fn forget_version(&self, bucket: &str, key: &str, etag: &str) {
        for k in [
            sidecar_key(bucket, key, etag),
            pieces_key(bucket, key, etag),
        ] {
            if let Err(e) = timed(self.meta.delete(&k)).await {
                tracing::debug!(error = %e, "could not remove a stale object record");
            }
        }
    }

    pub(crate) async fn delete_object(&self, bucket: &str, key: &str) -> Result<bool> {
        if !self.bucket_exists(bucket).await? {
            return Err(StoreError::NoSuchBucket);
        }
        let previous = self.head(bucket, key).await.ok();
        timed(async {
            self.client
                .delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(backend_error)
        })
        .await?;
        if let Some(p) = &previous {
            self.forget_version(bucket, key, &p.etag).await;
        }
        Ok(previous.is_some())
    }

    pub(crate) async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        version: &str,
        change: impl FnOnce(&mut ObjectRecord) -> Result<()>,
    ) -> Result<ObjectRecord> {
        let mut rec = self.head_object(bucket, key).await?;
        if rec.version != version {
            return Err(StoreError::Conflict);
        }
        change(&mut rec)?;
        self.write_sidecar(bucket, key, &rec.etag, &rec).await?;
        Ok(rec)
    }

    async fn write_sidecar(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
        rec: &ObjectRecord,
    ) -> Result<()> {
        let side = Sidecar {
            etag: etag.to_owned(),
            owner: rec.attributes.owner.clone(),
            acl: rec.attributes.acl.clone(),
            tags: rec.attributes.tags.clone(),
            checksums: rec.checksums.clone(),
            parts_count: rec.parts_count,
            part_sizes: match rec.parts_count {
                Some(_) => rec.segments.iter().map(|s| s.len).collect(),
                None => Vec::new(),
            },
            completed_upload: rec.completed_upload.clone(),
        };
        timed(self.meta.put_json(&sidecar_key(bucket, key, etag), &side)).await
    }

    pub(crate) async fn list_objects(&self, bucket: &str, q: ListQuery) -> Result<ListPage> {
        let owner = self.bucket(bucket).await?.owner;
        // After a common prefix, skip everything under it.
        let start_after = q.after.map(|after| match &q.delimiter {
            Some(d) if !d.is_empty() && after.ends_with(d.as_str()) => format!("{after}\u{10FFFF}"),
            _ => after,
        });
        let out = timed(async {
            self.client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(&q.prefix)
                .set_delimiter(q.delimiter.clone().filter(|d| !d.is_empty()))
                .set_start_after(start_after)
                .max_keys(i32::try_from(q.max_keys.min(1000)).unwrap_or(1000))
                .send()
                .await
                .map_err(backend_error)
        })
        .await?;
        let mut page = ListPage::default();
        for o in out.contents() {
            let Some(key) = o.key() else { continue };
            let etag = unquote(o.e_tag());
            page.objects.push((
                key.to_owned(),
                ObjectRecord {
                    version: etag.clone(),
                    size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    parts_count: etag.rsplit_once('-').and_then(|(_, n)| n.parse().ok()),
                    completed_upload: None,
                    versioned: false,
                    delete_marker: false,
                    etag,
                    last_modified_ns: ns_of(o.last_modified()),
                    attributes: ObjectAttributes {
                        owner: owner.clone(),
                        ..Default::default()
                    },
                    checksums: Checksums::default(),
                    segments: Vec::new(),
                },
            ));
        }
        page.common_prefixes = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(str::to_owned))
            .collect();
        page.is_truncated = out.is_truncated() == Some(true);
        page.last = page
            .objects
            .last()
            .map(|(k, _)| k.clone())
            .into_iter()
            .chain(page.common_prefixes.last().cloned())
            .max();
        Ok(page)
    }

    // ---- writes ----

    fn put_request(
        &self,
        bucket: &str,
        key: &str,
        a: &ObjectAttributes,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        let h = &a.headers;
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            // Sent always: S3 clients would otherwise pick their own default.
            .content_type(h.content_type_or_default())
            .set_content_encoding(h.content_encoding.clone())
            .set_content_disposition(h.content_disposition.clone())
            .set_content_language(h.content_language.clone())
            .set_cache_control(h.cache_control.clone())
            .set_expires(
                h.expires
                    .as_deref()
                    .and_then(|e| DateTime::from_str(e, DateTimeFormat::HttpDate).ok()),
            )
            .set_metadata(
                (!a.user_metadata.is_empty())
                    .then(|| a.user_metadata.clone().into_iter().collect()),
            )
            .set_server_side_encryption(sse_s3(a))
    }

    /// UploadPart of part `part_number` of upload `upload_id`, without its body.
    async fn upload_part_request(
        &self,
        upload_id: &str,
        part_number: u32,
    ) -> Result<aws_sdk_s3::operation::upload_part::builders::UploadPartFluentBuilder> {
        let upload = self.gateway_upload(upload_id).await?;
        let part = i32::try_from(part_number)
            .map_err(|_| StoreError::InvalidPart("part number out of range".into()))?;
        Ok(self
            .client
            .upload_part()
            .bucket(upload.record.bucket)
            .key(upload.record.key)
            .upload_id(upload.backend_upload_id)
            .part_number(part))
    }

    /// Sends a staged body: releases a held-back upload, or sends a small body kept in memory
    /// with `request` (PutObject or UploadPart); returns the backend's ETag.
    async fn send_staged<R, Fut>(body: StagedBody, request: R) -> Result<String>
    where
        R: FnOnce(Bytes) -> Fut,
        Fut: std::future::Future<Output = Result<String>>,
    {
        match body {
            StagedBody::Remote(upload) => upload.complete().await,
            StagedBody::Inline(data) => timed(request(data)).await,
            StagedBody::File(_) => Err(StoreError::Corrupt(
                "a gateway body staged to a file".into(),
            )),
        }
    }

    async fn gateway_upload(&self, upload_id: &str) -> Result<GatewayUpload> {
        timed(self.meta.get_json::<GatewayUpload>(&upload_key(upload_id)))
            .await?
            .ok_or(StoreError::NoSuchUpload)
    }

    /// Receives a body for `target`: hashed on the way, sent to the backend as it arrives, its
    /// last buffer held back until [`Gateway::commit_object`] or [`Gateway::commit_part`].
    /// Bodies up to [`INLINE_MAX`] bytes wait in memory and go out at commit.
    pub(crate) async fn stage<S, E>(
        &self,
        target: StageTarget<'_>,
        body: S,
        expected_size: Option<u64>,
        checksums: ChecksumSelection,
    ) -> Result<Staged>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let len = expected_size.ok_or(StoreError::MissingContentLength)?;
        if len > MAX_PUT_SIZE {
            return Err(StoreError::EntityTooLarge);
        }
        let content_length = i64::try_from(len).map_err(|_| StoreError::EntityTooLarge)?;
        // The backend computes the MD5 of what it stores, and its ETag is the one clients get:
        // a part's always, an object's once written. Unless the client sent Content-MD5 to
        // check, the gateway leaves MD5 to it for parts and for large objects (the MD5 was
        // 45% of the gateway's CPU in a 1 GiB PUT); a small object keeps it, so that its
        // records can be written, under its ETag, before the backend has the bytes.
        let mut checksums = checksums;
        checksums.skip_md5 = match &target {
            StageTarget::Part { .. } => true,
            StageTarget::Object { .. } => len >= MD5_LEFT_TO_BACKEND_FROM,
        };
        let (open, hash_pieces): (Box<dyn FnOnce() -> RemoteBody + Send>, bool) = match target {
            StageTarget::Object {
                bucket,
                key,
                attributes,
            } => {
                let request = self.put_request(bucket, key, attributes);
                let open = held_back_request!(request, content_length);
                (Box::new(open), self.opts.hash_pieces)
            }
            StageTarget::Part {
                upload,
                part_number,
            } => {
                let request = self
                    .upload_part_request(&upload.upload_id, part_number)
                    .await?;
                let open = held_back_request!(request, content_length);
                (Box::new(open), false)
            }
        };
        ingest::stage_to(
            Destination::Remote(open),
            body,
            expected_size,
            MAX_PUT_SIZE,
            INLINE_MAX,
            checksums,
            hash_pieces,
        )
        .await
    }

    /// Checks `cond` against the current object (the backend gets the same condition too,
    /// where it honours it).
    async fn check_condition(
        &self,
        bucket: &str,
        key: &str,
        cond: &WriteCondition,
    ) -> Result<Option<RemoteHead>> {
        let current = match self.head(bucket, key).await {
            Ok(h) => Some(h),
            Err(StoreError::NoSuchKey) => None,
            Err(e) => return Err(e),
        };
        let ok = match (&cond.if_match, cond.if_none_match_any, &current) {
            (Some(_), _, None) => false,
            (Some(m), _, Some(c)) => m == "*" || m.trim_matches('"') == c.etag,
            (None, true, Some(_)) => false,
            _ => true,
        };
        if !ok {
            return Err(StoreError::PreconditionFailed);
        }
        Ok(current)
    }

    pub(crate) async fn commit_object(
        &self,
        staged: Staged,
        bucket: &str,
        key: &str,
        attributes: ObjectAttributes,
        checksums: Checksums,
        cond: WriteCondition,
    ) -> Result<ObjectRecord> {
        let previous = self.check_condition(bucket, key, &cond).await?;
        // `None`: MD5 left to the backend (a large body); the ETag is known once it answers.
        let expected = staged.digests.md5_hex();
        let mut rec = ObjectRecord {
            version: expected.clone().unwrap_or_default(),
            size: staged.plain_size,
            etag: expected.clone().unwrap_or_default(),
            last_modified_ns: now_ns(),
            attributes,
            checksums,
            segments: Vec::new(),
            parts_count: None,
            completed_upload: None,
            versioned: false,
            delete_marker: false,
        };
        let pieces = staged.pieces.clone().map(|hashes| StoredPieces {
            hashes,
            created_ns: rec.last_modified_ns,
        });
        // With the ETag known, the records go first: the object never shows without its owner
        // and ACL. Without it they follow the backend write (`settle_version`), as for
        // CopyObject: until they are written (milliseconds, before the client gets its answer)
        // a reader finds the object as one written to the cluster directly, the bucket
        // owner's, private; if writing them fails, it stays so (never more open).
        if let Some(md5) = &expected {
            self.write_version_records(bucket, key, md5, &rec, pieces.as_ref())
                .await?;
        }
        let request = self.put_request(bucket, key, &rec.attributes);
        let etag = Self::send_staged(staged.into_body(), |data| async move {
            request
                .body(ByteStream::from(data))
                .send()
                .await
                .map(|o| unquote(o.e_tag()))
                .map_err(backend_error)
        })
        .await?;
        self.settle_version(
            bucket,
            key,
            expected.as_deref(),
            &etag,
            &mut rec,
            pieces.as_ref(),
            previous,
        )
        .await;
        Ok(rec)
    }

    async fn write_version_records(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
        rec: &ObjectRecord,
        pieces: Option<&StoredPieces>,
    ) -> Result<()> {
        self.write_sidecar(bucket, key, etag, rec).await?;
        if let Some(p) = pieces {
            self.put_pieces(bucket, key, etag, p).await?;
        }
        Ok(())
    }

    /// After a write: records under the backend's real ETag if they were written under
    /// another one (`expected`, then removed) or not yet (`None`), and the replaced version's
    /// records removed.
    #[allow(clippy::too_many_arguments)]
    async fn settle_version(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<&str>,
        etag: &str,
        rec: &mut ObjectRecord,
        pieces: Option<&StoredPieces>,
        previous: Option<RemoteHead>,
    ) {
        if expected != Some(etag) {
            rec.etag = etag.to_owned();
            rec.version = etag.to_owned();
            if let Err(e) = self
                .write_version_records(bucket, key, etag, rec, pieces)
                .await
            {
                tracing::warn!(error = %e, bucket, key, "could not record an object's owner under its backend ETag");
            }
            if let Some(expected) = expected {
                self.forget_version(bucket, key, expected).await;
            }
        }
        if let Some(p) = previous
            && p.etag != etag
        {
            self.forget_version(bucket, key, &p.etag).await;
        }
    }

    /// CopyObject inside the backend (`If-Match` on the source's ETag). `None` if the source
    /// is not a backend object.
    pub(crate) async fn copy_object(
        &self,
        source: &ObjectReader,
        bucket: &str,
        key: &str,
        attributes: ObjectAttributes,
        checksums: Checksums,
    ) -> Result<Option<ObjectRecord>> {
        use aws_sdk_s3::types::MetadataDirective;
        let Some(src) = source.remote_source() else {
            return Ok(None);
        };
        let previous = self.head(bucket, key).await.ok();
        let h = &attributes.headers;
        let copy_source = format!(
            "{}/{}",
            src.bucket,
            percent_encoding::utf8_percent_encode(&src.key, COPY_SOURCE)
        );
        let out = timed(async {
            self.client
                .copy_object()
                .bucket(bucket)
                .key(key)
                .copy_source(copy_source)
                .copy_source_if_match(quote(&src.etag))
                .metadata_directive(MetadataDirective::Replace)
                // Sent always: S3 clients would otherwise pick their own default.
                .content_type(h.content_type_or_default())
                .set_content_encoding(h.content_encoding.clone())
                .set_content_disposition(h.content_disposition.clone())
                .set_content_language(h.content_language.clone())
                .set_cache_control(h.cache_control.clone())
                .set_metadata(
                    (!attributes.user_metadata.is_empty())
                        .then(|| attributes.user_metadata.clone().into_iter().collect()),
                )
                .set_server_side_encryption(sse_s3(&attributes))
                .send()
                .await
                .map_err(backend_error)
        })
        .await?;
        let result = out.copy_object_result();
        let etag = unquote(result.and_then(|r| r.e_tag()));
        let rec = ObjectRecord {
            version: etag.clone(),
            size: source.record.size,
            etag: etag.clone(),
            last_modified_ns: match ns_of(result.and_then(|r| r.last_modified())) {
                0 => now_ns(),
                t => t,
            },
            attributes,
            checksums,
            segments: Vec::new(),
            parts_count: None,
            completed_upload: None,
            versioned: false,
            delete_marker: false,
        };
        // The same bytes have the same piece hashes, whatever the copy's ETag.
        let pieces = self.stored_pieces(&src.bucket, &src.key, &src.etag).await?;
        self.write_version_records(bucket, key, &etag, &rec, pieces.as_ref())
            .await?;
        if let Some(p) = previous
            && p.etag != etag
        {
            self.forget_version(bucket, key, &p.etag).await;
        }
        Ok(Some(rec))
    }

    // ---- multipart ----

    pub(crate) async fn create_upload(&self, rec: UploadRecord) -> Result<UploadRecord> {
        if rec.sse_key_check.is_some() {
            return Err(StoreError::NotSupported(
                "SSE-C is not available in gateway mode".into(),
            ));
        }
        if !self.bucket_exists(&rec.bucket).await? {
            return Err(StoreError::NoSuchBucket);
        }
        let h = &rec.attributes.headers;
        let out = timed(async {
            self.client
                .create_multipart_upload()
                .bucket(&rec.bucket)
                .key(&rec.key)
                // Sent always: S3 clients would otherwise pick their own default.
                .content_type(h.content_type_or_default())
                .set_content_encoding(h.content_encoding.clone())
                .set_content_disposition(h.content_disposition.clone())
                .set_content_language(h.content_language.clone())
                .set_cache_control(h.cache_control.clone())
                .set_metadata(
                    (!rec.attributes.user_metadata.is_empty())
                        .then(|| rec.attributes.user_metadata.clone().into_iter().collect()),
                )
                .set_server_side_encryption(sse_s3(&rec.attributes))
                .send()
                .await
                .map_err(backend_error)
        })
        .await?;
        let backend_upload_id = out
            .upload_id()
            .ok_or_else(|| StoreError::Unavailable("the backend gave no upload id".into()))?
            .to_owned();
        let record = GatewayUpload {
            record: rec.clone(),
            backend_upload_id,
        };
        timed(self.meta.put_json(&upload_key(&rec.upload_id), &record)).await?;
        Ok(rec)
    }

    pub(crate) async fn upload(&self, upload_id: &str) -> Result<UploadRecord> {
        Ok(self.gateway_upload(upload_id).await?.record)
    }

    pub(crate) async fn commit_part(
        &self,
        staged: Staged,
        upload_id: &str,
        part_number: u32,
        checksums: Checksums,
    ) -> Result<PartRecord> {
        let size = staged.plain_size;
        let etag = Self::send_staged(staged.into_body(), |data| async move {
            self.upload_part_request(upload_id, part_number)
                .await?
                .body(ByteStream::from(data))
                .send()
                .await
                .map(|o| unquote(o.e_tag()))
                .map_err(backend_error)
        })
        .await?;
        let part = PartRecord {
            part_number,
            blob: String::new(),
            size,
            etag,
            last_modified_ns: now_ns(),
            checksums,
            sse: None,
        };
        timed(self.meta.put_json(&part_key(upload_id, part_number), &part)).await?;
        Ok(part)
    }

    /// The parts uploaded so far, from the part records written at each UploadPart (not the
    /// backend's ListParts: they keep the checksums, and some backends answer ListParts in a
    /// form the S3 client refuses, moto's `ListPartsResponse` for one).
    pub(crate) async fn list_parts(&self, upload_id: &str) -> Result<Vec<PartRecord>> {
        self.gateway_upload(upload_id).await?;
        let prefix = format!("uploads/{upload_id}/");
        let keys = timed(self.meta.list(&prefix)).await?;
        let mut parts: Vec<PartRecord> = futures::stream::iter(keys)
            .map(|k| async move { timed(self.meta.get_json::<PartRecord>(&k)).await })
            .buffered(16)
            .try_filter_map(|p| std::future::ready(Ok(p)))
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }

    pub(crate) async fn list_uploads(&self, bucket: &str) -> Result<Vec<UploadRecord>> {
        let keys = timed(self.meta.list("uploads/")).await?;
        let ids: Vec<String> = keys
            .iter()
            .filter_map(|k| k.strip_prefix("uploads/")?.strip_suffix(".json"))
            .filter(|id| !id.contains('/'))
            .map(str::to_owned)
            .collect();
        let mut uploads = futures::stream::iter(ids)
            .map(|id| async move { self.gateway_upload(&id).await.ok() })
            .buffered(16)
            .filter_map(|u| async move { u })
            .map(|u| u.record)
            .filter(|r| std::future::ready(r.bucket == bucket))
            .collect::<Vec<_>>()
            .await;
        uploads.sort_by(|a, b| (&a.key, a.initiated_ns).cmp(&(&b.key, b.initiated_ns)));
        Ok(uploads)
    }

    async fn forget_upload(&self, upload_id: &str) -> Result<()> {
        for k in timed(self.meta.list(&format!("uploads/{upload_id}/"))).await? {
            timed(self.meta.delete(&k)).await?;
        }
        timed(self.meta.delete(&upload_key(upload_id))).await
    }

    pub(crate) async fn abort_upload(&self, upload_id: &str) -> Result<()> {
        let upload = self.gateway_upload(upload_id).await?;
        let aborted = timed(async {
            self.client
                .abort_multipart_upload()
                .bucket(&upload.record.bucket)
                .key(&upload.record.key)
                .upload_id(&upload.backend_upload_id)
                .send()
                .await
                .map_err(backend_error)
        })
        .await;
        match aborted {
            Ok(_) | Err(StoreError::NoSuchUpload) => self.forget_upload(upload_id).await,
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn complete_upload(
        &self,
        upload_id: &str,
        requested: Vec<(u32, String)>,
        cond: WriteCondition,
    ) -> Result<ObjectRecord> {
        let upload = self.gateway_upload(upload_id).await?;
        let stored = self.list_parts(upload_id).await?;
        let mut rec = crate::embedded::assemble(
            &upload.record,
            &stored,
            &requested,
            self.opts.min_part_size,
        )?;
        rec.version = rec.etag.clone();
        let (bucket, key) = (&upload.record.bucket, &upload.record.key);
        let previous = self.check_condition(bucket, key, &cond).await?;
        let expected = rec.etag.clone();
        self.write_version_records(bucket, key, &expected, &rec, None)
            .await?;
        let parts: Vec<CompletedPart> = requested
            .iter()
            .filter_map(|(n, _)| {
                let part = stored.iter().find(|p| p.part_number == *n)?;
                Some(
                    CompletedPart::builder()
                        .part_number(i32::try_from(*n).ok()?)
                        .e_tag(quote(&part.etag))
                        .build(),
                )
            })
            .collect();
        let etag = timed(async {
            self.client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload.backend_upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|o| unquote(o.e_tag()))
                .map_err(backend_error)
        })
        .await?;
        self.settle_version(
            bucket,
            key,
            Some(&expected),
            &etag,
            &mut rec,
            None,
            previous,
        )
        .await;
        if let Err(e) = self.forget_upload(upload_id).await {
            tracing::debug!(error = %e, "could not remove a completed upload's records");
        }
        Ok(rec)
    }

    // ---- torrents ----

    pub(crate) async fn stored_pieces(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> Result<Option<StoredPieces>> {
        match timed(self.meta.get(&pieces_key(bucket, key, etag))).await? {
            Some(b) => Ok(Some(StoredPieces::decode(&b)?)),
            None => Ok(None),
        }
    }

    /// Drops the cached piece hashes of one version, so the next read asks the backend.
    pub(crate) fn forget_pieces(&self, bucket: &str, key: &str, etag: &str) {
        self.meta.forget(&pieces_key(bucket, key, etag));
    }

    /// Another node changed the metadata record `key` (empty: anything): forget what this
    /// node cached of it.
    pub(crate) fn forget_cached(&self, key: &str) {
        if key.is_empty() {
            self.meta.forget_all();
            if let Ok(mut seen) = self.buckets_seen.lock() {
                seen.clear();
            }
            return;
        }
        self.meta.forget(key);
        if let Some(bucket) = key
            .strip_prefix("buckets/")
            .and_then(|k| k.strip_suffix(".json"))
            && let Ok(mut seen) = self.buckets_seen.lock()
        {
            seen.remove(bucket);
        }
    }

    pub(crate) async fn put_pieces(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
        p: &StoredPieces,
    ) -> Result<()> {
        timed(
            self.meta
                .put(&pieces_key(bucket, key, etag), Bytes::from(p.encode())),
        )
        .await
    }

    /// Records an issued torrent under each of its info-hashes, as their source for its object
    /// (replacing that object's earlier record).
    pub(crate) async fn issue_torrent(
        &self,
        hashes: Vec<String>,
        rec: IssuedTorrent,
    ) -> Result<()> {
        let id = rec.object_id();
        for h in hashes {
            let key = format!("{}{id}.json", torrent_sources_folder(&h));
            if timed(self.meta.get_json::<IssuedTorrent>(&key))
                .await?
                .as_ref()
                != Some(&rec)
            {
                timed(self.meta.put_json(&key, &rec)).await?;
            }
        }
        Ok(())
    }

    /// Every info-hash (hex) with a recorded source: one listing of the metadata bucket's
    /// `torrents/` folder.
    pub(crate) async fn issued_info_hashes(&self) -> Result<Vec<String>> {
        let mut out: Vec<String> = timed(self.meta.list("torrents/"))
            .await?
            .iter()
            .filter_map(|k| {
                let rest = k.strip_prefix("torrents/")?;
                let hash = rest.split(['/', '.']).next()?;
                Some(hash.to_owned())
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    pub(crate) async fn torrent_sources(&self, info_hash: &str) -> Result<TorrentSources> {
        if info_hash.len() > 64 || !info_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(TorrentSources::default());
        }
        let folder = torrent_sources_folder(info_hash);
        let mut records = Vec::new();
        for key in timed(self.meta.list_cached(&folder)).await? {
            if let Some(rec) = timed(self.meta.get_json(&key)).await? {
                records.push(rec);
            }
        }
        let legacy = timed(self.meta.get_json(&legacy_torrent_key(info_hash))).await?;
        Ok(TorrentSources::new(records, legacy))
    }
}
