//! The tracker's swarm state.
//!
//! [`Swarms`] is pure state: announce, scrape and expiry take the time as an argument, so they
//! are tested without clocks or sockets. [`Tracker`] wraps it in a mutex for the server. The
//! tracker does not know the store: the server decides which info-hashes are allowed (issued
//! torrents, tokens) and which swarm key a hybrid's two hashes share, and passes the peer's
//! address as seen on the socket (the `ip` parameter is not trusted).
//!
//! What one address can hold (so that one host cannot fill a swarm with fake entries):
//! - A swarm has one entry per ip:port. An announce from an ip:port already listed replaces
//!   that entry, whatever peer id it carries (an id is only an attribute of the entry, so
//!   announcing under ever new ids adds nothing, and nobody can evict another host's entry by
//!   naming its peer id). `stopped` removes the entry of the announcing ip:port.
//! - Entries are counted per *address*: an IPv4 address, or an IPv6 /64 (one host usually
//!   owns a whole /64). See [`address_key`].
//! - In one swarm an address holds at most [`TrackerConfig::max_peers_per_address_per_torrent`]
//!   entries; one more evicts that address's stalest entry in the swarm (a NAT'd host's newest
//!   clients get in, a flooder only churns its own entries).
//! - Over all swarms an address holds at most [`TrackerConfig::max_peers_per_address`] entries;
//!   past that, new entries from it are refused with a warning (the announce still gets peers).
//! - A full swarm ([`TrackerConfig::max_peers_per_torrent`], or the total
//!   [`TrackerConfig::max_peers_total`] reached) evicts its stalest entry (least recently
//!   announced) to take the new one, so real peers that keep announcing are always listed.
//!
//! Memory: one entry costs about 150 bytes (address, id, counters, two index entries) plus
//! hash-map overhead; the limits above bound the total.

pub mod browser;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use seedbucket_wire::tracker::http::{AnnounceReply, Event, ScrapeEntry};

/// The tracker's maps: keyed by what peers send (info-hashes, addresses), hashed with a
/// per-map random seed like std's default, but several times cheaper than SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Tracker settings.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// Seconds between announces that clients are asked to keep.
    pub interval: u32,
    pub min_interval: u32,
    /// Peers not heard from for this long are dropped (interval plus grace).
    pub peer_ttl: u64,
    /// Entries in one swarm; a full swarm evicts its stalest entry for a new one.
    pub max_peers_per_torrent: usize,
    /// Entries in all swarms together; when reached, a swarm evicts its stalest entry for a
    /// new one (a new, empty swarm cannot take any).
    pub max_peers_total: usize,
    /// Entries one address (IPv4 address, IPv6 /64) holds in one swarm; one more evicts that
    /// address's stalest entry there. Default 16: a NAT'd network rarely runs more clients of
    /// one torrent, and 20,000 entries then need 1,250 addresses.
    pub max_peers_per_address_per_torrent: usize,
    /// Entries one address holds over all swarms; past that its new entries are refused.
    /// Default 2,000: a seedbox seeding that many torrents from one address still fits.
    pub max_peers_per_address: usize,
    pub default_numwant: u32,
    pub max_numwant: u32,
}

impl TrackerConfig {
    /// Peers announce `a` is answered with at most: what it asks for (or the default), within
    /// the configured bound.
    pub fn numwant(&self, a: &PeerAnnounce) -> usize {
        a.numwant
            .unwrap_or(self.default_numwant)
            .min(self.max_numwant) as usize
    }
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            interval: 1800,
            min_interval: 60,
            peer_ttl: 1800 + 600,
            max_peers_per_torrent: 20_000,
            max_peers_total: 1_000_000,
            max_peers_per_address_per_torrent: 16,
            max_peers_per_address: 2_000,
            default_numwant: 50,
            max_numwant: 200,
        }
    }
}

pub use seedbucket_wire::host::address_key;

#[derive(Debug, Clone)]
struct Peer {
    addr: SocketAddr,
    id: [u8; 20],
    left: u64,
    last_seen: u64,
}

/// Where an entry sits: in the seeders' or the leechers' vector, at this position.
#[derive(Debug, Clone, Copy)]
struct Slot {
    seeding: bool,
    at: usize,
}

