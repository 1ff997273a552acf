//! The BEP 19 webseed: `GET /_seedbucket/webseed/{info-hash}/{token}/{name}`.
//!
//! The info-hash names one issued torrent and so one object version; if the object changed
//! since, the answer is `410 Gone`, never other bytes. A private torrent's token must be
//! genuine, unexpired, and its key must still be allowed to read the object. `Range` is served
//! with `206` and `Content-Range` (transmission stalls on a 200), through the same reader as
//! GetObject.

use http::{HeaderValue, Method, Response, StatusCode, header};
use s3s::Body;
use s3s::dto::StreamingBlob;

use crate::Seedbucket;
use crate::handlers::object::BodyStream;

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
        let torrent = match self.store.torrent(&ih).await {
            Ok(Some(t)) => t,
            Ok(None) => return plain(StatusCode::NOT_FOUND, "no torrent with that info-hash"),
            Err(e) => {
                tracing::error!(error = %e, "webseed lookup failed");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            }
        };
        let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
        if name != torrent.name {
            return plain(
                StatusCode::NOT_FOUND,
                "the torrent has no file of that name",
            );
        }
        let mut token_key = None;
        if torrent.private {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let Some(access_key) =
                self.options
                    .token_key
                    .check_webseed_token(token, &torrent.info_hash, now)
            else {
                return plain(StatusCode::FORBIDDEN, "invalid or expired webseed token");
            };
            token_key = Some(access_key);
        }
        // A changed or deleted object is 410 whoever asks; access is checked on what remains.
        let reader = match self.store.open_object(&torrent.bucket, &torrent.key).await {
            Ok(r) => r,
            Err(_) => return plain(StatusCode::GONE, "the object of this torrent is gone"),
        };
        if reader.record.version != torrent.version {
            return plain(
                StatusCode::GONE,
                "the object changed since this torrent was issued",
            );
        }
        if let Some(access_key) = token_key
            && !self.may_read(Some(access_key), &torrent).await
        {
            return plain(
                StatusCode::FORBIDDEN,
                "the key of this token may no longer read the object",
            );
        }
        if !torrent.private && !self.may_read(None, &torrent).await {
            return plain(StatusCode::FORBIDDEN, "the object is no longer public");
        }
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
            self.stats
                .webseeded(&format!("{}/{}", torrent.bucket, torrent.key), end - start);
            Body::from(StreamingBlob::wrap(BodyStream(
                reader.stream_for_torrent(start, end),
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
