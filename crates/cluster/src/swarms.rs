//! The tracker's state in Redis ([`RedisSwarms`]): one swarm is five keys sharing the hash tag
//! `{<info-hash>}` (so a Redis Cluster keeps it on one shard), changed only by Lua scripts,
//! which Redis runs atomically:
//!
//! - `sb:{h}:peers`: sorted set, peer address ([`encode_addr`]) → time of its last announce
//!   (unix seconds); one entry per ip:port, whatever peer id announces from it
//! - `sb:{h}:seeds`: the seeders among them, same scores
//! - `sb:{h}:addrs`: hash, peer address → `1` (seeder) or `0`, then the 20-byte peer id
//!   ([`encode_entry`]), so one `HRANDFIELD ... WITHVALUES` picks a peer list (sent in the
//!   same round trip as the script, after it, and answered by Redis directly: handing a long
//!   reply through Lua cost more than the rest of the announce)
//! - `sb:{h}:done`: how many completed downloads were announced
//! - `sb:{h}:byaddr`: sorted set, the same entries ordered by address (IPv4, or the IPv6 /64;
//!   the raw bytes) and then age (all scored 0; members are length, address, last announce and
//!   peer address, so one address's entries are one lexicographic range): an address holds at
//!   most `max_peers_per_address_per_torrent`, one more evicts its stalest. (Until 2026-12 this
//!   was one sorted set per address, `sb:{h}:addr:<address>`; those expire by themselves.)
//!
//! Announces reach Redis in batches (see the `announce_batches` module): one script call per swarm
//! for all its announces queued together, and one `HRANDFIELD` they share.
//!
//! Every script call prunes peers older than the peer TTL (at most 1000 per call) and sets the
//! keys to expire after that TTL, so an abandoned swarm disappears by itself and the memory is
//! bounded by the peers that announced within the TTL. A full swarm evicts its stalest entry
//! for a newcomer. The cap over all swarms per address that the in-process tracker keeps is not
//! kept here: it would need a key outside the swarm's hash tag (another shard in a Redis
//! Cluster) in the same atomic step. Admissions are `sb:{h}:adm:<ip>` with the admission window as expiry;
//! rate-limit buckets `sb:rate:<ip>` expire once refilled.
//!
//! Picking a peer list is most of an announce's cost in Redis, so in a swarm too large to be
//! listed whole in one reply a node answers from a random sample of it (three times the peers
//! asked for) and its counts, fetched at most [`SAMPLE_TTL`] ago ([`PeerSamples`]); a reply from
//! such a swarm is a random subset anyway. Such an announce is answered at once and its write
//! queued for the next batch, while the node's last batch went in; after a failed one it waits
//! for its write like any other. Swarms that fit in one reply are read on every announce, so a
//! newcomer is listed at once, and their announces always wait for their writes.
//!
//! A plain re-announce answered from a sample is not queued at all when this node queued the
//! same entry for the same peer within the same second ([`WrittenThisSecond`]): it would write
//! the same score and entry again.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::Rng as _;
use redis::aio::ConnectionManager;
use seedbucket_tracker::{ADMISSION_WINDOW, PeerAnnounce, SwarmStore, TrackerConfig, Unavailable};
use seedbucket_wire::tracker::http::{AnnounceReply, Event, ScrapeEntry};

use crate::announce_batches::{Announce, AnnounceBatches, SwarmLimits, unavailable};

/// How long a node answers a large swarm's announces from one sample.
pub const SAMPLE_TTL: Duration = Duration::from_secs(1);
/// Samples kept per node before stale ones are dropped.
const MAX_SAMPLES: usize = 4096;

