//! seedbucket's S3 HTTP layer.
//!
//! s3s is the wire codec (routing, SigV4 header/presigned/streaming verification, XML); this
//! crate owns what the operations mean: [`Seedbucket`] implements `s3s::S3` by calling the
//! store, checking ownership and S3's rules on the way. [`service`] wraps the s3s service with
//! request ids and the `/_seedbucket/` routes, which no bucket name can reach.

mod access;
mod auth;
pub mod body_limits;
mod conditional;
pub mod connections;
pub mod cors;
mod error;
mod error_body;
pub mod guarded_body;
pub(crate) mod handlers;
pub mod lifecycle;
mod obfuscated_index;
mod request_log;
pub mod seed_library;
pub mod service;
mod sigv4_checks;
pub mod stats;
pub mod tokens;
mod torrent_sources;
pub mod tracker_http;
mod tracker_ws;
mod udp_inbox;
mod udp_tracker;
mod webseed;

#[doc(hidden)]
pub mod parsers;

use std::sync::Arc;

use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};
use seedbucket_store::Store;
use seedbucket_store::credentials::KeyRing;

pub use crate::auth::KeyRingAuth;

/// Settings of the S3 layer.
#[derive(Clone)]
pub struct S3Options {
    /// Region reported by GetBucketLocation and expected in signatures (informational).
    pub region: String,
    /// Base of every URL handed out (announce, webseed), without a trailing `/`.
    pub public_url: String,
    /// Largest object GetObjectTorrent makes a torrent for (S3: 5 GiB).
    pub torrent_max_size: u64,
    /// The form `?torrent` answers when the request names none.
    pub torrent_format: seedbucket_torrent::Format,
    /// How long the webseed URL of a private torrent stays valid, in seconds.
    pub webseed_expiry_secs: u64,
    /// Key of the capability tokens in private torrents' URLs.
    pub token_key: tokens::TokenKey,
    /// Tracker announces per second per client address (0: no limit).
    pub tracker_rate_limit: u32,
    /// Track any info-hash, not only torrents this server issued.
    pub open_tracker: bool,
    /// Where our seeder accepts peers, as peers should dial it: added to every swarm's peer
    /// list (`None`: no seeder).
    pub seeder_addr: Option<std::net::SocketAddr>,
    /// Load balancers whose `X-Forwarded-For` names the real client of a tracker request.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// One line per request (`--access-log`); off by default in the library.
    pub access_log: seedbucket_access_log::AccessLog,
    /// List the WebSocket tracker in private torrents too (open ones always list it).
    pub webtorrent: bool,
    /// Bytes per second the webseed sends in all (0: no limit).
    pub webseed_rate_limit: u64,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            region: "us-east-1".to_owned(),
            public_url: "http://127.0.0.1:9000".to_owned(),
            torrent_max_size: 5 * 1024 * 1024 * 1024,
            torrent_format: seedbucket_torrent::Format::V1,
            webseed_expiry_secs: 7 * 24 * 3600,
            token_key: tokens::TokenKey::new(&[]),
            tracker_rate_limit: 50,
            open_tracker: false,
            seeder_addr: None,
            trusted_proxies: Vec::new(),
            access_log: seedbucket_access_log::AccessLog::off(),
            webtorrent: false,
            webseed_rate_limit: 0,
        }
    }
}

/// The S3 implementation over a [`Store`].
#[derive(Clone)]
pub struct Seedbucket {
    store: Store,
    keys: Arc<KeyRing>,
    /// Swarms, admissions, announce rate limits: in this process, or shared in Redis.
    tracker: Arc<dyn seedbucket_tracker::SwarmStore>,
    admission: Arc<tracker_http::AdmissionCache>,
    /// Browser swarms and WebSocket tracker sockets (this node's).
    browsers: Arc<tracker_ws::BrowserHub>,
    stats: Arc<stats::Stats>,
    options: Arc<S3Options>,
    /// The webseed's rate limit (`--webseed-rate-limit`); `None`: none.
    webseed_limit: Option<Arc<seedbucket_seeder::RateLimiter>>,
    /// Browser swarms shared with other gateway nodes (`--redis`); `None`: this node's only.
    shared_browsers: Option<Arc<dyn seedbucket_tracker::browser::SharedBrowsers>>,
    /// The last count of what is stored, and when it was made.
    usage: Arc<tokio::sync::Mutex<Option<CountedUsage>>>,
}

/// A count of what is stored (`None`: not countable here) and when it was made.
type CountedUsage = (std::time::Instant, Option<seedbucket_store::Usage>);

/// How long a count of what is stored is reused before the metadata is scanned again.
const USAGE_REUSED_FOR: std::time::Duration = std::time::Duration::from_secs(30);

