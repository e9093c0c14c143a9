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
            acl: None,
            sealing: None,
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
    /// The version's ACL as set by its writer (`valley_access::Acl` as JSON, opaque here);
    /// `None`: the default, private to the bucket's owner. New in format 3.
    #[serde(default)]
    pub acl: Option<String>,
    /// How the stored bytes are sealed (server-side encryption); `None`: stored as written.
    /// `size`, `etag` and the checksums stay the plaintext's, as S3 reports them. New in
    /// format 4.
    #[serde(default)]
    pub sealing: Option<Sealing>,
}

/// A version's bytes as sealed at rest. The store and the wire read only the stored length and
/// digest (what a copy of the bytes is checked against); the rest is the encryption layer's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealing {
    /// The encryption record, opaque here (valley-s3's versioned JSON: mode, key ids, wrapped
    /// data key, data id).
    pub record: String,
    /// Bytes as stored (ciphertext and tags): what `data` holds.
    pub stored_size: u64,
    /// What the stored bytes hash to (see [`crate::digest`]): `crc64nvme:` and their
    /// CRC64-NVME for a single write; for a multipart version the MD5 of its parts' stored
    /// MD5s with `-N` (which is then also its ETag), hashed by `stored_part_sizes`; a single
    /// write sealed before the CRC: its MD5, hex. Named `stored_md5` on the wire, as format 4
    /// first named it.
    #[serde(rename = "stored_md5")]
    pub stored_digest: String,
    /// The stored size of each part of a multipart version (each sealed as its own segment);
    /// empty for a single PUT.
    #[serde(default)]
    pub stored_part_sizes: Vec<u64>,
    /// The part number each part was sealed under (its segment), in order; empty for a single
    /// PUT (segment 0).
    #[serde(default)]
    pub part_numbers: Vec<u32>,
}

/// [`ObjectVersion`] as format 3 stored it (before `sealing`), decoded and converted.
#[derive(Deserialize)]
struct ObjectVersionV3 {
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
    part_checksums: Vec<Checksums>,
    acl: Option<String>,
}

impl From<ObjectVersionV3> for ObjectVersion {
    fn from(v: ObjectVersionV3) -> Self {
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
            part_checksums: v.part_checksums,
            acl: v.acl,
            sealing: None,
        }
    }
}

/// [`ObjectVersion`] as format 2 stored it (before `acl`), decoded and converted.
#[derive(Deserialize)]
struct ObjectVersionV2 {
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
    part_checksums: Vec<Checksums>,
}

impl From<ObjectVersionV2> for ObjectVersion {
    fn from(v: ObjectVersionV2) -> Self {
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
            part_checksums: v.part_checksums,
            acl: None,
            sealing: None,
        }
    }
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
            acl: None,
            sealing: None,
        }
    }
}

impl ObjectVersion {
    /// The stored form: format byte 4, then the version in postcard.
    #[must_use]
    pub fn to_record(&self) -> Vec<u8> {
        crate::codec::encode_as(crate::codec::FORMAT_V4, self)
    }

    /// Bytes as stored: `size`, unless sealed.
    #[must_use]
    pub fn stored_size(&self) -> u64 {
        self.sealing.as_ref().map_or(self.size, |s| s.stored_size)
    }

    /// What the stored bytes hash to, as an ETag check computes it: the part sizes to hash by
    /// and the expected answer (the ETag; a sealed version's stored MD5, hashed whole).
    #[must_use]
    pub fn stored_digest(&self) -> (&[u64], &str) {
        match &self.sealing {
            Some(s) => (&s.stored_part_sizes, &s.stored_digest),
            None => (&self.part_sizes, &self.etag),
        }
    }

