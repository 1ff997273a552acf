//! The tracker's state in Redis ([`RedisSwarms`]): one swarm is four keys sharing the hash tag
//! `{<info-hash>}` (so a Redis Cluster keeps it on one shard), changed only by Lua scripts,
//! which Redis runs atomically:
//!
//! - `sb:{h}:peers`: sorted set, peer id → time of its last announce (unix seconds)
//! - `sb:{h}:seeds`: the seeders among them, same scores
//! - `sb:{h}:addrs`: hash, peer id → `1` (seeder) or `0`, then its address ([`encode_addr`]),
//!   so one `HRANDFIELD ... WITHVALUES` picks a peer list
//! - `sb:{h}:done`: how many completed downloads were announced
//!
//! Every announce prunes peers older than the peer TTL (at most 1000 per call) and sets the
//! keys to expire after that TTL, so an abandoned swarm disappears by itself and the memory is
//! bounded by the peers that announced within the TTL. Admissions are `sb:{h}:adm:<ip>` with
//! the admission window as expiry; rate-limit buckets `sb:rate:<ip>` expire once refilled.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use redis::aio::ConnectionManager;
use seedbucket_tracker::{ADMISSION_WINDOW, PeerAnnounce, SwarmStore, TrackerConfig, Unavailable};
use seedbucket_wire::tracker::http::{AnnounceReply, Event, ScrapeEntry};

const ANNOUNCE: &str = r"
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local id, entry, event = ARGV[3], ARGV[4], ARGV[5]
local seeding = string.sub(entry, 1, 1) == '1'
local want, max = tonumber(ARGV[6]), tonumber(ARGV[7])
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - ttl), 'LIMIT', 0, 1000)
if #old > 0 then
  redis.call('ZREM', KEYS[1], unpack(old))
  redis.call('ZREM', KEYS[2], unpack(old))
  redis.call('HDEL', KEYS[3], unpack(old))
end
local full = 0
if event == 'stopped' then
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
else
  if event == 'completed' then redis.call('INCR', KEYS[4]) end
  if redis.call('ZSCORE', KEYS[1], id) or redis.call('ZCARD', KEYS[1]) < max then
    redis.call('ZADD', KEYS[1], now, id)
    redis.call('HSET', KEYS[3], id, entry)
    if seeding then redis.call('ZADD', KEYS[2], now, id) else redis.call('ZREM', KEYS[2], id) end
  else
    full = 1
  end
end
local total, seeds = redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2])
local out = {tostring(seeds), tostring(total - seeds), tostring(full)}
if event ~= 'stopped' and want > 0 and total > 0 then
  local ask = want + 1
  if seeding then ask = want * 3 + 1 end
  local picked = redis.call('HRANDFIELD', KEYS[3], ask, 'WITHVALUES')
  for i = 1, #picked, 2 do
    if (#out - 3) / 2 >= want then break end
    local p, e = picked[i], picked[i + 1]
    if p ~= id and not (seeding and string.sub(e, 1, 1) == '1') then
      out[#out + 1] = p
      out[#out + 1] = e
    end
  end
end
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ttl) end
return out
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

fn swarm_keys(info_hash: &[u8; 20]) -> [String; 4] {
    let h = hex::encode(info_hash);
    ["peers", "seeds", "addrs", "done"].map(|k| format!("sb:{{{h}}}:{k}"))
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

/// A peer as the `addrs` hash keeps it: `1` for a seeder or `0`, then the address.
pub fn encode_entry(seeding: bool, addr: SocketAddr) -> Vec<u8> {
    let mut out = vec![if seeding { b'1' } else { b'0' }];
    out.extend(encode_addr(addr));
    out
}

/// What the announce script returned: counts, the full flag, then (peer id, entry) pairs.
fn parse_announce_reply(
    cfg: &TrackerConfig,
    out: &[Vec<u8>],
) -> Result<AnnounceReply, Unavailable> {
    if out.len() < 3 {
        return Err(Unavailable(
            "short reply from the announce script".to_owned(),
        ));
    }
    let peers = out[3..]
        .chunks_exact(2)
        .filter_map(|pair| {
            let id = <[u8; 20]>::try_from(pair[0].as_slice()).ok()?;
            Some((decode_addr(pair[1].get(1..)?)?, id))
        })
        .collect();
    Ok(AnnounceReply {
        interval: cfg.interval,
        min_interval: cfg.min_interval,
        complete: number(out.first()),
        incomplete: number(out.get(1)),
        peers,
        warning: (number(out.get(2)) == 1)
            .then(|| "the swarm is full; you were not added".to_owned()),
    })
}

fn unavailable(e: redis::RedisError) -> Unavailable {
    Unavailable(format!("redis: {e}"))
}

/// Swarms, admissions and announce rate limits in Redis, and the live nodes' seeders.
pub struct RedisSwarms {
    conn: ConnectionManager,
    config: TrackerConfig,
    rate_limit: u32,
    announce: redis::Script,
    scrape: redis::Script,
    rate: redis::Script,
    /// Every live node's seeder, this one's first; kept by the heartbeat ([`crate::Cluster`]).
    pub(crate) seeders: Arc<RwLock<Vec<SocketAddr>>>,
}

impl std::fmt::Debug for RedisSwarms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSwarms").finish_non_exhaustive()
    }
}

impl RedisSwarms {
    pub(crate) fn new(
        conn: ConnectionManager,
        config: TrackerConfig,
        rate_limit: u32,
        seeders: Arc<RwLock<Vec<SocketAddr>>>,
    ) -> Self {
        Self {
            conn,
            config,
            rate_limit,
            announce: redis::Script::new(ANNOUNCE),
            scrape: redis::Script::new(SCRAPE),
            rate: redis::Script::new(RATE),
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
        let want = a
            .numwant
            .unwrap_or(self.config.default_numwant)
            .min(self.config.max_numwant);
        let mut call = self.announce.prepare_invoke();
        for k in swarm_keys(&key) {
            call.key(k);
        }
        call.arg(now)
            .arg(self.config.peer_ttl)
            .arg(&a.peer_id[..])
            .arg(encode_entry(a.left == 0, a.addr))
            .arg(event_name(a.event))
            .arg(want)
            .arg(self.config.max_peers_per_torrent);
        let out: Vec<Vec<u8>> = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        parse_announce_reply(&self.config, &out)
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
        let k = format!("sb:{{{}}}:adm:{ip}", hex::encode(key));
        redis::cmd("SET")
            .arg(k)
            .arg(access_key)
            .arg("EX")
            .arg(ADMISSION_WINDOW.as_secs())
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(unavailable)
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
        let cfg = TrackerConfig::default();
        let out = vec![
            b"2".to_vec(),
            b"5".to_vec(),
            b"0".to_vec(),
            vec![7; 20],
            encode_entry(false, "127.0.0.1:7000".parse().unwrap()),
            vec![8; 3], // a bad id is skipped
            encode_entry(true, "127.0.0.1:7001".parse().unwrap()),
        ];
        let r = parse_announce_reply(&cfg, &out).unwrap();
        assert_eq!((r.complete, r.incomplete), (2, 5));
        assert_eq!(r.peers, vec![("127.0.0.1:7000".parse().unwrap(), [7; 20])]);
        assert!(r.warning.is_none());
        assert!(parse_announce_reply(&cfg, &[]).is_err());
    }

    #[test]
    fn keys_share_a_hash_tag() {
        for k in swarm_keys(&[0xab; 20]) {
            assert!(k.contains(&format!("{{{}}}", "ab".repeat(20))), "{k}");
        }
    }
}
