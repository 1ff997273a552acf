//! The one table from store errors to S3 error codes and statuses.

use s3s::{S3Error, S3ErrorCode, s3_error};
use seedbucket_store::StoreError;

/// Maps a store error to the S3 error a client sees. Internal failures are logged here and
/// answered as `InternalError` without their details.
pub fn to_s3(e: StoreError) -> S3Error {
    match e {
        StoreError::NoSuchBucket => s3_error!(NoSuchBucket),
        StoreError::NoSuchKey => s3_error!(NoSuchKey),
        StoreError::NoSuchVersion => {
            s3_error!(NoSuchVersion, "The specified version does not exist.")
        }
        StoreError::InvalidArgument(m) => S3Error::with_message(S3ErrorCode::InvalidArgument, m),
        StoreError::BucketAlreadyExists => s3_error!(BucketAlreadyExists),
        StoreError::BucketAlreadyOwnedByYou => s3_error!(BucketAlreadyOwnedByYou),
        StoreError::BucketNotEmpty => s3_error!(BucketNotEmpty),
        StoreError::NoSuchUpload => s3_error!(NoSuchUpload),
        StoreError::InvalidPart(m) => S3Error::with_message(S3ErrorCode::InvalidPart, m),
        StoreError::InvalidPartOrder => s3_error!(InvalidPartOrder),
        StoreError::EntityTooSmall => s3_error!(EntityTooSmall),
        StoreError::EntityTooLarge => s3_error!(EntityTooLarge),
        StoreError::IncompleteBody => s3_error!(IncompleteBody),
        StoreError::PreconditionFailed => s3_error!(PreconditionFailed),
        StoreError::Conflict => s3_error!(
            OperationAborted,
            "A conflicting conditional operation is currently in progress against this resource. Please try again."
        ),
        StoreError::Body(m) => {
            tracing::debug!(error = %m, "request body failed");
            // Signature or chunk-format failures of streaming bodies surface here.
            if m.contains("signature") || m.contains("Signature") {
                S3Error::with_message(S3ErrorCode::SignatureDoesNotMatch, m)
            } else {
                S3Error::with_message(S3ErrorCode::IncompleteBody, m)
            }
        }
        StoreError::Unavailable(detail) => {
            tracing::warn!(error = %detail, "storage backend unavailable");
            s3_error!(
                ServiceUnavailable,
                "The storage backend is unavailable; please try again."
            )
        }
        StoreError::SlowDown => s3_error!(SlowDown, "Please reduce your request rate."),
        StoreError::NotSupported(m) => S3Error::with_message(S3ErrorCode::NotImplemented, m),
        StoreError::InvalidKey(m) => S3Error::with_message(S3ErrorCode::InvalidArgument, m),
        StoreError::MissingContentLength => s3_error!(MissingContentLength),
        e @ (StoreError::Io(_) | StoreError::Db(_) | StoreError::Corrupt(_)) => {
            tracing::error!(error = %e, "internal store error");
            s3_error!(InternalError)
        }
    }
}

/// An S3 error whose code the codec does not know, or knows with another status than S3 gives
/// (s3s answers `ServerSideEncryptionConfigurationNotFoundError` with 400; S3 with 404).
pub(crate) fn with_status(
    code: &str,
    message: impl Into<String>,
    status: http::StatusCode,
) -> S3Error {
    let code = S3ErrorCode::from_bytes(code.as_bytes())
        .unwrap_or_else(|| S3ErrorCode::Custom(code.to_owned().into()));
    let mut e = S3Error::with_message(code, message.into());
    e.set_status_code(status);
    e
}
