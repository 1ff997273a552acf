//! The tracker's swarm state.
//!
//! [`Swarms`] is pure state: announce, scrape and expiry take the time as an argument, so they
//! are tested without clocks or sockets. [`Tracker`] wraps it in a mutex for the server. The
//! tracker does not know the store: the server decides which info-hashes are allowed (issued
//! torrents, tokens) and which swarm key a hybrid's two hashes share, and passes the peer's
//! address as seen on the socket (the `ip` parameter is not trusted).
//!
//! Memory: one peer costs about 100 bytes (20-byte id key, address, counters) plus hash-map
//! overhead; the limits below bound the total.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use seedbucket_wire::tracker::http::{AnnounceReply, Event, ScrapeEntry};

/// Tracker settings.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// Seconds between announces that clients are asked to keep.
    pub interval: u32,
    pub min_interval: u32,
    /// Peers not heard from for this long are dropped (interval plus grace).
    pub peer_ttl: u64,
    pub max_peers_per_torrent: usize,
    pub max_peers_total: usize,
    pub default_numwant: u32,
    pub max_numwant: u32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            interval: 1800,
            min_interval: 60,
            peer_ttl: 1800 + 600,
            max_peers_per_torrent: 20_000,
            max_peers_total: 1_000_000,
            default_numwant: 50,
            max_numwant: 200,
        }
    }
}

#[derive(Debug, Clone)]
struct Peer {
    addr: SocketAddr,
    left: u64,
    last_seen: u64,
}

/// One torrent's peers: a vector (so a reply is a contiguous run from a rotating start, O(numwant))
/// with an index by peer id, and the seeder count kept up to date (no scan per announce).
#[derive(Debug, Default)]
struct Swarm {
    peers: Vec<([u8; 20], Peer)>,
    index: HashMap<[u8; 20], usize>,
    seeders: usize,
    completed: u32,
    /// Rotates where peer lists start, so every peer gets handed out.
    cursor: usize,
    last_expired: u64,
}

impl Swarm {
    fn counts(&self) -> (u32, u32) {
        let leechers = self.peers.len() - self.seeders;
        (
            u32::try_from(self.seeders).unwrap_or(u32::MAX),
            u32::try_from(leechers).unwrap_or(u32::MAX),
        )
    }

    /// Inserts or updates; returns true if the peer is new.
    fn upsert(&mut self, id: [u8; 20], peer: Peer) -> bool {
        match self.index.get(&id) {
            Some(&i) => {
                let old = &mut self.peers[i].1;
                self.seeders =
                    self.seeders + usize::from(peer.left == 0) - usize::from(old.left == 0);
                *old = peer;
                false
            }
            None => {
                self.seeders += usize::from(peer.left == 0);
                self.index.insert(id, self.peers.len());
                self.peers.push((id, peer));
                true
            }
        }
    }

    fn remove(&mut self, id: &[u8; 20]) -> bool {
        let Some(i) = self.index.remove(id) else {
            return false;
        };
        let (_, gone) = self.peers.swap_remove(i);
        self.seeders -= usize::from(gone.left == 0);
        if let Some((moved, _)) = self.peers.get(i) {
            self.index.insert(*moved, i);
        }
        true
    }

    fn expire(&mut self, now: u64, ttl: u64) -> usize {
        self.last_expired = now;
        let before = self.peers.len();
        self.peers
            .retain(|(_, p)| now.saturating_sub(p.last_seen) <= ttl);
        if self.peers.len() != before {
            self.index = self
                .peers
                .iter()
                .enumerate()
                .map(|(i, (id, _))| (*id, i))
                .collect();
            self.seeders = self.peers.iter().filter(|(_, p)| p.left == 0).count();
        }
        before - self.peers.len()
    }
}

/// Swarms expire their peers at most this often on announces (seconds); a global sweep runs too.
const EXPIRE_EVERY: u64 = 30;

/// One announce, as the server hands it over.
#[derive(Debug, Clone)]
pub struct PeerAnnounce {
    pub peer_id: [u8; 20],
    pub addr: SocketAddr,
    pub left: u64,
    pub event: Event,
    pub numwant: Option<u32>,
}

/// All swarms.
#[derive(Debug, Default)]
pub struct Swarms {
    torrents: HashMap<[u8; 20], Swarm>,
    total_peers: usize,
}

