//! Reading object bytes from the backend: plain ranged streams for S3 GETs, and the piece
//! cache for BitTorrent readers (the seeder and the webseed).
//!
//! Every request carries `If-Match` with the version's ETag: once the object changed in the
//! backend, the next read fails (412) instead of returning other bytes.
//!
//! The piece cache holds aligned [`BLOCK`]-byte runs of recently served objects, least recently
//! used first out, within a byte budget (`--piece-cache`). Concurrent readers of a missing block
//! wait on one backend read, so a swarm asking for the same piece costs one GET.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use tokio::sync::{OnceCell, mpsc};

use super::Gateway;
use crate::error::StoreError;

/// The unit of the piece cache and of backend reads for BitTorrent: 1 MiB, a whole number of
/// pieces or of 16 KiB blocks for every piece length the size rule picks.
pub(crate) const BLOCK: u64 = 1024 * 1024;

type BlockKey = (Arc<str>, u64);

struct CacheEntry {
    cell: Arc<OnceCell<Bytes>>,
    len: u64,
    used: u64,
}

#[derive(Default)]
struct CacheState {
    entries: HashMap<BlockKey, CacheEntry>,
    bytes: u64,
    clock: u64,
}

/// The bounded, least-recently-used cache of object blocks.
pub(crate) struct BlockCache {
    budget: u64,
    state: Mutex<CacheState>,
}

impl BlockCache {
    pub(crate) fn new(budget: u64) -> Self {
        Self {
            budget,
            state: Mutex::default(),
        }
    }

    /// The block under `key`, read with `fetch` if no one holds or is reading it.
    async fn get_or_fetch<F, Fut>(
        &self,
        key: BlockKey,
        len: u64,
        fetch: F,
    ) -> std::io::Result<Bytes>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = std::io::Result<Bytes>>,
    {
        if self.budget < len {
            return fetch().await;
        }
        let cell = {
            let mut st = self
                .state
                .lock()
                .map_err(|_| std::io::Error::other("piece cache poisoned"))?;
            st.clock += 1;
            let clock = st.clock;
            let cell = match st.entries.get_mut(&key) {
                Some(e) => {
                    e.used = clock;
                    e.cell.clone()
                }
                None => {
                    let cell = Arc::new(OnceCell::new());
                    st.entries.insert(
                        key.clone(),
                        CacheEntry {
                            cell: cell.clone(),
                            len,
                            used: clock,
                        },
                    );
                    st.bytes += len;
                    cell
                }
            };
            while st.bytes > self.budget {
                let Some(oldest) = st
                    .entries
                    .iter()
                    .filter(|(k, _)| **k != key)
                    .min_by_key(|(_, e)| e.used)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                if let Some(gone) = st.entries.remove(&oldest) {
                    st.bytes -= gone.len;
                }
            }
            cell
        };
        match cell.get_or_try_init(fetch).await {
            Ok(b) => Ok(b.clone()),
            Err(e) => {
                // Forget the failed block, so the next reader tries again.
                if let Ok(mut st) = self.state.lock()
                    && st
                        .entries
                        .get(&key)
                        .is_some_and(|e| Arc::ptr_eq(&e.cell, &cell) && !e.cell.initialized())
                    && let Some(gone) = st.entries.remove(&key)
                {
                    st.bytes -= gone.len;
                }
                Err(e)
            }
        }
    }
}

fn io_error(e: StoreError) -> std::io::Error {
    match e {
        StoreError::PreconditionFailed | StoreError::NoSuchKey => std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the object changed or is gone in the backend",
        ),
        other => std::io::Error::other(other.to_string()),
    }
}

/// One object version in the backend.
pub(crate) struct RemoteSource {
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) bucket: String,
    pub(crate) key: String,
    pub(crate) etag: String,
    pub(crate) size: u64,
    /// Names this version in the piece cache.
    pub(crate) id: Arc<str>,
}

impl RemoteSource {
    pub(crate) fn new(
        gateway: Arc<Gateway>,
        bucket: &str,
        key: &str,
        etag: &str,
        size: u64,
    ) -> Self {
        Self {
            gateway,
            id: Arc::from(format!("{bucket}\0{key}\0{etag}")),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            etag: etag.to_owned(),
            size,
        }
    }

