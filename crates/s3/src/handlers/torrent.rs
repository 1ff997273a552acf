//! GetObjectTorrent: `GET /{bucket}/{key}?torrent[&format=v1|hybrid|v2]`.
//!
//! The caller needs READ on the object; objects over the size limit and SSE-C objects are
//! refused with S3's `InvalidRequest`. The info dictionary is made from the piece hashes stored
//! at PUT (or made once, lazily), so the info-hash of an object version never changes. Outside
//! the info dictionary: our tracker's announce URL and a webseed URL that serves exactly this
//! version. With `Accept: application/json` the answer is the JSON envelope instead.

use http::{HeaderValue, header};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use seedbucket_store::pieces::IssuedTorrent;
use seedbucket_torrent::{Format, InfoHashes, Outer, build_info, build_torrent, magnet_uri};

use super::object::check_key;
use super::{format_http_date, timestamp};
use crate::Seedbucket;
use crate::access::{Action, Principal};
use crate::error::to_s3;

/// The file name inside the torrent: the key's last path segment that names a file, with `\\`
/// counted as a separator too (Windows clients split on it); segments that are empty, `.` or
/// `..` are skipped, and NUL and other control characters become `_`.
pub(crate) fn torrent_name(key: &str) -> String {
    key.rsplit(['/', '\\'])
        .find(|s| !s.is_empty() && *s != "." && *s != "..")
        .unwrap_or("object")
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect()
}

/// Query parameters of `?torrent`.
struct TorrentQuery {
    format: Option<Format>,
    /// `versionId`: the torrent of that version (its text as sent; checked by the handler).
    version_id: Option<String>,
}

fn parse_query(uri: &http::Uri) -> S3Result<TorrentQuery> {
    let mut format = None;
    let mut version_id = None;
    for pair in uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "torrent" => {}
            "format" => {
                format = Some(Format::parse(v).ok_or_else(|| {
                    s3_error!(InvalidArgument, "format must be v1, hybrid or v2")
                })?);
            }
            "versionId" => {
                let decoded = percent_encoding::percent_decode_str(v)
                    .decode_utf8()
                    .map_err(|_| s3_error!(InvalidArgument, "Invalid version id specified"))?;
                version_id = Some(decoded.into_owned());
            }
            // SigV4/SigV2 query authentication and the like.
            k if k.starts_with("X-Amz-")
                || k.starts_with("x-amz-")
                || ["AWSAccessKeyId", "Signature", "Expires"].contains(&k) => {}
            _ => {}
        }
    }
    Ok(TorrentQuery { format, version_id })
}

pub fn wants_json(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().starts_with("application/json"))
        })
}

fn rfc3339(ns: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| t.replace_nanosecond(0).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The WebSocket form of an announce URL (`http` → `ws`, `https` → `wss`; same path and query).
fn websocket_url(announce: &str) -> String {
    if let Some(rest) = announce.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = announce.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        announce.to_owned()
    }
}

/// Percent-encodes a name for a URL path segment.
fn path_segment(s: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SEG: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(s, SEG).to_string()
}

