//! The S3 port's side of the access log: what a request was (channel, operation, bucket and
//! key, info-hash, the access key id that signed it) read from its head, and a response body
//! that writes the entry when its last byte has gone out (or the client went away), with the
//! bytes actually sent and the whole duration.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body::{Body as _, Frame, SizeHint};
use seedbucket_access_log::{AccessLog, Channel, Entry};

/// S3's operation name for a request, from its method, whether it names a key, and its query.
pub(crate) fn s3_operation(
    method: &Method,
    has_key: bool,
    has_bucket: bool,
    query: &str,
) -> String {
    let has = |name: &str| crate::body_limits::query_names(query).any(|p| p == name);
    let sub = [
        ("torrent", "ObjectTorrent"),
        ("acl", "Acl"),
        ("tagging", "Tagging"),
        ("policy", "BucketPolicy"),
        ("cors", "BucketCors"),
        ("encryption", "BucketEncryption"),
        ("versioning", "BucketVersioning"),
        ("location", "BucketLocation"),
        ("lifecycle", "BucketLifecycle"),
        ("attributes", "ObjectAttributes"),
    ]
    .iter()
    .find(|(p, _)| has(p))
    .map(|(_, name)| *name);
    let verb = match *method {
        Method::GET => "Get",
        Method::PUT => "Put",
        Method::DELETE => "Delete",
        Method::HEAD => "Head",
        Method::POST => "Post",
        Method::OPTIONS => return "Preflight".to_owned(),
        _ => return method.as_str().to_owned(),
    };
    if let Some(name) = sub {
        let scope = if name.starts_with("Bucket") || name.starts_with("Object") {
            ""
        } else if has_key {
            "Object"
        } else {
            "Bucket"
        };
        return format!("{verb}{scope}{name}");
    }
    let name = match (method, has_key) {
        (&Method::POST, true) if has("uploads") => "CreateMultipartUpload",
        (&Method::POST, true) if has("uploadId") => "CompleteMultipartUpload",
        (&Method::PUT, true) if has("uploadId") => "UploadPart",
        (&Method::GET, true) if has("uploadId") => "ListParts",
        (&Method::DELETE, true) if has("uploadId") => "AbortMultipartUpload",
        (&Method::GET, false) if has("uploads") => "ListMultipartUploads",
        (&Method::GET, false) if has("versions") => "ListObjectVersions",
        (&Method::POST, false) if has("delete") => "DeleteObjects",
        (&Method::GET, false) if !has_bucket => "ListBuckets",
        (&Method::GET, false) if has("list-type") => "ListObjectsV2",
        (&Method::GET, false) => "ListObjects",
        (&Method::PUT, false) => "CreateBucket",
        (&Method::HEAD, false) => "HeadBucket",
        (&Method::DELETE, false) => "DeleteBucket",
        (_, true) => return format!("{verb}Object"),
        _ => return format!("{verb}Bucket"),
    };
    name.to_owned()
}

/// The access key id a request is signed with: from the credential scope of a SigV4 header or
/// presigned query, or a SigV2 header or query. Never the signature.
pub(crate) fn access_key_id(headers: &HeaderMap, query: &str) -> Option<String> {
    if let Some(auth) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(rest) = auth.split("Credential=").nth(1) {
            return rest.split('/').next().map(str::to_owned);
        }
        if let Some(rest) = auth.strip_prefix("AWS ") {
            return rest.split(':').next().map(str::to_owned);
        }
    }
    query.split('&').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
        match k {
            "X-Amz-Credential" => v.split('/').next().map(str::to_owned),
            "AWSAccessKeyId" => Some(v.into_owned()),
            _ => None,
        }
    })
}

/// The info-hash of a tracker request (`info_hash=`, percent-encoded bytes), in hex.
pub(crate) fn info_hash_hex(query: &str) -> Option<String> {
    query.split('&').find_map(|p| {
        let v = p.strip_prefix("info_hash=")?;
        Some(hex::encode(
            percent_encoding::percent_decode_str(v).collect::<Vec<u8>>(),
        ))
    })
}

/// What a request on the S3 port is, for its entry: channel, operation, bucket, key, info-hash.
pub(crate) fn describe(
    method: &Method,
    path: &str,
    query: &str,
    vhost_bucket: Option<&str>,
) -> Entry {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    if let Some(rest) = path.strip_prefix(crate::service::INTERNAL_PREFIX) {
        if let Some(ws) = rest.strip_prefix("webseed/") {
            let mut e = Entry::new(Channel::Webseed, "webseed");
            let ws = percent_encoding::percent_decode_str(ws).decode_utf8_lossy();
            let (b, k) = ws.split_once('/').unwrap_or((&ws, ""));
            e.bucket = Some(b.to_owned());
            e.object = (!k.is_empty()).then(|| k.to_owned());
            return e;
        }
        if rest.starts_with("tracker/") {
            let op = if rest.ends_with("/scrape") {
                "scrape"
            } else {
                "announce"
            };
            let mut e = Entry::new(Channel::TrackerHttp, op);
            e.info_hash = info_hash_hex(query);
            return e;
        }
        return Entry::new(Channel::S3, rest.split('/').next().unwrap_or("internal"));
    }
    if crate::tracker_http::is_tracker_request(path, query) {
        let mut e = Entry::new(Channel::TrackerHttp, path.trim_start_matches('/'));
        e.info_hash = info_hash_hex(query);
        return e;
    }
    let target = crate::error_body::Addressed::of(&decoded, vhost_bucket);
    let mut e = Entry::new(
        Channel::S3,
        s3_operation(method, target.key.is_some(), target.bucket.is_some(), query),
    );
    e.bucket = target.bucket.map(str::to_owned);
    e.object = target.key.map(str::to_owned);
    e
}

