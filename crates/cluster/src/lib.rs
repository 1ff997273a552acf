//! Shared state for several seedbucket gateway nodes behind one name, in Redis (`--redis`):
//!
//! - the tracker's swarms, private-torrent admissions and announce rate limits ([`swarms`]),
//!   so a peer announcing to one node meets the peers that announced to another;
//! - the list of live nodes' seeders (`sb:nodes`, a sorted set scored by each node's last
//!   heartbeat), so every node's seeder appears in every peer list;
//! - leases ([`leases`]), so a burst of first `?torrent`s on many nodes hashes an object once;
//! - change notices ([`notices`]), so a key or an access rule changed through one node takes
//!   effect on the others at once;
//! - the browser swarms of the WebSocket tracker ([`browsers`]), with a relay of offers and
//!   answers between nodes, so browsers connected to different nodes find each other.
//!
//! The objects, keys, ACLs, piece hashes and issued torrents stay in the S3 backend: Redis
//! holds nothing that the next announces do not rebuild, so it needs no persistence.

mod announce_batches;
pub mod browsers;
pub mod leases;
pub mod notices;
pub mod swarms;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use seedbucket_store::Store;
use seedbucket_tracker::TrackerConfig;

pub use crate::browsers::RedisBrowsers;
pub use crate::leases::RedisLeases;
pub use crate::swarms::RedisSwarms;

/// How often a node re-registers its seeder and re-reads the others'.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node not heard from for this long is left out of peer lists.
pub const NODE_TTL: Duration = Duration::from_secs(10);
const NODES_KEY: &str = "sb:nodes";

/// This node's handle on the shared state.
pub struct Cluster {
    pub swarms: Arc<RedisSwarms>,
    pub browsers: Arc<RedisBrowsers>,
    /// What other nodes relay to this node's browsers (swarm, peer id, text): taken once by
    /// the server, which hands each to its socket.
    pub browser_messages:
        std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<browsers::RelayedMessage>>>,
    conn: ConnectionManager,
    seeder: Option<SocketAddr>,
}

impl Cluster {
    /// Connects to Redis at `url` (retrying in the background if it is down now), hands the
    /// store its leases, starts following and publishing change notices, and starts the
    /// heartbeat that puts `seeder` (this node's, as peers dial it) in every peer list.
    pub async fn start(
        url: &str,
        store: &Store,
        tracker: TrackerConfig,
        rate_limit: u32,
        seeder: Option<SocketAddr>,
    ) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("--redis {url}: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| format!("--redis {url}: {e}"))?;
        match redis::cmd("PING")
            .query_async::<String>(&mut conn.clone())
            .await
        {
            Ok(_) => tracing::info!(redis = %redacted(url), "shared state in redis"),
            Err(e) => tracing::warn!(redis = %redacted(url), error = %e,
                "redis is not reachable yet; announces fail until it is"),
        }
        let node = uuid::Uuid::new_v4().to_string();
        let seeders = Arc::new(RwLock::new(seeder.into_iter().collect::<Vec<_>>()));
        let swarms = Arc::new(RedisSwarms::new(
            conn.clone(),
            tracker,
            rate_limit,
            seeders.clone(),
        ));
        store.set_leases(Arc::new(RedisLeases::for_connection(conn.clone())));
        notices::publish_local_changes(store, conn.clone(), node.clone());
        let (browsers, browser_messages) =
            RedisBrowsers::start(conn.clone(), client.clone(), node.clone());
        notices::follow_remote_changes(store.clone(), client, node);
        if let Some(own) = seeder {
            tokio::spawn(heartbeat(conn.clone(), own, seeders));
        }
        Ok(Self {
            swarms,
            browsers: Arc::new(browsers),
            browser_messages: std::sync::Mutex::new(Some(browser_messages)),
            conn,
            seeder,
        })
    }

    /// Takes this node's seeder out of the peer lists (on a clean shutdown).
    pub async fn leave(&self) {
        if let Some(own) = self.seeder {
            let _ = redis::cmd("ZREM")
                .arg(NODES_KEY)
                .arg(own.to_string())
                .query_async::<i64>(&mut self.conn.clone())
                .await;
        }
    }
}

/// The URL without its password, for logs.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://…@{}", &url[at + 1..]),
        _ => url.to_owned(),
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Registers `own` every [`HEARTBEAT`], drops nodes silent for [`NODE_TTL`], and keeps the
/// live list in `seeders` (this node's first). While Redis is down the last list stays.
async fn heartbeat(
    conn: ConnectionManager,
    own: SocketAddr,
    seeders: Arc<RwLock<Vec<SocketAddr>>>,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = unix_ms();
        let cutoff = now.saturating_sub(u64::try_from(NODE_TTL.as_millis()).unwrap_or(0));
        let reply = redis::pipe()
            .cmd("ZADD")
            .arg(NODES_KEY)
            .arg(now)
            .arg(own.to_string())
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(NODES_KEY)
            .arg("-inf")
            .arg(format!("({cutoff}"))
            .ignore()
            .cmd("ZRANGE")
            .arg(NODES_KEY)
            .arg(0)
            .arg(-1)
            .query_async::<(Vec<String>,)>(&mut conn.clone())
            .await;
        match reply {
            Ok((live,)) => {
                let mut list = vec![own];
                list.extend(
                    live.iter()
                        .filter_map(|s| s.parse::<SocketAddr>().ok())
                        .filter(|a| *a != own),
                );
                if let Ok(mut s) = seeders.write() {
                    *s = list;
                }
            }
            Err(e) => tracing::debug!(error = %e, "heartbeat not recorded"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redacted("redis://:secret@10.0.0.1:6379/0"),
            "redis://…@10.0.0.1:6379/0"
        );
        assert_eq!(
            super::redacted("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
    }
}