/// One torrent's entries: seeders and leechers in two vectors (a reply is a contiguous run of
/// each from a rotating start, O(numwant), and a seeder's reply, leechers only, never reads past
/// seeders), indexed by ip:port, the same entries ordered by age (for expiry and eviction), and
/// per address (for its cap).
#[derive(Debug, Default)]
struct Swarm {
    seeders: Vec<Peer>,
    leechers: Vec<Peer>,
    index: HashMap<SocketAddr, Slot>,
    /// (last_seen, ip:port), stalest first.
    by_age: BTreeSet<(u64, SocketAddr)>,
    /// Address key → that address's entries here, stalest first.
    by_address: HashMap<IpAddr, BTreeSet<(u64, SocketAddr)>>,
    completed: u32,
    /// Rotate where the runs of seeders and of leechers start, so every peer gets handed out.
    seeder_cursor: usize,
    leecher_cursor: usize,
    last_expired: u64,
}

impl Swarm {
    fn len(&self) -> usize {
        self.seeders.len() + self.leechers.len()
    }

    fn is_empty(&self) -> bool {
        self.seeders.is_empty() && self.leechers.is_empty()
    }

    fn counts(&self) -> (u32, u32) {
        (
            u32::try_from(self.seeders.len()).unwrap_or(u32::MAX),
            u32::try_from(self.leechers.len()).unwrap_or(u32::MAX),
        )
    }

    fn list_mut(&mut self, seeding: bool) -> &mut Vec<Peer> {
        if seeding {
            &mut self.seeders
        } else {
            &mut self.leechers
        }
    }

    fn entries_of(&self, address: &IpAddr) -> usize {
        self.by_address.get(address).map_or(0, BTreeSet::len)
    }

    /// Takes the entry at `slot` out of its vector; the entry swapped into its place is
    /// re-indexed.
    fn take(&mut self, slot: Slot) -> Option<Peer> {
        let list = self.list_mut(slot.seeding);
        if slot.at >= list.len() {
            return None;
        }
        let gone = list.swap_remove(slot.at);
        let moved = list.get(slot.at).map(|p| p.addr);
        if let Some(moved) = moved {
            self.index.insert(moved, slot);
        }
        Some(gone)
    }

    /// Puts `peer` at the end of the vector its `left` calls for and indexes it there.
    fn place(&mut self, peer: Peer) {
        let seeding = peer.left == 0;
        let list = self.list_mut(seeding);
        let slot = Slot {
            seeding,
            at: list.len(),
        };
        let addr = peer.addr;
        list.push(peer);
        self.index.insert(addr, slot);
    }

    /// Updates the entry of `peer.addr` (a new peer id replaces the old one; a leecher that
    /// finished moves to the seeders); false if there is none.
    fn update(&mut self, peer: Peer) -> bool {
        let Some(&slot) = self.index.get(&peer.addr) else {
            return false;
        };
        let addr = peer.addr;
        let new_seen = peer.last_seen;
        let old_seen = if slot.seeding == (peer.left == 0) {
            let Some(old) = self.list_mut(slot.seeding).get_mut(slot.at) else {
                return false;
            };
            std::mem::replace(old, peer).last_seen
        } else {
            let Some(old) = self.take(slot) else {
                return false;
            };
            self.place(peer);
            old.last_seen
        };
        if old_seen == new_seen {
            // Announced again within the same second: its place in the age orders holds.
            return true;
        }
        self.by_age.remove(&(old_seen, addr));
        self.by_age.insert((new_seen, addr));
        if let Some(set) = self.by_address.get_mut(&address_key(addr.ip())) {
            set.remove(&(old_seen, addr));
            set.insert((new_seen, addr));
        }
        true
    }

    /// Adds an entry for an ip:port not listed yet.
    fn insert(&mut self, peer: Peer) {
        self.by_age.insert((peer.last_seen, peer.addr));
        self.by_address
            .entry(address_key(peer.addr.ip()))
            .or_default()
            .insert((peer.last_seen, peer.addr));
        self.place(peer);
    }

