//! The records kept in the metadata database, serialized as JSON values.
//!
//! Every object version is a list of [`Segment`]s: a single PUT has one, a completed multipart
//! upload has one per part, in order. Reads walk the segments; completion never copies bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A bucket and who owns it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BucketRecord {
    pub name: String,
    /// Canonical user id of the owner (see `credentials`).
    pub owner: String,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_ns: i64,
    /// Grants beyond the owner's own full control (empty: `private`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl: Vec<Grant>,
    /// The bucket policy document as the owner sent it (validated when it was put).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// CORS rules (PutBucketCors), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors: Vec<CorsRule>,
    /// Default encryption (PutBucketEncryption with AES256): writes that name no encryption
    /// are stored with SSE-S3.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default_sse_s3: bool,
    /// Versioning state (PutBucketVersioning); `None` for a bucket that never had it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versioning: Option<Versioning>,
    /// Lifecycle rules (PutBucketLifecycleConfiguration), in order; empty: none configured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lifecycle: Vec<LifecycleRule>,
}

/// One lifecycle rule: which objects (prefix, tags, size) and what happens to them when.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LifecycleRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub enabled: bool,
    #[serde(default)]
    pub prefix: String,
    /// Every tag must be on the object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_greater_than: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_less_than: Option<u64>,
    /// Expire current versions this many days after they were written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_days: Option<u32>,
    /// ... or from this time on (nanoseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_date_ns: Option<i64>,
    /// Remove a delete marker that no longer hides any version.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired_object_delete_marker: bool,
    /// Delete noncurrent versions this many days after they became noncurrent...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_days: Option<u32>,
    /// ... keeping this many of the newest noncurrent versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_noncurrent_versions: Option<u32>,
    /// Abort multipart uploads this many days after they were started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_incomplete_days: Option<u32>,
}

/// A bucket's versioning state once it was ever set (S3 has no way back to "never versioned").
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Versioning {
    /// Every write makes a new version with its own id; deletes leave a delete marker.
    Enabled,
    /// Writes replace the `null` version; versions made while enabled stay.
    Suspended,
}

/// Who a grant is for: one user, or one of S3's predefined groups.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(tag = "type", content = "id")]
pub enum Grantee {
    /// A canonical user id.
    User(String),
    /// Everyone, signed or not (`http://acs.amazonaws.com/groups/global/AllUsers`).
    AllUsers,
    /// Any request signed with a valid key (`.../global/AuthenticatedUsers`).
    AuthenticatedUsers,
    /// S3's log delivery group (`.../s3/LogDelivery`); kept so its grants round-trip.
    LogDelivery,
}

/// An ACL permission.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum Permission {
    Read,
    Write,
    ReadAcp,
    WriteAcp,
    FullControl,
}

impl Permission {
    /// Whether holding `self` gives `wanted` (FULL_CONTROL gives all four).
    pub fn covers(self, wanted: Permission) -> bool {
        self == wanted || self == Permission::FullControl
    }
}

/// One ACL entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Grant {
    pub grantee: Grantee,
    pub permission: Permission,
}

/// One CORS rule of a bucket.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CorsRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i32>,
}

/// The Content-Type S3 gives an object stored without one.
pub const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// The standard HTTP headers S3 stores with an object and returns on GET/HEAD.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredHeaders {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `Expires`, kept as the client sent it (RFC 7231 date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl StoredHeaders {
    /// The Content-Type to answer with: the stored one, or S3's default.
    pub fn content_type_or_default(&self) -> String {
        self.content_type
            .clone()
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned())
    }
}

/// S3 additional checksums of an object or part, base64 as S3 prints them.
/// For a multipart object they are composite (`<base64>-<parts>`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checksums {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64nvme: Option<String>,
}

impl Checksums {
    pub fn is_empty(&self) -> bool {
        self.crc32.is_none()
            && self.crc32c.is_none()
            && self.sha1.is_none()
            && self.sha256.is_none()
            && self.crc64nvme.is_none()
    }
}

/// A run of object bytes held in one blob file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Segment {
    pub blob: String,
    pub len: u64,
    /// The bytes live in the metadata database's `inline` table, not in a file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inline: bool,
    /// SSE-C: the stored bytes are this run's ciphertext (`len` counts stored bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse: Option<crate::sse::SseParams>,
}

/// What the caller supplies for a new object (PUT or multipart completion).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectAttributes {
    pub headers: StoredHeaders,
    /// `x-amz-meta-*` without the prefix, keys lower-cased.
    pub user_metadata: BTreeMap<String, String>,
    /// Canonical user id of the writer.
    pub owner: String,
    /// Grants beyond the owner's own full control (empty: `private`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl: Vec<Grant>,
    /// Object tags (PutObjectTagging or `x-amz-tagging`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// SSE-S3 (`x-amz-server-side-encryption: AES256`): encrypted at rest with the server's key
    /// (embedded mode) or the backend's (gateway mode); answered on HEAD and GET.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sse_s3: bool,
}

