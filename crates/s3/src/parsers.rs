//! Entry points to this crate's parsers of remote input, for the hostile-input tests
//! (`tests/hostile_input.rs`); not an API. Each returns what the request handling would use,
//! with S3 errors reduced to their code.

use std::collections::BTreeMap;

/// The webseed's `Range` header for a body of `size` bytes (`[start, end)`).
pub fn webseed_range(value: &str, size: u64) -> Result<Option<(u64, u64)>, String> {
    crate::webseed::parse_range(Some(value), size).map_err(|()| "InvalidRange".to_owned())
}

/// UploadPartCopy's `x-amz-copy-source-range` for a source of `size` bytes.
pub fn copy_source_range(value: &str, size: u64) -> Result<(u64, u64), String> {
    crate::handlers::copy::parse_copy_range(value, size).map_err(|e| e.code().as_str().to_owned())
}

/// PutObject's `x-amz-tagging` header.
pub fn tagging_header(value: &str) -> Result<BTreeMap<String, String>, String> {
    crate::handlers::parse_tagging_header(Some(value)).map_err(|e| e.code().as_str().to_owned())
}

/// A bucket policy document (PutBucketPolicy's body) for `bucket`.
pub fn bucket_policy(text: &str, bucket: &str) -> Result<(), String> {
    crate::access::policy::Policy::parse(text, bucket)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The SSE-C headers (algorithm, base64 key, base64 key MD5).
pub fn sse_customer_key(algorithm: &str, key: &str, key_md5: &str) -> Result<bool, String> {
    crate::handlers::sse::customer_key(Some(algorithm), Some(key), Some(key_md5))
        .map(|k| k.is_some())
        .map_err(|e| e.code().as_str().to_owned())
}

/// The private tracker token carried in an announce query.
pub fn tracker_token(query: &str) -> Option<String> {
    crate::tracker_http::token_from_query(query).map(std::borrow::Cow::into_owned)
}

/// A policy's `*`/`?` pattern against a resource name (the name comes from the request).
pub fn policy_wildcard(pattern: &str, text: &str) -> bool {
    crate::access::policy::wildcard_match(pattern, text)
}
