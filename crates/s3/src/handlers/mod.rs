//! Operation handlers, one module per group, and the checks they share.

/// The `x-amz-grant-*` headers of an input that has all five (bucket ACL calls, CreateBucket);
/// `object_grants!` for the object writes, which have no WRITE grant.
macro_rules! grant_headers {
    ($input:expr) => {
        $crate::access::acl::GrantHeaders {
            read: $input.grant_read.as_deref(),
            write: $input.grant_write.as_deref(),
            read_acp: $input.grant_read_acp.as_deref(),
            write_acp: $input.grant_write_acp.as_deref(),
            full_control: $input.grant_full_control.as_deref(),
        }
    };
}

macro_rules! object_grants {
    ($input:expr) => {
        $crate::access::acl::GrantHeaders {
            read: $input.grant_read.as_deref(),
            write: None,
            read_acp: $input.grant_read_acp.as_deref(),
            write_acp: $input.grant_write_acp.as_deref(),
            full_control: $input.grant_full_control.as_deref(),
        }
    };
}

/// The standard headers stored with an object, from a write request's input.
macro_rules! input_headers {
    ($input:expr) => {
        $crate::handlers::object::stored_headers(
            $input.content_type,
            $input.content_encoding,
            $input.content_disposition,
            $input.content_language,
            $input.cache_control,
            $input.expires.as_ref(),
        )
    };
}

/// The owner and ACL of the object a write request creates: the writer (the bucket owner for an
/// anonymous write) and the grants its canned ACL or `x-amz-grant-*` headers ask for.
macro_rules! new_object_acl {
    ($s3:expr, $input:expr, $access:expr) => {{
        let owner = $crate::handlers::writer_id(&$access);
        $s3.requested_acl(
            $input.acl.as_ref().map(|a| a.as_str()),
            &object_grants!($input),
            &owner,
            &$access.bucket.owner,
        )
        .map(|acl| (owner, acl))
    }};
}

/// The SSE-C key of an input with the three `sse_customer_*` fields (`copy_source` for the
/// `copy_source_sse_customer_*` ones).
macro_rules! sse_key {
    ($input:expr) => {
        $crate::handlers::sse::customer_key(
            $input.sse_customer_algorithm.as_deref(),
            $input.sse_customer_key.as_deref(),
            $input.sse_customer_key_md5.as_deref(),
        )
    };
    (copy_source $input:expr) => {
        $crate::handlers::sse::customer_key(
            $input.copy_source_sse_customer_algorithm.as_deref(),
            $input.copy_source_sse_customer_key.as_deref(),
            $input.copy_source_sse_customer_key_md5.as_deref(),
        )
    };
}

mod acl;
mod attributes;
mod bucket;
mod config;
pub(crate) mod copy;
mod lifecycle;
mod list;
mod multipart;
pub(crate) mod object;
pub(crate) mod sse;
mod tagging;
mod torrent;

pub(crate) use torrent::wants_json;

use s3s::dto::{ETag, Owner, Timestamp, TimestampFormat};
use s3s::{S3Result, s3_error};
use seedbucket_store::{
    BucketRecord, ChecksumSelection, Checksums, Grant, NULL_VERSION_ID, ObjectRecord, StageTarget,
    StoreError, Which,
};

use crate::Seedbucket;
use crate::access::Access;
use crate::access::acl::{self as acl_rules, GrantHeaders};
use crate::error::to_s3;

impl Seedbucket {
    /// The grants a write asks for: a canned ACL (`x-amz-acl`) or `x-amz-grant-*` headers,
    /// not both; none means `private`.
    pub(crate) fn requested_acl(
        &self,
        canned: Option<&str>,
        headers: &GrantHeaders<'_>,
        owner: &str,
        bucket_owner: &str,
    ) -> S3Result<Vec<Grant>> {
        let grants = match (canned, headers.is_empty()) {
            (Some(_), false) => {
                return Err(s3_error!(
                    InvalidRequest,
                    "Specifying both Canned ACLs and Header Grants is not allowed"
                ));
            }
            (Some(name), true) => acl_rules::canned(name, owner, bucket_owner)?,
            (None, _) => headers.grants(&|id| self.keys.by_user(id).is_some())?,
        };
        Ok(acl_rules::normalize(grants, owner))
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
        let mut selection = claimed.selection(incoming.algorithm, headers)?;
        selection.content_md5 = incoming.content_md5.is_some();
        let body = incoming.body.ok_or_else(|| s3_error!(IncompleteBody))?;
        let expected = incoming.content_length.and_then(|n| u64::try_from(n).ok());
        let (staged, digests) = self
            .stage_body(
                incoming.target,
                body,
                expected,
                selection,
                incoming.encryption,
            )
            .await?;
        verify_content_md5(incoming.content_md5, digests.md5.as_ref())?;
        claimed.add_trailers(trailers);
        let computed = digests.checksums();
        claimed.verify(&computed)?;
        Ok((staged, computed))
    }

