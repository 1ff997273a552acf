//! Counters for the metrics endpoint: tracker traffic, bytes seeded over the peer wire and the
//! webseed (in total and per torrent), rendered in the Prometheus text format.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Most torrents tracked individually; past that only the totals grow.
const MAX_PER_TORRENT: usize = 10_000;

#[derive(Default)]
pub struct Stats {
    pub http_announces: AtomicU64,
    pub udp_announces: AtomicU64,
    /// Browser announces on the WebSocket tracker.
    pub ws_announces: AtomicU64,
    pub scrapes: AtomicU64,
    pub tracker_failures: AtomicU64,
    peer_bytes: AtomicU64,
    webseed_bytes: AtomicU64,
    /// Torrent label (`bucket/key`) → (peer wire bytes, webseed bytes).
    per_torrent: Mutex<HashMap<String, (u64, u64)>>,
}

impl Stats {
    pub fn seeded(&self, torrent: &str, bytes: u64) {
        self.peer_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.add(torrent, bytes, 0);
    }

    pub fn webseeded(&self, torrent: &str, bytes: u64) {
        self.webseed_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.add(torrent, 0, bytes);
    }

    fn add(&self, torrent: &str, peer: u64, web: u64) {
        if let Ok(mut m) = self.per_torrent.lock() {
            if let Some(e) = m.get_mut(torrent) {
                e.0 += peer;
                e.1 += web;
            } else if m.len() < MAX_PER_TORRENT {
                m.insert(torrent.to_owned(), (peer, web));
            }
        }
    }

    /// Bytes sent over the peer wire and over the webseed, in total.
    pub fn uploaded(&self) -> (u64, u64) {
        (
            self.peer_bytes.load(Ordering::Relaxed),
            self.webseed_bytes.load(Ordering::Relaxed),
        )
    }

    /// The Prometheus text exposition, with the swarm gauges passed in (`None`: the swarms
    /// live in Redis and are not counted here).
    pub fn render(&self, swarms: Option<(usize, usize)>, extra: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        let counters = [
            (
                "seedbucket_tracker_announces_total{transport=\"http\"}",
                "Tracker announces received",
                self.http_announces.load(Ordering::Relaxed),
            ),
            (
                "seedbucket_tracker_announces_total{transport=\"udp\"}",
                "",
                self.udp_announces.load(Ordering::Relaxed),
            ),
            (
                "seedbucket_tracker_announces_total{transport=\"websocket\"}",
                "",
                self.ws_announces.load(Ordering::Relaxed),
            ),
            (
                "seedbucket_tracker_scrapes_total",
                "Tracker scrapes received",
                self.scrapes.load(Ordering::Relaxed),
            ),
            (
                "seedbucket_tracker_failures_total",
                "Announces answered with a failure reason",
                self.tracker_failures.load(Ordering::Relaxed),
            ),
            (
                "seedbucket_uploaded_bytes_total{via=\"peer\"}",
                "Object bytes uploaded to BitTorrent clients",
                self.peer_bytes.load(Ordering::Relaxed),
            ),
            (
                "seedbucket_uploaded_bytes_total{via=\"webseed\"}",
                "",
                self.webseed_bytes.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            let base = name.split('{').next().unwrap_or(name);
            if !help.is_empty() {
                let _ = writeln!(out, "# HELP {base} {help}\n# TYPE {base} counter");
            }
            let _ = writeln!(out, "{name} {v}");
        }
        if let Some((torrents, peers)) = swarms {
            let _ = writeln!(
                out,
                "# HELP seedbucket_tracker_torrents Torrents with at least one peer\n# TYPE seedbucket_tracker_torrents gauge\nseedbucket_tracker_torrents {torrents}"
            );
            let _ = writeln!(
                out,
                "# HELP seedbucket_tracker_peers Peers in all swarms\n# TYPE seedbucket_tracker_peers gauge\nseedbucket_tracker_peers {peers}"
            );
        }
        for (name, help, v) in extra {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        if let Ok(m) = self.per_torrent.lock() {
            let _ = writeln!(
                out,
                "# HELP seedbucket_torrent_uploaded_bytes_total Bytes uploaded per torrent\n# TYPE seedbucket_torrent_uploaded_bytes_total counter"
            );
            let mut rows: Vec<_> = m.iter().collect();
            rows.sort();
            for (t, (peer, web)) in rows {
                let label = t
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = writeln!(
                    out,
                    "seedbucket_torrent_uploaded_bytes_total{{torrent=\"{label}\",via=\"peer\"}} {peer}"
                );
                let _ = writeln!(
                    out,
                    "seedbucket_torrent_uploaded_bytes_total{{torrent=\"{label}\",via=\"webseed\"}} {web}"
                );
            }
        }
        out
    }
}
