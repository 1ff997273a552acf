//! seedbucket's metrics, through the `metrics` facade. The server installs a Prometheus
//! recorder and renders it on the admin listener (`/metrics`); without a recorder (the library,
//! unit tests) every call here costs next to nothing. The names are listed in docs/metrics.md,
//! and docs/grafana-dashboard.json charts them.
//!
//! Labels are bounded: operations come from a fixed grammar (anything else is `Other`),
//! statuses are HTTP codes, transports and channels are fixed words; the per-torrent byte
//! counters carry a `torrent` label for the first [`MAX_PER_TORRENT`] torrents only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{counter, gauge, histogram};

/// Torrents that get their own labelled byte counters; past that only the totals grow.
pub const MAX_PER_TORRENT: usize = 10_000;

/// Finished downloads remembered, so that a `completed` and the `stopped` after it count once.
const MAX_FINISHED: usize = 100_000;

/// How a tracker request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Http,
    Udp,
    WebSocket,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Udp => "udp",
            Transport::WebSocket => "websocket",
        }
    }
}

#[derive(Default)]
pub struct Stats {
    /// A recorder reads the per-request figures (the server sets it when it installs one):
    /// without one, requests skip naming their operation.
    recording: std::sync::atomic::AtomicBool,
    peer_bytes: AtomicU64,
    webseed_bytes: AtomicU64,
    get_bytes: AtomicU64,
    delivered_bytes: AtomicU64,
    /// (swarm, peer id) of downloads already counted as finished (cleared when it reaches
    /// [`MAX_FINISHED`]).
    finished: Mutex<std::collections::HashSet<([u8; 20], [u8; 20])>>,
    /// Traffic per object (`bucket/key`), for the first [`MAX_PER_TORRENT`] objects served;
    /// those also get labelled byte counters.
    objects: Mutex<HashMap<String, ObjectTraffic>>,
    /// Per [`Transport`], in its order.
    tracker_counters: [std::sync::OnceLock<TrackerCounters>; 3],
}

/// The tracker's counters of one transport.
struct TrackerCounters {
    announces: metrics::Counter,
    scrapes: metrics::Counter,
    failures: metrics::Counter,
    rate_limited: metrics::Counter,
}

/// What the tracker counts into before a recorder is installed: nothing.
static NO_TRACKER_COUNTERS: TrackerCounters = TrackerCounters {
    announces: metrics::Counter::noop(),
    scrapes: metrics::Counter::noop(),
    failures: metrics::Counter::noop(),
    rate_limited: metrics::Counter::noop(),
};

/// What one object (`bucket/key`) was served, since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectTraffic {
    /// Body bytes of S3 GetObject answers, as they were sent.
    pub get: u64,
    /// Bytes the webseed sent.
    pub webseed: u64,
    /// Bytes the seeder sent over the peer wire.
    pub peer: u64,
    /// BitTorrent downloads this server's trackers saw finish (see [`Totals::delivered`]).
    pub completed: u64,
}

/// The server's totals since start: what it sent, and what BitTorrent clients received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub get: u64,
    pub webseed: u64,
    pub peer: u64,
    /// Bytes delivered to BitTorrent clients: a download counts its object's size once when it
    /// finishes, i.e. its client announces `completed`, or `stopped` with nothing left after
    /// downloading something (downloads that never finish are not counted).
    pub delivered: u64,
}

impl Totals {
    /// Bytes the server sent to BitTorrent clients (peer wire and webseed).
    pub fn server_torrent_bytes(&self) -> u64 {
        self.peer.saturating_add(self.webseed)
    }

    /// Egress the peers saved: what BitTorrent clients received beyond what the server sent
    /// them.
    pub fn saved(&self) -> u64 {
        self.delivered.saturating_sub(self.server_torrent_bytes())
    }
}

impl Stats {
    pub fn set_recording(&self, on: bool) {
        self.recording.store(on, Ordering::Relaxed);
    }

