//! The records the catalog persists. Each is written through [`crate::codec`], which prefixes
//! a format byte; changing a struct here means a new format there.

use serde::{Deserialize, Serialize};

use crate::blob::BlobId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Versioning {
    #[default]
    Unversioned,
    Enabled,
    Suspended,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub created_unix_ns: u64,
    pub location: Option<String>,
    pub versioning: Versioning,
    pub tags: Vec<(String, String)>,
}

/// One stretch of an object's bytes held in a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub id: BlobId,
    pub size: u64,
}

/// Where an object's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectData {
    /// Small objects live in the record itself. Encoded as bytes rather than as a sequence of
    /// u8 (the same postcard bytes on disk, decoded in one copy instead of one call per byte).
    Inline(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The concatenation of these blobs (one for a single PUT, one per part for multipart).
    Blobs(Vec<BlobRef>),
    /// Small objects stored since the inline-data table: the bytes are the value of the same
    /// key in [`crate::meta::Table::InlineData`]. Kept out of the version record so that the
    /// versions tree holds metadata only and stays in the page cache: with a few kilobytes of
    /// data in each record, HEAD, listings and version lookups paged the bytes of every object
    /// through a cache they could not fit in. Only the catalog writes this variant; it hands
    /// versions out with it, and [`crate::Catalog::read`] fetches the bytes.
    InlineApart,
}

impl ObjectVersion {
    /// A delete marker (or an unversioned delete's tombstone) stamped `hlc` at `origin`.
    #[must_use]
    pub fn delete_marker(hlc: u64, origin: &str) -> Self {
        Self {
            version_id: None,
            hlc,
            origin: origin.to_owned(),
            delete_marker: true,
            size: 0,
            etag: String::new(),
            data: ObjectData::Inline(Vec::new()),
            headers: ObjectHeaders::default(),
            checksums: Checksums::default(),
            tags: Vec::new(),
            part_sizes: Vec::new(),
            part_checksums: Vec::new(),
        }
    }

    /// The version's place in last-writer-wins order.
    #[must_use]
    pub fn stamp(&self) -> crate::keys::Stamp {
        crate::keys::Stamp {
            hlc: self.hlc,
            origin_tag: crate::keys::origin_tag(&self.origin),
        }
    }
}

impl ObjectData {
    #[must_use]
    pub fn blobs(&self) -> &[BlobRef] {
        match self {
            ObjectData::Inline(_) | ObjectData::InlineApart => &[],
            ObjectData::Blobs(blobs) => blobs,
        }
    }
}

/// The standard headers and user metadata stored with an object and returned on GET/HEAD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    /// The `Expires` header as the client sent it (an HTTP date).
    pub expires: Option<String>,
    pub website_redirect_location: Option<String>,
    pub storage_class: Option<String>,
    /// `x-amz-meta-*` pairs, names lowercased, in name order.
    pub user_metadata: Vec<(String, String)>,
}

/// Base64 checksums of an object's bytes (the flexible checksums of S3), and for multipart
/// objects whether they are composite (checksum of part checksums).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksums {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub crc64nvme: Option<String>,
    pub composite: bool,
}

/// One version of an object, or a delete marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectVersion {
    /// `None` is S3's "null" version (unversioned or versioning-suspended writes).
    pub version_id: Option<String>,
    /// Hybrid-logical-clock timestamp: orders the versions of a key; also its Last-Modified.
    pub hlc: u64,
    /// The hub where the version was written; with `hlc`, its [`crate::keys::Stamp`].
    pub origin: String,
    pub delete_marker: bool,
    pub size: u64,
    /// The ETag without quotes: hex MD5, or `<hex>-<parts>` for multipart.
    pub etag: String,
    pub data: ObjectData,
    pub headers: ObjectHeaders,
    pub checksums: Checksums,
    pub tags: Vec<(String, String)>,
    /// Sizes of the parts of a multipart object, for `partNumber` reads; empty otherwise.
    pub part_sizes: Vec<u64>,
    /// The checksums of the parts of a multipart object uploaded with a checksum algorithm, in
    /// part order, for `partNumber` reads and GetObjectAttributes; empty otherwise. New in
    /// format 2 (`serde(default)`: hubs that do not send it on the wire send none).
    #[serde(default)]
    pub part_checksums: Vec<Checksums>,
}

/// [`ObjectVersion`] as format 1 stored it (before `part_checksums`), decoded and converted.
#[derive(Deserialize)]
struct ObjectVersionV1 {
    version_id: Option<String>,
    hlc: u64,
    origin: String,
    delete_marker: bool,
    size: u64,
    etag: String,
    data: ObjectData,
    headers: ObjectHeaders,
    checksums: Checksums,
    tags: Vec<(String, String)>,
    part_sizes: Vec<u64>,
}

