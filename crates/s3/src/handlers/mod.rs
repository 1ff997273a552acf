//! Operation handlers, one module per group, and the checks they share.

mod bucket;
mod list;
mod multipart;
pub(crate) mod object;
mod torrent;

pub(crate) use torrent::wants_json;

use s3s::dto::{ETag, Owner, Timestamp, TimestampFormat};
use s3s::{S3Result, s3_error};
use seedbucket_store::credentials::AccessKey;
use seedbucket_store::{BucketRecord, ChecksumSelection, Checksums};

use crate::Seedbucket;
use crate::error::to_s3;

impl Seedbucket {
    /// The caller's key, the bucket, and the checks every bucket or object operation makes:
    /// the bucket exists, the caller owns it, and `x-amz-expected-bucket-owner` matches.
    pub(crate) async fn owned_bucket(
        &self,
        credentials: Option<&s3s::auth::Credentials>,
        bucket: &str,
        expected_owner: Option<&str>,
    ) -> S3Result<(AccessKey, BucketRecord)> {
        let caller = crate::auth::caller(&self.keys, credentials)?;
        let rec = self.store.bucket(bucket).await.map_err(to_s3)?;
        if rec.owner != caller.user_id {
            return Err(s3_error!(AccessDenied));
        }
        if let Some(expected) = expected_owner
            && expected != rec.owner
        {
            return Err(s3_error!(
                AccessDenied,
                "The expected bucket owner does not match"
            ));
        }
        Ok((caller, rec))
    }

    /// Receives a PUT or UploadPart body: stages it while hashing, then checks Content-MD5 and
    /// every claimed checksum (headers, and trailers that arrived after the body). Returns the
    /// staged body and the computed checksums; nothing is visible yet.
    pub(crate) async fn receive_body(
        &self,
        incoming: Incoming<'_>,
        headers: &http::HeaderMap,
        trailers: Option<&s3s::TrailingHeaders>,
    ) -> S3Result<(seedbucket_store::Staged, Checksums)> {
        let mut claimed = incoming.claimed;
        let selection = claimed.selection(incoming.algorithm, headers)?;
        let body = incoming.body.ok_or_else(|| s3_error!(IncompleteBody))?;
        let expected = incoming.content_length.and_then(|n| u64::try_from(n).ok());
        let staged = if incoming.part {
            self.store.stage_part(body, expected, selection).await
        } else {
            self.store.stage(body, expected, selection).await
        }
        .map_err(to_s3)?;
        verify_content_md5(incoming.content_md5, &staged.digests.md5)?;
        claimed.add_trailers(trailers);
        let computed = staged.digests.checksums();
        claimed.verify(&computed)?;
        Ok((staged, computed))
    }

    pub(crate) fn owner_of(&self, user_id: &str) -> Owner {
        Owner {
            id: Some(user_id.to_owned()),
            display_name: self.keys.by_user(user_id).map(|k| k.name),
        }
    }
}

pub(crate) fn timestamp(ns: i64) -> Timestamp {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .into()
}

pub(crate) fn etag(value: &str) -> ETag {
    ETag::Strong(value.to_owned())
}

pub(crate) fn format_http_date(t: &Timestamp) -> Option<String> {
    let mut buf = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

pub(crate) fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

/// A request body and what the request claims about it.
pub(crate) struct Incoming<'a> {
    pub body: Option<s3s::dto::StreamingBlob>,
    pub content_length: Option<i64>,
    pub content_md5: Option<&'a str>,
    /// `x-amz-sdk-checksum-algorithm` / `ChecksumAlgorithm`.
    pub algorithm: Option<&'a str>,
    pub claimed: ClaimedChecksums,
    /// A multipart part (always staged to a file).
    pub part: bool,
}

/// S3 checksum values a request supplied, by header or (after the body) by trailer.
#[derive(Debug, Default, Clone)]
pub(crate) struct ClaimedChecksums {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub crc64nvme: Option<String>,
}

