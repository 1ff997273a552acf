//! The admin listener (`--admin-listen`): `/metrics` in the Prometheus text format, `/health`,
//! and `POST /lifecycle/run` (one lifecycle pass now; answers its counts as JSON). Separate from
//! the S3 port so it can stay on a private address.

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use seedbucket_s3::Seedbucket;
use seedbucket_seeder::{Seeder, SeederStats};
use tokio::net::TcpListener;

/// Serves `/metrics` (the S3 side's counters, then the seeder's when there is one) and
/// `/health`.
pub async fn serve(listener: TcpListener, app: Seedbucket, seeder: Option<Seeder>) {
    let http = ConnBuilder::new(TokioExecutor::new());
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        let seeder = seeder.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let app = app.clone();
            let seeder = seeder.clone();
            async move {
                if req.uri().path() == "/lifecycle/run" {
                    let as_of = req.uri().query().unwrap_or("");
                    return Ok::<_, Infallible>(lifecycle_run(&app, req.method(), as_of).await);
                }
                Ok::<_, Infallible>(route(&app, seeder.as_ref(), req.uri().path()))
            }
        });
        let conn = http
            .serve_connection(TokioIo::new(socket), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
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

fn route(app: &Seedbucket, seeder: Option<&Seeder>, path: &str) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match path {
        "/metrics" => {
            let mut text = app.metrics();
            if let Some(s) = seeder {
                text.push_str(&seeder_metrics(&s.stats()));
            }
            (StatusCode::OK, "text/plain; version=0.0.4", text)
        }
        "/health" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
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

/// One metric: name, type, help, and its series (label set, value).
struct Metric {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    series: Vec<(&'static str, u64)>,
}

/// The seeder's counters and gauges in the Prometheus text format.
fn seeder_metrics(s: &SeederStats) -> String {
    use std::fmt::Write as _;
    let tcp = s
        .connections_accepted
        .saturating_sub(s.utp_connections_accepted);
    let rows = [
        Metric {
            name: "seedbucket_seeder_connections_accepted_total",
            kind: "counter",
            help: "Peer connections accepted, by transport",
            series: vec![
                ("{transport=\"tcp\"}", tcp),
                ("{transport=\"utp\"}", s.utp_connections_accepted),
            ],
        },
        Metric {
            name: "seedbucket_seeder_encrypted_handshakes_total",
            kind: "counter",
            help: "Encrypted handshakes completed, by what the payload then travels as",
            series: vec![
                ("{payload=\"plaintext\"}", s.encrypted_handshakes_plaintext),
                ("{payload=\"rc4\"}", s.encrypted_handshakes_rc4),
            ],
        },
        Metric {
            name: "seedbucket_seeder_connections_closed_total",
            kind: "counter",
            help: "Peer connections closed by the seeder's limits, by reason",
            series: vec![
                ("{reason=\"no_slot\"}", s.connections_refused),
                ("{reason=\"evicted\"}", s.connections_evicted),
                ("{reason=\"inactive\"}", s.connections_inactive),
            ],
        },
        Metric {
            name: "seedbucket_seeder_connections",
            kind: "gauge",
            help: "Open peer connections",
            series: vec![("", s.connections as u64)],
        },
        Metric {
            name: "seedbucket_seeder_unchoked_peers",
            kind: "gauge",
            help: "Peers holding an upload slot",
            series: vec![("", s.unchoked as u64)],
        },
        Metric {
            name: "seedbucket_seeder_blocks_sent_total",
            kind: "counter",
            help: "Blocks sent over the peer wire",
            series: vec![("", s.blocks_sent)],
        },
    ];
    let mut out = String::new();
    for m in rows {
        let name = m.name;
        let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {}", m.help, m.kind);
        for (labels, v) in m.series {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    }
    out
}