/// One stored object version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectRecord {
    /// Unique per write: names this exact version of the bytes.
    pub version: String,
    pub size: u64,
    /// The ETag without quotes: hex MD5, or `hex-N` for multipart.
    pub etag: String,
    /// Nanoseconds since the Unix epoch.
    pub last_modified_ns: i64,
    #[serde(flatten)]
    pub attributes: ObjectAttributes,
    #[serde(default)]
    pub checksums: Checksums,
    pub segments: Vec<Segment>,
    /// Number of parts for an object made by multipart upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts_count: Option<u32>,
    /// The multipart upload that made this version: a CompleteMultipartUpload retried after it
    /// succeeded (a client that timed out) gets the same answer again while this version stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_upload: Option<String>,
    /// Written while the bucket's versioning was enabled: its S3 version id is `version`.
    /// Otherwise it is the bucket's `null` version.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub versioned: bool,
    /// A delete marker (versioned buckets): no bytes, `size` 0, no segments.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_marker: bool,
}

/// The S3 version id of the version written while versioning was off or suspended.
pub const NULL_VERSION_ID: &str = "null";

impl ObjectRecord {
    /// The version id S3 clients see: `version` for versions written while versioning was
    /// enabled, `null` otherwise.
    pub fn version_id(&self) -> &str {
        if self.versioned {
            &self.version
        } else {
            NULL_VERSION_ID
        }
    }

    /// A delete marker made now by `owner` (its version id is its own `version`, or `null`
    /// when the bucket's versioning is suspended: the caller sets `versioned`).
    pub fn delete_marker(owner: &str, now_ns: i64) -> Self {
        Self {
            version: uuid::Uuid::new_v4().simple().to_string(),
            size: 0,
            etag: String::new(),
            last_modified_ns: now_ns,
            attributes: ObjectAttributes {
                owner: owner.to_owned(),
                ..Default::default()
            },
            checksums: Checksums::default(),
            segments: Vec::new(),
            parts_count: None,
            completed_upload: None,
            versioned: false,
            delete_marker: true,
        }
    }

    /// Stored with a customer-provided key (SSE-C): reads need the key.
    pub fn is_sse_c(&self) -> bool {
        self.segments
            .iter()
            .any(|s| s.sse.as_ref().is_some_and(|p| p.server_key.is_none()))
    }

    /// Stored encrypted with the server's master key (SSE-S3): reads decrypt by themselves.
    pub fn is_sse_s3_at_rest(&self) -> bool {
        self.segments
            .iter()
            .any(|s| s.sse.as_ref().is_some_and(|p| p.server_key.is_some()))
    }

    /// Plaintext length of a segment.
    pub fn segment_plain_len(seg: &Segment) -> u64 {
        match &seg.sse {
            Some(_) => crate::sse::plaintext_len(seg.len).unwrap_or(0),
            None => seg.len,
        }
    }

    /// Byte range `[start, end)` of part `n` (1-based), if it exists. A single-PUT object has one part.
    pub fn part_range(&self, n: u32) -> Option<(u64, u64)> {
        let index = usize::try_from(n.checked_sub(1)?).ok()?;
        if self.parts_count.is_none() {
            return (index == 0).then_some((0, self.size));
        }
        let start: u64 = self
            .segments
            .get(..index)?
            .iter()
            .map(Self::segment_plain_len)
            .sum();
        let seg = self.segments.get(index)?;
        Some((start, start + Self::segment_plain_len(seg)))
    }
}

/// An in-progress multipart upload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadRecord {
    pub upload_id: String,
    pub bucket: String,
    pub key: String,
    pub initiated_ns: i64,
    #[serde(flatten)]
    pub attributes: ObjectAttributes,
    /// The checksum algorithm named at creation (`CRC32`, `SHA256`, ...), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
    /// SSE-C: recognises the customer key every part must be sent with (no data uses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_key_check: Option<crate::sse::SseParams>,
}

/// One uploaded part.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartRecord {
    pub part_number: u32,
    pub blob: String,
    pub size: u64,
    /// Hex MD5 of the part, without quotes.
    pub etag: String,
    pub last_modified_ns: i64,
    #[serde(default)]
    pub checksums: Checksums,
    /// SSE-C: the part is stored encrypted (`size` is its plaintext length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse: Option<crate::sse::SseParams>,
}
