//! Browser swarms (WebTorrent, the WebSocket tracker) shared by the gateway nodes
//! ([`RedisBrowsers`]), so that a browser connected to one node gets offers from browsers
//! connected to the others, and their answers come back:
//!
//! - `sb:{<info-hash hex>}:browsers`: hash, peer id (20 bytes) → `<node> <seeding 0|1> <unix s>`,
//!   changed by a Lua script (atomic): an announce adds or refreshes its entry, unless that peer
//!   id is live on another node (then it is refused, as a second socket is on one node), and
//!   answers the live entries, dropping those not refreshed for [`LIVE`]. The key expires after
//!   [`LIVE`] too. At most [`MAX_PER_SWARM`] entries; past it a newcomer is not listed (it can
//!   still send offers).
//! - `sb:browser-relay:<node>`: the channel a node listens on; a message is the swarm (20
//!   bytes), the peer id it is for (20 bytes), then the tracker's JSON text for that browser.
//!
//! Each node re-registers its own entries every [`REFRESH`], so an entry outlives the time
//! between a browser's announces (2 minutes) while its node lives, and disappears within
//! [`LIVE`] once the node is gone. Offers and answers are relayed at most once; a browser that
//! missed one connects on a later announce, as with a lost WebSocket message.

use std::time::Duration;

use futures::StreamExt;
use redis::aio::ConnectionManager;
use seedbucket_tracker::Unavailable;
use seedbucket_tracker::browser::{SharedBrowsers, SharedSwarm};
use tokio::sync::mpsc;

type Id20 = [u8; 20];

/// A tracker message another node relayed: swarm, the peer id it is for, its text.
pub type RelayedMessage = (Id20, Id20, String);

/// A shared entry not refreshed for this long is gone (its node died, or its browser left
/// without a word).
pub const LIVE: Duration = Duration::from_secs(90);
/// How often a node re-registers its entries.
pub const REFRESH: Duration = Duration::from_secs(30);
/// Entries listed in one shared browser swarm.
pub const MAX_PER_SWARM: usize = 1000;
/// Relayed messages waiting for this node's sockets; past it they are dropped.
const INBOX: usize = 4096;

/// ARGV: peer id, node, seeding, stopped, now, live seconds, max entries. Returns `-1` when the
/// peer id is live on another node, else the live entries as a flat field/value list.
const ANNOUNCE: &str = r"
local peer, node, seeding, stopped = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now, live, max = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local cur = redis.call('HGET', KEYS[1], peer)
if cur then
  local owner, t = string.match(cur, '^(%S+) %d (%d+)$')
  if owner and owner ~= node and now - tonumber(t) <= live then return -1 end
end
if stopped == '1' then
  redis.call('HDEL', KEYS[1], peer)
elseif cur or redis.call('HLEN', KEYS[1]) < max then
  redis.call('HSET', KEYS[1], peer, node .. ' ' .. seeding .. ' ' .. now)
end
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local t = tonumber(string.match(all[i + 1], '(%d+)$') or '0')
  if now - t > live then
    redis.call('HDEL', KEYS[1], all[i])
  else
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
if #out > 0 then redis.call('EXPIRE', KEYS[1], live) end
return out
";

/// ARGV: node, now, live seconds, then (peer id, seeding) pairs: re-registers this node's
/// entries, never one another node holds now.
const REFRESH_SCRIPT: &str = r"
local node, now, live = ARGV[1], ARGV[2], tonumber(ARGV[3])
for i = 4, #ARGV - 1, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  local owner = cur and string.match(cur, '^(%S+)')
  if not cur or owner == node then
    redis.call('HSET', KEYS[1], ARGV[i], node .. ' ' .. ARGV[i + 1] .. ' ' .. now)
  end
end
redis.call('EXPIRE', KEYS[1], live)
return 1
";

/// ARGV: node, then peer ids: removes those of them this node holds.
const LEAVE_SCRIPT: &str = r"
for i = 2, #ARGV do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if cur and string.match(cur, '^(%S+)') == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 1
";