    /// Reads a stored version of either format.
    pub fn from_record(bytes: &[u8]) -> crate::error::StoreResult<Self> {
        const WHAT: &str = "object version";
        match bytes.first() {
            Some(&crate::codec::FORMAT_V1) => crate::codec::decode::<ObjectVersionV1>(WHAT, bytes).map(Self::from),
            Some(&crate::codec::FORMAT_V2) => {
                crate::codec::decode_as::<ObjectVersionV2>(WHAT, crate::codec::FORMAT_V2, bytes).map(Self::from)
            }
            Some(&crate::codec::FORMAT_V3) => {
                crate::codec::decode_as::<ObjectVersionV3>(WHAT, crate::codec::FORMAT_V3, bytes).map(Self::from)
            }
            _ => crate::codec::decode_as(WHAT, crate::codec::FORMAT_V4, bytes),
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
    /// The tenant that started the upload (it may list and abort it); `None` in format 1:
    /// the bucket's owner.
    #[serde(default)]
    pub initiator: Option<String>,
    /// The ACL the completed object gets (as [`ObjectVersion::acl`]). New in format 2.
    #[serde(default)]
    pub acl: Option<String>,
    /// How the upload's parts are sealed (the encryption layer's record, as
    /// [`Sealing::record`]); the completed object gets it. New in format 3.
    #[serde(default)]
    pub sealing: Option<String>,
}

/// [`UploadRecord`] as format 2 stored it (before `sealing`).
#[derive(Deserialize)]
struct UploadRecordV2 {
    upload_id: String,
    created_unix_ns: u64,
    headers: ObjectHeaders,
    tags: Vec<(String, String)>,
    checksum_algorithm: Option<String>,
    initiator: Option<String>,
    acl: Option<String>,
}

/// [`UploadRecord`] as format 1 stored it (before `initiator` and `acl`).
#[derive(Deserialize)]
struct UploadRecordV1 {
    upload_id: String,
    created_unix_ns: u64,
    headers: ObjectHeaders,
    tags: Vec<(String, String)>,
    checksum_algorithm: Option<String>,
}

/// See [`UploadRecord::checksum_algorithm`].
pub const FULL_OBJECT_SUFFIX: &str = "/FULL_OBJECT";

impl UploadRecord {
    /// The stored form: format byte 3, then the record in postcard.
    #[must_use]
    pub fn to_record(&self) -> Vec<u8> {
        crate::codec::encode_as(crate::codec::FORMAT_V3, self)
    }

    /// Reads a stored upload of either format.
    pub fn from_record(bytes: &[u8]) -> crate::error::StoreResult<Self> {
        const WHAT: &str = "upload";
        match bytes.first() {
            Some(&crate::codec::FORMAT_V1) => {
                let v1: UploadRecordV1 = crate::codec::decode(WHAT, bytes)?;
                Ok(Self {
                    upload_id: v1.upload_id,
                    created_unix_ns: v1.created_unix_ns,
                    headers: v1.headers,
                    tags: v1.tags,
                    checksum_algorithm: v1.checksum_algorithm,
                    initiator: None,
                    acl: None,
                    sealing: None,
                })
            }
            Some(&crate::codec::FORMAT_V2) => {
                let v2: UploadRecordV2 = crate::codec::decode_as(WHAT, crate::codec::FORMAT_V2, bytes)?;
                Ok(Self {
                    upload_id: v2.upload_id,
                    created_unix_ns: v2.created_unix_ns,
                    headers: v2.headers,
                    tags: v2.tags,
                    checksum_algorithm: v2.checksum_algorithm,
                    initiator: v2.initiator,
                    acl: v2.acl,
                    sealing: None,
                })
            }
            _ => crate::codec::decode_as(WHAT, crate::codec::FORMAT_V3, bytes),
        }
    }

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
            acl: None,
            sealing: None,
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

    /// Golden bytes of format 2 (format 1 plus the parts' checksums).
    const OBJECT_VERSION_V2_HEX: &str = "0201103030303030303030303030303030303101056c6f63616c00032039303031353039383363643234666230643639363366376432386531376637320003616263010a746578742f706c61696e0000000000000001016b01760000000000000101740131000101084141414141413d3d0000000000";

    fn with_part_checksums() -> ObjectVersion {
        let mut version = sample_version();
        version.part_checksums = vec![Checksums {
            crc32: Some("AAAAAA==".into()),
            ..Checksums::default()
        }];
        version
    }

    #[test]
    fn format_2_object_version_still_decodes() {
        let golden = hex::decode(OBJECT_VERSION_V2_HEX).expect("golden hex");
        assert_eq!(
            ObjectVersion::from_record(&golden).expect("decodes"),
            with_part_checksums()
        );
    }

    #[test]
    fn format_3_object_version_still_decodes_with_its_acl() {
        let mut version = with_part_checksums();
        let golden_v2 = hex::decode(OBJECT_VERSION_V2_HEX).expect("golden hex");
        // Format 3 is format 2 plus the ACL (here `None`), after everything else.
        let mut v3 = golden_v2.clone();
        v3[0] = 3;
        v3.push(0);
        assert_eq!(ObjectVersion::from_record(&v3).expect("decodes"), version);
        version.acl = Some(r#"{"owner":"acme","grants":[]}"#.into());
        let bytes = version.to_record();
        assert_eq!(ObjectVersion::from_record(&bytes).expect("decodes"), version);
    }

    #[test]
    fn format_4_adds_the_sealing_after_everything_else() {
        let mut version = with_part_checksums();
        let golden_v2 = hex::decode(OBJECT_VERSION_V2_HEX).expect("golden hex");
        let mut expected = golden_v2.clone();
        expected[0] = 4;
        expected.extend([0, 0]);
        assert_eq!(version.to_record(), expected);
        assert_eq!(
            (version.stored_size(), version.stored_digest().1),
            (3, version.etag.as_str())
        );
        version.sealing = Some(Sealing {
            record: "{}".into(),
            stored_size: 19,
            stored_digest: "00".repeat(16),
            stored_part_sizes: Vec::new(),
            part_numbers: Vec::new(),
        });
        let bytes = version.to_record();
        assert_eq!(ObjectVersion::from_record(&bytes).expect("decodes"), version);
        assert_eq!(version.stored_size(), 19);
        assert_eq!(version.stored_digest(), (&[][..], "00".repeat(16).as_str()));
    }

    #[test]
    fn format_1_uploads_still_decode_and_format_2_round_trips() {
        #[derive(Serialize)]
        struct V1<'a> {
            upload_id: &'a str,
            created_unix_ns: u64,
            headers: ObjectHeaders,
            tags: Vec<(String, String)>,
            checksum_algorithm: Option<String>,
        }
        let old = crate::codec::encode(&V1 {
            upload_id: "u1",
            created_unix_ns: 7,
            headers: ObjectHeaders::default(),
            tags: vec![("t".into(), "1".into())],
            checksum_algorithm: Some("CRC32".into()),
        });
        assert_eq!(old[0], 1);
        let decoded = UploadRecord::from_record(&old).expect("format 1 decodes");
        assert_eq!(
            (
                decoded.upload_id.as_str(),
                decoded.initiator.as_ref(),
                decoded.acl.as_ref()
            ),
            ("u1", None, None)
        );
        let mut now = decoded.clone();
        now.initiator = Some("acme".into());
        now.acl = Some("{}".into());
        // Format 2 (as `now` was written before `sealing`) still decodes.
        let mut v2 = crate::codec::encode_as(crate::codec::FORMAT_V2, &now);
        v2.truncate(v2.len() - 1); // drop `sealing: None`, the byte format 3 added
        assert_eq!(UploadRecord::from_record(&v2).expect("format 2 decodes"), now);
        now.sealing = Some("{}".into());
        let bytes = now.to_record();
        assert_eq!(bytes[0], 3);
        assert_eq!(UploadRecord::from_record(&bytes).expect("decodes"), now);
    }

    #[test]
    fn unknown_format_is_refused_not_misread() {
        let mut bytes = sample_version().to_record();
        bytes[0] = 5;
        assert!(ObjectVersion::from_record(&bytes).is_err());
    }
}