impl ClaimedChecksums {
    /// Which algorithms to compute: those named by `x-amz-sdk-checksum-algorithm`/the
    /// `ChecksumAlgorithm` field, by `x-amz-trailer`, or supplied as values.
    pub fn selection(
        &self,
        algorithm: Option<&str>,
        headers: &http::HeaderMap,
    ) -> S3Result<ChecksumSelection> {
        let mut sel = ChecksumSelection::default();
        if let Some(a) = algorithm
            && !sel.enable(a)
        {
            return Err(s3_error!(
                InvalidArgument,
                "Unsupported checksum algorithm: {a}"
            ));
        }
        if let Some(trailer) = headers.get("x-amz-trailer").and_then(|v| v.to_str().ok()) {
            for name in trailer.split(',') {
                if let Some(alg) = name
                    .trim()
                    .to_ascii_lowercase()
                    .strip_prefix("x-amz-checksum-")
                    && !sel.enable(alg)
                {
                    return Err(s3_error!(
                        InvalidArgument,
                        "Unsupported trailing checksum: {name}"
                    ));
                }
            }
        }
        sel.crc32 |= self.crc32.is_some();
        sel.crc32c |= self.crc32c.is_some();
        sel.sha1 |= self.sha1.is_some();
        sel.sha256 |= self.sha256.is_some();
        sel.crc64nvme |= self.crc64nvme.is_some();
        Ok(sel)
    }

    /// Adds values that arrived as trailers.
    pub fn add_trailers(&mut self, trailers: Option<&s3s::TrailingHeaders>) {
        let Some(map) = trailers.and_then(|t| t.take()) else {
            return;
        };
        let get = |name: &str| {
            map.get(name)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_owned())
        };
        self.crc32 = self.crc32.take().or_else(|| get("x-amz-checksum-crc32"));
        self.crc32c = self.crc32c.take().or_else(|| get("x-amz-checksum-crc32c"));
        self.sha1 = self.sha1.take().or_else(|| get("x-amz-checksum-sha1"));
        self.sha256 = self.sha256.take().or_else(|| get("x-amz-checksum-sha256"));
        self.crc64nvme = self
            .crc64nvme
            .take()
            .or_else(|| get("x-amz-checksum-crc64nvme"));
    }

    /// Every claimed value must equal the computed one (BadDigest otherwise).
    pub fn verify(&self, computed: &Checksums) -> S3Result<()> {
        let pairs = [
            ("CRC32", &self.crc32, &computed.crc32),
            ("CRC32C", &self.crc32c, &computed.crc32c),
            ("SHA1", &self.sha1, &computed.sha1),
            ("SHA256", &self.sha256, &computed.sha256),
            ("CRC64NVME", &self.crc64nvme, &computed.crc64nvme),
        ];
        for (name, claimed, actual) in pairs {
            if let Some(c) = claimed
                && Some(c) != actual.as_ref()
            {
                return Err(s3_error!(
                    BadDigest,
                    "The {name} you specified did not match the calculated checksum."
                ));
            }
        }
        Ok(())
    }
}

/// Checks `Content-MD5` (base64 of the 16-byte digest) against the computed MD5.
pub(crate) fn verify_content_md5(claimed: Option<&str>, md5: &[u8; 16]) -> S3Result<()> {
    use base64::Engine as _;
    let Some(claimed) = claimed else {
        return Ok(());
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(claimed.trim())
        .map_err(|_| s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid."))?;
    if decoded.len() != 16 {
        return Err(s3_error!(
            InvalidDigest,
            "The Content-MD5 you specified was invalid."
        ));
    }
    if decoded != md5 {
        return Err(s3_error!(
            BadDigest,
            "The Content-MD5 you specified did not match what we received."
        ));
    }
    Ok(())
}

/// `x-amz-meta-*` keys are case-insensitive; S3 returns them lower-cased.
pub(crate) fn user_metadata(
    m: Option<std::collections::HashMap<String, String>>,
) -> std::collections::BTreeMap<String, String> {
    m.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}