impl Swarms {
    /// Records the announce and returns the reply: other peers (never the caller), counts.
    pub fn announce(
        &mut self,
        cfg: &TrackerConfig,
        key: [u8; 20],
        a: &PeerAnnounce,
        now: u64,
    ) -> AnnounceReply {
        let swarm = self.torrents.entry(key).or_default();
        if now.saturating_sub(swarm.last_expired) >= EXPIRE_EVERY {
            self.total_peers -= swarm.expire(now, cfg.peer_ttl);
        }
        let mut warning = None;
        match a.event {
            Event::Stopped => {
                if swarm.remove(&a.peer_id) {
                    self.total_peers -= 1;
                }
            }
            _ => {
                if a.event == Event::Completed {
                    swarm.completed = swarm.completed.saturating_add(1);
                }
                let known = swarm.index.contains_key(&a.peer_id);
                if known
                    || (swarm.peers.len() < cfg.max_peers_per_torrent
                        && self.total_peers < cfg.max_peers_total)
                {
                    if swarm.upsert(
                        a.peer_id,
                        Peer {
                            addr: a.addr,
                            left: a.left,
                            last_seen: now,
                        },
                    ) {
                        self.total_peers += 1;
                    }
                } else {
                    warning = Some("the swarm is full; you were not added".to_owned());
                }
            }
        }
        let want = a
            .numwant
            .unwrap_or(cfg.default_numwant)
            .min(cfg.max_numwant) as usize;
        let mut peers = Vec::with_capacity(want.min(swarm.peers.len()));
        let n = swarm.peers.len();
        if a.event != Event::Stopped && want > 0 && n > 0 {
            let start = swarm.cursor % n;
            swarm.cursor = swarm.cursor.wrapping_add(want);
            // A seeder needs only leechers.
            let seeding = a.left == 0;
            for k in 0..n {
                if peers.len() == want {
                    break;
                }
                let (id, p) = &swarm.peers[(start + k) % n];
                if *id != a.peer_id && !(seeding && p.left == 0) {
                    peers.push((p.addr, *id));
                }
            }
        }
        let (complete, incomplete) = swarm.counts();
        if swarm.peers.is_empty() && swarm.completed == 0 {
            self.torrents.remove(&key);
        }
        AnnounceReply {
            interval: cfg.interval,
            min_interval: cfg.min_interval,
            complete,
            incomplete,
            peers,
            warning,
        }
    }

    pub fn scrape(&self, key: &[u8; 20]) -> ScrapeEntry {
        match self.torrents.get(key) {
            None => ScrapeEntry::default(),
            Some(s) => {
                let (complete, incomplete) = s.counts();
                ScrapeEntry {
                    complete,
                    downloaded: s.completed,
                    incomplete,
                }
            }
        }
    }

    /// Drops peers not heard from within the TTL, everywhere.
    pub fn expire(&mut self, cfg: &TrackerConfig, now: u64) {
        let mut dropped = 0;
        for s in self.torrents.values_mut() {
            dropped += s.expire(now, cfg.peer_ttl);
        }
        self.total_peers -= dropped;
        self.torrents
            .retain(|_, s| !s.peers.is_empty() || s.completed > 0);
    }

    pub fn stats(&self) -> (usize, usize) {
        (self.torrents.len(), self.total_peers)
    }
}

/// How long an announce with a valid token admits its address to the seeder (private
/// torrents): two announce intervals and a little more.
pub const ADMISSION_WINDOW: Duration = Duration::from_secs(2 * 1800 + 300);

/// The shared tracker state could not be reached (Redis down): the announce is answered with
/// a failure reason and the client retries.
#[derive(Debug, Clone)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tracker state unavailable: {}", self.0)
    }
}

