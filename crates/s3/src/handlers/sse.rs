//! SSE-C request headers and S3's answers about them: the one place key errors become S3 errors.

use s3s::{S3Error, S3Result, s3_error};
use seedbucket_store::ObjectRecord;
use seedbucket_store::sse::{CustomerKey, KeyError, SseError};

/// The customer key of a request, if it sent the three SSE-C headers (malformed: 400).
pub(crate) fn customer_key(
    algorithm: Option<&str>,
    key: Option<&str>,
    key_md5: Option<&str>,
) -> S3Result<Option<CustomerKey>> {
    CustomerKey::from_headers(algorithm, key, key_md5).map_err(key_error)
}

fn key_error(e: KeyError) -> S3Error {
    crate::error::with_status(e.s3_code(), e.to_string(), http::StatusCode::BAD_REQUEST)
}

/// A read of `rec` with `key`: an SSE-C object needs its key (400 without, 403 with a wrong
/// one); a plain object takes none.
pub(crate) fn check_read_key(rec: &ObjectRecord, key: Option<&CustomerKey>) -> S3Result<()> {
    match (rec.is_sse_c(), key) {
        (false, None) => Ok(()),
        (false, Some(_)) => Err(s3_error!(
            InvalidRequest,
            "The encryption parameters are not applicable to this object."
        )),
        (true, None) => Err(s3_error!(
            InvalidRequest,
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object."
        )),
        (true, Some(k)) => seedbucket_store::verify_key(rec, k).map_err(sse_error),
    }
}

/// A decryption failure as S3 reports it.
pub(crate) fn sse_error(e: SseError) -> S3Error {
    match e {
        SseError::KeyMismatch => s3_error!(
            AccessDenied,
            "The calculated MD5 hash of the key did not match the hash that was provided."
        ),
        other => {
            tracing::error!(error = %other, "SSE-C data could not be decrypted");
            s3_error!(InternalError)
        }
    }
}

/// The `(algorithm, key MD5)` response headers that confirm the key used.
pub(crate) fn echo(key: Option<&CustomerKey>) -> (Option<String>, Option<String>) {
    match key {
        Some(k) => (Some(k.algorithm().to_owned()), Some(k.key_md5_base64())),
        None => (None, None),
    }
}