fn swarm_key(swarm: &Id20) -> String {
    format!("sb:{{{}}}:browsers", hex::encode(swarm))
}

fn relay_channel(node: &str) -> String {
    format!("sb:browser-relay:{node}")
}

/// `<node> <seeding> <time>` → (node, seeding).
fn parse_entry(value: &[u8]) -> Option<(String, bool)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.split(' ');
    let node = parts.next()?.to_owned();
    let seeding = parts.next()? == "1";
    parts.next()?.parse::<u64>().ok()?;
    Some((node, seeding))
}

/// The swarm from the script's flat field/value list.
fn shared_swarm(flat: Vec<Vec<u8>>) -> SharedSwarm {
    let mut out = SharedSwarm::default();
    for pair in flat.chunks(2) {
        let [field, value] = pair else { continue };
        let (Ok(peer), Some((node, seeding))) =
            (<Id20>::try_from(field.as_slice()), parse_entry(value))
        else {
            continue;
        };
        if seeding {
            out.seeders += 1;
        } else {
            out.leechers += 1;
        }
        out.peers.push((peer, node));
    }
    out
}

/// A relayed message: swarm, peer id, text.
pub fn encode_relay(swarm: &Id20, to: &Id20, text: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(40 + text.len());
    m.extend_from_slice(swarm);
    m.extend_from_slice(to);
    m.extend_from_slice(text.as_bytes());
    m
}

pub fn decode_relay(payload: &[u8]) -> Option<(Id20, Id20, String)> {
    let swarm = <Id20>::try_from(payload.get(..20)?).ok()?;
    let to = <Id20>::try_from(payload.get(20..40)?).ok()?;
    let text = String::from_utf8(payload.get(40..)?.to_vec()).ok()?;
    Some((swarm, to, text))
}

/// This node's view of the shared browser swarms.
pub struct RedisBrowsers {
    conn: ConnectionManager,
    node: String,
    announce: redis::Script,
    refresh: redis::Script,
    leave: redis::Script,
}

impl RedisBrowsers {
    /// With the messages other nodes relay to this node's browsers coming out of the returned
    /// receiver (swarm, peer id, text).
    pub(crate) fn start(
        conn: ConnectionManager,
        client: redis::Client,
        node: String,
    ) -> (Self, mpsc::Receiver<RelayedMessage>) {
        let (tx, rx) = mpsc::channel(INBOX);
        tokio::spawn(follow_relay(client, relay_channel(&node), tx));
        (
            Self {
                conn,
                node,
                announce: redis::Script::new(ANNOUNCE),
                refresh: redis::Script::new(REFRESH_SCRIPT),
                leave: redis::Script::new(LEAVE_SCRIPT),
            },
            rx,
        )
    }
}

#[async_trait::async_trait]
impl SharedBrowsers for RedisBrowsers {
    fn node(&self) -> &str {
        &self.node
    }

    fn refresh_every(&self) -> Duration {
        REFRESH
    }

