//! The admin listener (`--admin-listen`, 127.0.0.1:9001 by default): `/metrics` (the `metrics`
//! facade's Prometheus exporter: docs/metrics.md), `/health`, `POST /lifecycle/run` (one
//! lifecycle pass now; answers its counts as JSON), and every other path to the web console
//! (`crate::console`; docs/console.md). Separate from the S3 port so it can stay on a private
//! address.

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use seedbucket_s3::Seedbucket;
use seedbucket_seeder::{Seeder, SeederStats};
use tokio::net::TcpListener;

/// Connections the admin listener keeps open at once.
const MAX_CONNECTIONS: usize = 256;
/// Time to send a request's head.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Serves `/metrics` (the S3 side's counters, then the seeder's when there is one) and
/// `/health`.
pub async fn serve(
    listener: TcpListener,
    app: Seedbucket,
    seeder: Option<Seeder>,
    metrics: Option<crate::telemetry::Metrics>,
    console: Option<std::sync::Arc<crate::console::Console>>,
) {
    let mut http = ConnBuilder::new(TokioExecutor::new());
    // A client that starts a request must finish its head in time (slowloris).
    http.http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((socket, remote)) = listener.accept().await else {
            continue;
        };
        // At the cap, a new connection is closed at once.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(socket);
            continue;
        };
        let app = app.clone();
        let seeder = seeder.clone();
        let metrics = metrics.clone();
        let console = console.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let app = app.clone();
            let seeder = seeder.clone();
            let metrics = metrics.clone();
            let console = console.clone();
            async move {
                let path = req.uri().path();
                if let Some(console) = console
                    && !matches!(path, "/metrics" | "/health" | "/lifecycle/run")
                {
                    return Ok::<_, Infallible>(console.handle(req, remote).await);
                }
                if req.uri().path() == "/lifecycle/run" {
                    let as_of = req.uri().query().unwrap_or("");
                    return Ok::<_, Infallible>(lifecycle_run(&app, req.method(), as_of).await);
                }
                if req.uri().path() == "/metrics" && metrics.is_some() {
                    app.publish_gauges().await;
                }
                Ok::<_, Infallible>(route(seeder.as_ref(), metrics.as_ref(), req.uri().path()))
            }
        });
        let conn = http
            .serve_connection(TokioIo::new(socket), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
    }
}

/// `POST /lifecycle/run`: one pass of every bucket's lifecycle rules, answered when done.
/// `?as_of=SECONDS` (Unix time) runs the rules as they stand at that time, to see what a rule
/// will do before its days have passed (it deletes what it expires, as any pass does).
async fn lifecycle_run(
    app: &Seedbucket,
    method: &hyper::Method,
    query: &str,
) -> Response<Full<Bytes>> {
    let as_of = query
        .split('&')
        .find_map(|p| p.strip_prefix("as_of="))
        .map(|v| v.parse::<i64>().map(|s| s.saturating_mul(1_000_000_000)));
    let (status, body) = if method != hyper::Method::POST {
        (StatusCode::METHOD_NOT_ALLOWED, "use POST\n".to_owned())
    } else if let Some(Err(_)) = as_of {
        (
            StatusCode::BAD_REQUEST,
            "as_of must be Unix seconds\n".to_owned(),
        )
    } else {
        match app.run_lifecycle(as_of.and_then(Result::ok)).await {
            Ok(r) => (
                StatusCode::OK,
                serde_json::json!({
                    "buckets": r.buckets,
                    "expired": r.expired,
                    "noncurrent_removed": r.noncurrent_removed,
                    "delete_markers_removed": r.delete_markers_removed,
                    "uploads_aborted": r.uploads_aborted,
                })
                .to_string(),
            ),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

/// `/metrics` (gauges already published), `/health`.
fn route(
    seeder: Option<&Seeder>,
    metrics: Option<&crate::telemetry::Metrics>,
    path: &str,
) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match (path, metrics) {
        ("/metrics", Some(m)) => {
            if let Some(s) = seeder {
                publish_seeder(&s.stats());
            }
            (StatusCode::OK, "text/plain; version=0.0.4", m.render())
        }
        ("/metrics", None) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "metrics are unavailable (another recorder is installed)\n".to_owned(),
        ),
        ("/health", _) => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

/// The seeder's counters and gauges, copied from its own statistics at scrape time.
fn publish_seeder(s: &SeederStats) {
    use metrics::{counter, gauge};
    let tcp = s
        .connections_accepted
        .saturating_sub(s.utp_connections_accepted);
    counter!("seedbucket_seeder_connections_accepted_total", "transport" => "tcp").absolute(tcp);
    counter!("seedbucket_seeder_connections_accepted_total", "transport" => "utp")
        .absolute(s.utp_connections_accepted);
    counter!("seedbucket_seeder_encrypted_handshakes_total", "payload" => "plaintext")
        .absolute(s.encrypted_handshakes_plaintext);
    counter!("seedbucket_seeder_encrypted_handshakes_total", "payload" => "rc4")
        .absolute(s.encrypted_handshakes_rc4);
    counter!("seedbucket_seeder_connections_closed_total", "reason" => "no_slot")
        .absolute(s.connections_refused);
    counter!("seedbucket_seeder_connections_closed_total", "reason" => "evicted")
        .absolute(s.connections_evicted);
    counter!("seedbucket_seeder_connections_closed_total", "reason" => "inactive")
        .absolute(s.connections_inactive);
    counter!("seedbucket_seeder_blocks_sent_total").absolute(s.blocks_sent);
    gauge!("seedbucket_seeder_connections").set(s.connections as f64);
    gauge!("seedbucket_seeder_unchoked_peers").set(s.unchoked as f64);
    gauge!("seedbucket_seeder_choked_peers").set(s.waiting as f64);
}