impl Seedbucket {
    /// With the tracker's state in this process.
    pub fn new(store: Store, keys: Arc<KeyRing>, options: S3Options) -> Self {
        let tracker = Arc::new(seedbucket_tracker::Tracker::new(
            Default::default(),
            options.tracker_rate_limit,
            options.seeder_addr,
        ));
        Self::with_tracker(store, keys, options, tracker)
    }

    /// With the tracker's state where `tracker` keeps it (Redis, for several gateway nodes).
    pub fn with_tracker(
        store: Store,
        keys: Arc<KeyRing>,
        options: S3Options,
        tracker: Arc<dyn seedbucket_tracker::SwarmStore>,
    ) -> Self {
        let webseed_limit =
            seedbucket_seeder::RateLimiter::new(Some(options.webseed_rate_limit)).map(Arc::new);
        let app = Self {
            webseed_limit,
            store,
            keys,
            tracker,
            admission: Arc::default(),
            browsers: Arc::default(),
            stats: Arc::default(),
            options: Arc::new(options),
            usage: Arc::default(),
            shared_browsers: None,
        };
        app.drop_stale_answers_on_changes();
        app
    }
}

impl Seedbucket {
    /// Shares the WebSocket tracker's browser swarms with the other nodes through `shared`
    /// (Redis): offers and answers reach browsers connected to any node. Keeps this node's
    /// entries registered there while it runs.
    pub fn with_shared_browsers(
        mut self,
        shared: Arc<dyn seedbucket_tracker::browser::SharedBrowsers>,
    ) -> Self {
        let (hub, every) = (Arc::downgrade(&self.browsers), shared.refresh_every());
        let refreshing = shared.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    let Some(hub) = hub.upgrade() else { return };
                    let entries = hub.entries();
                    drop(hub);
                    if !entries.is_empty() {
                        refreshing.refresh(&entries, tracker_http::unix_now()).await;
                    }
                }
            });
        }
        self.shared_browsers = Some(shared);
        self
    }

    /// Hands a tracker message another node relayed to the browser `to` of `swarm`, if it is
    /// connected here.
    pub fn deliver_browser_message(&self, swarm: [u8; 20], to: [u8; 20], text: String) {
        self.browsers.deliver(swarm, to, text);
    }

    /// The metrics page (Prometheus text format).
    /// Per-request metrics are read by an installed recorder from now on.
    pub fn enable_request_metrics(&self) {
        self.stats.set_recording(true);
    }

    /// Sets the gauges read at scrape time (swarms, browser swarms): the admin listener calls
    /// it before it renders `/metrics`.
    pub async fn publish_gauges(&self) {
        use stats::set_gauge;
        let n = |v: usize| v as f64;
        if let Some(u) = self.storage_usage().await {
            set_gauge("seedbucket_stored_objects", u.objects as f64);
            set_gauge(
                "seedbucket_stored_noncurrent_versions",
                u.noncurrent_versions as f64,
            );
            set_gauge("seedbucket_stored_bytes", u.bytes as f64);
        }
        if let Some((torrents, peers)) = self.tracker.stats() {
            set_gauge("seedbucket_tracker_torrents", n(torrents));
            set_gauge("seedbucket_tracker_peers", n(peers));
        }
        let (swarms, peers) = self.browsers.stats();
        let (uploaded, downloaded) = self.browsers.reported_bytes();
        set_gauge("seedbucket_browser_swarms", n(swarms));
        set_gauge("seedbucket_browser_peers", n(peers));
        set_gauge("seedbucket_browser_sockets", n(self.browsers.sockets()));
        set_gauge(
            "seedbucket_browser_reported_uploaded_bytes",
            uploaded as f64,
        );
        set_gauge(
            "seedbucket_browser_reported_downloaded_bytes",
            downloaded as f64,
        );
    }

    /// Bytes uploaded over the peer wire and the webseed since start.
    pub fn uploaded(&self) -> (u64, u64) {
        self.stats.uploaded()
    }

    /// What `bucket`/`key` was served since start (the console's object page).
    pub fn object_traffic(&self, bucket: &str, key: &str) -> stats::ObjectTraffic {
        self.stats.object_traffic(bucket, key)
    }

    /// Hands `bucket` to the key whose user id is `user_id` (an administrator's change, made
    /// by the console and `seedbucket bucket chown`). The caller checked the right to do it.
    pub async fn set_bucket_owner(&self, bucket: &str, user_id: &str) -> Result<(), String> {
        let owner = user_id.to_owned();
        self.store
            .update_bucket(bucket, move |rec| {
                rec.owner = owner;
                Ok(())
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The owner (user id) of `bucket`, if it exists.
    pub async fn bucket_owner(&self, bucket: &str) -> Option<String> {
        self.store.bucket(bucket).await.ok().map(|b| b.owner)
    }

    /// Objects and bytes stored (embedded mode; `None` in gateway mode or when the metadata
    /// cannot be read), counted at most every 30 seconds: `/metrics`, the console's totals.
    pub async fn storage_usage(&self) -> Option<seedbucket_store::Usage> {
        let mut last = self.usage.lock().await;
        if let Some((at, usage)) = *last
            && at.elapsed() < USAGE_REUSED_FOR
        {
            return usage;
        }
        let usage = match self.store.usage().await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "could not count what is stored");
                None
            }
        };
        *last = Some((std::time::Instant::now(), usage));
        usage
    }

    /// The server's byte totals since start (the console's totals page).
    pub fn totals(&self) -> stats::Totals {
        self.stats.totals()
    }

    /// The swarm of a torrent this server issued for `bucket`/`key` (`info_hash`: its v1
    /// info-hash, or v2 for a v2-only torrent, in hex): seeders (this server's own seeders
    /// included), leechers, completed. `None` when the info-hash was not issued for that object
    /// or the tracker's state cannot be reached. Callers check the reader may read the object.
    pub async fn swarm_numbers(
        &self,
        bucket: &str,
        key: &str,
        info_hash: &str,
    ) -> Option<(u32, u32, u32)> {
        let sources = self.store.torrent_sources(info_hash).await.ok()?;
        let rec = sources
            .records
            .into_iter()
            .find(|r| r.bucket == bucket && r.key == key)?;
        let swarm = rec.swarm_key()?;
        let e = self.scrape_entry(&rec, &swarm).await;
        Some((e.complete, e.incomplete, e.downloaded))
    }

    /// A bucket's CORS rules (none if the bucket does not exist).
    pub(crate) async fn cors_rules(&self, bucket: &str) -> Vec<seedbucket_store::CorsRule> {
        self.store
            .bucket(bucket)
            .await
            .map(|b| b.cors)
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for Seedbucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seedbucket").finish_non_exhaustive()
    }
}

