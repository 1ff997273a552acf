//! The seeder's view of the store ([`seedbucket_seeder::Library`]): which torrents exist, who
//! may download them, and their bytes.
//!
//! - A handshake's info-hash must name a torrent this server issued, one of whose objects is
//!   unchanged since (`torrent_sources`: identical bytes under several keys share an info-hash).
//! - Open torrents: that object must still be readable by anyone. Private torrents: the peer's
//!   IP address must have announced that torrent to our tracker with a valid token within the
//!   last [`seedbucket_tracker::ADMISSION_WINDOW`], and that token's key must still be allowed
//!   to read the token's object. Knowing an info-hash is not enough to read a private object.
//! - Each served version keeps one pinned reader (its blobs survive an overwrite while peers
//!   finish a block); it is re-validated every few seconds, and once the object changed or was
//!   deleted, or lost its readers, reads fail and the seeder drops those peers.
//! - Every connected peer's right is asked again every 2 s by the seeder
//!   ([`Library::still_allowed`]): its admission, then whether its key may read the object,
//!   answered from the store and the keys afresh (one answer per key and torrent shared for
//!   [`ACCESS_FRESH`]), so a revocation stops the pieces within about 3 s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use seedbucket_seeder::{Library, SeedTorrent};
use seedbucket_store::pieces::IssuedTorrent;
use seedbucket_store::{ObjectReader, Which};
use seedbucket_torrent::Format;

use crate::Seedbucket;
use crate::obfuscated_index::ObfuscatedIndex;
use crate::tokens::TokenGrant;
use crate::torrent_sources::Resolved;

/// How often a served version is re-checked against the store and the access rules.
const REVALIDATE_EVERY: Duration = Duration::from_secs(5);
/// Served versions nobody read for this long are let go (and their pins with them).
const IDLE_AFTER: Duration = Duration::from_secs(120);
const MAX_SERVED: usize = 10_000;
/// How long one fresh answer to "may this key still read it" serves every connection of that
/// key to the torrent.
const ACCESS_FRESH: Duration = Duration::from_secs(1);
/// Answers kept per served torrent before they are all dropped.
const MAX_ACCESS_ANSWERS: usize = 1_000;

/// One version being served.
struct Served {
    /// The source the reader reads.
    issued: IssuedTorrent,
    /// The source the last admitted peer was checked against (the same bytes).
    admitted: IssuedTorrent,
    torrent: Arc<SeedTorrent>,
    reader: Arc<ObjectReader>,
    checked: Instant,
    used: Instant,
    /// Who the torrent was admitted for: `None` for open torrents.
    access_key: Option<String>,
    /// Recent answers of [`Library::still_allowed`], by access key (`None`: anyone).
    access: HashMap<Option<String>, (bool, Instant)>,
}

/// The [`Library`] over a [`Seedbucket`].
pub struct StoreLibrary {
    app: Seedbucket,
    /// Which info-hash an encrypted handshake names.
    obfuscated: ObfuscatedIndex,
    /// By every info-hash a torrent answers to (v1, v2 truncated).
    served: Mutex<HashMap<[u8; 20], Arc<Mutex<Served>>>>,
}

