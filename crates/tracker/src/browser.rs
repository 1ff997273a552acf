//! Swarms of browser peers (WebTorrent over WebSocket), kept apart from the TCP/UDP swarms: a
//! browser reaches only other browsers (WebRTC) and webseeds, and a TCP client cannot dial a
//! browser. Pure state, with the time passed in, like [`crate::Swarms`].
//!
//! An entry is one peer id in one swarm, owned by the socket it announced on: the tracker hands
//! offers to the sockets of other entries and relays answers to the socket of the peer id they
//! are for. A peer id owned by a live socket cannot be taken over by another socket (receivers
//! of an offer learn the offerer's peer id; they must not be able to intercept its answers).
//! Closing a socket removes its entries.
//!
//! Bounds: entries per swarm (a full swarm evicts its stalest entry), swarms per socket (more
//! are refused), and entries expire when their socket stops announcing.

use std::collections::{HashMap, HashSet};

/// Identifies one WebSocket connection.
pub type ConnId = u64;
type Id20 = [u8; 20];

#[derive(Debug, Clone)]
pub struct BrowserLimits {
    pub max_peers_per_swarm: usize,
    pub max_swarms_per_socket: usize,
    /// Seconds an entry lives without an announce.
    pub peer_ttl: u64,
    /// Seconds between announces asked of browsers.
    pub interval: u32,
}

impl Default for BrowserLimits {
    fn default() -> Self {
        Self {
            max_peers_per_swarm: 1000,
            max_swarms_per_socket: 64,
            peer_ttl: 300,
            interval: 120,
        }
    }
}

#[derive(Debug, Clone)]
struct BrowserPeer {
    conn: ConnId,
    left: Option<u64>,
    uploaded: u64,
    downloaded: u64,
    last_seen: u64,
}

#[derive(Debug, Default)]
struct BrowserSwarm {
    peers: HashMap<Id20, BrowserPeer>,
    completed: u32,
    /// Rotates which peers get offers.
    cursor: usize,
}

impl BrowserSwarm {
    fn counts(&self) -> (u32, u32) {
        let seeds = self.peers.values().filter(|p| p.left == Some(0)).count();
        let all = self.peers.len();
        (
            u32::try_from(seeds).unwrap_or(u32::MAX),
            u32::try_from(all - seeds).unwrap_or(u32::MAX),
        )
    }
}

/// Why an announce is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowserRefusal {
    /// Another live socket announced this peer id in this swarm.
    PeerIdInUse,
    /// The socket is in as many swarms as it may be.
    TooManySwarms,
}

impl BrowserRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            Self::PeerIdInUse => "this peer_id is in use by another connection",
            Self::TooManySwarms => "too many torrents on one connection",
        }
    }
}

/// What an announce reported about a swarm, for the server's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrowserTotals {
    pub peers: usize,
    pub seeds: usize,
    pub completed: u32,
    /// Bytes the swarm's browsers say they uploaded to other browsers...
    pub uploaded: u64,
    /// ... and downloaded from every source (other browsers and webseeds).
    pub downloaded: u64,
}

#[derive(Debug, Default)]
pub struct BrowserSwarms {
    pub limits: BrowserLimits,
    swarms: HashMap<Id20, BrowserSwarm>,
    by_conn: HashMap<ConnId, HashSet<(Id20, Id20)>>,
}

/// One announce's fields, as the swarm needs them.
#[derive(Debug, Clone, Copy)]
pub struct BrowserAnnounce {
    pub peer_id: Id20,
    pub conn: ConnId,
    /// `None` when the message did not say (an answer-only message).
    pub left: Option<u64>,
    pub uploaded: Option<u64>,
    pub downloaded: Option<u64>,
    pub stopped: bool,
    pub completed: bool,
}