    /// Stages a body for `target` (an object or a part), encrypted when a customer key is
    /// given. The digests are of the plaintext: SSE-C bodies are hashed before they are
    /// encrypted.
    pub(crate) async fn stage_body<S, E>(
        &self,
        target: StageTarget<'_>,
        body: S,
        expected: Option<u64>,
        selection: ChecksumSelection,
        encryption: Option<seedbucket_store::AtRest<'_>>,
    ) -> S3Result<(seedbucket_store::Staged, seedbucket_store::Digests)>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        match encryption {
            Some(with) => self
                .store
                .stage_encrypted(target, body, expected, selection, with)
                .await
                .map_err(to_s3),
            None => {
                let staged = self
                    .store
                    .stage(target, body, expected, selection)
                    .await
                    .map_err(to_s3)?;
                let digests = staged.digests.clone();
                Ok((staged, digests))
            }
        }
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
    /// What the body becomes: an object, or a part of an upload.
    pub target: StageTarget<'a>,
    /// How the body is encrypted at rest (`None`: stored as sent).
    pub encryption: Option<seedbucket_store::AtRest<'a>>,
}

/// How a write is encrypted at rest: SSE-C's key if the request gave one, else SSE-S3 if asked.
pub(crate) fn at_rest(
    key: Option<&seedbucket_store::sse::CustomerKey>,
    sse_s3: bool,
) -> Option<seedbucket_store::AtRest<'_>> {
    match (key, sse_s3) {
        (Some(k), _) => Some(seedbucket_store::AtRest::Customer(k)),
        (None, true) => Some(seedbucket_store::AtRest::Server),
        (None, false) => None,
    }
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

/// Refuses server-side encryption with KMS keys: there is no KMS here, and storing the object
/// in plaintext while the client believes it encrypted would be worse than an error.
/// Whether a write is stored with SSE-S3: `x-amz-server-side-encryption: AES256`, or no
/// encryption named and the bucket's default encryption on (`bucket_default`). SSE-KMS is
/// refused: there is no KMS, and storing such an object in plaintext would be a lie. SSE-S3
/// together with SSE-C headers is refused as S3 refuses it.
pub(crate) fn wants_sse_s3(
    sse: Option<&s3s::dto::ServerSideEncryption>,
    customer_key: Option<&seedbucket_store::sse::CustomerKey>,
    bucket_default: bool,
) -> S3Result<bool> {
    let wanted = match sse.map(|s| s.as_str()) {
        None => return Ok(bucket_default && customer_key.is_none()),
        Some("AES256") => true,
        Some(kms) if kms.starts_with("aws:kms") => {
            return Err(s3_error!(
                InvalidArgument,
                "Server-side encryption with KMS keys ({kms}) is not available on this server; \
                 use SSE-S3 (AES256) or SSE-C (customer-provided keys) to encrypt objects at rest."
            ));
        }
        Some(other) => {
            return Err(s3_error!(
                InvalidArgument,
                "The encryption method specified is not supported: {other}"
            ));
        }
    };
    if wanted && customer_key.is_some() {
        return Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with Customer provided key is incompatible with the encryption method specified"
        ));
    }
    Ok(wanted)
}

/// `x-amz-server-side-encryption` of an answer about `attributes`' object.
pub(crate) fn sse_s3_header(
    attributes: &seedbucket_store::ObjectAttributes,
) -> Option<s3s::dto::ServerSideEncryption> {
    attributes.sse_s3.then(|| {
        s3s::dto::ServerSideEncryption::from_static(s3s::dto::ServerSideEncryption::AES256)
    })
}

/// Checks `Content-MD5` (base64 of the 16-byte digest) against the computed MD5.
/// Checks Content-MD5 against the body's MD5 (computed whenever Content-MD5 is given).
pub(crate) fn verify_content_md5(claimed: Option<&str>, md5: Option<&[u8; 16]>) -> S3Result<()> {
    use base64::Engine as _;
    let Some(claimed) = claimed else {
        return Ok(());
    };
    let Some(md5) = md5 else {
        return Err(s3_error!(InternalError, "the body's MD5 was not computed"));
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

/// A part number as S3 takes it: 1 to 10,000.
pub(crate) fn part_number(n: i32) -> S3Result<u32> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=seedbucket_store::MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            )
        })
}

/// The version a request's `versionId` names, checked as S3 checks it: `null`, or an id of the
/// form this server makes (32 lower-case hex digits); anything else is 400 InvalidArgument.
pub(crate) fn which_version(version_id: Option<&str>) -> S3Result<Which<'_>> {
    match version_id {
        None => Ok(Which::Current),
        Some("") => Err(s3_error!(
            InvalidArgument,
            "Version id cannot be the empty string"
        )),
        Some(v)
            if v == NULL_VERSION_ID
                || (v.len() == 32 && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))) =>
        {
            Ok(Which::VersionId(v))
        }
        Some(_) => Err(s3_error!(InvalidArgument, "Invalid version id specified")),
    }
}