impl StoreLibrary {
    pub fn new(app: Seedbucket) -> Self {
        Self {
            app,
            obfuscated: ObfuscatedIndex::default(),
            served: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, info_hash: &[u8; 20]) -> Option<Arc<Mutex<Served>>> {
        self.served.lock().ok()?.get(info_hash).cloned()
    }

    /// Whether the reader's object still has the version it reads (current or not).
    async fn still_current(&self, issued: &IssuedTorrent) -> bool {
        self.app
            .store
            .head_object_at(&issued.bucket, &issued.key, Which::Exact(&issued.version))
            .await
            .is_ok()
    }

    async fn open(
        &self,
        info_hash: &[u8; 20],
        issued: IssuedTorrent,
    ) -> Option<Arc<Mutex<Served>>> {
        let reader = self
            .app
            .store
            .open_object_at(&issued.bucket, &issued.key, Which::Exact(&issued.version))
            .await
            .ok()?;
        if reader.record.is_sse_c() {
            return None;
        }
        let pieces = self
            .app
            .store
            .pieces_of(&reader.record, &issued.bucket, &issued.key)
            .await
            .ok()?;
        let format = Format::parse(&issued.format)?;
        let torrent = SeedTorrent::build(
            format!("{}/{}", issued.bucket, issued.key),
            &issued.name,
            &pieces.hashes,
            format,
            issued.private,
        )
        .ok()?;
        if !torrent.matches(info_hash) {
            tracing::warn!(info_hash = %hex::encode(info_hash), "rebuilt torrent does not match its info-hash");
            return None;
        }
        let now = Instant::now();
        let entry = Arc::new(Mutex::new(Served {
            admitted: issued.clone(),
            issued,
            torrent: Arc::new(torrent.clone()),
            reader: Arc::new(reader),
            checked: now,
            used: now,
            access_key: None,
            access: HashMap::new(),
        }));
        if let Ok(mut m) = self.served.lock() {
            if m.len() >= MAX_SERVED {
                m.retain(|_, e| {
                    e.lock()
                        .map(|e| e.used.elapsed() < IDLE_AFTER)
                        .unwrap_or(false)
                });
            }
            for h in [torrent.info_hash_v1, torrent.info_hash_v2_truncated()]
                .into_iter()
                .flatten()
            {
                m.insert(h, entry.clone());
            }
        }
        Some(entry)
    }

    fn forget(&self, torrent: &SeedTorrent) {
        if let Ok(mut m) = self.served.lock() {
            for h in [torrent.info_hash_v1, torrent.info_hash_v2_truncated()]
                .into_iter()
                .flatten()
            {
                m.remove(&h);
            }
        }
    }
}

#[async_trait::async_trait]
impl Library for StoreLibrary {
    async fn lookup(&self, info_hash: &[u8; 20], peer: SocketAddr) -> Option<Arc<SeedTorrent>> {
        let sources = self
            .app
            .store
            .torrent_sources(&hex::encode(info_hash))
            .await
            .ok()?;
        let mut primary = [0u8; 20];
        hex::decode_to_slice(&sources.records.first()?.info_hash, &mut primary).ok()?;
        let grant = if sources.private() {
            let admission = self
                .app
                .tracker
                .admission(primary, peer.ip())
                .await
                .ok()??;
            Some(TokenGrant::from_admission(&admission))
        } else {
            None
        };
        let Resolved::Serve(issued) = self.app.resolve_source(&sources, grant.as_ref()).await
        else {
            return None;
        };
        let entry = match self.cached(info_hash) {
            Some(e) => {
                let reading = e.lock().ok()?.issued.clone();
                if reading == issued || self.still_current(&reading).await {
                    e
                } else {
                    let torrent = e.lock().ok()?.torrent.clone();
                    self.forget(&torrent);
                    self.open(info_hash, issued.clone()).await?
                }
            }
            None => self.open(info_hash, issued.clone()).await?,
        };
        let mut e = entry.lock().ok()?;
        e.used = Instant::now();
        e.checked = Instant::now();
        e.admitted = issued;
        e.access_key = grant.map(|g| g.access_key);
        Some(e.torrent.clone())
    }

    async fn resolve_obfuscated(&self, obfuscated: &[u8; 20]) -> Option<[u8; 20]> {
        self.obfuscated.resolve(&self.app.store, obfuscated).await
    }

    async fn read(&self, torrent: &SeedTorrent, offset: u64, len: u32) -> std::io::Result<Bytes> {
        let gone = || std::io::Error::new(std::io::ErrorKind::NotFound, "no longer served");
        let hash = torrent
            .info_hash_v1
            .or_else(|| torrent.info_hash_v2_truncated())
            .ok_or_else(gone)?;
        let entry = self.cached(&hash).ok_or_else(gone)?;
        let (reader, recheck) = {
            let mut e = entry.lock().map_err(|_| gone())?;
            e.used = Instant::now();
            let recheck = (e.checked.elapsed() >= REVALIDATE_EVERY)
                .then(|| (e.issued.clone(), e.admitted.clone(), e.access_key.clone()));
            (e.reader.clone(), recheck)
        };
        if let Some((issued, admitted, access_key)) = recheck {
            if !self.still_current(&issued).await
                || !self.app.may_read(access_key.as_deref(), &admitted).await
            {
                self.forget(torrent);
                return Err(gone());
            }
            if let Ok(mut e) = entry.lock() {
                e.checked = Instant::now();
            }
        }
        let len = usize::try_from(len).map_err(std::io::Error::other)?;
        reader.read(offset, len).await
    }

    async fn still_allowed(&self, torrent: &SeedTorrent, peer: SocketAddr) -> bool {
        let Some(hash) = torrent
            .info_hash_v1
            .or_else(|| torrent.info_hash_v2_truncated())
        else {
            return false;
        };
        let Some(entry) = self.cached(&hash) else {
            return self.lookup(&hash, peer).await.is_some();
        };
        let Some(issued) = entry.lock().ok().map(|e| e.issued.clone()) else {
            return false;
        };
        let access_key = if issued.private {
            let mut primary = [0u8; 20];
            if hex::decode_to_slice(&issued.info_hash, &mut primary).is_err() {
                return false;
            }
            match self.app.tracker.admission(primary, peer.ip()).await {
                Ok(Some(k)) => Some(k),
                _ => return false,
            }
        } else {
            None
        };
        if let Ok(e) = entry.lock()
            && let Some((allowed, at)) = e.access.get(&access_key)
            && at.elapsed() < ACCESS_FRESH
        {
            return *allowed;
        }
        let allowed = self.app.may_read_now(access_key.as_deref(), &issued).await;
        if let Ok(mut e) = entry.lock() {
            if e.access.len() >= MAX_ACCESS_ANSWERS {
                e.access.clear();
            }
            e.access.insert(access_key, (allowed, Instant::now()));
        }
        allowed
    }

    fn uploaded(&self, torrent: &SeedTorrent, bytes: u64) {
        self.app.stats.seeded(&torrent.key, bytes);
    }
}