impl Seedbucket {
    pub(crate) async fn h_get_object_torrent(
        &self,
        req: S3Request<GetObjectTorrentInput>,
    ) -> S3Result<S3Response<GetObjectTorrentOutput>> {
        let query = parse_query(&req.uri)?;
        let json = wants_json(&req.headers);
        let input = req.input;
        check_key(&input.key)?;
        let access = self
            .bucket_access(
                req.credentials.as_ref(),
                &input.bucket,
                input.expected_bucket_owner.as_deref(),
                None,
            )
            .await?;
        let which = super::which_version(query.version_id.as_deref())?;
        let rec = self
            .object_at_for(&access, &input.key, Action::GetObjectTorrent, which)
            .await?;
        if rec.delete_marker {
            return Err(super::delete_marker_named(&rec));
        }
        let opts = &self.options;
        if rec.is_sse_c() {
            return Err(s3_error!(
                InvalidRequest,
                "Torrent creation is not supported for objects encrypted with customer-provided keys (SSE-C)"
            ));
        }
        if rec.size > opts.torrent_max_size {
            return Err(s3_error!(
                InvalidRequest,
                "Torrent creation is not supported for objects larger than {}",
                opts.torrent_max_size
            ));
        }
        let format = query.format.unwrap_or(opts.torrent_format);
        let pieces = self
            .store
            .pieces_of(&rec, &input.bucket, &input.key)
            .await
            .map_err(to_s3)?;
        let name = torrent_name(&input.key);
        // An object anyone may read gets an open torrent; any other gets a private one
        // (BEP 27) whose tracker and webseed URLs carry tokens of the caller's key.
        let private = !access.anonymous_may_read_at(&input.key, &rec, which);
        let caller_key = match (&access.principal, private) {
            (Principal::User(k), true) => Some(k.access_key.clone()),
            (_, false) => None,
            (Principal::Anonymous, true) => return Err(s3_error!(AccessDenied, "Access Denied")),
        };
        let info = build_info(&name, &pieces.hashes, format, private)
            .map_err(|e| s3_error!(InternalError, "{e}"))?;
        let ih = InfoHashes::of_info(&info, format);
        let id = hex::encode(ih.primary());
        // Tokens name the object: another object with the same bytes has the same info-hash.
        let object_id = seedbucket_store::pieces::object_id(&input.bucket, &input.key);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let expires =
            now.saturating_add(i64::try_from(opts.webseed_expiry_secs).unwrap_or(i64::MAX));
        // `/announce` with the token in the query: libtorrent's SSRF mitigation accepts a tracker
        // on a private or loopback address only when the path is exactly `/announce`.
        let (announce, webseed_base) = match &caller_key {
            Some(ak) => (
                format!(
                    "{}/announce?{}={}",
                    opts.public_url,
                    crate::tracker_http::TOKEN_PARAM,
                    opts.token_key.tracker_token(&id, ak, &object_id)
                ),
                format!(
                    "{}/_seedbucket/webseed/{id}/{}/",
                    opts.public_url,
                    opts.token_key.webseed_token(&id, ak, &object_id, expires)
                ),
            ),
            None => (
                format!("{}/announce", opts.public_url),
                format!(
                    "{}/_seedbucket/webseed/{id}/{}/",
                    opts.public_url,
                    crate::webseed::PUBLIC_TOKEN
                ),
            ),
        };
        // v1 and hybrid clients use the URL as it is; libtorrent appends the name for v2-only.
        let webseed = match format {
            Format::V2 => webseed_base.clone(),
            _ => format!("{webseed_base}{}", path_segment(&name)),
        };
        self.store
            .issue_torrent(
                crate::torrent_sources::recorded_hashes(&ih, format),
                IssuedTorrent {
                    bucket: input.bucket.clone(),
                    key: input.key.clone(),
                    version: rec.version.clone(),
                    name: name.clone(),
                    format: format.as_str().to_owned(),
                    private,
                    info_hash: id.clone(),
                    created_ns: pieces.created_ns,
                },
            )
            .await
            .map_err(to_s3)?;
        self.stats.torrent_issued(format.as_str());
        let version_id = super::version_header(&access.bucket, &rec, which);
        // Browsers (WebTorrent) need a WebSocket tracker; stock clients ignore a tier whose
        // scheme they do not speak, and use the first tier. Open torrents always list it,
        // private ones with `--webtorrent on`.
        let websocket = (!private || opts.webtorrent).then(|| websocket_url(&announce));
        let mut announce_list = vec![vec![announce.clone()]];
        if let Some(ws) = &websocket {
            announce_list.push(vec![ws.clone()]);
        }
        let outer = Outer {
            // A version never changes: its torrent says which one it is.
            comment: version_id
                .as_ref()
                .map(|v| format!("{}/{} version {v}", input.bucket, input.key)),
            announce: Some(announce.clone()),
            announce_list,
            created_by: Some(concat!("seedbucket/", env!("CARGO_PKG_VERSION")).to_owned()),
            piece_layers: match (
                format.has_v2(),
                pieces.hashes.v2_root,
                &pieces.hashes.v2_layer,
            ) {
                (true, Some(root), Some(layer)) => vec![(root, layer.clone())],
                _ => Vec::new(),
            },
            url_list: vec![webseed.clone()],
        };
        let torrent = build_torrent(&info, &outer);

        let mut headers = http::HeaderMap::new();
        if let Some(v) = version_id
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert("x-amz-version-id", v);
        }
        let body = if json {
            let trackers: Vec<String> = std::iter::once(announce.clone())
                .chain(websocket.clone())
                .collect();
            let magnet = magnet_uri(
                &ih,
                &name,
                rec.size,
                &trackers,
                std::slice::from_ref(&webseed),
            );
            let data = serde_json::json!({
                "success": true,
                "data": {
                    "id": id,
                    "created_at": rfc3339(pieces.created_ns),
                    "bucket": input.bucket,
                    "key": input.key,
                    "name": name,
                    "length": rec.size,
                    "piece_length": pieces.hashes.piece_length,
                    "format": format.as_str(),
                    "private": private,
                    "info_hash_v1": ih.v1.map(hex::encode),
                    "info_hash_v2": ih.v2.map(hex::encode),
                    "magnet": magnet,
                    "announce": announce,
                    "webseed": webseed,
                    "version_id": version_id,
                    "torrent_url": format!("{}/{}/{}?torrent&format={}{}", opts.public_url, path_segment(&input.bucket),
                        input.key.split('/').map(path_segment).collect::<Vec<_>>().join("/"), format.as_str(),
                        version_id.as_deref().map(|v| format!("&versionId={v}")).unwrap_or_default()),
                }
            });
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            serde_json::to_vec(&data).map_err(|e| s3_error!(InternalError, "{e}"))?
        } else {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-bittorrent"),
            );
            let disposition = format!(
                "attachment; filename=\"{}.torrent\"",
                name.replace(['"', '\\', '\r', '\n'], "_")
            );
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                headers.insert(header::CONTENT_DISPOSITION, v);
            }
            torrent.clone()
        };
        {
            use sha2::Digest;
            let tag = format!("\"{}\"", hex::encode(&sha2::Sha256::digest(&torrent)[..16]));
            if let Ok(v) = HeaderValue::from_str(&tag) {
                headers.insert(header::ETAG, v);
            }
        }
        if let Some(v) = format_http_date(&timestamp(rec.last_modified_ns))
            .and_then(|d| HeaderValue::from_str(&d).ok())
        {
            headers.insert(header::LAST_MODIFIED, v);
        }
        let request_charged = (input.request_payer.as_ref().map(|p| p.as_str())
            == Some("requester"))
        .then(|| RequestCharged::from_static(RequestCharged::REQUESTER));
        let mut resp = S3Response::new(GetObjectTorrentOutput {
            body: Some(StreamingBlob::from(s3s::Body::from(body))),
            request_charged,
        });
        resp.headers = headers;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::torrent_name;

    #[test]
    fn names() {
        assert_eq!(torrent_name("a/b/model.bin"), "model.bin");
        assert_eq!(torrent_name("dir/"), "dir");
        assert_eq!(torrent_name("x/.."), "x");
        assert_eq!(torrent_name("/"), "object");
        assert_eq!(torrent_name("a/..\\..\\evil.exe"), "evil.exe");
        assert_eq!(torrent_name("x/a\\.."), "a");
        assert_eq!(torrent_name("x/we\0ights.bin"), "we_ights.bin");
        assert_eq!(torrent_name("\\"), "object");
    }
}
