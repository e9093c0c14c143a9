//! The checksum of a multipart object, from its parts' checksums, as S3 defines it.
//!
//! An upload names an algorithm and a type when it is created:
//! - **COMPOSITE** (CRC32, CRC32C, SHA1, SHA256): the algorithm over the concatenated binary
//!   checksums of the parts, then `-N` (N parts). The default for all but CRC64NVME.
//! - **FULL_OBJECT** (CRC32, CRC32C, CRC64NVME): the CRC of the object's whole bytes, computed
//!   without reading them by combining the parts' CRCs with their lengths (CRC linearity). The
//!   only type for CRC64NVME, which is what current AWS SDKs default to.

use s3s::dto::{ChecksumAlgorithm, ChecksumType};
use s3s::{S3Result, s3_error};
use valley_store::record::{Checksums, FULL_OBJECT_SUFFIX, PartRecord, UploadRecord};

/// What an upload stores as its checksum choice (see `UploadRecord::checksum_algorithm`), after
/// checking the pair against what S3 allows.
pub fn stored_choice(
    algorithm: Option<&ChecksumAlgorithm>,
    checksum_type: Option<&ChecksumType>,
) -> S3Result<Option<String>> {
    let Some(algorithm) = algorithm else {
        if checksum_type.is_some() {
            return Err(s3_error!(
                InvalidRequest,
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header."
            ));
        }
        return Ok(None);
    };
    let name = algorithm.as_str();
    let full_object = match checksum_type.map(ChecksumType::as_str) {
        None => name == ChecksumAlgorithm::CRC64NVME,
        Some(ChecksumType::FULL_OBJECT) => true,
        Some(ChecksumType::COMPOSITE) => false,
        Some(other) => return Err(s3_error!(InvalidRequest, "Unknown checksum type {other}.")),
    };
    let allowed = match name {
        ChecksumAlgorithm::CRC32 | ChecksumAlgorithm::CRC32C => true,
        ChecksumAlgorithm::CRC64NVME => full_object,
        ChecksumAlgorithm::SHA1 | ChecksumAlgorithm::SHA256 => !full_object,
        _ => return Err(s3_error!(InvalidRequest, "Unknown checksum algorithm {name}.")),
    };
    if !allowed {
        let kind = if full_object { "FULL_OBJECT" } else { "COMPOSITE" };
        return Err(s3_error!(
            InvalidRequest,
            "The {kind} checksum type cannot be used with the {name} checksum algorithm."
        ));
    }
    Ok(Some(if full_object {
        format!("{name}{FULL_OBJECT_SUFFIX}")
    } else {
        name.to_owned()
    }))
}

/// The checksum algorithm an upload named, if any.
pub fn algorithm(upload: &UploadRecord) -> Option<ChecksumAlgorithm> {
    upload
        .checksum_algorithm_name()
        .map(|name| ChecksumAlgorithm::from(name.to_owned()))
}

/// The checksum type an upload reports, if it has a checksum.
pub fn checksum_type(upload: &UploadRecord) -> Option<ChecksumType> {
    upload.checksum_algorithm.as_ref()?;
    Some(ChecksumType::from_static(if upload.full_object_checksum() {
        ChecksumType::FULL_OBJECT
    } else {
        ChecksumType::COMPOSITE
    }))
}