    pub fn recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }

    /// `transport`'s tracker counters, registered with the recorder on first use once one is
    /// installed: looking a labelled counter up by name was a registry lookup per announce.
    fn tracker_counters(&self, transport: Transport) -> &TrackerCounters {
        if !self.recording() {
            return &NO_TRACKER_COUNTERS;
        }
        self.tracker_counters[transport as usize].get_or_init(|| {
            let t = transport.label();
            TrackerCounters {
                announces: counter!("seedbucket_tracker_announces_total", "transport" => t),
                scrapes: counter!("seedbucket_tracker_scrapes_total", "transport" => t),
                failures: counter!("seedbucket_tracker_failures_total", "transport" => t),
                rate_limited: counter!("seedbucket_tracker_rate_limited_total", "transport" => t),
            }
        })
    }

    pub fn announce(&self, transport: Transport) {
        self.tracker_counters(transport).announces.increment(1);
    }

    pub fn scrape(&self, transport: Transport) {
        self.tracker_counters(transport).scrapes.increment(1);
    }

    /// An announce or scrape answered with a failure reason (unknown torrent, bad token...).
    pub fn tracker_failure(&self, transport: Transport) {
        self.tracker_counters(transport).failures.increment(1);
    }

    /// An announce refused by the per-address rate limit.
    pub fn rate_limited(&self, transport: Transport) {
        self.tracker_counters(transport).rate_limited.increment(1);
    }

    /// Bytes the seeder sent over the peer wire for `torrent` (`bucket/key`).
    pub fn seeded(&self, torrent: &str, bytes: u64) {
        self.peer_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.add(torrent, "peer", bytes);
    }

    /// Bytes the webseed sent for `torrent`.
    pub fn webseeded(&self, torrent: &str, bytes: u64) {
        self.webseed_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.add(torrent, "webseed", bytes);
    }

    /// Body bytes of a GetObject answer for `object` (`bucket/key`), as they are sent.
    pub fn served_get(&self, object: &str, bytes: u64) {
        self.get_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.object(object, |t| t.get += bytes);
    }

    /// Whether this is the first time the peer `peer_id` of `swarm` says it finished.
    pub fn first_finish(&self, swarm: [u8; 20], peer_id: [u8; 20]) -> bool {
        self.finished.lock().is_ok_and(|mut seen| {
            if seen.len() >= MAX_FINISHED {
                seen.clear();
            }
            seen.insert((swarm, peer_id))
        })
    }

    /// A BitTorrent client announced it finished downloading `torrent` (`bucket/key`) of
    /// `size` bytes.
    pub fn completed(&self, torrent: &str, size: u64) {
        self.delivered_bytes.fetch_add(size, Ordering::Relaxed);
        self.object(torrent, |t| t.completed += 1);
    }

    /// Applies `f` to the traffic of `torrent` when it has (or may get) an entry; false when
    /// the table is full and it has none.
    fn object(&self, torrent: &str, f: impl FnOnce(&mut ObjectTraffic)) -> bool {
        let Ok(mut m) = self.objects.lock() else {
            return false;
        };
        if let Some(t) = m.get_mut(torrent) {
            f(t);
            true
        } else if m.len() < MAX_PER_TORRENT {
            f(m.entry(torrent.to_owned()).or_default());
            true
        } else {
            false
        }
    }

    /// What `bucket`/`key` was served since start (zeros when nothing, or past the table's
    /// size).
    pub fn object_traffic(&self, bucket: &str, key: &str) -> ObjectTraffic {
        let k = format!("{bucket}/{key}");
        self.objects
            .lock()
            .ok()
            .and_then(|m| m.get(&k).copied())
            .unwrap_or_default()
    }

    /// The totals since start.
    pub fn totals(&self) -> Totals {
        let (peer, webseed) = self.uploaded();
        Totals {
            get: self.get_bytes.load(Ordering::Relaxed),
            webseed,
            peer,
            delivered: self.delivered_bytes.load(Ordering::Relaxed),
        }
    }

    fn add(&self, torrent: &str, via: &'static str, bytes: u64) {
        counter!("seedbucket_uploaded_bytes_total", "via" => via).increment(bytes);
        let labelled = self.object(torrent, |t| match via {
            "peer" => t.peer += bytes,
            _ => t.webseed += bytes,
        });
        if labelled {
            counter!(
                "seedbucket_torrent_uploaded_bytes_total",
                "torrent" => torrent.to_owned(),
                "via" => via
            )
            .increment(bytes);
        }
    }

    /// Bytes sent over the peer wire and over the webseed, in total.
    pub fn uploaded(&self) -> (u64, u64) {
        (
            self.peer_bytes.load(Ordering::Relaxed),
            self.webseed_bytes.load(Ordering::Relaxed),
        )
    }

    /// One answered request on the S3 port (S3 calls, `?torrent`, webseed, HTTP tracker): its
    /// operation (see [`operation_label`]), status, seconds until the answer's head, and the
    /// body bytes it declared in each direction.
    pub fn request(
        &self,
        operation: &str,
        status: u16,
        seconds: f64,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let operation = operation_label(operation);
        counter!(
            "seedbucket_s3_requests_total",
            "operation" => operation,
            "status" => status_label(status)
        )
        .increment(1);
        histogram!("seedbucket_s3_request_duration_seconds", "operation" => operation)
            .record(seconds);
        if bytes_in > 0 {
            counter!("seedbucket_s3_bytes_total", "direction" => "in", "operation" => operation)
                .increment(bytes_in);
        }
        if bytes_out > 0 {
            counter!("seedbucket_s3_bytes_total", "direction" => "out", "operation" => operation)
                .increment(bytes_out);
        }
    }

    /// A torrent file (or its JSON form) handed out.
    pub fn torrent_issued(&self, format: &str) {
        let format = match format {
            "v1" => "v1",
            "v2" => "v2",
            _ => "hybrid",
        };
        counter!("seedbucket_torrents_issued_total", "format" => format).increment(1);
    }
}

