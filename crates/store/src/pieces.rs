//! Stored torrent piece hashes of an object version, and the registry of issued torrents.
//!
//! An info-hash is a function of the bytes and the file name, so several objects can issue the
//! same one: the registry keeps one [`IssuedTorrent`] per object (bucket and key) under each
//! info-hash, and [`TorrentSources`] is what one info-hash maps to.
//!
//! The hashes are made while a PUT is written (or once, lazily, for objects that have none) and
//! kept in a compact binary record: piece length, length, creation time, then the v1 SHA-1
//! pieces, the v2 pieces root and the v2 piece layer, each with a presence flag and length.

use seedbucket_torrent::PieceHashes;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// Piece hashes plus when they were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPieces {
    pub hashes: PieceHashes,
    pub created_ns: i64,
}

fn put_blob(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(b);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(StoreError::Corrupt("truncated piece record".into()));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn blob(&mut self) -> Result<Option<Vec<u8>>> {
        match self.take(1)?[0] {
            0 => Ok(None),
            _ => {
                let n = usize::try_from(self.u64()?)
                    .map_err(|_| StoreError::Corrupt("piece record length".into()))?;
                Ok(Some(self.take(n)?.to_vec()))
            }
        }
    }
}

impl StoredPieces {
    pub fn encode(&self) -> Vec<u8> {
        let h = &self.hashes;
        let mut out = Vec::with_capacity(
            64 + h.v1_pieces.as_ref().map_or(0, Vec::len) + h.v2_layer.as_ref().map_or(0, Vec::len),
        );
        out.push(1); // record version
        out.extend_from_slice(&h.piece_length.to_le_bytes());
        out.extend_from_slice(&h.length.to_le_bytes());
        out.extend_from_slice(&self.created_ns.to_le_bytes());
        put_blob(&mut out, h.v1_pieces.as_deref());
        put_blob(&mut out, h.v2_root.as_ref().map(|r| r.as_slice()));
        put_blob(&mut out, h.v2_layer.as_deref());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader(bytes);
        if r.take(1)?[0] != 1 {
            return Err(StoreError::Corrupt("unknown piece record version".into()));
        }
        let piece_length = r.u64()?;
        let length = r.u64()?;
        let created_ns = i64::from_le_bytes(r.u64()?.to_le_bytes());
        let v1_pieces = r.blob()?;
        let v2_root = match r.blob()? {
            None => None,
            Some(b) => Some(
                <[u8; 32]>::try_from(b.as_slice())
                    .map_err(|_| StoreError::Corrupt("pieces root size".into()))?,
            ),
        };
        let v2_layer = r.blob()?;
        Ok(Self {
            hashes: PieceHashes {
                length,
                piece_length,
                v1_pieces,
                v2_root,
                v2_layer,
            },
            created_ns,
        })
    }
}

/// A torrent handed out by GetObjectTorrent: which object version its info-hash serves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IssuedTorrent {
    pub bucket: String,
    pub key: String,
    /// The object version (see `ObjectRecord::version`): a changed object is never served under
    /// an old info-hash.
    pub version: String,
    pub name: String,
    /// `v1`, `hybrid` or `v2`.
    pub format: String,
    pub private: bool,
    /// The v1 info-hash (hex), or the v2 one for a v2-only torrent.
    pub info_hash: String,
    pub created_ns: i64,
}

/// The id of an object (bucket and key) among the sources of an info-hash: hex of the first 16
/// bytes of SHA-256 over `bucket`, a NUL and `key`. Private torrents' tokens name it, and the
/// registry files records under it.
pub fn object_id(bucket: &str, key: &str) -> String {
    hex::encode(object_digest(bucket, key))
}

/// The bytes [`object_id`] is the hex of.
fn object_digest(bucket: &str, key: &str) -> [u8; 16] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(bucket.as_bytes());
    h.update([0u8]);
    h.update(key.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize()[..16]);
    id
}