/// The object's checksum from its `parts`, in order; empty when a part lacks its checksum.
pub fn of_parts(upload: &UploadRecord, parts: &[&PartRecord]) -> Checksums {
    use base64::Engine;
    let Some(name) = upload.checksum_algorithm_name() else {
        return Checksums::default();
    };
    let decoded: Option<Vec<(Vec<u8>, u64)>> = parts
        .iter()
        .map(|p| {
            let encoded = match name {
                ChecksumAlgorithm::CRC32 => &p.checksums.crc32,
                ChecksumAlgorithm::CRC32C => &p.checksums.crc32c,
                ChecksumAlgorithm::SHA1 => &p.checksums.sha1,
                ChecksumAlgorithm::SHA256 => &p.checksums.sha256,
                ChecksumAlgorithm::CRC64NVME => &p.checksums.crc64nvme,
                _ => return None,
            };
            let raw = crate::body::base64_decode(encoded.as_deref()?)?;
            Some((raw, p.size))
        })
        .collect();
    let Some(decoded) = decoded else {
        return Checksums::default();
    };
    let full_object = upload.full_object_checksum();
    let digest = if full_object {
        combined_crc(name, &decoded)
    } else {
        composite_digest(name, &decoded)
    };
    let Some(digest) = digest else {
        return Checksums::default();
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(digest);
    let value = if full_object {
        encoded
    } else {
        format!("{encoded}-{}", parts.len())
    };
    let mut sums = Checksums {
        composite: !full_object,
        ..Checksums::default()
    };
    let slot = match name {
        ChecksumAlgorithm::CRC32 => &mut sums.crc32,
        ChecksumAlgorithm::CRC32C => &mut sums.crc32c,
        ChecksumAlgorithm::SHA1 => &mut sums.sha1,
        ChecksumAlgorithm::SHA256 => &mut sums.sha256,
        _ => &mut sums.crc64nvme,
    };
    *slot = Some(value);
    sums
}

/// The algorithm over the concatenated binary part checksums.
fn composite_digest(name: &str, parts: &[(Vec<u8>, u64)]) -> Option<Vec<u8>> {
    use s3s::crypto::Checksum as _;
    let joined: Vec<u8> = parts.iter().flat_map(|(raw, _)| raw.iter().copied()).collect();
    Some(match name {
        ChecksumAlgorithm::CRC32 => s3s::crypto::Crc32::checksum(&joined).as_ref().to_vec(),
        ChecksumAlgorithm::CRC32C => s3s::crypto::Crc32c::checksum(&joined).as_ref().to_vec(),
        ChecksumAlgorithm::SHA1 => s3s::crypto::Sha1::checksum(&joined).as_ref().to_vec(),
        ChecksumAlgorithm::SHA256 => s3s::crypto::Sha256::checksum(&joined).as_ref().to_vec(),
        _ => return None,
    })
}

/// The CRC of the parts' bytes one after another, from each part's CRC (big-endian, as S3
/// sends it) and length.
fn combined_crc(name: &str, parts: &[(Vec<u8>, u64)]) -> Option<Vec<u8>> {
    let (algorithm, width) = match name {
        ChecksumAlgorithm::CRC32 => (crc_fast::CrcAlgorithm::Crc32IsoHdlc, 4),
        ChecksumAlgorithm::CRC32C => (crc_fast::CrcAlgorithm::Crc32Iscsi, 4),
        ChecksumAlgorithm::CRC64NVME => (crc_fast::CrcAlgorithm::Crc64Nvme, 8),
        _ => return None,
    };
    let mut combined: Option<u64> = None;
    for (raw, len) in parts {
        if raw.len() != width {
            return None;
        }
        let crc = raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        combined = Some(match combined {
            None => crc,
            Some(acc) => crc_fast::checksum_combine(algorithm, acc, crc, *len),
        });
    }
    let value = combined.unwrap_or_else(|| crc_fast::checksum(algorithm, b""));
    Some(value.to_be_bytes()[8 - width..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use valley_store::record::BlobRef;

    fn part(data: &[u8], name: &str) -> PartRecord {
        use base64::Engine;
        use s3s::crypto::Checksum as _;
        let raw: Vec<u8> = match name {
            ChecksumAlgorithm::CRC32 => s3s::crypto::Crc32::checksum(data).as_ref().to_vec(),
            ChecksumAlgorithm::CRC32C => s3s::crypto::Crc32c::checksum(data).as_ref().to_vec(),
            _ => s3s::crypto::Crc64Nvme::checksum(data).as_ref().to_vec(),
        };
        let encoded = Some(base64::engine::general_purpose::STANDARD.encode(raw));
        let mut checksums = Checksums::default();
        match name {
            ChecksumAlgorithm::CRC32 => checksums.crc32 = encoded,
            ChecksumAlgorithm::CRC32C => checksums.crc32c = encoded,
            _ => checksums.crc64nvme = encoded,
        }
        PartRecord {
            etag: String::new(),
            size: data.len() as u64,
            blob: BlobRef {
                id: valley_store::BlobId::random(),
                size: data.len() as u64,
            },
            last_modified_unix_ns: 0,
            checksums,
        }
    }

    /// Combining the parts' CRCs gives the CRC of the whole object, for each CRC S3 offers.
    #[test]
    fn full_object_crc_equals_the_crc_of_the_whole() {
        let pieces: [&[u8]; 3] = [&[b'A'; 5000], b"", &[b'C'; 1234]];
        let whole: Vec<u8> = pieces.concat();
        for name in [
            ChecksumAlgorithm::CRC32,
            ChecksumAlgorithm::CRC32C,
            ChecksumAlgorithm::CRC64NVME,
        ] {
            let upload = UploadRecord {
                upload_id: "u".into(),
                created_unix_ns: 0,
                headers: valley_store::record::ObjectHeaders::default(),
                tags: Vec::new(),
                checksum_algorithm: stored_choice(
                    Some(&ChecksumAlgorithm::from_static(name)),
                    Some(&ChecksumType::from_static(ChecksumType::FULL_OBJECT)),
                )
                .expect("allowed"),
                initiator: None,
                acl: None,
                sealing: None,
            };
            let parts: Vec<PartRecord> = pieces.iter().map(|p| part(p, name)).collect();
            let sums = of_parts(&upload, &parts.iter().collect::<Vec<_>>());
            let expected = part(&whole, name).checksums;
            assert!(!sums.composite, "{name}");
            assert_eq!(
                (sums.crc32, sums.crc32c, sums.crc64nvme),
                (expected.crc32, expected.crc32c, expected.crc64nvme),
                "{name}"
            );
        }
    }

    #[test]
    fn choices_follow_s3_rules() {
        let alg = |n: &'static str| Some(ChecksumAlgorithm::from_static(n));
        let kind = |t: &'static str| Some(ChecksumType::from_static(t));
        let full = kind(ChecksumType::FULL_OBJECT);
        let composite = kind(ChecksumType::COMPOSITE);
        let choice = |a: &Option<ChecksumAlgorithm>, t: &Option<ChecksumType>| stored_choice(a.as_ref(), t.as_ref());
        assert_eq!(
            choice(&alg(ChecksumAlgorithm::CRC64NVME), &None).unwrap().as_deref(),
            Some("CRC64NVME/FULL_OBJECT")
        );
        assert_eq!(
            choice(&alg(ChecksumAlgorithm::CRC32), &None).unwrap().as_deref(),
            Some("CRC32")
        );
        assert_eq!(
            choice(&alg(ChecksumAlgorithm::CRC32C), &full).unwrap().as_deref(),
            Some("CRC32C/FULL_OBJECT")
        );
        assert!(choice(&alg(ChecksumAlgorithm::SHA256), &full).is_err());
        assert!(choice(&alg(ChecksumAlgorithm::CRC64NVME), &composite).is_err());
        assert!(choice(&None, &full).is_err());
        assert_eq!(choice(&None, &None).unwrap(), None);
    }
}