impl BrowserSwarms {
    pub fn new(limits: BrowserLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Records an announce; returns the swarm's (complete, incomplete).
    pub fn announce(
        &mut self,
        key: Id20,
        a: &BrowserAnnounce,
        now: u64,
    ) -> Result<(u32, u32), BrowserRefusal> {
        if let Some(p) = self.swarms.get(&key).and_then(|s| s.peers.get(&a.peer_id))
            && p.conn != a.conn
        {
            return Err(BrowserRefusal::PeerIdInUse);
        }
        if a.stopped {
            self.remove(key, a.peer_id);
            return Ok(self.swarms.get(&key).map_or((0, 0), BrowserSwarm::counts));
        }
        let joined = self.by_conn.get(&a.conn).map_or(0, HashSet::len);
        let new_here = !self
            .by_conn
            .get(&a.conn)
            .is_some_and(|s| s.contains(&(key, a.peer_id)));
        if new_here && joined >= self.limits.max_swarms_per_socket {
            return Err(BrowserRefusal::TooManySwarms);
        }
        let max = self.limits.max_peers_per_swarm.max(1);
        let swarm = self.swarms.entry(key).or_default();
        if new_here && swarm.peers.len() >= max {
            // Evict the stalest entry for the new one.
            if let Some((&old, p)) = swarm.peers.iter().min_by_key(|(_, p)| p.last_seen) {
                let old_conn = p.conn;
                swarm.peers.remove(&old);
                if let Some(set) = self.by_conn.get_mut(&old_conn) {
                    set.remove(&(key, old));
                }
            }
        }
        let swarm = self.swarms.entry(key).or_default();
        let entry = swarm.peers.entry(a.peer_id).or_insert(BrowserPeer {
            conn: a.conn,
            left: None,
            uploaded: 0,
            downloaded: 0,
            last_seen: now,
        });
        entry.last_seen = now;
        if a.left.is_some() {
            entry.left = a.left;
        }
        if let Some(u) = a.uploaded {
            entry.uploaded = u;
        }
        if let Some(d) = a.downloaded {
            entry.downloaded = d;
        }
        if a.completed {
            swarm.completed = swarm.completed.saturating_add(1);
        }
        let counts = swarm.counts();
        self.by_conn
            .entry(a.conn)
            .or_default()
            .insert((key, a.peer_id));
        Ok(counts)
    }

    /// Up to `n` other peers of the swarm to hand offers to (a different run each call).
    pub fn offer_targets(&mut self, key: Id20, from: &Id20, n: usize) -> Vec<(Id20, ConnId)> {
        let Some(swarm) = self.swarms.get_mut(&key) else {
            return Vec::new();
        };
        let len = swarm.peers.len();
        if len == 0 {
            return Vec::new();
        }
        // From a rotating start in the map's order (stable while the swarm is unchanged), so
        // that every peer gets offers, without collecting or sorting the whole swarm.
        let start = swarm.cursor % len;
        swarm.cursor = swarm.cursor.wrapping_add(n.max(1));
        swarm
            .peers
            .iter()
            .skip(start)
            .chain(swarm.peers.iter().take(start))
            .filter(|(id, _)| *id != from)
            .map(|(id, p)| (*id, p.conn))
            .take(n)
            .collect()
    }

    /// The socket that owns `peer_id` in the swarm.
    pub fn conn_of(&self, key: &Id20, peer_id: &Id20) -> Option<ConnId> {
        self.swarms.get(key)?.peers.get(peer_id).map(|p| p.conn)
    }

    fn remove(&mut self, key: Id20, peer_id: Id20) {
        if let Some(swarm) = self.swarms.get_mut(&key)
            && let Some(p) = swarm.peers.remove(&peer_id)
        {
            if let Some(set) = self.by_conn.get_mut(&p.conn) {
                set.remove(&(key, peer_id));
                if set.is_empty() {
                    self.by_conn.remove(&p.conn);
                }
            }
            if swarm.peers.is_empty() {
                self.swarms.remove(&key);
            }
        }
    }

    /// A socket closed: its entries go.
    /// Removes a closed socket's entries; returns them as (swarm, peer id).
    pub fn drop_conn(&mut self, conn: ConnId) -> Vec<(Id20, Id20)> {
        let gone: Vec<(Id20, Id20)> = self
            .by_conn
            .remove(&conn)
            .unwrap_or_default()
            .into_iter()
            .collect();
        for (key, peer_id) in &gone {
            if let Some(swarm) = self.swarms.get_mut(key) {
                swarm.peers.remove(peer_id);
                if swarm.peers.is_empty() {
                    self.swarms.remove(key);
                }
            }
        }
        gone
    }

    /// Every entry of this process, as (swarm, peer id, seeding): what a node re-registers in
    /// the shared browser swarms.
    pub fn entries(&self) -> Vec<(Id20, Id20, bool)> {
        self.swarms
            .iter()
            .flat_map(|(key, swarm)| {
                swarm
                    .peers
                    .iter()
                    .map(move |(id, p)| (*key, *id, p.left == Some(0)))
            })
            .collect()
    }

    /// Drops entries not announced for `peer_ttl` seconds.
    pub fn expire(&mut self, now: u64) {
        let ttl = self.limits.peer_ttl;
        let mut gone = Vec::new();
        for (key, swarm) in &self.swarms {
            for (id, p) in &swarm.peers {
                if now.saturating_sub(p.last_seen) > ttl {
                    gone.push((*key, *id));
                }
            }
        }
        for (key, id) in gone {
            self.remove(key, id);
        }
    }

    /// (complete, incomplete, downloaded) of one swarm.
    pub fn scrape(&self, key: &Id20) -> (u32, u32, u32) {
        self.swarms.get(key).map_or((0, 0, 0), |s| {
            let (c, i) = s.counts();
            (c, i, s.completed)
        })
    }

    pub fn totals(&self, key: &Id20) -> BrowserTotals {
        self.swarms
            .get(key)
            .map_or_else(BrowserTotals::default, |s| {
                let (seeds, _) = s.counts();
                BrowserTotals {
                    peers: s.peers.len(),
                    seeds: seeds as usize,
                    completed: s.completed,
                    uploaded: s.peers.values().map(|p| p.uploaded).sum(),
                    downloaded: s.peers.values().map(|p| p.downloaded).sum(),
                }
            })
    }

    /// (swarms, entries) in all swarms.
    pub fn stats(&self) -> (usize, usize) {
        (
            self.swarms.len(),
            self.swarms.values().map(|s| s.peers.len()).sum(),
        )
    }

    /// Every swarm key with browsers in it.
    pub fn keys(&self) -> Vec<Id20> {
        self.swarms.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(peer: u8, conn: ConnId, left: u64) -> BrowserAnnounce {
        BrowserAnnounce {
            peer_id: [peer; 20],
            conn,
            left: Some(left),
            uploaded: Some(0),
            downloaded: Some(0),
            stopped: false,
            completed: false,
        }
    }

    #[test]
    fn offers_go_to_other_peers_and_answers_find_their_socket() {
        let mut s = BrowserSwarms::default();
        let k = [9; 20];
        assert_eq!(s.announce(k, &ann(1, 10, 100), 0), Ok((0, 1)));
        assert_eq!(s.announce(k, &ann(2, 20, 0), 0), Ok((1, 1)));
        assert_eq!(s.announce(k, &ann(3, 30, 50), 0), Ok((1, 2)));
        let t = s.offer_targets(k, &[1; 20], 10);
        assert_eq!(t.len(), 2);
        assert!(t.iter().all(|(id, _)| *id != [1; 20]));
        assert_eq!(s.conn_of(&k, &[2; 20]), Some(20));
        // Another socket cannot take a live peer id.
        assert_eq!(
            s.announce(k, &ann(2, 99, 0), 1),
            Err(BrowserRefusal::PeerIdInUse)
        );
        s.drop_conn(20);
        assert_eq!(s.conn_of(&k, &[2; 20]), None);
        assert_eq!(s.scrape(&k), (0, 2, 0));
    }

    #[test]
    fn bounds_and_expiry() {
        let mut s = BrowserSwarms::new(BrowserLimits {
            max_peers_per_swarm: 2,
            max_swarms_per_socket: 2,
            peer_ttl: 10,
            interval: 120,
        });
        let k = [1; 20];
        s.announce(k, &ann(1, 1, 5), 0).unwrap();
        s.announce(k, &ann(2, 2, 5), 1).unwrap();
        s.announce(k, &ann(3, 3, 5), 2).unwrap();
        assert_eq!(s.stats(), (1, 2), "the stalest entry made room");
        assert_eq!(s.conn_of(&k, &[1; 20]), None);
        s.announce([2; 20], &ann(3, 3, 5), 2).unwrap();
        assert_eq!(
            s.announce([3; 20], &ann(3, 3, 5), 2),
            Err(BrowserRefusal::TooManySwarms)
        );
        s.expire(20);
        assert_eq!(s.stats(), (0, 0));
    }
}

/// A browser swarm as the nodes sharing it see it: its counts, and its peers with the node each
/// is connected to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedSwarm {
    pub seeders: u32,
    pub leechers: u32,
    /// (peer id, node id) of the live entries.
    pub peers: Vec<(Id20, String)>,
}

/// Browser swarms shared by several gateway nodes (Redis, `--redis`): which browser is in which
/// swarm through which node, and a way to hand a tracker message to a browser connected to
/// another node. Each node keeps its own sockets (and [`BrowserSwarms`] for them); this is the
/// directory between nodes.
#[async_trait::async_trait]
pub trait SharedBrowsers: Send + Sync {
    /// This node's id: a message for one of its own peers is delivered without Redis.
    fn node(&self) -> &str;

    /// How often the node must [`SharedBrowsers::refresh`] its entries.
    fn refresh_every(&self) -> std::time::Duration;

    /// Records the browser `peer_id` of `swarm` as connected to this node (seeding or not),
    /// or removes it (`stopped`); answers the swarm as it is now. Refused when the peer id is
    /// live on another node.
    async fn announce(
        &self,
        swarm: Id20,
        peer_id: Id20,
        seeding: bool,
        stopped: bool,
        now: u64,
    ) -> Result<SharedSwarm, crate::Unavailable>;

    /// Removes entries of this node (their sockets closed).
    async fn leave(&self, entries: &[(Id20, Id20)]);

    /// Re-registers this node's live entries (so that they outlive the shared entries' TTL
    /// between announces, and an entry of a node that died expires soon).
    async fn refresh(&self, entries: &[(Id20, Id20, bool)], now: u64);

    /// The node the browser `peer_id` of `swarm` is connected to.
    async fn node_of(
        &self,
        swarm: Id20,
        peer_id: Id20,
    ) -> Result<Option<String>, crate::Unavailable>;

    /// Hands `text` to the browser `to` of `swarm`, connected to `node`.
    async fn relay(&self, node: &str, swarm: Id20, to: Id20, text: &str);
}