/// Each operation forwards to its handler in `handlers/`; what is not listed answers
/// NotImplemented (s3s's default).
#[async_trait::async_trait]
impl S3 for Seedbucket {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.h_list_buckets(req).await
    }
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.h_create_bucket(req).await
    }
    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.h_delete_bucket(req).await
    }
    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.h_head_bucket(req).await
    }
    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.h_get_bucket_location(req).await
    }
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.h_put_object(req).await
    }
    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.h_get_object(req).await
    }
    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.h_head_object(req).await
    }
    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.h_delete_object(req).await
    }
    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.h_delete_objects(req).await
    }
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.h_list_objects_v2(req).await
    }
    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.h_list_objects(req).await
    }
    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.h_create_multipart_upload(req).await
    }
    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.h_upload_part(req).await
    }
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.h_complete_multipart_upload(req).await
    }
    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.h_abort_multipart_upload(req).await
    }
    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.h_list_parts(req).await
    }
    async fn get_object_torrent(
        &self,
        req: S3Request<GetObjectTorrentInput>,
    ) -> S3Result<S3Response<GetObjectTorrentOutput>> {
        self.h_get_object_torrent(req).await
    }
    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.h_list_multipart_uploads(req).await
    }
    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        self.h_get_bucket_acl(req).await
    }
    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        self.h_put_bucket_acl(req).await
    }
    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        self.h_get_object_acl(req).await
    }
    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        self.h_put_object_acl(req).await
    }
    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        self.h_get_bucket_policy(req).await
    }
    async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        self.h_put_bucket_policy(req).await
    }
    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        self.h_delete_bucket_policy(req).await
    }
    async fn get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        self.h_get_bucket_policy_status(req).await
    }
    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        self.h_put_bucket_lifecycle_configuration(req).await
    }
    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        self.h_get_bucket_lifecycle_configuration(req).await
    }
    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        self.h_delete_bucket_lifecycle(req).await
    }
    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        self.h_get_bucket_encryption(req).await
    }
    async fn put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        self.h_put_bucket_encryption(req).await
    }
    async fn delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        self.h_delete_bucket_encryption(req).await
    }
    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        self.h_get_bucket_cors(req).await
    }
    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        self.h_put_bucket_cors(req).await
    }
    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        self.h_delete_bucket_cors(req).await
    }
    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        self.h_get_object_tagging(req).await
    }
    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        self.h_put_object_tagging(req).await
    }
    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        self.h_delete_object_tagging(req).await
    }
    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        self.h_list_object_versions(req).await
    }
    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.h_get_bucket_versioning(req).await
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        self.h_put_bucket_versioning(req).await
    }
    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.h_copy_object(req).await
    }
    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.h_upload_part_copy(req).await
    }
    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        self.h_get_object_attributes(req).await
    }
}
