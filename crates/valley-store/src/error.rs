//! The store's one error type: what went wrong, to what. The S3 layer maps each variant to
//! its S3 error code.

use std::io;

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("bucket {0:?} does not exist")]
    NoSuchBucket(String),
    #[error("bucket {0:?} already exists")]
    BucketExists(String),
    #[error("bucket {0:?} is not empty")]
    BucketNotEmpty(String),
    #[error("key {0:?} does not exist")]
    NoSuchKey(String),
    #[error("version {0:?} does not exist")]
    NoSuchVersion(String),
    #[error("multipart upload {0:?} does not exist")]
    NoSuchUpload(String),
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    #[error("invalid part: {0}")]
    InvalidPart(String),
    #[error("parts are not in ascending order")]
    InvalidPartOrder,
    #[error("part {part_number} is {size} bytes, under the {min} byte minimum for all but the last part")]
    EntityTooSmall { part_number: i32, size: u64, min: u64 },
    #[error("the latest version of {0:?} is a delete marker")]
    DeleteMarker(String),
    /// The network layer refused the change (a residency rule); the reason names the rule.
    #[error("{0}")]
    Refused(String),
    /// The write would let replication fall further behind than the bucket allows: the client
    /// is to slow down and retry (S3 SlowDown).
    #[error("{0}")]
    SlowDown(String),
    #[error("corrupt record in {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("metadata store: {0}")]
    Meta(String),
    #[error("blob {id}: {source}")]
    Blob { id: String, source: io::Error },
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Meta(e.to_string())
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::from(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
