//! Which torrent an encrypted handshake names: it sends `SHA1("req2" info-hash)`, never the
//! info-hash, so the seeder keeps that digest for every issued info-hash.
//!
//! The index is rebuilt from the store's record of issued torrents
//! ([`seedbucket_store::Store::issued_info_hashes`]) when a digest is not in it, at most once
//! per [`REBUILD_EVERY`] (a handshake that misses just after a rebuild waits for the next,
//! well within the handshake timeout), so a torrent issued a moment ago, on this node or
//! another, is found, and a stream of made-up digests costs one scan per interval at most.
//! Handshakes that miss while a rebuild is due all wait for that one rebuild, so made-up
//! digests never queue an honest handshake behind more than one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use seedbucket_store::Store;
use seedbucket_wire::peer::mse::obfuscated_info_hash;

/// Least time between two rebuilds.
pub(crate) const REBUILD_EVERY: Duration = Duration::from_secs(1);
/// Most info-hashes indexed (40 bytes each).
const MAX_ENTRIES: usize = 4_000_000;

#[derive(Default)]
pub(crate) struct ObfuscatedIndex {
    by_digest: Mutex<HashMap<[u8; 20], [u8; 20]>>,
    /// When the last rebuild started; held during a rebuild so only one runs.
    rebuilt: tokio::sync::Mutex<Option<Instant>>,
}

/// The 20 bytes a handshake uses for a recorded info-hash (hex): a v1 hash, or a v2 hash
/// truncated.
fn handshake_hash(hex_hash: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    hex::decode_to_slice(hex_hash.get(..40)?, &mut out).ok()?;
    Some(out)
}

impl ObfuscatedIndex {
    fn get(&self, digest: &[u8; 20]) -> Option<[u8; 20]> {
        self.by_digest.lock().ok()?.get(digest).copied()
    }

    pub(crate) async fn resolve(&self, store: &Store, digest: &[u8; 20]) -> Option<[u8; 20]> {
        if let Some(h) = self.get(digest) {
            return Some(h);
        }
        let asked = Instant::now();
        let mut rebuilt = self.rebuilt.lock().await;
        // A rebuild that started after this handshake asked answers it too, found or not:
        // handshakes waiting together share one rebuild.
        if let Some(h) = self.get(digest) {
            return Some(h);
        }
        if rebuilt.is_some_and(|at| at >= asked) {
            return None;
        }
        if let Some(at) = *rebuilt {
            tokio::time::sleep_until((at + REBUILD_EVERY).into()).await;
        }
        *rebuilt = Some(Instant::now());
        let hashes = match store.issued_info_hashes().await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list issued torrents for encrypted handshakes");
                return None;
            }
        };
        let fresh: HashMap<[u8; 20], [u8; 20]> = hashes
            .iter()
            .map(String::as_str)
            .filter_map(handshake_hash)
            .take(MAX_ENTRIES)
            .map(|h| (obfuscated_info_hash(&h), h))
            .collect();
        let found = fresh.get(digest).copied();
        if let Ok(mut m) = self.by_digest.lock() {
            *m = fresh;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_hashes() {
        let v1 = "aa".repeat(20);
        let v2 = "bb".repeat(32);
        assert_eq!(handshake_hash(&v1), Some([0xAA; 20]));
        assert_eq!(handshake_hash(&v2), Some([0xBB; 20]));
        assert_eq!(handshake_hash("abc"), None);
        assert_eq!(handshake_hash(&"zz".repeat(20)), None);
    }
}