    async fn announce(
        &self,
        swarm: Id20,
        peer_id: Id20,
        seeding: bool,
        stopped: bool,
        now: u64,
    ) -> Result<SharedSwarm, Unavailable> {
        let reply: redis::Value = self
            .announce
            .key(swarm_key(&swarm))
            .arg(&peer_id[..])
            .arg(&self.node)
            .arg(if seeding { "1" } else { "0" })
            .arg(if stopped { "1" } else { "0" })
            .arg(now)
            .arg(LIVE.as_secs())
            .arg(MAX_PER_SWARM)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| Unavailable(e.to_string()))?;
        if let redis::Value::Int(-1) = reply {
            return Err(Unavailable(
                "this peer_id is in use by another connection".to_owned(),
            ));
        }
        let flat: Vec<Vec<u8>> =
            redis::from_redis_value(reply).map_err(|e| Unavailable(e.to_string()))?;
        Ok(shared_swarm(flat))
    }

    async fn leave(&self, entries: &[(Id20, Id20)]) {
        let mut by_swarm: std::collections::HashMap<Id20, Vec<Id20>> = Default::default();
        for (swarm, peer) in entries {
            by_swarm.entry(*swarm).or_default().push(*peer);
        }
        for (swarm, peers) in by_swarm {
            let mut call = self.leave.key(swarm_key(&swarm));
            call.arg(&self.node);
            for p in &peers {
                call.arg(&p[..]);
            }
            if let Err(e) = call.invoke_async::<i64>(&mut self.conn.clone()).await {
                tracing::debug!(error = %e, "shared browser entries not removed (they expire)");
            }
        }
    }

    async fn refresh(&self, entries: &[(Id20, Id20, bool)], now: u64) {
        let mut by_swarm: std::collections::HashMap<Id20, Vec<(Id20, bool)>> = Default::default();
        for (swarm, peer, seeding) in entries {
            by_swarm.entry(*swarm).or_default().push((*peer, *seeding));
        }
        for (swarm, peers) in by_swarm {
            let mut call = self.refresh.key(swarm_key(&swarm));
            call.arg(&self.node).arg(now).arg(LIVE.as_secs());
            for (p, seeding) in &peers {
                call.arg(&p[..]).arg(if *seeding { "1" } else { "0" });
            }
            if let Err(e) = call.invoke_async::<i64>(&mut self.conn.clone()).await {
                tracing::debug!(error = %e, "shared browser entries not refreshed");
            }
        }
    }

    async fn node_of(&self, swarm: Id20, peer_id: Id20) -> Result<Option<String>, Unavailable> {
        let value: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(swarm_key(&swarm))
            .arg(&peer_id[..])
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| Unavailable(e.to_string()))?;
        Ok(value.and_then(|v| parse_entry(&v)).map(|(node, _)| node))
    }

    async fn relay(&self, node: &str, swarm: Id20, to: Id20, text: &str) {
        let sent = redis::cmd("PUBLISH")
            .arg(relay_channel(node))
            .arg(encode_relay(&swarm, &to, text))
            .query_async::<i64>(&mut self.conn.clone())
            .await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "browser message not relayed");
        }
    }
}

/// Receives what other nodes relay to this node's browsers, re-subscribing whenever the
/// subscription drops.
async fn follow_relay(client: redis::Client, channel: String, tx: mpsc::Sender<RelayedMessage>) {
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        match decode_relay(msg.get_payload_bytes()) {
                            Some(m) => {
                                if tx.is_closed() {
                                    return;
                                }
                                let _ = tx.try_send(m);
                            }
                            None => tracing::debug!("malformed relayed browser message"),
                        }
                    }
                    tracing::warn!("browser relay subscription lost; retrying");
                }
                Err(e) => tracing::debug!(error = %e, "cannot subscribe to the browser relay"),
            },
            Err(e) => tracing::debug!(error = %e, "cannot reach redis for the browser relay"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_messages_round_trip() {
        let m = encode_relay(&[1; 20], &[2; 20], r#"{"action":"announce"}"#);
        assert_eq!(
            decode_relay(&m),
            Some(([1; 20], [2; 20], r#"{"action":"announce"}"#.to_owned()))
        );
        assert_eq!(decode_relay(&m[..30]), None);
    }

    #[test]
    fn entries_parse() {
        assert_eq!(
            parse_entry(b"node-a 1 1700000000"),
            Some(("node-a".into(), true))
        );
        assert_eq!(parse_entry(b"node-a 0 x"), None);
        let s = shared_swarm(vec![
            vec![7; 20],
            b"a 1 5".to_vec(),
            vec![8; 20],
            b"b 0 5".to_vec(),
            vec![9; 3],
            b"c 0 5".to_vec(),
        ]);
        assert_eq!((s.seeders, s.leechers), (1, 1));
        assert_eq!(s.peers, vec![([7; 20], "a".into()), ([8; 20], "b".into())]);
        assert_eq!(
            swarm_key(&[0xab; 20]),
            format!("sb:{{{}}}:browsers", "ab".repeat(20))
        );
    }
}