impl IssuedTorrent {
    /// [`object_id`] of this record's object.
    pub fn object_id(&self) -> String {
        object_id(&self.bucket, &self.key)
    }

    /// The key of its swarm: the primary info-hash (both hashes of a hybrid share one swarm);
    /// `None` for a record whose hex is damaged.
    pub fn swarm_key(&self) -> Option<[u8; 20]> {
        let mut key = [0u8; 20];
        hex::decode_to_slice(&self.info_hash, &mut key).ok()?;
        Some(key)
    }
}

/// Every object recorded as serving one info-hash. Their bytes and file name are identical
/// (that is what the info-hash says), so any of them that is still unchanged can serve it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TorrentSources {
    /// One record per object: the version its latest `?torrent` was made from.
    pub records: Vec<IssuedTorrent>,
    /// The object of a record kept in the format of before, one record per info-hash: tokens
    /// made then name no object and were issued for that one.
    pub legacy: Option<String>,
}

impl TorrentSources {
    /// Sources from per-object records and an optional record of the old format (which counts
    /// only when no per-object record names its object).
    pub fn new(mut records: Vec<IssuedTorrent>, legacy: Option<IssuedTorrent>) -> Self {
        let legacy = legacy.map(|old| {
            let id = old.object_id();
            if !records.iter().any(|r| r.object_id() == id) {
                records.push(old);
            }
            id
        });
        Self { records, legacy }
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether the torrent is private (the flag is in the info dict, so all records agree).
    pub fn private(&self) -> bool {
        self.records.first().is_some_and(|r| r.private)
    }

    /// The record of the object with this id (`None`: the legacy record).
    pub fn of_object(&self, id: Option<&str>) -> Option<&IssuedTorrent> {
        let id = id.or(self.legacy.as_deref())?;
        // Compared as bytes: no hex string per record (asked on every private announce).
        let mut digest = [0u8; 16];
        hex::decode_to_slice(id, &mut digest).ok()?;
        self.records
            .iter()
            .find(|r| object_digest(&r.bucket, &r.key) == digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = StoredPieces {
            hashes: PieceHashes {
                length: 100,
                piece_length: 16384,
                v1_pieces: Some(vec![1; 20]),
                v2_root: Some([2; 32]),
                v2_layer: Some(Vec::new()),
            },
            created_ns: -5,
        };
        assert_eq!(StoredPieces::decode(&p.encode()).unwrap(), p);
        assert!(StoredPieces::decode(&p.encode()[..10]).is_err());
    }

    fn issued(bucket: &str, version: &str) -> IssuedTorrent {
        IssuedTorrent {
            bucket: bucket.into(),
            key: "k/weights.bin".into(),
            version: version.into(),
            name: "weights.bin".into(),
            format: "hybrid".into(),
            private: true,
            info_hash: "ab".repeat(20),
            created_ns: 0,
        }
    }

    #[test]
    fn sources_keep_every_object_and_the_legacy_one() {
        let s = TorrentSources::new(vec![issued("b1", "v2")], Some(issued("b1", "v1")));
        assert_eq!(
            s.records.len(),
            1,
            "a newer record of the legacy object replaces it"
        );
        assert_eq!(s.of_object(None).map(|r| r.version.as_str()), Some("v2"));
        let s = TorrentSources::new(vec![issued("b2", "x")], Some(issued("b1", "v1")));
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.of_object(None).map(|r| r.bucket.as_str()), Some("b1"));
        let b2 = object_id("b2", "k/weights.bin");
        assert_eq!(
            s.of_object(Some(&b2)).map(|r| r.bucket.as_str()),
            Some("b2")
        );
        assert!(s.of_object(Some(&object_id("b3", "k"))).is_none());
        assert!(
            TorrentSources::new(vec![issued("b2", "x")], None)
                .of_object(None)
                .is_none()
        );
        assert_ne!(object_id("a", "b/c"), object_id("a/b", "c"));
    }
}