/// The entry of one UDP tracker datagram (BEP 15): its action, the announce's info-hash, and
/// whether the answer was an error (action 3) or none at all (`dropped`: not a tracker packet).
pub(crate) fn udp_entry(packet: &[u8], reply: Option<&[u8]>, started: Instant) -> Entry {
    let action = packet
        .get(8..12)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes);
    let operation = match action {
        Some(0) => "connect",
        Some(1) => "announce",
        Some(2) => "scrape",
        _ => "unknown",
    };
    let mut e = Entry::new(Channel::TrackerUdp, operation);
    e.time = std::time::SystemTime::now() - started.elapsed();
    if action == Some(1) {
        e.info_hash = packet.get(16..36).map(hex::encode);
    }
    e.status = match reply {
        None => "dropped",
        Some(r) if r.get(..4) == Some(&3u32.to_be_bytes()[..]) => "error",
        Some(_) => "ok",
    }
    .to_owned();
    e.bytes_in = packet.len() as u64;
    e.bytes_out = reply.map_or(0, |r| r.len() as u64);
    e.duration = started.elapsed();
    e
}

/// A response body that records its entry once: when it ends, fails, or is dropped unfinished.
pub(crate) struct LoggedBody {
    inner: s3s::Body,
    log: AccessLog,
    entry: Option<Entry>,
    started: Instant,
    /// The body's length when known up front: hyper stops polling once that much is sent.
    expected: Option<u64>,
    sent: u64,
}

impl LoggedBody {
    /// `declared`: the length the response announced (its Content-Length; 0 for HEAD and 304),
    /// for bodies that do not know their own length.
    pub(crate) fn new(
        inner: s3s::Body,
        log: AccessLog,
        entry: Entry,
        started: Instant,
        declared: Option<u64>,
    ) -> Self {
        let expected = inner.size_hint().exact().or(declared);
        Self {
            inner,
            log,
            entry: Some(entry),
            started,
            expected,
            sent: 0,
        }
    }

    fn complete(&self) -> bool {
        match self.expected {
            Some(n) => self.sent >= n,
            None => self.inner.is_end_stream(),
        }
    }

    fn finish(&mut self, status_suffix: Option<&str>) {
        if let Some(mut e) = self.entry.take() {
            e.duration = self.started.elapsed();
            if let Some(s) = status_suffix {
                e.status.push_str(s);
            }
            self.log.record(&e);
        }
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = s3s::StdError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                self.sent += n;
                if let Some(e) = self.entry.as_mut() {
                    e.bytes_out += n;
                }
                if self.complete() {
                    self.finish(None);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(Some("-failed")),
            Poll::Ready(None) => self.finish(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let unfinished = self.entry.is_some() && !self.complete();
        self.finish(unfinished.then_some("-aborted"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations() {
        for (m, path, q, want) in [
            (Method::GET, "/", "", "ListBuckets"),
            (Method::GET, "/b", "list-type=2&prefix=a", "ListObjectsV2"),
            (Method::GET, "/b/k", "", "GetObject"),
            (Method::GET, "/b/k", "torrent", "GetObjectTorrent"),
            (Method::PUT, "/b/k", "acl", "PutObjectAcl"),
            (Method::GET, "/b", "acl", "GetBucketAcl"),
            (Method::PUT, "/b", "encryption", "PutBucketEncryption"),
            (Method::PUT, "/b/k", "partNumber=1&uploadId=x", "UploadPart"),
            (Method::POST, "/b/k", "uploads", "CreateMultipartUpload"),
            (Method::POST, "/b", "delete", "DeleteObjects"),
            (Method::PUT, "/b", "", "CreateBucket"),
        ] {
            assert_eq!(
                describe(&m, path, q, None).operation,
                want,
                "{m} {path}?{q}"
            );
        }
        let e = describe(&Method::GET, "/b/dir/a%20b", "", None);
        assert_eq!(
            (e.bucket.as_deref(), e.object.as_deref()),
            (Some("b"), Some("dir/a b"))
        );
        let e = describe(&Method::GET, "/dir/k", "", Some("vb"));
        assert_eq!(
            (e.bucket.as_deref(), e.object.as_deref()),
            (Some("vb"), Some("dir/k"))
        );
        let e = describe(&Method::GET, "/announce", "info_hash=%AB%CD&port=1", None);
        assert_eq!(e.channel, Channel::TrackerHttp);
        assert_eq!(e.info_hash.as_deref(), Some("abcd"));
        let e = describe(&Method::GET, "/_seedbucket/webseed/b/k", "", None);
        assert_eq!(e.channel, Channel::Webseed);
    }

    #[test]
    fn key_ids_never_signatures() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=AKID/20261201/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=abc"
                .parse()
                .unwrap(),
        );
        assert_eq!(access_key_id(&h, "").as_deref(), Some("AKID"));
        let q =
            "X-Amz-Credential=PRE%2F20261201%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=zzz";
        assert_eq!(access_key_id(&HeaderMap::new(), q).as_deref(), Some("PRE"));
        assert_eq!(
            access_key_id(&HeaderMap::new(), "AWSAccessKeyId=V2&Signature=s").as_deref(),
            Some("V2")
        );
        assert_eq!(access_key_id(&HeaderMap::new(), "prefix=a"), None);
    }
}
