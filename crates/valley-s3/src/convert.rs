//! Conversions between the store's records and s3s's DTOs, and store errors to S3 errors.

use s3s::dto::{ETag, Timestamp};
use s3s::{S3Error, s3_error};
use time::OffsetDateTime;
use valley_store::StoreError;
use valley_store::record::{Checksums, ObjectHeaders};

/// Maps a store error to the S3 error a client expects; unexpected failures are logged and
/// answered as InternalError without leaking detail.
pub fn s3_err(e: StoreError) -> S3Error {
    match e {
        StoreError::NoSuchBucket(b) => s3_error!(NoSuchBucket, "The specified bucket {b:?} does not exist"),
        StoreError::BucketExists(b) => {
            s3_error!(
                BucketAlreadyOwnedByYou,
                "Bucket {b:?} already exists and is owned by you"
            )
        }
        StoreError::BucketNotEmpty(b) => s3_error!(BucketNotEmpty, "The bucket {b:?} is not empty"),
        StoreError::NoSuchKey(_) => s3_error!(NoSuchKey, "The specified key does not exist."),
        StoreError::DeleteMarker(_) => {
            let mut err = s3_error!(NoSuchKey, "The specified key does not exist.");
            let mut headers = http::HeaderMap::new();
            headers.insert("x-amz-delete-marker", http::HeaderValue::from_static("true"));
            err.set_headers(headers);
            err
        }
        StoreError::NoSuchVersion(_) => s3_error!(NoSuchVersion, "The specified version does not exist."),
        StoreError::NoSuchUpload(_) => s3_error!(NoSuchUpload, "The specified multipart upload does not exist."),
        StoreError::PreconditionFailed(why) => s3_error!(PreconditionFailed, "{why}"),
        StoreError::InvalidPart(why) => s3_error!(InvalidPart, "{why}"),
        StoreError::InvalidPartOrder => {
            s3_error!(InvalidPartOrder, "The list of parts was not in ascending order.")
        }
        e @ StoreError::EntityTooSmall { .. } => s3_error!(EntityTooSmall, "{e}"),
        StoreError::Refused(why) => s3_error!(AccessDenied, "{why}"),
        StoreError::SlowDown(why) => {
            let mut err = s3_error!(SlowDown, "{why}");
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            err.set_headers(headers);
            err
        }
        other => internal(other),
    }
}

/// An unexpected failure: logged in full, answered as InternalError.
pub fn internal(e: impl std::fmt::Display) -> S3Error {
    tracing::error!(error = %e, "internal error");
    s3_error!(InternalError, "We encountered an internal error. Please try again.")
}

pub fn timestamp_of_unix_ns(ns: u64) -> Timestamp {
    let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    // S3 reports times to the millisecond.
    let ms = dt.millisecond();
    Timestamp::from(dt.replace_nanosecond(u32::from(ms) * 1_000_000).unwrap_or(dt))
}

pub fn unix_secs_of(ts: &Timestamp) -> i64 {
    OffsetDateTime::from(ts.clone()).unix_timestamp()
}

pub fn etag(value: &str) -> ETag {
    ETag::Strong(value.to_owned())
}

pub fn format_http_date(ts: &Timestamp) -> Option<String> {
    let mut buf = Vec::new();
    ts.format(s3s::dto::TimestampFormat::HttpDate, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

pub fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(s3s::dto::TimestampFormat::HttpDate, s).ok()
}

/// Sorted `(name, value)` pairs from s3s's metadata map.
pub fn metadata_pairs(map: Option<s3s::dto::Metadata>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = map
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    pairs.sort();
    pairs
}

pub fn metadata_map(pairs: &[(String, String)]) -> Option<s3s::dto::Metadata> {
    (!pairs.is_empty()).then(|| pairs.iter().cloned().collect())
}

/// Checks S3's 2 KiB limit on user metadata (names plus values).
pub fn check_metadata(headers: &ObjectHeaders) -> Result<(), S3Error> {
    let total: usize = headers.user_metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > valley_types::limits::USER_METADATA_BYTES_MAX {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers are {total} bytes; the limit is {} bytes.",
            valley_types::limits::USER_METADATA_BYTES_MAX
        ));
    }
    // What the law's volume thresholds count must be a count: a value that is not would
    // otherwise be read as undeclared.
    if let Some((_, value)) = headers
        .user_metadata
        .iter()
        .find(|(name, _)| name == valley_types::INDIVIDUALS_METADATA)
        && value.trim().parse::<u64>().is_err()
    {
        return Err(s3_error!(
            InvalidArgument,
            "x-amz-meta-{} must be the number of individuals whose data the object carries (a whole number), not {value:?}.",
            valley_types::INDIVIDUALS_METADATA
        ));
    }
    Ok(())
}

/// Checks an object key: 1 to 1024 bytes, no NUL (which XML cannot carry back in a listing).
pub fn check_key(key: &str) -> Result<(), S3Error> {
    if key.is_empty() {
        return Err(s3_error!(InvalidArgument, "Object keys must not be empty."));
    }
    if key.len() > valley_types::limits::KEY_LEN_BYTES_MAX {
        return Err(s3_error!(
            KeyTooLongError,
            "Your key is {} bytes; the limit is {} bytes.",
            key.len(),
            valley_types::limits::KEY_LEN_BYTES_MAX
        ));
    }
    if key.contains('\0') {
        return Err(s3_error!(
            InvalidArgument,
            "Object keys must not contain NUL characters."
        ));
    }
    Ok(())
}

/// The checksum fields of an output DTO, from what was stored.
pub struct ChecksumFields {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub crc64nvme: Option<String>,
    pub checksum_type: Option<s3s::dto::ChecksumType>,
}

pub fn checksum_fields(c: &Checksums, wanted: bool) -> ChecksumFields {
    if !wanted {
        return ChecksumFields {
            crc32: None,
            crc32c: None,
            sha1: None,
            sha256: None,
            crc64nvme: None,
            checksum_type: None,
        };
    }
    let any =
        c.crc32.is_some() || c.crc32c.is_some() || c.sha1.is_some() || c.sha256.is_some() || c.crc64nvme.is_some();
    ChecksumFields {
        crc32: c.crc32.clone(),
        crc32c: c.crc32c.clone(),
        sha1: c.sha1.clone(),
        sha256: c.sha256.clone(),
        crc64nvme: c.crc64nvme.clone(),
        checksum_type: any.then(|| {
            s3s::dto::ChecksumType::from_static(if c.composite {
                s3s::dto::ChecksumType::COMPOSITE
            } else {
                s3s::dto::ChecksumType::FULL_OBJECT
            })
        }),
    }
}
