//! A [`Library`] over content held in memory: for tests, examples and benchmarks.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::{Library, SeedTorrent};

/// A torrent and its content.
type Entry = (Arc<SeedTorrent>, Bytes);

/// Torrents and their content in memory, found by v1 or truncated v2 info-hash.
#[derive(Debug, Default)]
pub struct MemoryLibrary {
    torrents: RwLock<HashMap<[u8; 20], Entry>>,
    uploaded: AtomicU64,
}

impl MemoryLibrary {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `torrent` with its `content` under each of its info-hashes.
    pub fn insert(&self, torrent: SeedTorrent, content: Bytes) -> Arc<SeedTorrent> {
        let torrent = Arc::new(torrent);
        if let Ok(mut map) = self.torrents.write() {
            for ih in [torrent.info_hash_v1, torrent.info_hash_v2_truncated()]
                .into_iter()
                .flatten()
            {
                map.insert(ih, (Arc::clone(&torrent), content.clone()));
            }
        }
        torrent
    }

    /// Removes the torrent with this info-hash (and its other hash): later reads fail.
    pub fn remove(&self, info_hash: &[u8; 20]) {
        if let Ok(mut map) = self.torrents.write()
            && let Some((t, _)) = map.remove(info_hash)
        {
            map.retain(|_, (other, _)| !Arc::ptr_eq(other, &t));
        }
    }

    /// Bytes reported through [`Library::uploaded`].
    pub fn uploaded_bytes(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    fn content(&self, torrent: &SeedTorrent) -> Option<Bytes> {
        let map = self.torrents.read().ok()?;
        let ih = torrent
            .info_hash_v1
            .or_else(|| torrent.info_hash_v2_truncated())?;
        map.get(&ih).map(|(_, c)| c.clone())
    }
}

#[async_trait::async_trait]
impl Library for MemoryLibrary {
    async fn lookup(&self, info_hash: &[u8; 20], _peer: SocketAddr) -> Option<Arc<SeedTorrent>> {
        let map = self.torrents.read().ok()?;
        map.get(info_hash).map(|(t, _)| Arc::clone(t))
    }

    async fn read(&self, torrent: &SeedTorrent, offset: u64, len: u32) -> io::Result<Bytes> {
        let content = self
            .content(torrent)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "torrent removed"))?;
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let end = start
            .checked_add(len as usize)
            .filter(|e| *e <= content.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        Ok(content.slice(start..end))
    }

    async fn resolve_obfuscated(&self, obfuscated: &[u8; 20]) -> Option<[u8; 20]> {
        let map = self.torrents.read().ok()?;
        map.keys()
            .find(|ih| seedbucket_wire::peer::mse::obfuscated_info_hash(ih) == *obfuscated)
            .copied()
    }

    fn uploaded(&self, _torrent: &SeedTorrent, bytes: u64) {
        self.uploaded.fetch_add(bytes, Ordering::Relaxed);
    }
}