    /// Removes the entry of `addr`, if any.
    fn remove(&mut self, addr: &SocketAddr) -> Option<Peer> {
        let slot = self.index.remove(addr)?;
        let gone = self.take(slot)?;
        self.by_age.remove(&(gone.last_seen, gone.addr));
        let key = address_key(gone.addr.ip());
        if let Some(set) = self.by_address.get_mut(&key) {
            set.remove(&(gone.last_seen, gone.addr));
            if set.is_empty() {
                self.by_address.remove(&key);
            }
        }
        Some(gone)
    }

    /// Up to `want` peers for `a`, never `a` itself (its ip:port or its peer id): leechers
    /// only for a seeder; for a leecher half seeders, half leechers, either filling in for
    /// the other when it has too few.
    fn pick(&mut self, a: &PeerAnnounce, want: usize, peers: &mut impl PeerSink) {
        // Peer ids compared by their last 8 bytes first (a client's prefix fills the first
        // eight), the whole id only when those match.
        let tail = |id: &[u8; 20]| {
            u64::from_ne_bytes([
                id[12], id[13], id[14], id[15], id[16], id[17], id[18], id[19],
            ])
        };
        let my_tail = tail(&a.peer_id);
        let is_other = |p: &Peer| p.addr != a.addr && (tail(&p.id) != my_tail || p.id != a.peer_id);
        run(
            &self.seeders,
            &mut self.seeder_cursor,
            seeders_wanted(want, self.leechers.len(), a.left == 0),
            peers,
            is_other,
        );
        run(
            &self.leechers,
            &mut self.leecher_cursor,
            want,
            peers,
            is_other,
        );
    }

    /// The stalest entry of the swarm, or of one address in it.
    fn stalest(&self, address: Option<&IpAddr>) -> Option<SocketAddr> {
        match address {
            None => self.by_age.first().map(|(_, a)| *a),
            Some(k) => self.by_address.get(k)?.first().map(|(_, a)| *a),
        }
    }

    /// Removes the entries not heard from within `ttl`; returns them.
    fn expire(&mut self, now: u64, ttl: u64) -> Vec<Peer> {
        self.last_expired = now;
        let mut gone = Vec::new();
        while let Some(&(seen, addr)) = self.by_age.first() {
            if now.saturating_sub(seen) <= ttl {
                break;
            }
            match self.remove(&addr) {
                Some(p) => gone.push(p),
                None => {
                    // Not indexed (cannot happen): drop the stray age entry.
                    self.by_age.remove(&(seen, addr));
                }
            }
        }
        gone
    }
}

/// How many of the `want` peers of a reply are taken from the swarm's seeders (the leechers
/// then fill the rest): none for a seeder, which is handed leechers only; for a leecher half,
/// or more when the swarm has too few other leechers (the caller, a leecher itself, is one of
/// `leechers`). The in-process and the Redis trackers pick by this one rule.
pub fn seeders_wanted(want: usize, leechers: usize, caller_seeding: bool) -> usize {
    if caller_seeding {
        return 0;
    }
    let leechers_on_offer = leechers.saturating_sub(1);
    want - (want / 2).min(leechers_on_offer)
}

/// Where a reply's peers go as they are picked: a list, or straight into a reply's bytes.
pub trait PeerSink {
    /// Peers taken so far.
    fn taken(&self) -> usize;
    /// Takes one more peer (a sink may leave it out, e.g. of another address family: then
    /// `taken` does not grow).
    fn take(&mut self, addr: SocketAddr, id: &[u8; 20]);
}

impl PeerSink for Vec<(SocketAddr, [u8; 20])> {
    fn taken(&self) -> usize {
        self.len()
    }

    fn take(&mut self, addr: SocketAddr, id: &[u8; 20]) {
        self.push((addr, *id));
    }
}

impl PeerSink for seedbucket_wire::tracker::udp::CompactAnnounceReply {
    fn taken(&self) -> usize {
        self.peers()
    }

    fn take(&mut self, addr: SocketAddr, _id: &[u8; 20]) {
        self.push(addr);
    }
}

