//! What a sealed version's stored bytes are checked against when they are copied between hubs.
//!
//! Plain bytes are checked against their ETag (MD5, or MD5 of part MD5s), which a writer
//! computes anyway. A sealed version's ETag is of its plaintext, which no hub can hash without
//! the key, so its stored bytes (ciphertext and tags) get a digest of their own. MD5 at ~0.7
//! GB/s a core would be a second full pass for a check against accidental damage (the chunks'
//! GCM tags already detect any alteration when read); CRC64-NVME runs at many GB/s. Single
//! writes use it, tagged `crc64nvme:`; sealed multipart parts keep their stored MD5 (their
//! ETags), as do versions sealed before this digest existed.

/// The tag of a CRC64-NVME stored digest.
pub const CRC64_PREFIX: &str = "crc64nvme:";

/// A CRC64-NVME digest being computed.
pub struct Crc64(crc_fast::Digest);

impl Default for Crc64 {
    fn default() -> Self {
        Self(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme))
    }
}

impl Crc64 {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest as stored: `crc64nvme:` and 16 hex digits.
    #[must_use]
    pub fn finish(&self) -> String {
        format!("{CRC64_PREFIX}{:016x}", self.0.finalize())
    }
}

/// Whether a stored digest is a CRC64-NVME one (else an ETag-style MD5).
#[must_use]
pub fn is_crc64(digest: &str) -> bool {
    digest.starts_with(CRC64_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_digests_are_tagged_and_chunking_does_not_matter() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let mut whole = Crc64::default();
        whole.update(&data);
        let mut pieces = Crc64::default();
        for piece in data.chunks(977) {
            pieces.update(piece);
        }
        assert_eq!(whole.finish(), pieces.finish());
        assert!(is_crc64(&whole.finish()) && whole.finish().len() == CRC64_PREFIX.len() + 16);
        // The check value of CRC-64/NVME ("123456789").
        let mut check = Crc64::default();
        check.update(b"123456789");
        assert_eq!(check.finish(), "crc64nvme:ae8b14860a799888");
        assert!(!is_crc64("d41d8cd98f00b204e9800998ecf8427e"));
    }
}