/// Where the tracker's state lives: swarms, private-torrent admissions, announce rate limits
/// and the list of server seeders. In this process ([`Tracker`]) by default; in Redis, shared by
/// several gateway nodes, with `--redis` (crate `seedbucket-cluster`).
#[async_trait::async_trait]
pub trait SwarmStore: Send + Sync + std::fmt::Debug {
    async fn announce(
        &self,
        key: [u8; 20],
        a: &PeerAnnounce,
        now: u64,
    ) -> Result<AnnounceReply, Unavailable>;
    async fn scrape(&self, key: &[u8; 20]) -> Result<ScrapeEntry, Unavailable>;
    /// Drops peers that stopped announcing (stores whose entries expire by themselves do
    /// nothing).
    async fn expire(&self, now: u64);
    /// (torrents with peers, peers in all swarms), for metrics; `None` when the store cannot
    /// count them cheaply.
    fn stats(&self) -> Option<(usize, usize)>;
    /// Records that `ip` announced the private torrent `key` with a valid token of `access_key`:
    /// the seeder then lets that address download it for [`ADMISSION_WINDOW`].
    async fn admit(&self, key: [u8; 20], ip: IpAddr, access_key: &str) -> Result<(), Unavailable>;
    /// The access key that admitted `ip` to torrent `key`, if within the window.
    async fn admission(&self, key: [u8; 20], ip: IpAddr) -> Result<Option<String>, Unavailable>;
    /// True if `ip` may make one more announce at `now_ms` (a token bucket per address).
    async fn allow_announce(&self, ip: IpAddr, now_ms: u64) -> bool;
    /// The server's own seeders, as peers dial them: this node's, or every live node's.
    fn server_seeders(&self) -> Vec<SocketAddr>;
}

/// The in-process tracker state.
#[derive(Debug)]
pub struct Tracker {
    pub config: TrackerConfig,
    swarms: Mutex<Swarms>,
    admissions: Admissions,
    limiter: RateLimiter,
    seeder: Option<SocketAddr>,
}

impl Tracker {
    /// `rate_limit`: announces per second per address (0: none); `seeder`: this server's
    /// seeder as peers dial it.
    pub fn new(config: TrackerConfig, rate_limit: u32, seeder: Option<SocketAddr>) -> Self {
        Self {
            config,
            swarms: Mutex::new(Swarms::default()),
            admissions: Admissions::default(),
            limiter: RateLimiter::new(rate_limit),
            seeder,
        }
    }
}

#[async_trait::async_trait]
impl SwarmStore for Tracker {
    async fn announce(
        &self,
        key: [u8; 20],
        a: &PeerAnnounce,
        now: u64,
    ) -> Result<AnnounceReply, Unavailable> {
        Ok(match self.swarms.lock() {
            Ok(mut s) => s.announce(&self.config, key, a, now),
            Err(poisoned) => poisoned.into_inner().announce(&self.config, key, a, now),
        })
    }

    async fn scrape(&self, key: &[u8; 20]) -> Result<ScrapeEntry, Unavailable> {
        Ok(match self.swarms.lock() {
            Ok(s) => s.scrape(key),
            Err(poisoned) => poisoned.into_inner().scrape(key),
        })
    }

    async fn expire(&self, now: u64) {
        if let Ok(mut s) = self.swarms.lock() {
            s.expire(&self.config, now);
        }
    }

    fn stats(&self) -> Option<(usize, usize)> {
        self.swarms.lock().map(|s| s.stats()).ok()
    }

    async fn admit(&self, key: [u8; 20], ip: IpAddr, access_key: &str) -> Result<(), Unavailable> {
        self.admissions.record(key, ip, access_key);
        Ok(())
    }

    async fn admission(&self, key: [u8; 20], ip: IpAddr) -> Result<Option<String>, Unavailable> {
        Ok(self.admissions.key_of(&key, ip))
    }

    async fn allow_announce(&self, ip: IpAddr, now_ms: u64) -> bool {
        self.limiter.allow(ip, now_ms)
    }

    fn server_seeders(&self) -> Vec<SocketAddr> {
        self.seeder.into_iter().collect()
    }
}

/// An admission: the access key of the announce's token, and when it was made.
type Admission = (String, Instant);

/// Addresses that announced private torrents with valid tokens: (info-hash, IP) → admission.
#[derive(Debug, Default)]
struct Admissions(Mutex<HashMap<([u8; 20], IpAddr), Admission>>);