    /// Bytes `[start, end)` in one backend GET (the caller keeps the range inside the object).
    async fn fetch(&self, start: u64, end: u64) -> std::io::Result<Bytes> {
        let mut rx = self
            .gateway
            .get_range(&self.bucket, &self.key, &self.etag, start, end)
            .await
            .map_err(io_error)?;
        let mut out = BytesMut::with_capacity(usize::try_from(end - start).unwrap_or(0));
        while let Some(chunk) = rx.next().await {
            out.extend_from_slice(&chunk.map_err(io_error)?);
        }
        if out.len() as u64 != end - start {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the backend returned a short range",
            ));
        }
        Ok(out.freeze())
    }

    async fn block(&self, index: u64) -> std::io::Result<Bytes> {
        let start = index * BLOCK;
        let end = (start + BLOCK).min(self.size);
        self.gateway
            .cache
            .get_or_fetch((self.id.clone(), index), end - start, || {
                self.fetch(start, end)
            })
            .await
    }

    /// `len` bytes at `offset`, through the piece cache.
    pub(crate) async fn read(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        let end = offset
            .checked_add(len as u64)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "read past the end")
            })?;
        if len == 0 {
            return Ok(Bytes::new());
        }
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        if first == last {
            let block = self.block(first).await?;
            let lo = usize::try_from(offset - first * BLOCK).map_err(std::io::Error::other)?;
            return Ok(block.slice(lo..lo + len));
        }
        let mut out = BytesMut::with_capacity(len);
        for index in first..=last {
            let block = self.block(index).await?;
            let block_start = index * BLOCK;
            let lo = usize::try_from(offset.max(block_start) - block_start)
                .map_err(std::io::Error::other)?;
            let hi = usize::try_from(end.min(block_start + block.len() as u64) - block_start)
                .map_err(std::io::Error::other)?;
            out.extend_from_slice(&block[lo..hi]);
        }
        Ok(out.freeze())
    }

    /// Streams `[start, end)` in one backend GET (S3 GetObject, hashing).
    pub(crate) fn stream(self, start: u64, end: u64) -> mpsc::Receiver<std::io::Result<Bytes>> {
        let (tx, rx) = mpsc::channel(4);
        if start >= end {
            return rx;
        }
        tokio::spawn(async move {
            let mut body = match self
                .gateway
                .get_range(&self.bucket, &self.key, &self.etag, start, end)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(io_error(e))).await;
                    return;
                }
            };
            let mut sent = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(io_error);
                if let Ok(c) = &chunk {
                    sent += c.len() as u64;
                }
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
            if sent != end - start {
                let _ = tx
                    .send(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the backend ended the object early",
                    )))
                    .await;
            }
        });
        rx
    }

    /// Streams `[start, end)` block by block through the piece cache, two blocks in flight.
    pub(crate) fn stream_cached(
        self,
        start: u64,
        end: u64,
    ) -> mpsc::Receiver<std::io::Result<Bytes>> {
        let (tx, rx) = mpsc::channel(4);
        if start >= end {
            return rx;
        }
        tokio::spawn(async move {
            let me = &self;
            let mut blocks = futures::stream::iter(start / BLOCK..=(end - 1) / BLOCK)
                .map(|i| async move { (i, me.block(i).await) })
                .buffered(2);
            while let Some((index, block)) = blocks.next().await {
                let block = match block {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let block_start = index * BLOCK;
                let lo = (start.max(block_start) - block_start) as usize;
                let hi = (end.min(block_start + block.len() as u64) - block_start) as usize;
                if tx.send(Ok(block.slice(lo..hi))).await.is_err() {
                    return;
                }
            }
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_cache_keeps_recent_blocks_within_its_budget_and_reads_each_once() {
        let cache = BlockCache::new(3 * BLOCK);
        let reads = std::sync::atomic::AtomicUsize::new(0);
        let id: Arc<str> = Arc::from("b\0k\0e");
        let reads_ref = &reads;
        let get = |i: u64| {
            cache.get_or_fetch((id.clone(), i), BLOCK, move || async move {
                reads_ref.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(Bytes::from(vec![i as u8; 4]))
            })
        };
        for i in [0, 1, 2, 0, 1, 2] {
            assert_eq!(get(i).await.unwrap()[0], i as u8);
        }
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 3);
        get(3).await.unwrap(); // evicts block 0, the least recently used
        get(1).await.unwrap();
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 4);
        get(0).await.unwrap();
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 5);
        let st = cache.state.lock().unwrap();
        assert!(st.bytes <= 3 * BLOCK && st.entries.len() == 3);
    }
}
