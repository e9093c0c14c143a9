//! Batches: many small versions in one peer call (`POST /_valley/peer/v1/batch`).
//!
//! Over a long link one request per small object is bound by the round trip, not the link: at
//! 200 ms, 128 requests in flight carry some 640 objects a second whatever the bandwidth. A
//! batch carries up to [`BATCH_ITEMS`] versions of at most [`BATCH_ITEM_BYTES_MAX`] bytes each,
//! framed one after the other, each checked against its own ETag at the receiver, and applied
//! there in one transaction (one fsync for the lot).
//!
//! The body (format 1), after the magic line `valley-batch/1\n`, for each version:
//!
//! | bytes | what |
//! |---|---|
//! | 4 | length M of the metadata, big-endian |
//! | M | JSON `{"bucket":…,"key":…,"version":…}`: the version's record without its data |
//! | 4 | length D of the data, big-endian (the version's size) |
//! | D | the data |
//!
//! The whole body is covered by the call's signed SHA-256 (see [`crate::auth`]); the answer is
//! a [`BatchAnswer`], one outcome per version in the order sent.

pub mod receive;
pub mod send;

use serde::{Deserialize, Serialize};
use valley_store::record::{ObjectData, ObjectVersion};

/// The first line of every batch body; a new framing gets a new number.
pub const MAGIC: &[u8] = b"valley-batch/1\n";
/// Versions up to this size travel in batches (they are stored inline, in the record itself);
/// larger ones go one per call, streamed.
pub const BATCH_ITEM_BYTES_MAX: u64 = valley_types::limits::INLINE_OBJECT_BYTES_MAX;
/// A sender closes a batch at this much data…
pub const BATCH_PAYLOAD_BYTES: usize = 1024 * 1024;
/// …or at this many versions.
pub const BATCH_ITEMS: usize = 1024;
/// A receiver refuses a body larger than this, or with more versions than this.
pub const BATCH_BODY_BYTES_MAX: usize = 4 * 1024 * 1024;
pub const BATCH_ITEMS_MAX: usize = 4096;
/// Longest metadata of one version (key, headers, tags: S3 bounds them far below this).
const ITEM_META_BYTES_MAX: usize = 64 * 1024;

/// One version of a batch, its data inline.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    pub bucket: String,
    pub key: String,
    pub version: ObjectVersion,
}

#[derive(Serialize, Deserialize)]
struct ItemMeta {
    bucket: String,
    key: String,
    version: ObjectVersion,
}

/// Why a batch body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error(
        "not a batch of format 1 (the body must begin with {:?})",
        String::from_utf8_lossy(MAGIC)
    )]
    Magic,
    #[error("the body ends inside version {0}")]
    Truncated(usize),
    #[error("version {index}: metadata of {len} bytes is over the {max} byte limit")]
    MetaTooLarge { index: usize, len: usize, max: usize },
    #[error("version {index}: malformed metadata: {why}")]
    Meta { index: usize, why: String },
    #[error("version {index}: {len} bytes of data, but batches carry versions of at most {max} bytes")]
    DataTooLarge { index: usize, len: u64, max: u64 },
    #[error("version {index}: {len} bytes of data for a version of {size} bytes")]
    SizeMismatch { index: usize, len: u64, size: u64 },
    #[error("more than {0} versions in one batch")]
    TooMany(usize),
}

/// The body carrying `items` (each version's data must be inline; other data is sent as none
/// and refused by the receiver's size check).
#[must_use]
pub fn encode(items: &[BatchItem]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for item in items {
        let data: &[u8] = match &item.version.data {
            ObjectData::Inline(bytes) => bytes,
            ObjectData::Blobs(_) | ObjectData::InlineApart => &[],
        };
        let mut version = item.version.clone();
        version.data = ObjectData::Inline(Vec::new());
        let meta = serde_json::to_vec(&ItemMeta {
            bucket: item.bucket.clone(),
            key: item.key.clone(),
            version,
        })
        .unwrap_or_default();
        out.extend_from_slice(&u32::try_from(meta.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(data);
    }
    out
}

/// Reads a batch body: every version whole and within the limits, or an error naming the first
/// that is not (nothing of a malformed batch is applied).
pub fn decode(body: &[u8]) -> Result<Vec<BatchItem>, BatchError> {
    let mut rest = body.strip_prefix(MAGIC).ok_or(BatchError::Magic)?;
    let mut items = Vec::new();
    while !rest.is_empty() {
        let index = items.len();
        if index >= BATCH_ITEMS_MAX {
            return Err(BatchError::TooMany(BATCH_ITEMS_MAX));
        }
        let meta_len = take_len(&mut rest, index)?;
        if meta_len > ITEM_META_BYTES_MAX {
            return Err(BatchError::MetaTooLarge {
                index,
                len: meta_len,
                max: ITEM_META_BYTES_MAX,
            });
        }
        let meta = take(&mut rest, meta_len, index)?;
        let meta: ItemMeta = serde_json::from_slice(meta).map_err(|e| BatchError::Meta {
            index,
            why: e.to_string(),
        })?;
        let data_len = take_len(&mut rest, index)?;
        let len = data_len as u64;
        if len > BATCH_ITEM_BYTES_MAX {
            return Err(BatchError::DataTooLarge {
                index,
                len,
                max: BATCH_ITEM_BYTES_MAX,
            });
        }
        if len != meta.version.stored_size() {
            return Err(BatchError::SizeMismatch {
                index,
                len,
                size: meta.version.stored_size(),
            });
        }
        let data = take(&mut rest, data_len, index)?;
        let mut version = meta.version;
        version.data = ObjectData::Inline(data.to_vec());
        items.push(BatchItem {
            bucket: meta.bucket,
            key: meta.key,
            version,
        });
    }
    Ok(items)
}

fn take_len(rest: &mut &[u8], index: usize) -> Result<usize, BatchError> {
    let raw = take(rest, 4, index)?;
    let len = u32::from_be_bytes(raw.try_into().map_err(|_| BatchError::Truncated(index))?);
    usize::try_from(len).map_err(|_| BatchError::Truncated(index))
}

fn take<'a>(rest: &mut &'a [u8], len: usize, index: usize) -> Result<&'a [u8], BatchError> {
    if rest.len() < len {
        return Err(BatchError::Truncated(index));
    }
    let (head, tail) = rest.split_at(len);
    *rest = tail;
    Ok(head)
}