/// Sets a gauge (values read when `/metrics` is scraped).
pub fn set_gauge(name: &'static str, value: f64) {
    gauge!(name).set(value);
}

/// The operation as a label: the name the access log gives it when that name comes from the
/// S3 operation grammar (see `request_log::s3_operation`) or is a BitTorrent channel; anything
/// else (unknown methods, which a client can name freely, and internal paths) is `Other`, so
/// that clients cannot mint label values.
pub fn operation_label(op: &str) -> &'static str {
    known_operations()
        .iter()
        .find(|name| **name == op)
        .copied()
        .unwrap_or("Other")
}

/// Every operation name the grammar produces (a few dozen, made once).
fn known_operations() -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<String> = [
            "webseed",
            "announce",
            "scrape",
            "Preflight",
            "CreateMultipartUpload",
            "CompleteMultipartUpload",
            "UploadPart",
            "ListParts",
            "AbortMultipartUpload",
            "ListMultipartUploads",
            "ListObjectVersions",
            "DeleteObjects",
            "ListBuckets",
            "ListObjectsV2",
            "ListObjects",
            "CreateBucket",
            "HeadBucket",
            "DeleteBucket",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let scoped = [
            "ObjectTorrent",
            "BucketPolicy",
            "BucketCors",
            "BucketEncryption",
            "BucketVersioning",
            "BucketLocation",
            "BucketLifecycle",
            "ObjectAttributes",
            "ObjectAcl",
            "BucketAcl",
            "ObjectTagging",
            "BucketTagging",
            "Object",
            "Bucket",
        ];
        for verb in ["Get", "Put", "Delete", "Head", "Post"] {
            for rest in scoped {
                names.push(format!("{verb}{rest}"));
            }
        }
        names
            .into_iter()
            .map(|n| &*Box::leak(n.into_boxed_str()))
            .collect()
    })
}

fn status_label(status: u16) -> &'static str {
    const CODES: &[(u16, &str)] = &[
        (200, "200"),
        (204, "204"),
        (206, "206"),
        (304, "304"),
        (400, "400"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (409, "409"),
        (410, "410"),
        (412, "412"),
        (416, "416"),
        (500, "500"),
        (501, "501"),
        (503, "503"),
    ];
    CODES
        .iter()
        .find(|(c, _)| *c == status)
        .map(|(_, s)| *s)
        .unwrap_or(match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(operation_label("GetObject"), "GetObject");
        assert_eq!(
            operation_label("PutBucketVersioning"),
            "PutBucketVersioning"
        );
        assert_eq!(operation_label("announce"), "announce");
        assert_eq!(operation_label("ListObjectsV2"), "ListObjectsV2");
        assert_eq!(operation_label("FROB"), "Other");
        assert_eq!(operation_label("health"), "Other");
        assert_eq!(operation_label("Get0bject"), "Other");
        assert_eq!(operation_label("GetAnything"), "Other");
        assert_eq!(operation_label("GetObjectTorrent"), "GetObjectTorrent");
        assert_eq!(status_label(404), "404");
        assert_eq!(status_label(418), "4xx");
    }
}