impl Admissions {
    fn record(&self, info_hash: [u8; 20], ip: IpAddr, access_key: &str) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= 200_000 {
                m.retain(|_, (_, at)| at.elapsed() < ADMISSION_WINDOW);
            }
            m.insert((info_hash, ip), (access_key.to_owned(), Instant::now()));
        }
    }

    fn key_of(&self, info_hash: &[u8; 20], ip: IpAddr) -> Option<String> {
        let m = self.0.lock().ok()?;
        let (key, at) = m.get(&(*info_hash, ip))?;
        (at.elapsed() < ADMISSION_WINDOW).then(|| key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u8, left: u64, event: Event) -> PeerAnnounce {
        PeerAnnounce {
            peer_id: [id; 20],
            addr: format!("127.0.0.{id}:6881").parse().unwrap(),
            left,
            event,
            numwant: None,
        }
    }

    #[test]
    fn swarm_life() {
        let cfg = TrackerConfig::default();
        let mut s = Swarms::default();
        let k = [7; 20];
        let r = s.announce(&cfg, k, &peer(1, 100, Event::Started), 0);
        assert!(r.peers.is_empty());
        assert_eq!((r.complete, r.incomplete), (0, 1));
        let r = s.announce(&cfg, k, &peer(2, 0, Event::Started), 1);
        assert_eq!(r.peers.len(), 1);
        assert_eq!(r.peers[0].1, [1; 20]);
        assert_eq!((r.complete, r.incomplete), (1, 1));
        // Peer 1 completes.
        s.announce(&cfg, k, &peer(1, 0, Event::Completed), 2);
        assert_eq!(
            s.scrape(&k),
            ScrapeEntry {
                complete: 2,
                downloaded: 1,
                incomplete: 0
            }
        );
        // Seeders are not handed other seeders.
        assert!(
            s.announce(&cfg, k, &peer(2, 0, Event::None), 3)
                .peers
                .is_empty()
        );
        s.announce(&cfg, k, &peer(1, 0, Event::Stopped), 4);
        assert_eq!(s.scrape(&k).complete, 1);
        // Expiry.
        s.expire(&cfg, 4 + cfg.peer_ttl + 1);
        assert_eq!(
            s.scrape(&k),
            ScrapeEntry {
                complete: 0,
                downloaded: 1,
                incomplete: 0
            }
        );
        assert_eq!(s.stats().1, 0);
    }

    #[test]
    fn limits() {
        let cfg = TrackerConfig {
            max_peers_per_torrent: 2,
            max_numwant: 1,
            ..TrackerConfig::default()
        };
        let mut s = Swarms::default();
        for id in 1..=3 {
            let r = s.announce(&cfg, [1; 20], &peer(id, 5, Event::Started), 0);
            assert!(r.peers.len() <= 1);
            assert_eq!(r.warning.is_some(), id == 3);
        }
        assert_eq!(s.stats(), (1, 2));
    }
}

/// Announces allowed per client address: a token bucket per IP (`rate` per second, bursts of
/// twice that), pure state with the time passed in milliseconds. `rate` 0 turns it off.
#[derive(Debug)]
pub struct RateLimiter {
    rate: u32,
    buckets: Mutex<HashMap<IpAddr, (f64, u64)>>,
}

impl RateLimiter {
    /// Addresses tracked before idle ones are forgotten.
    const MAX_ADDRESSES: usize = 100_000;

    pub fn new(rate: u32) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// True if `ip` may make one more request at `now_ms`.
    pub fn allow(&self, ip: IpAddr, now_ms: u64) -> bool {
        if self.rate == 0 {
            return true;
        }
        let Ok(mut b) = self.buckets.lock() else {
            return true;
        };
        let burst = f64::from(self.rate) * 2.0;
        if b.len() >= Self::MAX_ADDRESSES {
            // Forget addresses whose bucket has refilled (idle for a burst's worth of time).
            let refill_ms = (burst / f64::from(self.rate) * 1000.0) as u64;
            b.retain(|_, (_, last)| now_ms.saturating_sub(*last) < refill_ms);
        }
        let (tokens, last) = b.entry(ip).or_insert((burst, now_ms));
        let elapsed = now_ms.saturating_sub(*last) as f64 / 1000.0;
        *tokens = (*tokens + elapsed * f64::from(self.rate)).min(burst);
        *last = now_ms;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod rate_tests {
    use super::RateLimiter;

    #[test]
    fn buckets() {
        let r = RateLimiter::new(10);
        let ip = "127.0.0.1".parse().unwrap();
        let allowed = (0..100).filter(|_| r.allow(ip, 1000)).count();
        assert_eq!(allowed, 20); // the burst
        assert!(!r.allow(ip, 1000));
        assert!(r.allow(ip, 1100)); // 0.1 s later: one more token
        assert!(RateLimiter::new(0).allow(ip, 0));
        assert!(r.allow("10.0.0.1".parse().unwrap(), 1000));
    }
}