/// The swarm script: every announce of one swarm in a batch
/// ([`crate::announce_batches`]). `ARGV`: now, peer TTL, swarm cap, per-address cap, then
/// (address, entry, event) for each announce. Returns the swarm's seeders and leechers after.
///
/// Announces are applied in order. Most come from peers already in the swarm: one `ZMSCORE`
/// finds them, and their refreshed entries are written after the loop with one command per key
/// for all of them (last announce of a peer wins; a peer dropped later in the batch, by its own
/// `stopped` or as a victim, loses its pending write). A new peer is written at once, after the
/// pending writes, since the caps it is checked against count entries and evict the stalest:
/// the result is the same as applying the announces one by one. Redis spent half of each
/// announce starting commands from Lua when each announce made its own five or six.
///
/// The per-address cap counts an address's entries in one sorted set per swarm ordered by
/// address and age (`ZLEXCOUNT` over the address's range), so refreshing a batch's entries
/// there is two commands for the whole batch; with one sorted set per address it was two per
/// address in the batch, most of a batch's commands when every peer has its own address.
const ANNOUNCE: &str = r"
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local max, per_address = tonumber(ARGV[3]), tonumber(ARGV[4])
-- KEYS[5] orders the swarm's entries by address, then age: members
-- <address length><address><last seen, 11 digits><member>, all scored 0, so one address's
-- entries are one lexicographic range, stalest first. The address: IPv4, or the IPv6 /64.
local mapped = string.rep('\0', 10) .. '\255\255'
local function prefix(m)
  local a
  if #m == 18 and string.sub(m, 1, 12) == mapped then a = string.sub(m, 13, 16)
  elseif #m == 18 then a = string.sub(m, 1, 8)
  else a = string.sub(m, 1, #m - 2) end
  return string.char(#a) .. a
end
local function indexed(m, at)
  return prefix(m) .. string.format('%011d', at) .. m
end
-- member -> its score in KEYS[1] while it is in the swarm; member -> entry still to be written.
local seen, pending = {}, {}
-- Drops the entries of a flat list of (member, score in KEYS[1]).
local function drop(list)
  if #list == 0 then return end
  local ms, ix = {}, {}
  for i = 1, #list, 2 do
    local m = list[i]
    ms[#ms + 1] = m
    ix[#ix + 1] = indexed(m, tonumber(list[i + 1]))
    seen[m], pending[m] = nil, nil
  end
  redis.call('ZREM', KEYS[1], unpack(ms))
  redis.call('ZREM', KEYS[2], unpack(ms))
  redis.call('HDEL', KEYS[3], unpack(ms))
  redis.call('ZREM', KEYS[5], unpack(ix))
end
local members = {}
for i = 5, #ARGV - 2, 3 do members[#members + 1] = ARGV[i] end
if #members > 0 then
  local scores = redis.call('ZMSCORE', KEYS[1], unpack(members))
  for k, m in ipairs(members) do
    if scores[k] then seen[m] = tonumber(scores[k]) end
  end
end
drop(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - ttl), 'WITHSCORES', 'LIMIT', 0, 1000))
local order = {}
-- Writes the pending entries, one command per key for all of them (an entry refreshed within
-- the second it was last seen keeps its place in KEYS[5]).
local function flush()
  local scored, entries, seeders, leeches, unindexed, reindexed = {}, {}, {}, {}, {}, {}
  for _, m in ipairs(order) do
    local entry = pending[m]
    if entry then
      pending[m] = nil
      scored[#scored + 1] = now
      scored[#scored + 1] = m
      entries[#entries + 1] = m
      entries[#entries + 1] = entry
      if string.sub(entry, 1, 1) == '1' then
        seeders[#seeders + 1] = now
        seeders[#seeders + 1] = m
      else
        leeches[#leeches + 1] = m
      end
      if seen[m] ~= now then
        if seen[m] then unindexed[#unindexed + 1] = indexed(m, seen[m]) end
        reindexed[#reindexed + 1] = 0
        reindexed[#reindexed + 1] = indexed(m, now)
        seen[m] = now
      end
    end
  end
  order = {}
  if #scored == 0 then return end
  redis.call('ZADD', KEYS[1], unpack(scored))
  redis.call('HSET', KEYS[3], unpack(entries))
  if #seeders > 0 then redis.call('ZADD', KEYS[2], unpack(seeders)) end
  if #leeches > 0 then redis.call('ZREM', KEYS[2], unpack(leeches)) end
  if #unindexed > 0 then redis.call('ZREM', KEYS[5], unpack(unindexed)) end
  if #reindexed > 0 then redis.call('ZADD', KEYS[5], unpack(reindexed)) end
end
for i = 5, #ARGV - 2, 3 do
  local member, entry, event = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if event == 'stopped' then
    if seen[member] then drop({member, seen[member]}) end
  else
    if event == 'completed' then redis.call('INCR', KEYS[4]) end
    if seen[member] then
      if not pending[member] then order[#order + 1] = member end
      pending[member] = entry
    else
      -- The caps below pick the stalest entries: the pending ones count as refreshed.
      flush()
      -- One more entry than its address may hold here evicts that address's stalest; a full
      -- swarm evicts its stalest entry.
      local p = prefix(member)
      local from, to = '[' .. p, '[' .. p .. '\255'
      if per_address > 0 and redis.call('ZLEXCOUNT', KEYS[5], from, to) >= per_address then
        local stalest = redis.call('ZRANGEBYLEX', KEYS[5], from, to, 'LIMIT', 0, 1)[1]
        if stalest then drop({string.sub(stalest, #p + 12), string.sub(stalest, #p + 1, #p + 11)}) end
      elseif redis.call('ZCARD', KEYS[1]) >= max then
        drop(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES'))
      end
      redis.call('ZADD', KEYS[1], now, member)
      redis.call('ZADD', KEYS[5], 0, indexed(member, now))
      redis.call('HSET', KEYS[3], member, entry)
      if string.sub(entry, 1, 1) == '1' then redis.call('ZADD', KEYS[2], now, member)
      else redis.call('ZREM', KEYS[2], member) end
      seen[member] = now
    end
  end
end
flush()
local total, seeds = redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2])
for i = 1, 5 do redis.call('EXPIRE', KEYS[i], ttl) end
return {tostring(seeds), tostring(total - seeds)}
";

const SCRAPE: &str = r"
local since = tonumber(ARGV[1])
return {
  tostring(redis.call('ZCOUNT', KEYS[2], since, '+inf')),
  tostring(redis.call('ZCOUNT', KEYS[1], since, '+inf')),
  redis.call('GET', KEYS[4]) or '0'
}
";

/// A token bucket per address: `rate` per second, bursts of `burst`, times in milliseconds.
const RATE: &str = r"
local now, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens, at = tonumber(v[1]) or burst, tonumber(v[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local ok = 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return ok
";

/// A peer's address as stored: 4 or 16 bytes of IP, then the port, big-endian.
pub fn encode_addr(addr: SocketAddr) -> Vec<u8> {
    let mut out = match addr.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    out.extend_from_slice(&addr.port().to_be_bytes());
    out
}

/// The inverse of [`encode_addr`]; `None` for anything else.
pub fn decode_addr(b: &[u8]) -> Option<SocketAddr> {
    let (ip, port) = match b.len() {
        6 => (IpAddr::from(<[u8; 4]>::try_from(&b[..4]).ok()?), &b[4..]),
        18 => (IpAddr::from(<[u8; 16]>::try_from(&b[..16]).ok()?), &b[16..]),
        _ => return None,
    };
    Some(SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]])))
}

pub(crate) fn swarm_keys(info_hash: &[u8; 20]) -> [String; 5] {
    let h = hex::encode(info_hash);
    ["peers", "seeds", "addrs", "done", "byaddr"].map(|k| format!("sb:{{{h}}}:{k}"))
}

fn event_name(e: Event) -> &'static str {
    match e {
        Event::None => "",
        Event::Completed => "completed",
        Event::Started => "started",
        Event::Stopped => "stopped",
    }
}

fn number(b: Option<&Vec<u8>>) -> u32 {
    b.and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A peer as the `addrs` hash keeps it: `1` for a seeder or `0`, then its peer id.
pub fn encode_entry(seeding: bool, peer_id: &[u8; 20]) -> Vec<u8> {
    let mut out = vec![if seeding { b'1' } else { b'0' }];
    out.extend_from_slice(peer_id);
    out
}

/// One peer of a swarm as a node read it from Redis (whether it seeds is which list of
/// [`SampledPeers`] holds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampledPeer {
    pub addr: SocketAddr,
    pub id: [u8; 20],
}

/// What an announce found: the swarm's counts and the peers read from it (shared by the
/// announces of one swarm in a batch).
#[derive(Debug, Clone)]
pub(crate) struct ScriptReply {
    pub(crate) complete: u32,
    pub(crate) incomplete: u32,
    pub(crate) peers: Arc<SampledPeers>,
}

/// Peers read from a swarm, seeders and leechers apart: a seeder's reply is read from the
/// leechers alone, not filtered out of a list mostly of seeders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SampledPeers {
    pub(crate) seeders: Vec<SampledPeer>,
    pub(crate) leechers: Vec<SampledPeer>,
}

/// Parses the announce script's reply (two counts) and the `HRANDFIELD ... WITHVALUES`
/// reply ((address, entry) pairs); entries that do not parse (another version's layout) are
/// skipped.
pub(crate) fn parse_announce_reply(
    counts: &[Vec<u8>],
    picked: &[Vec<u8>],
) -> Result<ScriptReply, Unavailable> {
    if counts.len() < 2 {
        return Err(Unavailable(
            "short reply from the announce script".to_owned(),
        ));
    }
    let mut peers = SampledPeers::default();
    for pair in picked.chunks_exact(2) {
        let Some((flag, id)) = pair[1].split_first() else {
            continue;
        };
        let (Some(addr), Ok(id)) = (decode_addr(&pair[0]), <[u8; 20]>::try_from(id)) else {
            continue;
        };
        let list = if *flag == b'1' {
            &mut peers.seeders
        } else {
            &mut peers.leechers
        };
        list.push(SampledPeer { addr, id });
    }
    Ok(ScriptReply {
        complete: number(counts.first()),
        incomplete: number(counts.get(1)),
        peers: Arc::new(peers),
    })
}

/// Up to `want` peers of `sample`, never the announcing peer itself: leechers only for a
/// seeder; for a leecher half seeders, half leechers, either filling in for the other when it
/// has too few (as the in-process tracker answers).
fn pick_peers(
    sample: &SampledPeers,
    me: SocketAddr,
    seeding: bool,
    want: usize,
) -> Vec<(SocketAddr, [u8; 20])> {
    // One more: the server puts its own seeder first in the reply.
    let mut out = Vec::with_capacity(want.min(sample.seeders.len() + sample.leechers.len()) + 1);
    let from_seeders = seedbucket_tracker::seeders_wanted(want, sample.leechers.len(), seeding);
    take_peers(&sample.seeders, me, from_seeders, &mut out);
    take_peers(&sample.leechers, me, want, &mut out);
    out
}

/// Appends peers of `list` but `me` to `out` until it holds `until`, reading from a random
/// place on (wrapping around): the sample is a random pick of the swarm already, so each
/// announce gets a different slice without shuffling it.
fn take_peers(
    list: &[SampledPeer],
    me: SocketAddr,
    until: usize,
    out: &mut Vec<(SocketAddr, [u8; 20])>,
) {
    let n = list.len();
    if n == 0 || out.len() >= until {
        return;
    }
    let start = rand::rng().random_range(0..n);
    for p in list[start..].iter().chain(&list[..start]) {
        if out.len() >= until {
            break;
        }
        if p.addr != me {
            out.push((p.addr, p.id));
        }
    }
}

/// Admissions this node wrote to Redis in the last [`ADMISSION_REWRITE`], so that a peer's
/// every announce does not rewrite its admission.
#[derive(Debug, Default)]
struct RecentAdmissions(Mutex<HashMap<([u8; 20], IpAddr), Admitted>>);

/// The access key an admission was written for, and when.
type Admitted = (String, Instant);

/// How often one admission is rewritten at most (it lasts [`ADMISSION_WINDOW`]).
const ADMISSION_REWRITE: Duration = Duration::from_secs(60);
/// Admissions remembered per node before old ones are dropped.
const MAX_RECENT_ADMISSIONS: usize = 65_536;

impl RecentAdmissions {
    fn recently(&self, key: [u8; 20], ip: IpAddr, access_key: &str, now: Instant) -> bool {
        self.0.lock().is_ok_and(|map| {
            map.get(&(key, ip)).is_some_and(|(ak, at)| {
                ak == access_key && now.duration_since(*at) < ADMISSION_REWRITE
            })
        })
    }

    fn note(&self, key: [u8; 20], ip: IpAddr, access_key: &str, now: Instant) {
        let Ok(mut map) = self.0.lock() else { return };
        if map.len() >= MAX_RECENT_ADMISSIONS {
            map.retain(|_, (_, at)| now.duration_since(*at) < ADMISSION_REWRITE);
        }
        if map.len() < MAX_RECENT_ADMISSIONS {
            map.insert((key, ip), (access_key.to_owned(), now));
        }
    }
}

/// The peers whose announce this node queued for Redis within the current second (unix
/// seconds, the swarm's score): a peer announcing again within that second with nothing
/// changed (same peer id, same seeding state, no event) would rewrite exactly what is there
/// (the same score, the same entry, the keys' expiry to the same moment), so its write is left
/// out. Cleared when the second changes or a pipeline fails (what it noted may not be in
/// Redis), so it holds at most one second's peers.
#[derive(Debug, Default)]
struct WrittenThisSecond(Mutex<WrittenIn>);

/// The second and the count of failed pipelines the writes were noted under, and the writes.
#[derive(Debug, Default)]
struct WrittenIn {
    second: u64,
    failures: u64,
    peers: HashMap<([u8; 20], SocketAddr), Entry>,
}

/// A peer's entry as written: seeding, peer id.
type Entry = (bool, [u8; 20]);

/// Peers remembered per second at most; past that, announces are all written.
const MAX_WRITTEN_THIS_SECOND: usize = 262_144;

impl WrittenThisSecond {
    /// Whether `entry` was queued for `peer` of swarm `key` in second `now`, with `failures`
    /// failed pipelines then and now.
    fn already(
        &self,
        key: [u8; 20],
        peer: SocketAddr,
        entry: Entry,
        now: u64,
        failures: u64,
    ) -> bool {
        self.0.lock().is_ok_and(|w| {
            w.second == now && w.failures == failures && w.peers.get(&(key, peer)) == Some(&entry)
        })
    }

    /// Notes that `entry` (`None`: the peer left) was queued for `peer` of swarm `key` in
    /// second `now`, `failures` pipelines having failed before.
    fn note(&self, key: [u8; 20], peer: SocketAddr, entry: Option<Entry>, now: u64, failures: u64) {
        let Ok(mut w) = self.0.lock() else { return };
        if w.second != now || w.failures != failures {
            w.second = now;
            w.failures = failures;
            w.peers.clear();
        }
        match entry {
            None => {
                w.peers.remove(&(key, peer));
            }
            Some(entry) if w.peers.len() < MAX_WRITTEN_THIS_SECOND => {
                w.peers.insert((key, peer), entry);
            }
            Some(_) => {}
        }
    }
}

/// This node's recent samples of large swarms' peer lists.
#[derive(Debug, Default)]
struct PeerSamples(Mutex<HashMap<[u8; 20], (Instant, ScriptReply)>>);

impl PeerSamples {
    /// The swarm's sample and its counts, if fetched less than [`SAMPLE_TTL`] before `now`.
    fn fresh(&self, key: &[u8; 20], now: Instant) -> Option<ScriptReply> {
        let map = self.0.lock().ok()?;
        let (at, sample) = map.get(key)?;
        (now.duration_since(*at) < SAMPLE_TTL).then(|| sample.clone())
    }

    fn keep(&self, key: [u8; 20], now: Instant, sample: ScriptReply) {
        let Ok(mut map) = self.0.lock() else { return };
        if map.len() >= MAX_SAMPLES {
            map.retain(|_, (at, _)| now.duration_since(*at) < SAMPLE_TTL);
        }
        if map.len() < MAX_SAMPLES {
            map.insert(key, (now, sample));
        }
    }
}

/// Swarms, admissions and announce rate limits in Redis, and the live nodes' seeders.
pub struct RedisSwarms {
    conn: ConnectionManager,
    config: TrackerConfig,
    rate_limit: u32,
    batches: AnnounceBatches,
    scrape: redis::Script,
    rate: redis::Script,
    samples: PeerSamples,
    admitted: RecentAdmissions,
    written: WrittenThisSecond,
    /// Every live node's seeder, this one's first; kept by the heartbeat ([`crate::Cluster`]).
    pub(crate) seeders: Arc<RwLock<Vec<SocketAddr>>>,
}

impl std::fmt::Debug for RedisSwarms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSwarms").finish_non_exhaustive()
    }
}

impl RedisSwarms {
    /// Notes what an announce queued: the peer's entry, or that it left.
    fn note_written(&self, key: [u8; 20], a: &PeerAnnounce, entry: Entry, now: u64, failures: u64) {
        let entry = (a.event != Event::Stopped).then_some(entry);
        self.written.note(key, a.addr, entry, now, failures);
    }

    fn reply(
        &self,
        complete: u32,
        incomplete: u32,
        peers: Vec<(SocketAddr, [u8; 20])>,
    ) -> AnnounceReply {
        AnnounceReply {
            interval: self.config.interval,
            min_interval: self.config.min_interval,
            complete,
            incomplete,
            peers,
            warning: None,
        }
    }

    pub(crate) fn new(
        conn: ConnectionManager,
        config: TrackerConfig,
        rate_limit: u32,
        seeders: Arc<RwLock<Vec<SocketAddr>>>,
    ) -> Self {
        let limits = SwarmLimits {
            peer_ttl: config.peer_ttl,
            max_peers: config.max_peers_per_torrent,
            max_per_address: config.max_peers_per_address_per_torrent,
        };
        Self {
            batches: AnnounceBatches::start(conn.clone(), redis::Script::new(ANNOUNCE), limits),
            conn,
            config,
            rate_limit,
            scrape: redis::Script::new(SCRAPE),
            rate: redis::Script::new(RATE),
            samples: PeerSamples::default(),
            admitted: RecentAdmissions::default(),
            written: WrittenThisSecond::default(),
            seeders,
        }
    }
}

#[async_trait::async_trait]
impl SwarmStore for RedisSwarms {
    async fn announce(
        &self,
        key: [u8; 20],
        a: &PeerAnnounce,
        now: u64,
    ) -> Result<AnnounceReply, Unavailable> {
        let want = self.config.numwant(a);
        let seeding = a.left == 0;
        let stopping = a.event == Event::Stopped;
        let started = Instant::now();
        let sample = (want > 0 && !stopping)
            .then(|| self.samples.fresh(&key, started))
            .flatten();
        let announce = Announce {
            info_hash: key,
            member: encode_addr(a.addr),
            entry: encode_entry(seeding, &a.peer_id),
            event: event_name(a.event),
            now,
            ask: 0,
        };
        let entry = (seeding, a.peer_id);
        if let Some(sample) = &sample
            && self.batches.healthy()
        {
            // The answer is all here: the write goes in with the next batch, unless this node
            // queued the very same one within this second.
            let failures = self.batches.failures();
            if a.event != Event::None || !self.written.already(key, a.addr, entry, now, failures) {
                self.batches.announce_later(announce).await?;
                self.note_written(key, a, entry, now, failures);
            }
            return Ok(self.reply(
                sample.complete,
                sample.incomplete,
                pick_peers(&sample.peers, a.addr, seeding, want),
            ));
        }
        // Read the peer list from Redis unless a fresh sample answers; ask for more than
        // `want` so that the announcing peer and (for a seeder) other seeders can be left out,
        // and so that a sample of a large swarm is worth keeping.
        let ask = if want == 0 || stopping || sample.is_some() {
            0
        } else {
            want * 3 + 1
        };
        let failures = self.batches.failures();
        let reply = self.batches.announce(Announce { ask, ..announce }).await?;
        self.note_written(key, a, entry, now, failures);
        let peers = match sample {
            Some(sample) => pick_peers(&sample.peers, a.addr, seeding, want),
            // Peers read for another announce of the same swarm are not this one's to give.
            None if ask == 0 => Vec::new(),
            None => {
                let peers = pick_peers(&reply.peers, a.addr, seeding, want);
                if (reply.complete + reply.incomplete) as usize > want + 1 {
                    self.samples.keep(key, started, reply.clone());
                }
                peers
            }
        };
        Ok(self.reply(reply.complete, reply.incomplete, peers))
    }

    async fn scrape(&self, key: &[u8; 20]) -> Result<ScrapeEntry, Unavailable> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut call = self.scrape.prepare_invoke();
        for k in swarm_keys(key) {
            call.key(k);
        }
        call.arg(now.saturating_sub(self.config.peer_ttl));
        let out: Vec<Vec<u8>> = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let complete = number(out.first());
        Ok(ScrapeEntry {
            complete,
            incomplete: number(out.get(1)).saturating_sub(complete),
            downloaded: number(out.get(2)),
        })
    }

    async fn expire(&self, _now: u64) {
        // Each announce prunes its swarm, and idle swarms' keys expire in Redis.
    }

    fn stats(&self) -> Option<(usize, usize)> {
        None
    }

    async fn admit(&self, key: [u8; 20], ip: IpAddr, access_key: &str) -> Result<(), Unavailable> {
        // A peer announces every few minutes (and a benchmark thousands of times a second);
        // the admission lasts 65 minutes, so rewriting it more than once a minute gains nothing.
        let now = Instant::now();
        if self.admitted.recently(key, ip, access_key, now) {
            return Ok(());
        }
        let k = format!("sb:{{{}}}:adm:{ip}", hex::encode(key));
        redis::cmd("SET")
            .arg(k)
            .arg(access_key)
            .arg("EX")
            .arg(ADMISSION_WINDOW.as_secs())
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.admitted.note(key, ip, access_key, now);
        Ok(())
    }

    async fn admission(&self, key: [u8; 20], ip: IpAddr) -> Result<Option<String>, Unavailable> {
        let k = format!("sb:{{{}}}:adm:{ip}", hex::encode(key));
        redis::cmd("GET")
            .arg(k)
            .query_async::<Option<String>>(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    async fn allow_announce(&self, ip: IpAddr, now_ms: u64) -> bool {
        if self.rate_limit == 0 {
            return true;
        }
        let mut call = self.rate.prepare_invoke();
        call.key(format!("sb:rate:{ip}"))
            .arg(now_ms)
            .arg(self.rate_limit)
            .arg(u64::from(self.rate_limit) * 2);
        // Without Redis the announce itself fails with a clear reason; no need to refuse here.
        call.invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map_or(true, |ok| ok == 1)
    }

    fn server_seeders(&self) -> Vec<SocketAddr> {
        self.seeders.read().map(|s| s.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for a in ["127.0.0.1:6881", "[::1]:51413", "10.1.2.3:1"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(decode_addr(&encode_addr(a)), Some(a));
        }
        assert_eq!(decode_addr(b"short"), None);
    }

    #[test]
    fn announce_reply() {
        let peer = |port: u16, id: u8| SampledPeer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            id: [id; 20],
        };
        let counts = vec![b"2".to_vec(), b"5".to_vec()];
        let picked = vec![
            encode_addr(peer(7000, 7).addr),
            encode_entry(false, &[7; 20]),
            vec![8; 3], // an address that does not parse is skipped
            encode_entry(true, &[8; 20]),
            encode_addr(peer(7001, 9).addr),
            encode_entry(true, &[9; 20]),
        ];
        let r = parse_announce_reply(&counts, &picked).unwrap();
        assert_eq!((r.complete, r.incomplete), (2, 5));
        assert_eq!(r.peers.leechers, vec![peer(7000, 7)]);
        assert_eq!(r.peers.seeders, vec![peer(7001, 9)]);
        assert!(parse_announce_reply(&[], &picked).is_err());
    }

    #[test]
    fn picking_leaves_out_the_announcer_and_seeders_for_a_seeder() {
        // Even ids seed.
        let peers: Vec<SampledPeer> = (0..10u8)
            .map(|i| SampledPeer {
                addr: SocketAddr::from(([127, 0, 0, 1], 7000 + u16::from(i))),
                id: [i; 20],
            })
            .collect();
        let me = peers[1].addr;
        let (seeders, leechers) = peers.iter().partition(|p| p.id[0] % 2 == 0);
        let sample = SampledPeers { seeders, leechers };
        let all = pick_peers(&sample, me, false, 100);
        assert_eq!(all.len(), 9);
        assert!(all.iter().all(|(a, _)| *a != me));
        let for_seeder = pick_peers(&sample, me, true, 100);
        assert_eq!(for_seeder.len(), 4);
        assert!(for_seeder.iter().all(|(_, id)| id[0] % 2 == 1));
        assert!(for_seeder.iter().all(|(a, _)| *a != me));
        // A leecher asking for 4 gets 2 of each; asking for 3, at least one leecher.
        let four = pick_peers(&sample, me, false, 4);
        assert_eq!(four.iter().filter(|(_, id)| id[0] % 2 == 0).count(), 2);
        assert_eq!(four.iter().filter(|(_, id)| id[0] % 2 == 1).count(), 2);
        assert_eq!(pick_peers(&sample, me, false, 3).len(), 3);
        // Too few leechers: seeders fill in (and the other way round).
        let few = SampledPeers {
            seeders: sample.seeders.clone(),
            leechers: vec![],
        };
        assert_eq!(pick_peers(&few, me, false, 4).len(), 4);
        let no_seeders = SampledPeers {
            seeders: vec![],
            leechers: sample.leechers.clone(),
        };
        assert_eq!(pick_peers(&no_seeders, me, false, 4).len(), 4);
    }

    #[test]
    fn a_write_is_remembered_within_its_second_and_until_a_pipeline_fails() {
        let w = WrittenThisSecond::default();
        let (key, peer) = ([1u8; 20], SocketAddr::from(([127, 0, 0, 2], 6881)));
        let leeching = (false, [7u8; 20]);
        assert!(!w.already(key, peer, leeching, 100, 0));
        w.note(key, peer, Some(leeching), 100, 0);
        assert!(w.already(key, peer, leeching, 100, 0));
        // Another entry, swarm, second or failure count is not the same write.
        assert!(!w.already(key, peer, (true, [7u8; 20]), 100, 0));
        assert!(!w.already([2u8; 20], peer, leeching, 100, 0));
        assert!(!w.already(key, peer, leeching, 101, 0));
        assert!(!w.already(key, peer, leeching, 100, 1));
        // A peer that left is forgotten; a new second starts empty.
        w.note(key, peer, None, 100, 0);
        assert!(!w.already(key, peer, leeching, 100, 0));
        w.note(key, peer, Some(leeching), 100, 0);
        w.note([2u8; 20], peer, Some(leeching), 101, 0);
        assert!(!w.already(key, peer, leeching, 101, 0));
        assert!(w.already([2u8; 20], peer, leeching, 101, 0));
    }

    #[test]
    fn keys_share_a_hash_tag() {
        for k in swarm_keys(&[0xab; 20]) {
            assert!(k.contains(&format!("{{{}}}", "ab".repeat(20))), "{k}");
        }
    }
}
