//! The store's typed errors. The S3 layer maps each variant to one S3 error code in one table.

use std::io;

/// Everything a store call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the specified bucket does not exist")]
    NoSuchBucket,
    #[error("the specified key does not exist")]
    NoSuchKey,
    #[error("the specified version does not exist")]
    NoSuchVersion,
    /// A request the store refuses as it stands (the message says why).
    #[error("{0}")]
    InvalidArgument(String),
    #[error("the requested bucket name is not available")]
    BucketAlreadyExists,
    #[error("the bucket is already owned by you")]
    BucketAlreadyOwnedByYou,
    #[error("the bucket you tried to delete is not empty")]
    BucketNotEmpty,
    #[error("the specified multipart upload does not exist")]
    NoSuchUpload,
    #[error("{0}")]
    InvalidPart(String),
    #[error("the list of parts was not in ascending order")]
    InvalidPartOrder,
    #[error("your proposed upload is smaller than the minimum allowed size")]
    EntityTooSmall,
    #[error("your proposed upload exceeds the maximum allowed size")]
    EntityTooLarge,
    #[error("you did not provide the number of bytes specified by the Content-Length")]
    IncompleteBody,
    #[error("at least one of the preconditions you specified did not hold")]
    PreconditionFailed,
    #[error("the object changed while the request was being made; try again")]
    Conflict,
    #[error("the request body could not be read: {0}")]
    Body(String),
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("metadata database error: {0}")]
    Db(String),
    #[error("corrupt metadata record: {0}")]
    Corrupt(String),
    /// Gateway mode: the backend could not be reached or failed. The text is for the log only:
    /// clients get a generic message, never the backend's address or answer.
    #[error("the storage backend is unavailable: {0}")]
    Unavailable(String),
    /// Gateway mode: the backend asks us to slow down.
    #[error("the storage backend asks to reduce the request rate")]
    SlowDown,
    /// The call is not available with this backend.
    #[error("{0}")]
    NotSupported(String),
    /// An access key that cannot be created or deleted as asked (the message says why).
    #[error("{0}")]
    InvalidKey(String),
    /// A body of unknown length where the backend needs it up front.
    #[error("you must provide the Content-Length HTTP header")]
    MissingContentLength,
}

/// Result with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

macro_rules! db_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.to_string())
            }
        }
    )*};
}

db_error_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    tokio::task::JoinError
);

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}
