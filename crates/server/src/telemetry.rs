//! The process-wide metrics recorder: the `metrics` crate's Prometheus exporter, installed once
//! at start, rendered by the admin listener's `/metrics`, plus the process's own figures (CPU,
//! memory, open files, threads) from `metrics-process`.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets of `seedbucket_s3_request_duration_seconds`, from a cached small GET to a
/// slow multipart completion.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A handle on the installed recorder.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    process: Arc<metrics_process::Collector>,
}

impl Metrics {
    /// Installs the recorder (once per process; `None` if another one is installed) and starts
    /// its upkeep (histograms are drained every few seconds).
    pub fn install() -> Option<Self> {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("seedbucket_s3_request_duration_seconds".to_owned()),
                LATENCY_BUCKETS,
            )
            .ok()?;
        let handle = match builder.install_recorder() {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "no metrics recorder: /metrics will answer 503");
                return None;
            }
        };
        describe();
        register_zeros();
        let process = metrics_process::Collector::default();
        process.describe();
        let upkeep = handle.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                upkeep.run_upkeep();
            }
        });
        Some(Self {
            handle,
            process: Arc::new(process),
        })
    }

    /// The Prometheus text exposition of everything recorded, process figures included.
    pub fn render(&self) -> String {
        self.process.collect();
        self.handle.render()
    }
}

/// Counters of fixed label sets start at 0, so that they are listed (and rates computed)
/// before their first event.
fn register_zeros() {
    use metrics::counter;
    for t in ["http", "udp", "websocket"] {
        counter!("seedbucket_tracker_announces_total", "transport" => t).increment(0);
        counter!("seedbucket_tracker_scrapes_total", "transport" => t).increment(0);
        counter!("seedbucket_tracker_failures_total", "transport" => t).increment(0);
        counter!("seedbucket_tracker_rate_limited_total", "transport" => t).increment(0);
    }
    for via in ["peer", "webseed"] {
        counter!("seedbucket_uploaded_bytes_total", "via" => via).increment(0);
    }
    for f in ["v1", "hybrid", "v2"] {
        counter!("seedbucket_torrents_issued_total", "format" => f).increment(0);
    }
    counter!("seedbucket_piece_hashed_bytes_total").increment(0);
}

/// The help text of every family (docs/metrics.md lists them with their labels).
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "seedbucket_s3_requests_total",
        "Requests answered on the S3 port (S3 calls, ?torrent, webseed, HTTP tracker), by operation and status"
    );
    describe_histogram!(
        "seedbucket_s3_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its answer's head, by operation"
    );
    describe_counter!(
        "seedbucket_s3_bytes_total",
        Unit::Bytes,
        "Body bytes on the S3 port as declared by Content-Length, by direction (in: request bodies, out: answers) and operation"
    );
    describe_counter!(
        "seedbucket_uploaded_bytes_total",
        Unit::Bytes,
        "Object bytes sent to BitTorrent clients, by channel: peer wire blocks as sent, webseed ranges as answered (counted when the answer starts)"
    );
    describe_counter!(
        "seedbucket_torrent_uploaded_bytes_total",
        Unit::Bytes,
        "Object bytes sent to BitTorrent clients per torrent (the first 10,000 torrents), by channel, counted as seedbucket_uploaded_bytes_total"
    );
    describe_counter!(
        "seedbucket_torrents_issued_total",
        "Torrent files (or their JSON form) handed out by ?torrent, by format"
    );
    describe_counter!(
        "seedbucket_piece_hashed_bytes_total",
        Unit::Bytes,
        "Object bytes hashed into torrent pieces (on upload, after multipart completion, on a first ?torrent)"
    );
    describe_counter!(
        "seedbucket_tracker_announces_total",
        "Tracker announces accepted, by transport (http, udp, websocket)"
    );
    describe_counter!(
        "seedbucket_tracker_scrapes_total",
        "Tracker scrapes, by transport"
    );
    describe_counter!(
        "seedbucket_tracker_failures_total",
        "Announces answered with a failure reason (unknown torrent, missing token, ...), by transport"
    );
    describe_counter!(
        "seedbucket_tracker_rate_limited_total",
        "Announces refused by the per-address rate limit, by transport"
    );
    describe_gauge!(
        "seedbucket_tracker_torrents",
        "Swarms the tracker keeps (with peers, or with a completed count kept until restart)"
    );
    describe_gauge!("seedbucket_tracker_peers", "Peers in all swarms");
    describe_gauge!(
        "seedbucket_browser_swarms",
        "Torrents with browser peers on the WebSocket tracker (this node)"
    );
    describe_gauge!(
        "seedbucket_browser_peers",
        "Browser peers in all browser swarms (this node)"
    );
    describe_gauge!(
        "seedbucket_browser_sockets",
        "Open WebSocket tracker connections"
    );
    describe_gauge!(
        "seedbucket_browser_reported_uploaded_bytes",
        Unit::Bytes,
        "Bytes the browsers now in swarms report having uploaded to other browsers"
    );
    describe_gauge!(
        "seedbucket_browser_reported_downloaded_bytes",
        Unit::Bytes,
        "Bytes the browsers now in swarms report having downloaded, from browsers and webseeds"
    );
    describe_counter!(
        "seedbucket_seeder_connections_accepted_total",
        "Peer connections accepted by the seeder, by transport"
    );
    describe_counter!(
        "seedbucket_seeder_encrypted_handshakes_total",
        "Encrypted handshakes completed, by what the payload then travels as"
    );
    describe_counter!(
        "seedbucket_seeder_connections_closed_total",
        "Peer connections closed by the seeder's limits, by reason"
    );
    describe_counter!(
        "seedbucket_seeder_blocks_sent_total",
        "Blocks sent over the peer wire"
    );
    describe_gauge!("seedbucket_seeder_connections", "Open peer connections");
    describe_gauge!(
        "seedbucket_seeder_unchoked_peers",
        "Peers holding an upload slot"
    );
    describe_gauge!(
        "seedbucket_seeder_choked_peers",
        "Interested peers waiting for an upload slot (choked)"
    );
}