impl From<ObjectVersionV1> for ObjectVersion {
    fn from(v: ObjectVersionV1) -> Self {
        Self {
            version_id: v.version_id,
            hlc: v.hlc,
            origin: v.origin,
            delete_marker: v.delete_marker,
            size: v.size,
            etag: v.etag,
            data: v.data,
            headers: v.headers,
            checksums: v.checksums,
            tags: v.tags,
            part_sizes: v.part_sizes,
            part_checksums: Vec::new(),
        }
    }
}

impl ObjectVersion {
    /// The stored form: format byte 2, then the version in postcard.
    #[must_use]
    pub fn to_record(&self) -> Vec<u8> {
        crate::codec::encode_as(crate::codec::FORMAT_V2, self)
    }

    /// Reads a stored version of either format.
    pub fn from_record(bytes: &[u8]) -> crate::error::StoreResult<Self> {
        const WHAT: &str = "object version";
        match bytes.first() {
            Some(&crate::codec::FORMAT_V1) => crate::codec::decode::<ObjectVersionV1>(WHAT, bytes).map(Self::from),
            _ => crate::codec::decode_as(WHAT, crate::codec::FORMAT_V2, bytes),
        }
    }
}

/// An open multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub upload_id: String,
    pub created_unix_ns: u64,
    pub headers: ObjectHeaders,
    pub tags: Vec<(String, String)>,
    /// The upload's checksum algorithm (`CRC32`, `SHA256`, …), followed by
    /// [`FULL_OBJECT_SUFFIX`] when the object's checksum covers its whole bytes rather than its
    /// parts' checksums. A suffix rather than a field, so that records of format 1 keep their
    /// meaning (composite, the only kind before).
    pub checksum_algorithm: Option<String>,
}

/// See [`UploadRecord::checksum_algorithm`].
pub const FULL_OBJECT_SUFFIX: &str = "/FULL_OBJECT";

impl UploadRecord {
    /// The checksum algorithm's name, without the full-object mark.
    #[must_use]
    pub fn checksum_algorithm_name(&self) -> Option<&str> {
        let stored = self.checksum_algorithm.as_deref()?;
        Some(stored.strip_suffix(FULL_OBJECT_SUFFIX).unwrap_or(stored))
    }

    /// Whether the completed object gets a full-object checksum.
    #[must_use]
    pub fn full_object_checksum(&self) -> bool {
        self.checksum_algorithm
            .as_deref()
            .is_some_and(|a| a.ends_with(FULL_OBJECT_SUFFIX))
    }
}

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub etag: String,
    pub size: u64,
    pub blob: BlobRef,
    pub last_modified_unix_ns: u64,
    pub checksums: Checksums,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_version() -> ObjectVersion {
        ObjectVersion {
            version_id: Some("0000000000000001".into()),
            hlc: 1,
            origin: "local".into(),
            delete_marker: false,
            size: 3,
            etag: "900150983cd24fb0d6963f7d28e17f72".into(),
            data: ObjectData::Inline(b"abc".to_vec()),
            headers: ObjectHeaders {
                content_type: Some("text/plain".into()),
                user_metadata: vec![("k".into(), "v".into())],
                ..ObjectHeaders::default()
            },
            checksums: Checksums::default(),
            tags: vec![("t".into(), "1".into())],
            part_sizes: vec![],
            part_checksums: vec![],
        }
    }

    /// Golden bytes of format 1: if this test fails, a persisted struct changed shape and
    /// needs a new format byte plus a decoder for format 1.
    const OBJECT_VERSION_V1_HEX: &str = "0101103030303030303030303030303030303101056c6f63616c00032039303031353039383363643234666230643639363366376432386531376637320003616263010a746578742f706c61696e0000000000000001016b0176000000000000010174013100";

    #[test]
    fn format_1_object_version_still_decodes() {
        let golden = hex::decode(OBJECT_VERSION_V1_HEX).expect("golden hex");
        let decoded = ObjectVersion::from_record(&golden).expect("decodes");
        assert_eq!(decoded, sample_version());
    }

    /// Golden bytes of format 2 (format 1 plus the parts' checksums), written today.
    const OBJECT_VERSION_V2_HEX: &str = "0201103030303030303030303030303030303101056c6f63616c00032039303031353039383363643234666230643639363366376432386531376637320003616263010a746578742f706c61696e0000000000000001016b01760000000000000101740131000101084141414141413d3d0000000000";

    #[test]
    fn format_2_object_version_round_trips() {
        let mut version = sample_version();
        version.part_checksums = vec![Checksums {
            crc32: Some("AAAAAA==".into()),
            ..Checksums::default()
        }];
        let golden = hex::decode(OBJECT_VERSION_V2_HEX).expect("golden hex");
        assert_eq!(version.to_record(), golden);
        assert_eq!(ObjectVersion::from_record(&golden).expect("decodes"), version);
    }

    #[test]
    fn unknown_format_is_refused_not_misread() {
        let mut bytes = sample_version().to_record();
        bytes[0] = 3;
        assert!(ObjectVersion::from_record(&bytes).is_err());
    }
}