/// Gives `out`, until it has taken `until` peers, the entries of `list` that `keep` accepts,
/// reading from the rotating `cursor` on and moving it past what was read.
fn run(
    list: &[Peer],
    cursor: &mut usize,
    until: usize,
    out: &mut impl PeerSink,
    keep: impl Fn(&Peer) -> bool,
) {
    let n = list.len();
    if n == 0 || out.taken() >= until {
        return;
    }
    let start = *cursor % n;
    let mut read = 0;
    // From the cursor to the end, then from the start: two plain loops (a chained iterator
    // cost a branch per entry).
    'lists: for part in [&list[start..], &list[..start]] {
        for p in part {
            if out.taken() >= until {
                break 'lists;
            }
            read += 1;
            if keep(p) {
                out.take(p.addr, &p.id);
            }
        }
    }
    *cursor = start.wrapping_add(read);
}

/// Whether a new ip:port gets into a swarm, and which entry makes room for it.
enum Admit {
    /// Insert, after removing this entry (if any).
    Evicting(Option<SocketAddr>),
    /// Not added; the reason goes back as a warning.
    Refuse(&'static str),
}

/// The caps, in order: the address's own stalest entry in the swarm makes room when the address
/// is at its cap there (the address's count stays the same); else an address at its cap over
/// all swarms is refused; else a full swarm (or a full tracker) gives up its stalest entry.
fn admission(
    cfg: &TrackerConfig,
    swarm: &Swarm,
    address: &IpAddr,
    held_by_address: usize,
    total: usize,
) -> Admit {
    if swarm.entries_of(address) >= cfg.max_peers_per_address_per_torrent.max(1) {
        return Admit::Evicting(swarm.stalest(Some(address)));
    }
    if held_by_address >= cfg.max_peers_per_address.max(1) {
        return Admit::Refuse("too many peers from your address; you were not added");
    }
    if swarm.len() >= cfg.max_peers_per_torrent.max(1) || total >= cfg.max_peers_total.max(1) {
        return match swarm.stalest(None) {
            Some(v) => Admit::Evicting(Some(v)),
            None => Admit::Refuse("the tracker is full; you were not added"),
        };
    }
    Admit::Evicting(None)
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
    /// Address key → its entries over all swarms.
    per_address: HashMap<IpAddr, usize>,
}

impl Swarms {
    /// Bookkeeping for entries that left a swarm.
    fn forget(&mut self, gone: &Peer) {
        self.total_peers = self.total_peers.saturating_sub(1);
        let key = address_key(gone.addr.ip());
        if let Some(n) = self.per_address.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_address.remove(&key);
            }
        }
    }

    /// Records the announce and returns the reply: other peers (never the caller), counts.
    pub fn announce(
        &mut self,
        cfg: &TrackerConfig,
        key: [u8; 20],
        a: &PeerAnnounce,
        now: u64,
    ) -> AnnounceReply {
        // One more: the server puts its own seeder first in the reply.
        let want = cfg.numwant(a);
        let mut peers = Vec::with_capacity(want.min(self.swarm_len(&key)) + 1);
        let mut reply = self.announce_into(cfg, key, a, now, &mut peers);
        reply.peers = peers;
        reply
    }

    fn swarm_len(&self, key: &[u8; 20]) -> usize {
        self.torrents.get(key).map_or(0, Swarm::len)
    }

    /// [`Self::announce`], its peers given to `peers` as they are picked (the reply's list
    /// stays empty).
    pub fn announce_into(
        &mut self,
        cfg: &TrackerConfig,
        key: [u8; 20],
        a: &PeerAnnounce,
        now: u64,
        peers: &mut impl PeerSink,
    ) -> AnnounceReply {
        let mut gone = Vec::new();
        let swarm = self.torrents.entry(key).or_default();
        if now.saturating_sub(swarm.last_expired) >= EXPIRE_EVERY {
            gone = swarm.expire(now, cfg.peer_ttl);
        }
        let address = address_key(a.addr.ip());
        let mut warning = None;
        let mut added = false;
        match a.event {
            Event::Stopped => gone.extend(swarm.remove(&a.addr)),
            _ => {
                if a.event == Event::Completed {
                    swarm.completed = swarm.completed.saturating_add(1);
                }
                let peer = Peer {
                    addr: a.addr,
                    id: a.peer_id,
                    left: a.left,
                    last_seen: now,
                };
                if !swarm.update(peer.clone()) {
                    // Counts as they are once the entries expired above are forgotten.
                    let held = self.per_address.get(&address).copied().unwrap_or(0);
                    let held = held.saturating_sub(
                        gone.iter()
                            .filter(|p| address_key(p.addr.ip()) == address)
                            .count(),
                    );
                    let total = self.total_peers.saturating_sub(gone.len());
                    match admission(cfg, swarm, &address, held, total) {
                        Admit::Refuse(why) => warning = Some(why.to_owned()),
                        Admit::Evicting(victim) => {
                            gone.extend(victim.and_then(|v| swarm.remove(&v)));
                            swarm.insert(peer);
                            added = true;
                        }
                    }
                }
            }
        }
        let want = cfg.numwant(a);
        if a.event != Event::Stopped && want > 0 {
            swarm.pick(a, want, peers);
        }
        let (complete, incomplete) = swarm.counts();
        if swarm.is_empty() && swarm.completed == 0 {
            self.torrents.remove(&key);
        }
        for p in &gone {
            self.forget(p);
        }
        if added {
            self.total_peers += 1;
            *self.per_address.entry(address).or_insert(0) += 1;
        }
        AnnounceReply {
            interval: cfg.interval,
            min_interval: cfg.min_interval,
            complete,
            incomplete,
            peers: Vec::new(),
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
        let mut gone = Vec::new();
        for s in self.torrents.values_mut() {
            gone.extend(s.expire(now, cfg.peer_ttl));
        }
        for p in &gone {
            self.forget(p);
        }
        self.torrents
            .retain(|_, s| !s.is_empty() || s.completed > 0);
    }

    pub fn stats(&self) -> (usize, usize) {
        (self.torrents.len(), self.total_peers)
    }

    /// Entries `ip`'s address (see [`address_key`]) holds over all swarms.
    pub fn entries_of_address(&self, ip: IpAddr) -> usize {
        self.per_address.get(&address_key(ip)).copied().unwrap_or(0)
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
    /// The state itself when it lives in this process: callers then answer without awaiting
    /// (no boxed future per call, which on the UDP tracker's path was a good part of an
    /// announce's cost). `None` for stores that answer over the network.
    fn in_process(&self) -> Option<&Tracker> {
        None
    }
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

    /// [`SwarmStore::announce`], answered at once.
    pub fn announce_now(&self, key: [u8; 20], a: &PeerAnnounce, now: u64) -> AnnounceReply {
        match self.swarms.lock() {
            Ok(mut s) => s.announce(&self.config, key, a, now),
            Err(poisoned) => poisoned.into_inner().announce(&self.config, key, a, now),
        }
    }

    /// [`Self::announce_now`], its peers given to `peers` as they are picked (the reply's
    /// list stays empty).
    pub fn announce_now_into(
        &self,
        key: [u8; 20],
        a: &PeerAnnounce,
        now: u64,
        peers: &mut impl PeerSink,
    ) -> AnnounceReply {
        match self.swarms.lock() {
            Ok(mut s) => s.announce_into(&self.config, key, a, now, peers),
            Err(poisoned) => poisoned
                .into_inner()
                .announce_into(&self.config, key, a, now, peers),
        }
    }

    /// [`SwarmStore::admit`], at once.
    pub fn admit_now(&self, key: [u8; 20], ip: IpAddr, access_key: &str) {
        self.admissions.record(key, ip, access_key);
    }

    /// Whether announces are rate-limited at all (when not, there is no need to read the
    /// clock for [`Self::allow_announce_now`]).
    pub fn limits_announces(&self) -> bool {
        self.limiter.rate != 0
    }

    /// [`SwarmStore::allow_announce`], at once.
    pub fn allow_announce_now(&self, ip: IpAddr, now_ms: u64) -> bool {
        self.limiter.allow(ip, now_ms)
    }

    /// This server's seeder, as peers dial it ([`SwarmStore::server_seeders`] without a list).
    pub fn seeder(&self) -> Option<SocketAddr> {
        self.seeder
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
        Ok(self.announce_now(key, a, now))
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
        self.admit_now(key, ip, access_key);
        Ok(())
    }

    async fn admission(&self, key: [u8; 20], ip: IpAddr) -> Result<Option<String>, Unavailable> {
        Ok(self.admissions.key_of(&key, ip))
    }

    async fn allow_announce(&self, ip: IpAddr, now_ms: u64) -> bool {
        self.allow_announce_now(ip, now_ms)
    }

    fn server_seeders(&self) -> Vec<SocketAddr> {
        self.seeder.into_iter().collect()
    }

    fn in_process(&self) -> Option<&Tracker> {
        Some(self)
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
            // A re-announce with the same grant renews it in place (no new String).
            if let Some((known, at)) = m.get_mut(&(info_hash, ip))
                && known == access_key
            {
                *at = Instant::now();
                return;
            }
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
    fn full_swarm_evicts_its_stalest_entry() {
        let cfg = TrackerConfig {
            max_peers_per_torrent: 2,
            max_numwant: 1,
            ..TrackerConfig::default()
        };
        let mut s = Swarms::default();
        for id in 1..=3 {
            let r = s.announce(&cfg, [1; 20], &peer(id, 5, Event::Started), u64::from(id));
            assert!(r.peers.len() <= 1);
            assert!(r.warning.is_none());
        }
        assert_eq!(s.stats(), (1, 2));
        // Peer 1 (the stalest) made room for peer 3.
        let r = s.announce(
            &cfg,
            [1; 20],
            &PeerAnnounce {
                numwant: Some(10),
                ..peer(9, 5, Event::None)
            },
            9,
        );
        let ids: Vec<u8> = r.peers.iter().map(|(_, id)| id[0]).collect();
        assert!(!ids.contains(&1), "{ids:?}");
        assert_eq!(s.entries_of_address("127.0.0.1".parse().unwrap()), 0);
    }

    fn from(addr: &str, id: u8) -> PeerAnnounce {
        PeerAnnounce {
            peer_id: [id; 20],
            addr: addr.parse().unwrap(),
            left: 10,
            event: Event::None,
            numwant: Some(200),
        }
    }

    #[test]
    fn one_entry_per_ip_port() {
        let cfg = TrackerConfig::default();
        let mut s = Swarms::default();
        let k = [3; 20];
        for id in 0..=200u8 {
            s.announce(&cfg, k, &from("10.0.0.1:6881", id), u64::from(id));
        }
        assert_eq!(s.stats(), (1, 1));
        let r = s.announce(&cfg, k, &from("10.0.0.2:6881", 1), 300);
        // The latest peer id at 10.0.0.1:6881 is the one listed.
        assert_eq!(r.peers, [("10.0.0.1:6881".parse().unwrap(), [200; 20])]);
        // A stop from that ip:port removes its entry, whatever id it names.
        s.announce(
            &cfg,
            k,
            &PeerAnnounce {
                event: Event::Stopped,
                ..from("10.0.0.1:6881", 77)
            },
            301,
        );
        assert_eq!(s.scrape(&k).incomplete, 1);
        // Naming another host's peer id from elsewhere does not evict it.
        s.announce(&cfg, k, &from("10.0.0.3:1", 1), 302);
        assert_eq!(s.scrape(&k).incomplete, 2);
    }

    #[test]
    fn one_address_cannot_fill_a_swarm() {
        let cfg = TrackerConfig {
            max_peers_per_address_per_torrent: 4,
            ..TrackerConfig::default()
        };
        let mut s = Swarms::default();
        let k = [4; 20];
        let real = from("192.0.2.7:51413", 42);
        s.announce(&cfg, k, &real, 0);
        for port in 1000..6000u16 {
            let now = u64::from(port - 1000) / 4;
            let r = s.announce(&cfg, k, &from(&format!("198.51.100.9:{port}"), 1), now);
            assert!(r.warning.is_none());
        }
        assert_eq!(s.scrape(&k).incomplete, 5);
        // The flooder holds its 4 newest ports; the real peer is still listed.
        let r = s.announce(&cfg, k, &from("203.0.113.1:1", 2), 1300);
        let mut got: Vec<SocketAddr> = r.peers.iter().map(|(a, _)| *a).collect();
        got.sort();
        let mut want: Vec<SocketAddr> = ["192.0.2.7:51413"]
            .into_iter()
            .chain([
                "198.51.100.9:5996",
                "198.51.100.9:5997",
                "198.51.100.9:5998",
                "198.51.100.9:5999",
            ])
            .map(|a| a.parse().unwrap())
            .collect();
        want.sort();
        assert_eq!(got, want);
        // IPv6 addresses of one /64 count as one address.
        for i in 1..=10u16 {
            s.announce(&cfg, k, &from(&format!("[2001:db8::{i:x}]:7000"), 3), 1400);
        }
        assert_eq!(s.entries_of_address("2001:db8::ffff".parse().unwrap()), 4);
        assert_eq!(
            address_key("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn address_cap_over_all_swarms() {
        let cfg = TrackerConfig {
            max_peers_per_address: 3,
            ..TrackerConfig::default()
        };
        let mut s = Swarms::default();
        for t in 0..5u8 {
            let r = s.announce(&cfg, [t; 20], &from("198.51.100.9:6881", 1), 0);
            assert_eq!(r.warning.is_some(), t >= 3, "torrent {t}");
        }
        assert_eq!(s.stats().1, 3);
        // Updating an entry it already has is always allowed; leaving frees room.
        assert!(
            s.announce(&cfg, [0; 20], &from("198.51.100.9:6881", 1), 1)
                .warning
                .is_none()
        );
        s.announce(
            &cfg,
            [0; 20],
            &PeerAnnounce {
                event: Event::Stopped,
                ..from("198.51.100.9:6881", 1)
            },
            2,
        );
        assert!(
            s.announce(&cfg, [4; 20], &from("198.51.100.9:6881", 1), 3)
                .warning
                .is_none()
        );
        // Other addresses are not affected.
        assert!(
            s.announce(&cfg, [4; 20], &from("198.51.100.10:6881", 1), 3)
                .warning
                .is_none()
        );
        // Expiry gives the address its room back.
        s.expire(&cfg, 10 + cfg.peer_ttl);
        assert_eq!(s.entries_of_address("198.51.100.9".parse().unwrap()), 0);
        assert_eq!(s.stats(), (0, 0));
    }

    /// Every index entry points at the entry of its ip:port, in the vector its `left` calls
    /// for, and every entry is indexed, aged and counted for its address once.
    fn assert_consistent(s: &Swarms) {
        let mut total = 0;
        for swarm in s.torrents.values() {
            assert_eq!(swarm.index.len(), swarm.len());
            assert_eq!(swarm.by_age.len(), swarm.len());
            for (seeding, list) in [(true, &swarm.seeders), (false, &swarm.leechers)] {
                for (at, p) in list.iter().enumerate() {
                    assert_eq!(p.left == 0, seeding);
                    let slot = swarm.index[&p.addr];
                    assert_eq!((slot.seeding, slot.at), (seeding, at));
                    assert!(swarm.by_age.contains(&(p.last_seen, p.addr)));
                    assert!(
                        swarm.by_address[&address_key(p.addr.ip())]
                            .contains(&(p.last_seen, p.addr))
                    );
                }
            }
            total += swarm.len();
        }
        assert_eq!(s.stats().1, total);
    }

    #[test]
    fn seeders_get_leechers_and_leechers_get_both() {
        let cfg = TrackerConfig::default();
        let mut s = Swarms::default();
        let k = [5; 20];
        // 30 seeders, then 10 leechers.
        for i in 0..40u8 {
            let left = if i < 30 { 0 } else { 1 };
            let a = PeerAnnounce {
                left,
                ..from(&format!("10.0.{i}.1:6881"), i)
            };
            s.announce(&cfg, k, &a, 1);
        }
        assert_eq!(s.scrape(&k).complete, 30);
        assert_eq!(s.scrape(&k).incomplete, 10);
        let ask = |id: u8, left: u64, numwant: u32| PeerAnnounce {
            left,
            numwant: Some(numwant),
            ..from(&format!("10.0.{id}.1:6881"), id)
        };
        // A seeder gets every leecher, never a seeder, even asking for more.
        let r = s.announce(&cfg, k, &ask(0, 0, 50), 2);
        let ids: Vec<u8> = r.peers.iter().map(|(_, id)| id[0]).collect();
        assert_eq!(ids.len(), 10, "{ids:?}");
        assert!(ids.iter().all(|&i| i >= 30), "{ids:?}");
        // A leecher asking for 10 gets 5 of each; asking for 50, all 39 others.
        let r = s.announce(&cfg, k, &ask(35, 1, 10), 2);
        let seeds = r.peers.iter().filter(|(_, id)| id[0] < 30).count();
        assert_eq!((r.peers.len(), seeds), (10, 5));
        let r = s.announce(&cfg, k, &ask(35, 1, 50), 2);
        let mut ids: Vec<u8> = r.peers.iter().map(|(_, id)| id[0]).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..40).filter(|&i| i != 35).collect::<Vec<u8>>());
        // Asking for 4 at a time, a leecher is handed every seeder in turn.
        let mut seen = std::collections::HashSet::new();
        for t in 0..15 {
            for (_, id) in s.announce(&cfg, k, &ask(36, 1, 4), 3 + t).peers {
                seen.insert(id[0]);
            }
        }
        assert!((0..30).all(|i| seen.contains(&i)), "{seen:?}");
        // A leecher that finishes moves to the seeders.
        s.announce(
            &cfg,
            k,
            &PeerAnnounce {
                event: Event::Completed,
                ..ask(36, 0, 0)
            },
            20,
        );
        assert_eq!((s.scrape(&k).complete, s.scrape(&k).incomplete), (31, 9));
        assert_consistent(&s);
    }

    proptest::proptest! {
        /// Any sequence of announces keeps the swarm's vectors, index, age order and address
        /// counts in step, and no reply lists its caller, a peer twice, or a seeder to a seeder.
        #[test]
        fn announces_keep_the_swarm_consistent(
            ops in proptest::collection::vec((0u8..12, 0u8..3, 0u8..4, 0u32..8), 1..200)
        ) {
            let cfg = TrackerConfig {
                max_peers_per_torrent: 8,
                max_peers_per_address_per_torrent: 3,
                ..TrackerConfig::default()
            };
            let mut s = Swarms::default();
            for (t, (who, host, kind, numwant)) in ops.into_iter().enumerate() {
                let (event, left) = match kind {
                    0 => (Event::Started, 5),
                    1 => (Event::None, 0),
                    2 => (Event::Completed, 0),
                    _ => (Event::Stopped, 5),
                };
                let a = PeerAnnounce {
                    peer_id: [who; 20],
                    addr: SocketAddr::new(IpAddr::from([10, 0, 0, host]), 6000 + u16::from(who)),
                    left,
                    event,
                    numwant: Some(numwant),
                };
                let r = s.announce(&cfg, [1; 20], &a, t as u64 / 3);
                let mut addrs: Vec<SocketAddr> = r.peers.iter().map(|(p, _)| *p).collect();
                proptest::prop_assert!(addrs.len() <= numwant as usize);
                proptest::prop_assert!(r.peers.iter().all(|(p, id)| *p != a.addr && *id != a.peer_id));
                addrs.sort();
                addrs.dedup();
                proptest::prop_assert_eq!(addrs.len(), r.peers.len());
                if let Some(swarm) = s.torrents.get(&[1; 20])
                    && left == 0
                {
                    proptest::prop_assert!(r.peers.iter().all(|(p, _)| !swarm.index[p].seeding));
                }
                assert_consistent(&s);
            }
        }
    }

    #[test]
    fn full_tracker_takes_room_from_the_swarm() {
        let cfg = TrackerConfig {
            max_peers_total: 3,
            ..TrackerConfig::default()
        };
        let mut s = Swarms::default();
        for i in 1..=3u8 {
            s.announce(
                &cfg,
                [1; 20],
                &from(&format!("10.0.0.{i}:1"), i),
                u64::from(i),
            );
        }
        // A new swarm has nothing to give up; the full one trades its stalest entry.
        assert!(
            s.announce(&cfg, [2; 20], &from("10.0.0.9:1", 9), 5)
                .warning
                .is_some()
        );
        assert!(
            s.announce(&cfg, [1; 20], &from("10.0.0.9:1", 9), 5)
                .warning
                .is_none()
        );
        assert_eq!(s.stats().1, 3);
        assert_eq!(s.entries_of_address("10.0.0.1".parse().unwrap()), 0);
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
            buckets: Mutex::new(HashMap::default()),
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
