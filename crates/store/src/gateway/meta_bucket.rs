//! The metadata bucket: everything a gateway node needs beyond the objects themselves, kept as
//! small objects in one backend bucket so that any node can serve any request.
//!
//! Layout (`docs/deployment.md` lists it for operators):
//! - `keys.json`: access keys (the same document as embedded mode's `keys.json`)
//! - `server.secret`: the secret of the token MACs in private torrents (hex)
//! - `buckets/{bucket}.json`: owner, ACL, policy, CORS of a bucket
//! - `objects/{bucket}/{key}.json`: owner, ACL, tags and checksums of an object, valid for the
//!   backend ETag it names
//! - `pieces/{sha256(bucket/key)}/{etag}`: torrent piece hashes of one object version
//! - `torrents/{info-hash}/{object id}.json`: the torrent an object issued under an info-hash,
//!   one per object serving it (`pieces::TorrentSources`); `torrents/{info-hash}.json`, the
//!   format of before (one record per info-hash), is still read
//! - `uploads/{id}.json`, `uploads/{id}/{part:05}.json`: multipart uploads in progress
//!
//! Reads are cached for a few seconds ([`MetaBucket::get`]); writes through this node update
//! its cache at once and are announced on the store's change channel. Other nodes see a change
//! when their cached copy expires, or at once when a change notice reaches them (Redis).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::backend_error;
use crate::cluster::MetaChange;
use crate::error::{Result, StoreError};

/// Cached entries at most; past it the cache starts over.
const MAX_CACHED: usize = 50_000;

/// What a folder's cached listing is kept under: no stored key ends in a `/` then a NUL.
const LISTING: &str = "\0";

/// The cache entry of the listing of `key`'s folder.
fn listing_entry(key: &str) -> String {
    let folder = key.rsplit_once('/').map_or("", |(f, _)| f);
    format!("{folder}/{LISTING}")
}

pub(crate) struct MetaBucket {
    client: Client,
    pub(crate) bucket: String,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Option<Bytes>)>>,
    changes: tokio::sync::broadcast::Sender<MetaChange>,
}

impl MetaBucket {
    pub(crate) fn new(
        client: Client,
        bucket: String,
        ttl: Duration,
        changes: tokio::sync::broadcast::Sender<MetaChange>,
    ) -> Self {
        Self {
            client,
            bucket,
            ttl,
            cache: Mutex::default(),
            changes,
        }
    }

    /// Tells this node's listeners (and, through them, the other nodes) that `key` changed.
    fn announce(&self, key: &str) {
        let _ = self.changes.send(MetaChange {
            key: key.to_owned(),
            remote: false,
        });
    }

    /// Forgets every cached entry.
    pub(crate) fn forget_all(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }

    fn remember(&self, key: &str, value: Option<Bytes>) {
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= MAX_CACHED {
                c.clear();
            }
            c.insert(key.to_owned(), (Instant::now(), value));
        }
    }

    /// Forgets a cached entry (another node changed it, or a caller needs it fresh), and the
    /// cached listing of its folder.
    pub(crate) fn forget(&self, key: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(key);
            c.remove(&listing_entry(key));
        }
    }

    /// The object under `key`, as cached within the last few seconds.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        if let Ok(c) = self.cache.lock()
            && let Some((at, v)) = c.get(key)
            && at.elapsed() < self.ttl
        {
            return Ok(v.clone());
        }
        self.get_fresh(key).await
    }

    /// The object under `key`, read from the backend now.
    pub(crate) async fn get_fresh(&self, key: &str) -> Result<Option<Bytes>> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let value = match out {
            Ok(o) => Some(
                o.body
                    .collect()
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?
                    .into_bytes(),
            ),
            Err(e) => match backend_error(e) {
                StoreError::NoSuchKey => None,
                other => return Err(other),
            },
        };
        self.remember(key, value.clone());
        Ok(value)
    }

    pub(crate) async fn put(&self, key: &str, value: Bytes) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(value.clone()))
            .send()
            .await
            .map_err(backend_error)?;
        self.remember(key, Some(value));
        if let Ok(mut c) = self.cache.lock() {
            c.remove(&listing_entry(key));
        }
        self.announce(key);
        Ok(())
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(backend_error)?;
        self.remember(key, None);
        self.announce(key);
        Ok(())
    }

    /// Every key under `prefix`.
    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(backend_error)?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => return Ok(keys),
            }
        }
    }

    /// Every key under `prefix` (which ends in `/`), as listed within the last few seconds; a
    /// write through this node, or a change notice, under that folder lists it again.
    pub(crate) async fn list_cached(&self, prefix: &str) -> Result<Vec<String>> {
        let entry = format!("{prefix}{LISTING}");
        if let Ok(c) = self.cache.lock()
            && let Some((at, Some(v))) = c.get(&entry)
            && at.elapsed() < self.ttl
        {
            return Ok(String::from_utf8_lossy(v)
                .split('\n')
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect());
        }
        let keys = self.list(prefix).await?;
        self.remember(&entry, Some(Bytes::from(keys.join("\n"))));
        Ok(keys)
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.get(key).await? {
            Some(b) => Ok(Some(serde_json::from_slice(&b)?)),
            None => Ok(None),
        }
    }

    pub(crate) async fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let body = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.put(key, Bytes::from(body)).await
    }
}