/// What became of one version of a batch at the receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum ItemOutcome {
    /// Stored: it is a version there now.
    Applied,
    /// Already there.
    Duplicate,
    /// Older than what is there: dropped.
    Superseded,
    /// The receiver's policy engine refused it: retrying will not help.
    Refused { reason: String },
    /// Not taken this time (the bucket's policy has not arrived, the bytes did not match their
    /// ETag): send it again later.
    Retry { reason: String },
}

/// The answer to a batch: one outcome per version, in the order sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchAnswer {
    pub outcomes: Vec<ItemOutcome>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use valley_store::record::{Checksums, ObjectHeaders};

    fn item(key: &str, data: &[u8]) -> BatchItem {
        let etag = hex::encode(<md5::Md5 as md5::Digest>::digest(data));
        BatchItem {
            bucket: "b".into(),
            key: key.into(),
            version: ObjectVersion {
                version_id: None,
                hlc: 7,
                origin: "zhangjiakou".into(),
                delete_marker: false,
                size: data.len() as u64,
                etag,
                data: ObjectData::Inline(data.to_vec()),
                headers: ObjectHeaders::default(),
                checksums: Checksums::default(),
                tags: vec![("t".into(), "v".into())],
                part_sizes: Vec::new(),
                part_checksums: Vec::new(),
                acl: None,
                sealing: None,
            },
        }
    }

    #[test]
    fn a_batch_reads_back_as_sent() {
        let items = vec![item("a", b"hello"), item("b/c d", b""), item("e", &[9u8; 16 * 1024])];
        assert_eq!(decode(&encode(&items)).unwrap(), items);
        assert_eq!(decode(MAGIC).unwrap(), Vec::new());
    }

    #[test]
    fn malformed_bodies_are_refused_whole() {
        let body = encode(&[item("a", b"hello"), item("b", b"world")]);
        assert_eq!(decode(&body[1..]), Err(BatchError::Magic));
        // Every cut is caught but the one between the two versions.
        let boundary = encode(&[item("a", b"hello")]).len();
        for cut in MAGIC.len() + 1..body.len() {
            match decode(&body[..cut]) {
                Ok(items) => assert!(cut == boundary && items.len() == 1, "cut at {cut} read"),
                Err(e) => assert_ne!(cut, boundary, "{e}"),
            }
        }
        // A length field claiming more than the body holds.
        let mut long = MAGIC.to_vec();
        long.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode(&long), Err(BatchError::MetaTooLarge { .. })));
        // Data that disagrees with the version's size.
        let mut wrong = encode(&[item("a", b"hello")]);
        let at = wrong.len() - 5 - 4;
        wrong[at..at + 4].copy_from_slice(&4u32.to_be_bytes());
        wrong.pop();
        assert!(matches!(decode(&wrong), Err(BatchError::SizeMismatch { .. })));
        // Data over the batch limit.
        let big = item("big", &vec![1u8; BATCH_ITEM_BYTES_MAX as usize + 1]);
        assert!(matches!(decode(&encode(&[big])), Err(BatchError::DataTooLarge { .. })));
    }

    #[test]
    fn too_many_versions_are_refused() {
        let one = encode(&[item("a", b"")]);
        let mut body = MAGIC.to_vec();
        for _ in 0..=BATCH_ITEMS_MAX {
            body.extend_from_slice(&one[MAGIC.len()..]);
        }
        assert_eq!(decode(&body), Err(BatchError::TooMany(BATCH_ITEMS_MAX)));
    }

    #[test]
    fn outcomes_have_a_stable_wire_form() {
        let answer = BatchAnswer {
            outcomes: vec![ItemOutcome::Applied, ItemOutcome::Refused { reason: "r".into() }],
        };
        let text = serde_json::to_string(&answer).unwrap();
        assert_eq!(
            text,
            r#"{"outcomes":[{"outcome":"applied"},{"outcome":"refused","reason":"r"}]}"#
        );
    }
}
