//! The BEP 19 webseed: `GET /_seedbucket/webseed/{info-hash}/{token}/{name}`.
//!
//! The info-hash names the objects that issued it (`torrent_sources`); the bytes come from one
//! that is unchanged since, and once none is (for a private torrent: once the token's object is
//! not) the answer is `410 Gone`, never other bytes. A private torrent's token must be genuine,
//! unexpired, and its key must still be allowed to read its object; without one, the answer is
//! that of an unknown info-hash. `Range` is served
//! with `206` and `Content-Range` (transmission stalls on a 200), through the same reader as
//! GetObject.

use http::{HeaderValue, Method, Response, StatusCode, header};
use s3s::Body;
use s3s::dto::StreamingBlob;
use seedbucket_store::Which;

use crate::Seedbucket;
use crate::handlers::object::{BodyStream, CountedStream};
use crate::torrent_sources::Resolved;

fn plain(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(format!("{msg}\n")));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// One `bytes=` range of a `size`-byte body: `Ok(None)` for the whole body (no header, or a
/// form we do not honour, such as several ranges), `Err(())` when unsatisfiable.
pub(crate) fn parse_range(value: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(v) = value else { return Ok(None) };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .saturating_add(1)
                .min(size)
        };
        (start, end)
    };
    if start >= size || start >= end {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// The answer to an info-hash with no torrent this requester may learn of.
const UNKNOWN: &str = "no torrent with that info-hash and file name";

/// The token segment of a public torrent's webseed URL (public torrents need none).
pub(crate) const PUBLIC_TOKEN: &str = "public";

impl Seedbucket {
    pub(crate) async fn webseed(
        &self,
        method: &Method,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            return plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "the webseed answers GET and HEAD",
            );
        }
        let mut parts = path.splitn(3, '/');
        let (Some(ih), Some(token), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return plain(StatusCode::NOT_FOUND, "no such webseed");
        };
        let ih = ih.to_ascii_lowercase();
        let sources = match self.store.torrent_sources(&ih).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "webseed lookup failed");
                return plain(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable");
            }
        };
        let grant = sources.records.first().and_then(|t| {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            self.options
                .token_key
                .check_webseed_token(token, &t.info_hash, now)
        });
        let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
        // A private torrent without a genuine token, or with another file name, is answered
        // exactly like an unknown info-hash: a guess learns nothing.
        if sources.records.first().is_none_or(|t| t.name != name) {
            return plain(StatusCode::NOT_FOUND, UNKNOWN);
        }
        let torrent = match self.resolve_source(&sources, grant.as_ref()).await {
            Resolved::Unknown => return plain(StatusCode::NOT_FOUND, UNKNOWN),
            Resolved::Gone => {
                return plain(
                    StatusCode::GONE,
                    "the object of this torrent was deleted or changed since it was issued",
                );
            }
            Resolved::Forbidden if sources.private() => {
                return plain(
                    StatusCode::FORBIDDEN,
                    "the key of this token may no longer read the object",
                );
            }
            Resolved::Forbidden => {
                return plain(StatusCode::FORBIDDEN, "the object is no longer public");
            }
            Resolved::Serve(t) => t,
        };
        // The source's version, read once more: it may change between the check and the read.
        let reader = match self
            .store
            .open_object_at(
                &torrent.bucket,
                &torrent.key,
                Which::Exact(&torrent.version),
            )
            .await
        {
            Ok(r) => r,
            _ => {
                return plain(
                    StatusCode::GONE,
                    "the object of this torrent was deleted or changed since it was issued",
                );
            }
        };
        let size = reader.record.size;
        let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
        let (status, start, end) = match parse_range(range, size) {
            Ok(None) => (StatusCode::OK, 0, size),
            Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
            Err(()) => {
                let mut r = plain(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
        };
        let etag = format!("\"{}\"", reader.record.etag);
        let body = if method == Method::HEAD {
            Body::empty()
        } else {
            let (stats, object) = (
                self.stats.clone(),
                format!("{}/{}", torrent.bucket, torrent.key),
            );
            let mut bytes = reader.stream_for_torrent(start, end);
            if let Some(limit) = &self.webseed_limit {
                bytes = paced(bytes, limit.clone());
            }
            Body::from(StreamingBlob::wrap(CountedStream::new(
                BodyStream(bytes),
                move |n| stats.webseeded(&object, n),
            )))
        };
        let mut r = Response::new(body);
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
        if status == StatusCode::PARTIAL_CONTENT
            && let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", start, end - 1))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, v);
        }
        r
    }
}

/// The bytes of `inner`, each buffer let through once `limit` allows it (`--webseed-rate-limit`,
/// shared by every webseed answer).
fn paced(
    mut inner: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    limit: std::sync::Arc<seedbucket_seeder::RateLimiter>,
) -> tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while let Some(item) = inner.recv().await {
            if let Ok(chunk) = &item {
                limit.acquire(chunk.len() as u64).await;
            }
            if tx.send(item).await.is_err() {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Ok(Some((0, 5))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 10))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 10))));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Ok(Some((8, 10))));
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=x-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=-0"), 10), Err(()));
    }
}