/// The `x-amz-version-id` a response about `rec` carries: in a bucket whose versioning was
/// ever configured, or when the request named a version; none in a plain bucket, as in S3.
pub(crate) fn version_header(
    bucket: &BucketRecord,
    rec: &ObjectRecord,
    which: Which<'_>,
) -> Option<String> {
    (bucket.versioning.is_some() || which != Which::Current).then(|| rec.version_id().to_owned())
}

/// The headers S3 adds to an answer about a delete marker.
fn delete_marker_headers(marker: &ObjectRecord) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "x-amz-delete-marker",
        http::HeaderValue::from_static("true"),
    );
    if let Ok(v) = http::HeaderValue::from_str(marker.version_id()) {
        headers.insert("x-amz-version-id", v);
    }
    headers
}

/// 405 for a GET or HEAD naming a delete marker by its version id, as S3 answers.
pub(crate) fn delete_marker_named(marker: &ObjectRecord) -> s3s::S3Error {
    let mut e = s3_error!(
        MethodNotAllowed,
        "The specified method is not allowed against this resource."
    );
    let mut headers = delete_marker_headers(marker);
    headers.insert(
        http::header::ALLOW,
        http::HeaderValue::from_static("DELETE"),
    );
    e.set_headers(headers);
    e
}

impl Seedbucket {
    /// The error for a read of `key` that found no such version: NoSuchVersion, or NoSuchKey
    /// (naming the delete marker when the key's newest version is one, as S3 does), or
    /// AccessDenied to callers who may not list the bucket.
    pub(crate) async fn missing_version(
        &self,
        access: &Access,
        key: &str,
        err: StoreError,
    ) -> s3s::S3Error {
        match err {
            StoreError::NoSuchKey => {
                let mut e = access.missing_object(key);
                if access.bucket.versioning.is_some()
                    && e.code() == &s3s::S3ErrorCode::NoSuchKey
                    && let Ok(Some(marker)) = self
                        .store
                        .latest_delete_marker(&access.bucket.name, key)
                        .await
                {
                    e.set_headers(delete_marker_headers(&marker));
                }
                e
            }
            StoreError::NoSuchVersion => {
                let e = access.missing_object(key);
                if e.code() == &s3s::S3ErrorCode::NoSuchKey {
                    s3_error!(NoSuchVersion, "The specified version does not exist.")
                } else {
                    e
                }
            }
            e => to_s3(e),
        }
    }
}

/// Who owns what a request writes: the signing user, or the bucket owner for an anonymous
/// write (to a `public-read-write` bucket).
pub(crate) fn writer_id(access: &Access) -> String {
    access
        .principal
        .user_id()
        .unwrap_or(&access.bucket.owner)
        .to_owned()
}

/// Most tags an object may have, and the longest key and value (S3's limits).
const MAX_TAGS: usize = 10;
const MAX_TAG_KEY: usize = 128;
const MAX_TAG_VALUE: usize = 256;

/// Checks a tag set against S3's rules.
pub(crate) fn validate_tags(
    tags: impl IntoIterator<Item = (String, String)>,
) -> S3Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > MAX_TAG_KEY {
            return Err(s3_error!(
                InvalidTag,
                "The TagKey you have provided is invalid"
            ));
        }
        if v.chars().count() > MAX_TAG_VALUE {
            return Err(s3_error!(
                InvalidTag,
                "The TagValue you have provided is invalid"
            ));
        }
        if out.insert(k, v).is_some() {
            return Err(s3_error!(
                InvalidTag,
                "Cannot provide multiple Tags with the same key"
            ));
        }
    }
    if out.len() > MAX_TAGS {
        return Err(crate::error::with_status(
            "BadRequest",
            "Object tags cannot be greater than 10",
            http::StatusCode::BAD_REQUEST,
        ));
    }
    Ok(out)
}

/// Parses `x-amz-tagging` (a URL query string: `k1=v1&k2=v2`).
pub(crate) fn parse_tagging_header(
    value: Option<&str>,
) -> S3Result<std::collections::BTreeMap<String, String>> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(Default::default());
    };
    let pairs = value.split('&').map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
        };
        match (decode(k), decode(v)) {
            (Ok(k), Ok(v)) => Ok((k, v)),
            _ => Err(s3_error!(InvalidArgument, "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without tag name duplicates.")),
        }
    });
    validate_tags(pairs.collect::<S3Result<Vec<_>>>()?)
}

/// `x-amz-request-charged: requester` when the request said `x-amz-request-payer: requester`
/// (S3 answers it so on requester-pays buckets; we bill nobody, but clients may check it).
pub(crate) fn request_charged(
    payer: Option<&s3s::dto::RequestPayer>,
) -> Option<s3s::dto::RequestCharged> {
    payer
        .filter(|p| p.as_str().eq_ignore_ascii_case("requester"))
        .map(|_| s3s::dto::RequestCharged::from_static(s3s::dto::RequestCharged::REQUESTER))
}
